//! Cross-checks with real readers: binutils' `readelf` (fast tier; it comes
//! with gcc), and s390-tools' `zgetdump` 2.16 under qemu-user (slow tier:
//! `cargo xtask test` sets ZGETDUMP_ROOT to Debian 12's unpacked s390-tools).

use std::path::{Path, PathBuf};
use std::process::Command;

use vmcore_fixture::{Spec, write_vmcore};

/// A generated file, removed when dropped.
struct Tmp(PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn write_tmp(spec: &Spec, name: &str) -> Tmp {
    let file = format!("vmcore-fixture-ext-{}-{name}", std::process::id());
    let path = std::env::temp_dir().join(file);
    let f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    write_vmcore(spec, f).unwrap();
    Tmp(path)
}

fn have(cmd: &str) -> bool {
    Command::new(cmd).arg("--version").output().is_ok()
}

#[test]
fn readelf_reads_notes_and_loads() {
    test_tier::require(have("readelf"), "readelf (Debian: binutils)");
    for (i, spec) in [Spec::small().cpus(5), Spec::overlapping_kernel().vx(false)]
        .into_iter()
        .enumerate()
    {
        let path = write_tmp(&spec, &format!("readelf{i}.vmcore"));
        let o = Command::new("readelf")
            .args(["-W", "-h", "-l", "-n"])
            .arg(&path.0)
            .output()
            .unwrap();
        assert!(o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.trim().is_empty(), "readelf warns: {err}");
        let out = String::from_utf8_lossy(&o.stdout);
        let count = |s: &str| out.matches(s).count();
        assert!(out.contains("CORE (Core file)"));
        assert!(out.contains("IBM S/390"));
        assert!(out.contains("big endian"));
        let loads = spec.ranges.len() + usize::from(spec.kernel_image_load.is_some());
        assert_eq!(
            out.lines()
                .filter(|l| l.trim_start().starts_with("LOAD "))
                .count(),
            loads
        );
        assert_eq!(
            out.lines()
                .filter(|l| l.trim_start().starts_with("NOTE "))
                .count(),
            1
        );
        assert_eq!(count("NT_PRSTATUS"), spec.cpus as usize, "{out}");
        assert_eq!(count("NT_PRPSINFO"), 1);
        assert_eq!(count("NT_S390_PREFIX"), spec.cpus as usize);
        assert_eq!(
            count("NT_S390_VXRS_HIGH"),
            if spec.vx { spec.cpus as usize } else { 0 }
        );
        assert_eq!(count("VMCOREINFO"), 1);
    }
}

/// zgetdump 2.16 from `ZGETDUMP_ROOT` (a `dpkg -x` tree with sbin/zgetdump
/// and its s390x libraries) under qemu-s390x-static.
#[test]
fn zgetdump_recognises_the_dump() {
    if !test_tier::slow("runs zgetdump under qemu-user") {
        return;
    }
    let root = test_tier::env("ZGETDUMP_ROOT");
    let root = Path::new(&root);
    test_tier::require(
        root.join("sbin/zgetdump").exists(),
        &format!("{}/sbin/zgetdump", root.display()),
    );
    test_tier::require(
        have("qemu-s390x-static"),
        "qemu-s390x-static (Debian: qemu-user-static)",
    );
    for (i, spec) in [Spec::small(), Spec::with_hsa_range().cpus(9).vx(false)]
        .into_iter()
        .enumerate()
    {
        let path = write_tmp(&spec, &format!("zgetdump{i}.vmcore"));
        let o = Command::new("qemu-s390x-static")
            .arg("-L")
            .arg(root)
            .arg(root.join("sbin/zgetdump"))
            .arg("-i")
            .arg(&path.0)
            .output()
            .unwrap();
        // zgetdump -i prints its report on stderr.
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "zgetdump: {}: {out}", o.status);
        assert!(out.contains("Dump format........: elf"), "{out}");
        assert!(
            out.contains(&format!("CPU count (online).: {}", spec.cpus)),
            "{out}"
        );
        for &(start, size) in &spec.ranges {
            let line = format!("{:016x} - {:016x}", start, start + size - 1);
            assert!(out.contains(&line), "memory map has {line}: {out}");
        }
    }
}
