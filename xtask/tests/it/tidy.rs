//! Tidy checks: the rules of ARCHITECTURE.md's "Invariants" that are
//! about the shape of the tree, checked on the sources themselves (fast
//! tier: they read files, nothing else).

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::root;

/// The names in a manifest's `[dependencies]` table (not dev- or build-).
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = fs::read_to_string(manifest).unwrap();
    let mut names = Vec::new();
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.']).next().unwrap().trim();
            names.push(name.to_string());
        }
    }
    names.sort();
    names
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "rs"))
        .collect();
    out.sort();
    out
}

#[test]
fn the_builder_never_depends_on_the_lab() {
    let deps = dependencies(&root().join("crates/zfcpdump-builder/Cargo.toml"));
    assert!(!deps.is_empty(), "no [dependencies] read");
    assert!(
        !deps.iter().any(|d| d == "zfcpdump-lab"),
        "the builder depends on the lab: {deps:?}"
    );
    for f in rust_files(&root().join("crates/zfcpdump-builder/src")) {
        let text = fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains("zfcpdump_lab"),
            "{} names the lab",
            f.display()
        );
    }
}

#[test]
fn the_product_crates_keep_to_their_few_dependencies() {
    let format = dependencies(&root().join("crates/zfcpdump-format/Cargo.toml"));
    assert_eq!(
        format,
        Vec::<String>::new(),
        "zfcpdump-format must have none"
    );
    let agent = dependencies(&root().join("crates/zfcpdump-agent/Cargo.toml"));
    assert_eq!(
        agent,
        ["libc", "zfcpdump-format"],
        "the agent links only these"
    );
}

/// One test binary per crate: `tests/it/main.rs` and its modules; data
/// may sit in other folders under tests/, but no other test crate.
#[test]
fn each_crate_has_one_integration_test_binary() {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.push(root().join("lab"));
    dirs.push(root().join("xtask"));
    for crate_dir in dirs {
        let tests = crate_dir.join("tests");
        let Ok(rd) = fs::read_dir(&tests) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            assert!(
                !(p.is_file() && p.extension().is_some_and(|x| x == "rs")),
                "{} is a test binary of its own: make it a module of tests/it/main.rs",
                p.display()
            );
        }
        if tests.join("it").is_dir() {
            assert!(tests.join("it/main.rs").is_file(), "{}", tests.display());
        }
    }
}

/// One newc writer: the builder's `archive.rs`. Every other archive (the
/// crash lab's guest, the zipl helper) is made of its `Record`s.
#[test]
fn one_cpio_writer() {
    let mut files = rust_files(&root().join("crates"));
    files.extend(rust_files(&root().join("lab")));
    let writer = root().join("crates/zfcpdump-builder/src/archive.rs");
    for f in files.iter().filter(|f| **f != writer) {
        let text = fs::read_to_string(f).unwrap();
        assert!(
            !text.contains("cpio::newc"),
            "{} writes cpio itself: use zfcpdump_builder::archive",
            f.display()
        );
    }
    assert!(fs::read_to_string(&writer).unwrap().contains("cpio::newc"));
}

/// The lab's tasks sit on the kit and the lower modules, never the other
/// way round, and no task imports another.
#[test]
fn the_lab_is_layered_tasks_over_the_kit() {
    const TASKS: [&str; 7] = ["bench", "boot", "ci", "crashlab", "e2e", "faults", "fuzz"];
    let src = root().join("lab/src");
    for f in rust_files(&src) {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        let own = rel.split(['/', '.']).next().unwrap().to_string();
        let text = fs::read_to_string(&f).unwrap();
        for task in TASKS.iter().filter(|t| **t != own) {
            for pat in [
                format!("crate::{task}::"),
                format!("crate::{task};"),
                format!("crate::{{{task}"),
            ] {
                assert!(
                    !text.contains(&pat),
                    "lab/src/{rel} imports the task `{task}`: move what it needs into the kit"
                );
            }
        }
    }
}

/// ARCHITECTURE.md's code map names every source file of the builder and
/// the lab (by its name, or `name/` for a folder's `mod.rs`), so that a
/// new module cannot go unmapped.
#[test]
fn architecture_names_every_module() {
    let doc = fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    for src in ["crates/zfcpdump-builder/src", "lab/src"] {
        let dir = root().join(src);
        for f in rust_files(&dir) {
            let rel = f.strip_prefix(&dir).unwrap();
            let name = rel.file_name().unwrap().to_string_lossy().into_owned();
            let folder = rel.parent().and_then(|p| p.file_name());
            let named = doc.contains(&format!("`{name}`"))
                || doc.contains(&format!("{name} "))
                || doc.contains(&format!("`{}`", rel.display()))
                || doc.contains(&format!("{name},"))
                || doc.contains(&format!("{name})"));
            let as_folder = name == "mod.rs"
                && folder.is_some_and(|d| doc.contains(&format!("`{}/", d.to_string_lossy())));
            assert!(
                named || as_folder,
                "ARCHITECTURE.md does not name {src}/{}: add it to the code map",
                rel.display()
            );
        }
    }
}

/// Every manifest says the project is MIT, and there was no LICENSE file
/// to say so: the file must exist and name the workspace's licence.
#[test]
fn the_licence_file_matches_the_manifests() {
    let cargo = fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let id = cargo
        .lines()
        .find_map(|l| l.trim().strip_prefix("license = "))
        .expect("the workspace names its licence")
        .trim_matches('"');
    let licence = fs::read_to_string(root().join("LICENSE")).expect("a LICENSE file");
    assert!(
        licence.lines().next() == Some(&format!("{id} License")),
        "LICENSE does not start with `{id} License`"
    );
}

/// README gave packagers two answers for Debian's directory (`/lib/...`
/// through `--zfcpdump-dir`, and `/usr/lib/...`); the package and
/// Debian's /usr merge say `/usr/lib`, which is install's default.
#[test]
fn readme_gives_one_install_directory() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        !readme.contains("--zfcpdump-dir /lib/"),
        "README tells packagers to install into /lib/s390-tools/zfcpdump"
    );
    let install =
        fs::read_to_string(root().join("crates/zfcpdump-builder/src/dist/install.rs")).unwrap();
    assert!(install.contains("default_value = \"/usr/lib/s390-tools/zfcpdump\""));
}
