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
    let build_std = if args.build_only {
        let p = args.profile.load()?;
        eprintln!("[fetch] what a build of profile {} needs", p.name);
        dist::prerequisites(&p, !args.no_provision)?;
        agent::std_for(&p.agent.target) == agent::Std::Build
    } else {
        provision::ensure_all(!args.no_provision)?;
        true
    };

    let sh = cmd::shell()?;
    sh.change_dir(&root);
    eprintln!("[fetch] crates of the workspace (Cargo.lock)");
    cmd::run(workspace_crates(&sh, false))?;
    if !args.build_only {
        let cargo = env!("CARGO");
        eprintln!("[fetch] crates of the fuzz targets (fuzz/Cargo.lock)");
        cmd::run(cmd!(
            sh,
            "{cargo} fetch --locked --manifest-path fuzz/Cargo.toml"
        ))?;
    }
    if !build_std {
        return Ok(());
    }
    let src = agent::rust_src().context("the rust-src component is missing")?;
    eprintln!(
        "[fetch] crates that build-std needs for std ({})",
        src.display()
    );
    cmd::run(std_crates(&sh, &src, false))
}

/// The fetch of the workspace's crates (its Cargo.lock), in `sh`'s
/// directory (the project). With `offline`, it only checks that every
/// crate is there (cargo's cache, or the vendored directory): the
/// preflight of `dist --offline`.
pub(crate) fn workspace_crates(sh: &Shell, offline: bool) -> Cmd<'_> {
    let cargo = env!("CARGO");
    let offline = offline.then_some("--offline");
    cmd!(sh, "{cargo} fetch {offline...} --locked")
}

/// The fetch of the crates build-std compiles for std: those of the
/// Cargo.lock of rust-src at `src` (-Zbuild-std resolves std's own
/// dependencies from it). `offline` as for [`workspace_crates`].
pub(crate) fn std_crates<'a>(sh: &'a Shell, src: &Path, offline: bool) -> Cmd<'a> {
    let cargo = env!("CARGO");
    let library = src.join("library/Cargo.toml");
    let offline = offline.then_some("--offline");
    cmd!(sh, "{cargo} fetch {offline...} --manifest-path {library}").env("RUSTC_BOOTSTRAP", "1")
}
