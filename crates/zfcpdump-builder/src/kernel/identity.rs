//! The identity of a kernel source dir: what the stage's key and the
//! manifest know it by, so that a changed tree is never taken for one
//! built before. The path enters none: a copy of a tree elsewhere is the
//! same source.
//!
//! - The top of a git work tree, clean: its commit. Dirty (a tracked
//!   change, or an untracked file that is not ignored): refused, unless the
//!   profile allows it (`kernel.source.allow_dirty`); then its commit plus
//!   a hash of `git diff --binary HEAD` and of the untracked files. Files
//!   git ignores count for neither, as for the commit.
//! - Any other tree (no git, a subdirectory of some other repository,
//!   whose commit says nothing about the tree, or a repository without a
//!   commit): its content, a hash over the sorted relative paths, kinds,
//!   executable bits, sizes and contents of all its entries (a symlink by
//!   its target; `.git` left out).
//!
//! The content walk keeps a stat cache per tree: a file's hash is reused
//! while its size, mtime, ctime, inode, device and mode stay the same;
//! ctime, which no copy can set, catches a rewrite that keeps size and
//! mtime. As git does against racy entries, an entry changed shortly
//! before the walk started is not cached. When every entry is as cached,
//! the tree's hash is the cache's, and a no-op reads no file.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cmd::{self, Cmd, cmd};
use crate::util;

/// How a source is known (`SourceId::identity`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Identity {
    /// A tarball, by its sha256.
    TarballSha256,
    /// The top of a clean git work tree, by its commit.
    GitCommit,
    /// The top of a git work tree with changes the profile allows: its
    /// commit plus the hash of the changes.
    GitDirtyContent,
    /// Any other dir, by the hash of its content.
    TreeContent,
}

/// What a source dir is known by.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct DirId {
    pub identity: Identity,
    pub git_commit: Option<String>,
    /// The content hash of [`Identity::GitDirtyContent`] and
    /// [`Identity::TreeContent`].
    pub content_sha256: Option<String>,
}

/// Changed entries a refusal quotes.
const QUOTED_CHANGES: usize = 5;

/// How long before the walk's start a file must have last changed for its
/// hash to be cached: timestamps are coarse, and a file rewritten within
/// one tick of the stat the cache holds would keep all of it.
const RACY: Duration = Duration::from_secs(2);

/// Walks that must read this much say so before they start.
const ANNOUNCE_BYTES: u64 = 64 << 20;

/// Walks taking longer print what they did.
const REPORT_AFTER: Duration = Duration::from_secs(1);

/// The identity of the source dir `dir`; its stat cache is kept under
/// `cache` (the stage's cache dir).
pub(super) fn identify_dir(dir: &Path, allow_dirty: bool, cache: &Path) -> Result<DirId> {
    let real =
        fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    if let Some(commit) = git_top_commit(&real) {
        let changes = git_changes(&real)?;
        if changes.is_empty() {
            return Ok(DirId {
                identity: Identity::GitCommit,
                git_commit: Some(commit),
                content_sha256: None,
            });
        }
        if !allow_dirty {
            bail!("{}", dirty_message(dir, &changes));
        }
        return Ok(DirId {
            identity: Identity::GitDirtyContent,
            content_sha256: Some(git_dirty_content(&real, &commit)?),
            git_commit: Some(commit),
        });
    }
    let walk = TreeWalk {
        cache_file: stat_cache_path(cache, &real),
        racy: RACY,
    };
    let (sum, stats) = walk.hash(&real)?;
    if stats.took >= REPORT_AFTER {
        eprintln!(
            "[kernel] identifying source tree {}: {stats}",
            dir.display()
        );
    }
    Ok(DirId {
        identity: Identity::TreeContent,
        git_commit: None,
        content_sha256: Some(sum),
    })
}

/// A git command run in `dir`, whatever git environment we were started
/// in (a hook's GIT_DIR would point it elsewhere).
fn git<'a>(sh: &'a cmd::Shell, dir: &Path) -> Cmd<'a> {
    // The user's settings must not hide a change (an exec bit with
    // core.fileMode=false) nor change the diff's text (prefixes).
    let mut c = cmd!(
        sh,
        "git --no-optional-locks -c core.fileMode=true -c diff.noprefix=false -C {dir}"
    );
    for v in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_CEILING_DIRECTORIES",
    ] {
        c = c.env_remove(v);
    }
    c
}

/// The commit checked out in `real` when it is the top of a git work tree
/// (not merely inside one) with a commit; None otherwise.
fn git_top_commit(real: &Path) -> Option<String> {
    let sh = cmd::shell().ok()?;
    let top = match cmd::read(git(&sh, real).args(["rev-parse", "--show-toplevel"])) {
        Ok(top) => top,
        Err(e) => {
            // Known by its content then, which misses nothing; but a work
            // tree git cannot read (no git, "dubious ownership") is not
            // refused when dirty, nor named by its commit: say so.
            if real.join(".git").exists() {
                eprintln!(
                    "warning: {} is a git work tree, but git cannot read it ({e:#}); it is \
                     known by its content instead",
                    real.display()
                );
            }
            return None;
        }
    };
    if fs::canonicalize(&top).ok()? != real {
        return None;
    }
    cmd::read(git(&sh, real).args(["rev-parse", "--verify", "HEAD^{commit}"])).ok()
}

/// `git status` of the work tree at `real`: tracked changes and untracked
/// files that are not ignored, one `XY path` each.
fn git_changes(real: &Path) -> Result<Vec<String>> {
    let sh = cmd::shell()?;
    let out = cmd::output(git(&sh, real).args([
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=normal",
    ]))?;
    let mut changes = Vec::new();
    let mut fields = out.stdout.split(|&b| b == 0).filter(|f| !f.is_empty());
    while let Some(f) = fields.next() {
        // A rename or copy is followed by its source path.
        if f.iter().take(2).any(|c| matches!(c, b'R' | b'C')) {
            fields.next();
        }
        changes.push(String::from_utf8_lossy(f).into_owned());
    }
    Ok(changes)
}

fn dirty_message(dir: &Path, changes: &[String]) -> String {
    let mut quoted: Vec<String> = changes
        .iter()
        .take(QUOTED_CHANGES)
        .map(|c| format!("    {c}"))
        .collect();
    if changes.len() > QUOTED_CHANGES {
        quoted.push(format!("    (and {} more)", changes.len() - QUOTED_CHANGES));
    }
    format!(
        "kernel source dir {} is a git work tree with uncommitted changes or untracked files, \
         so its commit does not name what would be built:\n{}\n\
         commit them (or stash, or add them to .gitignore), or build the tree as it is, known by \
         its content: set `kernel.source.allow_dirty = true` in the profile, or pass \
         `--set kernel.source.allow_dirty=true`",
        dir.display(),
        quoted.join("\n")
    )
}

/// The hash of a dirty work tree's changes: `git diff --binary HEAD` (every
/// tracked change, staged or not, mode changes included) and the untracked
/// files that are not ignored, recorded as the tree walk records them.
fn git_dirty_content(real: &Path, commit: &str) -> Result<String> {
    let sh = cmd::shell()?;
    let diff = cmd::output(git(&sh, real).args([
        "diff",
        "--binary",
        "--full-index",
        "--no-ext-diff",
        "--no-textconv",
        "--no-color",
        "--no-renames",
        "--ignore-submodules=none",
        "HEAD",
    ]))?;
    let untracked =
        cmd::output(git(&sh, real).args(["ls-files", "-z", "--others", "--exclude-standard"]))?;
    let mut h = Sha256::new();
    h.update(b"zfcpdump git dirty v1\0");
    h.update(commit.as_bytes());
    h.update(b"\0");
    h.update((diff.stdout.len() as u64).to_le_bytes());
    h.update(&diff.stdout);
    let mut paths: Vec<&[u8]> = untracked
        .stdout
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .collect();
    paths.sort();
    for p in paths {
        // A nested repository is listed as its directory: walked whole.
        for entry in walk(&real.join(OsStr::from_bytes(p))) {
            let entry = entry?;
            let path = entry.path();
            let meta = entry
                .metadata()
                .with_context(|| format!("cannot stat {}", path.display()))?;
            let kind = Kind::of(&meta);
            let hash = match kind {
                Kind::File => Some(hash_file(path)?),
                _ => None,
            };
            let rel = path.strip_prefix(real).unwrap_or(path);
            let rel = rel.as_os_str().as_bytes();
            record(&mut h, rel, kind, &Stat::of(&meta), path, hash)?;
        }
    }
    Ok(util::hex(&h.finalize()))
}

/// A walk of `root` in file name order, `.git` left out; it yields `root`
/// itself first.
fn walk(root: &Path) -> walkdir::FilterEntry<walkdir::IntoIter, fn(&walkdir::DirEntry) -> bool> {
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
enum Kind {
    File = b'f',
    Symlink = b'l',
    Dir = b'd',
    /// A fifo, a socket, a device: by its name only.
    Other = b'o',
}

impl Kind {
    fn of(m: &fs::Metadata) -> Kind {
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

/// Adds one entry's record to a tree hash: its relative path and NUL, its
/// kind, then for a file its executable bit, size and content hash, for a
/// symlink its target and NUL. A path holds no NUL, so no two trees share
/// a stream of records.
fn record(
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

fn hash_file(path: &Path) -> Result<Hash> {
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
struct Stat {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    dev: u64,
    mode: u32,
}

impl Stat {
    fn of(m: &fs::Metadata) -> Stat {
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
fn stat_cache_path(cache: &Path, real: &Path) -> PathBuf {
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
struct WalkStats {
    files: usize,
    hashed_bytes: u64,
    hashed: usize,
    from_cache: usize,
    /// Whether the tree's hash was the cache's (every entry as cached).
    whole_from_cache: bool,
    took: Duration,
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
struct TreeWalk {
    cache_file: PathBuf,
    /// See [`RACY`]; tests shorten it.
    racy: Duration,
}

impl TreeWalk {
    /// The content hash of the tree at `real` (a canonical path).
    fn hash(&self, real: &Path) -> Result<(String, WalkStats)> {
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
            // A link is known by its target's name: one that leaves the
            // tree would hide an edit of what it points to.
            if meta.file_type().is_symlink()
                && let Ok(to) = fs::canonicalize(entry.path())
                && !to.starts_with(real)
            {
                bail!(
                    "kernel source tree {}: {} links to {}, outside the tree: an edit there \
                     would not change the tree's identity; copy the tree without such links \
                     (cp -rL), or make it a git work tree",
                    real.display(),
                    entry.path().display(),
                    to.display()
                );
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A small source tree.
    fn tree(at: &Path) {
        fs::create_dir_all(at.join("kernel")).unwrap();
        fs::write(at.join("Makefile"), "VERSION = 6\nPATCHLEVEL = 1\n").unwrap();
        fs::write(at.join("kernel/fork.c"), "int fork;\n").unwrap();
        fs::write(at.join(".gitignore"), "*.o\n").unwrap();
    }

    /// Runs git in `dir` with a fixed identity and no user configuration.
    fn git_in(dir: &Path, args: &[&str]) {
        let o = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args([
                "-c",
                "commit.gpgsign=false",
                "-c",
                "init.defaultBranch=main",
            ])
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {o:?}");
    }

    fn commit_all(dir: &Path, msg: &str) {
        git_in(dir, &["add", "-A"]);
        git_in(dir, &["commit", "-q", "--allow-empty", "-m", msg]);
    }

    fn head(dir: &Path) -> String {
        let o = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    }

    fn id(dir: &Path, cache: &Path) -> DirId {
        identify_dir(dir, false, cache).unwrap()
    }

    /// A walk whose fresh files are cached too (tests cannot wait for
    /// files to age; they sleep past the clock's tick instead).
    fn walk_now(real: &Path, cache: &Path) -> (String, WalkStats) {
        TreeWalk {
            cache_file: stat_cache_path(cache, real),
            racy: Duration::ZERO,
        }
        .hash(real)
        .unwrap()
    }

    fn tick() {
        std::thread::sleep(Duration::from_millis(20));
    }

    #[test]
    fn a_plain_tree_is_known_by_content_and_edits_change_it() {
        let d = tempfile::tempdir().unwrap();
        let (src, cache) = (d.path().join("linux"), d.path().join("cache"));
        tree(&src);
        let a = id(&src, &cache);
        assert_eq!(a.identity, Identity::TreeContent);
        assert_eq!(a.git_commit, None);
        assert!(a.content_sha256.is_some());
        assert_eq!(id(&src, &cache), a);

        // Appending VERSION/PATCHLEVEL lines to the Makefile.
        let mk = fs::read_to_string(src.join("Makefile")).unwrap();
        fs::write(src.join("Makefile"), format!("{mk}VERSION = 7\n")).unwrap();
        let b = id(&src, &cache);
        assert_ne!(a, b);
        // A new .c file.
        fs::write(src.join("kernel/new.c"), "int x;\n").unwrap();
        let c = id(&src, &cache);
        assert_ne!(b, c);
        // An empty file, an executable bit, a symlink: each counts.
        fs::write(src.join("kernel/empty.h"), "").unwrap();
        let e = id(&src, &cache);
        assert_ne!(c, e);
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(src.join("kernel/new.c"), fs::Permissions::from_mode(0o755)).unwrap();
        let x = id(&src, &cache);
        assert_ne!(e, x);
        std::os::unix::fs::symlink("fork.c", src.join("kernel/l.c")).unwrap();
        let l = id(&src, &cache);
        assert_ne!(x, l);
        fs::remove_file(src.join("kernel/l.c")).unwrap();
        std::os::unix::fs::symlink("new.c", src.join("kernel/l.c")).unwrap();
        assert_ne!(id(&src, &cache), l);
    }

    /// Found in review: a link out of the tree counted by its name only,
    /// so an edit of its target went unseen. Such a tree is refused; a
    /// link that stays inside (even by an absolute path) is fine.
    #[test]
    fn a_link_out_of_the_tree_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let (src, cache) = (d.path().join("linux"), d.path().join("cache"));
        tree(&src);
        std::os::unix::fs::symlink(src.join("Makefile"), src.join("kernel/abs")).unwrap();
        id(&src, &cache);
        fs::write(d.path().join("site_defconfig"), "CONFIG_A=y\n").unwrap();
        std::os::unix::fs::symlink("../../site_defconfig", src.join("kernel/site")).unwrap();
        let e = identify_dir(&src, false, &cache).unwrap_err().to_string();
        assert!(
            e.contains("links to") && e.contains("outside the tree"),
            "{e}"
        );
    }

    #[test]
    fn a_copy_elsewhere_is_the_same_source_and_touch_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache");
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        tree(&a);
        tree(&b);
        let ia = id(&a, &cache);
        assert_eq!(ia, id(&b, &cache));
        tick();
        let f = fs::File::options()
            .write(true)
            .open(a.join("kernel/fork.c"))
            .unwrap();
        f.set_modified(SystemTime::now()).unwrap();
        drop(f);
        assert_eq!(id(&a, &cache), ia);
        // `.git` is not content.
        fs::create_dir_all(b.join(".git")).unwrap();
        fs::write(b.join(".git/HEAD"), "junk").unwrap();
        assert_eq!(id(&b, &cache), ia);
    }

    #[test]
    fn the_stat_cache_serves_unchanged_files_and_ctime_catches_a_rewrite() {
        let d = tempfile::tempdir().unwrap();
        let (src, cache) = (d.path().join("linux"), d.path().join("cache"));
        tree(&src);
        let real = fs::canonicalize(&src).unwrap();
        tick();
        let (a, s) = walk_now(&real, &cache);
        assert_eq!((s.files, s.hashed, s.from_cache), (3, 3, 0));
        let (again, s) = walk_now(&real, &cache);
        assert_eq!(again, a);
        assert_eq!((s.files, s.hashed, s.from_cache), (3, 0, 3));
        assert!(s.whole_from_cache);

        // Same length, mtime put back: size and mtime are as cached.
        let f = real.join("kernel/fork.c");
        let mtime = fs::metadata(&f).unwrap().modified().unwrap();
        tick();
        fs::write(&f, "int FORK;\n").unwrap();
        let h = fs::File::options().write(true).open(&f).unwrap();
        h.set_modified(mtime).unwrap();
        drop(h);
        assert_eq!(fs::metadata(&f).unwrap().modified().unwrap(), mtime);
        let (b, s) = walk_now(&real, &cache);
        assert_ne!(b, a, "a rewrite keeping size and mtime went unnoticed");
        assert_eq!((s.hashed, s.from_cache), (1, 2));
        assert!(!s.whole_from_cache);
    }

    /// A racy entry is not cached, and the tree's hash, which counts it,
    /// is not either: were it, the tree without that file would take it.
    #[test]
    fn a_racy_entry_keeps_the_tree_hash_out_of_the_cache() {
        let d = tempfile::tempdir().unwrap();
        let (src, cache) = (d.path().join("linux"), d.path().join("cache"));
        tree(&src);
        let real = fs::canonicalize(&src).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        fs::write(real.join("kernel/fresh.c"), "int f;\n").unwrap();
        let walk = TreeWalk {
            cache_file: stat_cache_path(&cache, &real),
            racy: Duration::from_millis(150),
        };
        let (a, s) = walk.hash(&real).unwrap();
        assert_eq!(s.hashed, 4);
        fs::remove_file(real.join("kernel/fresh.c")).unwrap();
        let (b, s) = walk.hash(&real).unwrap();
        assert_ne!(a, b, "the tree's hash of a racy walk was reused");
        assert_eq!((s.hashed, s.from_cache), (0, 3));
    }

    #[test]
    fn fresh_files_are_not_trusted_from_the_stat_cache() {
        let d = tempfile::tempdir().unwrap();
        let (src, cache) = (d.path().join("linux"), d.path().join("cache"));
        tree(&src);
        let real = fs::canonicalize(&src).unwrap();
        let walk = TreeWalk {
            cache_file: stat_cache_path(&cache, &real),
            racy: RACY,
        };
        let (a, _) = walk.hash(&real).unwrap();
        let (b, s) = walk.hash(&real).unwrap();
        assert_eq!(a, b);
        assert_eq!((s.hashed, s.from_cache), (3, 0));
    }

    #[test]
    fn a_broken_stat_cache_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let (src, cache) = (d.path().join("linux"), d.path().join("cache"));
        tree(&src);
        let real = fs::canonicalize(&src).unwrap();
        tick();
        let (a, _) = walk_now(&real, &cache);
        let file = stat_cache_path(&cache, &real);
        let data = fs::read(&file).unwrap();
        fs::write(&file, &data[..data.len() - 1]).unwrap();
        let (b, s) = walk_now(&real, &cache);
        assert_eq!((a, s.from_cache), (b, 0));
    }

    #[test]
    fn a_tree_inside_another_repository_is_known_by_content() {
        let d = tempfile::tempdir().unwrap();
        let (outer, cache) = (d.path().join("pkg"), d.path().join("cache"));
        let src = outer.join("linux");
        tree(&src);
        fs::write(outer.join("debian.txt"), "1\n").unwrap();
        git_in(&outer, &["init", "-q"]);
        commit_all(&outer, "one");
        let a = id(&src, &cache);
        assert_eq!(a.identity, Identity::TreeContent);
        assert_eq!(a.git_commit, None);
        // An unrelated commit in the outer repository.
        fs::write(outer.join("debian.txt"), "2\n").unwrap();
        commit_all(&outer, "two");
        assert_eq!(id(&src, &cache), a);
        // Nor does its being dirty matter.
        fs::write(outer.join("debian.txt"), "3\n").unwrap();
        assert_eq!(id(&src, &cache), a);
    }

    #[test]
    fn a_clean_work_tree_is_known_by_its_commit() {
        let d = tempfile::tempdir().unwrap();
        let (src, cache) = (d.path().join("linux"), d.path().join("cache"));
        tree(&src);
        git_in(&src, &["init", "-q"]);
        commit_all(&src, "one");
        // Ignored files do not make it dirty.
        fs::write(src.join("kernel/fork.o"), "obj").unwrap();
        let a = id(&src, &cache);
        assert_eq!(
            a,
            DirId {
                identity: Identity::GitCommit,
                git_commit: Some(head(&src)),
                content_sha256: None,
            }
        );
        // Reached through a symlink, it is the same top.
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&src, &link).unwrap();
        assert_eq!(id(&link, &cache), a);
    }

    #[test]
    fn a_dirty_work_tree_is_refused_unless_allowed() {
        let d = tempfile::tempdir().unwrap();
        let (src, cache) = (d.path().join("linux"), d.path().join("cache"));
        tree(&src);
        git_in(&src, &["init", "-q"]);
        commit_all(&src, "one");
        let clean = id(&src, &cache);
        let mk = fs::read_to_string(src.join("Makefile")).unwrap();
        fs::write(src.join("Makefile"), format!("{mk}VERSION = 7\n")).unwrap();
        let e = identify_dir(&src, false, &cache).unwrap_err().to_string();
        assert!(e.contains(&src.display().to_string()), "{e}");
        assert!(e.contains("M Makefile"), "{e}");
        assert!(e.contains("kernel.source.allow_dirty = true"), "{e}");
        assert!(e.contains("--set kernel.source.allow_dirty=true"), "{e}");

        let a = identify_dir(&src, true, &cache).unwrap();
        assert_eq!(a.identity, Identity::GitDirtyContent);
        assert_eq!(a.git_commit, clean.git_commit);
        assert!(a.content_sha256.is_some());
        assert_eq!(identify_dir(&src, true, &cache).unwrap(), a);
        // A further edit of a tracked file changes it.
        fs::write(src.join("Makefile"), format!("{mk}VERSION = 8\n")).unwrap();
        let b = identify_dir(&src, true, &cache).unwrap();
        assert_ne!(a, b);
        // So do an untracked file and its edit.
        fs::write(src.join("kernel/new.c"), "int x;\n").unwrap();
        let e = identify_dir(&src, false, &cache).unwrap_err().to_string();
        assert!(e.contains("?? kernel/new.c"), "{e}");
        let c = identify_dir(&src, true, &cache).unwrap();
        assert_ne!(b, c);
        fs::write(src.join("kernel/new.c"), "int y;\n").unwrap();
        assert_ne!(identify_dir(&src, true, &cache).unwrap(), c);
    }

    #[test]
    fn an_untracked_file_alone_makes_a_tree_dirty() {
        let d = tempfile::tempdir().unwrap();
        let (src, cache) = (d.path().join("linux"), d.path().join("cache"));
        tree(&src);
        git_in(&src, &["init", "-q"]);
        commit_all(&src, "one");
        fs::write(src.join("kernel/new.c"), "int x;\n").unwrap();
        let e = identify_dir(&src, false, &cache).unwrap_err().to_string();
        assert!(e.contains("?? kernel/new.c"), "{e}");
    }
}
