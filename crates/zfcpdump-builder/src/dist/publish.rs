//! Publishing: dist/<profile>/ replaced as a whole.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use super::{Built, MANIFEST, Manifest};
use crate::util;

/// Writes the three files into a fresh sibling directory, then swaps it in
/// with renames: readers see the old complete set or the new one, and a
/// failed or interrupted build leaves no partial file under a final name.
pub fn publish(dir: &Path, b: &Built, manifest: &Manifest) -> Result<()> {
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
    let old = parent.join(format!(
        ".{}.old-{}",
        dir.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    if dir.exists() {
        fs::rename(dir, &old)?;
    }
    fs::rename(&staging, dir)?;
    let _ = fs::remove_dir_all(&old);
    Ok(())
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
}
