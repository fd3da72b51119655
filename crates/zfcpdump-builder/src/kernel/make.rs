//! Running make: output appended to a log, a live progress line, and the
//! log's last lines when it fails.

use std::fs;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util;

/// What the live line of a long make shows.
pub(super) struct Progress<'a> {
    /// "compiling" or "linking".
    pub label: &'a str,
    /// Objects an earlier compile of the same source made: with it the line
    /// shows a percentage and the time left.
    pub expected: Option<u64>,
}

impl Progress<'_> {
    fn line(&self, elapsed: Duration, objects: u64) -> String {
        let mut s = format!(
            "[kernel] {}: {} elapsed, {objects} objects compiled",
            self.label,
            util::fmt_duration(elapsed)
        );
        if let Some(total) = self.expected.filter(|&t| t > 0) {
            // Capped below 100%: the estimate comes from another .config.
            let pct = (100 * objects / total).min(99);
            s.push_str(&format!(" of about {total} ({pct}%)"));
            // Too few objects make a wild rate; the first ones are the slow
            // host tools.
            if objects >= 20 && objects < total {
                let left = elapsed.mul_f64((total - objects) as f64 / objects as f64);
                s.push_str(&format!(", about {} left", util::fmt_duration(left)));
            }
        }
        s
    }
}

/// Runs a command with stdout and stderr appended to `log`. With
/// `progress`, shows a live line of elapsed time and objects compiled.
/// On failure, prints the log's last lines and its path. Returns the
/// number of objects compiled (CC and AS lines).
pub(super) fn run_logged(
    cmd: &mut Command,
    log: &Path,
    what: &str,
    progress: Option<&Progress>,
) -> Result<u64> {
    let mut logf =
        std::io::BufWriter::new(fs::OpenOptions::new().create(true).append(true).open(log)?);
    writeln!(logf, "$ {cmd:?}")?;
    let (reader, writer) = std::io::pipe()?;
    cmd.stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("{what}: cannot run {:?}", cmd.get_program()))?;
    // The Command still holds the pipe's write ends; drop them, or the
    // reader below never sees end-of-file.
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let start = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut objects = 0u64;
    let mut last_shown = Instant::now();
    let mut tail: std::collections::VecDeque<String> = Default::default();
    for line in BufReader::new(reader).lines() {
        let line = line.unwrap_or_default();
        writeln!(logf, "{line}")?;
        let t = line.trim_start();
        if t.starts_with("CC ") || t.starts_with("AS ") {
            objects += 1;
        }
        if tail.len() == 30 {
            tail.pop_front();
        }
        tail.push_back(line);
        let interval = if tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(30)
        };
        if let Some(p) = progress
            && last_shown.elapsed() >= interval
        {
            last_shown = Instant::now();
            let msg = p.line(start.elapsed(), objects);
            if tty {
                eprint!("\r\x1b[K{msg}");
            } else {
                eprintln!("{msg}");
            }
        }
    }
    let status = child.wait()?;
    logf.flush()?;
    if progress.is_some() && tty {
        eprint!("\r\x1b[K");
    }
    if !status.success() {
        eprintln!("---- last lines of {} ----", log.display());
        for l in &tail {
            eprintln!("{l}");
        }
        eprintln!("----");
        bail!("{what} failed ({status}); full log: {}", log.display());
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_estimates_from_an_earlier_count() {
        let p = Progress {
            label: "compiling",
            expected: Some(1000),
        };
        let l = p.line(Duration::from_secs(60), 250);
        assert!(
            l.contains("250 objects compiled of about 1000 (25%)"),
            "{l}"
        );
        assert!(l.contains("about 3m00s left"), "{l}");
        // Past the estimate: no negative time, the percentage stays below 100.
        let l = p.line(Duration::from_secs(60), 1200);
        assert!(l.contains("(99%)") && !l.contains("left"), "{l}");
        let none = Progress {
            label: "linking",
            expected: None,
        };
        assert!(!none.line(Duration::from_secs(5), 3).contains('%'));
    }
}
