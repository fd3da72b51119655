//! The order in which the agent copies `/proc/vmcore` to the dump area.
//!
//! 1. The file bytes of PT_LOAD segments whose physical addresses lie below the
//!    HSA size (only the part below it): reading them makes the kernel fetch the
//!    hardware-saved low memory, which is released in step 2 to give the memory
//!    back to the firmware as early as possible.
//! 2. [`CopyStep::ReleaseHsa`].
//! 3. Every other byte of the file, in file order.
//! 4. The first 4096 bytes (ELF header and program headers) last, so an
//!    interrupted dump never parses as ELF: until then the dump area starts with
//!    the busy marker.
//!
//! Coverage is about file offsets: the kernel-image PT_LOAD of newer kernels
//! overlaps an identity-mapped PT_LOAD in physical space but has its own file
//! bytes, and both must be copied. The steps are disjoint and cover
//! `[0, file_size)` exactly once; their number is bounded by the number of
//! program headers.

use crate::PAGE_SIZE;
use crate::elf::{ProgramHeader, merge_ranges};
use std::fmt;
use std::ops::Range;

/// Bytes at the start of the file that are written last.
pub const HEADER_BLOCK: u64 = PAGE_SIZE;

/// One step of the byte-exact copy (a filtered copy has its own:
/// [`crate::filtered::FilteredStep`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyStep {
    /// Copy file bytes `[start, end)` to the same offsets of the dump area.
    Copy {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// Whether these bytes come from the HSA (physical addresses below its size).
        hsa: bool,
    },
    /// All HSA bytes have been copied: release the HSA (write `0` to
    /// /sys/kernel/debug/zcore/hsa). Emitted exactly once, even when no byte came
    /// from the HSA.
    ReleaseHsa,
}

impl CopyStep {
    /// Bytes this step copies (0 for [`CopyStep::ReleaseHsa`]).
    pub fn len(&self) -> u64 {
        match *self {
            CopyStep::Copy { start, end, .. } => end - start,
            CopyStep::ReleaseHsa => 0,
        }
    }

    /// Whether the step copies nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why no plan can be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// A PT_LOAD's file bytes lie (partly) outside the file.
    SegmentOutOfFile {
        /// Program header index.
        index: usize,
        /// p_offset.
        offset: u64,
        /// p_filesz.
        size: u64,
        /// File size.
        file_size: u64,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::SegmentOutOfFile {
                index,
                offset,
                size,
                file_size,
            } => write!(
                f,
                "program header {index} extends past end of file: offset {offset:#x} + size {size:#x} > file size {file_size:#x}"
            ),
        }
    }
}

impl std::error::Error for PlanError {}

/// Builds the copy plan for a vmcore of `file_size` bytes with program headers
/// `phdrs`, on a machine whose HSA holds physical addresses `[0, hsa_size)`.
pub fn copy_plan(
    phdrs: &[ProgramHeader],
    file_size: u64,
    hsa_size: u64,
) -> Result<Vec<CopyStep>, PlanError> {
    let head_end = HEADER_BLOCK.min(file_size);
    let mut hsa: Vec<Range<u64>> = Vec::new();
    for (index, p) in phdrs.iter().enumerate() {
        if !p.is_load() || p.p_filesz == 0 {
            continue;
        }
        let Some(end) = p.file_end().filter(|&e| e <= file_size) else {
            return Err(PlanError::SegmentOutOfFile {
                index,
                offset: p.p_offset,
                size: p.p_filesz,
                file_size,
            });
        };
        if p.p_paddr >= hsa_size {
            continue;
        }
        let below = p.p_filesz.min(hsa_size - p.p_paddr);
        let r = p.p_offset.max(head_end)..end.min(p.p_offset + below);
        if r.start < r.end {
            hsa.push(r);
        }
    }
    merge_ranges(&mut hsa);

    let mut steps = Vec::with_capacity(2 * hsa.len() + 3);
    steps.extend(hsa.iter().map(|r| CopyStep::Copy {
        start: r.start,
        end: r.end,
        hsa: true,
    }));
    steps.push(CopyStep::ReleaseHsa);
    let mut cursor = head_end;
    for r in &hsa {
        if cursor < r.start {
            steps.push(CopyStep::Copy {
                start: cursor,
                end: r.start,
                hsa: false,
            });
        }
        cursor = r.end;
    }
    if cursor < file_size {
        steps.push(CopyStep::Copy {
            start: cursor,
            end: file_size,
            hsa: false,
        });
    }
    if head_end > 0 {
        steps.push(CopyStep::Copy {
            start: 0,
            end: head_end,
            hsa: false,
        });
    }
    Ok(steps)
}

/// Total bytes copied by a plan.
pub fn total_bytes(steps: &[CopyStep]) -> u64 {
    steps.iter().map(CopyStep::len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::PT_LOAD;

    fn load(offset: u64, paddr: u64, size: u64) -> ProgramHeader {
        ProgramHeader {
            p_type: PT_LOAD,
            p_offset: offset,
            p_paddr: paddr,
            p_vaddr: paddr,
            p_filesz: size,
            p_memsz: size,
            ..Default::default()
        }
    }

    fn copy(start: u64, end: u64, hsa: bool) -> CopyStep {
        CopyStep::Copy { start, end, hsa }
    }

    #[test]
    fn typical_core() {
        // notes at 0x1000..0x2000; memory 0..0x10000 at file 0x2000; 0x20000..0x30000 at 0x12000
        let phdrs = [
            ProgramHeader {
                p_type: crate::elf::PT_NOTE,
                p_offset: 0x1000,
                p_filesz: 0x800,
                ..Default::default()
            },
            load(0x2000, 0, 0x10000),
            load(0x12000, 0x20000, 0x10000),
        ];
        let plan = copy_plan(&phdrs, 0x22000, 0x8000).unwrap();
        assert_eq!(
            plan,
            vec![
                copy(0x2000, 0xa000, true),
                CopyStep::ReleaseHsa,
                copy(0x1000, 0x2000, false),
                copy(0xa000, 0x22000, false),
                copy(0, 0x1000, false),
            ]
        );
        assert_eq!(total_bytes(&plan), 0x22000);
    }

    #[test]
    fn whole_memory_in_hsa_and_header_clipping() {
        // A PT_LOAD whose file bytes start inside the first page (no padding).
        let phdrs = [load(0x800, 0, 0x2000)];
        let plan = copy_plan(&phdrs, 0x2800, 1 << 30).unwrap();
        assert_eq!(
            plan,
            vec![
                copy(0x1000, 0x2800, true),
                CopyStep::ReleaseHsa,
                copy(0, 0x1000, false)
            ]
        );
    }

    #[test]
    fn no_hsa_and_tiny_files() {
        assert_eq!(copy_plan(&[], 0, 0).unwrap(), vec![CopyStep::ReleaseHsa]);
        assert_eq!(
            copy_plan(&[], 100, 0x1000).unwrap(),
            vec![CopyStep::ReleaseHsa, copy(0, 100, false)]
        );
        let phdrs = [load(0x1000, 0x1000, 0x1000)];
        assert_eq!(
            copy_plan(&phdrs, 0x2000, 0).unwrap(),
            vec![
                CopyStep::ReleaseHsa,
                copy(0x1000, 0x2000, false),
                copy(0, 0x1000, false)
            ]
        );
    }

    #[test]
    fn kernel_image_overlap_is_about_file_offsets() {
        // Identity map 0..0x10000 at file 0x1000; kernel image paddr 0x4000..0x6000
        // with its own file bytes at 0x11000; HSA 0x5000: both parts below are HSA.
        let phdrs = [load(0x1000, 0, 0x10000), load(0x11000, 0x4000, 0x2000)];
        let plan = copy_plan(&phdrs, 0x13000, 0x5000).unwrap();
        assert_eq!(
            plan,
            vec![
                copy(0x1000, 0x6000, true),
                copy(0x11000, 0x12000, true),
                CopyStep::ReleaseHsa,
                copy(0x6000, 0x11000, false),
                copy(0x12000, 0x13000, false),
                copy(0, 0x1000, false),
            ]
        );
    }

    #[test]
    fn segment_out_of_file() {
        let e = copy_plan(&[load(0x1000, 0, 0x2000)], 0x2fff, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "program header 0 extends past end of file: offset 0x1000 + size 0x2000 > file size 0x2fff"
        );
        assert!(copy_plan(&[load(u64::MAX, 0, 2)], 10, 0).is_err());
    }

    use crate::testrand::XorShift;

    #[test]
    fn property_disjoint_exact_cover_in_order() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let file_size = rng.below(20_000);
            let hsa_size = rng.below(12_000);
            let n = rng.below(6) as usize;
            let mut phdrs = Vec::new();
            for _ in 0..n {
                let off = rng.below(file_size + 1);
                let size = rng.below(file_size - off + 1);
                let paddr = rng.below(16_000);
                let mut p = load(off, paddr, size);
                if rng.below(5) == 0 {
                    p.p_type = crate::elf::PT_NOTE;
                }
                phdrs.push(p);
            }
            let plan = copy_plan(&phdrs, file_size, hsa_size).unwrap();

            // Exactly one ReleaseHsa; HSA copies only before it.
            let rel = plan
                .iter()
                .position(|s| *s == CopyStep::ReleaseHsa)
                .unwrap();
            assert_eq!(
                plan.iter().filter(|s| **s == CopyStep::ReleaseHsa).count(),
                1
            );
            for (i, s) in plan.iter().enumerate() {
                if let CopyStep::Copy { start, end, hsa } = *s {
                    assert!(start < end, "empty step {s:?}");
                    assert_eq!(hsa, i < rel, "{plan:?}");
                }
            }
            // Header last.
            if file_size > 0 {
                assert_eq!(*plan.last().unwrap(), copy(0, file_size.min(4096), false));
            }
            // Every byte exactly once; HSA bytes are exactly the file bytes of
            // PT_LOADs below the HSA, outside the header page.
            let mut seen = vec![0u8; file_size as usize];
            let mut from_hsa = vec![false; file_size as usize];
            for s in &plan {
                if let CopyStep::Copy { start, end, hsa } = *s {
                    for b in start..end {
                        seen[b as usize] += 1;
                        from_hsa[b as usize] = hsa;
                    }
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "not an exact cover: {plan:?}");
            let mut want_hsa = vec![false; file_size as usize];
            for p in phdrs.iter().filter(|p| p.is_load()) {
                for i in 0..p.p_filesz {
                    if p.p_paddr + i < hsa_size && p.p_offset + i >= 4096 {
                        want_hsa[(p.p_offset + i) as usize] = true;
                    }
                }
            }
            assert_eq!(from_hsa, want_hsa, "{phdrs:?} {plan:?}");
            // Non-HSA copies are in file order.
            let rest: Vec<u64> = plan[rel + 1..]
                .iter()
                .filter_map(|s| match *s {
                    CopyStep::Copy { start, .. } if start != 0 => Some(start),
                    _ => None,
                })
                .collect();
            assert!(rest.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
