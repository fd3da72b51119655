//! The vmcore ELF reader, the copy plan and the dump-time filter's parsers
//! (VMCOREINFO, os_info, the page tables, mem_section, struct pages): what
//! the agent reads of what a crashed system left behind.
//!
//! Input: the vmcore's bytes, then a 4-byte trailer: the HSA size in MiB,
//! the dump level, and how far the declared file size (what st_size of
//! /proc/vmcore says) reaches past the bytes given, in 64 KiB (a trimmed
//! real vmcore keeps its real size; reads past the bytes fail like I/O
//! errors).
#![no_main]

use libfuzzer_sys::fuzz_target;
use zfcpdump_format::elf::Vmcore;
use zfcpdump_format::filter::{self, DumpLevel, VmcorePhys};
use zfcpdump_format::plan::{CopyStep, HEADER_BLOCK, copy_plan};

fuzz_target!(|data: &[u8]| {
    let Some((core, trailer)) = data.split_last_chunk::<4>() else {
        return;
    };
    let hsa = u64::from(trailer[0]) << 20;
    let level = DumpLevel::new(u32::from(trailer[1] & 31)).unwrap();
    let extra = u64::from(u16::from_le_bytes([trailer[2], trailer[3]])) << 16;
    let size = core.len() as u64 + extra;
    let Ok(vm) = Vmcore::read(&mut &core[..], size) else {
        return;
    };
    let _ = vm.cpu_count();
    let _ = vm.vmcoreinfo();
    let extent = vm.extent();
    assert!(extent <= size, "extent {extent:#x} past the file's {size:#x}");
    let _ = vm.physical_ranges();
    if let Ok(steps) = copy_plan(&vm.phdrs, size, hsa) {
        check_plan(&steps, size);
    }
    if level.bits() == 0 {
        return;
    }
    let mut src = core;
    let mut mem = VmcorePhys::new(&vm, &mut src);
    if let Ok(mut f) = filter::prepare(&vm, &mut mem, level, 4) {
        // Classify the first pages of each range, as the copy would.
        let mut classes = [0u8; 64];
        for r in filter::dump_pfns(&vm).iter().take(4) {
            let n = ((r.end - r.start) as usize).min(classes.len());
            f.fill(&mut mem, r.start, &mut classes[..n]);
        }
    }
});

/// The plan's promises: disjoint copies covering `[0, size)` exactly once,
/// one HSA release after every HSA-backed copy, the header block last.
fn check_plan(steps: &[CopyStep], size: u64) {
    let releases = steps.iter().filter(|s| **s == CopyStep::ReleaseHsa).count();
    assert_eq!(releases, 1, "{steps:?}");
    let mut copies: Vec<(u64, u64)> = Vec::new();
    let mut released = false;
    for s in steps {
        match *s {
            CopyStep::ReleaseHsa => released = true,
            CopyStep::Copy { start, end, hsa } => {
                assert!(start < end && end <= size, "{s:?} in a {size:#x}-byte file");
                assert!(!(hsa && released), "an HSA copy after the release: {steps:?}");
                copies.push((start, end));
            }
        }
    }
    if size > 0 {
        assert_eq!(
            copies.last().copied(),
            Some((0, HEADER_BLOCK.min(size))),
            "the header block is not last: {steps:?}"
        );
    }
    copies.sort();
    let mut at = 0;
    for (start, end) in copies {
        assert_eq!(start, at, "gap or overlap at {at:#x}: {steps:?}");
        at = end;
    }
    assert_eq!(at, size, "the plan ends at {at:#x}, the file at {size:#x}");
}
