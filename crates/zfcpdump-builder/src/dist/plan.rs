//! `plan`: the resolved profile and each stage's cache state; runs
//! nothing.

use std::path::PathBuf;

use anyhow::Result;

use crate::agent::Agent;
use crate::cache::Lookup;
use crate::initramfs::Initramfs;
use crate::kernel::{self, Kernel};
use crate::profile::ProfileArgs;
use crate::stage::Stage;
use crate::util;

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
    // Each stage's line; a stage over another's record is looked up only
    // when that one is up to date.
    let mut lines = Vec::new();
    let initramfs = match state(&Agent::new(&root, &profile, false), &mut lines)? {
        Some(agent) => state(&Initramfs::new(&root, &profile, &agent), &mut lines)?,
        None => {
            lines.push("initramfs: will rebuild: the agent will be rebuilt".into());
            None
        }
    };
    let embed = initramfs.as_ref().filter(|_| profile.initramfs.builtin);
    let kernel = Kernel::new(&root, &profile, embed);
    let k = kernel.plan()?;
    match k.state {
        kernel::State::UpToDate(rec) => println!(
            "kernel: up to date ({} {}, {})",
            rec.release,
            rec.image.display(),
            kernel.about(&rec)
        ),
        kernel::State::Configure => {
            println!("kernel: will configure (seconds); the compile is shared with another profile")
        }
        kernel::State::Link { why } => {
            println!("kernel: will link only (about a minute; the compile is there): {why}")
        }
        kernel::State::Rebuild { why } => println!(
            "kernel: will rebuild: {why}\n  (configure runs again; the compile is reused if the final .config matches an earlier build)"
        ),
    }
    println!("  configure key {}", &k.configure_key[..16]);
    println!(
        "  compile cache: {}",
        kernel::ccache::Setting::of(&profile).describe()
    );
    for l in lines {
        println!("{l}");
    }
    println!(
        "budget: checked on every build ({} bytes)",
        profile.budget.total
    );
    Ok(())
}

/// "agent: up to date (N bytes)" or "agent: will rebuild: why"; the record
/// when it is up to date.
fn state<S: Stage>(stage: &S, lines: &mut Vec<String>) -> Result<Option<S::Record>> {
    Ok(match stage.lookup()? {
        Lookup::Hit(rec) => {
            lines.push(format!(
                "{}: up to date ({})",
                stage.name(),
                stage.about(&rec)
            ));
            Some(rec)
        }
        Lookup::Miss { why } => {
            lines.push(format!("{}: will rebuild: {why}", stage.name()));
            None
        }
    })
}

fn join_paths(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(" <- ")
}
