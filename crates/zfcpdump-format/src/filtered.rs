//! The filtered layout writer: the layout of a dump that leaves pages out of
//! the written PT_LOAD data (all-zero pages, and the pages the
//! [`crate::filter`] classifier excludes), and the bounded state machine that
//! produces it while the agent streams the vmcore.
//!
//! # What the output ELF looks like
//!
//! ```text
//! [0, H)                 ELF header + program header table with `slots` entries
//!                        reserved up front (H = 64 + 56 * slots, page-aligned);
//!                        unused entries are zero; the first page is written LAST
//! [H, data_start)        the input's notes (every non-PT_LOAD segment), byte for
//!                        byte, at the same offset within their page; zero padding
//! [data_start, end)      PT_LOAD data: the non-elided pages, back to back, in copy
//!                        order (HSA-backed parts first, then the rest in file order)
//! ```
//!
//! Every input PT_LOAD becomes one or more *pieces*. A piece is a run of written
//! pages followed by a run of elided zero pages: `p_filesz` covers the written
//! pages, `p_memsz` both, so readers zero-fill the tail. Consecutive pieces of a
//! segment are contiguous in physical and virtual address space (there are no
//! gaps, which crash would read as missing memory), and `p_offset`, `p_paddr`
//! and `p_vaddr` of a piece are those of the segment shifted by the same
//! amount. A segment that the HSA boundary splits has a piece boundary there,
//! because its two parts are copied at different times.
//!
//! Every byte of `[0, end)` is written by the dump, so no byte of an older dump
//! on the disk lies inside the file, and none lies inside a segment's
//! `p_filesz`; what lies on disk after `end` is outside every segment.
//!
//! # Bounds
//!
//! The program header table is reserved before the copy starts, so the data
//! never has to move: [`slots_for`] picks one entry per 64 KiB of memory, at
//! least [`MIN_SLOTS`] and at most [`MAX_SLOTS`] (below `PN_XNUM`, so no section
//! header is needed). The [`FilteredWriter`] elides a zero run only while enough
//! entries are left for it and for every part still to come, and within a
//! ration that hands the spare entries out along the input (so an early
//! fragmented stretch cannot starve long runs later); other zero pages are
//! written as zeros, which is always correct. Memory
//! is two pages (the first header page and one staging page) and the list of
//! written runs of the chunk being fed (at most one per two of its pages):
//! finished program headers are written to the table on disk as they are
//! made, so nothing grows with the number of zero runs or the dump size.
//! The kept pages of a chunk are contiguous in the output, so each chunk
//! costs one vectored write ([`Sink::write_runs`]).
//!
//! Pages in the first [`LOWCORE_SIZE`] bytes of physical memory (the s390x
//! lowcore, which crash and zgetdump read for the CPU state) are always
//! written, even when zero; this also keeps every piece at physical 0
//! non-empty (crash reads a segment at physical 0 with `p_filesz` 0 from the
//! file).
//!
//! # Readers
//!
//! Readers must treat `p_filesz < p_memsz` as zero-filled memory: crash,
//! gdb, libelf/`object`, and zgetdump from s390-tools 2.33.0 on. zgetdump 2.16
//! (Debian 12) reads all `p_memsz` bytes from the file, so elision is opt-in.

use crate::PAGE_SIZE;
use crate::elf::{EHDR_SIZE, ElfHeader, PHDR_SIZE, PN_XNUM, PT_LOAD, ProgramHeader, sort_ranges};
use crate::filter::DumpLevel;
use crate::filter::classify::{SHORT_RUN, leaves_out};
use crate::filter::note::FilterNote;
use std::fmt;
use std::io;
use std::ops::Range;

/// Physical bytes that are always written: the s390x lowcore (two pages).
pub const LOWCORE_SIZE: u64 = 2 * PAGE_SIZE;
/// Most program header entries reserved: below `PN_XNUM` (0xffff).
pub const MAX_SLOTS: u32 = PN_XNUM as u32 - 1;
/// Fewest program header entries reserved.
pub const MIN_SLOTS: u32 = 1024;
/// Memory per reserved program header entry (before the bounds above).
pub const MEMORY_PER_SLOT: u64 = 64 << 10;
/// Program headers in the first page, after the ELF header.
const FIRST_PAGE_SLOTS: u64 = (PAGE_SIZE - EHDR_SIZE as u64) / PHDR_SIZE as u64;

fn round_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

/// Bytes of the ELF header plus a table of `slots` program headers, rounded up
/// to whole pages: where the notes start.
pub fn header_size(slots: u32) -> u64 {
    round_up(
        EHDR_SIZE as u64 + PHDR_SIZE as u64 * slots as u64,
        PAGE_SIZE,
    )
}

/// How many program headers to reserve for a vmcore with `memory` bytes in its
/// PT_LOADs: one per [`MEMORY_PER_SLOT`], within [`MIN_SLOTS`]..=[`MAX_SLOTS`],
/// rounded up so that the table fills its last page.
pub fn slots_for(memory: u64) -> u32 {
    let want = (memory / MEMORY_PER_SLOT).clamp(MIN_SLOTS as u64, MAX_SLOTS as u64) as u32;
    let fill = ((header_size(want) - EHDR_SIZE as u64) / PHDR_SIZE as u64) as u32;
    fill.min(MAX_SLOTS)
}

/// Why a vmcore cannot be written in the filtered layout (the agent then
/// copies it byte for byte).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilteredPlanError {
    /// A PT_LOAD with file bytes whose physical address or file size is not a
    /// multiple of the page size.
    Unaligned {
        /// Program header index.
        index: usize,
    },
    /// A segment's file bytes lie (partly) outside the file.
    OutOfFile {
        /// Program header index.
        index: usize,
    },
    /// Two PT_LOADs share file bytes.
    Overlap {
        /// Program header index.
        a: usize,
        /// Program header index.
        b: usize,
    },
    /// PT_LOAD data inside the input's ELF header or program header table.
    LoadInHeaders {
        /// Program header index.
        index: usize,
    },
    /// A non-PT_LOAD segment (notes) that is not between the program header
    /// table and the first PT_LOAD data.
    NotesOutside {
        /// Program header index.
        index: usize,
    },
    /// More segments than program header entries.
    TooManySegments {
        /// Entries needed at least.
        needed: u64,
        /// Entries available.
        slots: u32,
    },
}

impl fmt::Display for FilteredPlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilteredPlanError::Unaligned { index } => write!(
                f,
                "PT_LOAD {index} is not page-aligned (p_paddr or p_filesz not a multiple of {PAGE_SIZE})"
            ),
            FilteredPlanError::OutOfFile { index } => {
                write!(f, "program header {index} extends past the end of the file")
            }
            FilteredPlanError::Overlap { a, b } => {
                write!(f, "PT_LOADs {a} and {b} share file bytes")
            }
            FilteredPlanError::LoadInHeaders { index } => write!(
                f,
                "PT_LOAD {index} has file bytes inside the ELF header or program header table"
            ),
            FilteredPlanError::NotesOutside { index } => write!(
                f,
                "segment {index} is not between the program header table and the PT_LOAD data"
            ),
            FilteredPlanError::TooManySegments { needed, slots } => write!(
                f,
                "{needed} segments need more program headers than the {slots} reserved"
            ),
        }
    }
}

impl std::error::Error for FilteredPlanError {}

/// A contiguous stretch of one input PT_LOAD that is copied in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Index of the input program header.
    pub index: usize,
    /// Input file bytes (page multiples).
    pub file: Range<u64>,
    /// Physical address of `file.start`.
    pub paddr: u64,
    /// Virtual address of `file.start`.
    pub vaddr: u64,
    /// Memory after the file bytes that the input already leaves out
    /// (`p_memsz - p_filesz`, on the segment's last part only).
    pub tail: u64,
    /// p_flags of the segment.
    pub flags: u32,
    /// p_align of the segment.
    pub align: u64,
    /// Whether the part lies below the HSA size (copied before the release).
    pub hsa: bool,
    /// Whether its pages count in the filter note's per-page numbers: not
    /// for a segment whose memory another one holds too (the V!=R kernel
    /// image inside the identity range), so each physical page counts once.
    pub counted: bool,
}

impl Part {
    /// File bytes of the part.
    pub fn len(&self) -> u64 {
        self.file.end - self.file.start
    }

    /// Whether the part has no file bytes (only a tail).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One step of a filtered copy, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilteredStep {
    /// Copy part `i` of [`FilteredPlan::parts`] through [`FilteredWriter::begin_part`],
    /// [`FilteredWriter::feed`] and [`FilteredWriter::end_part`].
    Part(usize),
    /// Release the HSA: every HSA-backed part is copied.
    ReleaseHsa,
    /// Copy the input bytes [`FilteredPlan::meta_in`] through [`FilteredWriter::write_meta`].
    Meta,
    /// [`FilteredWriter::finish`]: the rest of the header area, the first page last.
    Header,
}

/// The plan of a filtered dump of one vmcore: its layout and the order of
/// its steps, fixed before the copy starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilteredPlan {
    /// The output ELF header; e_phnum is set when the copy ends.
    pub header: ElfHeader,
    /// Program header entries reserved.
    pub slots: u32,
    /// Size of the ELF header and the reserved table, page-aligned.
    pub header_size: u64,
    /// Input bytes copied verbatim: from the first note to the first PT_LOAD
    /// data (the notes and their padding, which holds the terminating note).
    pub meta_in: Range<u64>,
    /// Output offset of `meta_in.start`.
    pub meta_out: u64,
    /// Output offset of the first PT_LOAD data byte.
    pub data_start: u64,
    /// The non-PT_LOAD program headers (notes), offsets as written; they come
    /// first in the table.
    pub fixed: Vec<ProgramHeader>,
    /// The PT_LOAD parts in copy order: HSA-backed ones first, then the rest,
    /// each group in file order.
    pub parts: Vec<Part>,
    /// Whether all-zero pages are left out (dump level bit 1).
    pub zero_pages: bool,
    /// Output offset of the filter note ([`crate::filter::note`]), appended
    /// to the PT_NOTE segment, when the plan has one.
    pub note_at: Option<u64>,
}

impl FilteredPlan {
    /// Lays out the elided dump of a vmcore of `file_size` bytes with header
    /// `header` and program headers `phdrs` (validated by the ELF reader), on
    /// a machine whose HSA holds physical addresses `[0, hsa_size)`, with
    /// `slots` program header entries ([`slots_for`]).
    pub fn new(
        header: &ElfHeader,
        phdrs: &[ProgramHeader],
        file_size: u64,
        hsa_size: u64,
        slots: u32,
    ) -> Result<FilteredPlan, FilteredPlanError> {
        let slots = slots.min(MAX_SLOTS);
        let table_end = header
            .e_phoff
            .saturating_add(PHDR_SIZE as u64 * phdrs.len() as u64)
            .max(EHDR_SIZE as u64);
        // PT_LOAD file ranges: inside the file, after the headers, disjoint.
        // `order` holds (p_offset, index) of the PT_LOADs with file bytes in
        // file order (as a Range only to share the crate's one sort).
        let mut order: Vec<Range<u64>> = Vec::new();
        for (index, p) in phdrs.iter().enumerate() {
            if p.p_filesz == 0 {
                continue;
            }
            if p.file_end().is_none_or(|e| e > file_size) {
                return Err(FilteredPlanError::OutOfFile { index });
            }
            if p.is_load() {
                if p.p_paddr % PAGE_SIZE != 0 || p.p_filesz % PAGE_SIZE != 0 {
                    return Err(FilteredPlanError::Unaligned { index });
                }
                if p.p_offset < table_end {
                    return Err(FilteredPlanError::LoadInHeaders { index });
                }
                order.push(p.p_offset..index as u64);
            }
        }
        sort_ranges(&mut order);
        for w in order.windows(2) {
            let (a, b) = (w[0].end as usize, w[1].end as usize);
            if phdrs[b].p_offset < phdrs[a].p_offset + phdrs[a].p_filesz {
                return Err(FilteredPlanError::Overlap { a, b });
            }
        }
        let first_load = order.first().map(|r| r.start);

        // The notes (every non-PT_LOAD segment with file bytes) lie between the
        // program header table and the first PT_LOAD data; they move as one
        // block that keeps its offset within the page.
        let others = || {
            phdrs
                .iter()
                .enumerate()
                .filter(|(_, p)| !p.is_load() && p.p_filesz > 0)
        };
        let meta_start = others().map(|(_, p)| p.p_offset).min();
        let meta_end = others().map(|(_, p)| p.p_offset + p.p_filesz).max();
        let meta_in = match (meta_start, meta_end) {
            (Some(s), Some(e)) => s..first_load.unwrap_or(e).max(e),
            _ => 0..0,
        };
        for (index, p) in others() {
            let inside =
                p.p_offset >= table_end && first_load.is_none_or(|f| p.p_offset + p.p_filesz <= f);
            if !inside {
                return Err(FilteredPlanError::NotesOutside { index });
            }
        }

        let header_size = header_size(slots);
        let meta_out = header_size + meta_in.start % PAGE_SIZE;
        let data_start = round_up(meta_out + (meta_in.end - meta_in.start), PAGE_SIZE);
        let shift = |off: u64| off - meta_in.start + meta_out;
        let fixed = phdrs
            .iter()
            .filter(|p| !p.is_load())
            .map(|p| ProgramHeader {
                p_offset: if p.p_filesz > 0 { shift(p.p_offset) } else { 0 },
                ..*p
            })
            .collect();

        // Parts: split at the (page-rounded) HSA size; HSA-backed ones first,
        // each group in file order. PT_LOADs without file bytes (only
        // memory) come last.
        let hsa_end = round_up(hsa_size, PAGE_SIZE);
        let mut hsa_parts = Vec::new();
        let mut rest = Vec::new();
        let memory_only = phdrs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_load() && p.p_filesz == 0 && p.p_memsz > 0)
            .map(|(i, _)| i);
        for index in order.iter().map(|r| r.end as usize).chain(memory_only) {
            let p = &phdrs[index];
            let tail = p.p_memsz - p.p_filesz;
            let part = |from: u64, to: u64, hsa: bool, tail: u64| Part {
                index,
                file: p.p_offset + from..p.p_offset + to,
                paddr: p.p_paddr + from,
                vaddr: p.p_vaddr.wrapping_add(from),
                tail,
                flags: p.p_flags,
                align: p.p_align,
                hsa,
                counted: !covered_elsewhere(phdrs, index),
            };
            let below = if p.p_paddr < hsa_end {
                p.p_filesz.min(hsa_end - p.p_paddr)
            } else {
                0
            };
            if below > 0 {
                let whole = below == p.p_filesz;
                hsa_parts.push(part(0, below, true, if whole { tail } else { 0 }));
                if !whole {
                    rest.push(part(below, p.p_filesz, false, tail));
                }
            } else {
                rest.push(part(0, p.p_filesz, false, tail));
            }
        }
        hsa_parts.extend(rest);

        // Every part needs an entry; the notes must fit into the first page,
        // which is kept in memory until the end.
        let notes = phdrs.iter().filter(|p| !p.is_load()).count() as u64;
        let needed = notes + hsa_parts.len() as u64;
        if needed > slots as u64 || notes > FIRST_PAGE_SLOTS {
            return Err(FilteredPlanError::TooManySegments { needed, slots });
        }

        let out_header = ElfHeader {
            e_entry: header.e_entry,
            e_flags: header.e_flags,
            ..ElfHeader::s390_core(0)
        };
        Ok(FilteredPlan {
            header: out_header,
            slots,
            header_size,
            meta_in,
            meta_out,
            data_start,
            fixed,
            parts: hsa_parts,
            zero_pages: true,
            note_at: None,
        })
    }

    /// Makes room for the filter note after the PT_NOTE segment's data (the
    /// last of the notes: nothing else may follow it) and grows that
    /// segment by it. Without a PT_NOTE there is no note.
    pub fn reserve_note(&mut self) -> bool {
        let Some(end) = self
            .fixed
            .iter()
            .filter(|p| p.p_filesz > 0)
            .map(|p| p.p_offset + p.p_filesz)
            .max()
        else {
            return false;
        };
        let Some(note) = self.fixed.iter_mut().find(|p| {
            p.p_type == crate::elf::PT_NOTE && p.p_filesz > 0 && p.p_offset + p.p_filesz == end
        }) else {
            return false;
        };
        note.p_filesz += crate::filter::note::NOTE_SIZE;
        note.p_memsz = note.p_memsz.max(note.p_filesz);
        self.note_at = Some(end);
        self.data_start = self
            .data_start
            .max(round_up(end + crate::filter::note::NOTE_SIZE, PAGE_SIZE));
        true
    }

    /// The steps in order: HSA-backed parts, the HSA release, the notes, the
    /// other parts, the header area (its first page last).
    pub fn steps(&self) -> Vec<FilteredStep> {
        let hsa = self.parts.iter().take_while(|p| p.hsa).count();
        let mut v: Vec<FilteredStep> = (0..hsa).map(FilteredStep::Part).collect();
        v.push(FilteredStep::ReleaseHsa);
        v.push(FilteredStep::Meta);
        v.extend((hsa..self.parts.len()).map(FilteredStep::Part));
        v.push(FilteredStep::Header);
        v
    }

    /// The largest size the output can have (no page elided): what must fit
    /// into the dump area.
    pub fn max_size(&self) -> u64 {
        self.data_start + self.parts.iter().map(Part::len).sum::<u64>()
    }

    /// Input bytes the copy reads (the notes and every part), for progress.
    pub fn input_bytes(&self) -> u64 {
        (self.meta_in.end - self.meta_in.start) + self.parts.iter().map(Part::len).sum::<u64>()
    }
}

/// Whether another PT_LOAD holds all of segment `i`'s memory: an identity
/// one (p_vaddr == p_paddr) for a segment that is not, or an earlier one.
fn covered_elsewhere(phdrs: &[ProgramHeader], i: usize) -> bool {
    let p = &phdrs[i];
    let identity = |q: &ProgramHeader| q.p_vaddr == q.p_paddr;
    phdrs.iter().enumerate().any(|(j, q)| {
        j != i
            && q.is_load()
            && ((identity(q) && !identity(p)) || (j < i && identity(q) == identity(p)))
            && q.p_paddr <= p.p_paddr
            && p.p_paddr + p.p_memsz <= q.p_paddr + q.p_memsz
    })
}

/// Where an [`FilteredWriter`] writes: offsets are relative to the start of the
/// output ELF (the dump area).
pub trait Sink {
    /// Writes all of `data` at `offset`.
    fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()>;
    /// Writes `len` zero bytes at `offset`.
    fn write_zeros_at(&mut self, len: u64, offset: u64) -> io::Result<()>;
    /// Writes the ranges `runs` of `data` back to back from `offset`. A sink
    /// that can should do it in one vectored write: the file system then
    /// sees one large write, not many small ones. The default writes them
    /// one by one.
    fn write_runs(&mut self, data: &[u8], runs: &[Range<usize>], offset: u64) -> io::Result<()> {
        let mut at = offset;
        for r in runs {
            self.write_at(&data[r.clone()], at)?;
            at += r.len() as u64;
        }
        Ok(())
    }
    /// Makes everything written so far durable. [`FilteredWriter::finish_noted`]
    /// calls it right before the first page, which makes the output look
    /// complete, so that page reaches the device after all the rest. The
    /// default does nothing (a sink in memory).
    fn barrier(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a filtered copy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilteredStats {
    /// Memory bytes written.
    pub written: u64,
    /// Zero bytes left out (not counting tails the input already left out).
    pub elided: u64,
    /// Zero runs left out.
    pub runs: u64,
    /// Zero bytes written because the program header table was full.
    pub zeros_written: u64,
    /// Bytes of excluded (classified) pages written for the same reason.
    pub excluded_written: u64,
    /// Pages left out per class, in [`crate::filter::CLASSES`] order (zero
    /// pages first); each physical page once ([`Part::counted`]).
    pub excluded: [u64; 5],
    /// Pages written, each physical page once.
    pub pages_written: u64,
    /// Of those, pages of excluded runs too short to leave out
    /// ([`crate::filter::classify::SHORT_RUN`]).
    pub short_written: u64,
    /// PT_LOAD program headers written.
    pub loads: u32,
    /// Program headers written in total (e_phnum).
    pub phnum: u32,
    /// Size of the output ELF: every byte of `[0, file_size)` was written.
    pub file_size: u64,
}

#[derive(Debug, Clone, Copy)]
struct Piece {
    paddr: u64,
    offset: u64,
    filesz: u64,
    zeros: u64,
}

#[derive(Debug, Clone, Copy)]
struct Current {
    part: usize,
    /// Input file offset of the next byte to feed.
    next: u64,
    piece: Piece,
}

/// Whether `b` holds only zero bytes (vectorises: no early exit inside a
/// 64-byte block).
pub fn is_zero(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(64);
    for c in &mut chunks {
        if c.iter().fold(0u8, |a, &x| a | x) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&x| x == 0)
}

/// Writes a filtered dump while the caller streams the parts of an
/// [`FilteredPlan`] through it, in [`FilteredPlan::steps`] order.
#[derive(Debug)]
pub struct FilteredWriter<'p> {
    plan: &'p FilteredPlan,
    /// Program headers written (fixed ones and finished pieces).
    used: u32,
    /// Parts not begun yet (each needs one more entry).
    parts_left: u32,
    /// Output offset of the next data byte.
    cursor: u64,
    /// The first page of the output: ELF header and the first entries.
    head: Vec<u8>,
    /// One later page of the table, written when the next one is needed.
    stage: Vec<u8>,
    /// Page number of `stage` (0: none yet).
    stage_page: u64,
    current: Option<Current>,
    /// The written ranges of the data being fed (reused; at most one per
    /// two pages of a chunk).
    runs: Vec<Range<usize>>,
    /// Entries left for zero runs once every part has its own.
    spare: u64,
    /// Part bytes fed so far, and in all.
    fed: u64,
    input_total: u64,
    stats: FilteredStats,
}

impl<'p> FilteredWriter<'p> {
    /// Starts a filtered copy; the non-PT_LOAD program headers take the first
    /// entries.
    pub fn new(plan: &'p FilteredPlan) -> FilteredWriter<'p> {
        let mut e = FilteredWriter {
            plan,
            used: 0,
            parts_left: plan.parts.len() as u32,
            cursor: plan.data_start,
            head: vec![0; PAGE_SIZE as usize],
            stage: vec![0; PAGE_SIZE as usize],
            stage_page: 0,
            current: None,
            runs: Vec::new(),
            spare: (plan.slots as u64).saturating_sub((plan.fixed.len() + plan.parts.len()) as u64),
            fed: 0,
            input_total: plan.parts.iter().map(Part::len).sum(),
            stats: FilteredStats::default(),
        };
        for p in &plan.fixed {
            // Cannot fail: nothing is flushed while the first page fills.
            let _ = e.push_phdr(p, &mut NoSink);
        }
        e
    }

    /// What was done so far.
    pub fn stats(&self) -> FilteredStats {
        self.stats
    }

    /// Starts part `i`: its bytes follow through [`FilteredWriter::feed`].
    ///
    /// # Panics
    /// If a part is still open.
    pub fn begin_part(&mut self, i: usize) {
        assert!(self.current.is_none(), "part not ended");
        let part = &self.plan.parts[i];
        self.parts_left -= 1;
        self.current = Some(Current {
            part: i,
            next: part.file.start,
            piece: Piece {
                paddr: part.paddr,
                offset: self.cursor,
                filesz: 0,
                zeros: 0,
            },
        });
    }

    /// The next bytes of the open part, from its input file offset onwards.
    /// Written pages go to `sink` at their output offsets; all-zero pages are
    /// left out while the program header table has room. Feed whole pages
    /// (only the last chunk of a part may be shorter).
    ///
    /// # Panics
    /// Without an open part, or with more bytes than the part has.
    pub fn feed(&mut self, data: &[u8], sink: &mut dyn Sink) -> io::Result<()> {
        self.feed_classified(data, None, sink)
    }

    /// [`FilteredWriter::feed`] with the class of each page of `data`
    /// ([`crate::filter::classify::PageFilter`]): a page with a non-zero
    /// class is left out like a zero page. A page of a run too short to
    /// leave out ([`crate::filter::classify::SHORT_RUN`]) is written unless
    /// it is a zero page left out as such, which counts under its class.
    pub fn feed_classified(
        &mut self,
        data: &[u8],
        classes: Option<&[u8]>,
        sink: &mut dyn Sink,
    ) -> io::Result<()> {
        let mut cur = self.current.expect("feed without an open part");
        let plan: &'p FilteredPlan = self.plan;
        let part = &plan.parts[cur.part];
        assert!(
            cur.next + data.len() as u64 <= part.file.end,
            "more bytes than the part has"
        );
        let paddr0 = part.paddr + (cur.next - part.file.start);
        // The kept bytes of the whole chunk are contiguous in the output,
        // from `out`: collect them and write them in one go.
        let out = self.cursor;
        self.runs.clear();
        let mut i = 0usize;
        while i < data.len() {
            let pa = paddr0 + i as u64;
            let n = ((PAGE_SIZE - pa % PAGE_SIZE) as usize).min(data.len() - i);
            let marked = classes.map_or(0, |c| c[i / PAGE_SIZE as usize]);
            let class = marked & !SHORT_RUN;
            let zero = pa >= LOWCORE_SIZE
                && (leaves_out(marked) || (plan.zero_pages && is_zero(&data[i..i + n])));
            if zero && (cur.piece.zeros > 0 || self.may_start_run(self.fed + i as u64)) {
                if cur.piece.zeros == 0 {
                    self.stats.runs += 1;
                }
                cur.piece.zeros += n as u64;
                self.stats.elided += n as u64;
                if part.counted {
                    let i = if class == 0 {
                        0
                    } else {
                        crate::filter::class_index(class)
                    };
                    self.stats.excluded[i] += 1;
                }
            } else {
                if zero && class == 0 {
                    self.stats.zeros_written += n as u64;
                } else if zero {
                    self.stats.excluded_written += n as u64;
                }
                if cur.piece.zeros > 0 {
                    self.close_piece(part, &cur.piece, sink)?;
                    cur.piece = Piece {
                        paddr: pa,
                        offset: self.cursor,
                        filesz: 0,
                        zeros: 0,
                    };
                }
                match self.runs.last_mut() {
                    Some(r) if r.end == i => r.end = i + n,
                    _ => self.runs.push(i..i + n),
                }
                cur.piece.filesz += n as u64;
                self.cursor += n as u64;
                self.stats.written += n as u64;
                self.stats.pages_written += part.counted as u64;
                self.stats.short_written += (part.counted && marked & SHORT_RUN != 0) as u64;
            }
            i += n;
        }
        if !self.runs.is_empty() {
            sink.write_runs(data, &self.runs, out)?;
        }
        cur.next += data.len() as u64;
        self.fed += data.len() as u64;
        self.current = Some(cur);
        Ok(())
    }

    /// Whether a new zero run may start once `fed` part bytes were fed.
    /// It costs at most one entry (the piece after it), and every part still
    /// to come needs one too. And it must be within the ration: an eighth of
    /// the spare entries at once, the rest in proportion to the input. So a
    /// fragmented stretch early in memory (free pages scattered between used
    /// ones) cannot use up the entries that the long zero runs further on
    /// need; entries it leaves unused carry over. Asked only at the start of
    /// a zero run, not for every page.
    fn may_start_run(&self, fed: u64) -> bool {
        if self.used as u64 + 2 + self.parts_left as u64 > self.plan.slots as u64 {
            return false;
        }
        let spare = self.spare as u128;
        let share = spare * fed as u128 / self.input_total.max(1) as u128;
        (self.stats.runs as u128) < spare / 8 + share
    }

    /// Ends the open part: its last piece gets the part's tail and its
    /// program header.
    ///
    /// # Panics
    /// Without an open part, or before all its bytes were fed.
    pub fn end_part(&mut self, sink: &mut dyn Sink) -> io::Result<()> {
        let cur = self.current.take().expect("end_part without an open part");
        let plan: &'p FilteredPlan = self.plan;
        let part = &plan.parts[cur.part];
        assert_eq!(cur.next, part.file.end, "part ended before all its bytes");
        let mut piece = cur.piece;
        piece.zeros += part.tail;
        self.close_piece(part, &piece, sink)
    }

    /// Copies input bytes of [`FilteredPlan::meta_in`] that start at input offset
    /// `in_offset` to their place in the output.
    ///
    /// # Panics
    /// If the bytes are not inside `meta_in`.
    pub fn write_meta(
        &mut self,
        data: &[u8],
        in_offset: u64,
        sink: &mut dyn Sink,
    ) -> io::Result<()> {
        let m = &self.plan.meta_in;
        assert!(
            in_offset >= m.start && in_offset + data.len() as u64 <= m.end,
            "not inside the notes"
        );
        sink.write_at(data, in_offset - m.start + self.plan.meta_out)
    }

    /// Ends the copy: zero padding around the notes, the rest of the program
    /// header table (unused entries zero), and the first page (ELF header and
    /// first entries) last, so the output is an ELF only when all else is
    /// written.
    ///
    /// # Panics
    /// If a part is still open.
    pub fn finish(self, sink: &mut dyn Sink) -> io::Result<FilteredStats> {
        self.finish_noted(None, sink)
    }

    /// [`FilteredWriter::finish`] that also writes the filter note (where the plan
    /// reserved it) with the levels asked for and used, `levels`.
    pub fn finish_noted(
        mut self,
        levels: Option<(DumpLevel, DumpLevel)>,
        sink: &mut dyn Sink,
    ) -> io::Result<FilteredStats> {
        assert!(self.current.is_none(), "part not ended");
        let plan = self.plan;
        let meta_len = plan.meta_in.end - plan.meta_in.start;
        let meta_end = plan.meta_out + meta_len;
        if plan.meta_out > plan.header_size {
            sink.write_zeros_at(plan.meta_out - plan.header_size, plan.header_size)?;
        }
        if plan.data_start > meta_end {
            sink.write_zeros_at(plan.data_start - meta_end, meta_end)?;
        }
        if let (Some(at), Some((requested, used))) = (plan.note_at, levels) {
            let s = &self.stats;
            let note = FilterNote {
                requested,
                used,
                excluded: s.excluded,
                written: s.pages_written,
                total: s.pages_written + s.excluded.iter().sum::<u64>(),
            };
            sink.write_at(&note.to_bytes(), at)?;
        }
        let mut table_done = PAGE_SIZE;
        if self.stage_page > 0 {
            sink.write_at(&self.stage, self.stage_page * PAGE_SIZE)?;
            table_done = (self.stage_page + 1) * PAGE_SIZE;
        }
        if plan.header_size > table_done {
            sink.write_zeros_at(plan.header_size - table_done, table_done)?;
        }
        let header = ElfHeader {
            e_phnum: self.used as u16,
            ..plan.header
        };
        self.head[..EHDR_SIZE].copy_from_slice(&header.to_bytes());
        sink.barrier()?;
        sink.write_at(&self.head, 0)?;
        self.stats.phnum = self.used;
        self.stats.file_size = self.cursor;
        Ok(self.stats)
    }

    fn close_piece(&mut self, part: &Part, piece: &Piece, sink: &mut dyn Sink) -> io::Result<()> {
        let ph = ProgramHeader {
            p_type: PT_LOAD,
            p_flags: part.flags,
            p_offset: piece.offset,
            p_vaddr: part.vaddr.wrapping_add(piece.paddr - part.paddr),
            p_paddr: piece.paddr,
            p_filesz: piece.filesz,
            p_memsz: piece.filesz + piece.zeros,
            p_align: part.align,
        };
        self.stats.loads += 1;
        self.push_phdr(&ph, sink)
    }

    /// Puts the next program header into its place in the table: the first
    /// page stays in memory until [`FilteredWriter::finish`]; later pages are written
    /// when the table moves on to the next page.
    fn push_phdr(&mut self, ph: &ProgramHeader, sink: &mut dyn Sink) -> io::Result<()> {
        assert!(self.used < self.plan.slots, "program header table full");
        let bytes = ph.to_bytes();
        let mut at = EHDR_SIZE as u64 + PHDR_SIZE as u64 * self.used as u64;
        let mut src = &bytes[..];
        while !src.is_empty() {
            let page = at / PAGE_SIZE;
            let within = (at % PAGE_SIZE) as usize;
            let n = (PAGE_SIZE as usize - within).min(src.len());
            let dst = if page == 0 {
                &mut self.head
            } else {
                if self.stage_page != page {
                    if self.stage_page > 0 {
                        sink.write_at(&self.stage, self.stage_page * PAGE_SIZE)?;
                    }
                    self.stage.fill(0);
                    self.stage_page = page;
                }
                &mut self.stage
            };
            dst[within..within + n].copy_from_slice(&src[..n]);
            src = &src[n..];
            at += n as u64;
        }
        self.used += 1;
        Ok(())
    }
}

/// For the fixed headers, which all land in the first page.
struct NoSink;

impl Sink for NoSink {
    fn write_at(&mut self, _: &[u8], _: u64) -> io::Result<()> {
        Err(io::Error::other("unexpected write"))
    }
    fn write_zeros_at(&mut self, _: u64, _: u64) -> io::Result<()> {
        Err(io::Error::other("unexpected write"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::{PT_NOTE, Vmcore, push_note};

    const P: u64 = PAGE_SIZE;
    /// What the disk held before: never allowed to show up in the output.
    const STALE: u8 = 0xa5;

    use crate::testrand::XorShift;

    /// A /proc/vmcore-shaped core: header + phdrs padded, notes padded, then
    /// the PT_LOAD data back to back. `loads`: (paddr, vaddr, pages, memsz
    /// extra); `zero(page number)` says which physical pages are zero.
    struct Core {
        file: Vec<u8>,
        phdrs: Vec<ProgramHeader>,
        header: ElfHeader,
    }

    fn byte_at(paddr: u64) -> u8 {
        // Never zero: a non-zero page has no zero byte at all.
        ((paddr.wrapping_mul(0x9e37_79b9) >> 7) as u8) | 1
    }

    fn core(loads: &[(u64, u64, u64, u64)], zero: &dyn Fn(u64) -> bool) -> Core {
        let mut notes = Vec::new();
        push_note(&mut notes, 3, b"CORE", &[7; 136]);
        push_note(&mut notes, 1, b"CORE", &[9; 336]);
        push_note(&mut notes, 0, b"VMCOREINFO", b"OSRELEASE=6.1.0\n");
        let notes_len = notes.len() as u64;
        notes.extend_from_slice(&[0; 12]); // terminator outside p_filesz
        let phnum = 1 + loads.len();
        let notes_off = round_up(64 + 56 * phnum as u64, P);
        let mut off = notes_off + round_up(notes.len() as u64, P);
        let mut phdrs = vec![ProgramHeader {
            p_type: PT_NOTE,
            p_offset: notes_off,
            p_filesz: notes_len,
            p_align: 4,
            ..Default::default()
        }];
        for &(paddr, vaddr, pages, extra) in loads {
            phdrs.push(ProgramHeader {
                p_type: PT_LOAD,
                p_flags: 7,
                p_offset: off,
                p_vaddr: vaddr,
                p_paddr: paddr,
                p_filesz: pages * P,
                p_memsz: pages * P + extra,
                p_align: P,
            });
            off += pages * P;
        }
        let header = ElfHeader::s390_core(phnum as u16);
        let mut file = vec![0u8; off as usize];
        file[..64].copy_from_slice(&header.to_bytes());
        for (i, p) in phdrs.iter().enumerate() {
            file[64 + 56 * i..64 + 56 * (i + 1)].copy_from_slice(&p.to_bytes());
        }
        file[notes_off as usize..][..notes.len()].copy_from_slice(&notes);
        for p in &phdrs[1..] {
            for i in 0..p.p_filesz {
                let pa = p.p_paddr + i;
                file[(p.p_offset + i) as usize] = if zero(pa / P) { 0 } else { byte_at(pa) };
            }
        }
        Core {
            file,
            phdrs,
            header,
        }
    }

    /// The output disk: starts stale, records the order of writes.
    struct Disk {
        data: Vec<u8>,
        written: Vec<bool>,
        writes: Vec<Range<u64>>,
        /// Calls of `write_runs`.
        vectored: usize,
    }

    impl Disk {
        fn new(size: u64) -> Disk {
            Disk {
                data: vec![STALE; size as usize],
                written: vec![false; size as usize],
                writes: Vec::new(),
                vectored: 0,
            }
        }
        fn put(&mut self, data: &[u8], offset: u64) {
            let o = offset as usize;
            self.data[o..o + data.len()].copy_from_slice(data);
            self.written[o..o + data.len()].fill(true);
            self.writes.push(offset..offset + data.len() as u64);
        }
    }

    impl Sink for Disk {
        fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
            self.put(data, offset);
            Ok(())
        }
        fn write_zeros_at(&mut self, len: u64, offset: u64) -> io::Result<()> {
            self.put(&vec![0; len as usize], offset);
            Ok(())
        }
        fn write_runs(
            &mut self,
            data: &[u8],
            runs: &[Range<usize>],
            offset: u64,
        ) -> io::Result<()> {
            self.vectored += 1;
            let mut at = offset;
            for r in runs {
                assert!(r.start < r.end && r.end <= data.len());
                self.put(&data[r.clone()], at);
                at += r.len() as u64;
            }
            Ok(())
        }
    }

    /// Runs a filtered copy of `c` in chunks of `chunk` pages, the way the
    /// agent does.
    fn write_filtered(
        c: &Core,
        hsa: u64,
        slots: u32,
        chunk: u64,
    ) -> (FilteredPlan, Disk, FilteredStats) {
        let plan = FilteredPlan::new(&c.header, &c.phdrs, c.file.len() as u64, hsa, slots).unwrap();
        let mut disk = Disk::new(plan.max_size() + 3 * P);
        let mut e = FilteredWriter::new(&plan);
        let mut released = false;
        for step in plan.steps() {
            match step {
                FilteredStep::Part(i) => {
                    let part = &plan.parts[i];
                    assert_eq!(part.hsa, !released, "HSA parts come before the release");
                    e.begin_part(i);
                    let mut off = part.file.start;
                    while off < part.file.end {
                        let n = (chunk * P).min(part.file.end - off);
                        e.feed(&c.file[off as usize..(off + n) as usize], &mut disk)
                            .unwrap();
                        off += n;
                    }
                    e.end_part(&mut disk).unwrap();
                }
                FilteredStep::ReleaseHsa => released = true,
                FilteredStep::Meta => {
                    let m = plan.meta_in.clone();
                    e.write_meta(
                        &c.file[m.start as usize..m.end as usize],
                        m.start,
                        &mut disk,
                    )
                    .unwrap();
                }
                FilteredStep::Header => {}
            }
        }
        let stats = e.finish(&mut disk).unwrap();
        (plan, disk, stats)
    }

    /// Checks everything an elided dump promises; returns its program headers.
    fn check(
        c: &Core,
        plan: &FilteredPlan,
        disk: &Disk,
        stats: &FilteredStats,
    ) -> Vec<ProgramHeader> {
        let size = stats.file_size;
        // Every byte of the file was written, nothing after it; the first
        // page came last.
        assert!(
            disk.written[..size as usize].iter().all(|&w| w),
            "unwritten bytes"
        );
        assert!(
            disk.written[size as usize..].iter().all(|&w| !w),
            "written past the end"
        );
        assert_eq!(disk.writes.last(), Some(&(0..P)), "first page not last");
        assert!(
            !disk.writes[..disk.writes.len() - 1]
                .iter()
                .any(|w| w.start < P)
        );
        assert!(size <= plan.max_size());

        let out = &disk.data[..size as usize];
        let vm = Vmcore::read(&mut &out[..], size).unwrap();
        assert_eq!(vm.header.e_phoff, 64);
        assert_eq!(vm.phdrs.len() as u32, stats.phnum);
        assert!(stats.phnum <= plan.slots && plan.slots < PN_XNUM as u32);
        // The notes: same bytes, phdr[0].
        let inv = Vmcore::read(&mut &c.file[..], c.file.len() as u64).unwrap();
        assert_eq!(vm.phdrs[0].p_type, PT_NOTE);
        assert_eq!(vm.notes().count(), inv.notes().count());
        for (a, b) in vm.notes().zip(inv.notes()) {
            assert_eq!(a.unwrap(), b.unwrap());
        }
        let n_in = &c.phdrs[0];
        let n_out = &vm.phdrs[0];
        // Including the terminating note in the padding.
        assert_eq!(
            &out[n_out.p_offset as usize..][..n_in.p_filesz as usize + 12],
            &c.file[n_in.p_offset as usize..][..n_in.p_filesz as usize + 12]
        );
        assert_eq!(n_out.p_offset % P, n_in.p_offset % P);

        // Memory: every input segment is tiled by pieces, without gaps or
        // overlaps, that read back the input with zeros for the elided tails.
        let loads: Vec<ProgramHeader> = vm.loads().copied().collect();
        assert_eq!(loads.len() as u32, stats.loads);
        let mut used = vec![false; loads.len()];
        for p in c.phdrs.iter().filter(|p| p.is_load()) {
            let mut pieces: Vec<(usize, &ProgramHeader)> = loads
                .iter()
                .enumerate()
                .filter(|(_, q)| {
                    q.p_paddr >= p.p_paddr
                        && q.p_paddr < p.p_paddr + p.p_memsz
                        && q.p_vaddr.wrapping_sub(q.p_paddr) == p.p_vaddr.wrapping_sub(p.p_paddr)
                })
                .collect();
            pieces.sort_by_key(|(_, q)| q.p_paddr);
            let mut pa = p.p_paddr;
            for (i, q) in pieces {
                assert_eq!(q.p_paddr, pa, "gap or overlap at {pa:#x}: {loads:#x?}");
                assert!(q.p_memsz > 0 && q.p_filesz <= q.p_memsz);
                assert_eq!(q.p_flags, p.p_flags);
                assert_eq!(q.p_offset % P, 0);
                used[i] = true;
                for k in 0..q.p_memsz {
                    let want = if pa + k - p.p_paddr < p.p_filesz {
                        c.file[(p.p_offset + pa + k - p.p_paddr) as usize]
                    } else {
                        0
                    };
                    let got = if k < q.p_filesz {
                        out[(q.p_offset + k) as usize]
                    } else {
                        0
                    };
                    assert_eq!(got, want, "memory at {:#x}", pa + k);
                    // Lowcore is in the file, never elided.
                    if pa + k < LOWCORE_SIZE && pa + k - p.p_paddr < p.p_filesz {
                        assert!(k < q.p_filesz, "lowcore byte {:#x} elided", pa + k);
                    }
                }
                pa += q.p_memsz;
            }
            assert_eq!(pa, p.p_paddr + p.p_memsz, "segment not covered");
        }
        assert!(used.iter().all(|&u| u), "a piece belongs to no segment");
        loads
    }

    fn zero_runs(pages: &[u64]) -> impl Fn(u64) -> bool + '_ {
        move |page| pages.contains(&page)
    }

    #[test]
    fn splits_zero_runs_into_tails() {
        // 0..16 pages at paddr 0 (HSA 8 pages), a kernel image at 4..6 with a
        // high vaddr, 32..40 with an input tail of 3 pages.
        let zeros = [0, 1, 2, 3, 5, 9, 10, 11, 15, 33, 34, 39];
        let c = core(
            &[
                (0, 0, 16, 0),
                (4 * P, 0x3ff_e000_0000, 2, 0),
                (32 * P, 32 * P, 8, 3 * P),
            ],
            &zero_runs(&zeros),
        );
        let (plan, disk, stats) = write_filtered(&c, 8 * P, slots_for(0), 3);
        let loads = check(&c, &plan, &disk, &stats);
        // Pages 0 and 1 are lowcore: written although zero. The kernel
        // image PT_LOAD has its own file bytes: its copy of page 5 is a run
        // of its own.
        assert_eq!(stats.zeros_written, 0);
        assert_eq!(stats.elided, (zeros.len() as u64 - 2 + 1) * P);
        let segs: Vec<(u64, u64, u64)> = loads
            .iter()
            .map(|q| (q.p_paddr / P, q.p_filesz / P, q.p_memsz / P))
            .collect();
        // Copy order: HSA parts (kernel image, identity 0..8) by file offset,
        // then identity 8..16, then 32..40.
        assert_eq!(
            segs,
            [
                (0, 2, 4),  // lowcore written, 2-3 elided
                (4, 1, 2),  // 5 elided
                (6, 2, 2),  // 6-7, up to the HSA boundary
                (4, 1, 2),  // kernel image: 4 written, 5 elided
                (8, 1, 4),  // 8, then 9-11 elided
                (12, 3, 4), // 12-14, 15 elided
                (32, 1, 3), // 32, 33-34 elided
                (35, 4, 8), // 35-38, 39 elided + 3 pages of input tail
            ]
        );
        assert_eq!(stats.runs, 7);
        // One vectored write per chunk fed (10 chunks of up to 3 pages, each
        // keeping some page).
        assert_eq!(disk.vectored, 10);
        // Only the written pages take space.
        assert_eq!(stats.file_size, plan.data_start + stats.written);
        assert_eq!(stats.written, (16 + 2 + 8 - 11) * P);
    }

    #[test]
    fn a_short_runs_zero_pages_count_under_their_class() {
        use crate::filter::classify::mark_short_runs;
        use crate::filter::{CACHE, USER, class_index};
        // 16 pages at physical 0. Zero pages: 5, in a user run (4..7) too
        // short to leave out; 9 and 12, in a long cache run (8..14); 15,
        // of no class.
        let c = core(&[(0, 0, 16, 0)], &zero_runs(&[5, 9, 12, 15]));
        let mut classes = [0u8; 16];
        classes[4..7].fill(USER);
        classes[8..14].fill(CACHE);
        // As the page filter hands them on with a minimum run of 4.
        assert_eq!(mark_short_runs(&mut classes, 4), 3);
        let plan = FilteredPlan::new(&c.header, &c.phdrs, c.file.len() as u64, 0, 100).unwrap();
        let mut disk = Disk::new(plan.max_size() + P);
        let mut w = FilteredWriter::new(&plan);
        for step in plan.steps() {
            match step {
                FilteredStep::Part(i) => {
                    let f = plan.parts[i].file.clone();
                    w.begin_part(i);
                    w.feed_classified(
                        &c.file[f.start as usize..f.end as usize],
                        Some(&classes),
                        &mut disk,
                    )
                    .unwrap();
                    w.end_part(&mut disk).unwrap();
                }
                FilteredStep::Meta => {
                    let m = plan.meta_in.clone();
                    w.write_meta(
                        &c.file[m.start as usize..m.end as usize],
                        m.start,
                        &mut disk,
                    )
                    .unwrap();
                }
                FilteredStep::ReleaseHsa | FilteredStep::Header => {}
            }
        }
        let stats = w.finish(&mut disk).unwrap();
        let out = &disk.data[..stats.file_size as usize];
        let vm = Vmcore::read(&mut &out[..], stats.file_size).unwrap();
        assert_eq!(vm.loads().map(|p| p.p_filesz).sum::<u64>(), 8 * P);
        // Page 5 is left out, counted as the user page it is (as
        // makedumpfile counts it), not as a zero page; of its run only
        // pages 4 and 6 are written, and only they count as short pages
        // written.
        let mut want = [0u64; 5];
        want[0] = 1;
        want[class_index(USER)] = 1;
        want[class_index(CACHE)] = 6;
        assert_eq!(stats.excluded, want);
        assert_eq!(stats.short_written, 2);
        assert_eq!(stats.pages_written, 8);
        assert_eq!(stats.runs, 3);
    }

    #[test]
    fn full_table_writes_the_remaining_zeros() {
        // Every other page zero: many runs.
        let c = core(&[(0, 0, 64, 0), (128 * P, 128 * P, 32, 0)], &|page| {
            page % 2 == 1
        });
        let (_, _, all) = write_filtered(&c, 0, 1000, 4);
        assert_eq!(all.zeros_written, 0);
        assert_eq!(all.runs, 31 + 16);
        // Room for the note, the two parts and three more pieces.
        for slots in [3, 4, 5, 6, 7] {
            let (plan, disk, stats) = write_filtered(&c, 0, slots, 4);
            check(&c, &plan, &disk, &stats);
            assert!(stats.phnum <= slots);
            assert_eq!(
                stats.elided + stats.zeros_written,
                all.elided,
                "slots {slots}"
            );
            // At most one run per spare entry; the ration gives them out
            // along the input, so the last may come too late for a run.
            let spare = (slots - 3) as u64;
            assert!(
                stats.runs <= spare && stats.runs + 1 >= spare,
                "slots {slots}: {} runs",
                stats.runs
            );
            assert!(stats.zeros_written > 0);
        }
        // Not even one entry per part: no plan.
        let e = FilteredPlan::new(&c.header, &c.phdrs, c.file.len() as u64, 0, 2).unwrap_err();
        assert_eq!(
            e,
            FilteredPlanError::TooManySegments {
                needed: 3,
                slots: 2
            }
        );
    }

    #[test]
    fn ration_keeps_entries_for_long_runs_later() {
        // 512 pages: the first 256 fragmented (every other page zero: 128
        // one-page runs), then 255 zero pages in one run and a last used page.
        let zero = |page: u64| {
            if page < 256 {
                page % 2 == 1
            } else {
                page < 511
            }
        };
        let c = core(&[(0, 0, 512, 0)], &zero);
        // The note, the part and 40 spare entries: too few for every run.
        let (plan, disk, stats) = write_filtered(&c, 0, 42, 8);
        check(&c, &plan, &disk, &stats);
        // Without the ration the 40 entries would go to the first 80 pages
        // and the long run would be written: 255 + 88 zero pages. With it,
        // the long run is left out, and so are fragmented pages as the
        // ration allows.
        let long_run = 255 * P;
        assert!(stats.elided >= long_run, "{stats:?}");
        assert!(stats.runs <= 40, "{stats:?}");
        assert!(stats.zeros_written <= 126 * P, "{stats:?}");
        // Page 1 is lowcore: written, not counted as a zero page.
        assert_eq!(stats.elided + stats.zeros_written, (127 + 255) * P);
    }

    #[test]
    fn all_zero_and_no_zero_memory() {
        let c = core(&[(0, 0, 8, 0), (16 * P, 16 * P, 8, 0)], &|_| true);
        let (plan, disk, stats) = write_filtered(&c, 0, 100, 2);
        let loads = check(&c, &plan, &disk, &stats);
        // The lowcore pages are kept; a segment of zeros is one piece with
        // p_filesz 0.
        assert_eq!(loads[0].p_filesz, 2 * P);
        assert_eq!((loads[1].p_filesz, loads[1].p_memsz), (0, 8 * P));
        let c = core(&[(0, 0, 8, 0), (16 * P, 16 * P, 8, 0)], &|_| false);
        let (plan, disk, stats) = write_filtered(&c, 4 * P, 100, 2);
        check(&c, &plan, &disk, &stats);
        assert_eq!(stats.elided, 0);
        assert_eq!(stats.file_size, plan.max_size());
    }

    #[test]
    fn plan_layout_and_refusals() {
        let c = core(&[(0, 0, 4, 0)], &|_| false);
        let plan = FilteredPlan::new(&c.header, &c.phdrs, c.file.len() as u64, 0, 1024).unwrap();
        assert_eq!(plan.header_size, header_size(1024));
        assert_eq!(plan.header_size % P, 0);
        assert_eq!(plan.meta_in, 4096..8192);
        assert_eq!(plan.meta_out, plan.header_size);
        assert_eq!(plan.data_start, plan.header_size + P);
        assert_eq!(plan.fixed[0].p_offset, plan.header_size);
        assert_eq!(plan.max_size(), plan.data_start + 4 * P);
        assert_eq!(plan.input_bytes(), P + 4 * P);
        assert_eq!(
            plan.steps(),
            [
                FilteredStep::ReleaseHsa,
                FilteredStep::Meta,
                FilteredStep::Part(0),
                FilteredStep::Header
            ]
        );

        let size = c.file.len() as u64;
        let with = |f: &dyn Fn(&mut Vec<ProgramHeader>)| {
            let mut ph = c.phdrs.clone();
            f(&mut ph);
            FilteredPlan::new(&c.header, &ph, size, 0, 1024).unwrap_err()
        };
        assert_eq!(
            with(&|ph| ph[1].p_paddr = 100),
            FilteredPlanError::Unaligned { index: 1 }
        );
        assert_eq!(
            with(&|ph| ph[1].p_filesz -= 1),
            FilteredPlanError::Unaligned { index: 1 }
        );
        assert_eq!(
            with(&|ph| ph[1].p_filesz += P),
            FilteredPlanError::OutOfFile { index: 1 }
        );
        assert_eq!(
            with(&|ph| ph[1].p_offset = 0),
            FilteredPlanError::LoadInHeaders { index: 1 }
        );
        assert_eq!(
            with(&|ph| {
                let mut q = ph[1];
                q.p_paddr = 64 * P;
                q.p_offset += P;
                q.p_filesz = P;
                ph.push(q)
            }),
            FilteredPlanError::Overlap { a: 1, b: 2 }
        );
        assert_eq!(
            with(&|ph| ph[0].p_offset = 3 * P),
            FilteredPlanError::NotesOutside { index: 0 }
        );
        assert!(
            with(&|ph| ph[1].p_paddr = 100)
                .to_string()
                .contains("page-aligned")
        );
    }

    #[test]
    fn reserved_table_size() {
        assert_eq!(slots_for(0), 1096); // 1024 entries need 15 pages, which hold 1096
        assert_eq!(header_size(slots_for(0)), 15 * P);
        assert_eq!(slots_for(1 << 30), 16456);
        assert_eq!(slots_for(8 << 30), MAX_SLOTS);
        assert_eq!(slots_for(u64::MAX), MAX_SLOTS);
        assert_eq!(header_size(MAX_SLOTS), 896 * P);
        for m in [0u64, 1 << 20, 1 << 30, 3 << 30, 1 << 40] {
            let s = slots_for(m);
            assert!(header_size(s + 1) > header_size(s) || s == MAX_SLOTS);
        }
    }

    #[test]
    fn zero_check() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0; 4096]));
        for i in [0, 63, 64, 4000, 4095] {
            let mut b = [0u8; 4096];
            b[i] = 1;
            assert!(!is_zero(&b), "{i}");
        }
        assert!(!is_zero(&[0, 0, 1]));
    }

    #[test]
    fn property_random_layouts() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        for round in 0..400 {
            let nloads = 1 + rng.below(4);
            let mut loads = Vec::new();
            let mut pa = rng.below(3) * P;
            for _ in 0..nloads {
                let pages = rng.below(24);
                let extra = if rng.below(4) == 0 {
                    rng.below(3 * P)
                } else {
                    0
                };
                let vaddr = if rng.below(5) == 0 {
                    0x3ff_0000_0000 + pa
                } else {
                    pa
                };
                if pages == 0 && extra == 0 {
                    continue;
                }
                loads.push((pa, vaddr, pages, extra));
                pa += pages * P + round_up(extra, P) + rng.below(3) * P;
            }
            if loads.is_empty() {
                continue;
            }
            let density = rng.below(100);
            let seed = rng.next();
            let zero = move |page: u64| {
                (seed ^ page.wrapping_mul(0x9e37)).wrapping_mul(2654435761) % 100 < density
            };
            let c = core(&loads, &zero);
            let hsa = rng.below(40) * P / 2;
            let min = 1 + 2 * loads.len() as u32;
            let slots = min + rng.below(12) as u32;
            let chunk = 1 + rng.below(5);
            let (plan, disk, stats) = write_filtered(&c, hsa, slots, chunk);
            check(&c, &plan, &disk, &stats);
            let memory: u64 = loads.iter().map(|l| l.2 * P).sum();
            assert_eq!(stats.written + stats.elided, memory, "round {round}");
        }
    }
}
