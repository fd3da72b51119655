//! `crashlab`: real crashed kernels, dumped by the tool that `dist` built.
//!
//! For each kernel pair (production profile, dump tool profile):
//!
//! 1. Builds both profiles (cached), the tool profile again with zero-page
//!    elision into the work directory, the pattern writer for s390x, and
//!    the production initramfs ([`production`]): busybox and Debian's
//!    kexec-tools, the pattern writer, and both tools (plain and elided):
//!    `zfcpdump.image` with its initrd, or, for a tool profile with
//!    `initramfs.builtin`, the image alone, kexec'd without `--initrd`.
//! 2. Prepares a dump disk with real `zipl --dumpto`, the tool as its dump
//!    program.
//! 3. Boots the production kernel with `crashkernel=` (the tool's budget by
//!    default) and the disk. Its /init plants the pattern pages, loads the
//!    tool as the kdump capture kernel, writes a marker to the kernel log
//!    and exits: the panic kexecs into the tool, whose agent reads the
//!    kernel's own /proc/vmcore (no source override), writes it to the disk
//!    (disk override only: QEMU has no FCP dump IPL) and powers off.
//! 4. Checks every run ([`checks`]) and writes the report ([`report`]).
//!
//! Five runs per pair: byte-exact; dump level 1 from the profile (the tool
//! built with `agent.dump_level = 1`); a simulated HSA
//! (`zfcpdump.hsa_size=`), in which reads of HSA-backed ranges fail after
//! the release as they do on the real machine; and dump levels 31 and 17
//! as the operator asks for them (`zfcpdump.dump_level=` on the capture
//! command line). The production guest holds page cache, anonymous user
//! memory and free memory, each with pattern pages where a pattern can
//! live, so a dump level's effect is visible. By default the pairs are
//! 6.1/6.1 and 6.12/6.12 with all five, the cross pair 6.12/6.1
//! byte-exact, and the tool with its initramfs built in (default-builtin)
//! at dump level 17 (`DEFAULT_PAIRS`): the profiles packagers ship. Two guests run at a time.
//!
//! Work files live in `<target>/zfcpdump/crashlab/work/` (kept on failure or
//! with `--keep`); the report goes to `<target>/zfcpdump/crashlab/report.txt`,
//! and the headers and notes of each byte-exact dump (what a fixture of the
//! real layout needs) to `<target>/zfcpdump/crashlab/headers/`. With
//! `--pair`, all three are under `crashlab/<pairs>/` instead.

mod checks;
mod compare;
pub mod production;
mod report;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use zfcpdump_format::superblock::DumpSuperblock;

use crate::LabArgs;
use crate::guest::{Boot, Drive};
use crate::kit::setup::{build_host_tools, elided_build};
use crate::kit::{Verdict, parallel_map};
use crate::readers::makedumpfile::Makedumpfile;
use crate::readers::{Readers, sysroot};
use crate::zipl::{ZiplJob, disk_metadata, zipl_prepare};
use production::CaptureFiles;
use zfcpdump_builder::agent;
use zfcpdump_builder::dist::{self, DistArgs, IMAGE, RD};
use zfcpdump_builder::kernel::KernelRecord;
use zfcpdump_builder::lock::Wait;
use zfcpdump_builder::profile::{Profile, ProfileArgs};
use zfcpdump_builder::stage::Stage as _;
use zfcpdump_builder::{provision, util};

#[derive(Args, Clone, Debug)]
pub struct CrashlabArgs {
    /// A kernel pair PRODUCTION:TOOL of profile names (repeatable); the
    /// production kernel crashes, the tool's kernel and agent dump it. Both
    /// must see virtio disks (every profile here does). A pair given here
    /// gets all five runs. Default, the images that ship (default is 6.1):
    /// default:default (all five), default-6.12:default-6.12 (all five),
    /// default-6.12:default (plain) and default-builtin:default-builtin
    /// (level17)
    #[arg(long = "pair", value_name = "PRODUCTION:TOOL")]
    pub pairs: Vec<String>,
    /// Only these runs (repeatable): plain, elided, hsa, level31, level17.
    /// Default: all five for a pair given with --pair, each default pair its
    /// own (see --pair); a tool with its initramfs built in has no elided run
    #[arg(long = "run", value_name = "KIND")]
    pub runs: Vec<String>,
    /// The capture kernel's memory (`crashkernel=`) in MiB; default: the
    /// tool profile's budget
    #[arg(long, value_name = "MIB")]
    pub crashkernel: Option<u64>,
    #[command(flatten)]
    pub lab: LabArgs,
}

/// The pairs of a run without `--pair`, each with its runs: both kernels
/// dumped by their own tool in every mode, the cross pair users really
/// run (a tool is built once and rarely rebuilt: 6.12 crashed, 6.1 tool)
/// byte-exact, and the tool with its initramfs built in at dump level 17.
const DEFAULT_PAIRS: &[(&str, &[Kind])] = &[
    ("default:default", &Kind::ALL),
    ("default-6.12:default-6.12", &Kind::ALL),
    ("default-6.12:default", &[Kind::Plain]),
    // The tool with its initramfs built in, kexec'd without --initrd.
    ("default-builtin:default-builtin", &[Kind::Level17]),
];
/// QEMU 7.2's TCG (Debian 12) keeps translated code that a kexec overwrites:
/// the s390x copy helpers (MVC/MVCLE, as kexec-tools' purgatory copies the
/// new kernel to 0x10000) invalidate only the translations covering the
/// first byte of each page they probe. Where the capture kernel differs from
/// the production one, a translation of the production decompressor at the
/// same address then runs instead of the capture kernel's code (seen for
/// 6.12 -> 6.1: an operation exception at 0x118bc, nothing on the console).
/// Real machines and KVM fetch what was stored. A small translation cache
/// (8 MiB) is flushed several times during the production boot, which drops
/// those translations; with 32 MiB a flush after the decompressor ran was
/// not certain (one CI run timed out, most likely this).
const TCG_WORKAROUND: [&str; 2] = ["-accel", "tcg,tb-size=8"];
/// The production guest's memory and CPUs: the route toolchain.md checked.
const PRODUCTION_MEMORY: u64 = 512 << 20;
const PRODUCTION_CPUS: u32 = 2;
/// Pattern pages planted in the production kernel's page cache (8 MiB).
const PATTERN_PAGES: u64 = 2048;
/// Pattern pages a process holds in anonymous memory (4 MiB).
const ANON_PAGES: u64 = 1024;
/// The simulated HSA of the `hsa` run: 32 MiB, the HSA of z14 and older.
const SIMULATED_HSA: u64 = 32 << 20;
/// zipl's parmline for a SCSI dump (s390-tools 2.26 and later), which the
/// capture kernel gets as a dump IPL would give it, plus the overrides.
const ZIPL_PARMLINE: &str = "root=/dev/ram0 possible_cpus=1 cgroup_disable=memory";
/// Production boot, crash, capture boot and the dump of 512 MiB take about
/// 30 s under TCG; the margin covers a loaded 2-core machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(420);
/// The dump disk: 512-byte sectors, a partition that holds 512 MiB of
/// memory plus zipl's reserved 32 MiB.
const DISK_SIZE: u64 = 640 << 20;
const PART_START: u64 = 1 << 20;
const PART_SIZE: u64 = 600 << 20;
/// Guests at a time: QEMU under TCG uses about one core.
const PARALLEL: usize = 2;

pub(crate) fn step(msg: impl AsRef<str>) {
    eprintln!("[crashlab] {}", msg.as_ref());
}

/// What a run asks of the capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Byte-exact dump.
    Plain,
    /// Zero-page elision (the tool built with `agent.dump_level = 1`).
    Elided,
    /// Byte-exact, with `zfcpdump.hsa_size=` on the capture command line.
    Hsa,
    /// Dump level 31, the operator's `zfcpdump.dump_level=31` on the capture
    /// command line (the plain tool).
    Level31,
    /// Dump level 17 (zero and free pages) the same way.
    Level17,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Plain,
        Kind::Elided,
        Kind::Hsa,
        Kind::Level31,
        Kind::Level17,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Plain => "plain",
            Kind::Elided => "elided",
            Kind::Hsa => "hsa",
            Kind::Level31 => "level31",
            Kind::Level17 => "level17",
        }
    }

    /// The dump level the run asks for.
    pub(crate) fn level(self) -> u8 {
        match self {
            Kind::Plain | Kind::Hsa => 0,
            Kind::Elided => 1,
            Kind::Level31 => 31,
            Kind::Level17 => 17,
        }
    }

    /// The capture kernel the production guest loads: the tool built with
    /// dump level 1, or the plain tool (the others ask on its command line).
    pub(crate) fn capture(self) -> &'static str {
        match self {
            Kind::Elided => Kind::Elided.name(),
            _ => Kind::Plain.name(),
        }
    }

    /// Whether the dump leaves pages out (tails, the current readers).
    pub(crate) fn filtered(self) -> bool {
        self.level() != 0
    }

    fn parse(s: &str) -> Result<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .with_context(|| {
                format!("unknown run {s:?}: expected plain, elided, hsa, level31 or level17")
            })
    }
}

/// One kernel pair, built and with its disk prepared.
pub(crate) struct Pair {
    /// `production:tool`, e.g. `default-6.12:default`.
    pub(crate) name: String,
    pub(crate) production_image: PathBuf,
    pub(crate) production_initramfs: PathBuf,
    /// The production kernel's release and vmlinux, for crash.
    pub(crate) release: String,
    pub(crate) vmlinux: PathBuf,
    pub(crate) tool_release: String,
    /// The capture kernel's memory (`crashkernel=`).
    pub(crate) crashkernel: u64,
    /// The zipl-prepared disk, never booted: each run works on a copy.
    pub(crate) pristine: PathBuf,
    pub(crate) sb_offset: u64,
    pub(crate) sb: DumpSuperblock,
    /// The readers that match the production kernel.
    pub(crate) readers: Readers,
    /// makedumpfile for the production kernel (the same-crash comparison).
    pub(crate) makedumpfile: Makedumpfile,
    /// The tool's agent, static s390x, for the same-crash comparison.
    pub(crate) agent_bin: PathBuf,
    /// The runs of this pair.
    pub(crate) kinds: Vec<Kind>,
    /// The tool's image carries its initramfs (kexec'd without --initrd).
    pub(crate) builtin_tool: bool,
}

/// Paths and tools shared by the runs.
pub(crate) struct Ctx {
    pub(crate) work: PathBuf,
    pub(crate) headers: PathBuf,
    pub(crate) disk_tool: PathBuf,
    pub(crate) keep: bool,
}

pub(crate) struct RunSpec<'a> {
    pub(crate) name: String,
    pub(crate) pair: &'a Pair,
    pub(crate) kind: Kind,
    pub(crate) seed: u64,
}

impl RunSpec<'_> {
    /// The seed of the anonymous-memory pattern.
    pub(crate) fn anon_seed(&self) -> u64 {
        self.seed ^ 0xa_0000
    }
}

pub fn run(args: &CrashlabArgs) -> Result<()> {
    let t0 = Instant::now();
    let root = util::project_root();
    let cache = util::cache_dir(&root);
    // One directory per choice of pairs, so that a run of other pairs
    // (e.g. a cross pair by hand) leaves the default one alone.
    let base = match args.pairs.is_empty() {
        true => cache.join("crashlab"),
        false => cache
            .join("crashlab")
            .join(args.pairs.join("+").replace(':', "-")),
    };
    let work = base.join("work");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let headers = base.join("headers");
    fs::create_dir_all(&headers)?;

    let needs: Vec<&provision::Need> = provision::TEST.iter().collect();
    provision::ensure(&needs, &[], !args.lab.no_provision && !args.lab.offline)?;

    // `--run` limits every pair to those runs; without it a given pair gets
    // all five, a default one its own list.
    let only: Option<Vec<Kind>> = match args.runs.is_empty() {
        true => None,
        false => Some(
            args.runs
                .iter()
                .map(|s| Kind::parse(s))
                .collect::<Result<_>>()?,
        ),
    };
    let chosen: Vec<(String, Vec<Kind>)> = if args.pairs.is_empty() {
        DEFAULT_PAIRS
            .iter()
            .map(|(p, kinds)| (p.to_string(), kinds.to_vec()))
            .collect()
    } else {
        args.pairs
            .iter()
            .map(|p| (p.clone(), Kind::ALL.to_vec()))
            .collect()
    };
    let mut pairs = Vec::new();
    for (p, kinds) in chosen {
        let (a, b) = p
            .split_once(':')
            .with_context(|| format!("--pair {p:?}: expected PRODUCTION:TOOL profile names"))?;
        let kinds: Vec<Kind> = match &only {
            Some(only) => kinds.into_iter().filter(|k| only.contains(k)).collect(),
            None => kinds,
        };
        if !kinds.is_empty() {
            pairs.push((a.to_string(), b.to_string(), kinds));
        }
    }

    let (disk_tool, _) = build_host_tools(&root, &cache, args.lab.offline)?;
    let tools = sysroot::CRASHLAB_GUEST.unpacked_root(&cache, args.lab.offline)?;
    let mut built = Vec::new();
    for (prod, tool, kinds) in &pairs {
        let t = Instant::now();
        built.push(setup_pair(&root, &work, &tools, prod, tool, kinds, args)?);
        step(format!(
            "   {prod}:{tool} ready in {}",
            util::fmt_duration(t.elapsed())
        ));
    }
    let setup = t0.elapsed();
    let ctx = Ctx {
        work: work.clone(),
        headers,
        disk_tool,
        keep: args.lab.keep,
    };

    let mut specs = Vec::new();
    for (i, pair) in built.iter().enumerate() {
        for (j, &kind) in pair.kinds.iter().enumerate() {
            specs.push(RunSpec {
                name: format!("{}-{}", pair.name.replace(':', "-"), kind.name()),
                pair,
                kind,
                // Different in every run, so a page left from another run
                // (there is none: each boot starts with fresh memory) would
                // show as foreign.
                seed: 0x5eed_0000_0000_0000 | ((i as u64) << 8) | j as u64,
            });
        }
    }
    step(format!(
        "{} runs, {PARALLEL} guests at a time: production -m {} MiB -smp {PRODUCTION_CPUS}, \
         timeout {} s",
        specs.len(),
        PRODUCTION_MEMORY >> 20,
        RUN_TIMEOUT.as_secs()
    ));
    let results = run_parallel(&ctx, &specs)?;
    let same = same_crashes(&ctx, &built, &results)?;
    let total = t0.elapsed();
    let (text, ok) = report::render(&built, &results, &same, setup, total);
    util::write_atomic(&base.join("report.txt"), text.as_bytes())?;
    for r in results.iter().filter(|r| !r.verdict.is_ok()) {
        r.verdict
            .print_failed_run("crashlab", &r.name, &r.log, &r.console_tail);
    }
    for (pair, s) in same.iter().filter(|(_, s)| !s.verdict.is_ok()) {
        eprintln!(
            "\n[crashlab] same crash {pair} at level {} FAILED:\n  - {}",
            s.level,
            s.verdict.problems.join("\n  - ")
        );
    }
    eprintln!("\n{text}");
    if !ok {
        bail!(
            "crashlab failed (see above); disks, dumps and console logs kept in {}",
            work.display()
        );
    }
    if !args.lab.keep {
        fs::remove_dir_all(&work).with_context(|| format!("cannot remove {}", work.display()))?;
    }
    step(format!(
        "all passed in {}; report: {}",
        util::fmt_duration(total),
        base.join("report.txt").display()
    ));
    Ok(())
}

/// Builds a pair's profiles and initramfs and prepares its disk.
fn setup_pair(
    root: &Path,
    work: &Path,
    tools: &Path,
    prod: &str,
    tool: &str,
    kinds: &[Kind],
    args: &CrashlabArgs,
) -> Result<Pair> {
    let cache = &util::cache_dir(root);
    let name = format!("{prod}:{tool}");
    step(format!("pair {name}: building {prod} and {tool}"));
    let load = |p: &str| -> Result<(Profile, PathBuf, KernelRecord)> {
        let pa = ProfileArgs {
            profile: p.to_string(),
            sets: vec![],
        };
        let built = dist::run(&DistArgs::new(
            pa.clone(),
            args.lab.no_provision,
            args.lab.offline,
        ))?;
        let profile = pa.load()?;
        let dir = dist::dist_dir(root, &profile);
        Ok((profile, dir, built.kernel))
    };
    let (_, prod_dir, prod_kernel) = load(prod)?;
    let (tool_profile, tool_dir, tool_kernel) = load(tool)?;
    let vmlinux = prod_kernel.vmlinux.clone();
    ensure!(
        vmlinux.is_file(),
        "{} is missing: the kernel build directory is incomplete",
        vmlinux.display()
    );
    let pair_dir = work.join(name.replace(':', "-"));
    fs::create_dir_all(&pair_dir)?;
    // The tool's initrds; none when its initramfs is built in.
    let rd_of = |dir: &Path| (!tool_profile.initramfs.builtin).then(|| dir.join(RD));
    let tool_rd = rd_of(&tool_dir);
    let elided_dir = elided_build(
        root,
        &pair_dir,
        &tool_profile,
        &tool_dir,
        args.lab.no_provision,
        args.lab.offline,
    )?;
    let elided_rd = rd_of(&elided_dir);
    if tool_profile.initramfs.builtin {
        // QEMU 7.2's TCG runs stale translations of the production kernel
        // where a kexec'd image differs from it (TCG_WORKAROUND); a tool
        // with its initramfs built in got there even with the small cache.
        // So such a tool crash-dumps only a production kernel of the same
        // image: the pair X-builtin:X-builtin.
        let same = fs::read(prod_dir.join(IMAGE))? == fs::read(tool_dir.join(IMAGE))?;
        ensure!(
            same,
            "pair {name}: a tool with its initramfs built in is kexec'd as it is, and under \
             QEMU 7.2's TCG only into a production kernel of the same image: use the same \
             profile on both sides, e.g. default-builtin:default-builtin"
        );
        if kinds.contains(&Kind::Elided) {
            step(format!(
                "   pair {name}: no elided run: the elided tool's image differs from the production one"
            ));
        }
    }

    // The pattern writer, cross-built like the agent (std is shared).
    let pattern_bin = agent::Agent::new(root, &tool_profile, args.lab.offline)
        .cross_build("crashlab-pattern")
        .context("building the crash lab's pattern writer for s390x")?;
    let initramfs = pair_dir.join("production.cpio");
    production::write_initramfs(
        tools,
        &pattern_bin,
        &CaptureFiles {
            captures: vec![
                (
                    Kind::Plain.name(),
                    &tool_dir.join(IMAGE),
                    tool_rd.as_deref(),
                ),
                (
                    Kind::Elided.name(),
                    &elided_dir.join(IMAGE),
                    elided_rd.as_deref(),
                ),
            ],
        },
        &initramfs,
    )?;
    step(format!(
        "   production initramfs {} bytes (kernel {}; capture kernel {})",
        fs::metadata(&initramfs)?.len(),
        prod_kernel.release,
        tool_kernel.release
    ));

    step(format!(
        "   preparing the dump disk with real zipl --dumpto ({tool}'s dump tool)"
    ));
    let pristine = pair_dir.join("zipl.img");
    let res = zipl_prepare(
        cache,
        &ZiplJob {
            helper_kernel: &tool_dir.join(IMAGE),
            dump_image: &tool_dir.join(IMAGE),
            dump_initrd: tool_rd.as_deref(),
            disk: &pristine,
            disk_size: DISK_SIZE,
            sector_size: 512,
            part_start: PART_START,
            part_size: PART_SIZE,
            offline: args.lab.offline,
        },
    )?;
    ensure!(
        res.zipl_output.contains("Writing SCSI master boot record"),
        "zipl did not write a SCSI MBR:\n{}",
        res.zipl_output
    );
    let (sb_offset, sb) = disk_metadata(&pristine)?;
    let readers = Readers::for_kernel(&prod_kernel.release, cache, args.lab.offline)?;
    let makedumpfile = Makedumpfile::for_kernel(&prod_kernel.release, cache, args.lab.offline)?;
    let agent_bin = agent::Agent::new(root, &tool_profile, args.lab.offline)
        .run(Wait::Block)?
        .binary;
    let crashkernel = args
        .crashkernel
        .map_or(tool_profile.budget.total, |m| m << 20);
    Ok(Pair {
        name,
        production_image: prod_dir.join(IMAGE),
        production_initramfs: initramfs,
        release: prod_kernel.release,
        vmlinux,
        tool_release: tool_kernel.release,
        crashkernel,
        pristine,
        sb_offset,
        sb,
        readers,
        makedumpfile,
        agent_bin,
        // The elided tool of a built-in profile is another image (see above).
        kinds: kinds
            .iter()
            .copied()
            .filter(|k| !(tool_profile.initramfs.builtin && *k == Kind::Elided))
            .collect(),
        builtin_tool: tool_profile.initramfs.builtin,
    })
}

/// The levels at which each pair's byte-exact dump is filtered again by the
/// agent in tool mode and compared with makedumpfile, and whether crash
/// reads it too (about 25 s a session under qemu-user; level 1 leaves out
/// only zero pages, which crash reads as zeros anyway).
const SAME_CRASH_LEVELS: [(u8, bool); 3] = [(31, true), (17, true), (1, false)];

/// For every pair whose byte-exact run passed: its dump filtered again at
/// [`SAME_CRASH_LEVELS`], one pair per thread ([`PARALLEL`] at a time).
fn same_crashes(
    ctx: &Ctx,
    pairs: &[Pair],
    results: &[RunResult],
) -> Result<Vec<(String, compare::SameCrash)>> {
    let jobs: Vec<&Pair> = pairs
        .iter()
        // A pair of one kernel: the cross pair's tool is another pair's.
        .filter(|p| p.name.split_once(':').is_some_and(|(a, b)| a == b))
        .filter(|p| {
            results
                .iter()
                .any(|r| r.pair == p.name && r.kind == Kind::Plain && r.verdict.is_ok())
        })
        .collect();
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    step(format!(
        "same crash: {} byte-exact dumps filtered again at levels 31, 17 and 1 by the agent in \
         tool mode, against makedumpfile (and crash at 31 and 17)",
        jobs.len()
    ));
    let per_pair = parallel_map(
        &jobs,
        PARALLEL,
        |pair| -> Result<Vec<(String, compare::SameCrash)>> {
            let name = format!("{}-plain", pair.name.replace(':', "-"));
            let (disk, elf) = (
                ctx.work.join(format!("{name}.img")),
                ctx.work.join(format!("{name}.extracted.elf")),
            );
            let exact = compare::ExactDump {
                work: &ctx.work,
                name: &name,
                agent_bin: &pair.agent_bin,
                disk_tool: &ctx.disk_tool,
                disk: &disk,
                elf: &elf,
                vmlinux: &pair.vmlinux,
                crash: &pair.readers.crash,
                mdf: &pair.makedumpfile,
            };
            let mut out = Vec::new();
            for (level, with_crash) in SAME_CRASH_LEVELS {
                let r = compare::same_crash(&exact, level, with_crash)
                    .with_context(|| format!("same crash {} at level {level}", pair.name))?;
                step(format!(
                    "   {} level {level}: {}",
                    pair.name,
                    r.verdict.result()
                ));
                out.push((pair.name.clone(), r));
            }
            if !ctx.keep {
                let _ = fs::remove_file(&disk);
                let _ = fs::remove_file(&elf);
            }
            Ok(out)
        },
    );
    Ok(per_pair
        .into_iter()
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect())
}

/// What one run showed, for the report.
pub(crate) struct RunResult {
    pub(crate) name: String,
    pub(crate) pair: String,
    pub(crate) kind: Kind,
    pub(crate) verdict: Verdict,
    pub(crate) facts: checks::Facts,
    pub(crate) elapsed: Option<Duration>,
    pub(crate) log: PathBuf,
    pub(crate) console_tail: String,
}

/// Runs the specs, `PARALLEL` at a time, in order of the list.
fn run_parallel(ctx: &Ctx, specs: &[RunSpec]) -> Result<Vec<RunResult>> {
    parallel_map(specs, PARALLEL, |spec| {
        let r =
            run_one(ctx, spec).with_context(|| format!("run {}: the harness failed", spec.name));
        if let Ok(r) = &r {
            step(format!(
                "   {}: {} ({})",
                r.name,
                r.verdict.result(),
                r.elapsed.map_or("timeout".into(), util::fmt_duration)
            ));
        }
        r
    })
    .into_iter()
    .collect()
}

/// The capture kernel's command line: zipl's parmline and the overrides
/// QEMU needs (the disk; for the `hsa` run the simulated HSA).
fn capture_append(kind: Kind) -> String {
    let mut a =
        format!("console=ttysclp0 {ZIPL_PARMLINE} zfcpdump.disk=/dev/sda scsi_mod.scan=async");
    if kind == Kind::Hsa {
        a.push_str(&format!(" zfcpdump.hsa_size={SIMULATED_HSA:#x}"));
    }
    if matches!(kind, Kind::Level31 | Kind::Level17) {
        a.push_str(&format!(" zfcpdump.dump_level={}", kind.level()));
    }
    a
}

fn run_one(ctx: &Ctx, spec: &RunSpec) -> Result<RunResult> {
    let pair = spec.pair;
    let disk = ctx.work.join(format!("{}.img", spec.name));
    let log = ctx.work.join(format!("{}.console.log", spec.name));
    crate::checks::files::sparse_copy(&pair.pristine, &disk)?;
    let capture = spec.kind.capture();
    let boot = Boot {
        image: &pair.production_image,
        initrd: Some(&pair.production_initramfs),
        memory: PRODUCTION_MEMORY,
        cpus: PRODUCTION_CPUS,
        append: format!(
            "crashkernel={}M crashlab.seed={:#x} crashlab.pages={PATTERN_PAGES} \
             crashlab.useed={:#x} crashlab.upages={ANON_PAGES} crashlab.capture={capture} \
             crashlab.append={} scsi_mod.scan=async",
            pair.crashkernel >> 20,
            spec.seed,
            spec.anon_seed(),
            capture_append(spec.kind).replace(' ', "+")
        ),
        drives: vec![Drive::new(disk.clone(), "scsi", 512)],
        timeout: RUN_TIMEOUT,
        log: log.clone(),
    };
    let out = boot.run_with(&TCG_WORKAROUND.map(String::from))?;
    let mut verdict = Verdict::default();
    let facts = checks::check_run(ctx, spec, &disk, &out, &mut verdict)?;
    // The byte-exact dump is filtered again later (the same crash).
    if verdict.is_ok() && !ctx.keep && spec.kind != Kind::Plain {
        let _ = fs::remove_file(&disk);
    }
    Ok(RunResult {
        name: spec.name.clone(),
        pair: pair.name.clone(),
        kind: spec.kind,
        verdict,
        facts,
        elapsed: out.exit.is_some().then_some(out.elapsed),
        log,
        console_tail: out.tail(40),
    })
}

#[cfg(test)]
mod tests {
    use clap::Args as _;

    use super::*;

    fn help(id: &str) -> String {
        let cmd = CrashlabArgs::augment_args(clap::Command::new("crashlab"));
        let arg = cmd.get_arguments().find(|a| a.get_id() == id).unwrap();
        arg.get_help().unwrap().to_string()
    }

    #[test]
    fn the_help_names_the_default_pairs_and_their_runs() {
        let pairs = help("pairs");
        assert_eq!(Kind::ALL.len(), 5, "the help says `all five`");
        for (pair, kinds) in DEFAULT_PAIRS {
            let runs = match kinds.len() {
                5 => "all five".to_string(),
                _ => kinds
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            assert!(
                pairs.contains(&format!("{pair} ({runs})")),
                "--pair's help does not say `{pair} ({runs})`: {pairs}"
            );
        }
        for k in Kind::ALL {
            assert!(help("runs").contains(k.name()), "{}", help("runs"));
        }
    }
}
