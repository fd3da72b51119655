//! The verdict of a run: what it got wrong (its problems; none: it passed)
//! and what was verified and held (for the report). Every check of a run
//! adds to one `Verdict`, in the order the checks run.

use std::path::Path;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// What the run got wrong, one sentence each; empty: it passed.
    pub(crate) problems: Vec<String>,
    /// What was verified and held, for the report.
    pub(crate) checked: Vec<String>,
}

impl Verdict {
    /// A problem: the run fails.
    pub(crate) fn fail(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }

    /// What was verified and held.
    pub(crate) fn held(&mut self, what: impl Into<String>) {
        self.checked.push(what.into());
    }

    /// `problem` unless `ok`; returns `ok`.
    pub(crate) fn check(&mut self, ok: bool, problem: impl Into<String>) -> bool {
        if !ok {
            self.fail(problem);
        }
        ok
    }

    /// More problems, in their order (those of a check that returns them).
    pub(crate) fn extend(&mut self, problems: impl IntoIterator<Item = String>) {
        self.problems.extend(problems);
    }

    /// No problems.
    pub(crate) fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// `ok` or `FAILED`, for progress lines and tables.
    pub(crate) fn result(&self) -> &'static str {
        if self.is_ok() { "ok" } else { "FAILED" }
    }

    /// Prints a failed run of `e2e`, `crashlab` or `faults`: its problems and
    /// the console's tail.
    pub(crate) fn print_failed_run(&self, tag: &str, name: &str, log: &Path, tail: &str) {
        eprintln!(
            "\n[{tag}] run {name} FAILED:\n  - {}\n---- console tail ({}) ----\n{tail}\n----",
            self.problems.join("\n  - "),
            log.display(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_and_what_held_keep_their_order() {
        let mut v = Verdict::default();
        assert!(v.is_ok());
        assert_eq!(v.result(), "ok");
        v.held("status complete");
        assert!(v.check(true, "not shown"));
        assert!(!v.check(false, format!("QEMU exited {}", 2)));
        v.fail("the console shows a kernel panic");
        v.extend(vec!["a".to_string(), "b".to_string()]);
        v.held("extract = vmcore");
        assert!(!v.is_ok());
        assert_eq!(v.result(), "FAILED");
        assert_eq!(
            v.problems,
            [
                "QEMU exited 2",
                "the console shows a kernel panic",
                "a",
                "b"
            ]
        );
        assert_eq!(v.checked, ["status complete", "extract = vmcore"]);
    }
}
