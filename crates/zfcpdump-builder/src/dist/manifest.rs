//! `dist/<profile>/manifest.json`: what was built, from what, with what,
//! and the memory budget.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::Built;
use crate::budget::Table;
use crate::cmd::{self, cmd};
use crate::initramfs::EntrySize;
use crate::kernel;
use crate::profile::Profile;
use crate::sign::SignRecord;
use crate::util;

/// `dist/<profile>/manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub profile: serde_json::Value,
    pub kernel: KernelInfo,
    pub toolchain: Toolchain,
    pub artifacts: Vec<Artifact>,
    pub agent: Artifact,
    pub initramfs: InitramfsInfo,
    pub budget: Table,
    /// The appended signature of zfcpdump.image, for a profile with [sign].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign: Option<SignRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KernelInfo {
    pub release: String,
    /// Tarball sha256; for a source dir `git <commit>`, `git <commit>
    /// dirty content sha256 <hash>` or `dir content sha256 <hash>`
    /// (manifests older than the identity: `unpinned <release>`).
    pub source: String,
    pub source_pinned: bool,
    /// What the source is known by: `tarball-sha256`, `git-commit`,
    /// `git-dirty-content` or `tree-content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_identity: Option<kernel::Identity>,
    pub config_sha256: String,
    pub footprint: u64,
    /// The initramfs linked into the image, when it is built in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded_initramfs: Option<kernel::Embedded>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Toolchain {
    pub cross_gcc: String,
    pub rustc: String,
    pub cargo: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Artifact {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitramfsInfo {
    /// Linked into zfcpdump.image (no zfcpdump.rd is shipped), or not.
    #[serde(default)]
    pub builtin: bool,
    pub compression: String,
    pub cpio_size: u64,
    pub unpacked_size: u64,
    pub entries: Vec<EntrySize>,
}

/// The manifest of a run's stage records.
pub(super) fn manifest(root: &Path, profile: &Profile, b: &Built) -> Result<Manifest> {
    let artifact = |name: &str, path: &Path| -> Result<Artifact> {
        let data = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Artifact {
            name: name.into(),
            size: data.len() as u64,
            sha256: util::sha256_bytes(&data),
        })
    };
    let src = &b.kernel.source;
    let source = source_text(src, &b.kernel.release);
    // Paths relative to the project, so that the manifest does not depend
    // on where the checkout is.
    let mut p = serde_json::to_value(profile)?;
    if let Some(files) = p.get_mut("files").and_then(|f| f.as_array_mut()) {
        for f in files {
            if let Some(s) = f.as_str() {
                let rel = Path::new(s).strip_prefix(root).unwrap_or(Path::new(s));
                *f = serde_json::Value::String(rel.display().to_string());
            }
        }
    }
    Ok(Manifest {
        profile: p,
        kernel: KernelInfo {
            release: b.kernel.release.clone(),
            source,
            source_pinned: src.pinned,
            // A record from before the identity was kept: a tarball is known
            // by its sha256 all the same.
            source_identity: src.identity.or(src
                .sha256
                .is_some()
                .then_some(kernel::Identity::TarballSha256)),
            config_sha256: b.kernel.config_sha256.clone(),
            footprint: b.kernel.footprint,
            embedded_initramfs: b.kernel.embedded.clone(),
        },
        toolchain: Toolchain {
            cross_gcc: first_line(
                &crate::kernel::compiler::cc_program(&profile.kernel),
                "--version",
            ),
            rustc: b.agent.rustc.clone(),
            cargo: first_line(env!("CARGO"), "-V"),
        },
        artifacts: b
            .files()
            .iter()
            .map(|(name, path)| artifact(name, path))
            .collect::<Result<_>>()?,
        agent: artifact("zfcpdump-agent", &b.agent.binary)?,
        initramfs: InitramfsInfo {
            builtin: b.kernel.embedded.is_some(),
            compression: b.initramfs.compression.to_string(),
            cpio_size: b.initramfs.cpio_size,
            unpacked_size: b.initramfs.unpacked_size,
            entries: b.initramfs.entries.clone(),
        },
        budget: b.budget.clone(),
        sign: b.signed.clone(),
    })
}

/// The manifest's name of the kernel source: the tarball's sha256, or what
/// the source dir is known by.
fn source_text(src: &kernel::SourceId, release: &str) -> String {
    match (&src.sha256, src.identity, &src.git_commit) {
        (Some(sum), _, _) => sum.clone(),
        (None, Some(_), _) => src.key(),
        // A record older than the identity.
        (None, None, Some(commit)) => format!("git {commit}"),
        (None, None, None) => format!("unpinned {release}"),
    }
}

/// The first line of `program arg` (a tool's version), or "unknown".
fn first_line(program: &str, arg: &str) -> String {
    cmd::shell()
        .and_then(|sh| cmd::first_line(cmd!(sh, "{program} {arg}")))
        .unwrap_or_else(|_| "unknown".into())
}

/// A manifest written by `dist`.
pub(super) fn read_manifest(path: &Path) -> Result<Manifest> {
    let data = fs::read(path).with_context(|| {
        format!(
            "cannot read {}: run `cargo xtask dist` first",
            path.display()
        )
    })?;
    serde_json::from_slice(&data).with_context(|| format!("{} is not a manifest", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::{Identity, SourceId};

    fn dir_source(identity: Option<Identity>, commit: Option<&str>) -> SourceId {
        SourceId {
            kind: "dir".into(),
            path: "/src/linux".into(),
            sha256: None,
            pinned: false,
            git_commit: commit.map(Into::into),
            identity,
            content_sha256: Some("c0ffee".into()),
        }
    }

    /// A source dir is named by what it is known by; a commit only when
    /// the dir is the top of its work tree.
    #[test]
    fn the_source_is_named_by_its_identity() {
        let text = |id, commit| source_text(&dir_source(id, commit), "6.1.0");
        assert_eq!(
            text(Some(Identity::TreeContent), None),
            "dir content sha256 c0ffee"
        );
        assert_eq!(text(Some(Identity::GitCommit), Some("abc")), "git abc");
        assert_eq!(
            text(Some(Identity::GitDirtyContent), Some("abc")),
            "git abc dirty content sha256 c0ffee"
        );
        assert_eq!(text(None, None), "unpinned 6.1.0");
        let tarball = SourceId {
            kind: "tarball".into(),
            sha256: Some("5e11".into()),
            identity: Some(Identity::TarballSha256),
            content_sha256: None,
            ..dir_source(None, None)
        };
        assert_eq!(source_text(&tarball, "6.1.0"), "5e11");
    }
}
