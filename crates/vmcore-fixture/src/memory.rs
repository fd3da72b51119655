//! The synthetic content of physical memory.
//!
//! Every byte is a pure function of (seed, physical address), so any range can
//! be recomputed later without keeping the generated file: a test can compare
//! an extracted or elided dump against [`crate::expected_memory`] directly.

use crate::{PAGE_SIZE, Spec};

/// One step of SplitMix64's output function: a fast, well-mixing bijection on
/// u64. Used both as the stream generator and to hash (seed, index) pairs.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// A tiny sequential generator (SplitMix64) for register values in the notes.
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix64(self.0)
    }
}

/// What a 4096-byte physical page holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    /// All bytes zero (what a zero-page-eliding dumper may skip).
    Zero,
    /// All zero except the last 8 bytes, which are non-zero: a trap for an
    /// elider that only samples the start of a page.
    NearlyZero,
    /// Pseudo-random bytes throughout.
    Random,
}

/// Precomputed parameters of the memory model for one [`Spec`].
#[derive(Clone, Debug)]
pub(crate) struct MemoryModel {
    word_key: u64,
    run_key: u64,
    /// Zero fraction as a 32-bit binary fraction, so page placement is exact
    /// integer arithmetic and identical on every platform.
    zero_fp32: u64,
    block_pages: u64,
    /// Page numbers that must never be zero or sparse: lowcore (pages 0 and 1)
    /// and every CPU's prefix area. Sorted for binary search.
    protected: Vec<u64>,
}

impl MemoryModel {
    pub(crate) fn new(spec: &Spec) -> Self {
        let zero_fp32 = (spec.zero_fraction.clamp(0.0, 1.0) * (1u64 << 32) as f64).round() as u64;
        let mut protected = vec![0, 1];
        for prefix in crate::notes::prefixes(spec) {
            let page = u64::from(prefix) / PAGE_SIZE;
            protected.extend([page, page + 1]);
        }
        protected.sort_unstable();
        protected.dedup();
        MemoryModel {
            word_key: mix64(spec.seed ^ 0x6d65_6d6f_7279_0001),
            run_key: mix64(spec.seed ^ 0x7a65_726f_7275_6e02),
            zero_fp32,
            block_pages: u64::from(spec.zero_run_block_pages.max(1)),
            protected,
        }
    }

    /// Zero pages come in one contiguous run per block of `block_pages`
    /// pages. The run length of block `b` is the difference of two floors, so
    /// the fraction over any number of whole blocks is exact, and its start is
    /// a hash of the block number, so runs land at varying offsets.
    fn zero_run(&self, block: u64) -> (u64, u64) {
        let g = u128::from(self.block_pages);
        let z = u128::from(self.zero_fp32);
        let b = u128::from(block);
        let count = (((b + 1) * g * z) >> 32) - ((b * g * z) >> 32);
        let count = count as u64;
        let slack = self.block_pages - count + 1;
        let start = mix64(self.run_key ^ block.wrapping_mul(GOLDEN)) % slack;
        (start, count)
    }

    pub(crate) fn page_kind(&self, page: u64) -> PageKind {
        if self.protected.binary_search(&page).is_ok() {
            return PageKind::Random;
        }
        let (start, count) = self.zero_run(page / self.block_pages);
        let within = page % self.block_pages;
        if within >= start && within < start + count {
            PageKind::Zero
        } else if count > 0 && within == start + count {
            PageKind::NearlyZero
        } else {
            PageKind::Random
        }
    }

    /// The big-endian 8-byte word at the 8-aligned physical address `addr`
    /// of a random page. Never zero, so a random page can't be all zero.
    #[inline]
    fn word(&self, addr: u64) -> u64 {
        let w = mix64(self.word_key.wrapping_add((addr >> 3).wrapping_mul(GOLDEN)));
        if w == 0 { 1 } else { w }
    }

    /// Fills `buf` with the content of physical memory at `paddr..`.
    pub(crate) fn fill(&self, paddr: u64, buf: &mut [u8]) {
        let mut addr = paddr;
        let mut rest = buf;
        while !rest.is_empty() {
            let page = addr / PAGE_SIZE;
            let page_end = (page + 1) * PAGE_SIZE;
            let n = ((page_end - addr) as usize).min(rest.len());
            let (chunk, tail) = rest.split_at_mut(n);
            match self.page_kind(page) {
                PageKind::Zero => chunk.fill(0),
                PageKind::Random => self.fill_words(addr, chunk),
                PageKind::NearlyZero => {
                    chunk.fill(0);
                    let last = page_end - 8;
                    if addr + n as u64 > last {
                        // Only the part of the chunk that overlaps the last word.
                        let skip = last.saturating_sub(addr) as usize;
                        let from = addr.max(last);
                        self.fill_words(from, &mut chunk[skip..]);
                    }
                }
            }
            addr += n as u64;
            rest = tail;
        }
    }

    fn fill_words(&self, addr: u64, buf: &mut [u8]) {
        let lead = ((8 - (addr % 8)) % 8) as usize;
        let lead = lead.min(buf.len());
        if lead > 0 {
            let bytes = self.word(addr & !7).to_be_bytes();
            let at = (addr % 8) as usize;
            buf[..lead].copy_from_slice(&bytes[at..at + lead]);
        }
        let mut a = addr + lead as u64;
        let body = &mut buf[lead..];
        let mut chunks = body.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.word(a).to_be_bytes());
            a += 8;
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let bytes = self.word(a).to_be_bytes();
            let n = tail.len();
            tail.copy_from_slice(&bytes[..n]);
        }
    }
}
