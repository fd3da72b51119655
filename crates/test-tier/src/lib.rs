//! The one gate of the slow test tier (CONTRIBUTING.md).
//!
//! `cargo test --workspace` runs the fast tier: no kernel builds, no
//! network, no QEMU. A test that needs any of those starts with
//!
//! ```no_run
//! if !test_tier::slow("compiles the 6.1 kernel") {
//!     return;
//! }
//! ```
//!
//! Without [`VAR`] that prints why the test is skipped and returns false.
//! With it (`cargo xtask test` sets it) the test runs, whatever it needs
//! must be there ([`env`], [`require`] fail instead of skipping), and the
//! gate writes one file per test that passed through it into the directory
//! [`VAR`] names, so that the CI run can check the slow tier really ran.

use std::path::PathBuf;

/// Asks for the slow tier: a directory where each slow test that runs
/// records itself (`1` asks for the tier without a record).
pub const VAR: &str = "ZFCPDUMP_SLOW_TESTS";

/// The call that marks a slow test; the CI run counts these in the sources
/// and expects as many records.
pub const GATE_CALL: &str = "test_tier::slow(";

/// Whether the slow tier was asked for.
pub fn enabled() -> bool {
    std::env::var_os(VAR).is_some_and(|v| !v.is_empty())
}

/// The gate of a slow test: `what` says what makes it slow. Returns
/// whether the test runs; records it when it does.
pub fn slow(what: &str) -> bool {
    let name = test_name();
    let Some(dir) = std::env::var_os(VAR).filter(|v| !v.is_empty()) else {
        eprintln!(
            "skipped (slow tier: {what}): set {VAR}=1 or run `cargo xtask test` to run {name}"
        );
        return false;
    };
    if dir != "1" {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("{VAR}: cannot create {}: {e}", dir.display()));
        std::fs::write(dir.join(&name), what)
            .unwrap_or_else(|e| panic!("{VAR}: cannot record {name} in {}: {e}", dir.display()));
    }
    true
}

/// A variable a slow test needs (`cargo xtask test` sets it): its value,
/// or a failure naming it. Only call it behind [`slow`].
pub fn env(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("{var} is not set: the slow tier needs it (`cargo xtask test` sets it)"),
    }
}

/// A prerequisite of any test: missing, it fails with `what` (never a
/// silent pass).
pub fn require(ok: bool, what: &str) {
    assert!(ok, "missing prerequisite: {what}");
}

/// libtest runs each test on a thread named after the test's path; the
/// record is named after it.
fn test_name() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("unnamed-test")
        .replace("::", ".")
}
