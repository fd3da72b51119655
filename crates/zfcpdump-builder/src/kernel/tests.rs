//! The kernel stage's unit tests: keys, levels, identity in the stage.

use super::*;

/// Two checkouts, one reached through a symlink, map the same real
/// trees: the maps name real paths, as kbuild does.
#[test]
fn prefix_maps_name_the_real_paths() {
    let d = tempfile::tempdir().unwrap();
    let real = d.path().join("real");
    std::fs::create_dir_all(real.join("src")).unwrap();
    std::fs::create_dir_all(real.join("obj")).unwrap();
    let link = d.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let via_link = prefix_maps(&link.join("src"), &link.join("obj"));
    let direct = prefix_maps(&real.join("src"), &real.join("obj"));
    assert_eq!(via_link, direct);
    let real = std::fs::canonicalize(&real).unwrap();
    assert!(
        via_link.contains(&format!(
            "-ffile-prefix-map={}={MAPPED_SRC}",
            real.join("src").display()
        )),
        "{via_link}"
    );
}
use crate::cache::write_json;
use crate::kconfig;
use crate::profile;

/// A project root with a fake source dir and one fragment; the host gcc
/// stands in for the cross compiler (only its --version is read).
fn fake_root() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    fs::create_dir_all(root.join("linux")).unwrap();
    fs::write(root.join("linux/Makefile"), "VERSION = 6\n").unwrap();
    fs::create_dir_all(root.join("kernel-config")).unwrap();
    fs::write(root.join("kernel-config/x.config"), "CONFIG_A=y\n").unwrap();
    fs::create_dir_all(root.join("profiles")).unwrap();
    fs::write(
        root.join("profiles/p.toml"),
        format!(
            "[kernel]\nsource = {{ dir = \"{}\" }}\nfragments = [\"x.config\"]\ncross_compile = \"\"\n",
            root.join("linux").display()
        ),
    )
    .unwrap();
    d
}

fn stage_plan(root: &Path, sets: &[&str]) -> (Plan, Profile) {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let p = profile::load(root, "p", &sets).unwrap();
    let plan = {
        let mut st = Kernel::new(root, &p, None);
        st.cache = root.join("cache");
        st.plan().unwrap()
    };
    (plan, p)
}

/// Pretends the stage ran for `profile`: records as `run` writes them.
fn fake_build(root: &Path, p: &Profile) {
    let mut st = Kernel::new(root, p, None);
    st.cache = root.join("cache");
    let inputs = st.inputs().unwrap();
    let ckey = key_of(&inputs);
    let compile_key = util::sha256_bytes(ckey.as_bytes());
    let obj = st.build_dir(&compile_key);
    fs::create_dir_all(&obj).unwrap();
    let compiled = CompileRecord {
        compile_key: compile_key.clone(),
        release: "6.1.0".into(),
        source: st.source_id().unwrap(),
        objects: Some(1500),
        compile_cache: false,
    };
    write_json(&obj.join("stage.json"), &compiled).unwrap();
    let c = ConfigureRecord {
        configure_key: ckey.clone(),
        compile_key: compile_key.clone(),
        config_sha256: String::new(),
        link_config_sha256: None,
    };
    write_json(&st.configure_record_path(&ckey), &c).unwrap();
    let slot = st.link_slot(&c).unwrap().unwrap();
    fs::create_dir_all(slot.dir()).unwrap();
    for f in ["bzImage", "vmlinux"] {
        fs::write(slot.dir().join(f), b"x").unwrap();
    }
    let rec = KernelRecord {
        compile_key,
        link_key: slot.key.clone(),
        image: slot.dir().join("bzImage"),
        image_size: 1,
        vmlinux: slot.dir().join("vmlinux"),
        footprint: 0x69b000,
        release: "6.1.0".into(),
        config_sha256: String::new(),
        config: slot.dir().join("config"),
        source: st.source_id().unwrap(),
        build_dir: obj.clone(),
        log: obj.join("make.log"),
        embedded: None,
    };
    slot.store(&rec).unwrap();
    slot.remember().unwrap();
    st.slot().unwrap().remember().unwrap();
    assert_eq!(st.expected_objects(&rec.source), Some(1500));
}

#[test]
fn cache_invalidation() {
    let d = fake_root();
    let root = d.path();
    let (plan, p) = stage_plan(root, &[]);
    assert!(matches!(plan.state, State::Rebuild { ref why } if why.contains("no earlier build")));
    fake_build(root, &p);
    let (plan, _) = stage_plan(root, &[]);
    assert!(matches!(plan.state, State::UpToDate(_)));

    // make -j is not part of any key, nor is the compile cache.
    let (plan, _) = stage_plan(root, &["kernel.jobs=7"]);
    assert!(matches!(plan.state, State::UpToDate(_)));
    let (plan, _) = stage_plan(root, &["kernel.compile_cache=false"]);
    assert!(matches!(plan.state, State::UpToDate(_)));

    // A fragment edit invalidates, and plan says which input changed.
    fs::write(root.join("kernel-config/x.config"), "CONFIG_A=m\n").unwrap();
    let (plan, _) = stage_plan(root, &[]);
    match plan.state {
        State::Rebuild { why } => {
            assert!(why.contains("fragment x.config changed"), "{why}");
            assert!(why.contains("option CONFIG_A changed"), "{why}");
        }
        _ => panic!("fragment change not detected"),
    }
    fs::write(root.join("kernel-config/x.config"), "CONFIG_A=y\n").unwrap();
    let (plan, _) = stage_plan(root, &[]);
    assert!(matches!(plan.state, State::UpToDate(_)));

    // The source dir is known by its content: an appended line
    // invalidates, and putting it back finds the build again.
    let mk = root.join("linux/Makefile");
    fs::write(&mk, "VERSION = 6\nPATCHLEVEL = 2\n").unwrap();
    let (plan, _) = stage_plan(root, &[]);
    assert!(
        matches!(plan.state, State::Rebuild { ref why } if why == "source changed"),
        "source edit not detected"
    );
    fs::write(&mk, "VERSION = 6\n").unwrap();
    let (plan, _) = stage_plan(root, &[]);
    assert!(matches!(plan.state, State::UpToDate(_)));

    // Another initrd compression requires another decompressor.
    let (plan, _) = stage_plan(root, &["initramfs.compression=xz"]);
    match plan.state {
        State::Rebuild { why } => assert!(why.contains("option CONFIG_RD_XZ added"), "{why}"),
        _ => panic!("compression change not detected"),
    }

    // Losing the build output is noticed too.
    let (plan, _) = stage_plan(root, &[]);
    let State::UpToDate(rec) = plan.state else {
        panic!()
    };
    fs::remove_file(&rec.image).unwrap();
    let (plan, _) = stage_plan(root, &[]);
    assert!(matches!(plan.state, State::Link { ref why } if why.contains("missing")));

    // A built-in initramfs is a configure input (its options), not a
    // compile one: configure says which option it adds.
    let (plan, _) = stage_plan(root, &["initramfs.builtin=true"]);
    match plan.state {
        State::Rebuild { why } => {
            assert!(
                why.contains("option CONFIG_INITRAMFS_SOURCE added"),
                "{why}"
            )
        }
        _ => panic!("built-in change not detected"),
    }
}

#[test]
fn a_fragment_beside_an_outside_profile_is_named_in_the_error() {
    let d = fake_root();
    let root = d.path();
    let outside = tempfile::tempdir().unwrap();
    let prof = outside.path().join("site.toml");
    fs::write(
        &prof,
        format!(
            "extends = \"{}\"\n[kernel]\nfragments = [\"nokvm.config\"]\n",
            root.join("profiles/p.toml").display()
        ),
    )
    .unwrap();
    fs::write(
        outside.path().join("nokvm.config"),
        "# CONFIG_KVM is not set\n",
    )
    .unwrap();
    let p = profile::load(root, prof.to_str().unwrap(), &[]).unwrap();
    let e = format!(
        "{:#}",
        Kernel::new(root, &p, None).requirements().unwrap_err()
    );
    assert!(e.contains("cannot read"), "{e}");
    assert!(e.contains("fragments = [\"./nokvm.config\"]"), "{e}");
    // Named so, it is found beside the profile.
    fs::write(
        &prof,
        format!(
            "extends = \"{}\"\n[kernel]\nfragments = [\"./nokvm.config\"]\n",
            root.join("profiles/p.toml").display()
        ),
    )
    .unwrap();
    let p = profile::load(root, prof.to_str().unwrap(), &[]).unwrap();
    let reqs = Kernel::new(root, &p, None).requirements().unwrap();
    assert!(
        reqs.iter()
            .any(|r| r.option == "CONFIG_KVM" && r.value == "n")
    );
}

/// Found by a packager: a misspelled option was reported as one whose
/// dependencies are off.
#[test]
fn an_option_in_no_kconfig_is_named_as_such() {
    let d = fake_root();
    let root = d.path();
    fs::create_dir_all(root.join("linux/drivers")).unwrap();
    fs::write(
        root.join("linux/drivers/Kconfig"),
        "config A\n\tbool \"a\"\n\tdepends on B\nmenuconfig B\n\tbool \"b\"\n",
    )
    .unwrap();
    let p = profile::load(root, "p", &[]).unwrap();
    let k = Kernel::new(root, &p, None);
    let reqs = kconfig::parse_fragment("x.config", "CONFIG_A=y\nCONFIG_TYPO=y\n").unwrap();
    let e = k
        .check_final(
            &root.join("linux"),
            &reqs,
            "# CONFIG_B is not set\n",
            Path::new(".config"),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("1 requested option(s) exist in no Kconfig file")
            && e.contains("  CONFIG_TYPO (requested by x.config:2)"),
        "{e}"
    );
    assert!(
        e.contains("1 requested option(s) did not survive olddefconfig")
            && e.contains("  CONFIG_A: requested y, final not set (requested by x.config:1)"),
        "{e}"
    );
    assert!(!e.contains("CONFIG_TYPO: requested"), "{e}");
}

/// Found by a packager: `SOURCE_DATE_EPOCH=yesterday` built with the
/// default date, silently.
#[test]
fn source_date_epoch_is_parsed_strictly() {
    use std::ffi::OsStr;
    let p = |v: &str| parse_source_date_epoch(Some(OsStr::new(v)));
    assert_eq!(
        parse_source_date_epoch(None).unwrap(),
        DEFAULT_SOURCE_DATE_EPOCH
    );
    assert_eq!(p("").unwrap(), DEFAULT_SOURCE_DATE_EPOCH);
    assert_eq!(p("1700000000").unwrap(), 1_700_000_000);
    assert_eq!(p("0").unwrap(), 0);
    for bad in ["yesterday", "-1", "1.5", " 17", "4294967296"] {
        let e = format!("{:#}", p(bad).unwrap_err());
        assert!(
            e.contains(&format!(
                "SOURCE_DATE_EPOCH={bad}: expected seconds since 1970"
            )),
            "{bad}: {e}"
        );
    }
}

/// A record written before the identity still reads, keyed as then.
#[test]
fn a_source_id_of_an_older_record_parses() {
    let old: SourceId = serde_json::from_str(
        r#"{"kind":"dir","path":"/src/linux","sha256":null,"pinned":false,"git_commit":null}"#,
    )
    .unwrap();
    assert_eq!(old.identity, None);
    assert_eq!(old.key(), "dir /src/linux git none");
    let new = SourceId {
        identity: Some(Identity::TreeContent),
        content_sha256: Some("ab".into()),
        ..old.clone()
    };
    assert_eq!(new.key(), "dir content sha256 ab");
    let text = serde_json::to_string(&new).unwrap();
    assert!(text.contains(r#""identity":"tree-content""#), "{text}");
    assert_eq!(serde_json::from_str::<SourceId>(&text).unwrap(), new);
    // The progress estimate still finds the older compile of the dir.
    assert!(new.same_tree(&old));
}

#[test]
fn timestamp_format() {
    assert_eq!(kbuild_timestamp(0), "Thu Jan  1 00:00:00 UTC 1970");
    assert_eq!(
        kbuild_timestamp(DEFAULT_SOURCE_DATE_EPOCH),
        "Mon Jan  1 00:00:00 UTC 2024"
    );
    assert_eq!(
        kbuild_timestamp(1_709_210_096),
        "Thu Feb 29 12:34:56 UTC 2024"
    );
}
