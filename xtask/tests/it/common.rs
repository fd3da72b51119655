//! Helpers shared by the xtask integration tests: run the built `xtask`
//! binary in the project root and read what it said.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

pub fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run xtask")
}

/// `dir/name.toml`, a profile that extends the project's `parent`
/// profile and adds `extra` (TOML).
pub fn child_profile(dir: &Path, name: &str, parent: &str, extra: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    let parent = root().join(format!("profiles/{parent}.toml"));
    std::fs::write(&p, format!("extends = \"{}\"\n{extra}", parent.display())).unwrap();
    p
}

/// The arguments of `dist --no-provision` of `profile` (a name or a file)
/// into `out`, then `more`.
pub fn dist_args<'a>(profile: &'a str, out: &'a Path, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "dist",
        "--no-provision",
        "--profile",
        profile,
        "--out-dir",
        out.to_str().unwrap(),
    ];
    args.extend(more);
    args
}

/// stdout then stderr, as one text for assertions and failure messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Whether the tests run as root (CI does): the owner of our own /proc entry.
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The tests that build into the shared stage cache run one at a time:
/// they assert which stage compiled, linked or waited, and a build of
/// another test in the same process (one test binary) would change that.
pub fn stage_cache_lock() -> std::sync::MutexGuard<'static, ()> {
    static CACHE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}
