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
//! Setup is e2e's ([`e2e::setup`]: the profile, its zero-page elision
//! variant, the readers, real zipl disks) plus a build of the profile with a
//! 1 s progress interval and a 10 s device timeout, so that the slow and the
//! missing disk take seconds. Two guests run at a time (QEMU's TCG uses one
//! core). Work files go to `<target>/zfcpdump/faults/<profile>/work/`, the
//! table to `…/faults/<profile>/summary.txt`.

mod blkdebug;
mod powercut;
mod report;
mod verdict;

use std::cell::RefCell;
use std::fs::{self, File};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use zfcpdump_format::elf::{SeekReader, Vmcore};
use zfcpdump_format::plan::{Step, copy_plan};
use zfcpdump_format::superblock::CSUM_FIELD_OFFSET;

use crate::build::dist::{self, DistArgs, IMAGE, RD};
use crate::build::profile::{self, ProfileArgs};
use crate::lab::LabArgs;
use crate::lab::checks::files::{first_difference, sparse_copy, sparse_copy_range};
use crate::lab::e2e::{self, Ctx};
use crate::lab::guest::{Boot, Drive, Qmp, Watch};
use crate::lab::sources::{Source, generated_source, qemu_dump_source};
use crate::lab::zipl::{GEOMETRIES, Target, prepare_target};
use crate::util;
use blkdebug::{Io, Rule};
use verdict::{Holds, Status};

#[derive(Args, Clone, Debug)]
pub struct FaultsArgs {
    /// The profile whose dump tool is tested (its kernel must see virtio
    /// disks: the qemu fragment)
    #[arg(long, short, default_value = "qemu")]
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
    pub(crate) problems: Vec<String>,
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
    let ctx = e2e::setup(&args.profile, false, &args.lab, &work, &mut timings)?;
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
    let [used512, used4k] = [used512, used4k];

    step("3. faults");
    let mut jobs = eio_jobs(&[&fresh512, &used512], &new)?;
    jobs.extend(other_jobs(&fresh512, &used512, &new)?);
    jobs.push(slow_job(&fresh4k, &qemu));
    let rows = run_jobs(&ctx, &images, &jobs);
    let mut rows = rows?;

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
    for r in rows.iter().filter(|r| !r.problems.is_empty()) {
        crate::lab::print_failed_run("faults", &r.name, &r.problems, &r.log, &r.tail);
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
        row.problems.is_empty(),
        "the dump that makes the {label} disk failed: {}",
        row.problems.join("; ")
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

/// The agent's copy in write order, for a byte-exact dump of `src`: the
/// first data byte, the middle, and the last data byte (file offsets).
fn data_points(src: &Source) -> Result<(u64, u64, u64)> {
    let mut f = File::open(&src.file)?;
    let vm = Vmcore::read(&mut SeekReader::new(&mut f), src.size)
        .map_err(|e| anyhow::anyhow!("{}: {e}", src.file.display()))?;
    let plan = copy_plan(&vm.phdrs, src.extent, src.hsa_size)
        .map_err(|e| anyhow::anyhow!("{}: {e}", src.file.display()))?;
    let data: Vec<(u64, u64)> = plan
        .iter()
        .filter_map(|s| match *s {
            Step::Copy { start, end, .. } if start != 0 => Some((start, end)),
            _ => None,
        })
        .collect();
    let (first, last) = (data.first(), data.last());
    let (Some(&(first, _)), Some(&(_, last_end))) = (first, last) else {
        bail!("{}: the plan copies no data", src.file.display());
    };
    Ok((first, (src.extent / 2) & !4095, last_end - 512))
}

/// EIO on each write of the dump, on a fresh and on a used disk.
fn eio_jobs<'a>(disks: &[&'a Disk], src: &'a Source) -> Result<Vec<Job<'a>>> {
    let (first, middle, last) = data_points(src)?;
    let mut jobs = Vec::new();
    for &disk in disks {
        let area = disk.area.start;
        let csum = disk.csum_field.start;
        let used = disk.older.is_some();
        let points: [(&str, &str, Rule, Expect); 7] = [
            (
                "marker",
                "EIO: busy marker write",
                rule(area, Some(blkdebug::STATE_BUSY_MARKER)),
                Expect::Fail {
                    console: "busy marker: ",
                    eio: true,
                    states: if used { &["complete"] } else { &["empty"] },
                    unchanged: true,
                },
            ),
            (
                "early",
                "EIO: first data block",
                rule(area + first, None),
                incomplete("copy: "),
            ),
            (
                "middle",
                "EIO: middle of the data",
                rule(area + middle, None),
                incomplete("copy: "),
            ),
            (
                "last",
                "EIO: last data block",
                rule(area + last, None),
                incomplete("copy: "),
            ),
            (
                "header",
                "EIO: ELF header block",
                rule(area, Some(blkdebug::STATE_HEADER)),
                incomplete("copy: fsync of the ELF header block"),
            ),
            (
                "csum1",
                "EIO: checksum after the marker",
                rule(csum, Some(blkdebug::STATE_FIRST_CSUM)),
                incomplete("busy marker: fsync after the checksum update"),
            ),
            (
                "csum2",
                "EIO: checksum after the header",
                rule(csum, Some(blkdebug::STATE_SECOND_CSUM)),
                Expect::Fail {
                    console: "checksum: ",
                    eio: true,
                    states: &["invalid"],
                    unchanged: false,
                },
            ),
        ];
        for (short, fault, r, expect) in points {
            let name = format!("eio-{short}-{}", disk.label.replace(' ', "-"));
            jobs.push(Job {
                disk_rule: Some(r),
                ..Job::plain(name, fault, Some(disk), src, expect)
            });
        }
    }
    Ok(jobs)
}

fn rule(offset: u64, state: Option<u32>) -> Rule {
    Rule {
        io: Io::Write,
        offset,
        state,
    }
}

fn incomplete(console: &'static str) -> Expect {
    Expect::Fail {
        console,
        eio: true,
        states: &["incomplete"],
        unchanged: false,
    }
}

/// The filtered dump's header, the source's reads, the late and the
/// missing disk.
fn other_jobs<'a>(fresh: &'a Disk, used: &'a Disk, src: &'a Source) -> Result<Vec<Job<'a>>> {
    let (_, middle, _) = data_points(src)?;
    let base = |name: &str, fault: &str, disk: Option<&'a Disk>, expect: Expect| {
        Job::plain(name, fault, disk, src, expect)
    };
    Ok(vec![
        Job {
            elided: true,
            disk_rule: Some(rule(fresh.area.start, Some(blkdebug::STATE_HEADER))),
            ..base(
                "eio-header-filtered-fresh-512",
                "EIO: ELF header block, filtered dump (level 1)",
                Some(fresh),
                incomplete("copy: fsync of the ELF header block"),
            )
        },
        Job {
            source_rule: Some(Rule {
                io: Io::Read,
                offset: middle,
                state: None,
            }),
            not_zero_at: Some(used.area.start + middle),
            ..base(
                "eio-source-read-used-512",
                "EIO: read of the vmcore, middle",
                Some(used),
                incomplete("copy: reading "),
            )
        },
        Job {
            hotplug: true,
            ..base(
                "late-disk-fresh-512",
                &format!("late disk (device_add after {} s)", HOTPLUG_AFTER.as_secs()),
                Some(fresh),
                Expect::Success,
            )
        },
        base(
            "missing-disk",
            "missing disk",
            None,
            Expect::Fail {
                console: "dump disk: /dev/sda did not appear within 10 s",
                eio: false,
                states: &[],
                unchanged: true,
            },
        ),
    ])
}

/// A throttled disk: progress lines at the interval, with an ETA that holds.
fn slow_job<'a>(disk: &'a Disk, src: &'a Source) -> Job<'a> {
    Job {
        write_bps: Some(SLOW_BPS),
        ..Job::plain(
            format!("slow-disk-{}", disk.label.replace(' ', "-")),
            format!("slow disk ({} MiB/s)", SLOW_BPS >> 20),
            Some(disk),
            src,
            Expect::Slow,
        )
    }
}

/// Runs the jobs two at a time; rows in job order.
fn run_jobs(ctx: &Ctx, images: &Images, jobs: &[Job]) -> Result<Vec<Row>> {
    let next = AtomicUsize::new(0);
    let rows: Mutex<Vec<Option<Result<Row>>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(job) = jobs.get(i) else { break };
                    let r = run_job(ctx, images, job);
                    if let Ok(row) = &r {
                        // Cut disks go on to crash (powercut::readers).
                        if row.problems.is_empty()
                            && !ctx.keep
                            && !matches!(job.expect, Expect::PowerCut)
                        {
                            let _ = fs::remove_file(ctx.work.join(format!("{}.img", job.name)));
                        }
                        step(format!(
                            "   {}: {} ({}; {})",
                            row.name,
                            if row.problems.is_empty() {
                                "ok"
                            } else {
                                "FAILED"
                            },
                            row.console,
                            row.status
                        ));
                    }
                    rows.lock().unwrap()[i] = Some(r);
                }
            });
        }
    });
    rows.into_inner()
        .unwrap()
        .into_iter()
        .zip(jobs)
        .map(|(r, j)| {
            r.expect("every job ran")
                .with_context(|| format!("run {}: the harness failed", j.name))
        })
        .collect()
}

fn run_job(ctx: &Ctx, images: &Images, job: &Job) -> Result<Row> {
    let w = &ctx.work;
    let log = w.join(format!("{}.console.log", job.name));
    let img = w.join(format!("{}.img", job.name));
    let mut drives = Vec::new();
    if let Some(d) = job.disk {
        sparse_copy(&d.before, &img)?;
        let mut drive = Drive::new(img.clone(), "scsi", d.sector_size);
        drive.blkdebug = rules_file(w, &job.name, "disk", &job.disk_rule)?;
        drive.write_bps = job.write_bps;
        drive.hotplug = job.hotplug;
        drives.push(drive);
    }
    let mut src = Drive::new(job.source.disk.clone(), "blk", 512);
    src.blkdebug = rules_file(w, &job.name, "source", &job.source_rule)?;
    src.read_only = true;
    drives.push(src);
    let (image, initrd) = match job.elided {
        true => (&images.elided_image, &images.elided_initrd),
        false => (&images.image, &images.initrd),
    };
    let boot = Boot {
        image,
        initrd: initrd.as_deref(),
        memory: ctx.memory,
        cpus: 1,
        append: e2e::agent_append(job.source.hsa_size),
        drives,
        timeout: RUN_TIMEOUT,
        log: log.clone(),
    };
    let sock = w.join(format!("{}.qmp", job.name));
    let mut extra = Vec::new();
    if job.hotplug {
        let _ = fs::remove_file(&sock);
        extra.extend([
            "-qmp".to_string(),
            format!("unix:{},server=on,wait=off", sock.display()),
        ]);
    }
    let plug_error: RefCell<Option<String>> = RefCell::new(None);
    let mut anchor: Option<Duration> = None;
    let mut waiting: Option<Duration> = None;
    let mut plugged = false;
    let out = boot.run_watched(&extra, |now, line| {
        if let (Some((start, _)), Some(l)) = (job.kill, line)
            && anchor.is_none()
            && l.starts_with(start)
        {
            anchor = Some(now);
        }
        if let (Some((_, delay)), Some(a)) = (job.kill, anchor)
            && now >= a + delay
        {
            return Watch::Kill;
        }
        if job.hotplug && !plugged {
            if line.is_some_and(|l| l.starts_with("test override zfcpdump.disk=")) {
                waiting = Some(now);
            }
            if waiting.is_some_and(|t| now >= t + HOTPLUG_AFTER) {
                plugged = true;
                let res = Qmp::connect(&sock, Duration::from_secs(10), &|| false)
                    .and_then(|mut q| boot.drives[0].device_add(&mut q, 0));
                if let Err(e) = res {
                    *plug_error.borrow_mut() = Some(format!("device_add failed: {e:#}"));
                }
            }
        }
        Watch::Go
    })?;
    let mut p = Vec::new();
    if let Some(e) = plug_error.into_inner() {
        p.push(e);
    }
    if job.hotplug && !plugged {
        p.push("the agent never said it waits for /dev/sda: nothing was plugged in".into());
    }
    let verdict = out
        .console
        .lines()
        .find(|l| l.starts_with("Dump failed: ") || l.starts_with("Dump successful"))
        .map(str::to_string);
    let exit = match (out.exit, out.killed) {
        (_, true) => format!("killed at {:.2} s", out.elapsed.as_secs_f64()),
        (Some(n), _) => n.to_string(),
        (None, _) => "timeout".into(),
    };
    let powered_off = out.exit == Some(0) && out.console.contains("\npeak RSS: ");
    match &job.expect {
        Expect::PowerCut => {
            if !out.killed && !powered_off {
                p.push(format!("neither cut nor powered off: exit {exit}"));
            }
        }
        _ => {
            if !powered_off {
                p.push(format!(
                    "the guest did not print `peak RSS` and power off (exit {exit})"
                ));
            }
            if out.console.contains("Kernel panic") {
                p.push("the console shows a kernel panic".into());
            }
        }
    }
    match (&job.expect, verdict.as_deref()) {
        (Expect::Fail { console, eio, .. }, v) => {
            let want = format!("Dump failed: {console}");
            match v {
                Some(l) if l.starts_with(&want) => {
                    if *eio && !l.ends_with("(os error 5))") {
                        p.push(format!("{l:?} does not name the errno EIO (os error 5)"));
                    }
                }
                other => p.push(format!("the console says {other:?}, not {want:?}…")),
            }
        }
        (Expect::Success | Expect::Slow, v) if v != Some("Dump successful") => {
            p.push(format!("the console says {v:?}, not \"Dump successful\""))
        }
        _ => {}
    }
    if matches!(job.expect, Expect::Slow) {
        p.extend(report::progress_problems(&out.lines));
    }
    let mut status = "-".to_string();
    let mut outside = "-".to_string();
    if let Some(d) = job.disk {
        let st = Status::of(&ctx.disk_tool, &img)?;
        status = st.describe();
        check_disk(ctx, job, d, &img, &st, &mut p)?;
        let (n, only_csum) =
            verdict::changed_outside(&d.before, &img, d.area.clone(), d.csum_field.clone())?;
        outside = match n {
            0 => "none".into(),
            n if only_csum => format!("{n} B, csum field"),
            n => format!("{n} B OUTSIDE"),
        };
        if !only_csum {
            p.push(format!(
                "{n} bytes outside the dump area changed, not only the csum field"
            ));
        }
    }
    Ok(Row {
        name: job.name.clone(),
        fault: job.fault.clone(),
        disk: job.disk.map_or("none".into(), |d| d.label.clone()),
        console: match (verdict, out.killed) {
            (Some(v), _) => v,
            (None, true) => "(cut before a verdict)".into(),
            (None, false) => "(no verdict)".into(),
        },
        exit,
        status,
        outside,
        problems: p,
        log,
        tail: out.tail(30),
        lines: out.lines,
    })
}

/// Writes a blkdebug rules file for `rule`, if any.
fn rules_file(
    work: &Path,
    name: &str,
    which: &str,
    rule: &Option<Rule>,
) -> Result<Option<PathBuf>> {
    let Some(r) = rule else { return Ok(None) };
    let path = work.join(format!("{name}.{which}.blkdebug"));
    fs::write(&path, r.config()).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Some(path))
}

/// The disk after a run: the status the fault allows, and the rule that an
/// ELF header means a whole dump.
fn check_disk(
    ctx: &Ctx,
    job: &Job,
    d: &Disk,
    img: &Path,
    st: &Status,
    p: &mut Vec<String>,
) -> Result<()> {
    let older = d.older.as_ref();
    let mut candidates = vec![job.source];
    candidates.extend(older.map(|(s, _)| s));
    let holds = match job.elided {
        // A filtered dump is not the vmcore byte for byte; the header EIO
        // run must not leave any ELF header.
        true => match verdict::holds(img, d.area.start, &[])? {
            Holds::NoElf => Holds::NoElf,
            _ => Holds::Mixed("a filtered run left an ELF header".into()),
        },
        false => verdict::holds(img, d.area.start, &candidates)?,
    };
    if let Holds::Mixed(why) = &holds {
        p.push(why.clone());
    }
    match (&st.state[..], &holds) {
        ("complete", Holds::Exact(_)) | ("invalid", Holds::Exact(_)) => {}
        ("complete", _) => p.push("status says complete, but no whole dump is there".into()),
        ("invalid", Holds::NoElf) => p.push(format!(
            "status says invalid without an ELF header: {}",
            st.problem.as_deref().unwrap_or("?")
        )),
        ("empty" | "incomplete", Holds::NoElf) => {}
        (s, _) => p.push(format!("unexpected status {s:?}")),
    }
    if let (Some((_, before)), Holds::Exact(name)) = (older, &holds)
        && *name == "older"
        && st.identity != before.identity
    {
        p.push(format!(
            "the older dump reads as {:?}, was {:?}",
            st.identity, before.identity
        ));
    }
    match &job.expect {
        Expect::Fail {
            states, unchanged, ..
        } => {
            if !states.is_empty() && !states.contains(&&st.state[..]) {
                p.push(format!(
                    "status {:?}, expected {}",
                    st.state,
                    states.join(" or ")
                ));
            }
            if *unchanged && let Some(at) = first_difference(&d.before, img, &[])? {
                p.push(format!("the disk changed at byte {at:#x}"));
            }
        }
        Expect::Success | Expect::Slow => {
            if !matches!(holds, Holds::Exact(n) if n == job.source.name) {
                p.push(format!(
                    "the dump area is not the {} vmcore byte for byte",
                    job.source.name
                ));
            }
        }
        Expect::PowerCut => {
            if older.is_none() && st.state == "complete" && !matches!(holds, Holds::Exact(_)) {
                p.push("a fresh disk reads as complete after a cut".into());
            }
        }
    }
    if let Some(at) = job.not_zero_at
        && verdict::zero_block(img, at)?
    {
        p.push(format!(
            "the block at disk byte {at:#x}, where the read failed, holds zeros"
        ));
    }
    // zgetdump must refuse whatever has no ELF header, and read a whole
    // dump of a source it can read.
    let part = ctx.work.join(format!("{}.partition", job.name));
    let check = match &holds {
        Holds::NoElf => Some(false),
        Holds::Exact(n) => candidates
            .iter()
            .find(|s| s.name == *n)
            .and_then(|s| s.zgetdump.then_some(true)),
        Holds::Mixed(_) => None,
    };
    if let Some(should_read) = check {
        sparse_copy_range(img, d.part.start, d.part.end - d.part.start, &part)?;
        let res = ctx.readers.zgetdump.info(&part);
        match (should_read, res) {
            (false, Ok(info)) => p.push(format!(
                "zgetdump -i reads the partition as a dump:\n{}",
                info.text
            )),
            (true, Err(e)) => p.push(format!("zgetdump -i refuses the whole dump: {e:#}")),
            _ => {}
        }
        let _ = fs::remove_file(&part);
    }
    Ok(())
}
