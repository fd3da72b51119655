//! What the fuzz targets share that is worth testing on its own: the
//! profile target's scratch directory and its judgement of an error
//! (run in the workspace's fast tier by `crates/zfcpdump-profile/tests/it`).

use std::collections::BTreeSet;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A new, empty directory of this process alone under the temporary
/// directory: `<prefix>-<pid>-<n>`, mode 0700, made with `mkdir` (never an
/// existing one, whoever made it). The caller removes it.
pub fn scratch_dir(prefix: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::env::temp_dir();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("{prefix}-{}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot make {}: {e}", dir.display()),
        }
    }
}

/// Whether `msg`, an error of `zfcpdump_profile::load(root, child, sets)`
/// printed as `{:#}`, names what is at fault, as precisely as the loader can
/// tell:
///
/// - a `--set` given, quoted as given, when it is the `--set` at fault;
/// - the child profile itself (its text, its `extends`, or the merged
///   profile, which the loader cannot trace to a file or a `--set`);
/// - the cycle, which runs through the child;
/// - a parent on the child's `extends` chain that exists and does not load
///   on its own either (a broken file the child extends).
///
/// Never enough: a path that merely ends in `.toml`, a parent that is not
/// there (the child's `extends` is at fault: the loader names the child's
/// file and line), a parent that loads fine, or a `--set` not given.
pub fn names_the_culprit(
    msg: &str,
    root: &Path,
    child: &Path,
    sets: &[String],
) -> Result<(), String> {
    let child = child.canonicalize().unwrap_or_else(|_| child.to_path_buf());
    if sets
        .iter()
        .any(|s| msg.starts_with(&format!("--set {s:?}: ")))
    {
        return Ok(());
    }
    if let Some(cycle) = msg.strip_prefix("profile extends cycle: ") {
        return match cycle.split(" -> ").any(|p| Path::new(p) == child) {
            true => Ok(()),
            false => Err(format!("a cycle without {}: {msg}", child.display())),
        };
    }
    let c = child.display();
    let child_forms = [
        format!("{c}: "),
        format!("profile {c} (after extends and --set): "),
    ];
    let at_line = msg
        .strip_prefix(&format!("{c}:"))
        .and_then(|r| r.split_once(": "))
        .is_some_and(|(line, _)| !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()));
    if at_line || child_forms.iter().any(|f| msg.starts_with(f.as_str())) {
        return Ok(());
    }
    for parent in extends_chain(root, &child) {
        let p = parent.display();
        let named = [format!("{p}: "), format!("cannot read profile {p}: ")]
            .iter()
            .any(|f| msg.starts_with(f.as_str()));
        let broken = parent
            .to_str()
            .is_some_and(|s| zfcpdump_profile::load(root, s, &[]).is_err());
        if named && broken {
            return Ok(());
        }
    }
    Err(format!(
        "the error names neither {c}, nor a --set given, nor a broken parent it extends: {msg}"
    ))
}

/// The existing files the child's `extends` chain reaches, as the README
/// defines `extends` (a name in `profiles/`, or a path relative to the
/// file), canonical, in order; it stops at a file that is missing, does not
/// parse or closes a cycle.
pub fn extends_chain(root: &Path, child: &Path) -> Vec<PathBuf> {
    let mut chain = Vec::new();
    let mut seen = BTreeSet::from([child.to_path_buf()]);
    let mut cur = child.to_path_buf();
    while let Some(table) = std::fs::read_to_string(&cur)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
    {
        let Some(parent) = table.get("extends").and_then(|v| v.as_str()) else {
            break;
        };
        let next = if parent.ends_with(".toml") || parent.contains('/') {
            cur.parent().unwrap_or(Path::new(".")).join(parent)
        } else {
            root.join("profiles").join(format!("{parent}.toml"))
        };
        let Ok(next) = next.canonicalize() else {
            break;
        };
        if !seen.insert(next.clone()) {
            break;
        }
        chain.push(next.clone());
        cur = next;
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const BASE: &str = "[kernel]\nsource = { tarball = \"/usr/src/linux-source-6.1.tar.xz\" }\n";

    /// A project root with a valid `default`, a broken `broken.toml`, and
    /// the child `profiles/fuzz.toml` with `text`; removed on drop.
    struct Root(PathBuf);

    impl Root {
        fn new(text: &str) -> Root {
            let dir = scratch_dir("zfcpdump-fuzz-lib-test");
            fs::create_dir(dir.join("profiles")).unwrap();
            fs::write(dir.join("profiles/default.toml"), BASE).unwrap();
            fs::write(dir.join("profiles/broken.toml"), "[kernel\n").unwrap();
            fs::write(dir.join("profiles/fuzz.toml"), text).unwrap();
            Root(dir)
        }
        fn child(&self) -> PathBuf {
            self.0.join("profiles/fuzz.toml").canonicalize().unwrap()
        }
        /// The loader's error, printed as the fuzz target prints it.
        fn error(&self, sets: &[&str]) -> String {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            format!(
                "{:#}",
                zfcpdump_profile::load(&self.0, "fuzz", &sets).unwrap_err()
            )
        }
        fn judge(&self, msg: &str, sets: &[&str]) -> Result<(), String> {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            names_the_culprit(msg, &self.0, &self.child(), &sets)
        }
    }

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn scratch_dirs_are_new_and_private() {
        let a = scratch_dir("zfcpdump-fuzz-lib-test");
        let b = scratch_dir("zfcpdump-fuzz-lib-test");
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            name.contains(&format!("-{}-", std::process::id())),
            "{name}"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&a).unwrap().permissions().mode() & 0o777,
            0o700
        );
        fs::remove_dir(a).unwrap();
        fs::remove_dir(b).unwrap();
    }

    #[test]
    fn the_loaders_own_errors_name_the_culprit() {
        // The child's text.
        let r = Root::new(&format!("{BASE}[agent]\nbogus = 1\n"));
        r.judge(&r.error(&[]), &[]).unwrap();
        // A missing parent: the child's extends, at its line.
        let r = Root::new("# a comment\nextends = \"nope\"\n");
        let e = r.error(&[]);
        r.judge(&e, &[]).unwrap();
        assert!(e.contains(":2: extends"), "{e}");
        // A parent that is broken itself.
        let r = Root::new("extends = \"broken.toml\"\n");
        let e = r.error(&[]);
        r.judge(&e, &[]).unwrap();
        assert!(e.contains("broken.toml"), "{e}");
        // A parent that is a directory.
        let r = Root::new("extends = \"../profiles\"\n");
        r.judge(&r.error(&[]), &[]).unwrap();
        // A cycle.
        let r = Root::new("extends = \"fuzz.toml\"\n");
        r.judge(&r.error(&[]), &[]).unwrap();
        // The merged profile (only the child is there to name).
        let r = Root::new("extends = \"default\"\n[kernel]\narch = \"x86\"\n");
        r.judge(&r.error(&[]), &[]).unwrap();
        // A --set at fault, among others that are fine.
        let r = Root::new("extends = \"default\"\n");
        let sets = ["kernel.jobs=2", "initramfs.level=9", "kernel.jobs=3"];
        r.judge(&r.error(&sets), &sets).unwrap();
        let sets = ["novalue"];
        r.judge(&r.error(&sets), &sets).unwrap();
    }

    #[test]
    fn errors_that_blame_the_wrong_file_do_not_pass() {
        let r = Root::new("extends = \"nope\"\n");
        let missing = r.0.join("profiles/nope.toml");
        // What the loader said before the fuzz target found it: the
        // missing parent alone, which ends in .toml but is not at fault.
        let old = format!(
            "cannot read profile {}: No such file or directory (os error 2)",
            missing.display()
        );
        assert!(r.judge(&old, &[]).is_err());
        // A parent that loads fine is not at fault.
        let r = Root::new("extends = \"default\"\n[kernel]\narch = \"x86\"\n");
        let default = r.0.join("profiles/default.toml").canonicalize().unwrap();
        let e = format!("{}: kernel.arch: only s390", default.display());
        assert!(r.judge(&e, &[]).is_err());
        // A broken file the child does not extend is not at fault.
        let broken = r.0.join("profiles/broken.toml").canonicalize().unwrap();
        let e = format!("{}: TOML parse error", broken.display());
        assert!(r.judge(&e, &[]).is_err());
        // A --set that was not given; no file at all; the child's name
        // without its path, or as the start of another file's.
        let e = "--set \"kernel.jobs=x\": invalid type";
        assert!(r.judge(e, &["kernel.jobs=3"]).is_err());
        assert!(r.judge("missing field `source`", &[]).is_err());
        assert!(r.judge("fuzz.toml: bad", &[]).is_err());
        let e = format!("{}.bak.toml: bad", r.child().display());
        assert!(r.judge(&e, &[]).is_err());
        let e = format!("{}:x: bad", r.child().display());
        assert!(r.judge(&e, &[]).is_err());
    }
}
