//! The real s390-tools against our formats: zgetdump 2.16 (qemu-user) must read
//! a generated vmcore, and real zipl 2.16 (in a qemu-system-s390x guest) must
//! write the same metadata as `zfcpdump-disk prepare` for the same geometry.
//!
//! Both are in the slow tier; there, a missing qemu-system-s390x fails.
//! Work files are kept in
//! `<target>/zfcpdump/s390tools-test/` for inspection.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use zfcpdump_lab::readers::zgetdump::Zgetdump;
use zfcpdump_lab::zipl::{self, GEOMETRIES, Geometry, ZiplJob, read_at};

fn root() -> PathBuf {
    zfcpdump_builder::util::project_root()
}

/// The stage cache that `cargo xtask` uses too.
fn cache() -> PathBuf {
    zfcpdump_builder::util::cache_dir(&root())
}

fn work_dir(name: &str) -> PathBuf {
    let d = cache().join("s390tools-test").join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// `cargo run -q -p PKG -- ARGS`, stdout returned; panics with the output.
fn cargo_run(pkg: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .args(["run", "-q", "-p", pkg, "--"])
        .args(args)
        .current_dir(root())
        .output()
        .expect("run cargo");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "cargo run -p {pkg} -- {args:?} failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// PT_LOAD ranges from `vmcore-fixture --print-layout`.
fn fixture_ranges(layout: &str) -> Vec<std::ops::Range<u64>> {
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    layout
        .lines()
        .filter(|l| l.starts_with("LOAD "))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let paddr = hex(w[w.iter().position(|x| *x == "paddr").unwrap() + 1]);
            let size = hex(w[w.iter().position(|x| *x == "size").unwrap() + 1]);
            paddr..paddr + size
        })
        .collect()
}

#[test]
fn zgetdump_reads_generated_vmcores() {
    if !test_tier::slow("runs zgetdump under qemu-user") {
        return;
    }
    let t = Instant::now();
    let z = Zgetdump::from_cache(&cache(), false).unwrap();
    println!("sysroot ready in {:.1}s", t.elapsed().as_secs_f64());
    let dir = work_dir("zgetdump");
    for (name, args, cpus) in [
        ("small", vec!["--cpus", "3", "--seed", "5"], 3),
        ("hsa", vec!["--preset", "hsa", "--cpus", "1", "--no-vx"], 1),
    ] {
        let vmcore = dir.join(format!("{name}.vmcore"));
        let mut a = args.clone();
        a.extend(["--print-layout", vmcore.to_str().unwrap()]);
        let ranges = fixture_ranges(&cargo_run("vmcore-fixture", &a));
        assert!(!ranges.is_empty());
        let mem: u64 = ranges.iter().map(|r| r.end - r.start).sum();

        let t = Instant::now();
        let info = z.info(&vmcore).unwrap();
        println!(
            "{name}: zgetdump -i in {:.1}s:\n{}",
            t.elapsed().as_secs_f64(),
            info.text
        );
        assert_eq!(info.format, "elf", "{}", info.text);
        assert_eq!(info.cpus, cpus, "{}", info.text);
        assert_eq!(info.memory_map, ranges, "{}", info.text);
        assert_eq!(info.memory_bytes(), mem);
        assert_eq!(
            info.memory_range_mib,
            ranges.last().unwrap().end >> 20,
            "{}",
            info.text
        );

        // What the e2e hands zgetdump: the dump partition's bytes, i.e. the
        // vmcore at offset 0 followed by the rest of the (zeroed) dump area.
        let part = dir.join(format!("{name}.partition"));
        fs::copy(&vmcore, &part).unwrap();
        let f = fs::OpenOptions::new().write(true).open(&part).unwrap();
        f.set_len(f.metadata().unwrap().len() + (8 << 20)).unwrap();
        let pinfo = z.info(&part).unwrap();
        assert_eq!(
            (pinfo.cpus, &pinfo.memory_map),
            (cpus, &ranges),
            "{}",
            pinfo.text
        );

        let copy = dir.join(format!("{name}.zgetdump.elf"));
        z.copy(&vmcore, &copy).unwrap();
        let cinfo = z.info(&copy).unwrap();
        assert_eq!(
            (cinfo.cpus, &cinfo.memory_map),
            (cpus, &ranges),
            "{}",
            cinfo.text
        );
    }
    // Not a dump: zgetdump's refusal must surface as an error with its message.
    let junk = dir.join("zeros");
    fs::write(&junk, vec![0u8; 1 << 16]).unwrap();
    let e = format!("{:#}", z.info(&junk).unwrap_err());
    assert!(e.contains("zgetdump -i"), "{e}");
}

// ---------------------------------------------------------------------------
// zipl vs zfcpdump-disk prepare
// ---------------------------------------------------------------------------

/// The default profile's kernel (with virtio-scsi), built through xtask's
/// own cache (a no-op when `cargo xtask dist` ran before), or
/// ZFCPDUMP_HELPER_KERNEL.
fn helper_kernel() -> PathBuf {
    if let Some(k) = std::env::var_os("ZFCPDUMP_HELPER_KERNEL") {
        return k.into();
    }
    let _g = crate::common::stage_cache_lock();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["dist", "--profile", "default", "--no-provision"])
        .current_dir(root())
        .output()
        .expect("run xtask");
    assert!(
        out.status.success(),
        "cargo xtask dist --profile default failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    root().join("dist/default/zfcpdump.image")
}

fn be64(b: &[u8], o: usize) -> u64 {
    u64::from_be_bytes(b[o..o + 8].try_into().unwrap())
}
fn be32(b: &[u8], o: usize) -> u64 {
    u32::from_be_bytes(b[o..o + 4].try_into().unwrap()) as u64
}
fn be16(b: &[u8], o: usize) -> u64 {
    u16::from_be_bytes(b[o..o + 2].try_into().unwrap()) as u64
}
fn le32(b: &[u8], o: usize) -> u64 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as u64
}

/// The superblock checksum: s390 CKSM (32-bit one's-complement sum with
/// end-around carry) of the big-endian words, seeded with 0x12345678.
/// Written here from the reference, independently of zfcpdump-format.
fn cksm(block: &[u8]) -> u64 {
    let mut sum: u32 = 0x1234_5678;
    for w in block.chunks(4) {
        let (s, carry) = sum.overflowing_add(u32::from_be_bytes(w.try_into().unwrap()));
        sum = s.wrapping_add(carry as u32);
    }
    sum as u64
}

/// Every metadata field of a zipl-prepared disk, decoded from raw bytes (not
/// through zfcpdump-format, so the two implementations check each other).
fn metadata(disk: &Path, bs: u64) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = Vec::new();
    let mut num = |name: &str, v: u64| f.push((name.to_string(), format!("{v:#x}")));
    let s0 = read_at(disk, 0, bs as usize).unwrap();
    num("mbr.magic", be32(&s0, 0));
    num("mbr.version", be32(&s0, 4));
    num("mbr.reserved[8..16]", be64(&s0, 8));
    let pt_block = be64(&s0, 0x10);
    num("mbr.program_table.blockno", pt_block);
    num("mbr.program_table.size", be16(&s0, 0x18));
    num("mbr.program_table.blockct", be16(&s0, 0x1a));
    num("mbr.program_table.reserved", be32(&s0, 0x1c));
    num("boot_info.magic", be32(&s0, 0x70));
    num("boot_info.version", s0[0x74] as u64);
    num("boot_info.bp_type", s0[0x75] as u64);
    num("boot_info.dev_type", s0[0x76] as u64);
    num("boot_info.flags", s0[0x77] as u64);
    let sb_off = be64(&s0, 0x78);
    num("boot_info.sb_offset", sb_off);
    let nonzero = |b: &[u8]| b.iter().filter(|&&x| x != 0).count() as u64;
    num(
        "sector0[0x20..0x70] nonzero bytes",
        nonzero(&s0[0x20..0x70]),
    );
    num(
        "sector0[0x80..0x1be] nonzero bytes",
        nonzero(&s0[0x80..0x1be]),
    );
    for slot in 0..4 {
        let e = &s0[0x1be + 16 * slot..0x1be + 16 * (slot + 1)];
        num(&format!("dos[{slot}].boot"), e[0] as u64);
        num(&format!("dos[{slot}].chs_start"), be32(e, 0) & 0xff_ffff);
        num(&format!("dos[{slot}].type"), e[4] as u64);
        num(&format!("dos[{slot}].chs_end"), be32(e, 4) & 0xff_ffff);
        num(&format!("dos[{slot}].start_lba"), le32(e, 8));
        num(&format!("dos[{slot}].num_blocks"), le32(e, 12));
    }
    num("dos.signature", be16(&s0, 0x1fe));
    if bs > 512 {
        num("block0[0x200..] nonzero bytes", nonzero(&s0[0x200..]));
    }

    let sb = read_at(disk, sb_off, 72).unwrap();
    let names = [
        "magic",
        "version",
        "part_start",
        "part_size",
        "dump_offset",
        "dump_size",
        "csum_offset",
        "csum_size",
        "csum",
    ];
    for (i, n) in names.iter().enumerate() {
        num(&format!("sb.{n}"), be64(&sb, 8 * i));
    }
    let part_start = be64(&sb, 16);
    let csum_area = read_at(disk, part_start + be64(&sb, 48), 4096).unwrap();
    num(
        "csum over part_start+csum_offset (computed)",
        cksm(&csum_area),
    );
    let head = read_at(disk, part_start, 64 << 10).unwrap();
    num("partition[0..64K] nonzero bytes", nonzero(&head));

    let pt = read_at(disk, pt_block * bs, 512).unwrap();
    num("program_table.magic", be32(&pt, 0));
    num("program_table.header.reserved", be32(&pt, 4) | be64(&pt, 8));
    let ct_block = be64(&pt, 16);
    num("program_table[1].blockno", ct_block);
    num("program_table[1].size", be16(&pt, 24));
    num("program_table[1].blockct", be16(&pt, 26));
    num("program_table[32..] nonzero bytes", nonzero(&pt[32..]));
    let ct = read_at(disk, ct_block * bs, 32).unwrap();
    num("component_table.magic", be32(&ct, 0));
    num("component_table.type", ct[4] as u64);
    num(
        "component_table.header[5..32] nonzero bytes",
        nonzero(&ct[5..]),
    );
    f
}

/// zipl's reserve, as toolchain.md states it from the checked runs; the
/// initrd terms only with an initrd (a built-in initramfs has none).
fn expected_dump_size(g: &Geometry, image: u64, initrd: Option<u64>) -> u64 {
    let bs = g.sector_size as u64;
    let reserve = 0x10000
        + initrd.map_or(0, |i| i.div_ceil(bs) + 1)
        + (image - 0x10000).div_ceil(bs)
        + 896u64.div_ceil(bs)
        + 8;
    (g.part_size / bs - reserve) * bs
}

#[test]
fn real_zipl_writes_what_zfcpdump_disk_prepare_writes() {
    if !test_tier::slow("boots real zipl under qemu-system-s390x") {
        return;
    }
    test_tier::require(
        std::process::Command::new("qemu-system-s390x")
            .arg("--version")
            .output()
            .is_ok(),
        "qemu-system-s390x (Debian: qemu-system-misc)",
    );
    let kernel = helper_kernel();
    let dir = work_dir("zipl");
    // The dump tool zipl installs: a real s390x kernel (zipl checks it), and
    // an initrd of the size toolchain.md's checked runs used.
    let image = kernel.clone();
    let initrd = dir.join("zfcpdump-initrd");
    fs::write(&initrd, vec![0x5au8; 64_396]).unwrap();
    let image_size = fs::metadata(&image).unwrap().len();

    let mut report = String::new();
    let mut differ = Vec::new();
    // With an initrd, and with the image alone, as zipl installs a dump
    // tool whose initramfs is built in.
    let cases = GEOMETRIES
        .iter()
        .flat_map(|g| [(g, Some(initrd.as_path())), (g, None)]);
    for (g, rd) in cases {
        let tag = format!(
            "{}-{}",
            g.name,
            if rd.is_some() { "initrd" } else { "image-only" }
        );
        let zipl_disk = dir.join(format!("zipl-{tag}.img"));
        let prep_disk = dir.join(format!("prepare-{tag}.img"));
        let res = zipl::zipl_prepare(
            &cache(),
            &ZiplJob {
                helper_kernel: &kernel,
                dump_image: &image,
                dump_initrd: rd,
                disk: &zipl_disk,
                disk_size: g.disk_size,
                sector_size: g.sector_size,
                part_start: g.part_start,
                part_size: g.part_size,
                offline: false,
            },
        )
        .unwrap();
        println!(
            "{}-byte disk: zipl guest ran {:.1}s; zipl said:\n{}",
            g.sector_size,
            res.elapsed.as_secs_f64(),
            res.zipl_output
        );
        assert!(
            res.zipl_output.contains("Writing SCSI master boot record"),
            "{}",
            res.zipl_output
        );
        let size = g.disk_size.to_string();
        let sector = g.sector_size.to_string();
        let start = g.part_start.to_string();
        let psize = g.part_size.to_string();
        let mut args = vec![
            "prepare",
            prep_disk.to_str().unwrap(),
            "--size",
            &size,
            "--image",
            image.to_str().unwrap(),
            "--sector-size",
            &sector,
            "--part-start",
            &start,
            "--part-size",
            &psize,
        ];
        if let Some(rd) = rd {
            args.extend(["--initrd", rd.to_str().unwrap()]);
        }
        cargo_run("zfcpdump-disk", &args);
        let bs = g.sector_size as u64;
        let z = metadata(&zipl_disk, bs);
        let p = metadata(&prep_disk, bs);
        report.push_str(&format!(
            "\n{}-byte sectors, partition {:#x}+{} on {} bytes, image {image_size}, {}:\n",
            g.sector_size,
            g.part_start,
            g.part_size,
            g.disk_size,
            if rd.is_some() {
                "initrd 64396"
            } else {
                "no initrd"
            }
        ));
        for ((name, zv), (_, pv)) in z.iter().zip(&p) {
            let mark = if zv == pv { " " } else { "*" };
            report.push_str(&format!(
                "{mark} {name:48} zipl {zv:>12}  prepare {pv:>12}\n"
            ));
            if zv != pv {
                let d = |s: &str| i128::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
                differ.push(format!(
                    "{tag}: {name}: zipl {zv}, prepare {pv} (prepare - zipl = {})",
                    d(pv) - d(zv)
                ));
            }
        }
        // zipl must have left our partition table as written, and the
        // superblock must satisfy the documented reserve formula.
        let field = |m: &[(String, String)], n: &str| {
            let v = &m.iter().find(|(k, _)| k == n).unwrap().1;
            u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap()
        };
        assert_eq!(field(&z, "dos[0].start_lba"), g.part_start / bs);
        assert_eq!(field(&z, "dos[0].num_blocks"), g.part_size / bs);
        assert_eq!(
            field(&z, "sb.csum"),
            field(&z, "csum over part_start+csum_offset (computed)")
        );
        assert_eq!(
            field(&z, "sb.dump_size"),
            expected_dump_size(g, image_size, rd.map(|_| 64_396)),
            "zipl's dump_size differs from toolchain.md's reserve formula"
        );
    }
    println!("{report}");

    // Both refuse a 4K disk whose partition cannot hold zipl's 256 MiB reserve.
    let small = Geometry {
        name: "4k-too-small",
        disk_size: 64 << 20,
        sector_size: 4096,
        part_start: 0x100000,
        part_size: 51 << 20,
    };
    let e = zipl::zipl_prepare(
        &cache(),
        &ZiplJob {
            helper_kernel: &kernel,
            dump_image: &image,
            dump_initrd: Some(&initrd),
            disk: &dir.join(format!("zipl-{}.img", small.name)),
            disk_size: small.disk_size,
            sector_size: small.sector_size,
            part_start: small.part_start,
            part_size: small.part_size,
            offline: false,
        },
    )
    .unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("Partition too small for dump tool"), "{e}");
    assert!(e.contains("zipl-console.log"), "{e}");
    let out = Command::new(env!("CARGO"))
        .args(["run", "-q", "-p", "zfcpdump-disk", "--", "prepare"])
        .arg(dir.join(format!("prepare-{}.img", small.name)))
        .args([
            "--size",
            &small.disk_size.to_string(),
            "--sector-size",
            "4096",
        ])
        .args(["--part-size", &small.part_size.to_string()])
        .arg("--image")
        .arg(&image)
        .arg("--initrd")
        .arg(&initrd)
        .current_dir(root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("Partition too small for dump tool"),
        "zfcpdump-disk prepare accepted a partition that zipl refuses: {text}"
    );

    assert!(
        differ.is_empty(),
        "zfcpdump-disk prepare differs from real zipl:\n{}\n{report}",
        differ.join("\n")
    );
}
