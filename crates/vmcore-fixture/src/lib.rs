//! Generates realistic s390x `/proc/vmcore` files for tests and benchmarks.
//!
//! The output follows what Linux produces on s390x (arch/s390/kernel/
//! crash_dump.c builds the ELF core header, fs/proc/vmcore.c exports it):
//!
//! * ELF64, big-endian, `ET_CORE`, `EM_S390`, program headers right after
//!   the 64-byte ELF header, no section headers;
//! * `phdr[0]` is the only `PT_NOTE`; then an optional kernel-image
//!   `PT_LOAD`, then one `PT_LOAD` per physical memory range;
//! * ELF header + program headers padded to 4096 bytes, then the notes
//!   padded to 4096 bytes, then the `PT_LOAD` data back to back.
//!
//! Memory content is a pure function of the seed and the physical address
//! (see [`expected_memory`]), so a test can check any dump written from a
//! fixture without keeping the fixture itself. Generation streams through a
//! fixed 1 MiB buffer, so multi-GiB fixtures cost no memory.
//!
//! This crate writes the ELF bytes itself from the ELF specification; it
//! deliberately shares no code with the project's ELF reader, so the two can
//! check each other.
//!
//! ```
//! use vmcore_fixture::{Spec, expected_memory, file_size, layout, write_vmcore};
//!
//! let spec = Spec::small().cpus(4).seed(7);
//! let mut file = Vec::new();
//! let n = write_vmcore(&spec, &mut file)?;
//! assert_eq!(n, file_size(&spec));
//! // Every PT_LOAD holds the memory the spec defines.
//! let seg = &layout(&spec).segments[0];
//! let start = seg.offset as usize;
//! assert_eq!(&file[start..start + 4096], &expected_memory(&spec, seg.paddr, 4096)[..]);
//! # Ok::<(), std::io::Error>(())
//! ```

mod memory;
mod notes;

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

pub use memory::PageKind;

/// Page size of s390x Linux, and the alignment vmcore.c gives every part.
pub const PAGE_SIZE: u64 = 4096;

/// The Hardware System Area saves the low 32 MiB of physical memory for a
/// zfcpdump; a range starting at 0 that extends past this crosses from HSA
/// into ordinary memory.
pub const HSA_SIZE: u64 = 32 << 20;

const MIB: u64 = 1 << 20;

/// ELF constants (from the ELF specification and Linux's `elf.h`).
pub mod elf {
    pub const ELFCLASS64: u8 = 2;
    pub const ELFDATA2MSB: u8 = 2;
    pub const EV_CURRENT: u8 = 1;
    pub const ELFOSABI_NONE: u8 = 0;
    pub const ET_CORE: u16 = 4;
    pub const EM_S390: u16 = 22;
    pub const PT_LOAD: u32 = 1;
    pub const PT_NOTE: u32 = 4;
    pub const PF_X: u32 = 1;
    pub const PF_W: u32 = 2;
    pub const PF_R: u32 = 4;
    pub const EHDR_SIZE: u64 = 64;
    pub const PHDR_SIZE: u64 = 56;
}

/// Note types written by the generator.
pub mod nt {
    pub const PRSTATUS: u32 = 1;
    pub const PRFPREG: u32 = 2;
    pub const PRPSINFO: u32 = 3;
    pub const S390_TIMER: u32 = 0x301;
    pub const S390_TODCMP: u32 = 0x302;
    pub const S390_TODPREG: u32 = 0x303;
    pub const S390_CTRS: u32 = 0x304;
    pub const S390_PREFIX: u32 = 0x305;
    pub const S390_VXRS_LOW: u32 = 0x309;
    pub const S390_VXRS_HIGH: u32 = 0x30a;
    /// The VMCOREINFO note has type 0 and name "VMCOREINFO".
    pub const VMCOREINFO: u32 = 0;
}

/// Name of the s390-specific per-CPU notes (timer, TOD, control registers,
/// prefix, vector registers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum S390NoteName {
    /// "LINUX", as current kernels write.
    #[default]
    Linux,
    /// "CORE", as older kernels wrote.
    Core,
}

impl S390NoteName {
    pub fn as_str(self) -> &'static str {
        match self {
            S390NoteName::Linux => "LINUX",
            S390NoteName::Core => "CORE",
        }
    }
}

/// The kernel-image `PT_LOAD` of newer kernels: the kernel's virtual
/// mapping, backed by physical memory that an identity range also covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelImage {
    /// Physical start of the kernel image (inside an identity range).
    pub paddr: u64,
    /// Kernel virtual base (p_vaddr).
    pub vaddr: u64,
    /// Size in bytes, a multiple of [`PAGE_SIZE`].
    pub size: u64,
}

/// What to generate. Fields are public; the chainable setters and the
/// presets are shortcuts. [`Spec::validate`] says whether it makes sense.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// Number of CPUs (one NT_PRSTATUS group each).
    pub cpus: u32,
    /// Physical memory ranges `(paddr, size)`, page-aligned, ascending,
    /// non-overlapping: one identity `PT_LOAD` each.
    pub ranges: Vec<(u64, u64)>,
    /// Optional kernel-image `PT_LOAD` (placed right after the `PT_NOTE`).
    pub kernel_image_load: Option<KernelImage>,
    /// Whether the CPUs have vector registers (VXRS_LOW/HIGH notes).
    pub vx: bool,
    /// Name of the s390-specific notes.
    pub s390_note_name: S390NoteName,
    /// Text of the VMCOREINFO note (KEY=VALUE lines).
    pub vmcoreinfo: String,
    /// Seed of all pseudo-random content (memory and register values).
    pub seed: u64,
    /// Fraction of whole 4096-byte pages that are zero, in `[0, 1]`.
    /// Lowcore and the CPUs' prefix pages are never zero.
    pub zero_fraction: f64,
    /// Zero pages form one run per block of this many pages, so runs are up
    /// to this long (default 64 pages = 256 KiB).
    pub zero_run_block_pages: u32,
    /// Identity base: identity `PT_LOAD`s get `p_vaddr = p_paddr + this`.
    /// Keep 0 for zgetdump 2.16, which takes `p_vaddr != p_paddr` for a
    /// user-space core.
    pub vaddr_offset: u64,
    /// vmcore.c leaves the empty terminating note out of the `PT_NOTE`'s
    /// `p_filesz` (it is still there, in the padding). Set this to count it.
    pub terminator_in_filesz: bool,
}

impl Default for Spec {
    /// Same as [`Spec::small`].
    fn default() -> Self {
        Spec::small()
    }
}

/// Chainable setters.
impl Spec {
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = cpus;
        self
    }
    pub fn ranges(mut self, ranges: impl Into<Vec<(u64, u64)>>) -> Self {
        self.ranges = ranges.into();
        self
    }
    pub fn kernel_image_load(mut self, k: Option<KernelImage>) -> Self {
        self.kernel_image_load = k;
        self
    }
    pub fn vx(mut self, vx: bool) -> Self {
        self.vx = vx;
        self
    }
    pub fn s390_note_name(mut self, name: S390NoteName) -> Self {
        self.s390_note_name = name;
        self
    }
    pub fn vmcoreinfo(mut self, text: impl Into<String>) -> Self {
        self.vmcoreinfo = text.into();
        self
    }
    /// Sets `KEY=value` in the VMCOREINFO text: replaces the key's line, or
    /// appends one.
    pub fn vmcoreinfo_value(mut self, key: &str, value: &str) -> Self {
        let prefix = format!("{key}=");
        let mut lines: Vec<String> = self.vmcoreinfo.lines().map(str::to_string).collect();
        match lines.iter_mut().find(|l| l.starts_with(&prefix)) {
            Some(l) => *l = format!("{prefix}{value}"),
            None => lines.push(format!("{prefix}{value}")),
        }
        self.vmcoreinfo = lines.join("\n") + "\n";
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    pub fn zero_fraction(mut self, f: f64) -> Self {
        self.zero_fraction = f;
        self
    }
    pub fn zero_run_block_pages(mut self, pages: u32) -> Self {
        self.zero_run_block_pages = pages;
        self
    }
    pub fn vaddr_offset(mut self, offset: u64) -> Self {
        self.vaddr_offset = offset;
        self
    }
    pub fn terminator_in_filesz(mut self, yes: bool) -> Self {
        self.terminator_in_filesz = yes;
        self
    }
}

/// Presets.
impl Spec {
    /// A few MiB: ranges [0, 4 MiB) and [8 MiB, 10 MiB), 2 CPUs with vector
    /// registers, a quarter of the pages zero.
    pub fn small() -> Self {
        Spec {
            cpus: 2,
            ranges: vec![(0, 4 * MIB), (8 * MIB, 2 * MIB)],
            kernel_image_load: None,
            vx: true,
            s390_note_name: S390NoteName::Linux,
            vmcoreinfo: default_vmcoreinfo("6.1.0-fixture", 0x10_0000),
            seed: 0x5a46_4350_4455_4d50, // "ZFCPDUMP"
            zero_fraction: 0.25,
            zero_run_block_pages: 64,
            vaddr_offset: 0,
            terminator_in_filesz: false,
        }
    }

    /// Memory starting at physical 0 that extends past the 32 MiB HSA
    /// ([0, 40 MiB) and [64 MiB, 72 MiB)), as a zfcpdump machine has: the
    /// first range is read partly from the HSA and partly from memory.
    pub fn with_hsa_range() -> Self {
        Spec::small().ranges(vec![(0, HSA_SIZE + 8 * MIB), (64 * MIB, 8 * MIB)])
    }

    /// A newer kernel's layout: a kernel-image `PT_LOAD` at a high virtual
    /// address whose physical pages (from 3 MiB, about 5 MiB long) lie
    /// inside the first identity range [0, 16 MiB); plus [32 MiB, 36 MiB).
    /// Note: zgetdump 2.16 reads the image `PT_LOAD` (vaddr != paddr) as
    /// a user-space core.
    pub fn overlapping_kernel() -> Self {
        let k = KernelImage {
            paddr: 3 * MIB,
            vaddr: 0x0000_03ff_e000_0000,
            size: 5 * MIB + 3 * PAGE_SIZE,
        };
        Spec::small()
            .ranges(vec![(0, 16 * MIB), (32 * MIB, 4 * MIB)])
            .kernel_image_load(Some(k))
            .vmcoreinfo(default_vmcoreinfo("6.10.0-fixture", k.vaddr))
    }

    /// About `total_bytes` of memory (rounded down to whole pages, at least
    /// one page) in two ranges, 3/4 from physical 0 and the rest above a
    /// hole, for benchmarks. The file is [`file_size`] bytes: the memory plus
    /// 8 KiB or so of headers and notes.
    pub fn sized(total_bytes: u64, zero_fraction: f64) -> Self {
        let pages = (total_bytes / PAGE_SIZE).max(1);
        let low = pages - pages / 4;
        let high = pages - low;
        let low_end = low * PAGE_SIZE;
        let mut ranges = vec![(0, low_end)];
        if high > 0 {
            // A hole like a standby-memory gap between the two ranges.
            let start = low_end.div_ceil(256 * MIB) * 256 * MIB + 256 * MIB;
            ranges.push((start, high * PAGE_SIZE));
        }
        Spec::small().ranges(ranges).zero_fraction(zero_fraction)
    }

    /// Sum of the identity ranges' sizes.
    pub fn memory_size(&self) -> u64 {
        self.ranges.iter().map(|r| r.1).sum()
    }
}

/// A plausible s390x VMCOREINFO text (KEY=VALUE lines, ending in newline).
pub fn default_vmcoreinfo(osrelease: &str, kernel_text: u64) -> String {
    let sym = |off: u64| format!("{:x}", kernel_text + off);
    format!(
        "OSRELEASE={osrelease}\n\
         BUILD-ID=8f3c1a2b4d5e6f708192a3b4c5d6e7f801234567\n\
         PAGESIZE=4096\n\
         SYMBOL(init_uts_ns)={}\n\
         SYMBOL(node_online_map)={}\n\
         SYMBOL(swapper_pg_dir)={}\n\
         SYMBOL(_stext)={}\n\
         SYMBOL(vmap_area_list)={}\n\
         SYMBOL(mem_section)={}\n\
         LENGTH(mem_section)=2048\n\
         SIZE(mem_section)=16\n\
         OFFSET(mem_section.section_mem_map)=0\n\
         SIZE(page)=64\n\
         SIZE(pglist_data)=5888\n\
         SIZE(zone)=1280\n\
         OFFSET(page.flags)=0\n\
         OFFSET(page._refcount)=52\n\
         OFFSET(page.mapping)=24\n\
         OFFSET(page.lru)=8\n\
         OFFSET(page._mapcount)=48\n\
         OFFSET(page.private)=40\n\
         LENGTH(zone.free_area)=11\n\
         NUMBER(NR_FREE_PAGES)=0\n\
         NUMBER(PG_lru)=4\n\
         NUMBER(PG_private)=13\n\
         NUMBER(PG_swapcache)=10\n\
         NUMBER(PG_slab)=9\n\
         NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\n\
         NUMBER(MAX_PHYSMEM_BITS)=46\n\
         SYMBOL(lowcore_ptr)={}\n\
         SYMBOL(high_memory)={}\n\
         LENGTH(lowcore_ptr)=512\n\
         KERNELOFFSET={:x}\n\
         CRASHTIME=1700000000\n",
        sym(0x012a_4000),
        sym(0x012b_0010),
        sym(0x0100_0000),
        sym(0),
        sym(0x012c_3308),
        sym(0x012c_8000),
        sym(0x012d_0000),
        sym(0x012d_1000),
        kernel_text.saturating_sub(0x10_0000),
    )
}

/// Why a [`Spec`] can't be generated.
#[derive(Clone, Debug, PartialEq)]
pub enum SpecError {
    NoCpus,
    NoRanges,
    TooManyRanges(usize),
    RangeNotPageAligned { paddr: u64, size: u64 },
    EmptyRange { paddr: u64 },
    RangesUnorderedOrOverlapping { index: usize },
    AddressOverflow,
    ZeroFraction(f64),
    ZeroRunBlockPages,
    KernelImageNotPageAligned(KernelImage),
    KernelImageOutsideRanges(KernelImage),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::NoCpus => write!(f, "at least one CPU is needed"),
            SpecError::NoRanges => write!(f, "at least one memory range is needed"),
            SpecError::TooManyRanges(n) => write!(f, "{n} ranges do not fit in e_phnum"),
            SpecError::RangeNotPageAligned { paddr, size } => write!(
                f,
                "range {paddr:#x}+{size:#x} is not {PAGE_SIZE}-byte aligned"
            ),
            SpecError::EmptyRange { paddr } => write!(f, "range at {paddr:#x} is empty"),
            SpecError::RangesUnorderedOrOverlapping { index } => {
                write!(f, "range {index} overlaps or precedes the one before it")
            }
            SpecError::AddressOverflow => write!(f, "an address or size overflows 64 bits"),
            SpecError::ZeroFraction(z) => write!(f, "zero fraction {z} is not within [0, 1]"),
            SpecError::ZeroRunBlockPages => write!(f, "zero_run_block_pages must be >= 1"),
            SpecError::KernelImageNotPageAligned(k) => {
                write!(f, "kernel image {k:x?} is not page aligned")
            }
            SpecError::KernelImageOutsideRanges(k) => {
                write!(f, "kernel image {k:x?} is not inside one memory range")
            }
        }
    }
}

impl std::error::Error for SpecError {}

impl From<SpecError> for io::Error {
    fn from(e: SpecError) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

impl Spec {
    /// Checks that the spec describes a well-formed vmcore.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.cpus == 0 {
            return Err(SpecError::NoCpus);
        }
        if self.ranges.is_empty() {
            return Err(SpecError::NoRanges);
        }
        // e_phnum is 16 bits and 0xffff means "see section 0" (PN_XNUM).
        let loads = self.ranges.len() + usize::from(self.kernel_image_load.is_some());
        if loads + 1 >= 0xffff {
            return Err(SpecError::TooManyRanges(self.ranges.len()));
        }
        let mut prev_end = 0u64;
        for (i, &(paddr, size)) in self.ranges.iter().enumerate() {
            if paddr % PAGE_SIZE != 0 || size % PAGE_SIZE != 0 {
                return Err(SpecError::RangeNotPageAligned { paddr, size });
            }
            if size == 0 {
                return Err(SpecError::EmptyRange { paddr });
            }
            if i > 0 && paddr < prev_end {
                return Err(SpecError::RangesUnorderedOrOverlapping { index: i });
            }
            prev_end = paddr.checked_add(size).ok_or(SpecError::AddressOverflow)?;
            prev_end
                .checked_add(self.vaddr_offset)
                .ok_or(SpecError::AddressOverflow)?;
        }
        if !(0.0..=1.0).contains(&self.zero_fraction) {
            return Err(SpecError::ZeroFraction(self.zero_fraction));
        }
        if self.zero_run_block_pages == 0 {
            return Err(SpecError::ZeroRunBlockPages);
        }
        if let Some(k) = self.kernel_image_load {
            if k.paddr % PAGE_SIZE != 0 || k.vaddr % PAGE_SIZE != 0 || k.size % PAGE_SIZE != 0 {
                return Err(SpecError::KernelImageNotPageAligned(k));
            }
            let end = k
                .paddr
                .checked_add(k.size)
                .ok_or(SpecError::AddressOverflow)?;
            k.vaddr
                .checked_add(k.size)
                .ok_or(SpecError::AddressOverflow)?;
            let inside = self
                .ranges
                .iter()
                .any(|&(p, s)| k.paddr >= p && end <= p + s);
            if k.size == 0 || !inside {
                return Err(SpecError::KernelImageOutsideRanges(k));
            }
        }
        self.file_len_checked()?;
        Ok(())
    }

    fn file_len_checked(&self) -> Result<u64, SpecError> {
        let head = layout(self).data_offset;
        self.ranges
            .iter()
            .map(|r| r.1)
            .chain(self.kernel_image_load.map(|k| k.size))
            .try_fold(head, |acc, s| acc.checked_add(s))
            .ok_or(SpecError::AddressOverflow)
    }
}

/// What a `PT_LOAD` maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentKind {
    /// The kernel-image mapping (duplicates bytes of an identity range).
    KernelImage,
    /// One physical memory range.
    Identity,
}

/// One `PT_LOAD` as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub kind: SegmentKind,
    /// p_offset: where its bytes are in the file.
    pub offset: u64,
    pub paddr: u64,
    pub vaddr: u64,
    /// p_filesz == p_memsz.
    pub size: u64,
}

/// Where everything goes in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// e_phnum: 1 (PT_NOTE) + number of PT_LOADs.
    pub phnum: u16,
    /// p_offset of the PT_NOTE (ELF header + phdrs rounded up to 4096).
    pub notes_offset: u64,
    /// p_filesz of the PT_NOTE.
    pub notes_size: u64,
    /// Offset of the first PT_LOAD's data (notes rounded up to 4096).
    pub data_offset: u64,
    /// PT_LOADs in program-header order, their data back to back.
    pub segments: Vec<Segment>,
    /// Total file size.
    pub file_size: u64,
}

fn round_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to).saturating_mul(to)
}

/// Computes the file layout. Meaningful for specs that [`Spec::validate`]
/// accepts; on others it does not panic but the numbers may be nonsense.
pub fn layout(spec: &Spec) -> Layout {
    let notes_len = notes::build_notes(spec).len() as u64;
    layout_with_notes(spec, notes_len)
}

fn layout_with_notes(spec: &Spec, notes_len: u64) -> Layout {
    let loads = spec.ranges.len() + usize::from(spec.kernel_image_load.is_some());
    let phnum = (loads + 1).min(0xffff) as u16;
    let notes_offset = round_up(
        elf::EHDR_SIZE + elf::PHDR_SIZE * u64::from(phnum),
        PAGE_SIZE,
    );
    let notes_size = notes_len
        + if spec.terminator_in_filesz {
            notes::TERMINATOR_SIZE
        } else {
            0
        };
    // The terminator always gets room, so a reader that walks past p_filesz
    // still finds an empty note.
    let data_offset =
        notes_offset.saturating_add(round_up(notes_len + notes::TERMINATOR_SIZE, PAGE_SIZE));
    let mut segments = Vec::with_capacity(loads);
    let mut offset = data_offset;
    if let Some(k) = spec.kernel_image_load {
        segments.push(Segment {
            kind: SegmentKind::KernelImage,
            offset,
            paddr: k.paddr,
            vaddr: k.vaddr,
            size: k.size,
        });
        offset = offset.saturating_add(k.size);
    }
    for &(paddr, size) in &spec.ranges {
        segments.push(Segment {
            kind: SegmentKind::Identity,
            offset,
            paddr,
            vaddr: paddr.wrapping_add(spec.vaddr_offset),
            size,
        });
        offset = offset.saturating_add(size);
    }
    Layout {
        phnum,
        notes_offset,
        notes_size,
        data_offset,
        segments,
        file_size: offset,
    }
}

fn build_head(layout: &Layout, notes: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(layout.data_offset as usize);
    // e_ident
    h.extend_from_slice(b"\x7fELF");
    h.extend_from_slice(&[
        elf::ELFCLASS64,
        elf::ELFDATA2MSB,
        elf::EV_CURRENT,
        elf::ELFOSABI_NONE,
    ]);
    h.resize(16, 0); // EI_ABIVERSION and padding
    h.extend_from_slice(&elf::ET_CORE.to_be_bytes());
    h.extend_from_slice(&elf::EM_S390.to_be_bytes());
    h.extend_from_slice(&u32::from(elf::EV_CURRENT).to_be_bytes()); // e_version
    h.extend_from_slice(&0u64.to_be_bytes()); // e_entry
    h.extend_from_slice(&elf::EHDR_SIZE.to_be_bytes()); // e_phoff
    h.extend_from_slice(&0u64.to_be_bytes()); // e_shoff
    h.extend_from_slice(&0u32.to_be_bytes()); // e_flags
    h.extend_from_slice(&(elf::EHDR_SIZE as u16).to_be_bytes()); // e_ehsize
    h.extend_from_slice(&(elf::PHDR_SIZE as u16).to_be_bytes()); // e_phentsize
    h.extend_from_slice(&layout.phnum.to_be_bytes());
    h.extend_from_slice(&0u16.to_be_bytes()); // e_shentsize
    h.extend_from_slice(&0u16.to_be_bytes()); // e_shnum
    h.extend_from_slice(&0u16.to_be_bytes()); // e_shstrndx
    debug_assert_eq!(h.len() as u64, elf::EHDR_SIZE);

    // PT_NOTE: vmcore.c sets flags 0, addresses 0 and align 4.
    push_phdr(
        &mut h,
        elf::PT_NOTE,
        0,
        layout.notes_offset,
        0,
        0,
        layout.notes_size,
        4,
    );
    for s in &layout.segments {
        push_phdr(
            &mut h,
            elf::PT_LOAD,
            elf::PF_R | elf::PF_W | elf::PF_X,
            s.offset,
            s.vaddr,
            s.paddr,
            s.size,
            PAGE_SIZE,
        );
    }
    h.resize(layout.notes_offset as usize, 0);
    h.extend_from_slice(notes);
    // Zero padding; its first 12 bytes are the empty terminating note.
    h.resize(layout.data_offset as usize, 0);
    h
}

#[allow(clippy::too_many_arguments)]
fn push_phdr(
    h: &mut Vec<u8>,
    p_type: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    size: u64,
    align: u64,
) {
    h.extend_from_slice(&p_type.to_be_bytes());
    h.extend_from_slice(&flags.to_be_bytes());
    h.extend_from_slice(&offset.to_be_bytes());
    h.extend_from_slice(&vaddr.to_be_bytes());
    h.extend_from_slice(&paddr.to_be_bytes());
    h.extend_from_slice(&size.to_be_bytes()); // p_filesz
    h.extend_from_slice(&size.to_be_bytes()); // p_memsz
    h.extend_from_slice(&align.to_be_bytes());
}

/// A validated spec, ready to produce any byte of its vmcore on demand.
#[derive(Clone, Debug)]
pub struct Fixture {
    spec: Spec,
    layout: Layout,
    /// ELF header, program headers and notes, padded: the first
    /// `layout.data_offset` bytes of the file.
    head: Vec<u8>,
    model: memory::MemoryModel,
}

/// Chunk size for streaming: bounds the generator's memory.
const CHUNK: usize = 1 << 20;

impl Fixture {
    pub fn new(spec: &Spec) -> Result<Self, SpecError> {
        spec.validate()?;
        let notes = notes::build_notes(spec);
        let layout = layout_with_notes(spec, notes.len() as u64);
        let head = build_head(&layout, &notes);
        Ok(Fixture {
            spec: spec.clone(),
            layout,
            head,
            model: memory::MemoryModel::new(spec),
        })
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn file_size(&self) -> u64 {
        self.layout.file_size
    }

    /// The ELF header, program headers and notes with their padding.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Fills `buf` with the file's bytes at `offset`, like `pread`. Returns
    /// the number of bytes filled: fewer than `buf.len()` only at the end of
    /// the file.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize {
        let end = self
            .file_size()
            .min(offset.saturating_add(buf.len() as u64));
        if offset >= end {
            return 0;
        }
        let total = (end - offset) as usize;
        let mut pos = offset;
        let mut done = 0;
        while done < total {
            let out = &mut buf[done..total];
            let n = if pos < self.layout.data_offset {
                let src = &self.head[pos as usize..];
                let n = src.len().min(out.len());
                out[..n].copy_from_slice(&src[..n]);
                n
            } else {
                let segs = &self.layout.segments;
                let i = segs.partition_point(|s| s.offset + s.size <= pos);
                let s = &segs[i];
                let within = pos - s.offset;
                let n = ((s.size - within) as usize).min(out.len());
                self.model.fill(s.paddr + within, &mut out[..n]);
                n
            };
            pos += n as u64;
            done += n;
        }
        total
    }

    /// Writes the whole file to `w` in 1 MiB chunks; returns bytes written.
    pub fn write_to(&self, mut w: impl Write) -> io::Result<u64> {
        let mut buf = vec![0u8; CHUNK];
        let mut pos = 0;
        loop {
            let n = self.read_at(pos, &mut buf);
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n])?;
            pos += n as u64;
        }
        w.flush()?;
        Ok(pos)
    }

    /// Content of physical memory at `paddr..paddr + buf.len()`.
    pub fn fill_memory(&self, paddr: u64, buf: &mut [u8]) {
        self.model.fill(paddr, buf);
    }

    /// What the physical page containing `paddr` holds.
    pub fn page_kind(&self, paddr: u64) -> PageKind {
        self.model.page_kind(paddr / PAGE_SIZE)
    }

    /// Number of zero pages in the identity ranges.
    pub fn zero_pages(&self) -> u64 {
        self.spec
            .ranges
            .iter()
            .flat_map(|&(p, s)| (p / PAGE_SIZE)..(p + s) / PAGE_SIZE)
            .filter(|&page| self.model.page_kind(page) == PageKind::Zero)
            .count() as u64
    }

    /// A `Read + Seek` view of the file, e.g. to stand in for /proc/vmcore.
    pub fn reader(&self) -> FixtureReader<'_> {
        FixtureReader {
            fixture: self,
            pos: 0,
        }
    }
}

/// `Read + Seek` over a [`Fixture`]'s bytes, generated on demand.
#[derive(Clone, Debug)]
pub struct FixtureReader<'a> {
    fixture: &'a Fixture,
    pos: u64,
}

impl Read for FixtureReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.fixture.read_at(self.pos, buf);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for FixtureReader<'_> {
    fn seek(&mut self, from: SeekFrom) -> io::Result<u64> {
        let new = match from {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.fixture.file_size().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )),
        }
    }
}

/// Writes the vmcore for `spec` to `w`; returns the number of bytes written
/// (always [`file_size`]). Memory use is bounded (1 MiB buffer plus the
/// headers), whatever the size. Writes are 1 MiB each, so `w` needs no
/// `BufWriter`.
pub fn write_vmcore(spec: &Spec, w: impl Write) -> io::Result<u64> {
    Fixture::new(spec)?.write_to(w)
}

/// Size of the file [`write_vmcore`] writes for `spec`.
pub fn file_size(spec: &Spec) -> u64 {
    layout(spec).file_size
}

/// The original content of physical memory `paddr..paddr + len`, which is
/// what any correct dump of the fixture must read back. Defined for every
/// address, also outside the ranges.
pub fn expected_memory(spec: &Spec, paddr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    fill_memory(spec, paddr, &mut buf);
    buf
}

/// Like [`expected_memory`], into a caller's buffer.
pub fn fill_memory(spec: &Spec, paddr: u64, buf: &mut [u8]) {
    memory::MemoryModel::new(spec).fill(paddr, buf);
}

/// What the physical page containing `paddr` holds under `spec`.
pub fn page_kind(spec: &Spec, paddr: u64) -> PageKind {
    memory::MemoryModel::new(spec).page_kind(paddr / PAGE_SIZE)
}
