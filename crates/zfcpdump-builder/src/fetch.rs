//! `fetch`: brings everything a build needs into the local caches, so that
//! `cargo xtask dist --offline` then works with no network. With
//! `--build-only`, what one profile's build needs and nothing else;
//! without, the lab adds what its tests need (the lab crate's own `fetch`).

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;

use crate::agent;
use crate::cmd::{self, Cmd, Shell, cmd};
use crate::profile::ProfileArgs;
use crate::{dist, provision, util};

#[derive(Args, Clone, Debug)]
pub struct FetchArgs {
    /// Fail listing missing host packages instead of installing them
    #[arg(long)]
    pub no_provision: bool,
    /// Only what a build of the profile needs (its host packages and kernel
    /// source package, the crates it compiles), nothing for the tests
    #[arg(long)]
    pub build_only: bool,
    #[command(flatten)]
    pub profile: ProfileArgs,
}

/// Fetches what `dist` needs: with `--build-only`, of the profile alone
/// (and then the lab fetches nothing); else of every profile CI builds,
/// with the fuzz targets' crates.
pub fn run(args: &FetchArgs) -> Result<()> {
    let root = util::project_root();
    // Host packages, the kernel source tarball and toolchain components.
    if args.build_only {
        let p = args.profile.load()?;
        eprintln!("[fetch] what a build of profile {} needs", p.name);
        dist::prerequisites(&p, !args.no_provision)?;
    } else {
        provision::ensure_all(!args.no_provision)?;
    }

    let sh = cmd::shell()?;
    sh.change_dir(&root);
    let src = agent::rust_src().context("the rust-src component is missing")?;
    let [workspace, std] = build_crates(&sh, &src, false);
    eprintln!("[fetch] crates of the workspace (Cargo.lock)");
    cmd::run(workspace)?;
    if args.build_only {
        eprintln!(
            "[fetch] crates that build-std needs for std ({})",
            src.display()
        );
        return cmd::run(std);
    }
    let cargo = env!("CARGO");

    eprintln!("[fetch] crates of the fuzz targets (fuzz/Cargo.lock)");
    cmd::run(cmd!(
        sh,
        "{cargo} fetch --locked --manifest-path fuzz/Cargo.toml"
    ))?;

    eprintln!(
        "[fetch] crates that build-std needs for std ({})",
        src.display()
    );
    cmd::run(std)
}

/// The fetches of the crates a build compiles, in `sh`'s directory (the
/// project): the workspace's (its Cargo.lock), then those build-std needs
/// for std (the Cargo.lock of rust-src at `src`: -Zbuild-std resolves std's
/// own dependencies from it). With `offline`, they only check that every
/// crate is in cargo's cache: the preflight of `dist --offline`.
pub(crate) fn build_crates<'a>(sh: &'a Shell, src: &Path, offline: bool) -> [Cmd<'a>; 2] {
    let cargo = env!("CARGO");
    let library = src.join("library/Cargo.toml");
    let offline = offline.then_some("--offline");
    [
        cmd!(sh, "{cargo} fetch {offline...} --locked"),
        cmd!(sh, "{cargo} fetch {offline...} --manifest-path {library}")
            .env("RUSTC_BOOTSTRAP", "1"),
    ]
}
