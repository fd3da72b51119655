//! The filtered copy (dump level above 0): executes a
//! `zfcpdump_format::filtered` plan from the vmcore to the dump disk through the
//! same caller-provided buffer as the byte-exact copy, leaving out zero pages
//! and the pages the `zfcpdump_format::filter` classifier excludes.
//!
//! The layout (what the written ELF looks like) and the bounded state machine
//! that decides which pages are left out live in `zfcpdump_format::filtered`;
//! this module only reads, feeds and writes, in the plan's order: HSA-backed
//! parts, HSA release, notes, the other parts, the header area with its first
//! page (the ELF header) last. Memory: the copy buffer plus the writer's two
//! pages; nothing grows with the dump size or the number of zero runs.

use crate::copy::{BARRIER_WHAT, Progress, WRITEBACK_WHAT, Writeback, copy_chunks};
use crate::disk::DumpTarget;
use crate::error::{DumpError, DumpStep};
use crate::log::Log;
use crate::{error, info};
use std::io;
use std::ops::Range;
use zfcpdump_format::PAGE_SIZE;
use zfcpdump_format::elf::{ReadAt, Vmcore};
use zfcpdump_format::filter::classify::PageFilter;
use zfcpdump_format::filter::{self, CLASSES, DumpLevel, PhysRead, ZERO};
use zfcpdump_format::filtered::{
    FilteredPlan, FilteredStats, FilteredStep, FilteredWriter, Sink, slots_for,
};

/// Excluded runs shorter than this many pages are written: each run costs a
/// program header, which the table rations and every reader scans. The
/// knee, measured on the crash lab's 6.1 and 6.12 dumps at level 31: from 1
/// to 4 pages the class runs halve (53 to 27, 52 to 19) for 37 and 44 more
/// pages written (0.2% of the dump); from 4 to 16 they fall by 9 and 6 more
/// for 72 and 36 more pages.
pub const MIN_EXCLUDED_RUN: usize = 4;

/// A filtered dump's layout and levels.
#[derive(Debug)]
pub struct FilteredDump {
    /// The layout.
    pub plan: FilteredPlan,
    /// The level asked for.
    pub asked: DumpLevel,
    /// The level used.
    pub used: DumpLevel,
}

/// The plan and the page classifier for dump level `asked`, with the level
/// actually used: where the kernel cannot be classified, zero pages only
/// (level 1), which is always correct; where no elided layout fits,
/// byte-exact.
pub fn prepare(
    vm: &Vmcore,
    asked: DumpLevel,
    file_size: u64,
    hsa_size: u64,
    dump_size: u64,
    mem: &mut dyn PhysRead,
    log: &Log,
) -> (Option<FilteredDump>, Option<PageFilter>) {
    let Some(mut plan) = plan_for(vm, file_size, hsa_size, dump_size, log) else {
        return (None, None);
    };
    let mut used = asked;
    let mut page_filter = None;
    if asked.needs_struct_pages() {
        match filter::prepare(vm, mem, asked, MIN_EXCLUDED_RUN) {
            Ok(f) => {
                info!(
                    log,
                    "page filter: struct pages of {} pfns in {} physical runs",
                    f.map().pfns(),
                    f.map().runs.len()
                );
                page_filter = Some(f);
            }
            Err(e) => {
                used = DumpLevel::new(ZERO as u32).expect("level 1");
                error!(
                    log,
                    "warning: page filtering off: {e}; dump level {used} (zero pages only) instead of {asked}"
                );
            }
        }
    }
    plan.zero_pages = used.has(ZERO);
    if plan.reserve_note() && plan.max_size() > dump_size {
        error!(
            log,
            "warning: filtering off: the filtered dump with its note could need {} bytes, more than the {dump_size}-byte dump area; copying byte for byte",
            plan.max_size()
        );
        return (None, None);
    }
    (Some(FilteredDump { plan, asked, used }), page_filter)
}

/// The elided layout of `vm` (`file_size` bytes, HSA of `hsa_size` bytes),
/// or `None` with a warning when the vmcore cannot be elided or its elided
/// dump could outgrow the dump area: then it is copied byte for byte, which
/// the size check has already accepted.
pub fn plan_for(
    vm: &Vmcore,
    file_size: u64,
    hsa_size: u64,
    dump_size: u64,
    log: &Log,
) -> Option<FilteredPlan> {
    let memory = vm.loads().fold(0u64, |a, p| a.saturating_add(p.p_memsz));
    match FilteredPlan::new(
        &vm.header,
        &vm.phdrs,
        file_size,
        hsa_size,
        slots_for(memory),
    ) {
        Ok(plan) if plan.max_size() <= dump_size => {
            info!(
                log,
                "filtered layout: {} program headers reserved ({} KiB), notes at {:#x}, data \
                 from {:#x}",
                plan.slots,
                plan.header_size >> 10,
                plan.meta_out,
                plan.data_start
            );
            Some(plan)
        }
        Ok(plan) => {
            error!(
                log,
                "warning: filtering off: unfiltered, the filtered layout needs {} \
                 bytes, more than the {dump_size}-byte dump area; copying byte for byte",
                plan.max_size()
            );
            None
        }
        Err(e) => {
            error!(log, "warning: filtering off: {e}; copying byte for byte");
            None
        }
    }
}

/// Writes the filtered writer's output at `base` of the disk and remembers what
/// failed for the error message.
struct DiskSink<'a, T: DumpTarget + ?Sized> {
    dst: &'a mut T,
    base: u64,
    failed: Option<String>,
    writeback: Writeback,
}

impl<T: DumpTarget + ?Sized> DiskSink<'_, T> {
    fn put(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        let at = self.base + offset;
        self.dst.write_all_at(data, at).inspect_err(|_| {
            self.failed = Some(format!(
                "writing {} bytes at disk offset {at:#x}",
                data.len()
            ));
        })?;
        self.wrote(data.len() as u64)
    }

    fn wrote(&mut self, n: u64) -> io::Result<()> {
        self.writeback
            .wrote(self.dst, n)
            .inspect_err(|_| self.failed = Some(WRITEBACK_WHAT.into()))
    }

    fn error(&self, e: io::Error) -> DumpError {
        let what = self.failed.as_deref().unwrap_or("writing the dump");
        DumpError::io(DumpStep::Copy, what, e)
    }
}

impl<T: DumpTarget + ?Sized> Sink for DiskSink<'_, T> {
    fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        self.put(data, offset)
    }

    fn write_runs(&mut self, data: &[u8], runs: &[Range<usize>], offset: u64) -> io::Result<()> {
        let bufs: Vec<&[u8]> = runs.iter().map(|r| &data[r.clone()]).collect();
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        let at = self.base + offset;
        self.dst.write_all_vectored_at(&bufs, at).inspect_err(|_| {
            self.failed = Some(format!("writing {len} bytes at disk offset {at:#x}"));
        })?;
        self.wrote(len as u64)
    }

    fn barrier(&mut self) -> io::Result<()> {
        self.dst
            .sync()
            .inspect_err(|_| self.failed = Some(BARRIER_WHAT.into()))
    }

    fn write_zeros_at(&mut self, len: u64, offset: u64) -> io::Result<()> {
        // Only the header area and the padding around the notes: a few MiB at
        // most, written once at the end.
        let zeros = [0u8; PAGE_SIZE as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(PAGE_SIZE) as usize;
            self.put(&zeros[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }
}

/// Executes `plan`: reads the vmcore's parts and notes from `src` through
/// `buf` (whose length must be a multiple of the page size), writes the
/// elided ELF at `base` of `dst`, calls `release` after the HSA-backed parts,
/// and writes the ELF header last.
#[allow(clippy::too_many_arguments)]
pub fn execute_filtered<S, T>(
    src: &mut S,
    dst: &mut T,
    base: u64,
    filtered: &FilteredDump,
    mut filter: Option<(&mut PageFilter, &mut dyn PhysRead)>,
    buf: &mut [u8],
    progress: &mut Progress<'_>,
    release: &mut dyn FnMut() -> Result<(), DumpError>,
    log: &Log,
) -> Result<FilteredStats, DumpError>
where
    S: ReadAt + ?Sized,
    T: DumpTarget + ?Sized,
{
    assert!(
        !buf.is_empty() && buf.len() as u64 % PAGE_SIZE == 0,
        "the copy buffer must be whole pages"
    );
    let mut sink = DiskSink {
        dst,
        base,
        failed: None,
        writeback: Writeback::default(),
    };
    let plan = &filtered.plan;
    let mut writer = FilteredWriter::new(plan);
    let mut classes = vec![0u8; buf.len() / PAGE_SIZE as usize];
    for step in plan.steps() {
        match step {
            FilteredStep::ReleaseHsa => release()?,
            FilteredStep::Part(i) => {
                let part = &plan.parts[i];
                let what = if part.hsa {
                    "HSA-backed range"
                } else {
                    "range"
                };
                info!(
                    log,
                    "copy {what} {:#x}..{:#x} ({} KiB)",
                    part.file.start,
                    part.file.end,
                    part.len().div_ceil(1024)
                );
                writer.begin_part(i);
                copy_chunks(src, part.file.clone(), buf, progress, |chunk, off| {
                    let classes = filter.as_mut().map(|(f, mem)| {
                        let pages = chunk.len().div_ceil(PAGE_SIZE as usize);
                        let pfn = (part.paddr + (off - part.file.start)) / PAGE_SIZE;
                        f.fill(*mem, pfn, &mut classes[..pages]);
                        &classes[..pages]
                    });
                    writer
                        .feed_classified(chunk, classes, &mut sink)
                        .map_err(|e| sink.error(e))
                })?;
                writer.end_part(&mut sink).map_err(|e| sink.error(e))?;
            }
            FilteredStep::Meta => {
                let m = plan.meta_in.clone();
                if m.is_empty() {
                    continue;
                }
                info!(
                    log,
                    "copy notes {:#x}..{:#x} to {:#x}", m.start, m.end, plan.meta_out
                );
                copy_chunks(src, m, buf, progress, |chunk, off| {
                    writer
                        .write_meta(chunk, off, &mut sink)
                        .map_err(|e| sink.error(e))
                })?;
            }
            FilteredStep::Header => {}
        }
    }
    let so_far = writer.stats();
    info!(
        log,
        "write ELF header block (last) with {} program headers, 0x0..{:#x}",
        so_far.loads as usize + plan.fixed.len(),
        plan.header_size
    );
    let stats = writer
        .finish_noted(Some((filtered.asked, filtered.used)), &mut sink)
        .map_err(|e| sink.error(e))?;
    progress.finish();
    Ok(stats)
}

/// What filtering saved, for the console: one line in all, one per class.
pub fn summary_lines(s: &FilteredStats, f: &FilteredDump, pf: Option<&PageFilter>) -> Vec<String> {
    let mib = |n: u64| format!("{}.{} MiB", n >> 20, ((n & 0xfffff) * 10) >> 20);
    let mut line = format!(
        "filtered: dump level {}, {} of {} memory left out in {} runs; {} written, {} program headers of {} \
         reserved",
        f.used,
        mib(s.elided),
        mib(s.elided + s.written),
        s.runs,
        mib(s.file_size),
        s.phnum,
        f.plan.slots
    );
    if s.zeros_written + s.excluded_written > 0 {
        line.push_str(&format!(
            "; {} written that could have been left out (program header entries rationed or used \
             up)",
            mib(s.zeros_written + s.excluded_written)
        ));
    }
    let mut lines = vec![line];
    let per_class: Vec<String> = CLASSES
        .iter()
        .zip(s.excluded)
        .filter(|((bit, _), _)| f.used.has(*bit))
        .map(|((_, name), pages)| format!("{name} {pages}"))
        .collect();
    if !per_class.is_empty() {
        lines.push(format!("pages left out: {}", per_class.join(", ")));
    }
    if let Some(pf) = pf {
        let c = pf.counts();
        lines.push(format!(
            "page filter: {} pfns classified in {} windows, {} short excluded pages written, {} \
             unreadable struct pages (kept)",
            c.classified, c.windows, s.short_written, c.unreadable
        ));
    }
    lines
}
