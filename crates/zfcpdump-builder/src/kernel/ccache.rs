//! The compile cache: ccache in front of the cross gcc for the kernel's
//! objects (docs/compile-cache.md says why ccache and not sccache).
//!
//! It never changes what is built, so no stage key names it. The local
//! cache lives under the user's cache directory, outside any checkout, and
//! `CCACHE_BASEDIR` (the common parent of the source and `O=` trees) makes
//! the paths it hashes relative, so that two checkouts hit each other's
//! entries; the path maps in CC keep the debug info's paths out of the
//! hash. Runners share entries through ccache's remote storage (one
//! variable, [`REMOTE_VAR`]).
//!
//! ccache's own configuration and `CCACHE_*` variables are ignored: a
//! setting such as `sloppiness` could serve a wrong hit, and the output
//! must not depend on the user's ccache.conf.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::profile::Profile;
use crate::util;

/// `off` (or `0`, `false`, `no`) turns the compile cache off for a build.
pub const OFF_VAR: &str = "ZFCPDUMP_COMPILE_CACHE";
/// A ccache remote storage URL (`redis://host:6379`, `http://host/cache`)
/// that pipeline runners share.
pub const REMOTE_VAR: &str = "ZFCPDUMP_COMPILE_CACHE_REMOTE";
/// When set, each compile's statistics line is appended to this file: CI's
/// summary shows them.
pub const REPORT_VAR: &str = "ZFCPDUMP_COMPILE_CACHE_REPORT";

/// The launcher in CC; its presence is what "available" means.
const CCACHE: &str = "ccache";

/// Whether the compile cache is used, and where it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Setting {
    On(CompileCache),
    Off { why: String },
}

/// A usable compile cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileCache {
    /// The local cache (`CCACHE_DIR`).
    pub dir: PathBuf,
    /// The remote storage, if runners share one.
    pub remote: Option<String>,
}

impl Setting {
    /// The setting of a build of `profile`: on unless the profile, the
    /// environment or a missing ccache turns it off.
    pub fn of(profile: &Profile) -> Setting {
        let off = |why: &str| Setting::Off { why: why.into() };
        if !profile.kernel.compile_cache {
            return off("kernel.compile_cache = false");
        }
        if let Some(v) = std::env::var(OFF_VAR)
            .ok()
            .filter(|v| switch(v) == Some(false))
        {
            return Setting::Off {
                why: format!("{OFF_VAR}={v}"),
            };
        }
        if !util::have_command(CCACHE) {
            return off("ccache is not installed (Debian package ccache)");
        }
        match local_dir() {
            Some(dir) => Setting::On(CompileCache::at(dir)),
            None => off("neither XDG_CACHE_HOME nor HOME is set"),
        }
    }

    /// The cache of a relink in an `O=` directory compiled `cached` or
    /// not: the compile's CC, whatever the setting is now, or kbuild
    /// compiles everything again (it compares command lines). Off when
    /// ccache has gone since.
    pub fn for_relink(cached: bool) -> Option<CompileCache> {
        local_dir()
            .filter(|_| cached && util::have_command(CCACHE))
            .map(CompileCache::at)
    }

    /// The preflight's check of the compile cache's variables: a value of
    /// [`OFF_VAR`] that means neither on nor off, or a remote that is no
    /// URL, would otherwise be taken silently as "on".
    pub fn check_env(profile: &Profile) -> Result<String> {
        if let Some(v) = std::env::var(OFF_VAR).ok().filter(|v| switch(v).is_none()) {
            anyhow::bail!("{OFF_VAR}={v}: expected on or off (1/0, true/false, yes/no)");
        }
        // ccache's remote storage URLs: `scheme:rest` (`file:/dir`,
        // `redis://host`, `http://host/path`).
        if let Ok(r) = std::env::var(REMOTE_VAR) {
            if !r.is_empty()
                && !r.split_once(':').is_some_and(|(scheme, rest)| {
                    !scheme.is_empty()
                        && scheme
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'+')
                        && !rest.is_empty()
                })
            {
                anyhow::bail!(
                    "{REMOTE_VAR}={r}: expected a ccache remote storage URL such as \
                     redis://host:6379, http://host/cache or file:/shared/dir"
                );
            }
        }
        Ok(Setting::of(profile).describe())
    }

    /// One line for `plan` and the build's log.
    pub fn describe(&self) -> String {
        match self {
            Setting::On(c) => format!(
                "on, ccache in {}{}",
                c.dir.display(),
                match &c.remote {
                    Some(r) => format!(", remote {r}"),
                    None => String::new(),
                }
            ),
            Setting::Off { why } => format!("off ({why})"),
        }
    }

    pub fn cache(&self) -> Option<&CompileCache> {
        match self {
            Setting::On(c) => Some(c),
            Setting::Off { .. } => None,
        }
    }
}

/// What a value of [`OFF_VAR`] says: off (`Some(false)`), on (empty
/// too), or neither (`None`).
fn switch(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "" | "on" | "1" | "true" | "yes" => Some(true),
        "off" | "0" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// `$XDG_CACHE_HOME/zfcpdump/ccache`, else `~/.cache/zfcpdump/ccache`.
fn local_dir() -> Option<PathBuf> {
    let abs = |v: &str| {
        std::env::var_os(v)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let base = abs("XDG_CACHE_HOME").or_else(|| abs("HOME").map(|h| h.join(".cache")))?;
    Some(base.join("zfcpdump").join("ccache"))
}

impl CompileCache {
    /// The cache in `dir`, with the remote [`REMOTE_VAR`] names, if any.
    fn at(dir: PathBuf) -> CompileCache {
        CompileCache {
            dir,
            remote: std::env::var(REMOTE_VAR).ok().filter(|r| !r.is_empty()),
        }
    }

    /// The CC prefix.
    pub fn launcher(&self) -> &'static str {
        CCACHE
    }

    /// Sets ccache's environment on a make of `src` into `obj`, its
    /// statistics going to `stats_log`.
    pub fn configure(&self, cmd: &mut Command, src: &Path, obj: &Path, stats_log: &Path) {
        let inherited: Vec<_> = std::env::vars_os()
            .map(|(k, _)| k)
            .chain(cmd.get_envs().map(|(k, _)| k.to_owned()))
            .filter(|k| k.to_string_lossy().starts_with("CCACHE_"))
            .collect();
        for k in inherited {
            cmd.env_remove(k);
        }
        cmd.env("CCACHE_DIR", &self.dir)
            // No ccache.conf: only what is set here counts.
            .env("CCACHE_CONFIGPATH", self.dir.join("zfcpdump-none.conf"))
            .env("CCACHE_BASEDIR", base_dir(src, obj))
            // Runners installed at different times have the same gcc with
            // other mtimes.
            .env("CCACHE_COMPILERCHECK", "content")
            .env("CCACHE_STATSLOG", stats_log);
        if let Some(r) = &self.remote {
            cmd.env("CCACHE_REMOTE_STORAGE", r);
        }
    }

    /// The file of cold compile times, for "time saved".
    fn cold_times(&self) -> PathBuf {
        self.dir.join("zfcpdump-cold-compiles.json")
    }

    /// The duration of the last cold compile of `key` with `jobs` jobs.
    pub fn cold_time(&self, key: &str, jobs: usize) -> Option<Duration> {
        let all: BTreeMap<String, f64> = crate::cache::read_json(&self.cold_times())?;
        all.get(&cold_key(key, jobs))
            .map(|s| Duration::from_secs_f64(*s))
    }

    /// Records a compile that the cache did not serve as the cold time of
    /// `key`.
    pub fn remember_cold(&self, key: &str, jobs: usize, took: Duration) -> Result<()> {
        let path = self.cold_times();
        let mut all: BTreeMap<String, f64> = crate::cache::read_json(&path).unwrap_or_default();
        all.insert(cold_key(key, jobs), took.as_secs_f64());
        crate::cache::write_json(&path, &all)
    }
}

fn cold_key(key: &str, jobs: usize) -> String {
    format!("{} -j{jobs}", &key[..key.len().min(16)])
}

/// The common parent of the two trees (real paths, as kbuild passes
/// them): paths under it are hashed relative to the `O=` directory.
fn base_dir(src: &Path, obj: &Path) -> PathBuf {
    let real = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (src, obj) = (real(src), real(obj));
    let mut base = PathBuf::new();
    for (a, b) in src.components().zip(obj.components()) {
        if a != b {
            break;
        }
        base.push(a);
    }
    base
}

/// What ccache's statistics log says of one make.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Results served from the cache, local or remote.
    pub hits: u64,
    /// Of those, served by the remote storage.
    pub remote_hits: u64,
    pub misses: u64,
    /// Calls ccache could not cache (linking, preprocessing only, ...).
    pub uncacheable: u64,
}

impl Stats {
    /// Reads ccache's stats log: one `# FILE` line per call, then the
    /// counters it updated.
    pub fn read(log: &Path) -> Result<Stats> {
        let text = fs::read_to_string(log)
            .with_context(|| format!("cannot read ccache's statistics log {}", log.display()))?;
        Ok(Self::parse(&text))
    }

    fn parse(text: &str) -> Stats {
        let mut s = Stats::default();
        let mut calls = 0u64;
        for line in text.lines() {
            match line.trim() {
                l if l.starts_with('#') => calls += 1,
                "direct_cache_hit" | "preprocessed_cache_hit" => s.hits += 1,
                "remote_storage_hit" => s.remote_hits += 1,
                "cache_miss" => s.misses += 1,
                _ => {}
            }
        }
        s.uncacheable = calls.saturating_sub(s.hits + s.misses);
        s
    }

    /// Cacheable calls: hits and misses.
    pub fn cacheable(&self) -> u64 {
        self.hits + self.misses
    }

    /// The hit rate in percent of the cacheable calls.
    pub fn hit_rate(&self) -> f64 {
        match self.cacheable() {
            0 => 0.0,
            n => 100.0 * self.hits as f64 / n as f64,
        }
    }

    /// "1520 hits (0 remote), 4 misses, 99.7% hits, 12 uncacheable".
    pub fn describe(&self) -> String {
        format!(
            "{} hits ({} remote), {} misses: {:.1}% hits; {} uncacheable",
            self.hits,
            self.remote_hits,
            self.misses,
            self.hit_rate(),
            self.uncacheable
        )
    }

    /// Whether the compile was cold: the cache served almost nothing.
    pub fn cold(&self) -> bool {
        self.cacheable() > 0 && self.hit_rate() < 5.0
    }
}

/// What one kernel compile did with the compile cache: a line of the
/// build's log, and a JSON line of the file [`REPORT_VAR`] names, which
/// CI's summary and the cache lab read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompileReport {
    pub profile: String,
    pub release: String,
    /// The compile's wall time.
    pub seconds: f64,
    /// make's `-j`.
    #[serde(default)]
    pub jobs: usize,
    /// [`Setting::describe`] at the compile.
    pub cache: String,
    /// None with the cache off.
    pub stats: Option<Stats>,
    /// The last cold compile of the same configuration with as many jobs,
    /// for the time saved.
    pub cold_seconds: Option<f64>,
}

impl CompileReport {
    pub fn describe(&self) -> String {
        let took = util::fmt_duration(Duration::from_secs_f64(self.seconds));
        let Some(stats) = &self.stats else {
            return format!(
                "{}: {} compiled in {took}; compile cache {}",
                self.profile, self.release, self.cache
            );
        };
        let saved = if stats.cold() {
            "cold, now the reference for the time saved".to_string()
        } else {
            match self.cold_seconds {
                Some(cold) => format!(
                    "about {} saved against the cold compile's {}",
                    util::fmt_duration(Duration::from_secs_f64((cold - self.seconds).max(0.0))),
                    util::fmt_duration(Duration::from_secs_f64(cold))
                ),
                None => "time saved unknown: no cold compile of it on record".to_string(),
            }
        };
        format!(
            "{}: {} compiled in {took}: {}; {saved}",
            self.profile,
            self.release,
            stats.describe()
        )
    }

    /// Prints the report and appends it to [`REPORT_VAR`]'s file, if set.
    pub fn publish(&self) {
        eprintln!("[kernel] compile cache: {}", self.describe());
        let Some(path) = std::env::var_os(REPORT_VAR) else {
            return;
        };
        use std::io::Write;
        let res = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| {
                writeln!(
                    f,
                    "{}",
                    serde_json::to_string(self).expect("a report serializes")
                )
            });
        if let Err(e) = res {
            eprintln!(
                "warning: cannot append to {}: {e}",
                Path::new(&path).display()
            );
        }
    }

    /// The reports in a [`REPORT_VAR`] file.
    pub fn read_all(path: &Path) -> Result<Vec<CompileReport>> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .with_context(|| format!("{}: not a compile report: {l}", path.display()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_log_counts_hits_misses_and_the_rest() {
        let log = "# a.c\ncache_miss\ndirect_cache_miss\npreprocessed_cache_miss\n\
                   # a.c\ndirect_cache_hit\nlocal_storage_hit\n\
                   # b.c\ndirect_cache_hit\nlocal_storage_miss\nremote_storage_hit\n\
                   # vmlinux.o\ncalled_for_link\n";
        let s = Stats::parse(log);
        assert_eq!(
            s,
            Stats {
                hits: 2,
                remote_hits: 1,
                misses: 1,
                uncacheable: 1
            }
        );
        assert!((s.hit_rate() - 66.66).abs() < 0.1);
        assert!(!s.cold());
        assert!(Stats::parse("# a.c\ncache_miss\n").cold());
        assert!(!Stats::parse("").cold());
    }

    #[test]
    fn base_dir_is_the_common_parent() {
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("kernel");
        fs::create_dir_all(k.join("src/abc/linux")).unwrap();
        fs::create_dir_all(k.join("build-1")).unwrap();
        assert_eq!(
            base_dir(&k.join("src/abc/linux"), &k.join("build-1")),
            fs::canonicalize(&k).unwrap()
        );
    }
}
