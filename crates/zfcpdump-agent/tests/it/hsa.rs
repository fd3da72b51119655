//! The simulated HSA fails the way the real one does: once released, reads
//! of HSA-backed memory fail with EFAULT. So an order mistake, reading HSA
//! memory after the release, fails a test instead of passing silently. Each
//! test here makes that mistake on purpose, in the copy engines the agent
//! uses, on a vmcore with the V!=R layout (a kernel-image PT_LOAD inside the
//! HSA as well as the identity one).

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::common::{MIB, World, spec};
use zfcpdump_agent::cmdline::Cmdline;
use zfcpdump_agent::copy::{COPY_BUF_SIZE, Progress, execute_plan};
use zfcpdump_agent::filtered::{FilteredDump, execute_filtered, plan_for};
use zfcpdump_agent::hsa::{EFAULT, Hsa, hsa_file_ranges};
use zfcpdump_format::elf::{ReadAt, SeekReader, Vmcore};
use zfcpdump_format::filter::DumpLevel;
use zfcpdump_format::plan::{CopyStep, copy_plan};

const HSA: u64 = 2 * MIB;

struct Setup {
    world: World,
    vm: Vmcore,
    len: u64,
    env: zfcpdump_agent::Env,
}

fn setup() -> Setup {
    let world = World::new(512, spec());
    let len = world.vmcore_len();
    let vm = Vmcore::read(
        &mut SeekReader::new(File::open(&world.vmcore).unwrap()),
        len,
    )
    .unwrap();
    let mut env = world.env();
    env.hsa_size = Some(HSA);
    Setup {
        world,
        vm,
        len,
        env,
    }
}

struct FileSrc(File);
impl ReadAt for FileSrc {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        FileExt::read_exact_at(&self.0, buf, offset)
    }
}

/// The pieces of a copy with the simulated HSA: the failing source, a
/// scratch target, a buffer and a release that calls [`Hsa::release`].
type Engine<'a> = dyn FnMut(
        &mut dyn ReadAt,
        &mut File,
        &mut [u8],
        &mut dyn FnMut() -> Result<(), zfcpdump_agent::error::DumpError>,
    ) -> Result<(), zfcpdump_agent::error::DumpError>
    + 'a;

/// Runs a copy engine against a scratch file with the simulated HSA; the
/// error text, if the copy failed.
fn with_simulated_hsa(s: &Setup, engine: &mut Engine) -> Option<String> {
    let hsa = Hsa::detect(&s.env, &Cmdline::default());
    assert!(hsa.simulated);
    let mut src = hsa.source(FileSrc(File::open(&s.world.vmcore).unwrap()), &s.vm.phdrs);
    let mut dst = tempfile::tempfile().unwrap();
    let mut buf = vec![0u8; COPY_BUF_SIZE];
    let mut release = || {
        hsa.release(&s.env);
        Ok(())
    };
    engine(&mut src, &mut dst, &mut buf, &mut release)
        .err()
        .map(|e| e.to_string())
}

/// The byte-exact engine on `steps`.
fn copy(s: &Setup, steps: &[CopyStep]) -> Option<String> {
    with_simulated_hsa(s, &mut |src, dst, buf, release| {
        let mut progress = Progress::new(&s.env.log, s.len, 0);
        execute_plan(src, dst, 0, steps, buf, &mut progress, release, &s.env.log).map(|_| ())
    })
}

fn efault(msg: &str) -> bool {
    msg.contains(&std::io::Error::from_raw_os_error(EFAULT).to_string())
}

#[test]
fn the_layout_has_two_hsa_backed_ranges() {
    let s = setup();
    // The identity range from 0 and the kernel image at 1 MiB, both below
    // the 2 MiB HSA: what s390-tools 2.33.0 fixed.
    assert_eq!(hsa_file_ranges(&s.vm.phdrs, HSA).len(), 2);
}

#[test]
fn the_plan_order_reads_every_hsa_byte_before_the_release() {
    let s = setup();
    let steps = copy_plan(&s.vm.phdrs, s.len, HSA).unwrap();
    assert_eq!(copy(&s, &steps), None);
}

#[test]
fn releasing_first_fails_with_efault() {
    let s = setup();
    let mut steps = copy_plan(&s.vm.phdrs, s.len, HSA).unwrap();
    let at = steps
        .iter()
        .position(|st| *st == CopyStep::ReleaseHsa)
        .unwrap();
    let release = steps.remove(at);
    steps.insert(0, release);
    let err = copy(&s, &steps).expect("reading the HSA after its release must fail");
    assert!(efault(&err), "{err}");
    assert!(err.contains("reading"), "{err}");
}

#[test]
fn a_plan_that_misses_the_kernel_image_range_fails() {
    let s = setup();
    let mut steps = copy_plan(&s.vm.phdrs, s.len, HSA).unwrap();
    // The kernel image PT_LOAD's HSA-backed step, treated as ordinary memory
    // and moved after the release, as a plan that only knew paddr 0 would.
    let text = s.vm.loads().find(|p| p.p_vaddr != p.p_paddr).unwrap();
    let at = steps
        .iter()
        .position(
            |st| matches!(*st, CopyStep::Copy { start, hsa: true, .. } if start == text.p_offset),
        )
        .expect("the kernel image range is HSA-backed");
    let CopyStep::Copy { start, end, .. } = steps.remove(at) else {
        unreachable!()
    };
    let release = steps
        .iter()
        .position(|st| *st == CopyStep::ReleaseHsa)
        .unwrap();
    steps.insert(
        release + 1,
        CopyStep::Copy {
            start,
            end,
            hsa: false,
        },
    );
    let err = copy(&s, &steps).expect("the missed range must fail");
    assert!(efault(&err), "{err}");
}

#[test]
fn elided_copy_of_an_hsa_part_after_the_release_fails() {
    let s = setup();
    let run = |mistake: bool| {
        let mut plan = plan_for(&s.vm, s.len, HSA, 64 * MIB, &s.env.log).unwrap();
        if mistake {
            // An HSA-backed part planned as ordinary memory: copied after the release.
            plan.parts.iter_mut().find(|p| p.hsa).unwrap().hsa = false;
        }
        let level = DumpLevel::new(1).unwrap();
        let f = FilteredDump {
            plan,
            asked: level,
            used: level,
        };
        with_simulated_hsa(&s, &mut |src, dst, buf, release| {
            let mut progress = Progress::new(&s.env.log, f.plan.input_bytes(), 0);
            execute_filtered(
                src,
                dst,
                0,
                &f,
                None,
                buf,
                &mut progress,
                release,
                &s.env.log,
            )
            .map(|_| ())
        })
    };
    assert_eq!(run(false), None);
    let err = run(true).expect("the mistake must fail");
    assert!(efault(&err), "{err}");
}

#[test]
fn without_simulation_the_source_passes_reads_through() {
    // zcore's own HSA: the kernel fails the reads, the agent adds nothing.
    let s = setup();
    let mut env = s.world.env();
    env.hsa_size = None;
    let hsa = Hsa::detect(&env, &Cmdline::default());
    assert!(!hsa.simulated);
    hsa.release(&env);
    let mut src = hsa.source(FileSrc(File::open(&s.world.vmcore).unwrap()), &s.vm.phdrs);
    let mut b = [0u8; 4096];
    src.read_exact_at(&mut b, s.vm.loads().next().unwrap().p_offset)
        .unwrap();
}

#[test]
fn a_segment_that_starts_in_the_header_block_is_read_before_the_release() {
    // QEMU's dump-guest-memory layout: the PT_LOAD of physical 0 at file
    // offset 0x608, so the header block holds HSA memory too.
    use zfcpdump_format::elf::{PT_LOAD, ProgramHeader};
    let s = setup();
    let load = ProgramHeader {
        p_type: PT_LOAD,
        p_flags: 7,
        p_offset: 0x608,
        p_vaddr: 0,
        p_paddr: 0,
        p_filesz: 0x3000,
        p_memsz: 0x3000,
        p_align: 1,
    };
    let len = 0x3608u64;
    let data: Vec<u8> = (0..len).map(|i| (i * 13 + i / 256) as u8).collect();
    let mut env = s.world.env();
    env.hsa_size = Some(0x2000);
    let hsa = Hsa::detect(&env, &Cmdline::default());
    let mut src = hsa.source(&data[..], &[load]);
    let steps = copy_plan(&[load], len, 0x2000).unwrap();
    let mut dst = tempfile::tempfile().unwrap();
    let mut buf = vec![0u8; COPY_BUF_SIZE];
    let mut progress = Progress::new(&env.log, len, 0);
    let mut release = || {
        hsa.release(&env);
        Ok(())
    };
    execute_plan(
        &mut src,
        &mut dst,
        0,
        &steps,
        &mut buf,
        &mut progress,
        &mut release,
        &env.log,
    )
    .unwrap();
    let mut out = vec![0u8; len as usize];
    dst.read_exact_at(&mut out, 0).unwrap();
    assert!(out == data);
}
