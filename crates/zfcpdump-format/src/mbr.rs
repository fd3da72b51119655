//! Sector 0 of a zipl-prepared SCSI dump disk.
//!
//! `zipl --dumpto` writes its `scsi_mbr` into the first 152 bytes of sector 0 of the
//! whole disk and leaves the DOS partition table (0x1be..0x200 of the same sector)
//! intact. Its `boot_info` says where the dump superblock is. Layout (big-endian):
//!
//! | offset | field                                                            |
//! |--------|------------------------------------------------------------------|
//! | 0x00   | magic "zIPL"                                                     |
//! | 0x04   | u32 version = 1                                                  |
//! | 0x08   | 8 reserved bytes                                                 |
//! | 0x10   | program table pointer {u64 blockno, u16 size, u16 blockct, 4 rsvd} |
//! | 0x20   | 0x50 reserved bytes                                              |
//! | 0x70   | boot_info: "zIPL", u8 version 1, u8 bp_type 1 (dump), u8 dev_type 2 (SCSI), u8 flags |
//! | 0x78   | u64 byte offset of the dump superblock from the start of the disk |
//! | 0x80   | 0x18 reserved bytes (rest of boot_info's parameter area)          |
//!
//! The DOS partition table is little-endian: it is the PC format, read as such by
//! Linux on s390 too.

use crate::bytes::{
    Magic4, be_u16, be_u32, be_u64, le_u32, put_be_u16, put_be_u32, put_be_u64, put_le_u32,
};
use std::fmt;

/// Bytes of sector 0 that belong to zipl; nothing past them is written.
pub const MBR_SIZE: usize = 152;
/// The size of the sector-0 buffer that holds both the zipl MBR and the DOS table.
pub const DOS_SECTOR_SIZE: usize = 512;
/// Magic of the MBR, the boot_info, program tables and component headers.
pub const ZIPL_MAGIC: [u8; 4] = *b"zIPL";
/// The only MBR version zipl writes.
pub const MBR_VERSION: u32 = 1;
/// Offset of `boot_info` within the MBR.
pub const BOOT_INFO_OFFSET: usize = 0x70;
/// Offset of the u64 superblock byte offset within the MBR.
pub const SB_OFFSET_FIELD: usize = 0x78;
/// The only boot_info version zipl writes.
pub const BOOT_INFO_VERSION: u8 = 1;
/// boot_info `bp_type` of a dump disk.
pub const BP_TYPE_DUMP: u8 = 1;
/// boot_info `dev_type` of a SCSI disk.
pub const DEV_TYPE_SCSI: u8 = 2;
/// boot_info `flags` as zipl writes them for a SCSI dump.
pub const BOOT_INFO_FLAGS: u8 = 1;

/// A zipl linear block pointer: a run of `blockct + 1` logical blocks (of the disk's
/// logical block size) starting at `blockno`, counted from the start of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockPtr {
    /// First logical block, from the start of the whole disk.
    pub blockno: u64,
    /// Bytes per block as zipl recorded them (the logical block size).
    pub size: u16,
    /// Number of additional contiguous blocks.
    pub blockct: u16,
}

impl BlockPtr {
    /// Encoded size of a linear block pointer.
    pub const SIZE: usize = 16;

    /// Decodes a block pointer from the first 16 bytes of `b`.
    pub fn parse(b: &[u8]) -> BlockPtr {
        BlockPtr {
            blockno: be_u64(b, 0),
            size: be_u16(b, 8),
            blockct: be_u16(b, 10),
        }
    }

    /// Encodes into the first 16 bytes of `b` (reserved bytes zeroed).
    pub fn write_into(&self, b: &mut [u8]) {
        put_be_u64(b, 0, self.blockno);
        put_be_u16(b, 8, self.size);
        put_be_u16(b, 10, self.blockct);
        b[12..16].fill(0);
    }
}

/// The parts of zipl's SCSI MBR that carry information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZiplMbr {
    /// Where the program table is (used by the firmware loader and by zgetdump).
    pub program_table: BlockPtr,
    /// boot_info flags, kept as found; zipl writes [`BOOT_INFO_FLAGS`].
    pub boot_info_flags: u8,
    /// Byte offset of the dump superblock from the start of the whole disk.
    pub sb_offset: u64,
}

/// Why sector 0 is not a zipl SCSI dump MBR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MbrError {
    /// Fewer than [`MBR_SIZE`] bytes were given.
    TooShort(usize),
    /// No "zIPL" magic at offset 0.
    Magic([u8; 4]),
    /// MBR version other than 1.
    Version(u32),
    /// No "zIPL" magic at the start of boot_info.
    BootInfoMagic([u8; 4]),
    /// boot_info version other than 1.
    BootInfoVersion(u8),
    /// boot_info bp_type is not "dump".
    NotDump(u8),
    /// boot_info dev_type is not SCSI.
    NotScsi(u8),
}

impl fmt::Display for MbrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MbrError::TooShort(n) => {
                write!(f, "sector 0 is {n} bytes, the zipl MBR needs {MBR_SIZE}")
            }
            MbrError::Magic(m) => write!(
                f,
                "MBR magic is {}, expected 'zIPL': disk not prepared with zipl --dumpto",
                Magic4(*m)
            ),
            MbrError::Version(v) => {
                write!(
                    f,
                    "MBR version is {v}, expected {MBR_VERSION}: unsupported zipl MBR"
                )
            }
            MbrError::BootInfoMagic(m) => write!(
                f,
                "boot_info magic at 0x70 is {}, expected 'zIPL': zipl wrote no boot_info \
                 (disk prepared for IPL, or by a zipl without dump boot_info)",
                Magic4(*m)
            ),
            MbrError::BootInfoVersion(v) => write!(
                f,
                "boot_info version is {v}, expected {BOOT_INFO_VERSION}: unsupported zipl boot_info"
            ),
            MbrError::NotDump(t) => write!(
                f,
                "boot_info bp_type is {t}, expected {BP_TYPE_DUMP} (dump): disk was prepared \
                 for IPL, not with zipl --dumpto"
            ),
            MbrError::NotScsi(t) => write!(
                f,
                "boot_info dev_type is {t}, expected {DEV_TYPE_SCSI} (SCSI): not a SCSI dump disk"
            ),
        }
    }
}

impl std::error::Error for MbrError {}

impl ZiplMbr {
    /// An MBR as `zipl --dumpto` writes it.
    pub fn new(program_table: BlockPtr, sb_offset: u64) -> ZiplMbr {
        ZiplMbr {
            program_table,
            boot_info_flags: BOOT_INFO_FLAGS,
            sb_offset,
        }
    }

    /// Parses and validates the zipl MBR from the start of sector 0.
    pub fn parse(sector: &[u8]) -> Result<ZiplMbr, MbrError> {
        if sector.len() < MBR_SIZE {
            return Err(MbrError::TooShort(sector.len()));
        }
        let magic = magic_at(sector, 0);
        if magic != ZIPL_MAGIC {
            return Err(MbrError::Magic(magic));
        }
        let version = be_u32(sector, 4);
        if version != MBR_VERSION {
            return Err(MbrError::Version(version));
        }
        let bi = &sector[BOOT_INFO_OFFSET..];
        let bi_magic = magic_at(bi, 0);
        if bi_magic != ZIPL_MAGIC {
            return Err(MbrError::BootInfoMagic(bi_magic));
        }
        if bi[4] != BOOT_INFO_VERSION {
            return Err(MbrError::BootInfoVersion(bi[4]));
        }
        if bi[5] != BP_TYPE_DUMP {
            return Err(MbrError::NotDump(bi[5]));
        }
        if bi[6] != DEV_TYPE_SCSI {
            return Err(MbrError::NotScsi(bi[6]));
        }
        Ok(ZiplMbr {
            program_table: BlockPtr::parse(&sector[0x10..0x20]),
            boot_info_flags: bi[7],
            sb_offset: be_u64(sector, SB_OFFSET_FIELD),
        })
    }

    /// The 152 MBR bytes, reserved fields zeroed.
    pub fn to_bytes(&self) -> [u8; MBR_SIZE] {
        let mut b = [0u8; MBR_SIZE];
        b[0..4].copy_from_slice(&ZIPL_MAGIC);
        put_be_u32(&mut b, 4, MBR_VERSION);
        self.program_table.write_into(&mut b[0x10..0x20]);
        let bi = BOOT_INFO_OFFSET;
        b[bi..bi + 4].copy_from_slice(&ZIPL_MAGIC);
        b[bi + 4] = BOOT_INFO_VERSION;
        b[bi + 5] = BP_TYPE_DUMP;
        b[bi + 6] = DEV_TYPE_SCSI;
        b[bi + 7] = self.boot_info_flags;
        put_be_u64(&mut b, SB_OFFSET_FIELD, self.sb_offset);
        b
    }

    /// Writes the MBR into bytes 0..152 of a sector-0 buffer and touches nothing
    /// else, so the DOS partition table in the same sector survives.
    ///
    /// # Panics
    /// If `sector` is shorter than [`MBR_SIZE`].
    pub fn write_into(&self, sector: &mut [u8]) {
        sector[..MBR_SIZE].copy_from_slice(&self.to_bytes());
    }
}

fn magic_at(b: &[u8], off: usize) -> [u8; 4] {
    let mut m = [0u8; 4];
    m.copy_from_slice(&b[off..off + 4]);
    m
}

/// Offset of the DOS partition table in sector 0.
pub const DOS_TABLE_OFFSET: usize = 0x1be;
/// The boot signature at 0x1fe that marks a valid DOS partition table.
pub const DOS_SIGNATURE: [u8; 2] = [0x55, 0xaa];
/// DOS partition type "Linux".
pub const DOS_TYPE_LINUX: u8 = 0x83;

/// One primary entry of a DOS partition table. Start and size count logical blocks
/// of the disk (512 or 4096 bytes), not 512-byte sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DosPartition {
    /// Boot indicator 0x80.
    pub bootable: bool,
    /// Partition type byte; 0 means "unused slot".
    pub part_type: u8,
    /// First logical block.
    pub start_lba: u32,
    /// Number of logical blocks.
    pub num_blocks: u32,
}

impl DosPartition {
    /// Reads the four primary entries; `None` when the 0x55aa signature is missing
    /// (no partition table at all). Unused slots (type 0) are `None`.
    pub fn read_table(sector: &[u8]) -> Option<[Option<DosPartition>; 4]> {
        if sector.len() < DOS_SECTOR_SIZE || sector[0x1fe..0x200] != DOS_SIGNATURE {
            return None;
        }
        let mut out = [None; 4];
        for (slot, entry) in out.iter_mut().enumerate() {
            let e = &sector[DOS_TABLE_OFFSET + 16 * slot..DOS_TABLE_OFFSET + 16 * (slot + 1)];
            if e[4] != 0 {
                *entry = Some(DosPartition {
                    bootable: e[0] == 0x80,
                    part_type: e[4],
                    start_lba: le_u32(e, 8),
                    num_blocks: le_u32(e, 12),
                });
            }
        }
        Some(out)
    }

    /// Writes this entry into primary slot `slot` (0..4, i.e. partition 1..4) of a
    /// sector-0 buffer and sets the 0x55aa signature. CHS fields get the
    /// "use LBA" values (1023/254/63), as partitioning tools write for large disks.
    ///
    /// # Panics
    /// If `slot > 3` or `sector` is shorter than 512 bytes.
    pub fn write_into(&self, sector: &mut [u8], slot: usize) {
        assert!(slot < 4, "DOS partition slot {slot} out of range 0..4");
        let e = &mut sector[DOS_TABLE_OFFSET + 16 * slot..DOS_TABLE_OFFSET + 16 * (slot + 1)];
        e[0] = if self.bootable { 0x80 } else { 0 };
        e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
        e[4] = self.part_type;
        e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
        put_le_u32(e, 8, self.start_lba);
        put_le_u32(e, 12, self.num_blocks);
        sector[0x1fe..0x200].copy_from_slice(&DOS_SIGNATURE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ZiplMbr {
        ZiplMbr::new(
            BlockPtr {
                blockno: 0x8d6b,
                size: 512,
                blockct: 0,
            },
            0x11ed400,
        )
    }

    #[test]
    fn layout_of_fields() {
        let b = sample().to_bytes();
        assert_eq!(&b[0..4], b"zIPL");
        assert_eq!(&b[4..8], &[0, 0, 0, 1]);
        assert_eq!(&b[0x10..0x18], &0x8d6bu64.to_be_bytes());
        assert_eq!(&b[0x18..0x1a], &512u16.to_be_bytes());
        assert_eq!(&b[0x70..0x78], b"zIPL\x01\x01\x02\x01");
        assert_eq!(&b[0x78..0x80], &[0, 0, 0, 0, 0x01, 0x1e, 0xd4, 0x00]);
        assert!(b[0x80..].iter().all(|&x| x == 0));
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(ZiplMbr::parse(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn write_keeps_partition_table() {
        let mut sector = [0u8; 512];
        let p = DosPartition {
            bootable: false,
            part_type: DOS_TYPE_LINUX,
            start_lba: 2048,
            num_blocks: 100000,
        };
        p.write_into(&mut sector, 0);
        sector[0x98] = 0xaa; // a byte past zipl's area
        sample().write_into(&mut sector);
        assert_eq!(sector[0x98], 0xaa);
        let t = DosPartition::read_table(&sector).unwrap();
        assert_eq!(t[0], Some(p));
        assert_eq!(t[1], None);
        assert_eq!(ZiplMbr::parse(&sector).unwrap(), sample());
    }

    #[test]
    fn dos_entry_is_little_endian() {
        let mut sector = [0u8; 512];
        DosPartition {
            bootable: true,
            part_type: 0x83,
            start_lba: 0x0102_0304,
            num_blocks: 0x0a0b_0c0d,
        }
        .write_into(&mut sector, 1);
        let e = &sector[0x1ce..0x1de];
        assert_eq!(e[0], 0x80);
        assert_eq!(e[4], 0x83);
        assert_eq!(&e[8..12], &[4, 3, 2, 1]);
        assert_eq!(&e[12..16], &[0x0d, 0x0c, 0x0b, 0x0a]);
        assert_eq!(&sector[0x1fe..], &[0x55, 0xaa]);
    }

    #[test]
    fn no_signature_no_table() {
        assert_eq!(DosPartition::read_table(&[0u8; 512]), None);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = ZiplMbr::parse(&[0u8; 512]).unwrap_err();
        assert_eq!(e, MbrError::Magic([0; 4]));
        assert_eq!(
            e.to_string(),
            "MBR magic is 00000000, expected 'zIPL': disk not prepared with zipl --dumpto"
        );
        let mut b = sample().to_bytes();
        b[0x75] = 0;
        let e = ZiplMbr::parse(&b).unwrap_err();
        assert_eq!(e, MbrError::NotDump(0));
        assert!(e.to_string().contains("prepared for IPL"), "{e}");
        let mut b = sample().to_bytes();
        b[0x76] = 1;
        assert_eq!(ZiplMbr::parse(&b).unwrap_err(), MbrError::NotScsi(1));
        let mut b = sample().to_bytes();
        b[7] = 2;
        assert_eq!(ZiplMbr::parse(&b).unwrap_err(), MbrError::Version(2));
        let mut b = sample().to_bytes();
        b[0x70..0x74].copy_from_slice(b"ABCD");
        let e = ZiplMbr::parse(&b).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("boot_info magic at 0x70 is 41424344 ('ABCD')"),
            "{e}"
        );
        assert_eq!(
            ZiplMbr::parse(&b[..100]).unwrap_err(),
            MbrError::TooShort(100)
        );
    }
}
