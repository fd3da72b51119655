//! `e2e`: the dump tool end to end under qemu-system-s390x, against the real
//! s390-tools.
//!
//! 1. Builds the qemu profile (the default plus virtio).
//! 2. Prepares a 512-byte-sector and a 4096-byte-sector disk with real
//!    `zipl --dumpto` (Debian's zipl 2.16 in a helper guest), with our qemu
//!    dist image and initrd as the dump tool, and checks that
//!    `zfcpdump-disk prepare` writes the same metadata.
//! 3. Makes the vmcores: one from `vmcore-fixture`, an independent one from
//!    QEMU's `dump-guest-memory` of a booted guest, and for step 5 another
//!    from `vmcore-fixture` with half its pages zero.
//! 4. Boots the qemu dist artifacts with `-m` equal to the budget for each
//!    disk and vmcore that fit, using the agent's test-only overrides (QEMU
//!    cannot IPL in FCP dump mode), and checks the disk, the console and the
//!    power-off. Then negative runs: a dump area too small, a disk without
//!    zipl metadata, a corrupted checksum; each must fail cleanly and leave
//!    the disk as it was.
//! 5. Zero-page elision on the real kernel: the qemu profile again with
//!    `--set agent.zero_page_elision=true`, published into the work directory
//!    (only the initramfs differs; `dist/qemu/` stays as it is), dumps a
//!    generated vmcore with half its pages zero onto the 4K disk. The memory
//!    read back from `zfcpdump-disk extract` through the ELF's program headers
//!    (elided tails read as zeros) must equal the vmcore's, and every zero page
//!    outside the lowcore must have been left out. The same for QEMU's dump.
//!    zgetdump 2.16 misreads `p_filesz < p_memsz`, so it does not check these
//!    runs.
//! 6. crash (Debian 12's s390x build, under qemu-user) opens the dumps of
//!    QEMU's vmcore, byte-exact and elided, with the qemu kernel's vmlinux:
//!    it must accept them, name the kernel release, and read all of physical
//!    memory with `rd -p` exactly as the vmcore holds it.
//!
//! Work files live in `<target>/zfcpdump/e2e/work/`, kept on failure (or with
//! `--keep`); the summary table goes to `<target>/zfcpdump/e2e/summary.txt`.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use zfcpdump_format::PAGE_SIZE;
use zfcpdump_format::elf::{PT_NOTE, ProgramHeader, SeekReader, Vmcore};
use zfcpdump_format::elide::LOWCORE_SIZE;
use zfcpdump_format::mbr::{BlockPtr, ZiplMbr};
use zfcpdump_format::superblock::{CSUM_FIELD_OFFSET, DumpSuperblock, SB_SIZE};

use crate::build::dist::{self, DistArgs, IMAGE, RD};
use crate::build::kernel;
use crate::build::profile::{self, ProfileArgs};
use crate::lab::guest::{self, Boot, Drive, Outcome};
use crate::lab::readers::crash::Crash;
use crate::lab::readers::sysroot::{self, DEBIAN_12};
use crate::lab::readers::zgetdump::Zgetdump;
use crate::lab::zipl::{self, GEOMETRIES, Geometry, ZiplJob, read_at};
use crate::{provision, util};

#[derive(Args, Clone, Debug)]
pub struct E2eArgs {
    /// Fail listing missing host packages instead of installing them
    #[arg(long)]
    pub no_provision: bool,
    /// Use only what `cargo xtask fetch` brought into the local caches
    #[arg(long)]
    pub offline: bool,
    /// Keep the work directory (disks, vmcores, console logs) after success
    #[arg(long)]
    pub keep: bool,
}

/// The profile whose kernel sees virtio disks.
const PROFILE: &str = "qemu";
/// Kill an agent boot after this long. A run takes seconds; the margin
/// covers a loaded 2-core CI machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// Memory of the guest whose memory QEMU dumps: the dump must fit the 4K
/// disk's dump area (about 148 MB) and not the 512-byte one (about 15 MB),
/// which makes it the "too small" case there.
const QEMU_GUEST_MEMORY: u64 = 64 << 20;
const QEMU_GUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Generated vmcore: 10 MiB of memory, 4 CPUs; it fits both dump areas.
const FIXTURE_ARGS: &[&str] = &["--size", "10M", "--cpus", "4", "--seed", "0xe2e"];
/// What turns the agent's zero-page elision on for the elided run.
const ELISION_SET: &str = "agent.zero_page_elision=true";
/// The elided run's vmcore: 16 MiB, half the pages zero, 4 CPUs, identity
/// mapped (the small preset has no kernel-image PT_LOAD, so p_vaddr ==
/// p_paddr). Its first range ([0, 12 MiB)) crosses the simulated HSA.
const ELIDED_FIXTURE_ARGS: &[&str] = &[
    "--size",
    "16M",
    "--cpus",
    "4",
    "--zero-fraction",
    "0.5",
    "--seed",
    "0xe2e",
];
/// Simulated HSA for the generated vmcore: splits its first range
/// ([0, 7.5 MiB)) into an HSA-backed part and the rest.
const FIXTURE_HSA: u64 = 4 << 20;
/// Simulated HSA for QEMU's dump: the 32 MiB of machines before z15.
const QEMU_DUMP_HSA: u64 = 32 << 20;
const CHUNK: usize = 1 << 20;

fn step(msg: impl AsRef<str>) {
    eprintln!("[e2e] {}", msg.as_ref());
}

/// A zipl-prepared disk, never booted: each run works on a copy.
struct Target<'g> {
    geometry: &'g Geometry,
    pristine: PathBuf,
    sb_offset: u64,
    sb: DumpSuperblock,
}

/// A vmcore the runs copy.
struct Source {
    name: &'static str,
    /// The vmcore file.
    file: PathBuf,
    /// A copy padded to whole 4 KiB blocks, attached as virtio-blk (/dev/vda):
    /// the guest never touches `file`.
    disk: PathBuf,
    size: u64,
    /// What the agent copies from a block device: the ELF extent.
    extent: u64,
    cpus: usize,
    /// PT_LOAD physical ranges, file order.
    ranges: Vec<Range<u64>>,
    hsa_size: u64,
    /// Within zgetdump 2.16's limits (e_phoff 64, p_vaddr == p_paddr).
    zgetdump: bool,
    /// The memory of a guest that ran the qemu profile's kernel: crash can
    /// read its dumps with that kernel's vmlinux.
    kernel_dump: bool,
    /// One line for the report.
    about: String,
}

enum Expect {
    Success,
    /// `Dump failed: <this>...` on the console, the disk unchanged.
    Failure(&'static str),
}

struct RunSpec<'a> {
    name: String,
    target: &'a str,
    sector_size: u32,
    /// The disk before the run; the run boots a copy of it.
    before: PathBuf,
    source: &'a Source,
    expect: Expect,
    /// Boot the initramfs built with zero-page elision on.
    elided: bool,
}

struct RunResult {
    name: String,
    target: String,
    source: String,
    expect: String,
    problems: Vec<String>,
    /// What was verified, for the report.
    checked: Vec<String>,
    elapsed: Option<Duration>,
    peak_rss_kib: Option<u64>,
    log: PathBuf,
    console_tail: String,
}

/// Paths and tools shared by the steps.
struct Ctx {
    cache: PathBuf,
    work: PathBuf,
    image: PathBuf,
    initrd: PathBuf,
    /// The same profile with `ELISION_SET`: the same kernel image, its own
    /// initramfs.
    elided_image: PathBuf,
    elided_initrd: PathBuf,
    memory: u64,
    disk_tool: PathBuf,
    fixture_tool: PathBuf,
    zgetdump: Zgetdump,
    crash: Crash,
    /// The qemu profile kernel's vmlinux (with debug info) and release.
    vmlinux: PathBuf,
    release: String,
    keep: bool,
}

pub fn run(args: &E2eArgs) -> Result<()> {
    let t0 = Instant::now();
    let root = util::project_root();
    let cache = util::cache_dir(&root);
    let base = cache.join("e2e");
    let work = base.join("work");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let mut timings: Vec<(String, Duration)> = Vec::new();

    let needs: Vec<&provision::Need> = provision::TEST.iter().collect();
    provision::ensure(&needs, &[], !args.no_provision && !args.offline)?;

    step(format!("1. building the {PROFILE} profile"));
    let t = Instant::now();
    let profile_args = ProfileArgs {
        profile: PROFILE.into(),
        sets: vec![],
    };
    dist::run(&DistArgs {
        profile: profile_args.clone(),
        no_provision: args.no_provision,
        offline: args.offline,
        check_reproducible: false,
        out_dir: None,
    })?;
    let profile = profile_args.load()?;
    let dist_dir = dist::dist_dir(&root, &profile);
    // Cached by the dist above: only its record, for crash's vmlinux.
    let kernel_rec = kernel::Stage::new(&root, &profile).run()?;
    let vmlinux = kernel_rec.build_dir.join("vmlinux");
    ensure!(
        vmlinux.is_file(),
        "{} is missing: the kernel build directory is incomplete",
        vmlinux.display()
    );
    let (disk_tool, fixture_tool) = build_host_tools(&root, &cache, args.offline)?;
    let tools_root = DEBIAN_12.unpacked_root(&cache, args.offline)?;
    let zgetdump = Zgetdump::new(&tools_root)?;
    let crash = Crash::new(&tools_root)?;
    // Which Debian builds of zipl and zgetdump did the checking.
    let versions: Vec<String> = sysroot::versions(&tools_root)?
        .lines()
        .filter(|l| {
            l.starts_with("s390-tools ") || l.starts_with("crash ") || l.starts_with("libc6 ")
        })
        .map(String::from)
        .collect();
    timings.push(("build (cached)".into(), t.elapsed()));

    let t = Instant::now();
    let elided_dir = elided_build(&root, &work, &profile, &dist_dir, args)?;
    timings.push(("build with zero-page elision".into(), t.elapsed()));
    let ctx = Ctx {
        cache,
        work: work.clone(),
        image: dist_dir.join(IMAGE),
        initrd: dist_dir.join(RD),
        elided_image: elided_dir.join(IMAGE),
        elided_initrd: elided_dir.join(RD),
        memory: profile.budget.total,
        disk_tool,
        fixture_tool,
        zgetdump,
        crash,
        vmlinux,
        release: kernel_rec.release.clone(),
        keep: args.keep,
    };

    let res = run_all(&ctx, args, &mut timings);
    let total = t0.elapsed();
    let (table, ok) = match &res {
        Ok((results, sources)) => summary(results, sources, &versions, &timings, total),
        Err(e) => (
            format!(
                "e2e setup failed after {}: {e:#}\n",
                util::fmt_duration(total)
            ),
            false,
        ),
    };
    util::write_atomic(&base.join("summary.txt"), table.as_bytes())?;
    if let Ok((results, _)) = &res {
        for r in results.iter().filter(|r| !r.problems.is_empty()) {
            eprintln!(
                "\n[e2e] run {} FAILED:\n  - {}\n---- console tail ({}) ----\n{}\n----",
                r.name,
                r.problems.join("\n  - "),
                r.log.display(),
                r.console_tail
            );
        }
    }
    eprintln!("\n{table}");
    if ok && !args.keep {
        fs::remove_dir_all(&work).with_context(|| format!("cannot remove {}", work.display()))?;
        step(format!(
            "all passed in {}; summary: {}",
            util::fmt_duration(total),
            base.join("summary.txt").display()
        ));
        return Ok(());
    }
    if ok {
        step(format!(
            "all passed in {}; work files kept in {}",
            util::fmt_duration(total),
            work.display()
        ));
        return Ok(());
    }
    match res {
        Err(e) => Err(e.context(format!("e2e failed; work files kept in {}", work.display()))),
        Ok(_) => bail!(
            "e2e failed (see above); disks, vmcores and console logs kept in {}",
            work.display()
        ),
    }
}

/// The qemu profile with `--set agent.zero_page_elision=true`, loaded,
/// built (the kernel and agent stages are cached, only the initramfs
/// differs) and published into `<work>/dist-qemu-elided/`, not over
/// `dist/qemu/`. Returns that directory.
fn elided_build(
    root: &Path,
    work: &Path,
    profile: &profile::Profile,
    dist_dir: &Path,
    args: &E2eArgs,
) -> Result<PathBuf> {
    step(format!(
        "1b. building the {PROFILE} profile with --set {ELISION_SET} into the work directory"
    ));
    let sets = vec![ELISION_SET.to_string()];
    let elided = profile::load(root, PROFILE, &sets)?;
    ensure!(
        elided.agent.zero_page_elision && !profile.agent.zero_page_elision,
        "the {PROFILE} profile should have zero-page elision off, and on with --set {ELISION_SET}"
    );
    ensure!(
        elided.budget.total == profile.budget.total,
        "--set {ELISION_SET} changed the memory budget"
    );
    let dir = work.join(format!("dist-{PROFILE}-elided"));
    // `dist::run` with an output directory: `profile::load` with the sets,
    // `dist::build`, the manifest and `dist::publish` into `dir`.
    dist::run(&DistArgs {
        profile: ProfileArgs {
            profile: PROFILE.into(),
            sets,
        },
        no_provision: args.no_provision,
        offline: args.offline,
        check_reproducible: false,
        out_dir: Some(dir.clone()),
    })?;
    let same = |name: &str| -> Result<bool> {
        Ok(fs::read(dir.join(name))? == fs::read(dist_dir.join(name))?)
    };
    ensure!(
        same(IMAGE)?,
        "{} differs from {}: the elision setting should change only the initramfs",
        dir.join(IMAGE).display(),
        dist_dir.join(IMAGE).display()
    );
    ensure!(
        !same(RD)?,
        "{} equals {}: the elision setting did not reach the initramfs",
        dir.join(RD).display(),
        dist_dir.join(RD).display()
    );
    step(format!(
        "   {}: the same {IMAGE}, {RD} {} bytes (with zero_page_elision = true)",
        dir.display(),
        fs::metadata(dir.join(RD))?.len()
    ));
    Ok(dir)
}

/// Steps 2 to 6; an error here is a setup failure, a failed run is a result.
fn run_all(
    ctx: &Ctx,
    args: &E2eArgs,
    timings: &mut Vec<(String, Duration)>,
) -> Result<(Vec<RunResult>, Vec<String>)> {
    step("2. preparing the dump disks with real zipl --dumpto");
    let mut targets = Vec::new();
    for g in &GEOMETRIES {
        let t = Instant::now();
        targets.push(prepare_target(ctx, g, args.offline)?);
        timings.push((format!("zipl + prepare check ({})", g.name), t.elapsed()));
    }
    let [t512, t4k] = &targets[..] else {
        unreachable!("two geometries")
    };

    step("3. sources");
    let t = Instant::now();
    let generated = generated_source(ctx, "generated", FIXTURE_ARGS)?;
    timings.push(("source: vmcore-fixture".into(), t.elapsed()));
    let t = Instant::now();
    let half_zero = generated_source(ctx, "half-zero", ELIDED_FIXTURE_ARGS)?;
    timings.push(("source: vmcore-fixture, 50% zero".into(), t.elapsed()));
    let t = Instant::now();
    let qemu = qemu_dump_source(ctx)?;
    timings.push(("source: QEMU dump-guest-memory".into(), t.elapsed()));

    let mut specs = Vec::new();
    for target in [t512, t4k] {
        for source in [&generated, &qemu] {
            if source.extent <= target.sb.dump_size {
                specs.push(RunSpec {
                    name: format!("{}-{}", source.name, target.geometry.name),
                    target: target.geometry.name,
                    sector_size: target.geometry.sector_size,
                    before: target.pristine.clone(),
                    source,
                    expect: Expect::Success,
                    elided: false,
                });
            }
        }
    }
    ensure!(
        specs.len() == 3,
        "expected 3 runs that fit (generated on both disks, QEMU's dump on the 4K disk), got {}",
        specs.len()
    );
    // Zero-page elision on the real kernel, on the 4K disk.
    ensure!(
        half_zero.extent <= t4k.sb.dump_size,
        "the 50%-zero vmcore ({} bytes) does not fit the 4K disk's dump area ({} bytes)",
        half_zero.extent,
        t4k.sb.dump_size
    );
    specs.push(RunSpec {
        name: format!("elided-{}", t4k.geometry.name),
        target: t4k.geometry.name,
        sector_size: t4k.geometry.sector_size,
        before: t4k.pristine.clone(),
        source: &half_zero,
        expect: Expect::Success,
        elided: true,
    });
    // And of QEMU's dump of the real kernel, which crash reads.
    specs.push(RunSpec {
        name: format!("elided-qemu-{}", t4k.geometry.name),
        target: t4k.geometry.name,
        sector_size: t4k.geometry.sector_size,
        before: t4k.pristine.clone(),
        source: &qemu,
        expect: Expect::Success,
        elided: true,
    });

    // Negative runs.
    ensure!(
        qemu.extent > t512.sb.dump_size,
        "QEMU's dump ({} bytes) fits the 512-byte disk's dump area ({} bytes): no \
         too-small case",
        qemu.extent,
        t512.sb.dump_size
    );
    specs.push(RunSpec {
        name: format!("too-small-{}", t512.geometry.name),
        target: t512.geometry.name,
        sector_size: t512.geometry.sector_size,
        before: t512.pristine.clone(),
        source: &qemu,
        expect: Expect::Failure("size check: Disk too small"),
        elided: false,
    });
    let g = t512.geometry;
    let no_zipl = ctx.work.join("no-zipl.before.img");
    zipl::create_partitioned_disk(
        &no_zipl,
        g.disk_size,
        g.sector_size,
        g.part_start,
        g.part_size,
    )?;
    specs.push(RunSpec {
        name: format!("no-zipl-{}", g.name),
        target: g.name,
        sector_size: g.sector_size,
        before: no_zipl,
        source: &generated,
        expect: Expect::Failure("dump metadata: sector 0: MBR magic"),
        elided: false,
    });
    let bad = ctx.work.join("bad-csum.before.img");
    sparse_copy(&t4k.pristine, &bad)?;
    // Flip the low byte of the stored checksum (big-endian u64).
    let at = t4k.sb_offset + CSUM_FIELD_OFFSET + 7;
    let f = fs::OpenOptions::new().read(true).write(true).open(&bad)?;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at)?;
    f.write_all_at(&[b[0] ^ 0xff], at)?;
    f.sync_all()?;
    specs.push(RunSpec {
        name: format!("bad-csum-{}", t4k.geometry.name),
        target: t4k.geometry.name,
        sector_size: t4k.geometry.sector_size,
        before: bad,
        source: &generated,
        expect: Expect::Failure("dump metadata: dump superblock checksum mismatch"),
        elided: false,
    });

    step(format!(
        "4.-6. {} agent boots: -m {} MiB, timeout {} s",
        specs.len(),
        ctx.memory >> 20,
        RUN_TIMEOUT.as_secs()
    ));
    let mut results = Vec::new();
    for spec in &specs {
        let r =
            run_one(ctx, spec).with_context(|| format!("run {}: the harness failed", spec.name))?;
        let verdict = if r.problems.is_empty() {
            "ok"
        } else {
            "FAILED"
        };
        step(format!(
            "   {}: {verdict} ({}, peak RSS {})",
            r.name,
            r.elapsed.map_or("-".into(), util::fmt_duration),
            r.peak_rss_kib
                .map_or("unknown".into(), |k| format!("{k} KiB"))
        ));
        results.push(r);
    }
    Ok((
        results,
        vec![
            generated.about.clone(),
            qemu.about.clone(),
            half_zero.about.clone(),
        ],
    ))
}

/// `cargo build --release` of the two host tools; returns their paths.
fn build_host_tools(root: &Path, cache: &Path, offline: bool) -> Result<(PathBuf, PathBuf)> {
    let mut c = Command::new(env!("CARGO"));
    c.args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "zfcpdump-disk",
        "-p",
        "vmcore-fixture",
    ])
    .current_dir(root);
    if offline {
        c.arg("--offline");
    }
    let st = c.status().context("cannot run cargo")?;
    ensure!(
        st.success(),
        "cargo build --release -p zfcpdump-disk -p vmcore-fixture failed ({st})"
    );
    // util::cache_dir is <target>/zfcpdump.
    let release = cache
        .parent()
        .context("cache dir has no parent")?
        .join("release");
    let bins = (
        release.join("zfcpdump-disk"),
        release.join("vmcore-fixture"),
    );
    for b in [&bins.0, &bins.1] {
        ensure!(b.is_file(), "{} was not built", b.display());
    }
    Ok(bins)
}

// ---------------------------------------------------------------------------
// Step 2: disks
// ---------------------------------------------------------------------------

/// Real zipl on a new disk, then the same geometry through
/// `zfcpdump-disk prepare`: the metadata must be equal byte for byte.
fn prepare_target<'g>(ctx: &Ctx, g: &'g Geometry, offline: bool) -> Result<Target<'g>> {
    let pristine = ctx.work.join(format!("zipl-{}.img", g.name));
    let res = zipl::zipl_prepare(
        &ctx.cache,
        &ZiplJob {
            helper_kernel: &ctx.image,
            dump_image: &ctx.image,
            dump_initrd: Some(&ctx.initrd),
            disk: &pristine,
            disk_size: g.disk_size,
            sector_size: g.sector_size,
            part_start: g.part_start,
            part_size: g.part_size,
            offline,
        },
    )?;
    ensure!(
        res.zipl_output.contains("Writing SCSI master boot record"),
        "zipl on the {}-byte disk did not write a SCSI MBR:\n{}",
        g.sector_size,
        res.zipl_output
    );
    let prep = ctx.work.join(format!("prepare-{}.img", g.name));
    let out = Command::new(&ctx.disk_tool)
        .arg("prepare")
        .arg(&prep)
        .args(["--size", &g.disk_size.to_string()])
        .arg("--image")
        .arg(&ctx.image)
        .arg("--initrd")
        .arg(&ctx.initrd)
        .args(["--sector-size", &g.sector_size.to_string()])
        .args(["--part-start", &g.part_start.to_string()])
        .args(["--part-size", &g.part_size.to_string()])
        .output()
        .context("cannot run zfcpdump-disk")?;
    ensure!(
        out.status.success(),
        "zfcpdump-disk prepare failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let (sb_offset, sb) = compare_metadata(&pristine, &prep, g)?;
    fs::remove_file(&prep)?;
    step(format!(
        "   {}-byte disk: zipl ran {}, metadata equal to zfcpdump-disk prepare's; \
         superblock at {sb_offset:#x}, dump area {} bytes",
        g.sector_size,
        util::fmt_duration(res.elapsed),
        sb.dump_size
    ));
    Ok(Target {
        geometry: g,
        pristine,
        sb_offset,
        sb,
    })
}

/// Compares every byte zipl's metadata occupies: block 0 (MBR, boot_info, DOS
/// table), the program table, the component table header, the superblock and
/// the zeroed start of the partition (which holds the checksummed block).
/// Returns the superblock, after checking its checksum.
fn compare_metadata(zipl: &Path, prep: &Path, g: &Geometry) -> Result<(u64, DumpSuperblock)> {
    let bs = g.sector_size as u64;
    let (sb_offset, sb) = disk_metadata(zipl).context("the disk zipl prepared")?;
    sb.verify_csum(&read_at(zipl, sb.csum_area().start, sb.csum_size as usize)?)
        .map_err(|e| anyhow::anyhow!("the disk zipl prepared: {e}"))?;
    let mbr = ZiplMbr::parse(&read_at(zipl, 0, 512)?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let pt = mbr.program_table.blockno * bs;
    let ct = BlockPtr::parse(&read_at(zipl, pt + BlockPtr::SIZE as u64, BlockPtr::SIZE)?).blockno;
    let regions: [(&str, u64, u64); 5] = [
        ("block 0 (MBR, boot_info, DOS table)", 0, bs),
        ("program table", pt, 512),
        ("component table header", ct * bs, 32),
        ("superblock", sb_offset, SB_SIZE as u64),
        ("first 64 KiB of the partition", g.part_start, 64 << 10),
    ];
    let mut differ = Vec::new();
    for (what, at, len) in regions {
        let a = read_at(zipl, at, len as usize)?;
        let b = read_at(prep, at, len as usize)?;
        if let Some(i) = a.iter().zip(&b).position(|(x, y)| x != y) {
            differ.push(format!(
                "{what} at {at:#x}: first difference at disk byte {:#x}: zipl {:#04x}, prepare {:#04x}",
                at + i as u64,
                a[i],
                b[i]
            ));
        }
    }
    ensure!(
        differ.is_empty(),
        "zfcpdump-disk prepare differs from real zipl on the {}-byte disk:\n  {}\n(disks: {} and {})",
        g.sector_size,
        differ.join("\n  "),
        zipl.display(),
        prep.display()
    );
    Ok((sb_offset, sb))
}

/// The superblock's disk offset (from the MBR's boot_info) and the superblock.
fn disk_metadata(disk: &Path) -> Result<(u64, DumpSuperblock)> {
    let mbr =
        ZiplMbr::parse(&read_at(disk, 0, 512)?).map_err(|e| anyhow::anyhow!("sector 0: {e}"))?;
    let sb = DumpSuperblock::parse(&read_at(disk, mbr.sb_offset, SB_SIZE)?)
        .map_err(|e| anyhow::anyhow!("superblock at {:#x}: {e}", mbr.sb_offset))?;
    Ok((mbr.sb_offset, sb))
}

// ---------------------------------------------------------------------------
// Step 3: sources
// ---------------------------------------------------------------------------

fn generated_source(ctx: &Ctx, name: &'static str, args: &[&str]) -> Result<Source> {
    let file = ctx.work.join(format!("{name}.vmcore"));
    let out = Command::new(&ctx.fixture_tool)
        .args(args)
        .arg("--print-layout")
        .arg(&file)
        .output()
        .context("cannot run vmcore-fixture")?;
    ensure!(
        out.status.success(),
        "vmcore-fixture failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let layout = String::from_utf8_lossy(&out.stdout);
    let mut ranges = Vec::new();
    let mut cpus = None;
    for line in layout.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let field = |name: &str| -> Option<u64> {
            let v = w.get(w.iter().position(|x| *x == name)? + 1)?;
            match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => v.parse().ok(),
            }
        };
        if line.starts_with("LOAD ") {
            let (p, s) = field("paddr")
                .zip(field("size"))
                .with_context(|| format!("unexpected layout line {line:?}"))?;
            ranges.push(p..p + s);
        } else if let Some(n) = field("cpus") {
            cpus = Some(n as usize);
        }
    }
    let cpus = cpus.context("vmcore-fixture --print-layout printed no CPU count")?;
    let mut src = source(name, file, cpus, FIXTURE_HSA, &ctx.work)?;
    ensure!(
        src.ranges == ranges,
        "the vmcore's PT_LOADs {:?} differ from vmcore-fixture's layout {ranges:?}",
        src.ranges
    );
    ensure!(
        src.extent == src.size && src.zgetdump,
        "the generated vmcore {name} should be /proc/vmcore-shaped (extent {} of {} bytes, \
         e_phoff 64, p_vaddr == p_paddr)",
        src.extent,
        src.size
    );
    // zgetdump reads the file itself too: a reader independent of ours.
    let info = ctx.zgetdump.info(&src.file)?;
    ensure!(
        info.cpus as usize == cpus && info.memory_map == ranges,
        "zgetdump -i disagrees with vmcore-fixture's layout ({cpus} CPUs, {ranges:?}):\n{}",
        info.text
    );
    src.about = format!(
        "{name} (vmcore-fixture {}): {} bytes, {cpus} CPUs, memory {}, simulated HSA {} MiB; \
         zgetdump -i agrees",
        args.join(" "),
        src.size,
        fmt_ranges(&ranges),
        FIXTURE_HSA >> 20
    );
    step(format!("   {}", src.about));
    Ok(src)
}

/// Reads a vmcore with our ELF reader (zgetdump 2.16 cannot read QEMU's) and
/// makes its virtio-blk copy.
fn source(
    name: &'static str,
    file: PathBuf,
    cpus_expected: usize,
    hsa_size: u64,
    work: &Path,
) -> Result<Source> {
    let size = fs::metadata(&file)?.len();
    let vm = Vmcore::read(&mut SeekReader::new(File::open(&file)?), size)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let cpus = vm
        .cpu_count()
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    ensure!(
        cpus == cpus_expected,
        "{} has {cpus} CPU notes, expected {cpus_expected}",
        file.display()
    );
    let ranges: Vec<Range<u64>> = vm
        .loads()
        .map(|p| p.p_paddr..p.p_paddr + p.p_memsz)
        .collect();
    let zgetdump = vm.header.e_phoff == 64 && vm.loads().all(|p| p.p_vaddr == p.p_paddr);
    // A device source yields the ELF extent: everything up to the end of
    // the last segment. QEMU's dump has 11 more bytes, its section name
    // table, which belong to no segment.
    let extent = vm.extent();
    let disk = work.join(format!("{name}.vda.img"));
    sparse_copy(&file, &disk)?;
    let f = fs::OpenOptions::new().write(true).open(&disk)?;
    f.set_len(size.next_multiple_of(4096))?;
    f.sync_all()?;
    Ok(Source {
        name,
        file,
        disk,
        size,
        extent,
        cpus,
        ranges,
        hsa_size,
        zgetdump,
        kernel_dump: false,
        about: String::new(),
    })
}

/// Boots the qemu dist kernel with more memory and no disks: the agent gives
/// up (no IPL device) and powers off, which `-action shutdown=pause` turns
/// into a pause; then QMP `dump-guest-memory` writes the guest's memory as
/// an ELF core, the way QEMU does it, not our code.
fn qemu_dump_source(ctx: &Ctx) -> Result<Source> {
    let file = ctx.work.join("qemu.vmcore");
    let log = ctx.work.join("qemu-guest.console.log");
    let mut sock = ctx.work.join("qmp.sock");
    // sun_path holds 108 bytes.
    if sock.as_os_str().len() > 100 {
        sock = std::env::temp_dir().join(format!("zfcpdump-e2e-{}.qmp", std::process::id()));
    }
    let _ = fs::remove_file(&sock);
    let boot = Boot {
        image: &ctx.image,
        initrd: &ctx.initrd,
        memory: QEMU_GUEST_MEMORY,
        append: String::new(),
        drives: vec![],
        timeout: QEMU_GUEST_TIMEOUT,
        log: log.clone(),
    };
    let extra = vec![
        "-qmp".to_string(),
        format!("unix:{},server=on,wait=off", sock.display()),
        "-action".to_string(),
        "shutdown=pause".to_string(),
    ];
    let (qmp_res, out) = std::thread::scope(|s| {
        let guest = s.spawn(|| boot.run_with(&extra));
        let qmp_res = guest::dump_via_qmp(&sock, &file, QEMU_GUEST_TIMEOUT, || guest.is_finished());
        (qmp_res, guest.join())
    });
    let _ = fs::remove_file(&sock);
    let out: Outcome = out.map_err(|_| anyhow::anyhow!("QEMU runner panicked"))??;
    let tail = || format!("console tail ({}):\n{}", log.display(), out.tail(20));
    qmp_res.with_context(|| format!("QEMU's dump-guest-memory failed; {}", tail()))?;
    ensure!(
        out.exit == Some(0),
        "the guest QEMU dumped did not end cleanly after `quit` (exit {:?}); {}",
        out.exit,
        tail()
    );
    ensure!(
        out.console.contains("Run /init as init process") && out.console.contains("Dump failed"),
        "the guest QEMU dumped did not run the agent; {}",
        tail()
    );
    let mut src = source("qemu", file, 1, QEMU_DUMP_HSA, &ctx.work)?;
    src.kernel_dump = true;
    ensure!(
        src.ranges.iter().map(|r| r.end - r.start).sum::<u64>() == QEMU_GUEST_MEMORY,
        "QEMU's dump covers {}, not the guest's {} MiB",
        fmt_ranges(&src.ranges),
        QEMU_GUEST_MEMORY >> 20
    );
    let vm = Vmcore::read_headers(&mut SeekReader::new(File::open(&src.file)?), src.size)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    src.about = format!(
        "qemu (QMP dump-guest-memory of a booted {} MiB guest): {} bytes, e_phoff {}, {} CPU, \
         memory {}, ELF extent {} ({} bytes after it, in no segment), simulated HSA {} MiB",
        QEMU_GUEST_MEMORY >> 20,
        src.size,
        vm.header.e_phoff,
        src.cpus,
        fmt_ranges(&src.ranges),
        src.extent,
        src.size - src.extent,
        QEMU_DUMP_HSA >> 20
    );
    step(format!("   {}", src.about));
    Ok(src)
}

// ---------------------------------------------------------------------------
// Steps 4 to 6: runs
// ---------------------------------------------------------------------------

fn run_one(ctx: &Ctx, spec: &RunSpec) -> Result<RunResult> {
    let src = spec.source;
    let disk = ctx.work.join(format!("{}.img", spec.name));
    let log = ctx.work.join(format!("{}.console.log", spec.name));
    sparse_copy(&spec.before, &disk)?;
    let (image, initrd) = if spec.elided {
        (&ctx.elided_image, &ctx.elided_initrd)
    } else {
        (&ctx.image, &ctx.initrd)
    };
    let boot = Boot {
        image,
        initrd,
        memory: ctx.memory,
        // The agent wants the whole disk; virtio-scsi's scan of empty targets
        // would hold up boot for about 15 s, and the agent polls anyway.
        append: format!(
            "zfcpdump.source=/dev/vda zfcpdump.disk=/dev/sda zfcpdump.hsa_size={:#x} \
             scsi_mod.scan=async",
            src.hsa_size
        ),
        drives: vec![
            Drive {
                file: disk.clone(),
                bus: "scsi",
                sector_size: spec.sector_size,
            },
            Drive {
                file: src.disk.clone(),
                bus: "blk",
                sector_size: 512,
            },
        ],
        timeout: RUN_TIMEOUT,
        log: log.clone(),
    };
    let out = boot.run()?;
    let mut p = Vec::new();
    match out.exit {
        Some(0) => {}
        Some(1) => p.push("QEMU exited 1: the guest kernel panicked".to_string()),
        Some(n) => p.push(format!("QEMU exited {n}")),
        None => p.push(format!(
            "timed out after {} s: the guest did not power off",
            RUN_TIMEOUT.as_secs()
        )),
    }
    if out.console.contains("Kernel panic") {
        p.push("the console shows a kernel panic".into());
    }
    let peak_rss_kib = peak_rss(&out.console);
    if peak_rss_kib.is_none() {
        p.push("no `peak RSS: N KiB` line".into());
    }
    let mut checked = Vec::new();
    match spec.expect {
        Expect::Success => {
            let order = console_order(&out.console, spec.elided);
            if order.is_empty() {
                checked.push("console order".into());
            }
            p.extend(order);
            p.extend(check_success(ctx, spec, &disk, &out.console, &mut checked)?);
        }
        Expect::Failure(what) => {
            let want = format!("Dump failed: {what}");
            if !out.console.contains(&want) {
                p.push(format!("the console lacks {want:?}"));
            }
            if out.console.contains("Dump successful") {
                p.push("the console says `Dump successful`".into());
            }
            if let Some(at) = first_difference(&spec.before, &disk, &[])? {
                p.push(format!(
                    "the disk changed: first difference at byte {at:#x}"
                ));
            }
            if let Some(l) = out.console.lines().find(|l| l.contains("Dump failed: ")) {
                checked.push(l.trim().to_string());
            }
            checked.push("disk unchanged byte for byte".into());
        }
    }
    if p.is_empty() && !ctx.keep {
        let _ = fs::remove_file(&disk);
    }
    Ok(RunResult {
        name: spec.name.clone(),
        target: format!("{} ({} B sectors)", spec.target, spec.sector_size),
        source: src.name.into(),
        expect: match spec.expect {
            Expect::Success if spec.elided => "elided".into(),
            Expect::Success => "dump".into(),
            Expect::Failure(_) => "refusal".into(),
        },
        problems: p,
        checked,
        elapsed: out.exit.is_some().then_some(out.elapsed),
        peak_rss_kib,
        log,
        console_tail: out.tail(30),
    })
}

/// Everything a good dump leaves behind; returns the problems and adds what
/// held to `checked`.
fn check_success(
    ctx: &Ctx,
    spec: &RunSpec,
    disk: &Path,
    console: &str,
    checked: &mut Vec<String>,
) -> Result<Vec<String>> {
    let src = spec.source;
    let mut p = Vec::new();
    // The agent's own account of the size it copies.
    let said = format!(": {} bytes, {} CPUs,", src.extent, src.cpus);
    if !console
        .lines()
        .any(|l| l.starts_with("vmcore /dev/vda") && l.contains(&said))
    {
        p.push(format!(
            "no `vmcore /dev/vda{said}` line: the agent read the source differently"
        ));
    }
    // Metadata as the agent left it: valid, with a matching checksum.
    let (sb_offset, sb) = match disk_metadata(disk) {
        Ok(v) => v,
        Err(e) => {
            p.push(format!("the disk's metadata no longer parses: {e:#}"));
            return Ok(p);
        }
    };
    match sb.verify_csum(&read_at(disk, sb.csum_area().start, sb.csum_size as usize)?) {
        Ok(()) => checked.push(format!("checksum {:#010x} valid", sb.csum)),
        Err(e) => p.push(format!("superblock checksum: {e}")),
    }
    if spec.elided {
        check_elided(ctx, spec, disk, console, sb_offset, &sb, &mut p, checked)?;
        return Ok(p);
    }
    // The dump area holds the vmcore byte for byte (the ELF extent: what a
    // device source yields; the whole file for /proc/vmcore-shaped ones).
    let area = sb.dump_area();
    match compare_range(disk, area.start, &src.file, src.extent)? {
        Some(at) => p.push(format!(
            "the dump area differs from the vmcore at vmcore byte {at:#x} (disk byte {:#x})",
            area.start + at
        )),
        None if src.extent == src.size => {
            checked.push(format!("dump area = the whole vmcore ({} bytes)", src.size))
        }
        None => checked.push(format!(
            "dump area = the vmcore's ELF extent ({} of {} bytes; the rest is in no segment)",
            src.extent, src.size
        )),
    }
    // Outside the copied bytes, only the 8-byte csum field may change.
    let csum_field = sb_offset + CSUM_FIELD_OFFSET;
    let allowed = [
        area.start..area.start + src.extent,
        csum_field..csum_field + 8,
    ];
    match first_difference(&spec.before, disk, &allowed)? {
        Some(at) => p.push(format!(
            "the agent changed disk byte {at:#x}, outside the dump and the csum field"
        )),
        None => checked.push("nothing else changed but the csum field".into()),
    }
    // zfcpdump-disk: status complete, extract equal to the vmcore.
    disk_status(ctx, disk, &mut p, checked)?;
    let elf = ctx.work.join(format!("{}.extracted.elf", spec.name));
    if let Some(e) = extract(ctx, disk, &elf)? {
        p.push(e);
    } else {
        let n = fs::metadata(&elf)?.len();
        if n != src.extent {
            p.push(format!(
                "zfcpdump-disk extract wrote {n} bytes, the vmcore's ELF extent is {}",
                src.extent
            ));
        } else if let Some(at) = compare_range(&elf, 0, &src.file, n)? {
            p.push(format!(
                "the extracted ELF differs from the vmcore at byte {at:#x}"
            ));
        } else {
            checked.push("extract = vmcore".into());
            if src.kernel_dump {
                check_with_crash(ctx, spec, &elf, &mut p, checked)?;
            }
        }
    }
    if !ctx.keep {
        let _ = fs::remove_file(&elf);
    }
    // zgetdump on the partition's bytes, where zgetdump 2.16 can read the
    // format at all.
    if src.zgetdump {
        let part = ctx.work.join(format!("{}.partition", spec.name));
        sparse_copy_range(disk, sb.part_start, sb.part_size, &part)?;
        match ctx.zgetdump.info(&part) {
            Ok(info) => {
                if info.format != "elf"
                    || info.cpus as usize != src.cpus
                    || info.memory_map != src.ranges
                {
                    p.push(format!(
                        "zgetdump -i on the partition: format {}, {} CPUs, memory {}; expected \
                         elf, {} CPUs, {}",
                        info.format,
                        info.cpus,
                        fmt_ranges(&info.memory_map),
                        src.cpus,
                        fmt_ranges(&src.ranges)
                    ));
                } else {
                    checked.push(format!(
                        "zgetdump -i on the partition: elf, {} CPUs, {} KiB in {} ranges",
                        info.cpus,
                        info.memory_bytes() >> 10,
                        info.memory_map.len()
                    ));
                }
            }
            Err(e) => p.push(format!("{e:#}")),
        }
        if !ctx.keep {
            let _ = fs::remove_file(&part);
        }
    }
    Ok(p)
}

/// `zfcpdump-disk status` must say complete (exit 0).
fn disk_status(
    ctx: &Ctx,
    disk: &Path,
    p: &mut Vec<String>,
    checked: &mut Vec<String>,
) -> Result<()> {
    let st = Command::new(&ctx.disk_tool)
        .arg("status")
        .arg(disk)
        .output()
        .context("cannot run zfcpdump-disk")?;
    if st.status.code() == Some(0) {
        checked.push("status complete".into());
    } else {
        p.push(format!(
            "zfcpdump-disk status exited {:?}, not 0 (complete):\n{}{}",
            st.status.code(),
            String::from_utf8_lossy(&st.stdout),
            String::from_utf8_lossy(&st.stderr)
        ));
    }
    Ok(())
}

/// `zfcpdump-disk extract DISK ELF`; returns the problem if it failed.
fn extract(ctx: &Ctx, disk: &Path, elf: &Path) -> Result<Option<String>> {
    let ex = Command::new(&ctx.disk_tool)
        .arg("extract")
        .arg(disk)
        .arg(elf)
        .output()
        .context("cannot run zfcpdump-disk")?;
    Ok((!ex.status.success()).then(|| {
        format!(
            "zfcpdump-disk extract failed ({}): {}",
            ex.status,
            String::from_utf8_lossy(&ex.stderr).trim()
        )
    }))
}

/// The rest of [`check_success`] for an elided dump (README "Zero-page
/// elision"): the ELF on the disk is smaller than the vmcore and laid out
/// differently, so instead of comparing bytes, the memory that
/// `zfcpdump-disk extract`'s ELF describes is compared with the vmcore's.
#[allow(clippy::too_many_arguments)]
fn check_elided(
    ctx: &Ctx,
    spec: &RunSpec,
    disk: &Path,
    console: &str,
    sb_offset: u64,
    sb: &DumpSuperblock,
    p: &mut Vec<String>,
    checked: &mut Vec<String>,
) -> Result<()> {
    let src = spec.source;
    let area = sb.dump_area();
    // The agent's account: elision planned, never given up, and a summary.
    if let Some(l) = console
        .lines()
        .find(|l| l.contains("zero-page elision off"))
    {
        p.push(format!("the agent did not elide: {:?}", l.trim()));
    }
    let said = console
        .lines()
        .find(|l| l.starts_with(ELISION_SUMMARY))
        .map(str::trim);
    // The dump's own extent, from the ELF the agent wrote into the dump area.
    let on_disk = File::open(disk).with_context(|| format!("cannot open {}", disk.display()))?;
    let extent = match Vmcore::read_headers(
        &mut SeekReader::with_base(&on_disk, area.start),
        sb.dump_size,
    ) {
        Ok(vm) => vm.extent(),
        Err(e) => {
            p.push(format!("the dump area holds no readable ELF: {e}"));
            return Ok(());
        }
    };
    if extent >= src.extent {
        p.push(format!(
            "the elided dump is {extent} bytes, not smaller than the {}-byte vmcore",
            src.extent
        ));
    }
    // Outside the dump's bytes, only the 8-byte csum field may change.
    let csum_field = sb_offset + CSUM_FIELD_OFFSET;
    let allowed = [area.start..area.start + extent, csum_field..csum_field + 8];
    match first_difference(&spec.before, disk, &allowed)? {
        Some(at) => p.push(format!(
            "the agent changed disk byte {at:#x}, outside the dump's {extent} bytes and the csum \
             field"
        )),
        None => checked.push(format!(
            "nothing changed outside the dump's {extent} bytes ({} of the vmcore's) but the csum \
             field",
            pct(extent, src.extent)
        )),
    }
    disk_status(ctx, disk, p, checked)?;
    let elf = ctx.work.join(format!("{}.extracted.elf", spec.name));
    if let Some(e) = extract(ctx, disk, &elf)? {
        p.push(e);
    } else {
        let n = fs::metadata(&elf)?.len();
        if n != extent {
            p.push(format!(
                "zfcpdump-disk extract wrote {n} bytes, the dump's ELF extent is {extent}"
            ));
        } else if let Some(at) = compare_range(disk, area.start, &elf, n)? {
            p.push(format!(
                "the extracted ELF differs from the dump area at byte {at:#x}"
            ));
        } else {
            checked.push("extract = the dump as stored".into());
        }
        match compare_memory(&src.file, &elf) {
            Err(e) => p.push(format!("memory read back from the extracted ELF: {e:#}")),
            Ok(m) => {
                checked.push(format!(
                    "notes byte-identical ({} bytes, {} CPUs)",
                    m.notes_bytes, m.cpus
                ));
                checked.push(format!(
                    "memory = the vmcore's in every PT_LOAD ({} MiB in {} ranges; read back \
                     through {} PT_LOADs, {} with a zero tail, p_vaddr - p_paddr kept)",
                    m.memory >> 20,
                    m.ranges,
                    m.pieces,
                    m.tails
                ));
                let zero = m.zero_pages * PAGE_SIZE;
                if m.elided == zero && zero > 0 {
                    checked.push(format!(
                        "{} bytes elided ({}) = every zero page outside the lowcore ({} of {} \
                         pages)",
                        m.elided,
                        pct(m.elided, m.memory),
                        m.zero_pages,
                        m.memory / PAGE_SIZE
                    ));
                } else {
                    p.push(format!(
                        "{} bytes elided, but the vmcore has {} zero pages ({zero} bytes) outside \
                         the lowcore",
                        m.elided, m.zero_pages
                    ));
                }
                // The agent's summary counts what the disk shows.
                let want = format!(
                    "{ELISION_SUMMARY}{} of {} memory left out in {} runs; ",
                    fmt_mib(m.elided),
                    fmt_mib(m.memory),
                    m.tails
                );
                match said {
                    Some(l) if l.starts_with(&want) => checked.push(format!("console: {l:?}")),
                    Some(l) => p.push(format!(
                        "the agent's summary {l:?} does not start with {want:?}, what the dump \
                         holds"
                    )),
                    // console_order reports a missing one.
                    None => {}
                }
            }
        }
        if src.kernel_dump {
            check_with_crash(ctx, spec, &elf, p, checked)?;
        }
    }
    if !ctx.keep {
        let _ = fs::remove_file(&elf);
    }
    checked.push(
        "zgetdump not run: 2.16 reads p_filesz < p_memsz wrongly (fixed in s390-tools 2.33.0)"
            .into(),
    );
    Ok(())
}

/// crash (Debian's s390x build under qemu-user) on the extracted dump of a
/// guest that ran the qemu kernel, with that kernel's vmlinux: it must take
/// the dump (it refuses a dump that does not match the vmlinux), name the
/// kernel release, and read every byte of physical memory with `rd -p` as
/// the vmcore holds it, the zero tails of an elided dump included.
fn check_with_crash(
    ctx: &Ctx,
    spec: &RunSpec,
    elf: &Path,
    p: &mut Vec<String>,
    checked: &mut Vec<String>,
) -> Result<()> {
    let src = spec.source;
    let raws: Vec<PathBuf> = (0..src.ranges.len())
        .map(|i| ctx.work.join(format!("{}.crash-rd{i}.bin", spec.name)))
        .collect();
    let mut cmds = vec!["sys".to_string()];
    for (r, f) in src.ranges.iter().zip(&raws) {
        cmds.push(format!(
            "rd -p -r {} {:#x} {}",
            f.display(),
            r.start,
            r.end - r.start
        ));
    }
    let log = ctx.work.join(format!("{}.crash.log", spec.name));
    let t = Instant::now();
    let out = match ctx.crash.session(&ctx.vmlinux, elf, &cmds, &log) {
        Ok(out) => out,
        Err(e) => {
            p.push(format!("{e:#}"));
            return Ok(());
        }
    };
    let release = format!("RELEASE: {}", ctx.release);
    if !out.lines().any(|l| l.trim() == release) {
        p.push(format!(
            "crash's `sys` does not say {release:?} (log: {})",
            log.display()
        ));
        return Ok(());
    }
    let mem = PhysMem::open(&src.file)?;
    for (r, f) in src.ranges.iter().zip(&raws) {
        if let Some(problem) = differs_from_memory(&mem, r.clone(), f)? {
            p.push(format!("crash `rd -p` of {r:#x?}: {problem}"));
            return Ok(());
        }
        if !ctx.keep {
            let _ = fs::remove_file(f);
        }
    }
    let memory: u64 = src.ranges.iter().map(|r| r.end - r.start).sum();
    checked.push(format!(
        "crash (Debian s390x, qemu-user) with the kernel's vmlinux: takes the dump, {release}, \
         `rd -p` of all {} MiB = the vmcore's memory ({:.1} s)",
        memory >> 20,
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Whether `file` (what crash wrote) holds the memory `range` of `mem`.
fn differs_from_memory(mem: &PhysMem, range: Range<u64>, file: &Path) -> Result<Option<String>> {
    let f = match File::open(file) {
        Ok(f) => f,
        Err(e) => return Ok(Some(format!("crash wrote no {} ({e})", file.display()))),
    };
    let len = f.metadata()?.len();
    if len != range.end - range.start {
        return Ok(Some(format!(
            "crash wrote {len} bytes, not {}",
            range.end - range.start
        )));
    }
    let (mut want, mut got) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut at = range.start;
    while at < range.end {
        let n = ((range.end - at) as usize).min(CHUNK);
        mem.read(at, &mut want[..n])?;
        f.read_exact_at(&mut got[..n], at - range.start)?;
        if let Some(i) = want[..n].iter().zip(&got[..n]).position(|(x, y)| x != y) {
            return Ok(Some(format!(
                "physical byte {:#x} reads {:#04x}, the vmcore has {:#04x}",
                at + i as u64,
                got[i],
                want[i]
            )));
        }
        at += n as u64;
    }
    Ok(None)
}

/// The agent's summary line of an elided dump (`elide::summary_line`).
const ELISION_SUMMARY: &str = "zero-page elision: ";

/// MiB with one truncated decimal, as the agent prints them.
fn fmt_mib(n: u64) -> String {
    format!("{}.{} MiB", n >> 20, ((n & 0xfffff) * 10) >> 20)
}

fn pct(part: u64, whole: u64) -> String {
    format!("{:.1}%", part as f64 * 100.0 / whole.max(1) as f64)
}

/// What [`compare_memory`] found.
#[derive(Debug, PartialEq)]
struct MemoryCheck {
    /// Physical bytes compared: the original's PT_LOADs.
    memory: u64,
    /// The original's PT_LOADs.
    ranges: usize,
    /// The dump's PT_LOADs.
    pieces: usize,
    /// The dump's PT_LOADs with p_filesz < p_memsz.
    tails: usize,
    /// Bytes of those tails: memory the dump does not store.
    elided: u64,
    /// All-zero pages of the original outside the lowcore.
    zero_pages: u64,
    notes_bytes: usize,
    cpus: usize,
}

/// Physical memory as an ELF core describes it, read through its PT_LOADs
/// with bounded reads; bytes past a PT_LOAD's p_filesz read as zeros.
struct PhysMem {
    path: PathBuf,
    file: File,
    vm: Vmcore,
    /// The PT_LOADs with memory, sorted by p_paddr, not overlapping.
    loads: Vec<ProgramHeader>,
}

impl PhysMem {
    fn open(path: &Path) -> Result<PhysMem> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let size = file.metadata()?.len();
        let vm = Vmcore::read(&mut SeekReader::new(&file), size)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut loads: Vec<ProgramHeader> = vm.loads().filter(|p| p.p_memsz > 0).copied().collect();
        loads.sort_by_key(|p| p.p_paddr);
        for w in loads.windows(2) {
            ensure!(
                w[0].p_paddr + w[0].p_memsz <= w[1].p_paddr,
                "{}: PT_LOADs overlap at physical {:#x}",
                path.display(),
                w[1].p_paddr
            );
        }
        Ok(PhysMem {
            path: path.to_path_buf(),
            file,
            vm,
            loads,
        })
    }

    /// The PT_LOAD that holds physical address `a`.
    fn load_at(&self, a: u64) -> Option<&ProgramHeader> {
        let i = self.loads.partition_point(|p| p.p_paddr <= a);
        self.loads[..i].last().filter(|p| a - p.p_paddr < p.p_memsz)
    }

    /// Fills `buf` with the memory at physical address `addr`; an address
    /// that no PT_LOAD covers is an error (crash reads a gap as missing).
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let a = addr + done as u64;
            let p = self.load_at(a).with_context(|| {
                format!(
                    "{}: no PT_LOAD holds physical address {a:#x}",
                    self.path.display()
                )
            })?;
            let rel = a - p.p_paddr;
            let left = (buf.len() - done) as u64;
            let out = if rel < p.p_filesz {
                let out = &mut buf[done..done + left.min(p.p_filesz - rel) as usize];
                self.file
                    .read_exact_at(out, p.p_offset + rel)
                    .with_context(|| format!("cannot read {}", self.path.display()))?;
                out
            } else {
                let out = &mut buf[done..done + left.min(p.p_memsz - rel) as usize];
                out.fill(0);
                out
            };
            done += out.len();
        }
        Ok(())
    }

    /// The PT_NOTE segments' bytes, in file order (a few KiB per CPU).
    fn notes(&self) -> Result<Vec<Vec<u8>>> {
        self.vm
            .phdrs
            .iter()
            .filter(|p| p.p_type == PT_NOTE)
            .map(|p| {
                let mut b = vec![0u8; p.p_filesz as usize];
                self.file
                    .read_exact_at(&mut b, p.p_offset)
                    .with_context(|| format!("cannot read {}", self.path.display()))?;
                Ok(b)
            })
            .collect()
    }
}

/// Reads both ELF cores with zfcpdump_format's reader and compares the
/// memory of every PT_LOAD of `original` with what `dump` describes at the
/// same physical addresses, `CHUNK` bytes at a time, tails past p_filesz
/// read as zeros; also the physical ranges, p_vaddr - p_paddr of every
/// PT_LOAD of the dump, and the notes. The first difference is the error.
fn compare_memory(original: &Path, dump: &Path) -> Result<MemoryCheck> {
    let (a, b) = (PhysMem::open(original)?, PhysMem::open(dump)?);
    let (ra, rb) = (a.vm.physical_ranges(), b.vm.physical_ranges());
    ensure!(
        ra == rb,
        "the dump's PT_LOADs cover {}, the vmcore's {}",
        fmt_ranges(&rb),
        fmt_ranges(&ra)
    );
    for q in &b.loads {
        let p = a
            .load_at(q.p_paddr)
            .filter(|p| q.p_paddr + q.p_memsz <= p.p_paddr + p.p_memsz)
            .with_context(|| {
                format!(
                    "the dump's PT_LOAD at physical {:#x}..{:#x} is not inside one of the \
                     vmcore's",
                    q.p_paddr,
                    q.p_paddr + q.p_memsz
                )
            })?;
        ensure!(
            q.p_vaddr.wrapping_sub(q.p_paddr) == p.p_vaddr.wrapping_sub(p.p_paddr),
            "the dump's PT_LOAD at physical {:#x} has p_vaddr {:#x}; the vmcore's maps it to \
             {:#x}",
            q.p_paddr,
            q.p_vaddr,
            p.p_vaddr.wrapping_add(q.p_paddr - p.p_paddr)
        );
    }
    let notes = a.notes()?;
    ensure!(
        notes == b.notes()?,
        "the dump's notes differ from the vmcore's"
    );
    let cpus = a.vm.cpu_count().map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mut ba, mut bb) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut zero_pages = 0;
    for p in &a.loads {
        let mut off = 0;
        while off < p.p_memsz {
            let n = (p.p_memsz - off).min(CHUNK as u64) as usize;
            let at = p.p_paddr + off;
            a.read(at, &mut ba[..n])?;
            b.read(at, &mut bb[..n])?;
            if let Some(i) = ba[..n].iter().zip(&bb[..n]).position(|(x, y)| x != y) {
                bail!(
                    "memory differs at physical address {:#x}: vmcore {:#04x}, dump {:#04x}",
                    at + i as u64,
                    ba[i],
                    bb[i]
                );
            }
            for (i, page) in ba[..n].chunks_exact(PAGE_SIZE as usize).enumerate() {
                let pa = at + i as u64 * PAGE_SIZE;
                if pa >= LOWCORE_SIZE
                    && pa.is_multiple_of(PAGE_SIZE)
                    && page.iter().all(|&x| x == 0)
                {
                    zero_pages += 1;
                }
            }
            off += n as u64;
        }
    }
    let tail = |p: &&ProgramHeader| p.p_filesz < p.p_memsz;
    Ok(MemoryCheck {
        memory: a.loads.iter().map(|p| p.p_memsz).sum(),
        ranges: a.loads.len(),
        pieces: b.loads.len(),
        tails: b.loads.iter().filter(tail).count(),
        elided: b
            .loads
            .iter()
            .map(|p| p.p_memsz - p.p_filesz)
            .sum::<u64>()
            .saturating_sub(a.loads.iter().map(|p| p.p_memsz - p.p_filesz).sum()),
        zero_pages,
        notes_bytes: notes.iter().map(Vec::len).sum(),
        cpus,
    })
}

/// The console lines of a good dump, in order: banner, HSA-backed ranges,
/// HSA release, the other ranges, the ELF header block, the final 100%
/// progress line, `Dump successful`, the peak RSS (the agent prints the
/// verdict first, README "Console messages"). An elided dump (`elided`) also
/// has, in order: the elision plan before the first range, the notes right
/// after the HSA release, its own header line, and the elision summary after
/// the progress; a byte-exact one has no elision line at all.
fn console_order(console: &str, elided: bool) -> Vec<String> {
    let lines: Vec<&str> = console.lines().collect();
    let all = |pat: &str| -> Vec<usize> {
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.contains(pat))
            .map(|(i, _)| i)
            .collect()
    };
    let banner: Vec<usize> = lines
        .iter()
        .position(|l| l.starts_with("zfcpdump-agent ") && l.contains("writing the dump"))
        .into_iter()
        .collect();
    let progress = all("progress: ");
    let header = if elided {
        "write ELF header block (last)"
    } else {
        "copy ELF header block (last)"
    };
    let summary: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with(ELISION_SUMMARY))
        .map(|(i, _)| i)
        .collect();
    // (what, its lines), in the order they must appear.
    let mut groups: Vec<(&str, Vec<usize>)> = vec![("agent banner", banner)];
    if elided {
        groups.push(("elision plan", all("zero-page elision on: ")));
    }
    groups.push(("HSA-backed ranges", all("copy HSA-backed range ")));
    groups.push(("HSA release", all("HSA release")));
    if elided {
        groups.push(("notes", all("copy notes ")));
    }
    groups.push(("other ranges", all("copy range ")));
    groups.push(("ELF header block", all(header)));
    groups.push((
        "final progress",
        progress.last().copied().into_iter().collect(),
    ));
    if elided {
        groups.push(("elision summary", summary));
    }
    groups.push(("Dump successful", all("Dump successful")));
    groups.push(("peak RSS", all("peak RSS: ")));
    let mut p: Vec<String> = groups
        .iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(what, _)| format!("the console has no {what} line"))
        .collect();
    if !elided && let Some(l) = lines.iter().find(|l| l.contains("zero-page elision")) {
        p.push(format!(
            "zero-page elision is off in this build, yet the console says {:?}",
            l.trim()
        ));
    }
    if groups.iter().any(|(_, v)| v.is_empty()) {
        return p;
    }
    let last_progress = *progress.last().unwrap_or(&0);
    if !lines[last_progress].contains("(100%)") {
        p.push(format!(
            "the last progress line is not 100%: {:?}",
            lines[last_progress]
        ));
    }
    // Each group must lie entirely after the previous one.
    for w in groups.windows(2) {
        let ((a, va), (b, vb)) = (&w[0], &w[1]);
        if va.last() >= vb.first() {
            p.push(format!("console order: {a} not before {b}"));
        }
    }
    let release = &groups
        .iter()
        .find(|(what, _)| *what == "HSA release")
        .expect("listed above")
        .1;
    if release.len() != 1 {
        p.push(format!("{} HSA release lines, expected 1", release.len()));
    }
    p
}

/// The `peak RSS: N KiB` value.
fn peak_rss(console: &str) -> Option<u64> {
    console.lines().rev().find_map(|l| {
        let rest = &l[l.find("peak RSS: ")? + "peak RSS: ".len()..];
        rest.strip_suffix(" KiB")?.trim().parse().ok()
    })
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

/// Copies a (mostly sparse) image, leaving holes where a chunk is all zero.
fn sparse_copy(from: &Path, to: &Path) -> Result<()> {
    let len = fs::metadata(from)
        .with_context(|| format!("cannot stat {}", from.display()))?
        .len();
    sparse_copy_range(from, 0, len, to)
}

/// Copies bytes `[start, start + len)` of `from` into a new sparse file.
fn sparse_copy_range(from: &Path, start: u64, len: u64, to: &Path) -> Result<()> {
    let src = File::open(from).with_context(|| format!("cannot open {}", from.display()))?;
    let _ = fs::remove_file(to);
    let dst = File::create(to).with_context(|| format!("cannot create {}", to.display()))?;
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(CHUNK as u64) as usize;
        src.read_exact_at(&mut buf[..n], start + off)
            .with_context(|| format!("cannot read {}", from.display()))?;
        if buf[..n].iter().any(|&b| b != 0) {
            dst.write_all_at(&buf[..n], off)
                .with_context(|| format!("cannot write {}", to.display()))?;
        }
        off += n as u64;
    }
    dst.set_len(len)?;
    dst.sync_all()?;
    Ok(())
}

/// Compares `len` bytes of `a` at `at` with the start of `b`; returns the
/// first differing offset relative to `at`.
fn compare_range(a: &Path, at: u64, b: &Path, len: u64) -> Result<Option<u64>> {
    let fa = File::open(a).with_context(|| format!("cannot open {}", a.display()))?;
    let fb = File::open(b).with_context(|| format!("cannot open {}", b.display()))?;
    let (mut ba, mut bb) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut off = 0;
    while off < len {
        let n = (len - off).min(CHUNK as u64) as usize;
        fa.read_exact_at(&mut ba[..n], at + off)
            .with_context(|| format!("cannot read {} at {:#x}", a.display(), at + off))?;
        fb.read_exact_at(&mut bb[..n], off)
            .with_context(|| format!("cannot read {} at {off:#x}", b.display()))?;
        if let Some(i) = ba[..n].iter().zip(&bb[..n]).position(|(x, y)| x != y) {
            return Ok(Some(off + i as u64));
        }
        off += n as u64;
    }
    Ok(None)
}

/// The first byte at which two images differ, outside `skip`; a size
/// difference counts as a difference at the shorter size.
fn first_difference(a: &Path, b: &Path, skip: &[Range<u64>]) -> Result<Option<u64>> {
    let la = fs::metadata(a)?.len();
    let lb = fs::metadata(b)?.len();
    if la != lb {
        return Ok(Some(la.min(lb)));
    }
    let fa = File::open(a).with_context(|| format!("cannot open {}", a.display()))?;
    let fb = File::open(b).with_context(|| format!("cannot open {}", b.display()))?;
    let (mut ba, mut bb) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let skipped = |x: u64| skip.iter().any(|r| r.contains(&x));
    let mut off = 0;
    while off < la {
        let n = (la - off).min(CHUNK as u64) as usize;
        if skip
            .iter()
            .any(|r| r.start <= off && off + n as u64 <= r.end)
        {
            off += n as u64;
            continue;
        }
        fa.read_exact_at(&mut ba[..n], off)?;
        fb.read_exact_at(&mut bb[..n], off)?;
        if ba[..n] != bb[..n]
            && let Some(i) = (0..n).find(|&i| ba[i] != bb[i] && !skipped(off + i as u64))
        {
            return Ok(Some(off + i as u64));
        }
        off += n as u64;
    }
    Ok(None)
}

fn fmt_ranges(r: &[Range<u64>]) -> String {
    let v: Vec<String> = r
        .iter()
        .map(|r| format!("{:#x}..{:#x}", r.start, r.end))
        .collect();
    format!("[{}]", v.join(", "))
}

// ---------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------

fn summary(
    results: &[RunResult],
    sources: &[String],
    versions: &[String],
    timings: &[(String, Duration)],
    total: Duration,
) -> (String, bool) {
    let ok = results.iter().all(|r| r.problems.is_empty());
    let mut s = String::new();
    let _ = writeln!(
        s,
        "e2e: {} in {} ({} runs, {} failed)",
        if ok { "PASSED" } else { "FAILED" },
        util::fmt_duration(total),
        results.len(),
        results.iter().filter(|r| !r.problems.is_empty()).count()
    );
    let _ = writeln!(
        s,
        "\n{:<18} {:<20} {:<10} {:<8} {:<7} {:>20} {:>9}",
        "run", "disk", "source", "expect", "result", "boot-to-power-off", "peak RSS"
    );
    for r in results {
        let _ = writeln!(
            s,
            "{:<18} {:<20} {:<10} {:<8} {:<7} {:>20} {:>9}",
            r.name,
            r.target,
            r.source,
            r.expect,
            if r.problems.is_empty() {
                "ok"
            } else {
                "FAILED"
            },
            r.elapsed
                .map_or("timeout".into(), |d| format!("{:.1} s", d.as_secs_f64())),
            r.peak_rss_kib.map_or("-".into(), |k| format!("{k} KiB"))
        );
    }
    let _ = writeln!(s, "\nchecked:");
    for r in results {
        let _ = writeln!(s, "  {}: {}", r.name, r.checked.join("; "));
    }
    let _ = writeln!(s, "\nsources:");
    for a in sources {
        let _ = writeln!(s, "  {a}");
    }
    let _ = writeln!(
        s,
        "\nreference tools (Debian s390x): {}",
        versions.join(", ")
    );
    let _ = writeln!(s, "\nsetup steps:");
    for (what, d) in timings {
        let _ = writeln!(s, "  {what:<34} {:>8.1} s", d.as_secs_f64());
    }
    (s, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
[    0.29] Run /init as init process
zfcpdump-agent 0.1.0: writing the dump (PID 1)
busy marker written
copy HSA-backed range 0x3000..0x403000 (4096 KiB)
HSA release (simulated HSA of 0x400000 bytes: nothing written)
copy range 0x1000..0x3000 (8 KiB)
copy range 0x403000..0xa03000 (6144 KiB)
copy ELF header block (last) 0x0..0x1000 (4 KiB)
progress: 10.0 of 10.0 MiB (100%), 5.0 MiB/s, ETA 0 s
Dump successful
peak RSS: 1234 KiB
";

    #[test]
    fn console_order_accepts_the_documented_sequence() {
        assert_eq!(console_order(GOOD, false), Vec::<String>::new());
        assert_eq!(peak_rss(GOOD), Some(1234));
    }

    #[test]
    fn console_order_finds_misordered_and_missing_lines() {
        let swapped = GOOD.replace(
            "HSA release (simulated HSA of 0x400000 bytes: nothing written)\ncopy range 0x1000..0x3000 (8 KiB)",
            "copy range 0x1000..0x3000 (8 KiB)\nHSA release (simulated HSA of 0x400000 bytes: nothing written)",
        );
        let p = console_order(&swapped, false);
        assert!(
            p.iter()
                .any(|m| m.contains("HSA release not before other ranges")),
            "{p:?}"
        );
        let p = console_order(&GOOD.replace("Dump successful\n", ""), false);
        assert!(p.iter().any(|m| m.contains("no Dump successful")), "{p:?}");
        let p = console_order(&GOOD.replace("(100%)", "(99%)"), false);
        assert!(p.iter().any(|m| m.contains("not 100%")), "{p:?}");
    }

    /// The agent's lines for an elided dump (README "Zero-page elision").
    const ELIDED: &str = "\
zfcpdump-agent 0.1.0: writing the dump (PID 1)
zero-page elision on: 1024 program headers reserved (56 KiB), notes at 0xe000, data from 0x10000
busy marker written
copy HSA-backed range 0x3000..0x403000 (4096 KiB)
HSA release (simulated HSA of 0x400000 bytes: nothing written)
copy notes 0x1000..0x2698 to 0xe000
copy range 0x403000..0x1003000 (12288 KiB)
write ELF header block (last) with 70 program headers, 0x0..0xe000
progress: 16.0 of 16.0 MiB (100%), 5.0 MiB/s, ETA 0 s
zero-page elision: 8.0 MiB of 16.0 MiB memory left out in 68 runs; 8.0 MiB written, 70 program headers of 1024 reserved
Dump successful
peak RSS: 1300 KiB
";

    #[test]
    fn console_order_of_an_elided_dump() {
        assert_eq!(console_order(ELIDED, true), Vec::<String>::new());
        // Its own lines are required, and misplaced ones found.
        let p = console_order(ELIDED, false);
        assert!(p.iter().any(|m| m.contains("no ELF header block")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("elision is off")), "{p:?}");
        let p = console_order(&GOOD.replace("copy ELF", "write ELF"), true);
        assert!(p.iter().any(|m| m.contains("no elision plan")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("no notes")), "{p:?}");
        let summary = ELIDED.lines().nth(9).unwrap();
        assert!(summary.starts_with(ELISION_SUMMARY));
        let late = ELIDED.replace(&format!("{summary}\n"), "") + summary + "\n";
        let p = console_order(&late, true);
        assert!(
            p.iter()
                .any(|m| m.contains("elision summary not before Dump successful")),
            "{p:?}"
        );
        assert_eq!(fmt_mib(8 << 20), "8.0 MiB");
        assert_eq!(fmt_mib((16 << 20) + (1 << 19) + 1), "16.5 MiB");
    }

    /// An s390x core: one PT_NOTE, then PT_LOADs `(paddr, memsz, data)`
    /// (`data` is the stored part, page-aligned in the file).
    fn core(loads: &[(u64, u64, &[u8])]) -> Vec<u8> {
        use zfcpdump_format::elf::{ElfHeader, NT_PRSTATUS, PT_LOAD, push_note};
        let mut notes = Vec::new();
        push_note(&mut notes, NT_PRSTATUS, b"CORE", &[7u8; 336]);
        let page = PAGE_SIZE as usize;
        let mut phdrs = vec![ProgramHeader {
            p_type: PT_NOTE,
            p_offset: page as u64,
            p_filesz: notes.len() as u64,
            ..Default::default()
        }];
        let mut off = 2 * page;
        for &(paddr, memsz, data) in loads {
            phdrs.push(ProgramHeader {
                p_type: PT_LOAD,
                p_offset: off as u64,
                p_vaddr: paddr,
                p_paddr: paddr,
                p_filesz: data.len() as u64,
                p_memsz: memsz,
                ..Default::default()
            });
            off += data.len().next_multiple_of(page);
        }
        let mut f = ElfHeader::s390_core(phdrs.len() as u16).to_bytes().to_vec();
        for p in &phdrs {
            f.extend_from_slice(&p.to_bytes());
        }
        f.resize(page, 0);
        f.extend_from_slice(&notes);
        f.resize(2 * page, 0);
        for &(_, _, data) in loads {
            f.extend_from_slice(data);
            f.resize(f.len().next_multiple_of(page), 0);
        }
        f
    }

    #[test]
    fn memory_of_an_elided_core_compares_with_zero_tails() {
        let page = PAGE_SIZE as usize;
        // Pages: 0 and 1 (lowcore) written, 2 zero, 3 written, 4 zero.
        let mut mem = vec![0u8; 5 * page];
        for p in [0, 1, 3] {
            mem[p * page..(p + 1) * page].fill(p as u8 + 1);
        }
        let d = tempfile::tempdir().unwrap();
        let (orig, good) = (d.path().join("orig"), d.path().join("good"));
        fs::write(&orig, core(&[(0, 5 * PAGE_SIZE, &mem)])).unwrap();
        let p = PAGE_SIZE;
        let pieces = [
            (0, 3 * p, &mem[..2 * page]),
            (3 * p, 2 * p, &mem[3 * page..4 * page]),
        ];
        fs::write(&good, core(&pieces)).unwrap();
        let m = compare_memory(&orig, &good).unwrap();
        assert_eq!(
            m,
            MemoryCheck {
                memory: 5 * p,
                ranges: 1,
                pieces: 2,
                tails: 2,
                elided: 2 * p,
                zero_pages: 2,
                notes_bytes: 356,
                cpus: 1,
            }
        );
        // The byte-exact core is equal too, and elides nothing.
        let m = compare_memory(&orig, &orig).unwrap();
        assert_eq!((m.elided, m.tails, m.zero_pages), (0, 0, 2));

        let bad = d.path().join("bad");
        // A stored byte differs.
        let mut other = mem[3 * page..4 * page].to_vec();
        other[9] ^= 1;
        fs::write(&bad, core(&[pieces[0], (3 * p, 2 * p, &other)])).unwrap();
        let e = compare_memory(&orig, &bad).unwrap_err().to_string();
        assert!(e.contains("physical address 0x3009"), "{e}");
        // A page that is not zero left out as a tail.
        fs::write(&bad, core(&[(0, 5 * p, &mem[..3 * page])])).unwrap();
        let e = compare_memory(&orig, &bad).unwrap_err().to_string();
        assert!(e.contains("physical address 0x3000"), "{e}");
        // A gap where page 2 was: crash would read it as missing.
        fs::write(&bad, core(&[(0, 2 * p, &mem[..2 * page]), pieces[1]])).unwrap();
        let e = compare_memory(&orig, &bad).unwrap_err().to_string();
        assert!(e.contains("cover [0x0..0x2000, 0x3000..0x5000]"), "{e}");
    }

    #[test]
    fn differences_outside_allowed_ranges() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        let mut data = vec![0u8; 3 * CHUNK];
        fs::write(&a, &data).unwrap();
        data[CHUNK + 5] = 1;
        data[2 * CHUNK + 7] = 1;
        fs::write(&b, &data).unwrap();
        assert_eq!(
            first_difference(&a, &b, &[]).unwrap(),
            Some(CHUNK as u64 + 5)
        );
        let skip = CHUNK as u64..CHUNK as u64 + 6;
        assert_eq!(
            first_difference(&a, &b, std::slice::from_ref(&skip)).unwrap(),
            Some(2 * CHUNK as u64 + 7)
        );
        let all = 0..3 * CHUNK as u64;
        assert_eq!(
            first_difference(&a, &b, std::slice::from_ref(&all)).unwrap(),
            None
        );

        let c = d.path().join("c");
        sparse_copy_range(&b, CHUNK as u64, CHUNK as u64 + 10, &c).unwrap();
        assert_eq!(
            compare_range(&b, CHUNK as u64, &c, CHUNK as u64 + 10).unwrap(),
            None
        );
        assert_eq!(compare_range(&a, CHUNK as u64, &c, 10).unwrap(), Some(5));
    }
}
