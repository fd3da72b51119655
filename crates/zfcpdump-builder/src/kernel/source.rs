//! The kernel source: a tarball unpacked once (refusing entries that would
//! land outside), or a source dir (whose identity is `identity.rs`'s).

use std::fs;
use std::io::BufReader;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::util;

/// Unpacks a kernel tarball once into `dest` and returns the source root.
/// Entries that would land outside `dest` are refused, not skipped.
pub fn unpack_tarball(tarball: &Path, dest: &Path) -> Result<PathBuf> {
    if !dest.join(".unpacked").is_file() {
        let t = Instant::now();
        eprintln!(
            "[kernel] unpacking {} into {}",
            tarball.display(),
            dest.display()
        );
        let tmp = util::tmp_name(dest);
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp)?;
        let res = unpack_into(tarball, &tmp);
        if let Err(e) = res {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        fs::write(tmp.join(".unpacked"), b"")?;
        let _ = fs::remove_dir_all(dest);
        fs::rename(&tmp, dest)?;
        eprintln!("[kernel] unpacked in {}", util::fmt_duration(t.elapsed()));
    }
    unpacked_root(dest)
        .with_context(|| format!("{} holds no kernel source (no Makefile)", tarball.display()))
}

/// The source root of a tarball unpacked into `dest`, if it is: its one
/// top directory, or `dest` itself. Unpacks nothing.
pub(super) fn unpacked_root(dest: &Path) -> Option<PathBuf> {
    if !dest.join(".unpacked").is_file() {
        return None;
    }
    let mut dirs = fs::read_dir(dest)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.path());
    match (dirs.next(), dirs.next()) {
        (Some(d), None) if d.join("Makefile").is_file() => Some(d),
        _ if dest.join("Makefile").is_file() => Some(dest.to_path_buf()),
        _ => None,
    }
}

/// The compressions a kernel source tarball may have, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TarballKind {
    Tar,
    Xz,
    Gzip,
    Bzip2,
    Zstd,
}

/// The name endings [`TarballKind::of`] knows, for messages.
pub const TARBALL_ENDINGS: &str = ".tar, .tar.xz, .tar.gz, .tgz, .tar.bz2, .tar.zst";

impl TarballKind {
    /// The kind a tarball's name says; None for any other file.
    pub fn of(path: &Path) -> Option<TarballKind> {
        let name = path.file_name()?.to_str()?;
        [
            (".tar", TarballKind::Tar),
            (".tar.xz", TarballKind::Xz),
            (".txz", TarballKind::Xz),
            (".tar.gz", TarballKind::Gzip),
            (".tgz", TarballKind::Gzip),
            (".tar.bz2", TarballKind::Bzip2),
            (".tbz2", TarballKind::Bzip2),
            (".tar.zst", TarballKind::Zstd),
            (".tzst", TarballKind::Zstd),
        ]
        .into_iter()
        .find(|(end, _)| name.ends_with(end))
        .map(|(_, k)| k)
    }

    /// Refuses a name with no known ending, saying which endings there are.
    pub fn check(path: &Path) -> Result<TarballKind> {
        TarballKind::of(path).with_context(|| {
            format!(
                "{}: unsupported archive type: a kernel source tarball ends in one of \
                 {TARBALL_ENDINGS}",
                path.display()
            )
        })
    }

    fn reader(self, f: fs::File) -> Result<Box<dyn std::io::Read>> {
        let buf = BufReader::with_capacity(1 << 20, f);
        Ok(match self {
            TarballKind::Tar => Box::new(buf),
            TarballKind::Xz => Box::new(xz2::read::XzDecoder::new(buf)),
            TarballKind::Gzip => Box::new(flate2::read::GzDecoder::new(buf)),
            TarballKind::Bzip2 => Box::new(bzip2::read::BzDecoder::new(buf)),
            TarballKind::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buf)?),
        })
    }
}

fn unpack_into(tarball: &Path, dest: &Path) -> Result<()> {
    let kind = TarballKind::check(tarball)?;
    let f =
        fs::File::open(tarball).with_context(|| format!("cannot open {}", tarball.display()))?;
    let reader = kind.reader(f)?;
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    for entry in ar.entries()? {
        let mut entry = entry.with_context(|| format!("corrupt archive {}", tarball.display()))?;
        let path = entry.path()?.into_owned();
        check_entry(&path, &entry)?;
        entry
            .unpack_in(dest)
            .with_context(|| format!("cannot unpack {}", path.display()))?;
    }
    Ok(())
}

/// Refuses absolute paths, `..`, and links that point outside the archive.
fn check_entry<R: std::io::Read>(path: &Path, entry: &tar::Entry<R>) -> Result<()> {
    if !stays_inside(Path::new(""), path) {
        bail!(
            "archive entry {:?} escapes the destination directory; refusing to unpack",
            path
        );
    }
    let kind = entry.header().entry_type();
    if let Some(link) = entry.link_name()? {
        // Symlinks resolve from the entry's directory; hard links from the root.
        let base = if kind.is_symlink() {
            path.parent().unwrap_or(Path::new(""))
        } else {
            Path::new("")
        };
        if !stays_inside(base, &link) {
            bail!(
                "archive entry {:?} links to {:?}, outside the destination directory; refusing to unpack",
                path,
                link
            );
        }
    }
    Ok(())
}

/// Whether `base/rel` stays inside the root, resolving `..` lexically.
pub fn stays_inside(base: &Path, rel: &Path) -> bool {
    let mut depth: i64 = 0;
    for c in base.components().chain(rel.components()) {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_containment() {
        assert!(stays_inside(Path::new(""), Path::new("linux/Makefile")));
        assert!(stays_inside(Path::new("a/b"), Path::new("../c")));
        assert!(!stays_inside(Path::new(""), Path::new("../etc/passwd")));
        assert!(!stays_inside(Path::new(""), Path::new("a/../../x")));
        assert!(!stays_inside(Path::new(""), Path::new("/etc/passwd")));
        assert!(!stays_inside(Path::new("a"), Path::new("../../x")));
    }

    fn tar_with(entries: &[(&str, tar::EntryType, Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(if link.is_some() { 0 } else { 4 });
            // Write raw names: tar's safe setters refuse `..`, which is the point.
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(l) = link {
                h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            let data: &[u8] = if link.is_some() { b"" } else { b"data" };
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn unpack_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<()>) {
        let d = tempfile::tempdir().unwrap();
        let tarball = d.path().join("src.tar");
        fs::write(&tarball, bytes).unwrap();
        let dest = d.path().join("out");
        fs::create_dir_all(&dest).unwrap();
        let r = unpack_into(&tarball, &dest);
        (d, r)
    }

    #[test]
    fn tarball_path_escape_is_refused() {
        let t = tar_with(&[
            ("linux/Makefile", tar::EntryType::Regular, None),
            ("linux/../../evil", tar::EntryType::Regular, None),
        ]);
        let (d, r) = unpack_bytes(&t);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("escapes the destination"), "{e}");
        assert!(!d.path().join("evil").exists());
    }

    #[test]
    fn tarball_absolute_path_is_refused() {
        let t = tar_with(&[("/tmp/zfcpdump-evil", tar::EntryType::Regular, None)]);
        let (_d, r) = unpack_bytes(&t);
        assert!(r.unwrap_err().to_string().contains("escapes"));
    }

    #[test]
    fn tarball_symlink_escape_is_refused() {
        let t = tar_with(&[("linux/link", tar::EntryType::Symlink, Some("../../etc"))]);
        let (_d, r) = unpack_bytes(&t);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("outside the destination"), "{e}");
        let t = tar_with(&[("linux/link", tar::EntryType::Symlink, Some("/etc"))]);
        assert!(unpack_bytes(&t).1.is_err());
    }

    #[test]
    fn tarball_inner_relative_symlink_is_fine() {
        let t = tar_with(&[
            ("linux/Makefile", tar::EntryType::Regular, None),
            ("linux/a/link", tar::EntryType::Symlink, Some("../Makefile")),
        ]);
        let (d, r) = unpack_bytes(&t);
        r.unwrap();
        assert!(d.path().join("out/linux/a/link").is_symlink());
    }

    /// Found by a packager: .tar.gz, .tar.bz2 and .tar.zst sources were
    /// refused, and only at unpack, after the preflight had passed.
    #[test]
    fn every_tarball_kind_unpacks() {
        use std::io::Write;
        let tar = tar_with(&[("linux-x/Makefile", tar::EntryType::Regular, None)]);
        let d = tempfile::tempdir().unwrap();
        let compressed: [(&str, Vec<u8>); 5] = [
            ("src.tar", tar.clone()),
            ("src.tar.xz", {
                let mut w = xz2::write::XzEncoder::new(Vec::new(), 1);
                w.write_all(&tar).unwrap();
                w.finish().unwrap()
            }),
            ("src.tar.gz", {
                let mut w = flate2::write::GzEncoder::new(Vec::new(), Default::default());
                w.write_all(&tar).unwrap();
                w.finish().unwrap()
            }),
            ("src.tar.bz2", {
                let mut w = bzip2::write::BzEncoder::new(Vec::new(), Default::default());
                w.write_all(&tar).unwrap();
                w.finish().unwrap()
            }),
            ("src.tar.zst", zstd::encode_all(&tar[..], 1).unwrap()),
        ];
        for (name, bytes) in compressed {
            let tarball = d.path().join(name);
            fs::write(&tarball, bytes).unwrap();
            let root = unpack_tarball(&tarball, &d.path().join(format!("out-{name}")))
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(fs::read(root.join("Makefile")).unwrap(), b"data", "{name}");
        }
        let e = TarballKind::check(Path::new("/src/linux.zip")).unwrap_err();
        assert!(
            e.to_string().contains("unsupported archive type")
                && e.to_string().contains(".tar.zst"),
            "{e}"
        );
    }
}
