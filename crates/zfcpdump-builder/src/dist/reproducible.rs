//! `dist --check-reproducible`: a second build from a clean copy of the
//! sources, in another directory with its own cache, compared bit for bit.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::manifest::read_manifest;
use super::{DistArgs, IMAGE, MANIFEST, Manifest};
use crate::cmd::{self, cmd};
use crate::profile::ProfileArgs;
use crate::util;

/// A second build from a clean copy of the sources in another directory,
/// with its own cache, must produce bit-identical artifacts: for each of
/// `dirs`, the profile and where the first build published it.
pub(super) fn check_reproducible(
    root: &Path,
    args: &DistArgs,
    dirs: &[(ProfileArgs, PathBuf)],
) -> Result<()> {
    let t = Instant::now();
    let base = util::cache_dir(root).join("repro");
    let _ = fs::remove_dir_all(&base);
    let src = base.join("src");
    eprintln!("[reproducible] copying the sources to {}", src.display());
    copy_sources(root, &src)?;
    let out = base.join("dist");
    eprintln!("[reproducible] clean build in {}", base.display());
    second_build(root, args, dirs, &base, &out)?;
    let mut diffs = Vec::new();
    let mut same = Vec::new();
    for (i, (pa, dir)) in dirs.iter().enumerate() {
        let name = pa.load()?.name;
        // The first profile went to --out-dir, the others to the copy's dist/.
        let second = if i == 0 {
            out.clone()
        } else {
            src.join("dist").join(&name)
        };
        compare(
            &name,
            &read_manifest(&dir.join(MANIFEST))?,
            &read_manifest(&second.join(MANIFEST))?,
            &mut diffs,
            &mut same,
        );
    }
    if !diffs.is_empty() {
        bail!(
            "not reproducible: the clean build in {} differs:\n{}",
            base.display(),
            diffs.join("\n")
        );
    }
    eprintln!(
        "[reproducible] ok in {}: bit-identical: {}",
        util::fmt_duration(t.elapsed()),
        same.join(", ")
    );
    let _ = fs::remove_dir_all(&base);
    Ok(())
}

/// The files git knows of (tracked, or untracked and not ignored) as they
/// are in the work tree, copied to `src`.
pub fn copy_sources(root: &Path, src: &Path) -> Result<()> {
    fs::create_dir_all(src)?;
    let sh = cmd::shell()?;
    sh.change_dir(root);
    let files = cmd::output(cmd!(
        sh,
        "git ls-files -z --cached --others --exclude-standard"
    ))
    .context("--check-reproducible needs a git checkout")?;
    for f in files.stdout.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let rel = Path::new(std::str::from_utf8(f)?);
        let from = root.join(rel);
        if !from.exists() {
            continue; // deleted in the work tree
        }
        let to = src.join(rel);
        fs::create_dir_all(to.parent().unwrap())?;
        fs::copy(&from, &to)?;
    }
    Ok(())
}

/// `cargo xtask dist` of the same profiles in the copy under `base`, with
/// its own target directory; the first profile's artifacts go to `out`.
fn second_build(
    root: &Path,
    args: &DistArgs,
    dirs: &[(ProfileArgs, PathBuf)],
    base: &Path,
    out: &Path,
) -> Result<()> {
    let src = base.join("src");
    // A profile of the project is named by its copy; one outside by itself.
    let in_copy = |arg: &str| {
        let p = crate::profile::profile_path(root, arg);
        match p.strip_prefix(root) {
            Ok(rel) => src.join(rel),
            Err(_) => p,
        }
    };
    // From the working directory of this build: `--set` paths and a
    // relative `--profile` outside the project mean what they meant here.
    let mut cmd = Command::new(env!("CARGO"));
    cmd.arg("run")
        .arg("--manifest-path")
        .arg(src.join("Cargo.toml"))
        .args([
            "--quiet",
            "--package",
            "xtask",
            "--",
            "dist",
            "--no-provision",
        ])
        .arg("--profile")
        .arg(in_copy(&dirs[0].0.profile))
        .arg("--out-dir")
        .arg(out)
        .env("CARGO_TARGET_DIR", base.join("target"))
        // A rebuild that the compile cache serves proves nothing.
        .env(crate::kernel::ccache::OFF_VAR, "off");
    for (pa, _) in &dirs[1..] {
        cmd.arg("--also-profile").arg(in_copy(&pa.profile));
    }
    for s in &args.profile.sets {
        cmd.arg("--set").arg(s);
    }
    if args.offline {
        cmd.arg("--offline").env("CARGO_NET_OFFLINE", "true");
    }
    if args.verbose {
        cmd.arg("--verbose");
    }
    let status = cmd.status().context("cannot run the second build")?;
    if !status.success() {
        bail!("the second build for --check-reproducible failed ({status})");
    }
    Ok(())
}

/// Profile `name`'s manifests of the two builds: each artifact (and the
/// agent) into `diffs` or `same`.
fn compare(
    name: &str,
    a: &Manifest,
    b: &Manifest,
    diffs: &mut Vec<String>,
    same: &mut Vec<String>,
) {
    let names = |m: &Manifest| {
        m.artifacts
            .iter()
            .map(|a| a.name.clone())
            .collect::<Vec<_>>()
    };
    if names(a) != names(b) {
        diffs.push(format!(
            "  {name}: artifacts {:?} vs {:?}",
            names(a),
            names(b)
        ));
    }
    // A signed image: the unsigned one must match on its own too.
    if let (Some(x), Some(y)) = (&a.sign, &b.sign) {
        if x.unsigned_sha256 != y.unsigned_sha256 {
            diffs.push(format!(
                "  {name} unsigned {IMAGE}: sha256 {} vs {}",
                x.unsigned_sha256, y.unsigned_sha256
            ));
        }
    }
    for (x, y) in a
        .artifacts
        .iter()
        .chain([&a.agent])
        .zip(b.artifacts.iter().chain([&b.agent]))
    {
        if x != y {
            diffs.push(format!(
                "  {name} {}: {} bytes sha256 {} vs {} bytes sha256 {}",
                x.name, x.size, x.sha256, y.size, y.sha256
            ));
        } else {
            same.push(format!("{name} {} ({})", x.name, &x.sha256[..16]));
        }
    }
}
