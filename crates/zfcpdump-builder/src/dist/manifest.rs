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
    /// Tarball sha256, or `git <commit>`, or `unpinned <release>`.
    pub source: String,
    pub source_pinned: bool,
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
    let source = match (&src.sha256, &src.git_commit) {
        (Some(sum), _) => sum.clone(),
        (None, Some(commit)) => format!("git {commit}"),
        (None, None) => format!("unpinned {}", b.kernel.release),
    };
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
            config_sha256: b.kernel.config_sha256.clone(),
            footprint: b.kernel.footprint,
            embedded_initramfs: b.kernel.embedded.clone(),
        },
        toolchain: Toolchain {
            cross_gcc: first_line(&format!("{}gcc", profile.kernel.cross_compile), "--version"),
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
