//! `package --deb`: a dist build as a Debian binary package for s390x.
//!
//! Debian ships no zfcpdump (its s390-tools, 2.16 to 2.40, has neither the
//! image nor the initrd), so `zipl --dumpto` finds nothing to install. The
//! package puts the files where Debian's zipl looks:
//!
//! - `/usr/lib/s390-tools/zfcpdump/zfcpdump-image` (and `zfcpdump-initrd`
//!   unless the initramfs is built in). Debian 12's zipl opens
//!   `/lib/s390-tools/zfcpdump/`; every Debian 12 system is /usr-merged
//!   (`/lib` is a link to `usr/lib`), so it finds them there, and newer
//!   lintian wants package files under /usr only.
//! - `/usr/share/doc/<package>/`: `copyright` (the project's MIT licence and
//!   the kernel image's GPL-2.0, with where its source is), `changelog.gz`
//!   and the build's `manifest.json`.
//!
//! Name: `zfcpdump` for the default profile, `zfcpdump-<profile>` for
//! another, which provides, conflicts with and replaces `zfcpdump` (they
//! install the same files). Version: `<project version>+linux<kernel
//! release>`, a native package; a kernel update is a new version.
//!
//! Reproducible: every file's mtime is `SOURCE_DATE_EPOCH`, owners are root
//! (`dpkg-deb --root-owner-group`), which clamps the archive's times too.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::cmd;
use crate::dist::{self, DistArgs, IMAGE, MANIFEST, Manifest, RD};
use crate::kernel::{self, source_date_epoch};
use crate::profile::ProfileArgs;
use crate::util;

/// Where Debian's zipl finds the dump tool (through /lib -> usr/lib).
pub const ZFCPDUMP_DIR: &str = "usr/lib/s390-tools/zfcpdump";
const MAINTAINER: &str = "zfcpdump-rs developers <zfcpdump-rs@users.noreply.github.com>";

#[derive(Args, Clone, Debug)]
pub struct PackageArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Build a Debian binary package (the only format so far)
    #[arg(long, required = true)]
    pub deb: bool,
    /// Where the .deb goes; default target/zfcpdump/package/
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Fail listing missing host packages instead of installing them
    #[arg(long)]
    pub no_provision: bool,
    /// Use only what `cargo xtask fetch` brought into the local caches
    #[arg(long)]
    pub offline: bool,
}

/// The package of a profile: its name, version and file.
pub struct Deb {
    pub name: String,
    pub version: String,
    pub path: PathBuf,
}

pub fn run(args: &PackageArgs) -> Result<()> {
    let deb = build(args)?;
    println!("{}", deb.path.display());
    Ok(())
}

/// Builds the profile (cached), then the package from dist/<profile>/.
pub fn build(args: &PackageArgs) -> Result<Deb> {
    let root = util::project_root();
    dist::run(&DistArgs::new(
        args.profile.clone(),
        args.no_provision,
        args.offline,
    ))?;
    let profile = args.profile.load()?;
    let from = dist::dist_dir(&root, &profile);
    let out = args
        .out_dir
        .clone()
        .unwrap_or_else(|| util::cache_dir(&root).join("package"));
    deb(&from, &profile.name, &out)
}

/// The package name of a profile.
pub fn package_name(profile: &str) -> String {
    match profile {
        "default" => "zfcpdump".into(),
        p => format!("zfcpdump-{}", p.to_ascii_lowercase().replace('_', "-")),
    }
}

/// Packs the dist directory `from` (of profile `profile`) into `out`.
pub fn deb(from: &Path, profile: &str, out: &Path) -> Result<Deb> {
    let manifest: Manifest =
        serde_json::from_slice(&fs::read(from.join(MANIFEST)).with_context(|| {
            format!(
                "cannot read {}: run `cargo xtask dist` first",
                from.display()
            )
        })?)?;
    let name = package_name(profile);
    let version = format!(
        "{}+linux{}",
        env!("CARGO_PKG_VERSION"),
        manifest.kernel.release
    );
    let external = !manifest.initramfs.builtin;
    let tree = util::tmp_name(&out.join(format!("{name}.tree")));
    let _ = fs::remove_dir_all(&tree);
    let res = (|| -> Result<PathBuf> {
        fill_tree(&tree, from, &name, &version, profile, &manifest)?;
        fix_times_and_modes(&tree)?;
        fs::create_dir_all(out)?;
        let deb = out.join(format!("{name}_{version}_s390x.deb"));
        dpkg_deb(&tree, &deb)?;
        Ok(deb)
    })();
    let _ = fs::remove_dir_all(&tree);
    let path = res?;
    eprintln!(
        "[package] {} ({} bytes): {name} {version}, {}",
        path.display(),
        fs::metadata(&path)?.len(),
        if external {
            "image and initrd"
        } else {
            "image with its initramfs built in"
        }
    );
    Ok(Deb {
        name,
        version,
        path,
    })
}

/// The package's files (from the dist directory `from`, and the docs) and
/// DEBIAN/{control,md5sums} under `tree`.
fn fill_tree(
    tree: &Path,
    from: &Path,
    name: &str,
    version: &str,
    profile: &str,
    manifest: &Manifest,
) -> Result<()> {
    let external = !manifest.initramfs.builtin;
    let files = tree.join(ZFCPDUMP_DIR);
    let doc = tree.join("usr/share/doc").join(name);
    fs::create_dir_all(&files)?;
    fs::create_dir_all(&doc)?;
    fs::create_dir_all(tree.join("DEBIAN"))?;
    let mut installed = vec![(files.join("zfcpdump-image"), fs::read(from.join(IMAGE))?)];
    if external {
        installed.push((files.join("zfcpdump-initrd"), fs::read(from.join(RD))?));
    }
    installed.push((doc.join("manifest.json"), fs::read(from.join(MANIFEST))?));
    installed.push((
        doc.join("copyright"),
        copyright(manifest, external).into_bytes(),
    ));
    installed.push((
        doc.join("changelog.gz"),
        gzip(changelog(name, version, profile, manifest)?.as_bytes())?,
    ));
    let mut md5sums = String::new();
    for (path, data) in &installed {
        fs::write(path, data)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o644))?;
        let rel = path.strip_prefix(tree).expect("inside the tree");
        md5sums.push_str(&format!("{}  {}\n", md5_hex(path)?, rel.display()));
    }
    let size_kib: u64 = installed
        .iter()
        .map(|(_, d)| (d.len() as u64).div_ceil(1024))
        .sum();
    fs::write(
        tree.join("DEBIAN/control"),
        control(name, version, profile, manifest, size_kib),
    )?;
    fs::write(tree.join("DEBIAN/md5sums"), md5sums)?;
    for f in ["control", "md5sums"] {
        fs::set_permissions(
            tree.join("DEBIAN").join(f),
            fs::Permissions::from_mode(0o644),
        )?;
    }
    Ok(())
}

/// `dpkg-deb --build` of `tree` into `deb`, written aside and renamed in.
fn dpkg_deb(tree: &Path, deb: &Path) -> Result<()> {
    let tmp = util::tmp_name(deb);
    let sh = cmd::shell()?;
    let built = cmd::output(
        cmd::cmd!(sh, "dpkg-deb --root-owner-group -Zxz --build {tree} {tmp}")
            .env("SOURCE_DATE_EPOCH", source_date_epoch()?.to_string()),
    );
    if let Err(e) = built {
        let _ = fs::remove_file(&tmp);
        return Err(e.context("building the package (dpkg-deb; Debian: dpkg)"));
    }
    fs::rename(&tmp, deb)?;
    Ok(())
}

/// Directories 0755, every mtime SOURCE_DATE_EPOCH.
fn fix_times_and_modes(tree: &Path) -> Result<()> {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(source_date_epoch()?);
    for e in walkdir::WalkDir::new(tree).contents_first(true) {
        let e = e?;
        if e.file_type().is_dir() {
            fs::set_permissions(e.path(), fs::Permissions::from_mode(0o755))?;
        }
        fs::File::open(e.path())?.set_modified(t)?;
    }
    Ok(())
}

/// The md5 of a file as md5sum prints it (DEBIAN/md5sums); a failed
/// md5sum is an error, not an empty sum.
fn md5_hex(path: &Path) -> Result<String> {
    let sh = cmd::shell()?;
    let out = cmd::read(cmd::cmd!(sh, "md5sum {path}"))?;
    match out.split_whitespace().next() {
        Some(sum) if sum.len() == 32 => Ok(sum.to_string()),
        _ => bail!("md5sum printed no sum for {}: {out:?}", path.display()),
    }
}

/// gzip -9n: no name, no time, as Debian wants changelogs.
fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let sh = cmd::shell()?;
    Ok(cmd::output(cmd::cmd!(sh, "gzip -9n -c").stdin(data))?.stdout)
}

fn control(name: &str, version: &str, profile: &str, m: &Manifest, size_kib: u64) -> String {
    let mut s = format!(
        "Package: {name}\nVersion: {version}\nArchitecture: s390x\nMaintainer: {MAINTAINER}\n\
         Installed-Size: {size_kib}\nSection: admin\nPriority: optional\nSuggests: s390-tools\n"
    );
    if name != "zfcpdump" {
        s.push_str("Provides: zfcpdump\nConflicts: zfcpdump\nReplaces: zfcpdump\n");
    }
    s.push_str(&format!(
        "Description: SCSI dump tool for IBM Z (zfcpdump), Linux {}\n \
         The dump tool that zipl --dumpto installs on a SCSI dump partition: a\n \
         small Linux kernel and an initramfs whose agent writes the crashed\n \
         system's memory from /proc/vmcore to the partition, where zgetdump and\n \
         crash read it.\n \
         .\n \
         Built by zfcpdump-rs, profile {profile}.\n{}",
        m.kernel.release,
        if m.initramfs.builtin {
            " The initramfs is built into the image: one file, as secure IPL needs.\n"
        } else {
            ""
        }
    ));
    s
}

fn changelog(name: &str, version: &str, profile: &str, m: &Manifest) -> Result<String> {
    Ok(format!(
        "{name} ({version}) unstable; urgency=medium\n\n  \
         * Built by cargo xtask package --deb from profile {profile}: Linux\n    \
         {}; the kernel source is named in manifest.json.\n\n -- {MAINTAINER}  {}\n",
        m.kernel.release,
        rfc2822(source_date_epoch()?)
    ))
}

/// `Mon, 01 Jan 2024 00:00:00 +0000` from the kernel stage's timestamp
/// text (`Mon Jan  1 00:00:00 UTC 2024`).
fn rfc2822(epoch: u64) -> String {
    let t = kernel::kbuild_timestamp(epoch);
    let w: Vec<&str> = t.split_whitespace().collect();
    format!("{}, {:0>2} {} {} {} +0000", w[0], w[2], w[1], w[5], w[3])
}

const MIT: &str = "Permission is hereby granted, free of charge, to any person obtaining a
 copy of this software and associated documentation files (the \"Software\"),
 to deal in the Software without restriction, including without limitation
 the rights to use, copy, modify, merge, publish, distribute, sublicense,
 and/or sell copies of the Software, and to permit persons to whom the
 Software is furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included
 in all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS
 OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF
 MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT.
 IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY
 CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT,
 TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE
 SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.";

/// What the agent links statically besides its own code, by its target
/// (the manifest's profile): the licences the package must name.
fn agent_libs(m: &Manifest) -> (&'static str, Option<&'static str>) {
    let target = m.profile["agent"]["target"].as_str().unwrap_or_default();
    if target == crate::agent::GNU_TARGET {
        (
            "the GNU C Library (LGPL-2.1-or-later; its source is Debian's glibc\n \
             source package, `apt-get source glibc`). The agent's own source is\n \
             public: it can be rebuilt and relinked against a modified C library\n \
             with `cargo xtask agent`",
            Some(
                "License: LGPL-2.1-or-later\n \
                 On Debian systems, the full text of the GNU Lesser General Public\n \
                 License version 2.1 can be found in\n \
                 /usr/share/common-licenses/LGPL-2.1.\n",
            ),
        )
    } else {
        ("musl libc (MIT)", None)
    }
}

fn copyright(m: &Manifest, external: bool) -> String {
    let agent_file = if external {
        format!("{ZFCPDUMP_DIR}/zfcpdump-initrd")
    } else {
        "*".into()
    };
    let (libc, libc_licence) = agent_libs(m);
    let (licence, libc_holders) = if libc_licence.is_some() {
        (
            "MIT and LGPL-2.1-or-later",
            "\n 1991-2025 Free Software Foundation, Inc. and the GNU C Library authors",
        )
    } else {
        ("MIT", "")
    };
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: zfcpdump-rs\n\n\
         Files: *\n\
         Copyright: 2024-2026 zfcpdump-rs developers{libc_holders}\n\
         License: {licence}\n\
         Comment: The dump agent ({agent_file}) and the build; the agent links\n \
         Rust's standard library (MIT or Apache-2.0) and {libc}.\n\n\
         Files: {ZFCPDUMP_DIR}/zfcpdump-image\n\
         Copyright: 1991-2024 Linus Torvalds and the Linux kernel contributors\n\
         License: GPL-2.0-only\n\
         Comment: Linux {}, built with zfcpdump_defconfig from the kernel source\n \
         {}; on Debian that is the linux-source package of the\n \
         same version (/usr/src/linux-source-*.tar.xz) or `apt-get source linux`.\n \
         The configuration and the build's inputs are in manifest.json.{}\n\n\
         License: MIT\n {MIT}\n\n\
         License: GPL-2.0-only\n \
         This program is free software; you can redistribute it and/or modify it\n \
         under the terms of the GNU General Public License version 2 as published\n \
         by the Free Software Foundation.\n \
         .\n \
         On Debian systems, the full text of the GNU General Public License\n \
         version 2 can be found in /usr/share/common-licenses/GPL-2.\n{}",
        m.kernel.release,
        m.kernel.source,
        if external {
            ""
        } else {
            "\n The image also holds the initramfs with the agent (see above)."
        },
        libc_licence.map(|l| format!("\n{l}")).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_dates() {
        assert_eq!(package_name("default"), "zfcpdump");
        assert_eq!(package_name("default-builtin"), "zfcpdump-default-builtin");
        assert_eq!(
            rfc2822(kernel::DEFAULT_SOURCE_DATE_EPOCH),
            "Mon, 01 Jan 2024 00:00:00 +0000"
        );
        assert_eq!(rfc2822(1_709_210_096), "Thu, 29 Feb 2024 12:34:56 +0000");
    }

    use super::md5_hex;

    #[test]
    fn gzip_stores_no_name_and_no_time() {
        let z = gzip(b"changelog").unwrap();
        let mut d = flate2::read::GzDecoder::new(&z[..]);
        let h = d.header().unwrap().clone();
        assert!(h.filename().is_none());
        assert_eq!(h.mtime(), 0);
        let mut back = String::new();
        std::io::Read::read_to_string(&mut d, &mut back).unwrap();
        assert_eq!(back, "changelog");
    }

    #[test]
    fn md5_of_a_file_is_md5sums() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("abc");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(md5_hex(&f).unwrap(), "900150983cd24fb0d6963f7d28e17f72");
    }

    /// md5sum's exit status was once ignored: a missing file gave an empty
    /// sum in DEBIAN/md5sums.
    #[test]
    fn md5_of_a_missing_file_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let e = md5_hex(&d.path().join("gone")).unwrap_err().to_string();
        assert!(e.contains("No such file or directory"), "{e}");
    }
}
