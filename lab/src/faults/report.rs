//! The fault table, and the progress check of the slow disk.

use std::fmt::Write as _;
use std::time::Duration;

use super::Row;
use super::powercut::{Calibration, MIN_CUT};
use crate::kit::Table;
use crate::kit::table::Left;
use zfcpdump_builder::util;

/// The summary: a row per run (fault, disk, console verdict, QEMU's exit,
/// status, bytes changed outside the dump area), then crash's answers on
/// the cut disks. Returns the text and whether everything passed.
pub(crate) fn table(
    title: &str,
    rows: &[Row],
    crash: &[String],
    cal: &Calibration,
    seed: u64,
    total: Duration,
) -> (String, bool) {
    let cut = rows.iter().filter(|r| r.exit.starts_with("killed")).count();
    let cuts = rows
        .iter()
        .filter(|r| r.name.starts_with("power-cut-"))
        .count();
    let short = cuts >= MIN_CUT && cut < MIN_CUT;
    let failed = rows.iter().filter(|r| !r.verdict.is_ok()).count() + usize::from(short);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "faults ({title}): {} in {} ({} runs, {failed} failed)\n",
        if failed == 0 { "PASSED" } else { "FAILED" },
        util::fmt_duration(total),
        rows.len()
    );
    let mut table = Table::new(&[
        ("fault", Left),
        ("disk", Left),
        ("console", Left),
        ("exit", Left),
        ("status", Left),
        ("outside the area", Left),
        ("result", Left),
    ])
    .gap(2);
    for r in rows {
        table.row([
            &r.fault,
            &r.disk,
            &r.console,
            &r.exit,
            &r.status,
            &r.outside,
            r.verdict.result(),
        ]);
    }
    s.push_str(&table.render());
    let _ = writeln!(
        s,
        "\npower cuts: seed {seed:#x}; calibration: copy from {:.2} s, ELF header at {:.2} s, \
         done at {:.2} s after QEMU's start; {cut} of {cuts} runs were cut, the others finished \
         first{}",
        cal.copy.as_secs_f64(),
        cal.header.as_secs_f64(),
        cal.done.as_secs_f64(),
        if short {
            format!(" (FAILED: fewer than {MIN_CUT})")
        } else {
            String::new()
        }
    );
    for r in rows.iter().filter(|r| r.name.starts_with("slow-disk")) {
        let _ = writeln!(
            s,
            "\n{} ({}), the progress lines as they came:",
            r.name, r.fault
        );
        for (t, l) in r.lines.iter().filter(|(_, l)| l.starts_with("progress: ")) {
            let _ = writeln!(s, "  {:>6.2} s  {l}", t.as_secs_f64());
        }
    }
    let _ = writeln!(s, "\ncrash on the cut disks:");
    for l in crash {
        let _ = writeln!(s, "  {l}");
    }
    for r in rows.iter().filter(|r| !r.verdict.is_ok()) {
        let _ = writeln!(
            s,
            "\n{} FAILED:\n  - {}",
            r.name,
            r.verdict.problems.join("\n  - ")
        );
    }
    (s, failed == 0)
}

/// One progress line: its time, percentage and ETA.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Progress {
    at: f64,
    pct: u64,
    eta: Option<f64>,
}

fn parse_progress(at: Duration, line: &str) -> Option<Progress> {
    let rest = line.strip_prefix("progress: ")?;
    let pct = rest.split('(').nth(1)?.split('%').next()?.parse().ok()?;
    let eta = rest
        .rsplit("ETA ")
        .next()?
        .strip_suffix(" s")
        .and_then(|v| v.parse().ok());
    Some(Progress {
        at: at.as_secs_f64(),
        pct,
        eta,
    })
}

/// The progress of a throttled dump: a line at the configured interval
/// (1 s; the agent prints when a buffer completes after it, so a little
/// more), and ETAs that point at when the copy really ended.
pub(crate) fn progress_problems(lines: &[(Duration, String)]) -> Vec<String> {
    let all: Vec<Progress> = lines
        .iter()
        .filter_map(|(t, l)| parse_progress(*t, l))
        .collect();
    let mut p = Vec::new();
    let Some(end) = all.iter().find(|x| x.pct == 100) else {
        return vec!["no 100% progress line".into()];
    };
    let during: Vec<&Progress> = all.iter().filter(|x| x.pct < 100).collect();
    if during.len() < 3 {
        return vec![format!(
            "{} progress lines before 100%, expected one a second",
            during.len()
        )];
    }
    for pair in during.windows(2) {
        let gap = pair[1].at - pair[0].at;
        if !(0.5..=3.0).contains(&gap) {
            p.push(format!(
                "{gap:.2} s between progress lines at {}% and {}% (interval 1 s)",
                pair[0].pct, pair[1].pct
            ));
        }
    }
    for x in during.iter().filter(|x| x.pct >= 25) {
        let Some(eta) = x.eta else {
            p.push(format!("no ETA at {}%", x.pct));
            continue;
        };
        let left = end.at - x.at;
        if (eta - left).abs() > (0.5 * left).max(2.0) {
            p.push(format!(
                "at {}% the ETA was {eta} s, the copy ended {left:.1} s later",
                x.pct
            ));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: f64, l: &str) -> (Duration, String) {
        (Duration::from_secs_f64(s), l.to_string())
    }

    #[test]
    fn progress_at_the_interval_with_good_etas_passes() {
        let lines = [
            at(1.0, "progress: 2.0 of 10.0 MiB (20%), 2.0 MiB/s, ETA 4 s"),
            at(2.0, "progress: 4.0 of 10.0 MiB (40%), 2.0 MiB/s, ETA 3 s"),
            at(3.1, "progress: 6.0 of 10.0 MiB (60%), 2.0 MiB/s, ETA 2 s"),
            at(4.0, "progress: 8.0 of 10.0 MiB (80%), 2.0 MiB/s, ETA 1 s"),
            at(5.0, "progress: 10.0 of 10.0 MiB (100%), 2.0 MiB/s, ETA 0 s"),
        ];
        assert_eq!(progress_problems(&lines), Vec::<String>::new());
    }

    #[test]
    fn gaps_and_wrong_etas_are_reported() {
        let lines = [
            at(1.0, "progress: 2.0 of 10.0 MiB (20%), 2.0 MiB/s, ETA 4 s"),
            at(5.0, "progress: 4.0 of 10.0 MiB (40%), 2.0 MiB/s, ETA 30 s"),
            at(6.0, "progress: 6.0 of 10.0 MiB (60%), 2.0 MiB/s, ETA 2 s"),
            at(8.0, "progress: 10.0 of 10.0 MiB (100%), 2.0 MiB/s, ETA 0 s"),
        ];
        let p = progress_problems(&lines);
        assert!(p.iter().any(|x| x.contains("4.00 s between")), "{p:?}");
        assert!(p.iter().any(|x| x.contains("ETA was 30 s")), "{p:?}");
        assert_eq!(
            progress_problems(&lines[..1]),
            ["no 100% progress line".to_string()]
        );
    }
}
