//! The dump disk's metadata as the agent reads it before it writes anything:
//! sector 0 (zipl's MBR and boot_info, the DOS partition table), the dump
//! superblock, the checksummed block, and the partition match.
//!
//! Input: a sparse disk. 8 bytes of disk size (little endian, capped at
//! 1 TiB), then chunks of 8 bytes of offset, 2 bytes of length and the
//! bytes; the rest of the disk reads as zeros. The seeds are real zipl
//! disks trimmed to their non-zero blocks.
#![no_main]

use std::collections::BTreeMap;
use std::io;

use libfuzzer_sys::fuzz_target;
use zfcpdump_agent::disk::{DumpTarget, match_dos, read_metadata};
use zfcpdump_format::mbr::{DOS_SECTOR_SIZE, DosPartition, ZiplMbr};
use zfcpdump_format::superblock::{DumpSuperblock, SB_SIZE};

struct Sparse {
    size: u64,
    chunks: BTreeMap<u64, Vec<u8>>,
}

impl Sparse {
    fn decode(data: &[u8]) -> Option<Sparse> {
        let (size, mut rest) = data.split_first_chunk::<8>()?;
        let size = u64::from_le_bytes(*size).min(1 << 40);
        let mut chunks = BTreeMap::new();
        while let Some((head, tail)) = rest.split_first_chunk::<10>() {
            let at = u64::from_le_bytes(head[..8].try_into().unwrap()) % size.max(1);
            let len = (u16::from_le_bytes([head[8], head[9]]) as usize).min(tail.len());
            chunks.insert(at, tail[..len].to_vec());
            rest = &tail[len..];
        }
        Some(Sparse { size, chunks })
    }
}

impl DumpTarget for Sparse {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.size)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.fill(0);
        // Later chunks win where chunks overlap, as if written in order.
        for (&at, bytes) in &self.chunks {
            let c_end = at + bytes.len() as u64;
            let (s, e) = (at.max(offset), c_end.min(end));
            if s < e {
                buf[(s - offset) as usize..(e - offset) as usize]
                    .copy_from_slice(&bytes[(s - at) as usize..(e - at) as usize]);
            }
        }
        Ok(())
    }
    fn write_all_at(&mut self, _: &[u8], _: u64) -> io::Result<()> {
        panic!("reading the metadata wrote to the disk");
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(mut disk) = Sparse::decode(data) else {
        return;
    };
    // The format's parsers on their own, on whatever sector 0 holds.
    let mut s0 = [0u8; DOS_SECTOR_SIZE];
    if disk.read_exact_at(&mut s0, 0).is_ok() {
        let _ = DosPartition::read_table(&s0);
        if let Ok(mbr) = ZiplMbr::parse(&s0) {
            let mut sb = [0u8; SB_SIZE];
            if disk.read_exact_at(&mut sb, mbr.sb_offset).is_ok() {
                let _ = DumpSuperblock::parse(&sb);
            }
        }
    }
    // What the agent accepts, it may write to: the dump area only.
    let size = disk.size;
    let Ok(meta) = read_metadata(&mut disk, size) else {
        return;
    };
    let area = meta.sb.dump_area();
    assert!(area.start <= area.end && area.end <= size, "{area:?} on {size}");
    let sb_range = meta.sb_offset..meta.sb_offset + SB_SIZE as u64;
    assert!(area.start >= DOS_SECTOR_SIZE as u64 || area.is_empty());
    assert!(area.end <= sb_range.start || area.start >= sb_range.end || area.is_empty());
    assert!(meta.sb.partition().end <= size);
    let part = meta.sb.partition();
    assert!(part.start <= area.start && area.end <= part.end, "dump area {area:?} outside the partition {part:?}");
    if let Ok(m) = match_dos(&meta.sector0, &meta.sb, &[512, 4096]) {
        assert!((1..=4).contains(&m.number));
    }
});
