//! The checks of one crash-lab run. Unlike e2e, the host never sees the
//! vmcore the agent read (the capture kernel built it from the crashed
//! kernel's memory), so a dump is judged by what must be in it: the pattern
//! pages, the panic, the marker, and the readers' verdicts.

use std::collections::HashSet;
use std::fs::{self, File};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result};
use crashlab_pattern::{Census, PAGE_SIZE};
use zfcpdump_format::elf::{ProgramHeader, SeekReader, Vmcore};
use zfcpdump_format::filter::CLASSES;
use zfcpdump_format::filter::note::FilterNote;
use zfcpdump_format::superblock::CSUM_FIELD_OFFSET;

use super::production::{MARK_CRASHING, MARK_FAILED, MARK_LOADED, MARKER, PANIC};
use super::{ANON_PAGES, Ctx, Kind, PATTERN_PAGES, RunSpec, SIMULATED_HSA};
use crate::checks::console::{console_order, initramfs_origin, peak_rss};
use crate::checks::files::{first_difference, sparse_copy_range};
use crate::checks::{disk_status, extract, fmt_ranges, metadata_after};
use crate::guest::Outcome;
use crate::kit::Verdict;

/// Each kernel's first console line; the second one is the capture kernel's.
const BOOT_LINE: &str = "] Linux version ";

/// What a run measured, for the report (None: not seen).
#[derive(Debug, Default, Clone)]
pub(crate) struct Facts {
    /// The vmcore as the agent read it.
    pub(crate) vmcore_bytes: Option<u64>,
    pub(crate) cpus: Option<usize>,
    /// The dump's PT_LOADs.
    pub(crate) loads: Vec<ProgramHeader>,
    /// `Memory: a/b available` of the capture kernel.
    pub(crate) capture_memory: Option<String>,
    /// The agent's copy time.
    pub(crate) dump_ms: Option<u64>,
    pub(crate) peak_rss_kib: Option<u64>,
    pub(crate) crash: Option<String>,
    pub(crate) pattern: Option<String>,
    /// The dump's size on the disk (smaller than the vmcore when elided).
    pub(crate) dump_bytes: Option<u64>,
}

impl Facts {
    /// PT_LOADs whose virtual address is not the physical one (the kernel
    /// image segment of the V!=R layout, 6.10 and later).
    pub(crate) fn text_segments(&self) -> Vec<&ProgramHeader> {
        self.loads
            .iter()
            .filter(|p| p.p_vaddr != p.p_paddr)
            .collect()
    }

    /// Pairs of PT_LOADs whose physical ranges overlap.
    pub(crate) fn overlaps(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (i, a) in self.loads.iter().enumerate() {
            for (j, b) in self.loads.iter().enumerate().skip(i + 1) {
                if a.p_paddr < b.p_paddr + b.p_memsz && b.p_paddr < a.p_paddr + a.p_memsz {
                    out.push((i, j));
                }
            }
        }
        out
    }
}

/// Every check of a run, into `v`; returns what the run measured.
pub(crate) fn check_run(
    ctx: &Ctx,
    spec: &RunSpec,
    disk: &Path,
    out: &Outcome,
    v: &mut Verdict,
) -> Result<Facts> {
    let mut f = Facts::default();
    match out.exit {
        Some(0) => v.held("QEMU exited 0 (the agent's power-off)"),
        Some(1) => v.fail("QEMU exited 1: a guest kernel panicked without kexec"),
        Some(n) => v.fail(format!("QEMU exited {n}")),
        None => v.fail("timed out: the guest did not power off"),
    }

    let capture = check_console(spec, &out.console, v);
    check_capture(spec, capture, &mut f, v);
    if !check_disk(ctx, spec, disk, &mut f, v)? {
        return Ok(f);
    }
    // The dump as zfcpdump-disk extracts it: layout, pattern, crash.
    let elf = ctx.work.join(format!("{}.extracted.elf", spec.name));
    if let Some(e) = extract(&ctx.disk_tool, disk, &elf)? {
        v.fail(e);
        return Ok(f);
    }
    check_extracted(ctx, spec, &elf, capture, &mut f, v)?;
    // The byte-exact dump is filtered again later (the same crash).
    if !ctx.keep && spec.kind != Kind::Plain {
        let _ = fs::remove_file(&elf);
    }
    check_with_zgetdump(ctx, spec, disk, &f, v)?;
    Ok(f)
}

/// The console: the production kernel's half (its markers), and the
/// capture kernel's boot. Returns the capture kernel's half (empty if it
/// did not boot).
fn check_console<'c>(spec: &RunSpec, console: &'c str, v: &mut Verdict) -> &'c str {
    // The console: the production kernel, then the capture kernel. The
    // panic message itself is in the crashed kernel's log buffer (crash's
    // PANIC checks it); the console is not flushed before the kexec.
    let (prod, capture) = match console.match_indices(BOOT_LINE).nth(1) {
        Some((at, _)) => console.split_at(at),
        None => {
            v.fail(format!(
                "the console has no second {BOOT_LINE:?}: the capture kernel did not boot"
            ));
            (console, "")
        }
    };
    if let Some(l) = prod.lines().find(|l| l.contains(MARK_FAILED)) {
        v.fail(format!("the production guest: {}", l.trim()));
    }
    for m in [MARK_LOADED, MARK_CRASHING] {
        v.check(
            prod.contains(m),
            format!("the production console lacks {m:?}"),
        );
    }
    let builtin = spec.pair.builtin_tool;
    if !capture.is_empty() {
        match initramfs_origin(capture, builtin) {
            Some(problem) => v.fail(format!("the capture kernel: {problem}")),
            None if builtin => v.held(
                "the capture kernel ran the agent from its built-in initramfs (kexec'd without --initrd)",
            ),
            None => {}
        }
    }
    match capture.lines().next() {
        Some(l) if !capture.is_empty() => v.held(format!(
            "crashed into the capture kernel: {}",
            l.split("] ")
                .nth(1)
                .unwrap_or(l)
                .split(" (")
                .next()
                .unwrap_or(l)
        )),
        _ => {}
    }
    capture
}

/// The capture kernel's half: the agent's own account, in order, and
/// what it measured.
fn check_capture(spec: &RunSpec, capture: &str, f: &mut Facts, v: &mut Verdict) {
    let pair = spec.pair;
    f.capture_memory = capture
        .lines()
        .find_map(|l| l.split_once("Memory: ").map(|(_, m)| m.trim().to_string()));
    // kdump has no HSA: only the simulated one has HSA-backed ranges.
    let order = console_order(capture, spec.kind.filtered(), spec.kind == Kind::Hsa);
    if order.is_empty() {
        v.held("agent console in order (banner, HSA, ranges, header last, 100%, Dump successful, peak RSS)");
    }
    v.extend(order);
    f.peak_rss_kib = peak_rss(capture);
    let vmcore_line = capture
        .lines()
        .find(|l| l.starts_with("vmcore /proc/vmcore: "));
    match vmcore_line.and_then(parse_vmcore_line) {
        Some((bytes, cpus, release)) => {
            f.vmcore_bytes = Some(bytes);
            f.cpus = Some(cpus);
            if release != pair.release {
                v.fail(format!(
                    "the agent read a vmcore of kernel {release}, the production kernel is {}",
                    pair.release
                ));
            }
        }
        None => v.fail("no `vmcore /proc/vmcore: N bytes, C CPUs, ...` line: the agent did not read the kernel's vmcore"),
    }
    if capture.lines().any(|l| l.contains("zfcpdump.source")) {
        v.fail("the capture used a source override");
    }
    f.dump_ms = capture.lines().find_map(|l| {
        let ms = l.strip_suffix(" ms")?.rsplit_once(" in ")?.1;
        l.contains("bytes written to partition")
            .then(|| ms.parse().ok())?
    });
    match spec.kind {
        Kind::Hsa => {
            let want = format!("simulated HSA size {SIMULATED_HSA:#x}");
            if !capture.contains(&want) {
                v.fail(format!("the agent did not say {want:?}"));
            }
            let ranges: Vec<&str> = capture
                .lines()
                .filter(|l| l.starts_with("copy HSA-backed range "))
                .collect();
            v.held(format!(
                "{} HSA-backed ranges read before the simulated release, after which their reads \
                 fail",
                ranges.len()
            ));
        }
        _ => {
            if capture.contains("simulated HSA") {
                v.fail("a simulated HSA outside the hsa run");
            }
        }
    }
}

/// The disk: an ELF in the dump area of the size the agent read, nothing
/// changed outside it but the checksum field, the metadata and
/// `zfcpdump-disk status`. False when the dump area holds no ELF or the
/// metadata does not parse: nothing more to check.
fn check_disk(
    ctx: &Ctx,
    spec: &RunSpec,
    disk: &Path,
    f: &mut Facts,
    v: &mut Verdict,
) -> Result<bool> {
    let pair = spec.pair;
    let area = pair.sb.dump_area();
    let on_disk = File::open(disk).with_context(|| format!("cannot open {}", disk.display()))?;
    let dump_vm = match Vmcore::read_headers(
        &mut SeekReader::with_base(&on_disk, area.start),
        pair.sb.dump_size,
    ) {
        Ok(vm) => vm,
        Err(e) => {
            v.fail(format!("the dump area holds no readable ELF: {e}"));
            return Ok(false);
        }
    };
    let extent = dump_vm.extent();
    f.dump_bytes = Some(extent);
    match (spec.kind, f.vmcore_bytes) {
        (k, Some(n)) if k.filtered() && extent >= n => v.fail(format!(
            "the filtered dump is {extent} bytes, not smaller than the {n}-byte vmcore"
        )),
        (Kind::Plain | Kind::Hsa, Some(n)) if extent != n => v.fail(format!(
            "the dump's ELF extent is {extent} bytes, the agent read {n}"
        )),
        _ => {}
    }
    let csum = pair.sb_offset + CSUM_FIELD_OFFSET;
    let allowed = [area.start..area.start + extent, csum..csum + 8];
    match first_difference(&pair.pristine, disk, &allowed)? {
        Some(at) => v.fail(format!(
            "the agent changed disk byte {at:#x}, outside the dump and the csum field"
        )),
        None => v.held(format!(
            "nothing changed outside the dump's {extent} bytes but the csum field"
        )),
    }
    if metadata_after(disk, v)?.is_none() {
        return Ok(false);
    }
    disk_status(&ctx.disk_tool, disk, v)?;
    Ok(true)
}

/// The dump as `zfcpdump-disk extract` wrote it: its notes and PT_LOADs,
/// the overlaps, the patterns, the filter note and crash.
fn check_extracted(
    ctx: &Ctx,
    spec: &RunSpec,
    elf: &Path,
    capture: &str,
    f: &mut Facts,
    v: &mut Verdict,
) -> Result<()> {
    let size = fs::metadata(elf)?.len();
    let file = File::open(elf)?;
    let vm = Vmcore::read(&mut SeekReader::new(&file), size)
        .with_context(|| format!("{}", elf.display()))?;
    f.loads = vm.loads().copied().collect();
    match vm.cpu_count() {
        Ok(n) if Some(n) == f.cpus => {}
        Ok(n) => v.fail(format!(
            "the dump has {n} CPU notes, the agent counted {:?}",
            f.cpus
        )),
        Err(e) => v.fail(format!("the dump's notes: {e}")),
    }
    if !spec.kind.filtered() {
        save_headers(ctx, spec, &file, &f.loads)?;
    }
    check_overlaps(&file, f, v)?;
    f.pattern = Some(check_patterns(spec, &file, &f.loads, capture, v)?);
    if spec.kind.filtered() {
        check_filter_note(spec, &vm, capture, v);
    }
    f.crash = Some(check_with_crash(ctx, spec, elf, v)?);
    Ok(())
}

/// The pattern pages in the dump: all of them, or, at level 31, none but
/// those in the short excluded runs the agent wrote on purpose. Returns the
/// census for the report.
fn check_patterns(
    spec: &RunSpec,
    file: &File,
    loads: &[ProgramHeader],
    capture: &str,
    v: &mut Verdict,
) -> Result<String> {
    let [cache, anon] = census(file, loads, spec)?;
    // Level 31 leaves page cache (bits 2, 4) and user pages (bit 8) out;
    // every other run keeps both patterns.
    let gone = spec.kind == Kind::Level31;
    // Excluded runs shorter than the agent's minimum are written on
    // purpose; it says how many pages that was. Pattern pages among them
    // survive, no others may.
    let short = capture
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("page filter: ")?;
            let (n, _) = rest.split_once(" short excluded pages written")?;
            n.rsplit(' ').next()?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    if gone && capture.contains("could have been left out") {
        v.fail("the agent rationed program headers in a 512 MiB dump");
    }
    let before = v.problems.len();
    let mut found = Vec::new();
    for (c, what) in [(&cache, "page-cache"), (&anon, "anonymous")] {
        found.push(format!("{what} {} of {}", c.intact(), c.count));
        let ok = if gone {
            c.damaged.is_empty()
        } else {
            c.complete()
        };
        if !ok {
            v.fail(format!(
                "{what} pattern: {} of {} intact (expected {}); missing {:?}...; damaged {:?}",
                c.intact(),
                c.count,
                if gone { "none: left out" } else { "all" },
                c.missing(5),
                &c.damaged[..c.damaged.len().min(5)],
            ));
        }
    }
    if gone && cache.intact() + anon.intact() > short {
        v.fail(format!(
            "level 31 kept {} page-cache and {} anonymous pattern pages, more than the {short} \
             pages of short excluded runs the agent wrote",
            cache.intact(),
            anon.intact()
        ));
    }
    if cache.foreign + anon.foreign > 0 {
        v.fail(format!(
            "{} pattern pages of another seed",
            cache.foreign + anon.foreign
        ));
    }
    if v.problems.len() == before {
        v.held(match gone {
            true => format!(
                "patterns: {} of {PATTERN_PAGES} page-cache and {} of {ANON_PAGES} anonymous pages \
                 in the dump, all in short excluded runs written on purpose ({short} pages), the \
                 rest left out (read as zeros), none damaged",
                cache.intact(),
                anon.intact()
            ),
            false => format!(
                "patterns: every one of {PATTERN_PAGES} page-cache and {ANON_PAGES} anonymous pages \
                 intact"
            ),
        });
    }
    Ok(found.join(", "))
}

/// zgetdump on the partition's bytes, as an operator would run it: `-i`
/// must name the format, the CPUs and the memory of the dump.
fn check_with_zgetdump(
    ctx: &Ctx,
    spec: &RunSpec,
    disk: &Path,
    f: &Facts,
    v: &mut Verdict,
) -> Result<()> {
    let pair = spec.pair;
    let zg = if spec.kind.filtered() {
        &pair.readers.zgetdump_tails
    } else {
        &pair.readers.zgetdump
    };
    let part = ctx.work.join(format!("{}.partition", spec.name));
    sparse_copy_range(disk, pair.sb.part_start, pair.sb.part_size, &part)?;
    let ranges = covered(f.loads.iter().map(|p| p.p_paddr..p.p_paddr + p.p_memsz));
    match zg.info(&part) {
        Ok(info)
            if info.format == "elf"
                && Some(info.cpus as usize) == f.cpus
                && covered(info.memory_map.clone()) == ranges =>
        {
            v.held(format!(
                "zgetdump {} -i on the partition: elf, {} CPUs, memory {} ({} ranges listed)",
                zg.version,
                info.cpus,
                fmt_ranges(&ranges),
                info.memory_map.len()
            ))
        }
        Ok(info) => v.fail(format!(
            "zgetdump {} -i on the partition: format {}, {} CPUs, memory {}; expected elf, {:?} \
             CPUs, {}",
            zg.version,
            info.format,
            info.cpus,
            fmt_ranges(&covered(info.memory_map.clone())),
            f.cpus,
            fmt_ranges(&ranges)
        )),
        Err(e) => v.fail(format!("{e:#}")),
    }
    if !ctx.keep {
        let _ = fs::remove_file(&part);
    }
    Ok(())
}

/// `vmcore /proc/vmcore: N bytes, C CPUs, P PT_LOADs, kernel R`.
fn parse_vmcore_line(l: &str) -> Option<(u64, usize, String)> {
    let rest = l.strip_prefix("vmcore /proc/vmcore: ")?;
    let mut parts = rest.split(", ");
    let bytes = parts.next()?.strip_suffix(" bytes")?.parse().ok()?;
    let cpus = parts.next()?.strip_suffix(" CPUs")?.parse().ok()?;
    parts.next()?;
    let release = parts.next()?.strip_prefix("kernel ")?.to_string();
    Some((bytes, cpus, release))
}

/// Physical memory as a sorted list of disjoint ranges: overlapping and
/// adjacent ones joined. zgetdump joins adjacent chunks as it adds them, so
/// where PT_LOADs overlap (the V!=R kernel image inside the identity
/// range, split further by elision) its list is its own; the memory it
/// covers is what must equal the dump's.
fn covered(ranges: impl IntoIterator<Item = Range<u64>>) -> Vec<Range<u64>> {
    let mut r: Vec<Range<u64>> = ranges.into_iter().filter(|r| r.start < r.end).collect();
    r.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::new();
    for x in r {
        match out.last_mut() {
            Some(last) if x.start <= last.end => last.end = last.end.max(x.end),
            _ => out.push(x),
        }
    }
    out
}

/// Every pattern page of `seed` in the file-backed parts of the PT_LOADs,
/// each physical page counted once.
fn census(file: &File, loads: &[ProgramHeader], spec: &RunSpec) -> Result<[Census; 2]> {
    let mut c = [
        Census::new(spec.seed, PATTERN_PAGES),
        Census::new(spec.anon_seed(), ANON_PAGES),
    ];
    let mut seen = HashSet::new();
    let mut buf = vec![0u8; 1 << 20];
    for ph in loads {
        let mut off = 0;
        while off < ph.p_filesz {
            let n = (ph.p_filesz - off).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], ph.p_offset + off)?;
            for (i, page) in buf[..n].chunks_exact(PAGE_SIZE).enumerate() {
                let addr = ph.p_paddr + off + (i * PAGE_SIZE) as u64;
                if seen.insert(addr) {
                    // Each page goes to the census of its seed (a foreign
                    // one counts in the first).
                    let anon = matches!(
                        crashlab_pattern::check(page),
                        crashlab_pattern::Verdict::Intact(h)
                            | crashlab_pattern::Verdict::Damaged(h) if h.seed == spec.anon_seed()
                    );
                    c[anon as usize].page(addr, page);
                }
            }
            off += n as u64;
        }
    }
    Ok(c)
}

/// A filtered run: the levels the agent says it used, on the console and in
/// the dump's filter note, and what each class left out.
fn check_filter_note(spec: &RunSpec, vm: &Vmcore, capture: &str, v: &mut Verdict) {
    let level = spec.kind.level();
    let from = match spec.kind {
        Kind::Elided => "the profile",
        _ => "zfcpdump.dump_level on the command line",
    };
    let want = format!("dump level {level} (from {from})");
    if !capture.lines().any(|l| l == want) {
        v.fail(format!("the agent did not say {want:?}"));
    }
    if let Some(l) = capture.lines().find(|l| l.contains("filtering off")) {
        v.fail(format!("the agent fell back: {l}"));
    }
    let Some(note) = FilterNote::find(vm) else {
        v.fail("the filtered dump has no ZFCPDUMP filter note");
        return;
    };
    if note.requested.bits() != level || note.used.bits() != level {
        v.fail(format!(
            "filter note: {}; expected level {level}",
            note.describe()
        ));
        return;
    }
    // Each class the level names must have left pages out: the guest holds
    // all of them (user and cache only count at levels that have them).
    let empty: Vec<&str> = CLASSES
        .iter()
        .zip(note.excluded)
        .filter(|((bit, name), n)| level & bit != 0 && *n == 0 && *name != "cache_private")
        .map(|((_, name), _)| *name)
        .collect();
    if !empty.is_empty() {
        v.fail(format!(
            "filter note: {}; nothing left out for {}",
            note.describe(),
            empty.join(", ")
        ));
    } else {
        v.held(format!("filter note: {}", note.describe()));
    }
}

/// Where two PT_LOADs describe the same physical memory (the V!=R kernel
/// image segment inside the identity one), their bytes must agree.
fn check_overlaps(file: &File, f: &Facts, v: &mut Verdict) -> Result<()> {
    let mut bytes = 0;
    let pairs = f.overlaps();
    for &(i, j) in &pairs {
        let (a, b) = (&f.loads[i], &f.loads[j]);
        let start = a.p_paddr.max(b.p_paddr);
        let end = (a.p_paddr + a.p_filesz).min(b.p_paddr + b.p_filesz);
        let mut x = vec![0u8; 1 << 20];
        let mut y = vec![0u8; 1 << 20];
        let mut at = start;
        while at < end {
            let n = (end - at).min(x.len() as u64) as usize;
            file.read_exact_at(&mut x[..n], a.p_offset + (at - a.p_paddr))?;
            file.read_exact_at(&mut y[..n], b.p_offset + (at - b.p_paddr))?;
            if let Some(k) = x[..n].iter().zip(&y[..n]).position(|(u, v)| u != v) {
                v.fail(format!(
                    "PT_LOADs {i} and {j} disagree at physical {:#x}",
                    at + k as u64
                ));
                return Ok(());
            }
            at += n as u64;
        }
        bytes += end.saturating_sub(start);
    }
    if !pairs.is_empty() {
        v.held(format!(
            "{} overlapping PT_LOAD pairs agree byte for byte ({} KiB of the same memory twice)",
            pairs.len(),
            bytes >> 10
        ));
    }
    Ok(())
}

/// The ELF header, program headers and notes of a byte-exact dump (which
/// are the vmcore's): everything before the first PT_LOAD's data, the
/// fixture of the real layout.
fn save_headers(ctx: &Ctx, spec: &RunSpec, file: &File, loads: &[ProgramHeader]) -> Result<()> {
    let end = loads
        .iter()
        .map(|p| p.p_offset)
        .min()
        .unwrap_or(0)
        .min(1 << 20);
    let mut b = vec![0u8; end as usize];
    file.read_exact_at(&mut b, 0)?;
    // The dump kernel builds the vmcore: its release names the layout too.
    let name = format!(
        "{}-by-{}-{}.bin",
        spec.pair.release,
        spec.pair.tool_release,
        spec.kind.name()
    );
    zfcpdump_builder::util::write_atomic(&ctx.headers.join(name), &b)
}

/// crash with the production kernel's vmlinux, one session: `sys` must name
/// the release and the panic, `bt` of the panic task must go through
/// `panic`, `log` must hold the marker, `ps` PID 1, `kmem -i` its totals,
/// and no command a read error. Returns the verdict for the report.
fn check_with_crash(ctx: &Ctx, spec: &RunSpec, elf: &Path, v: &mut Verdict) -> Result<String> {
    let pair = spec.pair;
    let crash = &pair.readers.crash;
    let log = ctx.work.join(format!("{}.crash.log", spec.name));
    let t = std::time::Instant::now();
    let cmds = ["sys", "bt", "log", "ps", "kmem -i"].map(String::from);
    let out = match crash.session(&pair.vmlinux, elf, &cmds, &log) {
        Ok(out) => out,
        Err(e) => {
            v.fail(format!("{e:#}"));
            return Ok("refused".into());
        }
    };
    let mut bad = Vec::new();
    let release = format!("RELEASE: {}", pair.release);
    if !out.lines().any(|l| l.trim() == release) {
        bad.push(format!("`sys` does not say {release:?}"));
    }
    let panic = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("PANIC:"))
        .unwrap_or("no PANIC line");
    if !panic.contains(PANIC) {
        bad.push(format!("`sys` says {panic:?}, not {PANIC:?}"));
    }
    // `bt`'s header names the task: the panic was PID 1's exit.
    if !out.lines().any(|l| l.starts_with("PID: 1 ")) {
        bad.push("`bt` is not of PID 1".into());
    }
    // From 6.12.118 on, panic() is a wrapper that the compiler folds into
    // vpanic(), which is then the frame bt shows.
    if !out
        .lines()
        .any(|l| l.contains(" panic at ") || l.contains(" vpanic at "))
    {
        bad.push("`bt` does not go through panic".into());
    }
    let marker = format!("{MARKER} seed={:#x}", spec.seed);
    if !out.lines().any(|l| l.contains(&marker)) {
        bad.push(format!("`log` lacks {marker:?}"));
    }
    // crash 8.0.2 lists only the active tasks here ("not found in PID
    // hash"), so `ps` must at least show PID 1; the same-crash comparison
    // checks that filtering does not change its output.
    if !out.lines().any(|l| {
        l.trim_start_matches(['>', ' '])
            .split_whitespace()
            .take(2)
            .eq(["1", "0"])
    }) {
        bad.push("`ps` does not list PID 1".into());
    }
    if !out.lines().any(|l| l.trim_start().starts_with("TOTAL MEM")) {
        bad.push("`kmem -i` has no TOTAL MEM line".into());
    }
    if let Some(l) = out.lines().find(|l| l.contains("read error")) {
        bad.push(format!("crash: {}", l.trim()));
    }
    if bad.is_empty() {
        v.held(format!(
            "crash {} with the production vmlinux: {release}, {panic}, bt of PID 1 through panic, \
             the marker in the log, ps with PID 1, kmem -i, no read error ({:.1} s)",
            crash.version,
            t.elapsed().as_secs_f64()
        ));
        Ok(format!("ok ({})", crash.version))
    } else {
        v.fail(format!(
            "crash {}: {} (log: {})",
            crash.version,
            bad.join("; "),
            log.display()
        ));
        Ok(format!("FAILED ({})", crash.version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_vmcore_line_parses() {
        let l = "vmcore /proc/vmcore: 509501440 bytes, 2 CPUs, 3 PT_LOADs, kernel 6.12.117";
        assert_eq!(
            parse_vmcore_line(l),
            Some((509_501_440, 2, "6.12.117".to_string()))
        );
        assert_eq!(
            parse_vmcore_line("vmcore /dev/vda: 1 bytes, 1 CPUs, 1 PT_LOADs, kernel x"),
            None
        );
    }

    #[test]
    fn covered_joins_overlapping_and_adjacent_ranges() {
        // zgetdump 2.35's list for an elided 6.12 dump, abridged.
        let zg = [
            0..0x781000,
            0x31c000..0x783000,
            0x781000..0x793000,
            0x1f800000..0x20000000,
        ];
        assert_eq!(covered(zg), vec![0..0x793000, 0x1f800000..0x20000000]);
        assert_eq!(covered([5..6, 0..0, 1..2]), vec![1..2, 5..6]);
    }

    #[test]
    fn overlaps_are_physical() {
        let load = |vaddr, paddr, memsz| ProgramHeader {
            p_type: zfcpdump_format::elf::PT_LOAD,
            p_flags: 7,
            p_offset: 0,
            p_vaddr: vaddr,
            p_paddr: paddr,
            p_filesz: memsz,
            p_memsz: memsz,
            p_align: 4096,
        };
        let f = Facts {
            loads: vec![
                load(0x3ff_ffa1_c000, 0x31_c000, 0x5e_3000),
                load(0, 0, 0x1d80_0000),
                load(0x1f80_0000, 0x1f80_0000, 0x80_0000),
            ],
            ..Facts::default()
        };
        assert_eq!(f.overlaps(), vec![(0, 1)]);
        assert_eq!(f.text_segments().len(), 1);
    }
}
