//! The profile loader, `--set` included: what packagers write. The input is
//! a profile's text, then optionally a NUL and `--set` arguments, one per
//! line. It is loaded as `profiles/fuzz.toml` of a copy of the project's
//! `profiles/` and `kernel-config/`, so `extends` and fragments resolve as
//! in the project. Every error must name the file (or the `--set` at fault).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let project = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        // One directory per user, made afresh by each run: libFuzzer exits
        // without running destructors, so a per-process one would pile up.
        let dir = std::env::temp_dir().join("zfcpdump-fuzz-profile");
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["profiles", "kernel-config"] {
            let to = dir.join(sub);
            std::fs::create_dir_all(&to).unwrap();
            for e in std::fs::read_dir(project.join(sub)).unwrap().flatten() {
                if e.path().is_file() {
                    std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
                }
            }
        }
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (text, sets) = input.split_once('\0').unwrap_or((input, ""));
    let sets: Vec<String> = sets.lines().map(str::to_string).collect();
    let file = root().join("profiles/fuzz.toml");
    std::fs::write(&file, text).unwrap();
    if let Err(e) = zfcpdump_profile::load(root(), "fuzz", &sets) {
        let msg = format!("{e:#}");
        assert!(
            msg.contains("fuzz.toml") || msg.contains("--set") || msg.contains(".toml"),
            "an error that names no file: {msg}"
        );
    }
});
