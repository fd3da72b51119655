//! Host provisioning: find what is missing and, on Debian-like hosts,
//! install it (as root, or through `sudo -n`), saying what it installs.

use std::path::Path;

use anyhow::{Result, bail};

use crate::cmd::{self, cmd};
use crate::util;

/// Something the build or the tests need from the host.
pub struct Need {
    /// What is checked: a command on PATH, an absolute file path, or
    /// `dpkg:PACKAGE` (installed, for files whose path depends on the
    /// architecture).
    pub check: &'static str,
    /// The Debian package that provides it.
    pub package: &'static str,
    pub why: &'static str,
}

/// Everything `dist` needs.
pub const BUILD: &[Need] = &[
    need("make", "make", "runs the kernel build"),
    need("gcc", "gcc", "host programs of the kernel build"),
    need(
        "s390x-linux-gnu-gcc",
        "gcc-s390x-linux-gnu",
        "cross-compiles the kernel",
    ),
    // Without a libc for the cross compiler, kconfig's CC_CAN_LINK test
    // flips with whatever else is installed: make it always true.
    need(
        "/usr/s390x-linux-gnu/include/stdio.h",
        "libc6-dev-s390x-cross",
        "a fixed kernel .config (CC_CAN_LINK)",
    ),
    need("flex", "flex", "kconfig"),
    need("bison", "bison", "kconfig"),
    need("bc", "bc", "kernel build scripts"),
    need(
        "/usr/include/libelf.h",
        "libelf-dev",
        "objtool and kernel build scripts",
    ),
    need(
        "/usr/include/openssl/ssl.h",
        "libssl-dev",
        "kernel build scripts",
    ),
    need(
        "/usr/bin/s390x-linux-musl-gcc",
        "musl-dev:s390x",
        "links the static agent",
    ),
    need(
        "/usr/lib/s390x-linux-musl/libc.a",
        "musl-dev:s390x",
        "links the static agent",
    ),
    need("cpio", "cpio", "reads initramfs archives back in tests"),
    need("xz", "xz-utils", "initramfs compression checks"),
    need("zstd", "zstd", "initramfs compression checks"),
    need("openssl", "openssl", "signs images of profiles with [sign]"),
];

/// What `dist` uses when it is there and installs when it may; without it
/// the build still works.
pub const BUILD_OPTIONAL: &[Need] = &[need(
    "ccache",
    "ccache",
    "the kernel's compile cache (the kernel compiles without it, only slower)",
)];

/// What the tests need on top of [`BUILD`].
pub const TEST: &[Need] = &[
    need("g++", "g++", "builds libFuzzer for the fuzz targets"),
    need(
        "qemu-s390x-static",
        "qemu-user-static",
        "runs the s390x agent on the host",
    ),
    need(
        "qemu-system-s390x",
        "qemu-system-misc",
        "boots the dump kernel",
    ),
    need("mkfs.ext4", "e2fsprogs", "disk images for tests"),
    need(
        "redis-server",
        "redis-server",
        "a real remote storage for the compile cache's tests",
    ),
    need("lintian", "lintian", "checks the Debian package"),
    need(
        "softhsm2-util",
        "softhsm2",
        "a PKCS#11 token for the signing test",
    ),
    need(
        "dpkg:libengine-pkcs11-openssl",
        "libengine-pkcs11-openssl",
        "openssl's pkcs11 engine (sign.key = \"pkcs11:...\")",
    ),
];

/// The kernel sources that Debian 12 packages and the profiles in
/// `profiles/` name: 6.1 (the default) and 6.12 LTS (bookworm-security).
/// A profile whose `kernel.source.tarball` is one of these gets its package
/// installed.
pub const KERNEL_SOURCES: &[Need] = &[
    need(
        "/usr/src/linux-source-6.1.tar.xz",
        "linux-source-6.1",
        "the 6.1 profiles' kernel source",
    ),
    need(
        "/usr/src/linux-source-6.12.tar.xz",
        "linux-source-6.12",
        "the 6.12 profiles' kernel source",
    ),
];

/// The package that provides a kernel source tarball, if Debian has one.
pub fn kernel_source(tarball: &Path) -> Option<&'static Need> {
    KERNEL_SOURCES
        .iter()
        .find(|n| Path::new(n.check) == tarball)
}

const fn need(check: &'static str, package: &'static str, why: &'static str) -> Need {
    Need {
        check,
        package,
        why,
    }
}

fn present(n: &Need) -> bool {
    // A library whose path depends on the architecture: ask dpkg.
    if let Some(pkg) = n.check.strip_prefix("dpkg:") {
        // dpkg-query fails for a package it does not know.
        let format = "-f=${Status}";
        return cmd::shell()
            .and_then(|sh| cmd::read(cmd!(sh, "dpkg-query -W {format} {pkg}")))
            .is_ok_and(|status| status.contains("install ok installed"));
    }
    if n.check.starts_with('/') {
        Path::new(n.check).exists()
    } else {
        util::have_command(n.check)
    }
}

/// Toolchain components: build-std needs the standard library's source.
pub const BUILD_COMPONENTS: &[&str] = &["rust-src"];
/// `cargo xtask test` also runs rustfmt and clippy.
pub const TEST_COMPONENTS: &[&str] = &["rust-src", "rustfmt", "clippy"];

/// Whether the toolchain in use has component `c`, asked of the toolchain
/// itself (its sysroot, its cargo), so that a distribution's Rust, which
/// has no rustup, counts as much as rustup's.
fn component_present(c: &str) -> bool {
    let cargo = env!("CARGO");
    let works = |sub: &str| {
        cmd::shell()
            .and_then(|sh| cmd::read(cmd!(sh, "{cargo} {sub} --version")))
            .is_ok()
    };
    match c {
        "rust-src" => crate::agent::rust_src().is_some(),
        "rustfmt" => works("fmt"),
        "clippy" => works("clippy"),
        _ => false,
    }
}

/// The components of `wanted` that the toolchain in use lacks.
fn missing_components(wanted: &[&'static str]) -> Vec<&'static str> {
    wanted
        .iter()
        .copied()
        .filter(|c| !component_present(c))
        .collect()
}

/// How to add a missing component: rustup's command where rustup manages
/// the toolchain, the distribution's packages otherwise.
fn component_hint(comps: &[&str]) -> String {
    if util::have_command("rustup") {
        format!("rustup component add {}", comps.join(" "))
    } else {
        format!(
            "install the {} of the Rust toolchain in use (no rustup here); Debian, Fedora and \
             SUSE package rust-src as `rust-src`, rustfmt and clippy as `rustfmt` and \
             `rust-clippy` (Debian), `rustfmt` and `clippy` (Fedora, SUSE)",
            comps.join(", ")
        )
    }
}

/// Everything: the build, the tests, every kernel source CI builds.
pub fn ensure_all(allowed: bool) -> Result<()> {
    let needs: Vec<&Need> = BUILD
        .iter()
        .chain(BUILD_OPTIONAL)
        .chain(TEST)
        .chain(KERNEL_SOURCES)
        .collect();
    ensure(&needs, TEST_COMPONENTS, allowed)
}

/// Ensures `needs` are present. With `allowed`, installs what is missing
/// where it can; otherwise fails listing what is missing and the command.
pub fn ensure(needs: &[&Need], components: &[&'static str], allowed: bool) -> Result<()> {
    let mut pkgs: Vec<&str> = Vec::new();
    for n in needs.iter().filter(|n| !present(n)) {
        if !pkgs.contains(&n.package) {
            pkgs.push(n.package);
        }
    }
    let comps = missing_components(components);
    if pkgs.is_empty() && comps.is_empty() {
        return Ok(());
    }
    let debian = Path::new("/etc/debian_version").exists();
    let needs_s390x_arch = pkgs.iter().any(|p| p.ends_with(":s390x"));
    let apt_cmd = format!(
        "{}apt-get update && apt-get install -y --no-install-recommends {}",
        if needs_s390x_arch {
            "dpkg --add-architecture s390x && "
        } else {
            ""
        },
        pkgs.join(" ")
    );
    let comp_hint = component_hint(&comps);
    let describe = || {
        let mut s = String::new();
        for n in needs.iter().filter(|n| !present(n)) {
            s.push_str(&format!(
                "  {} (package {}): {}\n",
                n.check, n.package, n.why
            ));
        }
        for c in &comps {
            s.push_str(&format!("  Rust toolchain component {c}\n"));
        }
        s
    };
    if !allowed || !debian {
        let mut msg = format!("missing host prerequisites:\n{}", describe());
        if !pkgs.is_empty() {
            if debian {
                msg.push_str(&format!("install them with:\n  sudo sh -c '{apt_cmd}'\n"));
            } else {
                msg.push_str(
                    "this host is not Debian-like: install the equivalents of these Debian \
                     packages (see README, \"Other hosts\")\n",
                );
            }
        }
        if !comps.is_empty() {
            msg.push_str(&format!("  {comp_hint}\n"));
        }
        bail!(msg);
    }
    eprint!(
        "[provision] installing missing prerequisites:\n{}",
        describe()
    );
    let sh = cmd::shell()?;
    if !comps.is_empty() {
        if !util::have_command("rustup") {
            bail!("missing Rust toolchain components: {comp_hint}");
        }
        cmd::run(cmd!(sh, "rustup component add {comps...}"))?;
    }
    if !pkgs.is_empty() {
        let apt = if is_root() {
            cmd!(sh, "sh -c {apt_cmd}")
        } else if cmd::output(cmd!(sh, "sudo -n true")).is_ok() {
            cmd!(sh, "sudo -n sh -c {apt_cmd}")
        } else {
            bail!(
                "missing host packages, and this user can neither run apt nor use sudo without a \
                 password; run:\n  sudo sh -c '{apt_cmd}'"
            );
        };
        eprintln!("[provision] {apt_cmd}");
        cmd::run(apt.env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    let still: Vec<&str> = needs
        .iter()
        .filter(|n| !present(n))
        .map(|n| n.check)
        .collect();
    if !still.is_empty() {
        bail!("still missing after installing: {}", still.join(", "));
    }
    Ok(())
}

/// Whether we run as root, read from /proc so no libc call is needed.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_is_present_when_dpkg_says_installed() {
        assert!(!present(&need(
            "dpkg:zfcpdump-no-such-package",
            "zfcpdump-no-such-package",
            "test"
        )));
        if Path::new("/var/lib/dpkg/status").exists() {
            assert!(present(&need("dpkg:dpkg", "dpkg", "test")));
        }
        assert!(present(&need("sh", "dash", "test")));
        assert!(!present(&need("/nonexistent/zfcpdump", "x", "test")));
    }
}
