//! `size`: the memory budget table, the initramfs entries by size and the
//! difference from another build, from a dist build's manifest.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::manifest::read_manifest;
use super::{IMAGE, MANIFEST, RD, dist_dir};
use crate::profile::ProfileArgs;
use crate::util;

#[derive(Args, Clone, Debug)]
pub struct SizeArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Another build's manifest.json to compare with
    #[arg(long, value_name = "MANIFEST")]
    pub compare: Option<PathBuf>,
    /// How many initramfs entries to list
    #[arg(long, default_value_t = 15)]
    pub top: usize,
}

pub fn size(args: &SizeArgs) -> Result<()> {
    let root = util::project_root();
    let profile = args.profile.load()?;
    let path = dist_dir(&root, &profile).join(MANIFEST);
    let m = read_manifest(&path)?;
    println!("# {} (kernel {})", path.display(), m.kernel.release);
    for a in m.artifacts.iter().chain([&m.agent]) {
        println!(
            "{:<20} {:>10} bytes  sha256 {}",
            a.name,
            a.size,
            &a.sha256[..16]
        );
    }
    println!("\n# memory budget\n{}", m.budget.render());
    println!(
        "# initramfs entries by size ({} entries, cpio {} bytes, {}{})",
        m.initramfs.entries.len(),
        m.initramfs.cpio_size,
        m.initramfs.compression,
        match m.artifacts.iter().find(|a| a.name == RD) {
            Some(rd) => format!(" {} bytes", rd.size),
            None => format!(", built into {IMAGE}"),
        }
    );
    for e in m.initramfs.entries.iter().take(args.top) {
        println!("{:>10}  {}", e.bytes, e.path);
    }
    if let Some(other) = &args.compare {
        let o = read_manifest(other)?;
        println!("\n# difference from {} (this - other)", other.display());
        let d = |a: u64, b: u64| a as i64 - b as i64;
        for (a, b) in m
            .artifacts
            .iter()
            .chain([&m.agent])
            .zip(o.artifacts.iter().chain([&o.agent]))
        {
            println!("{:<38} {:>+12}", a.name, d(a.size, b.size));
        }
        for r in &m.budget.rows {
            let before = o
                .budget
                .rows
                .iter()
                .find(|x| x.component == r.component)
                .map_or(0, |x| x.bytes);
            println!("{:<38} {:>+12}", r.component, d(r.bytes, before));
        }
        println!("{:<38} {:>+12}", "total", d(m.budget.total, o.budget.total));
    }
    Ok(())
}
