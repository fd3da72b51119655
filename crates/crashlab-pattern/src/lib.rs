//! The crash lab's memory pattern: pages that describe themselves.
//!
//! The production guest of `cargo xtask crashlab` writes `count` pattern
//! pages into a ramfs file before it crashes; each file page is one page
//! frame of the crashed kernel's memory. The host then scans the dump for
//! them. A page names its seed, index and count and ends with a checksum,
//! so a page found in the dump is recognised without knowing where it was,
//! and its whole content is checked against the one it must have.
//!
//! Layout (big-endian fields):
//!
//! | bytes | field |
//! |---|---|
//! | 0..16 | [`MAGIC`] |
//! | 16..24 | seed |
//! | 24..32 | index (0..count) |
//! | 32..40 | count |
//! | 40..4088 | filler: a splitmix64 stream of seed and index |
//! | 4088..4096 | FNV-1a 64 of bytes 0..4088 |

#![forbid(unsafe_code)]

pub const PAGE_SIZE: usize = 4096;
pub const MAGIC: &[u8; 16] = b"ZFCPDUMP-PATTERN";
const FILLER: std::ops::Range<usize> = 40..PAGE_SIZE - 8;

/// The page `index` of `count` for `seed`.
pub fn page(seed: u64, index: u64, count: u64) -> [u8; PAGE_SIZE] {
    let mut p = [0u8; PAGE_SIZE];
    p[..16].copy_from_slice(MAGIC);
    p[16..24].copy_from_slice(&seed.to_be_bytes());
    p[24..32].copy_from_slice(&index.to_be_bytes());
    p[32..40].copy_from_slice(&count.to_be_bytes());
    let mut state = seed ^ index.wrapping_mul(0xa076_1d64_78bd_642f);
    for chunk in p[FILLER].chunks_exact_mut(8) {
        chunk.copy_from_slice(&splitmix64(&mut state).to_be_bytes());
    }
    let sum = fnv1a(&p[..PAGE_SIZE - 8]);
    p[PAGE_SIZE - 8..].copy_from_slice(&sum.to_be_bytes());
    p
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b.try_into().expect("8 bytes"))
}

/// What a page that starts with [`MAGIC`] says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub seed: u64,
    pub index: u64,
    pub count: u64,
}

/// A page's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not a pattern page (no magic).
    Other,
    /// A pattern page, byte for byte what its header says it must be.
    Intact(Header),
    /// Starts with the magic, but the rest is not the page its header names
    /// (a torn or corrupted page, or a header that lies).
    Damaged(Header),
}

/// Classifies one page of memory (`PAGE_SIZE` bytes).
pub fn check(p: &[u8]) -> Verdict {
    if p.len() != PAGE_SIZE || &p[..16] != MAGIC {
        return Verdict::Other;
    }
    let h = Header {
        seed: be64(&p[16..24]),
        index: be64(&p[24..32]),
        count: be64(&p[32..40]),
    };
    if h.index < h.count && p == page(h.seed, h.index, h.count) {
        Verdict::Intact(h)
    } else {
        Verdict::Damaged(h)
    }
}

/// A tally of the pattern pages of one seed found in a memory image.
#[derive(Debug, Clone)]
pub struct Census {
    pub seed: u64,
    pub count: u64,
    /// How often each index was found intact.
    found: Vec<u32>,
    /// Pages with this seed's header that are not intact (address, index).
    pub damaged: Vec<(u64, u64)>,
    /// Intact pages of another seed or count (left over from another run).
    pub foreign: u64,
}

impl Census {
    pub fn new(seed: u64, count: u64) -> Census {
        Census {
            seed,
            count,
            found: vec![0; count as usize],
            damaged: Vec::new(),
            foreign: 0,
        }
    }

    /// Looks at the page at physical address `addr`.
    pub fn page(&mut self, addr: u64, p: &[u8]) {
        match check(p) {
            Verdict::Other => {}
            Verdict::Intact(h) if h.seed == self.seed && h.count == self.count => {
                self.found[h.index as usize] += 1
            }
            Verdict::Intact(_) => self.foreign += 1,
            Verdict::Damaged(h) if h.seed == self.seed => self.damaged.push((addr, h.index)),
            Verdict::Damaged(_) => self.foreign += 1,
        }
    }

    /// Indices found intact at least once.
    pub fn intact(&self) -> u64 {
        self.found.iter().filter(|&&n| n > 0).count() as u64
    }

    /// Intact copies beyond the first of an index (e.g. a buffer that still
    /// held the last page written).
    pub fn duplicates(&self) -> u64 {
        self.found.iter().map(|&n| n.saturating_sub(1) as u64).sum()
    }

    /// The first indices never found intact, at most `n`.
    pub fn missing(&self, n: usize) -> Vec<u64> {
        (0..self.count)
            .filter(|&i| self.found[i as usize] == 0)
            .take(n)
            .collect()
    }

    /// Every page found intact, and no damaged one but stale copies of the
    /// last page written (see [`Census::is_stale`]).
    pub fn complete(&self) -> bool {
        self.intact() == self.count && self.damaged.iter().all(|&(_, i)| self.is_stale(i))
    }

    /// Whether a damaged page of index `i` is a stale copy: a buffer of the
    /// crashed kernel that held the last page written (as the duplicates
    /// show) and was partly reused since, while the page itself is intact
    /// elsewhere. Seen once in CI: page 1023 of 1024 intact, and a copy in
    /// kernel memory whose last 1,384 bytes held other data.
    pub fn is_stale(&self, i: u64) -> bool {
        i + 1 == self.count && self.found.get(i as usize).is_some_and(|&n| n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_check_and_differ() {
        let a = page(7, 0, 4);
        let b = page(7, 1, 4);
        assert_ne!(a[40..], b[40..]);
        assert_eq!(
            check(&a),
            Verdict::Intact(Header {
                seed: 7,
                index: 0,
                count: 4
            })
        );
        assert_eq!(check(&[0u8; PAGE_SIZE]), Verdict::Other);
        assert_eq!(check(&a[..100]), Verdict::Other);
    }

    #[test]
    fn one_flipped_byte_is_damage() {
        for at in [20, 100, 4000, PAGE_SIZE - 1] {
            let mut p = page(7, 2, 4);
            p[at] ^= 1;
            assert!(matches!(check(&p), Verdict::Damaged(_)), "byte {at}");
        }
        // A header whose index is out of range is damage, not a page.
        let mut p = page(7, 2, 4);
        p[32..40].copy_from_slice(&2u64.to_be_bytes());
        assert!(matches!(check(&p), Verdict::Damaged(_)));
    }

    #[test]
    fn census_counts_found_missing_damaged_and_foreign() {
        let mut c = Census::new(9, 3);
        c.page(0, &page(9, 0, 3));
        c.page(4096, &page(9, 0, 3));
        c.page(8192, &page(9, 2, 3));
        c.page(12288, &page(8, 1, 3));
        let mut bad = page(9, 1, 3);
        bad[500] ^= 0xff;
        c.page(16384, &bad);
        assert_eq!(c.intact(), 2);
        assert_eq!(c.duplicates(), 1);
        assert_eq!(c.missing(10), vec![1]);
        assert_eq!(c.damaged, vec![(16384, 1)]);
        assert_eq!(c.foreign, 1);
        assert!(!c.complete());
        c.page(20480, &page(9, 1, 3));
        assert_eq!(c.intact(), 3);
        assert!(!c.complete(), "a damaged page fails the census");
    }

    #[test]
    fn a_partly_reused_copy_of_the_last_page_is_stale_not_damage() {
        let mut c = Census::new(9, 3);
        for i in 0..3 {
            c.page(i * 4096, &page(9, i, 3));
        }
        let mut stale = page(9, 2, 3);
        stale[2712..].fill(0x5c);
        c.page(65536, &stale);
        assert_eq!(c.damaged, vec![(65536, 2)]);
        assert!(c.complete(), "{c:?}");
        // Any other index damaged still fails, intact copy or not.
        let mut bad = page(9, 1, 3);
        bad[2712..].fill(0x5c);
        c.page(69632, &bad);
        assert!(!c.complete());
        // And the last page damaged with no intact copy fails.
        let mut c = Census::new(9, 3);
        c.page(0, &page(9, 0, 3));
        c.page(4096, &page(9, 1, 3));
        c.page(8192, &stale);
        assert!(!c.complete());
    }
}
