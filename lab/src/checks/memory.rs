//! Physical memory as an ELF core describes it, and comparisons of it: a
//! dump's memory with the vmcore's, and what crash read with the vmcore's.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use zfcpdump_format::PAGE_SIZE;
use zfcpdump_format::elf::{NoteIter, PT_NOTE, ProgramHeader, SeekReader, Vmcore};
use zfcpdump_format::filter::note::{NAME, NOTE_SIZE, NT_FILTER};
use zfcpdump_format::filtered::LOWCORE_SIZE;

use super::files::CHUNK;
use super::fmt_ranges;

/// Whether `file` (what crash wrote) holds the memory `range` of `mem`.
pub(crate) fn differs_from_memory(
    mem: &PhysMem,
    range: Range<u64>,
    file: &Path,
) -> Result<Option<String>> {
    let f = match File::open(file) {
        Ok(f) => f,
        Err(e) => return Ok(Some(format!("crash wrote no {} ({e})", file.display()))),
    };
    let len = f.metadata()?.len();
    if len != range.end - range.start {
        return Ok(Some(format!(
            "crash wrote {len} bytes, not {}",
            range.end - range.start
        )));
    }
    let (mut want, mut got) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut at = range.start;
    while at < range.end {
        let n = ((range.end - at) as usize).min(CHUNK);
        mem.read(at, &mut want[..n])?;
        f.read_exact_at(&mut got[..n], at - range.start)?;
        if let Some(i) = want[..n].iter().zip(&got[..n]).position(|(x, y)| x != y) {
            return Ok(Some(format!(
                "physical byte {:#x} reads {:#04x}, the vmcore has {:#04x}",
                at + i as u64,
                got[i],
                want[i]
            )));
        }
        at += n as u64;
    }
    Ok(None)
}

/// What [`compare_memory`] found.
#[derive(Debug, PartialEq)]
pub(crate) struct MemoryCheck {
    /// Physical bytes compared: the original's PT_LOADs.
    pub(crate) memory: u64,
    /// The original's PT_LOADs.
    pub(crate) ranges: usize,
    /// The dump's PT_LOADs.
    pub(crate) pieces: usize,
    /// The dump's PT_LOADs with p_filesz < p_memsz.
    pub(crate) tails: usize,
    /// Bytes of those tails: memory the dump does not store.
    pub(crate) elided: u64,
    /// All-zero pages of the original outside the lowcore.
    pub(crate) zero_pages: u64,
    pub(crate) notes_bytes: usize,
    pub(crate) cpus: usize,
}

/// Physical memory as an ELF core describes it, read through its PT_LOADs
/// with bounded reads; bytes past a PT_LOAD's p_filesz read as zeros.
pub(crate) struct PhysMem {
    path: PathBuf,
    file: File,
    vm: Vmcore,
    /// The PT_LOADs with memory, sorted by p_paddr, not overlapping.
    loads: Vec<ProgramHeader>,
}

impl PhysMem {
    pub(crate) fn open(path: &Path) -> Result<PhysMem> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let size = file.metadata()?.len();
        let vm = Vmcore::read(&mut SeekReader::new(&file), size)
            .with_context(|| format!("{}", path.display()))?;
        let mut loads: Vec<ProgramHeader> = vm.loads().filter(|p| p.p_memsz > 0).copied().collect();
        loads.sort_by_key(|p| p.p_paddr);
        for w in loads.windows(2) {
            ensure!(
                w[0].p_paddr + w[0].p_memsz <= w[1].p_paddr,
                "{}: PT_LOADs overlap at physical {:#x}",
                path.display(),
                w[1].p_paddr
            );
        }
        Ok(PhysMem {
            path: path.to_path_buf(),
            file,
            vm,
            loads,
        })
    }

    /// The PT_LOAD that holds physical address `a`.
    fn load_at(&self, a: u64) -> Option<&ProgramHeader> {
        let i = self.loads.partition_point(|p| p.p_paddr <= a);
        self.loads[..i].last().filter(|p| a - p.p_paddr < p.p_memsz)
    }

    /// Fills `buf` with the memory at physical address `addr`; an address
    /// that no PT_LOAD covers is an error (crash reads a gap as missing).
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let a = addr + done as u64;
            let p = self.load_at(a).with_context(|| {
                format!(
                    "{}: no PT_LOAD holds physical address {a:#x}",
                    self.path.display()
                )
            })?;
            let rel = a - p.p_paddr;
            let left = (buf.len() - done) as u64;
            let out = if rel < p.p_filesz {
                let out = &mut buf[done..done + left.min(p.p_filesz - rel) as usize];
                self.file
                    .read_exact_at(out, p.p_offset + rel)
                    .with_context(|| format!("cannot read {}", self.path.display()))?;
                out
            } else {
                let out = &mut buf[done..done + left.min(p.p_memsz - rel) as usize];
                out.fill(0);
                out
            };
            done += out.len();
        }
        Ok(())
    }

    /// The PT_NOTE segments' bytes, in file order (a few KiB per CPU).
    fn notes(&self) -> Result<Vec<Vec<u8>>> {
        self.vm
            .phdrs
            .iter()
            .filter(|p| p.p_type == PT_NOTE)
            .map(|p| {
                let mut b = vec![0u8; p.p_filesz as usize];
                self.file
                    .read_exact_at(&mut b, p.p_offset)
                    .with_context(|| format!("cannot read {}", self.path.display()))?;
                Ok(b)
            })
            .collect()
    }
}

/// Reads both ELF cores with zfcpdump_format's reader and compares the
/// memory of every PT_LOAD of `original` with what `dump` describes at the
/// same physical addresses, `CHUNK` bytes at a time, tails past p_filesz
/// read as zeros; also the physical ranges, p_vaddr - p_paddr of every
/// PT_LOAD of the dump, and the notes. The first difference is the error.
pub(crate) fn compare_memory(original: &Path, dump: &Path) -> Result<MemoryCheck> {
    let (a, b) = open_same_ranges(original, dump, "dump")?;
    for q in &b.loads {
        let p = a
            .load_at(q.p_paddr)
            .filter(|p| q.p_paddr + q.p_memsz <= p.p_paddr + p.p_memsz)
            .with_context(|| {
                format!(
                    "the dump's PT_LOAD at physical {:#x}..{:#x} is not inside one of the \
                     vmcore's",
                    q.p_paddr,
                    q.p_paddr + q.p_memsz
                )
            })?;
        ensure!(
            q.p_vaddr.wrapping_sub(q.p_paddr) == p.p_vaddr.wrapping_sub(p.p_paddr),
            "the dump's PT_LOAD at physical {:#x} has p_vaddr {:#x}; the vmcore's maps it to \
             {:#x}",
            q.p_paddr,
            q.p_vaddr,
            p.p_vaddr.wrapping_add(q.p_paddr - p.p_paddr)
        );
    }
    let notes = a.notes()?;
    let mut theirs = b.notes()?;
    // A filtered dump's PT_NOTE ends with the agent's filter note.
    if let Some(last) = theirs.last_mut() {
        let at = last.len().saturating_sub(NOTE_SIZE as usize);
        let filter = NoteIter::new(&last[at..], 0, 0)
            .next()
            .and_then(|n| n.ok())
            .is_some_and(|n| n.name == NAME && n.n_type == NT_FILTER);
        if filter && last.len() >= NOTE_SIZE as usize {
            last.truncate(at);
        }
    }
    ensure!(notes == theirs, "the dump's notes differ from the vmcore's");
    let cpus = a.vm.cpu_count()?;
    let zero_pages = same_memory(&a, &b)?;
    let tail = |p: &&ProgramHeader| p.p_filesz < p.p_memsz;
    Ok(MemoryCheck {
        memory: a.loads.iter().map(|p| p.p_memsz).sum(),
        ranges: a.loads.len(),
        pieces: b.loads.len(),
        tails: b.loads.iter().filter(tail).count(),
        elided: b
            .loads
            .iter()
            .map(|p| p.p_memsz - p.p_filesz)
            .sum::<u64>()
            .saturating_sub(a.loads.iter().map(|p| p.p_memsz - p.p_filesz).sum()),
        zero_pages,
        notes_bytes: notes.iter().map(Vec::len).sum(),
        cpus,
    })
}

/// Only the memory of `copy` against the vmcore's: the same physical
/// ranges, every byte equal. For a reader's own rewrite of a dump (zgetdump's
/// copy), whose notes and segment layout are its own. Returns the bytes
/// compared.
pub(crate) fn compare_memory_only(original: &Path, copy: &Path) -> Result<u64> {
    let (a, b) = open_same_ranges(original, copy, "copy")?;
    same_memory(&a, &b)?;
    Ok(a.vm.covered_physical_bytes())
}

/// Both cores, after checking that their PT_LOADs cover the same physical
/// ranges (`what` names the second in the error).
fn open_same_ranges(original: &Path, other: &Path, what: &str) -> Result<(PhysMem, PhysMem)> {
    let (a, b) = (PhysMem::open(original)?, PhysMem::open(other)?);
    let (ra, rb) = (a.vm.physical_ranges(), b.vm.physical_ranges());
    ensure!(
        ra == rb,
        "the {what}'s PT_LOADs cover {}, the vmcore's {}",
        fmt_ranges(&rb),
        fmt_ranges(&ra)
    );
    Ok((a, b))
}

/// Every byte of `a`'s PT_LOADs read equal through `b`; returns the number
/// of all-zero pages outside the lowcore.
fn same_memory(a: &PhysMem, b: &PhysMem) -> Result<u64> {
    let (mut ba, mut bb) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut zero_pages = 0;
    for p in &a.loads {
        let mut off = 0;
        while off < p.p_memsz {
            let n = (p.p_memsz - off).min(CHUNK as u64) as usize;
            let at = p.p_paddr + off;
            a.read(at, &mut ba[..n])?;
            b.read(at, &mut bb[..n])?;
            if let Some(i) = ba[..n].iter().zip(&bb[..n]).position(|(x, y)| x != y) {
                bail!(
                    "memory differs at physical address {:#x}: vmcore {:#04x}, dump {:#04x}",
                    at + i as u64,
                    ba[i],
                    bb[i]
                );
            }
            for (i, page) in ba[..n].chunks_exact(PAGE_SIZE as usize).enumerate() {
                let pa = at + i as u64 * PAGE_SIZE;
                if pa >= LOWCORE_SIZE && pa % PAGE_SIZE == 0 && page.iter().all(|&x| x == 0) {
                    zero_pages += 1;
                }
            }
            off += n as u64;
        }
    }
    Ok(zero_pages)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// An s390x core: one PT_NOTE, then PT_LOADs `(paddr, memsz, data)`
    /// (`data` is the stored part, page-aligned in the file).
    fn core(loads: &[(u64, u64, &[u8])]) -> Vec<u8> {
        use zfcpdump_format::elf::{ElfHeader, NT_PRSTATUS, PT_LOAD, push_note};
        let mut notes = Vec::new();
        push_note(&mut notes, NT_PRSTATUS, b"CORE", &[7u8; 336]);
        let page = PAGE_SIZE as usize;
        let mut phdrs = vec![ProgramHeader {
            p_type: PT_NOTE,
            p_offset: page as u64,
            p_filesz: notes.len() as u64,
            ..Default::default()
        }];
        let mut off = 2 * page;
        for &(paddr, memsz, data) in loads {
            phdrs.push(ProgramHeader {
                p_type: PT_LOAD,
                p_offset: off as u64,
                p_vaddr: paddr,
                p_paddr: paddr,
                p_filesz: data.len() as u64,
                p_memsz: memsz,
                ..Default::default()
            });
            off += data.len().next_multiple_of(page);
        }
        let mut f = ElfHeader::s390_core(phdrs.len() as u16).to_bytes().to_vec();
        for p in &phdrs {
            f.extend_from_slice(&p.to_bytes());
        }
        f.resize(page, 0);
        f.extend_from_slice(&notes);
        f.resize(2 * page, 0);
        for &(_, _, data) in loads {
            f.extend_from_slice(data);
            f.resize(f.len().next_multiple_of(page), 0);
        }
        f
    }

    #[test]
    fn memory_of_an_elided_core_compares_with_zero_tails() {
        let page = PAGE_SIZE as usize;
        // Pages: 0 and 1 (lowcore) written, 2 zero, 3 written, 4 zero.
        let mut mem = vec![0u8; 5 * page];
        for p in [0, 1, 3] {
            mem[p * page..(p + 1) * page].fill(p as u8 + 1);
        }
        let d = tempfile::tempdir().unwrap();
        let (orig, good) = (d.path().join("orig"), d.path().join("good"));
        fs::write(&orig, core(&[(0, 5 * PAGE_SIZE, &mem)])).unwrap();
        let p = PAGE_SIZE;
        let pieces = [
            (0, 3 * p, &mem[..2 * page]),
            (3 * p, 2 * p, &mem[3 * page..4 * page]),
        ];
        fs::write(&good, core(&pieces)).unwrap();
        let m = compare_memory(&orig, &good).unwrap();
        assert_eq!(
            m,
            MemoryCheck {
                memory: 5 * p,
                ranges: 1,
                pieces: 2,
                tails: 2,
                elided: 2 * p,
                zero_pages: 2,
                notes_bytes: 356,
                cpus: 1,
            }
        );
        // The byte-exact core is equal too, and elides nothing.
        let m = compare_memory(&orig, &orig).unwrap();
        assert_eq!((m.elided, m.tails, m.zero_pages), (0, 0, 2));

        let bad = d.path().join("bad");
        // A stored byte differs.
        let mut other = mem[3 * page..4 * page].to_vec();
        other[9] ^= 1;
        fs::write(&bad, core(&[pieces[0], (3 * p, 2 * p, &other)])).unwrap();
        let e = compare_memory(&orig, &bad).unwrap_err().to_string();
        assert!(e.contains("physical address 0x3009"), "{e}");
        // A page that is not zero left out as a tail.
        fs::write(&bad, core(&[(0, 5 * p, &mem[..3 * page])])).unwrap();
        let e = compare_memory(&orig, &bad).unwrap_err().to_string();
        assert!(e.contains("physical address 0x3000"), "{e}");
        // A gap where page 2 was: crash would read it as missing.
        fs::write(&bad, core(&[(0, 2 * p, &mem[..2 * page]), pieces[1]])).unwrap();
        let e = compare_memory(&orig, &bad).unwrap_err().to_string();
        assert!(e.contains("cover [0x0..0x2000, 0x3000..0x5000]"), "{e}");
    }
}
