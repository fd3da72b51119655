//! The dump disk: reading and validating zipl's metadata, matching the
//! partition, and the writer trait the copy goes through.
//!
//! All formats come from `zfcpdump_format`; this module only decides which
//! bytes to read and what to refuse.

use crate::error::{Context, DumpError, DumpStep};
use crate::ipl::{read_attr, under};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use zfcpdump_format::csum::CSUM_SIZE;
use zfcpdump_format::mbr::{DOS_SECTOR_SIZE, DosPartition, ZiplMbr};
use zfcpdump_format::superblock::{DumpSuperblock, SB_SIZE};

/// Positional I/O on the dump disk. The copy engine is generic over it so that
/// tests can inject I/O errors; a `File` is the real thing.
pub trait DumpTarget {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes everything written so far durable (fsync).
    fn sync(&mut self) -> io::Result<()>;
    /// Writes the buffers back to back from `offset`, as one vectored write
    /// where possible. The default writes them one by one.
    fn write_all_vectored_at(&mut self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        let mut at = offset;
        for b in bufs {
            self.write_all_at(b, at)?;
            at += b.len() as u64;
        }
        Ok(())
    }
    /// Starts writing back what was written so far, after waiting for the
    /// writeback started by the previous call: it keeps the device busy
    /// during the copy and the dirty page cache small (the dump kernel has
    /// only the HSA), and a write error of the device surfaces here, within
    /// [`crate::copy::WRITEBACK_EVERY`] bytes, not after the whole copy. The
    /// default does nothing.
    fn start_writeback(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl DumpTarget for File {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.sync_all()
    }
    fn write_all_vectored_at(&mut self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        use std::io::IoSlice;
        use std::os::fd::AsRawFd;
        let mut slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        let mut at = offset;
        while !rest.is_empty() {
            let count = rest.len().min(libc::UIO_MAXIOV as usize) as libc::c_int;
            // SAFETY: IoSlice is ABI-compatible with struct iovec on Unix;
            // the slices borrow live buffers for the duration of the call.
            let n = unsafe {
                libc::pwritev(
                    self.as_raw_fd(),
                    rest.as_ptr().cast::<libc::iovec>(),
                    count,
                    at as libc::off_t,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero));
            }
            at += n as u64;
            IoSlice::advance_slices(&mut rest, n as usize);
        }
        Ok(())
    }
    fn start_writeback(&mut self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // Offset 0, length 0: every page of the file or device. WAIT_BEFORE
        // waits only for pages already under writeback (the previous call's,
        // long done at device speed) and reports their errors; WRITE starts
        // the pages dirtied since.
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE;
        // SAFETY: sync_file_range only takes integers; the fd is open.
        if unsafe { libc::sync_file_range(self.as_raw_fd(), 0, 0, flags) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // Not supported here (a file system without it, an old kernel):
            // only a hint, the fsyncs still make the dump durable.
            Some(libc::ENOSYS | libc::EINVAL | libc::ESPIPE | libc::EOPNOTSUPP) => Ok(()),
            _ => Err(e),
        }
    }
}

impl<T: DumpTarget + ?Sized> DumpTarget for &mut T {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        (**self).write_all_at(buf, offset)
    }
    fn sync(&mut self) -> io::Result<()> {
        (**self).sync()
    }
    fn write_all_vectored_at(&mut self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        (**self).write_all_vectored_at(bufs, offset)
    }
    fn start_writeback(&mut self) -> io::Result<()> {
        (**self).start_writeback()
    }
}

/// What zipl left on the disk, validated.
#[derive(Debug, Clone)]
pub struct DumpDisk {
    /// The MBR (sector 0).
    pub mbr: ZiplMbr,
    /// Sector 0's first 512 bytes, with the DOS partition table.
    pub sector0: [u8; DOS_SECTOR_SIZE],
    /// Disk byte offset of the superblock.
    pub sb_offset: u64,
    /// The superblock.
    pub sb: DumpSuperblock,
}

/// Reads sector 0, the superblock it points at and the checksummed block, and
/// refuses anything the agent must not write to: a wrong magic, a bad
/// checksum, areas past the end of the disk, or a dump area that would
/// overwrite zipl's own metadata.
pub fn read_metadata<T: DumpTarget + ?Sized>(
    t: &mut T,
    disk_size: u64,
) -> Result<DumpDisk, DumpError> {
    let step = DumpStep::Metadata;
    if disk_size < DOS_SECTOR_SIZE as u64 {
        return Err(DumpError::new(
            step,
            format!("disk is {disk_size} bytes, too small for an MBR"),
        ));
    }
    let mut sector0 = [0u8; DOS_SECTOR_SIZE];
    t.read_exact_at(&mut sector0, 0)
        .ctx(step, || "reading sector 0".into())?;
    let mbr =
        ZiplMbr::parse(&sector0).map_err(|e| DumpError::new(step, format!("sector 0: {e}")))?;
    let sb_offset = mbr.sb_offset;
    if sb_offset
        .checked_add(SB_SIZE as u64)
        .is_none_or(|e| e > disk_size)
    {
        return Err(DumpError::new(
            step,
            format!(
                "boot_info points at a superblock at {sb_offset:#x}, past the end of the {disk_size}-byte disk"
            ),
        ));
    }
    let mut raw = [0u8; SB_SIZE];
    t.read_exact_at(&mut raw, sb_offset)
        .ctx(step, || format!("reading the superblock at {sb_offset:#x}"))?;
    let sb = DumpSuperblock::parse(&raw).map_err(|e| {
        DumpError::new(
            step,
            format!("superblock at disk offset {sb_offset:#x}: {e}"),
        )
    })?;
    if sb.partition().end > disk_size {
        return Err(DumpError::new(
            step,
            format!(
                "superblock partition {:#x}..{:#x} ends past the end of the {disk_size}-byte disk",
                sb.partition().start,
                sb.partition().end
            ),
        ));
    }
    let area = sb.dump_area();
    let overlaps = |r: std::ops::Range<u64>| r.start < area.end && area.start < r.end;
    if overlaps(0..DOS_SECTOR_SIZE as u64) || overlaps(sb_offset..sb_offset + SB_SIZE as u64) {
        return Err(DumpError::new(
            step,
            format!(
                "dump area {:#x}..{:#x} overlaps sector 0 or the superblock at {sb_offset:#x}: refusing to write",
                area.start, area.end
            ),
        ));
    }
    let mut block = [0u8; CSUM_SIZE];
    let at = sb.csum_area().start;
    t.read_exact_at(&mut block, at)
        .ctx(step, || format!("reading the checksummed block at {at:#x}"))?;
    sb.verify_csum(&block)
        .map_err(|e| DumpError::new(step, e.to_string()))?;
    Ok(DumpDisk {
        mbr,
        sector0,
        sb_offset,
        sb,
    })
}

/// The partition the superblock belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMatch {
    /// Partition number (1-based).
    pub number: u32,
    /// How it was found, for the console.
    pub how: String,
}

/// Finds the primary DOS partition whose start and size, in bytes, equal the
/// superblock's, trying each logical block size in turn (DOS LBAs count
/// logical blocks, which are 4096 bytes on 4K disks).
pub fn match_dos(
    sector0: &[u8],
    sb: &DumpSuperblock,
    block_sizes: &[u64],
) -> Result<PartitionMatch, DumpError> {
    let step = DumpStep::Partition;
    let Some(table) = DosPartition::read_table(sector0) else {
        return Err(DumpError::new(
            step,
            "sector 0 holds no DOS partition table (no 0x55aa signature)",
        ));
    };
    for &bs in block_sizes {
        for (slot, p) in table.iter().enumerate() {
            let Some(p) = p else { continue };
            if p.start_lba as u64 * bs == sb.part_start && p.num_blocks as u64 * bs == sb.part_size
            {
                return Ok(PartitionMatch {
                    number: slot as u32 + 1,
                    how: format!("DOS partition table, {bs}-byte logical blocks"),
                });
            }
        }
    }
    let mut listed = String::new();
    for (slot, p) in table.iter().enumerate() {
        if let Some(p) = p {
            listed.push_str(&format!(
                "; partition {}: start {} size {} blocks",
                slot + 1,
                p.start_lba,
                p.num_blocks
            ));
        }
    }
    let sizes: Vec<String> = block_sizes.iter().map(u64::to_string).collect();
    Err(DumpError::new(
        step,
        format!(
            "no partition starts at byte {:#x} with {} bytes as the superblock says (tried {}-byte \
             blocks){}",
            sb.part_start,
            sb.part_size,
            sizes.join(" and "),
            if listed.is_empty() {
                "; the table is empty".to_string()
            } else {
                listed
            }
        ),
    ))
}

/// A partition as the kernel sees it in /sys/class/block/<disk>/<part>.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysPartition {
    /// Its name, e.g. `sda1`.
    pub name: String,
    /// Partition number.
    pub number: u32,
    /// Start in bytes.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
}

/// The partitions of block device `disk`. sysfs reports `start` and `size` in
/// 512-byte units whatever the logical block size (block/partitions/core.c
/// prints `bd_start_sect`, a `sector_t`), so bytes are `* 512`.
pub fn sysfs_partitions(root: &Path, disk: &str) -> Vec<SysPartition> {
    let dir = under(root, &format!("/sys/class/block/{disk}"));
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        let num = |attr: &str| {
            read_attr(&p.join(attr))
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
        };
        // Only partitions have a `partition` attribute.
        if let (Some(number), Some(start), Some(size)) =
            (num("partition"), num("start"), num("size"))
        {
            out.push(SysPartition {
                name: e.file_name().to_string_lossy().into_owned(),
                number: number as u32,
                start: start.saturating_mul(512),
                size: size.saturating_mul(512),
            });
        }
    }
    out.sort_by_key(|p| p.number);
    out
}

/// The partition in `parts` with the superblock's start and size.
pub fn match_sysfs<'a>(parts: &'a [SysPartition], sb: &DumpSuperblock) -> Option<&'a SysPartition> {
    parts
        .iter()
        .find(|p| p.start == sb.part_start && p.size == sb.part_size)
}

/// The error for a disk whose sysfs partitions do not include the superblock's.
pub fn sysfs_mismatch(disk: &str, parts: &[SysPartition], sb: &DumpSuperblock) -> DumpError {
    let listed: Vec<String> = parts
        .iter()
        .map(|p| format!("{}: start {:#x} size {} bytes", p.name, p.start, p.size))
        .collect();
    DumpError::new(
        DumpStep::Partition,
        format!(
            "no partition of {disk} starts at byte {:#x} with {} bytes as the superblock says; the \
             kernel lists {}",
            sb.part_start,
            sb.part_size,
            listed.join(", ")
        ),
    )
}

/// The logical block size of block device `disk`, from sysfs.
pub fn logical_block_size(root: &Path, disk: &str) -> Option<u64> {
    read_attr(&under(
        root,
        &format!("/sys/class/block/{disk}/queue/logical_block_size"),
    ))
    .ok()
    .and_then(|s| s.parse().ok())
    .filter(|&n: &u64| n.is_power_of_two() && n >= 512)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(start: u64, size: u64) -> DumpSuperblock {
        DumpSuperblock::new(start, size, size / 2)
    }

    fn table(parts: &[(u32, u32)]) -> [u8; 512] {
        let mut s = [0u8; 512];
        for (i, &(start_lba, num_blocks)) in parts.iter().enumerate() {
            DosPartition {
                bootable: false,
                part_type: 0x83,
                start_lba,
                num_blocks,
            }
            .write_into(&mut s, i);
        }
        s
    }

    #[test]
    fn dos_match_in_bytes_for_both_block_sizes() {
        let s = table(&[(2048, 100_000), (102_048, 5000)]);
        let m = match_dos(&s, &sb(2048 * 512, 100_000 * 512), &[512, 4096]).unwrap();
        assert_eq!(m.number, 1);
        assert!(m.how.contains("512-byte"), "{}", m.how);
        // The same LBAs on a 4K disk mean 8 times the bytes: the second partition.
        let m = match_dos(&s, &sb(102_048 * 4096, 5000 * 4096), &[512, 4096]).unwrap();
        assert_eq!(m.number, 2);
        assert!(m.how.contains("4096-byte"), "{}", m.how);
        // Restricted to 512, the 4K partition is not found.
        let e = match_dos(&s, &sb(102_048 * 4096, 5000 * 4096), &[512]).unwrap_err();
        assert_eq!(e.step, DumpStep::Partition);
        assert!(
            e.to_string()
                .contains("partition 2: start 102048 size 5000 blocks"),
            "{e}"
        );
        // The reference's bug: a 512-byte start multiplied by 4096 must not match.
        assert!(match_dos(&s, &sb(2048 * 4096, 100_000 * 512), &[512, 4096]).is_err());
    }

    #[test]
    fn dos_without_table() {
        let e = match_dos(&[0u8; 512], &sb(1 << 20, 1 << 24), &[512]).unwrap_err();
        assert!(e.to_string().contains("no DOS partition table"), "{e}");
    }

    #[test]
    fn sysfs_partitions_are_512_byte_units() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let d = root.join("sys/class/block/sda");
        std::fs::create_dir_all(d.join("queue")).unwrap();
        std::fs::write(d.join("queue/logical_block_size"), "4096\n").unwrap();
        std::fs::write(d.join("size"), "819200\n").unwrap();
        for (n, start, size) in [(1u32, 2048u64, 819_200u64), (2, 821_248, 16_384)] {
            let p = d.join(format!("sda{n}"));
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("partition"), format!("{n}\n")).unwrap();
            std::fs::write(p.join("start"), format!("{start}\n")).unwrap();
            std::fs::write(p.join("size"), format!("{size}\n")).unwrap();
        }
        // Not a partition: no `partition` attribute.
        std::fs::create_dir_all(d.join("holders")).unwrap();
        let parts = sysfs_partitions(root, "sda");
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0],
            SysPartition {
                name: "sda1".into(),
                number: 1,
                start: 1 << 20,
                size: 419_430_400
            }
        );
        assert_eq!(logical_block_size(root, "sda"), Some(4096));
        assert_eq!(logical_block_size(root, "sdb"), None);
        let s = sb(1 << 20, 419_430_400);
        assert_eq!(match_sysfs(&parts, &s).unwrap().name, "sda1");
        let wrong = sb(2048 * 4096, 419_430_400);
        assert!(match_sysfs(&parts, &wrong).is_none());
        let e = sysfs_mismatch("sda", &parts, &wrong);
        assert!(
            e.to_string()
                .contains("sda1: start 0x100000 size 419430400 bytes"),
            "{e}"
        );
        assert!(sysfs_partitions(root, "nope").is_empty());
    }
}
