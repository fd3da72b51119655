//! What a filtered dump records about itself: one ELF note, appended to the
//! dump's PT_NOTE segment (readers such as crash take the first program
//! header as the only PT_NOTE, so there is no second one), that holds the
//! level asked for, the level used and the pages each class left out.
//!
//! ```text
//! namesz 9, descsz 72, type 0x5a464c54 ("ZFLT"), name "ZFCPDUMP\0" (padded to 12)
//! desc (big-endian): u32 version (1), u32 level asked, u32 level used,
//!                    u32 reserved, u64 pages left out per class (zero,
//!                    cache, cache_private, user, free), u64 pages written,
//!                    u64 pages in the dump's PT_LOADs
//! ```

use super::DumpLevel;
use crate::bytes::{be_u32, be_u64};
use crate::elf::{Vmcore, push_note};

/// The note's name.
pub const NAME: &[u8] = b"ZFCPDUMP";
/// The note's type, "ZFLT": readers such as crash and zgetdump go by the
/// type alone for the core notes (1 is NT_PRSTATUS, a CPU), so it must be
/// none of theirs.
pub const NT_FILTER: u32 = 0x5a46_4c54;
const VERSION: u32 = 1;
const DESC_SIZE: usize = 72;
/// Bytes of the whole note (header, padded name, desc).
pub const NOTE_SIZE: u64 = 12 + 12 + DESC_SIZE as u64;

/// The filter record of a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FilterNote {
    /// The dump level asked for (profile or `zfcpdump.dump_level=`).
    pub requested: DumpLevel,
    /// The level used (lower when the kernel could not be classified).
    pub used: DumpLevel,
    /// Pages left out per class, in [`super::CLASSES`] order.
    pub excluded: [u64; 5],
    /// Pages written.
    pub written: u64,
    /// Pages of memory in the dump's PT_LOADs.
    pub total: u64,
}

impl FilterNote {
    /// The whole note, [`NOTE_SIZE`] bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut d = Vec::with_capacity(DESC_SIZE);
        for v in [
            VERSION,
            self.requested.bits() as u32,
            self.used.bits() as u32,
            0,
        ] {
            d.extend_from_slice(&v.to_be_bytes());
        }
        for v in self.excluded.iter().chain([&self.written, &self.total]) {
            d.extend_from_slice(&v.to_be_bytes());
        }
        let mut out = Vec::with_capacity(NOTE_SIZE as usize);
        push_note(&mut out, NT_FILTER, NAME, &d);
        debug_assert_eq!(out.len() as u64, NOTE_SIZE);
        out
    }

    /// Parses a note's desc (name and type already matched).
    pub fn parse(desc: &[u8]) -> Option<FilterNote> {
        if desc.len() < DESC_SIZE || be_u32(desc, 0) != VERSION {
            return None;
        }
        let mut excluded = [0u64; 5];
        for (i, e) in excluded.iter_mut().enumerate() {
            *e = be_u64(desc, 16 + 8 * i);
        }
        Some(FilterNote {
            requested: DumpLevel::new(be_u32(desc, 4))?,
            used: DumpLevel::new(be_u32(desc, 8))?,
            excluded,
            written: be_u64(desc, 56),
            total: be_u64(desc, 64),
        })
    }

    /// The filter note of a dump, if it has one.
    pub fn find(vm: &Vmcore) -> Option<FilterNote> {
        vm.notes()
            .filter_map(Result::ok)
            .find(|n| n.name == NAME && n.n_type == NT_FILTER)
            .and_then(|n| FilterNote::parse(n.desc))
    }

    /// One line for reports: the levels and the pages per class.
    pub fn describe(&self) -> String {
        let classes: Vec<String> = super::CLASSES
            .iter()
            .zip(self.excluded)
            .map(|((_, name), n)| format!("{name} {n}"))
            .collect();
        format!(
            "dump level {} (asked {}): {} of {} pages left out ({}); {} written",
            self.used,
            self.requested,
            self.excluded_total(),
            self.total,
            classes.join(", "),
            self.written
        )
    }

    /// Pages left out in all.
    pub fn excluded_total(&self) -> u64 {
        self.excluded.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::NoteIter;

    #[test]
    fn round_trips_through_the_note_parser() {
        let n = FilterNote {
            requested: DumpLevel::new(31).unwrap(),
            used: DumpLevel::new(1).unwrap(),
            excluded: [1, 2, 3, 4, 5],
            written: 6,
            total: 21,
        };
        let bytes = n.to_bytes();
        assert_eq!(bytes.len() as u64, NOTE_SIZE);
        let note = NoteIter::new(&bytes, 0, 0).next().unwrap().unwrap();
        assert_eq!((note.name, note.n_type), (NAME, NT_FILTER));
        assert_eq!(FilterNote::parse(note.desc), Some(n));
        assert_eq!(FilterNote::parse(&note.desc[..40]), None);
    }
}
