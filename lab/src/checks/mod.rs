//! The checks of an e2e run: what a good dump must leave on the disk, in
//! `zfcpdump-disk`'s view, in zgetdump's and crash's, and on the console.

pub(crate) mod console;
pub(crate) mod files;
pub(crate) mod memory;

use std::fs::{self, File};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use zfcpdump_format::PAGE_SIZE;
use zfcpdump_format::elf::{SeekReader, Vmcore};
use zfcpdump_format::superblock::{CSUM_FIELD_OFFSET, DumpSuperblock};

use crate::kit::{Ctx, RunSpec, Verdict};
use crate::readers::zgetdump::Zgetdump;
use crate::zipl::{disk_metadata, read_at};
use console::{ELISION_SUMMARY, fmt_mib};
use files::{compare_range, first_difference, sparse_copy_range};
use memory::{PhysMem, compare_memory, compare_memory_only, differs_from_memory};

/// Everything a good dump leaves behind, into `v`.
pub(crate) fn check_success(
    ctx: &Ctx,
    spec: &RunSpec,
    disk: &Path,
    console: &str,
    v: &mut Verdict,
) -> Result<()> {
    let src = spec.source;
    // The agent's own account of the size it copies.
    let said = format!(": {} bytes, {} CPUs,", src.extent, src.cpus);
    if !console
        .lines()
        .any(|l| l.starts_with("vmcore /dev/vda") && l.contains(&said))
    {
        v.fail(format!(
            "no `vmcore /dev/vda{said}` line: the agent read the source differently"
        ));
    }
    let Some((sb_offset, sb)) = metadata_after(disk, v)? else {
        return Ok(());
    };
    if spec.elided {
        return check_elided(ctx, spec, disk, console, sb_offset, &sb, v);
    }
    // The dump area holds the vmcore byte for byte (the ELF extent: what a
    // device source yields; the whole file for /proc/vmcore-shaped ones).
    let area = sb.dump_area();
    match compare_range(disk, area.start, &src.file, src.extent)? {
        Some(at) => v.fail(format!(
            "the dump area differs from the vmcore at vmcore byte {at:#x} (disk byte {:#x})",
            area.start + at
        )),
        None if src.extent == src.size => {
            v.held(format!("dump area = the whole vmcore ({} bytes)", src.size))
        }
        None => v.held(format!(
            "dump area = the vmcore's ELF extent ({} of {} bytes; the rest is in no segment)",
            src.extent, src.size
        )),
    }
    // Outside the copied bytes, only the 8-byte csum field may change.
    let csum_field = sb_offset + CSUM_FIELD_OFFSET;
    let allowed = [
        area.start..area.start + src.extent,
        csum_field..csum_field + 8,
    ];
    match first_difference(&spec.before, disk, &allowed)? {
        Some(at) => v.fail(format!(
            "the agent changed disk byte {at:#x}, outside the dump and the csum field"
        )),
        None => v.held("nothing else changed but the csum field"),
    }
    // zfcpdump-disk: status complete, extract equal to the vmcore.
    disk_status(&ctx.disk_tool, disk, v)?;
    let elf = ctx.work.join(format!("{}.extracted.elf", spec.name));
    if let Some(e) = extract(&ctx.disk_tool, disk, &elf)? {
        v.fail(e);
    } else {
        let n = fs::metadata(&elf)?.len();
        if n != src.extent {
            v.fail(format!(
                "zfcpdump-disk extract wrote {n} bytes, the vmcore's ELF extent is {}",
                src.extent
            ));
        } else if let Some(at) = compare_range(&elf, 0, &src.file, n)? {
            v.fail(format!(
                "the extracted ELF differs from the vmcore at byte {at:#x}"
            ));
        } else {
            v.held("extract = vmcore");
            if src.kernel_dump {
                check_with_crash(ctx, spec, &elf, v)?;
            }
        }
    }
    if !ctx.keep {
        let _ = fs::remove_file(&elf);
    }
    // zgetdump on the partition's bytes, where zgetdump can read the format
    // at all.
    if src.zgetdump {
        check_with_zgetdump(ctx, spec, disk, &sb, &ctx.readers.zgetdump, v)?;
    } else {
        v.held(
            "zgetdump not run: the source is outside what zgetdump reads (e_phoff 64, p_vaddr == \
             p_paddr, no section data after the last segment)",
        );
    }
    Ok(())
}

/// The disk's metadata as the agent left it: it must still parse, and the
/// superblock checksum must match. `None` (with the problem) if it does not
/// parse.
pub(crate) fn metadata_after(
    disk: &Path,
    v: &mut Verdict,
) -> Result<Option<(u64, DumpSuperblock)>> {
    let (sb_offset, sb) = match disk_metadata(disk) {
        Ok(m) => m,
        Err(e) => {
            v.fail(format!("the disk's metadata no longer parses: {e:#}"));
            return Ok(None);
        }
    };
    match sb.verify_csum(&read_at(disk, sb.csum_area().start, sb.csum_size as usize)?) {
        Ok(()) => v.held(format!("checksum {:#010x} valid", sb.csum)),
        Err(e) => v.fail(format!("superblock checksum: {e}")),
    }
    Ok(Some((sb_offset, sb)))
}

/// `zfcpdump-disk status` must say complete (exit 0).
pub(crate) fn disk_status(disk_tool: &Path, disk: &Path, v: &mut Verdict) -> Result<()> {
    let st = Command::new(disk_tool)
        .arg("status")
        .arg(disk)
        .output()
        .context("cannot run zfcpdump-disk")?;
    if st.status.code() == Some(0) {
        v.held("status complete");
    } else {
        v.fail(format!(
            "zfcpdump-disk status exited {:?}, not 0 (complete):\n{}{}",
            st.status.code(),
            String::from_utf8_lossy(&st.stdout),
            String::from_utf8_lossy(&st.stderr)
        ));
    }
    Ok(())
}

/// `zfcpdump-disk extract DISK ELF`; returns the problem if it failed.
pub(crate) fn extract(disk_tool: &Path, disk: &Path, elf: &Path) -> Result<Option<String>> {
    let ex = Command::new(disk_tool)
        .arg("extract")
        .arg(disk)
        .arg(elf)
        .output()
        .context("cannot run zfcpdump-disk")?;
    Ok((!ex.status.success()).then(|| {
        format!(
            "zfcpdump-disk extract failed ({}): {}",
            ex.status,
            String::from_utf8_lossy(&ex.stderr).trim()
        )
    }))
}

/// The rest of [`check_success`] for an elided dump (README "Zero-page
/// elision"): the ELF on the disk is smaller than the vmcore and laid out
/// differently, so instead of comparing bytes, the memory that
/// `zfcpdump-disk extract`'s ELF describes is compared with the vmcore's.
pub(crate) fn check_elided(
    ctx: &Ctx,
    spec: &RunSpec,
    disk: &Path,
    console: &str,
    sb_offset: u64,
    sb: &DumpSuperblock,
    v: &mut Verdict,
) -> Result<()> {
    let src = spec.source;
    let area = sb.dump_area();
    // The agent's account: elision planned, never given up, and a summary.
    if let Some(l) = console.lines().find(|l| l.contains("filtering off")) {
        v.fail(format!("the agent did not elide: {:?}", l.trim()));
    }
    let said = console
        .lines()
        .find(|l| l.starts_with(ELISION_SUMMARY))
        .map(str::trim);
    // The dump's own extent, from the ELF the agent wrote into the dump area.
    let on_disk = File::open(disk).with_context(|| format!("cannot open {}", disk.display()))?;
    let extent = match Vmcore::read_headers(
        &mut SeekReader::with_base(&on_disk, area.start),
        sb.dump_size,
    ) {
        Ok(vm) => vm.extent(),
        Err(e) => {
            v.fail(format!("the dump area holds no readable ELF: {e}"));
            return Ok(());
        }
    };
    if extent >= src.extent {
        v.fail(format!(
            "the elided dump is {extent} bytes, not smaller than the {}-byte vmcore",
            src.extent
        ));
    }
    // Outside the dump's bytes, only the 8-byte csum field may change.
    let csum_field = sb_offset + CSUM_FIELD_OFFSET;
    let allowed = [area.start..area.start + extent, csum_field..csum_field + 8];
    match first_difference(&spec.before, disk, &allowed)? {
        Some(at) => v.fail(format!(
            "the agent changed disk byte {at:#x}, outside the dump's {extent} bytes and the csum \
             field"
        )),
        None => v.held(format!(
            "nothing changed outside the dump's {extent} bytes ({} of the vmcore's) but the csum \
             field",
            pct(extent, src.extent)
        )),
    }
    disk_status(&ctx.disk_tool, disk, v)?;
    let elf = ctx.work.join(format!("{}.extracted.elf", spec.name));
    if let Some(e) = extract(&ctx.disk_tool, disk, &elf)? {
        v.fail(e);
    } else {
        let n = fs::metadata(&elf)?.len();
        if n != extent {
            v.fail(format!(
                "zfcpdump-disk extract wrote {n} bytes, the dump's ELF extent is {extent}"
            ));
        } else if let Some(at) = compare_range(disk, area.start, &elf, n)? {
            v.fail(format!(
                "the extracted ELF differs from the dump area at byte {at:#x}"
            ));
        } else {
            v.held("extract = the dump as stored");
        }
        match compare_memory(&src.file, &elf) {
            Err(e) => v.fail(format!("memory read back from the extracted ELF: {e:#}")),
            Ok(m) => {
                v.held(format!(
                    "notes byte-identical ({} bytes, {} CPUs)",
                    m.notes_bytes, m.cpus
                ));
                v.held(format!(
                    "memory = the vmcore's in every PT_LOAD ({} MiB in {} ranges; read back \
                     through {} PT_LOADs, {} with a zero tail, p_vaddr - p_paddr kept)",
                    m.memory >> 20,
                    m.ranges,
                    m.pieces,
                    m.tails
                ));
                let zero = m.zero_pages * PAGE_SIZE;
                if m.elided == zero && zero > 0 {
                    v.held(format!(
                        "{} bytes elided ({}) = every zero page outside the lowcore ({} of {} \
                         pages)",
                        m.elided,
                        pct(m.elided, m.memory),
                        m.zero_pages,
                        m.memory / PAGE_SIZE
                    ));
                } else {
                    v.fail(format!(
                        "{} bytes elided, but the vmcore has {} zero pages ({zero} bytes) outside \
                         the lowcore",
                        m.elided, m.zero_pages
                    ));
                }
                // The agent's summary counts what the disk shows.
                let want = format!(
                    "{ELISION_SUMMARY}1, {} of {} memory left out in {} runs; ",
                    fmt_mib(m.elided),
                    fmt_mib(m.memory),
                    m.tails
                );
                match said {
                    Some(l) if l.starts_with(&want) => v.held(format!("console: {l:?}")),
                    Some(l) => v.fail(format!(
                        "the agent's summary {l:?} does not start with {want:?}, what the dump \
                         holds"
                    )),
                    // console_order reports a missing one.
                    None => {}
                }
            }
        }
        if src.kernel_dump {
            check_with_crash(ctx, spec, &elf, v)?;
        }
    }
    if !ctx.keep {
        let _ = fs::remove_file(&elf);
    }
    // zgetdump 2.16 reads p_filesz < p_memsz wrongly (fixed in s390-tools
    // 2.33.0): the current one checks elided dumps of every kernel.
    check_with_zgetdump(ctx, spec, disk, sb, &ctx.readers.zgetdump_tails, v)
}

/// zgetdump on the partition's bytes, as an operator would run it on the
/// dump disk: `-i` must name the format, the CPUs and the memory of the
/// vmcore; for an elided dump, zgetdump's own copy (`zgetdump PART > ELF`)
/// must hold the vmcore's memory, zero tails read as zeros.
fn check_with_zgetdump(
    ctx: &Ctx,
    spec: &RunSpec,
    disk: &Path,
    sb: &DumpSuperblock,
    zg: &Zgetdump,
    v: &mut Verdict,
) -> Result<()> {
    let src = spec.source;
    let part = ctx.work.join(format!("{}.partition", spec.name));
    sparse_copy_range(disk, sb.part_start, sb.part_size, &part)?;
    let who = format!("zgetdump {}", zg.version);
    match zg.info(&part) {
        Ok(info) => {
            if info.format != "elf"
                || info.cpus as usize != src.cpus
                || info.memory_map != src.ranges
            {
                v.fail(format!(
                    "{who} -i on the partition: format {}, {} CPUs, memory {}; expected elf, {} \
                     CPUs, {}",
                    info.format,
                    info.cpus,
                    fmt_ranges(&info.memory_map),
                    src.cpus,
                    fmt_ranges(&src.ranges)
                ));
            } else {
                v.held(format!(
                    "{who} -i on the partition: elf, {} CPUs, {} KiB in {} ranges",
                    info.cpus,
                    info.memory_bytes() >> 10,
                    info.memory_map.len()
                ));
            }
        }
        Err(e) => v.fail(format!("{e:#}")),
    }
    if spec.elided {
        let copy = ctx.work.join(format!("{}.zgetdump.elf", spec.name));
        match zg
            .copy(&part, &copy)
            .and_then(|()| compare_memory_only(&src.file, &copy))
        {
            Ok(bytes) => v.held(format!(
                "{who}'s copy of the partition = the vmcore's memory ({} MiB, zero tails read \
                 as zeros)",
                bytes >> 20
            )),
            Err(e) => v.fail(format!("{who}'s copy of the partition: {e:#}")),
        }
        if !ctx.keep {
            let _ = fs::remove_file(&copy);
        }
    }
    if !ctx.keep {
        let _ = fs::remove_file(&part);
    }
    Ok(())
}

/// crash (Debian's s390x build under qemu-user) on the extracted dump of a
/// guest that ran the profile's kernel, with that kernel's vmlinux: it must take
/// the dump (it refuses a dump that does not match the vmlinux), name the
/// kernel release, and read every byte of physical memory with `rd -p` as
/// the vmcore holds it, the zero tails of an elided dump included.
pub(crate) fn check_with_crash(
    ctx: &Ctx,
    spec: &RunSpec,
    elf: &Path,
    v: &mut Verdict,
) -> Result<()> {
    let src = spec.source;
    let raws: Vec<PathBuf> = (0..src.ranges.len())
        .map(|i| ctx.work.join(format!("{}.crash-rd{i}.bin", spec.name)))
        .collect();
    let mut cmds = vec!["sys".to_string()];
    for (r, f) in src.ranges.iter().zip(&raws) {
        cmds.push(format!(
            "rd -p -r {} {:#x} {}",
            f.display(),
            r.start,
            r.end - r.start
        ));
    }
    let log = ctx.work.join(format!("{}.crash.log", spec.name));
    let t = Instant::now();
    let out = match ctx.readers.crash.session(&ctx.vmlinux, elf, &cmds, &log) {
        Ok(out) => out,
        Err(e) => {
            v.fail(format!("{e:#}"));
            return Ok(());
        }
    };
    let release = format!("RELEASE: {}", ctx.release);
    if !out.lines().any(|l| l.trim() == release) {
        v.fail(format!(
            "crash's `sys` does not say {release:?} (log: {})",
            log.display()
        ));
        return Ok(());
    }
    let mem = PhysMem::open(&src.file)?;
    for (r, f) in src.ranges.iter().zip(&raws) {
        if let Some(problem) = differs_from_memory(&mem, r.clone(), f)? {
            v.fail(format!("crash `rd -p` of {r:#x?}: {problem}"));
            return Ok(());
        }
        if !ctx.keep {
            let _ = fs::remove_file(f);
        }
    }
    let memory: u64 = src.ranges.iter().map(|r| r.end - r.start).sum();
    v.held(format!(
        "crash {} (Debian s390x, qemu-user) with the kernel's vmlinux: takes the dump, {release}, \
         `rd -p` of all {} MiB = the vmcore's memory ({:.1} s)",
        ctx.readers.crash.version,
        memory >> 20,
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}

pub(crate) fn pct(part: u64, whole: u64) -> String {
    format!("{:.1}%", part as f64 * 100.0 / whole.max(1) as f64)
}

pub(crate) fn fmt_ranges(r: &[Range<u64>]) -> String {
    let v: Vec<String> = r
        .iter()
        .map(|r| format!("{:#x}..{:#x}", r.start, r.end))
        .collect();
    format!("[{}]", v.join(", "))
}
