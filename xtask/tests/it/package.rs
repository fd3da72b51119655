//! `cargo xtask package --deb` on the real dist builds: the files and modes
//! dpkg-deb lists, the control fields, two builds bit-identical, and
//! Debian 12's lintian clean. (e2e --deb dumps through the unpacked files.)

use crate::common::{text, xtask};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn package(profile: &str, out: &Path) -> PathBuf {
    let o = xtask(&[
        "package",
        "--deb",
        "--no-provision",
        "--profile",
        profile,
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let deb = String::from_utf8_lossy(&o.stdout).trim().to_string();
    PathBuf::from(deb)
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    let o = Command::new("dpkg-deb")
        .args(args)
        .arg(deb)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `mode owner path` of every entry, as dpkg-deb -c lists them.
fn listing(deb: &Path) -> Vec<String> {
    dpkg_deb(&["-c"], deb)
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {}", w[0], w[1], w[5])
        })
        .collect()
}

#[test]
fn the_package_holds_exactly_the_files_zipl_needs() {
    if !test_tier::slow("packages dist builds of the real kernel") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    let d = tempfile::tempdir().unwrap();
    let deb = package("default", d.path());
    assert!(
        deb.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("zfcpdump_0.1.0+linux6.1."),
        "{}",
        deb.display()
    );
    let dir = "drwxr-xr-x root/root";
    let file = "-rw-r--r-- root/root";
    let want: Vec<String> = [
        (dir, "./"),
        (dir, "./usr/"),
        (dir, "./usr/lib/"),
        (dir, "./usr/lib/s390-tools/"),
        (dir, "./usr/lib/s390-tools/zfcpdump/"),
        (file, "./usr/lib/s390-tools/zfcpdump/zfcpdump-image"),
        (file, "./usr/lib/s390-tools/zfcpdump/zfcpdump-initrd"),
        (dir, "./usr/share/"),
        (dir, "./usr/share/doc/"),
        (dir, "./usr/share/doc/zfcpdump/"),
        (file, "./usr/share/doc/zfcpdump/changelog.gz"),
        (file, "./usr/share/doc/zfcpdump/copyright"),
        (file, "./usr/share/doc/zfcpdump/manifest.json"),
    ]
    .iter()
    .map(|(m, p)| format!("{m} {p}"))
    .collect();
    assert_eq!(listing(&deb), want);
    let field = |f: &str| {
        dpkg_deb(&["-f"], &deb)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{f}: ")).map(String::from))
    };
    assert_eq!(field("Architecture").as_deref(), Some("s390x"));
    assert_eq!(field("Suggests").as_deref(), Some("s390-tools"));
    assert_eq!(field("Depends"), None, "no dependencies");
    // The files are the dist build's, byte for byte.
    let x = d.path().join("x");
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&x)
        .status()
        .unwrap();
    assert!(st.success());
    let dist = crate::common::root().join("dist/default");
    for (a, b) in [
        ("zfcpdump-image", "zfcpdump.image"),
        ("zfcpdump-initrd", "zfcpdump.rd"),
    ] {
        assert!(
            fs::read(x.join("usr/lib/s390-tools/zfcpdump").join(a)).unwrap()
                == fs::read(dist.join(b)).unwrap(),
            "{a}"
        );
    }

    // With the initramfs built in: the image alone, and it stands in for
    // the default package.
    let deb = package("default-builtin", d.path());
    let l = listing(&deb);
    assert!(
        l.iter().any(|e| e.ends_with("zfcpdump/zfcpdump-image")),
        "{l:?}"
    );
    assert!(!l.iter().any(|e| e.ends_with("zfcpdump-initrd")), "{l:?}");
    let control = dpkg_deb(&["-f"], &deb);
    for f in [
        "Provides: zfcpdump",
        "Conflicts: zfcpdump",
        "Replaces: zfcpdump",
    ] {
        assert!(control.contains(f), "{control}");
    }
}

#[test]
fn two_package_builds_are_bit_identical() {
    if !test_tier::slow("packages dist builds of the real kernel") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    let d = tempfile::tempdir().unwrap();
    let a = package("default", &d.path().join("a"));
    let b = package("default", &d.path().join("b"));
    assert!(
        fs::read(&a).unwrap() == fs::read(&b).unwrap(),
        "the .deb differs between builds"
    );
}

#[test]
fn lintian_is_clean() {
    if !test_tier::slow("packages dist builds of the real kernel") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    test_tier::require(
        Command::new("lintian").arg("--version").output().is_ok(),
        "lintian (Debian: lintian)",
    );
    let d = tempfile::tempdir().unwrap();
    for profile in ["default", "default-builtin"] {
        let deb = package(profile, d.path());
        let o = Command::new("lintian")
            .args(["-EIL", "+pedantic", "--fail-on", "warning,pedantic"])
            .arg(&deb)
            .output()
            .unwrap();
        let t = text(&o);
        let tags: Vec<&str> = t
            .lines()
            .filter(|l| !l.contains("root privileges"))
            .collect();
        println!(
            "lintian {}: {}",
            deb.display(),
            if tags.is_empty() {
                "clean".into()
            } else {
                tags.join("\n")
            }
        );
        assert!(
            o.status.success() && tags.is_empty(),
            "lintian on {}:\n{t}",
            deb.display()
        );
    }
}
