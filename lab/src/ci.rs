//! `test`: everything CI runs, in order, with a summary at the end.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::kit::Table;
use crate::kit::table::{Left, Right};
use zfcpdump_builder::cmd::{self, cmd};
use zfcpdump_builder::kernel::ccache;
use zfcpdump_builder::{provision, util};

#[derive(Args, Clone, Debug)]
pub struct TestArgs {
    /// Fail listing missing host packages instead of installing them
    #[arg(long)]
    pub no_provision: bool,
    /// Stop after the unit and integration tests (fmt, clippy, the dist
    /// builds and the tests run; fuzzing, the boots, e2e, faults, the crash
    /// lab, fetch and the release pipeline do not): for a quick local run
    #[arg(long)]
    pub quick: bool,
}

/// One step of the CI run, as the summary shows it.
struct CiStep {
    name: String,
    ok: bool,
    secs: f64,
    /// The last lines a failed step printed, repeated before the summary:
    /// CI logs are often seen only from their end.
    tail: Vec<String>,
}

/// Lines of a failed step repeated at the end.
const FAILED_TAIL_LINES: usize = 60;

struct Runner {
    root: PathBuf,
    steps: Vec<CiStep>,
    envs: Vec<(String, String)>,
    /// A copy of this binary: `cargo test` may rebuild target/debug/xtask
    /// while CI runs.
    exe: PathBuf,
    /// Before each line of a lane that runs beside the main one.
    prefix: &'static str,
}

impl Runner {
    /// A runner for steps beside this one's, with its environment so far;
    /// its lines carry `prefix`.
    fn lane(&self, prefix: &'static str) -> Runner {
        Runner {
            root: self.root.clone(),
            steps: Vec::new(),
            envs: self.envs.clone(),
            exe: self.exe.clone(),
            prefix,
        }
    }

    fn run(&mut self, name: &str, program: &str, args: &[&str]) -> bool {
        eprintln!("\n{}==> {name}: {program} {}", self.prefix, args.join(" "));
        let t = Instant::now();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(&self.root)
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        let (ok, tail) = run_teed(cmd, self.prefix);
        self.record(name, ok, t, if ok { Vec::new() } else { tail })
    }

    fn record(&mut self, name: &str, ok: bool, t: Instant, tail: Vec<String>) -> bool {
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "{}<== {name}: {} in {secs:.0}s",
            self.prefix,
            if ok { "ok" } else { "FAILED" }
        );
        self.steps.push(CiStep {
            name: name.into(),
            ok,
            secs,
            tail,
        });
        ok
    }

    /// A step done in-process.
    fn check(&mut self, name: &str, f: impl FnOnce() -> Result<()>) -> bool {
        eprintln!("\n==> {name}");
        let t = Instant::now();
        let res = f();
        let tail = match &res {
            Err(e) => {
                eprintln!("error: {e:#}");
                vec![format!("error: {e:#}")]
            }
            Ok(()) => Vec::new(),
        };
        self.record(name, res.is_ok(), t, tail)
    }

    fn cargo(&mut self, name: &str, args: &[&str]) -> bool {
        self.run(name, env!("CARGO"), args)
    }

    /// `xtask boot --profile PROFILE ARGS...`: boots at the profile's budget.
    fn boot(&mut self, name: &str, profile: &str, args: &[&str]) -> bool {
        let mut all = vec!["boot", "--no-provision", "--profile", profile];
        all.extend_from_slice(args);
        self.xtask(name, &all)
    }

    fn xtask(&mut self, name: &str, args: &[&str]) -> bool {
        let exe = self.exe.clone();
        self.run(name, exe.to_str().expect("utf-8 path"), args)
    }
}

/// Runs `cmd`, passing its stdout and stderr through with `prefix` before
/// each line, and returns whether it succeeded with its last
/// [`FAILED_TAIL_LINES`] lines (both streams).
fn run_teed(mut cmd: Command, prefix: &str) -> (bool, Vec<String>) {
    use std::collections::VecDeque;
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    use std::sync::Mutex;
    let mut child = match cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => {
            return (
                false,
                vec![format!("cannot run {:?}: {e}", cmd.get_program())],
            );
        }
    };
    let tail = Mutex::new(VecDeque::new());
    let keep = |line: String| {
        let mut t = tail.lock().unwrap();
        if t.len() == FAILED_TAIL_LINES {
            t.pop_front();
        }
        t.push_back(line);
    };
    let (out, err) = (child.stdout.take(), child.stderr.take());
    std::thread::scope(|s| {
        if let Some(out) = out {
            s.spawn(|| {
                for line in BufReader::new(out).split(b'\n').map_while(Result::ok) {
                    let line = String::from_utf8_lossy(&line).into_owned();
                    let _ = writeln!(std::io::stdout(), "{prefix}{line}");
                    keep(line);
                }
            });
        }
        if let Some(err) = err {
            s.spawn(|| {
                for line in BufReader::new(err).split(b'\n').map_while(Result::ok) {
                    let line = String::from_utf8_lossy(&line).into_owned();
                    eprintln!("{prefix}{line}");
                    keep(line);
                }
            });
        }
    });
    let ok = child.wait().is_ok_and(|s| s.success());
    (ok, tail.into_inner().unwrap().into())
}

pub fn run(args: &TestArgs) -> Result<()> {
    let t = Instant::now();
    let root = util::project_root();
    provision::ensure_all(!args.no_provision)?;

    let exe = util::cache_dir(&root).join("ci").join("xtask");
    let own = std::fs::read(std::env::current_exe()?)?;
    util::write_atomic(&exe, &own)?;
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    // Every kernel compile's compile cache statistics, for the summary.
    let reports = util::cache_dir(&root)
        .join("ci")
        .join("compile-cache.jsonl");
    let _ = std::fs::remove_file(&reports);
    let mut r = Runner {
        root: root.clone(),
        steps: Vec::new(),
        envs: vec![(ccache::REPORT_VAR.into(), reports.display().to_string())],
        exe,
        prefix: "",
    };
    lint(&mut r);
    builds(&mut r, &root)?;
    tests(&mut r, &root);
    if !args.quick {
        // Two lanes of about one core each: the QEMU steps (one guest
        // thread each), then fuzzing (one libFuzzer process at a time); and
        // beside them the release, whose clean rebuild compiles the kernel
        // cold (the compile cache is off for it) with one make job, and the
        // packagers' builds.
        let mut lane = r.lane("[release lane] ");
        lane.envs.push(("CARGO_BUILD_JOBS".into(), "1".into()));
        std::thread::scope(|s| {
            let bg = s.spawn(|| {
                release(&mut lane, &root);
                packager(&mut lane, &root);
            });
            boots(&mut r);
            lab_runs(&mut r, &root);
            fuzz(&mut r);
            bg.join().expect("the release lane does not panic");
        });
        for mut step in lane.steps {
            step.name.push_str(" [beside]");
            r.steps.push(step);
        }
    }
    summary(&r, t, &reports)
}

/// fmt and clippy.
fn lint(r: &mut Runner) {
    r.cargo("fmt", &["fmt", "--all", "--check"]);
    r.cargo(
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
}

/// The dist builds the tests and the lab share through the stage cache.
fn builds(r: &mut Runner, root: &std::path::Path) -> Result<()> {
    // Builds the default profile into the shared stage cache, so that the
    // integration tests find it warm, and gives the s390x agent binary.
    let gnu = r.xtask("dist (default profile)", &["dist", "--no-provision"]);
    // Kernel 6.12 LTS, compiled once, here, and shared with the tests,
    // boots, e2e and the crash lab below (the stage cache). These two
    // compiles are all CI needs: the lab boots the images that ship, and
    // the built-in and signed profiles relink the same compiles. Its agent
    // is the musl one.
    let musl = r.xtask(
        "dist (default-6.12 profile)",
        &["dist", "--no-provision", "--profile", "default-6.12"],
    );
    // The agent's qemu-user tests run both agents.
    if gnu && musl {
        let agents = [
            agent_binary(root, "default")?,
            agent_binary(root, "default-6.12")?,
        ];
        let list = std::env::join_paths(agents)?;
        r.envs.push((
            "ZFCPDUMP_AGENT_S390X".into(),
            list.to_string_lossy().into_owned(),
        ));
    }
    Ok(())
}

/// Both test tiers, and the check that the slow one really ran.
fn tests(r: &mut Runner, root: &std::path::Path) {
    // Debian's s390x zgetdump, run under qemu-user by the agent's tests.
    match crate::readers::sysroot::DEBIAN_12.unpacked_root(&util::cache_dir(root), false) {
        Ok(tools) => r
            .envs
            .push(("ZGETDUMP_ROOT".into(), tools.display().to_string())),
        Err(e) => eprintln!("error: cannot provide zgetdump: {e:#}"),
    }
    // The slow test tier: every gated test runs (a missing prerequisite
    // fails instead of skipping) and records itself; the step after checks
    // that all of them did.
    let records = util::cache_dir(root).join("ci").join("slow-tier");
    let _ = std::fs::remove_dir_all(&records);
    r.envs
        .push((test_tier::VAR.into(), records.display().to_string()));
    if r.cargo("unit and integration tests", &["test", "--workspace"]) {
        r.check("slow test tier ran", || {
            eprintln!("{}", crate::slow_tier::check_ran(root, &records)?);
            Ok(())
        });
    }
}

/// Fuzzing.
fn fuzz(r: &mut Runner) {
    // Every parser under libFuzzer, 30 s each; a finding fails the
    // step and prints its reproducer.
    r.xtask(
        "fuzzing (libFuzzer, 5 targets)",
        &["fuzz", "--no-provision"],
    );
}

/// Every image's boot at its budget.
fn boots(r: &mut Runner) {
    // Each distinct image boots at -m equal to its budget, once per
    // initramfs compression that matters: both kernels with every one
    // (each its own decompressor in the kernel, its own budget row);
    // default-builtin the image alone (no -initrd), relinked from the
    // default compile: gzip as kbuild embeds it, none through
    // CONFIG_INITRAMFS_COMPRESSION_NONE. default-signed is
    // default-builtin's image signed: e2e boots it below.
    for (profile, comps) in [
        ("default", &["gzip", "xz", "zstd", "none"][..]),
        ("default-6.12", &["gzip", "xz", "zstd", "none"][..]),
        ("default-builtin", &["gzip", "none"][..]),
    ] {
        for comp in comps {
            let set = format!("initramfs.compression={comp}");
            r.boot(
                &format!("boot smoke test ({profile}, {comp})"),
                profile,
                &["--set", &set],
            );
        }
    }
}

/// e2e, faults, the crash lab, and the agent's panic as PID 1.
fn lab_runs(r: &mut Runner, root: &std::path::Path) {
    // Real zipl prepares the disks, each kernel's dump tool dumps, the
    // readers that match the kernel and zfcpdump-disk check; negative
    // runs leave disks intact.
    // default-builtin: real zipl on the image alone, no initrd;
    // default-signed: the same, signed with a throwaway key.
    match zfcpdump_builder::sign::throwaway_key(&util::cache_dir(root).join("ci").join("sign")) {
        Ok((key, cert)) => {
            r.envs
                .push(("ZFCPDUMP_SIGN_KEY".into(), key.display().to_string()));
            r.envs
                .push(("ZFCPDUMP_SIGN_CERT".into(), cert.display().to_string()));
        }
        Err(e) => eprintln!("error: no throwaway signing key: {e:#}"),
    }
    // default: from its Debian package, as dpkg-deb -x unpacks it.
    for profile in [
        "default",
        "default-6.12",
        "default-builtin",
        "default-signed",
    ] {
        let mut args = vec!["e2e", "--no-provision", "--profile", profile];
        let name = match profile {
            "default" => {
                args.push("--deb");
                "end to end under QEMU (default profile, its Debian package)".to_string()
            }
            _ => format!("end to end under QEMU ({profile} profile)"),
        };
        r.xtask(&name, &args);
    }
    // Faults of the emulated machine through the real 6.1 kernel: EIO
    // on each write and on the vmcore's reads, power cuts, a slow, a
    // late and a missing disk; it reuses the default builds above.
    r.xtask(
        "faults under QEMU (EIO, power cuts, slow/late/missing disk)",
        &["faults", "--no-provision"],
    );
    // Both kernel pairs in every mode (with and without elision, the
    // simulated HSA, dump levels 31 and 17), 6.12 into 6.1's tool, and
    // the built-in initramfs at level 17; it reuses the kernels built
    // above.
    r.xtask(
        "crash lab (kdump under QEMU: 6.1, 6.12, 6.12 into 6.1)",
        &["crashlab", "--no-provision"],
    );
    // PID 1 must never die: the glibc agent's panic hook says where and
    // powers off; the musl agent's panic traps (SIGILL, immediate-abort),
    // and the signal handler still prints the verdict and powers off
    // (QEMU exit 0, no kernel panic).
    for (profile, name, expect) in [
        (
            "default",
            "agent panic as PID 1 ends in power-off (glibc agent)",
            "Dump failed: agent crashed (panic at ",
        ),
        (
            "default-6.12",
            "agent panic as PID 1 ends in power-off (6.12, musl agent)",
            "Dump failed: agent crashed (signal SIGILL)",
        ),
    ] {
        r.boot(
            name,
            profile,
            &["--append", "zfcpdump.test_panic=1", "--expect", expect],
        );
    }
}

/// fetch, then the release pipeline offline, and its tarball checked.
fn release(r: &mut Runner, root: &std::path::Path) {
    // The clean second build runs offline: it proves both that the
    // build reproduces and that `fetch` brought everything it needs.
    r.xtask("fetch (for offline builds)", &["fetch", "--no-provision"]);
    // The release pipeline checks reproducibility with a clean second
    // build (offline: it also proves `fetch` brought everything), then
    // packs; the pack is checked against its own checksums.
    // The clean second build also builds default-builtin: the same
    // compile relinked, so one built-in profile is proven too.
    // One make job: the lane has one core.
    r.envs.push((
        "XTASK_DIST_ARGS".into(),
        "--no-provision --offline --also-profile default-builtin --set kernel.jobs=1".into(),
    ));
    let out = util::cache_dir(root).join("release");
    let _ = std::fs::remove_dir_all(&out);
    let out_arg = out.display().to_string();
    if r.run(
        "release pipeline (reproducible, offline)",
        "bash",
        &["ci/release.sh", "default", &out_arg],
    ) {
        r.check("release tarball verifies", || verify_release(&out));
    }
}

/// A build farm's build: the committed tree vendored, built by `dist
/// --offline` in a network namespace with no interface, with no rustup and
/// a cross toolchain of another prefix (ci/packager.sh says how). Then the
/// same vendored tree built by Debian 13's own toolchain in a chroot
/// (ci/trixie.sh), and e2e with that build.
fn packager(r: &mut Runner, root: &std::path::Path) {
    let cache = util::cache_dir(root);
    let work = cache.join("packager");
    let work_arg = work.display().to_string();
    if !r.run(
        "packager build (vendored, no network, no rustup, another cross prefix)",
        "bash",
        &["ci/packager.sh", &work_arg],
    ) {
        return;
    }
    let out = cache.join("trixie");
    let out_arg = out.display().to_string();
    let src_arg = work.join("src").display().to_string();
    if r.run(
        "Debian 13 chroot build (rustc 1.85, gcc 14, offline, vendored)",
        "bash",
        &["ci/trixie.sh", &src_arg, &out_arg],
    ) {
        r.xtask(
            "end to end under QEMU (the Debian 13 chroot's build)",
            &["e2e", "--no-provision", "--from", &out_arg],
        );
    }
    // Gigabytes of unpacked kernel, objects and crates: only a failure's
    // are worth keeping.
    if r.steps.iter().all(|s| s.ok) {
        let _ = std::fs::remove_dir_all(&work);
    }
}

/// The failed steps' last lines, then every step with its time, then every
/// kernel compile's compile cache statistics (`reports`).
fn summary(r: &Runner, t: Instant, reports: &std::path::Path) -> Result<()> {
    for s in r.steps.iter().filter(|s| !s.ok) {
        eprintln!("\n==== {} FAILED; its last lines:", s.name);
        for line in &s.tail {
            eprintln!("{line}");
        }
    }
    eprintln!("\nsummary ({} total):", util::fmt_duration(t.elapsed()));
    let mut summary = Table::headless(&[Left, Right, Right]).indent("  ");
    for s in &r.steps {
        summary.row([
            s.name.clone(),
            if s.ok { "ok" } else { "FAILED" }.to_string(),
            format!("{:.0}s", s.secs),
        ]);
    }
    eprint!("{}", summary.render());
    eprintln!("kernel compiles (steps marked [beside] ran beside the ones above them):");
    match ccache::CompileReport::read_all(reports) {
        Ok(all) if all.is_empty() => eprintln!("  none: every kernel came from the stage cache"),
        Ok(all) => all.iter().for_each(|c| eprintln!("  {}", c.describe())),
        Err(e) => eprintln!("  error: {e:#}"),
    }
    let failed = r.steps.iter().filter(|s| !s.ok).count();
    println!("ci: {} passed, {} failed", r.steps.len() - failed, failed);
    if failed > 0 {
        bail!("{failed} CI step(s) failed");
    }
    Ok(())
}

/// The agent binary of `profile`'s dist build, from its stage cache
/// record.
fn agent_binary(root: &std::path::Path, profile: &str) -> Result<PathBuf> {
    use zfcpdump_builder::stage::Stage as _;
    let profile = zfcpdump_builder::profile::load(root, profile, &[])?;
    match zfcpdump_builder::agent::Agent::new(root, &profile, false).lookup()? {
        zfcpdump_builder::cache::Lookup::Hit(rec) => Ok(rec.binary),
        zfcpdump_builder::cache::Lookup::Miss { why } => {
            bail!("the agent stage has no record after dist: {why}")
        }
    }
}

/// The release tarball: its .sha256 matches, it unpacks to exactly the
/// three artifacts and SHA256SUMS, and those sums match.
fn verify_release(out: &std::path::Path) -> Result<()> {
    let tarball = std::fs::read_dir(out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .context("no .tar.gz in the release output")?;
    // sha256sum names a file that does not match on its stdout: passed
    // through.
    let sh = |dir: &std::path::Path, script: &str| -> Result<()> {
        let shell = cmd::shell()?;
        shell.change_dir(dir);
        cmd::run(cmd!(shell, "sh -c {script}"))
            .with_context(|| format!("`{script}` failed in {}", dir.display()))
    };
    sh(out, "sha256sum -c --quiet *.tar.gz.sha256")?;
    let x = out.join("x");
    std::fs::create_dir_all(&x)?;
    let shell = cmd::shell()?;
    cmd::output(cmd!(shell, "tar -xzf {tarball} -C {x}"))
        .with_context(|| format!("cannot unpack {}", tarball.display()))?;
    let top = std::fs::read_dir(&x)?
        .next()
        .context("empty tarball")??
        .path();
    let mut names: Vec<String> = std::fs::read_dir(&top)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    names.sort();
    if names
        != [
            "SHA256SUMS",
            "manifest.json",
            "zfcpdump.image",
            "zfcpdump.rd",
        ]
    {
        bail!("unexpected tarball contents: {names:?}");
    }
    sh(&top, "sha256sum -c --quiet SHA256SUMS")?;
    eprintln!("{} verifies", tarball.display());
    Ok(())
}
