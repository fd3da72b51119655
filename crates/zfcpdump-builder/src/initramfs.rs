//! The initramfs stage: rootfs/ (manifest + overlay), the agent as /init
//! and its config file, packed as a deterministic cpio and compressed.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::agent::AgentRecord;
use crate::archive::{Archive, Kind, Record};
use crate::cache::{Inputs, Slot};
use crate::kernel::{source_date_epoch, stays_inside};
use crate::profile::{Compression, Profile};
use crate::stage::Stage;
use crate::util;

const STAGE_VERSION: &str = "initramfs-1";
/// The kernel's XZ and zstd decoders need a dictionary/window this small.
pub const DICT_SIZE: u32 = 1 << 20;
/// Where the agent reads its build-time settings.
pub const CONFIG_PATH: &str = "etc/zfcpdump.conf";

/// `rootfs/manifest.toml`: what the overlay tree cannot hold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default)]
    dir: Vec<DirDecl>,
    #[serde(default)]
    node: Vec<NodeDecl>,
    #[serde(default)]
    symlink: Vec<SymlinkDecl>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirDecl {
    path: String,
    #[serde(default = "dir_mode")]
    mode: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeDecl {
    path: String,
    #[serde(rename = "type")]
    kind: NodeKind,
    major: u32,
    minor: u32,
    mode: u32,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum NodeKind {
    Char,
    Block,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SymlinkDecl {
    path: String,
    target: String,
}

fn dir_mode() -> u32 {
    0o755
}

/// One entry of the archive, for `size` and the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EntrySize {
    pub path: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InitramfsRecord {
    pub key: String,
    pub rd: PathBuf,
    pub rd_size: u64,
    pub compression: Compression,
    /// The uncompressed cpio archive.
    pub cpio_size: u64,
    /// Memory the unpacked files take in the rootfs: page-rounded data plus
    /// an inode and dentry per entry.
    pub unpacked_size: u64,
    pub entries: Vec<EntrySize>,
}

/// The initramfs stage, over the agent stage's record.
pub struct Initramfs<'a> {
    pub root: &'a Path,
    pub profile: &'a Profile,
    pub agent: &'a AgentRecord,
    cache: PathBuf,
}

impl<'a> Initramfs<'a> {
    pub fn new(root: &'a Path, profile: &'a Profile, agent: &'a AgentRecord) -> Initramfs<'a> {
        Initramfs {
            root,
            profile,
            agent,
            cache: util::cache_dir(root).join("initramfs"),
        }
    }

    fn rootfs(&self) -> PathBuf {
        rootfs_of(self.root, self.profile)
    }

    /// The agent's config file, generated from the profile's agent section.
    pub fn agent_config(&self) -> String {
        let a = &self.profile.agent;
        zfcpdump_format::config::AgentConfig {
            device_timeout_s: a.device_timeout_s,
            progress_interval_s: a.progress_interval_s,
            dump_level: zfcpdump_format::filter::DumpLevel::new(a.dump_level() as u32)
                .expect("validated when the profile was loaded"),
        }
        .render()
    }

    /// Everything that goes into the archive.
    pub fn archive(&self) -> Result<Archive> {
        let mut ar = rootfs_archive(&rootfs_of(self.root, self.profile))?;
        ar.add(Record {
            path: "init".into(),
            mode: 0o755,
            kind: Kind::File(fs::read(&self.agent.binary)?),
            source: format!("the agent ({})", self.agent.binary.display()),
        })?;
        ar.add(Record {
            path: CONFIG_PATH.into(),
            mode: 0o644,
            kind: Kind::File(self.agent_config().into_bytes()),
            source: "the profile's [agent] section".into(),
        })?;
        Ok(ar)
    }
}

/// The rootfs tree of a profile: `initramfs.rootfs`, or the project's.
fn rootfs_of(root: &Path, profile: &Profile) -> PathBuf {
    profile
        .initramfs
        .rootfs
        .clone()
        .unwrap_or_else(|| root.join("rootfs"))
}

/// The preflight's check of the rootfs tree: its manifest and overlay
/// make an archive (the agent and its config are added at build time).
pub fn check_rootfs(root: &Path, profile: &Profile) -> Result<String> {
    let rootfs = rootfs_of(root, profile);
    if !rootfs.is_dir() {
        bail!(
            "{}: initramfs.rootfs: {} is not a directory (a rootfs tree holds manifest.toml and \
             overlay/, as the project's rootfs/ does)",
            profile.origin("initramfs.rootfs"),
            rootfs.display()
        );
    }
    let ar = rootfs_archive(&rootfs)?;
    Ok(format!(
        "{} entries from {}",
        ar.records().len(),
        rootfs.display()
    ))
}

/// The entries of a rootfs tree: its manifest's, then its overlay's.
fn rootfs_archive(rootfs: &Path) -> Result<Archive> {
    let mut ar = Archive::new();
    let manifest_path = rootfs.join("manifest.toml");
    let text = fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let m: Manifest =
        toml::from_str(&text).with_context(|| format!("{}", manifest_path.display()))?;
    let src = |what: &str, p: &str| format!("{} ({what} {p})", manifest_path.display());
    for d in m.dir {
        ar.add(Record {
            source: src("dir", &d.path),
            path: d.path,
            mode: d.mode,
            kind: Kind::Dir,
        })?;
    }
    for n in m.node {
        let kind = match n.kind {
            NodeKind::Char => Kind::Char {
                major: n.major,
                minor: n.minor,
            },
            NodeKind::Block => Kind::Block {
                major: n.major,
                minor: n.minor,
            },
        };
        ar.add(Record {
            source: src("node", &n.path),
            path: n.path,
            mode: n.mode,
            kind,
        })?;
    }
    for s in m.symlink {
        check_link(&s.path, &s.target).with_context(|| src("symlink", &s.path))?;
        ar.add(Record {
            source: src("symlink", &s.path),
            path: s.path,
            mode: 0o777,
            kind: Kind::Symlink(s.target),
        })?;
    }
    add_overlay(&mut ar, &rootfs.join("overlay"))?;
    Ok(ar)
}

impl Stage for Initramfs<'_> {
    type Record = InitramfsRecord;

    fn name(&self) -> &'static str {
        "initramfs"
    }

    fn cache(&self) -> &Path {
        &self.cache
    }

    fn profile(&self) -> &Profile {
        self.profile
    }

    fn inputs(&self) -> Result<Inputs> {
        let mut i = Inputs::new();
        i.insert("stage".into(), STAGE_VERSION.into());
        i.insert("agent".into(), self.agent.sha256.clone());
        i.insert("config".into(), self.agent_config());
        i.insert(
            "compression".into(),
            self.profile.initramfs.compression.to_string(),
        );
        i.insert("mtime".into(), source_date_epoch()?.to_string());
        // rootfs/ is small: hash its contents rather than trust mtimes.
        let rootfs = self.rootfs();
        if rootfs.is_dir() {
            for e in walkdir::WalkDir::new(&rootfs).sort_by_file_name() {
                let e = e?;
                let rel = e.path().strip_prefix(&rootfs)?.display().to_string();
                let ft = e.file_type();
                let v = if ft.is_file() {
                    let mode = e.metadata()?.permissions().mode() & 0o111;
                    format!("{} {mode:o}", util::sha256_bytes(&fs::read(e.path())?))
                } else if ft.is_symlink() {
                    format!("-> {}", fs::read_link(e.path())?.display())
                } else {
                    "dir".into()
                };
                i.insert(format!("rootfs {rel}"), v);
            }
        }
        Ok(i)
    }

    fn check(&self, slot: &Slot, r: &InitramfsRecord) -> bool {
        r.key == slot.key && r.rd.is_file()
    }

    fn build(&self, slot: &Slot) -> Result<InitramfsRecord> {
        let t = Instant::now();
        let ar = self.archive()?;
        let mtime = u32::try_from(source_date_epoch()?).context("SOURCE_DATE_EPOCH beyond 2106")?;
        let cpio = ar.write(Vec::new(), mtime)?;
        let comp = self.profile.initramfs.compression;
        let rd = compress(comp, &cpio)?;
        let records = ar.records();
        let unpacked_size = records
            .iter()
            .map(|r| r.size().div_ceil(4096) * 4096 + INODE_OVERHEAD)
            .sum();
        let mut entries: Vec<EntrySize> = records
            .iter()
            .map(|r| EntrySize {
                path: format!("/{}", r.path),
                bytes: r.size(),
            })
            .collect();
        entries.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.path.cmp(&b.path)));
        let path = slot.dir().join("zfcpdump.rd");
        util::write_atomic(&path, &rd)?;
        let rec = InitramfsRecord {
            key: slot.key.clone(),
            rd: path,
            rd_size: rd.len() as u64,
            compression: comp,
            cpio_size: cpio.len() as u64,
            unpacked_size,
            entries,
        };
        slot.store(&rec)?;
        eprintln!(
            "[initramfs] built in {}: {} entries, cpio {} bytes, {comp} {} bytes",
            util::fmt_duration(t.elapsed()),
            records.len(),
            rec.cpio_size,
            rec.rd_size
        );
        Ok(rec)
    }

    fn output<'r>(&self, rec: &'r InitramfsRecord) -> &'r Path {
        &rec.rd
    }

    fn about(&self, rec: &InitramfsRecord) -> String {
        format!("{} bytes, {}", rec.rd_size, rec.compression)
    }
}

/// Memory per rootfs entry beyond its data: an inode and a dentry, rounded up.
pub const INODE_OVERHEAD: u64 = 1024;

/// Walks the overlay tree in name order. Symlinks must stay inside it, and
/// only directories, regular files and symlinks are allowed (device nodes
/// belong in manifest.toml, so a checkout needs no root).
fn add_overlay(ar: &mut Archive, overlay: &Path) -> Result<()> {
    if !overlay.exists() {
        return Ok(());
    }
    for e in walkdir::WalkDir::new(overlay)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
    {
        let e = e?;
        let rel = e.path().strip_prefix(overlay)?;
        let path = rel
            .to_str()
            .with_context(|| format!("non-UTF-8 path in overlay: {}", e.path().display()))?
            .to_string();
        let source = format!("overlay {}", e.path().display());
        let ft = e.file_type();
        let meta = e.path().symlink_metadata()?;
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File(fs::read(e.path())?)
        } else if ft.is_symlink() {
            let target = fs::read_link(e.path())?;
            let target = target
                .to_str()
                .context("non-UTF-8 symlink target")?
                .to_string();
            check_link(&path, &target).with_context(|| source.clone())?;
            Kind::Symlink(target)
        } else {
            bail!(
                "{source}: only directories, files and symlinks may be in the overlay; declare device nodes in manifest.toml"
            );
        };
        // git keeps only the executable bit: normalize so checkouts agree.
        let mode = match kind {
            Kind::Dir => 0o755,
            Kind::Symlink(_) => 0o777,
            _ if meta.permissions().mode() & 0o111 != 0 => 0o755,
            _ => 0o644,
        };
        ar.add(Record {
            path,
            mode,
            kind,
            source,
        })?;
    }
    Ok(())
}

/// A symlink at `path` pointing at `target` must resolve inside the tree.
fn check_link(path: &str, target: &str) -> Result<()> {
    let dir = Path::new(path).parent().unwrap_or(Path::new(""));
    if target.starts_with('/') || !stays_inside(dir, Path::new(target)) {
        bail!(
            "symlink /{path} -> {target} points outside the initramfs tree; use a relative target inside it"
        );
    }
    Ok(())
}

/// Compresses the archive the way the kernel's decompressors accept it.
pub fn compress(c: Compression, data: &[u8]) -> Result<Vec<u8>> {
    Ok(match c {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            // No file name and mtime 0 in the header: reproducible.
            let mut e = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::best());
            e.write_all(data)?;
            e.finish()?
        }
        Compression::Xz => {
            // The kernel's XZ decoder verifies CRC32 only and wants a small
            // dictionary (as `xz --check=crc32 --lzma2=dict=1MiB`).
            use xz2::stream::{Check, Filters, LzmaOptions, Stream};
            let mut opts = LzmaOptions::new_preset(9)?;
            opts.dict_size(DICT_SIZE);
            let mut filters = Filters::new();
            filters.lzma2(&opts);
            let stream = Stream::new_stream_encoder(&filters, Check::Crc32)?;
            let mut e = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
            e.write_all(data)?;
            e.finish()?
        }
        Compression::Zstd => {
            let mut e = zstd::stream::Encoder::new(Vec::new(), 19)?;
            e.window_log(DICT_SIZE.trailing_zeros())?;
            e.include_checksum(true)?;
            e.write_all(data)?;
            e.finish()?
        }
    })
}

/// Working memory of the kernel's decompressor for this format, an upper
/// bound: gzip's inflate needs its 32 KiB window plus tables; XZ and zstd
/// need their 1 MiB dictionary/window plus state.
pub fn decompressor_memory(c: Compression) -> u64 {
    match c {
        Compression::None => 0,
        Compression::Gzip => 64 << 10,
        Compression::Xz => u64::from(DICT_SIZE) + (64 << 10),
        Compression::Zstd => u64::from(DICT_SIZE) + (256 << 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_must_stay_inside() {
        assert!(check_link("bin/sh", "busybox").is_ok());
        assert!(check_link("a/b/c", "../x").is_ok());
        assert!(check_link("a", "../etc").is_err());
        assert!(check_link("a", "/etc/passwd").is_err());
    }

    #[test]
    fn overlay_symlink_escape_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let o = d.path().join("overlay");
        fs::create_dir_all(o.join("etc")).unwrap();
        std::os::unix::fs::symlink("../../../etc/passwd", o.join("etc/passwd")).unwrap();
        let e = add_overlay(&mut Archive::new(), &o).unwrap_err();
        assert!(
            format!("{e:#}").contains("outside the initramfs tree"),
            "{e:#}"
        );
    }

    #[test]
    fn overlay_modes_are_normalized() {
        let d = tempfile::tempdir().unwrap();
        let o = d.path().join("overlay");
        fs::create_dir_all(o.join("bin")).unwrap();
        fs::write(o.join("bin/tool"), b"x").unwrap();
        fs::set_permissions(o.join("bin/tool"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(o.join("note"), b"y").unwrap();
        fs::set_permissions(o.join("note"), fs::Permissions::from_mode(0o600)).unwrap();
        let mut ar = Archive::new();
        add_overlay(&mut ar, &o).unwrap();
        let modes: Vec<(String, u32)> =
            ar.records().into_iter().map(|r| (r.path, r.mode)).collect();
        assert_eq!(
            modes,
            [
                ("bin".into(), 0o755),
                ("bin/tool".into(), 0o755),
                ("note".into(), 0o644)
            ]
        );
    }

    #[test]
    fn compressions_round_trip_with_kernel_limits() {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for c in [
            Compression::Gzip,
            Compression::Xz,
            Compression::Zstd,
            Compression::None,
        ] {
            let z = compress(c, &data).unwrap();
            assert_eq!(compress(c, &data).unwrap(), z, "{c} not deterministic");
            let back = match c {
                Compression::Gzip => {
                    let mut d = flate2::read::GzDecoder::new(&z[..]);
                    let h = d.header().unwrap().clone();
                    assert!(h.filename().is_none());
                    assert_eq!(h.mtime(), 0);
                    let mut v = Vec::new();
                    std::io::Read::read_to_end(&mut d, &mut v).unwrap();
                    v
                }
                Compression::Xz => {
                    // Stream flags (bytes 6..8): check type 1 is CRC32.
                    assert_eq!(&z[..6], b"\xfd7zXZ\0");
                    assert_eq!(z[7] & 0x0f, 1, "xz check is not CRC32");
                    let mut v = Vec::new();
                    std::io::Read::read_to_end(&mut xz2::read::XzDecoder::new(&z[..]), &mut v)
                        .unwrap();
                    v
                }
                Compression::Zstd => {
                    let mut d = zstd::stream::Decoder::new(&z[..]).unwrap();
                    // A decoder limited to a 1 MiB window must accept it.
                    d.window_log_max(20).unwrap();
                    let mut v = Vec::new();
                    std::io::Read::read_to_end(&mut d, &mut v).unwrap();
                    v
                }
                Compression::None => z.clone(),
            };
            assert_eq!(back, data, "{c}");
        }
    }
}
