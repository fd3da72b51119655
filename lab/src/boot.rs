//! `boot`: boots dist artifacts under qemu-system-s390x with as much memory
//! as the profile's budget, so the budget claim is tested, not only computed.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;

use crate::checks::console::initramfs_origin;
use crate::guest::{Boot, Outcome};
use zfcpdump_builder::dist::{self, DistArgs, IMAGE, RD};
use zfcpdump_builder::profile::ProfileArgs;
use zfcpdump_builder::util;

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

/// `cargo xtask boot`: dist (cached), then the smoke boot.
pub fn run(args: &BootArgs) -> Result<()> {
    let root = util::project_root();
    let profile = args.profile.load()?;
    dist::run(&DistArgs::new(
        args.profile.clone(),
        args.no_provision,
        false,
    ))?;
    let dir = dist::dist_dir(&root, &profile);
    let log = util::cache_dir(&root).join("boot").join(format!(
        "{}-{}{}.log",
        profile.name,
        profile.initramfs.compression,
        if args.append.is_some() { "-append" } else { "" }
    ));
    let initrd = (!profile.initramfs.builtin).then(|| dir.join(RD));
    let boot = Boot {
        image: &dir.join(IMAGE),
        initrd: initrd.as_deref(),
        memory: profile.budget.total,
        cpus: 1,
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
    if let Some(p) = initramfs_origin(&out.console, profile.initramfs.builtin) {
        bail!("boot failed: {p}; full console: {}", log.display());
    }
    eprintln!(
        "[boot] ok in {}: the agent ran from {}, said what it said, and powered off (QEMU exit 0)\n{}",
        util::fmt_duration(out.elapsed),
        if profile.initramfs.builtin {
            "the image's own initramfs (no -initrd)"
        } else {
            "the initrd"
        },
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
