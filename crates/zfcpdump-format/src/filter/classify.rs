//! A page's class from its struct page (makedumpfile's rules, first match
//! wins), and [`PageFilter`]: classes for the pages the copy streams, one
//! aligned window of pfns at a time, with free blocks carried over window
//! boundaries and short excluded runs marked [`SHORT_RUN`]: written after
//! all, unless they are zero pages.

use super::kernel_layout::PageLayout;
use super::memmap::MemMap;
use super::{CACHE, CACHE_PRIVATE, DumpLevel, FREE, PhysRead, USER};
use crate::bytes::{be_u32, be_u64};

/// What one struct page says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Written.
    Keep,
    /// Left out, class bit given.
    Exclude(u8),
    /// A free block: this page and the `pages - 1` after it.
    Block(u8, u64),
}

/// PAGE_MAPPING_ANON (a makedumpfile constant, not in VMCOREINFO).
const MAPPING_ANON: u64 = 1;

/// Classifies one struct page (`sp`, SIZE(page) bytes) at pfn `pfn` for
/// `level`. Tail pages of compound pages are kept: their head's order is not
/// in VMCOREINFO on 6.12, and keeping is always correct.
pub fn classify(page: &PageLayout, level: DumpLevel, pfn: u64, sp: &[u8]) -> Verdict {
    let flags = be_u64(sp, page.flags);
    // A poisoned or never-initialised struct page says nothing.
    if flags == u64::MAX || be_u64(sp, page.compound_head) & 1 != 0 {
        return Verdict::Keep;
    }
    let mapping = be_u64(sp, page.mapping);
    let page_type = be_u32(sp, page.mapcount);
    let flag = |bit: u32| flags & (1u64 << bit) != 0;
    let slab =
        page.pg_slab.is_some_and(flag) || page.slab_type.is_some_and(|t| t.matches(page_type));
    if slab {
        return Verdict::Keep;
    }
    if level.has(FREE) && page.buddy.matches(page_type) {
        let order = be_u64(sp, page.private);
        if order < page.max_order as u64 && pfn % (1 << order) == 0 {
            return Verdict::Block(FREE, 1 << order);
        }
        return Verdict::Keep;
    }
    let anon = mapping & MAPPING_ANON != 0;
    let cache = flag(page.pg_lru) || (flag(page.pg_swapcache) && flag(page.pg_swapbacked));
    if cache && !anon {
        let private = flag(page.pg_private);
        if !private && level.has(CACHE) {
            return Verdict::Exclude(CACHE);
        }
        if level.has(CACHE_PRIVATE) {
            return Verdict::Exclude(if private { CACHE_PRIVATE } else { CACHE });
        }
    }
    if level.has(USER) && anon {
        return Verdict::Exclude(USER);
    }
    Verdict::Keep
}

/// Pfns per window: its classes take one byte each.
pub const WINDOW_PAGES: u64 = 32 * 1024;
/// Struct pages read at once.
const BATCH_PAGES: u64 = 1024;

/// What a [`PageFilter`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterCounts {
    /// Pfns classified from their struct page.
    pub classified: u64,
    /// Pfns without a struct page the map knows (kept).
    pub unknown: u64,
    /// Pfns whose struct pages could not be read (kept).
    pub unreadable: u64,
    /// Excluded pages of runs too short to leave out for their class
    /// (marked [`SHORT_RUN`]). The writer writes them, except zero pages it
    /// leaves out anyway; it counts those it wrote.
    pub short_run_pages: u64,
    /// Windows classified.
    pub windows: u64,
}

/// Classes for the pages the copy streams: 0 to write, else the class bit,
/// with [`SHORT_RUN`] set on the pages of excluded runs too short to leave
/// out.
#[derive(Debug)]
pub struct PageFilter {
    page: PageLayout,
    level: DumpLevel,
    map: MemMap,
    min_run: usize,
    /// First pfn of the window held, or `u64::MAX`.
    first: u64,
    classes: Vec<u8>,
    structs: Vec<u8>,
    /// A free block that runs on past the window: its end and class.
    carry: Option<(u64, u8)>,
    counts: FilterCounts,
}

impl PageFilter {
    /// A filter for `level` over the struct pages of `map`; excluded runs
    /// shorter than `min_run` pages are marked [`SHORT_RUN`], to be written
    /// (a run costs a program header).
    pub fn new(page: PageLayout, level: DumpLevel, map: MemMap, min_run: usize) -> PageFilter {
        PageFilter {
            structs: vec![0; (BATCH_PAGES * page.size) as usize],
            page,
            level,
            map,
            min_run: min_run.max(1),
            first: u64::MAX,
            classes: vec![0; WINDOW_PAGES as usize],
            carry: None,
            counts: FilterCounts::default(),
        }
    }

    /// What was done so far.
    pub fn counts(&self) -> FilterCounts {
        self.counts
    }

    /// The struct page map.
    pub fn map(&self) -> &MemMap {
        &self.map
    }

    /// Fills `out` with the classes of the pfns from `first_pfn` on.
    pub fn fill(&mut self, mem: &mut dyn PhysRead, first_pfn: u64, out: &mut [u8]) {
        let mut done = 0usize;
        while done < out.len() {
            let pfn = first_pfn + done as u64;
            let w = pfn - pfn % WINDOW_PAGES;
            if w != self.first {
                self.load(mem, w);
            }
            let from = (pfn - w) as usize;
            let n = (WINDOW_PAGES as usize - from).min(out.len() - done);
            out[done..done + n].copy_from_slice(&self.classes[from..from + n]);
            done += n;
        }
    }

    fn load(&mut self, mem: &mut dyn PhysRead, first: u64) {
        let carry = if self.first != u64::MAX && self.first + WINDOW_PAGES == first {
            self.carry.take()
        } else {
            None
        };
        self.carry = None;
        self.first = first;
        self.counts.windows += 1;
        self.classes.fill(0);
        let window = first..first + WINDOW_PAGES;
        let mut known = 0u64;
        let mut block: Option<(u64, u8)> = carry;
        let pieces: Vec<_> = self.map.pieces(window.clone()).collect();
        for run in pieces {
            let mut pfn = run.first_pfn;
            while pfn < run.end_pfn {
                let n = BATCH_PAGES.min(run.end_pfn - pfn);
                let bytes = (n * self.page.size) as usize;
                let at = run.paddr + (pfn - run.first_pfn) * self.page.size;
                known += n;
                if mem.read_phys(at, &mut self.structs[..bytes]).is_err() {
                    self.counts.unreadable += n;
                    block = None;
                    pfn += n;
                    continue;
                }
                for k in 0..n {
                    let p = pfn + k;
                    let i = (p - first) as usize;
                    if let Some((end, class)) = block {
                        if p < end {
                            self.classes[i] = class;
                            continue;
                        }
                        block = None;
                    }
                    let size = self.page.size as usize;
                    let sp = &self.structs[k as usize * size..(k as usize + 1) * size];
                    match classify(&self.page, self.level, p, sp) {
                        Verdict::Keep => {}
                        Verdict::Exclude(c) => self.classes[i] = c,
                        Verdict::Block(c, pages) => {
                            self.classes[i] = c;
                            block = Some((p + pages, c));
                        }
                    }
                }
                pfn += n;
            }
        }
        self.counts.classified += known;
        self.counts.unknown += WINDOW_PAGES - known;
        // A block cut off by the window's end goes on in the next one.
        self.carry = block.filter(|&(end, _)| end > window.end);
        self.counts.short_run_pages += mark_short_runs(&mut self.classes, self.min_run);
    }
}

/// Set on a page's class (the class bit stays) when its excluded run is
/// too short to leave out: the page is written, unless it is a zero page
/// and zero pages are left out, which it then is, counted under its class
/// as makedumpfile counts it.
pub const SHORT_RUN: u8 = 0x80;

/// Whether a class from [`PageFilter::fill`] leaves its page out for its
/// class (zero pages aside).
pub fn leaves_out(class: u8) -> bool {
    class != 0 && class & SHORT_RUN == 0
}

/// Marks the excluded runs shorter than `min` pages that lie inside
/// `classes` with [`SHORT_RUN`] (runs at either edge may go on in the next
/// window: they stay). Returns the pages marked.
pub fn mark_short_runs(classes: &mut [u8], min: usize) -> u64 {
    let mut marked = 0;
    let mut i = 0;
    while i < classes.len() {
        if classes[i] == 0 {
            i += 1;
            continue;
        }
        let start = i;
        while i < classes.len() && classes[i] != 0 {
            i += 1;
        }
        if i - start < min && start > 0 && i < classes.len() {
            for c in &mut classes[start..i] {
                *c |= SHORT_RUN;
            }
            marked += (i - start) as u64;
        }
    }
    marked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_runs_are_marked_not_cleared() {
        const U: u8 = USER;
        const C: u8 = CACHE;
        let mut classes = [U, 0, C, C, 0, U, U, U, U, 0, C, U, 0, C];
        // Inside the window: 2..4 (2 pages), 10..12 (2 pages, mixed
        // classes) are short; 5..9 is not; the runs at the edges may go on
        // in the next window.
        assert_eq!(mark_short_runs(&mut classes, 4), 4);
        let s = SHORT_RUN;
        assert_eq!(
            classes,
            [U, 0, C | s, C | s, 0, U, U, U, U, 0, C | s, U | s, 0, C]
        );
        assert!(leaves_out(U) && leaves_out(C));
        assert!(!leaves_out(0) && !leaves_out(C | s));
        // A minimum of 1 marks nothing.
        let mut one = [0, U, 0];
        assert_eq!(mark_short_runs(&mut one, 1), 0);
        assert_eq!(one, [0, U, 0]);
    }
}
