//! Dump-time page filtering: makedumpfile's dump levels, decided from the
//! crashed kernel's own struct pages while the agent streams the vmcore.
//!
//! - [`kernel_layout`]: what VMCOREINFO and os_info say about the kernel (struct
//!   page offsets and flag numbers, mem_section, where the kernel image and
//!   the identity map lie), checked for consistency.
//! - [`dat`]: the s390x page-table walk that translates vmemmap addresses.
//! - [`memmap`]: mem_section walked once into a bounded table of where each
//!   pfn's struct page lies in physical memory.
//! - [`classify`]: a page's class from its struct page, and windows of
//!   classes with free blocks carried across chunk boundaries.
//! - [`note`]: what a filtered dump records about itself (an ELF note).
//!
//! Leaving a page in is always correct; every doubt keeps pages in.

pub mod classify;
pub mod dat;
pub mod kernel_layout;
pub mod memmap;
pub mod note;

use std::fmt;
use std::io;
use std::ops::Range;

use crate::PAGE_SIZE;
use crate::elf::{ProgramHeader, ReadAt, Vmcore};

/// makedumpfile's `-d` bit for pages that hold only zeros.
pub const ZERO: u8 = 1;
/// Page-cache pages without private data.
pub const CACHE: u8 = 2;
/// Page-cache pages with private data (with [`CACHE`]: all cache pages).
pub const CACHE_PRIVATE: u8 = 4;
/// Anonymous user pages.
pub const USER: u8 = 8;
/// Free pages (in the buddy allocator).
pub const FREE: u8 = 16;
/// Every class.
pub const ALL: u8 = 31;

/// The classes in bit order, with their names for reports.
pub const CLASSES: [(u8, &str); 5] = [
    (ZERO, "zero"),
    (CACHE, "cache"),
    (CACHE_PRIVATE, "cache_private"),
    (USER, "user"),
    (FREE, "free"),
];

/// Index of a class bit in [`CLASSES`] (and in per-class counters).
pub fn class_index(bit: u8) -> usize {
    bit.trailing_zeros() as usize
}

/// A dump level: a combination of the class bits, 0 (byte-exact) to 31.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DumpLevel(u8);

impl DumpLevel {
    /// Byte-exact: nothing left out.
    pub const EXACT: DumpLevel = DumpLevel(0);

    /// The level `n`, if it is one (0..=31).
    pub fn new(n: u32) -> Option<DumpLevel> {
        (n <= ALL as u32).then_some(DumpLevel(n as u8))
    }

    /// The bits.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether pages of class `bit` are left out.
    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    /// Whether the level needs the kernel's struct pages (anything but zero
    /// pages).
    pub fn needs_struct_pages(self) -> bool {
        self.0 & !ZERO != 0
    }

    /// The same level without the classes that need struct pages: what is
    /// left when the kernel cannot be read.
    pub fn zero_only(self) -> DumpLevel {
        DumpLevel(self.0 & ZERO)
    }
}

impl fmt::Display for DumpLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Reads of the crashed system's physical memory.
pub trait PhysRead {
    /// Fills `buf` with the memory at physical address `paddr`.
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// Why the kernel's memory cannot be classified: the agent then keeps every
/// page that needs struct pages to be left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// The dump has no VMCOREINFO note.
    NoVmcoreinfo,
    /// A VMCOREINFO entry the classifier needs is missing or unreadable.
    Missing(&'static str),
    /// The kernel is built in a way the classifier does not know.
    Unsupported(String),
    /// What the dump says about itself does not fit together.
    Inconsistent(String),
    /// A virtual address did not translate.
    Translation {
        /// The address.
        vaddr: u64,
        /// Why.
        why: String,
    },
    /// The table of struct page locations would exceed its memory bound.
    TooFragmented {
        /// Entries needed so far.
        entries: usize,
    },
    /// Reading physical memory failed.
    Read {
        /// Physical address.
        paddr: u64,
        /// The error.
        error: String,
    },
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterError::NoVmcoreinfo => write!(f, "the dump has no VMCOREINFO note"),
            FilterError::Missing(k) => write!(f, "VMCOREINFO lacks {k}"),
            FilterError::Unsupported(s) => write!(f, "unsupported kernel layout: {s}"),
            FilterError::Inconsistent(s) => write!(f, "inconsistent kernel data: {s}"),
            FilterError::Translation { vaddr, why } => {
                write!(f, "virtual address {vaddr:#x} does not translate: {why}")
            }
            FilterError::TooFragmented { entries } => write!(
                f,
                "the struct page map needs more than {entries} translation entries (vmemmap \
                 mapped in small pieces)"
            ),
            FilterError::Read { paddr, error } => {
                write!(f, "reading physical memory at {paddr:#x}: {error}")
            }
        }
    }
}

impl std::error::Error for FilterError {}

pub(crate) fn read_u64(mem: &mut dyn PhysRead, paddr: u64) -> Result<u64, FilterError> {
    let mut b = [0u8; 8];
    read(mem, paddr, &mut b)?;
    Ok(u64::from_be_bytes(b))
}

pub(crate) fn read(mem: &mut dyn PhysRead, paddr: u64, buf: &mut [u8]) -> Result<(), FilterError> {
    mem.read_phys(paddr, buf).map_err(|e| FilterError::Read {
        paddr,
        error: e.to_string(),
    })
}

/// Physical reads from a vmcore through its PT_LOADs (their tails read as
/// zeros; an address in no PT_LOAD is an error).
pub struct VmcorePhys<'a, R: ReadAt + ?Sized> {
    loads: Vec<ProgramHeader>,
    src: &'a mut R,
}

impl<'a, R: ReadAt + ?Sized> VmcorePhys<'a, R> {
    /// Reads of `vm`'s memory from `src`.
    pub fn new(vm: &Vmcore, src: &'a mut R) -> Self {
        let mut loads: Vec<ProgramHeader> = vm.loads().copied().collect();
        loads.sort_by_key(|p| p.p_paddr);
        VmcorePhys { loads, src }
    }
}

impl<R: ReadAt + ?Sized> PhysRead for VmcorePhys<'_, R> {
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let pa = paddr + done as u64;
            let p = self
                .loads
                .iter()
                .find(|p| pa >= p.p_paddr && pa - p.p_paddr < p.p_memsz)
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("physical {pa:#x} is in no PT_LOAD"),
                    )
                })?;
            let within = pa - p.p_paddr;
            let n = ((p.p_memsz - within) as usize).min(buf.len() - done);
            let file = p.p_filesz.saturating_sub(within).min(n as u64) as usize;
            if file > 0 {
                self.src
                    .read_exact_at(&mut buf[done..done + file], p.p_offset + within)?;
            }
            buf[done + file..done + n].fill(0);
            done += n;
        }
        Ok(())
    }
}

/// The pfn ranges a vmcore's PT_LOADs hold, sorted and merged.
pub fn dump_pfns(vm: &Vmcore) -> Vec<Range<u64>> {
    vm.physical_ranges()
        .into_iter()
        .map(|r| r.start / PAGE_SIZE..r.end.div_ceil(PAGE_SIZE))
        .collect()
}

/// Everything a [`classify::PageFilter`] needs, read from the dump: what
/// VMCOREINFO says, os_info, the page tables and mem_section. On the real
/// machine this runs before the HSA is released.
pub fn prepare(
    vm: &Vmcore,
    mem: &mut dyn PhysRead,
    level: DumpLevel,
    min_run: usize,
) -> Result<classify::PageFilter, FilterError> {
    let text = vm
        .vmcoreinfo()
        .map_err(|e| FilterError::Inconsistent(e.to_string()))?
        .ok_or(FilterError::NoVmcoreinfo)?;
    let info = kernel_layout::KernelInfo::parse(text)?;
    let map = kernel_layout::KernelMap::read(mem, &info)?;
    let top = map.direct(info.swapper_pg_dir).ok_or_else(|| {
        FilterError::Inconsistent(format!(
            "SYMBOL(swapper_pg_dir)={:#x} is in neither the image nor the identity map",
            info.swapper_pg_dir
        ))
    })?;
    let dat = dat::Dat::new(mem, top)?;
    let pfns = dump_pfns(vm);
    let mm = memmap::MemMap::build(mem, &info, &map, &dat, &pfns, memmap::MAX_EXTENTS)?;
    if mm.runs.is_empty() {
        return Err(FilterError::Inconsistent(
            "no section of the dump's memory has a mem_map".into(),
        ));
    }
    Ok(classify::PageFilter::new(info.page, level, mm, min_run))
}
