//! `dist`: runs the stages in order as a pipeline, checks the budget,
//! signs, and publishes `dist/<profile>/` with its manifest. The tasks that
//! report on a build or ship it have a module each: `plan`, `size`,
//! `install`, and `--check-reproducible`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use crate::agent::{Agent, AgentRecord};
use crate::budget::Table;
use crate::initramfs::{Initramfs, InitramfsRecord};
use crate::kernel::{Kernel, KernelRecord};
use crate::lock::{self, Wait};
use crate::profile::Profile;
use crate::profile::ProfileArgs;
use crate::sign::{self, SignRecord};
use crate::stage::Stage;
use crate::{provision, util};

mod install;
mod manifest;
mod plan;
pub mod preflight;
mod publish;
mod reproducible;
mod size;

pub use install::{InstallArgs, install};
pub use manifest::{Artifact, InitramfsInfo, KernelInfo, Manifest, Toolchain};
pub use plan::{PlanArgs, plan};
pub use publish::publish;
pub use reproducible::copy_sources;
pub use size::{SizeArgs, size};

pub const IMAGE: &str = "zfcpdump.image";
pub const RD: &str = "zfcpdump.rd";
pub const MANIFEST: &str = "manifest.json";

#[derive(Args, Clone, Debug)]
pub struct DistArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Fail listing missing host packages instead of installing them
    #[arg(long)]
    pub no_provision: bool,
    /// Use only what `cargo xtask fetch` brought into the local caches
    #[arg(long)]
    pub offline: bool,
    /// Prove reproducibility: build again from clean in another directory
    /// and compare the artifacts bit for bit
    #[arg(long)]
    pub check_reproducible: bool,
    /// Write the artifacts here instead of dist/<profile>/
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Stream make's and cargo's output to stderr as it comes (the build
    /// farm's log), instead of a progress line; also ZFCPDUMP_VERBOSE=1
    #[arg(long, short)]
    pub verbose: bool,
    /// Fail at once, naming the holder, when another build holds a stage's
    /// lock, instead of waiting for it
    #[arg(long)]
    pub no_wait: bool,
    /// Build this profile too, into dist/<name>/ (repeatable), e.g. the same
    /// profile with the initramfs built in: where the .config matches, the
    /// kernel compile is shared. With --check-reproducible the clean second
    /// build builds and compares these too
    #[arg(long, value_name = "PROFILE")]
    pub also_profile: Vec<String>,
}

impl DistArgs {
    /// A plain build of one profile, as the lab's tasks run it.
    pub fn new(profile: ProfileArgs, no_provision: bool, offline: bool) -> DistArgs {
        DistArgs {
            profile,
            no_provision,
            offline,
            check_reproducible: false,
            verbose: false,
            out_dir: None,
            no_wait: false,
            also_profile: Vec::new(),
        }
    }

    fn wait(&self) -> Wait {
        if self.no_wait {
            Wait::NoWait
        } else {
            Wait::Block
        }
    }
}

pub fn dist_dir(root: &Path, profile: &Profile) -> PathBuf {
    root.join("dist").join(&profile.name)
}

/// Stage records of one run.
pub struct Built {
    pub kernel: KernelRecord,
    pub agent: AgentRecord,
    pub initramfs: InitramfsRecord,
    pub budget: Table,
    pub signed: Option<SignRecord>,
}

impl Built {
    /// What dist/<profile>/ holds besides the manifest: the image, and the
    /// rd unless the image carries the initramfs.
    pub fn files(&self) -> Vec<(&'static str, &Path)> {
        let image = match &self.signed {
            Some(s) => s.image.as_path(),
            None => self.kernel.image.as_path(),
        };
        let mut v = vec![(IMAGE, image)];
        if self.kernel.embedded.is_none() {
            v.push((RD, self.initramfs.rd.as_path()));
        }
        v
    }
}

/// Runs every stage (each one cached) and checks the budget.
pub fn build(
    root: &Path,
    profile: &Profile,
    provision_ok: bool,
    offline: bool,
    wait: Wait,
) -> Result<Built> {
    prerequisites(profile, provision_ok && !offline)?;
    // The kernel first when it can be: its compile is the long step. A
    // built-in initramfs is linked in after the initramfs stage.
    let external = (!profile.initramfs.builtin)
        .then(|| Kernel::new(root, profile, None).run(wait))
        .transpose()?;
    let agent = Agent::new(root, profile, offline).run(wait)?;
    let initramfs = Initramfs::new(root, profile, &agent).run(wait)?;
    let kernel = match external {
        Some(k) => k,
        None => Kernel::new(root, profile, Some(&initramfs)).run(wait)?,
    };
    let budget = Table::compute(profile, &kernel, &initramfs);
    eprintln!("[budget] {}:\n{}", profile.name, budget.render());
    budget.check(&profile.name)?;
    let signed = profile
        .sign
        .is_some()
        .then(|| sign_image(root, profile, &kernel))
        .transpose()?;
    Ok(Built {
        kernel,
        agent,
        initramfs,
        budget,
        signed,
    })
}

/// The host tools and toolchain components a build of `profile` needs
/// (its compilers, the kernel source's package); installed when `install`
/// allows, and then the optional ones (the compile cache) too.
pub fn prerequisites(profile: &Profile, install: bool) -> Result<()> {
    let build = provision::build_needs(profile);
    let mut needs: Vec<&provision::Need> = build.iter().collect();
    if install && profile.kernel.compile_cache {
        needs.extend(provision::BUILD_OPTIONAL);
    }
    provision::ensure(&needs, provision::build_components(profile), install)
}

/// The sign step of a profile with [sign].
fn sign_image(root: &Path, profile: &Profile, kernel: &KernelRecord) -> Result<SignRecord> {
    if !profile.initramfs.builtin {
        eprintln!(
            "warning: profile {:?} signs {IMAGE}, but its initramfs is external: {RD}, \
             which holds the agent, is not covered by the signature; set \
             initramfs.builtin = true (as profiles/default-builtin.toml does)",
            profile.name
        );
    }
    sign::sign(root, profile, &kernel.image)
}

/// `dist`: builds and publishes the profile (and `--also-profile` ones);
/// returns the stage records of the first.
pub fn run(args: &DistArgs) -> Result<Built> {
    let root = util::project_root();
    if args.verbose {
        util::set_verbose();
    }
    preflight::gate(&root, args)?;
    let built = build_and_publish(&root, args, &args.profile, args.out_dir.clone())?;
    let mut dirs = vec![(args.profile.clone(), out_dir(&root, args, &args.profile)?)];
    for pa in preflight::profiles(args).into_iter().skip(1) {
        build_and_publish(&root, args, &pa, None)?;
        dirs.push((pa.clone(), out_dir(&root, args, &pa)?));
    }
    if args.check_reproducible {
        reproducible::check_reproducible(&root, args, &dirs)?;
    }
    Ok(built)
}

fn out_dir(root: &Path, args: &DistArgs, pa: &ProfileArgs) -> Result<PathBuf> {
    Ok(match &args.out_dir {
        Some(d) if pa.profile == args.profile.profile => d.clone(),
        _ => dist_dir(root, &pa.load()?),
    })
}

fn build_and_publish(
    root: &Path,
    args: &DistArgs,
    pa: &ProfileArgs,
    out_dir: Option<PathBuf>,
) -> Result<Built> {
    let t = Instant::now();
    let profile = pa.load()?;
    let built = build(
        root,
        &profile,
        !args.no_provision,
        args.offline,
        args.wait(),
    )?;
    let dir = out_dir.unwrap_or_else(|| dist_dir(root, &profile));
    let manifest = manifest::manifest(root, &profile, &built)?;
    {
        // Two builds of one profile must not swap dist/<profile>/ at once.
        let _lock = lock::acquire(&util::cache_dir(root).join("publish"), "dist", args.wait())?;
        publish(&dir, &built, &manifest)?;
    }
    let rd = match &built.kernel.embedded {
        Some(e) => format!("initramfs built in ({} bytes", e.size),
        None => format!("{RD} {} bytes (", built.initramfs.rd_size),
    };
    eprintln!(
        "[dist] {} ready in {}: {IMAGE} {} bytes{}, {rd}{}), kernel {}",
        dir.display(),
        util::fmt_duration(t.elapsed()),
        built
            .signed
            .as_ref()
            .map_or(built.kernel.image_size, |s| s.signed_size),
        if built.signed.is_some() {
            " (signed)"
        } else {
            ""
        },
        match &built.kernel.embedded {
            Some(_) => format!(", {}", built.initramfs.compression),
            None => built.initramfs.compression.to_string(),
        },
        built.kernel.release
    );
    Ok(built)
}
