//! The agent's one error type: which step failed, what it was doing, and the
//! operating system's error in words.

use std::fmt;
use std::io;

/// The steps of a dump, in the order they run. Named in every error so the
/// console line alone says where a dump stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpStep {
    /// Mounting proc, sysfs, devtmpfs and debugfs (PID 1 only).
    Mount,
    /// Reading /proc/cmdline.
    Cmdline,
    /// Reading the config file.
    Config,
    /// Bringing the IPL zfcp device online and finding its disk.
    IplDevice,
    /// Opening the dump disk.
    Disk,
    /// Reading and validating the MBR boot_info, superblock and checksum.
    Metadata,
    /// Finding the partition the superblock describes.
    Partition,
    /// Opening and parsing the vmcore.
    Vmcore,
    /// Checking that the vmcore fits the dump area.
    SizeCheck,
    /// Writing the busy marker.
    BusyMarker,
    /// Copying the vmcore.
    Copy,
    /// Updating the superblock checksum at the end.
    Checksum,
}

impl DumpStep {
    /// The name printed in `Dump failed: <step>: ...`.
    pub fn name(self) -> &'static str {
        match self {
            DumpStep::Mount => "mount",
            DumpStep::Cmdline => "cmdline",
            DumpStep::Config => "config",
            DumpStep::IplDevice => "IPL device",
            DumpStep::Disk => "dump disk",
            DumpStep::Metadata => "dump metadata",
            DumpStep::Partition => "partition",
            DumpStep::Vmcore => "vmcore",
            DumpStep::SizeCheck => "size check",
            DumpStep::BusyMarker => "busy marker",
            DumpStep::Copy => "copy",
            DumpStep::Checksum => "checksum",
        }
    }
}

impl fmt::Display for DumpStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed dump: `<step>: <what> (<errno in words>)`.
#[derive(Debug)]
pub struct DumpError {
    /// The step that failed.
    pub step: DumpStep,
    /// What was being done, or what is wrong.
    pub what: String,
    /// The OS error, if one caused it.
    pub io: Option<io::Error>,
}

impl DumpError {
    /// An error without an OS error behind it.
    pub fn new(step: DumpStep, what: impl Into<String>) -> DumpError {
        DumpError {
            step,
            what: what.into(),
            io: None,
        }
    }

    /// An error caused by an OS error.
    pub fn io(step: DumpStep, what: impl Into<String>, err: io::Error) -> DumpError {
        DumpError {
            step,
            what: what.into(),
            io: Some(err),
        }
    }

    /// The raw errno, if an OS error caused this.
    pub fn errno(&self) -> Option<i32> {
        self.io.as_ref().and_then(io::Error::raw_os_error)
    }
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.what)?;
        if let Some(e) = &self.io {
            // io::Error's Display gives the errno in words plus its number,
            // e.g. "No space left on device (os error 28)".
            write!(f, " ({e})")?;
        }
        Ok(())
    }
}

/// The text includes the OS error (the console line says it all), which is
/// therefore not also the `source()`: a printed error chain names it once.
impl std::error::Error for DumpError {}

/// Attaches a step and a description to an `io::Result`.
pub(crate) trait Context<T> {
    fn ctx(self, step: DumpStep, what: impl FnOnce() -> String) -> Result<T, DumpError>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, step: DumpStep, what: impl FnOnce() -> String) -> Result<T, DumpError> {
        self.map_err(|e| DumpError::io(step, what(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use zfcpdump_format::error_chain as chain;

    #[test]
    fn the_errno_is_named_once_in_a_chain() {
        let e = DumpError::io(
            DumpStep::Disk,
            "opening /dev/sda for writing",
            io::Error::from_raw_os_error(libc::EACCES),
        );
        let printed = chain(&e);
        assert_eq!(printed.matches("Permission denied").count(), 1, "{printed}");
        // The console line is unchanged: the errno in words is in the text.
        assert_eq!(
            e.to_string(),
            "dump disk: opening /dev/sda for writing (Permission denied (os error 13))"
        );
    }

    #[test]
    fn display_names_step_and_errno_in_words() {
        let e = DumpError::io(
            DumpStep::Copy,
            "writing 1048576 bytes at disk offset 0x100000",
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert_eq!(
            e.to_string(),
            "copy: writing 1048576 bytes at disk offset 0x100000 (No space left on device (os error 28))"
        );
        assert_eq!(e.errno(), Some(libc::ENOSPC));
        let e = DumpError::new(DumpStep::SizeCheck, "Disk too small");
        assert_eq!(e.to_string(), "size check: Disk too small");
        assert_eq!(e.errno(), None);
    }
}
