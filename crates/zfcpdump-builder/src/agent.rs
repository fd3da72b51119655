//! The agent stage: cross-builds the static s390x dump agent (/init).
//!
//! Two targets, each static:
//! - `s390x-unknown-linux-gnu`, with glibc linked statically: on a
//!   toolchain that has this target's std (a distribution's rustc with its
//!   s390x std package, or rustup's `rustup target add`), a plain stable
//!   `cargo build`. A panic aborts (SIGABRT). Where the toolchain has no
//!   such std, std is built from rust-src (`-Zbuild-std`, allowed through
//!   RUSTC_BOOTSTRAP=1, as the kernel's own Rust build does).
//! - `s390x-unknown-linux-musl`: a tier-3 target with no prebuilt std, so
//!   always `-Zbuild-std`. The panic strategy is `immediate-abort` (Rust
//!   1.92 or later): the cross toolchain has no unwinder for musl, and none
//!   is needed when nothing unwinds; a panic then traps (SIGILL).
//!
//! Either way the agent's PID-1 signal handler turns the signal into `Dump
//! failed` and a power-off.
use std::cell::OnceCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::cache::{Inputs, Slot};
use crate::cmd::{self, cmd};
use crate::lock::Wait;
use crate::profile::{Profile, ProfileArgs};
use crate::stage::Stage;
use crate::util;

#[derive(Args, Clone, Debug)]
pub struct AgentArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    /// Use only what `cargo xtask fetch` brought into the local caches
    #[arg(long)]
    offline: bool,
}

/// `cargo xtask agent`: the agent stage alone; prints the binary's path.
pub fn run(args: &AgentArgs) -> Result<()> {
    let p = args.profile.load()?;
    let rec = Agent::new(&util::project_root(), &p, args.offline).run(Wait::Block)?;
    println!("{}", rec.binary.display());
    Ok(())
}

const STAGE_VERSION: &str = "agent-1";
const PACKAGE: &str = "zfcpdump-agent";
/// The crates whose sources end up in the binary.
const SOURCE_CRATES: &[&str] = &["crates/zfcpdump-agent", "crates/zfcpdump-format"];
/// The linker of [`MUSL_TARGET`] unless `agent.linker` names another:
/// Debian's musl wrapper around the s390x cross gcc.
pub const MUSL_LINKER: &str = "s390x-linux-musl-gcc";
/// Static glibc: a prebuilt std where the toolchain has one.
pub const GNU_TARGET: &str = "s390x-unknown-linux-gnu";
/// Static musl: std always built from rust-src.
pub const MUSL_TARGET: &str = "s390x-unknown-linux-musl";
/// The targets the stage builds: the agent is /init of the s390x dump
/// kernel, static.
pub const TARGETS: &[&str] = &[GNU_TARGET, MUSL_TARGET];

/// The agent's linker: `agent.linker`, else the target's: the kernel's
/// cross gcc for glibc (`<kernel.cross_compile>gcc`), Debian's musl
/// wrapper for musl.
pub fn linker(profile: &Profile) -> String {
    match &profile.agent.linker {
        Some(l) => l.clone(),
        None if profile.agent.target == GNU_TARGET => {
            format!("{}gcc", profile.kernel.cross_compile)
        }
        None => MUSL_LINKER.to_string(),
    }
}

/// Where the agent's std comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Std {
    /// The toolchain's own, prebuilt for the target: a stable build.
    Toolchain,
    /// Built from the toolchain's rust-src (`-Zbuild-std`).
    Build,
}

/// The std of a build for `target` with the toolchain in use: the
/// toolchain's own where it has one for glibc, else built.
pub fn std_for(target: &str) -> Std {
    if target == GNU_TARGET && has_prebuilt_std(target) {
        Std::Toolchain
    } else {
        Std::Build
    }
}

/// Whether the toolchain's library directory for `target` holds a std.
fn has_prebuilt_std(target: &str) -> bool {
    let Ok(sh) = cmd::shell() else { return false };
    let Ok(dir) = cmd::read(cmd!(sh, "rustc --print target-libdir --target {target}")) else {
        return false;
    };
    fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("libstd-") && n.ends_with(".rlib")
        })
    })
}

/// The preflight's check of `agent.target`.
pub fn check_target(profile: &Profile) -> Result<String> {
    let t = &profile.agent.target;
    ensure!(
        TARGETS.contains(&t.as_str()),
        "{}: agent.target = {t:?}: the agent runs as /init of the s390x dump kernel; the \
         supported targets are {GNU_TARGET:?} (static glibc) and {MUSL_TARGET:?} (static musl)",
        profile.origin("agent.target")
    );
    Ok(match std_for(t) {
        Std::Toolchain => format!("{t}, the toolchain's std"),
        Std::Build => format!("{t}, std built from rust-src (-Zbuild-std)"),
    })
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentRecord {
    pub key: String,
    pub binary: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub rustc: String,
}

/// The agent stage.
pub struct Agent<'a> {
    pub root: &'a Path,
    pub profile: &'a Profile,
    pub offline: bool,
    cache: PathBuf,
    /// [`std_for`] the target, asked of the toolchain once: the flags, the
    /// key, the command line and the messages all follow it.
    std: OnceCell<Std>,
}

impl<'a> Agent<'a> {
    pub fn new(root: &'a Path, profile: &'a Profile, offline: bool) -> Agent<'a> {
        Agent {
            root,
            profile,
            offline,
            cache: util::cache_dir(root).join("agent"),
            std: OnceCell::new(),
        }
    }

    fn target(&self) -> &str {
        &self.profile.agent.target
    }

    /// The cargo target dir of the cross build, apart from the host's so
    /// that neither build invalidates or locks the other.
    fn cargo_target_dir(&self) -> PathBuf {
        self.cache.join("cargo-target")
    }

    fn std(&self) -> Std {
        *self.std.get_or_init(|| std_for(self.target()))
    }

    fn rustflags(&self) -> String {
        let cargo_home = std::env::var("CARGO_HOME")
            .ok()
            .or_else(|| std::env::var("HOME").ok().map(|h| format!("{h}/.cargo")))
            .unwrap_or_default();
        let mut flags = vec![
            "-C target-feature=+crt-static".to_string(),
            // Otherwise a PIE with an interpreter, which the kernel cannot
            // start as /init.
            "-C relocation-model=static".into(),
        ];
        if self.target() == MUSL_TARGET {
            flags.extend([
                "-C link-self-contained=no".into(),
                "-Z unstable-options".into(),
                "-C panic=immediate-abort".into(),
            ]);
        }
        // Reproducible: no build paths in the binary.
        flags.push(format!(
            "--remap-path-prefix={}=/build",
            self.root.display()
        ));
        if let Some(src) = rust_src().filter(|_| self.std() == Std::Build) {
            flags.push(format!("--remap-path-prefix={}=/rust-src", src.display()));
        }
        flags.push(format!("--remap-path-prefix={cargo_home}=/cargo"));
        if self.target() == MUSL_TARGET {
            flags.push(format!("-L native={}", self.unwind_dir().display()));
        }
        flags.join(" ")
    }

    /// Holds an empty `libunwind.a`. std's musl target always links
    /// `-lunwind`, and the Debian cross toolchain has none; with
    /// immediate-abort nothing references an unwinder symbol, so an empty
    /// archive satisfies the name. Should std ever need one, the link fails
    /// with undefined `_Unwind_*` symbols instead of shipping a silent stub.
    fn unwind_dir(&self) -> PathBuf {
        self.cache.join("empty-libunwind")
    }

    fn write_empty_unwind(&self) -> Result<()> {
        // An ar archive with no members is just its magic.
        util::write_atomic(&self.unwind_dir().join("libunwind.a"), b"!<arch>\n")
    }

    fn rustc_version() -> Result<String> {
        let sh = cmd::shell()?;
        cmd::read(cmd!(sh, "rustc -V"))
    }

    /// The flags without this machine's paths, for the cache key.
    fn rustflags_template(&self) -> String {
        self.rustflags()
            .replace(&self.cache.display().to_string(), "<cache>")
            .replace(&self.root.display().to_string(), "<root>")
    }

    /// `cargo build` of binary `package` of the workspace for the agent's
    /// target, with the agent's flags and cargo target dir (so std is built
    /// once for every such binary). Returns the binary's path there. The
    /// crash lab builds its pattern writer this way.
    pub fn cross_build(&self, package: &str) -> Result<PathBuf> {
        let std = self.std();
        if std == Std::Build && rust_src().is_none() {
            bail!(
                "the toolchain in use has no std for {} and no rust-src to build one from \
                 (`rustc --print sysroot`/lib/rustlib/src): rustup component add rust-src, or \
                 the distribution's rust-src package{}",
                self.target(),
                if self.target() == GNU_TARGET {
                    "; or its std for the target (rustup target add, Debian's \
                     libstd-rust-dev:s390x)"
                } else {
                    ""
                }
            );
        }
        if self.target() == MUSL_TARGET {
            self.write_empty_unwind()?;
        }
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(self.root)
            .args([
                "build",
                // Cargo.lock as committed: a build never resolves anew.
                "--locked",
                "--profile",
                "agent",
                "-p",
                package,
                "--bin",
                package,
            ])
            .args(["--target", self.target()])
            .arg("--target-dir")
            .arg(self.cargo_target_dir())
            .env(target_env(self.target(), "LINKER"), linker(self.profile))
            .env(target_env(self.target(), "RUSTFLAGS"), self.rustflags())
            .env_remove("RUSTFLAGS")
            .env(
                "SOURCE_DATE_EPOCH",
                crate::kernel::source_date_epoch()?.to_string(),
            );
        if std == Std::Build {
            cmd.args(["-Z", "build-std=std,panic_abort"])
                .env("RUSTC_BOOTSTRAP", "1");
        }
        if self.offline {
            cmd.arg("--offline").env("CARGO_NET_OFFLINE", "true");
        }
        let status = cmd.status().context("cannot run cargo")?;
        if !status.success() {
            bail!(
                "cross-build of {package} failed ({status}); cargo's messages above say why \
                 (the preflight found the linker {} and rust-src)",
                linker(self.profile)
            );
        }
        let built = self
            .cargo_target_dir()
            .join(self.target())
            .join("agent")
            .join(package);
        ensure!(built.is_file(), "cargo built no {}", built.display());
        Ok(built)
    }
}

impl Stage for Agent<'_> {
    type Record = AgentRecord;

    fn name(&self) -> &'static str {
        "agent"
    }

    fn cache(&self) -> &Path {
        &self.cache
    }

    fn profile(&self) -> &Profile {
        self.profile
    }

    fn inputs(&self) -> Result<Inputs> {
        let mut i = Inputs::new();
        i.insert("stage".into(), STAGE_VERSION.into());
        i.insert("target".into(), self.target().into());
        i.insert("rustc".into(), Self::rustc_version()?);
        i.insert("rustflags".into(), self.rustflags_template());
        // glibc's std is the toolchain's or built: a different binary. (For
        // musl it is always built; its key stays what it was.)
        if self.target() == GNU_TARGET {
            i.insert("std".into(), format!("{:?}", self.std()));
        }
        // Only a linker other than the default enters the key, so that the
        // default's key stays what it was.
        if let Some(l) = &self.profile.agent.linker {
            let sh = cmd::shell()?;
            let version = cmd::first_line(cmd!(sh, "{l} --version"))
                .with_context(|| format!("agent.linker = {l:?}: cannot run it"))?;
            i.insert("linker".into(), format!("{l}: {version}"));
        }
        for file in ["Cargo.toml", "Cargo.lock"] {
            if let Ok(data) = fs::read(self.root.join(file)) {
                i.insert(format!("file {file}"), util::sha256_bytes(&data));
            }
        }
        for krate in SOURCE_CRATES {
            let dir = self.root.join(krate);
            for path in source_files(&dir)? {
                let rel = path.strip_prefix(self.root).unwrap_or(&path);
                i.insert(
                    format!("file {}", rel.display()),
                    util::sha256_bytes(&fs::read(&path)?),
                );
            }
        }
        Ok(i)
    }

    fn check(&self, slot: &Slot, r: &AgentRecord) -> bool {
        r.key == slot.key && r.binary.is_file()
    }

    fn build(&self, slot: &Slot) -> Result<AgentRecord> {
        let t = Instant::now();
        eprintln!(
            "[agent] building {PACKAGE} for {} ({}, profile agent)",
            self.target(),
            match self.std() {
                Std::Toolchain => "the toolchain's std",
                Std::Build => "build-std",
            }
        );
        let built = self.cross_build(PACKAGE)?;
        let data = fs::read(&built).with_context(|| format!("cannot read {}", built.display()))?;
        check_static(&data, &built)?;
        let binary = slot.dir().join(PACKAGE);
        util::write_atomic(&binary, &data)?;
        set_executable(&binary)?;
        let rec = AgentRecord {
            key: slot.key.clone(),
            binary,
            size: data.len() as u64,
            sha256: util::sha256_bytes(&data),
            rustc: slot.inputs["rustc"].clone(),
        };
        slot.store(&rec)?;
        eprintln!(
            "[agent] built in {}: {} bytes, static",
            util::fmt_duration(t.elapsed()),
            rec.size
        );
        Ok(rec)
    }

    fn output<'r>(&self, rec: &'r AgentRecord) -> &'r Path {
        &rec.binary
    }

    fn about(&self, rec: &AgentRecord) -> String {
        format!("{} bytes", rec.size)
    }
}

/// `CARGO_TARGET_<TRIPLE>_<NAME>`.
fn target_env(target: &str, name: &str) -> String {
    format!(
        "CARGO_TARGET_{}_{name}",
        target.to_uppercase().replace(['-', '.'], "_")
    )
}

/// The kernel can only start /init if it is static: no PT_INTERP.
fn check_static(data: &[u8], path: &Path) -> Result<()> {
    use object::elf;
    use object::read::elf::{FileHeader, ProgramHeader};
    let hdr = elf::FileHeader64::<object::Endianness>::parse(data)
        .with_context(|| format!("{} is not an ELF64 file", path.display()))?;
    let e = hdr.endian()?;
    if hdr.e_machine(e) != elf::EM_S390 {
        bail!("{} is not an s390x binary", path.display());
    }
    if hdr
        .program_headers(e, data)?
        .iter()
        .any(|p| p.p_type(e) == elf::PT_INTERP)
    {
        bail!(
            "{} has an ELF interpreter: it is not static and cannot run as /init",
            path.display()
        );
    }
    Ok(())
}

fn set_executable(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The rust-src component's library/ parent, if installed.
pub fn rust_src() -> Option<PathBuf> {
    let sh = cmd::shell().ok()?;
    let sysroot = PathBuf::from(cmd::read(cmd!(sh, "rustc --print sysroot")).ok()?);
    let src = sysroot.join("lib/rustlib/src/rust");
    src.join("library/std/Cargo.toml").is_file().then_some(src)
}

/// Cargo.toml, build.rs and src/**: what a crate's build reads.
fn source_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for name in ["Cargo.toml", "build.rs"] {
        if dir.join(name).is_file() {
            out.push(dir.join(name));
        }
    }
    let mut stack = vec![dir.join("src")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}
