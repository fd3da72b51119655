//! The built binary in tool mode, end to end: arguments, console lines, exit
//! codes, and the panic path.

use crate::common::*;
use std::process::{Command, Output};

fn agent(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zfcpdump-agent"))
        .args(args)
        .output()
        .expect("run the agent")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn tool_mode_dump_end_to_end() {
    let w = World::new(512, spec());
    let before = w.snapshot();
    let o = agent(&[
        "--root".as_ref(),
        w.root.as_os_str(),
        "--disk".as_ref(),
        w.image.as_os_str(),
        "--source".as_ref(),
        w.vmcore.as_os_str(),
        "--hsa-size=0x200000".as_ref(),
        "--sector-size".as_ref(),
        "512".as_ref(),
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.is_empty(), "console lines go to stderr: {out}");
    assert_in_order(
        &err,
        &[
            "zfcpdump-agent ",
            "(tool mode, root ",
            "dump partition 1",
            "3 CPUs",
            "busy marker written",
            "copy HSA-backed range",
            "HSA release (simulated",
            "copy ELF header block (last)",
            "(100%)",
            "\nDump successful\n",
            "peak RSS: ",
        ],
    );
    assert_dump_is_vmcore(&w);
    assert_same_except(&before, &w.image, &w.allowed_after_dump());
    // The bounded buffer keeps the agent small (the host build, with debug info).
    let kib: u64 = err
        .split("peak RSS: ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(kib > 0 && kib < 16 * 1024, "peak RSS {kib} KiB");
}

#[test]
fn failure_exits_1_with_the_step_and_errno() {
    let w = World::new(512, spec());
    let missing = w.dir.path().join("missing.vmcore");
    let o = agent(&[
        "--root".as_ref(),
        w.root.as_os_str(),
        "--disk".as_ref(),
        w.image.as_os_str(),
        "--source".as_ref(),
        missing.as_os_str(),
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let want = format!(
        "\nDump failed: vmcore: opening {} (No such file or directory (os error 2))\npeak RSS: ",
        missing.display()
    );
    assert!(err.contains(&want), "{err}");
}

#[test]
fn ipl_lookup_without_fcp_dump_fails_cleanly() {
    let w = World::new(512, spec());
    w.write_root("sys/firmware/ipl/ipl_type", "unknown\n");
    let o = agent(&["--root".as_ref(), w.root.as_os_str()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("Dump failed: IPL device: not IPLed in FCP dump mode: /sys/firmware/ipl/ipl_type is 'unknown'"), "{err}");
}

#[test]
fn test_panic_ends_in_dump_failed() {
    let w = World::new(512, spec());
    w.write_root("proc/cmdline", "root=/dev/ram0 zfcpdump.test_panic=1\n");
    let before = w.snapshot();
    let o = agent(&[
        "--root".as_ref(),
        w.root.as_os_str(),
        "--disk".as_ref(),
        w.image.as_os_str(),
    ]);
    let (_, err) = text(&o);
    // Tool mode: the panic hook prints the verdict and exits 1 (PID 1 would power off).
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Dump failed: agent crashed (panic at crates/zfcpdump-agent/src/lib.rs:")
            && err.contains(
                "zfcpdump.test_panic=1 on the kernel command line: deliberate panic)\npeak RSS: "
            ),
        "{err}"
    );
    assert_eq!(assert_same_except(&before, &w.image, &[]), 0);
}

#[test]
fn usage_errors_and_help() {
    let o = agent(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("--root DIR is required"));
    let o = agent(&[
        "--root".as_ref(),
        "/".as_ref(),
        "--sector-size".as_ref(),
        "1024".as_ref(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = agent(&["--help".as_ref()]);
    assert_eq!(o.status.code(), Some(0));
    let (out, _) = text(&o);
    assert!(
        out.contains("NEVER mounts") && out.contains("zfcpdump.test_panic=1"),
        "{out}"
    );
}
