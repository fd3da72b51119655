//! The PT_NOTE segment, laid out as arch/s390/kernel/crash_dump.c builds it
//! and fs/proc/vmcore.c exports it.

use crate::memory::SplitMix;
use crate::{Spec, nt};

/// Size of an s390x lowcore (prefix area): two pages.
const LOWCORE_SIZE: u64 = 8192;

/// s390x `struct elf_prstatus` is 336 bytes; offsets of the fields we fill.
pub(crate) const PRSTATUS_SIZE: usize = 336;
const PRSTATUS_PID: usize = 32;
const PRSTATUS_PSW: usize = 112;
const PRSTATUS_GPRS: usize = 128;
const PRSTATUS_ACRS: usize = 256;
const PRSTATUS_ORIG_GPR2: usize = 320;
const PRSTATUS_FPVALID: usize = 328;

/// 64-bit `struct elf_prpsinfo`.
const PRPSINFO_SIZE: usize = 136;
const PRPSINFO_SNAME: usize = 1;
const PRPSINFO_FNAME: usize = 40;

/// `s390_fp_regs`: fpc, pad, 16 x 8-byte fprs.
const FPREGS_SIZE: usize = 136;

/// The prefix register value of each CPU: the physical address of its
/// lowcore. Placed at the top of the first memory range (below 2 GiB, where
/// lowcores must live), or 0 (the absolute lowcore) if it doesn't fit.
pub(crate) fn prefixes(spec: &Spec) -> Vec<u32> {
    let cpus = u64::from(spec.cpus);
    let fallback = vec![0; spec.cpus as usize];
    let Some(&(start, size)) = spec.ranges.first() else {
        return fallback;
    };
    let top = start.saturating_add(size).min(1 << 31) / LOWCORE_SIZE * LOWCORE_SIZE;
    let need = cpus * LOWCORE_SIZE;
    // Keep clear of the absolute lowcore at 0 (pages 0 and 1).
    if top < need || top - need < start.max(LOWCORE_SIZE) {
        return fallback;
    }
    (0..cpus)
        .map(|i| (top - (cpus - i) * LOWCORE_SIZE) as u32)
        .collect()
}

/// The kernel text base used for plausible PSW and return addresses.
fn text_base(spec: &Spec) -> u64 {
    match spec.kernel_image_load {
        Some(k) => k.vaddr,
        None => spec.vaddr_offset.wrapping_add(0x10_0000),
    }
}

fn push_note(buf: &mut Vec<u8>, name: &str, ntype: u32, desc: &[u8]) {
    let namesz = name.len() as u32 + 1; // includes the NUL
    buf.extend_from_slice(&namesz.to_be_bytes());
    buf.extend_from_slice(&(desc.len() as u32).to_be_bytes());
    buf.extend_from_slice(&ntype.to_be_bytes());
    buf.extend_from_slice(name.as_bytes());
    buf.push(0);
    pad4(buf);
    buf.extend_from_slice(desc);
    pad4(buf);
}

fn pad4(buf: &mut Vec<u8>) {
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

fn put_u32(d: &mut [u8], at: usize, v: u32) {
    d[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn put_u64(d: &mut [u8], at: usize, v: u64) {
    d[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn random_bytes(rng: &mut SplitMix, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        v.extend_from_slice(&rng.next_u64().to_be_bytes());
    }
    v.truncate(len);
    v
}

/// The note bytes covered by the PT_NOTE's p_filesz (without the terminator).
pub(crate) fn build_notes(spec: &Spec) -> Vec<u8> {
    let mut buf = Vec::new();
    let s390 = spec.s390_note_name.as_str();

    let mut prpsinfo = [0u8; PRPSINFO_SIZE];
    prpsinfo[PRPSINFO_SNAME] = b'R';
    prpsinfo[PRPSINFO_FNAME..PRPSINFO_FNAME + 7].copy_from_slice(b"vmlinux");
    push_note(&mut buf, "CORE", nt::PRPSINFO, &prpsinfo);

    let text = text_base(spec);
    let (stack_base, stack_span) = match spec.ranges.first() {
        Some(&(start, size)) => (spec.vaddr_offset.wrapping_add(start), size.max(8)),
        None => (spec.vaddr_offset, 8),
    };
    let prefixes = prefixes(spec);
    for cpu in 0..spec.cpus {
        // Per-CPU stream, so adding a CPU doesn't change the others' registers.
        let mut rng = SplitMix::new(crate::memory::mix64(
            spec.seed ^ 0x6370_7500_0000_0000 ^ u64::from(cpu),
        ));

        let mut pr = [0u8; PRSTATUS_SIZE];
        // crash_dump.c sets pr_pid to the CPU number.
        put_u32(&mut pr, PRSTATUS_PID, cpu);
        // CPU 0 is running kernel code (it panicked); the others were stopped
        // in an enabled wait. Both are 64-bit (EA+BA), DAT on, key 0.
        let mask = if cpu == 0 {
            0x0704_c001_8000_0000
        } else {
            0x0706_c001_8000_0000
        };
        put_u64(&mut pr, PRSTATUS_PSW, mask);
        put_u64(
            &mut pr,
            PRSTATUS_PSW + 8,
            text + ((rng.next_u64() % 0x40_0000) & !1),
        );
        for r in 0..16 {
            let v = match r {
                // r14: return address into kernel text.
                14 => text + ((rng.next_u64() % 0x40_0000) & !1),
                // r15: stack pointer in the identity mapping, 8-aligned.
                15 => stack_base + ((rng.next_u64() % stack_span) & !7),
                _ => rng.next_u64(),
            };
            put_u64(&mut pr, PRSTATUS_GPRS + 8 * r, v);
        }
        // Access registers 0/1 hold the thread pointer; the rest are zero.
        put_u32(&mut pr, PRSTATUS_ACRS, rng.next_u64() as u32);
        put_u32(&mut pr, PRSTATUS_ACRS + 4, rng.next_u64() as u32);
        put_u64(&mut pr, PRSTATUS_ORIG_GPR2, rng.next_u64());
        put_u32(&mut pr, PRSTATUS_FPVALID, 1);
        push_note(&mut buf, "CORE", nt::PRSTATUS, &pr);

        let mut fp = [0u8; FPREGS_SIZE];
        fp[8..].copy_from_slice(&random_bytes(&mut rng, FPREGS_SIZE - 8));
        push_note(&mut buf, "CORE", nt::PRFPREG, &fp);

        let timer = 0x7fff_ffff_0000_0000 | (rng.next_u64() >> 32);
        push_note(&mut buf, s390, nt::S390_TIMER, &timer.to_be_bytes());
        // A TOD clock value of the 2020s (epoch 1900, bit 51 = 1 µs).
        let todcmp = 0xdc00_0000_0000_0000 | (rng.next_u64() >> 8);
        push_note(&mut buf, s390, nt::S390_TODCMP, &todcmp.to_be_bytes());
        push_note(&mut buf, s390, nt::S390_TODPREG, &0u32.to_be_bytes());

        let mut ctrs = [0u8; 128];
        let asce = (rng.next_u64() & 0x7fff_f000) | 0x000b; // region-third table
        let crs: [u64; 16] = [
            0x1486_6a10,
            asce,
            0,
            0,
            0,
            0,
            0,
            asce,
            0,
            0,
            0,
            0,
            0,
            asce,
            0xdb00_0000,
            0,
        ];
        for (i, cr) in crs.iter().enumerate() {
            put_u64(&mut ctrs, 8 * i, *cr);
        }
        push_note(&mut buf, s390, nt::S390_CTRS, &ctrs);
        push_note(
            &mut buf,
            s390,
            nt::S390_PREFIX,
            &prefixes[cpu as usize].to_be_bytes(),
        );
        if spec.vx {
            // Same order as crash_dump.c: low halves of v0-v15, then v16-v31.
            push_note(
                &mut buf,
                s390,
                nt::S390_VXRS_LOW,
                &random_bytes(&mut rng, 128),
            );
            push_note(
                &mut buf,
                s390,
                nt::S390_VXRS_HIGH,
                &random_bytes(&mut rng, 256),
            );
        }
    }

    push_note(
        &mut buf,
        "VMCOREINFO",
        nt::VMCOREINFO,
        spec.vmcoreinfo.as_bytes(),
    );
    buf
}

/// Size of the empty note (namesz = descsz = type = 0) that ends the list.
pub(crate) const TERMINATOR_SIZE: u64 = 12;
