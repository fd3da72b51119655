//! `boot`: boots dist artifacts under qemu-system-s390x with as much memory
//! as the profile's budget, so the budget claim is tested, not only computed.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::build::dist::{self, DistArgs, IMAGE, RD};
use crate::build::profile::ProfileArgs;
use crate::util;

#[derive(Args, Clone, Debug)]
pub struct BootArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Give up and kill QEMU after this many seconds
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
    /// Extra kernel command line parameters
    #[arg(long)]
    pub append: Option<String>,
    /// Console text that must appear (repeatable); default: `Dump failed`,
    /// which is what the agent must say where QEMU offers no dump device
    #[arg(long)]
    pub expect: Vec<String>,
    /// Fail listing missing host packages instead of installing them
    #[arg(long)]
    pub no_provision: bool,
}

/// A disk attached to the guest.
pub struct Drive {
    pub file: PathBuf,
    /// `scsi` (virtio-scsi, /dev/sdX) or `blk` (virtio-blk, /dev/vdX).
    pub bus: &'static str,
    pub sector_size: u32,
}

pub struct Boot<'a> {
    pub image: &'a Path,
    pub initrd: &'a Path,
    pub memory: u64,
    pub append: String,
    pub drives: Vec<Drive>,
    pub timeout: Duration,
    pub log: PathBuf,
}

pub struct Outcome {
    /// QEMU's exit status: 0 after the guest powered off, 1 on a guest panic
    /// (`-action panic=exit-failure`); None when killed at the timeout.
    pub exit: Option<i32>,
    pub console: String,
    pub elapsed: Duration,
}

impl Outcome {
    /// The console's last lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.console.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Boot<'_> {
    /// The QEMU command line, with `extra` arguments at the end (e.g. a QMP
    /// socket or another `-action`).
    pub fn command_with(&self, extra: &[String]) -> Command {
        let mut c = Command::new("qemu-system-s390x");
        c.args([
            "-M",
            "s390-ccw-virtio",
            "-nographic",
            "-no-reboot",
            "-smp",
            "1",
        ])
        .arg("-m")
        .arg(format!("{}M", self.memory.div_ceil(1 << 20)))
        .args(["-action", "panic=exit-failure"])
        .arg("-kernel")
        .arg(self.image)
        .arg("-initrd")
        .arg(self.initrd)
        .arg("-append")
        .arg(format!("console=ttysclp0 {}", self.append).trim_end());
        if self.drives.iter().any(|d| d.bus == "scsi") {
            c.args(["-device", "virtio-scsi-ccw,id=scsi0"]);
        }
        for (i, d) in self.drives.iter().enumerate() {
            c.arg("-drive").arg(format!(
                "if=none,id=d{i},file={},format=raw",
                d.file.display()
            ));
            let dev = match d.bus {
                "scsi" => format!("scsi-hd,drive=d{i},bus=scsi0.0,scsi-id={i}"),
                _ => format!("virtio-blk-ccw,drive=d{i}"),
            };
            let bs = d.sector_size;
            c.arg("-device").arg(format!(
                "{dev},logical_block_size={bs},physical_block_size={bs}"
            ));
        }
        c.args(extra);
        c
    }

    /// Boots, captures the console into `log`, kills QEMU at the timeout.
    pub fn run(&self) -> Result<Outcome> {
        self.run_with(&[])
    }

    /// [`Boot::run`] with extra QEMU arguments at the end of the command line.
    pub fn run_with(&self, extra: &[String]) -> Result<Outcome> {
        if let Some(dir) = self.log.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut cmd = self.command_with(extra);
        let mut log = fs::File::create(&self.log)
            .with_context(|| format!("cannot create {}", self.log.display()))?;
        writeln!(log, "$ {cmd:?}")?;
        let t = Instant::now();
        let (reader, writer) = std::io::pipe()?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(writer.try_clone()?)
            .stderr(writer)
            .spawn()
            .context("cannot run qemu-system-s390x (Debian: qemu-system-misc)")?;
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let reader_thread = std::thread::spawn(move || -> std::io::Result<String> {
            let mut console = String::new();
            for line in BufReader::new(reader).lines() {
                let line = line.unwrap_or_default();
                // The SCLP console ends lines with \r\n.
                let line = line.trim_end_matches('\r');
                writeln!(log, "{line}")?;
                console.push_str(line);
                console.push('\n');
            }
            Ok(console)
        });
        let exit = loop {
            if let Some(status) = child.try_wait()? {
                break status.code();
            }
            if t.elapsed() > self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let console = reader_thread
            .join()
            .map_err(|_| anyhow::anyhow!("console reader panicked"))??;
        Ok(Outcome {
            exit,
            console,
            elapsed: t.elapsed(),
        })
    }
}

/// `cargo xtask boot`: dist (cached), then the smoke boot.
pub fn run(args: &BootArgs) -> Result<()> {
    let root = util::project_root();
    let profile = args.profile.load()?;
    dist::run(&DistArgs {
        profile: args.profile.clone(),
        no_provision: args.no_provision,
        offline: false,
        check_reproducible: false,
        out_dir: None,
    })?;
    let dir = dist::dist_dir(&root, &profile);
    let log = util::cache_dir(&root).join("boot").join(format!(
        "{}-{}{}.log",
        profile.name,
        profile.initramfs.compression,
        if args.append.is_some() { "-append" } else { "" }
    ));
    let boot = Boot {
        image: &dir.join(IMAGE),
        initrd: &dir.join(RD),
        memory: profile.budget.total,
        append: args.append.clone().unwrap_or_default(),
        drives: vec![],
        timeout: Duration::from_secs(args.timeout),
        log: log.clone(),
    };
    eprintln!(
        "[boot] {} ({}) with -m {} MiB, timeout {} s; console: {}",
        profile.name,
        profile.initramfs.compression,
        profile.budget.total >> 20,
        args.timeout,
        log.display()
    );
    let out = boot.run()?;
    let expect = if args.expect.is_empty() {
        vec!["Dump failed".to_string()]
    } else {
        args.expect.clone()
    };
    check(&out, &expect, &log)?;
    eprintln!(
        "[boot] ok in {}: the agent ran, said what it said, and powered off (QEMU exit 0)\n{}",
        util::fmt_duration(out.elapsed),
        out.tail(12)
    );
    Ok(())
}

/// A good boot: powered off cleanly, no panic, each expected text present.
pub fn check(out: &Outcome, expect: &[String], log: &Path) -> Result<()> {
    let mut problems = Vec::new();
    match out.exit {
        Some(0) => {}
        Some(1) => problems.push("QEMU exited 1: the guest kernel panicked".to_string()),
        Some(n) => problems.push(format!("QEMU exited {n}")),
        None => problems.push("timed out: the guest did not power off".to_string()),
    }
    if out.console.contains("Kernel panic") {
        problems.push("the console shows a kernel panic".into());
    }
    for e in expect {
        if !out.console.contains(e.as_str()) {
            problems.push(format!("the console lacks {e:?}"));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    bail!(
        "boot failed: {}\n---- console tail ----\n{}\n----\nfull console: {}",
        problems.join("; "),
        out.tail(30),
        log.display()
    )
}
