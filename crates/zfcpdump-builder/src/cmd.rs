//! One way to run a host command: through xshell, with the exit status
//! always checked and, on failure, an error that quotes the command line,
//! its status and the end of what it wrote to stderr. Every task of the
//! builder and the lab runs its short commands through here, so that no
//! call site forgets the status or hides why a tool failed.
//!
//! Long steps whose output the user must see as it comes (make, QEMU) keep
//! their own runners; this is for commands that answer.

use std::process::Output;

use anyhow::{Context, Result, bail};
pub use xshell::{Cmd, Shell, cmd};

/// Lines of stderr quoted in an error.
const STDERR_LINES: usize = 12;

/// A shell whose commands run in the current directory with the current
/// environment; `Shell::change_dir` and `Cmd::env` narrow it per call.
pub fn shell() -> Result<Shell> {
    Shell::new().context("cannot set up a shell for host commands")
}

/// Runs `c` to its end, stdout and stderr captured, and returns both; a
/// failure to start or a nonzero exit is an error quoting stderr.
pub fn output(c: Cmd<'_>) -> Result<Output> {
    let line = c.to_string();
    output_shown_as(c, &line)
}

/// [`output`] for a command whose line holds a secret (a PIN in a PKCS#11
/// URI): its errors name it as `shown` instead of quoting its line.
pub fn output_shown_as(c: Cmd<'_>, shown: &str) -> Result<Output> {
    let line = shown;
    let o = c
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("cannot run `{line}`"))?;
    if !o.status.success() {
        bail!("{}", failure(line, &o));
    }
    Ok(o)
}

/// Runs `c` and returns its stdout as text, trailing newline trimmed.
pub fn read(c: Cmd<'_>) -> Result<String> {
    let o = output(c)?;
    let mut s =
        String::from_utf8(o.stdout).context("a command printed something that is not UTF-8")?;
    s.truncate(s.trim_end().len());
    Ok(s)
}

/// The first line `c` prints: a tool's `--version`.
pub fn first_line(c: Cmd<'_>) -> Result<String> {
    Ok(read(c)?.lines().next().unwrap_or_default().to_string())
}

/// Runs `c` with its stdout and stderr passed through to ours (for steps
/// whose output is the progress), checking the exit status.
pub fn run(c: Cmd<'_>) -> Result<()> {
    // xshell's own error names the command line and the exit code.
    Ok(c.quiet().run()?)
}

/// "`md5sum x` failed (exit status: 1): md5sum: x: No such file…".
fn failure(line: &str, o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(STDERR_LINES)..];
    match tail {
        [] => format!("`{line}` failed ({}) and wrote nothing to stderr", o.status),
        [one] => format!("`{line}` failed ({}): {one}", o.status),
        many => format!(
            "`{line}` failed ({}):\n    {}",
            o.status,
            many.join("\n    ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_command_is_an_error_quoting_its_stderr() {
        let sh = shell().unwrap();
        let missing = "/nonexistent/zfcpdump-cmd-test";
        let e = read(cmd!(sh, "md5sum {missing}")).unwrap_err().to_string();
        assert!(
            e.contains("`md5sum /nonexistent/zfcpdump-cmd-test` failed"),
            "{e}"
        );
        assert!(e.contains("exit status: 1"), "{e}");
        assert!(e.contains("No such file or directory"), "{e}");
    }

    #[test]
    fn a_command_that_cannot_start_names_itself() {
        let sh = shell().unwrap();
        let e = read(cmd!(sh, "zfcpdump-no-such-program")).unwrap_err();
        assert!(
            format!("{e:#}").contains("cannot run `zfcpdump-no-such-program`"),
            "{e:#}"
        );
    }

    #[test]
    fn a_secret_command_line_is_not_quoted() {
        let sh = shell().unwrap();
        let secret = "pin-value=1234";
        let e = output_shown_as(cmd!(sh, "sh -c 'echo bad >&2; exit 3' {secret}"), "sh")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "`sh` failed (exit status: 3): bad");
    }

    #[test]
    fn stdout_is_returned_trimmed() {
        let sh = shell().unwrap();
        assert_eq!(read(cmd!(sh, "printf 'a b\n\n'")).unwrap(), "a b");
        assert_eq!(first_line(cmd!(sh, "printf 'a\nb\n'")).unwrap(), "a");
    }
}
