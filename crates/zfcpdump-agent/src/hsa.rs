//! The HSA: its size (zcore's debugfs file, or the test-only simulated size),
//! its release, and in simulated mode a vmcore source that fails the way
//! /proc/vmcore fails once the real HSA is gone.
//!
//! After `0` is written to /sys/kernel/debug/zcore/hsa, the kernel's
//! memcpy_hsa_iter() copies nothing, so read_from_oldmem() in
//! fs/proc/vmcore.c fails the whole read() with EFAULT for any byte whose
//! physical address is below the HSA size (checked in 6.1 and 6.12). A
//! simulated HSA that only logged its release would let an agent that
//! reads HSA-backed memory too late pass every test; [`SimulatedHsaSource`]
//! makes that order mistake fail as it would on the machine.

use std::cell::Cell;
use std::io;
use std::ops::Range;

use zfcpdump_format::elf::{ProgramHeader, ReadAt};

use crate::ipl::{parse_hex, read_attr, under, write_attr};
use crate::{Env, ZCORE_HSA, cmdline, error, info};

/// What the kernel's read() of /proc/vmcore returns for HSA memory after
/// the release.
pub const EFAULT: i32 = 14;

/// The HSA of this dump.
#[derive(Debug)]
pub struct Hsa {
    /// Bytes of low memory the HSA holds; 0 for none.
    pub size: u64,
    /// The test-only simulated size (`zfcpdump.hsa_size=`, `--hsa-size`).
    pub simulated: bool,
    released: Cell<bool>,
}

impl Hsa {
    /// The simulated size if one is given, else zcore's, else none.
    pub fn detect(env: &Env, cmd: &cmdline::Cmdline) -> Hsa {
        let log = &env.log;
        let hsa = |size, simulated| Hsa {
            size,
            simulated,
            released: Cell::new(false),
        };
        if let Some(n) = env.hsa_size.or(cmd.hsa_size) {
            info!(
                log,
                "simulated HSA size {n:#x} (test override): HSA-backed ranges first; after the \
                 release their reads fail"
            );
            return hsa(n, true);
        }
        let path = under(&env.root, ZCORE_HSA);
        match read_attr(&path) {
            Ok(text) => match parse_hex(&text) {
                Some(n) => {
                    info!(log, "HSA size {n:#x} (from {ZCORE_HSA})");
                    hsa(n, false)
                }
                None => {
                    error!(
                        log,
                        "warning: {ZCORE_HSA} reads '{text}', not a hex number: assuming no HSA"
                    );
                    hsa(0, false)
                }
            },
            Err(e) => {
                info!(log, "no HSA ({ZCORE_HSA}: {e})");
                hsa(0, false)
            }
        }
    }

    /// Releases the HSA: writes `0` to zcore's file, or in simulated mode
    /// makes [`SimulatedHsaSource`] fail HSA-backed reads from now on.
    pub fn release(&self, env: &Env) {
        let log = &env.log;
        self.released.set(true);
        if self.simulated {
            info!(
                log,
                "HSA release (simulated HSA of {:#x} bytes: its reads fail from now on)", self.size
            );
            return;
        }
        let path = under(&env.root, ZCORE_HSA);
        if !path.exists() {
            info!(log, "HSA release: no {ZCORE_HSA}, nothing to release");
            return;
        }
        match write_attr(&path, "0") {
            Ok(()) => info!(log, "HSA released (wrote 0 to {ZCORE_HSA})"),
            Err(e) => error!(
                log,
                "warning: releasing the HSA (writing 0 to {ZCORE_HSA}) failed: {e}"
            ),
        }
    }

    /// `src` as the agent must read it: in simulated mode, failing reads of
    /// HSA-backed memory after [`Hsa::release`]; otherwise `src` itself.
    pub fn source<'a, S: ReadAt>(
        &'a self,
        src: S,
        phdrs: &[ProgramHeader],
    ) -> SimulatedHsaSource<'a, S> {
        let backed = if self.simulated {
            hsa_file_ranges(phdrs, self.size)
        } else {
            Vec::new()
        };
        SimulatedHsaSource {
            inner: src,
            backed,
            released: &self.released,
        }
    }
}

/// The file ranges of the PT_LOADs whose memory lies below `hsa_size`
/// (physical addresses, as the kernel decides it), computed from the program
/// headers alone and not from the copy plan, so that a plan that misses one
/// is caught.
pub fn hsa_file_ranges(phdrs: &[ProgramHeader], hsa_size: u64) -> Vec<Range<u64>> {
    phdrs
        .iter()
        .filter(|p| p.is_load() && p.p_filesz > 0 && p.p_paddr < hsa_size)
        .map(|p| p.p_offset..p.p_offset + p.p_filesz.min(hsa_size - p.p_paddr))
        .collect()
}

/// A vmcore source whose HSA-backed file ranges fail with EFAULT once the
/// HSA is released (empty `backed`: a plain pass-through).
pub struct SimulatedHsaSource<'a, S> {
    inner: S,
    backed: Vec<Range<u64>>,
    released: &'a Cell<bool>,
}

impl<S: ReadAt> ReadAt for SimulatedHsaSource<'_, S> {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        if self.released.get() && self.backed.iter().any(|r| r.start < end && offset < r.end) {
            return Err(io::Error::from_raw_os_error(EFAULT));
        }
        self.inner.read_exact_at(buf, offset)
    }
}
