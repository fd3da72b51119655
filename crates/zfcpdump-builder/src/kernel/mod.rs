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
pub mod compiler;
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
const STAGE_VERSION: &str = "kernel-2";

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
                    match crate::provision::kernel_source_package(tarball) {
                        Some(p) => format!(
                            " (install Debian's {p} package, or run without --no-provision)"
                        ),
                        None => String::new(),
                    }
                );
            }
            source::TarballKind::check(tarball)
                .with_context(|| format!("{at}: kernel.source.tarball"))?;
            let sum = util::sha256_file_cached(&util::cache_dir(self.root), tarball)?;
            if let Some(pin) = s
                .sha256
                .as_ref()
                .filter(|pin| !pin.eq_ignore_ascii_case(&sum))
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
        let tarball = self.profile.kernel.source.tarball.as_ref();
        if let Some(t) = tarball.filter(|t| !t.exists() && install) {
            if let Some(p) = crate::provision::kernel_source_package(t) {
                return Ok(format!(
                    "{} will be installed (Debian package {p})",
                    t.display()
                ));
            }
        }
        let id = self.source_id()?;
        let pinned = if id.pinned { " (pinned)" } else { "" };
        Ok(format!("{}: {}{pinned}", id.path.display(), id.key()))
    }

    /// The preflight's check of `kernel.defconfig`, where the source is at
    /// hand (a dir, or a tarball unpacked before); Ok(None) otherwise.
    pub fn check_defconfig(&self) -> Result<Option<String>> {
        // A tarball provisioning is to install is not at hand yet.
        if self
            .profile
            .kernel
            .source
            .tarball
            .as_ref()
            .is_some_and(|t| !t.is_file())
        {
            return Ok(None);
        }
        let src = self.source_id()?;
        let src = match &src.sha256 {
            Some(sum) => source::unpacked_root(&self.tarball_dest(sum)),
            None => Some(src.path),
        };
        let Some(src) = src else { return Ok(None) };
        let k = &self.profile.kernel;
        // kbuild's own targets (defconfig, tinyconfig, allnoconfig, ...)
        // are no files; only `*_defconfig` names one under configs/.
        if !k.defconfig.ends_with("_defconfig") {
            return Ok(Some(format!("kbuild's target {}", k.defconfig)));
        }
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

    /// The kernel compiler's `--version`, first line ([`compiler::cc`]).
    fn compiler_version(&self) -> Result<String> {
        let k = &self.profile.kernel;
        let cc = compiler::cc(k);
        let mut words = cc.split_whitespace();
        let program = words.next().unwrap_or_default();
        let flags: Vec<&str> = words.collect();
        let sh = cmd::shell()?;
        cmd::first_line(cmd!(sh, "{program} {flags...} --version")).with_context(|| {
            let hint = if compiler::llvm(k).is_some() {
                "install clang, lld and llvm (kernel.make_args has LLVM)".to_string()
            } else if k.cross_compile == crate::provision::DEBIAN_CROSS {
                "install the cross compiler (Debian: gcc-s390x-linux-gnu)".to_string()
            } else {
                format!("check kernel.cross_compile = {:?}", k.cross_compile)
            };
            format!("cannot run the kernel's compiler {cc}: {hint}")
        })
    }

    /// make variables other than -j, CC and the per-directory paths: the
    /// profile's, then `kernel.make_args` (but its `CC`, which [`Self::make_through`]
    /// folds into the stage's own).
    fn make_vars(&self) -> Vec<(String, String)> {
        let k = &self.profile.kernel;
        let mut v = vec![
            ("ARCH".into(), k.arch.clone()),
            ("CROSS_COMPILE".into(), k.cross_compile.clone()),
        ];
        v.extend(
            compiler::make_args(k)
                .filter(|(n, _)| compiler::passed_through(n))
                .map(|(n, val)| (n.to_string(), val.to_string())),
        );
        v
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
            "CC={}{} {}",
            cache.map_or(String::new(), |(c, _)| format!("{} ", c.launcher())),
            compiler::cc(&self.profile.kernel),
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
                "{} -ffile-prefix-map=<src>={MAPPED_SRC} -ffile-prefix-map=<obj>={MAPPED_OBJ}",
                compiler::cc(&self.profile.kernel)
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
mod tests;
