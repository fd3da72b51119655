//! The zfcpdump dump agent.
//!
//! Runs as /init (PID 1) of the dump initramfs and copies `/proc/vmcore` to
//! the dump partition that `zipl --dumpto` prepared, or, as a tool, does the
//! same against a root directory, a source file and a disk image given to it.
//! The interface (modes, kernel command line, config file, exit codes, console
//! messages, panic strategy) is documented in this crate's README.md.
//!
//! [`run`] does the work in the reference tool's order; `main` only decides the
//! mode, prints the verdict and, in PID-1 mode, powers off.

pub mod cmdline;
pub mod copy;
pub mod disk;
pub mod error;
pub mod filtered;
pub mod hsa;
pub mod ipl;
pub mod log;
pub mod sys;
pub mod tool;

use crate::copy::{COPY_BUF_SIZE, Progress, execute_plan};
use crate::disk::{DumpDisk, DumpTarget};
use crate::error::{Context, DumpError, DumpStep};
use crate::filtered::FilteredDump;
use crate::ipl::{poll_until, under};
use crate::log::Log;
use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zfcpdump_format::busy::BUSY_MARKER;
use zfcpdump_format::config::{AgentConfig, CONFIG_PATH};
use zfcpdump_format::csum::{CSUM_SIZE, dump_csum};
use zfcpdump_format::elf::{ReadAt, Vmcore, vmcoreinfo_lookup};
use zfcpdump_format::filter::classify::PageFilter;
use zfcpdump_format::filter::{DumpLevel, PhysRead, VmcorePhys};
use zfcpdump_format::filtered::FilteredStats;
use zfcpdump_format::plan::{CopyStep, copy_plan};
use zfcpdump_format::superblock::{csum_field_bytes, csum_field_offset};

/// Version printed in the banner.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where the zcore HSA control file is (debugfs).
pub const ZCORE_HSA: &str = "/sys/kernel/debug/zcore/hsa";
/// Where the zcore re-IPL control file is (debugfs): a C string, since
/// [`sys::power_off`] opens it on the crash path, without allocating.
pub const ZCORE_REIPL: &CStr = c"/sys/kernel/debug/zcore/reipl";

/// What [`run`] works on. In PID-1 mode `root` is `/` and nothing else is set;
/// the tool fills the overrides from its command line.
#[derive(Debug)]
pub struct Env {
    /// The root for /proc, /sys, /dev and /etc.
    pub root: PathBuf,
    /// PID-1 mode: mount the pseudo file systems first. Only `main` sets this,
    /// and only when getpid() == 1; the privileged calls check again.
    pub pid1: bool,
    /// Source file instead of `/proc/vmcore` (a host path, not under `root`).
    pub source: Option<PathBuf>,
    /// Whole disk (or image) instead of the IPL device (a host path).
    pub disk: Option<PathBuf>,
    /// Simulated HSA size in bytes.
    pub hsa_size: Option<u64>,
    /// Logical block size of an image file (512 or 4096); `None` tries both.
    pub sector_size: Option<u64>,
    /// Config file instead of `<root>/etc/zfcpdump.conf`; must then exist.
    pub config: Option<PathBuf>,
    /// Debug level, taking precedence over `dump_debug=`.
    pub debug: Option<u8>,
    /// Where console lines go.
    pub log: Log,
}

impl Env {
    /// A tool-mode environment on `root` with no overrides, logging to the console.
    pub fn new(root: impl Into<PathBuf>) -> Env {
        Env {
            root: root.into(),
            pid1: false,
            source: None,
            disk: None,
            hsa_size: None,
            sector_size: None,
            config: None,
            debug: None,
            log: Log::console(),
        }
    }
}

/// What a successful dump did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The vmcore that was copied.
    pub source: PathBuf,
    /// The whole disk written to.
    pub disk: PathBuf,
    /// The dump partition's number.
    pub partition: u32,
    /// Bytes written: the vmcore's size, or the elided dump's.
    pub bytes: u64,
    /// Bytes copied from HSA-backed ranges before the HSA release.
    pub hsa_bytes: u64,
    /// The HSA size used for the plan.
    pub hsa_size: u64,
    /// Whether the HSA size was simulated (test override).
    pub hsa_simulated: bool,
    /// CPUs in the vmcore (NT_PRSTATUS notes).
    pub cpus: usize,
    /// The superblock checksum written at the end.
    pub csum: u32,
    /// Wall time of the copy in milliseconds.
    pub copy_ms: u64,
    /// What the filtered layout writer did, when the dump was filtered.
    pub filtered: Option<zfcpdump_format::filtered::FilteredStats>,
}

/// Runs a dump against `env`, writing through a plain `File`.
pub fn run(env: &Env) -> Result<Summary, DumpError> {
    run_with(env, |f| f)
}

/// Like [`run`], but every read and write of the dump disk goes through the
/// target that `wrap` makes of the opened disk file: tests inject I/O errors
/// this way.
pub fn run_with<T: DumpTarget>(
    env: &Env,
    wrap: impl FnOnce(File) -> T,
) -> Result<Summary, DumpError> {
    let log = &env.log;

    // 1. Mounts (PID 1 only).
    start(env)?;

    // 2. Kernel command line and config file.
    let (cmd, cfg) = read_settings(env)?;
    let deadline = Instant::now() + Duration::from_secs(cfg.device_timeout_s as u64);

    // 3. The dump disk: an override, or the IPL device brought online.
    let disk_path = find_dump_disk(env, &cmd, deadline, cfg.device_timeout_s)?;

    // 4. Metadata: MBR boot_info, superblock, checksum.
    let (mut target, disk, is_block) = open_dump_disk(&disk_path, wrap, log)?;

    // 5. The partition the superblock describes must exist, in bytes.
    let partition = match_partition(env, &disk_path, is_block, &disk, deadline)?;
    info!(
        log,
        "dump partition {} ({})", partition.number, partition.how
    );

    // 6. The vmcore, and the size check before anything is written.
    let src = open_vmcore(env, &cmd)?;
    check_size(src.len, disk.sb.dump_size)?;
    let hsa = hsa::Hsa::detect(env, &cmd);
    let plan = copy_plan(&src.vm.phdrs, src.len, hsa.size)
        .map_err(|e| DumpError::new(DumpStep::Vmcore, e.to_string()))?;
    // The dump level: the command line's (the operator's SCP data) over the
    // profile's. Struct pages are classified now, before the HSA release:
    // the page tables and mem_section may lie in it.
    let asked = dump_level(&cmd, &cfg, log);
    let mut filter_src = hsa.source(FileSource(&src.file), &src.vm.phdrs);
    let mut filter_mem = VmcorePhys::new(&src.vm, &mut filter_src);
    let (filtering, mut page_filter) =
        prepare_filtering(&src, asked, &hsa, disk.sb.dump_size, &mut filter_mem, log);
    let mut vmcore = hsa.source(FileSource(&src.file), &src.vm.phdrs);
    drop(src.vm);

    // 7. Busy marker, then the checksum that now covers it.
    write_busy_marker(&mut target, &disk, log)?;

    // 8. The copy: HSA ranges, HSA release, the rest, an fsync, the ELF
    // header last, and an fsync of it before the checksum covers it.
    let layout = match &filtering {
        Some(dump) => Layout::Filtered(dump, page_filter.as_mut(), &mut filter_mem),
        None => Layout::Exact(&plan, src.len),
    };
    let base = disk.sb.dump_area().start;
    let copied = copy_dump(env, &cfg, &hsa, &mut vmcore, &mut target, base, layout)?;

    // 9. The final checksum over the (now ELF) first block.
    let csum = update_csum(&mut target, &disk, DumpStep::Checksum)?;
    trace!(log, "superblock checksum {csum:#010x}");

    Ok(Summary {
        source: src.path,
        disk: disk_path,
        partition: partition.number,
        bytes: copied.stats.bytes,
        hsa_bytes: copied.stats.hsa_bytes,
        hsa_size: hsa.size,
        hsa_simulated: hsa.simulated,
        cpus: src.cpus,
        csum,
        copy_ms: copied.ms,
        filtered: copied.filtered,
    })
}

/// Prints the verdict lines every exit path ends with: `Dump successful` or
/// `Dump failed: <step>: <what> (<errno in words>)`, then the peak RSS.
pub fn report(result: &Result<Summary, DumpError>, log: &Log) {
    match result {
        Ok(s) => {
            info!(
                log,
                "{} bytes written to partition {} of {} in {} ms",
                s.bytes,
                s.partition,
                s.disk.display(),
                s.copy_ms
            );
            error!(log, "Dump successful");
        }
        Err(e) => error!(log, "Dump failed: {e}"),
    }
    match sys::peak_rss_kib() {
        Some(kib) => error!(log, "peak RSS: {kib} KiB"),
        None => error!(log, "peak RSS: unknown"),
    }
}

/// Step 1: the debug level the tool asked for, the mounts (PID 1 only) and
/// the banner.
fn start(env: &Env) -> Result<(), DumpError> {
    let log = &env.log;
    if let Some(level) = env.debug {
        log.set_level(level);
    }
    if env.pid1 {
        sys::mount_all(log)?;
        info!(log, "zfcpdump-agent {VERSION}: writing the dump (PID 1)");
    } else {
        info!(
            log,
            "zfcpdump-agent {VERSION} (tool mode, root {})",
            env.root.display()
        );
    }
    Ok(())
}

/// Step 2: the kernel command line (which sets the debug level unless the
/// tool did) and the config file.
fn read_settings(env: &Env) -> Result<(cmdline::Cmdline, AgentConfig), DumpError> {
    let log = &env.log;
    let (cmd, cmd_text) = read_cmdline(env)?;
    if let Some(level) = env.debug.or(cmd.dump_debug) {
        log.set_level(level);
    }
    trace!(log, "cmdline: {}", cmd_text.trim());
    for w in &cmd.warnings {
        error!(log, "warning: {w}");
    }
    if cmd.test_panic {
        // Test-only: proves that a panic still ends in "Dump failed" and a power-off.
        panic!("zfcpdump.test_panic=1 on the kernel command line: deliberate panic");
    }
    let cfg = load_config(env)?;
    trace!(
        log,
        "config: device_timeout_s={} progress_interval_s={} dump_level={}",
        cfg.device_timeout_s,
        cfg.progress_interval_s,
        cfg.dump_level
    );
    Ok((cmd, cfg))
}

fn read_cmdline(env: &Env) -> Result<(cmdline::Cmdline, String), DumpError> {
    let path = under(&env.root, "/proc/cmdline");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((cmdline::parse(&text), text)),
        // A fake root without proc/cmdline is fine; a real /proc always has it.
        Err(e) if e.kind() == io::ErrorKind::NotFound && !env.pid1 => Ok(Default::default()),
        Err(e) => Err(DumpError::io(DumpStep::Cmdline, "reading /proc/cmdline", e)),
    }
}

/// An explicit config file must be readable and valid. The initramfs one may
/// be missing (defaults); if it is broken the dump still runs with defaults,
/// because no dump is worse than a dump with the default timeouts.
fn load_config(env: &Env) -> Result<AgentConfig, DumpError> {
    if let Some(p) = &env.config {
        let text = std::fs::read_to_string(p)
            .ctx(DumpStep::Config, || format!("reading {}", p.display()))?;
        return AgentConfig::parse(&text)
            .map_err(|e| DumpError::new(DumpStep::Config, e.to_string()));
    }
    let path = under(&env.root, CONFIG_PATH);
    match std::fs::read_to_string(&path) {
        Ok(text) => match AgentConfig::parse(&text) {
            Ok(c) => Ok(c),
            Err(e) => {
                error!(env.log, "warning: {e}; using the defaults");
                Ok(AgentConfig::default())
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            trace!(env.log, "no {CONFIG_PATH}: using the defaults");
            Ok(AgentConfig::default())
        }
        Err(e) => {
            error!(
                env.log,
                "warning: reading {CONFIG_PATH}: {e}; using the defaults"
            );
            Ok(AgentConfig::default())
        }
    }
}

/// Step 3: the whole dump disk: the tool's `--disk`, the command line's
/// `zfcpdump.disk=`, or the IPL device brought online and found in sysfs.
fn find_dump_disk(
    env: &Env,
    cmd: &cmdline::Cmdline,
    deadline: Instant,
    timeout_s: u32,
) -> Result<PathBuf, DumpError> {
    let log = &env.log;
    let root = env.root.as_path();
    if let Some(d) = &env.disk {
        wait_for_path(d, deadline, timeout_s)
    } else if let Some(d) = &cmd.disk {
        info!(log, "test override zfcpdump.disk={d}");
        wait_for_path(&under(root, d), deadline, timeout_s)
    } else {
        let dev = ipl::read_ipl(root)?;
        info!(
            log,
            "IPL device {} wwpn 0x{:016x} lun 0x{:016x}", dev.device, dev.wwpn, dev.lun
        );
        ipl::bring_online(root, &dev, deadline, log)?;
        ipl::wait_for_disk(root, &dev, deadline, timeout_s, log)
    }
}

fn wait_for_path(path: &Path, deadline: Instant, timeout_s: u32) -> Result<PathBuf, DumpError> {
    match poll_until(deadline, || path.exists().then_some(())) {
        Some(()) => Ok(path.to_path_buf()),
        None => Err(DumpError::io(
            DumpStep::Disk,
            format!("{} did not appear within {timeout_s} s", path.display()),
            io::Error::from_raw_os_error(libc::ENOENT),
        )),
    }
}

/// Step 4: opens the disk for writing, finds its size and reads and
/// validates zipl's metadata through the target `wrap` makes of it. Returns
/// the target, the metadata and whether the disk is a block device.
fn open_dump_disk<T: DumpTarget>(
    disk_path: &Path,
    wrap: impl FnOnce(File) -> T,
    log: &Log,
) -> Result<(T, DumpDisk, bool), DumpError> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk_path)
        .ctx(DumpStep::Disk, || {
            format!("opening {} for writing", disk_path.display())
        })?;
    let meta = file
        .metadata()
        .ctx(DumpStep::Disk, || format!("stat {}", disk_path.display()))?;
    let is_block = meta.file_type().is_block_device();
    let disk_size = if is_block {
        file.seek(SeekFrom::End(0)).ctx(DumpStep::Disk, || {
            format!("finding the size of {}", disk_path.display())
        })?
    } else {
        meta.len()
    };
    let mut target = wrap(file);
    let disk = disk::read_metadata(&mut target, disk_size)?;
    let sb = disk.sb;
    info!(
        log,
        "dump superblock at {:#x}: partition {:#x}+{} bytes, dump area {} bytes",
        disk.sb_offset,
        sb.part_start,
        sb.part_size,
        sb.dump_size
    );
    Ok((target, disk, is_block))
}

/// Step 5. A block device is matched against the kernel's view in sysfs
/// (waiting for the partition scan, which can finish after the disk node
/// appears); an image file against its DOS table.
fn match_partition(
    env: &Env,
    disk_path: &Path,
    is_block: bool,
    disk: &DumpDisk,
    deadline: Instant,
) -> Result<disk::PartitionMatch, DumpError> {
    if !is_block {
        let sizes: &[u64] = match env.sector_size {
            Some(ref s) => std::slice::from_ref(s),
            None => &[512, 4096],
        };
        return disk::match_dos(&disk.sector0, &disk.sb, sizes);
    }
    let real = std::fs::canonicalize(disk_path).unwrap_or_else(|_| disk_path.to_path_buf());
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parts = poll_until(deadline, || {
        let p = disk::sysfs_partitions(&env.root, &name);
        (!p.is_empty()).then_some(p)
    })
    .unwrap_or_default();
    if let Some(p) = disk::match_sysfs(&parts, &disk.sb) {
        return Ok(disk::PartitionMatch {
            number: p.number,
            how: format!("{} in sysfs", p.name),
        });
    }
    if !parts.is_empty() {
        return Err(disk::sysfs_mismatch(&name, &parts, &disk.sb));
    }
    // No partitions in sysfs at all: read the table ourselves, in the disk's
    // logical blocks.
    let lbs = disk::logical_block_size(&env.root, &name);
    trace!(
        env.log,
        "no partitions of {name} in sysfs; logical block size {lbs:?}"
    );
    match lbs {
        Some(bs) => disk::match_dos(&disk.sector0, &disk.sb, &[bs]),
        None => disk::match_dos(&disk.sector0, &disk.sb, &[512, 4096]),
    }
}

/// The vmcore a dump copies.
struct Source {
    /// Its path (a host path, or one under the root).
    path: PathBuf,
    /// The open file, read with pread only.
    file: File,
    /// Its headers and notes.
    vm: Vmcore,
    /// The bytes to copy (see [`read_vmcore`]).
    len: u64,
    /// CPUs in its notes; 0 where the notes do not say.
    cpus: usize,
}

/// Step 6: opens the vmcore (the tool's `--source`, the command line's
/// `zfcpdump.source=`, or /proc/vmcore), reads its headers and notes and
/// says what it holds.
fn open_vmcore(env: &Env, cmd: &cmdline::Cmdline) -> Result<Source, DumpError> {
    let log = &env.log;
    let root = env.root.as_path();
    let source = match (&env.source, &cmd.source) {
        (Some(s), _) => s.clone(),
        (None, Some(s)) => {
            info!(log, "test override zfcpdump.source={s}");
            under(root, s)
        }
        (None, None) => under(root, "/proc/vmcore"),
    };
    let src_file =
        File::open(&source).ctx(DumpStep::Vmcore, || format!("opening {}", source.display()))?;
    let (vm, copy_len) = read_vmcore(&src_file, &source)?;
    let cpus = match vm.cpu_count() {
        Ok(n) => n,
        Err(e) => {
            // The memory is still worth saving; the notes are copied as they are.
            error!(log, "warning: {}: {e}; copying it anyway", source.display());
            0
        }
    };
    let osrelease = vm
        .vmcoreinfo()
        .ok()
        .flatten()
        .and_then(|t| vmcoreinfo_lookup(t, "OSRELEASE"))
        .unwrap_or("unknown")
        .to_string();
    info!(
        log,
        "vmcore {}: {copy_len} bytes, {cpus} CPUs, {} PT_LOADs, kernel {osrelease}",
        source.display(),
        vm.loads().count()
    );
    Ok(Source {
        path: source,
        file: src_file,
        vm,
        len: copy_len,
        cpus,
    })
}

/// Reads and validates the vmcore's headers and notes. Returns the number of
/// bytes to copy: the file size for a regular file (/proc/vmcore's st_size is
/// its full size), the ELF extent for a device, whose size is the device's.
fn read_vmcore(file: &File, path: &Path) -> Result<(Vmcore, u64), DumpError> {
    let shown = path.display();
    let meta = file
        .metadata()
        .ctx(DumpStep::Vmcore, || format!("stat {shown}"))?;
    let size = if meta.is_file() {
        meta.len()
    } else {
        let mut f = file;
        f.seek(SeekFrom::End(0))
            .ctx(DumpStep::Vmcore, || format!("finding the size of {shown}"))?
    };
    // The ELF error's text already carries the OS error in words, if any.
    let vm = Vmcore::read(&mut FileSource(file), size).map_err(|e| {
        DumpError::new(
            DumpStep::Vmcore,
            format!("{shown} is not a usable s390x vmcore: {e}"),
        )
    })?;
    let len = if meta.is_file() { size } else { vm.extent() };
    Ok((vm, len))
}

/// The size check, before anything is written: the vmcore must fit the dump
/// area.
fn check_size(copy_len: u64, dump_size: u64) -> Result<(), DumpError> {
    if copy_len > dump_size {
        return Err(DumpError::new(
            DumpStep::SizeCheck,
            format!(
                "Disk too small: the vmcore is {copy_len} bytes ({} MiB), the dump area holds {} bytes \
                 ({} MiB)",
                copy_len.div_ceil(1 << 20),
                dump_size,
                dump_size >> 20
            ),
        ));
    }
    Ok(())
}

/// The dump level asked for: the command line's (the operator's SCP data)
/// over the profile's; said on the console unless it is 0.
fn dump_level(cmd: &cmdline::Cmdline, cfg: &AgentConfig, log: &Log) -> DumpLevel {
    let asked = cmd.dump_level.unwrap_or(cfg.dump_level);
    if asked != DumpLevel::EXACT {
        let from = if cmd.dump_level.is_some() {
            "zfcpdump.dump_level on the command line"
        } else {
            "the profile"
        };
        info!(log, "dump level {asked} (from {from})");
    }
    asked
}

/// The filtered layout and the page classifier for dump level `asked`
/// (see [`filtered::prepare`]); none at level 0, which copies byte for byte.
fn prepare_filtering(
    src: &Source,
    asked: DumpLevel,
    hsa: &hsa::Hsa,
    dump_size: u64,
    mem: &mut dyn PhysRead,
    log: &Log,
) -> (Option<FilteredDump>, Option<PageFilter>) {
    if asked == DumpLevel::EXACT {
        (None, None)
    } else {
        filtered::prepare(&src.vm, asked, src.len, hsa.size, dump_size, mem, log)
    }
}

/// Step 7: the busy marker, then the checksum that now covers it. The marker
/// is on the device before the checksum is written: a failed marker write
/// leaves the old checksum over the old contents, which stay valid.
fn write_busy_marker<T: DumpTarget>(
    target: &mut T,
    disk: &DumpDisk,
    log: &Log,
) -> Result<(), DumpError> {
    let area = disk.sb.dump_area();
    target
        .write_all_at(&BUSY_MARKER, area.start)
        .ctx(DumpStep::BusyMarker, || {
            format!("writing the busy marker at disk offset {:#x}", area.start)
        })?;
    target
        .sync()
        .ctx(DumpStep::BusyMarker, || "fsync of the busy marker".into())?;
    update_csum(target, disk, DumpStep::BusyMarker)?;
    info!(log, "busy marker written");
    Ok(())
}

/// What the copy writes.
enum Layout<'a> {
    /// The vmcore byte for byte: its copy plan and the bytes it copies.
    Exact(&'a [CopyStep], u64),
    /// The filtered layout, leaving pages out: the layout and levels, the
    /// page classifier where the level needs struct pages, and where the
    /// classifier reads them.
    Filtered(
        &'a FilteredDump,
        Option<&'a mut PageFilter>,
        &'a mut dyn PhysRead,
    ),
}

/// What the copy did.
struct Copied {
    /// Bytes written, and of them HSA-backed.
    stats: copy::CopyStats,
    /// What the filtered layout writer did, for a filtered dump.
    filtered: Option<FilteredStats>,
    /// Wall time in milliseconds, the final fsync included.
    ms: u64,
}

/// Step 8: the copy of `layout` from `src` to `base` of `target`: HSA
/// ranges, HSA release, the rest, an fsync, the ELF header last, and an
/// fsync of it before the checksum covers it.
fn copy_dump<S: ReadAt, T: DumpTarget>(
    env: &Env,
    cfg: &AgentConfig,
    hsa: &hsa::Hsa,
    src: &mut S,
    target: &mut T,
    base: u64,
    layout: Layout<'_>,
) -> Result<Copied, DumpError> {
    let log = &env.log;
    let started = Instant::now();
    let mut release = || {
        hsa.release(env);
        Ok(())
    };
    let mut buf = vec![0u8; COPY_BUF_SIZE];
    let (stats, filtered) = match layout {
        Layout::Filtered(ep, mut page_filter, mem) => {
            let mut progress = Progress::new(log, ep.plan.input_bytes(), cfg.progress_interval_s);
            let filter = page_filter.as_deref_mut().map(|f| (f, mem));
            let s = filtered::execute_filtered(
                src,
                target,
                base,
                ep,
                filter,
                &mut buf,
                &mut progress,
                &mut release,
                log,
            )?;
            for line in filtered::summary_lines(&s, ep, page_filter.as_deref()) {
                info!(log, "{line}");
            }
            let stats = copy::CopyStats {
                bytes: s.file_size,
                hsa_bytes: ep
                    .plan
                    .parts
                    .iter()
                    .filter(|p| p.hsa)
                    .map(|p| p.len())
                    .sum(),
            };
            (stats, Some(s))
        }
        Layout::Exact(plan, len) => {
            let mut progress = Progress::new(log, len, cfg.progress_interval_s);
            let stats = execute_plan(
                src,
                target,
                base,
                plan,
                &mut buf,
                &mut progress,
                &mut release,
                log,
            )?;
            (stats, None)
        }
    };
    target
        .sync()
        .ctx(DumpStep::Copy, || "fsync of the ELF header block".into())?;
    Ok(Copied {
        stats,
        filtered,
        ms: started.elapsed().as_millis() as u64,
    })
}

/// Recomputes the superblock checksum over the checksummed block as it is on
/// disk now, stores it in the 8-byte csum field and syncs.
fn update_csum<T: DumpTarget + ?Sized>(
    t: &mut T,
    disk: &DumpDisk,
    step: DumpStep,
) -> Result<u32, DumpError> {
    let mut block = [0u8; CSUM_SIZE];
    let at = disk.sb.csum_area().start;
    t.read_exact_at(&mut block, at)
        .ctx(step, || format!("reading the checksummed block at {at:#x}"))?;
    let csum = dump_csum(&block);
    let field = csum_field_offset(disk.sb_offset);
    t.write_all_at(&csum_field_bytes(csum), field)
        .ctx(step, || {
            format!("writing the superblock checksum at {field:#x}")
        })?;
    t.sync()
        .ctx(step, || "fsync after the checksum update".into())?;
    Ok(csum)
}

/// pread on the vmcore: no mapping, no seek position shared with anyone.
struct FileSource<'a>(&'a File);

impl ReadAt for FileSource<'_> {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self.0, buf, offset)
    }
}
