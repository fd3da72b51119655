//! The kernel stage: unpack the source, configure (defconfig + fragments +
//! olddefconfig), check requested against final, compile out of tree, link
//! the image of the profile's variant.
//!
//! Three cache levels keep a no-op under a second and share compiles:
//! - the *configure key* (`configure.rs`) hashes everything configure
//!   depends on; its record holds the final .config and the compile key;
//! - the *compile key* (`compile.rs`) hashes the final .config, the source,
//!   the compiler and the make variables; it names the `O=` directory.
//!   Profiles that end in the same .config share one compile. A built-in
//!   initramfs does not enter it: the compile is always of the external
//!   variant's .config;
//! - the *link key* (`link.rs`) adds the variant's .config (the built-in
//!   initramfs options) and the embedded archive: it names the directory
//!   the image and vmlinux are copied to, so a rootfs or agent change only
//!   relinks, and each variant's image survives the other's link in the
//!   shared `O=` directory.
//!
//! As a [`Stage`], its slot is the configure key's: its lookup walks the
//! three records, and its build runs the levels that are missing, under the
//! lock of its cache directory ([`crate::lock`]): parallel builds of one
//! target directory queue instead of compiling into one `O=` directory at
//! once.

use std::cell::OnceCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub mod ccache;
mod compile;
mod configure;
mod identity;
mod link;
mod make;
mod source;

pub use identity::Identity;
pub use link::{EMBEDDED_OPTION, embedded_name};
use make::{Progress, run_logged};
pub use source::{stays_inside, unpack_tarball};

use crate::cache::{Lookup, Slot};
use crate::cmd::{self, cmd};
use crate::initramfs::InitramfsRecord;
use crate::profile::Profile;
use crate::stage::Stage;
use crate::util;

/// Bump when the stage changes what it produces.
const STAGE_VERSION: &str = "kernel-3";

/// Fixed default for SOURCE_DATE_EPOCH: 2024-01-01T00:00:00Z. Any fixed
/// value makes builds reproducible; this one is documented in README.
pub const DEFAULT_SOURCE_DATE_EPOCH: u64 = 1_704_067_200;

/// Fixed build identity, so that the image does not name the build machine
/// and the `#N` counter does not grow with each rebuild in one O= dir.
const BUILD_USER: &str = "zfcpdump";
const BUILD_HOST: &str = "reproducible";
const BUILD_VERSION: &str = "1";

/// Where build paths appear in the output (debug info, `__FILE__`).
const MAPPED_SRC: &str = "/usr/src/linux";
const MAPPED_OBJ: &str = "/usr/src/linux-obj";

/// What later stages and the manifest need from this stage: one variant's
/// linked image, copied out of the `O=` directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KernelRecord {
    pub compile_key: String,
    pub link_key: String,
    pub image: PathBuf,
    pub image_size: u64,
    /// The image's vmlinux (with its symbols, for crash).
    pub vmlinux: PathBuf,
    /// Bytes from physical 0 to the end of the loaded kernel, bss included
    /// (and with it a built-in initramfs, which lies in `.init.ramfs`).
    pub footprint: u64,
    pub release: String,
    /// The variant's final .config.
    pub config_sha256: String,
    pub config: PathBuf,
    pub source: SourceId,
    /// The shared `O=` directory and its make.log.
    pub build_dir: PathBuf,
    pub log: PathBuf,
    /// The initramfs linked into the image, if it is built in.
    pub embedded: Option<Embedded>,
}

/// An initramfs linked into the image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Embedded {
    /// Its name inside the `O=` directory (`CONFIG_INITRAMFS_SOURCE`).
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// The compile's record in its `O=` directory (`stage.json`): the compile
/// is complete. Records of older versions, which held more, read as this.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CompileRecord {
    compile_key: String,
    release: String,
    source: SourceId,
    /// Objects compiled, for the next compile's progress estimate.
    #[serde(default)]
    objects: Option<u64>,
    /// Whether CC went through the compile cache: a relink in the same
    /// `O=` directory must use the same CC, or kbuild, which compares
    /// command lines, compiles everything again.
    #[serde(default)]
    compile_cache: bool,
}

/// How the source was identified (see `identity.rs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceId {
    /// "tarball" or "dir".
    pub kind: String,
    /// Where it was: recorded, but no part of any key.
    pub path: PathBuf,
    /// The tarball's sha256, pinned or as found.
    pub sha256: Option<String>,
    pub pinned: bool,
    /// For a source dir that is the top of a git work tree.
    pub git_commit: Option<String>,
    /// What the source is known by; None in records older than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// A source dir's content hash, when it is known by its content (a
    /// dirty work tree: of its changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_sha256: Option<String>,
}

impl SourceId {
    /// The source as the stage's input names it: what it is known by,
    /// never where it is.
    pub fn key(&self) -> String {
        let commit = self.git_commit.as_deref().unwrap_or("none");
        let content = self.content_sha256.as_deref().unwrap_or("none");
        match (self.identity, &self.sha256) {
            (Some(Identity::TarballSha256) | None, Some(sum)) => format!("tarball sha256 {sum}"),
            (Some(Identity::GitCommit), _) => format!("git {commit}"),
            (Some(Identity::GitDirtyContent), _) => {
                format!("git {commit} dirty content sha256 {content}")
            }
            (Some(Identity::TreeContent), _) => format!("dir content sha256 {content}"),
            // A record older than the identity: as it was keyed then.
            (_, None) => format!("dir {} git {commit}", self.path.display()),
        }
    }

    /// Whether `other` is a source of the same tree: the same tarball, the
    /// same identity, or (an estimate's business only) the same dir.
    fn same_tree(&self, other: &SourceId) -> bool {
        match (&self.sha256, &other.sha256) {
            (Some(a), Some(b)) => a == b,
            (None, None) => self.path == other.path || self.key() == other.key(),
            _ => false,
        }
    }
}

/// The configure step's cache record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ConfigureRecord {
    configure_key: String,
    compile_key: String,
    config_sha256: String,
    /// With a built-in initramfs: the sha256 of the link .config
    /// (`<configure_key>.link.config`), the compile's plus the built-in
    /// initramfs options.
    #[serde(default)]
    link_config_sha256: Option<String>,
}

pub use crate::cache::{Inputs, key_of};

/// The kernel stage of a profile.
pub struct Kernel<'a> {
    pub root: &'a Path,
    pub cache: PathBuf,
    pub profile: &'a Profile,
    /// The initramfs linked into the image: the initramfs stage's record
    /// for a profile with `initramfs.builtin`, None for the others (and for
    /// `plan` while the initramfs is to be rebuilt).
    pub embed: Option<&'a InitramfsRecord>,
    /// The source's identity, found once: a source dir's may walk the tree.
    source: OnceCell<SourceId>,
}

/// The stage's state without running anything: for `plan`.
pub struct Plan {
    pub configure_key: String,
    pub state: State,
}

pub enum State {
    UpToDate(Box<KernelRecord>),
    /// Configure is to run, with the inputs of the profile's last build:
    /// the compile it leads to is expected to be there. Cheap.
    Configure,
    /// The compile is there; the image is to be linked (or copied) only.
    Link {
        why: String,
    },
    Rebuild {
        why: String,
    },
}

impl<'a> Kernel<'a> {
    pub fn new(
        root: &'a Path,
        profile: &'a Profile,
        embed: Option<&'a InitramfsRecord>,
    ) -> Kernel<'a> {
        Kernel {
            root,
            cache: util::cache_dir(root).join("kernel"),
            profile,
            embed,
            source: OnceCell::new(),
        }
    }

    /// The source's identity, found on the first call; checks a
    /// tarball's kind and pin, and a dir's dirt.
    pub(crate) fn source_id(&self) -> Result<SourceId> {
        if let Some(id) = self.source.get() {
            return Ok(id.clone());
        }
        let id = self.find_source_id()?;
        Ok(self.source.get_or_init(|| id).clone())
    }

    fn find_source_id(&self) -> Result<SourceId> {
        let s = &self.profile.kernel.source;
        if let Some(tarball) = &s.tarball {
            let at = self.profile.origin("kernel.source.tarball");
            if !tarball.is_file() {
                bail!(
                    "{at}: kernel.source.tarball: {} does not exist{}",
                    tarball.display(),
                    match crate::provision::kernel_source(tarball) {
                        Some(n) => format!(
                            " (install Debian's {} package, or run without --no-provision)",
                            n.package
                        ),
                        None => String::new(),
                    }
                );
            }
            source::TarballKind::check(tarball)
                .with_context(|| format!("{at}: kernel.source.tarball"))?;
            let sum = util::sha256_file_cached(&util::cache_dir(self.root), tarball)?;
            if let Some(pin) = &s.sha256
                && !pin.eq_ignore_ascii_case(&sum)
            {
                bail!(
                    "{}: kernel.source.sha256 pins {pin}, but {} has sha256 {sum}: another \
                     kernel source than the one pinned (correct the pin, or the tarball)",
                    self.profile.origin("kernel.source.sha256"),
                    tarball.display()
                );
            }
            return Ok(SourceId {
                kind: "tarball".into(),
                path: tarball.clone(),
                sha256: Some(sum),
                pinned: s.sha256.is_some(),
                git_commit: None,
                identity: Some(Identity::TarballSha256),
                content_sha256: None,
            });
        }
        let dir = s.dir.as_ref().expect("validated: tarball or dir");
        if !dir.join("Makefile").is_file() {
            bail!(
                "{}: kernel.source.dir: {} has no Makefile (not a kernel source tree)",
                self.profile.origin("kernel.source.dir"),
                dir.display()
            );
        }
        let id = identity::identify_dir(dir, s.allow_dirty, &self.cache)?;
        Ok(SourceId {
            kind: "dir".into(),
            path: dir.clone(),
            sha256: None,
            pinned: false,
            git_commit: id.git_commit,
            identity: Some(id.identity),
            content_sha256: id.content_sha256,
        })
    }

    /// The preflight's check of the source: a tarball that provisioning
    /// will install (`install`) passes unread; any other is identified as
    /// the stage will identify it.
    pub fn check_source(&self, install: bool) -> Result<String> {
        if let Some(t) = &self.profile.kernel.source.tarball
            && !t.exists()
            && install
            && let Some(n) = crate::provision::kernel_source(t)
        {
            return Ok(format!(
                "{} will be installed (Debian package {})",
                t.display(),
                n.package
            ));
        }
        let id = self.source_id()?;
        Ok(match &id.sha256 {
            Some(sum) => format!(
                "{} sha256 {}{}",
                id.path.display(),
                &sum[..16],
                if id.pinned { " (pinned)" } else { "" }
            ),
            None => format!("{}", id.path.display()),
        })
    }

    /// The preflight's check of `kernel.defconfig`, where the source is at
    /// hand (a dir, or a tarball unpacked before); Ok(None) otherwise.
    pub fn check_defconfig(&self) -> Result<Option<String>> {
        let s = &self.profile.kernel.source;
        let src = match (&s.dir, &s.tarball) {
            (Some(d), _) => Some(d.clone()),
            (None, Some(t)) if t.is_file() => {
                let sum = util::sha256_file_cached(&util::cache_dir(self.root), t)?;
                source::unpacked_root(&self.tarball_dest(&sum))
            }
            _ => None,
        };
        let Some(src) = src else { return Ok(None) };
        let k = &self.profile.kernel;
        let path = src
            .join("arch")
            .join(&k.arch)
            .join("configs")
            .join(&k.defconfig);
        if !path.is_file() {
            bail!(
                "{}: kernel.defconfig = {:?}: {} does not exist (the defconfigs of this source \
                 are in {})",
                self.profile.origin("kernel.defconfig"),
                k.defconfig,
                path.display(),
                path.parent().unwrap_or(&src).display()
            );
        }
        Ok(Some(path.display().to_string()))
    }

    /// `s390x-linux-gnu-gcc --version`, first line.
    fn compiler_version(&self) -> Result<String> {
        let gcc = format!("{}gcc", self.profile.kernel.cross_compile);
        let sh = cmd::shell()?;
        cmd::first_line(cmd!(sh, "{gcc} --version")).with_context(|| {
            format!("cannot run {gcc}: install the cross compiler (Debian: gcc-s390x-linux-gnu)")
        })
    }

    /// make variables other than -j and the per-directory paths.
    fn make_vars(&self) -> Vec<(String, String)> {
        let k = &self.profile.kernel;
        vec![
            ("ARCH".into(), k.arch.clone()),
            ("CROSS_COMPILE".into(), k.cross_compile.clone()),
        ]
    }

    fn build_env(&self) -> Result<Vec<(String, String)>> {
        let epoch = source_date_epoch()?;
        Ok(vec![
            ("SOURCE_DATE_EPOCH".into(), epoch.to_string()),
            ("KBUILD_BUILD_TIMESTAMP".into(), kbuild_timestamp(epoch)),
            ("KBUILD_BUILD_USER".into(), BUILD_USER.into()),
            ("KBUILD_BUILD_HOST".into(), BUILD_HOST.into()),
            ("KBUILD_BUILD_VERSION".into(), BUILD_VERSION.into()),
            ("LC_ALL".into(), "C".into()),
            ("TZ".into(), "UTC".into()),
        ])
    }

    fn source_root(&self) -> Result<PathBuf> {
        let src = self.source_id()?;
        match src.sha256 {
            Some(sum) => unpack_tarball(&src.path, &self.tarball_dest(&sum)),
            None => Ok(src.path),
        }
    }

    /// Where the tarball of sha256 `sum` is unpacked.
    fn tarball_dest(&self, sum: &str) -> PathBuf {
        self.cache.join("src").join(&sum[..16])
    }

    /// make in `obj`, with CC as it is without the compile cache.
    fn make(&self, src: &Path, obj: &Path) -> Result<Command> {
        self.make_through(src, obj, None)
    }

    /// make in `obj`, with CC through `cache` (and its statistics log) if
    /// given.
    fn make_through(
        &self,
        src: &Path,
        obj: &Path,
        cache: Option<(&ccache::CompileCache, &Path)>,
    ) -> Result<Command> {
        let mut c = Command::new("make");
        c.arg("-C").arg(src).arg(format!("O={}", obj.display()));
        for (k, v) in self.make_vars() {
            c.arg(format!("{k}={v}"));
        }
        // The path maps go into CC itself: KCFLAGS does not reach the s390
        // boot decompressor, whose debug info paths would otherwise change
        // the build-id note that ends up in the image.
        c.arg(format!(
            "CC={}{}gcc {}",
            cache.map_or(String::new(), |(c, _)| format!("{} ", c.launcher())),
            self.profile.kernel.cross_compile,
            prefix_maps(src, obj)
        ));
        c.envs(self.build_env()?);
        if let Some((cache, stats)) = cache {
            cache.configure(&mut c, src, obj, stats);
        }
        Ok(c)
    }

    /// What `run` would do, without doing it.
    pub fn plan(&self) -> Result<Plan> {
        let slot = self.slot()?;
        Ok(Plan {
            state: self.state(&slot)?,
            configure_key: slot.key,
        })
    }

    /// Which levels are cached for `slot`, the configure inputs' slot.
    fn state(&self, slot: &Slot) -> Result<State> {
        match self.configured(&slot.key) {
            Some(c) => self.state_of(&c),
            None => Ok(match slot.why_changed() {
                Some(why) => State::Rebuild { why },
                None => State::Configure,
            }),
        }
    }

    /// The compile's and the link's state once configure is known.
    fn state_of(&self, c: &ConfigureRecord) -> Result<State> {
        if self.compiled(&c.compile_key).is_none() {
            return Ok(State::Rebuild {
                why: "configuration known, but its compile is missing or incomplete".into(),
            });
        }
        let Some(link) = self.link_slot(c)? else {
            return Ok(State::Link {
                why: "the initramfs it embeds will be rebuilt".into(),
            });
        };
        Ok(match link.lookup(|r| self.check(&link, r)) {
            Lookup::Hit(rec) => State::UpToDate(Box::new(rec)),
            Lookup::Miss { why } => State::Link { why },
        })
    }
}

/// The stage's slot is keyed by the configure inputs; its record lives in
/// the link slot that the configure and compile records lead to.
impl Stage for Kernel<'_> {
    type Record = KernelRecord;

    fn name(&self) -> &'static str {
        "kernel"
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
        i.insert("source".into(), self.source_id()?.key());
        i.insert("defconfig".into(), self.profile.kernel.defconfig.clone());
        for r in self
            .requirements()?
            .into_iter()
            .chain(self.link_requirements())
        {
            i.insert(
                format!("option {}", r.option),
                format!("{} ({})", r.value, r.origin),
            );
        }
        for name in &self.profile.kernel.fragments {
            let text = fs::read(self.fragment_path(name))?;
            i.insert(format!("fragment {name}"), util::sha256_bytes(&text));
        }
        i.insert("compiler".into(), self.compiler_version()?);
        for (k, v) in self.make_vars().into_iter().chain(self.build_env()?) {
            i.insert(format!("make {k}"), v);
        }
        i.insert(
            "cc".into(),
            format!(
                "{}gcc -ffile-prefix-map=<src>={MAPPED_SRC} -ffile-prefix-map=<obj>={MAPPED_OBJ}",
                self.profile.kernel.cross_compile
            ),
        );
        Ok(i)
    }

    /// Whether `rec` is the image of the link slot `slot`.
    fn check(&self, slot: &Slot, rec: &KernelRecord) -> bool {
        rec.link_key == slot.key && rec.image.is_file() && rec.vmlinux.is_file()
    }

    /// Configure, compile and link, each as it is recorded.
    fn lookup_in(&self, slot: &Slot) -> Result<Lookup<KernelRecord>> {
        Ok(match self.state(slot)? {
            State::UpToDate(rec) => Lookup::Hit(*rec),
            State::Configure => Lookup::Miss {
                why: "not configured".into(),
            },
            State::Link { why } | State::Rebuild { why } => Lookup::Miss { why },
        })
    }

    /// Runs the levels that are missing: configure, compile, link.
    fn build(&self, slot: &Slot) -> Result<KernelRecord> {
        let builtin = self.profile.initramfs.builtin;
        anyhow::ensure!(
            self.embed.is_some() == builtin,
            "kernel stage of profile {:?}: {} initramfs given for a profile whose initramfs is {}",
            self.profile.name,
            if self.embed.is_some() { "an" } else { "no" },
            if builtin { "built in" } else { "external" }
        );
        let configure = match self.configured(&slot.key) {
            Some(c) => c,
            None => {
                let c = self.configure(&slot.inputs, &slot.key)?;
                // Its final .config may be one compiled and linked before.
                if let State::UpToDate(rec) = self.state_of(&c)? {
                    self.say_up_to_date(&rec);
                    return Ok(*rec);
                }
                c
            }
        };
        let fresh = self.compiled(&configure.compile_key).is_none();
        if fresh {
            self.compile(&configure)?;
        }
        let link = self
            .link_slot(&configure)?
            .context("the link slot of a configured kernel")?;
        self.link(&configure, &link, fresh)
    }

    fn output<'r>(&self, rec: &'r KernelRecord) -> &'r Path {
        &rec.image
    }

    fn about(&self, rec: &KernelRecord) -> String {
        format!(
            "{} bytes{}",
            rec.image_size,
            if rec.embedded.is_some() {
                ", initramfs built in"
            } else {
                ""
            }
        )
    }
}

/// The span from physical 0 to the end of the highest PT_LOAD (bss
/// included), rounded up to whole pages as the kernel reserves them, from
/// vmlinux's program headers. Using p_paddr keeps this right for kernels
/// linked at a virtual base. For 6.1 it equals `_end`.
pub fn footprint(vmlinux: &Path) -> Result<u64> {
    use object::elf;
    use object::read::elf::{FileHeader, ProgramHeader};
    let data = fs::read(vmlinux).with_context(|| format!("cannot read {}", vmlinux.display()))?;
    let hdr = elf::FileHeader64::<object::Endianness>::parse(&*data)
        .with_context(|| format!("{} is not an ELF64 file", vmlinux.display()))?;
    let e = hdr.endian()?;
    let mut end = 0u64;
    for ph in hdr.program_headers(e, &*data)? {
        if ph.p_type(e) == elf::PT_LOAD {
            end = end.max(ph.p_paddr(e) + ph.p_memsz(e));
        }
    }
    if end == 0 {
        bail!("{} has no PT_LOAD program header", vmlinux.display());
    }
    const PAGE: u64 = 4096;
    Ok(end.div_ceil(PAGE) * PAGE)
}

/// `SOURCE_DATE_EPOCH`, or the fixed default when it is unset or empty.
/// A value that is not a time is an error, not the default: a release
/// would otherwise carry a date other than the one its builder asked for.
pub fn source_date_epoch() -> Result<u64> {
    parse_source_date_epoch(std::env::var_os("SOURCE_DATE_EPOCH").as_deref())
}

fn parse_source_date_epoch(v: Option<&std::ffi::OsStr>) -> Result<u64> {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        return Ok(DEFAULT_SOURCE_DATE_EPOCH);
    };
    // The initramfs's cpio holds 32-bit times.
    v.to_str()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&n| n <= u64::from(u32::MAX))
        .with_context(|| {
            format!(
                "SOURCE_DATE_EPOCH={}: expected seconds since 1970-01-01 UTC, a whole number \
                 from 0 to {} (e.g. `git log -1 --format=%ct`); unset it for the default {}",
                v.to_string_lossy(),
                u32::MAX,
                DEFAULT_SOURCE_DATE_EPOCH
            )
        })
}

/// `date -u` style text of an epoch, as the kernel's uname -v shows it.
pub fn kbuild_timestamp(epoch: u64) -> String {
    let days = (epoch / 86400) as i64;
    let secs = epoch % 86400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} UTC {}",
        WD[days.rem_euclid(7) as usize],
        MON[(m - 1) as usize],
        d,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        y
    )
}

/// gcc's path maps for a build of `src` into `obj`. kbuild hands gcc the
/// real paths (it resolves both trees), so the maps name the real paths
/// too: under a target directory reached through a symlink, maps of the
/// given paths would match nothing and the build paths would leak into
/// the image, which then differs between two checkouts.
fn prefix_maps(src: &Path, obj: &Path) -> String {
    let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    format!(
        "-ffile-prefix-map={}={MAPPED_SRC} -ffile-prefix-map={}={MAPPED_OBJ}",
        real(src).display(),
        real(obj).display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two checkouts, one reached through a symlink, map the same real
    /// trees: the maps name real paths, as kbuild does.
    #[test]
    fn prefix_maps_name_the_real_paths() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::create_dir_all(real.join("src")).unwrap();
        std::fs::create_dir_all(real.join("obj")).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let via_link = prefix_maps(&link.join("src"), &link.join("obj"));
        let direct = prefix_maps(&real.join("src"), &real.join("obj"));
        assert_eq!(via_link, direct);
        let real = std::fs::canonicalize(&real).unwrap();
        assert!(
            via_link.contains(&format!(
                "-ffile-prefix-map={}={MAPPED_SRC}",
                real.join("src").display()
            )),
            "{via_link}"
        );
    }
    use crate::cache::write_json;
    use crate::kconfig;
    use crate::profile;

    /// A project root with a fake source dir and one fragment; the host gcc
    /// stands in for the cross compiler (only its --version is read).
    fn fake_root() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("linux")).unwrap();
        fs::write(root.join("linux/Makefile"), "VERSION = 6\n").unwrap();
        fs::create_dir_all(root.join("kernel-config")).unwrap();
        fs::write(root.join("kernel-config/x.config"), "CONFIG_A=y\n").unwrap();
        fs::create_dir_all(root.join("profiles")).unwrap();
        fs::write(
            root.join("profiles/p.toml"),
            format!(
                "[kernel]\nsource = {{ dir = \"{}\" }}\nfragments = [\"x.config\"]\ncross_compile = \"\"\n",
                root.join("linux").display()
            ),
        )
        .unwrap();
        d
    }

    fn stage_plan(root: &Path, sets: &[&str]) -> (Plan, Profile) {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let p = profile::load(root, "p", &sets).unwrap();
        let plan = {
            let mut st = Kernel::new(root, &p, None);
            st.cache = root.join("cache");
            st.plan().unwrap()
        };
        (plan, p)
    }

    /// Pretends the stage ran for `profile`: records as `run` writes them.
    fn fake_build(root: &Path, p: &Profile) {
        let mut st = Kernel::new(root, p, None);
        st.cache = root.join("cache");
        let inputs = st.inputs().unwrap();
        let ckey = key_of(&inputs);
        let compile_key = util::sha256_bytes(ckey.as_bytes());
        let obj = st.build_dir(&compile_key);
        fs::create_dir_all(&obj).unwrap();
        let compiled = CompileRecord {
            compile_key: compile_key.clone(),
            release: "6.1.0".into(),
            source: st.source_id().unwrap(),
            objects: Some(1500),
            compile_cache: false,
        };
        write_json(&obj.join("stage.json"), &compiled).unwrap();
        let c = ConfigureRecord {
            configure_key: ckey.clone(),
            compile_key: compile_key.clone(),
            config_sha256: String::new(),
            link_config_sha256: None,
        };
        write_json(&st.configure_record_path(&ckey), &c).unwrap();
        let slot = st.link_slot(&c).unwrap().unwrap();
        fs::create_dir_all(slot.dir()).unwrap();
        for f in ["bzImage", "vmlinux"] {
            fs::write(slot.dir().join(f), b"x").unwrap();
        }
        let rec = KernelRecord {
            compile_key,
            link_key: slot.key.clone(),
            image: slot.dir().join("bzImage"),
            image_size: 1,
            vmlinux: slot.dir().join("vmlinux"),
            footprint: 0x69b000,
            release: "6.1.0".into(),
            config_sha256: String::new(),
            config: slot.dir().join("config"),
            source: st.source_id().unwrap(),
            build_dir: obj.clone(),
            log: obj.join("make.log"),
            embedded: None,
        };
        slot.store(&rec).unwrap();
        slot.remember().unwrap();
        st.slot().unwrap().remember().unwrap();
        assert_eq!(st.expected_objects(&rec.source), Some(1500));
    }

    #[test]
    fn cache_invalidation() {
        let d = fake_root();
        let root = d.path();
        let (plan, p) = stage_plan(root, &[]);
        assert!(
            matches!(plan.state, State::Rebuild { ref why } if why.contains("no earlier build"))
        );
        fake_build(root, &p);
        let (plan, _) = stage_plan(root, &[]);
        assert!(matches!(plan.state, State::UpToDate(_)));

        // make -j is not part of any key, nor is the compile cache.
        let (plan, _) = stage_plan(root, &["kernel.jobs=7"]);
        assert!(matches!(plan.state, State::UpToDate(_)));
        let (plan, _) = stage_plan(root, &["kernel.compile_cache=false"]);
        assert!(matches!(plan.state, State::UpToDate(_)));

        // A fragment edit invalidates, and plan says which input changed.
        fs::write(root.join("kernel-config/x.config"), "CONFIG_A=m\n").unwrap();
        let (plan, _) = stage_plan(root, &[]);
        match plan.state {
            State::Rebuild { why } => {
                assert!(why.contains("fragment x.config changed"), "{why}");
                assert!(why.contains("option CONFIG_A changed"), "{why}");
            }
            _ => panic!("fragment change not detected"),
        }
        fs::write(root.join("kernel-config/x.config"), "CONFIG_A=y\n").unwrap();
        let (plan, _) = stage_plan(root, &[]);
        assert!(matches!(plan.state, State::UpToDate(_)));

        // The source dir is known by its content: an appended line
        // invalidates, and putting it back finds the build again.
        let mk = root.join("linux/Makefile");
        fs::write(&mk, "VERSION = 6\nPATCHLEVEL = 2\n").unwrap();
        let (plan, _) = stage_plan(root, &[]);
        assert!(
            matches!(plan.state, State::Rebuild { ref why } if why == "source changed"),
            "source edit not detected"
        );
        fs::write(&mk, "VERSION = 6\n").unwrap();
        let (plan, _) = stage_plan(root, &[]);
        assert!(matches!(plan.state, State::UpToDate(_)));

        // Another initrd compression requires another decompressor.
        let (plan, _) = stage_plan(root, &["initramfs.compression=xz"]);
        match plan.state {
            State::Rebuild { why } => assert!(why.contains("option CONFIG_RD_XZ added"), "{why}"),
            _ => panic!("compression change not detected"),
        }

        // Losing the build output is noticed too.
        let (plan, _) = stage_plan(root, &[]);
        let State::UpToDate(rec) = plan.state else {
            panic!()
        };
        fs::remove_file(&rec.image).unwrap();
        let (plan, _) = stage_plan(root, &[]);
        assert!(matches!(plan.state, State::Link { ref why } if why.contains("missing")));

        // A built-in initramfs is a configure input (its options), not a
        // compile one: configure says which option it adds.
        let (plan, _) = stage_plan(root, &["initramfs.builtin=true"]);
        match plan.state {
            State::Rebuild { why } => {
                assert!(
                    why.contains("option CONFIG_INITRAMFS_SOURCE added"),
                    "{why}"
                )
            }
            _ => panic!("built-in change not detected"),
        }
    }

    #[test]
    fn a_fragment_beside_an_outside_profile_is_named_in_the_error() {
        let d = fake_root();
        let root = d.path();
        let outside = tempfile::tempdir().unwrap();
        let prof = outside.path().join("site.toml");
        fs::write(
            &prof,
            format!(
                "extends = \"{}\"\n[kernel]\nfragments = [\"nokvm.config\"]\n",
                root.join("profiles/p.toml").display()
            ),
        )
        .unwrap();
        fs::write(
            outside.path().join("nokvm.config"),
            "# CONFIG_KVM is not set\n",
        )
        .unwrap();
        let p = profile::load(root, prof.to_str().unwrap(), &[]).unwrap();
        let e = format!(
            "{:#}",
            Kernel::new(root, &p, None).requirements().unwrap_err()
        );
        assert!(e.contains("cannot read"), "{e}");
        assert!(e.contains("fragments = [\"./nokvm.config\"]"), "{e}");
        // Named so, it is found beside the profile.
        fs::write(
            &prof,
            format!(
                "extends = \"{}\"\n[kernel]\nfragments = [\"./nokvm.config\"]\n",
                root.join("profiles/p.toml").display()
            ),
        )
        .unwrap();
        let p = profile::load(root, prof.to_str().unwrap(), &[]).unwrap();
        let reqs = Kernel::new(root, &p, None).requirements().unwrap();
        assert!(
            reqs.iter()
                .any(|r| r.option == "CONFIG_KVM" && r.value == "n")
        );
    }

    /// Found by a packager: a misspelled option was reported as one whose
    /// dependencies are off.
    #[test]
    fn an_option_in_no_kconfig_is_named_as_such() {
        let d = fake_root();
        let root = d.path();
        fs::create_dir_all(root.join("linux/drivers")).unwrap();
        fs::write(
            root.join("linux/drivers/Kconfig"),
            "config A\n\tbool \"a\"\n\tdepends on B\nmenuconfig B\n\tbool \"b\"\n",
        )
        .unwrap();
        let p = profile::load(root, "p", &[]).unwrap();
        let k = Kernel::new(root, &p, None);
        let reqs = kconfig::parse_fragment("x.config", "CONFIG_A=y\nCONFIG_TYPO=y\n").unwrap();
        let e = k
            .check_final(
                &root.join("linux"),
                &reqs,
                "# CONFIG_B is not set\n",
                Path::new(".config"),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("1 requested option(s) exist in no Kconfig file")
                && e.contains("  CONFIG_TYPO (requested by x.config:2)"),
            "{e}"
        );
        assert!(
            e.contains("1 requested option(s) did not survive olddefconfig")
                && e.contains("  CONFIG_A: requested y, final not set (requested by x.config:1)"),
            "{e}"
        );
        assert!(!e.contains("CONFIG_TYPO: requested"), "{e}");
    }

    /// Found by a packager: `SOURCE_DATE_EPOCH=yesterday` built with the
    /// default date, silently.
    #[test]
    fn source_date_epoch_is_parsed_strictly() {
        use std::ffi::OsStr;
        let p = |v: &str| parse_source_date_epoch(Some(OsStr::new(v)));
        assert_eq!(
            parse_source_date_epoch(None).unwrap(),
            DEFAULT_SOURCE_DATE_EPOCH
        );
        assert_eq!(p("").unwrap(), DEFAULT_SOURCE_DATE_EPOCH);
        assert_eq!(p("1700000000").unwrap(), 1_700_000_000);
        assert_eq!(p("0").unwrap(), 0);
        for bad in ["yesterday", "-1", "1.5", " 17", "4294967296"] {
            let e = format!("{:#}", p(bad).unwrap_err());
            assert!(
                e.contains(&format!(
                    "SOURCE_DATE_EPOCH={bad}: expected seconds since 1970"
                )),
                "{bad}: {e}"
            );
        }
    }

    /// A record written before the identity still reads, keyed as then.
    #[test]
    fn a_source_id_of_an_older_record_parses() {
        let old: SourceId = serde_json::from_str(
            r#"{"kind":"dir","path":"/src/linux","sha256":null,"pinned":false,"git_commit":null}"#,
        )
        .unwrap();
        assert_eq!(old.identity, None);
        assert_eq!(old.key(), "dir /src/linux git none");
        let new = SourceId {
            identity: Some(Identity::TreeContent),
            content_sha256: Some("ab".into()),
            ..old.clone()
        };
        assert_eq!(new.key(), "dir content sha256 ab");
        let text = serde_json::to_string(&new).unwrap();
        assert!(text.contains(r#""identity":"tree-content""#), "{text}");
        assert_eq!(serde_json::from_str::<SourceId>(&text).unwrap(), new);
        // The progress estimate still finds the older compile of the dir.
        assert!(new.same_tree(&old));
    }

    #[test]
    fn timestamp_format() {
        assert_eq!(kbuild_timestamp(0), "Thu Jan  1 00:00:00 UTC 1970");
        assert_eq!(
            kbuild_timestamp(DEFAULT_SOURCE_DATE_EPOCH),
            "Mon Jan  1 00:00:00 UTC 2024"
        );
        assert_eq!(
            kbuild_timestamp(1_709_210_096),
            "Thu Feb 29 12:34:56 UTC 2024"
        );
    }
}
