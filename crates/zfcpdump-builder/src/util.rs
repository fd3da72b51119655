//! Small helpers shared by the stages: paths, hashing, atomic writes.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// The workspace root: the nearest ancestor of this crate whose
/// Cargo.toml declares the `[workspace]`. Found by looking, not by a fixed
/// depth, so that crates can move without breaking every path.
pub fn project_root() -> PathBuf {
    workspace_root_of(Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("the builder crate lives inside the project's workspace")
}

fn workspace_root_of(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| {
            fs::read_to_string(d.join("Cargo.toml"))
                .is_ok_and(|m| m.lines().any(|l| l.trim() == "[workspace]"))
        })
        .map(Path::to_path_buf)
}

/// A pipe as (read end, write end), both close-on-exec, for a child's
/// merged stdout and stderr (`Stdio::from` the write end). What
/// `std::io::pipe` does, which needs Rust 1.87; the MSRV is 1.85.
pub fn pipe() -> std::io::Result<(fs::File, fs::File)> {
    let mut fds: [libc::c_int; 2] = [-1; 2];
    // SAFETY: `fds` is an array of two c_ints, where pipe2 writes the two
    // descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open, and nothing
    // else owns them: each File closes its own.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((reader.into(), writer.into()))
}

/// Where stages keep their outputs and cache records. Shared by `dist` and
/// the tests, so that each distinct kernel configuration compiles once.
pub fn cache_dir(root: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("zfcpdump")
}

pub fn sha256_bytes(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// sha256 of a large file, remembered by (path, size, mtime, inode) so that a
/// no-op build does not read the kernel tarball again.
pub fn sha256_file_cached(cache: &Path, path: &Path) -> Result<String> {
    let meta = fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    let id = format!(
        "{}\0{}\0{}\0{}\0{}",
        path.display(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino()
    );
    let memo = cache.join("sha256").join(sha256_bytes(id.as_bytes()));
    if let Some(s) = fs::read_to_string(&memo).ok().filter(|s| s.len() == 64) {
        return Ok(s);
    }
    let sum = sha256_file(path)?;
    write_atomic(&memo, sum.as_bytes())?;
    Ok(sum)
}

/// Writes a file so that readers see the old content or the new, never a
/// partial one: temp file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().context("path has no parent")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = tmp_name(path);
    let res = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.with_context(|| format!("cannot write {}", path.display()))
}

/// A sibling name for a temporary file; unique per process.
pub fn tmp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Set by `--verbose`, or `ZFCPDUMP_VERBOSE=1` in the environment.
static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The environment variable of verbose mode, for pipelines.
pub const VERBOSE_VAR: &str = "ZFCPDUMP_VERBOSE";

/// Turns verbose mode on for this process (`--verbose`).
pub fn set_verbose() {
    VERBOSE.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether make's and cargo's output go to stderr as they come, for build
/// farms that keep only the build's own log.
pub fn verbose() -> bool {
    VERBOSE.load(std::sync::atomic::Ordering::Relaxed)
        || std::env::var(VERBOSE_VAR).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A profile's files as `plan` shows them: the profile, then its parents.
pub fn join_paths(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(" <- ")
}

/// Human-readable duration for progress lines and reports.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Whether a program is on PATH.
pub fn have_command(name: &str) -> bool {
    find_command(name).is_some()
}

pub fn find_command(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Whether a dotted version (`6.12.117`, `2.35.0-1`, `7.0.0-rc1`) is at
/// least `major.minor`; an unparsable one is not.
pub fn version_at_least(version: &str, min: (u32, u32)) -> bool {
    let mut it = version.split(['.', '-']).map(|n| n.parse::<u32>());
    matches!((it.next(), it.next()), (Some(Ok(a)), Some(Ok(b))) if (a, b) >= min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert!(!version_at_least("6.1.192", (6, 10)));
        assert!(version_at_least("6.12.117", (6, 10)));
        assert!(version_at_least("7.0.0-rc1", (6, 10)));
        assert!(!version_at_least("2.16.0-2", (2, 33)));
        assert!(version_at_least("2.33.0", (2, 33)));
        assert!(version_at_least("2.35.0-1", (2, 33)));
        assert!(!version_at_least("junk", (2, 33)));
        assert!(!version_at_least("", (6, 10)));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/out.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn cached_sha_tracks_content_changes() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, b"abc").unwrap();
        let cache = d.path().join("cache");
        let a = sha256_file_cached(&cache, &f).unwrap();
        assert_eq!(
            a,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_file_cached(&cache, &f).unwrap(), a);
        std::thread::sleep(Duration::from_millis(10));
        fs::write(&f, b"abcd").unwrap();
        assert_ne!(sha256_file_cached(&cache, &f).unwrap(), a);
    }
}
