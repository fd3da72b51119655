//! `install`: the names zipl looks for, from an existing dist build.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use super::manifest::read_manifest;
use super::{IMAGE, MANIFEST, Manifest, RD, dist_dir};
use crate::profile::ProfileArgs;
use crate::util;

#[derive(Args, Clone, Debug)]
pub struct InstallArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Staging root, as in `make install DESTDIR=...`
    #[arg(long, value_name = "DIR")]
    pub destdir: PathBuf,
    /// Where zipl looks for the dump tool (Debian's /lib/s390-tools/zfcpdump
    /// is this directory on its /usr-merged systems)
    #[arg(long, value_name = "D", default_value = "/usr/lib/s390-tools/zfcpdump")]
    pub zfcpdump_dir: PathBuf,
    /// Also install manifest.json next to them
    #[arg(long)]
    pub with_manifest: bool,
    /// Install from this dist output (e.g. one written with `dist --out-dir`)
    /// instead of dist/<profile>/
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
}

/// The bytes of artifact `name` in `dir`, if its size and sha256 are the
/// manifest's.
fn verified(dir: &Path, name: &str, manifest: &Manifest) -> Result<Vec<u8>> {
    let path = dir.join(name);
    let want = manifest
        .artifacts
        .iter()
        .find(|a| a.name == name)
        .with_context(|| format!("{} lists no {name}", dir.join(MANIFEST).display()))?;
    let data = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let sha = util::sha256_bytes(&data);
    anyhow::ensure!(
        data.len() as u64 == want.size && sha == want.sha256,
        "{} is not the file its manifest lists ({} bytes, sha256 {sha}; the manifest says {} \
         bytes, sha256 {}): nothing was installed; build it again with `cargo xtask dist`",
        path.display(),
        data.len(),
        want.size,
        want.sha256
    );
    Ok(data)
}

/// Installs the names zipl looks for, mode 0644, from an existing dist.
pub fn install(args: &InstallArgs) -> Result<()> {
    let root = util::project_root();
    let from = match &args.from {
        Some(d) => d.clone(),
        None => dist_dir(&root, &args.profile.load()?),
    };
    let manifest = read_manifest(&from.join(MANIFEST))?;
    // Every file is read and checked against the manifest before anything
    // is touched: a damaged build installs nothing.
    let mut checked = vec![(verified(&from, IMAGE, &manifest)?, "zfcpdump-image")];
    if !manifest.initramfs.builtin {
        checked.push((verified(&from, RD, &manifest)?, "zfcpdump-initrd"));
    }
    if args.with_manifest {
        checked.push((fs::read(from.join(MANIFEST))?, "manifest.json"));
    }
    let rel = args
        .zfcpdump_dir
        .strip_prefix("/")
        .unwrap_or(&args.zfcpdump_dir);
    let to = args.destdir.join(rel);
    fs::create_dir_all(&to).with_context(|| format!("cannot create {}", to.display()))?;
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
    }
    for (data, dst) in checked {
        let target = to.join(dst);
        util::write_atomic(&target, &data)?;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644))?;
        println!("installed {}", target.display());
    }
    Ok(())
}
