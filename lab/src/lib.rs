//! The lab: the verification harness around the builder's product. QEMU
//! guests, the real s390-tools as reference readers, zipl disks, vmcore
//! sources and the checks of a dump, and the tasks on top of them: `boot`
//! (smoke test), `e2e`, `crashlab` (real crashed kernels), `faults`,
//! `cachelab` (the compile cache on the real kernel compile),
//! `fuzz`, `bench`, and `test` (`ci`, everything CI runs).
//!
//! The lab depends on the builder (`zfcpdump-builder`) to build what it
//! judges; never the other way round.

pub mod bench;
pub mod boot;
pub mod cachelab;
mod checks;
pub mod ci;
pub mod crashlab;
pub mod e2e;
pub mod faults;
pub mod fetch;
pub mod fuzz;
pub mod guest;
mod kit;
pub mod readers;
pub mod slow_tier;
mod sources;
pub mod zipl;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// The options that `e2e` and `crashlab` share.
#[derive(clap::Args, Clone, Debug)]
pub struct LabArgs {
    /// Fail listing missing host packages instead of installing them
    #[arg(long)]
    pub no_provision: bool,
    /// Use only what `cargo xtask fetch` brought into the local caches
    #[arg(long)]
    pub offline: bool,
    /// Keep the work directory (disks, dumps, console logs) after success
    #[arg(long)]
    pub keep: bool,
}

/// Progress of the real s390-tools' work (the sysroot, the zipl guest).
fn progress(msg: impl AsRef<str>) {
    eprintln!("[s390-tools] {}", msg.as_ref());
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// `disk.img` -> `disk.img.<suffix>`.
fn sibling(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Runs `cmd` with stdout and stderr into `log`; `None` if it was killed
/// after `timeout`.
fn run_with_timeout(
    cmd: &mut Command,
    log: &Path,
    timeout: Duration,
) -> Result<Option<std::process::ExitStatus>> {
    let f = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone()?)
        .stderr(f)
        .spawn()
        .with_context(|| format!("cannot start {}", cmd.get_program().to_string_lossy()))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
