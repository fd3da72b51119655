//! The preflight: every setting that can be wrong without building is
//! refused by `dist` before its first stage, in seconds. Each case here
//! once failed only after the kernel compile (issue 24). `dist` runs for
//! real; a preflight that let a case through would start the stages, and
//! the watchdog below fails the test instead of waiting for a compile.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{child_profile, dist_args, root, text};

/// Longer than any preflight (well under a second here), far shorter than
/// a stage: the agent's build alone takes a minute.
const WATCHDOG: Duration = Duration::from_secs(60);

/// A profile beside the test's files that extends the project's default
/// and adds `extra` (TOML).
fn profile(dir: &Path, extra: &str) -> PathBuf {
    child_profile(dir, "p", "default", extra)
}

/// `cargo xtask <args>` with `env`, killed after [`WATCHDOG`].
fn xtask_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run xtask");
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > WATCHDOG {
            child.kill().unwrap();
            let o = child.wait_with_output().unwrap();
            panic!(
                "`xtask {}` ran past the preflight for {WATCHDOG:?}:\n{}",
                args.join(" "),
                text(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// `dist` of `profile` with `more` arguments and `env` must fail in the
/// preflight, saying `want`, having built and published nothing.
fn refused(profile: &Path, more: &[&str], env: &[(&str, &str)], want: &str) -> String {
    let out = profile.parent().unwrap().join("out");
    let args = dist_args(profile.to_str().unwrap(), &out, more);
    let o = xtask_env(&args, env);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("preflight failed"), "{t}");
    assert!(t.contains(want), "wanted {want:?} in:\n{t}");
    for stage in ["[kernel]", "[agent]", "[initramfs]", "[budget]"] {
        assert!(!t.contains(stage), "a stage ran ({stage}):\n{t}");
    }
    assert!(!out.exists(), "{} was written", out.display());
    t
}

#[test]
fn a_missing_sign_key_is_refused_before_building() {
    let d = tempfile::tempdir().unwrap();
    let p = profile(
        d.path(),
        "[sign]\nkey = \"absent.pem\"\ncertificate = \"cert.pem\"\n",
    );
    let t = refused(&p, &[], &[], "p.toml:3: sign.key = \"");
    assert!(t.contains("absent.pem does not exist"), "{t}");
}

#[test]
fn an_unset_sign_variable_is_refused_before_building() {
    let d = tempfile::tempdir().unwrap();
    let p = profile(
        d.path(),
        "[sign]\nkey = \"env:ZFCPDUMP_TEST_NO_SUCH_KEY\"\ncertificate = \"cert.pem\"\n",
    );
    refused(
        &p,
        &[],
        &[],
        "the environment variable ZFCPDUMP_TEST_NO_SUCH_KEY is not set",
    );
}

#[test]
fn offline_without_fetched_crates_is_refused_before_building() {
    let d = tempfile::tempdir().unwrap();
    let p = profile(d.path(), "");
    // An empty cargo home: nothing was fetched into it.
    let home = d.path().join("cargo-home");
    fs::create_dir_all(&home).unwrap();
    let t = refused(
        &p,
        &["--offline"],
        &[("CARGO_HOME", home.to_str().unwrap())],
        "--offline: the workspace's crates are not all in cargo's cache; run `cargo xtask fetch \
         --build-only --profile <profile>` while online first, or `cargo xtask vendor`",
    );
    assert!(!t.contains("s390x-linux-musl-gcc"), "{t}");
}

#[test]
fn a_mistyped_also_profile_is_refused_before_building() {
    let d = tempfile::tempdir().unwrap();
    let p = profile(d.path(), "");
    let t = refused(
        &p,
        &["--also-profile", "defualt-builtin"],
        &[],
        "profile defualt-builtin: no profile \"defualt-builtin\"",
    );
    // It lists the names there are.
    assert!(t.contains(", default-builtin,"), "{t}");
}

#[test]
fn check_reproducible_outside_git_is_refused_before_building() {
    let d = tempfile::tempdir().unwrap();
    let p = profile(d.path(), "");
    // git then finds no repository around the project.
    let t = refused(
        &p,
        &["--check-reproducible"],
        &[("GIT_DIR", d.path().join("no-git").to_str().unwrap())],
        "is not a git checkout: --check-reproducible builds again from the files git knows of",
    );
    assert!(t.contains("--check-reproducible"), "{t}");
}

#[test]
fn a_rootfs_that_is_not_there_is_refused_before_building() {
    let d = tempfile::tempdir().unwrap();
    let p = profile(d.path(), "[initramfs]\nrootfs = \"nowhere\"\n");
    refused(&p, &[], &[], "p.toml:3: initramfs.rootfs: ");
}

#[test]
fn a_foreign_agent_target_is_refused_before_building() {
    let d = tempfile::tempdir().unwrap();
    let p = profile(d.path(), "[agent]\ntarget = \"x86_64-unknown-linux-gnu\"\n");
    refused(
        &p,
        &[],
        &[],
        "p.toml:3: agent.target = \"x86_64-unknown-linux-gnu\": the agent runs as /init of the s390x dump kernel",
    );
}

#[test]
fn an_unknown_archive_type_is_refused_before_building() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("linux-6.1.zip");
    fs::write(&src, b"PK").unwrap();
    let p = profile(
        d.path(),
        &format!("[kernel]\nsource = {{ tarball = \"{}\" }}\n", src.display()),
    );
    refused(&p, &[], &[], "unsupported archive type");
}

/// The pin's error names the profile, and the line, that pins.
#[test]
fn a_wrong_sha256_names_the_file_and_line_that_pins_it() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("linux-6.1.tar.xz");
    fs::write(&src, b"not the kernel").unwrap();
    let p = profile(
        d.path(),
        &format!(
            "[kernel]\nsource = {{ tarball = \"{}\", sha256 = \"{}\" }}\n",
            src.display(),
            "0".repeat(64)
        ),
    );
    let t = refused(&p, &[], &[], "p.toml:3: kernel.source.sha256 pins 00000000");
    assert!(
        t.contains(&format!("but {} has sha256 ", src.display())),
        "{t}"
    );
}

#[test]
fn an_invalid_source_date_epoch_is_refused_before_building() {
    let d = tempfile::tempdir().unwrap();
    let p = profile(d.path(), "");
    refused(
        &p,
        &[],
        &[("SOURCE_DATE_EPOCH", "yesterday")],
        "SOURCE_DATE_EPOCH=yesterday: expected seconds since 1970",
    );
}

#[test]
fn a_missing_defconfig_is_refused_before_building() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("linux");
    fs::create_dir_all(src.join("arch/s390/configs")).unwrap();
    fs::write(src.join("Makefile"), "VERSION = 6\n").unwrap();
    let p = profile(
        d.path(),
        &format!(
            "[kernel]\nsource = {{ dir = \"{}\" }}\ndefconfig = \"zfcpdmp_defconfig\"\n",
            src.display()
        ),
    );
    refused(&p, &[], &[], "kernel.defconfig = \"zfcpdmp_defconfig\"");
    // kbuild's own targets are no files: not looked for.
    let p = profile(
        d.path(),
        &format!(
            "[kernel]\nsource = {{ dir = \"{}\" }}\ndefconfig = \"tinyconfig\"\n",
            src.display()
        ),
    );
    let o = xtask_env(&["plan", "--check", "--profile", p.to_str().unwrap()], &[]);
    let t = text(&o);
    assert!(
        t.contains("ok   p: kernel defconfig: kbuild's target tinyconfig"),
        "{t}"
    );
}

#[test]
fn a_fragment_that_is_not_there_is_refused_before_building() {
    let d = tempfile::tempdir().unwrap();
    let p = profile(d.path(), "[kernel]\nfragments = [\"./absent.config\"]\n");
    let t = refused(&p, &[], &[], "p.toml:3: kernel.fragments: ");
    assert!(t.contains("absent.config: No such file"), "{t}");
}

#[test]
fn a_compile_cache_variable_that_means_nothing_is_refused_before_building() {
    let d = tempfile::tempdir().unwrap();
    let p = profile(d.path(), "");
    refused(
        &p,
        &[],
        &[("ZFCPDUMP_COMPILE_CACHE", "of")],
        "ZFCPDUMP_COMPILE_CACHE=of: expected on or off",
    );
    refused(
        &p,
        &[],
        &[("ZFCPDUMP_COMPILE_CACHE_REMOTE", "cache-host:6379")],
        "ZFCPDUMP_COMPILE_CACHE_REMOTE=cache-host:6379: expected a ccache remote storage URL",
    );
}

#[test]
fn the_same_profile_twice_is_refused_before_building() {
    let d = tempfile::tempdir().unwrap();
    let p = profile(d.path(), "");
    refused(
        &p,
        &["--also-profile", p.to_str().unwrap()],
        &[],
        "is built by an earlier profile of this command line already",
    );
}

/// `plan` prints the plan only once every check passed: a failure leaves
/// stdout empty (it printed the resolved profile, then failed).
#[test]
fn plan_writes_nothing_to_stdout_when_it_fails() {
    let d = tempfile::tempdir().unwrap();
    let p = profile(d.path(), "[initramfs]\nrootfs = \"nowhere\"\n");
    for check in [false, true] {
        let mut args = vec!["plan", "--profile", p.to_str().unwrap()];
        if check {
            args.push("--check");
        }
        let o = xtask_env(&args, &[]);
        let t = text(&o);
        assert!(!o.status.success(), "{t}");
        assert!(
            o.stdout.is_empty(),
            "stdout: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(t.contains("nowhere is not a directory"), "{t}");
    }
}

/// `plan --check` lists every check and passes on the shipped default.
#[test]
fn plan_check_passes_on_the_default_profile() {
    let o = xtask_env(&["plan", "--check"], &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for what in [
        "ok   default: kernel source",
        "ok   default: kernel fragments",
        "ok   default: agent target",
        "ok   default: initramfs rootfs",
        "ok   SOURCE_DATE_EPOCH",
        "preflight passed",
    ] {
        assert!(t.contains(what), "{what}:\n{t}");
    }
}

/// A PATH on which Debian's `s390x-linux-gnu-*` tools are hidden, with
/// wrappers `s390x-test-linux-gnu-*` that call them: a host whose cross
/// toolchain has another prefix. The toolchain's own bin comes first
/// (`rustc --print sysroot`).
fn path_with_another_prefix(dir: &Path) -> String {
    let wrap = dir.join("wrap");
    let bin = dir.join("bin");
    fs::create_dir_all(&wrap).unwrap();
    fs::create_dir_all(&bin).unwrap();
    for sys in ["/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let Ok(entries) = fs::read_dir(sys) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(tool) = name.strip_prefix("s390x-linux-gnu-") {
                let w = wrap.join(format!("s390x-test-linux-gnu-{tool}"));
                fs::write(
                    &w,
                    format!("#!/bin/sh\nexec {} \"$@\"\n", e.path().display()),
                )
                .unwrap();
                std::os::unix::fs::PermissionsExt::set_mode(
                    &mut fs::metadata(&w).unwrap().permissions(),
                    0o755,
                );
                fs::set_permissions(&w, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                    .unwrap();
            } else if !bin.join(&name).exists() {
                let _ = std::os::unix::fs::symlink(e.path(), bin.join(&name));
            }
        }
    }
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let sysroot = String::from_utf8(sysroot.stdout).unwrap();
    format!(
        "{}/bin:{}:{}",
        sysroot.trim(),
        wrap.display(),
        bin.display()
    )
}

/// The host check follows the profile's `kernel.cross_compile`: a host
/// whose cross gcc has another prefix passes it, although Debian's
/// `s390x-linux-gnu-gcc` is not there; a prefix with no gcc fails it,
/// named. (It demanded `s390x-linux-gnu-gcc` whatever the profile said.)
#[test]
fn the_host_check_follows_the_profiles_compiler_prefix() {
    let d = tempfile::tempdir().unwrap();
    let path = path_with_another_prefix(d.path());
    let hidden = Command::new("sh")
        .args(["-c", "command -v s390x-linux-gnu-gcc"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(!hidden.status.success(), "s390x-linux-gnu-gcc is on {path}");
    // Debian's musl-gcc is a wrapper of the glibc cross gcc, which it
    // names in REALGCC: on such a host it names the host's.
    let env = [
        ("PATH", path.as_str()),
        ("REALGCC", "s390x-test-linux-gnu-gcc"),
    ];
    let check_with_prefix = |prefix: &str| {
        let p = profile(
            d.path(),
            &format!("[kernel]\ncross_compile = \"{prefix}\"\n"),
        );
        let args = [
            "plan",
            "--check",
            "--no-provision",
            "--profile",
            p.to_str().unwrap(),
        ];
        let o = xtask_env(&args, &env);
        (o.status.success(), text(&o))
    };
    let (ok, t) = check_with_prefix("s390x-test-linux-gnu-");
    assert!(ok, "{t}");
    assert!(t.contains("ok   p: host tools:"), "{t}");

    let (ok, t) = check_with_prefix("s390x-nope-linux-gnu-");
    assert!(!ok, "{t}");
    assert!(
        t.contains("s390x-nope-linux-gnu-gcc (no Debian package: install it yourself): cross-compiles the kernel"),
        "{t}"
    );
    assert!(!t.contains("s390x-test-linux-gnu-gcc"), "{t}");
}

/// `--out-dir DIR` deleted what was there: a test that published into a
/// directory holding keep-me.txt and other-job/report.xml left only the
/// artifacts. Now a directory that is not new, empty or an earlier output
/// of dist is refused before anything is built, and kept as it was.
#[test]
fn an_out_dir_that_is_not_ours_is_refused_and_kept() {
    let d = tempfile::tempdir().unwrap();
    let p = profile(d.path(), "");
    let out = d.path().join("workspace");
    fs::create_dir_all(out.join("other-job")).unwrap();
    fs::write(out.join("keep-me.txt"), "keep").unwrap();
    fs::write(out.join("other-job/report.xml"), "<r/>").unwrap();
    let args = dist_args(p.to_str().unwrap(), &out, &[]);
    let o = xtask_env(&args, &[]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("preflight failed"), "{t}");
    assert!(
        t.contains("is not empty and holds no manifest.json of a dist build"),
        "{t}"
    );
    assert!(
        t.contains("nothing was touched") && !t.contains("[kernel]"),
        "{t}"
    );
    assert_eq!(fs::read_to_string(out.join("keep-me.txt")).unwrap(), "keep");
    assert!(out.join("other-job/report.xml").is_file());
}
