//! `fetch`: brings everything a build needs into the local caches, so that
//! `cargo xtask dist --offline` then works with no network. The lab adds
//! what its tests need (the lab crate's own `fetch`).

use anyhow::{Context, Result};
use clap::Args;

use crate::agent;
use crate::cmd::{self, cmd};
use crate::{provision, util};

#[derive(Args, Clone, Debug)]
pub struct FetchArgs {
    /// Fail listing missing host packages instead of installing them
    #[arg(long)]
    pub no_provision: bool,
}

/// Fetches what `dist` needs; the command line then lets the lab fetch
/// its own part and says when everything is there.
pub fn run(args: &FetchArgs) -> Result<()> {
    let root = util::project_root();
    // Host packages, the kernel source tarball and rustup components.
    provision::ensure_all(!args.no_provision)?;

    let sh = cmd::shell()?;
    sh.change_dir(&root);
    let cargo = env!("CARGO");
    eprintln!("[fetch] crates of the workspace (Cargo.lock)");
    cmd::run(cmd!(sh, "{cargo} fetch --locked"))?;

    eprintln!("[fetch] crates of the fuzz targets (fuzz/Cargo.lock)");
    cmd::run(cmd!(
        sh,
        "{cargo} fetch --locked --manifest-path fuzz/Cargo.toml"
    ))?;

    // -Zbuild-std resolves std's own dependencies from the rust-src
    // component's Cargo.lock; fetch them the same way.
    let src = agent::rust_src().context("the rust-src component is missing")?;
    eprintln!(
        "[fetch] crates that build-std needs for std ({})",
        src.display()
    );
    let library = src.join("library/Cargo.toml");
    cmd::run(cmd!(sh, "{cargo} fetch --manifest-path {library}").env("RUSTC_BOOTSTRAP", "1"))
}
