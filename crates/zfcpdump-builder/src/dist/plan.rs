//! `plan`: the preflight, the resolved profile and each stage's cache
//! state; builds nothing. `plan --check` runs the preflight alone.

use std::fmt::Write;
use std::path::Path;

use anyhow::{Result, bail};
use clap::Args;

use crate::agent::Agent;
use crate::cache::Lookup;
use crate::initramfs::Initramfs;
use crate::kernel::{self, Kernel};
use crate::profile::ProfileArgs;
use crate::stage::Stage;
use crate::util;

use super::{DistArgs, preflight};

#[derive(Args, Clone, Debug)]
pub struct PlanArgs {
    /// Run only the preflight: every check `dist` makes before it builds
    /// anything, one line each; exit non-zero when one fails
    #[arg(long)]
    pub check: bool,
    /// `dist`'s own options: the preflight checks what they ask for
    /// (e.g. --offline, --also-profile, --check-reproducible)
    #[command(flatten)]
    pub dist: DistArgs,
}

/// `plan`: stdout gets the plan only when every preflight check passed;
/// a failure leaves stdout empty and says why on stderr.
pub fn plan(args: &PlanArgs) -> Result<()> {
    let root = util::project_root();
    let report = preflight::run(&root, &args.dist);
    if args.check {
        let n = report.checks.len();
        if report.passed() {
            print!("{}", report.render());
            println!("preflight passed: {n} checks");
            return Ok(());
        }
        eprint!("{}", report.render());
        bail!(
            "preflight failed: {} of {n} checks (nothing was built)",
            report.failures().count()
        );
    }
    report.into_result()?;
    print!("{}", render(&root, &args.dist.profile)?);
    Ok(())
}

/// The plan's text: the resolved profile, then each stage's state.
fn render(root: &Path, args: &ProfileArgs) -> Result<String> {
    let mut out = String::new();
    let profile = args.load()?;
    let files = util::join_paths(&profile.files);
    writeln!(out, "# profile {} ({files})", profile.name)?;
    writeln!(out, "{}", toml::to_string_pretty(&profile)?)?;
    writeln!(out, "# stages")?;
    // Each stage's line; a stage over another's record is looked up only
    // when that one is up to date.
    let mut lines = Vec::new();
    let initramfs = match state(&Agent::new(root, &profile, false), &mut lines)? {
        Some(agent) => state(&Initramfs::new(root, &profile, &agent), &mut lines)?,
        None => {
            lines.push("initramfs: will rebuild: the agent will be rebuilt".into());
            None
        }
    };
    let embed = initramfs.as_ref().filter(|_| profile.initramfs.builtin);
    let kernel = Kernel::new(root, &profile, embed);
    let k = kernel.plan()?;
    let line = match k.state {
        kernel::State::UpToDate(rec) => format!(
            "kernel: up to date ({} {}, {})",
            rec.release,
            rec.image.display(),
            kernel.about(&rec)
        ),
        kernel::State::Configure => {
            "kernel: will configure (seconds); the compile is shared with another profile".into()
        }
        kernel::State::Link { why } => {
            format!("kernel: will link only (about a minute; the compile is there): {why}")
        }
        kernel::State::Rebuild { why } => format!(
            "kernel: will rebuild: {why}\n  (configure runs again; the compile is reused if the \
             final .config matches an earlier build)"
        ),
    };
    writeln!(out, "{line}")?;
    writeln!(out, "  configure key {}", &k.configure_key[..16])?;
    let cache = kernel::ccache::Setting::of(&profile).describe();
    writeln!(out, "  compile cache: {cache}")?;
    for l in lines {
        writeln!(out, "{l}")?;
    }
    let total = profile.budget.total;
    writeln!(out, "budget: checked on every build ({total} bytes)")?;
    Ok(out)
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
