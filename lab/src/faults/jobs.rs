//! The fault runs: EIO on each write of the dump (on a fresh and on a used
//! disk), on the filtered dump's header and on the vmcore's reads, and the
//! slow, late and missing disks; what each must end in.

use std::fs::File;

use anyhow::{Context, Result, bail};
use zfcpdump_format::elf::{SeekReader, Vmcore};
use zfcpdump_format::plan::{CopyStep, copy_plan};

use super::blkdebug::{self, Io, Rule};
use super::{Disk, Expect, HOTPLUG_AFTER, Job, SLOW_BPS};
use crate::sources::Source;

/// The agent's copy in write order, for a byte-exact dump of `src`: the
/// first data byte, the middle, and the last data byte (file offsets).
fn data_points(src: &Source) -> Result<(u64, u64, u64)> {
    let mut f = File::open(&src.file)?;
    let vm = Vmcore::read(&mut SeekReader::new(&mut f), src.size)
        .with_context(|| format!("{}", src.file.display()))?;
    let plan = copy_plan(&vm.phdrs, src.extent, src.hsa_size)
        .with_context(|| format!("{}", src.file.display()))?;
    let data: Vec<(u64, u64)> = plan
        .iter()
        .filter_map(|s| match *s {
            CopyStep::Copy { start, end, .. } if start != 0 => Some((start, end)),
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
pub(crate) fn eio_jobs<'a>(disks: &[&'a Disk], src: &'a Source) -> Result<Vec<Job<'a>>> {
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
pub(crate) fn other_jobs<'a>(
    fresh: &'a Disk,
    used: &'a Disk,
    src: &'a Source,
) -> Result<Vec<Job<'a>>> {
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
pub(crate) fn slow_job<'a>(disk: &'a Disk, src: &'a Source) -> Job<'a> {
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
