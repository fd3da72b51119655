//! The real s390-tools (Debian 12's s390x build, zipl and zgetdump 2.16) on an
//! x86_64 host, as the reference that our own formats are checked against.
//!
//! - [`unpacked_root`]: downloads the s390x packages once with `apt-get
//!   download` and unpacks them with `dpkg -x` into a sysroot in the cache
//!   (s390-tools cannot be installed on the host: it is s390x-only and
//!   conflicts with the host's perl).
//! - [`Zgetdump`]: runs zgetdump from that sysroot under `qemu-s390x-static`.
//! - [`zipl_prepare`]: zipl needs a real s390x block device with a partition
//!   (it asks the kernel for the geometry and block size), so it runs in a
//!   throwaway qemu-system-s390x guest that writes a disk image as a real
//!   `zipl --dumpto /dev/sda1` would.
//!
//! The module uses only std and external crates, no other xtask module, so the
//! integration test (xtask/tests/s390tools.rs) can include it with `#[path]`.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};

/// The s390x packages of the sysroot. zipl needs libc6; zgetdump also needs
/// zlib1g and libfuse2 (its ELF NEEDED entries); busybox-static is the
/// helper guest's shell; crash (8.0.2 in Debian 12) needs the libraries
/// after it.
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
];

/// Bumped when the layout of a cache entry changes.
const CACHE_FORMAT: &str = "s390-tools-root-v1";

/// Where zipl 2.16 (Debian) looks for the dump tool.
const ZFCPDUMP_DIR: &str = "lib/s390-tools/zfcpdump";

/// Printed by the helper guest's /init; the host checks for them.
const MARK_OK: &str = "ZIPL-HELPER: SUCCESS";
const MARK_FAILED: &str = "ZIPL-HELPER: FAILED";
const MARK_OUT_BEGIN: &str = "ZIPL-HELPER: zipl output begin";
const MARK_OUT_END: &str = "ZIPL-HELPER: zipl output end";
const MARK_NO_DISK: &str = "ZIPL-HELPER: FAILED: no /dev/sda1";
/// How long /init waits for the partition (it appears within a second).
const NO_DISK_SECS: u32 = 30;

/// Kill the helper guest after this long. A run takes a few seconds; the
/// margin covers a loaded 2-core CI machine.
pub const ZIPL_GUEST_TIMEOUT: Duration = Duration::from_secs(180);

fn progress(msg: impl AsRef<str>) {
    eprintln!("[s390-tools] {}", msg.as_ref());
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------
// The unpacked s390x sysroot
// ---------------------------------------------------------------------------

/// The directory that [`unpacked_root`] fills for the current package list:
/// `cache/s390-tools/<key>`, holding `root/` and `versions.txt`.
pub fn cache_entry(cache: &Path) -> PathBuf {
    let mut h = Sha256::new();
    h.update(CACHE_FORMAT.as_bytes());
    for p in PACKAGES {
        h.update(b"\0");
        h.update(p.as_bytes());
    }
    let key: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    cache.join("s390-tools").join(key)
}

/// The sysroot with Debian's s390x s390-tools, glibc, zlib, libfuse and
/// busybox, unpacked once into the cache (atomically: a temp dir renamed into
/// place). Returns the sysroot (`.../root`); `versions.txt` beside it lists
/// the package versions. With `offline`, only a cached sysroot is used.
///
/// The cache key covers the package list, not the versions, so a cached
/// sysroot needs no apt query; delete `cache/s390-tools/` to pick up newer
/// Debian packages.
pub fn unpacked_root(cache: &Path, offline: bool) -> Result<PathBuf> {
    let entry = cache_entry(cache);
    let root = entry.join("root");
    if root.is_dir() {
        return Ok(root);
    }
    if offline {
        bail!(
            "the s390x s390-tools sysroot is not in the cache ({}): run `cargo xtask fetch` \
             while online first, or drop --offline",
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
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        entry.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&tmp);
    let res = fill_entry(&tmp);
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

fn fill_entry(tmp: &Path) -> Result<()> {
    let debs = tmp.join("debs");
    let root = tmp.join("root");
    fs::create_dir_all(&debs).with_context(|| format!("cannot create {}", debs.display()))?;
    fs::create_dir_all(&root)?;

    let names: Vec<String> = PACKAGES.iter().map(|p| format!("{p}:s390x")).collect();
    progress(format!("downloading {}", names.join(" ")));
    let t = Instant::now();
    // apt-get download writes into the current directory. The sandbox user
    // _apt could not write into a root-owned cache dir, so download as the
    // caller (the files are checked against the signed lists either way).
    let out = Command::new("apt-get")
        .args(["download", "-q", "-o", "APT::Sandbox::User=root"])
        .args(&names)
        .current_dir(&debs)
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
    progress(format!("downloaded in {}", secs(t.elapsed())));

    let mut versions = String::new();
    let mut found = BTreeSet::new();
    let mut files: Vec<PathBuf> = fs::read_dir(&debs)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.sort();
    for deb in files
        .iter()
        .filter(|p| p.extension() == Some("deb".as_ref()))
    {
        let out = Command::new("dpkg-deb")
            .args(["-f"])
            .arg(deb)
            .args(["Package", "Version", "Architecture"])
            .output()
            .context("cannot run dpkg-deb")?;
        ensure!(
            out.status.success(),
            "dpkg-deb -f {} failed: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
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
        versions.push_str(&format!("{pkg} {ver} {arch}\n"));
        found.insert(pkg);
        let st = Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb)
            .arg(&root)
            .status()
            .context("cannot run dpkg-deb")?;
        ensure!(st.success(), "dpkg-deb -x {} failed", deb.display());
    }
    let missing: Vec<_> = PACKAGES.iter().filter(|p| !found.contains(**p)).collect();
    ensure!(
        missing.is_empty(),
        "apt-get download did not produce {missing:?} in {}",
        debs.display()
    );
    fs::write(tmp.join("versions.txt"), &versions)?;
    fs::remove_dir_all(&debs)?;

    // Fail here, not later inside a guest, if a run-time library is missing.
    for bin in ["sbin/zipl", "sbin/zgetdump"] {
        elf_closure(&root, bin).with_context(|| format!("checking {bin} in the sysroot"))?;
    }
    ensure!(
        root.join("bin/busybox").is_file(),
        "busybox-static:s390x did not provide bin/busybox"
    );
    progress(format!("unpacked {}", versions.trim().replace('\n', ", ")));
    Ok(())
}

/// The package versions recorded next to a sysroot from [`unpacked_root`].
pub fn versions(root: &Path) -> Result<String> {
    let p = root.with_file_name("versions.txt");
    fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))
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
                    "{bin} needs {lib}, which no package in {PACKAGES:?} provides; \
                         add its package to PACKAGES"
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

fn have_command(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
}

// ---------------------------------------------------------------------------
// zgetdump under qemu-user
// ---------------------------------------------------------------------------

/// Debian's zgetdump 2.16, run under `qemu-s390x-static` from the sysroot.
#[derive(Debug, Clone)]
pub struct Zgetdump {
    root: PathBuf,
}

/// What `zgetdump -i` says about a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZgetdumpInfo {
    /// "Dump format", e.g. `elf`.
    pub format: String,
    /// "CPU count (online)".
    pub cpus: u32,
    /// "Dump memory range" in MiB as printed (the highest address, rounded;
    /// not the sum of the ranges).
    pub memory_range_mib: u64,
    /// The "Memory map" ranges, end exclusive.
    pub memory_map: Vec<Range<u64>>,
    /// Every "Key....: value" line of the general info, in order.
    pub fields: Vec<(String, String)>,
    /// zgetdump's full output.
    pub text: String,
}

impl ZgetdumpInfo {
    /// Bytes covered by the memory map.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_map.iter().map(|r| r.end - r.start).sum()
    }

    /// A general-info field by its name, e.g. "System arch".
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Parses `zgetdump -i` output (zgetdump prints it to stderr).
    pub fn parse(text: &str) -> Result<ZgetdumpInfo> {
        let mut fields = Vec::new();
        let mut memory_map = Vec::new();
        let mut in_map = false;
        for line in text.lines() {
            let t = line.trim();
            if t.is_empty() {
                continue;
            }
            if t == "Memory map:" {
                in_map = true;
                continue;
            }
            if in_map {
                // "0000000000000000 - 00000000003fffff (4 MB)"
                let mut it = t.split_whitespace();
                if let (Some(a), Some("-"), Some(b)) = (it.next(), it.next(), it.next())
                    && let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))
                {
                    memory_map.push(a..b + 1);
                    continue;
                }
                in_map = false;
            }
            // "CPU count (online).: 3": dots pad the key to a column.
            if let Some((k, v)) = t.split_once(':')
                && k.ends_with('.')
            {
                fields.push((k.trim_end_matches('.').to_string(), v.trim().to_string()));
            }
        }
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .with_context(|| format!("zgetdump -i printed no '{name}' line:\n{text}"))
        };
        let format = get("Dump format")?.to_string();
        let cpus = get("CPU count (online)")?
            .parse()
            .with_context(|| format!("unexpected CPU count in:\n{text}"))?;
        let range = get("Dump memory range")?;
        let memory_range_mib = range
            .strip_suffix(" MB")
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("unexpected dump memory range '{range}'"))?;
        Ok(ZgetdumpInfo {
            format,
            cpus,
            memory_range_mib,
            memory_map,
            fields,
            text: text.to_string(),
        })
    }
}

impl Zgetdump {
    /// zgetdump from a sysroot made by [`unpacked_root`].
    pub fn new(root: &Path) -> Result<Zgetdump> {
        ensure!(
            root.join("sbin/zgetdump").is_file(),
            "{} has no sbin/zgetdump: not an s390-tools sysroot",
            root.display()
        );
        require_qemu_user("zgetdump")?;
        Ok(Zgetdump {
            root: root.to_path_buf(),
        })
    }

    /// zgetdump from the cached sysroot, downloading it unless `offline`.
    pub fn from_cache(cache: &Path, offline: bool) -> Result<Zgetdump> {
        Zgetdump::new(&unpacked_root(cache, offline)?)
    }

    fn command(&self) -> Command {
        qemu_user(&self.root, "sbin/zgetdump")
    }

    /// `zgetdump -i FILE`: FILE is a dump file or a partition image (the
    /// partition's bytes alone; zgetdump 2.16 quirks are in toolchain.md).
    pub fn info(&self, file: &Path) -> Result<ZgetdumpInfo> {
        let out = self
            .command()
            .arg("-i")
            .arg(file)
            .stdin(Stdio::null())
            .output()
            .context("cannot run qemu-s390x-static")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            bail!(
                "zgetdump -i {} rejected it ({}):\n{}",
                file.display(),
                out.status,
                text.trim()
            );
        }
        ZgetdumpInfo::parse(&text)
    }

    /// `zgetdump FILE > out`: zgetdump's own copy of the dump (an ELF it
    /// rewrites, not a byte copy of the input).
    pub fn copy(&self, file: &Path, out: &Path) -> Result<()> {
        let f = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
        let o = self
            .command()
            .arg(file)
            .stdin(Stdio::null())
            .stdout(f)
            .output()
            .context("cannot run qemu-s390x-static")?;
        if !o.status.success() {
            bail!(
                "zgetdump {} > {} failed ({}):\n{}",
                file.display(),
                out.display(),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Real zipl in a helper guest
// ---------------------------------------------------------------------------

/// A disk for [`zipl_prepare`]: one DOS partition, bytes throughout.
#[derive(Debug, Clone)]
pub struct ZiplJob<'a> {
    /// A kernel that sees virtio-scsi disks (the qemu profile's bzImage).
    pub helper_kernel: &'a Path,
    /// The dump tool kernel that zipl installs (zfcpdump-image).
    pub dump_image: &'a Path,
    /// The dump tool initrd (zfcpdump-initrd), if any.
    pub dump_initrd: Option<&'a Path>,
    /// The disk image to create (replaced if it exists).
    pub disk: &'a Path,
    /// Disk size in bytes.
    pub disk_size: u64,
    /// Logical block size of the emulated disk: 512 or 4096.
    pub sector_size: u32,
    /// Partition start in bytes.
    pub part_start: u64,
    /// Partition size in bytes.
    pub part_size: u64,
    /// Use only the cached sysroot.
    pub offline: bool,
}

/// What a helper guest run left behind.
#[derive(Debug, Clone)]
pub struct ZiplResult {
    /// The disk image zipl prepared.
    pub disk: PathBuf,
    /// The guest's console.
    pub console_log: PathBuf,
    /// What zipl printed.
    pub zipl_output: String,
    /// QEMU's wall time.
    pub elapsed: Duration,
}

/// `qemu-s390x-static -L ROOT ROOT/BIN`: an s390x binary of the sysroot,
/// with its libraries from there too.
fn qemu_user(root: &Path, bin: &str) -> Command {
    let mut c = Command::new("qemu-s390x-static");
    c.arg("-L").arg(root).arg(root.join(bin));
    c
}

fn require_qemu_user(what: &str) -> Result<()> {
    ensure!(
        have_command("qemu-s390x-static"),
        "qemu-s390x-static not found: install Debian's qemu-user-static to run s390x {what} on \
         this host"
    );
    Ok(())
}

/// Debian's s390x crash (the kernel dump analyser) under qemu-user.
pub struct Crash {
    root: PathBuf,
}

/// A crash session takes about 10 s under qemu-user; reading 64 MiB with
/// `rd -r` about 10 s more.
pub const CRASH_TIMEOUT: Duration = Duration::from_secs(300);

impl Crash {
    /// crash from a sysroot made by [`unpacked_root`], with every library it
    /// needs.
    pub fn new(root: &Path) -> Result<Crash> {
        ensure!(
            root.join("usr/bin/crash").is_file(),
            "{} has no usr/bin/crash: the sysroot predates crash in PACKAGES",
            root.display()
        );
        elf_closure(root, "usr/bin/crash")?;
        require_qemu_user("crash")?;
        Ok(Crash {
            root: root.to_path_buf(),
        })
    }

    /// `crash -s VMLINUX DUMP -i CMDS` with `commands` (a `quit` is added):
    /// its output, or an error with the output's tail if crash refused the
    /// dump (crash says "vmlinux and DUMP do not match!" for a wrong
    /// vmlinux) or did not finish in time. The command file and the log go
    /// next to `log`.
    pub fn session(
        &self,
        vmlinux: &Path,
        dump: &Path,
        commands: &[String],
        log: &Path,
    ) -> Result<String> {
        let cmds = sibling(log, "commands");
        let mut text = commands.join("\n");
        text.push_str("\nquit\n");
        fs::write(&cmds, text).with_context(|| format!("cannot write {}", cmds.display()))?;
        let mut c = qemu_user(&self.root, "usr/bin/crash");
        c.arg("-s").arg(vmlinux).arg(dump).arg("-i").arg(&cmds);
        let status = run_with_timeout(&mut c, log, CRASH_TIMEOUT)?;
        let out = fs::read_to_string(log).unwrap_or_default();
        match status {
            Some(s) if s.success() => Ok(out),
            Some(s) => bail!(
                "crash {} {} failed ({s}):\n{}",
                vmlinux.display(),
                dump.display(),
                tail(&out, 15)
            ),
            None => bail!(
                "crash {} {} did not finish within {} s:\n{}",
                vmlinux.display(),
                dump.display(),
                CRASH_TIMEOUT.as_secs(),
                tail(&out, 15)
            ),
        }
    }
}

/// A disk for zipl runs: size, logical block size and its one partition.
pub struct Geometry {
    pub name: &'static str,
    pub disk_size: u64,
    pub sector_size: u32,
    pub part_start: u64,
    pub part_size: u64,
}

/// The two disks of toolchain.md's checked zipl runs, used by the zipl test
/// and by e2e.
pub const GEOMETRIES: [Geometry; 2] = [
    Geometry {
        name: "512",
        disk_size: 64 << 20,
        sector_size: 512,
        part_start: 2048 * 512,
        part_size: 100_000 * 512,
    },
    // zipl reserves 0x10000 logical blocks (256 MiB here), so a 4K disk
    // needs a large partition.
    Geometry {
        name: "4k",
        disk_size: 404 << 20,
        sector_size: 4096,
        part_start: 1 << 20,
        part_size: 400 << 20,
    },
];

/// Creates a sparse raw disk image with a DOS partition table holding one
/// Linux (0x83) partition; start and size count logical blocks of
/// `sector_size`, as Linux reads the table on a disk with that block size.
pub fn create_partitioned_disk(
    path: &Path,
    disk_size: u64,
    sector_size: u32,
    part_start: u64,
    part_size: u64,
) -> Result<()> {
    let bs = sector_size as u64;
    ensure!(
        bs == 512 || bs == 4096,
        "sector size {bs} not supported, use 512 or 4096"
    );
    for (what, v) in [
        ("disk size", disk_size),
        ("partition start", part_start),
        ("partition size", part_size),
    ] {
        ensure!(
            v % bs == 0,
            "{what} {v} is not a multiple of the {bs}-byte sector size"
        );
    }
    ensure!(
        part_start >= bs && part_size > 0,
        "partition start {part_start} overlaps sector 0 or the partition is empty"
    );
    ensure!(
        part_start
            .checked_add(part_size)
            .is_some_and(|e| e <= disk_size),
        "partition {part_start}+{part_size} bytes does not fit the {disk_size}-byte disk"
    );
    let lba = |v: u64| {
        u32::try_from(v / bs)
            .with_context(|| format!("{v} bytes in {bs}-byte sectors exceed a DOS partition table"))
    };
    let mut sector = [0u8; 512];
    let e = &mut sector[0x1be..0x1ce];
    // CHS "use LBA" values, as partitioning tools write (and zfcpdump-disk).
    e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[4] = 0x83;
    e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[8..12].copy_from_slice(&lba(part_start)?.to_le_bytes());
    e[12..16].copy_from_slice(&lba(part_size)?.to_le_bytes());
    sector[0x1fe..].copy_from_slice(&[0x55, 0xaa]);

    let _ = fs::remove_file(path);
    let mut f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.set_len(disk_size)?;
    f.write_all(&sector)?;
    f.sync_all()?;
    Ok(())
}

/// Runs real `zipl --dumpto /dev/sda1` on a new disk image: creates the disk
/// with [`create_partitioned_disk`], builds the helper initramfs (busybox,
/// zipl and its libraries, the dump tool) and boots it in
/// qemu-system-s390x with the disk on virtio-scsi.
pub fn zipl_prepare(cache: &Path, job: &ZiplJob) -> Result<ZiplResult> {
    ensure!(
        have_command("qemu-system-s390x"),
        "qemu-system-s390x not found: install Debian's qemu-system-misc \
         (apt-get install --no-install-recommends qemu-system-misc)"
    );
    for (what, p) in [
        ("helper kernel", job.helper_kernel),
        ("dump tool image", job.dump_image),
    ] {
        ensure!(p.is_file(), "{what} {} does not exist", p.display());
    }
    if let Some(rd) = job.dump_initrd {
        ensure!(
            rd.is_file(),
            "dump tool initrd {} does not exist",
            rd.display()
        );
    }
    let root = unpacked_root(cache, job.offline)?;
    create_partitioned_disk(
        job.disk,
        job.disk_size,
        job.sector_size,
        job.part_start,
        job.part_size,
    )?;
    let rd = sibling(job.disk, "zipl-helper.cpio");
    let log = sibling(job.disk, "zipl-console.log");
    helper_initramfs(&root, job, &rd)?;

    let mut scsi_hd = "scsi-hd,drive=d".to_string();
    if job.sector_size != 512 {
        let bs = job.sector_size;
        scsi_hd.push_str(&format!(
            ",logical_block_size={bs},physical_block_size={bs}"
        ));
    }
    let mut cmd = Command::new("qemu-system-s390x");
    cmd.args([
        "-M",
        "s390-ccw-virtio",
        "-m",
        "512",
        "-nographic",
        "-no-reboot",
    ])
    .arg("-kernel")
    .arg(job.helper_kernel)
    .arg("-initrd")
    .arg(&rd)
    // A synchronous SCSI scan of virtio-scsi's empty targets holds up
    // /init for about 15 s under TCG; /init polls for sda1 instead.
    .args(["-append", "console=ttysclp0 scsi_mod.scan=async"])
    // A guest kernel panic ends QEMU with status 1 instead of hanging.
    .args(["-action", "panic=exit-failure"])
    .arg("-drive")
    .arg(format!(
        "if=none,id=d,file={},format=raw",
        qemu_opt_path(job.disk)?
    ))
    .args(["-device", "virtio-scsi-ccw", "-device", &scsi_hd]);
    progress(format!(
        "zipl guest: zipl --dumpto on {} ({}-byte sectors, partition {:#x}+{}); console: {}",
        job.disk.display(),
        job.sector_size,
        job.part_start,
        job.part_size,
        log.display()
    ));
    let t = Instant::now();
    let status = run_with_timeout(&mut cmd, &log, ZIPL_GUEST_TIMEOUT)?;
    let elapsed = t.elapsed();
    let console = String::from_utf8_lossy(&fs::read(&log)?).into_owned();
    let failure = match status {
        None => Some(format!(
            "the zipl guest did not power off within {} s and was killed",
            ZIPL_GUEST_TIMEOUT.as_secs()
        )),
        Some(_) if console.contains(MARK_NO_DISK) => Some(format!(
            "the helper guest saw no /dev/sda1 within {NO_DISK_SECS} s: its kernel {} \
             probably lacks virtio-scsi (CONFIG_SCSI_VIRTIO=y)",
            job.helper_kernel.display()
        )),
        Some(s) if console.contains(MARK_FAILED) => Some(format!(
            "zipl failed in the guest (QEMU {s}): see zipl's output in the console tail"
        )),
        Some(s) if !s.success() => Some(format!(
            "QEMU exited with {s} (status 1 means a guest kernel panic)"
        )),
        Some(_) if !console.contains(MARK_OK) => {
            Some("the zipl guest powered off without the success marker".to_string())
        }
        Some(_) => None,
    };
    if let Some(why) = failure {
        bail!(
            "{why}.\n--- console tail ({}) ---\n{}\n---\nThe disk image {} and the helper \
             initramfs {} are kept for inspection. The helper kernel must have virtio-scsi \
             (the qemu profile: `cargo xtask dist --profile qemu`).",
            log.display(),
            tail(&console, 40),
            job.disk.display(),
            rd.display()
        );
    }
    let mut mbr = [0u8; 4];
    File::open(job.disk)?.read_exact(&mut mbr)?;
    ensure!(
        &mbr == b"zIPL",
        "zipl reported success but sector 0 of {} has no zIPL magic (guest writes not flushed?)",
        job.disk.display()
    );
    let _ = fs::remove_file(&rd);
    let zipl_output = console
        .split_once(MARK_OUT_BEGIN)
        .and_then(|(_, rest)| rest.split_once(MARK_OUT_END))
        .map(|(out, _)| out.trim().replace('\r', ""))
        .unwrap_or_default();
    progress(format!(
        "zipl guest done in {}: {}",
        secs(elapsed),
        zipl_output.lines().last().unwrap_or("(no zipl output)")
    ));
    Ok(ZiplResult {
        disk: job.disk.to_path_buf(),
        console_log: log,
        zipl_output,
        elapsed,
    })
}

/// `disk.img` -> `disk.img.<suffix>`.
fn sibling(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// QEMU splits -drive options at commas.
fn qemu_opt_path(p: &Path) -> Result<String> {
    let s = p
        .to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))?;
    Ok(s.replace(',', ",,"))
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Runs `cmd` with stdout and stderr into `log`; `None` if it was killed
/// after `timeout`.
fn run_with_timeout(
    cmd: &mut Command,
    log: &Path,
    timeout: Duration,
) -> Result<Option<std::process::ExitStatus>> {
    let f = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone()?)
        .stderr(f)
        .spawn()
        .with_context(|| format!("cannot start {}", cmd.get_program().to_string_lossy()))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The helper guest's /init. Busybox applets are symlinks in /bin.
fn init_script() -> String {
    format!(
        r#"#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "zipl-helper: waiting for /dev/sda1"
# With scsi_mod.scan=async the partition appears shortly after /init starts.
i=0
while [ ! -b /dev/sda1 ]; do
    i=$((i + 1))
    if [ $i -gt {secs} ]; then
        echo "{no_disk} after {secs} s; /proc/partitions:"
        cat /proc/partitions
        poweroff -f
    fi
    sleep 1
done
echo "zipl-helper: sda logical block size $(cat /sys/block/sda/queue/logical_block_size)"
# -n answers zipl's confirmation question with yes.
zipl --noninteractive --verbose --dumpto /dev/sda1 >/tmp/zipl.out 2>&1
rc=$?
sync
echo "{begin}"
cat /tmp/zipl.out
echo "{end}"
if [ $rc -eq 0 ]; then
    echo "{ok}"
else
    echo "{failed}: zipl exited with status $rc"
fi
poweroff -f
"#,
        failed = MARK_FAILED,
        no_disk = MARK_NO_DISK,
        secs = NO_DISK_SECS,
        begin = MARK_OUT_BEGIN,
        end = MARK_OUT_END,
        ok = MARK_OK,
    )
}

/// Busybox applets the init script uses.
const APPLETS: &[&str] = &[
    "sh", "mount", "cat", "echo", "sleep", "sync", "poweroff", "ls", "[",
];

/// Writes the helper guest's initramfs (plain newc cpio).
fn helper_initramfs(root: &Path, job: &ZiplJob, out: &Path) -> Result<()> {
    let f = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = Cpio::new(BufWriter::new(f));
    for d in [
        "bin",
        "sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "lib",
        "lib/s390x-linux-gnu",
        "lib/s390-tools",
        ZFCPDUMP_DIR,
    ] {
        w.dir(d)?;
    }
    // The kernel opens /dev/console for init before devtmpfs is mounted.
    w.char_dev("dev/console", 5, 1)?;
    w.file("bin/busybox", &fs::read(root.join("bin/busybox"))?, 0o755)?;
    for a in APPLETS {
        w.symlink(&format!("bin/{a}"), "busybox")?;
    }
    // zipl and what the loader needs to run it, symlinks resolved.
    let mut have = BTreeSet::new();
    for rel in elf_closure(root, "sbin/zipl")? {
        let data = fs::read(in_root(root, &rel))?;
        ensure_parents(&mut w, &mut have, &rel)?;
        w.file(&rel, &data, 0o755)?;
    }
    // zipl's stage-3 loader and helpers.
    let tools = root.join("lib/s390-tools");
    let mut names: Vec<_> = fs::read_dir(&tools)
        .with_context(|| format!("cannot read {}", tools.display()))?
        .collect::<std::io::Result<_>>()?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let p = e.path();
        if p.is_file() {
            let rel = format!("lib/s390-tools/{}", e.file_name().to_string_lossy());
            w.file(&rel, &fs::read(&p)?, 0o755)?;
        }
    }
    w.file(
        &format!("{ZFCPDUMP_DIR}/zfcpdump-image"),
        &fs::read(job.dump_image)?,
        0o644,
    )?;
    if let Some(rd) = job.dump_initrd {
        w.file(
            &format!("{ZFCPDUMP_DIR}/zfcpdump-initrd"),
            &fs::read(rd)?,
            0o644,
        )?;
    }
    w.file("init", init_script().as_bytes(), 0o755)?;
    let mut inner = w.finish()?;
    inner.flush()?;
    inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

fn ensure_parents<W: Write>(w: &mut Cpio<W>, have: &mut BTreeSet<String>, rel: &str) -> Result<()> {
    let mut cur = String::new();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        if !cur.is_empty() {
            cur.push('/');
        }
        cur.push_str(part);
        // Directories written up front are listed here so they are not repeated.
        let pre = ["lib", "lib/s390x-linux-gnu", "sbin", "bin"];
        if !pre.contains(&cur.as_str()) && have.insert(cur.clone()) {
            w.dir(&cur)?;
        }
    }
    Ok(())
}

/// A minimal newc writer over the cpio crate.
struct Cpio<W: Write> {
    w: W,
    ino: u32,
}

impl<W: Write> Cpio<W> {
    fn new(w: W) -> Self {
        Cpio { w, ino: 1 }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) -> Result<()> {
        let size = u32::try_from(data.len()).context("file too large for cpio")?;
        self.ino += 1;
        let mut e = cpio::newc::Builder::new(name)
            .ino(self.ino)
            .mode(mode)
            .nlink(if mode & 0o170000 == 0o040000 { 2 } else { 1 })
            .rdev_major(rdev.0)
            .rdev_minor(rdev.1)
            .write(&mut self.w, size);
        e.write_all(data)?;
        e.finish()?;
        Ok(())
    }

    fn dir(&mut self, name: &str) -> Result<()> {
        self.entry(name, 0o040755, &[], (0, 0))
    }

    fn file(&mut self, name: &str, data: &[u8], perm: u32) -> Result<()> {
        self.entry(name, 0o100000 | perm, data, (0, 0))
    }

    fn symlink(&mut self, name: &str, target: &str) -> Result<()> {
        self.entry(name, 0o120777, target.as_bytes(), (0, 0))
    }

    fn char_dev(&mut self, name: &str, major: u32, minor: u32) -> Result<()> {
        self.entry(name, 0o020600, &[], (major, minor))
    }

    fn finish(self) -> Result<W> {
        Ok(cpio::newc::trailer(self.w)?)
    }
}

/// Reads `len` bytes at `offset` of a file: for checks of what zipl wrote.
pub fn read_at(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    f.seek(SeekFrom::Start(offset))?;
    let mut b = vec![0u8; len];
    f.read_exact(&mut b).with_context(|| {
        format!(
            "cannot read {len} bytes at {offset:#x} of {}",
            path.display()
        )
    })?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_zgetdump_info() {
        let text = "General dump info:\n  Dump format........: elf\n  Version............: 1\n  \
                    System arch........: s390x (64 bit)\n  CPU count (online).: 3\n  \
                    Dump memory range..: 10 MB\n\nMemory map:\n  \
                    0000000000000000 - 00000000003fffff (4 MB)\n  \
                    0000000000800000 - 00000000009fffff (2 MB)\n";
        let i = ZgetdumpInfo::parse(text).unwrap();
        assert_eq!(i.format, "elf");
        assert_eq!(i.cpus, 3);
        assert_eq!(i.memory_range_mib, 10);
        assert_eq!(i.memory_map, vec![0..0x400000, 0x800000..0xa00000]);
        assert_eq!(i.memory_bytes(), 6 << 20);
        assert_eq!(i.field("System arch"), Some("s390x (64 bit)"));
        assert!(ZgetdumpInfo::parse("zgetdump: Trying to seek past file end").is_err());
    }

    #[test]
    fn dos_table_counts_logical_blocks() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("disk");
        create_partitioned_disk(&p, 404 << 20, 4096, 1 << 20, 400 << 20).unwrap();
        let s = read_at(&p, 0, 512).unwrap();
        assert_eq!(&s[0x1c6..0x1ca], &256u32.to_le_bytes());
        assert_eq!(&s[0x1ca..0x1ce], &102_400u32.to_le_bytes());
        assert_eq!(s[0x1c2], 0x83);
        assert_eq!(&s[0x1fe..], &[0x55, 0xaa]);
        assert_eq!(fs::metadata(&p).unwrap().len(), 404 << 20);
        assert!(create_partitioned_disk(&p, 1 << 20, 4096, 512, 4096).is_err());
    }
}
