//! The page classifier on trimmed real dumps: the crash lab's 6.1 and 6.12
//! kernels, cut by `examples/filter-fixture.rs` to the pages the classifier
//! reads (lowcore, os_info, page tables, mem_section, the struct pages of a
//! sample of pfns), with the classes found on the whole dump, which the
//! crash lab compares with makedumpfile's. And the fallbacks: no
//! VMCOREINFO, a corrupt mem_section, page tables that do not translate.

use std::ops::Range;

use zfcpdump_format::elf::{ReadAt, Vmcore};
use zfcpdump_format::filter::kernel_layout::{KernelInfo, KernelMap};
use zfcpdump_format::filter::{
    self, CACHE, DumpLevel, FREE, FilterError, PhysRead, USER, VmcorePhys,
};

const FIXTURES: &[&str] = &["kdump-6.1.192", "kdump-6.12.117"];

struct Fixture {
    elf: Vec<u8>,
    /// (pfns, class) runs of the sample.
    classes: Vec<(Range<u64>, u8)>,
}

impl Fixture {
    fn load(name: &str) -> Fixture {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
        let elf = std::fs::read(format!("{dir}{name}.filter.elf")).unwrap();
        let text = std::fs::read_to_string(format!("{dir}{name}.filter.elf.classes")).unwrap();
        let classes = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let v: Vec<u64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
                (v[0]..v[0] + v[1], v[2] as u8)
            })
            .collect();
        Fixture { elf, classes }
    }

    fn sample(&self) -> Range<u64> {
        self.classes[0].0.start..self.classes.last().unwrap().0.end
    }

    fn vm(&self) -> Vmcore {
        Vmcore::read(&mut &self.elf[..], self.elf.len() as u64).unwrap()
    }

    /// Classes of the sample at `level`, or why the filter could not start.
    fn classify(&self, level: u8) -> Result<Vec<u8>, FilterError> {
        let vm = self.vm();
        let mut src = &self.elf[..];
        let mut mem = VmcorePhys::new(&vm, &mut src);
        let level = DumpLevel::new(level as u32).unwrap();
        let mut pf = filter::prepare(&vm, &mut mem, level, 1)?;
        let s = self.sample();
        let mut out = vec![0u8; (s.end - s.start) as usize];
        pf.fill(&mut mem, s.start, &mut out);
        Ok(out)
    }

    /// The recorded classes, with those `level` does not leave out cleared.
    fn expected(&self, level: u8) -> Vec<u8> {
        let mut v = Vec::new();
        for (r, c) in &self.classes {
            let keep = c & level == 0;
            v.extend(std::iter::repeat_n(
                if keep { 0 } else { *c },
                (r.end - r.start) as usize,
            ));
        }
        v
    }

    /// The file offset of physical address `paddr`.
    fn offset_of(&self, paddr: u64) -> usize {
        let vm = self.vm();
        let p = vm
            .loads()
            .find(|p| paddr >= p.p_paddr && paddr < p.p_paddr + p.p_filesz)
            .unwrap_or_else(|| panic!("{paddr:#x} is not in the fixture"));
        (p.p_offset + paddr - p.p_paddr) as usize
    }

    fn info(&self) -> KernelInfo {
        KernelInfo::parse(self.vm().vmcoreinfo().unwrap().unwrap()).unwrap()
    }
}

fn count(v: &[u8], class: u8) -> usize {
    v.iter().filter(|&&c| c == class).count()
}

#[test]
fn real_struct_pages_classify_as_on_the_whole_dump() {
    for name in FIXTURES {
        let f = Fixture::load(name);
        for level in [31, 17, 16, 8, 2] {
            let got = f.classify(level).unwrap();
            assert_eq!(got, f.expected(level), "{name} at level {level}");
        }
        // The sample was chosen to hold every class the guest makes.
        let all = f.expected(31);
        for class in [CACHE, USER, FREE] {
            assert!(count(&all, class) > 0, "{name}: no pages of class {class}");
        }
    }
}

#[test]
fn the_layouts_differ_as_the_kernels_do() {
    let old = Fixture::load("kdump-6.1.192").info();
    let new = Fixture::load("kdump-6.12.117").info();
    // 6.1 marks slab with a flag, 6.12 with a page type in the top byte.
    assert!(old.page.pg_slab.is_some() && old.page.slab_type.is_none());
    assert!(new.page.pg_slab.is_none() && new.page.slab_type.is_some());
    assert_eq!(
        old.page.buddy,
        filter::kernel_layout::PageType::Exact(0xffff_ff7f)
    );
    assert_eq!(
        new.page.buddy,
        filter::kernel_layout::PageType::TopByte(0xf0)
    );
    // V!=R: 6.12's kernel image is not at its physical address.
    assert_eq!(old.kernel_off_phys, None);
    assert!(new.kernel_off_phys.is_some());
    let f = Fixture::load("kdump-6.12.117");
    let vm = f.vm();
    let mut src = &f.elf[..];
    let map = KernelMap::read(&mut VmcorePhys::new(&vm, &mut src), &new).unwrap();
    let (start, _, phys) = map.image.expect("os_info names the image");
    assert_ne!(start, phys);
}

#[test]
fn no_vmcoreinfo_means_no_filter() {
    for name in FIXTURES {
        let mut f = Fixture::load(name);
        let at = f.elf.windows(10).position(|w| w == b"VMCOREINFO").unwrap();
        f.elf[at + 9] = b'X';
        assert_eq!(
            f.classify(31).unwrap_err(),
            FilterError::NoVmcoreinfo,
            "{name}"
        );
    }
}

#[test]
fn a_corrupt_mem_section_is_refused() {
    for name in FIXTURES {
        let mut f = Fixture::load(name);
        let roots = f.info().sections.roots_vaddr;
        // The first root pointer, pointed into memory the dump lacks.
        let at = f.offset_of(roots);
        f.elf[at..at + 8].copy_from_slice(&0x7fff_0000_0000u64.to_be_bytes());
        let e = f.classify(31).unwrap_err();
        assert!(
            matches!(e, FilterError::Read { .. } | FilterError::Inconsistent(_)),
            "{name}: {e}"
        );
    }
}

#[test]
fn page_tables_that_do_not_translate_are_refused() {
    for name in FIXTURES {
        let mut f = Fixture::load(name);
        let info = f.info();
        let vm = f.vm();
        let mut src = &f.elf[..];
        let map = KernelMap::read(&mut VmcorePhys::new(&vm, &mut src), &info).unwrap();
        let top = map.direct(info.swapper_pg_dir).unwrap();
        // Every valid top-level entry but the last made invalid: the
        // identity map (mem_section) no longer translates.
        let at = f.offset_of(top);
        let valid: Vec<usize> = (0..2048)
            .filter(|i| {
                f.elf[at + i * 8 + 7] & 0x20 == 0 && f.elf[at + i * 8..at + i * 8 + 8] != [0; 8]
            })
            .collect();
        assert!(
            valid.len() >= 2,
            "{name}: {} valid top entries",
            valid.len()
        );
        for i in &valid[..valid.len() - 1] {
            f.elf[at + i * 8 + 7] |= 0x20;
        }
        let e = f.classify(31).unwrap_err();
        assert!(matches!(e, FilterError::Translation { .. }), "{name}: {e}");
    }
}

/// Reads that fail after a point, like the HSA's after its release: the
/// struct pages that cannot be read are kept, never guessed.
struct FailAbove<'a, R: ReadAt + ?Sized> {
    inner: VmcorePhys<'a, R>,
    fail: bool,
}

impl<R: ReadAt + ?Sized> PhysRead for FailAbove<'_, R> {
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if self.fail {
            return Err(std::io::Error::from_raw_os_error(14));
        }
        self.inner.read_phys(paddr, buf)
    }
}

#[test]
fn unreadable_struct_pages_are_kept() {
    for name in FIXTURES {
        let f = Fixture::load(name);
        let vm = f.vm();
        let mut src = &f.elf[..];
        let mut mem = FailAbove {
            inner: VmcorePhys::new(&vm, &mut src),
            fail: false,
        };
        let mut pf = filter::prepare(&vm, &mut mem, DumpLevel::new(31).unwrap(), 1).unwrap();
        mem.fail = true;
        let s = f.sample();
        let mut out = vec![0xffu8; (s.end - s.start) as usize];
        pf.fill(&mut mem, s.start, &mut out);
        assert!(out.iter().all(|&c| c == 0), "{name}");
        assert!(pf.counts().unreadable >= s.end - s.start, "{name}");
    }
}
