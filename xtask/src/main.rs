//! `cargo xtask`: builds the zfcpdump kernel, agent and initramfs from a
//! profile, and runs the project's checks. The tasks live in two libraries,
//! the builder (`zfcpdump_builder`) and the lab (`zfcpdump_lab`); this
//! file only parses the command line and calls them.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use zfcpdump_builder::{agent, dist, fetch, package, vendor};
use zfcpdump_lab::{bench, boot, cachelab, ci, crashlab, e2e, faults, fuzz};

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
    Agent(agent::AgentArgs),
    /// Check the profile and the command line (the preflight), then print the
    /// resolved profile and each stage's cache state; builds nothing. `--check`:
    /// the preflight alone
    Plan(dist::PlanArgs),
    /// Show the memory budget and initramfs contents of a dist build
    Size(dist::SizeArgs),
    /// Install dist artifacts under the names zipl looks for
    Install(dist::InstallArgs),
    /// Turn a dist build into a package (--deb: a Debian binary package for s390x)
    Package(package::PackageArgs),
    /// Time the agent's copy path against dd and cp (page cache, fsync)
    Bench(bench::BenchArgs),
    /// Boot the dist artifacts under qemu-system-s390x (smoke test)
    Boot(boot::BootArgs),
    /// Bring everything builds and tests need into local caches, for
    /// --offline (--build-only: what one profile's build needs)
    Fetch(fetch::FetchArgs),
    /// Put every crate a build compiles (the workspace's and build-std's)
    /// into vendor/, and make cargo build from it: for a source package
    /// that builds with no network
    Vendor(vendor::VendorArgs),
    /// End to end under qemu-system-s390x: real zipl prepares the disks, a
    /// profile's dump tool dumps, the readers that match its kernel
    /// (zgetdump, crash) and zfcpdump-disk check
    E2e(e2e::E2eArgs),
    /// Real crashed kernels: a production kernel under QEMU crashes into
    /// kdump, the dump tool dist built captures its /proc/vmcore to a zipl
    /// disk; crash, zgetdump and the planted pattern check the dump
    Crashlab(crashlab::CrashlabArgs),
    /// Faults under qemu-system-s390x: EIO on each write of the dump and on
    /// the vmcore's reads (blkdebug), seeded power cuts, a slow, a late and
    /// a missing disk; no fault may leave a disk that looks complete and is
    /// not
    Faults(faults::FaultsArgs),
    /// Coverage-guided fuzzing (libFuzzer, AddressSanitizer) of every parser:
    /// the vmcore reader and plan, the disk metadata, the filtered layout
    /// writer, the agent's config and command line, the profile loader
    Fuzz(fuzz::FuzzArgs),
    /// The compile cache on the real kernel compile: off, cold, warm from
    /// the local cache and warm from a real redis remote in another
    /// checkout give bit-identical artifacts; reports times and hit rates
    Cachelab(cachelab::CachelabArgs),
    /// Run everything CI runs (README's test command)
    Test(ci::TestArgs),
}

/// `fetch`: the builder's inputs, then the lab's sysroots.
fn fetch_all(args: &fetch::FetchArgs) -> anyhow::Result<()> {
    fetch::run(args)?;
    if !args.build_only {
        zfcpdump_lab::fetch::sysroots()?;
    }
    eprintln!(
        "[fetch] done: `cargo xtask dist --offline` now needs no network \
         (run cargo itself offline too: CARGO_NET_OFFLINE=true)"
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.task {
        Task::Dist(a) => dist::run(&a).map(drop),
        Task::Plan(a) => dist::plan(&a),
        Task::Agent(a) => agent::run(&a),
        Task::Size(a) => dist::size(&a),
        Task::Install(a) => dist::install(&a),
        Task::Package(a) => package::run(&a),
        Task::Boot(a) => boot::run(&a),
        Task::Bench(a) => bench::run(&a),
        Task::Fetch(a) => fetch_all(&a),
        Task::Vendor(a) => vendor::run(&a),
        Task::E2e(a) => e2e::run(&a),
        Task::Crashlab(a) => crashlab::run(&a),
        Task::Faults(a) => faults::run(&a),
        Task::Fuzz(a) => fuzz::run(&a),
        Task::Cachelab(a) => cachelab::run(&a),
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
