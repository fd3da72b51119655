//! `fuzz`: coverage-guided fuzzing of every parser with libFuzzer, through
//! the `fuzz/` crate (cargo-fuzz's layout, so `cargo fuzz run TARGET` works
//! too where cargo-fuzz is installed).
//!
//! The engine is libFuzzer (the `libfuzzer-sys` crate, which builds it from
//! its C++ source): maintained with LLVM, the same instrumentation rustc
//! emits (`-Cpasses=sancov-module`), AddressSanitizer and LeakSanitizer
//! through `-Zsanitizer=address`, and hang, leak and out-of-memory detection
//! built in. The targets are built the way cargo-fuzz builds them, by cargo
//! itself with cargo-fuzz's flags, so nothing else needs installing; the
//! stable toolchain takes the `-Z` flag with `RUSTC_BOOTSTRAP=1`, and
//! `--target` keeps the flags off build scripts and proc macros.
//!
//! Each target runs for `--time` seconds over its working corpus
//! (`<target>/zfcpdump/fuzz/corpus/T/`, kept between runs) and its seeds
//! (`fuzz/seeds/T/`, committed: real files the tests make, trimmed; the
//! profile target also reads `profiles/`). A crash, leak, hang (10 s for
//! one input) or out-of-memory (2 GiB) fails the task and prints the
//! reproducer; findings become regression tests in the normal test suite.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;

use crate::kit::Table;
use crate::kit::table::{Left, Right};
use zfcpdump_builder::{provision, util};

#[derive(Args, Clone, Debug)]
pub struct FuzzArgs {
    /// The target to run (default: all of them, one after the other)
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(TARGETS.map(|t| t.name)))]
    pub target: Option<String>,
    /// Seconds per target
    #[arg(long, default_value_t = 30, value_name = "S")]
    pub time: u64,
    /// Fail listing missing host packages instead of installing them
    #[arg(long)]
    pub no_provision: bool,
    /// Build with what `cargo xtask fetch` brought (no network)
    #[arg(long)]
    pub offline: bool,
}

/// A fuzz target: its binary in `fuzz/`, what it covers, extra seed dirs
/// (relative to the project).
pub struct Target {
    pub name: &'static str,
    pub what: &'static str,
    pub extra_seeds: &'static [&'static str],
}

pub const TARGETS: [Target; 5] = [
    Target {
        name: "vmcore",
        what: "vmcore ELF reader, copy plan, the filter's kernel-structure parsers",
        extra_seeds: &[],
    },
    Target {
        name: "disk",
        what: "MBR, boot_info, DOS table, superblock, checksum, partition match",
        extra_seeds: &[],
    },
    Target {
        name: "filtered",
        what: "filtered layout writer round trip (write, read back, same memory)",
        extra_seeds: &[],
    },
    Target {
        name: "agent_text",
        what: "agent config file and kernel command line",
        extra_seeds: &[],
    },
    Target {
        name: "profile",
        what: "profile loader, extends and --set",
        extra_seeds: &["profiles"],
    },
];

/// cargo-fuzz's instrumentation flags.
const RUSTFLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg",
    "fuzzing",
    "-Zsanitizer=address",
    "-Cdebug-assertions",
    "-Coverflow-checks",
    "-Cforce-frame-pointers",
];
const TRIPLE: &str = "x86_64-unknown-linux-gnu";
/// One input running longer than this is a hang.
const INPUT_TIMEOUT_S: u32 = 10;
const RSS_LIMIT_MB: u32 = 2048;

/// What one target's run did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stats {
    pub execs: u64,
    pub exec_per_sec: u64,
    /// Edges (inline 8-bit counters) covered, and how many the target has.
    pub cov: u64,
    pub counters: u64,
    pub features: u64,
    pub corpus: u64,
    pub peak_rss_mb: u64,
}

pub fn run(args: &FuzzArgs) -> Result<()> {
    let root = util::project_root();
    let needs: Vec<&provision::Need> = provision::TEST
        .iter()
        .filter(|n| n.package == Some("g++"))
        .collect();
    provision::ensure(&needs, &[], !args.no_provision && !args.offline)?;
    let dir = util::cache_dir(&root).join("fuzz");
    let t0 = Instant::now();
    let bins = build(&root, &dir, args.offline)?;
    let targets: Vec<&Target> = TARGETS
        .iter()
        .filter(|t| args.target.as_deref().is_none_or(|n| n == t.name))
        .collect();
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for t in targets {
        eprintln!("[fuzz] {}: {} s ({})", t.name, args.time, t.what);
        match run_target(&root, &dir, &bins, t, args.time) {
            Ok(s) => rows.push((t, Some(s), None)),
            Err(e) => {
                eprintln!("[fuzz] {} FAILED: {e:#}", t.name);
                failed.push(t.name);
                rows.push((t, None, Some(format!("{e:#}"))));
            }
        }
    }
    let table = render(&rows, args.time);
    util::write_atomic(&dir.join("summary.txt"), table.as_bytes())?;
    eprintln!("\n{table}");
    if !failed.is_empty() {
        bail!(
            "fuzzing found problems in {} (reproducers above)",
            failed.join(", ")
        );
    }
    eprintln!(
        "[fuzz] all targets clean in {}; summary: {}",
        util::fmt_duration(t0.elapsed()),
        dir.join("summary.txt").display()
    );
    Ok(())
}

/// Builds every target with the sanitizer and coverage flags; returns the
/// directory that holds the binaries.
fn build(root: &Path, dir: &Path, offline: bool) -> Result<PathBuf> {
    let target_dir = dir.join("target");
    eprintln!("[fuzz] building the targets (libFuzzer, AddressSanitizer)");
    let t = Instant::now();
    let mut c = Command::new(env!("CARGO"));
    c.args([
        "build",
        "--release",
        "--bins",
        "--locked",
        "--target",
        TRIPLE,
    ])
    .arg("--manifest-path")
    .arg(root.join("fuzz/Cargo.toml"))
    .env("CARGO_TARGET_DIR", &target_dir)
    .env("RUSTC_BOOTSTRAP", "1")
    .env("RUSTFLAGS", RUSTFLAGS.join(" "))
    // The project's own flags are for the s390x agent, not these.
    .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if offline {
        c.arg("--offline");
    }
    let st = c.status().context("cannot run cargo")?;
    ensure!(
        st.success(),
        "building the fuzz targets failed ({st}); they need g++ (libFuzzer is C++)"
    );
    eprintln!("[fuzz] built in {}", util::fmt_duration(t.elapsed()));
    Ok(target_dir.join(TRIPLE).join("release"))
}

fn run_target(root: &Path, dir: &Path, bins: &Path, t: &Target, secs: u64) -> Result<Stats> {
    let corpus = dir.join("corpus").join(t.name);
    let artifacts = dir.join("artifacts").join(t.name);
    let _ = fs::remove_dir_all(&artifacts);
    fs::create_dir_all(&corpus)?;
    fs::create_dir_all(&artifacts)?;
    let log = dir.join(format!("{}.log", t.name));
    let mut c = Command::new(bins.join(t.name));
    c.arg(format!("-max_total_time={secs}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_S}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-malloc_limit_mb={RSS_LIMIT_MB}"))
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(&corpus);
    let seeds = root.join("fuzz/seeds").join(t.name);
    if seeds.is_dir() {
        c.arg(&seeds);
    }
    for extra in t.extra_seeds {
        c.arg(root.join(extra));
    }
    let out = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log)?)
        .status()
        .with_context(|| format!("cannot run {}", bins.join(t.name).display()))?;
    let text = fs::read_to_string(&log).unwrap_or_default();
    if !out.success() {
        let reproducer = fs::read_dir(&artifacts)?.flatten().map(|e| e.path()).next();
        let mut msg = format!("libFuzzer exited {out}; log {}", log.display());
        if let Some(r) = reproducer {
            let bytes = fs::read(&r).unwrap_or_default();
            let _ = write!(
                msg,
                "\nreproducer: {} ({} bytes; run it again with {} {})\n{}",
                r.display(),
                bytes.len(),
                bins.join(t.name).display(),
                r.display(),
                hexdump(&bytes[..bytes.len().min(256)])
            );
        }
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let _ = write!(
            msg,
            "\n---- log tail ----\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        bail!(msg);
    }
    parse_stats(&text).with_context(|| format!("no final statistics in {}", log.display()))
}

/// libFuzzer's last status line (`#N DONE cov: C ft: F corp: K/…`), its
/// module line (`Loaded 1 modules (N inline 8-bit counters)`) and the
/// `stat::` lines of `-print_final_stats`.
pub fn parse_stats(log: &str) -> Option<Stats> {
    let num_after = |line: &str, key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        let digits: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse().ok()
    };
    let mut s = Stats::default();
    let status = log
        .lines()
        .rfind(|l| l.starts_with('#') && l.contains(" cov: "))?;
    s.cov = num_after(status, "cov:")?;
    s.features = num_after(status, "ft:").unwrap_or(0);
    s.corpus = num_after(status, "corp:").unwrap_or(0);
    for l in log.lines() {
        if l.contains("inline 8-bit counters") {
            s.counters = l
                .split('(')
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        }
        if let Some(v) = l.strip_prefix("stat::number_of_executed_units:") {
            s.execs = v.trim().parse().ok()?;
        }
        if let Some(v) = l.strip_prefix("stat::average_exec_per_sec:") {
            s.exec_per_sec = v.trim().parse().ok()?;
        }
        if let Some(v) = l.strip_prefix("stat::peak_rss_mb:") {
            s.peak_rss_mb = v.trim().parse().ok()?;
        }
    }
    Some(s)
}

fn render(rows: &[(&Target, Option<Stats>, Option<String>)], secs: u64) -> String {
    let mut table = Table::new(&[
        ("target", Left),
        ("execs", Right),
        ("exec/s", Right),
        ("cov (edges)", Right),
        ("features", Right),
        ("corpus", Right),
        ("rss MB", Right),
        ("result", Left),
    ]);
    for (t, st, err) in rows {
        match st {
            Some(x) => table.row([
                t.name.to_string(),
                x.execs.to_string(),
                x.exec_per_sec.to_string(),
                format!("{}/{}", x.cov, x.counters),
                x.features.to_string(),
                x.corpus.to_string(),
                x.peak_rss_mb.to_string(),
                "ok".to_string(),
            ]),
            None => {
                let first = err.as_deref().unwrap_or("").lines().next().unwrap_or("");
                table.spanning([t.name], format!("FAILED: {first}"));
            }
        }
    }
    let mut targets = Table::headless(&[Left, Left]).indent("  ");
    for (t, _, _) in rows {
        targets.row([t.name, t.what]);
    }
    format!(
        "cargo xtask fuzz: libFuzzer + AddressSanitizer, {secs} s per target\n\n{}\ntargets:\n{}",
        table.render(),
        targets.render()
    )
}

fn hexdump(b: &[u8]) -> String {
    let mut s = String::new();
    for (i, line) in b.chunks(16).enumerate() {
        let hex: Vec<String> = line.iter().map(|x| format!("{x:02x}")).collect();
        let _ = writeln!(s, "{:08x}  {}", i * 16, hex.join(" "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_stats_are_parsed() {
        let log = "INFO: Loaded 1 modules   (23456 inline 8-bit counters): 23456 [0x1, 0x2),\n\
                   #2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb\n\
                   #118231\tDONE   cov: 1234 ft: 5678 corp: 321/45Kb lim: 4096 exec/s: 3941 rss: 310Mb\n\
                   Done 118231 runs in 31 second(s)\n\
                   stat::number_of_executed_units: 118231\n\
                   stat::average_exec_per_sec:     3813\n\
                   stat::new_units_added:          402\n\
                   stat::slowest_unit_time_sec:    0\n\
                   stat::peak_rss_mb:              311\n";
        assert_eq!(
            parse_stats(log),
            Some(Stats {
                execs: 118231,
                exec_per_sec: 3813,
                cov: 1234,
                counters: 23456,
                features: 5678,
                corpus: 321,
                peak_rss_mb: 311,
            })
        );
        assert_eq!(parse_stats("no status here"), None);
    }

    #[test]
    fn the_table_has_a_row_per_target_and_a_failure_spans_it() {
        let stats = Stats {
            execs: 118231,
            exec_per_sec: 3813,
            cov: 1234,
            counters: 23456,
            features: 5678,
            corpus: 321,
            peak_rss_mb: 311,
        };
        let rows = [
            (&TARGETS[0], Some(stats), None),
            (
                &TARGETS[1],
                None,
                Some("libFuzzer exited 1\nmore".to_string()),
            ),
        ];
        let t = render(&rows, 30);
        let words = |first: &str| -> Vec<&str> {
            let l = t.lines().find(|l| l.starts_with(first));
            l.unwrap_or_else(|| panic!("no row {first}:\n{t}"))
                .split_whitespace()
                .collect()
        };
        assert_eq!(
            words("vmcore "),
            [
                "vmcore",
                "118231",
                "3813",
                "1234/23456",
                "5678",
                "321",
                "311",
                "ok"
            ]
        );
        assert_eq!(
            words("disk "),
            ["disk", "FAILED:", "libFuzzer", "exited", "1"]
        );
        assert!(t.contains("\ntargets:\n  vmcore "), "{t}");
    }
}
