//! The bench's report: the numbers (also written as JSON) and the table.

use std::time::Duration;

use serde::Serialize;

use super::{Stats, fmt_bytes, fmt_fraction};
use crate::kit::Table;
use crate::kit::table::{Left, Right};
use zfcpdump_builder::util;

#[derive(Debug, Serialize)]
pub struct RssPoint {
    pub memory_bytes: u64,
    pub vmcore_bytes: u64,
    pub peak_rss_kib: u64,
}

#[derive(Debug, Serialize)]
pub struct ContenderReport {
    pub key: String,
    pub name: String,
    pub command: String,
    /// In run order.
    pub mb_per_s: Vec<f64>,
    pub stats: Stats,
    pub ratio_to_dd_1m: f64,
}

#[derive(Debug, Serialize)]
pub struct FractionReport {
    pub zero_fraction: f64,
    pub vmcore_bytes: u64,
    pub generate_seconds: f64,
    pub contenders: Vec<ContenderReport>,
    /// The agent's `peak RSS` of each timed run.
    pub agent_peak_rss_kib: Vec<u64>,
    /// Bytes of the vmcore still in the page cache after the runs.
    pub resident_after: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub schema: u32,
    pub unit: String,
    pub size_bytes: u64,
    pub runs: u32,
    pub dir: String,
    pub space_needed_bytes: u64,
    pub peak_disk_use_bytes: u64,
    pub total_seconds: f64,
    pub rss_probe: RssPoint,
    /// The page cache as the target.
    pub results: Vec<FractionReport>,
    /// The same vmcores with the writes limited, when that could run.
    pub device_limit: Option<DeviceLimitReport>,
    /// Why the device-limited section did not run.
    pub device_limit_skipped: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DeviceLimitReport {
    /// The limit, MB (10^6 bytes) per second.
    pub mb_per_s: u64,
    pub mechanism: String,
    /// "major:minor" of the limited disk.
    pub device: String,
    pub results: Vec<FractionReport>,
}

const NOTES: &[&str] = &[
    "MB/s = 10^6 bytes per second: the vmcore's size over the wall time of the whole \
     command, from start to exit, fsync included; median and min-max of the runs; ratio = \
     median / median of dd bs=1M.",
    "Each vmcore was read once before timing: every contender reads it from the page cache. \
     One untimed warm-up round of every contender precedes the timed runs.",
    "Targets are fresh sparse files before every run (the disk image re-prepared by \
     zfcpdump-disk, dd targets of the same size written at the dump area's offset, cp's own \
     file), so all contenders allocate the same blocks; `sync -f` runs before each timing.",
    "Runs are interleaved, their order rotating each round.",
    "The agent runs in tool mode with --hsa-size 0x2000000: the HSA-first order is taken, \
     but it reads a file. HSA and zcore read speed cannot be measured on this machine \
     (no /proc/vmcore from an FCP dump).",
    "dd and cp are the baseline on the same files in the same run.",
    "The device-limited section runs every command in a block-I/O cgroup that limits its \
     writes to the disk (the v1 blkio limit does not cover writeback that the kernel's \
     flusher threads start on their own, which 1 GiB of dirty pages does not reach here). \
     There the write speed, not the CPU, bounds a dump, as on a real one.",
    "`agent, elided` is the agent with dump_level = 1 (its --config file): all-zero \
     pages are not written. Its MB/s counts the whole vmcore, like the others: the rate at \
     which a machine's memory is dumped. Its runs count in the peak RSS too.",
];

/// The median/spread/ratio rows of one section, and the elided/byte-exact
/// ratio per vmcore.
fn push_table(s: &mut String, results: &[FractionReport]) {
    let mut t = Table::new(&[
        ("zeros", Left),
        ("contender", Left),
        ("median MB/s", Right),
        ("min-max MB/s", Right),
        ("vs dd 1M", Right),
    ]);
    for f in results {
        for (i, c) in f.contenders.iter().enumerate() {
            let zeros = if i == 0 {
                fmt_fraction(f.zero_fraction)
            } else {
                String::new()
            };
            t.row([
                zeros,
                c.name.clone(),
                format!("{:.0}", c.stats.median),
                format!("{:.0}-{:.0}", c.stats.min, c.stats.max),
                format!("{:.2}", c.ratio_to_dd_1m),
            ]);
        }
        let median = |key: &str| {
            f.contenders
                .iter()
                .find(|c| c.key == key)
                .map(|c| c.stats.median)
        };
        if let (Some(exact), Some(elided)) = (median("agent"), median("agent_elided")) {
            t.spanning(
                [""],
                format!("agent, elided / agent: {:.2}x", elided / exact.max(1e-9)),
            );
        }
    }
    s.push_str(&t.render());
}

pub(super) fn render(r: &Report, commands: &[(String, String)]) -> String {
    let mut s = String::new();
    let push = |s: &mut String, line: String| {
        s.push_str(&line);
        s.push('\n');
    };
    push(
        &mut s,
        format!(
            "cargo xtask bench: vmcores of {} memory ({} bytes), {} timed runs per contender \
             after a warm-up, interleaved",
            fmt_bytes(r.size_bytes),
            r.results.first().map_or(0, |f| f.vmcore_bytes),
            r.runs
        ),
    );
    push(&mut s, String::new());
    push(
        &mut s,
        "Target: the page cache (what the copy costs in CPU):".into(),
    );
    push_table(&mut s, &r.results);
    push(&mut s, String::new());
    match (&r.device_limit, &r.device_limit_skipped) {
        (Some(d), _) => {
            push(
                &mut s,
                format!(
                    "Target: writes limited to {} MB/s ({} on disk {}), a model of the \
                     FCP-attached dump disk:",
                    d.mb_per_s, d.mechanism, d.device
                ),
            );
            push_table(&mut s, &d.results);
        }
        (None, Some(why)) => push(&mut s, format!("Device-limited section not run: {why}")),
        (None, None) => {}
    }
    push(&mut s, String::new());
    push(
        &mut s,
        "agent peak RSS (VmHWM, its `peak RSS` line), by vmcore size:".into(),
    );
    push(
        &mut s,
        format!(
            "  {:>8}, {:<10} {} KiB (one untimed run)",
            fmt_bytes(r.rss_probe.memory_bytes),
            "0% zeros:",
            r.rss_probe.peak_rss_kib
        ),
    );
    for f in &r.results {
        let (Some(min), Some(max)) = (
            f.agent_peak_rss_kib.iter().min(),
            f.agent_peak_rss_kib.iter().max(),
        ) else {
            continue;
        };
        push(
            &mut s,
            format!(
                "  {:>8}, {:<10} {min}-{max} KiB (min-max of {} runs)",
                fmt_bytes(r.size_bytes),
                format!("{} zeros:", fmt_fraction(f.zero_fraction)),
                f.agent_peak_rss_kib.len()
            ),
        );
    }
    push(&mut s, String::new());
    push(&mut s, "Notes:".into());
    for n in NOTES {
        push(&mut s, format!("- {n}"));
    }
    for f in &r.results {
        // More than 1% missing: the numbers include disk reads.
        if let Some(res) = f
            .resident_after
            .filter(|&res| res < f.vmcore_bytes - f.vmcore_bytes / 100)
        {
            push(
                &mut s,
                format!(
                    "- WARNING: only {} of the {} vmcore stayed in the page cache: some runs \
                     read from the disk.",
                    fmt_bytes(res),
                    fmt_fraction(f.zero_fraction)
                ),
            );
        }
    }
    push(&mut s, "Commands:".into());
    for (name, cmd) in commands {
        push(&mut s, format!("  {name:<16} {cmd}"));
    }
    push(
        &mut s,
        format!(
            "Took {} (work files in {}); disk space: {} stated, {} peak use.",
            util::fmt_duration(Duration::from_secs_f64(r.total_seconds)),
            r.dir,
            fmt_bytes(r.space_needed_bytes),
            fmt_bytes(r.peak_disk_use_bytes)
        ),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::super::{GIB, MIB, space_needed, stats};
    use super::*;

    #[test]
    fn table_shows_ratio_spread_and_rss() {
        let c = |name: &str, v: Vec<f64>, dd: f64| {
            let st = stats(&v);
            ContenderReport {
                key: name.into(),
                name: name.into(),
                command: String::new(),
                mb_per_s: v,
                stats: st,
                ratio_to_dd_1m: st.median / dd,
            }
        };
        let r = Report {
            schema: 1,
            unit: "MB/s".into(),
            size_bytes: GIB,
            runs: 5,
            dir: "/d".into(),
            space_needed_bytes: space_needed(GIB),
            peak_disk_use_bytes: GIB,
            total_seconds: 75.0,
            rss_probe: RssPoint {
                memory_bytes: 64 * MIB,
                vmcore_bytes: 64 * MIB + 8192,
                peak_rss_kib: 3000,
            },
            results: vec![FractionReport {
                zero_fraction: 0.5,
                vmcore_bytes: GIB + 8192,
                generate_seconds: 1.0,
                contenders: vec![
                    c(
                        "zfcpdump-agent",
                        vec![900.0, 800.0, 850.0, 700.0, 1000.0],
                        1000.0,
                    ),
                    c("dd bs=1M", vec![1000.0; 5], 1000.0),
                ],
                agent_peak_rss_kib: vec![3100, 3124, 3000, 3050, 3080],
                resident_after: Some(GIB + 8192),
            }],
            device_limit: None,
            device_limit_skipped: Some("no cgroup here".into()),
        };
        let t = render(&r, &[]);
        // Compared word by word: the column widths may change.
        let row = |first: &str| -> Vec<&str> {
            let line = t.lines().find(|l| l.trim_start().starts_with(first));
            line.unwrap_or_else(|| panic!("no row {first}:\n{t}"))
                .split_whitespace()
                .collect()
        };
        assert_eq!(
            row("50%"),
            ["50%", "zfcpdump-agent", "850", "700-1000", "0.85"]
        );
        assert_eq!(
            row("dd bs=1M"),
            ["dd", "bs=1M", "1000", "1000-1000", "1.00"]
        );
        assert!(
            t.contains("  64 MiB, 0% zeros:  3000 KiB (one untimed run)"),
            "{t}"
        );
        assert!(t.contains("3000-3124 KiB (min-max of 5 runs)"), "{t}");
        assert!(t.contains("cannot be measured on this machine"), "{t}");
        assert!(t.contains("Took 1m15s"), "{t}");
        assert!(!t.contains("WARNING"), "{t}");
        assert!(
            t.contains("Device-limited section not run: no cgroup here"),
            "{t}"
        );
    }
}
