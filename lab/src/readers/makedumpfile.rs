//! makedumpfile, the kdump filter, under qemu-user, as the reference for
//! page exclusion: its per-class page counts for a dump level, the dumpable
//! bitmap of its kdump-compressed output and the size of its ELF output. It
//! reads an s390x ELF core as is (VMCOREINFO from the note; no vmlinux, no
//! flags for a file that is not /proc/vmcore). Formats: its `diskdump_mod.h`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use super::sysroot::{CURRENT, DEBIAN_12, elf_closure, package_version};
use super::{qemu_user, require_qemu_user};
use crate::{run_with_timeout, tail};
use zfcpdump_builder::util::version_at_least;

const BIN: &str = "usr/bin/makedumpfile";
/// A 512 MiB dump takes about 0.5 s at `-d 31`, 3 s at `-d 0`.
const TIMEOUT: Duration = Duration::from_secs(600);
/// `--message-level`: common (2), error (4) and report (16) messages; not
/// the progress indicator (1) nor debug (8).
const MESSAGE_LEVEL: &str = "22";

/// Debian's s390x makedumpfile (1.7.2 from Debian 12, 1.7.8 from sid).
#[derive(Debug, Clone)]
pub struct Makedumpfile {
    root: PathBuf,
    /// The package version, e.g. `1:1.7.8-1`.
    pub version: String,
}

/// makedumpfile's report, in pages. `original` is `total - memory_hole`
/// with the pages of overlapping PT_LOADs (6.12's text segment) counted
/// twice, and `remaining` is `original - excluded`; the classes count each
/// page once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExcludedCounts {
    pub original: u64,
    pub excluded: u64,
    pub zero: u64,
    pub cache: u64,
    pub cache_private: u64,
    pub user: u64,
    pub free: u64,
    pub hwpoison: u64,
    pub offline: u64,
    /// "Extension filter pages": makedumpfile after 1.7.8 only, else 0.
    pub extension: u64,
    pub remaining: u64,
    pub memory_hole: u64,
    /// "Total pages": max_mapnr.
    pub total: u64,
    pub write_bytes: u64,
    /// With `-E`: the excluded and remaining pages "in ELF format".
    pub elf_excluded: Option<u64>,
    pub elf_remaining: Option<u64>,
    /// "The kernel version is not supported." (1.7.2 on 6.1, which it
    /// filters all the same, as 1.7.8 does).
    pub unsupported_kernel: bool,
}

impl ExcludedCounts {
    /// The excluded pages per class: the dump-level classes in
    /// `zfcpdump_format::filter::CLASSES` order (zero, cache, cache_private,
    /// user, free), then hwpoison and offline, which it always leaves out.
    pub fn classes(&self) -> [u64; 7] {
        [
            self.zero,
            self.cache,
            self.cache_private,
            self.user,
            self.free,
            self.hwpoison,
            self.offline,
        ]
    }

    /// Parses makedumpfile's output with report messages (`print_report`).
    pub fn parse(text: &str) -> Result<ExcludedCounts> {
        let mut c = ExcludedCounts {
            unsupported_kernel: text.contains("The kernel version is not supported."),
            ..Default::default()
        };
        let (mut seen, mut last) = (Vec::new(), "");
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            let field = match (key, last) {
                ("Original pages", _) => &mut c.original,
                ("Excluded pages", _) => &mut c.excluded,
                ("Pages filled with zero", _) => &mut c.zero,
                ("Non-private cache pages", _) => &mut c.cache,
                ("Private cache pages", _) => &mut c.cache_private,
                ("User process data pages", _) => &mut c.user,
                ("Free pages", _) => &mut c.free,
                ("Hwpoison pages", _) => &mut c.hwpoison,
                ("Offline pages", _) => &mut c.offline,
                ("Extension filter pages", _) => &mut c.extension,
                ("Remaining pages", _) => &mut c.remaining,
                ("Memory Hole", _) => &mut c.memory_hole,
                ("Total pages", _) => &mut c.total,
                ("Write bytes", _) => &mut c.write_bytes,
                ("in ELF format", "Excluded pages") => c.elf_excluded.insert(0),
                ("in ELF format", "Remaining pages") => c.elf_remaining.insert(0),
                _ => continue,
            };
            *field = match value.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => value.parse(),
            }
            .with_context(|| format!("makedumpfile report: bad number in '{line}'"))?;
            seen.push(key);
            last = key;
        }
        let required = ["Original pages", "Excluded pages", "Pages filled with zero"];
        let required = required
            .iter()
            .chain(&["Free pages", "Remaining pages", "Total pages"]);
        if let Some(key) = required.into_iter().find(|k| !seen.contains(k)) {
            bail!(
                "makedumpfile printed no '{key}' line (no report: a --message-level without \
                 16?):\n{}",
                tail(text, 15)
            );
        }
        let classes = c.classes();
        ensure!(
            classes.iter().sum::<u64>() + c.extension == c.excluded
                && c.original.checked_sub(c.excluded) == Some(c.remaining)
                && c.total.checked_sub(c.memory_hole) == Some(c.original),
            "makedumpfile's report does not add up ({c:?}):\n{}",
            tail(text, 25)
        );
        Ok(c)
    }
}

/// The dumpable (second) bitmap of a kdump-compressed file, and which of
/// its pages are stored as the one shared zero page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpableBitmap {
    /// Pages the bitmaps cover (the sub header's `max_mapnr_64`).
    pub max_mapnr: u64,
    /// The sub header's dump level.
    pub dump_level: u8,
    /// Pages in the first bitmap: the distinct pages of the PT_LOADs.
    pub present: u64,
    bits: Vec<u8>,
    zero: Vec<u8>,
}

fn bit(bits: &[u8], pfn: u64) -> bool {
    bits.get((pfn / 8) as usize)
        .is_some_and(|b| b & (1 << (pfn % 8)) != 0)
}

fn ones(bits: &[u8]) -> u64 {
    bits.iter().map(|b| u64::from(b.count_ones())).sum()
}

fn be_u32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(d[at..at + 4].try_into().unwrap())
}

fn be_u64(d: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(d[at..at + 8].try_into().unwrap())
}

// Offsets in `struct disk_dump_header` on s390x (64-bit, big-endian): the
// 8-byte signature, header_version, utsname (6 * 65), timeval at 408, ...
const DH_VERSION: usize = 8;
const DH_BLOCK_SIZE: usize = 428;
const DH_SUB_HDR_SIZE: usize = 432;
const DH_BITMAP_BLOCKS: usize = 436;
const DH_MAX_MAPNR: usize = 440;
// In `struct kdump_sub_header` (block 1): dump_level, max_mapnr_64 (v6+).
const KH_DUMP_LEVEL: usize = 8;
const KH_MAX_MAPNR_64: usize = 96;
/// `struct page_desc`: offset (8 bytes), size, flags, page_flags (8).
const PAGE_DESC: usize = 24;

impl DumpableBitmap {
    /// Whether makedumpfile kept the page, zero pages included (stored as
    /// the one shared zero page, see [`DumpableBitmap::is_zero`]).
    pub fn is_dumpable(&self, pfn: u64) -> bool {
        pfn < self.max_mapnr && bit(&self.bits, pfn)
    }

    /// Whether a kept page is one of the "Pages filled with zero" (only with
    /// dump level bit 1).
    pub fn is_zero(&self, pfn: u64) -> bool {
        pfn < self.max_mapnr && bit(&self.zero, pfn)
    }

    /// Pages in the dumpable bitmap: the report's remaining + zero pages,
    /// less `original - present` (pages it counted twice).
    pub fn count(&self) -> u64 {
        ones(&self.bits)
    }

    /// Kept pages stored as the shared zero page: the report's zero pages.
    pub fn zero_count(&self) -> u64 {
        ones(&self.zero)
    }

    /// Parses a kdump-compressed file (`makedumpfile -l`) written on s390x:
    /// the header (block 0), the sub header (from block 1), the two bitmaps
    /// (each half of `bitmap_blocks`; bit `pfn % 8` of byte `pfn / 8`), a
    /// page descriptor per dumpable page, the page data.
    pub fn parse(data: &[u8]) -> Result<DumpableBitmap> {
        ensure!(
            data.len() >= DH_MAX_MAPNR + 4 && data.starts_with(b"KDUMP   "),
            "not a kdump-compressed file: no 'KDUMP   ' header (starts {:02x?})",
            &data[..data.len().min(8)]
        );
        let block = be_u32(data, DH_BLOCK_SIZE) as usize;
        let sub_blocks = be_u32(data, DH_SUB_HDR_SIZE) as usize;
        let bitmap_blocks = be_u32(data, DH_BITMAP_BLOCKS) as usize;
        ensure!(
            block.is_power_of_two() && block > DH_MAX_MAPNR && (1..=1024).contains(&sub_blocks),
            "kdump header: implausible block_size {block} or sub_hdr_size {sub_blocks}"
        );
        ensure!(
            bitmap_blocks > 0 && bitmap_blocks % 2 == 0 && bitmap_blocks <= 1 << 24,
            "kdump header: bitmap_blocks {bitmap_blocks} is not two equal bitmaps"
        );
        let (bitmap1, half) = ((1 + sub_blocks) * block, bitmap_blocks * block / 2);
        let descs = bitmap1 + 2 * half;
        ensure!(
            data.len() >= descs,
            "kdump file of {} bytes ends in its headers or bitmaps (up to {descs})",
            data.len()
        );
        let sub = &data[block..];
        let max_mapnr = match be_u32(data, DH_VERSION) {
            6.. => be_u64(sub, KH_MAX_MAPNR_64),
            _ => u64::from(be_u32(data, DH_MAX_MAPNR)),
        };
        let used = max_mapnr.div_ceil(8) as usize;
        ensure!(
            used <= half,
            "kdump header: max_mapnr {max_mapnr} does not fit a bitmap of {half} bytes"
        );
        let present = &data[bitmap1..bitmap1 + used];
        let mut bits = data[bitmap1 + half..bitmap1 + half + used].to_vec();
        if max_mapnr % 8 != 0 {
            bits[used - 1] &= (1u8 << (max_mapnr % 8)) - 1;
        }
        if let Some(i) = (0..used).find(|&i| bits[i] & !present[i] != 0) {
            bail!(
                "kdump bitmaps: a page near pfn {:#x} is dumpable but not in memory",
                i * 8
            );
        }
        let (dump_level, n) = (be_u32(sub, KH_DUMP_LEVEL) as u8, ones(&bits) as usize);
        let table = data
            .get(descs..descs + n * PAGE_DESC)
            .with_context(|| format!("kdump file ends in its {n} page descriptors"))?;
        let mut zero = vec![0; used];
        if dump_level & 1 != 0 {
            // Each zero page's descriptor points at the one zero page, the
            // first data after the table.
            let zero_page = (descs + n * PAGE_DESC) as u64;
            let pfns = (0..max_mapnr).filter(|&p| bit(&bits, p));
            for (d, pfn) in table.chunks_exact(PAGE_DESC).zip(pfns) {
                if be_u64(d, 0) == zero_page {
                    zero[(pfn / 8) as usize] |= 1 << (pfn % 8);
                }
            }
        }
        let present = ones(present);
        Ok(DumpableBitmap {
            max_mapnr,
            dump_level,
            present,
            bits,
            zero,
        })
    }
}

impl Makedumpfile {
    /// makedumpfile from a sysroot made by [`Sysroot::unpacked_root`](super::sysroot::Sysroot::unpacked_root).
    pub fn new(root: &Path) -> Result<Makedumpfile> {
        ensure!(
            root.join(BIN).is_file(),
            "{} has no {BIN}: the sysroot predates makedumpfile in its package list",
            root.display()
        );
        elf_closure(root, BIN)?;
        require_qemu_user("makedumpfile")?;
        let version = package_version(root, "makedumpfile")?;
        Ok(Makedumpfile {
            root: root.to_path_buf(),
            version,
        })
    }

    /// sid's makedumpfile 1.7.8 ([`CURRENT`]), for 6.12.
    pub fn current(cache: &Path, offline: bool) -> Result<Makedumpfile> {
        Makedumpfile::new(&CURRENT.unpacked_root(cache, offline)?)
    }

    /// Debian 12's makedumpfile 1.7.2 ([`DEBIAN_12`]), for 6.1.
    pub fn debian12(cache: &Path, offline: bool) -> Result<Makedumpfile> {
        Makedumpfile::new(&DEBIAN_12.unpacked_root(cache, offline)?)
    }

    /// The one for a kernel release: Debian 12's before 6.10, as
    /// [`super::Readers::for_kernel`] picks.
    pub fn for_kernel(release: &str, cache: &Path, offline: bool) -> Result<Makedumpfile> {
        match version_at_least(release, (6, 10)) {
            true => Makedumpfile::current(cache, offline),
            false => Makedumpfile::debian12(cache, offline),
        }
    }

    /// `makedumpfile FLAGS -d LEVEL DUMP OUT` in `work` (its TMPDIR too),
    /// OUT being `work/makedumpfile-dLEVEL.EXT`, the log `OUT.log`: returns
    /// OUT and the report.
    fn run(
        &self,
        flags: &[&str],
        ext: &str,
        dump: &Path,
        level: u8,
        work: &Path,
    ) -> Result<(PathBuf, ExcludedCounts)> {
        ensure!(level <= 31, "dump level {level} is not 0..=31");
        let dump = fs::canonicalize(dump).with_context(|| format!("no dump {}", dump.display()))?;
        fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
        let work = fs::canonicalize(work)?;
        let out = work.join(format!("makedumpfile-d{level}.{ext}"));
        let log = work.join(format!("makedumpfile-d{level}.{ext}.log"));
        let _ = fs::remove_file(&out); // makedumpfile refuses to overwrite it
        let mut c = qemu_user(&self.root, BIN);
        c.args(flags)
            .args(["-d", &level.to_string(), "--message-level", MESSAGE_LEVEL]);
        c.arg(&dump)
            .arg(&out)
            .current_dir(&work)
            .env("TMPDIR", &work);
        let what = format!(
            "makedumpfile {} {} -d {level} {}",
            self.version,
            flags.join(" "),
            dump.display()
        );
        let status = run_with_timeout(&mut c, &log, TIMEOUT)?;
        let text = fs::read_to_string(&log).unwrap_or_default();
        match status {
            Some(s) if s.success() => {}
            Some(s) => bail!("{what} failed ({s}):\n{}", tail(&text, 15)),
            None => bail!(
                "{what} did not finish within {TIMEOUT:?}:\n{}",
                tail(&text, 15)
            ),
        }
        let counts = ExcludedCounts::parse(&text)
            .with_context(|| format!("{what}, log {}", log.display()))?;
        Ok((out, counts))
    }

    /// The report of `makedumpfile -l --dry-run -d LEVEL` (nothing written).
    pub fn counts(&self, dump: &Path, level: u8, work: &Path) -> Result<ExcludedCounts> {
        Ok(self
            .run(&["-l", "--dry-run"], "dry-run", dump, level, work)?
            .1)
    }

    /// `makedumpfile -l -d LEVEL`: the dumpable bitmap of its output
    /// (`work/makedumpfile-dLEVEL.kdump`, kept), checked against its report.
    pub fn dumpable(
        &self,
        dump: &Path,
        level: u8,
        work: &Path,
    ) -> Result<(DumpableBitmap, ExcludedCounts)> {
        let (out, c) = self.run(&["-l"], "kdump", dump, level, work)?;
        let data = fs::read(&out).with_context(|| format!("cannot read {}", out.display()))?;
        let map =
            DumpableBitmap::parse(&data).with_context(|| format!("parsing {}", out.display()))?;
        ensure!(
            map.dump_level == level
                && map.count() + c.original == c.remaining + c.zero + map.present,
            "{}: dump level {}, {} dumpable of {} present pages, but the report says level \
             {level}, {} remaining + {} zero of {} original",
            out.display(),
            map.dump_level,
            map.count(),
            map.present,
            c.remaining,
            c.zero,
            c.original
        );
        Ok((map, c))
    }

    /// `makedumpfile -E -d LEVEL`: the size of its ELF output (then
    /// removed), and its report.
    pub fn elf_size(&self, dump: &Path, level: u8, work: &Path) -> Result<(u64, ExcludedCounts)> {
        let (out, counts) = self.run(&["-E"], "elf", dump, level, work)?;
        let bytes = fs::metadata(&out)
            .with_context(|| format!("no {}", out.display()))?
            .len();
        let _ = fs::remove_file(&out);
        Ok((bytes, counts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// makedumpfile 1.7.2's output of `-E -d 31 --message-level 22` on a 6.1 dump.
    const ELF_REPORT: &str = "The kernel version is not supported.\n\
        STEP [Copying data               ] : 0.061313 seconds\n\n\
        Original pages  : 0x000000000001e000\n  Excluded pages   : 0x000000000001cc11\n     \
        in ELF format : 0x000000000001c545\n    Pages filled with zero  : 0x000000000000028a\n    \
        Non-private cache pages : 0x0000000000000ec6\n    Private cache pages     : 0x0000000000000000\n    \
        User process data pages : 0x0000000000000017\n    Free pages              : 0x000000000001baaa\n    \
        Hwpoison pages          : 0x0000000000000000\n    Offline pages           : 0x0000000000000000\n  \
        Remaining pages  : 0x00000000000013ef\n     in ELF format : 0x0000000000001abb\n  \
        (The number of pages is reduced to 5%.)\nMemory Hole     : 0x0000000000000000\n\
        --------------------------------------------------\nTotal pages     : 0x000000000001e000\n\
        Write bytes     : 28035656\n\nCache hit: 10027, miss: 1092, hit rate: 90.2%\n\n\n\
        The dumpfile is saved to e.elf.\n\nmakedumpfile Completed.\n";

    #[test]
    fn parses_the_report() {
        let c = ExcludedCounts::parse(ELF_REPORT).unwrap();
        let classes = c.classes();
        assert_eq!(classes, [0x28a, 0xec6, 0, 0x17, 0x1baaa, 0, 0]);
        let totals = [
            c.original,
            c.excluded,
            c.remaining,
            c.memory_hole,
            c.total,
            c.write_bytes,
        ];
        assert_eq!(totals, [0x1e000, 0x1cc11, 0x13ef, 0, 0x1e000, 28035656]);
        assert_eq!(
            [c.elf_excluded, c.elf_remaining],
            [Some(0x1c545), Some(0x1abb)]
        );
        assert!(c.unsupported_kernel);
        let plain = ELF_REPORT.replace("The kernel version is not supported.\n", "");
        let c = ExcludedCounts::parse(&plain.replace("in ELF format : 0x000000000001c545", ""))
            .unwrap();
        assert_eq!(
            (c.elf_excluded, c.elf_remaining, c.unsupported_kernel),
            (None, Some(0x1abb), false)
        );
    }

    #[test]
    fn rejects_bad_reports() {
        let err = |t: &str| format!("{:#}", ExcludedCounts::parse(t).unwrap_err());
        assert!(err("makedumpfile Failed.\n").contains("no 'Original pages' line"));
        assert!(err(&ELF_REPORT.replace("Free pages  ", "Freed")).contains("no 'Free pages' line"));
        assert!(err(&ELF_REPORT.replace("0x0000000000000017", "0x18")).contains("does not add up"));
        assert!(err(&ELF_REPORT.replace("0x000000000001baaa", "0x1bzzz")).contains("bad number"));
    }

    /// A kdump-compressed file as makedumpfile writes it on s390x: block
    /// size 4096, a one-block sub header, two one-block bitmaps for 20
    /// pages (present: all; dumpable: `kept`), a descriptor for each kept
    /// page, the shared zero page (of the pages in `zero`), the other data.
    fn kdump(kept: &[u64], zero: &[u64], level: u32) -> Vec<u8> {
        let mut d = vec![0u8; 4 * 4096];
        d[..8].copy_from_slice(b"KDUMP   ");
        let fields = [(DH_VERSION, 6), (DH_BLOCK_SIZE, 4096), (DH_SUB_HDR_SIZE, 1)];
        let fields = fields
            .into_iter()
            .chain([(DH_BITMAP_BLOCKS, 2), (DH_MAX_MAPNR, 20)]);
        for (at, v) in fields.chain([(4096 + KH_DUMP_LEVEL, level)]) {
            d[at..at + 4].copy_from_slice(&v.to_be_bytes());
        }
        d[4096 + KH_MAX_MAPNR_64..][..8].copy_from_slice(&20u64.to_be_bytes());
        d[2 * 4096..][..3].copy_from_slice(&[0xff, 0xff, 0x0f]);
        for &pfn in kept {
            d[3 * 4096 + (pfn / 8) as usize] |= 1 << (pfn % 8);
        }
        let zero_page = (d.len() + kept.len() * PAGE_DESC) as u64;
        let mut next = zero_page + 4096;
        for pfn in (0..20).filter(|p| kept.contains(p)) {
            let at = if zero.contains(&pfn) { zero_page } else { next };
            next += if zero.contains(&pfn) { 0 } else { 100 };
            d.extend_from_slice(&at.to_be_bytes());
            d.extend_from_slice(&[0, 0, 0, 100, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
        }
        d.resize(next as usize, 0);
        d
    }

    #[test]
    fn parses_the_dumpable_bitmap() {
        let m = DumpableBitmap::parse(&kdump(&[0, 1, 3, 8, 19], &[1, 8], 31)).unwrap();
        assert_eq!(
            (
                m.max_mapnr,
                m.dump_level,
                m.present,
                m.count(),
                m.zero_count()
            ),
            (20, 31, 20, 5, 2)
        );
        assert_eq!(
            (0..24).filter(|&p| m.is_dumpable(p)).collect::<Vec<_>>(),
            [0, 1, 3, 8, 19]
        );
        assert_eq!(
            (0..24).filter(|&p| m.is_zero(p)).collect::<Vec<_>>(),
            [1, 8]
        );
        // Without dump level bit 1 no page is the zero page.
        let m = DumpableBitmap::parse(&kdump(&[0, 1, 3], &[1], 30)).unwrap();
        assert_eq!((m.count(), m.zero_count()), (3, 0));
    }

    #[test]
    fn rejects_bad_kdump_files() {
        let err = |d: &[u8]| format!("{:#}", DumpableBitmap::parse(d).unwrap_err());
        let good = kdump(&[0, 1, 3], &[1], 31);
        let with = |at: usize, bytes: &[u8]| {
            let mut d = good.clone();
            d[at..at + bytes.len()].copy_from_slice(bytes);
            d
        };
        assert!(err(b"\x7fELF").contains("not a kdump-compressed file"));
        assert!(err(&with(0, b"DISKDUMP")).contains("no 'KDUMP   ' header"));
        assert!(err(&good[..3 * 4096]).contains("ends in its headers or bitmaps"));
        assert!(err(&good[..4 * 4096 + 30]).contains("ends in its 3 page descriptors"));
        assert!(err(&with(DH_BITMAP_BLOCKS, &3u32.to_be_bytes())).contains("two equal bitmaps"));
        assert!(
            err(&with(DH_BLOCK_SIZE, &4097u32.to_be_bytes())).contains("implausible block_size")
        );
        let huge = (1u64 << 20).to_be_bytes();
        assert!(err(&with(4096 + KH_MAX_MAPNR_64, &huge)).contains("does not fit"));
        assert!(err(&with(2 * 4096, &[0xfe])).contains("dumpable but not in memory"));
    }

    /// On a real dump: `MAKEDUMPFILE_DUMP=path MAKEDUMPFILE_KERNEL=6.1.192
    /// cargo test -p zfcpdump-lab makedumpfile -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn real_dump() {
        let var = |n| std::env::var(n).unwrap_or_else(|_| panic!("set {n}"));
        let dump = PathBuf::from(var("MAKEDUMPFILE_DUMP"));
        let cache = zfcpdump_builder::util::cache_dir(&zfcpdump_builder::util::project_root());
        let m = Makedumpfile::for_kernel(&var("MAKEDUMPFILE_KERNEL"), &cache, false).unwrap();
        let work = dump.with_extension("makedumpfile");
        let t = std::time::Instant::now();
        let counts = m.counts(&dump, 31, &work).unwrap();
        eprintln!(
            "{} counts -d 31 in {:.2?}: {counts:?}",
            m.version,
            t.elapsed()
        );
        let t = std::time::Instant::now();
        let (map, c) = m.dumpable(&dump, 31, &work).unwrap();
        assert_eq!(
            ExcludedCounts {
                write_bytes: counts.write_bytes,
                ..c
            },
            counts
        );
        let (n, z, p) = (map.count(), map.zero_count(), map.present);
        eprintln!(
            "dumpable in {:.2?}: {n} pages, {z} zero, {p} present",
            t.elapsed()
        );
        let t = std::time::Instant::now();
        let (bytes, c) = m.elf_size(&dump, 31, &work).unwrap();
        eprintln!("-E in {:.2?}: {bytes} bytes, {c:?}", t.elapsed());
    }
}
