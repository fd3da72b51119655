//! Cross-checks with real readers when they are on the machine: binutils'
//! `readelf`, and s390-tools' `zgetdump` 2.16 under qemu-user (see
//! shared/docs/toolchain.md). Each test says why it is skipped.

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
    if !have("readelf") {
        eprintln!("skipped: readelf (binutils) is not installed");
        return;
    }
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

/// Runs zgetdump 2.16 if `ZGETDUMP_ROOT` names a directory with
/// sbin/zgetdump and its s390x libraries (the `dpkg -x` tree from
/// toolchain.md) and qemu-s390x-static is installed.
#[test]
fn zgetdump_recognises_the_dump() {
    let Some(root) = std::env::var_os("ZGETDUMP_ROOT") else {
        eprintln!("skipped: ZGETDUMP_ROOT is not set (see shared/docs/toolchain.md)");
        return;
    };
    let root = Path::new(&root);
    if !root.join("sbin/zgetdump").exists() || !have("qemu-s390x-static") {
        eprintln!(
            "skipped: no {}/sbin/zgetdump or no qemu-s390x-static",
            root.display()
        );
        return;
    }
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
