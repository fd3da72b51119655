//! The crash lab's report: one table row per run, in the e2e summary style,
//! then what each run checked.

use std::fmt::Write as _;
use std::time::Duration;

use super::compare::SameCrash;
use super::{Pair, RunResult};
use zfcpdump_builder::util;

fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1 << 20) as f64)
}

/// The PT_LOAD layout in a few words: count, text segment, overlaps.
fn layout(r: &RunResult) -> String {
    let f = &r.facts;
    if f.loads.is_empty() {
        return "-".into();
    }
    let text = match f.text_segments().first() {
        Some(t) => format!("text {:#x}->{:#x}+{}", t.p_vaddr, t.p_paddr, mib(t.p_memsz)),
        None => "no text segment".into(),
    };
    let what = if r.kind.filtered() {
        "PT_LOADs after elision"
    } else {
        "PT_LOADs"
    };
    format!(
        "{} {what}, {text}, {} overlaps",
        f.loads.len(),
        f.overlaps().len()
    )
}

pub(crate) fn render(
    pairs: &[Pair],
    results: &[RunResult],
    same: &[(String, SameCrash)],
    setup: Duration,
    total: Duration,
) -> (String, bool) {
    let ok =
        results.iter().all(|r| r.verdict.is_ok()) && same.iter().all(|(_, c)| c.verdict.is_ok());
    let mut s = String::new();
    let _ = writeln!(
        s,
        "crashlab: {} in {} ({} runs, {} failed; setup {})",
        if ok { "PASSED" } else { "FAILED" },
        util::fmt_duration(total),
        results.len(),
        results.iter().filter(|r| !r.verdict.is_ok()).count(),
        util::fmt_duration(setup)
    );
    for pair in pairs {
        let _ = writeln!(
            s,
            "\npair {}: production kernel {}, dump tool kernel {}, crashkernel={}M, readers: {}",
            pair.name,
            pair.release,
            pair.tool_release,
            pair.crashkernel >> 20,
            pair.readers.versions.join("; ")
        );
        let _ = writeln!(
            s,
            "{:<7} {:<7} {:>12} {:>11} {:<44} {:<20} {:>9} {:>8} {:>9} {:<12} pattern pages",
            "run",
            "result",
            "vmcore",
            "dump",
            "PT_LOAD layout",
            "capture memory",
            "boot-off",
            "dump",
            "peak RSS",
            "crash",
        );
        for r in results.iter().filter(|r| r.pair == pair.name) {
            let f = &r.facts;
            let _ = writeln!(
                s,
                "{:<7} {:<7} {:>12} {:>11} {:<44} {:<20} {:>9} {:>8} {:>9} {:<12} {}",
                r.kind.name(),
                r.verdict.result(),
                f.vmcore_bytes.map_or("-".into(), |b| b.to_string()),
                f.dump_bytes.map_or("-".into(), mib),
                layout(r),
                f.capture_memory.as_deref().map_or("-".into(), |m| m
                    .split(' ')
                    .next()
                    .unwrap_or(m)
                    .to_string()),
                r.elapsed
                    .map_or("timeout".into(), |d| format!("{:.1} s", d.as_secs_f64())),
                f.dump_ms
                    .map_or("-".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0)),
                f.peak_rss_kib.map_or("-".into(), |k| format!("{k} KiB")),
                f.crash.as_deref().unwrap_or("-"),
                f.pattern.as_deref().unwrap_or("-")
            );
        }
    }
    if !same.is_empty() {
        let _ = writeln!(
            s,
            "\nsame crash: each pair's byte-exact dump filtered again by the agent in tool mode \
             (qemu-user), against makedumpfile on the same dump; pages zero/cache/cache_private/\
             user/free, ours (makedumpfile's)"
        );
        let _ = writeln!(
            s,
            "{:<20} {:>5} {:>11} {:>11} {:>8} {:>13} {:>13} {:<58} {:>9} {:>8} {:>9}",
            "pair",
            "level",
            "byte-exact",
            "ours",
            "headers",
            "mdf -E",
            "mdf -l",
            "pages left out",
            "ours only",
            "mdf only",
            "copy"
        );
        for (pair, c) in same {
            let classes: Vec<String> = c
                .ours_counts
                .iter()
                .zip(c.mdf_counts)
                .map(|(o, m)| format!("{o}({m})"))
                .collect();
            let _ = writeln!(
                s,
                "{:<20} {:>5} {:>11} {:>11} {:>8} {:>13} {:>13} {:<58} {:>9} {:>8} {:>7} ms",
                pair,
                c.level,
                mib(c.exact_bytes),
                mib(c.ours_bytes),
                c.ours_phnum,
                mib(c.mdf_elf_bytes),
                mib(c.mdf_kdump_bytes),
                classes.join("/"),
                c.ours_only,
                c.mdf_only,
                c.agent_ms
            );
        }
    }
    let _ = writeln!(s, "\nchecked:");
    for r in results {
        let _ = writeln!(s, "  {}: {}", r.name, r.verdict.checked.join("; "));
        for p in &r.verdict.problems {
            let _ = writeln!(s, "    PROBLEM: {p}");
        }
    }
    for (pair, c) in same {
        let _ = writeln!(
            s,
            "  same crash {pair} at {}: {}",
            c.level,
            c.verdict.checked.join("; ")
        );
        for p in &c.verdict.problems {
            let _ = writeln!(s, "    PROBLEM: {p}");
        }
    }
    (s, ok)
}
