//! Profiles: TOML files under `profiles/` that declare what `dist` builds.
//!
//! Loading happens in three steps so that every error can point at a file,
//! line and column:
//! 1. each file of the `extends` chain is checked on its own against
//!    [`ProfileFile`] (all fields optional, unknown keys rejected), which gives
//!    toml's span-carrying errors;
//! 2. the raw tables are merged, parent first, then `--set` overrides,
//!    keeping where each key was set ([`Profile::origin`]: the file and line
//!    that won, or the `--set`);
//! 3. the merged table becomes a [`Profile`] with every default filled in,
//!    and the rules that span fields are checked, each error at the origin
//!    of the key at fault.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Deserializer, Serialize};
mod de;
mod origin;
pub use origin::Origin;
use origin::{Origins, in_file, key_lines};

/// The default budget: the HSA of machines before z15.
pub const DEFAULT_BUDGET: u64 = 32 << 20;
/// Default runtime reserve, see [`Budget::runtime_reserve`].
pub const DEFAULT_RUNTIME_RESERVE: u64 = 8 << 20;

/// A fully resolved profile: what the stages consume.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Profile {
    /// The profile file's stem: names `dist/<name>/`.
    pub name: String,
    /// The profile file, then the files it extends.
    pub files: Vec<PathBuf>,
    pub kernel: Kernel,
    pub agent: Agent,
    pub initramfs: Initramfs,
    pub budget: Budget,
    /// Sign zfcpdump.image for secure IPL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign: Option<Sign>,
    /// Where each key was set: [`Profile::origin`].
    #[serde(skip)]
    origins: Origins,
}

/// `[sign]`: the appended PKCS#7 signature zipl 2.42+ requires for secure
/// IPL, made as the kernel's scripts/sign-file makes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, expecting = "a table ([sign])")]
pub struct Sign {
    /// The private key: a PEM file (relative to the profile that sets it),
    /// `env:VAR` (a variable naming that file, so that CI keeps the key out
    /// of the repository) or a `pkcs11:` URI (OpenSSL's pkcs11 engine).
    pub key: String,
    /// The signer's X.509 certificate (PEM or DER), relative to the
    /// profile, or `env:VAR`.
    pub certificate: String,
    #[serde(default)]
    pub hash: SignHash,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SignHash {
    #[default]
    Sha256,
    Sha384,
    Sha512,
}

/// By hand: serde's own enum says "wanted string or table" of a number.
impl<'de> Deserialize<'de> for SignHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let all = [SignHash::Sha256, SignHash::Sha384, SignHash::Sha512];
        de::choice(d, &["sha256", "sha384", "sha512"]).map(|i| all[i])
    }
}

impl fmt::Display for SignHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignHash::Sha256 => "sha256",
            SignHash::Sha384 => "sha384",
            SignHash::Sha512 => "sha512",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, expecting = "a table ([kernel])")]
pub struct Kernel {
    pub source: Source,
    #[serde(default = "default_defconfig")]
    pub defconfig: String,
    /// File names under `kernel-config/`, or paths relative to the profile,
    /// applied in order after the defconfig.
    #[serde(default, deserialize_with = "de::names")]
    pub fragments: Vec<String>,
    #[serde(default = "default_arch")]
    pub arch: String,
    #[serde(default = "default_cross")]
    pub cross_compile: String,
    /// Extra make variables (`NAME=value`), such as `LLVM=1` or
    /// `KCFLAGS=...`; part of the compile's key. `LLVM` or `CC` here names
    /// the compiler instead of `<cross_compile>gcc`.
    #[serde(
        default,
        deserialize_with = "de::make_vars",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub make_args: Vec<String>,
    /// make -j; 0 means the number of CPUs. Not part of any cache key.
    #[serde(default, deserialize_with = "de::whole")]
    pub jobs: u32,
    /// Compile through the compile cache (ccache) when it is installed.
    /// Never part of a cache key: the cache does not change what is built.
    #[serde(default = "default_true")]
    pub compile_cache: bool,
}

/// Exactly one of `tarball` or `dir`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(
    deny_unknown_fields,
    expecting = "a table ([kernel.source] or source = { … })"
)]
pub struct Source {
    pub tarball: Option<PathBuf>,
    /// Pins the tarball; the build fails when it differs.
    pub sha256: Option<String>,
    pub dir: Option<PathBuf>,
    /// Build a `dir` that is a git work tree with uncommitted changes; it
    /// is then known by its content instead of its commit. An error with a
    /// `tarball`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_dirty: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, expecting = "a table ([agent])")]
pub struct Agent {
    #[serde(default = "default_target")]
    pub target: String,
    /// The linker of the agent's target, instead of the one the target
    /// implies (`s390x-linux-musl-gcc` for musl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linker: Option<String>,
    /// How long the agent waits for the IPL disk to appear.
    #[serde(default = "default_device_timeout", deserialize_with = "de::whole")]
    pub device_timeout_s: u32,
    #[serde(default = "default_progress_interval", deserialize_with = "de::whole")]
    pub progress_interval_s: u32,
    /// Pages to leave out at dump time, makedumpfile's `-d` bits (1 zero,
    /// 2 cache, 4 private cache, 8 user, 16 free); 0 is byte-exact. The
    /// operator's `zfcpdump.dump_level=N` overrides it at dump time.
    #[serde(default, deserialize_with = "de::dump_level")]
    pub dump_level: Option<u8>,
    /// Deprecated: `true` is `dump_level = 1`; `dump_level` wins where both
    /// are set.
    #[serde(default)]
    pub zero_page_elision: bool,
}

impl Agent {
    /// The dump level the agent is built with.
    pub fn dump_level(&self) -> u8 {
        self.dump_level.unwrap_or(self.zero_page_elision as u8)
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Xz,
    Zstd,
    None,
}

impl Compression {
    /// The kernel option that lets the kernel unpack this initrd.
    pub fn kernel_option(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some("CONFIG_RD_GZIP"),
            Compression::Xz => Some("CONFIG_RD_XZ"),
            Compression::Zstd => Some("CONFIG_RD_ZSTD"),
            Compression::None => None,
        }
    }
}

/// By hand: serde's own enum says "wanted string or table" of a number.
impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let all = [
            Compression::Gzip,
            Compression::Xz,
            Compression::Zstd,
            Compression::None,
        ];
        de::choice(d, &["gzip", "xz", "zstd", "none"]).map(|i| all[i])
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        };
        f.write_str(s)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, expecting = "a table ([initramfs])")]
pub struct Initramfs {
    #[serde(default)]
    pub compression: Compression,
    /// The rootfs tree (manifest.toml + overlay/); default: rootfs/ of the
    /// project. Relative to the profile that sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<PathBuf>,
    /// Link the initramfs into the kernel image (`CONFIG_INITRAMFS_SOURCE`)
    /// instead of shipping zfcpdump.rd beside it: one file, which zipl IPLs
    /// alone and which a secure-IPL signature covers whole.
    #[serde(default)]
    pub builtin: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, expecting = "a table ([budget])")]
pub struct Budget {
    /// Memory the dump kernel may use: the HSA size of the target machines.
    #[serde(default = "default_budget", deserialize_with = "de::size")]
    pub total: u64,
    /// Left for the running kernel (page tables, slab, page cache of the
    /// device) and the agent. 8 MiB: the zfcpdump kernel reports about 22 MiB
    /// available of 32 MiB after boot, and the agent itself needs 2 MiB.
    #[serde(default = "default_reserve", deserialize_with = "de::size")]
    pub runtime_reserve: u64,
}

fn default_defconfig() -> String {
    "zfcpdump_defconfig".into()
}
fn default_arch() -> String {
    "s390".into()
}
fn default_cross() -> String {
    "s390x-linux-gnu-".into()
}
fn default_true() -> bool {
    true
}
fn default_target() -> String {
    "s390x-unknown-linux-musl".into()
}
fn default_device_timeout() -> u32 {
    30
}
fn default_progress_interval() -> u32 {
    10
}
fn default_budget() -> u64 {
    DEFAULT_BUDGET
}
fn default_reserve() -> u64 {
    DEFAULT_RUNTIME_RESERVE
}

/// The shape of one profile file: everything optional, since a file may
/// extend another. Only used to check a file on its own with spans.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
#[allow(dead_code)] // fields are read by serde's checks only
struct ProfileFile {
    extends: Option<String>,
    kernel: Option<KernelFile>,
    agent: Option<AgentFile>,
    initramfs: Option<Initramfs>,
    budget: Option<BudgetFile>,
    sign: Option<SignFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table ([sign])")]
#[allow(dead_code)]
struct SignFile {
    key: Option<String>,
    certificate: Option<String>,
    hash: Option<SignHash>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table ([kernel])")]
#[allow(dead_code)]
struct KernelFile {
    source: Option<Source>,
    defconfig: Option<String>,
    #[serde(default, deserialize_with = "de::opt_names")]
    fragments: Option<Vec<String>>,
    arch: Option<String>,
    cross_compile: Option<String>,
    #[serde(default, deserialize_with = "de::opt_make_vars")]
    make_args: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de::opt_whole")]
    jobs: Option<u32>,
    compile_cache: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table ([agent])")]
#[allow(dead_code)]
struct AgentFile {
    target: Option<String>,
    linker: Option<String>,
    #[serde(default, deserialize_with = "de::opt_whole")]
    device_timeout_s: Option<u32>,
    #[serde(default, deserialize_with = "de::opt_whole")]
    progress_interval_s: Option<u32>,
    #[serde(default, deserialize_with = "de::dump_level")]
    dump_level: Option<u8>,
    zero_page_elision: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table ([budget])")]
#[allow(dead_code)]
struct BudgetFile {
    #[serde(default, deserialize_with = "de::opt_size")]
    total: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_size")]
    runtime_reserve: Option<u64>,
}

/// The merged, default-free form, deserialized into [`Profile`]'s sections.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct Merged {
    #[serde(default)]
    #[allow(dead_code)]
    extends: Option<String>,
    kernel: Kernel,
    #[serde(default = "default_agent")]
    agent: Agent,
    #[serde(default = "default_initramfs")]
    initramfs: Initramfs,
    #[serde(default = "default_budget_section")]
    budget: Budget,
    #[serde(default)]
    sign: Option<Sign>,
}

fn default_agent() -> Agent {
    toml::from_str("").expect("agent defaults")
}
fn default_initramfs() -> Initramfs {
    toml::from_str("").expect("initramfs defaults")
}
fn default_budget_section() -> Budget {
    toml::from_str("").expect("budget defaults")
}

/// Where `--profile NAME` looks.
pub fn profiles_dir(root: &Path) -> PathBuf {
    root.join("profiles")
}

/// Resolves `--profile NAME|PATH`: a bare name means `profiles/NAME.toml`;
/// a path (one with a `/`, or ending in `.toml`) is used as is, or with
/// `.toml` added when only that file exists (`./child` is `./child.toml`).
pub fn profile_path(root: &Path, arg: &str) -> PathBuf {
    let p = Path::new(arg);
    if arg.ends_with(".toml") {
        p.to_path_buf()
    } else if p.components().count() > 1 {
        let with_toml = PathBuf::from(format!("{arg}.toml"));
        if !p.exists() && with_toml.is_file() {
            with_toml
        } else {
            p.to_path_buf()
        }
    } else {
        profiles_dir(root).join(format!("{arg}.toml"))
    }
}

/// Loads a profile, follows `extends`, applies `--set KEY=VALUE` overrides.
pub fn load(root: &Path, arg: &str, sets: &[String]) -> Result<Profile> {
    let path = profile_path(root, arg);
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .context("profile path has no file name")?
        .to_string();

    // Walk the chain child first, then merge parent first.
    let mut chain: Vec<Layer> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut next = Some(path);
    while let Some(p) = next.take() {
        let canon = p.canonicalize().map_err(|e| {
            // A parent that is not there is the child's error: name the
            // file and line of its `extends`.
            match chain.last() {
                Some(child) => anyhow::anyhow!(
                    "{}: extends: cannot read the parent profile {}: {e}{}",
                    in_file(&child.path, &child.lines, "extends"),
                    p.display(),
                    extends_hint(child)
                ),
                None if !p.exists() && !arg.ends_with(".toml") && arg.contains('/') => {
                    anyhow::anyhow!("cannot read profile {} (nor {arg}.toml): {e}", p.display())
                }
                None => anyhow::anyhow!("cannot read profile {}: {e}", p.display()),
            }
        })?;
        if !seen.insert(canon.clone()) {
            let cycle: Vec<String> = chain
                .iter()
                .map(|l| l.path.display().to_string())
                .chain([canon.display().to_string()])
                .collect();
            bail!("profile extends cycle: {}", cycle.join(" -> "));
        }
        let (table, lines) = load_file(&canon)?;
        if let Some(parent) = table.get("extends").and_then(|v| v.as_str()) {
            next = Some(resolve_extends(root, &canon, parent));
        }
        chain.push(Layer {
            path: canon,
            table,
            lines,
        });
    }

    let files: Vec<PathBuf> = chain.iter().map(|l| l.path.clone()).collect();
    let mut merged = toml::Table::new();
    let mut origins = Origins::default();
    for (rank, layer) in chain.into_iter().rev().enumerate() {
        for (k, v) in &layer.table {
            origins.record(k, v, &|key| key == REPLACED_WHOLE, &|key| {
                let origin = in_file(&layer.path, &layer.lines, key);
                let line = layer.lines.get(key).copied().unwrap_or(0);
                ((rank, line), origin)
            });
        }
        merge(&mut merged, layer.table);
    }
    for (i, set) in sets.iter().enumerate() {
        apply_set(&mut merged, &mut origins, set, (files.len() + i, 0))?;
    }

    // No source at all is `validate`'s error, which says what to set.
    if let Some(kernel) = merged
        .entry("kernel")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
    {
        kernel
            .entry("source")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    let m: Merged = toml::Value::Table(merged).try_into().map_err(|e| {
        anyhow::anyhow!(
            "profile {} (after extends and --set): {}",
            files[0].display(),
            de::humanize(&e.to_string())
        )
    })?;
    let profile = Profile {
        name,
        files,
        kernel: m.kernel,
        agent: m.agent,
        initramfs: m.initramfs,
        budget: m.budget,
        sign: m.sign,
        origins,
    };
    validate(&profile)?;
    if let Some(o) = profile.origins.get("agent.zero_page_elision") {
        eprintln!(
            "warning: {o}: agent.zero_page_elision is deprecated; use agent.dump_level (1 for zero \
             pages only); where both are set, dump_level wins"
        );
    }
    Ok(profile)
}

/// One file of the `extends` chain: its canonical path, its table (paths
/// made absolute), and the line of each of its keys.
struct Layer {
    path: PathBuf,
    table: toml::Table,
    lines: BTreeMap<String, usize>,
}

impl Profile {
    /// Where `key`, a dotted path such as `kernel.source.sha256` (or a
    /// table, `kernel.source`), was set: the file and line that won the
    /// merge, or the `--set` argument. A key no file and no `--set` sets
    /// (a default) is the profile's own file, without a line.
    pub fn origin(&self, key: &str) -> Origin {
        self.origins
            .get(key)
            .cloned()
            .unwrap_or_else(|| Origin::File {
                path: self.files[0].clone(),
                line: None,
            })
    }
}

/// A bare name is looked up in profiles/ only; when a file of that name
/// sits beside the profile, say how to name it (as the kernel stage does
/// for a fragment).
fn extends_hint(child: &Layer) -> String {
    let Some(name) = child.table.get("extends").and_then(|v| v.as_str()) else {
        return String::new();
    };
    let beside = child.path.with_file_name(format!("{name}.toml"));
    if name.ends_with(".toml") || name.contains('/') || !beside.is_file() {
        return String::new();
    }
    format!(
        "; {} sits beside the profile {}: a bare name is looked up in profiles/ only, so \
         write extends = \"./{name}.toml\" there",
        beside.display(),
        child.path.display()
    )
}

fn resolve_extends(root: &Path, from: &Path, parent: &str) -> PathBuf {
    if parent.ends_with(".toml") || parent.contains('/') {
        from.parent().unwrap_or(Path::new(".")).join(parent)
    } else {
        profiles_dir(root).join(format!("{parent}.toml"))
    }
}

/// Reads one file, checks it against the schema with spans, and makes its
/// relative source paths absolute (relative to that file).
fn load_file(path: &Path) -> Result<(toml::Table, BTreeMap<String, usize>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read profile {}", path.display()))?;
    if let Some(key) = text
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| array_for_table(&t))
    {
        bail!(
            "{}: {key}: invalid type: array, expected a table ([{key}])",
            in_file(path, &key_lines(&text), key)
        );
    }
    check_text(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), de::humanize(&e.to_string())))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let lines = key_lines(&text);
    absolutize(&mut table, path.parent().unwrap_or(Path::new(".")));
    Ok((table, lines))
}

/// Makes the relative paths of `table` absolute against `base`: the file
/// that names them, or the working directory for a `--set`.
fn absolutize(table: &mut toml::Table, base: &Path) {
    // Fragments: a bare name lives in kernel-config/, a path is relative to
    // the profile that names it (for out-of-tree profiles).
    if let Some(toml::Value::Array(frags)) =
        table.get_mut("kernel").and_then(|k| k.get_mut("fragments"))
    {
        for f in frags.iter_mut() {
            if let toml::Value::String(s) = f {
                if s.contains('/') && Path::new(s.as_str()).is_relative() {
                    *s = base.join(&*s).display().to_string();
                }
            }
        }
    }
    if let Some(toml::Value::String(p)) =
        table.get_mut("initramfs").and_then(|i| i.get_mut("rootfs"))
    {
        if Path::new(p.as_str()).is_relative() {
            *p = base.join(&*p).display().to_string();
        }
    }
    // Signing files are relative to the profile too; env: and pkcs11: keys
    // are not paths.
    if let Some(sign) = table.get_mut("sign").and_then(|s| s.as_table_mut()) {
        for key in ["key", "certificate"] {
            if let Some(toml::Value::String(p)) = sign.get_mut(key) {
                if !p.starts_with("env:")
                    && !p.starts_with("pkcs11:")
                    && Path::new(p.as_str()).is_relative()
                {
                    *p = base.join(&*p).display().to_string();
                }
            }
        }
    }
    if let Some(src) = table
        .get_mut("kernel")
        .and_then(|k| k.get_mut("source"))
        .and_then(|s| s.as_table_mut())
    {
        for key in ["tarball", "dir"] {
            if let Some(toml::Value::String(p)) = src.get_mut(key) {
                if Path::new(p.as_str()).is_relative() {
                    *p = base.join(&*p).display().to_string();
                }
            }
        }
    }
}

/// Checks profile text against the schema. The error carries toml's
/// "line N, column M" and the offending key, and lists the allowed keys.
fn check_text(text: &str) -> Result<(), toml::de::Error> {
    toml::from_str::<ProfileFile>(text).map(|_| ())
}

/// The first of the profile's tables given as an array: serde would read
/// it field by field, in order (`initramfs = ["xz"]`), and accept it.
fn array_for_table(t: &toml::Table) -> Option<&'static str> {
    [
        "kernel",
        "kernel.source",
        "agent",
        "initramfs",
        "budget",
        "sign",
    ]
    .into_iter()
    .find(|key| {
        let mut v = None;
        let mut cur = Some(t);
        for part in key.split('.') {
            v = cur.and_then(|c| c.get(part));
            cur = v.and_then(|v| v.as_table());
        }
        matches!(v, Some(toml::Value::Array(_)))
    })
}

/// The table a layer replaces whole rather than merging into it: a child's
/// `dir` must not inherit its parent's `tarball`. The merge and the origins
/// of the keys follow the same rule.
const REPLACED_WHOLE: &str = "kernel.source";

/// Child values override parent values; tables merge recursively, except
/// `kernel.fragments`, which accumulates so that a profile can add to its
/// parent's fragments, and `kernel.source`, which is replaced whole.
fn merge(into: &mut toml::Table, from: toml::Table) {
    merge_at(into, from, "")
}

fn merge_at(into: &mut toml::Table, from: toml::Table, prefix: &str) {
    for (k, v) in from {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (into.get_mut(&k), v) {
            // A child's source replaces its parent's: a `dir` must not
            // inherit the parent's `tarball`.
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) if path != REPLACED_WHOLE => {
                merge_at(a, b, &path)
            }
            (Some(toml::Value::Array(a)), toml::Value::Array(b)) if path == "kernel.fragments" => {
                for item in b {
                    if !a.contains(&item) {
                        a.push(item);
                    }
                }
            }
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// `--set section.key=value`: the value is TOML if it parses as such,
/// otherwise a string; the key is checked against the schema like a file.
/// `rank` orders it after the files and the `--set`s before it.
fn apply_set(
    merged: &mut toml::Table,
    origins: &mut Origins,
    set: &str,
    rank: (usize, usize),
) -> Result<()> {
    let (key, value) = set.split_once('=').with_context(|| {
        format!("--set {set:?}: expected KEY=VALUE, e.g. initramfs.compression=xz")
    })?;
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("--set {set:?}: empty key component");
    }
    let value: toml::Value = match format!("v = {value}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").expect("parsed v"),
        Err(_) => toml::Value::String(value.to_string()),
    };
    // Build a one-key document and check it like a profile file.
    let mut doc = toml::Table::new();
    let mut cur = &mut doc;
    for p in &parts[..parts.len() - 1] {
        cur = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("fresh table");
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    if let Some(key) = array_for_table(&doc) {
        bail!("--set {set:?}: {key}: invalid type: array, expected a table ([{key}])");
    }
    let text = toml::to_string(&doc)?;
    check_text(&text)
        .map_err(|e| anyhow::anyhow!("--set {set:?}: {}", de::humanize(e.message())))?;
    // A path on the command line is relative to where it was typed.
    if let Ok(cwd) = std::env::current_dir() {
        absolutize(&mut doc, &cwd);
    }
    let here = || (rank, Origin::Set(set.to_string()));
    // Like a child profile's source table, the first `--set` of a kind of
    // source replaces the inherited table: a `dir` must not keep the
    // parent's `tarball` or `sha256`. What other `--set`s put there stays.
    if matches!(key, "kernel.source.dir" | "kernel.source.tarball")
        && !matches!(origins.get("kernel.source"), Some(Origin::Set(_)))
    {
        if let Some(src) = merged
            .get_mut("kernel")
            .and_then(|k| k.get_mut("source"))
            .and_then(|s| s.as_table_mut())
        {
            src.retain(|k, _| {
                matches!(
                    origins.get(&format!("kernel.source.{k}")),
                    Some(Origin::Set(_))
                )
            });
            origins.forget_below_but_sets("kernel.source");
            let (r, o) = here();
            origins.set("kernel.source", r, o);
        }
    }
    // `--set` replaces, it does not accumulate.
    let mut cur = &mut *merged;
    for (i, p) in parts[..parts.len() - 1].iter().enumerate() {
        if !cur.contains_key(*p) {
            let (r, o) = here();
            origins.set(&parts[..=i].join("."), r, o);
        }
        cur = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("--set {set:?}: {p} is not a table"))?;
    }
    let mut leaf = doc;
    for p in &parts[..parts.len() - 1] {
        leaf = match leaf.remove(*p) {
            Some(toml::Value::Table(t)) => t,
            _ => unreachable!("built above"),
        };
    }
    let (k, v) = leaf.into_iter().next().expect("one key");
    origins.forget_below(key);
    origins.record(key, &v, &|_| false, &|_| here());
    cur.insert(k, v);
    Ok(())
}

/// Rules that span fields, checked after merging. Each error names where
/// the key at fault was set; of two keys that conflict, the one set later.
fn validate(p: &Profile) -> Result<()> {
    let o = &p.origins;
    let s = &p.kernel.source;
    // `, set at …` for the other key of a pair, when it was set elsewhere.
    let other = |at: &str, key: &str| {
        let there = p.origin(key);
        if there == p.origin(at) {
            String::new()
        } else {
            format!(
                " (`{}` is set at {there})",
                key.rsplit('.').next().unwrap_or(key)
            )
        }
    };
    match (&s.tarball, &s.dir) {
        (Some(_), Some(_)) => {
            let at = o.later("kernel.source.dir", "kernel.source.tarball");
            let key = if at.ends_with("dir") {
                "kernel.source.tarball"
            } else {
                "kernel.source.dir"
            };
            bail!(
                "{}: kernel.source: set either `tarball` or `dir`, not both{}",
                p.origin(at),
                other(at, key)
            )
        }
        (None, None) => {
            let at = if o.get("kernel.source").is_some() {
                "kernel.source"
            } else {
                "kernel"
            };
            bail!(
                "{}: kernel.source: set `tarball` (with an optional `sha256`) or `dir`",
                p.origin(at)
            )
        }
        (None, Some(_)) if s.sha256.is_some() => {
            let at = o.later("kernel.source.sha256", "kernel.source.dir");
            bail!(
                "{}: kernel.source.sha256 pins a tarball; it cannot be used with `dir`{}",
                p.origin(at),
                other(at, "kernel.source.dir")
            )
        }
        (Some(_), None) if s.allow_dirty => {
            let at = o.later("kernel.source.allow_dirty", "kernel.source.tarball");
            bail!(
                "{}: kernel.source.allow_dirty is for a `dir` source (a git work tree with \
                 uncommitted changes); it cannot be used with `tarball`{}",
                p.origin(at),
                other(at, "kernel.source.tarball")
            )
        }
        _ => {}
    }
    if let Some(h) = s
        .sha256
        .as_ref()
        .filter(|h| h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()))
    {
        bail!(
            "{}: kernel.source.sha256 must be 64 hex digits, got {h:?}",
            p.origin("kernel.source.sha256")
        );
    }
    if p.kernel.arch != "s390" {
        bail!(
            "{}: kernel.arch = {:?}: only \"s390\" is supported (zfcpdump is an IBM Z dump tool)",
            p.origin("kernel.arch"),
            p.kernel.arch
        );
    }
    if p.budget.total == 0 || p.budget.runtime_reserve >= p.budget.total {
        let at = if p.budget.total == 0 {
            "budget.total"
        } else {
            o.later("budget.runtime_reserve", "budget.total")
        };
        let key = if at == "budget.total" {
            "budget.runtime_reserve"
        } else {
            "budget.total"
        };
        bail!(
            "{}: budget.runtime_reserve ({}) must be smaller than budget.total ({}){}",
            p.origin(at),
            p.budget.runtime_reserve,
            p.budget.total,
            other(at, key)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
