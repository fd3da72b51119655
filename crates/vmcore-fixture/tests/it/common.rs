//! An independent, minimal view of a generated file through the `object`
//! crate, so the tests don't trust the generator's own layout code.
#![allow(dead_code)] // each test binary uses a different part

use object::BigEndian;
use object::elf::{FileHeader64, PT_LOAD, PT_NOTE};
use object::read::elf::{FileHeader, ProgramHeader};
use vmcore_fixture::{Spec, write_vmcore};

pub const PAGE: u64 = 4096;

#[derive(Debug, Clone, PartialEq)]
pub struct Phdr {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub name: String,
    pub n_type: u32,
    pub desc: Vec<u8>,
}

pub fn generate(spec: &Spec) -> Vec<u8> {
    let mut out = Vec::new();
    let n = write_vmcore(spec, &mut out).expect("write_vmcore");
    assert_eq!(n, out.len() as u64, "returned length");
    out
}

pub fn header(data: &[u8]) -> &FileHeader64<BigEndian> {
    FileHeader64::<BigEndian>::parse(data).expect("ELF header parses")
}

pub fn phdrs(data: &[u8]) -> Vec<Phdr> {
    let h = header(data);
    let e = h.endian().expect("endian");
    h.program_headers(e, data)
        .expect("program headers")
        .iter()
        .map(|p| Phdr {
            p_type: p.p_type(e),
            flags: p.p_flags(e),
            offset: p.p_offset(e),
            vaddr: p.p_vaddr(e),
            paddr: p.p_paddr(e),
            filesz: p.p_filesz(e),
            memsz: p.p_memsz(e),
            align: p.p_align(e),
        })
        .collect()
}

pub fn notes(data: &[u8]) -> Vec<Note> {
    let h = header(data);
    let e = h.endian().expect("endian");
    let mut out = Vec::new();
    for p in h.program_headers(e, data).unwrap() {
        if p.p_type(e) != PT_NOTE {
            continue;
        }
        let mut it = p.notes(e, data).unwrap().expect("PT_NOTE has notes");
        while let Some(n) = it.next().expect("note parses") {
            out.push(Note {
                name: String::from_utf8(n.name().to_vec()).unwrap(),
                n_type: n.n_type(e),
                desc: n.desc().to_vec(),
            });
        }
    }
    out
}

pub fn loads(data: &[u8]) -> Vec<Phdr> {
    phdrs(data)
        .into_iter()
        .filter(|p| p.p_type == PT_LOAD)
        .collect()
}

pub fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

pub fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}
