//! Power cuts: SIGKILL of QEMU at seeded random moments of a throttled
//! dump. A calibration run (the same dump, not cut) measures when the copy
//! starts, when the agent reaches the ELF header and when it is done; two
//! thirds of the cuts spread over the copy, one third over the final
//! flushes (from the header line on). At least [`MIN_CUT`] must really cut
//! a dump (a run can finish before its moment). Every other cut is on a disk that held
//! an older dump. After the cuts, crash must refuse every cut disk without
//! an ELF header and open a whole one.
//!
//! A SIGKILL of QEMU loses what the guest had not written to its virtual
//! disk (its page cache); writes QEMU had made stay in the host's page cache
//! and so on the image, as a disk's volatile cache would not. The guest's
//! writeback order is what the header-last rule is about.

use std::fs;
use std::time::Duration;

use anyhow::{Context, Result};

use super::verdict::Holds;
use super::{Disk, Expect, Job, Row};
use crate::checks::files::sparse_copy_range;
use crate::kit::Ctx;
use crate::sources::Source;

/// The console lines a cut is timed from.
pub(crate) const COPY_ANCHOR: &str = "vmcore /dev/vda";
pub(crate) const HEADER_ANCHOR: &str = "copy ELF header block (last)";

/// Of 20 or more scheduled cuts, this many must land before the verdict.
pub(crate) const MIN_CUT: usize = 20;

/// When the calibration run's lines came, from QEMU's start.
#[derive(Debug, Clone)]
pub(crate) struct Calibration {
    pub(crate) copy: Duration,
    pub(crate) header: Duration,
    pub(crate) done: Duration,
}

impl Calibration {
    pub(crate) fn from_lines(lines: &[(Duration, String)]) -> Result<Calibration> {
        let at = |prefix: &str| {
            lines
                .iter()
                .find(|(_, l)| l.starts_with(prefix))
                .map(|(t, _)| *t)
                .with_context(|| format!("the calibration run printed no {prefix:?} line"))
        };
        Ok(Calibration {
            copy: at(COPY_ANCHOR)?,
            header: at(HEADER_ANCHOR)?,
            done: at("Dump successful")?,
        })
    }
}

/// splitmix64: a few lines, and the same moments for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, max)`.
    fn below(&mut self, max: Duration) -> Duration {
        let ms = max.as_millis().max(1) as u64;
        Duration::from_millis(self.next() % ms)
    }
}

/// The cut moments, as jobs: anchor line and delay.
pub(crate) fn jobs<'a>(
    seed: u64,
    n: u32,
    cal: &Calibration,
    disks: [&'a Disk; 2],
    src: &'a Source,
) -> Vec<Job<'a>> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let disk = disks[i as usize % 2];
            // Within the copy, and within most of the final flushes: a run
            // may be a little faster than the calibration.
            let (anchor, span) = if i % 3 == 2 {
                (HEADER_ANCHOR, cal.done.saturating_sub(cal.header) * 7 / 10)
            } else {
                (COPY_ANCHOR, cal.header.saturating_sub(cal.copy))
            };
            let delay = rng.below(span);
            let fault = format!(
                "power cut {:.2} s after {:?}",
                delay.as_secs_f64(),
                anchor.split(' ').take(3).collect::<Vec<_>>().join(" ")
            );
            Job {
                write_bps: Some(super::POWER_CUT_BPS),
                kill: Some((anchor, delay)),
                ..Job::plain(
                    format!("power-cut-{i:02}"),
                    fault,
                    Some(disk),
                    src,
                    Expect::PowerCut,
                )
            }
        })
        .collect()
}

/// crash on the cut disks: each one without an ELF header must be refused,
/// the first whole one opened. Returns a line per disk checked; problems go
/// into the rows. Removes the cut disks unless `--keep`.
pub(crate) fn readers(ctx: &Ctx, jobs: &[Job], rows: &mut [Row]) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut opened_one = false;
    for (job, row) in jobs.iter().zip(rows.iter_mut()) {
        let (Some(d), Some(holds)) = (job.disk, &row.holds) else {
            continue;
        };
        let img = ctx.work.join(format!("{}.img", job.name));
        // crash reads the new dump with its kernel's vmlinux; the older dump
        // of a used disk is a generated one.
        let should_open = match holds {
            Holds::NoElf => false,
            Holds::Exact(n) if *n == job.source.name && !opened_one => true,
            _ => {
                if row.verdict.is_ok() {
                    cleanup(ctx, &img);
                }
                continue;
            }
        };
        let part = ctx.work.join(format!("{}.partition", job.name));
        sparse_copy_range(&img, d.part.start, d.part.end - d.part.start, &part)?;
        let log = ctx.work.join(format!("{}.crash.log", job.name));
        let res = ctx
            .readers
            .crash
            .session(&ctx.vmlinux, &part, &["sys".to_string()], &log);
        let release = format!("RELEASE: {}", ctx.release);
        let opened = matches!(&res, Ok(out) if out.lines().any(|l| l.trim() == release));
        let verdict = match (should_open, opened) {
            (false, false) => "refused (no ELF header)".to_string(),
            (true, true) => {
                opened_one = true;
                format!("opened the whole dump, {release}")
            }
            (false, true) => {
                row.verdict.fail(format!(
                    "crash opens the cut disk as a dump (log {})",
                    log.display()
                ));
                "OPENED a cut dump".into()
            }
            (true, false) => {
                row.verdict.fail(format!(
                    "crash does not open the whole dump: {}",
                    res.err()
                        .map_or("no RELEASE line".into(), |e| format!("{e:#}"))
                ));
                "did NOT open the whole dump".into()
            }
        };
        lines.push(format!("{}: {} -> crash {verdict}", job.name, row.status));
        let _ = fs::remove_file(&part);
        if row.verdict.is_ok() {
            cleanup(ctx, &img);
        }
    }
    Ok(lines)
}

fn cleanup(ctx: &Ctx, img: &std::path::Path) {
    if !ctx.keep {
        let _ = fs::remove_file(img);
    }
}
