//! The vmcores the e2e runs dump: generated ones from `vmcore-fixture`
//! (checked against its layout and zgetdump), and QEMU's `dump-guest-memory`
//! of a booted guest, an ELF core written by QEMU, not our code.

use std::fs::{self, File};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use zfcpdump_format::elf::{SeekReader, Vmcore};

use crate::checks::files::sparse_copy;
use crate::checks::fmt_ranges;
use crate::guest::{self, Boot, Outcome};
use crate::kit::{Ctx, step};
use zfcpdump_builder::cmd::{self, cmd};

/// Memory of the guest whose memory QEMU dumps: the dump must fit the 4K
/// disk's dump area (about 148 MB) and not the 512-byte one (about 15 MB),
/// which makes it the "too small" case there.
const QEMU_GUEST_MEMORY: u64 = 64 << 20;
const QEMU_GUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Simulated HSA for the generated vmcore: splits its first range
/// ([0, 7.5 MiB)) into an HSA-backed part and the rest.
const FIXTURE_HSA: u64 = 4 << 20;
/// Simulated HSA for QEMU's dump: the 32 MiB of machines before z15.
const QEMU_DUMP_HSA: u64 = 32 << 20;

/// A vmcore the runs copy.
#[derive(Clone)]
pub(crate) struct Source {
    pub(crate) name: &'static str,
    /// The vmcore file.
    pub(crate) file: PathBuf,
    /// A copy padded to whole 4 KiB blocks, attached as virtio-blk (/dev/vda):
    /// the guest never touches `file`.
    pub(crate) disk: PathBuf,
    pub(crate) size: u64,
    /// What the agent copies from a block device: the ELF extent.
    pub(crate) extent: u64,
    pub(crate) cpus: usize,
    /// PT_LOAD physical ranges, file order.
    pub(crate) ranges: Vec<Range<u64>>,
    pub(crate) hsa_size: u64,
    /// A byte-exact dump of it is within what both zgetdumps read: 2.16's
    /// limits (e_phoff 64, p_vaddr == p_paddr), and no section data after
    /// the last segment, which a copy of the ELF extent leaves out and 2.35
    /// then refuses (QEMU's dump has its section name table there).
    pub(crate) zgetdump: bool,
    /// The memory of a guest that ran the profile's kernel: crash can
    /// read its dumps with that kernel's vmlinux.
    pub(crate) kernel_dump: bool,
    /// One line for the report.
    pub(crate) about: String,
}

// ---------------------------------------------------------------------------

pub(crate) fn generated_source(ctx: &Ctx, name: &'static str, args: &[&str]) -> Result<Source> {
    let file = ctx.work.join(format!("{name}.vmcore"));
    let sh = cmd::shell()?;
    let tool = &ctx.fixture_tool;
    let out = cmd::output(cmd!(sh, "{tool} {args...} --print-layout {file}"))?;
    let layout = String::from_utf8_lossy(&out.stdout);
    let mut ranges = Vec::new();
    let mut cpus = None;
    for line in layout.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let field = |name: &str| -> Option<u64> {
            let v = w.get(w.iter().position(|x| *x == name)? + 1)?;
            match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => v.parse().ok(),
            }
        };
        if line.starts_with("LOAD ") {
            let (p, s) = field("paddr")
                .zip(field("size"))
                .with_context(|| format!("unexpected layout line {line:?}"))?;
            ranges.push(p..p + s);
        } else if let Some(n) = field("cpus") {
            cpus = Some(n as usize);
        }
    }
    let cpus = cpus.context("vmcore-fixture --print-layout printed no CPU count")?;
    let mut src = source(name, file, cpus, FIXTURE_HSA, &ctx.work)?;
    ensure!(
        src.ranges == ranges,
        "the vmcore's PT_LOADs {:?} differ from vmcore-fixture's layout {ranges:?}",
        src.ranges
    );
    ensure!(
        src.extent == src.size && src.zgetdump,
        "the generated vmcore {name} should be /proc/vmcore-shaped (extent {} of {} bytes, \
         e_phoff 64, p_vaddr == p_paddr)",
        src.extent,
        src.size
    );
    // zgetdump reads the file itself too: a reader independent of ours.
    let info = ctx.readers.zgetdump.info(&src.file)?;
    ensure!(
        info.cpus as usize == cpus && info.memory_map == ranges,
        "zgetdump -i disagrees with vmcore-fixture's layout ({cpus} CPUs, {ranges:?}):\n{}",
        info.text
    );
    src.about = format!(
        "{name} (vmcore-fixture {}): {} bytes, {cpus} CPUs, memory {}, simulated HSA {} MiB; \
         zgetdump -i agrees",
        args.join(" "),
        src.size,
        fmt_ranges(&ranges),
        FIXTURE_HSA >> 20
    );
    step(format!("   {}", src.about));
    Ok(src)
}

/// Reads a vmcore with our ELF reader (zgetdump 2.16 cannot read QEMU's) and
/// makes its virtio-blk copy.
pub(crate) fn source(
    name: &'static str,
    file: PathBuf,
    cpus_expected: usize,
    hsa_size: u64,
    work: &Path,
) -> Result<Source> {
    let size = fs::metadata(&file)?.len();
    let vm = Vmcore::read(&mut SeekReader::new(File::open(&file)?), size)
        .with_context(|| format!("{}", file.display()))?;
    let cpus = vm
        .cpu_count()
        .with_context(|| format!("{}", file.display()))?;
    ensure!(
        cpus == cpus_expected,
        "{} has {cpus} CPU notes, expected {cpus_expected}",
        file.display()
    );
    let ranges: Vec<Range<u64>> = vm
        .loads()
        .map(|p| p.p_paddr..p.p_paddr + p.p_memsz)
        .collect();
    let extent = vm.extent();
    let zgetdump = vm.header.e_phoff == 64
        && vm.loads().all(|p| p.p_vaddr == p.p_paddr)
        && !(vm.header.e_shnum > 0 && size > extent);
    // A device source yields the ELF extent: everything up to the end of
    // the last segment. QEMU's dump has 11 more bytes, its section name
    // table, which belong to no segment.
    let disk = work.join(format!("{name}.vda.img"));
    sparse_copy(&file, &disk)?;
    let f = fs::OpenOptions::new().write(true).open(&disk)?;
    f.set_len(size.next_multiple_of(4096))?;
    f.sync_all()?;
    Ok(Source {
        name,
        file,
        disk,
        size,
        extent,
        cpus,
        ranges,
        hsa_size,
        zgetdump,
        kernel_dump: false,
        about: String::new(),
    })
}

/// Boots the profile's dist kernel with more memory and no disks: the agent gives
/// up (no IPL device) and powers off, which `-action shutdown=pause` turns
/// into a pause; then QMP `dump-guest-memory` writes the guest's memory as
/// an ELF core, the way QEMU does it, not our code.
pub(crate) fn qemu_dump_source(ctx: &Ctx) -> Result<Source> {
    let file = ctx.work.join("qemu.vmcore");
    let log = ctx.work.join("qemu-guest.console.log");
    let mut sock = ctx.work.join("qmp.sock");
    // sun_path holds 108 bytes.
    if sock.as_os_str().len() > 100 {
        sock = std::env::temp_dir().join(format!("zfcpdump-e2e-{}.qmp", std::process::id()));
    }
    let _ = fs::remove_file(&sock);
    let boot = Boot {
        image: &ctx.image,
        initrd: ctx.initrd.as_deref(),
        memory: QEMU_GUEST_MEMORY,
        cpus: 1,
        append: String::new(),
        drives: vec![],
        timeout: QEMU_GUEST_TIMEOUT,
        log: log.clone(),
    };
    let extra = vec![
        "-qmp".to_string(),
        format!("unix:{},server=on,wait=off", sock.display()),
        "-action".to_string(),
        "shutdown=pause".to_string(),
    ];
    let (qmp_res, out) = std::thread::scope(|s| {
        let guest = s.spawn(|| boot.run_with(&extra));
        let qmp_res = guest::dump_via_qmp(&sock, &file, QEMU_GUEST_TIMEOUT, || guest.is_finished());
        (qmp_res, guest.join())
    });
    let _ = fs::remove_file(&sock);
    let out: Outcome = out.map_err(|_| anyhow::anyhow!("QEMU runner panicked"))??;
    let tail = || format!("console tail ({}):\n{}", log.display(), out.tail(20));
    qmp_res.with_context(|| format!("QEMU's dump-guest-memory failed; {}", tail()))?;
    ensure!(
        out.exit == Some(0),
        "the guest QEMU dumped did not end cleanly after `quit` (exit {:?}); {}",
        out.exit,
        tail()
    );
    ensure!(
        out.console.contains("Run /init as init process") && out.console.contains("Dump failed"),
        "the guest QEMU dumped did not run the agent; {}",
        tail()
    );
    let mut src = source("qemu", file, 1, QEMU_DUMP_HSA, &ctx.work)?;
    src.kernel_dump = true;
    ensure!(
        src.ranges.iter().map(|r| r.end - r.start).sum::<u64>() == QEMU_GUEST_MEMORY,
        "QEMU's dump covers {}, not the guest's {} MiB",
        fmt_ranges(&src.ranges),
        QEMU_GUEST_MEMORY >> 20
    );
    let vm = Vmcore::read_headers(&mut SeekReader::new(File::open(&src.file)?), src.size)?;
    src.about = format!(
        "qemu (QMP dump-guest-memory of a booted {} MiB guest): {} bytes, e_phoff {}, {} CPU, \
         memory {}, ELF extent {} ({} bytes after it, in no segment), simulated HSA {} MiB",
        QEMU_GUEST_MEMORY >> 20,
        src.size,
        vm.header.e_phoff,
        src.cpus,
        fmt_ranges(&src.ranges),
        src.extent,
        src.size - src.extent,
        QEMU_DUMP_HSA >> 20
    );
    step(format!("   {}", src.about));
    Ok(src)
}
