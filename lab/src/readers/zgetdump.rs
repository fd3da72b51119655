//! zgetdump, the s390-tools dump reader, under qemu-user.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

use super::sysroot::{DEBIAN_12, package_version};
use super::{qemu_user, require_qemu_user};
use zfcpdump_builder::util::version_at_least;

/// Debian's zgetdump (2.16 from Debian 12, 2.35 from Debian 13), run under
/// `qemu-s390x-static` from a sysroot.
#[derive(Debug, Clone)]
pub struct Zgetdump {
    root: PathBuf,
    /// The s390-tools package version, e.g. `2.35.0-1`.
    pub version: String,
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
                if let (Some(a), Some("-"), Some(b)) = (it.next(), it.next(), it.next()) {
                    if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))
                    {
                        memory_map.push(a..b + 1);
                        continue;
                    }
                }
                in_map = false;
            }
            // "CPU count (online).: 3": dots pad the key to a column.
            if let Some((k, v)) = t.split_once(':').filter(|(k, _)| k.ends_with('.')) {
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
    /// zgetdump from a sysroot made by [`Sysroot::unpacked_root`](super::sysroot::Sysroot::unpacked_root).
    pub fn new(root: &Path) -> Result<Zgetdump> {
        ensure!(
            root.join("sbin/zgetdump").is_file(),
            "{} has no sbin/zgetdump: not an s390-tools sysroot",
            root.display()
        );
        require_qemu_user("zgetdump")?;
        let version = package_version(root, "s390-tools")?;
        Ok(Zgetdump {
            root: root.to_path_buf(),
            version,
        })
    }

    /// Whether this zgetdump reads `p_filesz < p_memsz` as zeros, as
    /// s390-tools 2.33.0 and later do ("Fix handling of PT_LOAD segments
    /// with p_filesz < p_memsz in ELF DFI"); 2.16 reads the file instead.
    pub fn reads_tails(&self) -> bool {
        version_at_least(&self.version, (2, 33))
    }

    /// zgetdump from the cached sysroot, downloading it unless `offline`.
    pub fn from_cache(cache: &Path, offline: bool) -> Result<Zgetdump> {
        Zgetdump::new(&DEBIAN_12.unpacked_root(cache, offline)?)
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
}
