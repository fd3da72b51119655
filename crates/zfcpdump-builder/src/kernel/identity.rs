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
//!   commit): its content (`content.rs`, with its stat cache).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cmd::{self, Cmd, cmd};
use crate::util;

mod content;

use content::{Kind, RACY, Stat, TreeWalk, hash_file, record, stat_cache_path, stays_inside, walk};

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
            stays_inside(real, path, &meta)?;
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

#[cfg(test)]
mod tests;
