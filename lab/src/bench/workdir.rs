//! The bench's work directory, removed however the bench ends, and the
//! watchdog that removes what a killed run leaves (also the throttle's cgroup).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

/// The work directory: deleted on drop (errors, panics), and by a watchdog
/// process if this one dies without unwinding (Ctrl-C, kill). Stale ones of
/// dead runs are removed at the next start.
pub(super) struct WorkDir {
    pub(super) path: PathBuf,
}

const WORK_PREFIX: &str = "zfcpdump-bench.";

impl WorkDir {
    pub(super) fn create(parent: &Path) -> Result<WorkDir> {
        remove_stale(parent);
        let path = parent.join(format!("{WORK_PREFIX}{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        spawn_cleanup_watchdog("rm -rf", &path);
        Ok(WorkDir { path })
    }
}

/// std has no signal handlers: a shell that ignores the terminal's signals
/// waits for this process to go, then runs `cleanup -- PATH`. After a normal
/// exit `Drop` has already cleaned up and the command finds nothing to do.
pub(super) fn spawn_cleanup_watchdog(cleanup: &str, path: &Path) {
    let script = format!(
        r#"trap "" INT TERM HUP QUIT
while kill -0 "$0" 2>/dev/null; do sleep 0.2; done
{cleanup} -- "$1" 2>/dev/null"#
    );
    let res = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(std::process::id().to_string())
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(e) = res {
        eprintln!(
            "[bench] warning: no cleanup watchdog for {} ({e}); Ctrl-C may leave it behind",
            path.display()
        );
    }
}

/// Entries of `parent` named `<prefix><pid>` whose process is gone: what
/// interrupted runs left.
pub(super) fn left_by_dead_runs(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            name.to_str()
                .and_then(|n| n.strip_prefix(prefix))
                .is_some_and(|pid| {
                    pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists()
                })
        })
        .map(|e| e.path())
        .collect()
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!(
                    "[bench] warning: cannot remove {}: {e}",
                    self.path.display()
                );
            }
        }
    }
}

/// Removes work dirs of runs whose process is gone.
fn remove_stale(parent: &Path) {
    for dir in left_by_dead_runs(parent, WORK_PREFIX) {
        eprintln!("[bench] removing {} of an interrupted run", dir.display());
        let _ = fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_work_dirs_of_dead_runs_go() {
        let d = tempfile::tempdir().unwrap();
        // Above Linux's pid_max (4194304): never a live process.
        let dead = d.path().join(format!("{WORK_PREFIX}4000000000"));
        let live = d
            .path()
            .join(format!("{WORK_PREFIX}{}", std::process::id()));
        let other = d.path().join("latest.txt");
        fs::create_dir_all(dead.join("root")).unwrap();
        fs::create_dir_all(&live).unwrap();
        fs::write(&other, "x").unwrap();
        remove_stale(d.path());
        assert!(!dead.exists());
        assert!(live.exists() && other.exists());
    }
}
