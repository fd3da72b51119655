//! The current reader sysroot (Debian 13's s390-tools and crash, sid's
//! makedumpfile) against the real registry: its tools run under qemu-user
//! with the versions it recorded, and a package no suite has is an error
//! that names it. Needs deb.debian.org (CI has it) and qemu-s390x-static.

use std::process::Command;

use zfcpdump_builder::util::version_at_least;
use zfcpdump_lab::readers::apt::PrivateApt;
use zfcpdump_lab::readers::crash::Crash;
use zfcpdump_lab::readers::sysroot::{CURRENT, package_version, versions};
use zfcpdump_lab::readers::zgetdump::Zgetdump;

fn cache() -> std::path::PathBuf {
    zfcpdump_builder::util::cache_dir(&zfcpdump_builder::util::project_root())
}

#[test]
fn current_readers_run_with_the_versions_they_recorded() {
    if !test_tier::slow("downloads the reader sysroots from the package registry") {
        return;
    }
    let root = CURRENT.unpacked_root(&cache(), false).unwrap();
    let text = versions(&root).unwrap();
    // Every package, with the suite it came from.
    for spec in CURRENT.packages {
        let name = spec.split('/').next().unwrap();
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from versions.txt:\n{text}"));
        let suite = line.split_whitespace().nth(3);
        assert!(
            matches!(suite, Some("trixie" | "sid")),
            "{name}: no suite recorded: {line:?}"
        );
        if spec.ends_with("/sid") {
            assert_eq!(suite, Some("sid"), "{line:?}");
        }
    }
    let zg = Zgetdump::new(&root).unwrap();
    assert!(zg.reads_tails(), "zgetdump {} predates 2.33", zg.version);
    let crash = Crash::new(&root).unwrap();
    assert!(
        version_at_least(&crash.version, (8, 0)),
        "crash {}",
        crash.version
    );
    // makedumpfile 1.7.8 has the 6.12 page-type fix; the binary says its
    // own version, which must be the one recorded.
    let recorded = package_version(&root, "makedumpfile").unwrap();
    let upstream = recorded
        .split_once(':')
        .map_or(recorded.as_str(), |(_, v)| v);
    let upstream = upstream.split('-').next().unwrap();
    let out = Command::new("qemu-s390x-static")
        .arg("-L")
        .arg(&root)
        .arg(root.join("usr/bin/makedumpfile"))
        .arg("-v")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("makedumpfile: version {upstream} ")),
        "recorded {recorded}, makedumpfile -v says:\n{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        version_at_least(upstream, (1, 7)),
        "makedumpfile {upstream}"
    );
}

#[test]
fn a_package_no_suite_has_is_an_error_naming_it() {
    if !test_tier::slow("downloads the reader sysroots from the package registry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let apt = PrivateApt::update(&dir.path().join("apt"), &["trixie", "sid"]).unwrap();
    let out = dir.path().join("debs");
    std::fs::create_dir_all(&out).unwrap();
    let err = apt
        .download(
            &["libzstd1", "zfcpdump-no-such-package"],
            &["trixie", "sid"],
            &out,
        )
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("zfcpdump-no-such-package (last tried in sid)"),
        "{msg}"
    );
    // The package that exists came through, and is not blamed.
    assert!(!msg.contains("libzstd1 ("), "{msg}");
    let debs: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(debs.iter().any(|d| d.starts_with("libzstd1_")), "{debs:?}");
}
