//! `cargo xtask`: builds the zfcpdump kernel, agent and initramfs from a
//! profile, and runs the project's checks. One module per task; this file
//! only parses the command line.

mod ci;
mod dist;
mod kconfig;
mod kernel;
mod profile;
mod provision;
mod util;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build the zfcpdump dump tool (kernel + initramfs) from a TOML profile",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run the whole pipeline and write dist/<profile>/
    Dist(dist::DistArgs),
    /// Print the resolved profile and each stage's cache state; runs nothing
    Plan(ProfileArgs),
    /// Run everything CI runs (README's test command)
    Test(ci::TestArgs),
}

/// Selects and adjusts a profile; shared by every task that builds.
#[derive(Args, Clone, Debug)]
pub struct ProfileArgs {
    /// Profile name (profiles/NAME.toml) or path to a .toml file
    #[arg(long, short, default_value = "default")]
    pub profile: String,
    /// Override a profile key for this run, e.g. --set initramfs.compression=xz
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

impl ProfileArgs {
    pub fn load(&self) -> anyhow::Result<profile::Profile> {
        profile::load(&util::project_root(), &self.profile, &self.sets)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.task {
        Task::Dist(a) => dist::run(&a).map(|_| ()),
        Task::Plan(a) => dist::plan(&a),
        Task::Test(a) => ci::run(&a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
