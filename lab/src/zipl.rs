//! zipl disks: the geometries of the checked zipl runs, DOS-partitioned disk
//! images, and real `zipl --dumpto` on them. zipl needs a real s390x block
//! device with a partition (it asks the kernel for the geometry and block
//! size), so [`zipl_prepare`] runs it in a throwaway qemu-system-s390x guest
//! that writes a disk image as a real `zipl --dumpto /dev/sda1` would.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use zfcpdump_format::mbr::{BlockPtr, ZiplMbr};
use zfcpdump_format::superblock::{DumpSuperblock, SB_SIZE};

use crate::kit::{Ctx, step};
use crate::readers::sysroot::{DEBIAN_12, elf_closure, in_root};
use crate::{progress, run_with_timeout, secs, sibling, tail};
use zfcpdump_builder::archive::{Archive, Kind};
use zfcpdump_builder::cmd::{self, cmd};
use zfcpdump_builder::util;
use zfcpdump_builder::util::have_command;

/// Where zipl 2.16 (Debian) looks for the dump tool.
const ZFCPDUMP_DIR: &str = "lib/s390-tools/zfcpdump";

/// Printed by the helper guest's /init; the host checks for them.
const MARK_OK: &str = "ZIPL-HELPER: SUCCESS";
const MARK_FAILED: &str = "ZIPL-HELPER: FAILED";
const MARK_OUT_BEGIN: &str = "ZIPL-HELPER: zipl output begin";
const MARK_OUT_END: &str = "ZIPL-HELPER: zipl output end";
const MARK_NO_DISK: &str = "ZIPL-HELPER: FAILED: no /dev/sda1";
/// How long /init waits for the partition (it appears within a second).
const NO_DISK_SECS: u32 = 30;

/// Kill the helper guest after this long. A run takes a few seconds; the
/// margin covers a loaded 2-core CI machine.
pub const ZIPL_GUEST_TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------
// Real zipl in a helper guest
// ---------------------------------------------------------------------------

/// A disk for [`zipl_prepare`]: one DOS partition, bytes throughout.
#[derive(Debug, Clone)]
pub struct ZiplJob<'a> {
    /// A kernel that sees virtio-scsi disks (a dist image: every profile
    /// here has kernel-config/virtio.config).
    pub helper_kernel: &'a Path,
    /// The dump tool kernel that zipl installs (zfcpdump-image).
    pub dump_image: &'a Path,
    /// The dump tool initrd (zfcpdump-initrd), if any.
    pub dump_initrd: Option<&'a Path>,
    /// The disk image to create (replaced if it exists).
    pub disk: &'a Path,
    /// Disk size in bytes.
    pub disk_size: u64,
    /// Logical block size of the emulated disk: 512 or 4096.
    pub sector_size: u32,
    /// Partition start in bytes.
    pub part_start: u64,
    /// Partition size in bytes.
    pub part_size: u64,
    /// Use only the cached sysroot.
    pub offline: bool,
}

/// What a helper guest run left behind.
#[derive(Debug, Clone)]
pub struct ZiplResult {
    /// The disk image zipl prepared.
    pub disk: PathBuf,
    /// The guest's console.
    pub console_log: PathBuf,
    /// What zipl printed.
    pub zipl_output: String,
    /// QEMU's wall time.
    pub elapsed: Duration,
}

/// A disk for zipl runs: size, logical block size and its one partition.
pub struct Geometry {
    pub name: &'static str,
    pub disk_size: u64,
    pub sector_size: u32,
    pub part_start: u64,
    pub part_size: u64,
}

/// The two disks of toolchain.md's checked zipl runs, used by the zipl test
/// and by e2e.
pub const GEOMETRIES: [Geometry; 2] = [
    Geometry {
        name: "512",
        disk_size: 64 << 20,
        sector_size: 512,
        part_start: 2048 * 512,
        part_size: 100_000 * 512,
    },
    // zipl reserves 0x10000 logical blocks (256 MiB here), so a 4K disk
    // needs a large partition.
    Geometry {
        name: "4k",
        disk_size: 404 << 20,
        sector_size: 4096,
        part_start: 1 << 20,
        part_size: 400 << 20,
    },
];

/// Creates a sparse raw disk image with a DOS partition table holding one
/// Linux (0x83) partition; start and size count logical blocks of
/// `sector_size`, as Linux reads the table on a disk with that block size.
pub fn create_partitioned_disk(
    path: &Path,
    disk_size: u64,
    sector_size: u32,
    part_start: u64,
    part_size: u64,
) -> Result<()> {
    let bs = sector_size as u64;
    ensure!(
        bs == 512 || bs == 4096,
        "sector size {bs} not supported, use 512 or 4096"
    );
    for (what, v) in [
        ("disk size", disk_size),
        ("partition start", part_start),
        ("partition size", part_size),
    ] {
        ensure!(
            v % bs == 0,
            "{what} {v} is not a multiple of the {bs}-byte sector size"
        );
    }
    ensure!(
        part_start >= bs && part_size > 0,
        "partition start {part_start} overlaps sector 0 or the partition is empty"
    );
    ensure!(
        part_start
            .checked_add(part_size)
            .is_some_and(|e| e <= disk_size),
        "partition {part_start}+{part_size} bytes does not fit the {disk_size}-byte disk"
    );
    let lba = |v: u64| {
        u32::try_from(v / bs)
            .with_context(|| format!("{v} bytes in {bs}-byte sectors exceed a DOS partition table"))
    };
    let mut sector = [0u8; 512];
    let e = &mut sector[0x1be..0x1ce];
    // CHS "use LBA" values, as partitioning tools write (and zfcpdump-disk).
    e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[4] = 0x83;
    e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[8..12].copy_from_slice(&lba(part_start)?.to_le_bytes());
    e[12..16].copy_from_slice(&lba(part_size)?.to_le_bytes());
    sector[0x1fe..].copy_from_slice(&[0x55, 0xaa]);

    let _ = fs::remove_file(path);
    let mut f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.set_len(disk_size)?;
    f.write_all(&sector)?;
    f.sync_all()?;
    Ok(())
}

/// Runs real `zipl --dumpto /dev/sda1` on a new disk image: creates the disk
/// with [`create_partitioned_disk`], builds the helper initramfs (busybox,
/// zipl and its libraries, the dump tool) and boots it in
/// qemu-system-s390x with the disk on virtio-scsi.
pub fn zipl_prepare(cache: &Path, job: &ZiplJob) -> Result<ZiplResult> {
    ensure!(
        have_command("qemu-system-s390x"),
        "qemu-system-s390x not found: install Debian's qemu-system-misc \
         (apt-get install --no-install-recommends qemu-system-misc)"
    );
    for (what, p) in [
        ("helper kernel", job.helper_kernel),
        ("dump tool image", job.dump_image),
    ] {
        ensure!(p.is_file(), "{what} {} does not exist", p.display());
    }
    if let Some(rd) = job.dump_initrd {
        ensure!(
            rd.is_file(),
            "dump tool initrd {} does not exist",
            rd.display()
        );
    }
    let root = DEBIAN_12.unpacked_root(cache, job.offline)?;
    create_partitioned_disk(
        job.disk,
        job.disk_size,
        job.sector_size,
        job.part_start,
        job.part_size,
    )?;
    let rd = sibling(job.disk, "zipl-helper.cpio");
    let log = sibling(job.disk, "zipl-console.log");
    helper_initramfs(&root, job, &rd)?;

    let mut scsi_hd = "scsi-hd,drive=d".to_string();
    if job.sector_size != 512 {
        let bs = job.sector_size;
        scsi_hd.push_str(&format!(
            ",logical_block_size={bs},physical_block_size={bs}"
        ));
    }
    let mut cmd = Command::new("qemu-system-s390x");
    cmd.args([
        "-M",
        "s390-ccw-virtio",
        "-m",
        "512",
        "-nographic",
        "-no-reboot",
    ])
    .arg("-kernel")
    .arg(job.helper_kernel)
    .arg("-initrd")
    .arg(&rd)
    // A synchronous SCSI scan of virtio-scsi's empty targets holds up
    // /init for about 15 s under TCG; /init polls for sda1 instead.
    .args(["-append", "console=ttysclp0 scsi_mod.scan=async"])
    // A guest kernel panic ends QEMU with status 1 instead of hanging.
    .args(["-action", "panic=exit-failure"])
    .arg("-drive")
    .arg(format!(
        "if=none,id=d,file={},format=raw",
        qemu_opt_path(job.disk)?
    ))
    .args(["-device", "virtio-scsi-ccw", "-device", &scsi_hd]);
    progress(format!(
        "zipl guest: zipl --dumpto on {} ({}-byte sectors, partition {:#x}+{}); console: {}",
        job.disk.display(),
        job.sector_size,
        job.part_start,
        job.part_size,
        log.display()
    ));
    let t = Instant::now();
    let status = run_with_timeout(&mut cmd, &log, ZIPL_GUEST_TIMEOUT)?;
    let elapsed = t.elapsed();
    let console = String::from_utf8_lossy(&fs::read(&log)?).into_owned();
    let failure = match status {
        None => Some(format!(
            "the zipl guest did not power off within {} s and was killed",
            ZIPL_GUEST_TIMEOUT.as_secs()
        )),
        Some(_) if console.contains(MARK_NO_DISK) => Some(format!(
            "the helper guest saw no /dev/sda1 within {NO_DISK_SECS} s: its kernel {} \
             probably lacks virtio-scsi (CONFIG_SCSI_VIRTIO=y)",
            job.helper_kernel.display()
        )),
        Some(s) if console.contains(MARK_FAILED) => Some(format!(
            "zipl failed in the guest (QEMU {s}): see zipl's output in the console tail"
        )),
        Some(s) if !s.success() => Some(format!(
            "QEMU exited with {s} (status 1 means a guest kernel panic)"
        )),
        Some(_) if !console.contains(MARK_OK) => {
            Some("the zipl guest powered off without the success marker".to_string())
        }
        Some(_) => None,
    };
    if let Some(why) = failure {
        bail!(
            "{why}.\n--- console tail ({}) ---\n{}\n---\nThe disk image {} and the helper \
             initramfs {} are kept for inspection. The helper kernel must have virtio-scsi \
             (kernel-config/virtio.config, in the default profile: `cargo xtask dist`).",
            log.display(),
            tail(&console, 40),
            job.disk.display(),
            rd.display()
        );
    }
    let mut mbr = [0u8; 4];
    File::open(job.disk)?.read_exact(&mut mbr)?;
    ensure!(
        &mbr == b"zIPL",
        "zipl reported success but sector 0 of {} has no zIPL magic (guest writes not flushed?)",
        job.disk.display()
    );
    let _ = fs::remove_file(&rd);
    let zipl_output = console
        .split_once(MARK_OUT_BEGIN)
        .and_then(|(_, rest)| rest.split_once(MARK_OUT_END))
        .map(|(out, _)| out.trim().replace('\r', ""))
        .unwrap_or_default();
    progress(format!(
        "zipl guest done in {}: {}",
        secs(elapsed),
        zipl_output.lines().last().unwrap_or("(no zipl output)")
    ));
    Ok(ZiplResult {
        disk: job.disk.to_path_buf(),
        console_log: log,
        zipl_output,
        elapsed,
    })
}

/// QEMU splits -drive options at commas.
fn qemu_opt_path(p: &Path) -> Result<String> {
    let s = p
        .to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))?;
    Ok(s.replace(',', ",,"))
}

/// The helper guest's /init. Busybox applets are symlinks in /bin.
fn init_script() -> String {
    format!(
        r#"#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "zipl-helper: waiting for /dev/sda1"
# With scsi_mod.scan=async the partition appears shortly after /init starts.
i=0
while [ ! -b /dev/sda1 ]; do
    i=$((i + 1))
    if [ $i -gt {secs} ]; then
        echo "{no_disk} after {secs} s; /proc/partitions:"
        cat /proc/partitions
        poweroff -f
    fi
    sleep 1
done
echo "zipl-helper: sda logical block size $(cat /sys/block/sda/queue/logical_block_size)"
# -n answers zipl's confirmation question with yes.
zipl --noninteractive --verbose --dumpto /dev/sda1 >/tmp/zipl.out 2>&1
rc=$?
sync
echo "{begin}"
cat /tmp/zipl.out
echo "{end}"
if [ $rc -eq 0 ]; then
    echo "{ok}"
else
    echo "{failed}: zipl exited with status $rc"
fi
poweroff -f
"#,
        failed = MARK_FAILED,
        no_disk = MARK_NO_DISK,
        secs = NO_DISK_SECS,
        begin = MARK_OUT_BEGIN,
        end = MARK_OUT_END,
        ok = MARK_OK,
    )
}

/// Busybox applets the init script uses.
const APPLETS: &[&str] = &[
    "sh", "mount", "cat", "echo", "sleep", "sync", "poweroff", "ls", "[",
];

/// Writes the helper guest's initramfs with the builder's newc writer
/// (the one place that writes cpio archives).
fn helper_initramfs(root: &Path, job: &ZiplJob, out: &Path) -> Result<()> {
    let mut a = Archive::new();
    const SOURCE: &str = "the zipl helper";
    let mut add = |path: &str, mode: u32, kind: Kind| a.add_entry(path, mode, kind, SOURCE);
    for d in ["dev", "proc", "sys", "tmp", ZFCPDUMP_DIR] {
        add(d, 0o755, Kind::Dir)?;
    }
    // The kernel opens /dev/console for init before devtmpfs is mounted.
    add("dev/console", 0o600, Kind::Char { major: 5, minor: 1 })?;
    let file = |p: &Path| fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    add(
        "bin/busybox",
        0o755,
        Kind::File(file(&root.join("bin/busybox"))?),
    )?;
    for a in APPLETS {
        add(&format!("bin/{a}"), 0o777, Kind::Symlink("busybox".into()))?;
    }
    // zipl and what the loader needs to run it, symlinks resolved.
    for rel in elf_closure(root, "sbin/zipl")? {
        add(&rel, 0o755, Kind::File(file(&in_root(root, &rel))?))?;
    }
    // zipl's stage-3 loader and helpers.
    let tools = root.join("lib/s390-tools");
    for e in fs::read_dir(&tools).with_context(|| format!("cannot read {}", tools.display()))? {
        let p = e?.path();
        if p.is_file() {
            let name = p.file_name().expect("a file has a name").to_string_lossy();
            add(
                &format!("lib/s390-tools/{name}"),
                0o755,
                Kind::File(file(&p)?),
            )?;
        }
    }
    add(
        &format!("{ZFCPDUMP_DIR}/zfcpdump-image"),
        0o644,
        Kind::File(file(job.dump_image)?),
    )?;
    if let Some(rd) = job.dump_initrd {
        add(
            &format!("{ZFCPDUMP_DIR}/zfcpdump-initrd"),
            0o644,
            Kind::File(file(rd)?),
        )?;
    }
    add("init", 0o755, Kind::File(init_script().into_bytes()))?;
    let f = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = a.write(BufWriter::new(f), 0)?;
    w.flush()?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

/// Reads `len` bytes at `offset` of a file: for checks of what zipl wrote.
pub fn read_at(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    f.seek(SeekFrom::Start(offset))?;
    let mut b = vec![0u8; len];
    f.read_exact(&mut b).with_context(|| {
        format!(
            "cannot read {len} bytes at {offset:#x} of {}",
            path.display()
        )
    })?;
    Ok(b)
}

/// A zipl-prepared disk, never booted: each run works on a copy.
pub(crate) struct Target<'g> {
    pub(crate) geometry: &'g Geometry,
    pub(crate) pristine: PathBuf,
    pub(crate) sb_offset: u64,
    pub(crate) sb: DumpSuperblock,
}

/// Real zipl on a new disk, then the same geometry through
/// `zfcpdump-disk prepare`: the metadata must be equal byte for byte.
pub(crate) fn prepare_target<'g>(ctx: &Ctx, g: &'g Geometry, offline: bool) -> Result<Target<'g>> {
    let pristine = ctx.work.join(format!("zipl-{}.img", g.name));
    let res = zipl_prepare(
        &ctx.cache,
        &ZiplJob {
            helper_kernel: &ctx.image,
            dump_image: &ctx.image,
            dump_initrd: ctx.initrd.as_deref(),
            disk: &pristine,
            disk_size: g.disk_size,
            sector_size: g.sector_size,
            part_start: g.part_start,
            part_size: g.part_size,
            offline,
        },
    )?;
    ensure!(
        res.zipl_output.contains("Writing SCSI master boot record"),
        "zipl on the {}-byte disk did not write a SCSI MBR:\n{}",
        g.sector_size,
        res.zipl_output
    );
    let prep = ctx.work.join(format!("prepare-{}.img", g.name));
    let sh = cmd::shell()?;
    let (tool, image) = (&ctx.disk_tool, &ctx.image);
    let size = g.disk_size.to_string();
    let initrd: Vec<&OsStr> = match &ctx.initrd {
        Some(rd) => vec!["--initrd".as_ref(), rd.as_os_str()],
        None => vec![],
    };
    let (sector, start, part) = (
        g.sector_size.to_string(),
        g.part_start.to_string(),
        g.part_size.to_string(),
    );
    cmd::output(cmd!(
        sh,
        "{tool} prepare {prep} --size {size} --image {image} {initrd...} --sector-size {sector} --part-start {start} --part-size {part}"
    ))?;
    let (sb_offset, sb) = compare_metadata(&pristine, &prep, g)?;
    fs::remove_file(&prep)?;
    step(format!(
        "   {}-byte disk: zipl ran {}{}, metadata equal to zfcpdump-disk prepare's; \
         superblock at {sb_offset:#x}, dump area {} bytes",
        g.sector_size,
        util::fmt_duration(res.elapsed),
        if ctx.initrd.is_none() {
            " on the image alone (no zfcpdump-initrd)"
        } else {
            ""
        },
        sb.dump_size
    ));
    Ok(Target {
        geometry: g,
        pristine,
        sb_offset,
        sb,
    })
}

/// Compares every byte zipl's metadata occupies: block 0 (MBR, boot_info, DOS
/// table), the program table, the component table header, the superblock and
/// the zeroed start of the partition (which holds the checksummed block).
/// Returns the superblock, after checking its checksum.
pub(crate) fn compare_metadata(
    zipl: &Path,
    prep: &Path,
    g: &Geometry,
) -> Result<(u64, DumpSuperblock)> {
    let bs = g.sector_size as u64;
    let (sb_offset, sb) = disk_metadata(zipl).context("the disk zipl prepared")?;
    sb.verify_csum(&read_at(zipl, sb.csum_area().start, sb.csum_size as usize)?)
        .context("the disk zipl prepared")?;
    let mbr = ZiplMbr::parse(&read_at(zipl, 0, 512)?)?;
    let pt = mbr.program_table.blockno * bs;
    let ct = BlockPtr::parse(&read_at(zipl, pt + BlockPtr::SIZE as u64, BlockPtr::SIZE)?).blockno;
    let regions: [(&str, u64, u64); 5] = [
        ("block 0 (MBR, boot_info, DOS table)", 0, bs),
        ("program table", pt, 512),
        ("component table header", ct * bs, 32),
        ("superblock", sb_offset, SB_SIZE as u64),
        ("first 64 KiB of the partition", g.part_start, 64 << 10),
    ];
    let mut differ = Vec::new();
    for (what, at, len) in regions {
        let a = read_at(zipl, at, len as usize)?;
        let b = read_at(prep, at, len as usize)?;
        if let Some(i) = a.iter().zip(&b).position(|(x, y)| x != y) {
            differ.push(format!(
                "{what} at {at:#x}: first difference at disk byte {:#x}: zipl {:#04x}, prepare {:#04x}",
                at + i as u64,
                a[i],
                b[i]
            ));
        }
    }
    ensure!(
        differ.is_empty(),
        "zfcpdump-disk prepare differs from real zipl on the {}-byte disk:\n  {}\n(disks: {} and {})",
        g.sector_size,
        differ.join("\n  "),
        zipl.display(),
        prep.display()
    );
    Ok((sb_offset, sb))
}

/// The superblock's disk offset (from the MBR's boot_info) and the superblock.
pub(crate) fn disk_metadata(disk: &Path) -> Result<(u64, DumpSuperblock)> {
    let mbr = ZiplMbr::parse(&read_at(disk, 0, 512)?).context("sector 0")?;
    let sb = DumpSuperblock::parse(&read_at(disk, mbr.sb_offset, SB_SIZE)?)
        .with_context(|| format!("superblock at {:#x}", mbr.sb_offset))?;
    Ok((mbr.sb_offset, sb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_table_counts_logical_blocks() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("disk");
        create_partitioned_disk(&p, 404 << 20, 4096, 1 << 20, 400 << 20).unwrap();
        let s = read_at(&p, 0, 512).unwrap();
        assert_eq!(&s[0x1c6..0x1ca], &256u32.to_le_bytes());
        assert_eq!(&s[0x1ca..0x1ce], &102_400u32.to_le_bytes());
        assert_eq!(s[0x1c2], 0x83);
        assert_eq!(&s[0x1fe..], &[0x55, 0xaa]);
        assert_eq!(fs::metadata(&p).unwrap().len(), 404 << 20);
        assert!(create_partitioned_disk(&p, 1 << 20, 4096, 512, 4096).is_err());
    }
}
