//! Integration tests of the whole `dist` pipeline on the default profile:
//! the initramfs read back by GNU cpio, the budget failure path, rebuilds
//! of only what changed, and install. They share the stage cache with
//! `cargo xtask dist`, so the kernel and agent compile once.

use crate::common::{root, text, xtask};

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A dist of the default profile into a temp dir, with extra `--set`s.
fn dist_into(out: &Path, sets: &[&str]) -> Output {
    let mut args = vec!["dist", "--no-provision", "--out-dir", out.to_str().unwrap()];
    for s in sets {
        args.extend(["--set", s]);
    }
    xtask(&args)
}

#[test]
fn initramfs_reads_back_with_gnu_cpio() {
    if !test_tier::slow("runs dist on the real kernel") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("dist");
    let o = dist_into(&out, &["initramfs.compression=none"]);
    assert!(o.status.success(), "{}", text(&o));
    let rd = fs::read(out.join("zfcpdump.rd")).unwrap();

    // `cpio -itv` lists in archive order with type, mode, owner, device.
    let mut child = Command::new("cpio")
        .args(["-itv", "--quiet", "--numeric-uid-gid"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("GNU cpio (Debian: cpio)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &rd).unwrap();
    drop(child.stdin.take());
    let listing = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    let rows: Vec<Vec<&str>> = listing
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| *r.last().unwrap()).collect();
    assert_eq!(
        names,
        [
            "dev",
            "dev/console",
            "dev/null",
            "etc",
            "etc/zfcpdump.conf",
            "init",
            "proc",
            "sys"
        ],
        "{listing}"
    );
    for r in &rows {
        assert_eq!((r[2], r[3]), ("0", "0"), "owner not root: {r:?}");
    }
    assert!(rows[1][0].starts_with("crw-------"), "{listing}");
    assert_eq!((rows[1][4], rows[1][5]), ("5,", "1"), "{listing}");
    assert!(rows[5][0].starts_with("-rwxr-xr-x"), "{listing}");

    // Unpacked, /init is the agent binary of the manifest.
    let x = d.path().join("x");
    fs::create_dir_all(&x).unwrap();
    let mut child = Command::new("cpio")
        .args([
            "-id",
            "--quiet",
            "--no-absolute-filenames",
            "--nonmatching",
            "dev/*",
        ])
        .current_dir(&x)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &rd).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let init = fs::read(x.join("init")).unwrap();
    assert_eq!(
        init.len() as u64,
        manifest["agent"]["size"].as_u64().unwrap()
    );
    let conf = fs::read_to_string(x.join("etc/zfcpdump.conf")).unwrap();
    assert!(conf.contains("progress_interval_s = 10"), "{conf}");
}

#[test]
fn over_budget_fails_and_publishes_nothing() {
    if !test_tier::slow("runs dist on the real kernel") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("dist");
    let o = dist_into(
        &out,
        &["budget.total=\"12MiB\"", "budget.runtime_reserve=\"6MiB\""],
    );
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("over its memory budget"), "{t}");
    assert!(t.contains("biggest parts: kernel"), "{t}");
    assert!(!out.exists(), "a failed build published {}", out.display());
    assert_eq!(
        fs::read_dir(d.path()).unwrap().count(),
        0,
        "leftovers in the dist parent"
    );
}

#[test]
fn rootfs_change_rebuilds_only_the_initramfs() {
    if !test_tier::slow("runs dist on the real kernel") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    let d = tempfile::tempdir().unwrap();
    let rootfs = d.path().join("rootfs");
    fs::create_dir_all(rootfs.join("overlay/etc")).unwrap();
    fs::copy(
        root().join("rootfs/manifest.toml"),
        rootfs.join("manifest.toml"),
    )
    .unwrap();
    fs::write(rootfs.join("overlay/etc/motd"), format!("{:?}\n", d.path())).unwrap();
    let set = format!("initramfs.rootfs=\"{}\"", rootfs.display());
    let out = d.path().join("dist");
    let o = dist_into(&out, &[&set]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("[kernel] up to date"), "{t}");
    assert!(t.contains("[agent] up to date"), "{t}");
    assert!(t.contains("[initramfs] built"), "{t}");
    // No change: nothing rebuilds.
    let o = dist_into(&out, &[&set]);
    assert!(text(&o).contains("[initramfs] up to date"), "{}", text(&o));
    // A rootfs edit rebuilds the initramfs and nothing before it.
    // Unique content: the stage cache is keyed on content and shared.
    fs::write(
        rootfs.join("overlay/etc/motd"),
        format!("changed {:?}\n", d.path()),
    )
    .unwrap();
    let o = dist_into(&out, &[&set]);
    let t = text(&o);
    assert!(t.contains("[initramfs] built"), "{t}");
    assert!(
        t.contains("[kernel] up to date") && t.contains("[agent] up to date"),
        "{t}"
    );
}

#[test]
fn install_puts_zipl_names_with_packager_modes() {
    if !test_tier::slow("runs dist on the real kernel") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    let o = xtask(&["dist", "--no-provision"]);
    assert!(o.status.success(), "{}", text(&o));
    let d = tempfile::tempdir().unwrap();
    let o = xtask(&["install", "--destdir", d.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let dir = d.path().join("usr/lib/s390-tools/zfcpdump");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["zfcpdump-image", "zfcpdump-initrd"]);
    for n in &names {
        let mode = fs::metadata(dir.join(n)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644, "{n}");
    }
    assert_eq!(
        fs::read(dir.join("zfcpdump-image")).unwrap(),
        fs::read(root().join("dist/default/zfcpdump.image")).unwrap()
    );
    // Debian's zipl looks in /lib/s390-tools/zfcpdump.
    let o = xtask(&[
        "install",
        "--destdir",
        d.path().to_str().unwrap(),
        "--zfcpdump-dir",
        "/lib/s390-tools/zfcpdump",
    ]);
    assert!(o.status.success());
    assert!(
        d.path()
            .join("lib/s390-tools/zfcpdump/zfcpdump-initrd")
            .is_file()
    );
}

/// A distribution's Rust has no rustup: the host check asks the toolchain
/// in use (its sysroot's rust-src), not `rustup component list`, which
/// failed such a host with "missing rustup component rust-src".
#[test]
fn dist_runs_with_rustup_out_of_the_picture() {
    if !test_tier::slow("runs dist on the real kernel (compiles it if the cache is cold)") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let sysroot = String::from_utf8(sysroot.stdout).unwrap();
    // The toolchain's own bin first, then the system's: no ~/.cargo/bin,
    // where rustup and its proxies live.
    let path = format!(
        "{}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        sysroot.trim()
    );
    let rustup = Command::new("sh")
        .args(["-c", "command -v rustup"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        !rustup.status.success(),
        "rustup is still on {path}: {}",
        text(&rustup)
    );
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("dist");
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["dist", "--no-provision", "--out-dir", out.to_str().unwrap()])
        .current_dir(root())
        .env("PATH", &path)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTUP_HOME")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.join("zfcpdump.image").is_file());
}

/// `install` checked nothing: with one byte of the image flipped it copied
/// it and exited 0, and it could only install from dist/<profile>/. Now it
/// takes `--from` (an `--out-dir` build) and installs nothing unless every
/// file matches the manifest.
#[test]
fn install_from_an_out_dir_checks_every_file_first() {
    if !test_tier::slow("runs dist on the real kernel") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let o = dist_into(&out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let image = out.join("zfcpdump.image");
    let good = fs::read(&image).unwrap();
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 1;
    fs::write(&image, &bad).unwrap();
    let dest = d.path().join("dest");
    let install = || {
        xtask(&[
            "install",
            "--from",
            out.to_str().unwrap(),
            "--destdir",
            dest.to_str().unwrap(),
        ])
    };
    let o = install();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("is not the file its manifest lists") && t.contains("nothing was installed"),
        "{t}"
    );
    assert!(!dest.exists(), "a damaged build installed something");
    fs::write(&image, &good).unwrap();
    let o = install();
    assert!(o.status.success(), "{}", text(&o));
    let dir = dest.join("usr/lib/s390-tools/zfcpdump");
    assert_eq!(fs::read(dir.join("zfcpdump-image")).unwrap(), good);
    assert!(dir.join("zfcpdump-initrd").is_file());

    // The out dir is ours now: another dist replaces it. A file of
    // someone else's in it makes the next dist refuse, and stays.
    let o = dist_into(&out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    fs::write(out.join("notes.txt"), "mine").unwrap();
    let o = dist_into(&out, &[]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("no dist build wrote (notes.txt)"), "{t}");
    assert_eq!(fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");
}
