//! `cargo xtask`: builds the zfcpdump kernel, agent and initramfs from a
//! profile, and runs the project's checks. One module per task; this file
//! only parses the command line.

mod agent;
mod archive;
mod bench;
mod boot;
mod budget;
mod cache;
mod ci;
mod dist;
mod e2e;
mod fetch;
mod initramfs;
mod kconfig;
mod kernel;
mod profile;
mod provision;
#[allow(dead_code)] // parts are used only by tests/s390tools.rs, which includes the file
mod s390tools;
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
    /// Cross-build the static s390x dump agent
    Agent(AgentArgs),
    /// Print the resolved profile and each stage's cache state; runs nothing
    Plan(ProfileArgs),
    /// Show the memory budget and initramfs contents of a dist build
    Size(dist::SizeArgs),
    /// Install dist artifacts under the names zipl looks for
    Install(dist::InstallArgs),
    /// Time the agent's copy path against dd and cp (page cache, fsync)
    Bench(bench::BenchArgs),
    /// Boot the dist artifacts under qemu-system-s390x (smoke test)
    Boot(boot::BootArgs),
    /// Bring everything a build needs into local caches, for --offline
    Fetch(fetch::FetchArgs),
    /// End to end under qemu-system-s390x: real zipl prepares the disks, the
    /// qemu profile's dump tool dumps, zgetdump and zfcpdump-disk check
    E2e(e2e::E2eArgs),
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

#[derive(Args, Clone, Debug)]
struct AgentArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    /// Use only what `cargo xtask fetch` brought into the local caches
    #[arg(long)]
    offline: bool,
}

impl ProfileArgs {
    pub fn load(&self) -> anyhow::Result<profile::Profile> {
        profile::load(&util::project_root(), &self.profile, &self.sets)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.task {
        Task::Dist(a) => dist::run(&a),
        Task::Plan(a) => dist::plan(&a),
        Task::Agent(a) => a.profile.load().and_then(|p| {
            let rec = agent::Stage::new(&util::project_root(), &p, a.offline).run()?;
            println!("{}", rec.binary.display());
            Ok(())
        }),
        Task::Size(a) => dist::size(&a),
        Task::Install(a) => dist::install(&a),
        Task::Boot(a) => boot::run(&a),
        Task::Bench(a) => bench::run(&a),
        Task::Fetch(a) => fetch::run(&a),
        Task::E2e(a) => e2e::run(&a),
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
