//! `bench`: times the agent's copy path against `dd bs=64K`, `dd bs=1M` and
//! `cp` on the same generated vmcores, in the same run (issues 3 and 6), and
//! the agent with zero-page elision (`dump_level = 1` through
//! `--config`) as a fifth contender.
//!
//! Method, chosen so that the contenders differ only in how they copy:
//! - The source is read once before timing, so every contender reads it from
//!   the page cache (what /proc/vmcore costs cannot be measured here anyway).
//! - Every target is a fresh sparse file before each run: the agent's disk
//!   image is prepared again by `zfcpdump-disk prepare`, the dd targets are
//!   files of the image's size made the same way (set_len) and written at the
//!   dump area's offset, and cp creates its own (it always truncates, so no
//!   pre-sized file could be kept for it). So every contender allocates the
//!   same blocks and none overwrites blocks the others must allocate.
//! - `sync -f` before each run, outside the timing, so no contender pays for
//!   the previous one's writeback or freed blocks (with the `discard` mount
//!   option, freeing blocks costs I/O too).
//! - Rounds are interleaved and their order rotates, so slow phases of a
//!   noisy machine spread over all contenders; the table shows the median
//!   and the min-max spread.
//! - Only one vmcore and one target exist at a time: the space it needs is
//!   about twice the vmcore, stated and checked before anything is written.
//!
//! Every vmcore is timed twice: with the page cache as the target (what the
//! copy costs in CPU), and with the writes limited to `--device-mbps` (800
//! MB/s by default, about an 8 Gb/s FCP link) through a block-I/O cgroup
//! ([`throttle`]), a model of the real dump disk. The limited section needs
//! root; without it the table says why it is missing.

mod classifier;
mod report;
mod runner;
mod throttle;
mod workdir;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use serde::Serialize;

use report::{ContenderReport, DeviceLimitReport, FractionReport, Report, render};
use runner::{Bench, Source, build_tools, resident};
use throttle::Throttle;
use zfcpdump_builder::cmd::{self, cmd};
use zfcpdump_builder::util;
use zfcpdump_format::size::parse_size;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const MAX_SIZE: u64 = 8 * GIB;
/// Below this a run is dominated by process start and fsync latency.
const MIN_SIZE: u64 = 256 * MIB;
/// With the hidden `--allow-small` (tests).
const MIN_SIZE_SMALL: u64 = 4 * MIB;
const MIN_RUNS: u32 = 5;
/// The real HSA size: the agent copies the HSA-backed ranges first, as on a
/// real dump, and only logs the release.
const HSA_SIZE: &str = "0x2000000";
/// Dump tool image and initrd sizes that zipl's reserve is computed from
/// (the ones real zipl was checked with in the agent's tests).
const TOOL_IMAGE_SIZE: u64 = 2_371_584;
const TOOL_INITRD_SIZE: u64 = 64_396;
/// Partition start (zfcpdump-disk's default) plus room for zipl's reserve
/// (about 35 MiB for the sizes above) after the dump area.
const DISK_EXTRA: u64 = 65 * MIB;
/// ELF header, program headers and notes of a fixture: a few pages.
const VMCORE_OVERHEAD: u64 = MIB;
/// File system metadata and anything else the run writes.
const FS_SLACK: u64 = 64 * MIB;
/// The default device limit, about what an 8 Gb/s FCP link carries.
const DEFAULT_DEVICE_MBPS: u64 = 800;
/// Above this size the device-limited section runs only when asked for:
/// at 800 MB/s it would outlast the bench's 10 minutes.
const DEFAULT_DEVICE_MAX_SIZE: u64 = 2 * GIB;
/// A small vmcore run once, untimed, so the agent's peak RSS is seen at two
/// sizes in every run.
const PROBE_MAX: u64 = 64 * MIB;

#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Memory size of the generated vmcores: bytes, or with K/M/G (powers of
    /// 1024); at most 8G
    #[arg(long, value_name = "BYTES", default_value = "1G", value_parser = parse_size)]
    pub size: u64,
    /// Timed runs per contender and vmcore (at least 5)
    #[arg(long, default_value_t = MIN_RUNS)]
    pub runs: u32,
    /// Fraction of zero pages in a vmcore, 0 to 1; repeat for several
    /// (default: 0 and 0.5)
    #[arg(long = "zero-fraction", value_name = "F")]
    pub zero_fractions: Vec<f64>,
    /// Directory for the work files (default: target/zfcpdump/bench); it
    /// needs the free space stated at the start
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Also time every contender with writes to the disk limited to this
    /// many MB/s (10^6 bytes), a model of the FCP-attached dump disk; 0 for
    /// off. Needs root and a block-I/O cgroup controller. Default: 800 for
    /// sizes up to 2G, else off
    #[arg(long, value_name = "MB/s")]
    pub device_mbps: Option<u64>,
    /// Time this s390x agent (a dist build's) under qemu-s390x-static
    /// instead of the host build: emulated numbers, to compare two s390x
    /// builds (the glibc and the musl agent) with each other
    #[arg(long, value_name = "BIN")]
    pub s390x_agent: Option<PathBuf>,
    /// Also write the numbers as JSON to OUT
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
    /// Only the page classifier section: its speed and the minimum excluded
    /// run's effect on bytes written and program headers, on a memory map
    /// tiled from the crash-lab kernels' real struct pages
    #[arg(long)]
    pub classifier: bool,
    /// Memory size of the classifier section's map, in GiB
    #[arg(long, value_name = "GIB", default_value_t = 16)]
    pub classifier_gib: u64,
    /// Tests only: allow sizes down to 4 MiB
    #[arg(long, hide = true)]
    pub allow_small: bool,
    /// Tests only: write the table here instead of
    /// target/zfcpdump/bench/latest.txt
    #[arg(long, hide = true, value_name = "FILE")]
    pub latest: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contender {
    Agent,
    Dd64K,
    Dd1M,
    Cp,
    /// The agent with zero-page elision.
    AgentElided,
}

const CONTENDERS: [Contender; 5] = [
    Contender::Agent,
    Contender::Dd64K,
    Contender::Dd1M,
    Contender::Cp,
    Contender::AgentElided,
];

/// The config file that turns zero-page elision on.
const ELIDE_CONF: &str = "dump_level = 1\n";

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::Agent => "zfcpdump-agent",
            Contender::Dd64K => "dd bs=64K",
            Contender::Dd1M => "dd bs=1M",
            Contender::Cp => "cp + sync",
            Contender::AgentElided => "agent, elided",
        }
    }

    /// Short name for progress lines and JSON.
    fn key(self) -> &'static str {
        match self {
            Contender::Agent => "agent",
            Contender::Dd64K => "dd_64k",
            Contender::Dd1M => "dd_1m",
            Contender::Cp => "cp",
            Contender::AgentElided => "agent_elided",
        }
    }
}

impl Contender {
    fn is_agent(self) -> bool {
        matches!(self, Contender::Agent | Contender::AgentElided)
    }
}

/// Round `round`'s order: rotated by one each round.
fn round_order(round: usize) -> Vec<Contender> {
    let mut v = CONTENDERS.to_vec();
    v.rotate_left(round % CONTENDERS.len());
    v
}

/// Median, min and max of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

fn stats(xs: &[f64]) -> Stats {
    assert!(!xs.is_empty(), "stats of no runs");
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Stats {
        median,
        min: v[0],
        max: v[n - 1],
    }
}

/// MB/s with MB = 10^6 bytes, as dd prints it.
fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64().max(1e-9) / 1e6
}

/// Free space needed for a run at `size`: one vmcore and one written target
/// at a time (each is deleted after its run), plus slack.
fn space_needed(size: u64) -> u64 {
    2 * (size + VMCORE_OVERHEAD) + FS_SLACK
}

fn check_space(dir: &Path, need: u64, avail: u64) -> Result<()> {
    if avail < need {
        bail!(
            "not enough free space in {}: the bench needs {} ({need} bytes: a vmcore and \
             one target at a time, plus slack), but only {} ({avail} bytes) are available; \
             free some space, use --dir on another file system, or a smaller --size",
            dir.display(),
            fmt_bytes(need),
            fmt_bytes(avail)
        );
    }
    Ok(())
}

/// Bytes available to us in `dir`, from `df` (statvfs without libc).
fn free_space(dir: &Path) -> Result<u64> {
    let sh = cmd::shell()?;
    let out = cmd::output(cmd!(sh, "df --output=avail -B1 {dir}"))?;
    parse_df_avail(&String::from_utf8_lossy(&out.stdout))
}

/// The number on the last line of `df --output=avail -B1`.
fn parse_df_avail(s: &str) -> Result<u64> {
    s.lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("cannot read df's output {s:?}"))
}

/// `N` from the agent's `peak RSS: N KiB` line.
fn parse_peak_rss(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak RSS: "))
        .and_then(|r| r.strip_suffix(" KiB"))
        .and_then(|n| n.trim().parse().ok())
}

/// The dump area from `zfcpdump-disk prepare`'s `dump area: 0xA..0xB (...)`.
fn parse_dump_area(stdout: &str) -> Option<(u64, u64)> {
    let rest = stdout.lines().find_map(|l| l.strip_prefix("dump area: "))?;
    let range = rest.split_whitespace().next()?;
    let (a, b) = range.split_once("..")?;
    let hex = |s: &str| u64::from_str_radix(s.strip_prefix("0x")?, 16).ok();
    Some((hex(a)?, hex(b)?))
}

/// "1 GiB", "1.5 GiB", "64 MiB", "512 B".
fn fmt_bytes(n: u64) -> String {
    for (unit, name) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if n >= unit {
            return if n % unit == 0 {
                format!("{} {name}", n / unit)
            } else {
                format!("{:.1} {name}", n as f64 / unit as f64)
            };
        }
    }
    format!("{n} B")
}

/// "0%", "50%", "12.5%".
fn fmt_fraction(f: f64) -> String {
    let p = f * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}%")
    } else {
        format!("{p}%")
    }
}

fn mem_available() -> Option<u64> {
    let s = fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * KIB)
}

fn validate(args: &BenchArgs) -> Result<Vec<f64>> {
    let min = if args.allow_small {
        MIN_SIZE_SMALL
    } else {
        MIN_SIZE
    };
    ensure!(
        (min..=MAX_SIZE).contains(&args.size),
        "--size must be between {} and {}, not {}",
        fmt_bytes(min),
        fmt_bytes(MAX_SIZE),
        fmt_bytes(args.size)
    );
    ensure!(
        args.runs >= MIN_RUNS,
        "--runs must be at least {MIN_RUNS}: the median and spread need them"
    );
    let fractions = if args.zero_fractions.is_empty() {
        vec![0.0, 0.5]
    } else {
        args.zero_fractions.clone()
    };
    for f in &fractions {
        ensure!(
            (0.0..=1.0).contains(f),
            "--zero-fraction must be between 0 and 1, not {f}"
        );
    }
    Ok(fractions)
}

/// `device_mbps` as asked for, or its default for the size; 0 is off.
fn device_mbps(args: &BenchArgs) -> u64 {
    match args.device_mbps {
        Some(m) => m,
        None if args.size <= DEFAULT_DEVICE_MAX_SIZE => DEFAULT_DEVICE_MBPS,
        None => 0,
    }
}

/// One untimed warm-up round and `runs` timed rounds of every contender on
/// `src` (with `zero_fraction` zero pages, generated in `generate_seconds`),
/// with the page cache as the target or, with `limit`, the writes limited.
fn time_contenders(
    b: &mut Bench,
    src: &Source,
    (zero_fraction, generate_seconds): (f64, f64),
    runs: u32,
    limit: Option<&Throttle>,
) -> Result<FractionReport> {
    let label = match limit {
        Some(t) => format!("{} at {} MB/s", src.label, t.bytes_per_s / 1_000_000),
        None => src.label.clone(),
    };
    let mut mbps: Vec<Vec<f64>> = vec![Vec::new(); CONTENDERS.len()];
    let mut rss = Vec::new();
    // Round 0 warms up: the first big write after generating a vmcore was up
    // to 4 times slower, whoever ran it. It also checks the dump.
    for round in 0..=runs as usize {
        let t_round = Instant::now();
        for c in round_order(round) {
            let run = b.run_one(c, src, round == 0, limit)?;
            let what = if round == 0 {
                "warm-up (not timed)".to_string()
            } else {
                format!("run {round}/{runs}")
            };
            eprintln!(
                "[bench] {what}: {} {label} ... {:.0} MB/s",
                c.key(),
                run.mbps
            );
            if round > 0 {
                let i = CONTENDERS.iter().position(|&x| x == c).unwrap_or(0);
                mbps[i].push(run.mbps);
                rss.extend(run.rss_kib);
            }
        }
        if round == 0 {
            eprintln!(
                "[bench] a round took {}; about {} for the {runs} timed ones of {label}",
                util::fmt_duration(t_round.elapsed()),
                util::fmt_duration(t_round.elapsed() * runs)
            );
        }
    }
    let dd1m = stats(&mbps[2]).median;
    let contenders = CONTENDERS
        .iter()
        .zip(&mbps)
        .map(|(&c, v)| {
            let st = stats(v);
            ContenderReport {
                key: c.key().into(),
                name: c.name().into(),
                command: b.describe(c),
                mb_per_s: v.clone(),
                stats: st,
                ratio_to_dd_1m: st.median / dd1m,
            }
        })
        .collect();
    Ok(FractionReport {
        zero_fraction,
        vmcore_bytes: src.len,
        generate_seconds,
        contenders,
        agent_peak_rss_kib: rss,
        resident_after: resident(&src.path),
    })
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if args.classifier {
        print!("{}", classifier::section(args.classifier_gib)?);
        return Ok(());
    }
    let t0 = Instant::now();
    let fractions = validate(args)?;
    let root = util::project_root();
    let bench_dir = util::cache_dir(&root).join("bench");
    let parent = args.dir.clone().unwrap_or_else(|| bench_dir.clone());
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;

    let need = space_needed(args.size);
    let avail = free_space(&parent)?;
    eprintln!(
        "[bench] needs {} free in {} (a {} vmcore and one target at a time, plus slack); \
         {} available",
        fmt_bytes(need),
        parent.display(),
        fmt_bytes(args.size),
        fmt_bytes(avail)
    );
    check_space(&parent, need, avail)?;
    if let Some(m) = mem_available().filter(|&m| m < 2 * args.size + GIB) {
        eprintln!(
            "[bench] warning: {} of memory available: the vmcore may not stay in the page cache",
            fmt_bytes(m)
        );
    }

    let mut tools = build_tools(&root)?;
    if let Some(bin) = &args.s390x_agent {
        tools = tools.with_s390x_agent(bin)?;
    }
    let mut b = Bench::new(tools, &parent)?;
    let probe = (args.size / 16).clamp(MIB, PROBE_MAX);
    let rss_probe = b.rss_probe(probe)?;

    let (mbps_limit, mut skipped) = match device_mbps(args) {
        0 if args.device_mbps == Some(0) => (0, Some("off (--device-mbps 0)".to_string())),
        0 => (
            0,
            Some(format!(
                "off by default above {}; ask for it with --device-mbps",
                fmt_bytes(DEFAULT_DEVICE_MAX_SIZE)
            )),
        ),
        m => (m, None),
    };
    let mut throttle = None;
    if mbps_limit > 0 {
        match Throttle::new(&b.work.path, mbps_limit * 1_000_000) {
            Ok(t) => {
                eprintln!(
                    "[bench] device-limited section: writes to {} limited to {mbps_limit} MB/s \
                     ({})",
                    t.device, t.mechanism
                );
                throttle = Some(t);
            }
            Err(e) if args.device_mbps.is_some() => {
                return Err(e.context(format!("cannot limit writes to {mbps_limit} MB/s")));
            }
            Err(e) => {
                eprintln!("[bench] no device-limited section: {e:#}");
                skipped = Some(format!("{e:#}"));
            }
        }
    }
    // The page cache first, then the device limit if it could be set up.
    let sections: Vec<Option<&Throttle>> = std::iter::once(None)
        .chain(throttle.as_ref().map(Some))
        .collect();

    let mut results = Vec::new();
    let mut limited_results = Vec::new();
    let t_bench = Instant::now();
    for &zf in &fractions {
        eprintln!(
            "[bench] generating a {} vmcore with {} zero pages",
            fmt_bytes(args.size),
            fmt_fraction(zf)
        );
        let (src, gen_secs) = b.source("bench.vmcore", args.size, zf)?;
        eprintln!(
            "[bench] generated {} bytes in {:.1}s; read once to warm the page cache ({} resident)",
            src.len,
            gen_secs,
            resident(&src.path).map_or("unknown".into(), fmt_bytes)
        );
        for &limit in &sections {
            let fr = time_contenders(&mut b, &src, (zf, gen_secs), args.runs, limit)?;
            if limit.is_some() {
                limited_results.push(fr);
            } else {
                results.push(fr);
            }
        }
        fs::remove_file(&src.path)?;
    }
    eprintln!(
        "[bench] vmcores and runs took {}",
        util::fmt_duration(t_bench.elapsed())
    );
    let commands: Vec<(String, String)> = CONTENDERS
        .iter()
        .map(|&c| (c.name().to_string(), b.describe(c)))
        .collect();
    let peak_disk = b.peak_disk;
    let device_limit = throttle.as_ref().map(|t| DeviceLimitReport {
        mb_per_s: mbps_limit,
        mechanism: t.mechanism.to_string(),
        device: t.device.clone(),
        results: limited_results,
    });
    drop(throttle); // removes the cgroup
    drop(b); // removes the work dir before the report says it is clean
    let report = Report {
        schema: 2,
        unit: "MB/s (10^6 bytes per second)".into(),
        size_bytes: args.size,
        runs: args.runs,
        dir: parent.display().to_string(),
        space_needed_bytes: need,
        peak_disk_use_bytes: peak_disk,
        total_seconds: t0.elapsed().as_secs_f64(),
        rss_probe,
        results,
        device_limit,
        device_limit_skipped: skipped,
    };
    let mut table = render(&report, &commands);
    table.push('\n');
    table.push_str(&classifier::section(args.classifier_gib)?);
    print!("{table}");
    let latest = args
        .latest
        .clone()
        .unwrap_or_else(|| bench_dir.join("latest.txt"));
    util::write_atomic(&latest, table.as_bytes())?;
    if let Some(out) = &args.json {
        let mut json = serde_json::to_vec_pretty(&report)?;
        json.push(b'\n');
        util::write_atomic(out, &json)?;
    }
    eprintln!("[bench] table written to {}", latest.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let s = stats(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(
            s,
            Stats {
                median: 3.0,
                min: 1.0,
                max: 5.0
            }
        );
        assert_eq!(stats(&[4.0, 1.0, 3.0, 2.0]).median, 2.5);
        assert_eq!(stats(&[7.0]).median, 7.0);
    }

    #[test]
    fn mb_are_decimal() {
        assert_eq!(mb_per_s(2_000_000, Duration::from_secs(1)), 2.0);
        assert_eq!(mb_per_s(1_000_000, Duration::from_millis(500)), 2.0);
    }

    #[test]
    fn rounds_rotate_through_every_position() {
        assert_eq!(round_order(0)[0], Contender::Agent);
        assert_eq!(round_order(1)[0], Contender::Dd64K);
        assert_eq!(round_order(5), round_order(0));
        for c in CONTENDERS {
            let positions: Vec<_> = (0..5)
                .map(|r| round_order(r).iter().position(|&x| x == c).unwrap())
                .collect();
            let mut sorted = positions.clone();
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2, 3, 4], "{c:?}");
        }
    }

    #[test]
    fn space_check_states_need_and_refuses() {
        let need = space_needed(GIB);
        assert_eq!(need, 2 * GIB + 2 * MIB + 64 * MIB);
        assert!(check_space(Path::new("/x"), need, need).is_ok());
        let e = check_space(Path::new("/x"), need, GIB)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not enough free space in /x"), "{e}");
        assert!(e.contains("2.1 GiB"), "{e}");
        assert!(e.contains("1 GiB"), "{e}");
        assert_eq!(
            parse_df_avail("     Avail\n74011963392\n").unwrap(),
            74011963392
        );
        assert!(parse_df_avail("df: oops\n").is_err());
    }

    #[test]
    fn parses_tool_output() {
        let agent = "busy marker written\nDump successful\npeak RSS: 3124 KiB\n";
        assert_eq!(parse_peak_rss(agent), Some(3124));
        assert_eq!(parse_peak_rss("Dump failed: copy\n"), None);
        let prep = "prepared d.img (1 bytes, 512-byte sectors)\n\
                    dump area: 0x100000..0x41dbbe00 (1.0 GiB); superblock at 0x42019400\n";
        assert_eq!(parse_dump_area(prep), Some((0x100000, 0x41dbbe00)));
        assert_eq!(parse_dump_area("nothing"), None);
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_bytes(GIB), "1 GiB");
        assert_eq!(fmt_bytes(3 * GIB / 2), "1.5 GiB");
        assert_eq!(fmt_bytes(64 * MIB), "64 MiB");
        assert_eq!(fmt_bytes(100), "100 B");
        assert_eq!(fmt_fraction(0.0), "0%");
        assert_eq!(fmt_fraction(0.5), "50%");
        assert_eq!(fmt_fraction(0.125), "12.5%");
    }

    fn args(size: u64, runs: u32, zf: Vec<f64>) -> BenchArgs {
        BenchArgs {
            size,
            runs,
            zero_fractions: zf,
            dir: None,
            json: None,
            s390x_agent: None,
            allow_small: false,
            latest: None,
            device_mbps: None,
            classifier: false,
            classifier_gib: 16,
        }
    }

    #[test]
    fn validates_arguments() {
        assert_eq!(validate(&args(GIB, 5, vec![])).unwrap(), [0.0, 0.5]);
        assert!(validate(&args(9 * GIB, 5, vec![])).is_err());
        assert!(validate(&args(64 * MIB, 5, vec![])).is_err());
        let mut small = args(64 * MIB, 5, vec![0.25]);
        small.allow_small = true;
        assert_eq!(validate(&small).unwrap(), [0.25]);
        assert!(validate(&args(GIB, 4, vec![])).is_err());
        assert!(validate(&args(GIB, 5, vec![1.5])).is_err());
    }

    #[test]
    fn device_limit_defaults_to_800_up_to_2_gib() {
        assert_eq!(device_mbps(&args(GIB, 5, vec![])), 800);
        assert_eq!(device_mbps(&args(2 * GIB, 5, vec![])), 800);
        assert_eq!(device_mbps(&args(4 * GIB, 5, vec![])), 0);
        let mut a = args(4 * GIB, 5, vec![]);
        a.device_mbps = Some(1600);
        assert_eq!(device_mbps(&a), 1600);
        a.device_mbps = Some(0);
        assert_eq!(device_mbps(&a), 0);
    }
}
