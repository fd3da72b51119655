//! Stage locks: one exclusive `flock` per stage cache directory.
//!
//! CI release pipelines start `cargo xtask dist` jobs in parallel on one
//! target directory; without a lock two of them compiled into the same
//! kernel `O=` directory at once and corrupted each other's objects. A stage
//! takes `<dir>/.lock` before it touches `<dir>` and holds it until the
//! [`StageLock`] is dropped.
//!
//! `flock` is tied to the open file, so the kernel releases it when the
//! process dies: a killed build never leaves a stale lock, and nothing ever
//! has to clean one up. The `pid <pid>: <command line>` written into the file
//! is only informational, for the message a waiting build prints; it is
//! never used to decide who holds the lock.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::util;

/// What to do when another process holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Queue behind the holder.
    Block,
    /// Fail at once, naming the holder.
    NoWait,
}

/// An exclusive lock on `<dir>/.lock`, released when dropped.
#[derive(Debug)]
pub struct StageLock {
    // Held only for its lock: closing the file releases it.
    #[allow(dead_code)]
    file: File,
    path: PathBuf,
}

impl StageLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the lock of the stage `what` (e.g. "kernel") on `dir`, creating
/// `dir` and its `.lock` file if needed.
pub fn acquire(dir: &Path, what: &str, wait: Wait) -> Result<StageLock> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(".lock");
    // Not truncated on open: the holder's line must survive for others to read.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => {}
        Err(e) if e.kind() != ErrorKind::WouldBlock => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
        Err(_would_block) => {
            let holder = holder(&mut file);
            if wait == Wait::NoWait {
                bail!(
                    "the {what} stage's cache {} is locked by {holder}; another build is \
                     using it. Wait for it, or run without --no-wait to queue behind it",
                    dir.display()
                );
            }
            eprintln!(
                "[{what}] waiting for {}, held by {holder} ...",
                path.display()
            );
            let start = Instant::now();
            flock(&file, libc::LOCK_EX).with_context(|| format!("locking {}", path.display()))?;
            eprintln!(
                "[{what}] got the lock after {}",
                util::fmt_duration(start.elapsed())
            );
        }
    }
    write_holder(&mut file).with_context(|| format!("writing {}", path.display()))?;
    Ok(StageLock { file, path })
}

/// `flock(2)` with `op` on `file`: what `File::lock` (`LOCK_EX`) and
/// `File::try_lock` (`LOCK_EX | LOCK_NB`, failing with `WouldBlock` when
/// another open file holds the lock) do, which need Rust 1.89; the MSRV is
/// 1.85.
fn flock(file: &File, op: libc::c_int) -> std::io::Result<()> {
    // SAFETY: flock takes any descriptor and `file` keeps this one open
    // for the call.
    if unsafe { libc::flock(file.as_raw_fd(), op) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The holder as "pid N (command line)"; the file is empty while a holder
/// is between taking the lock and writing its line.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_string(&mut text));
    let line = text.lines().next().unwrap_or("").trim();
    match line
        .strip_prefix("pid ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((pid, cmd)) => format!("pid {pid} ({cmd})"),
        None if line.is_empty() => "another process".to_string(),
        None => line.to_string(),
    }
}

fn write_holder(file: &mut File) -> std::io::Result<()> {
    const MAX: usize = 200;
    let mut cmd = std::env::args()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('\n', " ");
    if cmd.len() > MAX {
        let mut end = MAX;
        while !cmd.is_char_boundary(end) {
            end -= 1;
        }
        cmd.truncate(end);
        cmd.push_str("...");
    }
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "pid {}: {cmd}", std::process::id())?;
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn second_acquire_conflicts_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("kernel");
        let held = acquire(&dir, "kernel", Wait::NoWait).unwrap();
        assert_eq!(held.path(), dir.join(".lock"));
        let pid = std::process::id().to_string();
        assert!(
            fs::read_to_string(held.path())
                .unwrap()
                .starts_with(&format!("pid {pid}: "))
        );

        // flock locks belong to the open file description, so a second open
        // in this same process conflicts like another process would.
        let err = acquire(&dir, "kernel", Wait::NoWait)
            .unwrap_err()
            .to_string();
        assert!(err.contains("locked by") && err.contains(&pid), "{err}");
        assert!(err.contains("the kernel stage's cache"), "{err}");

        drop(held);
        acquire(&dir, "kernel", Wait::NoWait).unwrap();
    }

    #[test]
    fn block_waits_for_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let held = acquire(&dir, "kernel", Wait::Block).unwrap();
        let waiter = {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let lock = acquire(&dir, "kernel", Wait::Block).unwrap();
                (Instant::now(), lock)
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !waiter.is_finished(),
            "the waiter got the lock while it was held"
        );
        let released = Instant::now();
        drop(held);
        let (got, _lock) = waiter.join().unwrap();
        assert!(got >= released, "the waiter got the lock before the drop");
    }
}
