//! crash, the kernel dump analyser, under qemu-user.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use super::sysroot::{elf_closure, package_version};
use super::{qemu_user, require_qemu_user};
use crate::{run_with_timeout, sibling, tail};

/// Debian's s390x crash (the kernel dump analyser) under qemu-user.
pub struct Crash {
    root: PathBuf,
    /// The crash package version, e.g. `8.0.6-1`.
    pub version: String,
}

/// A crash session takes about 10 s under qemu-user; reading 64 MiB with
/// `rd -r` about 10 s more.
pub const CRASH_TIMEOUT: Duration = Duration::from_secs(300);

impl Crash {
    /// crash from a sysroot made by [`Sysroot::unpacked_root`](super::sysroot::Sysroot::unpacked_root), with every library it
    /// needs.
    pub fn new(root: &Path) -> Result<Crash> {
        ensure!(
            root.join("usr/bin/crash").is_file(),
            "{} has no usr/bin/crash: the sysroot predates crash in PACKAGES",
            root.display()
        );
        elf_closure(root, "usr/bin/crash")?;
        require_qemu_user("crash")?;
        let version = package_version(root, "crash")?;
        Ok(Crash {
            root: root.to_path_buf(),
            version,
        })
    }

    /// `crash -s VMLINUX DUMP -i CMDS` with `commands` (a `quit` is added):
    /// its output, or an error with the output's tail if crash refused the
    /// dump (crash says "vmlinux and DUMP do not match!" for a wrong
    /// vmlinux) or did not finish in time. The command file and the log go
    /// next to `log`.
    pub fn session(
        &self,
        vmlinux: &Path,
        dump: &Path,
        commands: &[String],
        log: &Path,
    ) -> Result<String> {
        let cmds = sibling(log, "commands");
        let mut text = commands.join("\n");
        text.push_str("\nquit\n");
        fs::write(&cmds, text).with_context(|| format!("cannot write {}", cmds.display()))?;
        let mut c = qemu_user(&self.root, "usr/bin/crash");
        c.arg("-s").arg(vmlinux).arg(dump).arg("-i").arg(&cmds);
        let status = run_with_timeout(&mut c, log, CRASH_TIMEOUT)?;
        let out = fs::read_to_string(log).unwrap_or_default();
        match status {
            Some(s) if s.success() => Ok(out),
            Some(s) => bail!(
                "crash {} {} failed ({s}):\n{}",
                vmlinux.display(),
                dump.display(),
                tail(&out, 15)
            ),
            None => bail!(
                "crash {} {} did not finish within {} s:\n{}",
                vmlinux.display(),
                dump.display(),
                CRASH_TIMEOUT.as_secs(),
                tail(&out, 15)
            ),
        }
    }
}
