//! The unpacked s390x sysroot that the reference readers run from.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};

use super::apt::{PrivateApt, split_spec};
use crate::{progress, secs};
use zfcpdump_builder::cmd::{self, cmd};
use zfcpdump_builder::util::have_command;

/// The s390x packages of the sysroot. zipl needs libc6; zgetdump also needs
/// zlib1g and libfuse2 (its ELF NEEDED entries); busybox-static is the
/// helper guest's shell; crash (8.0.2 in Debian 12) needs the libraries
/// after it; makedumpfile (1.7.2) needs libdw1, libelf1 and, through libdw,
/// liblzma5 and libbz2-1.0 besides zlib1g and liblzo2-2.
pub const PACKAGES: &[&str] = &[
    "s390-tools",
    "libc6",
    "zlib1g",
    "libfuse2",
    "busybox-static",
    "crash",
    "libncursesw6",
    "libtinfo6",
    "liblzo2-2",
    "libsnappy1v5",
    "libzstd1",
    "libstdc++6",
    "libgcc-s1",
    "makedumpfile",
    "libdw1",
    "libelf1",
    "liblzma5",
    "libbz2-1.0",
];

/// Bumped when the layout of a cache entry changes.
const CACHE_FORMAT: &str = "s390-tools-root-v1";

/// The current readers, for kernels newer than Debian 12's readers know
/// (6.12's V!=R layout): Debian 13's s390-tools 2.35 (zgetdump also reads
/// `p_filesz < p_memsz` tails) and crash 8.0.6, sid's makedumpfile 1.7.8
/// (trixie's 1.7.6 lacks the 6.12 page-type fix), and the libraries of
/// their ELF NEEDED closure, not of apt's Depends, which pull far more.
/// Every package is tried in trixie first; sid serves the ones trixie
/// answers 404 for (libc6, zlib1g, libssl3t64, libpcre2-8-0, liblzma5 were).
pub const CURRENT_PACKAGES: &[&str] = &[
    "s390-tools",
    "crash",
    "makedumpfile/sid",
    "libc6",
    "zlib1g",
    "libfuse3-4",
    "libglib2.0-0t64",
    "libatomic1",
    "libpcre2-8-0",
    "libssl3t64",
    "libzstd1",
    "libncursesw6",
    "libtinfo6",
    "liblzo2-2",
    "libsnappy1v5",
    "libstdc++6",
    "libgcc-s1",
    "libdw1t64",
    "libelf1t64",
    "liblzma5",
    "libbz2-1.0",
];

/// A set of reference readers: Debian s390x packages, unpacked into a sysroot
/// in the cache. [`DEBIAN_12`] comes from the host's own apt lists (Debian
/// 12 with the s390x architecture added); [`CURRENT`] from a private apt
/// configuration of newer suites ([`super::apt`]). Each has its own cache
/// directory, so their entries never collide.
#[derive(Debug, Clone, Copy)]
pub struct Sysroot {
    /// For messages and reports, e.g. "Debian 12".
    pub label: &'static str,
    /// The cache subdirectory of its entries: `cache/<cache_dir>/<key>`.
    pub cache_dir: &'static str,
    /// Part of the cache key; bumped when the layout of a cache entry changes.
    pub cache_format: &'static str,
    /// The s390x packages to unpack (`name` or, with `suites`, `name/suite`).
    pub packages: &'static [&'static str],
    /// Empty: the host's apt lists. Otherwise the suites of a private apt
    /// configuration, tried in order for each package.
    pub suites: &'static [&'static str],
    /// Binaries whose interpreter and libraries must all be in the sysroot.
    pub binaries: &'static [&'static str],
}

/// Debian 12's s390-tools 2.16, crash 8.0.2, makedumpfile 1.7.2 and their
/// libraries.
pub const DEBIAN_12: Sysroot = Sysroot {
    label: "Debian 12",
    cache_dir: "s390-tools",
    cache_format: CACHE_FORMAT,
    packages: PACKAGES,
    suites: &[],
    binaries: &[
        "sbin/zipl",
        "sbin/zgetdump",
        "usr/bin/crash",
        "bin/busybox",
        "usr/bin/makedumpfile",
    ],
};

/// Every sysroot, for `fetch`.
pub const ALL: [Sysroot; 3] = [DEBIAN_12, CURRENT, CRASHLAB_GUEST];

/// Not a reader: the crash lab's production guest runs Debian 12's s390x
/// busybox-static and kexec-tools (2.0.25, glibc) to load its capture kernel.
pub const CRASHLAB_GUEST: Sysroot = Sysroot {
    label: "Debian 12 (crash lab guest)",
    cache_dir: "crashlab-guest",
    cache_format: "crashlab-guest-v1",
    packages: &["busybox-static", "kexec-tools", "libc6"],
    suites: &[],
    binaries: &["bin/busybox", "sbin/kexec"],
};

/// Debian 13's s390-tools and crash, sid's makedumpfile ([`CURRENT_PACKAGES`]).
pub const CURRENT: Sysroot = Sysroot {
    label: "Debian 13 + sid",
    cache_dir: "readers-current",
    cache_format: "readers-current-v1",
    packages: CURRENT_PACKAGES,
    suites: &["trixie", "sid"],
    // Usr-merged: `lib`, `bin`, `sbin` are links made by fill_entry.
    binaries: &["sbin/zgetdump", "usr/bin/crash", "usr/bin/makedumpfile"],
};

impl Sysroot {
    /// The directory that [`Sysroot::unpacked_root`] fills for the current package list:
    /// `cache/<cache_dir>/<key>`, holding `root/` and `versions.txt`.
    pub fn cache_entry(&self, cache: &Path) -> PathBuf {
        let mut h = Sha256::new();
        h.update(self.cache_format.as_bytes());
        for p in self.packages {
            h.update(b"\0");
            h.update(p.as_bytes());
        }
        let key: String = h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        cache.join(self.cache_dir).join(key)
    }

    /// The sysroot with the s390x packages, unpacked once into the cache (atomically: a temp dir renamed into
    /// place). Returns the sysroot (`.../root`); `versions.txt` beside it lists
    /// the package versions. With `offline`, only a cached sysroot is used.
    ///
    /// The cache key covers the package list, not the versions, so a cached
    /// sysroot needs no apt query; delete `cache/<cache_dir>/` to pick up
    /// newer Debian packages.
    pub fn unpacked_root(&self, cache: &Path, offline: bool) -> Result<PathBuf> {
        let entry = self.cache_entry(cache);
        let root = entry.join("root");
        if root.is_dir() {
            return Ok(root);
        }
        if offline {
            bail!(
                "the {} s390x reader sysroot is not in the cache ({}): run `cargo xtask fetch` \
                 while online first, or drop --offline",
                self.label,
                entry.display()
            );
        }
        for tool in ["apt-get", "dpkg-deb"] {
            ensure!(
                have_command(tool),
                "`{tool}` not found: the s390-tools sysroot is made from Debian's s390x packages \
             and needs a Debian or Ubuntu host with apt and dpkg"
            );
        }
        let parent = entry.parent().context("cache entry has no parent")?;
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let tmp = parent.join(format!(
            ".{}.tmp-{}",
            entry.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&tmp);
        let res = self.fill_entry(&tmp);
        if let Err(e) = res {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if let Err(e) = fs::rename(&tmp, &entry) {
            let _ = fs::remove_dir_all(&tmp);
            // Another process may have won the race; its result is as good.
            if !root.is_dir() {
                return Err(e).with_context(|| format!("cannot create {}", entry.display()));
            }
        }
        progress(format!("sysroot ready: {}", root.display()));
        Ok(root)
    }

    fn fill_entry(&self, tmp: &Path) -> Result<()> {
        let debs = tmp.join("debs");
        let root = tmp.join("root");
        fs::create_dir_all(&debs).with_context(|| format!("cannot create {}", debs.display()))?;
        fs::create_dir_all(&root)?;
        let t = Instant::now();
        let suites = if self.suites.is_empty() {
            self.download_host(&debs)?;
            Vec::new()
        } else {
            let apt = PrivateApt::update(&tmp.join("apt"), self.suites)?;
            progress(format!("downloading {}", self.packages.join(" ")));
            apt.download(self.packages, self.suites, &debs)?
        };
        progress(format!("downloaded in {}", secs(t.elapsed())));
        if !self.suites.is_empty() {
            // Newer Debian is usr-merged: the loader is /lib/ld64.so.1 and
            // the tools are run as sbin/... like Debian 12's.
            for d in ["lib", "bin", "sbin"] {
                std::os::unix::fs::symlink(format!("usr/{d}"), root.join(d))?;
            }
        }

        let mut versions = String::new();
        let mut found = BTreeSet::new();
        let mut files: Vec<PathBuf> = fs::read_dir(&debs)?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        files.sort();
        let sh = cmd::shell()?;
        for deb in files
            .iter()
            .filter(|p| p.extension() == Some("deb".as_ref()))
        {
            let out = cmd::output(cmd!(sh, "dpkg-deb -f {deb} Package Version Architecture"))?;
            let fields = String::from_utf8_lossy(&out.stdout);
            let field = |name: &str| {
                fields
                    .lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            let (pkg, ver, arch) = (field("Package"), field("Version"), field("Architecture"));
            ensure!(
                arch == "s390x",
                "{} is for architecture '{arch}', not s390x",
                deb.display()
            );
            match suites.iter().find(|(n, _)| *n == pkg) {
                Some((_, suite)) => versions.push_str(&format!("{pkg} {ver} {arch} {suite}\n")),
                None => versions.push_str(&format!("{pkg} {ver} {arch}\n")),
            }
            found.insert(pkg);
            cmd::output(cmd!(sh, "dpkg-deb -x {deb} {root}"))?;
        }
        let missing: Vec<_> = self
            .packages
            .iter()
            .map(|p| split_spec(p).0)
            .filter(|p| !found.contains(*p))
            .collect();
        ensure!(
            missing.is_empty(),
            "apt-get download did not produce {missing:?} in {}",
            debs.display()
        );
        fs::write(tmp.join("versions.txt"), &versions)?;
        fs::remove_dir_all(&debs)?;
        let _ = fs::remove_dir_all(tmp.join("apt"));

        // Fail here, not later inside a guest, if a run-time library is missing.
        for bin in self.binaries {
            elf_closure(&root, bin).with_context(|| {
                format!(
                    "checking {bin} in the {} sysroot ({:?})",
                    self.label, self.packages
                )
            })?;
        }
        progress(format!("unpacked {}", versions.trim().replace('\n', ", ")));
        Ok(())
    }
}

impl Sysroot {
    /// `apt-get download` of the packages through the host's own lists.
    fn download_host(&self, debs: &Path) -> Result<()> {
        let names: Vec<String> = self.packages.iter().map(|p| format!("{p}:s390x")).collect();
        progress(format!("downloading {}", names.join(" ")));
        // apt-get download writes into the current directory. The sandbox user
        // _apt could not write into a root-owned cache dir, so download as the
        // caller (the files are checked against the signed lists either way).
        let out = Command::new("apt-get")
            .args(["download", "-q", "-o", "APT::Sandbox::User=root"])
            .args(&names)
            .current_dir(debs)
            .output()
            .context("cannot run apt-get")?;
        if !out.status.success() {
            bail!(
                "apt-get download of the s390x packages failed ({}):\n{}\n\
                 The host needs the s390x architecture and its package lists: \
                 `dpkg --add-architecture s390x && apt-get update`",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// The package versions recorded next to a sysroot from [`Sysroot::unpacked_root`].
pub fn versions(root: &Path) -> Result<String> {
    let p = root.with_file_name("versions.txt");
    fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))
}

/// The version of `package` recorded for a sysroot, e.g. `2.35.0-1`.
pub fn package_version(root: &Path, package: &str) -> Result<String> {
    versions(root)?
        .lines()
        .find_map(|l| l.strip_prefix(package)?.strip_prefix(' '))
        .and_then(|l| l.split_whitespace().next())
        .map(String::from)
        .with_context(|| format!("no {package} version recorded for {}", root.display()))
}

/// An s390x binary in the sysroot plus everything the dynamic loader needs to
/// run it: its interpreter and the transitive DT_NEEDED libraries, as paths
/// relative to the sysroot (symlinks not resolved).
pub fn elf_closure(root: &Path, bin: &str) -> Result<Vec<String>> {
    let mut out = vec![bin.to_string()];
    let mut seen = BTreeSet::new();
    let mut i = 0;
    while i < out.len() {
        let rel = out[i].clone();
        i += 1;
        let path = in_root(root, &rel);
        let data = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let (interp, needed) = elf_deps(&data).with_context(|| format!("parsing {rel}"))?;
        if let Some(interp) = interp {
            let rel = interp.trim_start_matches('/').to_string();
            ensure!(
                in_root(root, &rel).exists(),
                "{bin}'s interpreter {interp} is not in {}",
                root.display()
            );
            if seen.insert(rel.clone()) {
                out.push(rel);
            }
        }
        for lib in needed {
            let rel = [
                "lib/s390x-linux-gnu",
                "usr/lib/s390x-linux-gnu",
                "lib",
                "usr/lib",
            ]
            .iter()
            .map(|d| format!("{d}/{lib}"))
            .find(|p| in_root(root, p).exists())
            .with_context(|| {
                format!(
                    "{bin} needs {lib}, which no package of the sysroot provides; add its \
                     package to the sysroot's package list"
                )
            })?;
            if seen.insert(rel.clone()) {
                out.push(rel);
            }
        }
    }
    Ok(out)
}

/// `root/rel` with symlinks in its last component followed inside the
/// sysroot: an absolute link target must not escape to the host's /lib.
pub fn in_root(root: &Path, rel: &str) -> PathBuf {
    let mut rel = PathBuf::from(rel);
    for _ in 0..16 {
        let p = root.join(&rel);
        let Ok(target) = fs::read_link(&p) else {
            return p;
        };
        rel = match target.strip_prefix("/") {
            Ok(abs) => abs.to_path_buf(),
            Err(_) => rel.parent().unwrap_or(Path::new("")).join(target),
        };
    }
    root.join(rel)
}

/// PT_INTERP and DT_NEEDED of an ELF64 file.
fn elf_deps(data: &[u8]) -> Result<(Option<String>, Vec<String>)> {
    use object::elf;
    use object::read::elf::{Dyn, FileHeader, ProgramHeader};
    let hdr = elf::FileHeader64::<object::Endianness>::parse(data).context("not an ELF64 file")?;
    let e = hdr.endian()?;
    let mut interp = None;
    for ph in hdr.program_headers(e, data)? {
        if let Some(i) = ph.interpreter(e, data)? {
            interp = Some(String::from_utf8_lossy(i).into_owned());
        }
    }
    let sections = hdr.sections(e, data)?;
    let mut needed = Vec::new();
    if let Some((dyns, strindex)) = sections.dynamic(e, data)? {
        let strings = sections.strings(e, data, strindex)?;
        for d in dyns {
            if d.tag32(e) == Some(elf::DT_NEEDED) {
                needed.push(String::from_utf8_lossy(d.string(e, strings)?).into_owned());
            }
        }
    }
    Ok((interp, needed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_12_cache_key_is_stable() {
        // Existing caches stay valid only while this holds.
        assert_eq!(
            DEBIAN_12.cache_entry(Path::new("c")),
            Path::new("c/s390-tools/4795f4cfbecb691e")
        );
    }
}
