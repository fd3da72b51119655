//! `prepare`: a sparse disk image laid out like a disk after partitioning and
//! `zipl --dumpto <partition 1>`.
//!
//! Written: the DOS partition table with one Linux partition, the zipl MBR with
//! its dump boot_info, the program table and the dump component table header
//! (what zgetdump follows to recognise a dump disk), and the superblock at the
//! position zipl uses (see `zfcpdump_format::disk_layout`). The first 64 KiB
//! of the partition, which zipl zeroes, and the rest are holes of the new
//! sparse file.
//! zipl's loader, kernel and initrd copies are not written: the image is a dump
//! target for tests and for the agent, not an IPL-able disk.

use crate::{Error, IoContext, write_at, write_atomically};
use std::path::{Path, PathBuf};
use zfcpdump_format::disk_layout::{DumpLayout, LayoutInput};

/// Default partition start: 1 MiB, as partitioning tools align.
pub const DEFAULT_PART_START: u64 = 1 << 20;

/// What to prepare.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// The image file to create or replace.
    pub path: PathBuf,
    /// Disk size in bytes.
    pub disk_size: u64,
    /// Logical block size, 512 or 4096.
    pub sector_size: u32,
    /// Partition start in bytes.
    pub part_start: u64,
    /// Partition size in bytes; `None`: the rest of the disk, rounded down to the sector size.
    pub part_size: Option<u64>,
    /// Size of the dump tool image (zfcpdump-image), without an appended
    /// signature.
    pub image_size: u64,
    /// Bytes of the image's appended signature (0: unsigned).
    pub image_signature: u64,
    /// Size of the dump tool initrd, if any.
    pub initrd_size: Option<u64>,
}

/// Size of a file given on the command line.
pub fn file_size(path: &Path) -> Result<u64, Error> {
    Ok(std::fs::metadata(path)
        .context(|| format!("reading the size of {}", path.display()))?
        .len())
}

/// A dump tool image's size without its appended signature (what zipl
/// writes as the image component) and the signature's bytes (0 if none).
pub fn image_size(path: &Path) -> Result<(u64, u64), Error> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file_size(path)?;
    let tail_size = zfcpdump_format::modsig::TAIL_SIZE as u64;
    if len < tail_size {
        return Ok((len, 0));
    }
    let mut f = std::fs::File::open(path).context(|| format!("opening {}", path.display()))?;
    let mut tail = vec![0u8; tail_size as usize];
    f.seek(SeekFrom::End(-(tail_size as i64)))
        .and_then(|_| f.read_exact(&mut tail))
        .context(|| format!("reading the end of {}", path.display()))?;
    Ok(match zfcpdump_format::modsig::appended_len(&tail) {
        Some(n) if n <= len => (len - n, n),
        _ => (len, 0),
    })
}

/// Computes the layout for `opts` (checks included) without writing anything.
pub fn layout(opts: &PrepareOptions) -> Result<DumpLayout, Error> {
    let part_size = match opts.part_size {
        Some(s) => s,
        None => {
            let rest = opts.disk_size.checked_sub(opts.part_start).ok_or_else(|| {
                Error::Usage(format!(
                    "partition start {} is past the end of the {}-byte disk",
                    opts.part_start, opts.disk_size
                ))
            })?;
            rest / opts.sector_size as u64 * opts.sector_size as u64
        }
    };
    DumpLayout::compute(&LayoutInput {
        disk_size: opts.disk_size,
        block_size: opts.sector_size,
        part_start: opts.part_start,
        part_size,
        image_size: opts.image_size,
        image_signature: opts.image_signature,
        initrd_size: opts.initrd_size,
    })
    .map_err(|e| Error::Usage(e.to_string()))
}

/// Creates the image atomically and returns its layout.
pub fn prepare(opts: &PrepareOptions) -> Result<DumpLayout, Error> {
    let l = layout(opts)?;
    let bs = opts.sector_size as u64;
    let shown = opts.path.display();
    write_atomically(&opts.path, |f| {
        f.set_len(opts.disk_size)
            .context(|| format!("sizing {shown}"))?;
        let ctx = || format!("writing {shown}");
        write_at(f, &l.sector0(), 0).context(ctx)?;
        write_at(f, &l.component_header(), l.component_table_block * bs).context(ctx)?;
        write_at(f, &l.program_table(), l.program_table_block * bs).context(ctx)?;
        write_at(f, &l.superblock.to_bytes(), l.sb_offset).context(ctx)?;
        Ok(())
    })?;
    Ok(l)
}
