//! The s390x page-table walk (z/Architecture DAT) for the kernel's address
//! space, from swapper_pg_dir: region tables, segment table, page table,
//! with 2 GiB (region-third) and 1 MiB (segment) large pages.

use super::{FilterError, PhysRead, read, read_u64};

const REGION_INVALID: u64 = 0x20;
const TYPE_MASK: u64 = 0x0c;
const LARGE: u64 = 0x400;
const PAGE_INVALID: u64 = 0x400;
const TABLE_ENTRIES: u64 = 2048;

/// The kernel's top-level translation table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dat {
    /// Physical address of the top table.
    pub top: u64,
    /// Its type: 3 region-first, 2 region-second, 1 region-third,
    /// 0 segment table.
    pub level: u8,
}

/// A translated address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Physical address.
    pub paddr: u64,
    /// Bytes from it to the end of the page, large page or frame that maps
    /// it (the same mapping holds that far).
    pub len: u64,
}

fn fail(vaddr: u64, why: impl Into<String>) -> FilterError {
    FilterError::Translation {
        vaddr,
        why: why.into(),
    }
}

impl Dat {
    /// The table at physical `top`: its type is what its valid entries say
    /// (every valid region or segment entry carries its table's type).
    pub fn new(mem: &mut dyn PhysRead, top: u64) -> Result<Dat, FilterError> {
        let mut table = vec![0u8; (TABLE_ENTRIES * 8) as usize];
        read(mem, top, &mut table)?;
        let mut level = None;
        for e in table.chunks_exact(8) {
            let e = u64::from_be_bytes(e.try_into().expect("8 bytes"));
            if e & REGION_INVALID != 0 || e == 0 {
                continue;
            }
            let t = ((e & TYPE_MASK) >> 2) as u8;
            match level {
                None => level = Some(t),
                Some(l) if l != t => {
                    return Err(FilterError::Inconsistent(format!(
                        "swapper_pg_dir at {top:#x} mixes table types {l} and {t}"
                    )));
                }
                Some(_) => {}
            }
        }
        let level = level.ok_or_else(|| {
            FilterError::Inconsistent(format!("swapper_pg_dir at {top:#x} has no valid entry"))
        })?;
        Ok(Dat { top, level })
    }

    /// Translates `vaddr`.
    pub fn translate(&self, mem: &mut dyn PhysRead, vaddr: u64) -> Result<Mapping, FilterError> {
        let mut table = self.top;
        let mut level = self.level;
        // Bits above what the top table covers must be zero.
        let covered = 20 + 11 * level as u32 + 11;
        if covered < 64 && vaddr >> covered != 0 {
            return Err(fail(
                vaddr,
                format!("above the {covered}-bit address space"),
            ));
        }
        while level > 0 {
            let shift = 20 + 11 * level as u32;
            let index = (vaddr >> shift) & (TABLE_ENTRIES - 1);
            let e = read_u64(mem, table + index * 8)?;
            if e & REGION_INVALID != 0 {
                return Err(fail(vaddr, format!("invalid region-{} entry", 4 - level)));
            }
            if ((e & TYPE_MASK) >> 2) as u8 != level {
                return Err(fail(
                    vaddr,
                    format!("region entry {e:#x} of the wrong type"),
                ));
            }
            if level == 1 && e & LARGE != 0 {
                let off = vaddr & ((1 << 31) - 1);
                return Ok(Mapping {
                    paddr: (e & !((1u64 << 31) - 1)) + off,
                    len: (1 << 31) - off,
                });
            }
            table = e & !0xfff;
            level -= 1;
        }
        let index = (vaddr >> 20) & (TABLE_ENTRIES - 1);
        let e = read_u64(mem, table + index * 8)?;
        if e & REGION_INVALID != 0 {
            return Err(fail(vaddr, "invalid segment entry"));
        }
        if e & TYPE_MASK != 0 {
            return Err(fail(
                vaddr,
                format!("segment entry {e:#x} of the wrong type"),
            ));
        }
        if e & LARGE != 0 {
            let off = vaddr & ((1 << 20) - 1);
            return Ok(Mapping {
                paddr: (e & !((1u64 << 20) - 1)) + off,
                len: (1 << 20) - off,
            });
        }
        let pt = e & !0x7ff;
        let pte = read_u64(mem, pt + ((vaddr >> 12) & 0xff) * 8)?;
        if pte & PAGE_INVALID != 0 {
            return Err(fail(vaddr, "invalid page-table entry"));
        }
        let off = vaddr & 0xfff;
        Ok(Mapping {
            paddr: (pte & !0xfff) + off,
            len: 0x1000 - off,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::io;

    /// Sparse physical memory: 8-byte entries by address.
    #[derive(Default)]
    struct Mem(BTreeMap<u64, u64>);

    impl PhysRead for Mem {
        fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> io::Result<()> {
            for (i, c) in buf.chunks_mut(8).enumerate() {
                let v = self.0.get(&(paddr + 8 * i as u64)).copied().unwrap_or(0);
                c.copy_from_slice(&v.to_be_bytes()[..c.len()]);
            }
            Ok(())
        }
    }

    // Kernel-style tables: a region-second top with invalid entries
    // (0x20 | type) except the ones set.
    fn tables() -> Mem {
        let mut m = Mem::default();
        let (r2, r3, sgt, pt) = (0x10_0000u64, 0x20_0000u64, 0x30_0000u64, 0x40_0000u64);
        for i in 0..2048 {
            m.0.insert(r2 + 8 * i, 0x20 | 0x08);
        }
        // vaddr 0x372_0000_0000: R2 index 0x372_0000_0000 >> 42 = 0, R3
        // index (>> 31) & 0x7ff = 0x6e4.
        m.0.insert(r2, r3 | 0x08);
        m.0.insert(r3 + 0x6e4 * 8, sgt | 0x04);
        // a 2 GiB page at R3 index 1
        m.0.insert(r3 + 8, 0x8000_0000 | 0x04 | LARGE);
        // segment 0: 1 MiB large at 0x1d80_0000; segment 1: page table
        for i in 0..2048 {
            m.0.insert(sgt + 8 * i, 0x20);
        }
        for i in 0..256 {
            m.0.insert(pt + 8 * i, PAGE_INVALID);
        }
        m.0.insert(sgt, 0x1d80_0000 | LARGE);
        m.0.insert(sgt + 8, pt);
        m.0.insert(pt + 3 * 8, 0x1234_5000);
        m.0.insert(pt + 4 * 8, 0x1234_6000 | PAGE_INVALID);
        m
    }

    #[test]
    fn walks_the_levels_and_large_pages() {
        let mut m = tables();
        let dat = Dat::new(&mut m, 0x10_0000).unwrap();
        assert_eq!(dat.level, 2);
        let v = 0x372_0000_0000u64;
        let t = dat.translate(&mut m, v + 0x1_2345).unwrap();
        assert_eq!(t.paddr, 0x1d81_2345);
        assert_eq!(t.len, 0x10_0000 - 0x1_2345);
        let t = dat.translate(&mut m, v + 0x10_3008).unwrap();
        assert_eq!((t.paddr, t.len), (0x1234_5008, 0xff8));
        let t = dat.translate(&mut m, 0x8000_0000 + 0x10).unwrap();
        assert_eq!((t.paddr, t.len), (0x8000_0010, 0x8000_0000 - 0x10));
    }

    #[test]
    fn invalid_entries_and_wrong_types_fail() {
        let mut m = tables();
        let dat = Dat::new(&mut m, 0x10_0000).unwrap();
        let v = 0x372_0000_0000u64;
        for bad in [v + 0x10_4000, v + 0x20_0000, 0x1_0000_0000_0000, 1 << 60] {
            assert!(
                matches!(
                    dat.translate(&mut m, bad),
                    Err(FilterError::Translation { .. })
                ),
                "{bad:#x}"
            );
        }
        // A segment entry where a region-third entry belongs.
        m.0.insert(0x20_0000 + 0x6e4 * 8, 0x30_0000);
        assert!(dat.translate(&mut m, v).is_err());
        // A table with no valid entry has no type.
        assert!(Dat::new(&mut m, 0x50_0000).is_err());
    }
}
