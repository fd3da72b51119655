//! The cross-built s390x agent (big-endian, static, immediate-abort) under
//! qemu-s390x-static, in tool mode, against the same fixtures as the host
//! build; and zgetdump, the s390-tools reader, on what it wrote.
//!
//! The slow tier (`test_tier`): `cargo xtask test` asks for it and sets
//! ZFCPDUMP_AGENT_S390X to the dist builds' binaries (glibc and musl, `:`
//! between them; each test runs each) and ZGETDUMP_ROOT to an unpacked
//! Debian s390-tools; there, a missing one fails.

use crate::common::*;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The s390x binaries the slow tier runs (only called behind the gate).
fn s390x_agents() -> Vec<PathBuf> {
    std::env::split_paths(&test_tier::env("ZFCPDUMP_AGENT_S390X")).collect()
}

/// Whether `bin` is the glibc build: glibc's static binaries carry the GNU
/// ABI note, musl's do not.
fn is_glibc(bin: &Path) -> bool {
    use object::{Object, ObjectSection};
    let data = std::fs::read(bin).unwrap();
    let f = object::File::parse(&*data).unwrap();
    f.section_by_name(".note.ABI-tag")
        .is_some_and(|s| s.size() > 0)
}

fn agent(bin: &Path, args: &[&std::ffi::OsStr]) -> Output {
    Command::new("qemu-s390x-static")
        .arg(bin)
        .args(args)
        .output()
        .expect("qemu-s390x-static (Debian: qemu-user-static)")
}

fn dump(bin: &Path, w: &World, extra: &[&str]) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--root".as_ref(),
        w.root.as_os_str(),
        "--disk".as_ref(),
        w.image.as_os_str(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    agent(bin, &args)
}

/// zgetdump -i on the partition's bytes, as it would read /dev/sda1.
fn zgetdump_info(root: &Path, w: &World) -> String {
    let part = w.layout.superblock.partition();
    let file = w.dir.path().join("partition.img");
    std::fs::write(&file, w.read_image(part)).unwrap();
    let o = Command::new("qemu-s390x-static")
        .arg("-L")
        .arg(root)
        .arg(root.join("sbin/zgetdump"))
        .arg("-i")
        .arg(&file)
        .output()
        .unwrap();
    // zgetdump prints its report on stderr.
    let text =
        String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "zgetdump -i failed: {text}");
    text
}

fn dump_and_verify(sector_size: u32) {
    for bin in s390x_agents() {
        let w = World::new(sector_size, spec());
        let before = w.snapshot();
        let o = dump(&bin, &w, &["--hsa-size=0x200000"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{err}");
        assert_in_order(
            &err,
            &[
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

        // The fixture's kernel-image PT_LOAD has p_vaddr != p_paddr, which
        // zgetdump 2.16 takes for a user-space core; its reader limits are
        // checked on a vmcore without it.
        let zg = PathBuf::from(test_tier::env("ZGETDUMP_ROOT"));
        let plain = spec().kernel_image_load(None);
        let w = World::new(sector_size, plain);
        let o = dump(&bin, &w, &[]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_dump_is_vmcore(&w);
        let info = zgetdump_info(&zg, &w);
        assert!(info.contains("Dump format........: elf"), "{info}");
        assert!(info.contains("CPU count (online).: 3"), "{info}");
        assert!(info.contains("Dump memory range..: 10 MB"), "{info}");
        assert!(
            info.contains("0000000000000000 - 00000000003fffff (4 MB)"),
            "{info}"
        );
        assert!(
            info.contains("0000000000800000 - 00000000009fffff (2 MB)"),
            "{info}"
        );
    }
}

#[test]
fn s390x_dump_on_512_byte_sectors() {
    if !test_tier::slow("runs the s390x agent under qemu-user") {
        return;
    }
    dump_and_verify(512);
}

#[test]
fn s390x_dump_on_4096_byte_sectors() {
    if !test_tier::slow("runs the s390x agent under qemu-user") {
        return;
    }
    dump_and_verify(4096);
}

#[test]
fn s390x_refuses_a_bad_checksum_and_writes_nothing() {
    if !test_tier::slow("runs the s390x agent under qemu-user") {
        return;
    }
    for bin in s390x_agents() {
        let w = World::new(512, spec());
        // Flip one byte of the checksummed block at the start of the partition.
        let at = w.layout.dump_area().start + 100;
        w.write_image(at, &[0xff]);
        let before = w.snapshot();
        let o = dump(&bin, &w, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains("Dump failed: ") && err.contains("checksum"),
            "{err}"
        );
        assert_eq!(assert_same_except(&before, &w.image, &[]), 0);
    }
}

#[test]
fn s390x_panic_traps_in_tool_mode() {
    if !test_tier::slow("runs the s390x agent under qemu-user") {
        return;
    }
    // The musl build aborts immediately on panic: a trap (SIGILL). Only
    // PID 1 installs the handler that turns it into `Dump failed` and a
    // power-off (proved by `cargo xtask boot` with zfcpdump.test_panic=1);
    // tool mode just dies of the signal. The glibc build (panic=abort with
    // std's panic runtime) runs the panic hook, which says where and exits
    // 1. Either way nothing is written.
    for bin in s390x_agents() {
        let w = World::new(512, spec());
        w.write_root("proc/cmdline", "zfcpdump.test_panic=1\n");
        let before = w.snapshot();
        let o = dump(&bin, &w, &[]);
        if is_glibc(&bin) {
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{o:?}");
            assert!(
                err.contains("Dump failed: agent crashed (panic at ") && err.contains("deliberate"),
                "{err}"
            );
        } else {
            assert_eq!(o.status.signal(), Some(libc::SIGILL), "{o:?}");
        }
        assert_eq!(assert_same_except(&before, &w.image, &[]), 0);
    }
}

#[test]
fn s390x_elided_dump_matches_the_host_build() {
    if !test_tier::slow("runs the s390x agent under qemu-user") {
        return;
    }
    // Zero-page elision on the big-endian build writes the same bytes as on
    // the host, whose output filtered.rs reads back with independent
    // readers.
    for bin in s390x_agents() {
        let spec = spec().zero_fraction(0.5);
        let mut extracted = Vec::new();
        for s390x in [true, false] {
            let w = World::new(512, spec.clone());
            let conf = w.dir.path().join("zfcpdump.conf");
            std::fs::write(&conf, "zero_page_elision = true\n").unwrap();
            if s390x {
                let conf_arg = format!("--config={}", conf.display());
                let o = dump(&bin, &w, &["--hsa-size=0x200000", &conf_arg]);
                let err = String::from_utf8_lossy(&o.stderr);
                assert_eq!(o.status.code(), Some(0), "{err}");
                assert_in_order(
                    &err,
                    &[
                        "filtered layout: ",
                        "copy HSA-backed range",
                        "HSA release (simulated",
                        "write ELF header block (last)",
                        "filtered: dump level ",
                        "\nDump successful\n",
                    ],
                );
            } else {
                let mut env = w.env();
                env.config = Some(conf);
                env.hsa_size = Some(2 * MIB);
                zfcpdump_agent::run(&env).unwrap();
            }
            let out = w.dir.path().join("dump.elf");
            zfcpdump_disk::extract::extract(&w.image, &out).unwrap();
            extracted.push(std::fs::read(&out).unwrap());
        }
        assert!(extracted[0].len() < spec.memory_size() as usize * 3 / 4);
        assert!(extracted[0] == extracted[1], "s390x and host builds differ");
    }
}
