//! The filtered layout end to end: the agent writes an elided dump to a
//! zipl-style image, `zfcpdump-disk extract` writes it out, and readers that
//! share no code with the project (the `object` crate, and a Python script
//! using only the standard library) read the original memory back, with
//! zeros for the elided tails, without gaps, with the notes and lowcore
//! intact, and without a byte of an older dump.

use crate::common::*;
use object::read::elf::{ElfFile64, ProgramHeader as _};
use object::{BigEndian, Endianness};
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use vmcore_fixture::{KernelImage, PageKind, Spec, fill_memory, page_kind};
use zfcpdump_agent::disk::DumpTarget;
use zfcpdump_agent::{Summary, report, run, run_with};
use zfcpdump_disk::extract::extract;
use zfcpdump_disk::status::{State, inspect};
use zfcpdump_format::busy::BUSY_MARKER;
use zfcpdump_format::elf::NoteIter;
use zfcpdump_format::filter::note::{FilterNote, NAME, NOTE_SIZE, NT_FILTER};
use zfcpdump_format::filtered::{LOWCORE_SIZE, slots_for};

const PAGE: u64 = 4096;

/// The standard world's vmcore with half of its pages zero.
fn elided_spec() -> Spec {
    spec().zero_fraction(0.5)
}

fn config(w: &World, elide: bool) -> PathBuf {
    let p = w.dir.path().join("zfcpdump.conf");
    std::fs::write(&p, format!("zero_page_elision = {elide}\n")).unwrap();
    p
}

/// Runs the agent with elision on and an HSA of 2 MiB.
fn dump_elided(w: &World) -> Summary {
    let mut env = w.env();
    env.config = Some(config(w, true));
    env.hsa_size = Some(2 * MIB);
    let s = run(&env).unwrap_or_else(|e| panic!("{e}\n{}", env.log.captured()));
    let log = env.log.captured();
    assert_in_order(
        &log,
        &[
            "filtered layout: ",
            "busy marker written",
            "copy HSA-backed range",
            "HSA release (simulated",
            "copy notes ",
            "copy range ",
            "write ELF header block (last)",
            "(100%)",
            "filtered: dump level ",
        ],
    );
    s
}

fn extract_to(w: &World, name: &str) -> PathBuf {
    let out = w.dir.path().join(name);
    let n = extract(&w.image, &out).unwrap();
    assert_eq!(n, std::fs::metadata(&out).unwrap().len());
    out
}

/// One PT_LOAD as the `object` crate reads it, its memory zero-filled from
/// p_filesz to p_memsz.
struct Load {
    paddr: u64,
    vaddr: u64,
    filesz: u64,
    memory: Vec<u8>,
}

/// Reads an ELF core with the `object` crate: the PT_LOADs in table order,
/// and the bytes of the PT_NOTE segments.
fn read_with_object(path: &Path) -> (Vec<Load>, Vec<u8>, Vec<u32>) {
    let data = std::fs::read(path).unwrap();
    let elf = ElfFile64::<Endianness>::parse(&data[..]).expect("object parses the core");
    let e = elf.endian();
    assert_eq!(e, Endianness::Big);
    let mut loads = Vec::new();
    let mut notes = Vec::new();
    let mut note_types = Vec::new();
    for (i, ph) in elf.elf_program_headers().iter().enumerate() {
        match ph.p_type(e) {
            object::elf::PT_LOAD => {
                let file = ph.data(e, &data[..]).expect("segment inside the file");
                let memsz = ph.p_memsz(e);
                assert!(file.len() as u64 <= memsz);
                let mut memory = file.to_vec();
                memory.resize(memsz as usize, 0);
                loads.push(Load {
                    paddr: ph.p_paddr(e),
                    vaddr: ph.p_vaddr(e),
                    filesz: ph.p_filesz(e),
                    memory,
                });
            }
            object::elf::PT_NOTE => {
                assert_eq!(i, 0, "the PT_NOTE comes first");
                notes.extend_from_slice(ph.data(e, &data[..]).unwrap());
                let mut it = ph.notes(e, &data[..]).unwrap().unwrap();
                while let Some(n) = it.next().unwrap() {
                    note_types.push(n.n_type(e));
                }
            }
            t => panic!("unexpected segment type {t}"),
        }
    }
    let _ = BigEndian;
    (loads, notes, note_types)
}

/// Asserts that the pieces in `loads` tile `range` exactly (sorted by
/// physical address: contiguous, no overlap, no gap) with the given
/// virtual-minus-physical offset.
fn assert_tiles(loads: &[&Load], range: Range<u64>, vdelta: u64) {
    let mut pieces: Vec<&&Load> = loads.iter().collect();
    pieces.sort_by_key(|l| l.paddr);
    let mut at = range.start;
    for l in pieces {
        assert_eq!(l.paddr, at, "gap or overlap at physical {at:#x}");
        assert_eq!(l.vaddr.wrapping_sub(l.paddr), vdelta, "p_vaddr of {at:#x}");
        at += l.memory.len() as u64;
    }
    assert_eq!(at, range.end, "range {range:#x?} not covered");
}

/// Everything an elided dump of `spec` must read back as, judged from the
/// file at `elf` by the `object` crate. Returns the number of elided pages.
fn check_memory(spec: &Spec, elf: &Path, original: &Path) -> u64 {
    let (loads, notes, types) = read_with_object(elf);
    // Identity pieces tile the memory ranges; the kernel image's pieces tile
    // its own range with its own virtual base.
    let (kernel, identity): (Vec<&Load>, Vec<&Load>) = loads
        .iter()
        .partition(|l| spec.kernel_image_load.is_some() && l.vaddr != l.paddr);
    for &(start, size) in &spec.ranges {
        let inside: Vec<&Load> = identity
            .iter()
            .copied()
            .filter(|l| l.paddr >= start && l.paddr < start + size)
            .collect();
        assert_tiles(&inside, start..start + size, 0);
    }
    if let Some(k) = spec.kernel_image_load {
        assert_tiles(
            &kernel,
            k.paddr..k.paddr + k.size,
            k.vaddr.wrapping_sub(k.paddr),
        );
    }
    // The memory, page by page, is the original; elided pages are zero pages.
    let mut want = vec![0u8; PAGE as usize];
    let mut elided = 0;
    for l in &loads {
        for (i, got) in l.memory.chunks(PAGE as usize).enumerate() {
            let pa = l.paddr + i as u64 * PAGE;
            fill_memory(spec, pa, &mut want[..got.len()]);
            assert!(
                got == &want[..got.len()],
                "memory differs at physical {pa:#x}"
            );
            if (i as u64 * PAGE) >= l.filesz {
                elided += 1;
                assert_eq!(page_kind(spec, pa), PageKind::Zero, "{pa:#x} elided");
                assert!(pa >= LOWCORE_SIZE, "lowcore page {pa:#x} elided");
            }
        }
    }
    // The notes are the vmcore's, byte for byte, and then the filter note.
    let (_, orig_notes, orig_types) = read_with_object(original);
    let (notes, ours) = notes.split_at(notes.len() - NOTE_SIZE as usize);
    assert_eq!(notes, orig_notes);
    assert_eq!(&types[..types.len() - 1], orig_types);
    assert_eq!(types.last(), Some(&NT_FILTER));
    let note = NoteIter::new(ours, 0, 0).next().unwrap().unwrap();
    assert_eq!((note.name, note.n_type), (NAME, NT_FILTER));
    let f = FilterNote::parse(note.desc).unwrap();
    assert_eq!(f.used.bits(), 1, "{f:?}");
    assert_eq!(f.excluded_total(), f.excluded[0], "zero pages only: {f:?}");
    assert_eq!(f.written + f.excluded[0], f.total, "{f:?}");
    let types = &types[..types.len() - 1];
    assert_eq!(
        types.iter().filter(|&&t| t == 1).count(),
        spec.cpus as usize,
        "one NT_PRSTATUS per CPU"
    );
    elided
}

#[test]
fn elided_dump_extracts_to_the_original_memory() {
    let w = World::new(512, elided_spec());
    let before = w.snapshot();
    let s = dump_elided(&w);
    let st = s.filtered.expect("elision was used");
    assert!(st.elided > w.vmcore_len() / 4, "{st:?}");
    assert_eq!(st.zeros_written, 0);
    assert_eq!(s.bytes, st.file_size);
    assert!(s.bytes < w.vmcore_len() * 3 / 4);
    assert!(s.hsa_bytes > MIB, "HSA-backed parts were copied first");

    // zfcpdump-disk sees a complete, elided dump of the same machine.
    let r = inspect(&w.image).unwrap();
    let State::Complete(sum) = r.state else {
        panic!("status: {:?}", r.state)
    };
    assert!(sum.elided);
    let f = sum.filter.expect("the filter note");
    assert_eq!(f.used.bits(), 1);
    // Each physical page once: the kernel image's segment lies inside the
    // identity one and does not count.
    let orig = std::fs::File::open(&w.vmcore).unwrap();
    let vm = zfcpdump_format::elf::Vmcore::read(
        &mut zfcpdump_format::elf::SeekReader::new(&orig),
        w.vmcore_len(),
    )
    .unwrap();
    assert_eq!(f.total * PAGE, vm.covered_physical_bytes(), "{f:?}");
    assert!(f.excluded[0] * PAGE <= st.elided, "{f:?} {st:?}");
    assert!(f.excluded[0] > 0);
    assert_eq!(sum.extent, st.file_size);
    assert_eq!(sum.cpus, 3);
    assert_eq!(sum.phnum as u32, st.phnum);
    assert!(st.phnum < slots_for(w.spec.memory_size() + MIB + 3 * PAGE));
    assert_eq!(
        sum.ranges,
        vec![0..4 * MIB, 8 * MIB..10 * MIB],
        "no gaps in physical memory"
    );

    let out = extract_to(&w, "elided.elf");
    let elided = check_memory(&w.spec, &out, &w.vmcore);
    assert_eq!(elided * PAGE, st.elided);

    // Only the written ELF and the checksum changed on the disk.
    let start = w.layout.dump_area().start;
    let mut allowed = w.allowed_after_dump();
    allowed[0] = start..start + st.file_size;
    assert_same_except(&before, &w.image, &allowed);
}

#[test]
fn no_byte_of_an_older_dump_is_read_as_memory() {
    // First a byte-exact dump of another machine fills the dump area with
    // non-zero memory; then the elided dump. Its extract must equal that of
    // the same elided dump on a fresh disk, byte for byte.
    let w = World::new(512, elided_spec());
    let older = spec().seed(99).zero_fraction(0.0);
    let older_path = w.dir.path().join("older.vmcore");
    write_vmcore(&older, &older_path);
    let mut env = w.env();
    env.source = Some(older_path);
    run(&env).unwrap();
    dump_elided(&w);
    let out = extract_to(&w, "over-old.elf");

    let fresh = World::new(512, elided_spec());
    dump_elided(&fresh);
    let clean = extract_to(&fresh, "fresh.elf");
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&clean).unwrap(),
        "the extracted dump depends on what was on the disk before"
    );
    check_memory(&w.spec, &out, &w.vmcore);
}

#[test]
fn full_program_header_table_writes_the_remaining_zero_runs() {
    // 13 MiB with a zero page in every other page or so: about 1250 zero
    // runs, more than the 1096 entries reserved for this size.
    let spec = Spec::small()
        .cpus(2)
        .ranges(vec![(0, 13 * MIB)])
        .zero_fraction(0.5)
        .zero_run_block_pages(2)
        .seed(7);
    let w = World::new(512, spec);
    let s = dump_elided(&w);
    let st = s.filtered.unwrap();
    let slots = slots_for(13 * MIB);
    assert_eq!(slots, 1096);
    assert!(st.zeros_written > 0, "{st:?}");
    assert!(st.phnum <= slots && st.phnum >= slots - 2, "{st:?}");
    // One piece per elided run, plus the first piece of each of the two parts
    // (the HSA boundary splits the range), less a run that ends a part.
    assert!(
        (st.runs..=st.runs + 2).contains(&(st.loads as u64)),
        "{st:?}"
    );
    let out = extract_to(&w, "full.elf");
    let elided = check_memory(&w.spec, &out, &w.vmcore);
    assert_eq!(elided * PAGE, st.elided);
    // Every zero page is either elided or written.
    let fx = vmcore_fixture::Fixture::new(&w.spec).unwrap();
    assert_eq!(fx.zero_pages() * PAGE, st.elided + st.zeros_written);
}

#[test]
fn independent_python_reader_sees_the_original_memory() {
    test_tier::require(
        Command::new("python3").arg("--version").output().is_ok(),
        "python3",
    );
    let w = World::new(4096, elided_spec());
    dump_elided(&w);
    let out = extract_to(&w, "py.elf");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/elfmem.py");
    let mem = w.dir.path().join("memory.bin");
    let k = w.spec.kernel_image_load.unwrap();
    let ranges: Vec<String> = w
        .spec
        .ranges
        .iter()
        .map(|&(s, n)| format!("{s:x}:{:x}", s + n))
        .collect();
    let o = Command::new("python3")
        .arg(&script)
        .arg(&out)
        .arg(&mem)
        .args(&ranges)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{}{text}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Elided tails exist and the note types are those of 3 CPUs.
    assert!(
        text.lines().any(|l| {
            let f = |k: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
            };
            l.starts_with("LOAD ") && f("filesz=") < f("memsz=")
        }),
        "{text}"
    );
    let notes = text.lines().find(|l| l.starts_with("NOTES ")).unwrap();
    assert_eq!(notes.split_whitespace().filter(|&t| t == "0x1").count(), 3);
    // The physical memory of every range, as crash would read it.
    let got = std::fs::read(&mem).unwrap();
    let mut at = 0usize;
    for &(start, size) in &w.spec.ranges {
        let mut want = vec![0u8; size as usize];
        fill_memory(&w.spec, start, &mut want);
        let g = &got[at..at + size as usize];
        for (i, (a, b)) in g.chunks(4096).zip(want.chunks(4096)).enumerate() {
            assert!(a == b, "page at physical {:#x}", start + i as u64 * 4096);
        }
        at += size as usize;
    }
    assert_eq!(at, got.len());
    // The kernel image's range reads the same physical memory.
    let o = Command::new("python3")
        .arg(&script)
        .arg(&out)
        .arg(&mem)
        .arg(format!("{:x}:{:x}", k.paddr, k.paddr + k.size))
        .output()
        .unwrap();
    assert!(o.status.success());
    let mut want = vec![0u8; k.size as usize];
    fill_memory(&w.spec, k.paddr, &mut want);
    assert!(std::fs::read(&mem).unwrap() == want);
}

#[test]
fn elision_off_is_byte_exact() {
    let w = World::new(512, elided_spec());
    let before = w.snapshot();
    let mut env = w.env();
    env.config = Some(config(&w, false));
    env.hsa_size = Some(2 * MIB);
    let s = run(&env).unwrap();
    assert!(s.filtered.is_none());
    assert_eq!(s.bytes, w.vmcore_len());
    assert_dump_is_vmcore(&w);
    assert_same_except(&before, &w.image, &w.allowed_after_dump());
    let log = env.log.captured();
    assert!(!log.contains("elision"), "{log}");
    assert!(
        log.contains("copy ELF header block (last) 0x0..0x1000"),
        "{log}"
    );
}

#[test]
fn memory_without_zero_pages_and_a_kernel_image_at_the_hsa_boundary() {
    // No zero page at all: the elided dump is the memory plus headers; the
    // kernel image straddles the HSA boundary.
    let spec = spec()
        .zero_fraction(0.0)
        .kernel_image_load(Some(KernelImage {
            paddr: MIB + MIB / 2,
            vaddr: 0x0000_03ff_e000_0000,
            size: MIB,
        }));
    let w = World::new(512, spec);
    let s = dump_elided(&w);
    let st = s.filtered.unwrap();
    assert_eq!((st.elided, st.runs), (0, 0));
    // Note, the kernel image and the first range in two parts each (HSA
    // boundary at 2 MiB), the second range.
    assert_eq!(st.phnum, 1 + 2 + 2 + 1);
    let out = extract_to(&w, "dense.elf");
    assert_eq!(check_memory(&w.spec, &out, &w.vmcore), 0);
}

/// Fails every write into `fail` (disk offsets) with EIO.
struct Faulty {
    file: File,
    fail: Range<u64>,
}

impl DumpTarget for Faulty {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if offset + buf.len() as u64 > self.fail.start && offset < self.fail.end {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.file.write_all_at(buf, offset)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}

#[test]
fn io_error_in_an_elided_copy_leaves_a_busy_dump() {
    let w = World::new(512, elided_spec());
    let mut env = w.env();
    env.config = Some(config(&w, true));
    let area = w.layout.dump_area();
    let result = run_with(&env, |file| Faulty {
        file,
        fail: area.start + 2 * MIB..area.end,
    });
    let e = result.as_ref().unwrap_err();
    assert!(
        e.to_string().starts_with("copy: writing ") && e.errno() == Some(libc::EIO),
        "{e}"
    );
    report(&result, &env.log);
    let log = env.log.captured();
    assert!(!log.contains("write ELF header block"), "{log}");
    assert_eq!(w.read_image(area.start..area.start + 14), BUSY_MARKER);
    assert_eq!(inspect(&w.image).unwrap().state, State::Incomplete);
}

/// A dump level that needs struct pages, on a vmcore whose VMCOREINFO has
/// no struct page layout (the fixture's): the agent says so, falls back to
/// zero pages only, and the dump records both levels.
#[test]
fn a_level_the_kernel_cannot_support_falls_back_to_zero_pages() {
    let w = World::new(512, elided_spec());
    let mut env = w.env();
    let conf = w.dir.path().join("zfcpdump.conf");
    std::fs::write(&conf, "dump_level = 31\n").unwrap();
    env.config = Some(conf);
    let s = run(&env).unwrap_or_else(|e| panic!("{e}\n{}", env.log.captured()));
    let log = env.log.captured();
    assert_in_order(
        &log,
        &[
            "dump level 31 (from the profile)",
            "filtered layout: ",
            "warning: page filtering off: VMCOREINFO lacks ",
            "dump level 1 (zero pages only) instead of 31",
            "filtered: dump level 1, ",
        ],
    );
    let st = s.filtered.expect("filtered");
    assert!(
        st.elided > 0 && st.excluded[1..].iter().all(|&n| n == 0),
        "{st:?}"
    );
    let State::Complete(sum) = inspect(&w.image).unwrap().state else {
        panic!("not complete")
    };
    let f = sum.filter.expect("the filter note");
    assert_eq!((f.requested.bits(), f.used.bits()), (31, 1));
    let out = extract_to(&w, "fallback.elf");
    assert!(check_memory(&w.spec, &out, &w.vmcore) > 0);
}

/// `zfcpdump.dump_level=0` on the command line overrides a profile level:
/// the dump is byte-exact.
#[test]
fn the_command_line_level_overrides_the_profile() {
    let w = World::new(512, elided_spec());
    let mut env = w.env();
    env.config = Some(config(&w, true));
    w.write_root("proc/cmdline", "zfcpdump.dump_level=0\n");
    let s = run(&env).unwrap_or_else(|e| panic!("{e}\n{}", env.log.captured()));
    assert!(s.filtered.is_none());
    assert_eq!(s.bytes, w.vmcore_len());
}
