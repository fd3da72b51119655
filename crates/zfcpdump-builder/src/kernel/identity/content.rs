//! The content identity of a source tree: a hash over the sorted relative
//! paths, kinds, executable bits, sizes and contents of all its entries (a
//! symlink by its target; `.git` left out), and the stat cache that keeps
//! a no-op cheap.
//!
//! A file's hash is reused while its size, mtime, ctime, inode, device and
//! mode stay the same; ctime, which no copy can set, catches a rewrite that
//! keeps size and mtime. As git does against racy entries, an entry changed
//! shortly before the walk started is not cached. When every entry is as
//! cached, the tree's hash is the cache's, and a no-op reads no file.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::util;

/// How long before the walk's start a file must have last changed for its
/// hash to be cached: timestamps are coarse, and a file rewritten within
/// one tick of the stat the cache holds would keep all of it.
pub(super) const RACY: Duration = Duration::from_secs(2);

/// Walks that must read this much say so before they start.
const ANNOUNCE_BYTES: u64 = 64 << 20;

/// A walk of `root` in file name order, `.git` left out; it yields `root`
/// itself first.
pub(super) fn walk(
    root: &Path,
) -> walkdir::FilterEntry<walkdir::IntoIter, fn(&walkdir::DirEntry) -> bool> {
    fn keep(e: &walkdir::DirEntry) -> bool {
        e.depth() == 0 || e.file_name() != ".git"
    }
    walkdir::WalkDir::new(root)
        .follow_links(false)
        .follow_root_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(keep as fn(&walkdir::DirEntry) -> bool)
}

/// What an entry of a tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Kind {
    File = b'f',
    Symlink = b'l',
    Dir = b'd',
    /// A fifo, a socket, a device: by its name only.
    Other = b'o',
}

impl Kind {
    pub(super) fn of(m: &fs::Metadata) -> Kind {
        let ft = m.file_type();
        if ft.is_file() {
            Kind::File
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_dir() {
            Kind::Dir
        } else {
            Kind::Other
        }
    }

    fn from_byte(b: u8) -> Option<Kind> {
        [Kind::File, Kind::Symlink, Kind::Dir, Kind::Other]
            .into_iter()
            .find(|k| *k as u8 == b)
    }

    /// Whether the entry's stat stands for what its record holds: a
    /// file's content and mode, a symlink's target. A directory's record
    /// is its name only.
    fn has_stat(self) -> bool {
        matches!(self, Kind::File | Kind::Symlink)
    }
}

/// A link is recorded by its target's name: one that leaves the tree `real`
/// would hide an edit of what it points to, so it is refused.
pub(super) fn stays_inside(real: &Path, path: &Path, meta: &fs::Metadata) -> Result<()> {
    if meta.file_type().is_symlink() {
        if let Some(to) = fs::canonicalize(path)
            .ok()
            .filter(|to| !to.starts_with(real))
        {
            bail!(
                "kernel source tree {}: {} links to {}, outside the tree: an edit there would \
                 not change the tree's identity; copy the tree without such links (cp -rL), or \
                 make it a git work tree",
                real.display(),
                path.display(),
                to.display()
            );
        }
    }
    Ok(())
}

/// Adds one entry's record to a tree hash: its relative path and NUL, its
/// kind, then for a file its executable bit, size and content hash, for a
/// symlink its target and NUL. A path holds no NUL, so no two trees share
/// a stream of records.
pub(super) fn record(
    h: &mut Sha256,
    rel: &[u8],
    kind: Kind,
    stat: &Stat,
    path: &Path,
    hash: Option<Hash>,
) -> Result<()> {
    h.update(rel);
    h.update([0, kind as u8]);
    match kind {
        Kind::File => {
            let hash = hash.context("a file's record without its hash")?;
            h.update([u8::from(stat.mode & 0o111 != 0)]);
            h.update(stat.size.to_le_bytes());
            h.update(hash);
        }
        Kind::Symlink => {
            let target =
                fs::read_link(path).with_context(|| format!("cannot read {}", path.display()))?;
            h.update(target.as_os_str().as_bytes());
            h.update([0]);
        }
        Kind::Dir | Kind::Other => {}
    }
    Ok(())
}

type Hash = [u8; 32];

pub(super) fn hash_file(path: &Path) -> Result<Hash> {
    let mut buf = vec![0u8; 1 << 16];
    hash_file_with(path, &mut buf)
}

fn hash_file_with(path: &Path, buf: &mut [u8]) -> Result<Hash> {
    let mut f = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    loop {
        let n = f
            .read(buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// What the stat cache compares: a file whose stat is the same is taken to
/// have the same content (and a symlink the same target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stat {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    dev: u64,
    mode: u32,
}

impl Stat {
    pub(super) fn of(m: &fs::Metadata) -> Stat {
        Stat {
            size: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
            mode: m.mode(),
        }
    }

    /// Whether the entry last changed at or after `from` (seconds and
    /// nanoseconds since the epoch): its stat may then stay the same
    /// through a rewrite.
    fn racy(&self, from: (i64, i64)) -> bool {
        self.mtime >= from || self.ctime >= from
    }
}

/// Where the stat cache of the tree at `real` lives.
pub(super) fn stat_cache_path(cache: &Path, real: &Path) -> PathBuf {
    let id = util::sha256_bytes(real.as_os_str().as_bytes());
    cache.join("source-ids").join(format!("{}.stat", &id[..16]))
}

/// One entry of a tree: walked, or as the stat cache holds it.
#[derive(Debug, Clone)]
struct Entry {
    /// The path relative to the tree.
    rel: Vec<u8>,
    kind: Kind,
    stat: Stat,
    /// A file's content hash.
    hash: Option<Hash>,
}

/// The stat cache of one tree: its entries in path order and, when the
/// walk that wrote it found no racy entry, the tree's hash, which a walk
/// finding every entry as it is then takes without hashing the records.
/// Stored as a small binary file (the kernel has some 80,000 files).
#[derive(Debug, Default)]
struct StatCache {
    tree: Option<Hash>,
    entries: Vec<Entry>,
}

const STAT_CACHE_MAGIC: &[u8] = b"zfcpdump stat cache 2\n";

impl StatCache {
    /// The cache of `tree` in `file`; empty when there is none, it is of
    /// another tree, or it cannot be read.
    fn load(file: &Path, tree: &Path) -> StatCache {
        fs::read(file)
            .ok()
            .and_then(|data| Self::parse(&data, tree))
            .unwrap_or_default()
    }

    fn parse(data: &[u8], tree: &Path) -> Option<StatCache> {
        let mut r = Reader(data.strip_prefix(STAT_CACHE_MAGIC)?);
        if r.bytes()? != tree.as_os_str().as_bytes() {
            return None;
        }
        let top = match r.take(1)? {
            [0] => None,
            _ => Some(r.hash()?),
        };
        let n = r.u64()? as usize;
        let mut entries = Vec::with_capacity(n.min(1 << 20));
        for _ in 0..n {
            let rel = r.bytes()?.to_vec();
            let kind = Kind::from_byte(r.take(1)?[0])?;
            let stat = Stat {
                size: r.u64()?,
                mtime: (r.i64()?, r.i64()?),
                ctime: (r.i64()?, r.i64()?),
                ino: r.u64()?,
                dev: r.u64()?,
                mode: r.u64()? as u32,
            };
            let hash = match kind {
                Kind::File => Some(r.hash()?),
                _ => None,
            };
            entries.push(Entry {
                rel,
                kind,
                stat,
                hash,
            });
        }
        // Sorted as the walk sorts, or the merge would miss entries.
        let sorted = entries.windows(2).all(|w| w[0].rel < w[1].rel);
        (r.0.is_empty() && sorted).then_some(StatCache { tree: top, entries })
    }

    fn serialize(&self, tree: &Path) -> Vec<u8> {
        let mut out = STAT_CACHE_MAGIC.to_vec();
        let put_bytes = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend((b.len() as u64).to_le_bytes());
            out.extend(b);
        };
        put_bytes(&mut out, tree.as_os_str().as_bytes());
        match &self.tree {
            Some(h) => {
                out.push(1);
                out.extend(h);
            }
            None => out.push(0),
        }
        out.extend((self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            put_bytes(&mut out, &e.rel);
            out.push(e.kind as u8);
            let s = &e.stat;
            for v in [s.size, s.mtime.0 as u64, s.mtime.1 as u64] {
                out.extend(v.to_le_bytes());
            }
            for v in [s.ctime.0 as u64, s.ctime.1 as u64, s.ino, s.dev] {
                out.extend(v.to_le_bytes());
            }
            out.extend(u64::from(s.mode).to_le_bytes());
            if let Some(h) = &e.hash {
                out.extend(h);
            }
        }
        out
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(self.u64()? as i64)
    }
    fn hash(&mut self) -> Option<Hash> {
        self.take(32)?.try_into().ok()
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u64()?).ok()?;
        self.take(n)
    }
}

/// What a walk did, for the progress line.
#[derive(Debug, Default)]
pub(super) struct WalkStats {
    pub(super) files: usize,
    pub(super) hashed_bytes: u64,
    pub(super) hashed: usize,
    pub(super) from_cache: usize,
    /// Whether the tree's hash was the cache's (every entry as cached).
    pub(super) whole_from_cache: bool,
    pub(super) took: Duration,
}

impl std::fmt::Display for WalkStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} files, {:.1} MiB hashed ({} files), {} from the stat cache, in {}",
            self.files,
            self.hashed_bytes as f64 / (1 << 20) as f64,
            self.hashed,
            self.from_cache,
            util::fmt_duration(self.took)
        )
    }
}

/// The content hash of a tree, with its stat cache.
pub(super) struct TreeWalk {
    pub(super) cache_file: PathBuf,
    /// See [`RACY`]; tests shorten it.
    pub(super) racy: Duration,
}

impl TreeWalk {
    /// The content hash of the tree at `real` (a canonical path).
    pub(super) fn hash(&self, real: &Path) -> Result<(String, WalkStats)> {
        let t = Instant::now();
        let since_epoch = SystemTime::now()
            .checked_sub(self.racy)
            .and_then(|s| s.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        let racy_from = (
            since_epoch.as_secs() as i64,
            i64::from(since_epoch.subsec_nanos()),
        );
        let cache = StatCache::load(&self.cache_file, real);
        let mut stats = WalkStats::default();

        // The entries in path order (as bytes: the order a merge with the
        // cache's needs, whatever order the walk yields).
        let mut items = Vec::new();
        for entry in walk(real) {
            let entry = entry.with_context(|| format!("cannot walk {}", real.display()))?;
            if entry.depth() == 0 {
                continue;
            }
            let meta = entry
                .metadata()
                .with_context(|| format!("cannot stat {}", entry.path().display()))?;
            stays_inside(real, entry.path(), &meta)?;
            let rel = entry.path().strip_prefix(real)?.as_os_str().as_bytes();
            items.push(Entry {
                rel: rel.to_vec(),
                kind: Kind::of(&meta),
                stat: Stat::of(&meta),
                hash: None,
            });
        }
        items.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));

        // Merged with the cache's: an entry whose kind and stat are the
        // cached ones takes the cached hash.
        let mut cached = cache.entries.iter().peekable();
        let mut matched = 0;
        for it in &mut items {
            while cached.next_if(|c| c.rel < it.rel).is_some() {}
            let Some(c) = cached.next_if(|c| c.rel == it.rel) else {
                continue;
            };
            if c.kind == it.kind && (!it.kind.has_stat() || c.stat == it.stat) {
                it.hash = c.hash;
                matched += 1;
            }
        }
        stats.files = items.iter().filter(|it| it.kind == Kind::File).count();
        stats.from_cache = items
            .iter()
            .filter(|it| it.kind == Kind::File && it.hash.is_some())
            .count();
        let racy = |it: &Entry| it.kind.has_stat() && it.stat.racy(racy_from);
        let unchanged = matched == items.len() && matched == cache.entries.len();
        let tree = match cache.tree {
            Some(sum) if unchanged && !items.iter().any(racy) => {
                stats.whole_from_cache = true;
                sum
            }
            _ => {
                let todo: Vec<usize> = (0..items.len())
                    .filter(|&i| items[i].kind == Kind::File && items[i].hash.is_none())
                    .collect();
                // A first walk reads the whole tree (seconds for a
                // kernel): say so before, not only after.
                let bytes: u64 = todo.iter().map(|&i| items[i].stat.size).sum();
                if bytes >= ANNOUNCE_BYTES {
                    eprintln!(
                        "[kernel] identifying source tree {}: reading {} files ({:.1} MiB) not in \
                         its stat cache",
                        real.display(),
                        todo.len(),
                        bytes as f64 / (1 << 20) as f64
                    );
                }
                for (i, hash) in hash_files(real, &items, &todo)? {
                    stats.hashed += 1;
                    stats.hashed_bytes += items[i].stat.size;
                    items[i].hash = Some(hash);
                }
                self.tree_hash(real, &items)?
            }
        };

        if !stats.whole_from_cache {
            // Racy entries are left out, and with them the tree's hash.
            let all = items.len();
            let entries: Vec<Entry> = items.into_iter().filter(|it| !racy(it)).collect();
            let new = StatCache {
                tree: (entries.len() == all).then_some(tree),
                entries,
            };
            // A cache that cannot be written costs time, not correctness.
            if let Err(e) = util::write_atomic(&self.cache_file, &new.serialize(real)) {
                eprintln!("warning: source tree stat cache: {e:#}");
            }
        }
        stats.took = t.elapsed();
        Ok((util::hex(&tree), stats))
    }

    /// The hash of the records of `items`, every file's content hashed.
    fn tree_hash(&self, real: &Path, items: &[Entry]) -> Result<Hash> {
        // A file's mode and size are the walk's, as is its content hash:
        // the stat the cache stores is of what was recorded.
        let mut h = Sha256::new();
        h.update(b"zfcpdump tree v1\0");
        for it in items {
            let path = real.join(OsStr::from_bytes(&it.rel));
            record(&mut h, &it.rel, it.kind, &it.stat, &path, it.hash)?;
        }
        Ok(h.finalize().into())
    }
}

/// The content hashes of `items[todo]`, read by a few threads.
fn hash_files(real: &Path, items: &[Entry], todo: &[usize]) -> Result<Vec<(usize, Hash)>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(todo.len().div_ceil(64).max(1));
    let next = AtomicUsize::new(0);
    let work = || -> Result<Vec<(usize, Hash)>> {
        let mut buf = vec![0u8; 1 << 16];
        let mut out = Vec::new();
        loop {
            let k = next.fetch_add(1, Ordering::Relaxed);
            let Some(&i) = todo.get(k) else {
                return Ok(out);
            };
            let path = real.join(OsStr::from_bytes(&items[i].rel));
            out.push((i, hash_file_with(&path, &mut buf)?));
        }
    };
    std::thread::scope(|s| {
        let workers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mut all = work()?;
        for w in workers {
            all.extend(w.join().expect("a hashing thread panicked")?);
        }
        Ok(all)
    })
}
