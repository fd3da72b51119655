//! Deterministic newc cpio archives: the one place that writes them.
//!
//! An [`Archive`] collects [`Record`]s from several sources (the rootfs
//! manifest, the overlay tree, generated files), refuses duplicate names
//! naming both sources, adds missing parent directories, and writes the
//! records sorted with parents first, with uid/gid 0, a fixed mtime,
//! sequential inode numbers and nlink 1 for everything but directories.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Result, bail};
use cpio::newc::{Builder, ModeFileType};

/// What one archive entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    Char { major: u32, minor: u32 },
    Block { major: u32, minor: u32 },
}

/// One entry: a path relative to the archive root, without a leading `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub path: String,
    /// Permission bits only; the file type comes from `kind`.
    pub mode: u32,
    pub kind: Kind,
    /// Where it was declared, for error messages.
    pub source: String,
}

impl Record {
    pub fn size(&self) -> u64 {
        match &self.kind {
            Kind::File(d) => d.len() as u64,
            Kind::Symlink(t) => t.len() as u64,
            _ => 0,
        }
    }

    fn file_type(&self) -> ModeFileType {
        match self.kind {
            Kind::Dir => ModeFileType::Directory,
            Kind::File(_) => ModeFileType::Regular,
            Kind::Symlink(_) => ModeFileType::Symlink,
            Kind::Char { .. } => ModeFileType::Char,
            Kind::Block { .. } => ModeFileType::Block,
        }
    }
}

/// Sort key: by components, so that a directory precedes everything in it.
fn key(path: &str) -> Vec<String> {
    path.split('/').map(str::to_string).collect()
}

#[derive(Debug, Default)]
pub struct Archive {
    records: BTreeMap<Vec<String>, Record>,
}

impl Archive {
    pub fn new() -> Archive {
        Archive::default()
    }

    /// Adds a record. Two declarations of one path are an error, except a
    /// directory declared twice with the same mode.
    pub fn add(&mut self, mut r: Record) -> Result<()> {
        r.path = normalize(&r.path)?;
        let k = key(&r.path);
        if let Some(prev) = self.records.get(&k) {
            if prev.kind == Kind::Dir && r.kind == Kind::Dir && prev.mode == r.mode {
                return Ok(());
            }
            bail!(
                "initramfs path /{} is declared twice: by {} and by {}",
                r.path,
                prev.source,
                r.source
            );
        }
        self.records.insert(k, r);
        Ok(())
    }

    /// [`Archive::add`] of one entry declared by `source`: `mode` holds the
    /// permission bits, `kind` the file type and content.
    pub fn add_entry(&mut self, path: &str, mode: u32, kind: Kind, source: &str) -> Result<()> {
        self.add(Record {
            path: path.to_string(),
            mode,
            kind,
            source: source.to_string(),
        })
    }

    /// Records in archive order, with missing parent directories added.
    pub fn records(&self) -> Vec<Record> {
        let mut all = self.records.clone();
        for r in self.records.values() {
            let parts: Vec<&str> = r.path.split('/').collect();
            for i in 1..parts.len() {
                let parent = parts[..i].join("/");
                all.entry(key(&parent)).or_insert_with(|| Record {
                    path: parent,
                    mode: 0o755,
                    kind: Kind::Dir,
                    source: format!("parent of /{}", r.path),
                });
            }
        }
        all.into_values().collect()
    }

    /// Writes the newc archive, trailer included.
    pub fn write<W: Write>(&self, mut w: W, mtime: u32) -> Result<W> {
        for (i, r) in self.records().iter().enumerate() {
            let mut b = Builder::new(&r.path)
                .ino(i as u32 + 1)
                .mode(r.mode & 0o7777)
                .set_mode_file_type(r.file_type())
                .uid(0)
                .gid(0)
                .mtime(mtime)
                .nlink(if r.kind == Kind::Dir { 2 } else { 1 });
            if let Kind::Char { major, minor } | Kind::Block { major, minor } = r.kind {
                b = b.rdev_major(major).rdev_minor(minor);
            }
            let data: &[u8] = match &r.kind {
                Kind::File(d) => d,
                Kind::Symlink(t) => t.as_bytes(),
                _ => &[],
            };
            let size = u32::try_from(data.len())
                .map_err(|_| anyhow::anyhow!("/{} is too large for cpio (4 GiB)", r.path))?;
            let mut fw = b.write(w, size);
            fw.write_all(data)?;
            w = fw.finish()?;
        }
        Ok(cpio::newc::trailer(w)?)
    }
}

/// `a/b`, no leading `/`, no `.`/`..`/empty components.
fn normalize(path: &str) -> Result<String> {
    let p = path.trim_start_matches('/');
    if p.is_empty() || p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        bail!("invalid initramfs path {path:?}: use a/b/c without `.` or `..`");
    }
    Ok(p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(path: &str, kind: Kind, source: &str) -> Record {
        Record {
            path: path.into(),
            mode: 0o644,
            kind,
            source: source.into(),
        }
    }

    #[test]
    fn duplicates_name_both_sources() {
        let mut a = Archive::new();
        a.add(rec("etc/x", Kind::File(b"1".to_vec()), "overlay etc/x"))
            .unwrap();
        let e = a
            .add(rec("/etc/x", Kind::File(b"2".to_vec()), "manifest.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/x") && e.contains("overlay etc/x") && e.contains("manifest.toml"),
            "{e}"
        );
    }

    #[test]
    fn order_parents_first_and_fields() {
        let mut a = Archive::new();
        a.add(rec("dev-x", Kind::File(vec![]), "t")).unwrap();
        a.add(rec("dev/console", Kind::Char { major: 5, minor: 1 }, "t"))
            .unwrap();
        a.add(rec("init", Kind::File(b"bin".to_vec()), "t"))
            .unwrap();
        let names: Vec<String> = a.records().into_iter().map(|r| r.path).collect();
        assert_eq!(names, ["dev", "dev/console", "dev-x", "init"]);

        let bytes = a.write(Vec::new(), 1234).unwrap();
        let mut cur = std::io::Cursor::new(bytes);
        let mut seen = Vec::new();
        loop {
            let r = cpio::newc::Reader::new(&mut cur).unwrap();
            if r.entry().is_trailer() {
                break;
            }
            let e = r.entry();
            seen.push((e.name().to_string(), e.ino(), e.nlink(), e.mtime(), e.uid()));
            if e.name() == "dev/console" {
                assert_eq!((e.rdev_major(), e.rdev_minor()), (5, 1));
                assert_eq!(e.mode() & 0o170000, 0o020000);
            }
            r.finish().unwrap();
        }
        assert_eq!(seen[0], ("dev".into(), 1, 2, 1234, 0));
        assert_eq!(seen[3], ("init".into(), 4, 1, 1234, 0));
    }

    #[test]
    fn bad_paths_are_refused() {
        let mut a = Archive::new();
        for p in ["", "a/../b", "./a", "a//b"] {
            assert!(a.add(rec(p, Kind::Dir, "t")).is_err(), "{p:?}");
        }
    }

    #[test]
    fn output_is_deterministic() {
        let build = |order: &[&str]| {
            let mut a = Archive::new();
            for p in order {
                a.add(rec(p, Kind::File(p.as_bytes().to_vec()), "t"))
                    .unwrap();
            }
            a.write(Vec::new(), 0).unwrap()
        };
        assert_eq!(build(&["a/b", "c", "a/a"]), build(&["c", "a/a", "a/b"]));
    }
}
