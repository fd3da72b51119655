//! The profile loader, `--set` included: what packagers write. The input is
//! a profile's text, then optionally a NUL and `--set` arguments, one per
//! line. It is loaded as `profiles/fuzz.toml` of a copy of the project's
//! `profiles/` and `kernel-config/`, so `extends` and fragments resolve as
//! in the project. Every error must name what is at fault: the child file,
//! the `--set` at fault, or a broken file the child extends
//! ([`zfcpdump_fuzz::names_the_culprit`]).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use zfcpdump_fuzz::{names_the_culprit, scratch_dir};

/// The copy of the project: a directory of this run alone, removed when
/// libFuzzer exits (it calls exit(), which runs atexit handlers but no
/// Rust destructors). A run that crashes leaves it behind, for the
/// reproducer.
static ROOT: OnceLock<PathBuf> = OnceLock::new();

unsafe extern "C" {
    fn atexit(f: extern "C" fn()) -> std::os::raw::c_int;
}

extern "C" fn remove_root() {
    if let Some(dir) = ROOT.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn root() -> &'static PathBuf {
    ROOT.get_or_init(|| {
        let project = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = scratch_dir("zfcpdump-fuzz-profile");
        // SAFETY: registers a plain function; ROOT is set before it can run.
        unsafe { atexit(remove_root) };
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
        if let Err(why) = names_the_culprit(&format!("{e:#}"), root(), &file, &sets) {
            panic!("{why}");
        }
    }
});
