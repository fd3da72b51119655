//! `bench`: times the agent's copy path against `dd bs=64K`, `dd bs=1M` and
//! `cp` on the same generated vmcores, in the same run (issues 3 and 6), and
//! the agent with zero-page elision (`zero_page_elision = true` through
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

mod throttle;

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use serde::Serialize;

use crate::build::profile::parse_size;
use crate::util;
use throttle::Throttle;

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
    /// Also write the numbers as JSON to OUT
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
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
const ELIDE_CONF: &str = "zero_page_elision = true\n";

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
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .context("cannot run df")?;
    ensure!(
        out.status.success(),
        "df {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
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
            return if n.is_multiple_of(unit) {
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

/// The release binaries the bench runs.
struct Tools {
    agent: PathBuf,
    fixture: PathBuf,
    disk: PathBuf,
}

/// Builds the host agent and tools in release mode; their paths come from
/// cargo's JSON messages, so any target-dir setting is honoured.
fn build_tools(root: &Path) -> Result<Tools> {
    eprintln!("[bench] building zfcpdump-agent, vmcore-fixture and zfcpdump-disk (release)");
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .args([
            "build",
            "--release",
            "-p",
            "zfcpdump-agent",
            "-p",
            "vmcore-fixture",
            "-p",
            "zfcpdump-disk",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    ensure!(out.status.success(), "cargo build --release failed");
    let found = |name: &str| -> Result<PathBuf> {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["reason"] == "compiler-artifact"
                && v["target"]["name"] == name
                && let Some(exe) = v["executable"].as_str()
            {
                return Ok(PathBuf::from(exe));
            }
        }
        bail!("cargo did not report the {name} binary")
    };
    Ok(Tools {
        agent: found("zfcpdump-agent")?,
        fixture: found("vmcore-fixture")?,
        disk: found("zfcpdump-disk")?,
    })
}

/// The work directory: deleted on drop (errors, panics), and by a watchdog
/// process if this one dies without unwinding (Ctrl-C, kill). Stale ones of
/// dead runs are removed at the next start.
struct WorkDir {
    path: PathBuf,
}

const WORK_PREFIX: &str = "zfcpdump-bench.";

impl WorkDir {
    fn create(parent: &Path) -> Result<WorkDir> {
        remove_stale(parent);
        let path = parent.join(format!("{WORK_PREFIX}{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        spawn_cleanup_watchdog("rm -rf", &path);
        Ok(WorkDir { path })
    }
}

/// std has no signal handlers: a shell that ignores the terminal's signals
/// waits for this process to go, then runs `cleanup -- PATH`. After a normal
/// exit `Drop` has already cleaned up and the command finds nothing to do.
fn spawn_cleanup_watchdog(cleanup: &str, path: &Path) {
    let script = format!(
        r#"trap "" INT TERM HUP QUIT
while kill -0 "$0" 2>/dev/null; do sleep 0.2; done
{cleanup} -- "$1" 2>/dev/null"#
    );
    let res = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(std::process::id().to_string())
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(e) = res {
        eprintln!(
            "[bench] warning: no cleanup watchdog for {} ({e}); Ctrl-C may leave it behind",
            path.display()
        );
    }
}

/// Entries of `parent` named `<prefix><pid>` whose process is gone: what
/// interrupted runs left.
fn left_by_dead_runs(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            name.to_str()
                .and_then(|n| n.strip_prefix(prefix))
                .is_some_and(|pid| {
                    pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists()
                })
        })
        .map(|e| e.path())
        .collect()
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!(
                "[bench] warning: cannot remove {}: {e}",
                self.path.display()
            );
        }
    }
}

/// Removes work dirs of runs whose process is gone.
fn remove_stale(parent: &Path) {
    for dir in left_by_dead_runs(parent, WORK_PREFIX) {
        eprintln!("[bench] removing {} of an interrupted run", dir.display());
        let _ = fs::remove_dir_all(dir);
    }
}

/// Where the agent's disk image puts the dump.
#[derive(Clone, Copy, Debug)]
struct Disk {
    size: u64,
    dump_start: u64,
    dump_end: u64,
}

/// One generated vmcore and the target size that goes with it.
struct Source {
    path: PathBuf,
    len: u64,
    label: String,
    disk: Disk,
}

/// One timed run.
struct Run {
    mbps: f64,
    rss_kib: Option<u64>,
}

struct Bench {
    tools: Tools,
    work: WorkDir,
    root: PathBuf,
    image: PathBuf,
    initrd: PathBuf,
    disk_img: PathBuf,
    dd_target: PathBuf,
    cp_target: PathBuf,
    /// The agent's config file for the elided contender.
    elide_conf: PathBuf,
    /// `--reflink=never` where cp could share extents instead of copying.
    cp_args: Vec<&'static str>,
    peak_disk: u64,
}

impl Bench {
    fn new(tools: Tools, parent: &Path) -> Result<Bench> {
        let work = WorkDir::create(parent)?;
        let w = work.path.clone();
        let root = w.join("root");
        for d in ["proc", "sys", "dev", "etc"] {
            fs::create_dir_all(root.join(d))?;
        }
        // Only their sizes matter (zipl's reserve): sparse files.
        let image = w.join("zfcpdump.image");
        let initrd = w.join("zfcpdump.rd");
        fs::File::create(&image)?.set_len(TOOL_IMAGE_SIZE)?;
        fs::File::create(&initrd)?.set_len(TOOL_INITRD_SIZE)?;
        let elide_conf = w.join("elide.conf");
        fs::write(&elide_conf, ELIDE_CONF)?;
        let cp_args = if reflink_capable(&w) {
            vec!["--reflink=never"]
        } else {
            vec![]
        };
        Ok(Bench {
            tools,
            root,
            image,
            initrd,
            disk_img: w.join("disk.img"),
            dd_target: w.join("dd.target"),
            cp_target: w.join("cp.target"),
            elide_conf,
            cp_args,
            peak_disk: 0,
            work,
        })
    }

    /// Generates a vmcore of `size` bytes of memory, warms it, prepares a
    /// disk image for it once to learn the dump area.
    fn source(&mut self, name: &str, size: u64, zero_fraction: f64) -> Result<(Source, f64)> {
        let path = self.work.path.join(name);
        let t = Instant::now();
        let out = Command::new(&self.tools.fixture)
            .arg("--size")
            .arg(size.to_string())
            .arg("--zero-fraction")
            .arg(zero_fraction.to_string())
            .arg(&path)
            .output()
            .context("cannot run vmcore-fixture")?;
        check_output("vmcore-fixture", &out)?;
        let gen_secs = t.elapsed().as_secs_f64();
        let len = fs::metadata(&path)?.len();
        let disk_size = (len.div_ceil(MIB) * MIB) + DISK_EXTRA;
        let disk = self.prepare_disk(disk_size)?;
        ensure!(
            disk.dump_end - disk.dump_start >= len,
            "the {}-byte dump area of the prepared image is smaller than the {len}-byte vmcore",
            disk.dump_end - disk.dump_start
        );
        fs::remove_file(&self.disk_img)?;
        warm(&path)?;
        let label = format!("{} {} zeros", fmt_bytes(size), fmt_fraction(zero_fraction));
        Ok((
            Source {
                path,
                len,
                label,
                disk,
            },
            gen_secs,
        ))
    }

    fn prepare_disk(&self, size: u64) -> Result<Disk> {
        let out = Command::new(&self.tools.disk)
            .arg("prepare")
            .arg(&self.disk_img)
            .arg("--size")
            .arg(size.to_string())
            .arg("--image")
            .arg(&self.image)
            .arg("--initrd")
            .arg(&self.initrd)
            .output()
            .context("cannot run zfcpdump-disk")?;
        check_output("zfcpdump-disk prepare", &out)?;
        let (dump_start, dump_end) = parse_dump_area(&String::from_utf8_lossy(&out.stdout))
            .context("cannot find the dump area in zfcpdump-disk prepare's output")?;
        Ok(Disk {
            size,
            dump_start,
            dump_end,
        })
    }

    fn agent_cmd(&self, src: &Source, elide: bool) -> Command {
        let mut c = Command::new(&self.tools.agent);
        c.arg("--root")
            .arg(&self.root)
            .arg("--source")
            .arg(&src.path)
            .arg("--disk")
            .arg(&self.disk_img)
            .args(["--hsa-size", HSA_SIZE, "--sector-size", "512"]);
        if elide {
            c.arg("--config").arg(&self.elide_conf);
        }
        c
    }

    fn dd_cmd(&self, src: &Source, bs: &str) -> Command {
        let mut c = Command::new("dd");
        c.arg(format!("if={}", src.path.display()))
            .arg(format!("of={}", self.dd_target.display()))
            .arg(format!("bs={bs}"))
            .arg(format!("seek={}", src.disk.dump_start))
            .args(["oflag=seek_bytes", "conv=fsync,notrunc", "status=none"]);
        c
    }

    /// The exact command lines, for the notes and the JSON.
    fn describe(&self, c: Contender) -> String {
        match c {
            Contender::Agent => format!(
                "zfcpdump-agent --root ROOT --source VMCORE --disk disk.img --hsa-size {HSA_SIZE} \
                 --sector-size 512"
            ),
            Contender::AgentElided => format!(
                "zfcpdump-agent --root ROOT --source VMCORE --disk disk.img --hsa-size {HSA_SIZE} \
                 --sector-size 512 --config elide.conf  (elide.conf: {})",
                ELIDE_CONF.trim()
            ),
            Contender::Dd64K | Contender::Dd1M => format!(
                "dd if=VMCORE of=TARGET bs={} seek=DUMP_OFFSET oflag=seek_bytes \
                 conv=fsync,notrunc",
                if c == Contender::Dd64K { "64K" } else { "1M" }
            ),
            Contender::Cp => {
                let mut words = vec!["cp"];
                words.extend(&self.cp_args);
                words.extend(["VMCORE", "TARGET", "&&", "sync", "TARGET"]);
                words.join(" ")
            }
        }
    }

    /// One timed run of `c` into a fresh target. `verify`: check the dump
    /// with `zfcpdump-disk status` afterwards (untimed).
    /// With `limit`, every command runs inside the device limit's cgroup.
    fn run_one(
        &mut self,
        c: Contender,
        src: &Source,
        verify: bool,
        limit: Option<&Throttle>,
    ) -> Result<Run> {
        let target = match c {
            Contender::Agent | Contender::AgentElided => {
                self.prepare_disk(src.disk.size)?;
                self.disk_img.clone()
            }
            Contender::Dd64K | Contender::Dd1M => {
                // Sized like the disk image, sparse like it.
                fs::File::create(&self.dd_target)?.set_len(src.disk.size)?;
                self.dd_target.clone()
            }
            Contender::Cp => {
                let _ = fs::remove_file(&self.cp_target);
                self.cp_target.clone()
            }
        };
        sync_fs(&self.work.path)?;
        let written_before = match limit {
            Some(t) if verify => Some(t.written()?),
            _ => None,
        };
        let t = Instant::now();
        let out = match c {
            Contender::Agent => output(self.agent_cmd(src, false), limit),
            Contender::AgentElided => output(self.agent_cmd(src, true), limit),
            Contender::Dd64K => output(self.dd_cmd(src, "64K"), limit),
            Contender::Dd1M => output(self.dd_cmd(src, "1M"), limit),
            Contender::Cp => {
                let mut cp = Command::new("cp");
                cp.args(&self.cp_args).arg(&src.path).arg(&self.cp_target);
                let cp = output(cp, limit).context("cannot run cp")?;
                check_output("cp", &cp)?;
                let mut sync = Command::new("sync");
                sync.arg(&self.cp_target);
                output(sync, limit)
            }
        }
        .with_context(|| format!("cannot run {}", c.name()))?;
        let elapsed = t.elapsed();
        check_output(c.name(), &out)?;
        if let (Some(t), Some(before)) = (limit, written_before) {
            let n = t.written()? - before;
            ensure!(
                n > 0,
                "{} wrote nothing inside the device limit's cgroup ({}); the limited section \
                 would not measure what it says",
                c.name(),
                t.mechanism
            );
        }
        let mut rss_kib = None;
        if c.is_agent() {
            let err = String::from_utf8_lossy(&out.stderr);
            ensure!(
                err.contains("\nDump successful\n"),
                "the agent did not report success:\n{err}"
            );
            rss_kib = parse_peak_rss(&err);
            ensure!(
                (c == Contender::AgentElided) == err.contains("\nzero-page elision: "),
                "zero-page elision was {} expected:\n{err}",
                if c == Contender::AgentElided {
                    ""
                } else {
                    "not "
                }
            );
            if verify {
                let st = Command::new(&self.tools.disk)
                    .arg("status")
                    .arg(&self.disk_img)
                    .output()?;
                ensure!(
                    st.status.success(),
                    "zfcpdump-disk status does not see a complete dump after the agent's run:\n{}",
                    String::from_utf8_lossy(&st.stdout)
                );
            }
        } else if c == Contender::Cp {
            let n = fs::metadata(&target)?.len();
            ensure!(n == src.len, "cp wrote {n} bytes, not {}", src.len);
        }
        self.peak_disk = self.peak_disk.max(disk_use(&self.work.path));
        fs::remove_file(&target)?;
        Ok(Run {
            mbps: mb_per_s(src.len, elapsed),
            rss_kib,
        })
    }

    /// The agent once, untimed, on a small vmcore: its peak RSS at a second
    /// size in every run, and a fail-fast check of the whole pipeline.
    fn rss_probe(&mut self, size: u64) -> Result<RssPoint> {
        let (src, _) = self.source("probe.vmcore", size, 0.0)?;
        let run = self.run_one(Contender::Agent, &src, true, None)?;
        fs::remove_file(&src.path)?;
        let kib = run
            .rss_kib
            .context("the agent printed no `peak RSS: N KiB` line")?;
        eprintln!(
            "[bench] agent peak RSS on a {} vmcore: {kib} KiB",
            fmt_bytes(size)
        );
        Ok(RssPoint {
            memory_bytes: size,
            vmcore_bytes: src.len,
            peak_rss_kib: kib,
        })
    }
}

/// Runs `cmd`, inside the device limit's cgroup if there is one.
fn output(mut cmd: Command, limit: Option<&Throttle>) -> std::io::Result<Output> {
    match limit {
        Some(t) => t.wrap(&cmd).output(),
        None => cmd.output(),
    }
}

fn check_output(what: &str, out: &Output) -> Result<()> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `sync -f`: syncs the whole file system (syncfs), so the next timed run
/// starts without anyone's dirty pages or pending block frees.
fn sync_fs(dir: &Path) -> Result<()> {
    let st = Command::new("sync")
        .arg("-f")
        .arg(dir)
        .status()
        .context("cannot run sync")?;
    ensure!(st.success(), "sync -f {} failed", dir.display());
    Ok(())
}

/// Reads the file once, so the timed runs read it from the page cache.
fn warm(path: &Path) -> Result<()> {
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; MIB as usize];
    while f.read(&mut buf)? > 0 {}
    Ok(())
}

/// Bytes of `path` in the page cache, if util-linux's fincore is there.
fn resident(path: &Path) -> Option<u64> {
    let out = Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Blocks allocated under `dir` (what the run really uses on disk).
fn disk_use(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

/// File systems where cp may share extents (reflink) instead of copying.
fn reflink_capable(dir: &Path) -> bool {
    let out = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(dir)
        .output();
    match out {
        Ok(o) => {
            let t = String::from_utf8_lossy(&o.stdout);
            ["btrfs", "xfs", "bcachefs", "zfs", "nfs", "ocfs2"]
                .iter()
                .any(|fs| t.trim().starts_with(fs))
        }
        Err(_) => true,
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

#[derive(Debug, Serialize)]
pub struct RssPoint {
    pub memory_bytes: u64,
    pub vmcore_bytes: u64,
    pub peak_rss_kib: u64,
}

#[derive(Debug, Serialize)]
pub struct ContenderReport {
    pub key: String,
    pub name: String,
    pub command: String,
    /// In run order.
    pub mb_per_s: Vec<f64>,
    pub stats: Stats,
    pub ratio_to_dd_1m: f64,
}

#[derive(Debug, Serialize)]
pub struct FractionReport {
    pub zero_fraction: f64,
    pub vmcore_bytes: u64,
    pub generate_seconds: f64,
    pub contenders: Vec<ContenderReport>,
    /// The agent's `peak RSS` of each timed run.
    pub agent_peak_rss_kib: Vec<u64>,
    /// Bytes of the vmcore still in the page cache after the runs.
    pub resident_after: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub schema: u32,
    pub unit: String,
    pub size_bytes: u64,
    pub runs: u32,
    pub dir: String,
    pub space_needed_bytes: u64,
    pub peak_disk_use_bytes: u64,
    pub total_seconds: f64,
    pub rss_probe: RssPoint,
    /// The page cache as the target.
    pub results: Vec<FractionReport>,
    /// The same vmcores with the writes limited, when that could run.
    pub device_limit: Option<DeviceLimitReport>,
    /// Why the device-limited section did not run.
    pub device_limit_skipped: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DeviceLimitReport {
    /// The limit, MB (10^6 bytes) per second.
    pub mb_per_s: u64,
    pub mechanism: String,
    /// "major:minor" of the limited disk.
    pub device: String,
    pub results: Vec<FractionReport>,
}

const NOTES: &[&str] = &[
    "MB/s = 10^6 bytes per second: the vmcore's size over the wall time of the whole \
     command, from start to exit, fsync included; median and min-max of the runs; ratio = \
     median / median of dd bs=1M.",
    "Each vmcore was read once before timing: every contender reads it from the page cache. \
     One untimed warm-up round of every contender precedes the timed runs.",
    "Targets are fresh sparse files before every run (the disk image re-prepared by \
     zfcpdump-disk, dd targets of the same size written at the dump area's offset, cp's own \
     file), so all contenders allocate the same blocks; `sync -f` runs before each timing.",
    "Runs are interleaved, their order rotating each round.",
    "The agent runs in tool mode with --hsa-size 0x2000000: the HSA-first order is taken, \
     but it reads a file. HSA and zcore read speed cannot be measured on this machine \
     (no /proc/vmcore from an FCP dump).",
    "dd and cp are the baseline on the same files in the same run.",
    "The device-limited section runs every command in a block-I/O cgroup that limits its \
     writes to the disk (the v1 blkio limit does not cover writeback that the kernel's \
     flusher threads start on their own, which 1 GiB of dirty pages does not reach here). \
     There the write speed, not the CPU, bounds a dump, as on a real one.",
    "`agent, elided` is the agent with zero_page_elision = true (its --config file): all-zero \
     pages are not written. Its MB/s counts the whole vmcore, like the others: the rate at \
     which a machine's memory is dumped. Its runs count in the peak RSS too.",
];

/// The median/spread/ratio rows of one section, and the elided/byte-exact
/// ratio per vmcore.
fn push_table(s: &mut String, results: &[FractionReport]) {
    let mut push = |line: String| {
        s.push_str(&line);
        s.push('\n');
    };
    push(format!(
        "{:<7} {:<16} {:>11} {:>17} {:>9}",
        "zeros", "contender", "median MB/s", "min-max MB/s", "vs dd 1M"
    ));
    for f in results {
        for (i, c) in f.contenders.iter().enumerate() {
            let zeros = if i == 0 {
                fmt_fraction(f.zero_fraction)
            } else {
                String::new()
            };
            push(format!(
                "{:<7} {:<16} {:>11.0} {:>17} {:>9.2}",
                zeros,
                c.name,
                c.stats.median,
                format!("{:.0}-{:.0}", c.stats.min, c.stats.max),
                c.ratio_to_dd_1m
            ));
        }
        let median = |key: &str| {
            f.contenders
                .iter()
                .find(|c| c.key == key)
                .map(|c| c.stats.median)
        };
        if let (Some(exact), Some(elided)) = (median("agent"), median("agent_elided")) {
            push(format!(
                "{:<7} agent, elided / agent: {:.2}x",
                "",
                elided / exact.max(1e-9)
            ));
        }
    }
}

fn render(r: &Report, commands: &[(String, String)]) -> String {
    let mut s = String::new();
    let push = |s: &mut String, line: String| {
        s.push_str(&line);
        s.push('\n');
    };
    push(
        &mut s,
        format!(
            "cargo xtask bench: vmcores of {} memory ({} bytes), {} timed runs per contender \
             after a warm-up, interleaved",
            fmt_bytes(r.size_bytes),
            r.results.first().map_or(0, |f| f.vmcore_bytes),
            r.runs
        ),
    );
    push(&mut s, String::new());
    push(
        &mut s,
        "Target: the page cache (what the copy costs in CPU):".into(),
    );
    push_table(&mut s, &r.results);
    push(&mut s, String::new());
    match (&r.device_limit, &r.device_limit_skipped) {
        (Some(d), _) => {
            push(
                &mut s,
                format!(
                    "Target: writes limited to {} MB/s ({} on disk {}), a model of the \
                     FCP-attached dump disk:",
                    d.mb_per_s, d.mechanism, d.device
                ),
            );
            push_table(&mut s, &d.results);
        }
        (None, Some(why)) => push(&mut s, format!("Device-limited section not run: {why}")),
        (None, None) => {}
    }
    push(&mut s, String::new());
    push(
        &mut s,
        "agent peak RSS (VmHWM, its `peak RSS` line), by vmcore size:".into(),
    );
    push(
        &mut s,
        format!(
            "  {:>8}, {:<10} {} KiB (one untimed run)",
            fmt_bytes(r.rss_probe.memory_bytes),
            "0% zeros:",
            r.rss_probe.peak_rss_kib
        ),
    );
    for f in &r.results {
        let (Some(min), Some(max)) = (
            f.agent_peak_rss_kib.iter().min(),
            f.agent_peak_rss_kib.iter().max(),
        ) else {
            continue;
        };
        push(
            &mut s,
            format!(
                "  {:>8}, {:<10} {min}-{max} KiB (min-max of {} runs)",
                fmt_bytes(r.size_bytes),
                format!("{} zeros:", fmt_fraction(f.zero_fraction)),
                f.agent_peak_rss_kib.len()
            ),
        );
    }
    push(&mut s, String::new());
    push(&mut s, "Notes:".into());
    for n in NOTES {
        push(&mut s, format!("- {n}"));
    }
    for f in &r.results {
        if let Some(res) = f.resident_after
            // More than 1% missing: the numbers include disk reads.
            && res < f.vmcore_bytes - f.vmcore_bytes / 100
        {
            push(
                &mut s,
                format!(
                    "- WARNING: only {} of the {} vmcore stayed in the page cache: some runs \
                     read from the disk.",
                    fmt_bytes(res),
                    fmt_fraction(f.zero_fraction)
                ),
            );
        }
    }
    push(&mut s, "Commands:".into());
    for (name, cmd) in commands {
        push(&mut s, format!("  {name:<16} {cmd}"));
    }
    push(
        &mut s,
        format!(
            "Took {} (work files in {}); disk space: {} stated, {} peak use.",
            util::fmt_duration(Duration::from_secs_f64(r.total_seconds)),
            r.dir,
            fmt_bytes(r.space_needed_bytes),
            fmt_bytes(r.peak_disk_use_bytes)
        ),
    );
    s
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
    if let Some(m) = mem_available()
        && m < 2 * args.size + GIB
    {
        eprintln!(
            "[bench] warning: {} of memory available: the vmcore may not stay in the page cache",
            fmt_bytes(m)
        );
    }

    let tools = build_tools(&root)?;
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
    let table = render(&report, &commands);
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
    fn stale_work_dirs_of_dead_runs_go() {
        let d = tempfile::tempdir().unwrap();
        // Above Linux's pid_max (4194304): never a live process.
        let dead = d.path().join(format!("{WORK_PREFIX}4000000000"));
        let live = d
            .path()
            .join(format!("{WORK_PREFIX}{}", std::process::id()));
        let other = d.path().join("latest.txt");
        fs::create_dir_all(dead.join("root")).unwrap();
        fs::create_dir_all(&live).unwrap();
        fs::write(&other, "x").unwrap();
        remove_stale(d.path());
        assert!(!dead.exists());
        assert!(live.exists() && other.exists());
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
            allow_small: false,
            latest: None,
            device_mbps: None,
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
    fn table_shows_ratio_spread_and_rss() {
        let c = |name: &str, v: Vec<f64>, dd: f64| {
            let st = stats(&v);
            ContenderReport {
                key: name.into(),
                name: name.into(),
                command: String::new(),
                mb_per_s: v,
                stats: st,
                ratio_to_dd_1m: st.median / dd,
            }
        };
        let r = Report {
            schema: 1,
            unit: "MB/s".into(),
            size_bytes: GIB,
            runs: 5,
            dir: "/d".into(),
            space_needed_bytes: space_needed(GIB),
            peak_disk_use_bytes: GIB,
            total_seconds: 75.0,
            rss_probe: RssPoint {
                memory_bytes: 64 * MIB,
                vmcore_bytes: 64 * MIB + 8192,
                peak_rss_kib: 3000,
            },
            results: vec![FractionReport {
                zero_fraction: 0.5,
                vmcore_bytes: GIB + 8192,
                generate_seconds: 1.0,
                contenders: vec![
                    c(
                        "zfcpdump-agent",
                        vec![900.0, 800.0, 850.0, 700.0, 1000.0],
                        1000.0,
                    ),
                    c("dd bs=1M", vec![1000.0; 5], 1000.0),
                ],
                agent_peak_rss_kib: vec![3100, 3124, 3000, 3050, 3080],
                resident_after: Some(GIB + 8192),
            }],
            device_limit: None,
            device_limit_skipped: Some("no cgroup here".into()),
        };
        let t = render(&r, &[]);
        // Compared word by word: the column widths may change.
        let row = |first: &str| -> Vec<&str> {
            let line = t.lines().find(|l| l.trim_start().starts_with(first));
            line.unwrap_or_else(|| panic!("no row {first}:\n{t}"))
                .split_whitespace()
                .collect()
        };
        assert_eq!(
            row("50%"),
            ["50%", "zfcpdump-agent", "850", "700-1000", "0.85"]
        );
        assert_eq!(
            row("dd bs=1M"),
            ["dd", "bs=1M", "1000", "1000-1000", "1.00"]
        );
        assert!(
            t.contains("  64 MiB, 0% zeros:  3000 KiB (one untimed run)"),
            "{t}"
        );
        assert!(t.contains("3000-3124 KiB (min-max of 5 runs)"), "{t}");
        assert!(t.contains("cannot be measured on this machine"), "{t}");
        assert!(t.contains("Took 1m15s"), "{t}");
        assert!(!t.contains("WARNING"), "{t}");
        assert!(
            t.contains("Device-limited section not run: no cgroup here"),
            "{t}"
        );
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
