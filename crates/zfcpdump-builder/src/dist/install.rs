//! `install`: the names zipl looks for, from an existing dist build.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::manifest::read_manifest;
use super::{IMAGE, MANIFEST, RD, dist_dir};
use crate::profile::ProfileArgs;
use crate::util;

#[derive(Args, Clone, Debug)]
pub struct InstallArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Staging root, as in `make install DESTDIR=...`
    #[arg(long, value_name = "DIR")]
    pub destdir: PathBuf,
    /// Where zipl looks for the dump tool. Debian's zipl looks in
    /// /lib/s390-tools/zfcpdump
    #[arg(long, value_name = "D", default_value = "/usr/lib/s390-tools/zfcpdump")]
    pub zfcpdump_dir: PathBuf,
    /// Also install manifest.json next to them
    #[arg(long)]
    pub with_manifest: bool,
}

/// Installs the names zipl looks for, mode 0644, from an existing dist.
pub fn install(args: &InstallArgs) -> Result<()> {
    let root = util::project_root();
    let profile = args.profile.load()?;
    let from = dist_dir(&root, &profile);
    let manifest = read_manifest(&from.join(MANIFEST))?;
    let rel = args
        .zfcpdump_dir
        .strip_prefix("/")
        .unwrap_or(&args.zfcpdump_dir);
    let to = args.destdir.join(rel);
    fs::create_dir_all(&to).with_context(|| format!("cannot create {}", to.display()))?;
    let mut files = vec![(IMAGE, "zfcpdump-image")];
    if manifest.initramfs.builtin {
        // zipl IPLs the image alone when there is no zfcpdump-initrd; a
        // stale one from an external build would be put on the disk with it.
        let stale = to.join("zfcpdump-initrd");
        if stale.exists() {
            fs::remove_file(&stale)
                .with_context(|| format!("cannot remove {}", stale.display()))?;
            println!(
                "removed {} (the image carries its initramfs)",
                stale.display()
            );
        }
    } else {
        files.push((RD, "zfcpdump-initrd"));
    }
    if args.with_manifest {
        files.push((MANIFEST, "manifest.json"));
    }
    for (src, dst) in files {
        let data = fs::read(from.join(src))?;
        let target = to.join(dst);
        util::write_atomic(&target, &data)?;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644))?;
        println!("installed {}", target.display());
    }
    Ok(())
}
