//! `test`: everything CI runs, with a summary at the end.

use std::process::Command;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;

use crate::{provision, util};

#[derive(Args, Clone, Debug)]
pub struct TestArgs {
    /// Fail listing missing host packages instead of installing them
    #[arg(long)]
    pub no_provision: bool,
}

struct Step {
    name: &'static str,
    ok: bool,
    secs: f64,
}

pub fn run(args: &TestArgs) -> Result<()> {
    let root = util::project_root();
    let needs: Vec<&provision::Need> = provision::BUILD
        .iter()
        .chain(provision::TEST)
        .chain([&provision::KERNEL_SOURCE])
        .collect();
    provision::ensure(&needs, provision::TEST_COMPONENTS, !args.no_provision)?;

    let mut steps: Vec<Step> = Vec::new();
    let mut step = |name: &'static str, args: &[&str]| {
        eprintln!("==> {name}: cargo {}", args.join(" "));
        let t = Instant::now();
        let ok = Command::new(env!("CARGO"))
            .args(args)
            .current_dir(&root)
            .status()
            .is_ok_and(|s| s.success());
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "<== {name}: {} in {secs:.0}s",
            if ok { "ok" } else { "FAILED" }
        );
        steps.push(Step { name, ok, secs });
    };
    step("fmt", &["fmt", "--all", "--check"]);
    step(
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    );
    // Builds the default kernel into the shared stage cache first, so the
    // integration tests find it warm.
    step(
        "dist (default profile)",
        &["xtask", "dist", "--no-provision"],
    );
    step("unit and integration tests", &["test", "--workspace"]);

    eprintln!("\nsummary:");
    for s in &steps {
        eprintln!(
            "  {:<32} {:>6}  {:>5.0}s",
            s.name,
            if s.ok { "ok" } else { "FAILED" },
            s.secs
        );
    }
    let failed = steps.iter().filter(|s| !s.ok).count();
    println!("ci: {} passed, {} failed", steps.len() - failed, failed);
    if failed > 0 {
        bail!("{failed} CI step(s) failed");
    }
    Ok(())
}
