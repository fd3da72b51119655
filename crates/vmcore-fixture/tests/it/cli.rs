//! The `vmcore-fixture` binary.

use std::path::PathBuf;
use std::process::Command;

use vmcore_fixture::{S390NoteName, Spec, write_vmcore};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vmcore-fixture"))
}

/// A scratch file path, removed when dropped.
struct Tmp(PathBuf);

impl std::ops::Deref for Tmp {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tmp(name: &str) -> Tmp {
    let file = format!("vmcore-fixture-cli-{}-{name}", std::process::id());
    Tmp(std::env::temp_dir().join(file))
}

fn expected(spec: &Spec) -> Vec<u8> {
    let mut v = Vec::new();
    write_vmcore(spec, &mut v).unwrap();
    v
}

#[test]
fn size_options_match_the_library() {
    let out = tmp("sized.vmcore");
    let st = bin()
        .args([
            "--size",
            "8M",
            "--zero-fraction",
            "0.6",
            "--cpus",
            "3",
            "--seed",
            "0x2a",
        ])
        .arg(&*out)
        .status()
        .unwrap();
    assert!(st.success());
    let want = expected(&Spec::sized(8 << 20, 0.6).cpus(3).seed(42));
    assert!(std::fs::read(&*out).unwrap() == want);
}

#[test]
fn vmcoreinfo_values_replace_their_line_or_are_appended() {
    let s = Spec::small()
        .vmcoreinfo_value("CRASHTIME", "42")
        .vmcoreinfo_value("NEWKEY", "x");
    assert!(
        s.vmcoreinfo.contains("\nCRASHTIME=42\n"),
        "{}",
        s.vmcoreinfo
    );
    assert!(!s.vmcoreinfo.contains("CRASHTIME=1700000000"));
    assert!(s.vmcoreinfo.ends_with("\nNEWKEY=x\n"));
    assert!(s.vmcoreinfo.starts_with("OSRELEASE=6.1.0-fixture\n"));
}

#[test]
fn presets_and_flags_match_the_library() {
    let cases: Vec<(Vec<&str>, Spec)> = vec![
        (vec![], Spec::small()),
        (vec!["--preset", "small"], Spec::small()),
        (vec!["--preset", "hsa"], Spec::with_hsa_range()),
        (
            vec!["--preset", "overlapping-kernel", "--cpus", "5"],
            Spec::overlapping_kernel().cpus(5),
        ),
        (
            vec![
                "--no-vx",
                "--core-note-name",
                "--vaddr-offset",
                "0x100000000",
            ],
            Spec::small()
                .vx(false)
                .s390_note_name(S390NoteName::Core)
                .vaddr_offset(1 << 32),
        ),
        (
            vec!["--osrelease", "6.12.9-old", "--crash-time", "1600000000"],
            Spec::small()
                .vmcoreinfo_value("OSRELEASE", "6.12.9-old")
                .vmcoreinfo_value("CRASHTIME", "1600000000"),
        ),
    ];
    for (i, (args, spec)) in cases.into_iter().enumerate() {
        let out = tmp(&format!("preset{i}.vmcore"));
        let st = bin().args(&args).arg(&*out).status().unwrap();
        assert!(st.success(), "{args:?}");
        assert!(std::fs::read(&*out).unwrap() == expected(&spec), "{args:?}");
    }
}

#[test]
fn stdout_and_layout() {
    let o = bin().arg("-").output().unwrap();
    assert!(o.status.success());
    assert!(o.stdout == expected(&Spec::small()));

    let out = tmp("layout.vmcore");
    let o = bin()
        .args(["--preset", "overlapping-kernel", "--print-layout"])
        .arg(&*out)
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("LOAD ")).count(), 3);
    assert!(text.contains("kernel"), "{text}");
}

#[test]
fn bad_arguments_fail() {
    let out = tmp("bad.vmcore");
    for args in [
        vec!["--zero-fraction", "1.5"],
        vec!["--cpus", "0"],
        vec!["--size", "12Q"],
        vec!["--size", "1M", "--preset", "small"],
    ] {
        let o = bin().args(&args).arg(&*out).output().unwrap();
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(!o.stderr.is_empty(), "{args:?} says why");
    }
    let o = bin().output().unwrap();
    assert!(!o.status.success(), "OUT is required");
}

#[test]
fn help_describes_the_options() {
    let o = bin().arg("--help").output().unwrap();
    assert!(o.status.success());
    let help = String::from_utf8(o.stdout).unwrap();
    for word in [
        "--size",
        "--preset",
        "--zero-fraction",
        "--cpus",
        "--seed",
        "OUT",
        "overlapping-kernel",
    ] {
        assert!(help.contains(word), "--help mentions {word}");
    }
}
