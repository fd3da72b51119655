//! The same crash, filtered twice: the byte-exact dump a guest wrote is
//! filtered again on the host by the real s390x agent in tool mode (under
//! qemu-user, from the exact dump's ELF onto a copy of its disk), and the
//! result is judged against makedumpfile at the same dump level on the same
//! memory, and against crash's view of the exact dump.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use zfcpdump_format::PAGE_SIZE;
use zfcpdump_format::elf::{SeekReader, Vmcore};
use zfcpdump_format::filter::CLASSES;
use zfcpdump_format::filter::note::FilterNote;

use crate::checks::console::peak_rss;
use crate::checks::extract;
use crate::checks::files::sparse_copy;
use crate::kit::Verdict;
use crate::readers::crash::Crash;
use crate::readers::makedumpfile::Makedumpfile;
use crate::{run_with_timeout, tail};

use super::SIMULATED_HSA;

/// What crash must print alike for both dumps.
const CRASH_COMMANDS: [&str; 5] = ["log", "bt", "ps", "kmem -i", "sys"];
/// A filtered copy of 512 MiB takes about 2 s under qemu-user.
const AGENT_TIMEOUT: Duration = Duration::from_secs(300);

/// One crash, dumped byte-exact in the guest, filtered again from that dump
/// by the real agent in tool mode, judged against makedumpfile and crash on
/// the same memory.
// Until crashlab's mod.rs calls it.
#[derive(Debug, Clone, Default)]
pub(crate) struct SameCrash {
    pub(crate) level: u8,
    /// What the filtered dump got wrong, and what held.
    pub(crate) verdict: Verdict,
    /// The byte-exact dump's ELF.
    pub(crate) exact_bytes: u64,
    /// The filtered dump as `zfcpdump-disk extract` writes it.
    pub(crate) ours_bytes: u64,
    pub(crate) ours_phnum: usize,
    /// Pages left out per class (zero, cache, cache_private, user, free):
    /// our filter note's, makedumpfile's report.
    pub(crate) ours_counts: [u64; 5],
    pub(crate) mdf_counts: [u64; 5],
    /// makedumpfile's `-E` (ELF) and `-l` (kdump-compressed) output.
    pub(crate) mdf_elf_bytes: u64,
    pub(crate) mdf_kdump_bytes: u64,
    /// Pfns we leave out that makedumpfile keeps (and not as a zero page):
    /// must be 0.
    pub(crate) ours_only: u64,
    /// Pfns makedumpfile leaves out that we write (short runs written on
    /// purpose, rationed program headers).
    pub(crate) mdf_only: u64,
    /// The agent's copy time.
    pub(crate) agent_ms: u64,
    /// The agent's peak RSS (under qemu-user: the emulator's included).
    pub(crate) peak_rss_kib: Option<u64>,
}

/// The byte-exact dump of one crash, what filters it again, and what
/// judges the result.
pub(crate) struct ExactDump<'a> {
    /// Work files go to `work/NAME-dLEVEL/`.
    pub(crate) work: &'a Path,
    pub(crate) name: &'a str,
    /// The tool's agent (static s390x), run under qemu-user in tool mode.
    pub(crate) agent_bin: &'a Path,
    pub(crate) disk_tool: &'a Path,
    /// The disk the guest dumped to, and its dump as extracted.
    pub(crate) disk: &'a Path,
    pub(crate) elf: &'a Path,
    /// The crashed kernel's vmlinux, and the readers for its release.
    pub(crate) vmlinux: &'a Path,
    pub(crate) crash: &'a Crash,
    pub(crate) mdf: &'a Makedumpfile,
}

/// Filters the exact dump again at `level` into a copy of its disk (work
/// files in `work/NAME-dLEVEL/`) and compares; harness failures are errors,
/// what the dump got wrong goes into its `verdict`.
pub(crate) fn same_crash(exact: &ExactDump, level: u8, with_crash: bool) -> Result<SameCrash> {
    let mut r = SameCrash {
        level,
        exact_bytes: fs::metadata(exact.elf)
            .with_context(|| format!("no exact dump {}", exact.elf.display()))?
            .len(),
        ..Default::default()
    };
    let dir = exact.work.join(format!("{}-d{level}", exact.name));
    let Some(disk) = filter_again(exact, &dir, level, &mut r)? else {
        return Ok(r);
    };
    // Our dump, as zfcpdump-disk extracts it, and its filter note.
    let ours = dir.join("filtered.elf");
    if let Some(e) = extract(exact.disk_tool, &disk, &ours)? {
        r.verdict.fail(e);
        return Ok(r);
    }
    let _ = fs::remove_file(&disk);
    let Some(pages) = check_note(&ours, level, &mut r)? else {
        return Ok(r);
    };
    compare_makedumpfile(exact, &dir, level, &pages, &mut r)?;
    // crash reads the same crash from both.
    if with_crash {
        compare_crash(exact, &dir, &ours, &mut r)?;
    }
    Ok(r)
}

/// The agent in tool mode on a copy of the exact dump's disk, at `level`;
/// returns that disk, or None if the agent did not succeed.
fn filter_again(
    exact: &ExactDump,
    dir: &Path,
    level: u8,
    r: &mut SameCrash,
) -> Result<Option<PathBuf>> {
    let v = &mut r.verdict;
    let root = dir.join("root");
    for d in ["proc", "sys", "dev", "etc"] {
        fs::create_dir_all(root.join(d))?;
    }
    let disk = dir.join("disk.img");
    sparse_copy(exact.disk, &disk)?;
    let config = dir.join("zfcpdump.conf");
    fs::write(&config, format!("dump_level = {level}\n"))?;

    // The agent, as on the machine but for the source and the disk, with
    // the 32 MiB HSA of z14 and older simulated: what the classifier needs
    // from below it must be read before the release, after which those
    // reads fail.
    let log = dir.join("agent.log");
    let mut c = Command::new("qemu-s390x-static");
    c.arg(exact.agent_bin).arg("--root").arg(&root);
    c.arg("--source").arg(exact.elf).arg("--disk").arg(&disk);
    c.arg("--config").arg(&config);
    c.arg("--hsa-size").arg(format!("{SIMULATED_HSA:#x}"));
    let status = run_with_timeout(&mut c, &log, AGENT_TIMEOUT)?;
    let out = fs::read_to_string(&log).unwrap_or_default();
    r.peak_rss_kib = peak_rss(&out);
    // `N bytes written to partition P of DISK in M ms`
    let copy_ms = out.lines().find_map(|l| {
        let (_, ms) = l[l.find(" bytes written to partition ")?..].rsplit_once(" in ")?;
        ms.strip_suffix(" ms")?.parse().ok()
    });
    match (status.and_then(|s| s.code()), copy_ms) {
        (Some(0), Some(ms)) if out.lines().any(|l| l == "Dump successful") => {
            r.agent_ms = ms;
            v.held(format!(
                "the agent (tool mode, dump_level = {level}, simulated {} MiB HSA) exited 0: Dump \
                 successful, copy in {ms} ms, peak RSS {} KiB (qemu-user's included)",
                SIMULATED_HSA >> 20,
                r.peak_rss_kib.map_or("?".into(), |k| k.to_string())
            ));
        }
        (code, _) => {
            v.fail(format!(
                "the agent exited {code:?} without `Dump successful` and a copy time:\n{}",
                tail(&out, 10)
            ));
            return Ok(None);
        }
    }

    // The classifier read what it needs before the simulated release: no
    // fallback, and no struct page it could not read afterwards.
    if let Some(l) = out.lines().find(|l| l.contains("filtering off")) {
        v.fail(format!("the agent fell back: {l}"));
    }
    if level & !1 != 0 {
        match out.lines().find(|l| l.contains(" unreadable struct pages")) {
            Some(l) if l.contains(", 0 unreadable struct pages") => {
                v.held(format!("after the HSA release: {l}"))
            }
            Some(l) => v.fail(format!(
                "struct pages unreadable after the HSA release: {l}"
            )),
            None => v.fail("the agent printed no page filter summary"),
        }
    }
    Ok(Some(disk))
}

/// Our filtered dump's filter note: the level asked for and used, and its
/// counts against the PT_LOADs. Returns the dump's pages, or None without
/// a note.
fn check_note(ours: &Path, level: u8, r: &mut SameCrash) -> Result<Option<Pages>> {
    let v = &mut r.verdict;
    r.ours_bytes = fs::metadata(ours)?.len();
    let vm = Vmcore::read(&mut SeekReader::new(&File::open(ours)?), r.ours_bytes)
        .with_context(|| format!("{}", ours.display()))?;
    r.ours_phnum = vm.phdrs.len();
    let Some(note) = FilterNote::find(&vm) else {
        v.fail("the filtered dump has no ZFCPDUMP/ZFLT filter note");
        return Ok(None);
    };
    let desc = note.describe();
    if (note.requested.bits(), note.used.bits()) != (level, level) {
        v.fail(format!("filter note: {desc}, not level {level}"));
    }
    r.ours_counts = note.excluded;
    // The note counts each physical page once (a segment whose memory
    // another holds, 6.12's kernel image, does not count), as makedumpfile's
    // classes do; a page left out by one segment and written by another
    // (none so far) counts as the identity segment decided.
    let pages = Pages::of(&vm, v);
    let (excluded, written) = (pages.count(EXCLUDED), pages.count(WRITTEN));
    let distinct = excluded + written;
    let x = note.excluded_total();
    if note.total == distinct && x.abs_diff(excluded) <= pages.both {
        v.held(format!(
            "filter note: {desc}; its PT_LOADs agree ({distinct} distinct pages, {excluded} only \
             in tails, {} in one's tail and another's file bytes)",
            pages.both
        ));
    } else {
        v.fail(format!(
            "filter note: {desc}; the PT_LOADs hold {distinct} distinct pages, {excluded} only in \
             tails, {} in both",
            pages.both
        ));
    }
    Ok(Some(pages))
}

/// makedumpfile at the same level on the same memory: no page we leave out
/// may be one it keeps (but as a zero page), and no class may leave out
/// more than its; the sizes for the report.
fn compare_makedumpfile(
    exact: &ExactDump,
    dir: &Path,
    level: u8,
    pages: &Pages,
    r: &mut SameCrash,
) -> Result<()> {
    let v = &mut r.verdict;
    // makedumpfile on the same memory at the same level.
    let mwork = dir.join("makedumpfile");
    let mdf = exact.mdf;
    let (map, mc) = mdf.dumpable(exact.elf, level, &mwork)?;
    r.mdf_kdump_bytes = fs::metadata(mwork.join(format!("makedumpfile-d{level}.kdump")))?.len();
    r.mdf_elf_bytes = mdf.elf_size(exact.elf, level, &mwork)?.0;
    r.mdf_counts.copy_from_slice(&mc.classes()[..5]);
    let excluded = pages.count(EXCLUDED);
    let ours_only: Vec<u64> = pages
        .pfns(EXCLUDED)
        .filter(|&f| map.is_dumpable(f) && !map.is_zero(f))
        .collect();
    r.ours_only = ours_only.len() as u64;
    // Zero pages are marked only with dump level bit 1.
    let mdf_drops = |f: u64| !map.is_dumpable(f) || map.is_zero(f);
    r.mdf_only = pages.pfns(WRITTEN).filter(|&f| mdf_drops(f)).count() as u64;
    if ours_only.is_empty() {
        v.held(format!(
            "every one of our {excluded} left-out pages is one makedumpfile {} leaves out too \
             (or keeps as a zero page); it leaves out {} pages we write",
            mdf.version, r.mdf_only
        ));
    } else {
        v.fail(format!(
            "{} pages we leave out are dumpable, non-zero pages to makedumpfile {}: pfns {:#x?}",
            ours_only.len(),
            mdf.version,
            &ours_only[..ours_only.len().min(8)]
        ));
    }
    let diffs: Vec<String> = CLASSES
        .iter()
        .zip(r.ours_counts.iter().zip(r.mdf_counts))
        .map(|((_, c), (&o, m))| format!("{c} {o} ({:+})", o as i64 - m as i64))
        .collect();
    let more: Vec<&str> = (1..5)
        .filter(|&i| r.ours_counts[i] > r.mdf_counts[i])
        .map(|i| CLASSES[i].1)
        .collect();
    let counts = format!(
        "per class, our note's (vs makedumpfile's): {}",
        diffs.join(", ")
    );
    match more.is_empty() {
        true => v.held(counts),
        false => v.fail(format!(
            "more {} pages left out than makedumpfile: {counts}",
            more.join(", ")
        )),
    }
    v.held(format!(
        "sizes: exact {} bytes, ours {} bytes ({} program headers), makedumpfile -E {} bytes, \
         -l {} bytes",
        r.exact_bytes, r.ours_bytes, r.ours_phnum, r.mdf_elf_bytes, r.mdf_kdump_bytes
    ));
    Ok(())
}

/// crash's output of [`CRASH_COMMANDS`] on the exact and the filtered dump
/// must be the same.
fn compare_crash(exact: &ExactDump, dir: &Path, ours: &Path, r: &mut SameCrash) -> Result<()> {
    let v = &mut r.verdict;
    let commands: Vec<String> = CRASH_COMMANDS.iter().map(|s| s.to_string()).collect();
    let mut views = Vec::new();
    let crash = exact.crash;
    for (what, dump) in [("exact", exact.elf), ("filtered", ours)] {
        // The exact dump's view is the same at every level: read it once.
        let log = match what {
            "exact" => exact.work.join(format!("{}.crash-exact.log", exact.name)),
            _ => dir.join("crash-filtered.log"),
        };
        let cached = match what {
            "exact" => fs::read_to_string(&log).ok().filter(|t| !t.is_empty()),
            _ => None,
        };
        let text = match cached {
            Some(t) => t,
            None => crash.session(exact.vmlinux, dump, &commands, &log)?,
        };
        views.push(normalise(&text, dump));
    }
    match first_difference(&views[0], &views[1]) {
        None => v.held(format!(
            "crash {}: {} the same for both ({} lines)",
            crash.version,
            CRASH_COMMANDS.join(", "),
            views[0].len()
        )),
        Some(d) => v.fail(format!(
            "crash {} reads the dumps differently: {d}",
            crash.version
        )),
    }
    Ok(())
}

/// A page's state in [`Pages`]: in some PT_LOAD's file bytes; only in tails.
const WRITTEN: u8 = 1;
const EXCLUDED: u8 = 2;

/// The physical pages of a dump's PT_LOADs, each once: written (in some
/// PT_LOAD's file bytes) or left out (only in tails). The V!=R layout's
/// kernel-text PT_LOAD overlaps the identity one.
struct Pages {
    state: Vec<u8>,
    /// Pages in one PT_LOAD's tail and another's file bytes.
    both: u64,
}

impl Pages {
    fn of(vm: &Vmcore, v: &mut Verdict) -> Pages {
        let end = vm.loads().map(|l| l.p_paddr + l.p_memsz).max().unwrap_or(0);
        let mut state = vec![0u8; end.div_ceil(PAGE_SIZE) as usize];
        for (i, l) in vm.loads().enumerate() {
            let tail = l.p_paddr + l.p_filesz;
            if l.p_filesz < l.p_memsz && (tail % PAGE_SIZE != 0 || l.p_memsz % PAGE_SIZE != 0) {
                v.fail(format!(
                    "PT_LOAD {i}: a tail {tail:#x}+{:#x} not in whole pages",
                    l.p_memsz - l.p_filesz
                ));
            }
            let a = (l.p_paddr / PAGE_SIZE) as usize;
            let b = tail.div_ceil(PAGE_SIZE) as usize;
            let c = (l.p_paddr + l.p_memsz).div_ceil(PAGE_SIZE) as usize;
            state[a..b].iter_mut().for_each(|s| *s |= WRITTEN);
            state[b..c].iter_mut().for_each(|s| *s |= EXCLUDED);
        }
        let both = state.iter().filter(|&&s| s == WRITTEN | EXCLUDED).count() as u64;
        // A page written anywhere is in the dump.
        state
            .iter_mut()
            .filter(|s| **s & WRITTEN != 0)
            .for_each(|s| *s = WRITTEN);
        Pages { state, both }
    }

    fn pfns(&self, what: u8) -> impl Iterator<Item = u64> + '_ {
        (0..self.state.len() as u64).filter(move |&f| self.state[f as usize] == what)
    }

    fn count(&self, what: u8) -> u64 {
        self.state.iter().filter(|&&s| s == what).count() as u64
    }
}

/// crash's output without what differs between two files of one crash.
fn normalise(text: &str, dump: &Path) -> Vec<String> {
    let path = dump.display().to_string();
    text.lines()
        .filter(|l| !l.contains(&path) && !l.trim_start().starts_with("DUMPFILE:"))
        .map(|l| l.trim_end().to_string())
        .collect()
}

/// The first differing lines, with a line of context before them.
fn first_difference(a: &[String], b: &[String]) -> Option<String> {
    let i = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))?;
    let show =
        |v: &[String]| v[i.saturating_sub(1).min(v.len())..(i + 3).min(v.len())].join("\n  ");
    Some(format!(
        "line {}:\n exact:\n  {}\n filtered:\n  {}",
        i + 1,
        show(a),
        show(b)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readers::Readers;

    /// On a real crash: `SAME_CRASH_IMG=6.1-plain.img SAME_CRASH_ELF=6.1-plain.elf
    /// SAME_CRASH_VMLINUX=.../vmlinux SAME_CRASH_KERNEL=6.1.192 SAME_CRASH_AGENT=...
    /// SAME_CRASH_LEVELS=31,17 cargo test -p zfcpdump-lab same_crash -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn same_crash_on_a_real_dump() {
        let var = |n| std::env::var(n).unwrap_or_else(|_| panic!("set {n}"));
        let path = |n| PathBuf::from(var(n));
        let root = zfcpdump_builder::util::project_root();
        let cache = zfcpdump_builder::util::cache_dir(&root);
        let release = var("SAME_CRASH_KERNEL");
        let readers = Readers::for_kernel(&release, &cache, false).unwrap();
        let mdf = Makedumpfile::for_kernel(&release, &cache, false).unwrap();
        let (disk_tool, _) = crate::kit::setup::build_host_tools(&root, &cache, false).unwrap();
        let work = cache.join("crashlab").join("compare-test");
        let levels = std::env::var("SAME_CRASH_LEVELS").unwrap_or("31".into());
        let (agent_bin, disk, elf, vmlinux) = (
            path("SAME_CRASH_AGENT"),
            path("SAME_CRASH_IMG"),
            path("SAME_CRASH_ELF"),
            path("SAME_CRASH_VMLINUX"),
        );
        let exact = ExactDump {
            work: &work,
            name: &release,
            agent_bin: &agent_bin,
            disk_tool: &disk_tool,
            disk: &disk,
            elf: &elf,
            vmlinux: &vmlinux,
            crash: &readers.crash,
            mdf: &mdf,
        };
        let mut failed = false;
        for level in levels.split(',').map(|l| l.parse().unwrap()) {
            let t = std::time::Instant::now();
            let r = same_crash(&exact, level, true).unwrap();
            eprintln!("{release} -d {level} in {:.1?}: {r:#?}", t.elapsed());
            failed |= !r.verdict.is_ok();
        }
        assert!(!failed, "problems above");
    }
}
