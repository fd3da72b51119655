//! On-disk formats of a zipl-prepared SCSI dump disk and of the s390x `/proc/vmcore`
//! ELF core, defined once and shared by the PID-1 dump agent and the host tools.
//!
//! Everything on the dump disk is big-endian (s390 native), so every field is read
//! and written with explicit byte order: the crate works the same on any host.
//! The only exception is the DOS partition table ([`mbr::DosPartition`]), which is
//! little-endian by its own definition.
//!
//! The crate has no dependencies and does no allocation that grows with the dump
//! size: the agent runs inside the few MiB of the hardware-saved memory (HSA).
//!
//! Modules:
//! - [`mbr`]: the zipl SCSI master boot record and the DOS partition table entries.
//! - [`superblock`]: zipl's `scsi_dump_sb`, which describes the dump area.
//! - [`csum`]: the superblock checksum (s390 CKSM semantics).
//! - [`busy`]: the "dump in progress" marker.
//! - [`elf`]: a bounded reader for the vmcore ELF (header, program headers, notes).
//! - [`plan`]: the order in which the agent copies the vmcore.
//! - [`filtered`]: the filtered layout writer: a dump without its zero pages
//!   and the pages [`filter`] excludes (opt-in, dump level above 0).
//! - [`filter`]: dump-time page filtering (makedumpfile's dump levels).
//! - [`config`]: the agent's `/etc/zfcpdump.conf`.
//! - [`disk_layout`]: what `zipl --dumpto` writes, for preparing disk images.
//! - [`modsig`]: the kernel's appended signature on a secure-IPL image.
//! - [`size`]: byte sizes as written in profiles and on command lines
//!   (`32MiB`), one grammar for every tool.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod busy;
mod bytes;
pub mod config;
pub mod csum;
pub mod disk_layout;
pub mod elf;
pub mod filter;
pub mod filtered;
pub mod mbr;
pub mod modsig;
pub mod plan;
pub mod size;
pub mod superblock;
#[cfg(test)]
mod testrand;

/// An error and its causes, joined by `: ` as anyhow's `{:#}` prints them.
/// The tests of every error type use it to show that a cause is named once
/// (an error either says its cause in its message or returns it from
/// `source()`, never both).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Size of a page on s390x, and of the ELF header block that the agent writes last.
pub const PAGE_SIZE: u64 = 4096;
