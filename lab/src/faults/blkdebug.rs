//! QEMU blkdebug rules: an EIO on one write (or read) of the guest's disk.
//!
//! blkdebug's inject-error rules become active on an event of the format
//! driver above it (`write_aio`, `read_aio`: raw emits them for every
//! request) and then fail the request that covers their sector. The busy
//! marker and the ELF header are both written to the dump area's first
//! block, and the checksum field twice, so a rule can also be bound to a
//! state: blkdebug starts in state 1, and `set-state` rules here step it on
//! every flush (`flush_to_disk`). The agent flushes five times, in this
//! order: after the busy marker (state 1 → 2), after the first checksum
//! (→ 3), after the data (→ 4), after the ELF header (→ 5), after the second
//! checksum. `once` is not used: QEMU 7.2's blkdebug never fired a rule with
//! `once = "on"` in this setup; the states make each rule fire once anyway.

use std::fmt::Write as _;

/// The request kinds a rule fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Io {
    Write,
    Read,
}

/// One failing request: EIO on the request of kind `io` that covers byte
/// `offset` of the image, in `state` (None: any state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) io: Io,
    pub(crate) offset: u64,
    pub(crate) state: Option<u32>,
}

/// The state the agent's writes happen in, by the flushes before them.
pub(crate) const STATE_BUSY_MARKER: u32 = 1;
pub(crate) const STATE_FIRST_CSUM: u32 = 2;
pub(crate) const STATE_HEADER: u32 = 4;
pub(crate) const STATE_SECOND_CSUM: u32 = 5;
/// Flushes the rules count: more than the agent makes.
const STATES: u32 = 8;

impl Rule {
    /// The blkdebug config file.
    pub(crate) fn config(&self) -> String {
        let mut s = String::new();
        let event = match self.io {
            Io::Write => "write_aio",
            Io::Read => "read_aio",
        };
        let _ = writeln!(s, "[inject-error]\nevent = \"{event}\"");
        if let Some(st) = self.state {
            let _ = writeln!(s, "state = \"{st}\"");
        }
        // blkdebug's sectors are 512 bytes whatever the device's block size.
        let _ = writeln!(s, "sector = \"{}\"\nerrno = \"5\"", self.offset / 512);
        for st in 1..STATES {
            let _ = writeln!(
                s,
                "\n[set-state]\nevent = \"flush_to_disk\"\nstate = \"{st}\"\nnew_state = \"{}\"",
                st + 1
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_text() {
        let r = Rule {
            io: Io::Write,
            offset: 0x100000,
            state: Some(STATE_HEADER),
        };
        let c = r.config();
        assert!(
            c.starts_with(
                "[inject-error]\nevent = \"write_aio\"\nstate = \"4\"\nsector = \"2048\"\nerrno = \"5\"\n"
            ),
            "{c}"
        );
        assert_eq!(c.matches("[set-state]").count(), 7);
        assert!(c.contains("state = \"7\"\nnew_state = \"8\""), "{c}");
        let r = Rule {
            io: Io::Read,
            offset: 4096,
            state: None,
        };
        let c = r.config();
        assert!(c.contains("event = \"read_aio\"\nsector = \"8\""), "{c}");
        assert!(!c.starts_with("[inject-error]\nevent = \"read_aio\"\nstate"));
    }
}
