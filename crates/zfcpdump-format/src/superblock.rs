//! zipl's SCSI dump superblock (`scsi_dump_sb`): nine big-endian u64 (72 bytes) in
//! zipl's reserved tail of the dump partition, found through the MBR boot_info.
//!
//! All fields count bytes on 512- and 4096-byte-sector disks alike (checked with
//! real zipl). `part_start` is relative to the disk; `dump_offset` and
//! `csum_offset` are relative to the partition.

use crate::bytes::{be_u64, put_be_u64};
use crate::csum::{CSUM_SEED, CSUM_SIZE, dump_csum};
use std::fmt;
use std::ops::Range;

/// "ZFCPDUMP".
pub const SB_MAGIC: u64 = 0x5a46_4350_4455_4d50;
/// The only superblock version.
pub const SB_VERSION: u64 = 1;
/// Encoded size.
pub const SB_SIZE: usize = 72;
/// Offset of the `csum` field within the superblock.
pub const CSUM_FIELD_OFFSET: u64 = 64;

/// The dump superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpSuperblock {
    /// Format version, 1.
    pub version: u64,
    /// Partition start, bytes from the start of the disk.
    pub part_start: u64,
    /// Partition size in bytes.
    pub part_size: u64,
    /// Start of the dump area, bytes from the partition start (zipl: 0).
    pub dump_offset: u64,
    /// Size of the dump area in bytes.
    pub dump_size: u64,
    /// Start of the checksummed block, bytes from the partition start (zipl: 0).
    pub csum_offset: u64,
    /// Bytes covered by the checksum (zipl: 4096).
    pub csum_size: u64,
    /// Checksum; only the low 32 bits can be non-zero in a valid superblock.
    pub csum: u64,
}

/// Why a superblock is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuperblockError {
    /// Fewer than [`SB_SIZE`] bytes.
    TooShort(usize),
    /// Wrong magic.
    Magic(u64),
    /// Unknown version.
    Version(u64),
    /// The dump area is empty.
    EmptyDumpArea,
    /// part_start + part_size does not fit in 64 bits.
    PartitionOverflow {
        /// Stored part_start.
        part_start: u64,
        /// Stored part_size.
        part_size: u64,
    },
    /// The dump area does not lie inside the partition.
    DumpAreaOutsidePartition {
        /// Stored dump_offset.
        dump_offset: u64,
        /// Stored dump_size.
        dump_size: u64,
        /// Stored part_size.
        part_size: u64,
    },
    /// The checksummed block does not lie inside the partition.
    CsumAreaOutsidePartition {
        /// Stored csum_offset.
        csum_offset: u64,
        /// Stored csum_size.
        csum_size: u64,
        /// Stored part_size.
        part_size: u64,
    },
    /// csum_size other than 4096 (the tools use fixed 4 KiB buffers, as zipl writes).
    CsumSize(u64),
    /// The stored checksum does not match the data.
    CsumMismatch {
        /// Stored csum field.
        stored: u64,
        /// Checksum of the block on disk.
        computed: u32,
        /// Disk byte offset of the checksummed block.
        at: u64,
    },
}

impl fmt::Display for SuperblockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuperblockError::TooShort(n) => {
                write!(f, "dump superblock is {n} bytes, expected {SB_SIZE}")
            }
            SuperblockError::Magic(m) => write!(
                f,
                "dump superblock magic is {m:#018x}, expected {SB_MAGIC:#018x} ('ZFCPDUMP'): \
                 the MBR points at no zipl dump superblock"
            ),
            SuperblockError::Version(v) => {
                write!(f, "dump superblock version is {v}, expected {SB_VERSION}")
            }
            SuperblockError::EmptyDumpArea => write!(f, "dump superblock dump_size is 0"),
            SuperblockError::PartitionOverflow {
                part_start,
                part_size,
            } => write!(
                f,
                "dump superblock partition overflows: part_start {part_start:#x} + part_size {part_size:#x}"
            ),
            SuperblockError::DumpAreaOutsidePartition {
                dump_offset,
                dump_size,
                part_size,
            } => write!(
                f,
                "dump area outside the partition: dump_offset {dump_offset:#x} + dump_size \
                 {dump_size:#x} > part_size {part_size:#x}"
            ),
            SuperblockError::CsumAreaOutsidePartition {
                csum_offset,
                csum_size,
                part_size,
            } => write!(
                f,
                "checksum area outside the partition: csum_offset {csum_offset:#x} + csum_size \
                 {csum_size:#x} > part_size {part_size:#x}"
            ),
            SuperblockError::CsumSize(n) => {
                write!(f, "dump superblock csum_size is {n}, expected {CSUM_SIZE}")
            }
            SuperblockError::CsumMismatch {
                stored,
                computed,
                at,
            } => write!(
                f,
                "dump superblock checksum mismatch: stored {stored:#010x}, computed {computed:#010x} \
                 over the {CSUM_SIZE} bytes at disk offset {at:#x} (partition changed without \
                 updating the checksum, e.g. an interrupted dump tool)"
            ),
        }
    }
}

impl std::error::Error for SuperblockError {}

impl DumpSuperblock {
    /// A superblock as `zipl --dumpto` writes it: dump and checksum areas at the
    /// start of the partition and the checksum of a zeroed block (the seed).
    pub fn new(part_start: u64, part_size: u64, dump_size: u64) -> DumpSuperblock {
        DumpSuperblock {
            version: SB_VERSION,
            part_start,
            part_size,
            dump_offset: 0,
            dump_size,
            csum_offset: 0,
            csum_size: CSUM_SIZE as u64,
            csum: CSUM_SEED as u64,
        }
    }

    /// Decodes and validates ([`DumpSuperblock::validate`]) a superblock.
    pub fn parse(b: &[u8]) -> Result<DumpSuperblock, SuperblockError> {
        if b.len() < SB_SIZE {
            return Err(SuperblockError::TooShort(b.len()));
        }
        let magic = be_u64(b, 0);
        if magic != SB_MAGIC {
            return Err(SuperblockError::Magic(magic));
        }
        let sb = DumpSuperblock {
            version: be_u64(b, 8),
            part_start: be_u64(b, 16),
            part_size: be_u64(b, 24),
            dump_offset: be_u64(b, 32),
            dump_size: be_u64(b, 40),
            csum_offset: be_u64(b, 48),
            csum_size: be_u64(b, 56),
            csum: be_u64(b, 64),
        };
        sb.validate()?;
        Ok(sb)
    }

    /// Encodes the superblock.
    pub fn to_bytes(&self) -> [u8; SB_SIZE] {
        let mut b = [0u8; SB_SIZE];
        let fields = [
            SB_MAGIC,
            self.version,
            self.part_start,
            self.part_size,
            self.dump_offset,
            self.dump_size,
            self.csum_offset,
            self.csum_size,
            self.csum,
        ];
        for (i, v) in fields.into_iter().enumerate() {
            put_be_u64(&mut b, 8 * i, v);
        }
        b
    }

    /// Checks the version and that the dump and checksum areas lie inside the
    /// partition, so that [`DumpSuperblock::dump_area`] and
    /// [`DumpSuperblock::csum_area`] cannot overflow.
    pub fn validate(&self) -> Result<(), SuperblockError> {
        if self.version != SB_VERSION {
            return Err(SuperblockError::Version(self.version));
        }
        if self.part_start.checked_add(self.part_size).is_none() {
            return Err(SuperblockError::PartitionOverflow {
                part_start: self.part_start,
                part_size: self.part_size,
            });
        }
        if self.dump_size == 0 {
            return Err(SuperblockError::EmptyDumpArea);
        }
        if self
            .dump_offset
            .checked_add(self.dump_size)
            .is_none_or(|e| e > self.part_size)
        {
            return Err(SuperblockError::DumpAreaOutsidePartition {
                dump_offset: self.dump_offset,
                dump_size: self.dump_size,
                part_size: self.part_size,
            });
        }
        if self.csum_size != CSUM_SIZE as u64 {
            return Err(SuperblockError::CsumSize(self.csum_size));
        }
        if self
            .csum_offset
            .checked_add(self.csum_size)
            .is_none_or(|e| e > self.part_size)
        {
            return Err(SuperblockError::CsumAreaOutsidePartition {
                csum_offset: self.csum_offset,
                csum_size: self.csum_size,
                part_size: self.part_size,
            });
        }
        Ok(())
    }

    /// The dump area in disk byte offsets: `[part_start + dump_offset, + dump_size)`.
    /// Only meaningful for a validated superblock (saturates otherwise).
    pub fn dump_area(&self) -> Range<u64> {
        let start = self.part_start.saturating_add(self.dump_offset);
        start..start.saturating_add(self.dump_size)
    }

    /// The checksummed block in disk byte offsets.
    pub fn csum_area(&self) -> Range<u64> {
        let start = self.part_start.saturating_add(self.csum_offset);
        start..start.saturating_add(self.csum_size)
    }

    /// The partition in disk byte offsets.
    pub fn partition(&self) -> Range<u64> {
        self.part_start..self.part_start.saturating_add(self.part_size)
    }

    /// Checks the stored checksum against the checksummed block as read from disk
    /// (the [`DumpSuperblock::csum_area`] bytes).
    pub fn verify_csum(&self, block: &[u8]) -> Result<(), SuperblockError> {
        let computed = dump_csum(block);
        if self.csum == computed as u64 {
            Ok(())
        } else {
            Err(SuperblockError::CsumMismatch {
                stored: self.csum,
                computed,
                at: self.csum_area().start,
            })
        }
    }
}

/// Disk byte offset of the 8-byte `csum` field of the superblock at disk offset
/// `sb_offset`. Together with the dump area, these 8 bytes are the only ones the
/// dump tool may change: everything else belongs to zipl.
pub fn csum_field_offset(sb_offset: u64) -> u64 {
    sb_offset + CSUM_FIELD_OFFSET
}

/// The big-endian bytes to store in the csum field for a checksum value.
pub fn csum_field_bytes(csum: u32) -> [u8; 8] {
    (csum as u64).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zipl_512() -> DumpSuperblock {
        DumpSuperblock::new(0x100000, 51_200_000, 15_269_376)
    }

    #[test]
    fn encoding() {
        let b = zipl_512().to_bytes();
        assert_eq!(&b[0..8], b"ZFCPDUMP");
        assert_eq!(&b[8..16], &1u64.to_be_bytes());
        assert_eq!(&b[16..24], &0x100000u64.to_be_bytes());
        assert_eq!(&b[24..32], &51_200_000u64.to_be_bytes());
        assert_eq!(&b[32..40], &[0; 8]);
        assert_eq!(&b[40..48], &15_269_376u64.to_be_bytes());
        assert_eq!(&b[48..56], &[0; 8]);
        assert_eq!(&b[56..64], &4096u64.to_be_bytes());
        assert_eq!(&b[64..72], &[0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78]);
        assert_eq!(DumpSuperblock::parse(&b).unwrap(), zipl_512());
    }

    #[test]
    fn areas() {
        let sb = zipl_512();
        assert_eq!(sb.dump_area(), 0x100000..0x100000 + 15_269_376);
        assert_eq!(sb.csum_area(), 0x100000..0x101000);
        assert_eq!(sb.partition(), 0x100000..0x100000 + 51_200_000);
        assert_eq!(csum_field_offset(0x11ed400), 0x11ed440);
        assert_eq!(
            csum_field_bytes(0xdeadbeef),
            [0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]
        );
    }

    #[test]
    fn csum_check() {
        let sb = zipl_512();
        let mut block = [0u8; 4096];
        sb.verify_csum(&block).unwrap();
        block[100] = 1;
        let e = sb.verify_csum(&block).unwrap_err();
        assert_eq!(
            e,
            SuperblockError::CsumMismatch {
                stored: 0x12345678,
                computed: 0x12345678 + 0x0100_0000,
                at: 0x100000
            }
        );
        assert!(
            e.to_string().starts_with(
                "dump superblock checksum mismatch: stored 0x12345678, computed 0x13345678"
            ),
            "{e}"
        );
        // Upper 32 bits set never match (zgetdump compares the full u64).
        let sb2 = DumpSuperblock {
            csum: 0x1_1234_5678,
            ..sb
        };
        assert!(sb2.verify_csum(&[0u8; 4096]).is_err());
    }

    #[test]
    fn validation() {
        let mut b = zipl_512().to_bytes();
        b[0] = b'X';
        let e = DumpSuperblock::parse(&b).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dump superblock magic is 0x5846435044554d50, expected 0x5a46435044554d50 ('ZFCPDUMP'): the MBR points at no zipl dump superblock"
        );
        let bad = |sb: DumpSuperblock| DumpSuperblock::parse(&sb.to_bytes()).unwrap_err();
        assert_eq!(
            bad(DumpSuperblock {
                version: 2,
                ..zipl_512()
            }),
            SuperblockError::Version(2)
        );
        assert_eq!(
            bad(DumpSuperblock {
                dump_size: 0,
                ..zipl_512()
            }),
            SuperblockError::EmptyDumpArea
        );
        let e = bad(DumpSuperblock {
            dump_size: 51_200_001,
            ..zipl_512()
        });
        assert_eq!(
            e.to_string(),
            "dump area outside the partition: dump_offset 0x0 + dump_size 0x30d4001 > part_size 0x30d4000"
        );
        assert!(matches!(
            bad(DumpSuperblock {
                dump_offset: u64::MAX,
                ..zipl_512()
            }),
            SuperblockError::DumpAreaOutsidePartition { .. }
        ));
        assert_eq!(
            bad(DumpSuperblock {
                csum_size: 512,
                ..zipl_512()
            }),
            SuperblockError::CsumSize(512)
        );
        assert!(matches!(
            bad(DumpSuperblock {
                csum_offset: 51_200_000 - 4095,
                ..zipl_512()
            }),
            SuperblockError::CsumAreaOutsidePartition { .. }
        ));
        assert!(matches!(
            bad(DumpSuperblock {
                part_start: u64::MAX,
                ..zipl_512()
            }),
            SuperblockError::PartitionOverflow { .. }
        ));
        assert_eq!(
            DumpSuperblock::parse(&b[..71]).unwrap_err(),
            SuperblockError::TooShort(71)
        );
    }
}
