//! Running a fault job: the guest with its faulty drives, the watcher that
//! cuts the power or plugs the disk in, and the checks of what it left.

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::blkdebug::Rule;
use super::verdict::{self, Holds, Status};
use super::{Disk, Expect, HOTPLUG_AFTER, Images, Job, RUN_TIMEOUT, Row, report, step};
use crate::checks::files::{first_difference, sparse_copy, sparse_copy_range};
use crate::guest::{Boot, Drive, Outcome, Qmp, Watch};
use crate::kit::{Ctx, Verdict, agent_append, parallel_map};

/// Guests at a time: QEMU under TCG uses about one core.
const PARALLEL: usize = 2;

/// Runs the jobs two at a time; rows in job order.
pub(crate) fn run_jobs(ctx: &Ctx, images: &Images, jobs: &[Job]) -> Result<Vec<Row>> {
    parallel_map(jobs, PARALLEL, |job| {
        let r = run_job(ctx, images, job);
        if let Ok(row) = &r {
            // Cut disks go on to crash (powercut::readers).
            if row.verdict.is_ok() && !ctx.keep && !matches!(job.expect, Expect::PowerCut) {
                let _ = fs::remove_file(ctx.work.join(format!("{}.img", job.name)));
            }
            step(format!(
                "   {}: {} ({}; {})",
                row.name,
                row.verdict.result(),
                row.console,
                row.status
            ));
        }
        r.with_context(|| format!("run {}: the harness failed", job.name))
    })
    .into_iter()
    .collect()
}

pub(crate) fn run_job(ctx: &Ctx, images: &Images, job: &Job) -> Result<Row> {
    let w = &ctx.work;
    let log = w.join(format!("{}.console.log", job.name));
    let img = w.join(format!("{}.img", job.name));
    let boot = boot_of(ctx, images, job, &img, &log)?;
    let mut v = Verdict::default();
    let out = run_watched(&boot, job, &w.join(format!("{}.qmp", job.name)), &mut v)?;
    let console_verdict = out
        .console
        .lines()
        .find(|l| l.starts_with("Dump failed: ") || l.starts_with("Dump successful"))
        .map(str::to_string);
    let exit = match (out.exit, out.killed) {
        (_, true) => format!("killed at {:.2} s", out.elapsed.as_secs_f64()),
        (Some(n), _) => n.to_string(),
        (None, _) => "timeout".into(),
    };
    check_console(job, &out, &exit, console_verdict.as_deref(), &mut v);
    let (status, outside, holds) = check_disk_after(ctx, job, &img, &mut v)?;
    Ok(Row {
        name: job.name.clone(),
        fault: job.fault.clone(),
        disk: job.disk.map_or("none".into(), |d| d.label.clone()),
        console: match (console_verdict, out.killed) {
            (Some(l), _) => l,
            (None, true) => "(cut before a verdict)".into(),
            (None, false) => "(no verdict)".into(),
        },
        exit,
        status,
        outside,
        holds,
        verdict: v,
        log,
        tail: out.tail(30),
        lines: out.lines,
    })
}

/// The guest of a job: the dump disk (a copy of the job's disk at `img`)
/// and the source, each through blkdebug when the job has a rule for it.
fn boot_of<'a>(
    ctx: &Ctx,
    images: &'a Images,
    job: &Job,
    img: &Path,
    log: &Path,
) -> Result<Boot<'a>> {
    let w = &ctx.work;
    let mut drives = Vec::new();
    if let Some(d) = job.disk {
        sparse_copy(&d.before, img)?;
        let mut drive = Drive::new(img.to_path_buf(), "scsi", d.sector_size);
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
    Ok(Boot {
        image,
        initrd: initrd.as_deref(),
        memory: ctx.memory,
        cpus: 1,
        append: agent_append(job.source.hsa_size),
        drives,
        timeout: RUN_TIMEOUT,
        log: log.to_path_buf(),
    })
}

/// Runs the guest with the watcher that cuts the power (SIGKILL) or plugs
/// the disk in (QMP at `sock`) when the job asks for it; what went wrong
/// with the plugging goes into `v`.
fn run_watched(boot: &Boot, job: &Job, sock: &Path, v: &mut Verdict) -> Result<Outcome> {
    let mut extra = Vec::new();
    if job.hotplug {
        let _ = fs::remove_file(sock);
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
        if let (Some((start, _)), Some(l)) = (job.kill, line) {
            if anchor.is_none() && l.starts_with(start) {
                anchor = Some(now);
            }
        }
        if let (Some((_, delay)), Some(a)) = (job.kill, anchor) {
            if now >= a + delay {
                return Watch::Kill;
            }
        }
        if job.hotplug && !plugged {
            if line.is_some_and(|l| l.starts_with("test override zfcpdump.disk=")) {
                waiting = Some(now);
            }
            if waiting.is_some_and(|t| now >= t + HOTPLUG_AFTER) {
                plugged = true;
                let res = Qmp::connect(sock, Duration::from_secs(10), &|| false)
                    .and_then(|mut q| boot.drives[0].device_add(&mut q, 0));
                if let Err(e) = res {
                    *plug_error.borrow_mut() = Some(format!("device_add failed: {e:#}"));
                }
            }
        }
        Watch::Go
    })?;
    if let Some(e) = plug_error.into_inner() {
        v.fail(e);
    }
    if job.hotplug && !plugged {
        v.fail("the agent never said it waits for /dev/sda: nothing was plugged in");
    }
    Ok(out)
}

/// The console against what the job must end in: a power-off (or the
/// cut), no panic, the verdict line, and for the slow disk the progress.
fn check_console(
    job: &Job,
    out: &Outcome,
    exit: &str,
    console_verdict: Option<&str>,
    v: &mut Verdict,
) {
    let powered_off = out.exit == Some(0) && out.console.contains("\npeak RSS: ");
    match &job.expect {
        Expect::PowerCut => {
            if !out.killed && !powered_off {
                v.fail(format!("neither cut nor powered off: exit {exit}"));
            }
        }
        _ => {
            if !powered_off {
                v.fail(format!(
                    "the guest did not print `peak RSS` and power off (exit {exit})"
                ));
            }
            v.check(
                !out.console.contains("Kernel panic"),
                "the console shows a kernel panic",
            );
        }
    }
    match (&job.expect, console_verdict) {
        (Expect::Fail { console, eio, .. }, said) => {
            let want = format!("Dump failed: {console}");
            match said {
                Some(l) if l.starts_with(&want) => {
                    if *eio && !l.ends_with("(os error 5))") {
                        v.fail(format!("{l:?} does not name the errno EIO (os error 5)"));
                    }
                }
                other => v.fail(format!("the console says {other:?}, not {want:?}…")),
            }
        }
        (Expect::Success | Expect::Slow, said) if said != Some("Dump successful") => v.fail(
            format!("the console says {said:?}, not \"Dump successful\""),
        ),
        _ => {}
    }
    if matches!(job.expect, Expect::Slow) {
        v.extend(report::progress_problems(&out.lines));
    }
}

/// The disk after the run: `zfcpdump-disk status`, [`check_disk`], and the
/// bytes changed outside the dump area. Returns the status and outside
/// cells of the row and what the dump area holds.
fn check_disk_after(
    ctx: &Ctx,
    job: &Job,
    img: &Path,
    v: &mut Verdict,
) -> Result<(String, String, Option<Holds>)> {
    let mut status = "-".to_string();
    let mut outside = "-".to_string();
    let mut holds = None;
    if let Some(d) = job.disk {
        let st = Status::of(&ctx.disk_tool, img)?;
        status = st.describe();
        holds = Some(check_disk(ctx, job, d, img, &st, v)?);
        let (n, only_csum) =
            verdict::changed_outside(&d.before, img, d.area.clone(), d.csum_field.clone())?;
        outside = match n {
            0 => "none".into(),
            n if only_csum => format!("{n} B, csum field"),
            n => format!("{n} B OUTSIDE"),
        };
        if !only_csum {
            v.fail(format!(
                "{n} bytes outside the dump area changed, not only the csum field"
            ));
        }
    }
    Ok((status, outside, holds))
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
/// ELF header means a whole dump. Returns what the dump area holds.
fn check_disk(
    ctx: &Ctx,
    job: &Job,
    d: &Disk,
    img: &Path,
    st: &Status,
    v: &mut Verdict,
) -> Result<Holds> {
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
        v.fail(why.as_str());
    }
    match (&st.state[..], &holds) {
        ("complete", Holds::Exact(_)) | ("invalid", Holds::Exact(_)) => {}
        ("complete", _) => v.fail("status says complete, but no whole dump is there"),
        ("invalid", Holds::NoElf) => v.fail(format!(
            "status says invalid without an ELF header: {}",
            st.problem.as_deref().unwrap_or("?")
        )),
        ("empty" | "incomplete", Holds::NoElf) => {}
        (s, _) => v.fail(format!("unexpected status {s:?}")),
    }
    if let (Some((_, before)), Holds::Exact(name)) = (older, &holds) {
        if *name == "older" && st.identity != before.identity {
            v.fail(format!(
                "the older dump reads as {:?}, was {:?}",
                st.identity, before.identity
            ));
        }
    }
    match &job.expect {
        Expect::Fail {
            states, unchanged, ..
        } => {
            if !states.is_empty() && !states.contains(&&st.state[..]) {
                v.fail(format!(
                    "status {:?}, expected {}",
                    st.state,
                    states.join(" or ")
                ));
            }
            if *unchanged {
                if let Some(at) = first_difference(&d.before, img, &[])? {
                    v.fail(format!("the disk changed at byte {at:#x}"));
                }
            }
        }
        Expect::Success | Expect::Slow => {
            if !matches!(holds, Holds::Exact(n) if n == job.source.name) {
                v.fail(format!(
                    "the dump area is not the {} vmcore byte for byte",
                    job.source.name
                ));
            }
        }
        // A cut may leave any state; the match on state and contents above
        // holds it to what it looks like.
        Expect::PowerCut => {}
    }
    if let Some(at) = job.not_zero_at {
        if verdict::zero_block(img, at)? {
            v.fail(format!(
                "the block at disk byte {at:#x}, where the read failed, holds zeros"
            ));
        }
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
            (false, Ok(info)) => v.fail(format!(
                "zgetdump -i reads the partition as a dump:\n{}",
                info.text
            )),
            (true, Err(e)) => v.fail(format!("zgetdump -i refuses the whole dump: {e:#}")),
            _ => {}
        }
        let _ = fs::remove_file(&part);
    }
    Ok(holds)
}
