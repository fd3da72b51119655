//! What the crashed kernel says about its memory: struct page and
//! mem_section from VMCOREINFO, the kernel image and identity map from
//! os_info (lowcore 0xe18) cross-checked with VMCOREINFO.

use super::{FilterError, PhysRead, read, read_u64};
use crate::bytes::be_u64;
use crate::elf::vmcoreinfo_lookup;

/// How a page type is recognised in `page_type` (`_mapcount`'s union).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageType {
    /// Up to 6.11: the whole word equals the value (a type is a cleared bit).
    Exact(u32),
    /// 6.12 and later: the type is the top byte (`PGTY_* << 24`).
    TopByte(u8),
}

impl PageType {
    /// From a `*_MAPCOUNT_VALUE` number: a value whose low 24 bits are zero
    /// is the 6.12 encoding (older values are `~bit` with bits set there).
    pub fn from_value(v: i64) -> PageType {
        let v = v as u32;
        if v & 0x00ff_ffff == 0 {
            PageType::TopByte((v >> 24) as u8)
        } else {
            PageType::Exact(v)
        }
    }

    /// Whether a `page_type` word has this type.
    pub fn matches(self, word: u32) -> bool {
        match self {
            PageType::Exact(v) => word == v,
            PageType::TopByte(t) => (word >> 24) as u8 == t,
        }
    }
}

/// struct page as VMCOREINFO describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageLayout {
    /// SIZE(page).
    pub size: u64,
    /// OFFSET(page.flags).
    pub flags: usize,
    /// OFFSET(page.mapping).
    pub mapping: usize,
    /// OFFSET(page.private): the order of a free block's head.
    pub private: usize,
    /// OFFSET(page._mapcount): the page_type word.
    pub mapcount: usize,
    /// OFFSET(page.compound_head): bit 0 marks a tail page.
    pub compound_head: usize,
    /// NUMBER(PG_lru).
    pub pg_lru: u32,
    /// NUMBER(PG_private).
    pub pg_private: u32,
    /// NUMBER(PG_swapcache).
    pub pg_swapcache: u32,
    /// NUMBER(PG_swapbacked).
    pub pg_swapbacked: u32,
    /// NUMBER(PG_slab), until 6.9.
    pub pg_slab: Option<u32>,
    /// PAGE_SLAB_MAPCOUNT_VALUE, from 6.10.
    pub slab_type: Option<PageType>,
    /// PAGE_BUDDY_MAPCOUNT_VALUE.
    pub buddy: PageType,
    /// LENGTH(zone.free_area): free blocks have a smaller order.
    pub max_order: u32,
}

/// mem_section (SPARSEMEM_EXTREME) as VMCOREINFO describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionLayout {
    /// SYMBOL(mem_section): the virtual address of the root array.
    pub roots_vaddr: u64,
    /// LENGTH(mem_section): entries of the root array.
    pub roots: u64,
    /// SIZE(mem_section).
    pub size: u64,
    /// OFFSET(mem_section.section_mem_map).
    pub map_offset: usize,
    /// NUMBER(SECTION_SIZE_BITS).
    pub section_size_bits: u32,
    /// NUMBER(MAX_PHYSMEM_BITS).
    pub max_physmem_bits: u32,
}

impl SectionLayout {
    /// Sections per root array entry (a page of mem_section structs).
    pub fn per_root(&self) -> u64 {
        crate::PAGE_SIZE / self.size
    }

    /// Pages per section.
    pub fn pages_per_section(&self) -> u64 {
        1 << (self.section_size_bits - 12)
    }
}

/// Everything the classifier takes from VMCOREINFO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelInfo {
    /// OSRELEASE.
    pub release: String,
    /// struct page.
    pub page: PageLayout,
    /// mem_section.
    pub sections: SectionLayout,
    /// SYMBOL(swapper_pg_dir), a kernel-image address.
    pub swapper_pg_dir: u64,
    /// KERNELOFFSET, IDENTITYBASE and KERNELOFFPHYS, where given (6.10+).
    pub kernel_offset: Option<u64>,
    /// IDENTITYBASE.
    pub identity_base: Option<u64>,
    /// KERNELOFFPHYS.
    pub kernel_off_phys: Option<u64>,
}

fn hex(text: &[u8], key: &'static str) -> Result<u64, FilterError> {
    let v = vmcoreinfo_lookup(text, key).ok_or(FilterError::Missing(key))?;
    let v = v.trim_start_matches("0x");
    u64::from_str_radix(v, 16).map_err(|_| FilterError::Missing(key))
}

fn opt_hex(text: &[u8], key: &'static str) -> Result<Option<u64>, FilterError> {
    match vmcoreinfo_lookup(text, key) {
        None => Ok(None),
        Some(_) => hex(text, key).map(Some),
    }
}

fn dec(text: &[u8], key: &'static str) -> Result<i64, FilterError> {
    vmcoreinfo_lookup(text, key)
        .ok_or(FilterError::Missing(key))?
        .parse()
        .map_err(|_| FilterError::Missing(key))
}

fn opt_dec(text: &[u8], key: &'static str) -> Result<Option<i64>, FilterError> {
    match vmcoreinfo_lookup(text, key) {
        None => Ok(None),
        Some(_) => dec(text, key).map(Some),
    }
}

fn offset(text: &[u8], key: &'static str, size: u64, width: u64) -> Result<usize, FilterError> {
    let v = dec(text, key)?;
    if v < 0 || v as u64 + width > size {
        return Err(FilterError::Inconsistent(format!(
            "{key}={v} does not fit a {size}-byte struct page"
        )));
    }
    Ok(v as usize)
}

fn bit(text: &[u8], key: &'static str) -> Result<u32, FilterError> {
    let v = dec(text, key)?;
    if !(0..64).contains(&v) {
        return Err(FilterError::Inconsistent(format!(
            "{key}={v} is no flag bit"
        )));
    }
    Ok(v as u32)
}

impl KernelInfo {
    /// Parses the entries the classifier needs from VMCOREINFO text.
    pub fn parse(text: &[u8]) -> Result<KernelInfo, FilterError> {
        let page_size = dec(text, "PAGESIZE")?;
        if page_size != 4096 {
            return Err(FilterError::Unsupported(format!("PAGESIZE={page_size}")));
        }
        let size = dec(text, "SIZE(page)")?;
        if !(32..=512).contains(&size) {
            return Err(FilterError::Inconsistent(format!("SIZE(page)={size}")));
        }
        let size = size as u64;
        let page = PageLayout {
            size,
            flags: offset(text, "OFFSET(page.flags)", size, 8)?,
            mapping: offset(text, "OFFSET(page.mapping)", size, 8)?,
            private: offset(text, "OFFSET(page.private)", size, 8)?,
            mapcount: offset(text, "OFFSET(page._mapcount)", size, 4)?,
            compound_head: offset(text, "OFFSET(page.compound_head)", size, 8)?,
            pg_lru: bit(text, "NUMBER(PG_lru)")?,
            pg_private: bit(text, "NUMBER(PG_private)")?,
            pg_swapcache: bit(text, "NUMBER(PG_swapcache)")?,
            pg_swapbacked: bit(text, "NUMBER(PG_swapbacked)")?,
            pg_slab: match vmcoreinfo_lookup(text, "NUMBER(PG_slab)") {
                Some(_) => Some(bit(text, "NUMBER(PG_slab)")?),
                None => None,
            },
            slab_type: opt_dec(text, "NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)")?.map(PageType::from_value),
            buddy: PageType::from_value(dec(text, "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)")?),
            max_order: {
                let n = dec(text, "LENGTH(zone.free_area)")?;
                if !(1..=20).contains(&n) {
                    return Err(FilterError::Inconsistent(format!(
                        "LENGTH(zone.free_area)={n}"
                    )));
                }
                n as u32
            },
        };
        if page.pg_slab.is_none() && page.slab_type.is_none() {
            return Err(FilterError::Missing(
                "NUMBER(PG_slab) or NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)",
            ));
        }
        let ms_size = dec(text, "SIZE(mem_section)")?;
        if !(8..=4096).contains(&ms_size) || 4096 % ms_size != 0 {
            return Err(FilterError::Inconsistent(format!(
                "SIZE(mem_section)={ms_size}"
            )));
        }
        let sections = SectionLayout {
            roots_vaddr: hex(text, "SYMBOL(mem_section)")?,
            roots: dec(text, "LENGTH(mem_section)")?.clamp(0, 1 << 20) as u64,
            size: ms_size as u64,
            map_offset: dec(text, "OFFSET(mem_section.section_mem_map)")?.clamp(0, ms_size - 8)
                as usize,
            section_size_bits: dec(text, "NUMBER(SECTION_SIZE_BITS)")?.clamp(12, 40) as u32,
            max_physmem_bits: dec(text, "NUMBER(MAX_PHYSMEM_BITS)")?.clamp(20, 64) as u32,
        };
        if vmcoreinfo_lookup(text, "LENGTH(mem_section)").is_none() {
            return Err(FilterError::Unsupported(
                "no SPARSEMEM_EXTREME mem_section".into(),
            ));
        }
        Ok(KernelInfo {
            release: vmcoreinfo_lookup(text, "OSRELEASE")
                .unwrap_or("?")
                .to_string(),
            page,
            sections,
            swapper_pg_dir: hex(text, "SYMBOL(swapper_pg_dir)")?,
            kernel_offset: opt_hex(text, "KERNELOFFSET")?,
            identity_base: opt_hex(text, "IDENTITYBASE")?,
            kernel_off_phys: opt_hex(text, "KERNELOFFPHYS")?,
        })
    }
}

/// Physical address of the os_info pointer in the absolute lowcore.
pub const LOWCORE_OS_INFO: u64 = 0xe18;
/// "OSINFOSZ".
pub const OS_INFO_MAGIC: u64 = 0x4f53_494e_464f_535a;
const OS_INFO_HEADER: usize = 32;
const OS_INFO_ENTRY: usize = 20;
const OS_INFO_IDENTITY_BASE: usize = 4;
const OS_INFO_KASLR_OFFSET: usize = 5;
const OS_INFO_KASLR_OFF_PHYS: usize = 6;
const OS_INFO_VMEMMAP: usize = 7;
const OS_INFO_IMAGE_START: usize = 10;
const OS_INFO_IMAGE_END: usize = 11;
const OS_INFO_IMAGE_PHYS: usize = 12;
const OS_INFO_ENTRIES: usize = 13;

/// Where the kernel's virtual addresses point, for everything but vmemmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelMap {
    /// The identity map: virtual `identity_base + p` is physical `p`.
    pub identity_base: u64,
    /// The kernel image: virtual start and end, physical start (V!=R).
    pub image: Option<(u64, u64, u64)>,
    /// Where vmemmap starts (V!=R): identity addresses lie below it.
    pub vmemmap: Option<u64>,
}

impl KernelMap {
    /// The map for V=R kernels (up to 6.9): identity at 0, image inside it.
    pub const V_EQUALS_R: KernelMap = KernelMap {
        identity_base: 0,
        image: None,
        vmemmap: None,
    };

    /// Reads os_info through lowcore 0xe18 and checks it against what
    /// VMCOREINFO says. A kernel without os_info entries for the layout
    /// (or without os_info) is V=R unless VMCOREINFO says otherwise.
    pub fn read(mem: &mut dyn PhysRead, info: &KernelInfo) -> Result<KernelMap, FilterError> {
        let ptr = read_u64(mem, LOWCORE_OS_INFO)?;
        let mut os = [0u8; OS_INFO_HEADER + OS_INFO_ENTRY * OS_INFO_ENTRIES];
        let entries = if ptr != 0 && ptr % crate::PAGE_SIZE == 0 {
            read(mem, ptr, &mut os)?;
            (be_u64(&os, 0) == OS_INFO_MAGIC).then_some(os)
        } else {
            None
        };
        let val = |os: &[u8], i: usize| be_u64(os, OS_INFO_HEADER + OS_INFO_ENTRY * i);
        let map = match entries {
            Some(os) if val(&os, OS_INFO_IMAGE_END) != 0 => KernelMap {
                identity_base: val(&os, OS_INFO_IDENTITY_BASE),
                image: Some((
                    val(&os, OS_INFO_IMAGE_START),
                    val(&os, OS_INFO_IMAGE_END),
                    val(&os, OS_INFO_IMAGE_PHYS),
                )),
                vmemmap: Some(val(&os, OS_INFO_VMEMMAP)),
            },
            _ => KernelMap::V_EQUALS_R,
        };
        // VMCOREINFO of V!=R kernels says the same; a disagreement means one
        // of them is not what the crashed kernel used.
        if let Some(base) = info.identity_base.filter(|&base| base != map.identity_base) {
            return Err(FilterError::Inconsistent(format!(
                "IDENTITYBASE={base:#x} but os_info says {:#x}",
                map.identity_base
            )));
        }
        let os_val = |i| entries.as_ref().map_or(0, |os| val(os, i));
        for (key, given, i) in [
            ("KERNELOFFSET", info.kernel_offset, OS_INFO_KASLR_OFFSET),
            (
                "KERNELOFFPHYS",
                info.kernel_off_phys,
                OS_INFO_KASLR_OFF_PHYS,
            ),
        ] {
            // os_info of V=R kernels has no such entry (0); VMCOREINFO then
            // says 0 too, or nothing.
            if let Some(v) = given.filter(|&v| v != os_val(i) && (map.image.is_some() || v != 0)) {
                return Err(FilterError::Inconsistent(format!(
                    "{key}={v:#x} but os_info says {:#x}",
                    os_val(i)
                )));
            }
        }
        Ok(map)
    }

    /// The physical address of a kernel-image or identity-map address, or
    /// `None` for anything else (vmemmap, vmalloc): those need the page
    /// tables.
    pub fn direct(&self, vaddr: u64) -> Option<u64> {
        if let Some((start, end, phys)) = self.image {
            if (start..end).contains(&vaddr) {
                // os_info is the crashed kernel's word: a physical start near
                // the top of the address space is refused, not added past it.
                return (vaddr - start).checked_add(phys);
            }
        }
        if vaddr < self.identity_base || self.vmemmap.is_some_and(|v| vaddr >= v) {
            return None;
        }
        Some(vaddr - self.identity_base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the vmcore fuzz target (in CI): an image whose physical
    /// start lies near 2^64 overflowed the addition and panicked.
    #[test]
    fn an_image_near_the_top_of_the_address_space_maps_to_nothing() {
        let map = KernelMap {
            identity_base: 0x4000_0000_0000,
            image: Some((0x3ff_ffa0_0000, 0x3ff_ffb0_0000, u64::MAX - 0x10)),
            vmemmap: Some(0x1_0000_0000_0000),
        };
        assert_eq!(map.direct(0x3ff_ffa0_0000 + 0x1000), None);
        assert_eq!(map.direct(0x3ff_ffa0_0000 + 0x8), Some(u64::MAX - 0x8));
        assert_eq!(map.direct(0x4000_0000_1000), Some(0x1000));
    }
}
