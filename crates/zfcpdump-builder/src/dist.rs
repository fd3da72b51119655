//! `dist`, `plan`, `size` and `install`: run the stages in order, write
//! dist/<profile>/ atomically, and report on it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::agent::{Agent, AgentRecord};
use crate::budget::Table;
use crate::cache::Lookup;
use crate::initramfs::{EntrySize, Initramfs, InitramfsRecord};
use crate::kernel::{self, Kernel, KernelRecord};
use crate::lock::{self, Wait};
use crate::profile::Profile;
use crate::profile::ProfileArgs;
use crate::sign::{self, SignRecord};
use crate::stage::Stage;
use crate::{provision, util};

pub const IMAGE: &str = "zfcpdump.image";
pub const RD: &str = "zfcpdump.rd";
pub const MANIFEST: &str = "manifest.json";

#[derive(Args, Clone, Debug)]
pub struct DistArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Fail listing missing host packages instead of installing them
    #[arg(long)]
    pub no_provision: bool,
    /// Use only what `cargo xtask fetch` brought into the local caches
    #[arg(long)]
    pub offline: bool,
    /// Prove reproducibility: build again from clean in another directory
    /// and compare the artifacts bit for bit
    #[arg(long)]
    pub check_reproducible: bool,
    /// Write the artifacts here instead of dist/<profile>/
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Fail at once, naming the holder, when another build holds a stage's
    /// lock, instead of waiting for it
    #[arg(long)]
    pub no_wait: bool,
    /// Build this profile too, into dist/<name>/ (repeatable), e.g. the same
    /// profile with the initramfs built in: where the .config matches, the
    /// kernel compile is shared. With --check-reproducible the clean second
    /// build builds and compares these too
    #[arg(long, value_name = "PROFILE")]
    pub also_profile: Vec<String>,
}

impl DistArgs {
    /// A plain build of one profile, as the lab's tasks run it.
    pub fn new(profile: ProfileArgs, no_provision: bool, offline: bool) -> DistArgs {
        DistArgs {
            profile,
            no_provision,
            offline,
            check_reproducible: false,
            out_dir: None,
            no_wait: false,
            also_profile: Vec::new(),
        }
    }

    fn wait(&self) -> Wait {
        if self.no_wait {
            Wait::NoWait
        } else {
            Wait::Block
        }
    }
}

/// `dist/<profile>/manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub profile: serde_json::Value,
    pub kernel: KernelInfo,
    pub toolchain: Toolchain,
    pub artifacts: Vec<Artifact>,
    pub agent: Artifact,
    pub initramfs: InitramfsInfo,
    pub budget: Table,
    /// The appended signature of zfcpdump.image, for a profile with [sign].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign: Option<SignRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KernelInfo {
    pub release: String,
    /// Tarball sha256, or `git <commit>`, or `unpinned <release>`.
    pub source: String,
    pub source_pinned: bool,
    pub config_sha256: String,
    pub footprint: u64,
    /// The initramfs linked into the image, when it is built in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded_initramfs: Option<kernel::Embedded>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Toolchain {
    pub cross_gcc: String,
    pub rustc: String,
    pub cargo: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Artifact {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitramfsInfo {
    /// Linked into zfcpdump.image (no zfcpdump.rd is shipped), or not.
    #[serde(default)]
    pub builtin: bool,
    pub compression: String,
    pub cpio_size: u64,
    pub unpacked_size: u64,
    pub entries: Vec<EntrySize>,
}

pub fn dist_dir(root: &Path, profile: &Profile) -> PathBuf {
    root.join("dist").join(&profile.name)
}

/// Stage records of one run.
pub struct Built {
    pub kernel: KernelRecord,
    pub agent: AgentRecord,
    pub initramfs: InitramfsRecord,
    pub budget: Table,
    pub signed: Option<SignRecord>,
}

/// Runs every stage (each one cached) and checks the budget.
pub fn build(
    root: &Path,
    profile: &Profile,
    provision_ok: bool,
    offline: bool,
    wait: Wait,
) -> Result<Built> {
    let mut needs: Vec<&provision::Need> = provision::BUILD.iter().collect();
    if let Some(n) = profile
        .kernel
        .source
        .tarball
        .as_deref()
        .and_then(provision::kernel_source)
    {
        needs.push(n);
    }
    provision::ensure(
        &needs,
        provision::BUILD_COMPONENTS,
        provision_ok && !offline,
    )?;
    // The kernel first when it can be: its compile is the long step. A
    // built-in initramfs is linked in after the initramfs stage.
    let external = (!profile.initramfs.builtin)
        .then(|| Kernel::new(root, profile, None).run(wait))
        .transpose()?;
    let agent = Agent::new(root, profile, offline).run(wait)?;
    let initramfs = Initramfs::new(root, profile, &agent).run(wait)?;
    let kernel = match external {
        Some(k) => k,
        None => Kernel::new(root, profile, Some(&initramfs)).run(wait)?,
    };
    let budget = Table::compute(profile, &kernel, &initramfs);
    eprintln!("[budget] {}:\n{}", profile.name, budget.render());
    budget.check(&profile.name)?;
    let signed = match &profile.sign {
        Some(_) => {
            if !profile.initramfs.builtin {
                eprintln!(
                    "warning: profile {:?} signs {IMAGE}, but its initramfs is external: {RD}, \
                     which holds the agent, is not covered by the signature; set \
                     initramfs.builtin = true (as profiles/default-builtin.toml does)",
                    profile.name
                );
            }
            Some(sign::sign(root, profile, &kernel.image)?)
        }
        None => None,
    };
    Ok(Built {
        kernel,
        agent,
        initramfs,
        budget,
        signed,
    })
}

/// `dist`: builds and publishes the profile (and `--also-profile` ones);
/// returns the stage records of the first.
pub fn run(args: &DistArgs) -> Result<Built> {
    let root = util::project_root();
    let built = build_and_publish(&root, args, &args.profile, args.out_dir.clone())?;
    let mut dirs = vec![(args.profile.clone(), out_dir(&root, args, &args.profile)?)];
    for name in &args.also_profile {
        let pa = ProfileArgs {
            profile: name.clone(),
            sets: args.profile.sets.clone(),
        };
        build_and_publish(&root, args, &pa, None)?;
        dirs.push((pa.clone(), out_dir(&root, args, &pa)?));
    }
    if args.check_reproducible {
        check_reproducible(&root, args, &dirs)?;
    }
    Ok(built)
}

fn out_dir(root: &Path, args: &DistArgs, pa: &ProfileArgs) -> Result<PathBuf> {
    Ok(match &args.out_dir {
        Some(d) if pa.profile == args.profile.profile => d.clone(),
        _ => dist_dir(root, &pa.load()?),
    })
}

fn build_and_publish(
    root: &Path,
    args: &DistArgs,
    pa: &ProfileArgs,
    out_dir: Option<PathBuf>,
) -> Result<Built> {
    let t = Instant::now();
    let profile = pa.load()?;
    let built = build(
        root,
        &profile,
        !args.no_provision,
        args.offline,
        args.wait(),
    )?;
    let dir = out_dir.unwrap_or_else(|| dist_dir(root, &profile));
    let manifest = manifest(root, &profile, &built)?;
    {
        // Two builds of one profile must not swap dist/<profile>/ at once.
        let _lock = lock::acquire(&util::cache_dir(root).join("publish"), "dist", args.wait())?;
        publish(&dir, &built, &manifest)?;
    }
    let rd = match &built.kernel.embedded {
        Some(e) => format!("initramfs built in ({} bytes", e.size),
        None => format!("{RD} {} bytes (", built.initramfs.rd_size),
    };
    eprintln!(
        "[dist] {} ready in {}: {IMAGE} {} bytes{}, {rd}{}), kernel {}",
        dir.display(),
        util::fmt_duration(t.elapsed()),
        built
            .signed
            .as_ref()
            .map_or(built.kernel.image_size, |s| s.signed_size),
        if built.signed.is_some() {
            " (signed)"
        } else {
            ""
        },
        match &built.kernel.embedded {
            Some(_) => format!(", {}", built.initramfs.compression),
            None => built.initramfs.compression.to_string(),
        },
        built.kernel.release
    );
    Ok(built)
}

fn manifest(root: &Path, profile: &Profile, b: &Built) -> Result<Manifest> {
    let artifact = |name: &str, path: &Path| -> Result<Artifact> {
        let data = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Artifact {
            name: name.into(),
            size: data.len() as u64,
            sha256: util::sha256_bytes(&data),
        })
    };
    let src = &b.kernel.source;
    let source = match (&src.sha256, &src.git_commit) {
        (Some(sum), _) => sum.clone(),
        (None, Some(commit)) => format!("git {commit}"),
        (None, None) => format!("unpinned {}", b.kernel.release),
    };
    // Paths relative to the project, so that the manifest does not depend
    // on where the checkout is.
    let mut p = serde_json::to_value(profile)?;
    if let Some(files) = p.get_mut("files").and_then(|f| f.as_array_mut()) {
        for f in files {
            if let Some(s) = f.as_str() {
                let rel = Path::new(s).strip_prefix(root).unwrap_or(Path::new(s));
                *f = serde_json::Value::String(rel.display().to_string());
            }
        }
    }
    Ok(Manifest {
        profile: p,
        kernel: KernelInfo {
            release: b.kernel.release.clone(),
            source,
            source_pinned: src.pinned,
            config_sha256: b.kernel.config_sha256.clone(),
            footprint: b.kernel.footprint,
            embedded_initramfs: b.kernel.embedded.clone(),
        },
        toolchain: Toolchain {
            cross_gcc: first_line(&format!("{}gcc", profile.kernel.cross_compile), "--version"),
            rustc: b.agent.rustc.clone(),
            cargo: first_line(env!("CARGO"), "-V"),
        },
        artifacts: b
            .files()
            .iter()
            .map(|(name, path)| artifact(name, path))
            .collect::<Result<_>>()?,
        agent: artifact("zfcpdump-agent", &b.agent.binary)?,
        initramfs: InitramfsInfo {
            builtin: b.kernel.embedded.is_some(),
            compression: b.initramfs.compression.to_string(),
            cpio_size: b.initramfs.cpio_size,
            unpacked_size: b.initramfs.unpacked_size,
            entries: b.initramfs.entries.clone(),
        },
        budget: b.budget.clone(),
        sign: b.signed.clone(),
    })
}

fn first_line(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// Writes the three files into a fresh sibling directory, then swaps it in
/// with renames: readers see the old complete set or the new one, and a
/// failed or interrupted build leaves no partial file under a final name.
pub fn publish(dir: &Path, b: &Built, manifest: &Manifest) -> Result<()> {
    publish_files(dir, &b.files(), &serde_json::to_vec_pretty(manifest)?)
}

impl Built {
    /// What dist/<profile>/ holds besides the manifest: the image, and the
    /// rd unless the image carries the initramfs.
    pub fn files(&self) -> Vec<(&'static str, &Path)> {
        let image = match &self.signed {
            Some(s) => s.image.as_path(),
            None => self.kernel.image.as_path(),
        };
        let mut v = vec![(IMAGE, image)];
        if self.kernel.embedded.is_none() {
            v.push((RD, self.initramfs.rd.as_path()));
        }
        v
    }
}

/// [`publish`] for any files: each copied under its name, plus the manifest.
fn publish_files(dir: &Path, files: &[(&str, &Path)], manifest: &[u8]) -> Result<()> {
    let parent = dir.parent().context("dist dir has no parent")?;
    fs::create_dir_all(parent)?;
    let staging = util::tmp_name(dir);
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)?;
    let res = (|| -> Result<()> {
        for (name, from) in files {
            // Written, not copied: the mode is ours (0644), not the source's.
            fs::write(
                staging.join(name),
                fs::read(from).with_context(|| format!("cannot read {}", from.display()))?,
            )?;
        }
        fs::write(staging.join(MANIFEST), manifest)?;
        for f in fs::read_dir(&staging)? {
            fs::File::open(f?.path())?.sync_all()?;
        }
        Ok(())
    })();
    if let Err(e) = res {
        let _ = fs::remove_dir_all(&staging);
        return Err(e.context(format!("cannot write artifacts to {}", staging.display())));
    }
    let old = parent.join(format!(
        ".{}.old-{}",
        dir.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    if dir.exists() {
        fs::rename(dir, &old)?;
    }
    fs::rename(&staging, dir)?;
    let _ = fs::remove_dir_all(&old);
    Ok(())
}

/// A second build from a clean copy of the sources in another directory,
/// with its own cache, must produce bit-identical artifacts: for each of
/// `dirs`, the profile and where the first build published it.
fn check_reproducible(root: &Path, args: &DistArgs, dirs: &[(ProfileArgs, PathBuf)]) -> Result<()> {
    let t = Instant::now();
    let base = util::cache_dir(root).join("repro");
    let _ = fs::remove_dir_all(&base);
    let src = base.join("src");
    fs::create_dir_all(&src)?;
    eprintln!("[reproducible] copying the sources to {}", src.display());
    let files = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output()
        .context("git ls-files")?;
    if !files.status.success() {
        bail!("--check-reproducible needs a git checkout");
    }
    for f in files.stdout.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let rel = Path::new(std::str::from_utf8(f)?);
        let from = root.join(rel);
        if !from.exists() {
            continue; // deleted in the work tree
        }
        let to = src.join(rel);
        fs::create_dir_all(to.parent().unwrap())?;
        fs::copy(&from, &to)?;
    }
    let out = base.join("dist");
    // A profile of the project is named by its copy; one outside by itself.
    let in_copy = |arg: &str| {
        let p = crate::profile::profile_path(root, arg);
        match p.strip_prefix(root) {
            Ok(rel) => src.join(rel),
            Err(_) => p,
        }
    };
    eprintln!("[reproducible] clean build in {}", base.display());
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(&src)
        .args([
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "dist",
            "--no-provision",
        ])
        .arg("--profile")
        .arg(in_copy(&dirs[0].0.profile))
        .arg("--out-dir")
        .arg(&out)
        .env("CARGO_TARGET_DIR", base.join("target"));
    for (pa, _) in &dirs[1..] {
        cmd.arg("--also-profile").arg(in_copy(&pa.profile));
    }
    for s in &args.profile.sets {
        cmd.arg("--set").arg(s);
    }
    if args.offline {
        cmd.arg("--offline").env("CARGO_NET_OFFLINE", "true");
    }
    let status = cmd.status().context("cannot run the second build")?;
    if !status.success() {
        bail!("the second build for --check-reproducible failed ({status})");
    }
    let mut diffs = Vec::new();
    let mut same = Vec::new();
    for (i, (pa, dir)) in dirs.iter().enumerate() {
        let name = pa.load()?.name;
        let second = if i == 0 {
            out.clone()
        } else {
            src.join("dist").join(&name)
        };
        let a = read_manifest(&dir.join(MANIFEST))?;
        let b = read_manifest(&second.join(MANIFEST))?;
        let names = |m: &Manifest| {
            m.artifacts
                .iter()
                .map(|a| a.name.clone())
                .collect::<Vec<_>>()
        };
        if names(&a) != names(&b) {
            diffs.push(format!(
                "  {name}: artifacts {:?} vs {:?}",
                names(&a),
                names(&b)
            ));
        }
        // A signed image: the unsigned one must match on its own too.
        if let (Some(x), Some(y)) = (&a.sign, &b.sign)
            && x.unsigned_sha256 != y.unsigned_sha256
        {
            diffs.push(format!(
                "  {name} unsigned {IMAGE}: sha256 {} vs {}",
                x.unsigned_sha256, y.unsigned_sha256
            ));
        }
        for (x, y) in a
            .artifacts
            .iter()
            .chain([&a.agent])
            .zip(b.artifacts.iter().chain([&b.agent]))
        {
            if x != y {
                diffs.push(format!(
                    "  {name} {}: {} bytes sha256 {} vs {} bytes sha256 {}",
                    x.name, x.size, x.sha256, y.size, y.sha256
                ));
            } else {
                same.push(format!("{name} {} ({})", x.name, &x.sha256[..16]));
            }
        }
    }
    if !diffs.is_empty() {
        bail!(
            "not reproducible: the clean build in {} differs:\n{}",
            base.display(),
            diffs.join("\n")
        );
    }
    eprintln!(
        "[reproducible] ok in {}: bit-identical: {}",
        util::fmt_duration(t.elapsed()),
        same.join(", ")
    );
    let _ = fs::remove_dir_all(&base);
    Ok(())
}

pub fn plan(args: &ProfileArgs) -> Result<()> {
    let root = util::project_root();
    let profile = args.load()?;
    println!(
        "# profile {} ({})",
        profile.name,
        join_paths(&profile.files)
    );
    println!("{}", toml::to_string_pretty(&profile)?);
    println!("# stages");
    // Each stage's line; a stage over another's record is looked up only
    // when that one is up to date.
    let mut lines = Vec::new();
    let initramfs = match state(&Agent::new(&root, &profile, false), &mut lines)? {
        Some(agent) => state(&Initramfs::new(&root, &profile, &agent), &mut lines)?,
        None => {
            lines.push("initramfs: will rebuild: the agent will be rebuilt".into());
            None
        }
    };
    let embed = initramfs.as_ref().filter(|_| profile.initramfs.builtin);
    let kernel = Kernel::new(&root, &profile, embed);
    let k = kernel.plan()?;
    match k.state {
        kernel::State::UpToDate(rec) => println!(
            "kernel: up to date ({} {}, {})",
            rec.release,
            rec.image.display(),
            kernel.about(&rec)
        ),
        kernel::State::Configure => {
            println!("kernel: will configure (seconds); the compile is shared with another profile")
        }
        kernel::State::Link { why } => {
            println!("kernel: will link only (about a minute; the compile is there): {why}")
        }
        kernel::State::Rebuild { why } => println!(
            "kernel: will rebuild: {why}\n  (configure runs again; the compile is reused if the final .config matches an earlier build)"
        ),
    }
    println!("  configure key {}", &k.configure_key[..16]);
    for l in lines {
        println!("{l}");
    }
    println!(
        "budget: checked on every build ({} bytes)",
        profile.budget.total
    );
    Ok(())
}

/// "agent: up to date (N bytes)" or "agent: will rebuild: why"; the record
/// when it is up to date.
fn state<S: Stage>(stage: &S, lines: &mut Vec<String>) -> Result<Option<S::Record>> {
    Ok(match stage.lookup()? {
        Lookup::Hit(rec) => {
            lines.push(format!(
                "{}: up to date ({})",
                stage.name(),
                stage.about(&rec)
            ));
            Some(rec)
        }
        Lookup::Miss { why } => {
            lines.push(format!("{}: will rebuild: {why}", stage.name()));
            None
        }
    })
}

fn join_paths(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(" <- ")
}

#[derive(Args, Clone, Debug)]
pub struct SizeArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Another build's manifest.json to compare with
    #[arg(long, value_name = "MANIFEST")]
    pub compare: Option<PathBuf>,
    /// How many initramfs entries to list
    #[arg(long, default_value_t = 15)]
    pub top: usize,
}

pub fn size(args: &SizeArgs) -> Result<()> {
    let root = util::project_root();
    let profile = args.profile.load()?;
    let path = dist_dir(&root, &profile).join(MANIFEST);
    let m = read_manifest(&path)?;
    println!("# {} (kernel {})", path.display(), m.kernel.release);
    for a in m.artifacts.iter().chain([&m.agent]) {
        println!(
            "{:<20} {:>10} bytes  sha256 {}",
            a.name,
            a.size,
            &a.sha256[..16]
        );
    }
    println!("\n# memory budget\n{}", m.budget.render());
    println!(
        "# initramfs entries by size ({} entries, cpio {} bytes, {}{})",
        m.initramfs.entries.len(),
        m.initramfs.cpio_size,
        m.initramfs.compression,
        match m.artifacts.iter().find(|a| a.name == RD) {
            Some(rd) => format!(" {} bytes", rd.size),
            None => format!(", built into {IMAGE}"),
        }
    );
    for e in m.initramfs.entries.iter().take(args.top) {
        println!("{:>10}  {}", e.bytes, e.path);
    }
    if let Some(other) = &args.compare {
        let o = read_manifest(other)?;
        println!("\n# difference from {} (this - other)", other.display());
        let d = |a: u64, b: u64| a as i64 - b as i64;
        for (a, b) in m
            .artifacts
            .iter()
            .chain([&m.agent])
            .zip(o.artifacts.iter().chain([&o.agent]))
        {
            println!("{:<38} {:>+12}", a.name, d(a.size, b.size));
        }
        for r in &m.budget.rows {
            let before = o
                .budget
                .rows
                .iter()
                .find(|x| x.component == r.component)
                .map_or(0, |x| x.bytes);
            println!("{:<38} {:>+12}", r.component, d(r.bytes, before));
        }
        println!("{:<38} {:>+12}", "total", d(m.budget.total, o.budget.total));
    }
    Ok(())
}

fn read_manifest(path: &Path) -> Result<Manifest> {
    let data = fs::read(path).with_context(|| {
        format!(
            "cannot read {}: run `cargo xtask dist` first",
            path.display()
        )
    })?;
    serde_json::from_slice(&data).with_context(|| format!("{} is not a manifest", path.display()))
}

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
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644))?;
        println!("installed {}", target.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn publish_replaces_the_whole_set_or_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (img, rd) = (d.path().join("img"), d.path().join("rd"));
        fs::write(&img, b"image 1").unwrap();
        fs::write(&rd, b"rd 1").unwrap();
        let out = d.path().join("dist/p");
        publish_files(&out, &[(IMAGE, &img), (RD, &rd)], b"{1}").unwrap();
        assert_eq!(names(&out), [MANIFEST, IMAGE, RD]);

        // A failure while staging (the rd vanished) leaves the old set whole
        // and no staging directory behind.
        fs::write(&img, b"image 2").unwrap();
        fs::remove_file(&rd).unwrap();
        let e = publish_files(&out, &[(IMAGE, &img), (RD, &rd)], b"{2}").unwrap_err();
        assert!(format!("{e:#}").contains("cannot read"), "{e:#}");
        assert_eq!(fs::read(out.join(IMAGE)).unwrap(), b"image 1");
        assert_eq!(fs::read(out.join(MANIFEST)).unwrap(), b"{1}");
        assert_eq!(names(&d.path().join("dist")), ["p"]);

        // A stale file from an older set does not survive a new one.
        fs::write(out.join("stale"), b"x").unwrap();
        fs::write(&rd, b"rd 2").unwrap();
        publish_files(&out, &[(IMAGE, &img), (RD, &rd)], b"{2}").unwrap();
        assert_eq!(names(&out), [MANIFEST, IMAGE, RD]);
        assert_eq!(fs::read(out.join(RD)).unwrap(), b"rd 2");
        assert_eq!(names(&d.path().join("dist")), ["p"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(out.join(IMAGE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0, "artifacts are not executable");
    }
}
