//! Where each pfn's struct page lies: mem_section walked once (before the
//! HSA is released: the tables may lie in it) into a bounded table of
//! physically contiguous runs of struct pages.

use std::ops::Range;

use super::dat::Dat;
use super::kernel_layout::{KernelInfo, KernelMap};
use super::{FilterError, PhysRead, read, read_u64};
use crate::bytes::be_u64;

/// Most translation entries kept (24 bytes each): vmemmap mapped with 1 MiB
/// pages that never merge still covers 2 TiB of memory.
pub const MAX_EXTENTS: usize = 32 * 1024;
/// SECTION_HAS_MEM_MAP.
const HAS_MEM_MAP: u64 = 1 << 1;
/// SECTION_MAP_MASK: the flag bits below SECTION_MAP_LAST_BIT (at most 5
/// on s390x kernels so far; the encoded map is struct-page aligned).
const MAP_FLAGS: u64 = 0x1f;

/// A physically contiguous run of struct pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// The pfns whose struct pages it holds.
    pub first_pfn: u64,
    /// One past the last pfn.
    pub end_pfn: u64,
    /// Physical address of the struct page of `first_pfn`.
    pub paddr: u64,
}

/// The struct page locations of the pfns a dump holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemMap {
    /// SIZE(page).
    pub page_size: u64,
    /// Sorted by pfn, disjoint.
    pub runs: Vec<Run>,
}

impl MemMap {
    /// Walks mem_section for the pfns in `pfns` (sorted, disjoint) and
    /// translates their struct pages' vmemmap addresses through `dat`.
    /// Pfns without a section with a mem_map are left out (their pages are
    /// kept); a translation that fails for a pfn the dump holds is an error.
    pub fn build(
        mem: &mut dyn PhysRead,
        info: &KernelInfo,
        map: &KernelMap,
        dat: &Dat,
        pfns: &[Range<u64>],
        max_runs: usize,
    ) -> Result<MemMap, FilterError> {
        let s = &info.sections;
        let size = info.page.size;
        let roots_pa = map.direct(s.roots_vaddr).ok_or_else(|| {
            FilterError::Inconsistent(format!(
                "SYMBOL(mem_section)={:#x} is no identity-map address",
                s.roots_vaddr
            ))
        })?;
        // The page tables must agree with the identity map where both apply:
        // a cheap proof that the walk reads the crashed kernel's tables.
        let walked = dat.translate(mem, s.roots_vaddr)?.paddr;
        if walked != roots_pa {
            return Err(FilterError::Inconsistent(format!(
                "mem_section {:#x} maps to {walked:#x} in the page tables, {roots_pa:#x} in the \
                 identity map",
                s.roots_vaddr
            )));
        }
        let per_root = s.per_root();
        let pps = s.pages_per_section();
        let max_pfn = 1u64 << (s.max_physmem_bits - 12);
        let mut out = MemMap {
            page_size: size,
            runs: Vec::new(),
        };
        let mut sections = vec![0u8; crate::PAGE_SIZE as usize];
        for root in 0..s.roots {
            let first_pfn = root * per_root * pps;
            let end_pfn = (first_pfn + per_root * pps).min(max_pfn);
            if !overlaps(pfns, first_pfn..end_pfn) {
                continue;
            }
            let ptr = read_u64(mem, roots_pa + 8 * root)?;
            if ptr == 0 {
                continue;
            }
            let pa = map.direct(ptr).ok_or_else(|| {
                FilterError::Inconsistent(format!("mem_section root {root} at {ptr:#x}"))
            })?;
            read(mem, pa, &mut sections)?;
            for j in 0..per_root {
                let sec = first_pfn + j * pps..first_pfn + (j + 1) * pps;
                let smm = be_u64(&sections, (j * s.size) as usize + s.map_offset);
                if smm & HAS_MEM_MAP == 0 {
                    continue;
                }
                // The encoded map is `mem_map - section_start_pfn`: the
                // struct page of pfn p is at base + p * SIZE(page).
                let base = smm & !MAP_FLAGS;
                for want in pfns.iter().filter_map(|r| intersect(r, &sec)) {
                    out.add(mem, dat, base, want, max_runs)?;
                }
            }
        }
        Ok(out)
    }

    fn add(
        &mut self,
        mem: &mut dyn PhysRead,
        dat: &Dat,
        base: u64,
        pfns: Range<u64>,
        max_runs: usize,
    ) -> Result<(), FilterError> {
        let size = self.page_size;
        let mut pfn = pfns.start;
        while pfn < pfns.end {
            let va = base.wrapping_add(pfn * size);
            let m = dat.translate(mem, va)?;
            // Whole struct pages within this mapping unit.
            let n = (m.len / size).max(1).min(pfns.end - pfn);
            if m.len < size {
                // A struct page across two units: read it where each half
                // is would need two reads; such a kernel keeps the page.
                pfn += 1;
                continue;
            }
            match self.runs.last_mut() {
                Some(r) if r.end_pfn == pfn && r.paddr + (pfn - r.first_pfn) * size == m.paddr => {
                    r.end_pfn += n;
                }
                _ => {
                    if self.runs.len() >= max_runs {
                        return Err(FilterError::TooFragmented {
                            entries: self.runs.len(),
                        });
                    }
                    self.runs.push(Run {
                        first_pfn: pfn,
                        end_pfn: pfn + n,
                        paddr: m.paddr,
                    });
                }
            }
            pfn += n;
        }
        Ok(())
    }

    /// The runs that hold struct pages of `pfns`, cut to them.
    pub fn pieces(&self, pfns: Range<u64>) -> impl Iterator<Item = Run> + '_ {
        let size = self.page_size;
        let start = self.runs.partition_point(|r| r.end_pfn <= pfns.start);
        self.runs[start..]
            .iter()
            .take_while(move |r| r.first_pfn < pfns.end)
            .map(move |r| {
                let a = r.first_pfn.max(pfns.start);
                Run {
                    first_pfn: a,
                    end_pfn: r.end_pfn.min(pfns.end),
                    paddr: r.paddr + (a - r.first_pfn) * size,
                }
            })
    }

    /// Pfns with a known struct page.
    pub fn pfns(&self) -> u64 {
        self.runs.iter().map(|r| r.end_pfn - r.first_pfn).sum()
    }
}

fn intersect(a: &Range<u64>, b: &Range<u64>) -> Option<Range<u64>> {
    let r = a.start.max(b.start)..a.end.min(b.end);
    (r.start < r.end).then_some(r)
}

fn overlaps(set: &[Range<u64>], r: Range<u64>) -> bool {
    set.iter().any(|s| intersect(s, &r).is_some())
}
