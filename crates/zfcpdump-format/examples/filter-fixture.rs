//! `filter-fixture DUMP OUT FIRST_PFN PAGES`: trims a real byte-exact dump to
//! a fixture for the page classifier's tests: every page the classifier
//! reads (lowcore, os_info, page tables, mem_section, the struct pages of
//! the sample) as PT_LOADs, the sample's own pages as a zero-filled PT_LOAD
//! tail, the dump's notes; and OUT.classes with the classes it found at
//! level 31 ("first_pfn pages class" runs). The crash lab checks the same
//! classification against makedumpfile on the whole dump.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use zfcpdump_format::PAGE_SIZE;
use zfcpdump_format::elf::{
    EHDR_SIZE, ElfHeader, PHDR_SIZE, PT_LOAD, PT_NOTE, ProgramHeader, ReadAt, Vmcore,
};
use zfcpdump_format::filter::{self, DumpLevel, PhysRead, VmcorePhys};

struct F(File);
impl ReadAt for F {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
}

/// Records the pages every read touches.
struct Rec<'a> {
    inner: VmcorePhys<'a, F>,
    pages: BTreeSet<u64>,
}

impl PhysRead for Rec<'_> {
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> io::Result<()> {
        let last = (paddr + buf.len() as u64 - 1) / PAGE_SIZE;
        self.pages.extend(paddr / PAGE_SIZE..=last);
        self.inner.read_phys(paddr, buf)
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let [_, dump, out, first, pages] = &a[..] else {
        eprintln!("usage: filter-fixture DUMP OUT FIRST_PFN PAGES");
        std::process::exit(2);
    };
    let (first, pages): (u64, u64) = (first.parse().unwrap(), pages.parse().unwrap());
    let mut f = F(File::open(dump).unwrap());
    let size = f.0.metadata().unwrap().len();
    let vm = Vmcore::read(&mut f, size).unwrap();
    let notes: Vec<u8> = {
        let n = vm.phdrs.iter().find(|p| p.p_type == PT_NOTE).unwrap();
        let mut b = vec![0; n.p_filesz as usize];
        f.0.read_exact_at(&mut b, n.p_offset).unwrap();
        b
    };
    let mut src = F(f.0.try_clone().unwrap());
    let mut rec = Rec {
        inner: VmcorePhys::new(&vm, &mut src),
        pages: BTreeSet::new(),
    };
    let level = DumpLevel::new(31).unwrap();
    let mut pf = filter::prepare(&vm, &mut rec, level, 1).unwrap();
    // Only the sample's struct pages, not the rest of the window that the
    // filter reads (the tests' reads of those fail, and their pages are
    // kept, outside the sample).
    let mut pages_read = rec.pages.clone();
    let sample = first..first + pages;
    for r in pf.map().pieces(sample.clone()) {
        let end = r.paddr + (r.end_pfn - r.first_pfn) * pf.map().page_size;
        pages_read.extend(r.paddr / PAGE_SIZE..end.div_ceil(PAGE_SIZE));
    }
    let mut classes = vec![0u8; pages as usize];
    pf.fill(&mut rec, first, &mut classes);

    // Runs of recorded pages (with their bytes) and of the sample's other
    // pages (memory without file bytes: zeros), in address order.
    let mut runs: Vec<(u64, u64, bool)> = Vec::new();
    let all: BTreeSet<u64> = pages_read.iter().copied().chain(sample.clone()).collect();
    for p in all {
        let data = pages_read.contains(&p);
        match runs.last_mut() {
            Some((s, n, d)) if *s + *n == p && *d == data => *n += 1,
            _ => runs.push((p, 1, data)),
        }
    }
    let phnum = 1 + runs.len();
    let notes_at = (EHDR_SIZE + PHDR_SIZE * phnum) as u64;
    let mut data_at = (notes_at + notes.len() as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let mut phdrs = vec![ProgramHeader {
        p_type: PT_NOTE,
        p_flags: 0,
        p_offset: notes_at,
        p_vaddr: 0,
        p_paddr: 0,
        p_filesz: notes.len() as u64,
        p_memsz: notes.len() as u64,
        p_align: 0,
    }];
    let load = |paddr: u64, offset: u64, filesz: u64, memsz: u64| ProgramHeader {
        p_type: PT_LOAD,
        p_flags: 7,
        p_offset: offset,
        p_vaddr: paddr,
        p_paddr: paddr,
        p_filesz: filesz,
        p_memsz: memsz,
        p_align: PAGE_SIZE,
    };
    for &(p, n, data) in &runs {
        let filesz = if data { n * PAGE_SIZE } else { 0 };
        phdrs.push(load(p * PAGE_SIZE, data_at, filesz, n * PAGE_SIZE));
        data_at += filesz;
    }
    let mut o = Vec::new();
    o.extend_from_slice(&ElfHeader::s390_core(phnum as u16).to_bytes());
    for p in &phdrs {
        o.extend_from_slice(&p.to_bytes());
    }
    o.extend_from_slice(&notes);
    o.resize(phdrs[1].p_offset as usize, 0);
    let mut mem = VmcorePhys::new(&vm, &mut f);
    for &(p, n, _) in runs.iter().filter(|r| r.2) {
        let mut b = vec![0u8; (n * PAGE_SIZE) as usize];
        mem.read_phys(p * PAGE_SIZE, &mut b).unwrap();
        o.extend_from_slice(&b);
    }
    std::fs::write(out, &o).unwrap();

    let mut text = format!(
        "# classes at level 31 of pfns {first}..{} ({}): first_pfn pages class\n",
        first + pages,
        dump.rsplit('/').next().unwrap()
    );
    let mut i = 0;
    while i < classes.len() {
        let c = classes[i];
        let start = i;
        while i < classes.len() && classes[i] == c {
            i += 1;
        }
        text.push_str(&format!("{} {} {c}\n", first + start as u64, i - start));
    }
    File::create(format!("{out}.classes"))
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    eprintln!(
        "{out}: {} bytes, {} recorded pages in {} runs, sample {first}+{pages}",
        o.len(),
        pages_read.len(),
        runs.len()
    );
}
