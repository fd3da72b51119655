//! The kernel stage: unpack the source, configure (defconfig + fragments +
//! olddefconfig), check requested against final, compile out of tree.
//!
//! Two cache levels keep a no-op under a second and share compiles:
//! - the *configure key* hashes everything configure depends on; its record
//!   holds the final .config and the compile key;
//! - the *compile key* hashes the final .config, the source, the compiler
//!   and the make variables; it names the `O=` directory. Profiles that end
//!   in the same .config (e.g. differing only in initrd compression) share
//!   one compile.

use std::fs;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::build::cache;
use crate::build::kconfig::{self, Config, Requirement};
use crate::build::profile::Profile;
use crate::util;

/// Bump when the stage changes what it produces.
const STAGE_VERSION: &str = "kernel-1";

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

/// What later stages and the manifest need from this stage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KernelRecord {
    pub compile_key: String,
    pub image: PathBuf,
    pub image_size: u64,
    /// Bytes from physical 0 to the end of the loaded kernel, bss included.
    pub footprint: u64,
    pub release: String,
    pub config_sha256: String,
    pub config: PathBuf,
    pub source: SourceId,
    pub build_dir: PathBuf,
    pub log: PathBuf,
}

/// How the source was identified.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceId {
    /// "tarball" or "dir".
    pub kind: String,
    pub path: PathBuf,
    /// The tarball's sha256, pinned or as found.
    pub sha256: Option<String>,
    pub pinned: bool,
    /// For a source dir that is a git tree.
    pub git_commit: Option<String>,
}

/// The configure step's cache record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ConfigureRecord {
    configure_key: String,
    compile_key: String,
    config_sha256: String,
}

pub use crate::build::cache::{Inputs, key_of};
use crate::build::cache::{read_json, write_json};

pub struct Stage<'a> {
    pub root: &'a Path,
    pub cache: PathBuf,
    pub profile: &'a Profile,
}

/// The stage's state without running anything: for `plan`.
pub struct Plan {
    pub configure_key: String,
    pub state: State,
}

pub enum State {
    UpToDate(Box<KernelRecord>),
    /// Configure is cached and its compile exists elsewhere: cheap.
    Configure,
    Rebuild {
        why: String,
    },
}

impl<'a> Stage<'a> {
    pub fn new(root: &'a Path, profile: &'a Profile) -> Stage<'a> {
        Stage {
            root,
            cache: util::cache_dir(root).join("kernel"),
            profile,
        }
    }

    /// The options the stage itself requires, before any fragment.
    pub fn stage_requirements(&self) -> Vec<Requirement> {
        let mut opts = vec![
            ("CONFIG_CRASH_DUMP", "dump mode: /proc/vmcore and the HSA"),
            ("CONFIG_BLK_DEV_INITRD", "the agent runs from an initramfs"),
        ];
        let comp = self.profile.initramfs.compression;
        if let Some(opt) = comp.kernel_option() {
            opts.push((opt, "unpacks the initrd"));
        }
        opts.into_iter()
            .map(|(o, why)| Requirement {
                option: o.into(),
                value: "y".into(),
                origin: format!("kernel stage ({why}; initramfs.compression = {comp})"),
            })
            .collect()
    }

    /// Stage requirements then fragments, in order.
    pub fn requirements(&self) -> Result<Vec<Requirement>> {
        let mut reqs = self.stage_requirements();
        for name in &self.profile.kernel.fragments {
            let path = self.fragment_path(name);
            let text = fs::read_to_string(&path).with_context(|| {
                format!(
                    "kernel fragment {name:?} (profile {}): cannot read {}",
                    self.profile.name,
                    path.display()
                )
            })?;
            reqs.extend(kconfig::parse_fragment(name, &text)?);
        }
        kconfig::conflicts(&reqs)?;
        Ok(reqs)
    }

    fn fragment_path(&self, name: &str) -> PathBuf {
        if name.contains('/') {
            PathBuf::from(name)
        } else {
            self.root.join("kernel-config").join(name)
        }
    }

    fn source_id(&self) -> Result<SourceId> {
        let s = &self.profile.kernel.source;
        if let Some(tarball) = &s.tarball {
            if !tarball.is_file() {
                bail!(
                    "kernel source tarball {} does not exist{}",
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
            let sum = util::sha256_file_cached(&util::cache_dir(self.root), tarball)?;
            if let Some(pin) = &s.sha256
                && !pin.eq_ignore_ascii_case(&sum)
            {
                bail!(
                    "kernel source tarball {}: sha256 is {sum}, but the profile pins {pin}",
                    tarball.display()
                );
            }
            return Ok(SourceId {
                kind: "tarball".into(),
                path: tarball.clone(),
                sha256: Some(sum),
                pinned: s.sha256.is_some(),
                git_commit: None,
            });
        }
        let dir = s.dir.as_ref().expect("validated: tarball or dir");
        if !dir.join("Makefile").is_file() {
            bail!("kernel source dir {} has no Makefile", dir.display());
        }
        Ok(SourceId {
            kind: "dir".into(),
            path: dir.clone(),
            sha256: None,
            pinned: false,
            git_commit: git_commit(dir),
        })
    }

    /// `s390x-linux-gnu-gcc --version`, first line.
    fn compiler_version(&self) -> Result<String> {
        let gcc = format!("{}gcc", self.profile.kernel.cross_compile);
        let out = Command::new(&gcc)
            .arg("--version")
            .output()
            .with_context(|| {
                format!(
                    "cannot run {gcc}: install the cross compiler (Debian: gcc-s390x-linux-gnu)"
                )
            })?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string())
    }

    /// make variables other than -j and the per-directory paths.
    fn make_vars(&self) -> Vec<(String, String)> {
        let k = &self.profile.kernel;
        vec![
            ("ARCH".into(), k.arch.clone()),
            ("CROSS_COMPILE".into(), k.cross_compile.clone()),
        ]
    }

    fn build_env(&self) -> Vec<(String, String)> {
        let epoch = source_date_epoch();
        vec![
            ("SOURCE_DATE_EPOCH".into(), epoch.to_string()),
            ("KBUILD_BUILD_TIMESTAMP".into(), kbuild_timestamp(epoch)),
            ("KBUILD_BUILD_USER".into(), BUILD_USER.into()),
            ("KBUILD_BUILD_HOST".into(), BUILD_HOST.into()),
            ("KBUILD_BUILD_VERSION".into(), BUILD_VERSION.into()),
            ("LC_ALL".into(), "C".into()),
            ("TZ".into(), "UTC".into()),
        ]
    }

    pub fn inputs(&self) -> Result<Inputs> {
        let mut i = Inputs::new();
        i.insert("stage".into(), STAGE_VERSION.into());
        let src = self.source_id()?;
        i.insert(
            "source".into(),
            match &src.sha256 {
                Some(sum) => format!("tarball sha256 {sum}"),
                None => format!(
                    "dir {} git {}",
                    src.path.display(),
                    src.git_commit.as_deref().unwrap_or("none")
                ),
            },
        );
        i.insert("defconfig".into(), self.profile.kernel.defconfig.clone());
        for r in self.requirements()? {
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
        for (k, v) in self.make_vars().into_iter().chain(self.build_env()) {
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

    fn configure_record_path(&self, key: &str) -> PathBuf {
        self.cache.join("configs").join(format!("{key}.json"))
    }

    fn last_inputs_path(&self) -> PathBuf {
        cache::last_inputs_path(&self.cache, &self.profile.name)
    }

    fn build_dir(&self, compile_key: &str) -> PathBuf {
        self.cache.join(format!("build-{}", &compile_key[..16]))
    }

    /// What `run` would do, without doing it.
    pub fn plan(&self) -> Result<Plan> {
        let inputs = self.inputs()?;
        let configure_key = key_of(&inputs);
        let state = match read_json::<ConfigureRecord>(&self.configure_record_path(&configure_key))
        {
            Some(c) => match self.compiled(&c.compile_key) {
                Some(rec) => State::UpToDate(Box::new(rec)),
                None => State::Rebuild {
                    why: "configuration known, but its compile is missing or incomplete".into(),
                },
            },
            None => match self.why_changed(&inputs) {
                Some(why) => State::Rebuild { why },
                None => State::Configure,
            },
        };
        Ok(Plan {
            configure_key,
            state,
        })
    }

    fn why_changed(&self, inputs: &Inputs) -> Option<String> {
        cache::why_changed(&self.cache, &self.profile.name, inputs)
    }

    /// The record of a finished compile, if its outputs are still there.
    fn compiled(&self, compile_key: &str) -> Option<KernelRecord> {
        let rec: KernelRecord = read_json(&self.build_dir(compile_key).join("stage.json"))?;
        (rec.compile_key == compile_key && rec.image.is_file()).then_some(rec)
    }

    /// Runs the stage, or returns the cached record when nothing changed.
    pub fn run(&self) -> Result<KernelRecord> {
        let inputs = self.inputs()?;
        let configure_key = key_of(&inputs);
        let configure =
            match read_json::<ConfigureRecord>(&self.configure_record_path(&configure_key)) {
                Some(c) => c,
                None => self.configure(&inputs, &configure_key)?,
            };
        let rec = match self.compiled(&configure.compile_key) {
            Some(rec) => {
                eprintln!(
                    "[kernel] up to date: {} ({} bytes)",
                    rec.image.display(),
                    rec.image_size
                );
                rec
            }
            None => self.compile(&configure)?,
        };
        write_json(&self.last_inputs_path(), &inputs)?;
        Ok(rec)
    }

    fn source_root(&self) -> Result<PathBuf> {
        let src = self.source_id()?;
        match src.sha256 {
            Some(sum) => unpack_tarball(&src.path, &self.cache.join("src").join(&sum[..16])),
            None => Ok(src.path),
        }
    }

    fn make(&self, src: &Path, obj: &Path) -> Command {
        let mut c = Command::new("make");
        c.arg("-C").arg(src).arg(format!("O={}", obj.display()));
        for (k, v) in self.make_vars() {
            c.arg(format!("{k}={v}"));
        }
        // The path maps go into CC itself: KCFLAGS does not reach the s390
        // boot decompressor, whose debug info paths would otherwise change
        // the build-id note that ends up in the image.
        c.arg(format!(
            "CC={}gcc -ffile-prefix-map={}={MAPPED_SRC} -ffile-prefix-map={}={MAPPED_OBJ}",
            self.profile.kernel.cross_compile,
            src.display(),
            obj.display()
        ));
        c.envs(self.build_env());
        c
    }

    /// defconfig, fragments, olddefconfig, then the requested-vs-final check.
    fn configure(&self, inputs: &Inputs, configure_key: &str) -> Result<ConfigureRecord> {
        let t = Instant::now();
        let src = self.source_root()?;
        let reqs = self.requirements()?;
        let scratch = self
            .cache
            .join(format!("configure-{}", &configure_key[..16]));
        let _ = fs::remove_dir_all(&scratch);
        fs::create_dir_all(&scratch)?;
        let log = scratch.join("configure.log");
        eprintln!(
            "[kernel] configuring: {} + {} fragment(s)",
            self.profile.kernel.defconfig,
            self.profile.kernel.fragments.len()
        );
        run_logged(
            self.make(&src, &scratch)
                .arg(&self.profile.kernel.defconfig),
            &log,
            "kernel defconfig",
            false,
        )?;
        let dotconfig = scratch.join(".config");
        let base = fs::read_to_string(&dotconfig)?;
        fs::write(&dotconfig, kconfig::apply(&base, &reqs))?;
        run_logged(
            self.make(&src, &scratch).arg("olddefconfig"),
            &log,
            "kernel olddefconfig",
            false,
        )?;
        let final_text = fs::read_to_string(&dotconfig)?;
        let mismatches = kconfig::check(&reqs, &Config::parse(&final_text));
        if !mismatches.is_empty() {
            let list: Vec<String> = mismatches.iter().map(|m| format!("  {m}")).collect();
            bail!(
                "kernel configuration of profile {:?}: {} requested option(s) did not survive olddefconfig \
                 (usually a dependency is off; add it to the fragment):\n{}\nfinal .config: {}",
                self.profile.name,
                mismatches.len(),
                list.join("\n"),
                dotconfig.display()
            );
        }
        let config_sha256 = util::sha256_bytes(final_text.as_bytes());
        let mut ckey = Inputs::new();
        ckey.insert("stage".into(), STAGE_VERSION.into());
        ckey.insert("config".into(), config_sha256.clone());
        for k in ["source", "compiler", "cc"] {
            ckey.insert(k.into(), inputs.get(k).cloned().unwrap_or_default());
        }
        for (k, v) in self.make_vars().into_iter().chain(self.build_env()) {
            ckey.insert(format!("make {k}"), v);
        }
        let compile_key = key_of(&ckey);
        let saved = self
            .cache
            .join("configs")
            .join(format!("{configure_key}.config"));
        util::write_atomic(&saved, final_text.as_bytes())?;
        let rec = ConfigureRecord {
            configure_key: configure_key.into(),
            compile_key,
            config_sha256,
        };
        write_json(&self.configure_record_path(configure_key), &rec)?;
        let _ = fs::remove_dir_all(&scratch);
        eprintln!(
            "[kernel] configured in {}: all {} requested options hold",
            util::fmt_duration(t.elapsed()),
            reqs.len()
        );
        Ok(rec)
    }

    fn compile(&self, c: &ConfigureRecord) -> Result<KernelRecord> {
        let t = Instant::now();
        let src = self.source_root()?;
        let obj = self.build_dir(&c.compile_key);
        fs::create_dir_all(&obj)?;
        let _ = fs::remove_file(obj.join("stage.json"));
        let saved = self
            .cache
            .join("configs")
            .join(format!("{}.config", c.configure_key));
        fs::copy(&saved, obj.join(".config"))?;
        let log = obj.join("make.log");
        let _ = fs::remove_file(&log);
        let jobs = match self.profile.kernel.jobs {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n as usize,
        };
        eprintln!(
            "[kernel] compiling in {} with -j{jobs}; log: {}",
            obj.display(),
            log.display()
        );
        run_logged(
            self.make(&src, &obj).arg("olddefconfig"),
            &log,
            "kernel olddefconfig",
            false,
        )?;
        run_logged(
            self.make(&src, &obj)
                .arg(format!("-j{jobs}"))
                .arg("bzImage"),
            &log,
            "kernel compile",
            true,
        )?;
        let image = obj.join("arch/s390/boot/bzImage");
        let image_size = fs::metadata(&image)
            .with_context(|| format!("make succeeded but {} is missing", image.display()))?
            .len();
        let footprint = footprint(&obj.join("vmlinux"))?;
        let release = fs::read_to_string(obj.join("include/config/kernel.release"))
            .context("cannot read kernel.release")?
            .trim()
            .to_string();
        let rec = KernelRecord {
            compile_key: c.compile_key.clone(),
            image,
            image_size,
            footprint,
            release,
            config_sha256: c.config_sha256.clone(),
            config: obj.join(".config"),
            source: self.source_id()?,
            build_dir: obj.clone(),
            log,
        };
        write_json(&obj.join("stage.json"), &rec)?;
        eprintln!(
            "[kernel] built {} in {}: image {} bytes, footprint {:#x} ({:.1} MiB)",
            rec.release,
            util::fmt_duration(t.elapsed()),
            rec.image_size,
            rec.footprint,
            rec.footprint as f64 / (1 << 20) as f64
        );
        Ok(rec)
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

pub fn source_date_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SOURCE_DATE_EPOCH)
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

fn git_commit(dir: &Path) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Unpacks a kernel tarball once into `dest` and returns the source root.
/// Entries that would land outside `dest` are refused, not skipped.
pub fn unpack_tarball(tarball: &Path, dest: &Path) -> Result<PathBuf> {
    if !dest.join(".unpacked").is_file() {
        let t = Instant::now();
        eprintln!(
            "[kernel] unpacking {} into {}",
            tarball.display(),
            dest.display()
        );
        let tmp = util::tmp_name(dest);
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp)?;
        let res = unpack_into(tarball, &tmp);
        if let Err(e) = res {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        fs::write(tmp.join(".unpacked"), b"")?;
        let _ = fs::remove_dir_all(dest);
        fs::rename(&tmp, dest)?;
        eprintln!("[kernel] unpacked in {}", util::fmt_duration(t.elapsed()));
    }
    // A kernel tarball has one top directory; use it when there is one.
    let mut dirs = fs::read_dir(dest)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.path());
    match (dirs.next(), dirs.next()) {
        (Some(d), None) if d.join("Makefile").is_file() => Ok(d),
        _ if dest.join("Makefile").is_file() => Ok(dest.to_path_buf()),
        _ => bail!("{} holds no kernel source (no Makefile)", tarball.display()),
    }
}

fn unpack_into(tarball: &Path, dest: &Path) -> Result<()> {
    let f =
        fs::File::open(tarball).with_context(|| format!("cannot open {}", tarball.display()))?;
    let reader: Box<dyn std::io::Read> = match tarball.extension().and_then(|e| e.to_str()) {
        Some("xz") => Box::new(xz2::read::XzDecoder::new(BufReader::with_capacity(
            1 << 20,
            f,
        ))),
        Some("tar") => Box::new(BufReader::new(f)),
        _ => bail!(
            "{}: unsupported archive type: use a .tar or .tar.xz kernel source",
            tarball.display()
        ),
    };
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    for entry in ar.entries()? {
        let mut entry = entry.with_context(|| format!("corrupt archive {}", tarball.display()))?;
        let path = entry.path()?.into_owned();
        check_entry(&path, &entry)?;
        entry
            .unpack_in(dest)
            .with_context(|| format!("cannot unpack {}", path.display()))?;
    }
    Ok(())
}

/// Refuses absolute paths, `..`, and links that point outside the archive.
fn check_entry<R: std::io::Read>(path: &Path, entry: &tar::Entry<R>) -> Result<()> {
    if !stays_inside(Path::new(""), path) {
        bail!(
            "archive entry {:?} escapes the destination directory; refusing to unpack",
            path
        );
    }
    let kind = entry.header().entry_type();
    if let Some(link) = entry.link_name()? {
        // Symlinks resolve from the entry's directory; hard links from the root.
        let base = if kind.is_symlink() {
            path.parent().unwrap_or(Path::new(""))
        } else {
            Path::new("")
        };
        if !stays_inside(base, &link) {
            bail!(
                "archive entry {:?} links to {:?}, outside the destination directory; refusing to unpack",
                path,
                link
            );
        }
    }
    Ok(())
}

/// Whether `base/rel` stays inside the root, resolving `..` lexically.
pub fn stays_inside(base: &Path, rel: &Path) -> bool {
    let mut depth: i64 = 0;
    for c in base.components().chain(rel.components()) {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Runs a command with stdout and stderr appended to `log`. With
/// `progress`, shows a live line of elapsed time and objects compiled.
/// On failure, prints the log's last lines and its path.
fn run_logged(cmd: &mut Command, log: &Path, what: &str, progress: bool) -> Result<()> {
    let mut logf =
        std::io::BufWriter::new(fs::OpenOptions::new().create(true).append(true).open(log)?);
    writeln!(logf, "$ {cmd:?}")?;
    let (reader, writer) = std::io::pipe()?;
    cmd.stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("{what}: cannot run {:?}", cmd.get_program()))?;
    // The Command still holds the pipe's write ends; drop them, or the
    // reader below never sees end-of-file.
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let start = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut objects = 0u64;
    let mut last_shown = Instant::now();
    let mut tail: std::collections::VecDeque<String> = Default::default();
    for line in BufReader::new(reader).lines() {
        let line = line.unwrap_or_default();
        writeln!(logf, "{line}")?;
        let t = line.trim_start();
        if t.starts_with("CC ") || t.starts_with("AS ") {
            objects += 1;
        }
        if tail.len() == 30 {
            tail.pop_front();
        }
        tail.push_back(line);
        let interval = if tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(30)
        };
        if progress && last_shown.elapsed() >= interval {
            last_shown = Instant::now();
            let msg = format!(
                "[kernel] compiling: {} elapsed, {objects} objects compiled",
                util::fmt_duration(start.elapsed())
            );
            if tty {
                eprint!("\r\x1b[K{msg}");
            } else {
                eprintln!("{msg}");
            }
        }
    }
    let status = child.wait()?;
    logf.flush()?;
    if progress && tty {
        eprint!("\r\x1b[K");
    }
    if !status.success() {
        eprintln!("---- last lines of {} ----", log.display());
        for l in &tail {
            eprintln!("{l}");
        }
        eprintln!("----");
        bail!("{what} failed ({status}); full log: {}", log.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::profile;

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
            let mut st = Stage::new(root, &p);
            st.cache = root.join("cache");
            st.plan().unwrap()
        };
        (plan, p)
    }

    /// Pretends the stage ran for `profile`: records as `run` writes them.
    fn fake_build(root: &Path, p: &Profile) {
        let mut st = Stage::new(root, p);
        st.cache = root.join("cache");
        let inputs = st.inputs().unwrap();
        let ckey = key_of(&inputs);
        let compile_key = util::sha256_bytes(ckey.as_bytes());
        let obj = st.build_dir(&compile_key);
        fs::create_dir_all(&obj).unwrap();
        fs::write(obj.join("bzImage"), b"image").unwrap();
        let rec = KernelRecord {
            compile_key: compile_key.clone(),
            image: obj.join("bzImage"),
            image_size: 5,
            footprint: 0x69b000,
            release: "6.1.0".into(),
            config_sha256: String::new(),
            config: obj.join(".config"),
            source: st.source_id().unwrap(),
            build_dir: obj.clone(),
            log: obj.join("make.log"),
        };
        write_json(&obj.join("stage.json"), &rec).unwrap();
        let c = ConfigureRecord {
            configure_key: ckey.clone(),
            compile_key,
            config_sha256: String::new(),
        };
        write_json(&st.configure_record_path(&ckey), &c).unwrap();
        write_json(&st.last_inputs_path(), &inputs).unwrap();
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

        // make -j is not part of any key.
        let (plan, _) = stage_plan(root, &["kernel.jobs=7"]);
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
        assert!(matches!(plan.state, State::Rebuild { ref why } if why.contains("missing")));
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

    #[test]
    fn lexical_containment() {
        assert!(stays_inside(Path::new(""), Path::new("linux/Makefile")));
        assert!(stays_inside(Path::new("a/b"), Path::new("../c")));
        assert!(!stays_inside(Path::new(""), Path::new("../etc/passwd")));
        assert!(!stays_inside(Path::new(""), Path::new("a/../../x")));
        assert!(!stays_inside(Path::new(""), Path::new("/etc/passwd")));
        assert!(!stays_inside(Path::new("a"), Path::new("../../x")));
    }

    fn tar_with(entries: &[(&str, tar::EntryType, Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(if link.is_some() { 0 } else { 4 });
            // Write raw names: tar's safe setters refuse `..`, which is the point.
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(l) = link {
                h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            let data: &[u8] = if link.is_some() { b"" } else { b"data" };
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn unpack_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<()>) {
        let d = tempfile::tempdir().unwrap();
        let tarball = d.path().join("src.tar");
        fs::write(&tarball, bytes).unwrap();
        let dest = d.path().join("out");
        fs::create_dir_all(&dest).unwrap();
        let r = unpack_into(&tarball, &dest);
        (d, r)
    }

    #[test]
    fn tarball_path_escape_is_refused() {
        let t = tar_with(&[
            ("linux/Makefile", tar::EntryType::Regular, None),
            ("linux/../../evil", tar::EntryType::Regular, None),
        ]);
        let (d, r) = unpack_bytes(&t);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("escapes the destination"), "{e}");
        assert!(!d.path().join("evil").exists());
    }

    #[test]
    fn tarball_absolute_path_is_refused() {
        let t = tar_with(&[("/tmp/zfcpdump-evil", tar::EntryType::Regular, None)]);
        let (_d, r) = unpack_bytes(&t);
        assert!(r.unwrap_err().to_string().contains("escapes"));
    }

    #[test]
    fn tarball_symlink_escape_is_refused() {
        let t = tar_with(&[("linux/link", tar::EntryType::Symlink, Some("../../etc"))]);
        let (_d, r) = unpack_bytes(&t);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("outside the destination"), "{e}");
        let t = tar_with(&[("linux/link", tar::EntryType::Symlink, Some("/etc"))]);
        assert!(unpack_bytes(&t).1.is_err());
    }

    #[test]
    fn tarball_inner_relative_symlink_is_fine() {
        let t = tar_with(&[
            ("linux/Makefile", tar::EntryType::Regular, None),
            ("linux/a/link", tar::EntryType::Symlink, Some("../Makefile")),
        ]);
        let (d, r) = unpack_bytes(&t);
        r.unwrap();
        assert!(d.path().join("out/linux/a/link").is_symlink());
    }
}
