//! A private apt configuration for s390x packages of other Debian releases
//! (trixie, sid): its own sources, lists and cache under the reader cache,
//! so the host's apt setup is never read or changed.
//!
//! sid drops old versions daily, so nothing is pinned: every package is
//! resolved from the index when a sysroot is made, from the first suite that
//! serves it (some trixie packages answer 404 from the registry while the
//! same package in sid downloads), and the versions are recorded.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

use crate::progress;

/// One package of a private-apt sysroot: `name`, tried in the sysroot's
/// suites in order, or `name/suite`, from that suite only.
pub fn split_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once('/') {
        Some((name, suite)) => (name, Some(suite)),
        None => (spec, None),
    }
}

/// `apt-get`/`apt-cache` with a configuration of their own under `dir`.
pub struct PrivateApt {
    dir: PathBuf,
}

impl PrivateApt {
    /// Writes the configuration for `suites` of deb.debian.org (s390x only)
    /// into `dir` and runs `apt-get update`.
    pub fn update(dir: &Path, suites: &[&str]) -> Result<PrivateApt> {
        for d in ["lists/partial", "cache/archives/partial", "empty.d"] {
            fs::create_dir_all(dir.join(d))
                .with_context(|| format!("cannot create {}", dir.join(d).display()))?;
        }
        let sources: String = suites
            .iter()
            .map(|s| {
                format!(
                    "deb [arch=s390x signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
                     http://deb.debian.org/debian {s} main\n"
                )
            })
            .collect();
        fs::write(dir.join("sources.list"), sources)?;
        fs::write(dir.join("status"), "")?;
        // Only APT_CONFIG keeps the host's /etc/apt/apt.conf.d out; `-o`
        // options come too late for that.
        fs::write(
            dir.join("apt.conf"),
            format!(
                "Dir::Etc::Main \"/dev/null\";\nDir::Etc::Parts \"{}\";\n",
                dir.join("empty.d").display()
            ),
        )?;
        let apt = PrivateApt {
            dir: dir.to_path_buf(),
        };
        progress(format!(
            "apt-get update of {} (s390x, private lists in {})",
            suites.join(" and "),
            dir.display()
        ));
        let out = apt.command("apt-get").args(["update", "-q"]).output()?;
        if !out.status.success() {
            bail!(
                "apt-get update of Debian {} (s390x) failed ({}):\n{}\nThis needs access to \
                 deb.debian.org; or run `cargo xtask fetch` where there is network and use \
                 --offline",
                suites.join(", "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(apt)
    }

    fn command(&self, program: &str) -> Command {
        let d = &self.dir;
        let mut c = Command::new(program);
        c.env("APT_CONFIG", d.join("apt.conf"));
        let opts = [
            format!("Dir::Etc::SourceList={}", d.join("sources.list").display()),
            "Dir::Etc::SourceParts=/dev/null".into(),
            "Dir::Etc::Preferences=/dev/null".into(),
            "Dir::Etc::PreferencesParts=/dev/null".into(),
            format!("Dir::State={}", d.display()),
            format!("Dir::State::Lists={}", d.join("lists").display()),
            format!("Dir::State::Status={}", d.join("status").display()),
            format!("Dir::Cache={}", d.join("cache").display()),
            format!("Dir::Log={}", d.display()),
            "Debug::NoLocking=1".into(),
            "APT::Architecture=s390x".into(),
            "APT::Architectures=s390x".into(),
            "Acquire::Languages=none".into(),
            // sid's Release files expire within days; the signature is
            // still checked.
            "Acquire::Check-Valid-Until=false".into(),
            "Acquire::Check-Date=false".into(),
            // The sandbox user _apt cannot write into a root-owned cache.
            "APT::Sandbox::User=root".into(),
        ];
        for o in opts {
            c.arg("-o").arg(o);
        }
        c
    }

    /// Downloads every package of `specs` into `out`, each from the first of
    /// `suites` that serves it (`name/suite` specs from their suite only).
    /// Returns (package, suite) in spec order. A package that no suite can
    /// give is an error naming it and what apt said.
    pub fn download(
        &self,
        specs: &[&str],
        suites: &[&str],
        out: &Path,
    ) -> Result<Vec<(String, String)>> {
        let mut todo: Vec<(&str, Vec<&str>)> = specs
            .iter()
            .map(|s| match split_spec(s) {
                (name, Some(suite)) => (name, vec![suite]),
                (name, None) => (name, suites.to_vec()),
            })
            .collect();
        let mut got: Vec<(String, String)> = Vec::new();
        let mut why: Vec<String> = Vec::new();
        while !todo.is_empty() {
            // One apt call per round (each start costs seconds). apt refuses
            // the whole call when it cannot resolve one name in its suite:
            // ask again without those, which then try their next suite.
            let round: Vec<(&str, &str)> = todo.iter().map(|(n, s)| (*n, s[0])).collect();
            let mut unresolved: Vec<String> = Vec::new();
            let mut err = String::new();
            loop {
                let args: Vec<String> = round
                    .iter()
                    .filter(|(n, _)| !unresolved.iter().any(|u| u == n))
                    .map(|(n, s)| format!("{n}/{s}"))
                    .collect();
                if args.is_empty() {
                    break;
                }
                let o: Output = self
                    .command("apt-get")
                    .args(["download", "-q"])
                    .args(&args)
                    .current_dir(out)
                    .output()
                    .context("cannot run apt-get")?;
                err.push_str(&String::from_utf8_lossy(&o.stderr));
                let new: Vec<String> = unresolved_names(&err)
                    .into_iter()
                    .filter(|n| !unresolved.contains(n) && round.iter().any(|(r, _)| r == n))
                    .collect();
                if o.status.success() || new.is_empty() {
                    break;
                }
                unresolved.extend(new);
            }
            let have = downloaded(out)?;
            let mut next = Vec::new();
            for ((name, mut rest), (_, suite)) in todo.into_iter().zip(&round) {
                if have.iter().any(|p| p == name) {
                    got.push((name.to_string(), suite.to_string()));
                    continue;
                }
                rest.remove(0);
                if rest.is_empty() {
                    why.push(format!("{name} (last tried in {suite})"));
                } else {
                    progress(format!(
                        "{name}: not served from {suite}, trying {}",
                        rest[0]
                    ));
                    next.push((name, rest));
                }
            }
            if !why.is_empty() {
                bail!(
                    "cannot get the s390x package(s) {} from Debian {}; apt-get download said:\n{}",
                    why.join(", "),
                    suites.join(" or "),
                    err.trim()
                );
            }
            todo = next;
        }
        got.sort_by_key(|(n, _)| specs.iter().position(|s| split_spec(s).0 == n));
        Ok(got)
    }
}

/// The packages that apt could not resolve in the suite asked for:
/// "Unable to locate package P", "Release 'S' for 'P' was not found",
/// "Version 'V' for 'P' was not found".
fn unresolved_names(stderr: &str) -> Vec<String> {
    let mut v = Vec::new();
    for l in stderr.lines() {
        let l = l.trim();
        if let Some(p) = l.strip_prefix("E: Unable to locate package ") {
            v.push(p.trim().to_string());
        } else if l.starts_with("E: ") && l.ends_with("' was not found") {
            // ... for 'P' was not found
            if let Some(p) = l
                .rsplit_once(" for '")
                .and_then(|(_, p)| p.strip_suffix("' was not found"))
            {
                v.push(p.to_string());
            }
        }
    }
    v
}

/// Package names of the .deb files in `dir`, from their file names
/// (`name_version_arch.deb`).
fn downloaded(dir: &Path) -> Result<Vec<String>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if let Some((pkg, _)) = name
            .strip_suffix(".deb")
            .and_then(|stem| stem.split_once('_'))
        {
            v.push(pkg.to_string());
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_a_suite_or_none() {
        assert_eq!(split_spec("crash"), ("crash", None));
        assert_eq!(
            split_spec("makedumpfile/sid"),
            ("makedumpfile", Some("sid"))
        );
    }

    #[test]
    fn unresolved_names_are_read_from_apt_errors() {
        let err = "W: something\nE: Unable to locate package nosuch\n\
                   E: Release 'trixie' for 'makedumpfile' was not found\n\
                   E: Version '9' for 'crash' was not found\n\
                   E: Failed to fetch http://deb.debian.org/x.deb  404  Not Found [IP: 1]\n";
        assert_eq!(unresolved_names(err), ["nosuch", "makedumpfile", "crash"]);
    }

    #[test]
    fn downloaded_reads_package_names() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "libc6_2.43-7_s390x.deb",
            "crash_8.0.6-1_s390x.deb",
            "partial",
        ] {
            fs::write(d.path().join(f), "").unwrap();
        }
        let mut v = downloaded(d.path()).unwrap();
        v.sort();
        assert_eq!(v, ["crash", "libc6"]);
    }
}
