//! Byte-level helpers on (mostly sparse) images: copies that keep holes and
//! comparisons that name the first differing byte.

use std::fs::{self, File};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result};

pub(crate) const CHUNK: usize = 1 << 20;

/// Copies a (mostly sparse) image, leaving holes where a chunk is all zero.
pub(crate) fn sparse_copy(from: &Path, to: &Path) -> Result<()> {
    let len = fs::metadata(from)
        .with_context(|| format!("cannot stat {}", from.display()))?
        .len();
    sparse_copy_range(from, 0, len, to)
}

/// Copies bytes `[start, start + len)` of `from` into a new sparse file.
pub(crate) fn sparse_copy_range(from: &Path, start: u64, len: u64, to: &Path) -> Result<()> {
    let src = File::open(from).with_context(|| format!("cannot open {}", from.display()))?;
    let _ = fs::remove_file(to);
    let dst = File::create(to).with_context(|| format!("cannot create {}", to.display()))?;
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(CHUNK as u64) as usize;
        src.read_exact_at(&mut buf[..n], start + off)
            .with_context(|| format!("cannot read {}", from.display()))?;
        if buf[..n].iter().any(|&b| b != 0) {
            dst.write_all_at(&buf[..n], off)
                .with_context(|| format!("cannot write {}", to.display()))?;
        }
        off += n as u64;
    }
    dst.set_len(len)?;
    dst.sync_all()?;
    Ok(())
}

/// Compares `len` bytes of `a` at `at` with the start of `b`; returns the
/// first differing offset relative to `at`.
pub(crate) fn compare_range(a: &Path, at: u64, b: &Path, len: u64) -> Result<Option<u64>> {
    let fa = File::open(a).with_context(|| format!("cannot open {}", a.display()))?;
    let fb = File::open(b).with_context(|| format!("cannot open {}", b.display()))?;
    let (mut ba, mut bb) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut off = 0;
    while off < len {
        let n = (len - off).min(CHUNK as u64) as usize;
        fa.read_exact_at(&mut ba[..n], at + off)
            .with_context(|| format!("cannot read {} at {:#x}", a.display(), at + off))?;
        fb.read_exact_at(&mut bb[..n], off)
            .with_context(|| format!("cannot read {} at {off:#x}", b.display()))?;
        if let Some(i) = ba[..n].iter().zip(&bb[..n]).position(|(x, y)| x != y) {
            return Ok(Some(off + i as u64));
        }
        off += n as u64;
    }
    Ok(None)
}

/// The first byte at which two images differ, outside `skip`; a size
/// difference counts as a difference at the shorter size.
pub(crate) fn first_difference(a: &Path, b: &Path, skip: &[Range<u64>]) -> Result<Option<u64>> {
    let la = fs::metadata(a)?.len();
    let lb = fs::metadata(b)?.len();
    if la != lb {
        return Ok(Some(la.min(lb)));
    }
    let fa = File::open(a).with_context(|| format!("cannot open {}", a.display()))?;
    let fb = File::open(b).with_context(|| format!("cannot open {}", b.display()))?;
    let (mut ba, mut bb) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let skipped = |x: u64| skip.iter().any(|r| r.contains(&x));
    let mut off = 0;
    while off < la {
        let n = (la - off).min(CHUNK as u64) as usize;
        if skip
            .iter()
            .any(|r| r.start <= off && off + n as u64 <= r.end)
        {
            off += n as u64;
            continue;
        }
        fa.read_exact_at(&mut ba[..n], off)?;
        fb.read_exact_at(&mut bb[..n], off)?;
        if ba[..n] != bb[..n] {
            if let Some(i) = (0..n).find(|&i| ba[i] != bb[i] && !skipped(off + i as u64)) {
                return Ok(Some(off + i as u64));
            }
        }
        off += n as u64;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_outside_allowed_ranges() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        let mut data = vec![0u8; 3 * CHUNK];
        fs::write(&a, &data).unwrap();
        data[CHUNK + 5] = 1;
        data[2 * CHUNK + 7] = 1;
        fs::write(&b, &data).unwrap();
        assert_eq!(
            first_difference(&a, &b, &[]).unwrap(),
            Some(CHUNK as u64 + 5)
        );
        let skip = CHUNK as u64..CHUNK as u64 + 6;
        assert_eq!(
            first_difference(&a, &b, std::slice::from_ref(&skip)).unwrap(),
            Some(2 * CHUNK as u64 + 7)
        );
        let all = 0..3 * CHUNK as u64;
        assert_eq!(
            first_difference(&a, &b, std::slice::from_ref(&all)).unwrap(),
            None
        );

        let c = d.path().join("c");
        sparse_copy_range(&b, CHUNK as u64, CHUNK as u64 + 10, &c).unwrap();
        assert_eq!(
            compare_range(&b, CHUNK as u64, &c, CHUNK as u64 + 10).unwrap(),
            None
        );
        assert_eq!(compare_range(&a, CHUNK as u64, &c, 10).unwrap(), Some(5));
    }
}
