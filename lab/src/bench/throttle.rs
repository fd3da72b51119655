//! A write-bandwidth limit on the bench's disk, for the processes the bench
//! starts: a model of the dump's real target, a SCSI disk behind an FCP link,
//! which is slower than this machine's page cache.
//!
//! The limit is a block-I/O cgroup: `io.max wbps` under cgroup v2, or
//! `blkio.throttle.write_bps_device` under cgroup v1. Each limited command
//! runs through `sh`, which moves itself into the cgroup and then execs the
//! command, so every write it submits (its writes' writeback, its fsync) is
//! limited. Needs root. The cgroup is removed when the bench ends, by `Drop`
//! or, after a kill, by a watchdog shell.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::workdir::{left_by_dead_runs, spawn_cleanup_watchdog};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const NAME_PREFIX: &str = "zfcpdump-bench.";

/// A cgroup that limits writes to one block device.
#[derive(Debug)]
pub struct Throttle {
    dir: PathBuf,
    /// "major:minor" of the whole disk that holds the work dir.
    pub device: String,
    /// The limit.
    pub bytes_per_s: u64,
    /// "cgroup v2 io.max" or "cgroup v1 blkio".
    pub mechanism: &'static str,
}

impl Throttle {
    /// Limits writes to the disk under `work` to `bytes_per_s`, or says why
    /// it cannot.
    pub fn new(work: &Path, bytes_per_s: u64) -> Result<Throttle> {
        let device = whole_disk_of(work)?;
        let (parent, mechanism) = cgroup_parent()?;
        remove_stale(&parent);
        let dir = parent.join(format!("{NAME_PREFIX}{}", std::process::id()));
        let _ = fs::remove_dir(&dir);
        fs::create_dir(&dir).with_context(|| {
            format!(
                "cannot create the cgroup {} (the device limit needs root)",
                dir.display()
            )
        })?;
        let t = Throttle {
            dir,
            device,
            bytes_per_s,
            mechanism,
        };
        let (file, line) = if mechanism.starts_with("cgroup v2") {
            ("io.max", format!("{} wbps={bytes_per_s}", t.device))
        } else {
            (
                "blkio.throttle.write_bps_device",
                format!("{} {bytes_per_s}", t.device),
            )
        };
        let path = t.dir.join(file);
        fs::write(&path, &line)
            .with_context(|| format!("cannot write {line:?} to {}", path.display()))?;
        // After a kill, the cgroup goes when the bench has gone (it is empty
        // by then: every limited command has exited).
        spawn_cleanup_watchdog("rmdir", &t.dir);
        Ok(t)
    }

    /// `cmd` as a command that runs inside the cgroup.
    pub fn wrap(&self, cmd: &Command) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(r#"echo $$ > "$0" && exec "$@""#)
            .arg(self.dir.join("cgroup.procs"))
            .arg(cmd.get_program())
            .args(cmd.get_args());
        c
    }

    /// Bytes written to the limited disk by the cgroup's processes so far,
    /// from the controller's own statistics: proof that the commands ran
    /// inside the limit.
    pub fn written(&self) -> Result<u64> {
        let (file, v2) = if self.mechanism.starts_with("cgroup v2") {
            ("io.stat", true)
        } else {
            ("blkio.throttle.io_service_bytes", false)
        };
        let path = self.dir.join(file);
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(parse_written(&text, &self.device, v2))
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir(&self.dir) {
            eprintln!(
                "[bench] warning: cannot remove the cgroup {}: {e}",
                self.dir.display()
            );
        }
    }
}

/// The cgroup directory to create ours in, and which mechanism it offers:
/// the v2 root when its `io` controller is available (enabled for children
/// on the way), else the v1 `blkio` hierarchy.
fn cgroup_parent() -> Result<(PathBuf, &'static str)> {
    let root = Path::new(CGROUP_ROOT);
    let controllers = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "io") {
        let subtree = root.join("cgroup.subtree_control");
        let on = fs::read_to_string(&subtree).unwrap_or_default();
        if !on.split_whitespace().any(|c| c == "io") {
            fs::write(&subtree, "+io").with_context(|| {
                format!(
                    "cannot enable the io controller in {} (needs root)",
                    subtree.display()
                )
            })?;
        }
        return Ok((root.to_path_buf(), "cgroup v2 io.max"));
    }
    let v1 = root.join("blkio");
    if v1.join("blkio.throttle.write_bps_device").exists() {
        return Ok((v1, "cgroup v1 blkio"));
    }
    bail!(
        "no block-I/O cgroup controller: neither {CGROUP_ROOT}/cgroup.controllers lists \"io\" \
         nor does {} have blkio.throttle.write_bps_device (kernel without \
         CONFIG_BLK_DEV_THROTTLING, or a container without cgroup access)",
        v1.display()
    )
}

/// Written bytes of `device` in io.stat (v2: `254:0 rbytes=1 wbytes=2 ...`)
/// or blkio.throttle.io_service_bytes (v1: `254:0 Write 2`).
fn parse_written(text: &str, device: &str, v2: bool) -> u64 {
    let mut total = 0;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some(device) {
            continue;
        }
        let rest: Vec<&str> = words.collect();
        if v2 {
            total += rest
                .iter()
                .find_map(|w| w.strip_prefix("wbytes="))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        } else if let ["Write", n] = rest[..] {
            total += n.parse::<u64>().unwrap_or(0);
        }
    }
    total
}

/// "major:minor" of the disk (not the partition) holding `path`: the
/// throttle applies to whole disks.
fn whole_disk_of(path: &Path) -> Result<String> {
    let dev = fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .dev();
    let (major, minor) = split_dev(dev);
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if !sys.exists() {
        bail!(
            "{} is on device {major}:{minor}, which is not a block device (tmpfs, overlay or \
             btrfs?); use --dir on a disk-backed file system",
            path.display()
        );
    }
    if !sys.join("partition").exists() {
        return Ok(format!("{major}:{minor}"));
    }
    // A partition: its sysfs directory sits inside the disk's.
    let real = fs::canonicalize(&sys)?;
    let disk_dev = real
        .parent()
        .map(|p| p.join("dev"))
        .context("partition without a parent disk in sysfs")?;
    Ok(fs::read_to_string(&disk_dev)
        .with_context(|| format!("cannot read {}", disk_dev.display()))?
        .trim()
        .to_string())
}

/// glibc's major()/minor() for a Linux dev_t.
fn split_dev(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

/// Removes cgroups of earlier runs whose process is gone (empty by then).
fn remove_stale(parent: &Path) {
    for dir in left_by_dead_runs(parent, NAME_PREFIX) {
        let _ = fs::remove_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_dev_t_like_glibc() {
        // makedev(254, 0), makedev(8, 17), makedev(259, 1048577).
        assert_eq!(split_dev(0xfe00), (254, 0));
        assert_eq!(split_dev(0x811), (8, 17));
        let dev = (259u64 & 0xfff) << 8 | (1048577u64 & 0xff) | (1048577u64 & !0xff) << 12;
        assert_eq!(split_dev(dev), (259, 1048577));
    }

    #[test]
    fn wrapped_command_keeps_program_and_arguments() {
        let t = Throttle {
            dir: PathBuf::from("/sys/fs/cgroup/blkio/x"),
            device: "254:0".into(),
            bytes_per_s: 1,
            mechanism: "cgroup v1 blkio",
        };
        let mut inner = Command::new("dd");
        inner.args(["if=a b", "of=c"]);
        let w = t.wrap(&inner);
        let args: Vec<_> = w.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(w.get_program(), "sh");
        assert_eq!(
            args,
            [
                "-c",
                r#"echo $$ > "$0" && exec "$@""#,
                "/sys/fs/cgroup/blkio/x/cgroup.procs",
                "dd",
                "if=a b",
                "of=c"
            ]
        );
        // Not a real cgroup: nothing to remove, only a warning.
        std::mem::forget(t);
    }

    #[test]
    fn reads_written_bytes_of_both_cgroup_versions() {
        let v1 = "254:0 Read 4096\n254:0 Write 8388608\n254:0 Sync 0\n\
                  8:0 Write 7\nTotal 8392704\n";
        assert_eq!(parse_written(v1, "254:0", false), 8388608);
        let v2 = "8:0 rbytes=1 wbytes=7 rios=1 wios=1\n\
                  254:0 rbytes=4096 wbytes=8388608 rios=1 wios=2 dbytes=0 dios=0\n";
        assert_eq!(parse_written(v2, "254:0", true), 8388608);
        assert_eq!(parse_written("", "254:0", true), 0);
    }

    /// The real kernel: a wrapped dd's fsynced writes are counted by the
    /// cgroup, so the limit applies to them. Needs root (CI runs as root).
    #[test]
    fn wrapped_writes_are_counted_by_the_cgroup() {
        if !zfcpdump_builder::provision::is_root() {
            eprintln!("skipped: the device limit needs root");
            return;
        }
        // On the disk the bench uses (a tmpfs /tmp has no block device).
        let parent = zfcpdump_builder::util::cache_dir(&zfcpdump_builder::util::project_root());
        fs::create_dir_all(&parent).unwrap();
        let d = tempfile::tempdir_in(&parent).unwrap();
        let t = Throttle::new(d.path(), 1 << 30).expect("a block-I/O cgroup as root");
        assert_eq!(t.written().unwrap(), 0);
        let mut dd = Command::new("dd");
        dd.arg(format!("of={}", d.path().join("f").display()))
            .args([
                "if=/dev/zero",
                "bs=1M",
                "count=4",
                "conv=fsync",
                "status=none",
            ]);
        let st = t.wrap(&dd).status().unwrap();
        assert!(st.success());
        let n = t.written().unwrap();
        assert!(n >= 4 << 20, "the cgroup saw {n} bytes written");
    }

    #[test]
    fn a_file_system_without_a_block_device_is_named() {
        // /proc is on an anonymous device, never a block device.
        let e = whole_disk_of(Path::new("/proc")).unwrap_err().to_string();
        assert!(e.contains("not a block device"), "{e}");
    }
}
