//! `dist` and `plan`: run the stages in order and write dist/<profile>/.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use crate::kernel;
use crate::profile::Profile;
use crate::{ProfileArgs, provision, util};

#[derive(Args, Clone, Debug)]
pub struct DistArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Fail listing missing host packages instead of installing them
    #[arg(long)]
    pub no_provision: bool,
}

pub fn dist_dir(root: &Path, profile: &Profile) -> PathBuf {
    root.join("dist").join(&profile.name)
}

pub fn run(args: &DistArgs) -> Result<()> {
    let t = Instant::now();
    let root = util::project_root();
    let profile = args.profile.load()?;
    let mut needs: Vec<&provision::Need> = provision::BUILD.iter().collect();
    if profile
        .kernel
        .source
        .tarball
        .as_deref()
        .is_some_and(|p| p == Path::new(provision::KERNEL_SOURCE.check))
    {
        needs.push(&provision::KERNEL_SOURCE);
    }
    provision::ensure(&needs, provision::BUILD_COMPONENTS, !args.no_provision)?;

    let kernel = kernel::Stage::new(&root, &profile).run()?;

    let dir = dist_dir(&root, &profile);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let image = fs::read(&kernel.image)?;
    util::write_atomic(&dir.join("zfcpdump.image"), &image)?;
    eprintln!(
        "[dist] {} ready in {}: zfcpdump.image ({} bytes, kernel {})",
        dir.display(),
        util::fmt_duration(t.elapsed()),
        kernel.image_size,
        kernel.release
    );
    Ok(())
}

pub fn plan(args: &ProfileArgs) -> Result<()> {
    let root = util::project_root();
    let profile = args.load()?;
    println!(
        "# profile {} ({})",
        profile.name,
        join_paths(&profile.files)
    );
    println!("{}", toml::to_string_pretty(&profile)?);
    println!("# stages");
    let k = kernel::Stage::new(&root, &profile).plan()?;
    match k.state {
        kernel::State::UpToDate(rec) => println!(
            "kernel: up to date ({} {}, {} bytes)",
            rec.release,
            rec.image.display(),
            rec.image_size
        ),
        kernel::State::Configure => println!(
            "kernel: will configure (about 10 s); the compile may be shared with another profile"
        ),
        kernel::State::Rebuild { why } => println!("kernel: will rebuild: {why}"),
    }
    println!("  configure key {}", &k.configure_key[..16]);
    Ok(())
}

fn join_paths(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(" <- ")
}
