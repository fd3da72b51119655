//! A bounded reader for the s390x vmcore ELF core (ELF64, big-endian, EM_S390,
//! ET_CORE), as found in `/proc/vmcore` or in a finished dump.
//!
//! It reads only the ELF header, the program header table and the PT_NOTE
//! segments through [`ReadAt`], so the agent never loads memory contents: the
//! allocations are proportional to the number of program headers and CPUs, not to
//! the dump size. Every program header is checked against the file size, so a
//! caller can rely on [`Vmcore::extent`] and on the file ranges it copies.

use crate::bytes::{be_u16, be_u32, be_u64, put_be_u16, put_be_u32, put_be_u64};
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;

/// `\x7fELF`.
pub const ELF_MAGIC: [u8; 4] = *b"\x7fELF";
/// `e_ident[EI_CLASS]` for 64-bit.
pub const ELFCLASS64: u8 = 2;
/// `e_ident[EI_DATA]` for big-endian.
pub const ELFDATA2MSB: u8 = 2;
/// `e_ident[EI_VERSION]` and `e_version`.
pub const EV_CURRENT: u8 = 1;
/// e_type of a core file.
pub const ET_CORE: u16 = 4;
/// e_machine of s390/s390x.
pub const EM_S390: u16 = 22;
/// Program header type: loadable segment (memory).
pub const PT_LOAD: u32 = 1;
/// Program header type: notes.
pub const PT_NOTE: u32 = 4;
/// e_phnum escape: the real count is in sh_info of section header 0.
pub const PN_XNUM: u16 = 0xffff;
/// Size of the ELF64 header.
pub const EHDR_SIZE: usize = 64;
/// Size of an ELF64 program header.
pub const PHDR_SIZE: usize = 56;
/// Size of an ELF64 section header.
pub const SHDR_SIZE: usize = 64;
/// Note type: per-CPU general registers (one per CPU).
pub const NT_PRSTATUS: u32 = 1;
/// Note type: per-CPU floating point registers.
pub const NT_PRFPREG: u32 = 2;
/// Note type: process info.
pub const NT_PRPSINFO: u32 = 3;
/// Note type of the VMCOREINFO note (with name "VMCOREINFO").
pub const NT_VMCOREINFO: u32 = 0;
/// Name of the VMCOREINFO note.
pub const VMCOREINFO_NAME: &[u8] = b"VMCOREINFO";
/// Upper bound on program headers accepted; far above any real machine's memory
/// ranges, it keeps a corrupt header from asking for a huge allocation.
pub const MAX_PHNUM: u64 = 1 << 20;
/// Upper bound on the total size of the PT_NOTE segments (real ones are a few KiB
/// per CPU).
pub const MAX_NOTES_SIZE: u64 = 64 << 20;

/// Positional reads from a vmcore source: `/proc/vmcore`, a disk image or a buffer.
pub trait ReadAt {
    /// Fills `buf` with the bytes at `offset`; fails with
    /// [`io::ErrorKind::UnexpectedEof`] if the source ends first.
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl<T: ReadAt + ?Sized> ReadAt for &mut T {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
}

impl ReadAt for &[u8] {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).ok().filter(|&s| s <= self.len());
        match start.and_then(|s| self.get(s..s.checked_add(buf.len())?)) {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past end of buffer",
            )),
        }
    }
}

/// Adapts any `Read + Seek` (a `File`, a `Cursor`) to [`ReadAt`], optionally as a
/// window that starts at byte `base` of the inner source (e.g. the dump area of
/// a disk image).
#[derive(Debug)]
pub struct SeekReader<R> {
    inner: R,
    base: u64,
}

impl<R: Read + Seek> SeekReader<R> {
    /// Reads offsets as they are.
    pub fn new(inner: R) -> Self {
        SeekReader { inner, base: 0 }
    }

    /// Offset 0 reads byte `base` of `inner`.
    pub fn with_base(inner: R, base: u64) -> Self {
        SeekReader { inner, base }
    }

    /// Returns the inner reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read + Seek> ReadAt for SeekReader<R> {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let pos = self
            .base
            .checked_add(offset)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset overflows"))?;
        self.inner.seek(SeekFrom::Start(pos))?;
        self.inner.read_exact(buf)
    }
}

/// Why a vmcore cannot be used.
#[derive(Debug)]
pub enum ElfError {
    /// Reading failed.
    Io {
        /// What was being read.
        what: &'static str,
        /// File offset.
        offset: u64,
        /// Bytes requested.
        len: u64,
        /// The underlying error, in the text (not the `source()`).
        source: io::Error,
    },
    /// The file cannot even hold an ELF header.
    TooSmall(u64),
    /// No ELF magic.
    NotElf([u8; 4]),
    /// Not ELFCLASS64.
    Class(u8),
    /// Not big-endian.
    Data(u8),
    /// e_ident version or e_version is not 1.
    Version(u32),
    /// Not ET_CORE.
    Type(u16),
    /// Not EM_S390.
    Machine(u16),
    /// e_phentsize is not 56.
    PhentSize(u16),
    /// e_phnum is PN_XNUM but there is no section header 0.
    XnumWithoutSection,
    /// Section header 0 (for PN_XNUM) lies outside the file.
    SectionHeaderOutOfFile {
        /// e_shoff.
        offset: u64,
        /// File size.
        file_size: u64,
    },
    /// More program headers than [`MAX_PHNUM`].
    TooManyPhdrs(u64),
    /// The core has no program headers at all.
    NoPhdrs,
    /// The program header table extends past the end of the file.
    PhdrTableOutOfFile {
        /// e_phoff.
        offset: u64,
        /// Number of entries.
        count: u64,
        /// File size.
        file_size: u64,
    },
    /// A segment's file bytes extend past the end of the file.
    PhdrOutOfFile {
        /// Program header index.
        index: usize,
        /// p_offset.
        offset: u64,
        /// p_filesz.
        size: u64,
        /// File size.
        file_size: u64,
    },
    /// A PT_LOAD stores more bytes than it describes.
    FileszExceedsMemsz {
        /// Program header index.
        index: usize,
        /// p_filesz.
        filesz: u64,
        /// p_memsz.
        memsz: u64,
    },
    /// PT_NOTE segments larger than [`MAX_NOTES_SIZE`].
    NotesTooLarge(u64),
    /// A malformed note.
    Note {
        /// Index of the PT_NOTE program header.
        index: usize,
        /// File offset of the note header.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::Io {
                what,
                offset,
                len,
                source,
            } => {
                write!(
                    f,
                    "reading {what} ({len:#x} bytes at offset {offset:#x}): {source}"
                )
            }
            ElfError::TooSmall(n) => {
                write!(
                    f,
                    "file is {n} bytes, smaller than an ELF header ({EHDR_SIZE} bytes)"
                )
            }
            ElfError::NotElf(m) => write!(
                f,
                "not an ELF file: magic is {}, expected 7f454c46 ('\\x7fELF')",
                crate::bytes::Magic4(*m)
            ),
            ElfError::Class(c) => write!(f, "ELF class is {c}, expected {ELFCLASS64} (ELFCLASS64)"),
            ElfError::Data(d) => write!(
                f,
                "ELF data encoding is {d}, expected {ELFDATA2MSB} (big-endian, ELFDATA2MSB)"
            ),
            ElfError::Version(v) => write!(f, "ELF version is {v}, expected {EV_CURRENT}"),
            ElfError::Type(t) => {
                write!(
                    f,
                    "ELF type is {t}, expected {ET_CORE} (ET_CORE): not a core dump"
                )
            }
            ElfError::Machine(m) => {
                write!(
                    f,
                    "ELF machine is {m}, expected {EM_S390} (EM_S390): not an s390 dump"
                )
            }
            ElfError::PhentSize(n) => {
                write!(f, "ELF e_phentsize is {n}, expected {PHDR_SIZE}")
            }
            ElfError::XnumWithoutSection => write!(
                f,
                "e_phnum is PN_XNUM (0xffff) but there is no section header 0 holding the real count"
            ),
            ElfError::SectionHeaderOutOfFile { offset, file_size } => write!(
                f,
                "section header 0 extends past end of file: offset {offset:#x} + size {SHDR_SIZE:#x} > file size {file_size:#x}"
            ),
            ElfError::TooManyPhdrs(n) => {
                write!(
                    f,
                    "{n} program headers, more than the supported {MAX_PHNUM}"
                )
            }
            ElfError::NoPhdrs => write!(f, "ELF core has no program headers"),
            ElfError::PhdrTableOutOfFile {
                offset,
                count,
                file_size,
            } => write!(
                f,
                "program header table extends past end of file: offset {offset:#x} + {count} x {PHDR_SIZE} bytes > file size {file_size:#x}"
            ),
            ElfError::PhdrOutOfFile {
                index,
                offset,
                size,
                file_size,
            } => write!(
                f,
                "program header {index} extends past end of file: offset {offset:#x} + size {size:#x} > file size {file_size:#x}"
            ),
            ElfError::FileszExceedsMemsz {
                index,
                filesz,
                memsz,
            } => write!(
                f,
                "program header {index} (PT_LOAD) has p_filesz {filesz:#x} > p_memsz {memsz:#x}"
            ),
            ElfError::NotesTooLarge(n) => write!(
                f,
                "PT_NOTE segments total {n:#x} bytes, more than the supported {MAX_NOTES_SIZE:#x}"
            ),
            ElfError::Note {
                index,
                offset,
                reason,
            } => write!(
                f,
                "malformed note at file offset {offset:#x} (PT_NOTE program header {index}): {reason}"
            ),
        }
    }
}

/// The text of [`ElfError::Io`] includes its cause, which is therefore not
/// also its `source()`: a printed error chain names it once.
impl std::error::Error for ElfError {}

/// The ELF64 file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfHeader {
    /// e_type.
    pub e_type: u16,
    /// e_machine.
    pub e_machine: u16,
    /// e_version.
    pub e_version: u32,
    /// e_entry.
    pub e_entry: u64,
    /// e_phoff: file offset of the program header table.
    pub e_phoff: u64,
    /// e_shoff: file offset of the section header table (0: none).
    pub e_shoff: u64,
    /// e_flags.
    pub e_flags: u32,
    /// e_ehsize.
    pub e_ehsize: u16,
    /// e_phentsize.
    pub e_phentsize: u16,
    /// e_phnum (may be [`PN_XNUM`]).
    pub e_phnum: u16,
    /// e_shentsize.
    pub e_shentsize: u16,
    /// e_shnum.
    pub e_shnum: u16,
    /// e_shstrndx.
    pub e_shstrndx: u16,
}

impl ElfHeader {
    /// A header as the s390 kernel writes for /proc/vmcore: program headers right
    /// after the ELF header, no sections.
    pub fn s390_core(phnum: u16) -> ElfHeader {
        ElfHeader {
            e_type: ET_CORE,
            e_machine: EM_S390,
            e_version: EV_CURRENT as u32,
            e_entry: 0,
            e_phoff: EHDR_SIZE as u64,
            e_shoff: 0,
            e_flags: 0,
            e_ehsize: EHDR_SIZE as u16,
            e_phentsize: PHDR_SIZE as u16,
            e_phnum: phnum,
            e_shentsize: 0,
            e_shnum: 0,
            e_shstrndx: 0,
        }
    }

    /// Decodes and checks an s390x core header (class, byte order, version, type,
    /// machine, program header entry size).
    pub fn parse(b: &[u8]) -> Result<ElfHeader, ElfError> {
        if b.len() < EHDR_SIZE {
            return Err(ElfError::TooSmall(b.len() as u64));
        }
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != ELF_MAGIC {
            return Err(ElfError::NotElf(magic));
        }
        if b[4] != ELFCLASS64 {
            return Err(ElfError::Class(b[4]));
        }
        if b[5] != ELFDATA2MSB {
            return Err(ElfError::Data(b[5]));
        }
        if b[6] != EV_CURRENT {
            return Err(ElfError::Version(b[6] as u32));
        }
        let h = ElfHeader {
            e_type: be_u16(b, 16),
            e_machine: be_u16(b, 18),
            e_version: be_u32(b, 20),
            e_entry: be_u64(b, 24),
            e_phoff: be_u64(b, 32),
            e_shoff: be_u64(b, 40),
            e_flags: be_u32(b, 48),
            e_ehsize: be_u16(b, 52),
            e_phentsize: be_u16(b, 54),
            e_phnum: be_u16(b, 56),
            e_shentsize: be_u16(b, 58),
            e_shnum: be_u16(b, 60),
            e_shstrndx: be_u16(b, 62),
        };
        if h.e_version != EV_CURRENT as u32 {
            return Err(ElfError::Version(h.e_version));
        }
        if h.e_type != ET_CORE {
            return Err(ElfError::Type(h.e_type));
        }
        if h.e_machine != EM_S390 {
            return Err(ElfError::Machine(h.e_machine));
        }
        if h.e_phnum != 0 && h.e_phentsize as usize != PHDR_SIZE {
            return Err(ElfError::PhentSize(h.e_phentsize));
        }
        Ok(h)
    }

    /// Encodes the header (e_ident: ELFCLASS64, ELFDATA2MSB, EV_CURRENT, OSABI 0).
    pub fn to_bytes(&self) -> [u8; EHDR_SIZE] {
        let mut b = [0u8; EHDR_SIZE];
        b[0..4].copy_from_slice(&ELF_MAGIC);
        b[4] = ELFCLASS64;
        b[5] = ELFDATA2MSB;
        b[6] = EV_CURRENT;
        put_be_u16(&mut b, 16, self.e_type);
        put_be_u16(&mut b, 18, self.e_machine);
        put_be_u32(&mut b, 20, self.e_version);
        put_be_u64(&mut b, 24, self.e_entry);
        put_be_u64(&mut b, 32, self.e_phoff);
        put_be_u64(&mut b, 40, self.e_shoff);
        put_be_u32(&mut b, 48, self.e_flags);
        put_be_u16(&mut b, 52, self.e_ehsize);
        put_be_u16(&mut b, 54, self.e_phentsize);
        put_be_u16(&mut b, 56, self.e_phnum);
        put_be_u16(&mut b, 58, self.e_shentsize);
        put_be_u16(&mut b, 60, self.e_shnum);
        put_be_u16(&mut b, 62, self.e_shstrndx);
        b
    }
}

/// An ELF64 program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProgramHeader {
    /// p_type.
    pub p_type: u32,
    /// p_flags.
    pub p_flags: u32,
    /// p_offset: file offset of the segment's bytes.
    pub p_offset: u64,
    /// p_vaddr.
    pub p_vaddr: u64,
    /// p_paddr: physical address (what the HSA split is about).
    pub p_paddr: u64,
    /// p_filesz: bytes stored in the file.
    pub p_filesz: u64,
    /// p_memsz: bytes of memory described.
    pub p_memsz: u64,
    /// p_align.
    pub p_align: u64,
}

impl ProgramHeader {
    /// Decodes from the first 56 bytes of `b`.
    ///
    /// # Panics
    /// If `b` is shorter than [`PHDR_SIZE`].
    pub fn parse(b: &[u8]) -> ProgramHeader {
        ProgramHeader {
            p_type: be_u32(b, 0),
            p_flags: be_u32(b, 4),
            p_offset: be_u64(b, 8),
            p_vaddr: be_u64(b, 16),
            p_paddr: be_u64(b, 24),
            p_filesz: be_u64(b, 32),
            p_memsz: be_u64(b, 40),
            p_align: be_u64(b, 48),
        }
    }

    /// Encodes the program header.
    pub fn to_bytes(&self) -> [u8; PHDR_SIZE] {
        let mut b = [0u8; PHDR_SIZE];
        put_be_u32(&mut b, 0, self.p_type);
        put_be_u32(&mut b, 4, self.p_flags);
        put_be_u64(&mut b, 8, self.p_offset);
        put_be_u64(&mut b, 16, self.p_vaddr);
        put_be_u64(&mut b, 24, self.p_paddr);
        put_be_u64(&mut b, 32, self.p_filesz);
        put_be_u64(&mut b, 40, self.p_memsz);
        put_be_u64(&mut b, 48, self.p_align);
        b
    }

    /// End of the segment's file bytes, `None` on overflow.
    pub fn file_end(&self) -> Option<u64> {
        self.p_offset.checked_add(self.p_filesz)
    }

    /// The segment's file bytes (saturating; validated headers never saturate).
    pub fn file_range(&self) -> Range<u64> {
        self.p_offset..self.p_offset.saturating_add(self.p_filesz)
    }

    /// Whether this is a PT_LOAD.
    pub fn is_load(&self) -> bool {
        self.p_type == PT_LOAD
    }
}

/// One ELF note. Match on `n_type`, not on the name: s390 register notes are named
/// "LINUX" today and "CORE" on older kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Note<'a> {
    /// n_type.
    pub n_type: u32,
    /// Name without its terminating NUL.
    pub name: &'a [u8],
    /// Descriptor bytes.
    pub desc: &'a [u8],
}

/// Appends one big-endian note (name NUL-terminated, name and descriptor padded to
/// 4 bytes) to `out`; used to build test cores and fixtures.
pub fn push_note(out: &mut Vec<u8>, n_type: u32, name: &[u8], desc: &[u8]) {
    let namesz = if name.is_empty() { 0 } else { name.len() + 1 };
    out.extend_from_slice(&(namesz as u32).to_be_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_be_bytes());
    out.extend_from_slice(&n_type.to_be_bytes());
    out.extend_from_slice(name);
    out.resize(out.len() + (align4(namesz) - name.len()), 0);
    out.extend_from_slice(desc);
    out.resize(out.len() + (align4(desc.len()) - desc.len()), 0);
}

fn align4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Iterates over the notes of one PT_NOTE segment's bytes. Stops at the end of the
/// data or at an all-zero note header (the kernel's terminating empty note).
/// After an error it yields nothing more.
#[derive(Debug, Clone)]
pub struct NoteIter<'a> {
    data: &'a [u8],
    pos: usize,
    index: usize,
    base: u64,
    done: bool,
}

impl<'a> NoteIter<'a> {
    /// Notes in `data`, which was read from file offset `base` as the segment of
    /// program header `index` (both only used in error messages).
    pub fn new(data: &'a [u8], index: usize, base: u64) -> Self {
        NoteIter {
            data,
            pos: 0,
            index,
            base,
            done: false,
        }
    }

    fn fail(&mut self, reason: &'static str) -> Option<Result<Note<'a>, ElfError>> {
        self.done = true;
        Some(Err(ElfError::Note {
            index: self.index,
            offset: self.base + self.pos as u64,
            reason,
        }))
    }
}

impl<'a> Iterator for NoteIter<'a> {
    type Item = Result<Note<'a>, ElfError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = &self.data[self.pos..];
        if rest.len() < 12 {
            if rest.iter().all(|&b| b == 0) {
                self.done = true;
                return None;
            }
            return self.fail("segment ends inside a note header");
        }
        let namesz = be_u32(rest, 0) as usize;
        let descsz = be_u32(rest, 4) as usize;
        let n_type = be_u32(rest, 8);
        if namesz == 0 && descsz == 0 && n_type == 0 {
            self.done = true;
            return None;
        }
        let name_end = 12 + namesz;
        let desc_start = 12 + align4(namesz);
        if name_end > rest.len() {
            return self.fail("name extends past the end of the PT_NOTE segment");
        }
        let Some(desc_end) = desc_start.checked_add(descsz).filter(|&e| e <= rest.len()) else {
            return self.fail("descriptor extends past the end of the PT_NOTE segment");
        };
        let mut name = &rest[12..name_end];
        if let [head @ .., 0] = name {
            name = head;
        }
        let desc = &rest[desc_start..desc_end];
        // The last note's padding may be cut off by the segment end.
        self.pos += align4(desc_end).min(rest.len());
        Some(Ok(Note { n_type, name, desc }))
    }
}

#[derive(Debug, Clone)]
struct NoteSegment {
    index: usize,
    offset: u64,
    data: Vec<u8>,
}

/// The metadata of a vmcore: header, program headers and notes, validated against
/// the file size.
#[derive(Debug, Clone)]
pub struct Vmcore {
    /// The ELF header.
    pub header: ElfHeader,
    /// All program headers, in file order (PN_XNUM resolved).
    pub phdrs: Vec<ProgramHeader>,
    /// The size the headers were validated against.
    pub file_size: u64,
    notes: Vec<NoteSegment>,
}

impl Vmcore {
    /// Reads and validates header, program headers and notes from `src`, whose
    /// size is `file_size` (for a dump on disk: the dump area size).
    pub fn read<R: ReadAt + ?Sized>(src: &mut R, file_size: u64) -> Result<Vmcore, ElfError> {
        let mut v = Vmcore::read_headers(src, file_size)?;
        let total: u64 = v
            .phdrs
            .iter()
            .filter(|p| p.p_type == PT_NOTE)
            .map(|p| p.p_filesz)
            .sum();
        if total > MAX_NOTES_SIZE {
            return Err(ElfError::NotesTooLarge(total));
        }
        for (index, p) in v
            .phdrs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.p_type == PT_NOTE)
        {
            let mut data = vec![0u8; p.p_filesz as usize];
            read(src, &mut data, p.p_offset, "PT_NOTE segment")?;
            v.notes.push(NoteSegment {
                index,
                offset: p.p_offset,
                data,
            });
        }
        Ok(v)
    }

    /// Like [`Vmcore::read`] but skips the notes (then [`Vmcore::notes`] is empty).
    pub fn read_headers<R: ReadAt + ?Sized>(
        src: &mut R,
        file_size: u64,
    ) -> Result<Vmcore, ElfError> {
        if file_size < EHDR_SIZE as u64 {
            return Err(ElfError::TooSmall(file_size));
        }
        let mut eh = [0u8; EHDR_SIZE];
        read(src, &mut eh, 0, "ELF header")?;
        let header = ElfHeader::parse(&eh)?;
        let phnum = phnum(src, &header, file_size)?;
        if phnum == 0 {
            return Err(ElfError::NoPhdrs);
        }
        if phnum > MAX_PHNUM {
            return Err(ElfError::TooManyPhdrs(phnum));
        }
        let table_len = phnum * PHDR_SIZE as u64;
        if header
            .e_phoff
            .checked_add(table_len)
            .is_none_or(|e| e > file_size)
        {
            return Err(ElfError::PhdrTableOutOfFile {
                offset: header.e_phoff,
                count: phnum,
                file_size,
            });
        }
        let mut table = vec![0u8; table_len as usize];
        read(src, &mut table, header.e_phoff, "program header table")?;
        let phdrs: Vec<ProgramHeader> = table
            .chunks_exact(PHDR_SIZE)
            .map(ProgramHeader::parse)
            .collect();
        for (index, p) in phdrs.iter().enumerate() {
            if p.p_filesz > 0 && p.file_end().is_none_or(|e| e > file_size) {
                return Err(ElfError::PhdrOutOfFile {
                    index,
                    offset: p.p_offset,
                    size: p.p_filesz,
                    file_size,
                });
            }
            if p.p_type == PT_LOAD && p.p_filesz > p.p_memsz {
                return Err(ElfError::FileszExceedsMemsz {
                    index,
                    filesz: p.p_filesz,
                    memsz: p.p_memsz,
                });
            }
        }
        Ok(Vmcore {
            header,
            phdrs,
            file_size,
            notes: Vec::new(),
        })
    }

    /// The PT_LOAD program headers.
    pub fn loads(&self) -> impl Iterator<Item = &ProgramHeader> {
        self.phdrs.iter().filter(|p| p.is_load())
    }

    /// All notes of all PT_NOTE segments, in file order.
    pub fn notes(&self) -> impl Iterator<Item = Result<Note<'_>, ElfError>> {
        self.notes
            .iter()
            .flat_map(|s| NoteIter::new(&s.data, s.index, s.offset))
    }

    /// Number of CPUs: the number of NT_PRSTATUS notes.
    pub fn cpu_count(&self) -> Result<usize, ElfError> {
        let mut n = 0;
        for note in self.notes() {
            if note?.n_type == NT_PRSTATUS {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The VMCOREINFO text (type 0, name "VMCOREINFO"), trailing NULs removed.
    pub fn vmcoreinfo(&self) -> Result<Option<&[u8]>, ElfError> {
        for note in self.notes() {
            let note = note?;
            if note.n_type == NT_VMCOREINFO && note.name == VMCOREINFO_NAME {
                let mut text = note.desc;
                while let [head @ .., 0] = text {
                    text = head;
                }
                return Ok(Some(text));
            }
        }
        Ok(None)
    }

    /// Sum of the PT_LOADs' p_memsz. Newer kernels add a kernel-image PT_LOAD that
    /// overlaps an identity-mapped one, so this can exceed the machine's memory;
    /// see [`Vmcore::covered_physical_bytes`].
    pub fn memory_sum(&self) -> u64 {
        self.loads().fold(0u64, |a, p| a.saturating_add(p.p_memsz))
    }

    /// The physical address ranges described by the PT_LOADs, sorted and merged
    /// (overlapping or adjacent ranges become one).
    pub fn physical_ranges(&self) -> Vec<Range<u64>> {
        let mut r: Vec<Range<u64>> = self
            .loads()
            .filter(|p| p.p_memsz > 0)
            .map(|p| p.p_paddr..p.p_paddr.saturating_add(p.p_memsz))
            .collect();
        merge_ranges(&mut r);
        r
    }

    /// Bytes of physical memory covered by at least one PT_LOAD: the memory size of
    /// the dumped machine without double-counting the kernel-image PT_LOAD.
    pub fn covered_physical_bytes(&self) -> u64 {
        self.physical_ranges().iter().map(|r| r.end - r.start).sum()
    }

    /// The number of bytes the ELF occupies: the largest end of the ELF header,
    /// the program header table (and section header 0 for PN_XNUM), and every
    /// segment's file bytes (including the notes).
    pub fn extent(&self) -> u64 {
        let mut end = EHDR_SIZE as u64;
        end = end.max(self.header.e_phoff + self.phdrs.len() as u64 * PHDR_SIZE as u64);
        if self.header.e_phnum == PN_XNUM {
            end = end.max(self.header.e_shoff + SHDR_SIZE as u64);
        }
        for p in &self.phdrs {
            if p.p_filesz > 0 {
                end = end.max(p.p_offset + p.p_filesz);
            }
        }
        end
    }
}

/// Sorts ranges by start, then end. The one sort of the crate: each sort
/// instance costs the agent's static binary a few KB.
pub(crate) fn sort_ranges(r: &mut [Range<u64>]) {
    r.sort_by_key(|x| (x.start, x.end));
}

/// Sorts and merges overlapping or touching ranges in place.
pub(crate) fn merge_ranges(r: &mut Vec<Range<u64>>) {
    sort_ranges(r);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(r.len());
    for x in r.drain(..) {
        match out.last_mut() {
            Some(last) if x.start <= last.end => last.end = last.end.max(x.end),
            _ => out.push(x),
        }
    }
    *r = out;
}

/// Looks up `KEY` in VMCOREINFO text (`KEY=VALUE` lines).
pub fn vmcoreinfo_lookup<'a>(text: &'a [u8], key: &str) -> Option<&'a str> {
    text.split(|&b| b == b'\n').find_map(|line| {
        let line = std::str::from_utf8(line).ok()?;
        let (k, v) = line.split_once('=')?;
        (k == key).then_some(v)
    })
}

fn read<R: ReadAt + ?Sized>(
    src: &mut R,
    buf: &mut [u8],
    offset: u64,
    what: &'static str,
) -> Result<(), ElfError> {
    src.read_exact_at(buf, offset)
        .map_err(|source| ElfError::Io {
            what,
            offset,
            len: buf.len() as u64,
            source,
        })
}

/// The real number of program headers, resolving PN_XNUM through sh_info of
/// section header 0.
fn phnum<R: ReadAt + ?Sized>(src: &mut R, h: &ElfHeader, file_size: u64) -> Result<u64, ElfError> {
    if h.e_phnum != PN_XNUM {
        return Ok(h.e_phnum as u64);
    }
    if h.e_shoff == 0 {
        return Err(ElfError::XnumWithoutSection);
    }
    if h.e_shoff
        .checked_add(SHDR_SIZE as u64)
        .is_none_or(|e| e > file_size)
    {
        return Err(ElfError::SectionHeaderOutOfFile {
            offset: h.e_shoff,
            file_size,
        });
    }
    let mut sh = [0u8; SHDR_SIZE];
    read(src, &mut sh, h.e_shoff, "section header 0")?;
    Ok(be_u32(&sh, 44) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::error_chain as chain;

    #[test]
    fn an_io_error_is_named_once_in_a_chain() {
        struct Failing;
        impl ReadAt for Failing {
            fn read_exact_at(&mut self, _: &mut [u8], _: u64) -> io::Result<()> {
                Err(io::Error::other("medium error"))
            }
        }
        let e = Vmcore::read(&mut Failing, 1 << 20).unwrap_err();
        assert!(matches!(e, ElfError::Io { .. }), "{e:?}");
        // The text carries the cause (the agent and the tools print it).
        assert!(e.to_string().ends_with(": medium error"), "{e}");
        let printed = chain(&e);
        assert_eq!(printed.matches("medium error").count(), 1, "{printed}");
    }

    /// A small /proc/vmcore-shaped core: header + phdrs padded to 4096, notes padded
    /// to 4096, then the PT_LOAD data.
    fn sample(loads: &[(u64, u64)], cpus: usize) -> Vec<u8> {
        let mut notes = Vec::new();
        push_note(&mut notes, NT_PRPSINFO, b"CORE", &[0; 136]);
        for cpu in 0..cpus {
            let mut prstatus = [0u8; 336];
            prstatus[32..36].copy_from_slice(&(cpu as u32 + 1).to_be_bytes());
            push_note(&mut notes, NT_PRSTATUS, b"CORE", &prstatus);
            push_note(&mut notes, NT_PRFPREG, b"CORE", &[0; 136]);
            push_note(&mut notes, 0x305, b"LINUX", &[0; 4]);
        }
        push_note(
            &mut notes,
            NT_VMCOREINFO,
            b"VMCOREINFO",
            b"OSRELEASE=6.1.0\nPAGESIZE=4096\n\0",
        );
        notes.extend_from_slice(&[0; 12]);
        let phnum = 1 + loads.len();
        let notes_off = 4096u64;
        let mut data_off = notes_off + (notes.len() as u64).div_ceil(4096) * 4096;
        let mut phdrs = vec![ProgramHeader {
            p_type: PT_NOTE,
            p_offset: notes_off,
            p_filesz: notes.len() as u64,
            ..Default::default()
        }];
        for &(paddr, size) in loads {
            phdrs.push(ProgramHeader {
                p_type: PT_LOAD,
                p_flags: 7,
                p_offset: data_off,
                p_vaddr: paddr,
                p_paddr: paddr,
                p_filesz: size,
                p_memsz: size,
                p_align: 4096,
            });
            data_off += size;
        }
        let mut f = vec![0u8; data_off as usize];
        f[..64].copy_from_slice(&ElfHeader::s390_core(phnum as u16).to_bytes());
        for (i, p) in phdrs.iter().enumerate() {
            f[64 + 56 * i..64 + 56 * (i + 1)].copy_from_slice(&p.to_bytes());
        }
        f[4096..4096 + notes.len()].copy_from_slice(&notes);
        f
    }

    #[test]
    fn reads_a_core() {
        let f = sample(&[(0, 0x3000), (0x10000, 0x2000)], 3);
        let v = Vmcore::read(&mut &f[..], f.len() as u64).unwrap();
        assert_eq!(v.phdrs.len(), 3);
        assert_eq!(v.loads().count(), 2);
        assert_eq!(v.cpu_count().unwrap(), 3);
        let info = v.vmcoreinfo().unwrap().unwrap();
        assert_eq!(info, b"OSRELEASE=6.1.0\nPAGESIZE=4096\n");
        assert_eq!(vmcoreinfo_lookup(info, "OSRELEASE"), Some("6.1.0"));
        assert_eq!(vmcoreinfo_lookup(info, "PAGESIZE"), Some("4096"));
        assert_eq!(vmcoreinfo_lookup(info, "NOPE"), None);
        assert_eq!(v.memory_sum(), 0x5000);
        assert_eq!(v.covered_physical_bytes(), 0x5000);
        assert_eq!(v.physical_ranges(), vec![0..0x3000, 0x10000..0x12000]);
        assert_eq!(v.extent(), f.len() as u64);
        // Notes in order, matched by type whatever the name.
        let types: Vec<u32> = v.notes().map(|n| n.unwrap().n_type).collect();
        assert_eq!(
            types[..5],
            [NT_PRPSINFO, NT_PRSTATUS, NT_PRFPREG, 0x305, NT_PRSTATUS]
        );
        let prefix = v
            .notes()
            .map(|n| n.unwrap())
            .find(|n| n.n_type == 0x305)
            .unwrap();
        assert_eq!(prefix.name, b"LINUX");
        assert_eq!(prefix.desc.len(), 4);
        // Without notes.
        let h = Vmcore::read_headers(&mut &f[..], f.len() as u64).unwrap();
        assert_eq!(h.notes().count(), 0);
        assert_eq!(h.phdrs, v.phdrs);
    }

    #[test]
    fn through_seek_reader_with_base() {
        let f = sample(&[(0, 0x1000)], 1);
        let mut disk = vec![0xaau8; 8192];
        disk.extend_from_slice(&f);
        let mut r = SeekReader::with_base(std::io::Cursor::new(disk), 8192);
        let v = Vmcore::read(&mut r, f.len() as u64).unwrap();
        assert_eq!(v.cpu_count().unwrap(), 1);
    }

    #[test]
    fn overlapping_kernel_image_load() {
        // Identity range 0..0x8000 plus a kernel-image PT_LOAD at 0x2000..0x4000.
        let f = sample(&[(0, 0x8000), (0x2000, 0x2000)], 1);
        let v = Vmcore::read(&mut &f[..], f.len() as u64).unwrap();
        assert_eq!(v.memory_sum(), 0xa000);
        assert_eq!(v.covered_physical_bytes(), 0x8000);
    }

    #[test]
    fn pn_xnum() {
        let mut f = sample(&[(0, 0x1000)], 1);
        let mut h = ElfHeader::parse(&f[..64]).unwrap();
        h.e_phnum = PN_XNUM;
        h.e_shoff = f.len() as u64;
        h.e_shentsize = 64;
        h.e_shnum = 0;
        f[..64].copy_from_slice(&h.to_bytes());
        let mut sh = [0u8; 64];
        sh[44..48].copy_from_slice(&2u32.to_be_bytes());
        f.extend_from_slice(&sh);
        let v = Vmcore::read(&mut &f[..], f.len() as u64).unwrap();
        assert_eq!(v.phdrs.len(), 2);
        assert_eq!(v.extent(), f.len() as u64);
        h.e_shoff = 0;
        f[..64].copy_from_slice(&h.to_bytes());
        let e = Vmcore::read(&mut &f[..], f.len() as u64).unwrap_err();
        assert!(matches!(e, ElfError::XnumWithoutSection), "{e}");
    }

    #[test]
    fn honours_e_phoff() {
        // QEMU's dump-guest-memory puts the program headers elsewhere.
        let f = sample(&[(0, 0x1000)], 1);
        let mut g = f.clone();
        let mut h = ElfHeader::parse(&g[..64]).unwrap();
        h.e_phoff = 192;
        g[..64].copy_from_slice(&h.to_bytes());
        g.copy_within(64..64 + 2 * 56, 192);
        g[64..192].fill(0);
        let v = Vmcore::read(&mut &g[..], g.len() as u64).unwrap();
        let w = Vmcore::read(&mut &f[..], f.len() as u64).unwrap();
        assert_eq!(v.phdrs, w.phdrs);
    }

    #[test]
    fn header_errors() {
        let f = sample(&[(0, 0x1000)], 1);
        let err = |g: &[u8]| {
            Vmcore::read(&mut &g[..], g.len() as u64)
                .unwrap_err()
                .to_string()
        };
        let mut g = f.clone();
        g[0] = 0;
        assert_eq!(
            err(&g),
            "not an ELF file: magic is 00454c46, expected 7f454c46 ('\\x7fELF')"
        );
        let mut g = f.clone();
        g[4] = 1;
        assert_eq!(err(&g), "ELF class is 1, expected 2 (ELFCLASS64)");
        let mut g = f.clone();
        g[5] = 1;
        assert_eq!(
            err(&g),
            "ELF data encoding is 1, expected 2 (big-endian, ELFDATA2MSB)"
        );
        let mut g = f.clone();
        g[17] = 2;
        assert_eq!(
            err(&g),
            "ELF type is 2, expected 4 (ET_CORE): not a core dump"
        );
        let mut g = f.clone();
        g[19] = 62;
        assert_eq!(
            err(&g),
            "ELF machine is 62, expected 22 (EM_S390): not an s390 dump"
        );
        assert_eq!(
            err(&f[..10]),
            "file is 10 bytes, smaller than an ELF header (64 bytes)"
        );
        // A file size larger than the source: the read fails with context.
        let e = Vmcore::read(&mut &f[..40], 64).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("reading ELF header (0x40 bytes at offset 0x0): "),
            "{e}"
        );
    }

    #[test]
    fn phdr_errors() {
        let f = sample(&[(0, 0x1000), (0x1000, 0x1000), (0x2000, 0x1000)], 1);
        // Truncated file: last PT_LOAD (program header 3) extends past the end.
        let short = &f[..f.len() - 1];
        let e = Vmcore::read(&mut &short[..], short.len() as u64).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "program header 3 extends past end of file: offset {:#x} + size 0x1000 > file size {:#x}",
                f.len() - 0x1000,
                short.len()
            )
        );
        let e = Vmcore::read(&mut &f[..], 100).unwrap_err();
        assert_eq!(
            e.to_string(),
            "program header table extends past end of file: offset 0x40 + 4 x 56 bytes > file size 0x64"
        );
        let mut g = f.clone();
        let mut p = ProgramHeader::parse(&g[64 + 56..]);
        p.p_memsz = 0x800;
        g[64 + 56..64 + 112].copy_from_slice(&p.to_bytes());
        let e = Vmcore::read(&mut &g[..], g.len() as u64).unwrap_err();
        assert_eq!(
            e.to_string(),
            "program header 1 (PT_LOAD) has p_filesz 0x1000 > p_memsz 0x800"
        );
        let mut g = f.clone();
        g[57] = 0; // e_phnum = 0
        g[56] = 0;
        assert!(matches!(
            Vmcore::read(&mut &g[..], g.len() as u64),
            Err(ElfError::NoPhdrs)
        ));
    }

    #[test]
    fn note_errors() {
        let mut notes = Vec::new();
        push_note(&mut notes, 1, b"CORE", &[1; 8]);
        let it: Vec<_> = NoteIter::new(&notes, 0, 0x1000).collect();
        assert_eq!(it.len(), 1);
        // descsz larger than the segment
        let mut bad = notes.clone();
        bad[4..8].copy_from_slice(&100u32.to_be_bytes());
        let r: Vec<_> = NoteIter::new(&bad, 2, 0x1000).collect();
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].as_ref().unwrap_err().to_string(),
            "malformed note at file offset 0x1000 (PT_NOTE program header 2): descriptor extends past the end of the PT_NOTE segment"
        );
        // Garbage tail shorter than a header.
        let mut tail = notes.clone();
        tail.extend_from_slice(&[1, 2, 3]);
        let r: Vec<_> = NoteIter::new(&tail, 0, 0).collect();
        assert!(r[0].is_ok());
        assert!(
            r[1].as_ref()
                .unwrap_err()
                .to_string()
                .contains("segment ends inside a note header")
        );
        // Zero padding and the empty terminating note end the iteration.
        let mut pad = notes.clone();
        pad.extend_from_slice(&[0; 3]);
        assert_eq!(NoteIter::new(&pad, 0, 0).count(), 1);
        let mut term = notes.clone();
        term.extend_from_slice(&[0; 12]);
        push_note(&mut term, 1, b"CORE", &[1; 8]);
        assert_eq!(NoteIter::new(&term, 0, 0).count(), 1);
    }

    #[test]
    fn push_note_layout() {
        let mut n = Vec::new();
        push_note(&mut n, 0x305, b"LINUX", &[1, 2, 3, 4, 5]);
        assert_eq!(&n[0..12], &[0, 0, 0, 6, 0, 0, 0, 5, 0, 0, 3, 5]);
        assert_eq!(&n[12..20], b"LINUX\0\0\0");
        assert_eq!(&n[20..28], &[1, 2, 3, 4, 5, 0, 0, 0]);
        let parsed: Vec<_> = NoteIter::new(&n, 0, 0).map(|x| x.unwrap()).collect();
        assert_eq!(
            parsed,
            vec![Note {
                n_type: 0x305,
                name: b"LINUX",
                desc: &[1, 2, 3, 4, 5]
            }]
        );
    }

    #[test]
    fn header_round_trip() {
        let h = ElfHeader {
            e_entry: 5,
            e_flags: 9,
            e_shoff: 77,
            ..ElfHeader::s390_core(3)
        };
        assert_eq!(ElfHeader::parse(&h.to_bytes()).unwrap(), h);
        let p = ProgramHeader {
            p_type: 1,
            p_flags: 7,
            p_offset: 1,
            p_vaddr: 2,
            p_paddr: 3,
            p_filesz: 4,
            p_memsz: 5,
            p_align: 6,
        };
        assert_eq!(ProgramHeader::parse(&p.to_bytes()), p);
        assert_eq!(&h.to_bytes()[..8], b"\x7fELF\x02\x02\x01\x00");
    }
}
