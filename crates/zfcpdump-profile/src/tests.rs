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

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The canonical path of `name` under the root, as errors print it.
fn at(d: &tempfile::TempDir, name: &str) -> String {
    d.path()
        .join(name)
        .canonicalize()
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn origin_is_the_file_and_line_that_won_or_the_set() {
    let d = root_with(&[
        ("profiles/default.toml", BASE),
        (
            "profiles/child.toml",
            "extends = \"default\"\n\
             [kernel.source]\n\
             dir = \"/src/linux\"\n\
             [agent]\n\
             dump_level = 1\n",
        ),
        (
            "profiles/dotted.toml",
            "extends = \"default\"\n\
             # a comment\n\
             kernel.source.tarball = \"/b.tar.xz\"\n\
             kernel.source.sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n\
             budget.total = \"64M\"\n",
        ),
    ]);
    let child = at(&d, "profiles/child.toml");
    let default = at(&d, "profiles/default.toml");
    let p = load(d.path(), "child", &["initramfs.compression=xz".into()]).unwrap();
    let o = |k: &str| p.origin(k).to_string();
    assert_eq!(o("kernel.source.dir"), format!("{child}:3"));
    assert_eq!(o("kernel.source"), format!("{child}:2"));
    assert_eq!(o("agent.dump_level"), format!("{child}:5"));
    assert_eq!(o("kernel.fragments"), format!("{default}:4"));
    assert_eq!(o("extends"), format!("{child}:1"));
    // The parent's tarball was replaced with its table: a default now.
    assert_eq!(o("kernel.source.tarball"), child);
    assert_eq!(o("kernel.defconfig"), child);
    assert_eq!(
        p.origin("initramfs.compression"),
        Origin::Set("initramfs.compression=xz".into())
    );
    assert_eq!(
        o("initramfs.compression"),
        "--set \"initramfs.compression=xz\""
    );
    assert_eq!(
        p.origin("kernel.source.dir"),
        Origin::File {
            path: child.clone().into(),
            line: Some(3)
        }
    );

    let dotted = at(&d, "profiles/dotted.toml");
    let p = load(d.path(), "dotted", &[]).unwrap();
    let o = |k: &str| p.origin(k).to_string();
    assert_eq!(o("kernel.source.tarball"), format!("{dotted}:3"));
    assert_eq!(o("kernel.source.sha256"), format!("{dotted}:4"));
    assert_eq!(o("budget.total"), format!("{dotted}:5"));
    // An inline table: every key on its line.
    assert_eq!(
        load(d.path(), "default", &[])
            .unwrap()
            .origin("kernel.source.tarball")
            .to_string(),
        format!("{default}:3")
    );
    // The origins are not part of what a profile serializes to.
    let json = toml::to_string(&p).unwrap();
    assert!(!json.contains("origins"), "{json}");
}

#[test]
fn cross_field_errors_name_the_key_at_fault() {
    let d = root_with(&[
        ("profiles/default.toml", BASE),
        (
            "profiles/dir.toml",
            "[kernel]\nsource = { dir = \"/src/linux\" }\n",
        ),
        (
            "profiles/budget.toml",
            "extends = \"default\"\n[budget]\ntotal = \"64M\"\nruntime_reserve = \"16M\"\n",
        ),
    ]);
    let files: &[(&str, &str)] = &[
        (
            "short.toml",
            "extends = \"default\"\n[kernel.source]\ntarball = \"/a.tar.xz\"\nsha256 = \"00\"\n",
        ),
        (
            "both.toml",
            "# both\n[kernel]\nsource = { tarball = \"/a.tar.xz\", dir = \"/b\" }\n",
        ),
        ("neither.toml", "[kernel]\n\nsource = { }\n"),
        ("nokernel.toml", "[agent]\ndump_level = 1\n"),
        ("nosource.toml", "\n[kernel]\njobs = 2\n"),
        (
            "pin.toml",
            "[kernel]\nsource = { dir = \"/b\", sha256 = \"00\" }\n",
        ),
        (
            "arch.toml",
            "extends = \"default\"\n[kernel]\narch = \"x86\"\n",
        ),
        (
            "small.toml",
            "extends = \"budget\"\n[budget]\n\ntotal = \"16M\"\n",
        ),
        (
            "dirty.toml",
            "[kernel]\nsource = { tarball = \"/a.tar.xz\", allow_dirty = true }\n",
        ),
    ];
    for (name, text) in files {
        fs::write(d.path().join("profiles").join(name), text).unwrap();
    }
    let p = |n: &str| at(&d, &format!("profiles/{n}.toml"));
    let sha_set = format!("kernel.source.sha256={HEX}");
    let cases: Vec<(&str, Vec<String>, String)> = vec![
        (
            "short",
            vec![],
            format!(
                "{}:4: kernel.source.sha256 must be 64 hex digits, got \"00\"",
                p("short")
            ),
        ),
        (
            "default",
            vec!["kernel.source.sha256=00".into()],
            "--set \"kernel.source.sha256=00\": kernel.source.sha256 must be 64 hex digits, \
             got \"00\""
                .into(),
        ),
        (
            "both",
            vec![],
            format!(
                "{}:3: kernel.source: set either `tarball` or `dir`, not both",
                p("both")
            ),
        ),
        (
            "neither",
            vec![],
            format!(
                "{}:3: kernel.source: set `tarball` (with an optional `sha256`) or `dir`",
                p("neither")
            ),
        ),
        (
            "nokernel",
            vec![],
            format!(
                "{}: kernel.source: set `tarball` (with an optional `sha256`) or `dir`",
                p("nokernel")
            ),
        ),
        (
            "nosource",
            vec![],
            format!(
                "{}:2: kernel.source: set `tarball` (with an optional `sha256`) or `dir`",
                p("nosource")
            ),
        ),
        (
            "pin",
            vec![],
            format!(
                "{}:2: kernel.source.sha256 pins a tarball; it cannot be used with `dir`",
                p("pin")
            ),
        ),
        (
            "dir",
            vec![sha_set.clone()],
            format!(
                "--set \"{sha_set}\": kernel.source.sha256 pins a tarball; it cannot be used \
                 with `dir` (`dir` is set at {}:2)",
                p("dir")
            ),
        ),
        (
            "arch",
            vec![],
            format!(
                "{}:3: kernel.arch = \"x86\": only \"s390\" is supported",
                p("arch")
            ),
        ),
        (
            "default",
            vec!["kernel.arch=x86".into()],
            "--set \"kernel.arch=x86\": kernel.arch = \"x86\"".into(),
        ),
        (
            "small",
            vec![],
            format!(
                "{}:4: budget.runtime_reserve (16777216) must be smaller than budget.total \
                 (16777216) (`runtime_reserve` is set at {}:4)",
                p("small"),
                p("budget")
            ),
        ),
        (
            "budget",
            vec!["budget.runtime_reserve=\"1G\"".into()],
            "--set \"budget.runtime_reserve=\\\"1G\\\"\": budget.runtime_reserve".into(),
        ),
        (
            "dirty",
            vec![],
            format!(
                "{}:2: kernel.source.allow_dirty is for a `dir` source",
                p("dirty")
            ),
        ),
        (
            "default",
            vec!["kernel.source.allow_dirty=true".into()],
            format!(
                "--set \"kernel.source.allow_dirty=true\": kernel.source.allow_dirty is for a \
                 `dir` source (a git work tree with uncommitted changes); it cannot be used \
                 with `tarball` (`tarball` is set at {}:3)",
                p("default")
            ),
        ),
    ];
    for (name, sets, want) in cases {
        let e = format!("{:#}", load(d.path(), name, &sets).unwrap_err());
        assert!(
            e.starts_with(&want),
            "{name} {sets:?}:\n got: {e}\nwant: {want}"
        );
    }
    // allow_dirty with a dir is what it is for.
    let p = load(d.path(), "dir", &["kernel.source.allow_dirty=true".into()]).unwrap();
    assert!(p.kernel.source.allow_dirty);
}

/// `--set` of a kind of source replaces the inherited source table, as a
/// child profile's does; further `--set`s of its keys merge into it.
#[test]
fn set_of_a_source_kind_replaces_the_inherited_source() {
    let pinned = format!(
        "[kernel]\nsource = {{ tarball = \"/usr/src/linux.tar.xz\", sha256 = \"{HEX}\" }}\n"
    );
    let d = root_with(&[
        ("profiles/default.toml", BASE),
        ("profiles/pinned.toml", &pinned),
        (
            "profiles/dirty.toml",
            "[kernel]\nsource = { dir = \"/src/linux\", allow_dirty = true }\n",
        ),
    ]);
    let set = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for name in ["default", "pinned"] {
        let p = load(d.path(), name, &set(&["kernel.source.dir=/x"]))
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(p.kernel.source.dir.as_deref(), Some(Path::new("/x")));
        assert_eq!(p.kernel.source.tarball, None, "{name}");
        assert_eq!(p.kernel.source.sha256, None, "{name}");
        assert_eq!(
            p.origin("kernel.source.dir").to_string(),
            "--set \"kernel.source.dir=/x\""
        );
    }
    // The new table drops allow_dirty too.
    let p = load(d.path(), "dirty", &set(&["kernel.source.dir=/y"])).unwrap();
    assert!(!p.kernel.source.allow_dirty);
    // A tarball and its pin, in either order.
    let sha = format!("kernel.source.sha256={HEX}");
    for sets in [
        set(&["kernel.source.tarball=/a.tar.xz", &sha]),
        set(&[&sha, "kernel.source.tarball=/a.tar.xz"]),
    ] {
        let p = load(d.path(), "pinned", &sets).unwrap_or_else(|e| panic!("{sets:?}: {e:#}"));
        assert_eq!(
            p.kernel.source.tarball.as_deref(),
            Some(Path::new("/a.tar.xz"))
        );
        assert_eq!(p.kernel.source.sha256.as_deref(), Some(HEX));
        assert_eq!(p.origin("kernel.source.sha256"), Origin::Set(sha.clone()));
    }
    // sha256 or allow_dirty alone merge into the inherited table.
    let p = load(d.path(), "default", &set(&[&sha])).unwrap();
    assert_eq!(
        p.kernel.source.tarball.as_deref(),
        Some(Path::new("/usr/src/linux-source-6.1.tar.xz"))
    );
    let p = load(
        d.path(),
        "dirty",
        &set(&["kernel.source.allow_dirty=false"]),
    )
    .unwrap();
    assert_eq!(
        p.kernel.source.dir.as_deref(),
        Some(Path::new("/src/linux"))
    );
    // Both kinds on one command line: the second `--set` is at fault.
    let e = format!(
        "{:#}",
        load(
            d.path(),
            "default",
            &set(&["kernel.source.dir=/x", "kernel.source.tarball=/a.tar.xz"])
        )
        .unwrap_err()
    );
    assert_eq!(
        e,
        "--set \"kernel.source.tarball=/a.tar.xz\": kernel.source: set either `tarball` or \
         `dir`, not both (`dir` is set at --set \"kernel.source.dir=/x\")"
    );
    // A pin for a dir named by --set: that --set, not a file.
    let e = format!(
        "{:#}",
        load(d.path(), "pinned", &set(&["kernel.source.dir=/x", &sha])).unwrap_err()
    );
    assert!(
        e.starts_with(&format!(
            "--set \"{sha}\": kernel.source.sha256 pins a tarball; it cannot be used with `dir` \
             (`dir` is set at --set \"kernel.source.dir=/x\")"
        )),
        "{e}"
    );
}

/// What a Rust type or serde's data model would leak into a message.
const RUSTISMS: &[&str] = &[
    "struct ",
    "i64",
    "u32",
    "u8",
    "u64",
    "Option",
    "option",
    "enum ",
    "sequence",
    "map,",
    "wanted string",
    "path string",
];

/// Every field given a value of the wrong type: a table as a string, a
/// number as a string, a bool as a number, and so on.
#[test]
fn wrong_types_are_explained_without_rust_types() {
    let cases: &[(&str, &str)] = &[
        ("extends = 3", "expected a string"),
        ("kernel = \"x\"", "expected a table ([kernel])"),
        ("kernel = []", "expected a table ([kernel])"),
        (
            "[[kernel]]\nsource = { dir = \"/x\" }",
            "expected a table ([kernel])",
        ),
        (
            "[kernel]\nsource = [\"/a.tar.xz\"]",
            "expected a table ([kernel.source])",
        ),
        ("agent = [\"t\", 3, 10]", "expected a table ([agent])"),
        ("[kernel]\nsource = \"x\"", "expected a table"),
        ("[kernel]\nsource = 1", "expected a table"),
        ("[kernel.source]\ntarball = 3", "expected a path"),
        ("[kernel.source]\ntarball = {a = 1}", "expected a path"),
        ("[kernel.source]\nsha256 = 3", "expected a string"),
        ("[kernel.source]\ndir = [\"a\"]", "expected a path"),
        ("[kernel.source]\nallow_dirty = 1", "expected true or false"),
        (
            "[kernel.source]\nallow_dirty = \"yes\"",
            "expected true or false",
        ),
        ("[kernel]\ndefconfig = 3", "expected a string"),
        ("[kernel]\ndefconfig = {a = 1}", "expected a string"),
        (
            "[kernel]\nfragments = \"x.config\"",
            "expected an array of file names",
        ),
        ("[kernel]\nfragments = [3]", "expected a string"),
        (
            "[kernel]\nfragments = {a = 1}",
            "expected an array of file names",
        ),
        ("[kernel]\narch = 3", "expected a string"),
        ("[kernel]\ncross_compile = true", "expected a string"),
        (
            "[kernel]\nmake_args = \"LLVM=1\"",
            "expected an array of make variables",
        ),
        ("[kernel]\nmake_args = [1]", "expected a string"),
        (
            "[kernel]\nmake_args = [\"-j4\"]",
            "\"-j4\" is not a make variable: expected NAME=value",
        ),
        (
            "[kernel]\nmake_args = [\"1X=y\"]",
            "\"1X\" is not a make variable name",
        ),
        (
            "[kernel]\nmake_args = [\"LLVM=1\", \"CROSS_COMPILE=x-\"]",
            "CROSS_COMPILE cannot be set here: kernel.cross_compile sets it",
        ),
        (
            "[kernel]\nmake_args = [\"KBUILD_BUILD_HOST=h\"]",
            "KBUILD_BUILD_HOST cannot be set here",
        ),
        ("[agent]\nlinker = 3", "expected a string"),
        ("[kernel]\njobs = \"3\"", "expected a whole number"),
        ("[kernel]\njobs = -1", "expected a whole number"),
        ("[kernel]\njobs = 1.5", "expected a whole number"),
        ("[kernel]\njobs = 99999999999", "expected a whole number"),
        ("[kernel]\ncompile_cache = 1", "expected true or false"),
        (
            "[kernel]\ncompile_cache = \"true\"",
            "expected true or false",
        ),
        ("agent = \"x\"", "expected a table ([agent])"),
        ("[agent]\ntarget = 3", "expected a string"),
        (
            "[agent]\ndevice_timeout_s = \"30\"",
            "expected a whole number",
        ),
        (
            "[agent]\nprogress_interval_s = \"10\"",
            "expected a whole number",
        ),
        (
            "[agent]\nprogress_interval_s = -10",
            "expected a whole number",
        ),
        (
            "[agent]\ndump_level = \"3\"",
            "expected a whole number from 0 to 31",
        ),
        (
            "[agent]\ndump_level = 1.0",
            "expected a whole number from 0 to 31",
        ),
        ("[agent]\ndump_level = 32", "expected 0 to 31"),
        ("[agent]\nzero_page_elision = 1", "expected true or false"),
        ("initramfs = 3", "expected a table ([initramfs])"),
        (
            "initramfs = [\"xz\", \"/r\", true]",
            "expected a table ([initramfs])",
        ),
        ("budget = [1, 0]", "expected a table ([budget])"),
        (
            "sign = [\"k\", \"c\", \"sha256\"]",
            "expected a table ([sign])",
        ),
        ("[initramfs]\ncompression = 3", "`gzip`, `xz`, `zstd`"),
        (
            "[initramfs]\ncompression = {gzip = 1}",
            "`gzip`, `xz`, `zstd`",
        ),
        ("[initramfs]\ncompression = true", "`gzip`, `xz`, `zstd`"),
        ("[initramfs]\nrootfs = 3", "expected a path"),
        ("[initramfs]\nbuiltin = 0", "expected true or false"),
        ("budget = \"32M\"", "expected a table ([budget])"),
        ("[budget]\ntotal = true", "expected a size"),
        ("[budget]\nruntime_reserve = [1]", "expected a size"),
        ("[budget]\ntotal = -1", "expected a size"),
        ("sign = \"key.pem\"", "expected a table ([sign])"),
        ("[sign]\nkey = 3", "expected a string"),
        ("[sign]\ncertificate = []", "expected a string"),
        ("[sign]\nhash = 256", "`sha256`, `sha384`, `sha512`"),
        ("[sign]\nhash = \"md5\"", "`sha256`, `sha384`, `sha512`"),
    ];
    let d = root_with(&[("profiles/default.toml", BASE)]);
    let file = d.path().join("profiles/p.toml");
    for (text, want) in cases {
        // Two lines of comment first: the line number must follow.
        fs::write(&file, format!("# a\n# b\n{text}\n")).unwrap();
        let e = format!("{:#}", load(d.path(), "p", &[]).unwrap_err());
        let line = 3 + text.matches('\n').count();
        let line = if text.starts_with("[[") {
            line - 1
        } else {
            line
        };
        assert!(
            e.contains(&format!("line {line},")) || e.contains(&format!("p.toml:{line}: ")),
            "{text}: {e}"
        );
        assert!(e.contains("profiles/p.toml"), "{text}: {e}");
        assert!(e.contains(want), "{text}: want {want:?}: {e}");
        for r in RUSTISMS {
            assert!(!e.contains(r), "{text}: {r:?} in: {e}");
        }
    }
    // The same through --set: the --set is named.
    for set in [
        "kernel=3",
        "kernel.jobs=x",
        "kernel.fragments=x",
        "kernel.compile_cache=1",
        "kernel.source=x",
        "agent.dump_level=x",
        "initramfs.compression=3",
        "initramfs=3",
        "initramfs=[\"xz\"]",
        "kernel.source=[\"/a.tar.xz\", \"00\", \"/b\", false]",
        "budget.total=true",
        "sign.hash=1",
    ] {
        let e = format!(
            "{:#}",
            load(d.path(), "default", &[set.to_string()]).unwrap_err()
        );
        assert!(e.starts_with(&format!("--set {set:?}: ")), "{e}");
        for r in RUSTISMS {
            assert!(!e.contains(r), "{set}: {r:?} in: {e}");
        }
    }
}

/// serde reads a struct from an array field by field, in order: a table
/// given as an array loaded (`initramfs = ["xz", "/r", true]` was xz,
/// rootfs /r, builtin).
#[test]
fn tables_given_as_arrays_are_refused() {
    let d = root_with(&[(
        "profiles/p.toml",
        &format!("initramfs = [\"xz\", \"/r\", true]\n{BASE}"),
    )]);
    let e = format!("{:#}", load(d.path(), "p", &[]).unwrap_err());
    assert!(
        e.ends_with("p.toml:1: initramfs: invalid type: array, expected a table ([initramfs])"),
        "{e}"
    );
    let d = root_with(&[("profiles/default.toml", BASE)]);
    let set = "budget=[\"64M\", \"16M\"]".to_string();
    let e = format!("{:#}", load(d.path(), "default", &[set]).unwrap_err());
    assert_eq!(
        e,
        "--set \"budget=[\\\"64M\\\", \\\"16M\\\"]\": budget: invalid type: array, expected a \
         table ([budget])"
    );
}

/// `--profile ./child` names `./child.toml` when only that exists.
#[test]
fn a_profile_path_without_toml_finds_the_toml_file() {
    let d = root_with(&[
        ("elsewhere/child.toml", BASE),
        ("elsewhere/both", "not toml"),
        ("elsewhere/both.toml", BASE),
    ]);
    let child = d.path().join("elsewhere/child");
    let arg = child.to_str().unwrap();
    assert_eq!(
        profile_path(d.path(), arg),
        d.path().join("elsewhere/child.toml")
    );
    let p = load(d.path(), arg, &[]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(p.name, "child");
    assert_eq!(
        p.files,
        vec![
            d.path()
                .join("elsewhere/child.toml")
                .canonicalize()
                .unwrap()
        ]
    );
    // A file of that very name wins; a bare name is still profiles/NAME.
    let both = d.path().join("elsewhere/both");
    assert_eq!(profile_path(d.path(), both.to_str().unwrap()), both);
    assert_eq!(
        profile_path(d.path(), "child"),
        d.path().join("profiles/child.toml")
    );
    // Neither there: both named.
    let none = d.path().join("elsewhere/none");
    let e = format!(
        "{:#}",
        load(d.path(), none.to_str().unwrap(), &[]).unwrap_err()
    );
    assert!(
        e.starts_with(&format!(
            "cannot read profile {} (nor {}.toml): ",
            none.display(),
            none.display()
        )),
        "{e}"
    );
}

/// `extends = "base"` outside profiles/ with base.toml beside it: say so,
/// as the kernel stage does for a fragment.
#[test]
fn a_bare_extends_beside_the_profile_is_hinted() {
    let d = root_with(&[
        ("elsewhere/base.toml", BASE),
        ("elsewhere/child.toml", "# mine\nextends = \"base\"\n"),
    ]);
    let child = d.path().join("elsewhere/child.toml");
    let e = format!(
        "{:#}",
        load(d.path(), child.to_str().unwrap(), &[]).unwrap_err()
    );
    let child = child.canonicalize().unwrap();
    let base = child.with_file_name("base.toml");
    assert!(
        e.starts_with(&format!(
            "{}:2: extends: cannot read the parent profile {}: ",
            child.display(),
            d.path().join("profiles/base.toml").display()
        )),
        "{e}"
    );
    assert!(
        e.ends_with(&format!(
            "; {} sits beside the profile {}: a bare name is looked up in profiles/ only, so \
             write extends = \"./base.toml\" there",
            base.display(),
            child.display()
        )),
        "{e}"
    );
    // No such file beside it: no hint.
    fs::remove_file(&base).unwrap();
    let e = format!(
        "{:#}",
        load(d.path(), child.to_str().unwrap(), &[]).unwrap_err()
    );
    assert!(!e.contains("sits beside"), "{e}");
}

/// A relative path given with `--set` is relative to where the command
/// was typed, as a path in a file is relative to that file; it was kept
/// relative, and then meant something else to every stage.
#[test]
fn set_paths_are_relative_to_the_working_directory() {
    let d = root_with(&[("profiles/default.toml", BASE)]);
    let cwd = std::env::current_dir().unwrap();
    let p = load(
        d.path(),
        "default",
        &[
            "kernel.source.dir=linux".into(),
            "initramfs.rootfs=my/rootfs".into(),
            "kernel.fragments=[\"./x.config\", \"bare.config\"]".into(),
            "sign.key=env:KEY".into(),
            "sign.certificate=cert.pem".into(),
        ],
    )
    .unwrap();
    assert_eq!(p.kernel.source.dir, Some(cwd.join("linux")));
    assert_eq!(p.initramfs.rootfs, Some(cwd.join("my/rootfs")));
    assert_eq!(
        p.kernel.fragments,
        vec![
            cwd.join("./x.config").display().to_string(),
            "bare.config".into()
        ]
    );
    let sign = p.sign.unwrap();
    assert_eq!(sign.key, "env:KEY");
    assert_eq!(Path::new(&sign.certificate), cwd.join("cert.pem"));
}
