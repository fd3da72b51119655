//! `vendor`: every crate a product build compiles, in one directory that
//! ships inside a source package, and the cargo configuration that builds
//! from it. The crates are the workspace's (Cargo.lock: `cargo xtask`
//! itself compiles them) and those build-std compiles for the agent's std
//! (the Cargo.lock of the toolchain's rust-src), vendored together with
//! `cargo vendor --sync`.
//!
//! The configuration is a marked block in the project's
//! `.cargo/config.toml`: cargo reads that file for `cargo xtask` and for
//! every cargo the builder runs, with no option or variable to pass on.
//! `--remove` takes the block and the directory out again.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::agent;
use crate::util;

#[derive(Args, Clone, Debug)]
pub struct VendorArgs {
    /// Where the crates go (default: vendor/ in the project)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Undo: drop the vendored source from .cargo/config.toml and delete
    /// the directory it names
    #[arg(long)]
    pub remove: bool,
}

/// The lines that open and close the block in `.cargo/config.toml`.
const BEGIN: &str = "# BEGIN zfcpdump vendored crates (cargo xtask vendor; --remove undoes it)";
const END: &str = "# END zfcpdump vendored crates";
/// A file in the directory that says `vendor` wrote it, so that it only
/// ever replaces or deletes its own directory.
const MARKER: &str = ".zfcpdump-vendor";
/// The name of the replacement source in cargo's configuration.
const SOURCE_NAME: &str = "zfcpdump-vendored";

/// `cargo xtask vendor`.
pub fn run(args: &VendorArgs) -> Result<()> {
    let root = util::project_root();
    let config = root.join(".cargo/config.toml");
    if args.remove {
        return remove(&config, args.dir.as_deref());
    }
    let dir = match &args.dir {
        Some(d) => std::path::absolute(d)?,
        None => root.join("vendor"),
    };
    if dir.exists() && !dir.join(MARKER).is_file() {
        bail!(
            "{} exists and was not written by `cargo xtask vendor`: choose another --dir, or \
             move it away",
            dir.display()
        );
    }
    // Without rust-src, only the workspace's: enough for a toolchain that
    // has the agent's std prebuilt (agent::Std::Toolchain).
    let src = agent::rust_src();
    if src.is_none() {
        eprintln!(
            "[vendor] the toolchain in use has no rust-src: only the workspace's crates, so \
             only profiles whose agent std is prebuilt (agent.target = {:?} with the target's \
             std installed) build from this directory",
            agent::GNU_TARGET
        );
    }
    // The block goes before vendoring: cargo vendor must still see
    // crates.io, not a replacement of a previous run.
    let text =
        fs::read_to_string(&config).with_context(|| format!("cannot read {}", config.display()))?;
    let (bare, _) = without_block(&text, &config)?;
    util::write_atomic(&config, bare.as_bytes())?;

    // Into a sibling, then renamed: an interrupted run leaves the old
    // directory (or none), never half of one.
    let parent = dir.parent().context("--dir has no parent directory")?;
    fs::create_dir_all(parent)?;
    let staged = parent.join(format!(".vendor-{}", std::process::id()));
    let _cleanup = Staged(staged.clone());
    cargo_vendor(&root, src.as_deref(), &staged)?;
    let std_note = match &src {
        Some(src) => format!("rust-src: {}\n", src.display()),
        None => "rust-src: none (the workspace's crates only)\n".to_string(),
    };
    fs::write(staged.join(MARKER), std_note)?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    fs::rename(&staged, &dir)
        .with_context(|| format!("cannot move the crates to {}", dir.display()))?;

    let shown = match dir.strip_prefix(&root) {
        Ok(rel) => rel.display().to_string(),
        Err(_) => dir.display().to_string(),
    };
    util::write_atomic(&config, with_block(&bare, &shown).as_bytes())?;
    let (crates, bytes) = size(&dir)?;
    eprintln!(
        "[vendor] {crates} crates, {:.1} MiB in {}; {} now builds from it.\n\
         [vendor] Build with no network: cargo xtask dist --offline. Undo: cargo xtask vendor \
         --remove",
        bytes as f64 / (1 << 20) as f64,
        dir.display(),
        config.display()
    );
    Ok(())
}

/// `cargo vendor` of the workspace's crates, and of std's (those of the
/// Cargo.lock of rust-src at `src`) when there is a rust-src, into `into`.
fn cargo_vendor(root: &Path, src: Option<&Path>, into: &Path) -> Result<()> {
    let mut vendor = std::process::Command::new(env!("CARGO"));
    vendor
        .current_dir(root)
        .args(["vendor", "--locked", "--versioned-dirs", "--quiet"]);
    if let Some(src) = src {
        eprintln!(
            "[vendor] the workspace's crates (Cargo.lock) and build-std's for std ({})",
            src.display()
        );
        vendor.arg("--sync").arg(src.join("library/Cargo.toml"));
    }
    let status = vendor
        .arg(into)
        // std's own Cargo.toml uses unstable cargo features, as build-std
        // does when it reads it.
        .env("RUSTC_BOOTSTRAP", "1")
        .stdout(std::process::Stdio::null())
        .status()
        .context("cannot run cargo vendor")?;
    if !status.success() {
        bail!(
            "cargo vendor failed ({status}); its messages are above (it needs the network, or \
             the crates in cargo's own cache: `cargo xtask fetch`)"
        );
    }
    Ok(())
}

/// The configuration `bare` (without a block) with the block that makes
/// cargo take crates.io's crates from `dir` (as the config file shows it)
/// appended, a blank line before it.
fn with_block(bare: &str, dir: &str) -> String {
    let block = format!(
        "{BEGIN}\n[source.crates-io]\nreplace-with = \"{SOURCE_NAME}\"\n\n\
         [source.{SOURCE_NAME}]\n# Relative to the project (the parent of .cargo/).\n\
         directory = {dir:?}\n{END}\n"
    );
    let sep = if bare.is_empty() || bare.ends_with("\n\n") {
        ""
    } else if bare.ends_with('\n') {
        "\n"
    } else {
        "\n\n"
    };
    format!("{bare}{sep}{block}")
}

/// The staging directory, removed when `run` ends whichever way (after
/// the rename, it is gone already).
struct Staged(PathBuf);

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The crates (top directories) in `dir` and the bytes of all its files.
fn size(dir: &Path) -> Result<(usize, u64)> {
    let mut crates = 0;
    let mut bytes = 0;
    for e in walkdir::WalkDir::new(dir).min_depth(1) {
        let e = e?;
        if e.depth() == 1 && e.file_type().is_dir() {
            crates += 1;
        } else if e.file_type().is_file() {
            bytes += e.metadata()?.len();
        }
    }
    Ok((crates, bytes))
}

/// `text` without the block, and the directory the block named.
fn without_block(text: &str, config: &Path) -> Result<(String, Option<PathBuf>)> {
    let Some(start) = text.find(BEGIN) else {
        return Ok((text.to_string(), None));
    };
    let Some(end) = text[start..].find(END).map(|e| start + e + END.len()) else {
        bail!(
            "{}: the vendored crates' block has no `{END}` line: fix the file by hand",
            config.display()
        );
    };
    let dir = text[start..end]
        .lines()
        .find_map(|l| l.strip_prefix("directory = "))
        .and_then(|v| serde_json::from_str::<String>(v).ok())
        .map(PathBuf::from);
    let after = text[end..].strip_prefix('\n').unwrap_or(&text[end..]);
    let mut out = format!("{}{after}", &text[..start]);
    while out.ends_with("\n\n") {
        out.pop();
    }
    Ok((out, dir))
}

/// `--remove`: the block out of `config`, and the directory it named (or
/// `dir`) deleted if `vendor` wrote it.
fn remove(config: &Path, dir: Option<&Path>) -> Result<()> {
    let text =
        fs::read_to_string(config).with_context(|| format!("cannot read {}", config.display()))?;
    let (bare, named) = without_block(&text, config)?;
    let project = config
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let dir = dir
        .map(Path::to_path_buf)
        .or(named.map(|d| project.join(d)));
    util::write_atomic(config, bare.as_bytes())?;
    match dir {
        Some(d) if d.join(MARKER).is_file() => {
            fs::remove_dir_all(&d).with_context(|| format!("cannot delete {}", d.display()))?;
            eprintln!(
                "[vendor] removed {} and its block in {}",
                d.display(),
                config.display()
            );
        }
        Some(d) if d.exists() => bail!(
            "{} was not written by `cargo xtask vendor`: left as it is",
            d.display()
        ),
        _ => eprintln!(
            "[vendor] no vendored crates configured in {}",
            config.display()
        ),
    }
    Ok(())
}

/// Whether the project builds from vendored crates (the block is in its
/// `.cargo/config.toml`): offline errors then point at `vendor`.
pub fn configured(root: &Path) -> bool {
    fs::read_to_string(root.join(".cargo/config.toml")).is_ok_and(|t| t.contains(BEGIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_comes_out_whole_and_names_its_directory() {
        let base = "[alias]\nxtask = \"run\"\n";
        let block = format!(
            "{BEGIN}\n[source.crates-io]\nreplace-with = \"x\"\ndirectory = \"vendor\"\n{END}\n"
        );
        let cfg = Path::new("c.toml");
        let (out, dir) = without_block(&format!("{base}\n{block}"), cfg).unwrap();
        assert_eq!(out, base);
        assert_eq!(dir, Some(PathBuf::from("vendor")));
        let (out, dir) = without_block(base, cfg).unwrap();
        assert_eq!((out.as_str(), dir), (base, None));
        // What `vendor` writes comes out whole again.
        let (out, dir) = without_block(&with_block(base, "vendor"), cfg).unwrap();
        assert_eq!((out.as_str(), dir), (base, Some(PathBuf::from("vendor"))));
        // A block cut short is not guessed at.
        let cut = format!("{base}{BEGIN}\n[source.crates-io]\n");
        assert!(without_block(&cut, cfg).is_err());
    }
}
