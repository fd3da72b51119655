//! Publishing: `dist/<profile>/` replaced as a whole, in one step.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result};

use super::manifest::read_manifest;
use super::{Built, MANIFEST, Manifest};
use crate::util;

/// Whether `dir` may be replaced by an output: absent, empty, or a previous
/// output of ours (our manifest, and only the files it lists besides it).
/// Anything else is refused whole: publishing replaces the directory, and
/// `--out-dir "$WORKSPACE"` must not wipe a workspace.
pub fn check_out_dir(dir: &Path) -> Result<String> {
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok("a new directory".into()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            anyhow::bail!("{} is a file, not a directory", dir.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        Ok(rd) => rd
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<Vec<String>>>()?,
    };
    if entries.is_empty() {
        return Ok("an empty directory".into());
    }
    let refuse = |why: String| {
        anyhow::anyhow!(
            "{} is not empty and {why}: an output directory is replaced whole, so it must be \
             new, empty, or an earlier output of dist (choose another --out-dir; nothing was \
             touched)",
            dir.display()
        )
    };
    let manifest = read_manifest(&dir.join(MANIFEST))
        .map_err(|_| refuse(format!("holds no {MANIFEST} of a dist build")))?;
    let ours: Vec<&str> = manifest
        .artifacts
        .iter()
        .map(|a| a.name.as_str())
        .chain([MANIFEST])
        .collect();
    let mut foreign: Vec<&String> = entries
        .iter()
        .filter(|e| !ours.contains(&e.as_str()))
        .collect();
    foreign.sort();
    if !foreign.is_empty() {
        let shown: Vec<&str> = foreign.iter().take(5).map(|s| s.as_str()).collect();
        return Err(refuse(format!(
            "holds {} entr{} no dist build wrote ({}{})",
            foreign.len(),
            if foreign.len() == 1 { "y" } else { "ies" },
            shown.join(", "),
            if foreign.len() > 5 { ", ..." } else { "" }
        )));
    }
    Ok("an earlier output of dist, replaced".into())
}

/// Writes the three files into a fresh sibling directory, then swaps it in
/// (`swap_in`): readers see the old complete set or the new one, never
/// no directory, and a failed or interrupted build leaves no partial file
/// under a final name.
pub fn publish(dir: &Path, b: &Built, manifest: &Manifest) -> Result<()> {
    // Again here, not only in the preflight: the directory may have
    // changed during the build.
    check_out_dir(dir)?;
    publish_files(dir, &b.files(), &serde_json::to_vec_pretty(manifest)?)
}

/// [`publish`] for any files: each copied under its name, plus the manifest.
fn publish_files(dir: &Path, files: &[(&str, &Path)], manifest: &[u8]) -> Result<()> {
    let parent = dir.parent().context("dist dir has no parent")?;
    fs::create_dir_all(parent)?;
    let staging = util::tmp_name(dir);
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)?;
    let res = (|| -> Result<()> {
        for (name, from) in files {
            // Written, not copied: the mode is ours (0644), not the source's.
            fs::write(
                staging.join(name),
                fs::read(from).with_context(|| format!("cannot read {}", from.display()))?,
            )?;
        }
        fs::write(staging.join(MANIFEST), manifest)?;
        for f in fs::read_dir(&staging)? {
            fs::File::open(f?.path())?.sync_all()?;
        }
        Ok(())
    })();
    if let Err(e) = res {
        let _ = fs::remove_dir_all(&staging);
        return Err(e.context(format!("cannot write artifacts to {}", staging.display())));
    }
    swap_in(&staging, dir).with_context(|| format!("cannot put {} in place", staging.display()))
}

/// Puts the directory `staged` at `dir`, a sibling, replacing the one
/// there: the two are exchanged in one step, so `dir` is never absent, and
/// the old set, now at `staged`, is removed.
fn swap_in(staged: &Path, dir: &Path) -> io::Result<()> {
    match exchange(staged, dir) {
        Ok(()) => {
            let _ = fs::remove_dir_all(staged);
            Ok(())
        }
        // Nothing to replace yet.
        Err(e) if e.kind() == io::ErrorKind::NotFound && !dir.exists() => fs::rename(staged, dir),
        // The filesystem (or the kernel, before 3.15) cannot exchange: two
        // renames, between which `dir` is briefly absent. A reader then
        // finds no directory, never a partial or mixed set.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
            let old = dir.with_file_name(format!(
                ".{}.old-{}",
                dir.file_name().unwrap_or_default().to_string_lossy(),
                std::process::id()
            ));
            if dir.exists() {
                fs::rename(dir, &old)?;
            }
            fs::rename(staged, dir)?;
            let _ = fs::remove_dir_all(&old);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// `renameat2(a, b, RENAME_EXCHANGE)`: `a` and `b` swap names atomically.
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both paths are NUL-terminated strings that outlive the call,
    // which only reads them; AT_FDCWD makes relative paths relative to the
    // current directory, as std's rename does.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::{IMAGE, RD};

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn publish_replaces_the_whole_set_or_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (img, rd) = (d.path().join("img"), d.path().join("rd"));
        fs::write(&img, b"image 1").unwrap();
        fs::write(&rd, b"rd 1").unwrap();
        let out = d.path().join("dist/p");
        publish_files(&out, &[(IMAGE, &img), (RD, &rd)], b"{1}").unwrap();
        assert_eq!(names(&out), [MANIFEST, IMAGE, RD]);

        // A failure while staging (the rd vanished) leaves the old set whole
        // and no staging directory behind.
        fs::write(&img, b"image 2").unwrap();
        fs::remove_file(&rd).unwrap();
        let e = publish_files(&out, &[(IMAGE, &img), (RD, &rd)], b"{2}").unwrap_err();
        assert!(format!("{e:#}").contains("cannot read"), "{e:#}");
        assert_eq!(fs::read(out.join(IMAGE)).unwrap(), b"image 1");
        assert_eq!(fs::read(out.join(MANIFEST)).unwrap(), b"{1}");
        assert_eq!(names(&d.path().join("dist")), ["p"]);

        // A stale file from an older set does not survive a new one.
        fs::write(out.join("stale"), b"x").unwrap();
        fs::write(&rd, b"rd 2").unwrap();
        publish_files(&out, &[(IMAGE, &img), (RD, &rd)], b"{2}").unwrap();
        assert_eq!(names(&out), [MANIFEST, IMAGE, RD]);
        assert_eq!(fs::read(out.join(RD)).unwrap(), b"rd 2");
        assert_eq!(names(&d.path().join("dist")), ["p"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(out.join(IMAGE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0, "artifacts are not executable");
    }

    #[test]
    fn exchange_swaps_two_directories() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        for (dir, f) in [(&a, "from-a"), (&b, "from-b")] {
            fs::create_dir(dir).unwrap();
            fs::write(dir.join(f), b"x").unwrap();
        }
        exchange(&a, &b).unwrap();
        assert_eq!(names(&a), ["from-b"]);
        assert_eq!(names(&b), ["from-a"]);
        // Nothing to exchange with: an error, and swap_in renames instead.
        let c = d.path().join("c");
        assert_eq!(
            exchange(&a, &c).unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        swap_in(&a, &c).unwrap();
        assert_eq!(names(&c), ["from-b"]);
        assert!(!a.exists());
    }

    /// A reader that looks at dist/<profile>/ while it is republished over
    /// and over always finds it: with two renames it would not (between
    /// them the path is absent, which this test catches).
    #[test]
    fn the_target_is_never_absent_while_it_is_replaced() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("img");
        fs::write(&img, b"image").unwrap();
        let out = d.path().join("dist/p");
        publish_files(&out, &[(IMAGE, &img)], b"{0}").unwrap();
        let stop = AtomicBool::new(false);
        let (looks, absent) = (AtomicU64::new(0), AtomicU64::new(0));
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    looks.fetch_add(1, Ordering::Relaxed);
                    if fs::symlink_metadata(&out).is_err() {
                        absent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            for i in 0..200 {
                publish_files(&out, &[(IMAGE, &img)], format!("{{{i}}}").as_bytes()).unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert!(looks.into_inner() > 200, "the watcher hardly ran");
        assert_eq!(absent.into_inner(), 0, "dist/p was absent while replaced");
        assert_eq!(fs::read(out.join(MANIFEST)).unwrap(), b"{199}");
        assert_eq!(names(&d.path().join("dist")), ["p"]);
    }
}
