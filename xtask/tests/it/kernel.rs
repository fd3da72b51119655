//! Integration tests of the kernel stage against the real kernel source and
//! cross compiler. They share the stage cache with `cargo xtask dist`, so
//! CI compiles each distinct kernel configuration once.

use crate::common::{child_profile, dist_args, root, text, xtask};

use std::path::{Path, PathBuf};
use std::{fs, time::SystemTime};

/// The `O=` directory named by `[kernel] up to date: .../arch/s390/boot/bzImage`.
/// The kernel record of an up-to-date run (beside the linked image it
/// names) and the shared `O=` directory it came from.
fn kernel_record(out: &str) -> (serde_json::Value, PathBuf) {
    let line = out
        .lines()
        .find(|l| l.contains("[kernel] up to date: "))
        .unwrap_or_else(|| panic!("no up-to-date line in:\n{out}"));
    let path = line.split("up to date: ").nth(1).unwrap();
    let image = Path::new(path.split(" (").next().unwrap());
    let rec: serde_json::Value =
        serde_json::from_slice(&fs::read(image.with_file_name("stage.json")).unwrap()).unwrap();
    let obj = PathBuf::from(rec["build_dir"].as_str().unwrap());
    (rec, obj)
}

#[test]
fn default_kernel_builds_and_second_run_does_no_kernel_work() {
    if !test_tier::slow("compiles the 6.1 kernel") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    let first = xtask(&["dist", "--no-provision"]);
    assert!(first.status.success(), "{}", text(&first));

    let second = xtask(&["dist", "--no-provision"]);
    let out = text(&second);
    assert!(second.status.success(), "{out}");
    assert!(!out.contains("compiling"), "second run compiled:\n{out}");
    assert!(
        !out.contains("configuring"),
        "second run configured:\n{out}"
    );

    let (rec, obj) = kernel_record(&out);
    let log_mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).unwrap();
    let before: SystemTime = log_mtime(&obj.join("make.log"));
    let third = xtask(&["dist", "--no-provision"]);
    assert!(third.status.success());
    assert_eq!(log_mtime(&obj.join("make.log")), before, "make ran again");

    let footprint = rec["footprint"].as_u64().unwrap();
    // 6.1's zfcpdump kernel ends at 0x6af000; any sane kernel is 2..16 MiB.
    assert!(
        (2 << 20..16 << 20).contains(&footprint),
        "footprint {footprint:#x}"
    );
    assert!(
        rec["release"].as_str().unwrap().starts_with("6.1."),
        "{rec}"
    );
    let dist_image = fs::read(root().join("dist/default/zfcpdump.image")).unwrap();
    assert_eq!(dist_image.len() as u64, rec["image_size"].as_u64().unwrap());
    assert_eq!(
        dist_image,
        fs::read(rec["image"].as_str().unwrap()).unwrap()
    );

    // The variant's .config, copied out beside its image.
    let cfg = fs::read_to_string(rec["config"].as_str().unwrap()).unwrap();
    for opt in [
        "CONFIG_CRASH_DUMP=y",
        "CONFIG_BLK_DEV_INITRD=y",
        "CONFIG_RD_GZIP=y",
    ] {
        assert!(
            cfg.lines().any(|l| l == opt),
            "{opt} missing from final .config"
        );
    }
    // The fixed build identity is what the image says about itself.
    let generated = obj.join("include/generated");
    let version = fs::read_to_string(generated.join("utsversion.h")).unwrap();
    assert!(
        version.contains("\"#1 SMP Mon Jan  1 00:00:00 UTC 2024\""),
        "{version}"
    );
    let compile = fs::read_to_string(generated.join("compile.h")).unwrap();
    assert!(
        compile.contains("LINUX_COMPILE_BY\t\"zfcpdump\""),
        "{compile}"
    );
    assert!(
        compile.contains("LINUX_COMPILE_HOST\t\"reproducible\""),
        "{compile}"
    );

    let plan = xtask(&["plan"]);
    assert!(
        text(&plan).contains("kernel: up to date"),
        "{}",
        text(&plan)
    );
}

#[test]
fn option_dropped_by_kconfig_fails_before_compiling() {
    if !test_tier::slow("configures the real kernel source") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    let dir = tempfile::tempdir().unwrap();
    // virtio's network driver sits under NETDEVICES, which
    // zfcpdump_defconfig leaves off (a dump tool has no network):
    // olddefconfig drops it.
    fs::write(dir.path().join("net-only.config"), "CONFIG_VIRTIO_NET=y\n").unwrap();
    let profile = child_profile(
        dir.path(),
        "dropped",
        "default",
        "[kernel]\nfragments = [\"./net-only.config\"]\n",
    );
    let o = xtask(&[
        "dist",
        "--no-provision",
        "--profile",
        profile.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains(
            "CONFIG_VIRTIO_NET: requested y, final not set (requested by ./net-only.config:1)"
        ) || out.contains("CONFIG_VIRTIO_NET: requested y, final not set (requested by"),
        "{out}"
    );
    assert!(!out.contains("compiling"), "{out}");
    assert!(!root().join("dist/dropped").exists());
}

#[test]
fn malformed_profile_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("typo.toml");
    fs::write(
        &p,
        "[kernel]\nsource = { tarball = \"/x.tar.xz\" }\ndefconifg = \"x\"\n",
    )
    .unwrap();
    let o = xtask(&["plan", "--profile", p.to_str().unwrap()]);
    let out = text(&o);
    assert!(!o.status.success());
    assert!(out.contains("typo.toml"), "{out}");
    assert!(out.contains("line 3, column 1"), "{out}");
    assert!(out.contains("unknown field `defconifg`"), "{out}");
    assert!(out.contains("`defconfig`"), "{out}");
}

/// `_end` from vmlinux's symbol table: a second source for the footprint,
/// independent of the program headers that `kernel::footprint` reads.
fn end_symbol(vmlinux: &Path) -> u64 {
    use object::{Object, ObjectSymbol};
    let data = fs::read(vmlinux).unwrap();
    let file = object::File::parse(&*data).unwrap();
    file.symbols()
        .find(|s| s.name() == Ok("_end"))
        .unwrap_or_else(|| panic!("no _end in {}", vmlinux.display()))
        .address()
}

/// The lowest PT_LOAD's physical address: where the kernel image starts.
fn image_start(vmlinux: &Path) -> u64 {
    use object::elf;
    use object::read::elf::{FileHeader, ProgramHeader};
    let data = fs::read(vmlinux).unwrap();
    let hdr = elf::FileHeader64::<object::Endianness>::parse(&*data).unwrap();
    let e = hdr.endian().unwrap();
    hdr.program_headers(e, &*data)
        .unwrap()
        .iter()
        .filter(|p| p.p_type(e) == elf::PT_LOAD)
        .map(|p| p.p_paddr(e))
        .min()
        .unwrap()
}

/// The budget's kernel line on both kernels' real vmlinux files: 6.1's and
/// 6.12's (relocatable since 6.10, but still linked at 0x100000), the
/// footprint from the program headers equals `_end` from the symbols, in
/// whole pages, and the image starts at 0x100000. The builds come from the
/// shared stage cache (CI's dist steps made them).
#[test]
fn footprint_of_real_6_1_and_6_12_vmlinux_is_end_of_bss() {
    if !test_tier::slow("needs the 6.1 and 6.12 kernel builds") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    for (profile, release) in [("default", "6.1."), ("default-6.12", "6.12.")] {
        let o = xtask(&["dist", "--no-provision", "--profile", profile]);
        let out = text(&o);
        assert!(o.status.success(), "{profile}: {out}");
        let (rec, _) = kernel_record(&out);
        let rel = rec["release"].as_str().unwrap();
        assert!(rel.starts_with(release), "{profile}: release {rel}");
        let vmlinux = PathBuf::from(rec["vmlinux"].as_str().unwrap());
        let footprint = zfcpdump_builder::kernel::footprint(&vmlinux).unwrap();
        let end = end_symbol(&vmlinux);
        assert_eq!(
            footprint,
            end.next_multiple_of(4096),
            "{profile} ({rel}): footprint {footprint:#x}, _end {end:#x}"
        );
        assert_eq!(rec["footprint"].as_u64(), Some(footprint), "{profile}");
        assert_eq!(image_start(&vmlinux), 0x100000, "{profile} ({rel})");
        // The value checked by hand (toolchain.md) for this release.
        if profile == "default-6.12" && rel == "6.12.117" {
            assert_eq!(end, 0x6e3000, "{profile} ({rel})");
        }
        eprintln!("{profile} ({rel}): footprint {footprint:#x} = _end {end:#x}");
    }
}

/// A stand-in kernel tree whose kbuild says what ran: defconfig works,
/// olddefconfig prints 40 lines and, with `fail`, fails. No compile.
fn fake_kbuild(dir: &Path, fail: bool) -> PathBuf {
    let src = dir.join("linux");
    fs::create_dir_all(src.join("arch/s390/configs")).unwrap();
    fs::write(src.join("arch/s390/configs/zfcpdump_defconfig"), "").unwrap();
    let old = if fail {
        "\t@echo FAKE-FIRST-LINE\n\t@seq 1 40\n\t@false\n"
    } else {
        "\t@echo FAKE-KBUILD olddefconfig\n"
    };
    fs::write(
        src.join("Makefile"),
        // The tree's own path makes its content, and so its stage keys,
        // this run's: the stage cache is shared, the path enters no key.
        format!(
            "# {}\n%_defconfig:\n\t@echo FAKE-KBUILD $@\n\t@echo CONFIG_X=y > $(O)/.config\nolddefconfig:\n{old}",
            src.display()
        ),
    )
    .unwrap();
    child_profile(
        dir,
        "fake",
        "default",
        &format!("[kernel]\nsource = {{ dir = \"{}\" }}\n", src.display()),
    )
}

/// Build farms keep only the build's own log: `--verbose` streams make's
/// output there; without it, a failed make's whole output is in the error
/// (it held the last 30 lines, and -j puts the first error anywhere).
#[test]
fn verbose_streams_make_and_a_failure_shows_the_whole_output() {
    let d = tempfile::tempdir().unwrap();
    let p = fake_kbuild(d.path(), false);
    let out = d.path().join("out");
    let dist = |extra: &[&str]| xtask(&dist_args(p.to_str().unwrap(), &out, extra));
    // The stand-in configures (the stage writes what it requires into the
    // .config, and its olddefconfig keeps it) and has no bzImage rule: the
    // compile fails at once. Verbose first, so that configure runs in it.
    let loud = dist(&["--verbose"]);
    let t = text(&loud);
    assert!(!loud.status.success(), "{t}");
    assert!(t.contains("FAKE-KBUILD zfcpdump_defconfig"), "{t}");
    assert!(t.contains("FAKE-KBUILD olddefconfig"), "{t}");
    assert!(t.contains("its output is above"), "{t}");
    // Quiet: the makes that worked say nothing; the one that failed is
    // in the error whole.
    let quiet = dist(&[]);
    let t = text(&quiet);
    assert!(!quiet.status.success(), "{t}");
    assert!(!t.contains("FAKE-KBUILD"), "{t}");
    assert!(t.contains("No rule to make target"), "{t}");

    let d = tempfile::tempdir().unwrap();
    let p = fake_kbuild(d.path(), true);
    let o = xtask(&["dist", "--no-provision", "--profile", p.to_str().unwrap()]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("FAKE-FIRST-LINE"), "{t}");
    assert!(t.contains(" lines, also in "), "{t}");
}

/// `kernel.make_args` reaches make, and `LLVM` there changes the stage's
/// own `CC` (which make's command line would otherwise let win over
/// kbuild's clang) and the host check: clang and LLVM's tools, not the
/// cross gcc. `LLVM=<dir>/` names the tools by path, so stand-ins in a
/// temporary directory serve.
#[test]
fn make_args_reach_make_and_llvm_replaces_gcc() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("linux");
    fs::create_dir_all(src.join("arch/s390/configs")).unwrap();
    fs::write(src.join("arch/s390/configs/zfcpdump_defconfig"), "").unwrap();
    fs::write(
        src.join("Makefile"),
        format!(
            "# {}\n%_defconfig:\n\t@echo FAKE-KBUILD CC=[$(CC)] LLVM=[$(LLVM)] KCFLAGS=[$(KCFLAGS)]\n\t@false\n",
            src.display()
        ),
    )
    .unwrap();
    let llvm = d.path().join("llvm");
    fs::create_dir_all(&llvm).unwrap();
    let p = child_profile(
        d.path(),
        "llvm",
        "default",
        &format!(
            "[kernel]\nsource = {{ dir = \"{}\" }}\nmake_args = [\"LLVM={}/\", \"KCFLAGS=-g0\"]\n",
            src.display(),
            llvm.display()
        ),
    );
    let out = d.path().join("out");
    let dist = || xtask(&dist_args(p.to_str().unwrap(), &out, &["--verbose"]));
    // No LLVM yet: the preflight names its tools, and not the cross gcc.
    let o = dist();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    for tool in ["clang", "ld.lld", "llvm-objcopy"] {
        assert!(
            t.contains(&format!("{}/{tool}", llvm.display())),
            "{tool}: {t}"
        );
    }
    assert!(!t.contains("s390x-linux-gnu-gcc"), "{t}");
    // Stand-ins: the compiler answers --version.
    for tool in ["clang", "ld.lld", "llvm-ar", "llvm-nm", "llvm-objcopy"] {
        let f = llvm.join(tool);
        fs::write(&f, "#!/bin/sh\necho \"stand-in LLVM 99\"\n").unwrap();
        fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let o = dist();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    let line = t
        .lines()
        .find(|l| l.starts_with("FAKE-KBUILD"))
        .unwrap_or_else(|| panic!("make did not run: {t}"));
    assert!(
        line.contains(&format!("CC=[{}/clang -ffile-prefix-map=", llvm.display())),
        "{line}"
    );
    assert!(
        line.contains(&format!("LLVM=[{}/]", llvm.display())),
        "{line}"
    );
    assert!(line.contains("KCFLAGS=[-g0]"), "{line}");
}
