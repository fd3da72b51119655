//! Host provisioning: find what is missing and, on Debian-like hosts,
//! install it (as root, or through `sudo -n`), saying what it installs.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

use anyhow::{Result, bail};

use crate::cmd::{self, cmd};
use crate::profile::Profile;
use crate::util;

/// Something the build or the tests need from the host.
#[derive(Clone)]
pub struct Need {
    pub check: Check,
    /// The Debian package that provides it; None when Debian has none (a
    /// cross compiler of another prefix): then it can only be listed.
    pub package: Option<&'static str>,
    pub why: &'static str,
}

/// How a [`Need`] is found. The checks ask the tools themselves where
/// they can, so that a host of any distribution passes when it has them.
#[derive(Clone)]
pub enum Check {
    /// A command on PATH.
    Command(Cow<'static, str>),
    /// An absolute path.
    File(&'static str),
    /// A Debian package, installed (a library whose path depends on the
    /// architecture).
    Dpkg(&'static str),
    /// `cc` preprocesses a file that includes `header` (a library's
    /// headers where the compiler looks for them).
    Header {
        cc: Cow<'static, str>,
        header: &'static str,
    },
    /// `cc` links a program (with `flags`): its C library is there.
    Links {
        cc: Cow<'static, str>,
        flags: &'static str,
    },
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Command(c) => write!(f, "{c}"),
            Check::File(p) => write!(f, "{p}"),
            Check::Dpkg(p) => write!(f, "dpkg:{p}"),
            Check::Header { cc, header } => write!(f, "<{header}> (as {cc} finds it)"),
            Check::Links { cc, flags: "" } => write!(f, "a C library {cc} links with"),
            Check::Links { cc, flags } => write!(f, "a C library `{cc} {flags}` links with"),
        }
    }
}

/// What `dist` needs whatever the profile; [`build_needs`] adds the
/// profile's compilers.
pub const BUILD: &[Need] = &[
    need("make", "make", "runs the kernel build"),
    need("gcc", "gcc", "host programs of the kernel build"),
    need("flex", "flex", "kconfig"),
    need("bison", "bison", "kconfig"),
    need("bc", "bc", "kernel build scripts"),
    Need {
        check: Check::Header {
            cc: Cow::Borrowed("gcc"),
            header: "libelf.h",
        },
        package: Some("libelf-dev"),
        why: "objtool and kernel build scripts",
    },
    Need {
        check: Check::Header {
            cc: Cow::Borrowed("gcc"),
            header: "openssl/ssl.h",
        },
        package: Some("libssl-dev"),
        why: "kernel build scripts",
    },
    need("cpio", "cpio", "reads initramfs archives back in tests"),
    need("xz", "xz-utils", "initramfs compression checks"),
    need("zstd", "zstd", "initramfs compression checks"),
];

/// What a profile with `[sign]` needs on top of [`BUILD`].
pub const SIGN: &[Need] = &[need(
    "openssl",
    "openssl",
    "signs images of profiles with [sign]",
)];

/// The cross compiler prefix Debian's packages provide.
pub const DEBIAN_CROSS: &str = "s390x-linux-gnu-";

/// What a build of `profile` needs: [`BUILD`], the kernel's compiler
/// ([`kernel::compiler::cc`]) and its C library, the agent's linker and its
/// static C library, and the kernel source's package.
pub fn build_needs(profile: &Profile) -> Vec<Need> {
    let mut v = BUILD.to_vec();
    v.extend(compiler_needs(&profile.kernel));
    v.extend(agent_needs(&crate::agent::linker(profile)));
    if profile.sign.is_some() {
        v.extend(SIGN.iter().cloned());
    }
    let tarball = profile.kernel.source.tarball.as_deref();
    v.extend(tarball.and_then(kernel_source).cloned());
    v
}

/// The kernel's compiler and its C library: the cross gcc of
/// `kernel.cross_compile` (or a `CC` of `kernel.make_args`, checked the same
/// way), or clang and LLVM's tools when `make_args` has `LLVM` (Debian's
/// packages for `LLVM=1` only).
fn compiler_needs(k: &crate::profile::Kernel) -> Vec<Need> {
    use crate::kernel::compiler;
    let cc = compiler::cc_program(k);
    let cmd = |name: String, package: Option<&'static str>, why: &'static str| Need {
        check: Check::Command(Cow::Owned(name)),
        package,
        why,
    };
    if let Some(llvm) = compiler::llvm(k) {
        // kbuild's LLVM=1 or LLVM=-<version>: Debian's clang, lld and llvm
        // (a version's packages are clang-<version> and so on, which
        // provision cannot name statically: listed only).
        let debian = llvm == "1";
        let mut v = vec![
            cmd(
                cc,
                debian.then_some("clang"),
                "compiles the kernel (kernel.make_args: LLVM)",
            ),
            cmd(
                compiler::llvm_tool(llvm, "ld.lld"),
                debian.then_some("lld"),
                "links the kernel (kernel.make_args: LLVM)",
            ),
        ];
        for tool in ["llvm-ar", "llvm-nm", "llvm-objcopy"] {
            v.push(cmd(
                compiler::llvm_tool(llvm, tool),
                debian.then_some("llvm"),
                "the kernel's binutils (kernel.make_args: LLVM)",
            ));
        }
        return v;
    }
    gcc_needs(cc)
}

/// A cross gcc `cc` and its C library.
fn gcc_needs(cc: String) -> Vec<Need> {
    let debian = cc == format!("{DEBIAN_CROSS}gcc");
    vec![
        Need {
            check: Check::Command(Cow::Owned(cc.clone())),
            package: debian.then_some("gcc-s390x-linux-gnu"),
            why: "cross-compiles the kernel (kernel.cross_compile)",
        },
        // Without a libc for the cross compiler, kconfig's CC_CAN_LINK
        // test flips with whatever else is installed: make it always true.
        Need {
            check: Check::Links {
                cc: Cow::Owned(cc),
                flags: "",
            },
            package: debian.then_some("libc6-dev-s390x-cross"),
            why: "a fixed kernel .config (CC_CAN_LINK)",
        },
    ]
}

/// The agent's linker and its static C library.
fn agent_needs(linker: &str) -> Vec<Need> {
    let debian = (linker == crate::agent::MUSL_LINKER).then_some("musl-dev:s390x");
    vec![
        Need {
            check: Check::Command(Cow::Owned(linker.to_string())),
            package: debian,
            why: "links the static agent (agent.linker)",
        },
        Need {
            check: Check::Links {
                cc: Cow::Owned(linker.to_string()),
                flags: "-static",
            },
            package: debian,
            why: "links the static agent (agent.linker)",
        },
    ]
}

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
        "debootstrap",
        "debootstrap",
        "the Debian 13 chroot of ci/trixie.sh",
    ),
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
        .find(|n| n.check_path().is_some_and(|p| Path::new(p) == tarball))
}

/// The Debian package of a kernel source tarball, if Debian has one.
pub fn kernel_source_package(tarball: &Path) -> Option<&'static str> {
    kernel_source(tarball).and_then(|n| n.package)
}

impl Need {
    /// The path a [`Check::File`] need checks.
    pub fn check_path(&self) -> Option<&'static str> {
        match self.check {
            Check::File(p) => Some(p),
            _ => None,
        }
    }

    /// The Debian package, for messages: "package X", or that there is
    /// none.
    fn package_text(&self) -> String {
        match self.package {
            Some(p) => format!("package {p}"),
            None => "no Debian package: install it yourself".into(),
        }
    }
}

/// A command, a file (an absolute path) or `dpkg:PACKAGE`.
const fn need(check: &'static str, package: &'static str, why: &'static str) -> Need {
    let check = match check.as_bytes() {
        [b'/', ..] => Check::File(check),
        // Not `check.split_at(5).1`: const only since Rust 1.86 (MSRV 1.85).
        [b'd', b'p', b'k', b'g', b':', rest @ ..] => match std::str::from_utf8(rest) {
            Ok(pkg) => Check::Dpkg(pkg),
            Err(_) => panic!("the rest of a str after an ASCII prefix is UTF-8"),
        },
        _ => Check::Command(Cow::Borrowed(check)),
    };
    Need {
        check,
        package: Some(package),
        why,
    }
}

fn present(n: &Need) -> bool {
    match &n.check {
        // dpkg-query fails for a package it does not know.
        Check::Dpkg(pkg) => {
            let format = "-f=${Status}";
            cmd::shell()
                .and_then(|sh| cmd::read(cmd!(sh, "dpkg-query -W {format} {pkg}")))
                .is_ok_and(|status| status.contains("install ok installed"))
        }
        Check::File(p) => Path::new(p).exists(),
        Check::Command(c) => util::have_command(c),
        Check::Header { cc, header } => compiles(
            cc,
            &["-E", "-x", "c", "-o", "/dev/null", "-"],
            &format!("#include <{header}>\n"),
        ),
        Check::Links { cc, flags } => {
            let mut args: Vec<&str> = flags.split_whitespace().collect();
            args.extend(["-x", "c", "-o", "/dev/null", "-"]);
            compiles(
                cc,
                &args,
                "#include <stdio.h>\nint main(void) { return puts(\"\"); }\n",
            )
        }
    }
}

/// Whether `cc args` succeeds on `source` given on stdin.
fn compiles(cc: &str, args: &[&str], source: &str) -> bool {
    cmd::shell()
        .and_then(|sh| cmd::output(cmd!(sh, "{cc} {args...}").stdin(source)))
        .is_ok()
}

/// Toolchain components of a build that builds std: the standard
/// library's source.
const BUILD_STD_COMPONENTS: &[&str] = &["rust-src"];

/// The toolchain components a build of `profile` needs: rust-src where
/// the agent's std is built from it ([`crate::agent::std_for`]).
pub fn build_components(profile: &Profile) -> &'static [&'static str] {
    match crate::agent::std_for(&profile.agent.target) {
        crate::agent::Std::Build => BUILD_STD_COMPONENTS,
        crate::agent::Std::Toolchain => &[],
    }
}
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

/// Everything: the build (with Debian's cross prefix), the tests, every
/// kernel source CI builds.
pub fn ensure_all(allowed: bool) -> Result<()> {
    let mut cross = gcc_needs(format!("{DEBIAN_CROSS}gcc"));
    cross.extend(agent_needs(crate::agent::MUSL_LINKER));
    let needs: Vec<&Need> = BUILD
        .iter()
        .chain(SIGN)
        .chain(&cross)
        .chain(BUILD_OPTIONAL)
        .chain(TEST)
        .chain(KERNEL_SOURCES)
        .collect();
    ensure(&needs, TEST_COMPONENTS, allowed)
}

/// What is missing of `needs` and `components`, and what installing it
/// takes.
struct Missing<'n> {
    needs: Vec<&'n Need>,
    components: Vec<&'static str>,
    /// The Debian packages of the missing needs that have one.
    packages: Vec<&'static str>,
}

impl<'n> Missing<'n> {
    fn of(needs: &[&'n Need], components: &[&'static str]) -> Missing<'n> {
        let needs: Vec<&Need> = needs.iter().copied().filter(|n| !present(n)).collect();
        let mut packages = Vec::new();
        for p in needs.iter().filter_map(|n| n.package) {
            if !packages.contains(&p) {
                packages.push(p);
            }
        }
        Missing {
            needs,
            components: missing_components(components),
            packages,
        }
    }

    fn is_empty(&self) -> bool {
        self.needs.is_empty() && self.components.is_empty()
    }

    /// Whether provisioning can install all of it here: a Debian-like host,
    /// a package for every need, rustup for the components.
    fn installable(&self) -> bool {
        Path::new("/etc/debian_version").exists()
            && self.needs.iter().all(|n| n.package.is_some())
            && (self.components.is_empty() || util::have_command("rustup"))
    }

    fn apt_command(&self) -> String {
        let arch = if self.packages.iter().any(|p| p.ends_with(":s390x")) {
            "dpkg --add-architecture s390x && "
        } else {
            ""
        };
        format!(
            "{arch}apt-get update && apt-get install -y --no-install-recommends {}",
            self.packages.join(" ")
        )
    }

    /// One line per missing thing.
    fn describe(&self) -> String {
        let mut s = String::new();
        for n in &self.needs {
            s.push_str(&format!(
                "  {} ({}): {}\n",
                n.check,
                n.package_text(),
                n.why
            ));
        }
        for c in &self.components {
            s.push_str(&format!("  Rust toolchain component {c}\n"));
        }
        s
    }

    /// The error when it cannot or may not be installed: what is missing
    /// and how to install it.
    fn error(&self) -> anyhow::Error {
        let mut msg = format!("missing host prerequisites:\n{}", self.describe());
        let debian = Path::new("/etc/debian_version").exists();
        if !self.packages.is_empty() {
            if debian {
                msg.push_str(&format!(
                    "install them with:\n  sudo sh -c '{}'\n",
                    self.apt_command()
                ));
            } else {
                msg.push_str(
                    "install what provides them (the names are Debian's; docs/host.md gives \
                     Fedora/RHEL's and SUSE's)\n",
                );
            }
        }
        if !self.components.is_empty() {
            msg.push_str(&format!("  {}\n", component_hint(&self.components)));
        }
        anyhow::anyhow!(msg)
    }
}

/// The preflight's host check: Ok when everything is there, or when
/// provisioning (`allowed`) will install what is missing; the error lists
/// it otherwise. Installs nothing.
pub fn check(needs: &[&Need], components: &[&'static str], allowed: bool) -> Result<String> {
    let m = Missing::of(needs, components);
    if m.is_empty() {
        return Ok(format!("{} tools and libraries present", needs.len()));
    }
    if allowed && m.installable() {
        let mut what: Vec<String> = m.packages.iter().map(|p| p.to_string()).collect();
        what.extend(m.components.iter().map(|c| format!("rustup component {c}")));
        return Ok(format!("will install {}", what.join(", ")));
    }
    Err(m.error())
}

/// Ensures `needs` are present. With `allowed`, installs what is missing
/// where it can; otherwise fails listing what is missing and the command.
/// A host that is not Debian-like passes when nothing is missing.
pub fn ensure(needs: &[&Need], components: &[&'static str], allowed: bool) -> Result<()> {
    let m = Missing::of(needs, components);
    if m.is_empty() {
        return Ok(());
    }
    if !allowed || !m.installable() {
        return Err(m.error());
    }
    eprint!(
        "[provision] installing missing prerequisites:\n{}",
        m.describe()
    );
    let sh = cmd::shell()?;
    if !m.components.is_empty() {
        let comps = &m.components;
        cmd::run(cmd!(sh, "rustup component add {comps...}"))?;
    }
    if !m.packages.is_empty() {
        let apt_cmd = m.apt_command();
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
    let still = Missing::of(&m.needs, &m.components);
    if !still.is_empty() {
        bail!("still missing after installing:\n{}", still.describe());
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

    /// The compiler probes, through the host gcc: a header it finds or
    /// not, a program it links or not, a compiler that is not there.
    #[test]
    fn compiler_probes_tell_present_from_missing() {
        let probe = |check| {
            present(&Need {
                check,
                package: None,
                why: "test",
            })
        };
        let gcc = || Cow::Borrowed("gcc");
        let header = |header| Check::Header { cc: gcc(), header };
        let links = |flags| Check::Links { cc: gcc(), flags };
        assert!(probe(header("stdio.h")));
        assert!(!probe(header("zfcpdump-no-such.h")));
        assert!(probe(links("")));
        assert!(!probe(links("-lzfcpdump-no-such")));
        assert!(!probe(Check::Links {
            cc: Cow::Borrowed("zfcpdump-no-such-gcc"),
            flags: "",
        }));
    }
}
