//! The crash lab's report: one table row per run, in the e2e summary style,
//! then what each run checked.

use std::fmt::Write as _;
use std::time::Duration;

use super::compare::SameCrash;
use super::{Pair, RunResult};
use crate::kit::Table;
use crate::kit::table::{Left, Right};
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
        let mut runs = Table::new(&[
            ("run", Left),
            ("result", Left),
            ("vmcore", Right),
            ("dump", Right),
            ("PT_LOAD layout", Left),
            ("capture memory", Left),
            ("boot-off", Right),
            ("dump", Right),
            ("peak RSS", Right),
            ("crash", Left),
            ("pattern pages", Left),
        ]);
        for r in results.iter().filter(|r| r.pair == pair.name) {
            let f = &r.facts;
            runs.row([
                r.kind.name().to_string(),
                r.verdict.result().to_string(),
                f.vmcore_bytes.map_or("-".into(), |b| b.to_string()),
                f.dump_bytes.map_or("-".into(), mib),
                layout(r),
                f.capture_memory
                    .as_deref()
                    .map_or("-".into(), |m| m.split(' ').next().unwrap_or(m).to_string()),
                r.elapsed
                    .map_or("timeout".into(), |d| format!("{:.1} s", d.as_secs_f64())),
                f.dump_ms
                    .map_or("-".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0)),
                f.peak_rss_kib.map_or("-".into(), |k| format!("{k} KiB")),
                f.crash.as_deref().unwrap_or("-").to_string(),
                f.pattern.as_deref().unwrap_or("-").to_string(),
            ]);
        }
        s.push_str(&runs.render());
    }
    if !same.is_empty() {
        let _ = writeln!(
            s,
            "\nsame crash: each pair's byte-exact dump filtered again by the agent in tool mode \
             (qemu-user), against makedumpfile on the same dump; pages zero/cache/cache_private/\
             user/free, ours (makedumpfile's)"
        );
        let mut table = Table::new(&[
            ("pair", Left),
            ("level", Right),
            ("byte-exact", Right),
            ("ours", Right),
            ("headers", Right),
            ("mdf -E", Right),
            ("mdf -l", Right),
            ("pages left out", Left),
            ("ours only", Right),
            ("mdf only", Right),
            ("copy", Right),
        ]);
        for (pair, c) in same {
            let classes: Vec<String> = c
                .ours_counts
                .iter()
                .zip(c.mdf_counts)
                .map(|(o, m)| format!("{o}({m})"))
                .collect();
            table.row([
                pair.clone(),
                c.level.to_string(),
                mib(c.exact_bytes),
                mib(c.ours_bytes),
                c.ours_phnum.to_string(),
                mib(c.mdf_elf_bytes),
                mib(c.mdf_kdump_bytes),
                classes.join("/"),
                c.ours_only.to_string(),
                c.mdf_only.to_string(),
                format!("{} ms", c.agent_ms),
            ]);
        }
        s.push_str(&table.render());
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
