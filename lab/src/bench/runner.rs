//! One run of a contender: the release tools, the work files of the bench
//! (vmcore, disk image, targets) and the commands it times.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use zfcpdump_builder::cmd::{self, cmd};

use super::report::RssPoint;
use super::throttle::Throttle;
use super::workdir::WorkDir;
use super::{
    Contender, DISK_EXTRA, ELIDE_CONF, HSA_SIZE, MIB, TOOL_IMAGE_SIZE, TOOL_INITRD_SIZE, fmt_bytes,
    fmt_fraction, mb_per_s, parse_dump_area, parse_peak_rss,
};

/// The release binaries the bench runs.
pub(super) struct Tools {
    agent: PathBuf,
    /// Runs `agent` when it is not a host binary: qemu-s390x-static.
    agent_runner: Option<&'static str>,
    fixture: PathBuf,
    disk: PathBuf,
}

impl Tools {
    /// Times `bin`, an s390x agent (a dist build's), under qemu-user
    /// instead of the host build. Its numbers are emulated: they compare
    /// with another s390x build's, not with dd's.
    pub(super) fn with_s390x_agent(mut self, bin: &Path) -> Result<Tools> {
        let data = std::fs::read(bin).with_context(|| format!("cannot read {}", bin.display()))?;
        let elf = object::File::parse(&*data)
            .with_context(|| format!("{} is not an ELF file", bin.display()))?;
        ensure!(
            object::Object::architecture(&elf) == object::Architecture::S390x,
            "{} is not an s390x binary",
            bin.display()
        );
        self.agent = std::path::absolute(bin)?;
        self.agent_runner = Some("qemu-s390x-static");
        Ok(self)
    }
}

/// Builds the host agent and tools in release mode; their paths come from
/// cargo's JSON messages, so any target-dir setting is honoured.
pub(super) fn build_tools(root: &Path) -> Result<Tools> {
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
            if v["reason"] == "compiler-artifact" && v["target"]["name"] == name {
                if let Some(exe) = v["executable"].as_str() {
                    return Ok(PathBuf::from(exe));
                }
            }
        }
        bail!("cargo did not report the {name} binary")
    };
    Ok(Tools {
        agent: found("zfcpdump-agent")?,
        agent_runner: None,
        fixture: found("vmcore-fixture")?,
        disk: found("zfcpdump-disk")?,
    })
}

/// Where the agent's disk image puts the dump.
#[derive(Clone, Copy, Debug)]
struct Disk {
    size: u64,
    dump_start: u64,
    dump_end: u64,
}

/// One generated vmcore and the target size that goes with it.
pub(super) struct Source {
    pub(super) path: PathBuf,
    pub(super) len: u64,
    pub(super) label: String,
    disk: Disk,
}

/// One timed run.
pub(super) struct Run {
    pub(super) mbps: f64,
    pub(super) rss_kib: Option<u64>,
}

pub(super) struct Bench {
    tools: Tools,
    pub(super) work: WorkDir,
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
    pub(super) peak_disk: u64,
}

impl Bench {
    pub(super) fn new(tools: Tools, parent: &Path) -> Result<Bench> {
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
    pub(super) fn source(
        &mut self,
        name: &str,
        size: u64,
        zero_fraction: f64,
    ) -> Result<(Source, f64)> {
        let path = self.work.path.join(name);
        let t = Instant::now();
        let sh = cmd::shell()?;
        let fixture = &self.tools.fixture;
        let (size_arg, zeros) = (size.to_string(), zero_fraction.to_string());
        cmd::output(cmd!(
            sh,
            "{fixture} --size {size_arg} --zero-fraction {zeros} {path}"
        ))?;
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
        let sh = cmd::shell()?;
        let (tool, img, image, initrd) =
            (&self.tools.disk, &self.disk_img, &self.image, &self.initrd);
        let size_arg = size.to_string();
        let out = cmd::output(cmd!(
            sh,
            "{tool} prepare {img} --size {size_arg} --image {image} --initrd {initrd}"
        ))?;
        let (dump_start, dump_end) = parse_dump_area(&String::from_utf8_lossy(&out.stdout))
            .context("cannot find the dump area in zfcpdump-disk prepare's output")?;
        Ok(Disk {
            size,
            dump_start,
            dump_end,
        })
    }

    fn agent_cmd(&self, src: &Source, elide: bool) -> Command {
        let mut c = match self.tools.agent_runner {
            Some(runner) => {
                let mut c = Command::new(runner);
                c.arg(&self.tools.agent);
                c
            }
            None => Command::new(&self.tools.agent),
        };
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

    /// How the notes name the agent: the host build, or the s390x binary
    /// under its runner.
    fn agent_program(&self) -> String {
        match self.tools.agent_runner {
            Some(runner) => format!("{runner} {}", self.tools.agent.display()),
            None => "zfcpdump-agent".into(),
        }
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
    pub(super) fn describe(&self, c: Contender) -> String {
        match c {
            Contender::Agent => format!(
                "{} --root ROOT --source VMCORE --disk disk.img --hsa-size {HSA_SIZE} \
                 --sector-size 512",
                self.agent_program()
            ),
            Contender::AgentElided => format!(
                "{} --root ROOT --source VMCORE --disk disk.img --hsa-size {HSA_SIZE} \
                 --sector-size 512 --config elide.conf  (elide.conf: {})",
                self.agent_program(),
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
    pub(super) fn run_one(
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
                (c == Contender::AgentElided) == err.contains("\nfiltered: dump level "),
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
    pub(super) fn rss_probe(&mut self, size: u64) -> Result<RssPoint> {
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
    let sh = cmd::shell()?;
    cmd::output(cmd!(sh, "sync -f {dir}"))?;
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
pub(super) fn resident(path: &Path) -> Option<u64> {
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
