//! The filtered layout writer as a round trip: a vmcore made by
//! vmcore-fixture (written apart from the reader, so each checks the other)
//! from the input's layout, elided through `zfcpdump_format::filtered` with the
//! input's page classes, chunk size and program header budget, read back
//! with the ELF reader: every page reads as the vmcore's, or as zeros where
//! it was zero or its class left it out. The notes come through unchanged.
#![no_main]

use std::io;
use std::ops::Range;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use vmcore_fixture::{Spec, write_vmcore};
use zfcpdump_format::PAGE_SIZE;
use zfcpdump_format::elf::Vmcore;
use zfcpdump_format::filtered::{
    FilteredPlan, FilteredStep, FilteredWriter, LOWCORE_SIZE, MIN_SLOTS, Sink,
};
use zfcpdump_format::filter::classify::{SHORT_RUN, leaves_out};
use zfcpdump_format::filter::{DumpLevel, PhysRead, VmcorePhys};

/// The output in memory.
#[derive(Default)]
struct Out(Vec<u8>);

impl Sink for Out {
    fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        let end = offset as usize + data.len();
        if self.0.len() < end {
            self.0.resize(end, 0xee);
        }
        self.0[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
    fn write_zeros_at(&mut self, len: u64, offset: u64) -> io::Result<()> {
        self.write_at(&vec![0; len as usize], offset)
    }
}

struct Case {
    spec: Spec,
    hsa: u64,
    slots: u32,
    chunk_pages: u64,
    zero_pages: bool,
    note: bool,
    classes: Vec<u8>,
}

fn case(u: &mut Unstructured) -> Result<Case> {
    let mut ranges = Vec::new();
    let mut at = 0u64;
    for _ in 0..u.int_in_range(1..=3)? {
        at += u64::from(u.int_in_range(0u8..=16)?) * PAGE_SIZE;
        let pages = u64::from(u.int_in_range(1u8..=48)?);
        ranges.push((at, pages * PAGE_SIZE));
        at += pages * PAGE_SIZE;
    }
    let spec = Spec::small()
        .cpus(u.int_in_range(1..=4)?)
        .ranges(ranges)
        .zero_fraction(f64::from(u.int_in_range(0u8..=100)?) / 100.0)
        .seed(u.arbitrary()?);
    Ok(Case {
        spec,
        hsa: u64::from(u.int_in_range(0u8..=64)?) * PAGE_SIZE,
        // The minimum reserve, or a few entries more than the parts need:
        // the writer must then write zero runs it cannot describe.
        slots: if u.arbitrary()? {
            MIN_SLOTS
        } else {
            u.int_in_range(1..=16)?
        },
        chunk_pages: u64::from(u.int_in_range(1u8..=9)?),
        zero_pages: u.arbitrary()?,
        note: u.arbitrary()?,
        classes: u.arbitrary()?,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(c) = case(&mut Unstructured::new(data)) else {
        return;
    };
    if c.spec.validate().is_err() {
        return;
    }
    let mut file = Vec::new();
    write_vmcore(&c.spec, &mut file).unwrap();
    let size = file.len() as u64;
    let vm = Vmcore::read(&mut &file[..], size).expect("the reader refuses a fixture vmcore");
    let Ok(mut plan) = FilteredPlan::new(&vm.header, &vm.phdrs, size, c.hsa, c.slots) else {
        return;
    };
    plan.zero_pages = c.zero_pages;
    let noted = c.note && plan.reserve_note();
    // Some pages of a class are marked as of a run too short to leave out.
    let class_of = |pfn: u64| match c.classes.get(pfn as usize % c.classes.len().max(1)) {
        Some(&b) if b % 3 == 0 => (b % 31 + 1) | if b >= 0xc0 { SHORT_RUN } else { 0 },
        _ => 0,
    };
    let mut out = Out::default();
    let mut e = FilteredWriter::new(&plan);
    for step in plan.steps() {
        match step {
            FilteredStep::Part(i) => {
                let part = &plan.parts[i];
                e.begin_part(i);
                let mut off = part.file.start;
                while off < part.file.end {
                    let n = (c.chunk_pages * PAGE_SIZE).min(part.file.end - off);
                    let pfn0 = (part.paddr + (off - part.file.start)) / PAGE_SIZE;
                    let classes: Vec<u8> =
                        (0..n.div_ceil(PAGE_SIZE)).map(|k| class_of(pfn0 + k)).collect();
                    e.feed_classified(&file[off as usize..(off + n) as usize], Some(&classes), &mut out)
                        .unwrap();
                    off += n;
                }
                e.end_part(&mut out).unwrap();
            }
            FilteredStep::Meta => {
                let m = plan.meta_in.clone();
                e.write_meta(&file[m.start as usize..m.end as usize], m.start, &mut out)
                    .unwrap();
            }
            FilteredStep::ReleaseHsa | FilteredStep::Header => {}
        }
    }
    let all = DumpLevel::new(31).unwrap();
    let levels = noted.then_some((all, all));
    let stats = e.finish_noted(levels, &mut out).unwrap();
    assert_eq!(stats.file_size, out.0.len() as u64, "bytes written past the file's end");
    assert!(stats.file_size <= plan.max_size() + PAGE_SIZE);

    let back = Vmcore::read(&mut &out.0[..], stats.file_size).expect("the elided dump does not parse");
    assert_eq!(back.cpu_count().ok(), vm.cpu_count().ok());
    assert_eq!(back.vmcoreinfo().unwrap(), vm.vmcoreinfo().unwrap());
    assert_eq!(back.physical_ranges(), vm.physical_ranges());
    let (mut src_in, mut src_out) = (&file[..], &out.0[..]);
    let mut mem_in = VmcorePhys::new(&vm, &mut src_in);
    let mut mem_out = VmcorePhys::new(&back, &mut src_out);
    let (mut a, mut b) = (vec![0u8; PAGE_SIZE as usize], vec![0u8; PAGE_SIZE as usize]);
    for r in vm.physical_ranges() {
        let pages: Range<u64> = r.start / PAGE_SIZE..r.end.div_ceil(PAGE_SIZE);
        for pfn in pages {
            mem_in.read_phys(pfn * PAGE_SIZE, &mut a).unwrap();
            mem_out.read_phys(pfn * PAGE_SIZE, &mut b).unwrap();
            if a == b {
                continue;
            }
            let may_drop = pfn * PAGE_SIZE >= LOWCORE_SIZE
                && (leaves_out(class_of(pfn)) || (c.zero_pages && a.iter().all(|&x| x == 0)));
            assert!(
                may_drop && b.iter().all(|&x| x == 0),
                "page {pfn:#x} reads back wrong (class {}, zero pages {})",
                class_of(pfn),
                c.zero_pages
            );
        }
    }
});
