//! The elided copy (`zero_page_elision = true`): executes a
//! `zfcpdump_format::elide` plan from the vmcore to the dump disk through the
//! same caller-provided buffer as the byte-exact copy.
//!
//! The layout (what the written ELF looks like) and the bounded state machine
//! that decides which pages are left out live in `zfcpdump_format::elide`;
//! this module only reads, feeds and writes, in the plan's order: HSA-backed
//! parts, HSA release, notes, the other parts, the header area with its first
//! page (the ELF header) last. Memory: the copy buffer plus the elider's two
//! pages; nothing grows with the dump size or the number of zero runs.

use crate::copy::{Progress, Writeback, copy_chunks};
use crate::disk::DumpTarget;
use crate::error::{DumpError, Step as ErrStep};
use crate::log::Log;
use crate::{error, info};
use std::io;
use std::ops::Range;
use zfcpdump_format::PAGE_SIZE;
use zfcpdump_format::elf::{ReadAt, Vmcore};
use zfcpdump_format::elide::{ElidePlan, ElideStats, ElideStep, Elider, Sink, slots_for};

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
) -> Option<ElidePlan> {
    let memory = vm.loads().fold(0u64, |a, p| a.saturating_add(p.p_memsz));
    match ElidePlan::new(
        &vm.header,
        &vm.phdrs,
        file_size,
        hsa_size,
        slots_for(memory),
    ) {
        Ok(plan) if plan.max_size() <= dump_size => {
            info!(
                log,
                "zero-page elision on: {} program headers reserved ({} KiB), notes at {:#x}, data \
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
                "warning: zero-page elision off: without zero pages the elided dump needs {} \
                 bytes, more than the {dump_size}-byte dump area; copying byte for byte",
                plan.max_size()
            );
            None
        }
        Err(e) => {
            error!(
                log,
                "warning: zero-page elision off: {e}; copying byte for byte"
            );
            None
        }
    }
}

/// Writes the elider's output at `base` of the disk and remembers the failing
/// write for the error message.
struct DiskSink<'a, T: DumpTarget + ?Sized> {
    dst: &'a mut T,
    base: u64,
    failed: Option<(u64, u64)>,
    writeback: Writeback,
}

impl<T: DumpTarget + ?Sized> DiskSink<'_, T> {
    fn put(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        let at = self.base + offset;
        self.dst.write_all_at(data, at).inspect_err(|_| {
            self.failed = Some((data.len() as u64, at));
        })?;
        self.writeback.wrote(self.dst, data.len() as u64);
        Ok(())
    }

    fn error(&self, e: io::Error) -> DumpError {
        let what = match self.failed {
            Some((n, at)) => format!("writing {n} bytes at disk offset {at:#x}"),
            None => "writing the dump".to_string(),
        };
        DumpError::io(ErrStep::Copy, what, e)
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
            self.failed = Some((len as u64, at));
        })?;
        self.writeback.wrote(self.dst, len as u64);
        Ok(())
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
pub fn execute_elided<S, T>(
    src: &mut S,
    dst: &mut T,
    base: u64,
    plan: &ElidePlan,
    buf: &mut [u8],
    progress: &mut Progress<'_>,
    release: &mut dyn FnMut() -> Result<(), DumpError>,
    log: &Log,
) -> Result<ElideStats, DumpError>
where
    S: ReadAt + ?Sized,
    T: DumpTarget + ?Sized,
{
    assert!(
        !buf.is_empty() && (buf.len() as u64).is_multiple_of(PAGE_SIZE),
        "the copy buffer must be whole pages"
    );
    let mut sink = DiskSink {
        dst,
        base,
        failed: None,
        writeback: Writeback::default(),
    };
    let mut elider = Elider::new(plan);
    for step in plan.steps() {
        match step {
            ElideStep::ReleaseHsa => release()?,
            ElideStep::Part(i) => {
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
                elider.begin_part(i);
                copy_chunks(src, part.file.clone(), buf, progress, |chunk, _| {
                    elider.feed(chunk, &mut sink).map_err(|e| sink.error(e))
                })?;
                elider.end_part(&mut sink).map_err(|e| sink.error(e))?;
            }
            ElideStep::Meta => {
                let m = plan.meta_in.clone();
                if m.is_empty() {
                    continue;
                }
                info!(
                    log,
                    "copy notes {:#x}..{:#x} to {:#x}", m.start, m.end, plan.meta_out
                );
                copy_chunks(src, m, buf, progress, |chunk, off| {
                    elider
                        .write_meta(chunk, off, &mut sink)
                        .map_err(|e| sink.error(e))
                })?;
            }
            ElideStep::Header => {}
        }
    }
    let so_far = elider.stats();
    info!(
        log,
        "write ELF header block (last) with {} program headers, 0x0..{:#x}",
        so_far.loads as usize + plan.fixed.len(),
        plan.header_size
    );
    let stats = elider.finish(&mut sink).map_err(|e| sink.error(e))?;
    progress.finish();
    Ok(stats)
}

/// One line about what elision saved, for the console.
pub fn summary_line(s: &ElideStats, plan: &ElidePlan) -> String {
    let mib = |n: u64| format!("{}.{} MiB", n >> 20, ((n & 0xfffff) * 10) >> 20);
    let mut line = format!(
        "zero-page elision: {} of {} memory left out in {} runs; {} written, {} program headers \
         of {} reserved",
        mib(s.elided),
        mib(s.elided + s.written),
        s.runs,
        mib(s.file_size),
        s.phnum,
        plan.slots
    );
    if s.zeros_written > 0 {
        line.push_str(&format!(
            "; {} of zero pages written (program header entries rationed or used up)",
            mib(s.zeros_written)
        ));
    }
    line
}
