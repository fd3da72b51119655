//! The built-in initramfs variant (`profiles/default-builtin.toml`) and the
//! stage locks, on the real kernel: it shares the default profile's
//! compile, so each test costs a relink (seconds), not a compile.

use crate::common::{dist_args, root, text, xtask};

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

const PROFILE: &str = "default-builtin";

/// A rootfs of the project's manifest plus one file of unique content, so
/// that the initramfs, and with it the link, has work to do.
fn unique_rootfs(dir: &Path, tag: &str) -> String {
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(rootfs.join("overlay/etc")).unwrap();
    fs::copy(
        root().join("rootfs/manifest.toml"),
        rootfs.join("manifest.toml"),
    )
    .unwrap();
    fs::write(rootfs.join("overlay/etc/motd"), format!("{tag} {dir:?}\n")).unwrap();
    format!("initramfs.rootfs=\"{}\"", rootfs.display())
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn builtin_rootfs_change_relinks_without_recompiling() {
    if !test_tier::slow("relinks the default kernel (compiles it if the cache is cold)") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    let d = tempfile::tempdir().unwrap();
    let set = unique_rootfs(d.path(), "relink");
    let out = d.path().join("builtin");
    let o = xtask(&dist_args(PROFILE, &out, &["--set", &set]));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("[kernel] linking the image with the initramfs built in"),
        "{t}"
    );
    assert!(!t.contains("[kernel] compiling"), "a relink compiled: {t}");
    // One file: the image carries the initramfs.
    let mut names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["manifest.json", "zfcpdump.image"]);
    let m = manifest(&out);
    assert_eq!(m["initramfs"]["builtin"], true, "{m}");
    assert_eq!(m["artifacts"].as_array().unwrap().len(), 1, "{m}");
    let rows: Vec<&str> = m["budget"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["component"].as_str().unwrap())
        .collect();
    assert!(
        !rows.iter().any(|r| r.starts_with("initrd")),
        "the archive is counted twice: {rows:?}"
    );

    // The external variant of the same rootfs: the same archive, the
    // image without it; the compile is shared, so nothing compiles.
    let ext = d.path().join("external");
    let o = xtask(&dist_args("default", &ext, &["--set", &set]));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(!t.contains("[kernel] compiling"), "{t}");
    let rd = fs::read(ext.join("zfcpdump.rd")).unwrap();
    let embedded = &m["kernel"]["embedded_initramfs"];
    assert_eq!(embedded["size"].as_u64().unwrap(), rd.len() as u64);
    let rd_sha = manifest(&ext)["artifacts"][1]["sha256"].clone();
    assert_eq!(embedded["sha256"], rd_sha);
    let (img, ext_img) = (
        m["artifacts"][0]["size"].as_u64().unwrap(),
        manifest(&ext)["artifacts"][0]["size"].as_u64().unwrap(),
    );
    assert!(img > ext_img, "built-in image {img} vs external {ext_img}");
    // The .config of each variant: they differ in the built-in options.
    assert_ne!(
        m["kernel"]["config_sha256"],
        manifest(&ext)["kernel"]["config_sha256"]
    );

    // Unchanged: up to date, no link.
    let o = xtask(&dist_args(PROFILE, &out, &["--set", &set]));
    let t = text(&o);
    assert!(
        t.contains("[kernel] up to date") && !t.contains("linking"),
        "{t}"
    );
}

#[test]
fn install_of_a_builtin_image_removes_a_stale_initrd() {
    if !test_tier::slow("relinks the default kernel (compiles it if the cache is cold)") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    for p in ["default", PROFILE] {
        let o = xtask(&["dist", "--no-provision", "--profile", p]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let d = tempfile::tempdir().unwrap();
    let destdir = d.path().to_str().unwrap();
    let dir = d.path().join("usr/lib/s390-tools/zfcpdump");
    let o = xtask(&["install", "--destdir", destdir]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(dir.join("zfcpdump-initrd").is_file());
    let o = xtask(&["install", "--profile", PROFILE, "--destdir", destdir]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("removed"), "{t}");
    assert!(!dir.join("zfcpdump-initrd").exists(), "stale initrd left");
    assert_eq!(
        fs::read(dir.join("zfcpdump-image")).unwrap(),
        fs::read(root().join("dist").join(PROFILE).join("zfcpdump.image")).unwrap()
    );
}

/// The kernel stage's lock file, as the stage takes it.
fn kernel_lock() -> std::path::PathBuf {
    root().join("target/zfcpdump/kernel/.lock")
}

#[test]
fn two_builds_of_one_profile_link_once_the_second_waits() {
    if !test_tier::slow("relinks the default kernel (compiles it if the cache is cold)") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    let d = tempfile::tempdir().unwrap();
    let set = unique_rootfs(d.path(), "contend");
    let spawn = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(dist_args(PROFILE, &d.path().join(name), &["--set", &set]))
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("a"), spawn("b"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (ta, tb) = (text(&a), text(&b));
    assert!(a.status.success() && b.status.success(), "{ta}\n----\n{tb}");
    let links = [&ta, &tb]
        .iter()
        .filter(|t| t.contains("[kernel] linking"))
        .count();
    assert_eq!(links, 1, "both linked:\n{ta}\n----\n{tb}");
    let waited = [&ta, &tb]
        .into_iter()
        .find(|t| t.contains("[kernel] waiting for"))
        .unwrap_or_else(|| panic!("neither waited for the kernel lock:\n{ta}\n----\n{tb}"));
    assert!(waited.contains("held by pid "), "{waited}");
    assert!(waited.contains("[kernel] got the lock after"), "{waited}");
    assert!(waited.contains("[kernel] up to date"), "{waited}");
    assert_eq!(
        fs::read(d.path().join("a/zfcpdump.image")).unwrap(),
        fs::read(d.path().join("b/zfcpdump.image")).unwrap()
    );
}

#[test]
fn no_wait_fails_at_once_naming_the_holder() {
    if !test_tier::slow("relinks the default kernel (compiles it if the cache is cold)") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    let d = tempfile::tempdir().unwrap();
    let set = unique_rootfs(d.path(), "no-wait");
    // Held here as a build holds it: flock and its line.
    let path = kernel_lock();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap();
    f.lock().unwrap();
    f.set_len(0).unwrap();
    std::io::Write::write_all(
        &mut f,
        format!("pid {}: the no-wait test\n", std::process::id()).as_bytes(),
    )
    .unwrap();
    let out = d.path().join("out");
    let mut args = dist_args(PROFILE, &out, &["--set", &set]);
    args.push("--no-wait");
    let o = xtask(&args);
    let t = text(&o);
    drop(f);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains(&format!("locked by pid {}", std::process::id())),
        "{t}"
    );
    assert!(
        t.contains("the no-wait test") && t.contains("--no-wait"),
        "{t}"
    );
    assert!(!out.exists(), "a refused build published {}", out.display());
}
