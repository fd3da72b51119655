//! The layouts of real /proc/vmcores, as the kernel builds them: the ELF
//! header, program headers and notes of kdump captures under QEMU
//! (`cargo xtask crashlab`, production kernel = dump tool kernel), trimmed
//! to the bytes before the first PT_LOAD's data. The file size is the real
//! vmcore's, so every check of a segment against the file's end is real.
//!
//! - 6.1.192: one PT_LOAD from physical 0, V=R (the crashkernel region,
//!   480 MiB up, is left out).
//! - 6.12.117: the V!=R layout: a kernel-image PT_LOAD (virtual
//!   0x3ffffa1c000, physical 0x31c000) inside the first identity range,
//!   then the identity ranges around the crashkernel region.

use std::ops::Range;

use zfcpdump_format::elf::{Vmcore, vmcoreinfo_lookup};
use zfcpdump_format::filtered::{FilteredPlan, slots_for};
use zfcpdump_format::plan::{CopyStep, HEADER_BLOCK, copy_plan};

const MIB: u64 = 1 << 20;
const HSA: u64 = 32 * MIB;

struct Real {
    head: &'static [u8],
    size: u64,
    release: &'static str,
}

const V6_1: Real = Real {
    head: include_bytes!("../fixtures/kdump-6.1.192.head"),
    size: 503_328_768,
    release: "6.1.192",
};
const V6_12: Real = Real {
    head: include_bytes!("../fixtures/kdump-6.12.117.head"),
    size: 509_501_440,
    release: "6.12.117",
};

fn read(r: &Real) -> Vmcore {
    let vm = Vmcore::read(&mut &r.head[..], r.size).unwrap();
    assert_eq!(
        vm.extent(),
        r.size,
        "the PT_LOADs end where the vmcore ends"
    );
    assert_eq!(vm.cpu_count().unwrap(), 2);
    let info = vm.vmcoreinfo().unwrap().expect("VMCOREINFO");
    assert_eq!(vmcoreinfo_lookup(info, "OSRELEASE"), Some(r.release));
    vm
}

/// The file ranges whose memory is below the HSA, from the headers alone.
fn hsa_backed(vm: &Vmcore) -> Vec<Range<u64>> {
    let mut v: Vec<Range<u64>> = vm
        .loads()
        .filter(|p| p.p_paddr < HSA)
        .map(|p| p.p_offset..p.p_offset + p.p_filesz.min(HSA - p.p_paddr))
        .collect();
    v.sort_by_key(|r| r.start);
    v
}

/// Adjacent ranges joined (the plan copies adjacent file ranges as one).
fn joined(mut v: Vec<Range<u64>>) -> Vec<Range<u64>> {
    v.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in v {
        match out.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => out.push(r),
        }
    }
    out
}

/// The plan copies every byte once, HSA-backed bytes before the release,
/// the header block last.
fn check_plan(vm: &Vmcore, size: u64) -> Vec<Range<u64>> {
    let steps = copy_plan(&vm.phdrs, size, HSA).unwrap();
    let release = steps
        .iter()
        .position(|s| *s == CopyStep::ReleaseHsa)
        .unwrap();
    let mut hsa: Vec<Range<u64>> = Vec::new();
    let mut all: Vec<Range<u64>> = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        if let CopyStep::Copy { start, end, hsa: h } = *s {
            assert_eq!(h, i < release, "step {i}: {s:?}");
            if h {
                hsa.push(start..end);
            }
            all.push(start..end);
        }
    }
    assert_eq!(
        steps.last(),
        Some(&CopyStep::Copy {
            start: 0,
            end: HEADER_BLOCK,
            hsa: false
        })
    );
    all.sort_by_key(|r| r.start);
    let mut at = 0;
    for r in &all {
        assert_eq!(r.start, at, "gap or overlap in the plan at {at:#x}");
        at = r.end;
    }
    assert_eq!(at, size);
    joined(hsa)
}

#[test]
fn kernel_6_1_has_one_identity_segment() {
    let vm = read(&V6_1);
    let loads: Vec<_> = vm.loads().collect();
    assert_eq!(loads.len(), 1);
    let p = loads[0];
    assert_eq!((p.p_offset, p.p_vaddr, p.p_paddr), (0x3000, 0, 0));
    assert_eq!(p.p_memsz, 480 * MIB);
    assert_eq!(check_plan(&vm, V6_1.size), joined(hsa_backed(&vm)));
    assert_eq!(hsa_backed(&vm), vec![0x3000..0x3000 + HSA]);
}

#[test]
fn kernel_6_12_has_a_kernel_image_segment_inside_the_hsa() {
    let vm = read(&V6_12);
    let loads: Vec<_> = vm.loads().collect();
    assert_eq!(loads.len(), 3);
    let text = loads[0];
    assert_eq!((text.p_vaddr, text.p_paddr), (0x3ff_ffa1_c000, 0x31_c000));
    // Inside the identity range [0, 472 MiB): the same memory twice.
    let ident = loads[1];
    assert_eq!((ident.p_vaddr, ident.p_paddr), (0, 0));
    assert!(text.p_paddr + text.p_memsz <= ident.p_memsz);
    assert_eq!(loads[2].p_paddr, 504 * MIB);
    // Both the kernel image and the start of the identity range come from
    // the HSA: a tool that only copies from paddr 0 first (s390-tools
    // before 2.33.0) reads the image after the release.
    let backed = hsa_backed(&vm);
    assert_eq!(backed.len(), 2);
    // Adjacent in the file: the image's data, then the identity range's.
    assert_eq!(check_plan(&vm, V6_12.size), joined(backed));
}

#[test]
fn elision_plans_the_real_layouts() {
    for r in [&V6_1, &V6_12] {
        let vm = read(r);
        let plan = FilteredPlan::new(
            &vm.header,
            &vm.phdrs,
            r.size,
            HSA,
            slots_for(vm.loads().map(|p| p.p_memsz).sum()),
        )
        .unwrap();
        let hsa: u64 = plan
            .parts
            .iter()
            .filter(|p| p.hsa)
            .map(|p| p.file.end - p.file.start)
            .sum();
        let want: u64 = hsa_backed(&vm).iter().map(|r| r.end - r.start).sum();
        assert_eq!(hsa, want, "{}", r.release);
        // HSA-backed parts come first.
        let first_other = plan.parts.iter().position(|p| !p.hsa).unwrap();
        assert!(
            plan.parts[first_other..].iter().all(|p| !p.hsa),
            "{}",
            r.release
        );
    }
}
