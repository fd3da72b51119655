//! The preflight: everything `dist` can check without building anything,
//! checked before the first stage (and before provisioning) runs, so that a
//! bad setting fails in seconds, not after the kernel compile. `plan
//! --check` runs it alone.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::DistArgs;
use crate::cmd::{self, cmd};
use crate::fetch;
use crate::kernel::Kernel;
use crate::profile::{Profile, ProfileArgs};
use crate::{agent, initramfs, kernel, provision, sign, util};

/// One check: what was checked, and what it found or why it failed.
pub struct Check {
    pub what: String,
    pub outcome: Result<String, String>,
}

/// Every check of one `dist` command line.
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.outcome.is_err())
    }

    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }

    /// One line per check: `ok   what: found` or `FAIL what: why`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let (tag, text) = match &c.outcome {
                Ok(t) => ("ok  ", t),
                Err(e) => ("FAIL", e),
            };
            // A multi-line reason stays under its check.
            let text = text.replace('\n', "\n       ");
            out.push_str(&format!("{tag} {}: {text}\n", c.what));
        }
        out
    }

    /// Ok when every check passed; else an error listing the failures.
    pub fn into_result(self) -> Result<()> {
        if self.passed() {
            return Ok(());
        }
        let failed: Vec<String> = self
            .checks
            .iter()
            .filter_map(|c| {
                let why = c.outcome.as_ref().err()?;
                Some(format!("  {}: {}", c.what, why.replace('\n', "\n    ")))
            })
            .collect();
        bail!(
            "preflight failed ({} of {} checks; nothing was built):\n{}",
            failed.len(),
            self.checks.len(),
            failed.join("\n")
        )
    }

    fn add<T: Into<String>>(&mut self, what: impl Into<String>, r: Result<T>) {
        self.checks.push(Check {
            what: what.into(),
            outcome: r
                .map(Into::into)
                .map_err(|e| format!("{e:#}").trim_end().to_string()),
        });
    }
}

/// Runs every check of `args`: each profile's, then the command line's.
pub fn run(root: &Path, args: &DistArgs) -> Report {
    let mut r = Report { checks: Vec::new() };
    let install = !args.no_provision && !args.offline;
    let mut names = Vec::new();
    // Whether any profile builds std from rust-src: --offline then needs
    // std's crates too.
    let mut build_std = false;
    for pa in profiles(args) {
        match pa.load() {
            Ok(p) => {
                r.add(
                    format!("profile {}", pa.profile),
                    Ok::<_, anyhow::Error>(util::join_paths(&p.files)),
                );
                if names.contains(&p.name) {
                    r.add(
                        format!("profile {}", pa.profile),
                        Err::<String, _>(anyhow::anyhow!(
                            "--also-profile {}: dist/{}/ is built by an earlier profile of this \
                             command line already",
                            pa.profile,
                            p.name
                        )),
                    );
                }
                names.push(p.name.clone());
                build_std |= agent::std_for(&p.agent.target) == agent::Std::Build;
                check_profile(&mut r, root, &p, install);
                r.add(
                    format!("{}: output directory", p.name),
                    super::out_dir(root, args, &pa).and_then(|d| {
                        super::publish::check_out_dir(&d).map(|s| format!("{}: {s}", d.display()))
                    }),
                );
            }
            Err(e) => {
                let e = match known_profiles(root, &pa.profile) {
                    Some(hint) => e.context(hint),
                    None => e,
                };
                r.add(format!("profile {}", pa.profile), Err::<String, _>(e))
            }
        }
    }
    r.add(
        "SOURCE_DATE_EPOCH",
        kernel::source_date_epoch().map(|e| e.to_string()),
    );
    if args.offline {
        r.add("--offline", offline_ready(root, build_std));
    }
    if args.check_reproducible {
        r.add("--check-reproducible", git_checkout(root));
    }
    r
}

/// `run`, timed and said on stderr; an error when a check failed.
pub fn gate(root: &Path, args: &DistArgs) -> Result<()> {
    let t = Instant::now();
    let report = run(root, args);
    let n = report.checks.len();
    report.into_result()?;
    eprintln!(
        "[preflight] {n} checks passed in {}",
        util::fmt_duration(t.elapsed())
    );
    Ok(())
}

/// For a bare profile name that is not there: the names there are.
fn known_profiles(root: &Path, arg: &str) -> Option<String> {
    let dir = crate::profile::profiles_dir(root);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".toml")
                .map(String::from)
        })
        .collect();
    names.sort();
    if arg.contains('/') || arg.ends_with(".toml") || names.iter().any(|n| n == arg) {
        return None;
    }
    Some(format!(
        "no profile {arg:?}; {} holds: {}",
        dir.display(),
        names.join(", ")
    ))
}

/// The profile and every `--also-profile`, with the command line's sets.
pub(super) fn profiles(args: &DistArgs) -> Vec<ProfileArgs> {
    std::iter::once(args.profile.clone())
        .chain(args.also_profile.iter().map(|name| ProfileArgs {
            profile: name.clone(),
            sets: args.profile.sets.clone(),
        }))
        .collect()
}

fn check_profile(r: &mut Report, root: &Path, p: &Profile, install: bool) {
    let n = &p.name;
    let kernel = Kernel::new(root, p, None);
    let source = kernel.check_source(install);
    let source_ok = source.is_ok();
    r.add(format!("{n}: kernel source"), source);
    // The defconfig is looked up in that source: only once it is known.
    if source_ok {
        r.add(
            format!("{n}: kernel defconfig"),
            kernel
                .check_defconfig()
                .map(|d| d.unwrap_or_else(|| "checked once the tarball is unpacked".into())),
        );
    }
    r.add(
        format!("{n}: kernel fragments"),
        kernel.requirements().map(|reqs| {
            format!(
                "{} options requested, {} fragment(s)",
                reqs.len(),
                p.kernel.fragments.len()
            )
        }),
    );
    r.add(format!("{n}: agent target"), agent::check_target(p));
    let build = provision::build_needs(p);
    let needs: Vec<&provision::Need> = build.iter().collect();
    r.add(
        format!("{n}: host tools"),
        provision::check(&needs, provision::build_components(p), install),
    );
    r.add(
        format!("{n}: initramfs rootfs"),
        initramfs::check_rootfs(root, p),
    );
    r.add(
        format!("{n}: compile cache"),
        kernel::ccache::Setting::check_env(p),
    );
    if p.sign.is_some() {
        r.add(format!("{n}: sign"), sign::check_files(p));
    }
}

/// `--offline`: the crates of the workspace and those build-std needs are
/// in the vendored directory (`cargo xtask vendor`) when the project builds
/// from one, else in cargo's own cache (what `cargo xtask fetch` brings).
fn offline_ready(root: &Path, build_std: bool) -> Result<String> {
    let (place, hint) = if crate::vendor::configured(root) {
        (
            "the vendored crates (.cargo/config.toml)",
            "run `cargo xtask vendor` again while online (Cargo.lock or the toolchain changed \
             since it ran)",
        )
    } else {
        (
            "cargo's cache",
            "run `cargo xtask fetch --build-only --profile <profile>` while online first, or `cargo xtask \
             vendor` for a tree that carries its crates",
        )
    };
    let sh = cmd::shell()?;
    sh.change_dir(root);
    cmd::output(fetch::workspace_crates(&sh, true))
        .with_context(|| format!("the workspace's crates are not all in {place}; {hint}"))?;
    if !build_std {
        return Ok(format!("the crates of the workspace are in {place}"));
    }
    let src =
        agent::rust_src().with_context(|| format!("the rust-src component is missing; {hint}"))?;
    cmd::output(fetch::std_crates(&sh, &src, true)).with_context(|| {
        format!("the crates build-std needs for std are not all in {place}; {hint}")
    })?;
    Ok(format!(
        "the crates of the workspace and of build-std are in {place}"
    ))
}

/// `--check-reproducible` copies the sources git knows of: the project
/// must be a git checkout.
fn git_checkout(root: &Path) -> Result<String> {
    let sh = cmd::shell()?;
    let top =
        cmd::read(cmd!(sh, "git -C {root} rev-parse --show-toplevel")).with_context(|| {
            format!(
                "{} is not a git checkout: --check-reproducible builds again from the files git \
                 knows of (clone the project, or drop --check-reproducible)",
                root.display()
            )
        })?;
    Ok(format!("git checkout {top}"))
}
