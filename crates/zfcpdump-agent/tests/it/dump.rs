//! End-to-end dumps through the library on zipl-style images: the result,
//! the bytes outside the dump area, the order of operations, and refusals.

use crate::common::*;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use zfcpdump_agent::disk::DumpTarget;
use zfcpdump_agent::error::DumpStep;
use zfcpdump_agent::{report, run, run_with};
use zfcpdump_disk::status::{State, inspect};
use zfcpdump_format::busy::BUSY_MARKER;
use zfcpdump_format::elf::{SeekReader, Vmcore};
use zfcpdump_format::plan::{CopyStep, copy_plan};

/// Bytes of the vmcore that the plan takes from the HSA for `hsa_size`.
fn expected_hsa_bytes(w: &World, hsa_size: u64) -> u64 {
    let mut f = File::open(&w.vmcore).unwrap();
    let len = w.vmcore_len();
    let vm = Vmcore::read(&mut SeekReader::new(&mut f), len).unwrap();
    copy_plan(&vm.phdrs, len, hsa_size)
        .unwrap()
        .iter()
        .map(|s| match s {
            CopyStep::Copy {
                start,
                end,
                hsa: true,
            } => end - start,
            _ => 0,
        })
        .sum()
}

fn check_complete(w: &World) {
    assert_dump_is_vmcore(w);
    let r = inspect(&w.image).unwrap();
    match r.state {
        State::Complete(s) => {
            assert_eq!(s.cpus, 3);
            assert_eq!(s.extent, w.vmcore_len());
        }
        other => panic!("zfcpdump-disk status says {other:?}"),
    }
    // The stored checksum is the one over the first block, which is now the
    // ELF header page (the agent's own validation accepts the disk again).
    let mut f = File::open(&w.image).unwrap();
    let len = f.metadata().unwrap().len();
    let disk = zfcpdump_agent::disk::read_metadata(&mut f, len).unwrap();
    let first = w.read_image(disk.sb.csum_area());
    assert_eq!(&first[..4], b"\x7fELF");
    assert_eq!(
        disk.sb.csum,
        zfcpdump_format::csum::dump_csum(&first) as u64
    );
}

fn dump_on(sector_size: u32) {
    let w = World::new(sector_size, spec());
    let before = w.snapshot();
    let mut env = w.env();
    env.hsa_size = Some(2 * MIB);
    let s = run(&env).unwrap_or_else(|e| panic!("{e}\n{}", env.log.captured()));
    assert_eq!(s.bytes, w.vmcore_len());
    assert_eq!(s.partition, 1);
    assert_eq!(s.cpus, 3);
    assert!(s.hsa_simulated);
    assert_eq!(s.hsa_bytes, expected_hsa_bytes(&w, 2 * MIB));
    assert!(
        s.hsa_bytes > MIB,
        "the low range and the kernel image are partly HSA-backed"
    );
    check_complete(&w);
    let changed = assert_same_except(&before, &w.image, &w.allowed_after_dump());
    assert!(changed > 0);

    let log = env.log.captured();
    assert!(
        log.contains(&format!("{sector_size}-byte logical blocks")),
        "{log}"
    );
    assert_in_order(
        &log,
        &[
            "busy marker written",
            "copy HSA-backed range",
            "HSA release (simulated",
            "copy range",
            "copy ELF header block (last) 0x0..0x1000",
            "(100%)",
        ],
    );
    // Every HSA-backed copy comes before the release, none after.
    let release = log.find("HSA release").unwrap();
    assert!(!log[release..].contains("copy HSA-backed"), "{log}");
    // The default 10 s interval on a small dump: only the final line.
    assert_eq!(log.matches("progress: ").count(), 1, "{log}");
}

#[test]
fn dump_to_512_byte_sector_image() {
    dump_on(512);
}

#[test]
fn dump_to_4096_byte_sector_image() {
    dump_on(4096);
}

#[test]
fn sector_size_option_is_honoured() {
    let w = World::new(4096, spec());
    let before = w.snapshot();
    let mut env = w.env();
    env.sector_size = Some(512);
    let e = run(&env).unwrap_err();
    assert_eq!(e.step, DumpStep::Partition, "{e}");
    assert!(e.to_string().contains("tried 512-byte blocks"), "{e}");
    assert_eq!(assert_same_except(&before, &w.image, &[]), 0);
    env.sector_size = Some(4096);
    run(&env).unwrap();
    check_complete(&w);
}

#[test]
fn zcore_hsa_is_read_and_released() {
    let w = World::new(512, spec());
    // zcore prints the size as bare hex.
    w.write_root("sys/kernel/debug/zcore/hsa", "180000\n");
    let env = w.env();
    let s = run(&env).unwrap();
    assert!(!s.hsa_simulated);
    assert_eq!(s.hsa_size, 0x180000);
    assert_eq!(s.hsa_bytes, expected_hsa_bytes(&w, 0x180000));
    assert_eq!(
        std::fs::read_to_string(w.root.join("sys/kernel/debug/zcore/hsa")).unwrap(),
        "0"
    );
    let log = env.log.captured();
    assert_in_order(
        &log,
        &[
            "HSA size 0x180000",
            "copy HSA-backed",
            "HSA released (wrote 0",
            "copy range",
        ],
    );
    check_complete(&w);
}

#[test]
fn no_hsa_still_writes_header_last() {
    let w = World::new(512, spec());
    let env = w.env();
    let s = run(&env).unwrap();
    assert_eq!((s.hsa_size, s.hsa_bytes), (0, 0));
    let log = env.log.captured();
    assert!(!log.contains("copy HSA-backed"), "{log}");
    assert_in_order(
        &log,
        &[
            "HSA release: no",
            "copy range",
            "copy ELF header block (last)",
            "(100%)",
        ],
    );
    check_complete(&w);
}

#[test]
fn progress_interval_from_config() {
    let w = World::new(512, spec());
    w.write_root("etc/zfcpdump.conf", "progress_interval_s = 0\n");
    let env = w.env();
    run(&env).unwrap();
    let log = env.log.captured();
    // One line per 1 MiB buffer (about 7), the last one at 100%.
    assert!(log.matches("progress: ").count() >= 7, "{log}");
    let last = log.lines().rfind(|l| l.starts_with("progress: ")).unwrap();
    assert!(
        last.contains("(100%)") && last.contains("ETA 0 s"),
        "{last}"
    );
}

#[test]
fn second_dump_overwrites_the_first() {
    let w = World::new(512, spec());
    run(&w.env()).unwrap();
    // A different vmcore on the same disk: the csum of the first dump is valid.
    let spec2 = spec().seed(99).cpus(2);
    write_vmcore(&spec2, &w.vmcore);
    let w2 = World { spec: spec2, ..w };
    run(&w2.env()).unwrap();
    assert_dump_is_vmcore(&w2);
}

#[test]
fn vmcore_larger_than_dump_area_is_refused_before_writing() {
    // 16 MiB of memory does not fit the ~14 MiB dump area.
    let w = World::new(512, spec().ranges(vec![(0, 16 * MIB)]));
    let before = w.snapshot();
    let env = w.env();
    let e = run(&env).unwrap_err();
    assert_eq!(e.step, DumpStep::SizeCheck);
    let msg = e.to_string();
    assert!(
        msg.starts_with("size check: Disk too small: the vmcore is "),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "the dump area holds {} bytes",
            w.layout.superblock.dump_size
        )),
        "{msg}"
    );
    assert_eq!(
        assert_same_except(&before, &w.image, &[]),
        0,
        "nothing may be written"
    );
    assert!(!env.log.captured().contains("busy marker written"));
}

/// Corrupts the image, then checks the agent refuses with a Metadata error
/// and writes nothing.
fn refused_untouched(w: &World, expect: &str) {
    let before = w.snapshot();
    let e = run(&w.env()).unwrap_err();
    assert_eq!(e.step, DumpStep::Metadata, "{e}");
    assert!(e.to_string().contains(expect), "{e}");
    assert_eq!(
        assert_same_except(&before, &w.image, &[]),
        0,
        "nothing may be written"
    );
}

#[test]
fn wrong_mbr_magic_is_refused() {
    let w = World::new(512, spec());
    w.write_image(0, b"zIPX");
    refused_untouched(&w, "MBR magic is 7a495058 ('zIPX'), expected 'zIPL'");
}

#[test]
fn wrong_boot_info_is_refused() {
    let w = World::new(512, spec());
    w.write_image(0x75, &[0]); // bp_type: not a dump
    refused_untouched(&w, "prepared for IPL");
}

#[test]
fn wrong_superblock_magic_is_refused() {
    let w = World::new(512, spec());
    w.write_image(w.layout.sb_offset, b"ZFCPDUMQ");
    refused_untouched(&w, "dump superblock magic is 0x5a46435044554d51");
}

#[test]
fn bad_checksum_is_refused() {
    let w = World::new(4096, spec());
    // A byte in the checksummed block without a checksum update.
    w.write_image(w.layout.dump_area().start + 100, &[1]);
    refused_untouched(
        &w,
        "dump superblock checksum mismatch: stored 0x12345678, computed 0x13345678",
    );
}

#[test]
fn dump_area_over_the_superblock_is_refused() {
    let w = World::new(512, spec());
    // A (csum-valid) superblock whose dump area covers itself.
    let mut sb = w.layout.superblock;
    sb.dump_size = sb.part_size;
    w.write_image(w.layout.sb_offset, &sb.to_bytes());
    refused_untouched(&w, "overlaps sector 0 or the superblock");
}

#[test]
fn no_matching_partition_is_refused() {
    let w = World::new(512, spec());
    // Partition 1 one block shorter than the superblock says.
    let mut s0 = w.read_image(0..512);
    let n = u32::from_le_bytes(s0[0x1ca..0x1ce].try_into().unwrap()) - 1;
    s0[0x1ca..0x1ce].copy_from_slice(&n.to_le_bytes());
    w.write_image(0, &s0);
    let before = w.snapshot();
    let e = run(&w.env()).unwrap_err();
    assert_eq!(e.step, DumpStep::Partition);
    let msg = e.to_string();
    assert!(
        msg.contains("no partition starts at byte 0x100000"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("partition 1: start 2048 size {n} blocks")),
        "{msg}"
    );
    assert_eq!(assert_same_except(&before, &w.image, &[]), 0);
}

#[test]
fn malformed_vmcores_get_clear_errors_and_nothing_is_written() {
    let w = World::new(512, spec());
    let good = std::fs::read(&w.vmcore).unwrap();
    let before = w.snapshot();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            good[..good.len() - 4096].to_vec(),
            "extends past end of file",
        ),
        (vec![0u8; 10], "smaller than an ELF header"),
        (
            b"this is not an ELF file at all, just some text padding it out to 64+".to_vec(),
            "not an ELF file",
        ),
        (
            {
                let mut g = good.clone();
                g[19] = 62; // EM_X86_64
                g
            },
            "ELF machine is 62, expected 22 (EM_S390)",
        ),
        (
            {
                let mut g = good.clone();
                g[5] = 1; // little-endian
                g
            },
            "big-endian",
        ),
    ];
    for (bytes, expect) in cases {
        std::fs::write(&w.vmcore, &bytes).unwrap();
        let e = run(&w.env()).unwrap_err();
        assert_eq!(e.step, DumpStep::Vmcore, "{e}");
        let msg = e.to_string();
        assert!(msg.contains("is not a usable s390x vmcore: "), "{msg}");
        assert!(msg.contains(expect), "{msg}");
    }
    assert_eq!(assert_same_except(&before, &w.image, &[]), 0);
    // A missing source names the file and the errno in words.
    std::fs::remove_file(&w.vmcore).unwrap();
    let e = run(&w.env()).unwrap_err();
    assert_eq!(e.step, DumpStep::Vmcore);
    assert!(
        e.to_string()
            .ends_with("(No such file or directory (os error 2))"),
        "{e}"
    );
}

/// The dump disk, failing every write that touches the dump area past
/// `fail_from` with ENOSPC: an I/O error in the middle of the copy.
struct Faulty {
    file: File,
    fail_from: u64,
    fail_to: u64,
    failed: bool,
}

impl DumpTarget for Faulty {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        if end > self.fail_from && offset < self.fail_to {
            self.failed = true;
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        self.file.write_all_at(buf, offset)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}

#[test]
fn io_error_mid_copy_leaves_a_busy_dump() {
    let w = World::new(512, spec());
    let before = w.snapshot();
    let env = w.env();
    let area = w.layout.dump_area();
    let result = run_with(&env, |file| Faulty {
        file,
        fail_from: area.start + 3 * MIB,
        fail_to: area.end,
        failed: false,
    });
    let e = result.as_ref().unwrap_err();
    assert_eq!(e.step, DumpStep::Copy);
    assert_eq!(e.errno(), Some(libc::ENOSPC));
    assert!(
        e.to_string()
            .ends_with("(No space left on device (os error 28))"),
        "{e}"
    );
    report(&result, &env.log);
    let log = env.log.captured();
    assert!(log.contains("\nDump failed: copy: writing "), "{log}");
    assert!(log.contains("\npeak RSS: "), "{log}");
    assert!(
        !log.contains("copy ELF header block"),
        "the header must not be reached: {log}"
    );

    // The partition starts with the busy marker and never parses as ELF; the
    // checksum covers the marker, so the disk reads as an interrupted dump.
    assert_eq!(w.read_image(area.start..area.start + 14), BUSY_MARKER);
    let mut f = File::open(&w.image).unwrap();
    assert!(
        Vmcore::read(
            &mut SeekReader::with_base(&mut f, area.start),
            area.end - area.start
        )
        .is_err()
    );
    assert_eq!(inspect(&w.image).unwrap().state, State::Incomplete);
    // Written so far: the marker, the copied ranges, the csum field.
    assert_same_except(&before, &w.image, &w.allowed_after_dump());
}

#[test]
fn cmdline_overrides_are_used_when_present() {
    let w = World::new(512, spec());
    // Paths under the root: the disk as /dev/sdz, the vmcore elsewhere.
    std::fs::rename(&w.image, w.root.join("dev/sdz")).unwrap();
    std::fs::rename(&w.vmcore, w.root.join("vmcore.elf")).unwrap();
    w.write_root(
        "proc/cmdline",
        "root=/dev/ram0 dump_debug=3 zfcpdump.source=/vmcore.elf zfcpdump.disk=/dev/sdz zfcpdump.hsa_size=0x100000\n",
    );
    let mut env = zfcpdump_agent::Env::new(&w.root);
    env.log = zfcpdump_agent::log::Log::capture();
    let s = run(&env).unwrap_or_else(|e| panic!("{e}\n{}", env.log.captured()));
    assert_eq!(s.disk, w.root.join("dev/sdz"));
    assert_eq!(s.source, w.root.join("vmcore.elf"));
    assert!(s.hsa_simulated);
    assert_eq!(s.hsa_size, 0x100000);
    let log = env.log.captured();
    assert!(
        log.contains("cmdline: root=/dev/ram0 dump_debug=3"),
        "trace on: {log}"
    );
    assert!(
        log.contains("test override zfcpdump.disk=/dev/sdz"),
        "{log}"
    );
    assert!(
        log.contains("test override zfcpdump.source=/vmcore.elf"),
        "{log}"
    );
}

#[test]
fn cli_debug_level_wins_over_cmdline() {
    let w = World::new(512, spec());
    w.write_root("proc/cmdline", "dump_debug=3\n");
    let mut env = w.env();
    env.debug = Some(1);
    let result = run(&env);
    report(&result, &env.log);
    // Errors only: the verdict and peak RSS, nothing else.
    let log = env.log.captured();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert_eq!(lines[0], "Dump successful");
    assert!(
        lines[1].starts_with("peak RSS: ") && lines[1].ends_with(" KiB"),
        "{log}"
    );
}

#[test]
fn missing_disk_times_out() {
    let w = World::new(512, spec());
    w.write_root("etc/zfcpdump.conf", "device_timeout_s = 1\n");
    let mut env = w.env();
    env.disk = Some(w.dir.path().join("nope.img"));
    let t = std::time::Instant::now();
    let e = run(&env).unwrap_err();
    assert!(t.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(e.step, DumpStep::Disk);
    assert!(
        e.to_string()
            .contains("did not appear within 1 s (No such file or directory"),
        "{e}"
    );
}

#[test]
fn broken_config_falls_back_to_defaults_but_explicit_config_must_be_valid() {
    let w = World::new(512, spec());
    w.write_root("etc/zfcpdump.conf", "device_timeout = 5\n");
    let env = w.env();
    run(&env).unwrap();
    assert!(
        env.log
            .captured()
            .contains("warning: /etc/zfcpdump.conf line 1: unknown key 'device_timeout'")
    );
    let mut env = w.env();
    env.config = Some(w.root.join("etc/zfcpdump.conf"));
    let e = run(&env).unwrap_err();
    assert_eq!(e.step, DumpStep::Config);
}
