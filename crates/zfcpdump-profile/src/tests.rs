use super::*;
use std::fs;

fn root_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("profiles")).unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    dir
}

const BASE: &str = r#"
[kernel]
source = { tarball = "/usr/src/linux-source-6.1.tar.xz" }
fragments = ["zfcpdump.config"]
"#;

#[test]
fn defaults_are_filled_in() {
    let d = root_with(&[("profiles/default.toml", BASE)]);
    let p = load(d.path(), "default", &[]).unwrap();
    assert_eq!(p.name, "default");
    assert_eq!(p.kernel.defconfig, "zfcpdump_defconfig");
    assert_eq!(p.kernel.cross_compile, "s390x-linux-gnu-");
    assert_eq!(p.initramfs.compression, Compression::Gzip);
    assert_eq!(p.budget.total, 32 << 20);
    assert_eq!(p.agent.progress_interval_s, 10);
}

#[test]
fn extends_merges_and_accumulates_fragments() {
    let d = root_with(&[
        ("profiles/default.toml", BASE),
        (
            "profiles/big.toml",
            "extends = \"default\"\n[kernel]\nfragments = [\"extra.config\"]\n[budget]\ntotal = \"64MiB\"\n",
        ),
    ]);
    let p = load(d.path(), "big", &[]).unwrap();
    assert_eq!(p.name, "big");
    assert_eq!(p.kernel.fragments, vec!["zfcpdump.config", "extra.config"]);
    assert_eq!(p.budget.total, 64 << 20);
    assert_eq!(p.files.len(), 2);
}

#[test]
fn extends_by_relative_path_and_relative_tarball() {
    let d = root_with(&[
        (
            "elsewhere/base.toml",
            "[kernel]\nsource = { tarball = \"src/linux.tar.xz\" }\n",
        ),
        ("elsewhere/child.toml", "extends = \"base.toml\"\n"),
    ]);
    let path = d.path().join("elsewhere/child.toml");
    let p = load(d.path(), path.to_str().unwrap(), &[]).unwrap();
    assert_eq!(p.name, "child");
    let tarball = p.kernel.source.tarball.unwrap();
    assert!(
        tarball.ends_with("elsewhere/src/linux.tar.xz"),
        "{tarball:?}"
    );
    assert!(tarball.is_absolute());
}

#[test]
fn child_source_replaces_the_parents() {
    let d = root_with(&[
        ("profiles/default.toml", BASE),
        (
            "profiles/dir.toml",
            "extends = \"default\"\n[kernel]\nsource = { dir = \"/src/linux\" }\n",
        ),
    ]);
    let p = load(d.path(), "dir", &[]).unwrap();
    assert_eq!(
        p.kernel.source.dir.as_deref(),
        Some(Path::new("/src/linux"))
    );
    assert_eq!(p.kernel.source.tarball, None);
}

/// Found by the profile fuzz target: a missing parent's error named
/// only the parent, not the profile (and line) whose `extends` asked
/// for it.
#[test]
fn missing_parent_names_the_child_file_and_line() {
    let d = root_with(&[(
        "profiles/child.toml",
        "# a profile\n\nextends = \"/nowhere/default\"\n",
    )]);
    let e = format!("{:#}", load(d.path(), "child", &[]).unwrap_err());
    assert!(
        e.contains("child.toml:3: extends: cannot read the parent profile /nowhere/default"),
        "{e}"
    );
    // The profile asked for on the command line is its own error.
    let e = format!("{:#}", load(d.path(), "absent", &[]).unwrap_err());
    assert!(
        e.starts_with("cannot read profile ") && e.contains("absent.toml"),
        "{e}"
    );
}

#[test]
fn cycle_is_an_error() {
    let d = root_with(&[
        ("profiles/a.toml", "extends = \"b\"\n"),
        ("profiles/b.toml", "extends = \"a\"\n"),
    ]);
    let e = load(d.path(), "a", &[]).unwrap_err().to_string();
    assert!(e.contains("cycle"), "{e}");
    assert!(e.contains("a.toml") && e.contains("b.toml"), "{e}");
}

#[test]
fn unknown_key_names_file_line_column_and_allowed_keys() {
    let text = format!("{BASE}\n[initramfs]\ncompresion = \"xz\"\n");
    let d = root_with(&[("profiles/bad.toml", &text)]);
    let e = format!("{:#}", load(d.path(), "bad", &[]).unwrap_err());
    assert!(e.contains("bad.toml"), "{e}");
    assert!(e.contains("line 7, column 1"), "{e}");
    assert!(e.contains("unknown field `compresion`"), "{e}");
    assert!(
        e.contains("`compression`") && e.contains("`builtin`"),
        "{e}"
    );
}

#[test]
fn bad_enum_value_lists_the_choices() {
    let text = format!("{BASE}\n[initramfs]\ncompression = \"lz4\"\n");
    let d = root_with(&[("profiles/bad.toml", &text)]);
    let e = format!("{:#}", load(d.path(), "bad", &[]).unwrap_err());
    assert!(e.contains("line 7, column 15"), "{e}");
    assert!(e.contains("`gzip`, `xz`, `zstd`"), "{e}");
}

#[test]
fn bad_size_is_explained() {
    let text = format!("{BASE}\n[budget]\ntotal = \"32 parsecs\"\n");
    let d = root_with(&[("profiles/bad.toml", &text)]);
    let e = format!("{:#}", load(d.path(), "bad", &[]).unwrap_err());
    assert!(e.contains("line 7"), "{e}");
    assert!(e.contains("size"), "{e}");
}

#[test]
fn set_overrides_and_is_checked() {
    let d = root_with(&[("profiles/default.toml", BASE)]);
    let p = load(
        d.path(),
        "default",
        &[
            "initramfs.compression=xz".into(),
            "budget.total=\"64M\"".into(),
            "kernel.jobs=3".into(),
        ],
    )
    .unwrap();
    assert_eq!(p.initramfs.compression, Compression::Xz);
    assert_eq!(p.budget.total, 64 << 20);
    assert_eq!(p.kernel.jobs, 3);

    let e = format!(
        "{:#}",
        load(d.path(), "default", &["initramfs.level=9".into()]).unwrap_err()
    );
    assert!(e.contains("unknown field `level`"), "{e}");
    let e = format!(
        "{:#}",
        load(d.path(), "default", &["initramfs.compression".into()]).unwrap_err()
    );
    assert!(e.contains("KEY=VALUE"), "{e}");
}

#[test]
fn source_needs_exactly_one_kind() {
    let d = root_with(&[(
        "profiles/both.toml",
        "[kernel]\nsource = { tarball = \"/a.tar.xz\", dir = \"/b\" }\n",
    )]);
    let e = load(d.path(), "both", &[]).unwrap_err().to_string();
    assert!(e.contains("not both"), "{e}");
    let d = root_with(&[(
        "profiles/pin.toml",
        "[kernel]\nsource = { dir = \"/b\", sha256 = \"00\" }\n",
    )]);
    let e = load(d.path(), "pin", &[]).unwrap_err().to_string();
    assert!(e.contains("cannot be used with `dir`"), "{e}");
}

#[test]
fn missing_profile_names_the_path() {
    let d = root_with(&[]);
    let e = format!("{:#}", load(d.path(), "nope", &[]).unwrap_err());
    assert!(e.contains("profiles/nope.toml"), "{e}");
}

#[test]
fn sizes_use_the_shared_grammar() {
    for (size, want) in [
        ("\"32MiB\"", 32 << 20),
        ("\"512K\"", 512 << 10),
        ("\"1G\"", 1 << 30),
        ("\"48 mib\"", 48 << 20),
        ("\"0x4000000\"", 64 << 20),
        ("33554432", 32 << 20),
    ] {
        let text = format!("{BASE}\n[budget]\ntotal = \"2GiB\"\nruntime_reserve = {size}\n");
        let d = root_with(&[("profiles/p.toml", &text)]);
        let p = load(d.path(), "p", &[]).unwrap_or_else(|e| panic!("{size}: {e:#}"));
        assert_eq!(p.budget.runtime_reserve, want, "{size}");
    }
    let text = format!("{BASE}\n[budget]\ntotal = \"32MB\"\n");
    let d = root_with(&[("profiles/p.toml", &text)]);
    let e = format!("{:#}", load(d.path(), "p", &[]).unwrap_err());
    assert!(e.contains("p.toml") && e.contains("line 7"), "{e}");
    assert!(e.contains("invalid size suffix 'MB' in '32MB'"), "{e}");
    assert!(e.contains("write M or MiB"), "{e}");
}

#[test]
fn shipped_profiles_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap();
    for entry in fs::read_dir(root.join("profiles")).unwrap() {
        let path = entry.unwrap().path();
        load(root, path.to_str().unwrap(), &[])
            .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
    }
}
