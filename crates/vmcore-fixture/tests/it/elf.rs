//! The ELF shape of generated files, read back with the `object` crate.

use crate::common::*;
use object::elf::{
    ELFCLASS64, ELFDATA2MSB, ELFOSABI_NONE, EM_S390, ET_CORE, EV_CURRENT, PT_LOAD, PT_NOTE,
};
use vmcore_fixture::{
    HSA_SIZE, KernelImage, S390NoteName, SegmentKind, Spec, SpecError, file_size, layout,
};

const NT_PRSTATUS: u32 = 1;
const NT_PRFPREG: u32 = 2;
const NT_PRPSINFO: u32 = 3;

#[test]
fn elf_header_fields() {
    let spec = Spec::small();
    let data = generate(&spec);
    let h = header(&data);
    let e = object::BigEndian;
    assert_eq!(&h.e_ident.magic, b"\x7fELF");
    let ident = &data[..16];
    assert_eq!(h.e_ident.class, ELFCLASS64);
    assert_eq!(h.e_ident.data, ELFDATA2MSB);
    assert_eq!(h.e_ident.version, EV_CURRENT);
    assert_eq!(h.e_ident.os_abi, ELFOSABI_NONE);
    assert_eq!(ident[4..8], [2, 2, 1, 0]);
    assert!(ident[8..].iter().all(|&b| b == 0), "ident padding");
    assert_eq!(h.e_type.get(e), ET_CORE);
    assert_eq!(h.e_machine.get(e), EM_S390);
    assert_eq!(h.e_machine.get(e), 22);
    assert_eq!(h.e_version.get(e), u32::from(EV_CURRENT));
    assert_eq!(h.e_entry.get(e), 0);
    // zgetdump 2.16 ignores e_phoff and reads phdrs at 64: it must be 64.
    assert_eq!(h.e_phoff.get(e), 64);
    assert_eq!(h.e_ehsize.get(e), 64);
    assert_eq!(h.e_phentsize.get(e), 56);
    assert_eq!(h.e_shoff.get(e), 0);
    assert_eq!(h.e_shnum.get(e), 0);
    assert_eq!(h.e_shstrndx.get(e), 0);
    assert_eq!(h.e_phnum.get(e), 3, "PT_NOTE + 2 ranges");
}

/// Checks everything about the program headers that is independent of the
/// spec's details.
fn check_layout(spec: &Spec, data: &[u8]) {
    let ph = phdrs(data);
    assert_eq!(ph[0].p_type, PT_NOTE, "phdr[0] is the PT_NOTE");
    assert_eq!(
        ph.iter().filter(|p| p.p_type == PT_NOTE).count(),
        1,
        "exactly one PT_NOTE"
    );
    assert!(ph[1..].iter().all(|p| p.p_type == PT_LOAD), "then PT_LOADs");

    let note = &ph[0];
    let head = 64 + 56 * ph.len() as u64;
    assert_eq!(
        note.offset,
        head.div_ceil(PAGE) * PAGE,
        "notes after padded headers"
    );
    assert_eq!(note.filesz, note.memsz);
    assert!(
        data[head as usize..note.offset as usize]
            .iter()
            .all(|&b| b == 0)
    );

    let notes_end = note.offset + note.filesz;
    let mut expect_off = notes_end.div_ceil(PAGE) * PAGE;
    if expect_off - notes_end < 12 && !spec.terminator_in_filesz {
        // The generator always leaves room for the empty terminating note.
        expect_off += PAGE;
    }
    // Padding after the notes is zero, so an empty note follows them.
    assert!(
        data[notes_end as usize..expect_off as usize]
            .iter()
            .all(|&b| b == 0)
    );
    for p in &ph[1..] {
        assert_eq!(p.offset, expect_off, "PT_LOAD data is contiguous");
        assert_eq!(p.offset % PAGE, 0, "PT_LOAD offset page aligned");
        assert_eq!(p.filesz, p.memsz, "filesz == memsz");
        assert_eq!(p.flags, 7, "RWX");
        assert_eq!(p.align, PAGE);
        assert_eq!(p.paddr % PAGE, 0);
        assert_eq!(p.filesz % PAGE, 0);
        expect_off += p.filesz;
    }
    assert_eq!(
        expect_off,
        data.len() as u64,
        "file ends with the last PT_LOAD"
    );
    assert_eq!(file_size(spec), data.len() as u64, "file_size() agrees");

    // The library's own layout description agrees with what was parsed.
    let l = layout(spec);
    assert_eq!(l.notes_offset, note.offset);
    assert_eq!(l.notes_size, note.filesz);
    assert_eq!(l.segments.len(), ph.len() - 1);
    for (s, p) in l.segments.iter().zip(&ph[1..]) {
        assert_eq!(
            (s.offset, s.paddr, s.vaddr, s.size),
            (p.offset, p.paddr, p.vaddr, p.filesz)
        );
    }
}

#[test]
fn presets_have_valid_layouts() {
    for spec in [
        Spec::small(),
        Spec::with_hsa_range(),
        Spec::overlapping_kernel(),
        Spec::sized(3 << 20, 0.5),
        Spec::sized(4096, 0.0),
        Spec::small().terminator_in_filesz(true),
        Spec::small().cpus(40), // headers + notes spill past one page
    ] {
        spec.validate().unwrap();
        check_layout(&spec, &generate(&spec));
    }
}

#[test]
fn many_ranges_spill_headers_past_one_page() {
    // 80 ranges: 64 + 81 * 56 = 4600 bytes of headers, padded to 8192.
    let ranges: Vec<_> = (0..80).map(|i| (i * 2 * PAGE, PAGE)).collect();
    let spec = Spec::small().ranges(ranges);
    let data = generate(&spec);
    check_layout(&spec, &data);
    assert_eq!(phdrs(&data)[0].offset, 8192);
}

#[test]
fn identity_loads_match_ranges() {
    let spec = Spec::small();
    let data = generate(&spec);
    let l = loads(&data);
    let got: Vec<_> = l.iter().map(|p| (p.paddr, p.filesz)).collect();
    assert_eq!(got, spec.ranges);
    assert!(
        l.iter().all(|p| p.vaddr == p.paddr),
        "vaddr == paddr by default"
    );

    let spec = Spec::small().vaddr_offset(0x1_0000_0000);
    let l = loads(&generate(&spec));
    assert!(l.iter().all(|p| p.vaddr == p.paddr + 0x1_0000_0000));
}

#[test]
fn presets_shapes() {
    let s = Spec::small();
    assert_eq!(s.cpus, 2);
    assert_eq!(s.ranges, vec![(0, 4 << 20), (8 << 20, 2 << 20)]);

    let h = Spec::with_hsa_range();
    assert_eq!(h.ranges[0].0, 0);
    assert!(h.ranges[0].1 > HSA_SIZE, "first range crosses the HSA end");

    let k = Spec::overlapping_kernel();
    let img = k.kernel_image_load.expect("kernel image");
    let (r0, s0) = k.ranges[0];
    assert!(img.paddr >= r0 && img.paddr + img.size <= r0 + s0);
    assert_ne!(img.vaddr, img.paddr);
    let l = loads(&generate(&k));
    assert_eq!(l.len(), k.ranges.len() + 1);
    assert_eq!(
        (l[0].paddr, l[0].vaddr, l[0].filesz),
        (img.paddr, img.vaddr, img.size)
    );
    assert_eq!(layout(&k).segments[0].kind, SegmentKind::KernelImage);

    for total in [1 << 20, 100 << 20, (1 << 30) + 12345] {
        let s = Spec::sized(total, 0.3);
        assert_eq!(s.memory_size(), total / 4096 * 4096);
        assert_eq!(s.ranges[0].0, 0);
        s.validate().unwrap();
        assert!(file_size(&s) > total / 4096 * 4096);
        assert!(file_size(&s) < total + 64 * 1024);
    }
}

fn s390_types(vx: bool) -> Vec<u32> {
    let mut t = vec![0x301, 0x302, 0x303, 0x304, 0x305];
    if vx {
        t.extend([0x309, 0x30a]);
    }
    t
}

fn check_notes(spec: &Spec, data: &[u8]) {
    let notes = notes(data);
    let s390_name = spec.s390_note_name.as_str();
    let mut it = notes.iter();

    let first = it.next().unwrap();
    assert_eq!((first.name.as_str(), first.n_type), ("CORE", NT_PRPSINFO));
    assert_eq!(first.desc.len(), 136);
    assert_eq!(&first.desc[40..47], b"vmlinux");

    let memory_end = spec.ranges.iter().map(|r| r.0 + r.1).max().unwrap();
    for cpu in 0..spec.cpus {
        let pr = it.next().unwrap();
        assert_eq!((pr.name.as_str(), pr.n_type), ("CORE", NT_PRSTATUS));
        assert_eq!(pr.desc.len(), 336);
        assert_eq!(be_u32(&pr.desc, 32), cpu, "pr_pid is the CPU number");
        let psw_mask = be_u64(&pr.desc, 112);
        assert_eq!(
            psw_mask & 0x0000_0001_8000_0000,
            0x0000_0001_8000_0000,
            "64-bit PSW"
        );
        assert_ne!(be_u64(&pr.desc, 120), 0, "PSW address");
        assert_ne!(be_u64(&pr.desc, 128 + 15 * 8), 0, "r15 stack pointer");

        let fp = it.next().unwrap();
        assert_eq!(
            (fp.name.as_str(), fp.n_type, fp.desc.len()),
            ("CORE", NT_PRFPREG, 136)
        );

        for want in s390_types(spec.vx) {
            let n = it.next().unwrap();
            assert_eq!(n.name, s390_name);
            assert_eq!(n.n_type, want);
            let len = match want {
                0x301 | 0x302 => 8,
                0x303 | 0x305 => 4,
                0x304 | 0x309 => 128,
                0x30a => 256,
                _ => unreachable!(),
            };
            assert_eq!(n.desc.len(), len, "note {want:#x}");
            if want == 0x305 {
                let prefix = u64::from(be_u32(&n.desc, 0));
                assert_eq!(prefix % 8192, 0, "prefix is lowcore aligned");
                assert!(prefix < memory_end);
            }
        }
    }

    let vmci = it.next().unwrap();
    assert_eq!((vmci.name.as_str(), vmci.n_type), ("VMCOREINFO", 0));
    let text = std::str::from_utf8(&vmci.desc).unwrap();
    assert_eq!(text, spec.vmcoreinfo);
    assert!(text.starts_with("OSRELEASE="));
    assert!(text.contains("\nPAGESIZE=4096\n"));
    assert!(text.lines().all(|l| l.contains('=')), "KEY=VALUE lines");

    if spec.terminator_in_filesz {
        let t = it.next().expect("terminator inside p_filesz");
        assert_eq!((t.name.as_str(), t.n_type, t.desc.len()), ("", 0, 0));
    }
    assert!(it.next().is_none(), "nothing after VMCOREINFO");

    let prstatus = notes.iter().filter(|n| n.n_type == NT_PRSTATUS).count();
    assert_eq!(prstatus, spec.cpus as usize, "CPU count by NT_PRSTATUS");
}

#[test]
fn notes_follow_the_kernel_order() {
    for spec in [
        Spec::small(),
        Spec::small().cpus(1),
        Spec::small().cpus(7).vx(false),
        Spec::small().cpus(3).s390_note_name(S390NoteName::Core),
        Spec::small().terminator_in_filesz(true),
        Spec::overlapping_kernel(),
        Spec::small().vmcoreinfo("OSRELEASE=4.19.0\nPAGESIZE=4096\nX=1\n"),
    ] {
        check_notes(&spec, &generate(&spec));
    }
}

#[test]
fn terminating_note_follows_notes() {
    let spec = Spec::small();
    let data = generate(&spec);
    let n = &phdrs(&data)[0];
    let end = (n.offset + n.filesz) as usize;
    assert!(data[end..end + 12].iter().all(|&b| b == 0));

    let spec = spec.terminator_in_filesz(true);
    let data = generate(&spec);
    let n2 = &phdrs(&data)[0];
    assert_eq!(n2.filesz, n.filesz + 12);
    let end = (n2.offset + n2.filesz) as usize;
    assert!(data[end - 12..end].iter().all(|&b| b == 0));
}

/// A spec whose notes end exactly on a page boundary: the empty terminating
/// note then needs a page of its own.
fn notes_ending_on_a_page() -> Spec {
    let base = layout(&Spec::small().vmcoreinfo("")).notes_size;
    let len = (8192 - base) as usize;
    let text = format!("OSRELEASE={}\n", "x".repeat(len - 11));
    let spec = Spec::small().vmcoreinfo(text);
    assert_eq!(layout(&spec).notes_size, 8192);
    spec
}

#[test]
fn terminating_note_gets_room_at_a_page_end() {
    let spec = notes_ending_on_a_page();
    let data = generate(&spec);
    check_layout(&spec, &data);
    let n = &phdrs(&data)[0];
    let end = (n.offset + n.filesz) as usize;
    let first_load = loads(&data)[0].offset as usize;
    assert!(first_load >= end + 12, "room for the terminator");
    assert!(data[end..end + 12].iter().all(|&b| b == 0));
}

#[test]
fn prefixes_are_distinct() {
    let spec = Spec::small().cpus(16);
    let prefixes: std::collections::BTreeSet<_> = notes(&generate(&spec))
        .iter()
        .filter(|n| n.n_type == 0x305)
        .map(|n| be_u32(&n.desc, 0))
        .collect();
    assert_eq!(prefixes.len(), 16);
}

#[test]
fn invalid_specs_are_refused() {
    let bad = [
        (Spec::small().cpus(0), SpecError::NoCpus),
        (Spec::small().ranges(vec![]), SpecError::NoRanges),
        (
            Spec::small().ranges(vec![(100, 4096)]),
            SpecError::RangeNotPageAligned {
                paddr: 100,
                size: 4096,
            },
        ),
        (
            Spec::small().ranges(vec![(0, 0)]),
            SpecError::EmptyRange { paddr: 0 },
        ),
        (
            Spec::small().ranges(vec![(0, 8192), (4096, 4096)]),
            SpecError::RangesUnorderedOrOverlapping { index: 1 },
        ),
        (
            Spec::small().ranges(vec![(u64::MAX - 4095, 8192)]),
            SpecError::AddressOverflow,
        ),
        (
            Spec::small().zero_fraction(1.5),
            SpecError::ZeroFraction(1.5),
        ),
        (
            Spec::small().zero_run_block_pages(0),
            SpecError::ZeroRunBlockPages,
        ),
    ];
    for (spec, want) in bad {
        assert_eq!(spec.validate(), Err(want.clone()));
        let err = write_vmcore_err(&spec);
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{want}");
    }
    assert!(Spec::small().zero_fraction(f64::NAN).validate().is_err());

    let outside = KernelImage {
        paddr: 5 << 20,
        vaddr: 0x3ff_e000_0000,
        size: 1 << 20,
    };
    assert_eq!(
        Spec::small().kernel_image_load(Some(outside)).validate(),
        Err(SpecError::KernelImageOutsideRanges(outside))
    );
    let unaligned = KernelImage {
        paddr: 4096,
        vaddr: 0x3ff_e000_0000,
        size: 100,
    };
    assert_eq!(
        Spec::small().kernel_image_load(Some(unaligned)).validate(),
        Err(SpecError::KernelImageNotPageAligned(unaligned))
    );
}

fn write_vmcore_err(spec: &Spec) -> std::io::Error {
    vmcore_fixture::write_vmcore(spec, std::io::sink()).unwrap_err()
}
