//! `faults`: the dump tool under faults of the emulated machine, through the
//! real kernel and block layer: EIO on chosen writes of the dump disk and on
//! reads of the vmcore (QEMU's blkdebug), power cuts (SIGKILL of QEMU at
//! seeded moments), a throttled disk, a disk that comes late and one that
//! never comes.
//!
//! The rule every run is held to: no fault leaves a disk that looks like a
//! complete dump and is not one. A dump area that starts with an ELF header
//! must hold a whole vmcore byte for byte (the new one, or the older dump
//! the disk held before); `zfcpdump-disk status` must say what the fault
//! left, zgetdump (and, after power cuts, crash) must refuse anything else;
//! outside the dump area only the checksum field may change.
//!
//! Setup is e2e's (`kit::setup`: the profile, its zero-page elision
//! variant, the readers, real zipl disks) plus a build of the profile with a
//! 1 s progress interval and a 10 s device timeout, so that the slow and the
//! missing disk take seconds. Two guests run at a time (QEMU's TCG uses one
//! core). Work files go to `<target>/zfcpdump/faults/<profile>/work/`, the
//! table to `…/faults/<profile>/summary.txt`.

mod blkdebug;
mod jobs;
mod powercut;
mod report;
mod run;
mod verdict;

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use zfcpdump_format::superblock::CSUM_FIELD_OFFSET;

use crate::LabArgs;
use crate::kit::{Ctx, Verdict, setup};
use crate::sources::{Source, generated_source, qemu_dump_source};
use crate::zipl::{GEOMETRIES, Target, prepare_target};
use blkdebug::Rule;
use jobs::{eio_jobs, other_jobs, slow_job};
use run::{run_job, run_jobs};
use verdict::Status;
use zfcpdump_builder::dist::{self, DistArgs, IMAGE, RD};
use zfcpdump_builder::profile::{self, ProfileArgs};
use zfcpdump_builder::util;

#[derive(Args, Clone, Debug)]
pub struct FaultsArgs {
    /// The profile whose dump tool is tested (its kernel must see virtio
    /// disks: virtio.config, in every profile here)
    #[arg(long, short, default_value = "default")]
    pub profile: String,
    /// Power cuts: SIGKILLs of QEMU at seeded random moments of the dump (of
    /// 20 or more, at least 20 must land before the verdict)
    #[arg(long, default_value_t = 22, value_name = "N")]
    pub power_cuts: u32,
    /// Seed of the power-cut moments (decimal)
    #[arg(long, default_value_t = 0x5eed, value_name = "S")]
    pub seed: u64,
    #[command(flatten)]
    pub lab: LabArgs,
}

/// The settings of the fault build: progress every second, a 10 s wait
/// for the disk.
const FAULT_SETS: [&str; 2] = ["agent.progress_interval_s=1", "agent.device_timeout_s=10"];
const DEVICE_TIMEOUT_S: u64 = 10;
/// Kill a boot after this long; a run takes seconds.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// The throttled disk of the slow-disk run (QEMU's 64 MiB dump: about 8 s),
/// and of the power cuts (which spread over that copy at this rate).
const SLOW_BPS: u64 = 8 << 20;
const POWER_CUT_BPS: u64 = 24 << 20;
/// The late disk is plugged in this long after the agent starts waiting.
const HOTPLUG_AFTER: Duration = Duration::from_secs(3);
/// The older dump of the used disks: another kernel release, another time.
const OLDER_ARGS: &[&str] = &[
    "--size",
    "6M",
    "--cpus",
    "2",
    "--seed",
    "0x01d",
    "--osrelease",
    "6.1.0-older",
    "--crash-time",
    "1600000000",
];
const NEW_ARGS: &[&str] = &["--size", "10M", "--cpus", "4", "--seed", "0xfa17"];

pub(crate) fn step(msg: impl AsRef<str>) {
    eprintln!("[faults] {}", msg.as_ref());
}

/// A disk before a run: fresh from zipl, or holding an older dump.
pub(crate) struct Disk {
    label: String,
    before: PathBuf,
    sector_size: u32,
    area: Range<u64>,
    csum_field: Range<u64>,
    part: Range<u64>,
    /// The dump it holds, for a used disk.
    older: Option<(Source, Status)>,
}

impl Disk {
    fn from_target(t: &Target, label: &str) -> Disk {
        let field = t.sb_offset + CSUM_FIELD_OFFSET;
        Disk {
            label: label.into(),
            before: t.pristine.clone(),
            sector_size: t.geometry.sector_size,
            area: t.sb.dump_area(),
            csum_field: field..field + 8,
            part: t.sb.partition(),
            older: None,
        }
    }
}

/// What a run must end in.
pub(crate) enum Expect {
    /// `Dump failed: <console>…` (with `(os error 5)` when `eio`), a
    /// power-off, and a status among `states`; `unchanged`: the disk is
    /// byte for byte as before.
    Fail {
        console: &'static str,
        eio: bool,
        states: &'static [&'static str],
        unchanged: bool,
    },
    /// `Dump successful`, the disk complete and byte-exact.
    Success,
    /// Success with progress lines at the interval and a plausible ETA.
    Slow,
    /// Killed: whatever is on the disk must be what it looks like.
    PowerCut,
}

/// One guest boot.
pub(crate) struct Job<'a> {
    name: String,
    fault: String,
    /// None: no dump disk at all.
    disk: Option<&'a Disk>,
    source: &'a Source,
    elided: bool,
    disk_rule: Option<Rule>,
    source_rule: Option<Rule>,
    write_bps: Option<u64>,
    hotplug: bool,
    /// SIGKILL this long after the console line that starts with the anchor.
    kill: Option<(&'static str, Duration)>,
    /// Disk byte that must not read as zeros afterwards (a read error must
    /// never be written as zeros).
    not_zero_at: Option<u64>,
    expect: Expect,
}

impl<'a> Job<'a> {
    /// A run of `source` onto `disk` with no fault; the fields of a fault
    /// are set over it.
    pub(crate) fn plain(
        name: impl Into<String>,
        fault: impl Into<String>,
        disk: Option<&'a Disk>,
        source: &'a Source,
        expect: Expect,
    ) -> Job<'a> {
        Job {
            name: name.into(),
            fault: fault.into(),
            disk,
            source,
            elided: false,
            disk_rule: None,
            source_rule: None,
            write_bps: None,
            hotplug: false,
            kill: None,
            not_zero_at: None,
            expect,
        }
    }
}

/// What a run did, for the table.
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) fault: String,
    pub(crate) disk: String,
    pub(crate) console: String,
    pub(crate) exit: String,
    pub(crate) status: String,
    pub(crate) outside: String,
    /// What the dump area holds afterwards (None: no disk).
    pub(crate) holds: Option<verdict::Holds>,
    pub(crate) verdict: Verdict,
    pub(crate) log: PathBuf,
    pub(crate) tail: String,
    pub(crate) lines: Vec<(Duration, String)>,
}

/// Boot images: the fault build, and e2e's elided build.
struct Images {
    image: PathBuf,
    initrd: Option<PathBuf>,
    elided_image: PathBuf,
    elided_initrd: Option<PathBuf>,
}

pub fn run(args: &FaultsArgs) -> Result<()> {
    let t0 = Instant::now();
    let root = util::project_root();
    let name = profile::load(&root, &args.profile, &[])?.name;
    let base = util::cache_dir(&root).join("faults").join(&name);
    let work = base.join("work");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let mut timings = Vec::new();
    let ctx = setup::setup(
        &args.profile,
        &setup::Tool::Dist,
        &args.lab,
        &work,
        &mut timings,
    )?;
    let images = fault_build(&root, &work, &name, &ctx, &args.lab)?;

    step("2. disks: real zipl --dumpto on a 512-byte and a 4K disk, and copies with an older dump");
    let t512 = prepare_target(&ctx, &GEOMETRIES[0], args.lab.offline)?;
    let t4k = prepare_target(&ctx, &GEOMETRIES[1], args.lab.offline)?;
    let new = generated_source(&ctx, "new", NEW_ARGS)?;
    let older = generated_source(&ctx, "older", OLDER_ARGS)?;
    let qemu = qemu_dump_source(&ctx)?;
    let fresh512 = Disk::from_target(&t512, "fresh 512");
    let fresh4k = Disk::from_target(&t4k, "fresh 4k");
    let used512 = used_disk(&ctx, &images, &t512, "used 512", &older)?;
    let used4k = used_disk(&ctx, &images, &t4k, "used 4k", &older)?;

    step("3. faults");
    let mut jobs = eio_jobs(&[&fresh512, &used512], &new)?;
    jobs.extend(other_jobs(&fresh512, &used512, &new)?);
    jobs.push(slow_job(&fresh4k, &qemu));
    let mut rows = run_jobs(&ctx, &images, &jobs)?;

    step(format!(
        "4. {} power cuts (seed {:#x}), throttled to {} MiB/s",
        args.power_cuts,
        args.seed,
        POWER_CUT_BPS >> 20
    ));
    let calibration = Job {
        write_bps: Some(POWER_CUT_BPS),
        ..Job::plain(
            "calibration-throttled",
            format!("none (throttled {} MiB/s)", POWER_CUT_BPS >> 20),
            Some(&fresh4k),
            &qemu,
            Expect::Success,
        )
    };
    let cal = run_job(&ctx, &images, &calibration)?;
    let times = powercut::Calibration::from_lines(&cal.lines);
    rows.push(cal);
    let times = times?;
    let cuts = powercut::jobs(
        args.seed,
        args.power_cuts,
        &times,
        [&fresh4k, &used4k],
        &qemu,
    );
    let mut cut_rows = run_jobs(&ctx, &images, &cuts)?;
    let reader_rows = powercut::readers(&ctx, &cuts, &mut cut_rows)?;
    rows.extend(cut_rows);

    let total = t0.elapsed();
    let (table, ok) = report::table(
        &format!("profile {name}, kernel {}", ctx.release),
        &rows,
        &reader_rows,
        &times,
        args.seed,
        total,
    );
    util::write_atomic(&base.join("summary.txt"), table.as_bytes())?;
    for r in rows.iter().filter(|r| !r.verdict.is_ok()) {
        r.verdict
            .print_failed_run("faults", &r.name, &r.log, &r.tail);
    }
    eprintln!("\n{table}");
    if !ok {
        bail!(
            "faults failed (see above); disks and console logs kept in {}",
            work.display()
        );
    }
    if !args.lab.keep {
        fs::remove_dir_all(&work).with_context(|| format!("cannot remove {}", work.display()))?;
    }
    step(format!(
        "all passed in {}; summary: {}",
        util::fmt_duration(total),
        base.join("summary.txt").display()
    ));
    Ok(())
}

/// The profile with [`FAULT_SETS`], published into the work directory.
fn fault_build(root: &Path, work: &Path, name: &str, ctx: &Ctx, lab: &LabArgs) -> Result<Images> {
    step(format!(
        "1c. building the {name} profile with --set {} into the work directory",
        FAULT_SETS.join(" --set ")
    ));
    let dir = work.join(format!("dist-{name}-faults"));
    let sets: Vec<String> = FAULT_SETS.iter().map(|s| s.to_string()).collect();
    let p = profile::load(root, name, &sets)?;
    ensure!(
        p.agent.device_timeout_s as u64 == DEVICE_TIMEOUT_S,
        "--set {} did not reach the profile",
        FAULT_SETS[1]
    );
    dist::run(&DistArgs {
        out_dir: Some(dir.clone()),
        ..DistArgs::new(
            ProfileArgs {
                profile: name.to_string(),
                sets,
            },
            lab.no_provision,
            lab.offline,
        )
    })?;
    let external = ctx.initrd.is_some();
    Ok(Images {
        image: dir.join(IMAGE),
        initrd: external.then(|| dir.join(RD)),
        elided_image: ctx.elided_image.clone(),
        elided_initrd: ctx.elided_initrd.clone(),
    })
}

/// A copy of a fresh disk with a dump of `older` on it, made by the agent.
fn used_disk(ctx: &Ctx, images: &Images, t: &Target, label: &str, older: &Source) -> Result<Disk> {
    let fresh = Disk::from_target(t, label);
    let job = Job::plain(
        format!("older-dump-{}", t.geometry.name),
        "none: the older dump",
        Some(&fresh),
        older,
        Expect::Success,
    );
    let row = run_job(ctx, images, &job)?;
    ensure!(
        row.verdict.is_ok(),
        "the dump that makes the {label} disk failed: {}",
        row.verdict.problems.join("; ")
    );
    let disk = ctx.work.join(format!("{}.img", job.name));
    let before = ctx
        .work
        .join(format!("used-{}.before.img", t.geometry.name));
    fs::rename(&disk, &before)?;
    let status = Status::of(&ctx.disk_tool, &before)?;
    ensure!(
        status.state == "complete"
            && status
                .identity
                .as_deref()
                .is_some_and(|i| i.contains("6.1.0-older") && i.contains("2020-09-13")),
        "the {label} disk should hold the older dump (6.1.0-older, crashed 2020-09-13):\n{}",
        status.text
    );
    step(format!(
        "   {label}: {}",
        status.describe().trim_start_matches("complete: ")
    ));
    Ok(Disk {
        before,
        older: Some((older.clone(), status)),
        ..fresh
    })
}
