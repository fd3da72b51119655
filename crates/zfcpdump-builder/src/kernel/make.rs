//! Running make: output appended to a log, a live progress line (or, in
//! verbose mode, the output itself on stderr, for build farms that keep
//! only the build's own log), and the whole output when it fails.

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

/// Runs a command with stdout and stderr appended to `log`. In verbose
/// mode ([`util::verbose`]) each line goes to stderr too; otherwise, with
/// `progress`, a live line of elapsed time and objects compiled. On
/// failure, the error holds the command's whole output (which verbose mode
/// has shown already) and the log's path. Returns the number of objects
/// compiled (CC and AS lines).
pub(super) fn run_logged(
    cmd: &mut Command,
    log: &Path,
    what: &str,
    progress: Option<&Progress>,
) -> Result<u64> {
    let mut logf =
        std::io::BufWriter::new(fs::OpenOptions::new().create(true).append(true).open(log)?);
    writeln!(logf, "$ {cmd:?}")?;
    let (reader, writer) = util::pipe()?;
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
    let verbose = util::verbose();
    let tty = !verbose && std::io::stderr().is_terminal();
    let mut objects = 0u64;
    let mut last_shown = Instant::now();
    let mut output: Vec<String> = Vec::new();
    for line in BufReader::new(reader).lines() {
        let line = line.unwrap_or_default();
        writeln!(logf, "{line}")?;
        let t = line.trim_start();
        if t.starts_with("CC ") || t.starts_with("AS ") {
            objects += 1;
        }
        // Verbose mode shows each line as it comes; else the error will.
        if verbose {
            eprintln!("{line}");
        } else {
            output.push(line);
        }
        let interval = if tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(30)
        };
        if let Some(p) = progress.filter(|_| !verbose && last_shown.elapsed() >= interval) {
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
        bail!(
            "{}",
            failure(what, &status.to_string(), &output, log, verbose)
        );
    }
    Ok(objects)
}

/// The error of a failed make: with -j the first error may be anywhere in
/// the output, and a build farm keeps only what we print, so the whole
/// output goes in, unless verbose mode printed it already.
fn failure(what: &str, status: &str, output: &[String], log: &Path, verbose: bool) -> String {
    if verbose {
        return format!(
            "{what} failed ({status}); its output is above, and in {}",
            log.display()
        );
    }
    format!(
        "{what} failed ({status}); its output ({} lines, also in {}):\n{}",
        output.len(),
        log.display(),
        output.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error held make's last 30 lines: a -j build's first error was
    /// often before them, and build farms keep only the build's log.
    #[test]
    fn a_failure_holds_the_whole_output() {
        let output: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
        let log = Path::new("/x/make.log");
        let e = failure("make", "exit status: 2", &output, log, false);
        assert!(e.contains("line 0\n") && e.contains("line 99"), "{e}");
        assert!(e.contains("100 lines, also in /x/make.log"), "{e}");
        let e = failure("make", "exit status: 2", &output, log, true);
        assert!(
            !e.contains("line 0") && e.contains("output is above"),
            "{e}"
        );
    }

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
