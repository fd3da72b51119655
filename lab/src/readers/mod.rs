//! The reference readers: the real s390-tools (Debian 12's s390x build, zipl
//! and zgetdump 2.16) and crash on an x86_64 host, as the reference that our
//! own formats are checked against.
//!
//! - [`sysroot`]: downloads the s390x packages once with `apt-get download`
//!   and unpacks them with `dpkg -x` into a sysroot in the cache (s390-tools
//!   cannot be installed on the host: it is s390x-only and conflicts with the
//!   host's perl).
//! - [`zgetdump::Zgetdump`] and [`crash::Crash`]: run zgetdump and crash from
//!   that sysroot under `qemu-s390x-static`; [`makedumpfile::Makedumpfile`]
//!   likewise, as the reference for page exclusion.
//! - zipl needs a real s390x block device, so it runs in a helper guest:
//!   [`crate::zipl`].

pub mod apt;
pub mod crash;
pub mod makedumpfile;
pub mod sysroot;
pub mod zgetdump;

use std::path::Path;
use std::process::Command;

use anyhow::{Result, ensure};

use self::crash::Crash;
use self::zgetdump::Zgetdump;
use zfcpdump_builder::util::version_at_least;

use zfcpdump_builder::util::have_command;

/// `qemu-s390x-static -L ROOT ROOT/BIN`: an s390x binary of the sysroot,
/// with its libraries from there too.
fn qemu_user(root: &Path, bin: &str) -> Command {
    let mut c = Command::new("qemu-s390x-static");
    c.arg("-L").arg(root).arg(root.join(bin));
    c
}

fn require_qemu_user(what: &str) -> Result<()> {
    ensure!(
        have_command("qemu-s390x-static"),
        "qemu-s390x-static not found: install Debian's qemu-user-static to run s390x {what} on \
         this host"
    );
    Ok(())
}

/// The readers that check the dumps of one kernel.
pub struct Readers {
    /// zgetdump for byte-exact dumps.
    pub zgetdump: Zgetdump,
    /// zgetdump for elided dumps: one that reads `p_filesz < p_memsz` tails
    /// as zeros (2.33.0 and later).
    pub zgetdump_tails: Zgetdump,
    /// crash with the kernel's vmlinux.
    pub crash: Crash,
    /// The package versions that did the checking, for reports.
    pub versions: Vec<String>,
}

impl Readers {
    /// The readers that match a kernel release: Debian 12's (zgetdump 2.16,
    /// crash 8.0.2) for kernels before 6.10, which they predate the V!=R
    /// layout of (crash 8.0.2 cannot read a 6.12 dump); the current ones
    /// ([`sysroot::CURRENT`]) for 6.10 and later, and for elided dumps of
    /// any kernel, which zgetdump 2.16 misreads.
    pub fn for_kernel(release: &str, cache: &Path, offline: bool) -> Result<Readers> {
        let current = sysroot::CURRENT.unpacked_root(cache, offline)?;
        let mut roots = vec![(sysroot::CURRENT.label, current.clone())];
        if !version_at_least(release, (6, 10)) {
            let old = sysroot::DEBIAN_12.unpacked_root(cache, offline)?;
            roots.insert(0, (sysroot::DEBIAN_12.label, old));
        }
        let primary = roots[0].1.clone();
        let mut versions = Vec::new();
        for (label, root) in &roots {
            let text = sysroot::versions(root)?;
            let tools: Vec<&str> = text
                .lines()
                .filter(|l| {
                    ["s390-tools ", "crash ", "makedumpfile ", "libc6 "]
                        .iter()
                        .any(|p| l.starts_with(p))
                })
                .collect();
            versions.push(format!("{label}: {}", tools.join(", ")));
        }
        let zgetdump_tails = Zgetdump::new(&current)?;
        ensure!(
            zgetdump_tails.reads_tails(),
            "the {} sysroot's zgetdump {} cannot read elided dumps (needs 2.33.0 or later)",
            sysroot::CURRENT.label,
            zgetdump_tails.version
        );
        Ok(Readers {
            zgetdump: Zgetdump::new(&primary)?,
            zgetdump_tails,
            crash: Crash::new(&primary)?,
            versions,
        })
    }
}
