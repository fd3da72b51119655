//! The reference readers: the real s390-tools (Debian 12's s390x build, zipl
//! and zgetdump 2.16) and crash on an x86_64 host, as the reference that our
//! own formats are checked against.
//!
//! - [`sysroot`]: downloads the s390x packages once with `apt-get download`
//!   and unpacks them with `dpkg -x` into a sysroot in the cache (s390-tools
//!   cannot be installed on the host: it is s390x-only and conflicts with the
//!   host's perl).
//! - [`zgetdump::Zgetdump`] and [`crash::Crash`]: run zgetdump and crash from
//!   that sysroot under `qemu-s390x-static`.
//! - zipl needs a real s390x block device, so it runs in a helper guest:
//!   [`crate::lab::zipl`].

pub mod apt;
pub mod crash;
pub mod sysroot;
pub mod zgetdump;

use std::path::Path;
use std::process::Command;

use anyhow::{Result, ensure};

use super::have_command;

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
