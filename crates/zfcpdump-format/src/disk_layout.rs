//! What `zipl --dumpto PARTITION` writes, computed from sizes alone, so a host tool
//! can prepare a disk image that the agent, zgetdump and our own checks accept
//! exactly like a real zipl-prepared disk.
//!
//! # The reserve (checked against real zipl)
//! zipl keeps the end of the partition for its bootmap and gives the rest to the
//! dump. In logical blocks of size `bs` the reserve is
//!
//! `0x10000 + (ceil(initrd/bs) + 1) + ceil((image - 0x10000)/bs) + ceil(896/bs) + 8`
//!
//! (0x10000 is zipl's "approximated stage 3 size", 896 its maximum dump parmline,
//! 8 blocks of tables; the initrd terms only when there is an initrd) and
//! `dump_size = (partition_blocks - reserve) * bs`.
//!
//! # Where the superblock lands (derived; matches both checked disks)
//! zipl seeks to the end of the dump area and writes its bootmap sequentially,
//! each piece starting on a block boundary: the bootmap header text (1 block), an
//! empty block (1), then the dump program's components, each followed by its
//! segment table block(s): stage-3 heap dummy (0x4000 bytes), stage-3 stack dummy
//! (0x1000), the stage-3 loader, the stage-3 parameters (< 1 block), the kernel
//! image (all of it), the parmline (< 1 block) and the initrd; then the component
//! table (1), the program table (1) and finally the superblock. A component of
//! `n` blocks is stored contiguously, so its block list compacts to
//! `ceil(n/65536)` pointers and needs `ceil(ceil(n/65536) / (bs/16 - 1))` segment
//! table blocks (one for any realistic size).
//!
//! The stage-3 loader's size is not known to us; the two disks checked with real
//! zipl (Debian 12, zipl 2.16) pin its block count to `ceil(S/512) = 32` and
//! `ceil(S/4096) = 4`, i.e. 15873..=16384 bytes; [`STAGE3_LOADER_SIZE`] = 0x4000.
//! With image 2,371,584 and initrd 64,396 bytes this gives 4843 blocks from the
//! end of the dump area to the superblock on the 512-byte disk (superblock at
//! disk byte 0x11ed400, as zipl wrote) and 617 blocks on the 4K disk (0x911c000,
//! as zipl wrote). Other zipl versions with a different stage-3 size would put the
//! superblock a few blocks elsewhere; readers must always follow the MBR's
//! boot_info pointer and never assume this position.
//!
//! A signed image (an appended PKCS#7 signature, [`crate::modsig`]): zipl 2.16
//! takes its reserve from the file's size, signature included, but writes
//! the image component without the signature, so only the reserve grows
//! (`image_signature`); checked byte for byte on both disks by `cargo xtask
//! e2e --profile default-signed`.
//!
//! Without an initrd (a dump tool whose initramfs is built into the image:
//! zipl then writes no initrd component) both initrd terms go, from the
//! reserve and from the bootmap. Real zipl 2.16 agrees byte for byte on both
//! disks: with the 6.1 default-builtin image of 2,506,752 bytes the dump areas
//! are 15,199,232 and 148,516,864 bytes, the superblocks at 0x11ed400 and
//! 0x911c000 (`cargo xtask e2e --profile default-builtin`, and the image-only
//! cases of xtask/tests/it/s390tools.rs).
//!
//! The program table pointer in the MBR follows from the same model (the block
//! before the superblock). `cargo xtask e2e` and xtask/tests/it/s390tools.rs
//! compare every byte of zipl 2.16's metadata (MBR, DOS table, program and
//! component tables, superblock) with this layout on 512- and 4096-byte disks.

use crate::csum::CSUM_SIZE;
use crate::mbr::{BlockPtr, DOS_SECTOR_SIZE, DOS_TYPE_LINUX, DosPartition, ZIPL_MAGIC, ZiplMbr};
use crate::superblock::DumpSuperblock;
use std::fmt;
use std::ops::Range;

/// zipl's base reserve in logical blocks ("approximated stage 3 size").
pub const RESERVE_BASE_BLOCKS: u64 = 0x10000;
/// zipl's image load address; zipl's reserve formula subtracts it from the image size.
pub const IMAGE_LOAD_ADDRESS: u64 = 0x10000;
/// zipl's maximum dump parmline length.
pub const DUMP_PARAM_MAX_LEN: u64 = 896;
/// zipl zeroes this many bytes at the start of the partition.
pub const ZEROED_PREFIX: u64 = 64 * 1024;
/// Size of zipl's stage-3 heap dummy component.
pub const STAGE3_HEAP_SIZE: u64 = 0x4000;
/// Size of zipl's stage-3 stack dummy component.
pub const STAGE3_STACK_SIZE: u64 = 0x1000;
/// Assumed size of zipl's stage-3 loader (see the module docs for the derivation).
pub const STAGE3_LOADER_SIZE: u64 = 0x4000;
/// zipl's program table is a 512-byte block whatever the disk's block size.
pub const PROGRAM_TABLE_SIZE: usize = 512;
/// Component header type of a dump program.
pub const COMPONENT_HEADER_DUMP: u8 = 1;
/// Linear block pointers with at most this many extra blocks.
const MAX_BLOCKCT: u64 = 65535;

/// What the layout is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayoutInput {
    /// Size of the whole disk in bytes.
    pub disk_size: u64,
    /// Logical block size: 512 or 4096.
    pub block_size: u32,
    /// Partition start in bytes from the start of the disk.
    pub part_start: u64,
    /// Partition size in bytes.
    pub part_size: u64,
    /// Size of the dump tool's kernel image (zfcpdump-image), without an
    /// appended signature: what zipl writes as the image component.
    pub image_size: u64,
    /// Bytes of an appended signature at the end of the image file
    /// ([`crate::modsig`]); 0 for an unsigned image. zipl 2.16 counts them in
    /// its reserve (from the file's size) but does not write them.
    pub image_signature: u64,
    /// Size of the dump tool's initrd, if it has one.
    pub initrd_size: Option<u64>,
}

/// Why no layout can be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// Block size other than 512 or 4096.
    BlockSize(u32),
    /// A value that must be a multiple of the block size is not.
    Unaligned {
        /// Which value.
        what: &'static str,
        /// The value.
        value: u64,
        /// The block size.
        block_size: u32,
    },
    /// The partition overlaps sector 0 (the MBR) or is empty.
    PartitionStart(u64),
    /// The partition does not fit on the disk.
    PartitionPastDisk {
        /// Partition start.
        part_start: u64,
        /// Partition size.
        part_size: u64,
        /// Disk size.
        disk_size: u64,
    },
    /// Start or size in blocks does not fit the 32-bit DOS partition table.
    DosLimit {
        /// Which value.
        what: &'static str,
        /// Value in blocks.
        blocks: u64,
    },
    /// The kernel image is not larger than zipl's load address.
    ImageTooSmall(u64),
    /// zipl's reserve does not fit ("Partition too small for dump tool").
    PartitionTooSmall {
        /// Partition size in blocks.
        part_blocks: u64,
        /// Needed reserve in blocks.
        reserve_blocks: u64,
        /// The block size.
        block_size: u32,
    },
    /// What remains for the dump would not even hold the zeroed 64 KiB prefix.
    DumpAreaTooSmall {
        /// Resulting dump_size.
        dump_size: u64,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::BlockSize(b) => {
                write!(f, "sector size {b} not supported, use 512 or 4096")
            }
            LayoutError::Unaligned {
                what,
                value,
                block_size,
            } => {
                write!(
                    f,
                    "{what} {value} is not a multiple of the sector size {block_size}"
                )
            }
            LayoutError::PartitionStart(s) => write!(
                f,
                "partition start {s} overlaps sector 0, which holds the MBR and partition table"
            ),
            LayoutError::PartitionPastDisk {
                part_start,
                part_size,
                disk_size,
            } => write!(
                f,
                "partition {part_start}+{part_size} bytes extends past the end of the {disk_size}-byte disk"
            ),
            LayoutError::DosLimit { what, blocks } => write!(
                f,
                "partition {what} of {blocks} sectors does not fit a DOS partition table (32 bits)"
            ),
            LayoutError::ImageTooSmall(s) => write!(
                f,
                "dump tool image is {s} bytes; zipl needs an image larger than {IMAGE_LOAD_ADDRESS:#x} bytes"
            ),
            LayoutError::PartitionTooSmall {
                part_blocks,
                reserve_blocks,
                block_size,
            } => write!(
                f,
                "Partition too small for dump tool: {part_blocks} sectors of {block_size} bytes, \
                 zipl reserves {reserve_blocks} ({} bytes) at its end",
                reserve_blocks * *block_size as u64
            ),
            LayoutError::DumpAreaTooSmall { dump_size } => write!(
                f,
                "Partition too small for dump tool: only {dump_size} bytes would remain for the dump"
            ),
        }
    }
}

impl std::error::Error for LayoutError {}

/// Everything `zipl --dumpto` writes for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpLayout {
    /// The input.
    pub input: LayoutInput,
    /// The DOS partition table entry (partition 1).
    pub partition: DosPartition,
    /// zipl's reserve at the end of the partition, in blocks.
    pub reserve_blocks: u64,
    /// The superblock as zipl writes it (csum = seed over the zeroed block).
    pub superblock: DumpSuperblock,
    /// Disk byte offset of the superblock.
    pub sb_offset: u64,
    /// Absolute block of the program table.
    pub program_table_block: u64,
    /// Absolute block of the dump program's component table.
    pub component_table_block: u64,
    /// The zipl MBR.
    pub mbr: ZiplMbr,
}

/// zipl's reserve in blocks (see the module docs), or `PartitionTooSmall`-style
/// errors for inputs zipl cannot handle.
pub fn zipl_reserve_blocks(
    block_size: u32,
    image_size: u64,
    initrd_size: Option<u64>,
) -> Result<u64, LayoutError> {
    let bs = check_block_size(block_size)?;
    if image_size <= IMAGE_LOAD_ADDRESS {
        return Err(LayoutError::ImageTooSmall(image_size));
    }
    let initrd = initrd_size.map_or(0, |s| s.div_ceil(bs) + 1);
    Ok(RESERVE_BASE_BLOCKS
        + initrd
        + (image_size - IMAGE_LOAD_ADDRESS).div_ceil(bs)
        + DUMP_PARAM_MAX_LEN.div_ceil(bs)
        + 8)
}

/// Blocks from the end of the dump area to the superblock (derived model, see the
/// module docs).
pub fn blocks_before_superblock(block_size: u32, image_size: u64, initrd_size: Option<u64>) -> u64 {
    let bs = block_size as u64;
    let component = |bytes: u64| {
        let n = bytes.div_ceil(bs).max(1);
        let pointers = n.div_ceil(MAX_BLOCKCT + 1);
        n + pointers.div_ceil(bs / 16 - 1)
    };
    2 // bootmap header text, empty block
        + component(STAGE3_HEAP_SIZE)
        + component(STAGE3_STACK_SIZE)
        + component(STAGE3_LOADER_SIZE)
        + component(1) // stage-3 parameters
        + component(image_size)
        + component(1) // parmline, shorter than a block
        + initrd_size.map_or(0, component)
        + 1 // component table
        + 1 // program table
}

fn check_block_size(block_size: u32) -> Result<u64, LayoutError> {
    match block_size {
        512 | 4096 => Ok(block_size as u64),
        b => Err(LayoutError::BlockSize(b)),
    }
}

impl DumpLayout {
    /// Computes the layout, with zipl's checks and messages.
    pub fn compute(input: &LayoutInput) -> Result<DumpLayout, LayoutError> {
        let bs = check_block_size(input.block_size)?;
        for (what, value) in [
            ("disk size", input.disk_size),
            ("partition start", input.part_start),
            ("partition size", input.part_size),
        ] {
            if value % bs != 0 {
                return Err(LayoutError::Unaligned {
                    what,
                    value,
                    block_size: input.block_size,
                });
            }
        }
        if input.part_start < bs || input.part_size == 0 {
            return Err(LayoutError::PartitionStart(input.part_start));
        }
        if input
            .part_start
            .checked_add(input.part_size)
            .is_none_or(|e| e > input.disk_size)
        {
            return Err(LayoutError::PartitionPastDisk {
                part_start: input.part_start,
                part_size: input.part_size,
                disk_size: input.disk_size,
            });
        }
        let start_lba = input.part_start / bs;
        let part_blocks = input.part_size / bs;
        let dos = |what, blocks: u64| {
            u32::try_from(blocks).map_err(|_| LayoutError::DosLimit { what, blocks })
        };
        let partition = DosPartition {
            bootable: false,
            part_type: DOS_TYPE_LINUX,
            start_lba: dos("start", start_lba)?,
            num_blocks: dos("size", part_blocks)?,
        };
        let reserve_blocks = zipl_reserve_blocks(
            input.block_size,
            input.image_size + input.image_signature,
            input.initrd_size,
        )?;
        if reserve_blocks > part_blocks {
            return Err(LayoutError::PartitionTooSmall {
                part_blocks,
                reserve_blocks,
                block_size: input.block_size,
            });
        }
        let dump_blocks = part_blocks - reserve_blocks;
        let dump_size = dump_blocks * bs;
        if dump_size < ZEROED_PREFIX.max(CSUM_SIZE as u64) {
            return Err(LayoutError::DumpAreaTooSmall { dump_size });
        }
        let sb_rel = dump_blocks
            + blocks_before_superblock(input.block_size, input.image_size, input.initrd_size);
        // The reserve's 0x10000 slack blocks always hold the bootmap.
        debug_assert!(sb_rel < part_blocks);
        let sb_block = start_lba + sb_rel;
        let program_table_block = sb_block - 1;
        let sb_offset = sb_block * bs;
        Ok(DumpLayout {
            input: *input,
            partition,
            reserve_blocks,
            superblock: DumpSuperblock::new(input.part_start, input.part_size, dump_size),
            sb_offset,
            program_table_block,
            component_table_block: sb_block - 2,
            mbr: ZiplMbr::new(
                BlockPtr {
                    blockno: program_table_block,
                    size: input.block_size as u16,
                    blockct: 0,
                },
                sb_offset,
            ),
        })
    }

    /// The dump area in disk byte offsets.
    pub fn dump_area(&self) -> Range<u64> {
        self.superblock.dump_area()
    }

    /// The bytes zipl zeroes: the first 64 KiB of the partition.
    pub fn zeroed_range(&self) -> Range<u64> {
        let start = self.input.part_start;
        start..start + ZEROED_PREFIX.min(self.input.part_size)
    }

    /// Sector 0 of a freshly partitioned disk after zipl: the DOS table with
    /// partition 1 and the zipl MBR.
    pub fn sector0(&self) -> [u8; DOS_SECTOR_SIZE] {
        let mut s = [0u8; DOS_SECTOR_SIZE];
        self.partition.write_into(&mut s, 0);
        self.mbr.write_into(&mut s);
        s
    }

    /// The program table block zipl writes: magic, then a pointer to the dump
    /// program's component table (what zgetdump follows to recognise the disk).
    pub fn program_table(&self) -> [u8; PROGRAM_TABLE_SIZE] {
        let mut b = [0u8; PROGRAM_TABLE_SIZE];
        b[0..4].copy_from_slice(&ZIPL_MAGIC);
        BlockPtr {
            blockno: self.component_table_block,
            size: self.input.block_size as u16,
            blockct: 0,
        }
        .write_into(&mut b[BlockPtr::SIZE..2 * BlockPtr::SIZE]);
        b
    }

    /// The start of the dump program's component table: its 32-byte header with
    /// the "dump" type. The component entries (loader, kernel, initrd) are not
    /// produced: images made from this layout are dump targets, not IPL-able.
    pub fn component_header(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..4].copy_from_slice(&ZIPL_MAGIC);
        b[4] = COMPONENT_HEADER_DUMP;
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: u64 = 2_371_584;
    const INITRD: u64 = 64_396;

    #[test]
    fn zipl_checked_512_byte_disk() {
        let l = DumpLayout::compute(&LayoutInput {
            disk_size: 64 << 20,
            block_size: 512,
            part_start: 2048 * 512,
            part_size: 100_000 * 512,
            image_size: IMAGE,
            image_signature: 0,
            initrd_size: Some(INITRD),
        })
        .unwrap();
        let sb = l.superblock;
        assert_eq!(sb.part_start, 0x100000);
        assert_eq!(sb.part_size, 51_200_000);
        assert_eq!(sb.dump_offset, 0);
        assert_eq!(sb.dump_size, 15_269_376);
        assert_eq!(sb.csum_offset, 0);
        assert_eq!(sb.csum_size, 4096);
        assert_eq!(sb.csum, 0x12345678);
        assert_eq!(l.sb_offset, 0x11ed400);
        assert_eq!(l.mbr.sb_offset, 0x11ed400);
        assert_eq!(l.reserve_blocks, 70_177);
        assert_eq!(
            l.partition,
            DosPartition {
                bootable: false,
                part_type: 0x83,
                start_lba: 2048,
                num_blocks: 100_000
            }
        );
        assert_eq!(l.program_table_block, 0x11ed400 / 512 - 1);
        assert_eq!(l.component_table_block, 0x11ed400 / 512 - 2);
    }

    #[test]
    fn zipl_checked_4k_disk() {
        let l = DumpLayout::compute(&LayoutInput {
            disk_size: 512 << 20,
            block_size: 4096,
            part_start: 0x100000,
            part_size: 400 << 20,
            image_size: IMAGE,
            image_signature: 0,
            initrd_size: Some(INITRD),
        })
        .unwrap();
        assert_eq!(l.superblock.part_size, 419_430_400);
        assert_eq!(l.superblock.dump_size, 148_582_400);
        assert_eq!(l.sb_offset, 0x911c000);
        assert_eq!(l.partition.start_lba, 256);
        assert_eq!(l.partition.num_blocks, 102_400);
        assert_eq!(l.mbr.program_table.size, 4096);
    }

    #[test]
    fn reserve_formula() {
        assert_eq!(
            zipl_reserve_blocks(512, IMAGE, Some(INITRD)).unwrap(),
            0x10000 + 127 + 4504 + 2 + 8
        );
        assert_eq!(
            zipl_reserve_blocks(4096, IMAGE, Some(INITRD)).unwrap(),
            0x10000 + 17 + 563 + 1 + 8
        );
        assert_eq!(
            zipl_reserve_blocks(512, IMAGE, None).unwrap(),
            0x10000 + 4504 + 2 + 8
        );
        assert_eq!(blocks_before_superblock(512, IMAGE, Some(INITRD)), 4843);
        assert_eq!(blocks_before_superblock(4096, IMAGE, Some(INITRD)), 617);
        assert_eq!(
            zipl_reserve_blocks(512, 0x10000, None).unwrap_err(),
            LayoutError::ImageTooSmall(0x10000)
        );
    }

    #[test]
    fn too_small_like_zipl() {
        // zipl refused a 51 MB partition on a 4K disk.
        let e = DumpLayout::compute(&LayoutInput {
            disk_size: 64 << 20,
            block_size: 4096,
            part_start: 0x100000,
            part_size: 51_200_000 / 4096 * 4096,
            image_size: IMAGE,
            image_signature: 0,
            initrd_size: Some(INITRD),
        })
        .unwrap_err();
        assert!(
            matches!(
                e,
                LayoutError::PartitionTooSmall {
                    reserve_blocks: 66_125,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("Partition too small for dump tool"),
            "{e}"
        );
    }

    #[test]
    fn input_checks() {
        let ok = LayoutInput {
            disk_size: 64 << 20,
            block_size: 512,
            part_start: 1 << 20,
            part_size: 63 << 20,
            image_size: IMAGE,
            image_signature: 0,
            initrd_size: None,
        };
        DumpLayout::compute(&ok).unwrap();
        let err = |i: LayoutInput| DumpLayout::compute(&i).unwrap_err();
        assert_eq!(
            err(LayoutInput {
                block_size: 1024,
                ..ok
            }),
            LayoutError::BlockSize(1024)
        );
        assert!(matches!(
            err(LayoutInput {
                part_start: 1000,
                ..ok
            }),
            LayoutError::Unaligned {
                what: "partition start",
                ..
            }
        ));
        assert!(matches!(
            err(LayoutInput {
                block_size: 4096,
                part_start: 512 * 3,
                ..ok
            }),
            LayoutError::Unaligned { .. }
        ));
        assert_eq!(
            err(LayoutInput {
                part_start: 0,
                ..ok
            }),
            LayoutError::PartitionStart(0)
        );
        assert!(matches!(
            err(LayoutInput {
                part_size: 64 << 20,
                ..ok
            }),
            LayoutError::PartitionPastDisk { .. }
        ));
        assert!(matches!(
            err(LayoutInput {
                disk_size: 4 << 40,
                part_size: 3 << 40,
                ..ok
            }),
            LayoutError::DosLimit { what: "size", .. }
        ));
        // Exactly the reserve plus less than 64 KiB left.
        let reserve = zipl_reserve_blocks(512, IMAGE, None).unwrap();
        assert!(matches!(
            err(LayoutInput {
                part_size: (reserve + 100) * 512,
                ..ok
            }),
            LayoutError::DumpAreaTooSmall { dump_size: 51_200 }
        ));
    }

    #[test]
    fn sector0_and_tables() {
        let l = DumpLayout::compute(&LayoutInput {
            disk_size: 64 << 20,
            block_size: 512,
            part_start: 2048 * 512,
            part_size: 100_000 * 512,
            image_size: IMAGE,
            image_signature: 0,
            initrd_size: Some(INITRD),
        })
        .unwrap();
        let s = l.sector0();
        assert_eq!(ZiplMbr::parse(&s).unwrap(), l.mbr);
        assert_eq!(DosPartition::read_table(&s).unwrap()[0], Some(l.partition));
        let pt = l.program_table();
        assert_eq!(&pt[0..4], b"zIPL");
        assert_eq!(
            BlockPtr::parse(&pt[16..32]).blockno,
            l.component_table_block
        );
        assert_eq!(&l.component_header()[0..5], b"zIPL\x01");
        assert_eq!(l.zeroed_range(), 0x100000..0x110000);
        assert_eq!(l.dump_area(), 0x100000..0x100000 + 15_269_376);
        // The superblock lies in the reserve, after the dump area.
        assert!(l.sb_offset >= l.dump_area().end);
        assert!(l.sb_offset + 72 <= 0x100000 + 51_200_000);
    }
}
