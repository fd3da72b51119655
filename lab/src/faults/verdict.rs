//! What a fault left on the disk: `zfcpdump-disk status`'s answer, the bytes
//! changed outside the dump area, and the rule that no fault may break: a
//! dump area that starts with an ELF header holds a whole dump, byte for
//! byte (the new one or the older one), and the readers refuse anything
//! else.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use zfcpdump_format::elf::ELF_MAGIC;

use crate::checks::files::{CHUNK, compare_range};
use crate::sources::Source;

/// `zfcpdump-disk status` of a disk, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    /// The `state:` line: complete, incomplete, empty, invalid.
    pub(crate) state: String,
    /// For a complete dump: `kernel …, crash time …`, what identifies it.
    pub(crate) identity: Option<String>,
    /// The `problem:` line of an invalid disk.
    pub(crate) problem: Option<String>,
    /// The checksum did not cover the busy marker yet.
    pub(crate) stale_checksum: bool,
    pub(crate) exit: Option<i32>,
    pub(crate) text: String,
}

impl Status {
    pub(crate) fn of(disk_tool: &Path, disk: &Path) -> Result<Status> {
        let out = Command::new(disk_tool)
            .arg("status")
            .arg(disk)
            .output()
            .context("cannot run zfcpdump-disk")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        let identity = match (field("kernel:"), field("crash time:")) {
            (None, None) => None,
            (k, t) => Some(format!(
                "kernel {}, crashed {}",
                k.unwrap_or_else(|| "?".into()),
                t.unwrap_or_else(|| "?".into())
            )),
        };
        Ok(Status {
            state: field("state:").unwrap_or_else(|| "(no state line)".into()),
            identity,
            problem: field("problem:"),
            stale_checksum: text.contains("checksum:    stale"),
            exit: out.status.code(),
            text: format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
        })
    }

    /// One cell of the report.
    pub(crate) fn describe(&self) -> String {
        match (&self.identity, &self.problem) {
            _ if self.stale_checksum => format!("{} (checksum stale)", self.state),
            (Some(id), _) if self.state == "complete" => format!("complete: {id}"),
            (_, Some(p)) => {
                let short = p.split(':').next().unwrap_or(p);
                format!("{}: {short}", self.state)
            }
            _ => self.state.clone(),
        }
    }
}

/// Bytes that differ between `before` and `after` outside `area`, and
/// whether they all lie in `allowed` (the checksum field).
pub(crate) fn changed_outside(
    before: &Path,
    after: &Path,
    area: Range<u64>,
    allowed: Range<u64>,
) -> Result<(u64, bool)> {
    let fa = File::open(before).with_context(|| format!("cannot open {}", before.display()))?;
    let fb = File::open(after).with_context(|| format!("cannot open {}", after.display()))?;
    let len = fa.metadata()?.len();
    if fb.metadata()?.len() != len {
        return Ok((u64::MAX, false));
    }
    let (mut a, mut b) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let (mut count, mut ok) = (0, true);
    let mut off = 0;
    while off < len {
        let n = (len - off).min(CHUNK as u64) as usize;
        let chunk = off..off + n as u64;
        if area.start <= chunk.start && chunk.end <= area.end {
            off += n as u64;
            continue;
        }
        fa.read_exact_at(&mut a[..n], off)?;
        fb.read_exact_at(&mut b[..n], off)?;
        if a[..n] != b[..n] {
            for i in 0..n {
                let at = off + i as u64;
                if a[i] != b[i] && !area.contains(&at) {
                    count += 1;
                    ok &= allowed.contains(&at);
                }
            }
        }
        off += n as u64;
    }
    Ok((count, ok))
}

/// Which dump an ELF-headed dump area holds, byte for byte.
pub(crate) enum Holds {
    /// No ELF header at the start of the dump area.
    NoElf,
    /// Equal to this source's ELF extent (its name).
    Exact(&'static str),
    /// An ELF header over anything else: what must never happen.
    Mixed(String),
}

/// Compares an ELF-headed dump area with each candidate vmcore.
pub(crate) fn holds(disk: &Path, area_start: u64, candidates: &[&Source]) -> Result<Holds> {
    let f = File::open(disk).with_context(|| format!("cannot open {}", disk.display()))?;
    let mut magic = [0u8; 4];
    f.read_exact_at(&mut magic, area_start)?;
    if magic != ELF_MAGIC {
        return Ok(Holds::NoElf);
    }
    let mut why = Vec::new();
    for src in candidates {
        match compare_range(disk, area_start, &src.file, src.extent)? {
            None => return Ok(Holds::Exact(src.name)),
            Some(at) => why.push(format!("{} at byte {at:#x}", src.name)),
        }
    }
    Ok(Holds::Mixed(format!(
        "an ELF header starts the dump area, but it differs from {}",
        why.join(" and from ")
    )))
}

/// Whether the 4 KiB at `at` of `disk` are all zero.
pub(crate) fn zero_block(disk: &Path, at: u64) -> Result<bool> {
    let f = File::open(disk).with_context(|| format!("cannot open {}", disk.display()))?;
    let mut b = vec![0u8; 4096];
    f.read_exact_at(&mut b, at)?;
    Ok(b.iter().all(|&x| x == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_outside_the_area_are_counted_and_placed() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        let mut data = vec![0u8; 3 * CHUNK];
        fs_write(&a, &data);
        // Inside the area: not counted. In the csum field: counted, allowed.
        data[CHUNK + 10] = 1;
        data[100] = 1;
        data[101] = 2;
        fs_write(&b, &data);
        let area = CHUNK as u64..2 * CHUNK as u64;
        assert_eq!(
            changed_outside(&a, &b, area.clone(), 96..104).unwrap(),
            (2, true)
        );
        // Elsewhere: counted, not allowed.
        data[2 * CHUNK + 5] = 9;
        fs_write(&b, &data);
        assert_eq!(changed_outside(&a, &b, area, 96..104).unwrap(), (3, false));
    }

    fn fs_write(p: &Path, data: &[u8]) {
        std::fs::write(p, data).unwrap();
    }
}
