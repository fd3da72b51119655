//! The CI run's proof that the slow test tier really ran: every gate
//! (a call of the gate `test_tier::slow` in a test's source) must have left its record.
//! A slow test that was filtered out, renamed away or silently skipped
//! leaves the count short, and the CI step fails naming what did run.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// How many gate calls the workspace's tests hold (the crate `test-tier`
/// itself, which defines the gate, does not count).
pub fn gates_in_sources(root: &Path) -> Result<usize> {
    let mut n = 0;
    for dir in ["crates", "lab", "xtask"] {
        let dir = root.join(dir);
        if !dir.is_dir() {
            continue;
        }
        for e in walkdir::WalkDir::new(dir) {
            let e = e?;
            let p = e.path();
            if p.extension().is_none_or(|x| x != "rs")
                || p.components().any(|c| c.as_os_str() == "test-tier")
            {
                continue;
            }
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            n += text.matches(test_tier::GATE_CALL).count();
        }
    }
    Ok(n)
}

/// Compares the records in `records` with the gates in the sources.
pub fn check_ran(root: &Path, records: &Path) -> Result<String> {
    let expected = gates_in_sources(root)?;
    let mut ran: Vec<String> = match std::fs::read_dir(records) {
        Ok(rd) => rd
            .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", records.display())),
    };
    ran.sort();
    if ran.len() != expected {
        bail!(
            "the slow tier ran {} test(s) but the sources gate {expected}: every `{}` call must be \
             reached exactly once per run (ran: {})",
            ran.len(),
            test_tier::GATE_CALL,
            if ran.is_empty() {
                "none".to_string()
            } else {
                ran.join(", ")
            }
        );
    }
    Ok(format!("the slow tier ran all {expected} gated tests"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(gates: &[usize]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (i, n) in gates.iter().enumerate() {
            let f = d.path().join(format!("crates/c{i}/tests/t.rs"));
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            let gate = format!("if !{}\"x\") {{ return; }}\n", test_tier::GATE_CALL);
            std::fs::write(&f, gate.repeat(*n)).unwrap();
        }
        // The gate's own crate mentions the call but is not a test.
        let own = d.path().join("crates/test-tier/src/lib.rs");
        std::fs::create_dir_all(own.parent().unwrap()).unwrap();
        std::fs::write(&own, format!("const C: &str = {:?};", test_tier::GATE_CALL)).unwrap();
        d
    }

    fn records(d: &Path, names: &[&str]) -> std::path::PathBuf {
        let r = d.join("records");
        std::fs::create_dir_all(&r).unwrap();
        for n in names {
            std::fs::write(r.join(n), "x").unwrap();
        }
        r
    }

    #[test]
    fn every_gate_recorded_passes() {
        let d = tree(&[2, 1]);
        let r = records(d.path(), &["a.x", "a.y", "b.z"]);
        assert_eq!(gates_in_sources(d.path()).unwrap(), 3);
        assert!(check_ran(d.path(), &r).unwrap().contains("all 3"));
    }

    #[test]
    fn a_gate_that_did_not_run_fails_naming_what_ran() {
        let d = tree(&[2, 1]);
        let r = records(d.path(), &["a.x", "b.z"]);
        let e = check_ran(d.path(), &r).unwrap_err().to_string();
        assert!(e.contains("ran 2 test(s) but the sources gate 3"), "{e}");
        assert!(e.contains("a.x, b.z"), "{e}");
    }

    #[test]
    fn no_records_at_all_fails() {
        let d = tree(&[1]);
        let e = check_ran(d.path(), &d.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ran: none"), "{e}");
    }
}
