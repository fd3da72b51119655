//! The "dump in progress" marker.
//!
//! The dump tool writes it at the start of the dump area before copying and
//! overwrites it with the ELF header as the very last step, so a dump area that
//! starts with it holds an interrupted dump.

/// `zfcpdump busy\0`, as written by the reference zfcpdump tool.
pub const BUSY_MARKER: [u8; 14] = *b"zfcpdump busy\0";

/// Whether `area_start` (the first bytes of the dump area) begins with the marker.
pub fn is_busy(area_start: &[u8]) -> bool {
    area_start.starts_with(&BUSY_MARKER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker() {
        assert_eq!(BUSY_MARKER.len(), 14);
        assert_eq!(&BUSY_MARKER[..13], b"zfcpdump busy");
        assert_eq!(BUSY_MARKER[13], 0);
        let mut area = [0u8; 64];
        assert!(!is_busy(&area));
        area[..14].copy_from_slice(&BUSY_MARKER);
        assert!(is_busy(&area));
        assert!(!is_busy(&area[..13]));
        assert!(!is_busy(b"\x7fELF\x02\x02\x01"));
    }
}
