//! `status`: what a dump disk image holds.
//!
//! The verdict follows the order in which the dump tool writes: busy marker
//! first, ELF header last. So a dump area that starts with the busy marker holds
//! an interrupted dump, one that starts with a valid ELF header holds a complete
//! one, and anything else holds no dump.

use crate::{Error, IoContext, read_at};
use std::fs::File;
use std::ops::Range;
use std::path::Path;
use zfcpdump_format::busy::is_busy;
use zfcpdump_format::csum::CSUM_SIZE;
use zfcpdump_format::elf::{ELF_MAGIC, SeekReader, Vmcore, vmcoreinfo_lookup};
use zfcpdump_format::mbr::{DOS_SECTOR_SIZE, DosPartition, ZiplMbr};
use zfcpdump_format::superblock::{DumpSuperblock, SB_SIZE};

/// Exit code: a complete dump.
pub const EXIT_COMPLETE: u8 = 0;
/// Exit code: usage or I/O error.
pub const EXIT_ERROR: u8 = 1;
/// Exit code: an interrupted dump (busy marker).
pub const EXIT_INCOMPLETE: u8 = 2;
/// Exit code: valid metadata, no dump.
pub const EXIT_EMPTY: u8 = 3;
/// Exit code: bad MBR, superblock, partition table or checksum.
pub const EXIT_INVALID: u8 = 4;

/// Summary of a complete dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpSummary {
    /// Bytes the ELF occupies (what `extract` writes).
    pub extent: u64,
    /// Number of CPUs (NT_PRSTATUS notes).
    pub cpus: usize,
    /// Number of program headers.
    pub phnum: usize,
    /// Merged physical memory ranges of the PT_LOADs.
    pub ranges: Vec<Range<u64>>,
    /// Physical bytes covered.
    pub memory: u64,
    /// Whether some PT_LOAD stores fewer bytes than it describes (elided pages).
    pub elided: bool,
    /// OSRELEASE from VMCOREINFO.
    pub osrelease: Option<String>,
    /// CRASHTIME from VMCOREINFO: when the kernel crashed, in seconds since
    /// the epoch. With the release, what tells one dump from another.
    pub crash_time: Option<i64>,
    /// What a filtered dump recorded about itself (its ZFCPDUMP note).
    pub filter: Option<Box<zfcpdump_format::filter::note::FilterNote>>,
}

/// What the disk holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// A finished dump.
    Complete(DumpSummary),
    /// The dump tool started but did not finish.
    Incomplete,
    /// Valid metadata and no dump; `zeroed` when the dump area starts zeroed, as
    /// after zipl.
    Empty {
        /// Whether the first block of the dump area is all zeros.
        zeroed: bool,
    },
    /// Metadata that the dump tool would refuse, with the reason.
    Invalid(String),
}

impl State {
    /// The state's name, as printed.
    pub fn name(&self) -> &'static str {
        match self {
            State::Complete(_) => "complete",
            State::Incomplete => "incomplete",
            State::Empty { .. } => "empty",
            State::Invalid(_) => "invalid",
        }
    }

    /// One line for messages.
    pub fn describe(&self) -> String {
        match self {
            State::Complete(_) => "complete".into(),
            State::Incomplete => "incomplete: the dump tool was interrupted".into(),
            State::Empty { .. } => "empty".into(),
            State::Invalid(why) => format!("invalid: {why}"),
        }
    }

    /// The `status` exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            State::Complete(_) => EXIT_COMPLETE,
            State::Incomplete => EXIT_INCOMPLETE,
            State::Empty { .. } => EXIT_EMPTY,
            State::Invalid(_) => EXIT_INVALID,
        }
    }
}

/// The result of inspecting an image: the metadata found so far and the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Image size in bytes.
    pub image_size: u64,
    /// The zipl MBR, if valid.
    pub mbr: Option<ZiplMbr>,
    /// The superblock, if valid.
    pub superblock: Option<DumpSuperblock>,
    /// Logical block size under which the DOS table matches the superblock.
    pub sector_size: Option<u32>,
    /// The stored checksum does not cover the block: for a dump area that
    /// starts with the busy marker, the tool stopped before (or while)
    /// updating it.
    pub stale_checksum: bool,
    /// The verdict.
    pub state: State,
}

/// Inspects the image at `path`. I/O errors are errors; bad contents are
/// [`State::Invalid`].
pub fn inspect(path: &Path) -> Result<Report, Error> {
    let shown = path.display();
    let mut f = File::open(path).context(|| format!("opening {shown}"))?;
    let image_size = f
        .metadata()
        .context(|| format!("reading the size of {shown}"))?
        .len();
    let mut report = Report {
        image_size,
        mbr: None,
        superblock: None,
        sector_size: None,
        stale_checksum: false,
        state: State::Incomplete,
    };
    report.state = examine(&mut f, &mut report).map_err(|e| match e {
        Error::Io { context, source } => Error::Io {
            context: format!("{context} of {shown}"),
            source,
        },
        e => e,
    })?;
    Ok(report)
}

fn examine(f: &mut File, r: &mut Report) -> Result<State, Error> {
    let invalid = |m: String| Ok(State::Invalid(m));
    if r.image_size < DOS_SECTOR_SIZE as u64 {
        return invalid(format!(
            "image is {} bytes, smaller than one sector",
            r.image_size
        ));
    }
    let mut sector0 = [0u8; DOS_SECTOR_SIZE];
    read_at(f, &mut sector0, 0).context(|| "reading sector 0".into())?;
    let mbr = match ZiplMbr::parse(&sector0) {
        Ok(m) => m,
        Err(e) => return invalid(e.to_string()),
    };
    r.mbr = Some(mbr);
    if mbr
        .sb_offset
        .checked_add(SB_SIZE as u64)
        .is_none_or(|e| e > r.image_size)
    {
        return invalid(format!(
            "boot_info points at a superblock at {:#x}, past the end of the {}-byte image",
            mbr.sb_offset, r.image_size
        ));
    }
    let mut sbb = [0u8; SB_SIZE];
    read_at(f, &mut sbb, mbr.sb_offset).context(|| "reading the dump superblock".into())?;
    let sb = match DumpSuperblock::parse(&sbb) {
        Ok(sb) => sb,
        Err(e) => return invalid(e.to_string()),
    };
    r.superblock = Some(sb);
    if sb.partition().end > r.image_size {
        return invalid(format!(
            "partition {:#x}..{:#x} extends past the end of the {}-byte image (truncated image?)",
            sb.part_start,
            sb.partition().end,
            r.image_size
        ));
    }
    let sb_range = mbr.sb_offset..mbr.sb_offset + SB_SIZE as u64;
    let dump = sb.dump_area();
    if sb_range.start < dump.end && dump.start < sb_range.end {
        return invalid(format!(
            "superblock at {:#x} lies inside the dump area",
            mbr.sb_offset
        ));
    }
    match matching_sector_size(&sector0, &sb) {
        Some(bs) => r.sector_size = Some(bs),
        None => {
            return invalid(format!(
                "no DOS partition matches the superblock's partition (start {:#x}, size {} bytes) \
                 with 512- or 4096-byte sectors",
                sb.part_start, sb.part_size
            ));
        }
    }
    let mut block = vec![0u8; CSUM_SIZE];
    read_at(f, &mut block, sb.csum_area().start)
        .context(|| "reading the checksummed block".into())?;
    let head_len = sb.dump_size.min(4096) as usize;
    let mut head = vec![0u8; head_len];
    read_at(f, &mut head, dump.start).context(|| "reading the start of the dump area".into())?;
    if let Err(e) = sb.verify_csum(&block) {
        // The tool writes the marker, flushes it, then the checksum: a
        // marker under a stale checksum is a dump stopped in between. Any
        // other content under a stale checksum is not the tool's.
        if sb.csum_area().start == dump.start && is_busy(&head) {
            r.stale_checksum = true;
            return Ok(State::Incomplete);
        }
        return invalid(e.to_string());
    }
    if is_busy(&head) {
        return Ok(State::Incomplete);
    }
    if !head.starts_with(&ELF_MAGIC) {
        return Ok(State::Empty {
            zeroed: head.iter().all(|&b| b == 0),
        });
    }
    let mut src = SeekReader::with_base(&mut *f, dump.start);
    let core = match Vmcore::read(&mut src, sb.dump_size) {
        Ok(c) => c,
        Err(e) => {
            return invalid(format!(
                "the dump area starts with an unusable ELF core: {e}"
            ));
        }
    };
    let summary = (|| {
        let info = core.vmcoreinfo()?;
        Ok::<_, zfcpdump_format::elf::ElfError>(DumpSummary {
            extent: core.extent(),
            cpus: core.cpu_count()?,
            phnum: core.phdrs.len(),
            ranges: core.physical_ranges(),
            memory: core.covered_physical_bytes(),
            elided: core.loads().any(|p| p.p_filesz < p.p_memsz),
            osrelease: info
                .and_then(|t| vmcoreinfo_lookup(t, "OSRELEASE"))
                .map(str::to_string),
            crash_time: info
                .and_then(|t| vmcoreinfo_lookup(t, "CRASHTIME"))
                .and_then(|v| v.trim().parse().ok()),
            filter: zfcpdump_format::filter::note::FilterNote::find(&core).map(Box::new),
        })
    })();
    match summary {
        Ok(s) => Ok(State::Complete(s)),
        Err(e) => invalid(format!("the dump's notes are unusable: {e}")),
    }
}

/// The logical block size under which a DOS partition entry has exactly the
/// superblock's partition start and size (the table counts logical blocks, the
/// superblock bytes; an image file does not record its block size).
fn matching_sector_size(sector0: &[u8], sb: &DumpSuperblock) -> Option<u32> {
    let table = DosPartition::read_table(sector0)?;
    [512u32, 4096].into_iter().find(|&bs| {
        table.iter().flatten().any(|p| {
            p.start_lba as u64 * bs as u64 == sb.part_start
                && p.num_blocks as u64 * bs as u64 == sb.part_size
        })
    })
}

/// Human-readable report, ending with the `state:` line.
pub fn render(path: &Path, r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "image:       {} ({} bytes)",
        path.display(),
        r.image_size
    );
    if let Some(bs) = r.sector_size {
        let _ = writeln!(o, "sector size: {bs} (from the partition table)");
    }
    if let (Some(m), Some(sb)) = (&r.mbr, &r.superblock) {
        let d = sb.dump_area();
        let _ = writeln!(o, "superblock:  at {:#x}", m.sb_offset);
        let _ = writeln!(
            o,
            "partition:   {:#x}..{:#x} ({})",
            sb.part_start,
            sb.partition().end,
            human(sb.part_size)
        );
        let _ = writeln!(
            o,
            "dump area:   {:#x}..{:#x} ({})",
            d.start,
            d.end,
            human(sb.dump_size)
        );
        let _ = writeln!(o, "checksum:    {:#010x}", sb.csum);
    }
    match &r.state {
        State::Complete(s) => {
            let pct = s.extent as f64 * 100.0 / r.superblock.map_or(1, |sb| sb.dump_size) as f64;
            let _ = writeln!(
                o,
                "dump size:   {} bytes ({}, {pct:.1}% of the dump area)",
                s.extent,
                human(s.extent)
            );
            if let Some(rel) = &s.osrelease {
                let _ = writeln!(o, "kernel:      {rel}");
            }
            if let Some(t) = s.crash_time {
                let _ = writeln!(o, "crash time:  {} ({t})", utc(t));
            }
            let _ = writeln!(o, "cpus:        {}", s.cpus);
            let _ = writeln!(
                o,
                "memory:      {} in {} range(s), {} program headers{}",
                human(s.memory),
                s.ranges.len(),
                s.phnum,
                if s.elided { ", some pages elided" } else { "" }
            );
            if let Some(f) = &s.filter {
                let _ = writeln!(o, "filtered:    {}", f.describe());
            }
            for range in &s.ranges {
                let _ = writeln!(
                    o,
                    "  {:#018x}-{:#018x} ({})",
                    range.start,
                    range.end - 1,
                    human(range.end - range.start)
                );
            }
        }
        State::Empty { zeroed } => {
            let _ = writeln!(
                o,
                "contents:    {}",
                if *zeroed {
                    "zeroed, as zipl left it"
                } else {
                    "holds no dump (no ELF header, no busy marker)"
                }
            );
        }
        State::Incomplete => {
            let _ = writeln!(
                o,
                "contents:    starts with the busy marker: the dump tool did not finish"
            );
            if r.stale_checksum {
                let _ = writeln!(
                    o,
                    "checksum:    stale: the tool stopped before it covered the busy marker; run \
                     zipl --dumpto again before the next dump"
                );
            }
        }
        State::Invalid(why) => {
            let _ = writeln!(o, "problem:     {why}");
        }
    }
    let _ = writeln!(o, "state:       {}", r.state.name());
    o
}

/// `t` seconds since the epoch as `YYYY-MM-DD hh:mm:ss UTC`, without a
/// date library (days to civil date: Howard Hinnant's algorithm).
pub fn utc(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Sizes for people: bytes in binary units with one decimal.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(10), "10 bytes");
        assert_eq!(human(15_269_376), "14.6 MiB");
        assert_eq!(human(1 << 30), "1.0 GiB");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(State::Incomplete.exit_code(), 2);
        assert_eq!(State::Empty { zeroed: true }.exit_code(), 3);
        assert_eq!(State::Invalid("x".into()).exit_code(), 4);
    }
}
