//! `e2e`: the dump tool end to end under qemu-system-s390x, against the real
//! s390-tools.
//!
//! 1. Builds the profile given with `--profile` (`default`, the image that
//!    ships, on 6.1; `default-6.12` on 6.12) and picks the readers that
//!    match its kernel ([`crate::readers::Readers::for_kernel`]).
//! 2. Prepares a 512-byte-sector and a 4096-byte-sector disk with real
//!    `zipl --dumpto` (Debian's zipl 2.16 in a helper guest), with the
//!    profile's dist image and initrd as the dump tool, and checks that
//!    `zfcpdump-disk prepare` writes the same metadata.
//! 3. Makes the vmcores: one from `vmcore-fixture`, an independent one from
//!    QEMU's `dump-guest-memory` of a booted guest, and for step 5 another
//!    from `vmcore-fixture` with half its pages zero.
//! 4. Boots the profile's dist artifacts with `-m` equal to the budget for each
//!    disk and vmcore that fit, using the agent's test-only overrides (QEMU
//!    cannot IPL in FCP dump mode), and checks the disk, the console and the
//!    power-off. Then negative runs: a dump area too small, a disk without
//!    zipl metadata, a corrupted checksum; each must fail cleanly and leave
//!    the disk as it was.
//! 5. Zero-page elision on the real kernel: the profile again with
//!    `--set agent.dump_level=1`, published into the work directory
//!    (only the initramfs differs; `dist/<profile>/` stays as it is), dumps a
//!    generated vmcore with half its pages zero onto the 4K disk. The memory
//!    read back from `zfcpdump-disk extract` through the ELF's program headers
//!    (elided tails read as zeros) must equal the vmcore's, and every zero page
//!    outside the lowcore must have been left out. The same for QEMU's dump.
//!    zgetdump 2.16 misreads `p_filesz < p_memsz`, so the current zgetdump
//!    (2.35) checks these runs, for every kernel.
//! 6. crash (the build that matches the kernel, under qemu-user) opens the dumps of
//!    QEMU's vmcore, byte-exact and elided, with the profile kernel's vmlinux:
//!    it must accept them, name the kernel release, and read all of physical
//!    memory with `rd -p` exactly as the vmcore holds it.
//!
//! Work files live in `<target>/zfcpdump/e2e/<profile>/work/`, kept on failure
//! (or with `--keep`); the summary table goes to
//! `<target>/zfcpdump/e2e/<profile>/summary.txt`.
//!
//! This module is the orchestration: step 1 is the kit's
//! (`kit::setup`, shared with `faults`), the zipl disks of step 2
//! are made in [`super::zipl`], the vmcores of step 3 in `lab/sources.rs`,
//! and the checks of each run are in `lab/checks/`.

use std::fmt::Write as _;
use std::fs::{self};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use zfcpdump_format::superblock::CSUM_FIELD_OFFSET;

use crate::LabArgs;
use crate::checks::check_success;
use crate::checks::console::{console_order, initramfs_origin, peak_rss};
use crate::checks::files::{first_difference, sparse_copy};
use crate::guest::{Boot, Drive};
use crate::kit::table::{Left, Right};
use crate::kit::{Ctx, Expect, RunSpec, Table, Verdict, agent_append, setup, step};
use crate::sources::{Source, generated_source, qemu_dump_source};
use crate::zipl::{self, GEOMETRIES, Target, prepare_target};
use zfcpdump_builder::profile;
use zfcpdump_builder::util;

#[derive(Args, Clone, Debug)]
pub struct E2eArgs {
    /// The profile whose dump tool is tested; its kernel must see virtio
    /// disks (virtio.config, in every profile here), e.g. default or
    /// default-6.12
    #[arg(long, short, default_value = "default")]
    pub profile: String,
    /// Take the dump tool from the profile's Debian package: zipl and every
    /// boot use the files that `dpkg-deb -x` unpacked
    #[arg(long)]
    pub deb: bool,
    /// Test the dump tool in DIR, built elsewhere of the same profile (another
    /// toolchain's build, such as ci/trixie.sh's): zfcpdump.image,
    /// zfcpdump.rd, manifest.json and the kernel's vmlinux. The elided run
    /// still uses this checkout's build
    #[arg(long, value_name = "DIR", conflicts_with = "deb")]
    pub from: Option<PathBuf>,
    #[command(flatten)]
    pub lab: LabArgs,
}

/// Kill an agent boot after this long. A run takes seconds; the margin
/// covers a loaded 2-core CI machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// Generated vmcore: 10 MiB of memory, 4 CPUs; it fits both dump areas.
const FIXTURE_ARGS: &[&str] = &["--size", "10M", "--cpus", "4", "--seed", "0xe2e"];
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

struct RunResult {
    name: String,
    target: String,
    source: String,
    expect: String,
    verdict: Verdict,
    elapsed: Option<Duration>,
    peak_rss_kib: Option<u64>,
    log: PathBuf,
    console_tail: String,
}

pub fn run(args: &E2eArgs) -> Result<()> {
    let t0 = Instant::now();
    let root = util::project_root();
    let cache = util::cache_dir(&root);
    // One directory per profile: CI runs e2e for each kernel.
    // Named by the profile's name, also for a profile given by path.
    let name = profile::load(&root, &args.profile, &[])?.name;
    let base = cache.join("e2e").join(&name);
    let work = base.join("work");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let mut timings: Vec<(String, Duration)> = Vec::new();

    let tool = match (&args.from, args.deb) {
        (Some(dir), _) => setup::Tool::From(std::path::absolute(dir)?),
        (None, true) => setup::Tool::Deb,
        (None, false) => setup::Tool::Dist,
    };
    let ctx = setup::setup(&args.profile, &tool, &args.lab, &work, &mut timings)?;
    let res = run_all(&ctx, args, &mut timings);
    let total = t0.elapsed();
    let (table, ok) = match &res {
        Ok((results, sources)) => summary(
            &format!("profile {name}, kernel {}", ctx.release),
            results,
            sources,
            &ctx.readers.versions,
            &timings,
            total,
        ),
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
        for r in results.iter().filter(|r| !r.verdict.is_ok()) {
            r.verdict
                .print_failed_run("e2e", &r.name, &r.log, &r.console_tail);
        }
    }
    eprintln!("\n{table}");
    if ok && !args.lab.keep {
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
        targets.push(prepare_target(ctx, g, args.lab.offline)?);
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

    let mut specs = dump_specs(t512, t4k, &generated, &half_zero, &qemu)?;
    specs.extend(refusal_specs(ctx, t512, t4k, &generated, &qemu)?);

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
        step(format!(
            "   {}: {} ({}, peak RSS {})",
            r.name,
            r.verdict.result(),
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

/// The runs that must dump: each source on each disk whose dump area it
/// fits, and the elided runs on the 4K disk.
fn dump_specs<'a>(
    t512: &Target,
    t4k: &Target,
    generated: &'a Source,
    half_zero: &'a Source,
    qemu: &'a Source,
) -> Result<Vec<RunSpec<'a>>> {
    let mut specs = Vec::new();
    for target in [t512, t4k] {
        for source in [generated, qemu] {
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
        source: half_zero,
        expect: Expect::Success,
        elided: true,
    });
    // And of QEMU's dump of the real kernel, which crash reads.
    specs.push(RunSpec {
        name: format!("elided-qemu-{}", t4k.geometry.name),
        target: t4k.geometry.name,
        sector_size: t4k.geometry.sector_size,
        before: t4k.pristine.clone(),
        source: qemu,
        expect: Expect::Success,
        elided: true,
    });

    Ok(specs)
}

/// The negative runs, each of which must leave its disk as it was: a dump
/// area too small, a disk without zipl metadata, a corrupted checksum.
fn refusal_specs<'a>(
    ctx: &Ctx,
    t512: &Target,
    t4k: &Target,
    generated: &'a Source,
    qemu: &'a Source,
) -> Result<Vec<RunSpec<'a>>> {
    let mut specs = Vec::new();
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
        source: qemu,
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
        source: generated,
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
        source: generated,
        expect: Expect::Failure("dump metadata: dump superblock checksum mismatch"),
        elided: false,
    });

    Ok(specs)
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
        initrd: initrd.as_deref(),
        memory: ctx.memory,
        cpus: 1,
        append: agent_append(src.hsa_size),
        drives: vec![
            Drive::new(disk.clone(), "scsi", spec.sector_size),
            Drive::new(src.disk.clone(), "blk", 512),
        ],
        timeout: RUN_TIMEOUT,
        log: log.clone(),
    };
    let out = boot.run()?;
    let mut v = Verdict::default();
    match out.exit {
        Some(0) => {}
        Some(1) => v.fail("QEMU exited 1: the guest kernel panicked"),
        Some(n) => v.fail(format!("QEMU exited {n}")),
        None => v.fail(format!(
            "timed out after {} s: the guest did not power off",
            RUN_TIMEOUT.as_secs()
        )),
    }
    v.check(
        !out.console.contains("Kernel panic"),
        "the console shows a kernel panic",
    );
    let peak_rss_kib = peak_rss(&out.console);
    v.check(peak_rss_kib.is_some(), "no `peak RSS: N KiB` line");
    match initramfs_origin(&out.console, initrd.is_none()) {
        Some(problem) => v.fail(problem),
        None if initrd.is_none() => v.held("built-in initramfs (no -initrd)"),
        None => {}
    }
    match spec.expect {
        Expect::Success => {
            let order = console_order(&out.console, spec.elided, true);
            if order.is_empty() {
                v.held("console order");
            }
            v.extend(order);
            check_success(ctx, spec, &disk, &out.console, &mut v)?;
        }
        Expect::Failure(what) => {
            let want = format!("Dump failed: {what}");
            v.check(
                out.console.contains(&want),
                format!("the console lacks {want:?}"),
            );
            v.check(
                !out.console.contains("Dump successful"),
                "the console says `Dump successful`",
            );
            if let Some(at) = first_difference(&spec.before, &disk, &[])? {
                v.fail(format!(
                    "the disk changed: first difference at byte {at:#x}"
                ));
            }
            if let Some(l) = out.console.lines().find(|l| l.contains("Dump failed: ")) {
                v.held(l.trim().to_string());
            }
            v.held("disk unchanged byte for byte");
        }
    }
    if v.is_ok() && !ctx.keep {
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
        verdict: v,
        elapsed: out.exit.is_some().then_some(out.elapsed),
        peak_rss_kib,
        log,
        console_tail: out.tail(30),
    })
}

// ---------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------

fn summary(
    title: &str,
    results: &[RunResult],
    sources: &[String],
    versions: &[String],
    timings: &[(String, Duration)],
    total: Duration,
) -> (String, bool) {
    let ok = results.iter().all(|r| r.verdict.is_ok());
    let mut s = String::new();
    let _ = writeln!(
        s,
        "e2e ({title}): {} in {} ({} runs, {} failed)",
        if ok { "PASSED" } else { "FAILED" },
        util::fmt_duration(total),
        results.len(),
        results.iter().filter(|r| !r.verdict.is_ok()).count()
    );
    let mut runs = Table::new(&[
        ("run", Left),
        ("disk", Left),
        ("source", Left),
        ("expect", Left),
        ("result", Left),
        ("boot-to-power-off", Right),
        ("peak RSS", Right),
    ]);
    for r in results {
        runs.row([
            r.name.clone(),
            r.target.clone(),
            r.source.clone(),
            r.expect.clone(),
            r.verdict.result().to_string(),
            r.elapsed
                .map_or("timeout".into(), |d| format!("{:.1} s", d.as_secs_f64())),
            r.peak_rss_kib.map_or("-".into(), |k| format!("{k} KiB")),
        ]);
    }
    let _ = write!(s, "\n{}", runs.render());
    let _ = writeln!(s, "\nchecked:");
    for r in results {
        let _ = writeln!(s, "  {}: {}", r.name, r.verdict.checked.join("; "));
    }
    let _ = writeln!(s, "\nsources:");
    for a in sources {
        let _ = writeln!(s, "  {a}");
    }
    let _ = writeln!(
        s,
        "\nreference tools (Debian s390x, resolved when provisioned):"
    );
    for v in versions {
        let _ = writeln!(s, "  {v}");
    }
    let _ = writeln!(s, "\nsetup steps:");
    let mut steps = Table::headless(&[Left, Right]).indent("  ");
    for (what, d) in timings {
        steps.row([what.clone(), format!("{:.1} s", d.as_secs_f64())]);
    }
    s.push_str(&steps.render());
    (s, ok)
}
