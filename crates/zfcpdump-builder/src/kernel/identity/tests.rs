//! The identity's tests, on small trees and real git repositories.

use super::content::WalkStats;
use super::*;
use std::process::Command;
use std::time::SystemTime;

/// A small source tree.
fn tree(at: &Path) {
    fs::create_dir_all(at.join("kernel")).unwrap();
    fs::write(at.join("Makefile"), "VERSION = 6\nPATCHLEVEL = 1\n").unwrap();
    fs::write(at.join("kernel/fork.c"), "int fork;\n").unwrap();
    fs::write(at.join(".gitignore"), "*.o\n").unwrap();
}

/// Runs git in `dir` with a fixed identity and no user configuration.
fn git_in(dir: &Path, args: &[&str]) {
    let o = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {o:?}");
}

fn commit_all(dir: &Path, msg: &str) {
    git_in(dir, &["add", "-A"]);
    git_in(dir, &["commit", "-q", "--allow-empty", "-m", msg]);
}

fn head(dir: &Path) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

fn id(dir: &Path, cache: &Path) -> DirId {
    identify_dir(dir, false, cache).unwrap()
}

/// A walk whose fresh files are cached too (tests cannot wait for
/// files to age; they sleep past the clock's tick instead).
fn walk_now(real: &Path, cache: &Path) -> (String, WalkStats) {
    TreeWalk {
        cache_file: stat_cache_path(cache, real),
        racy: Duration::ZERO,
    }
    .hash(real)
    .unwrap()
}

fn tick() {
    std::thread::sleep(Duration::from_millis(20));
}

#[test]
fn a_plain_tree_is_known_by_content_and_edits_change_it() {
    let d = tempfile::tempdir().unwrap();
    let (src, cache) = (d.path().join("linux"), d.path().join("cache"));
    tree(&src);
    let a = id(&src, &cache);
    assert_eq!(a.identity, Identity::TreeContent);
    assert_eq!(a.git_commit, None);
    assert!(a.content_sha256.is_some());
    assert_eq!(id(&src, &cache), a);

    // Appending VERSION/PATCHLEVEL lines to the Makefile.
    let mk = fs::read_to_string(src.join("Makefile")).unwrap();
    fs::write(src.join("Makefile"), format!("{mk}VERSION = 7\n")).unwrap();
    let b = id(&src, &cache);
    assert_ne!(a, b);
    // A new .c file.
    fs::write(src.join("kernel/new.c"), "int x;\n").unwrap();
    let c = id(&src, &cache);
    assert_ne!(b, c);
    // An empty file, an executable bit, a symlink: each counts.
    fs::write(src.join("kernel/empty.h"), "").unwrap();
    let e = id(&src, &cache);
    assert_ne!(c, e);
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(src.join("kernel/new.c"), fs::Permissions::from_mode(0o755)).unwrap();
    let x = id(&src, &cache);
    assert_ne!(e, x);
    std::os::unix::fs::symlink("fork.c", src.join("kernel/l.c")).unwrap();
    let l = id(&src, &cache);
    assert_ne!(x, l);
    fs::remove_file(src.join("kernel/l.c")).unwrap();
    std::os::unix::fs::symlink("new.c", src.join("kernel/l.c")).unwrap();
    assert_ne!(id(&src, &cache), l);
}

/// Found in review: a link out of the tree counted by its name only,
/// so an edit of its target went unseen. Such a tree is refused; a
/// link that stays inside (even by an absolute path) is fine.
#[test]
fn a_link_out_of_the_tree_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (src, cache) = (d.path().join("linux"), d.path().join("cache"));
    tree(&src);
    std::os::unix::fs::symlink(src.join("Makefile"), src.join("kernel/abs")).unwrap();
    id(&src, &cache);
    fs::write(d.path().join("site_defconfig"), "CONFIG_A=y\n").unwrap();
    std::os::unix::fs::symlink("../../site_defconfig", src.join("kernel/site")).unwrap();
    let e = identify_dir(&src, false, &cache).unwrap_err().to_string();
    assert!(
        e.contains("links to") && e.contains("outside the tree"),
        "{e}"
    );
}

#[test]
fn a_copy_elsewhere_is_the_same_source_and_touch_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    tree(&a);
    tree(&b);
    let ia = id(&a, &cache);
    assert_eq!(ia, id(&b, &cache));
    tick();
    let f = fs::File::options()
        .write(true)
        .open(a.join("kernel/fork.c"))
        .unwrap();
    f.set_modified(SystemTime::now()).unwrap();
    drop(f);
    assert_eq!(id(&a, &cache), ia);
    // `.git` is not content.
    fs::create_dir_all(b.join(".git")).unwrap();
    fs::write(b.join(".git/HEAD"), "junk").unwrap();
    assert_eq!(id(&b, &cache), ia);
}

#[test]
fn the_stat_cache_serves_unchanged_files_and_ctime_catches_a_rewrite() {
    let d = tempfile::tempdir().unwrap();
    let (src, cache) = (d.path().join("linux"), d.path().join("cache"));
    tree(&src);
    let real = fs::canonicalize(&src).unwrap();
    tick();
    let (a, s) = walk_now(&real, &cache);
    assert_eq!((s.files, s.hashed, s.from_cache), (3, 3, 0));
    let (again, s) = walk_now(&real, &cache);
    assert_eq!(again, a);
    assert_eq!((s.files, s.hashed, s.from_cache), (3, 0, 3));
    assert!(s.whole_from_cache);

    // Same length, mtime put back: size and mtime are as cached.
    let f = real.join("kernel/fork.c");
    let mtime = fs::metadata(&f).unwrap().modified().unwrap();
    tick();
    fs::write(&f, "int FORK;\n").unwrap();
    let h = fs::File::options().write(true).open(&f).unwrap();
    h.set_modified(mtime).unwrap();
    drop(h);
    assert_eq!(fs::metadata(&f).unwrap().modified().unwrap(), mtime);
    let (b, s) = walk_now(&real, &cache);
    assert_ne!(b, a, "a rewrite keeping size and mtime went unnoticed");
    assert_eq!((s.hashed, s.from_cache), (1, 2));
    assert!(!s.whole_from_cache);
}

/// A racy entry is not cached, and the tree's hash, which counts it,
/// is not either: were it, the tree without that file would take it.
#[test]
fn a_racy_entry_keeps_the_tree_hash_out_of_the_cache() {
    let d = tempfile::tempdir().unwrap();
    let (src, cache) = (d.path().join("linux"), d.path().join("cache"));
    tree(&src);
    let real = fs::canonicalize(&src).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    fs::write(real.join("kernel/fresh.c"), "int f;\n").unwrap();
    let walk = TreeWalk {
        cache_file: stat_cache_path(&cache, &real),
        racy: Duration::from_millis(150),
    };
    let (a, s) = walk.hash(&real).unwrap();
    assert_eq!(s.hashed, 4);
    fs::remove_file(real.join("kernel/fresh.c")).unwrap();
    let (b, s) = walk.hash(&real).unwrap();
    assert_ne!(a, b, "the tree's hash of a racy walk was reused");
    assert_eq!((s.hashed, s.from_cache), (0, 3));
}

#[test]
fn fresh_files_are_not_trusted_from_the_stat_cache() {
    let d = tempfile::tempdir().unwrap();
    let (src, cache) = (d.path().join("linux"), d.path().join("cache"));
    tree(&src);
    let real = fs::canonicalize(&src).unwrap();
    let walk = TreeWalk {
        cache_file: stat_cache_path(&cache, &real),
        racy: RACY,
    };
    let (a, _) = walk.hash(&real).unwrap();
    let (b, s) = walk.hash(&real).unwrap();
    assert_eq!(a, b);
    assert_eq!((s.hashed, s.from_cache), (3, 0));
}

#[test]
fn a_broken_stat_cache_is_ignored() {
    let d = tempfile::tempdir().unwrap();
    let (src, cache) = (d.path().join("linux"), d.path().join("cache"));
    tree(&src);
    let real = fs::canonicalize(&src).unwrap();
    tick();
    let (a, _) = walk_now(&real, &cache);
    let file = stat_cache_path(&cache, &real);
    let data = fs::read(&file).unwrap();
    fs::write(&file, &data[..data.len() - 1]).unwrap();
    let (b, s) = walk_now(&real, &cache);
    assert_eq!((a, s.from_cache), (b, 0));
}

#[test]
fn a_tree_inside_another_repository_is_known_by_content() {
    let d = tempfile::tempdir().unwrap();
    let (outer, cache) = (d.path().join("pkg"), d.path().join("cache"));
    let src = outer.join("linux");
    tree(&src);
    fs::write(outer.join("debian.txt"), "1\n").unwrap();
    git_in(&outer, &["init", "-q"]);
    commit_all(&outer, "one");
    let a = id(&src, &cache);
    assert_eq!(a.identity, Identity::TreeContent);
    assert_eq!(a.git_commit, None);
    // An unrelated commit in the outer repository.
    fs::write(outer.join("debian.txt"), "2\n").unwrap();
    commit_all(&outer, "two");
    assert_eq!(id(&src, &cache), a);
    // Nor does its being dirty matter.
    fs::write(outer.join("debian.txt"), "3\n").unwrap();
    assert_eq!(id(&src, &cache), a);
}

#[test]
fn a_clean_work_tree_is_known_by_its_commit() {
    let d = tempfile::tempdir().unwrap();
    let (src, cache) = (d.path().join("linux"), d.path().join("cache"));
    tree(&src);
    git_in(&src, &["init", "-q"]);
    commit_all(&src, "one");
    // Ignored files do not make it dirty.
    fs::write(src.join("kernel/fork.o"), "obj").unwrap();
    let a = id(&src, &cache);
    assert_eq!(
        a,
        DirId {
            identity: Identity::GitCommit,
            git_commit: Some(head(&src)),
            content_sha256: None,
        }
    );
    // Reached through a symlink, it is the same top.
    let link = d.path().join("link");
    std::os::unix::fs::symlink(&src, &link).unwrap();
    assert_eq!(id(&link, &cache), a);
}

#[test]
fn a_dirty_work_tree_is_refused_unless_allowed() {
    let d = tempfile::tempdir().unwrap();
    let (src, cache) = (d.path().join("linux"), d.path().join("cache"));
    tree(&src);
    git_in(&src, &["init", "-q"]);
    commit_all(&src, "one");
    let clean = id(&src, &cache);
    let mk = fs::read_to_string(src.join("Makefile")).unwrap();
    fs::write(src.join("Makefile"), format!("{mk}VERSION = 7\n")).unwrap();
    let e = identify_dir(&src, false, &cache).unwrap_err().to_string();
    assert!(e.contains(&src.display().to_string()), "{e}");
    assert!(e.contains("M Makefile"), "{e}");
    assert!(e.contains("kernel.source.allow_dirty = true"), "{e}");
    assert!(e.contains("--set kernel.source.allow_dirty=true"), "{e}");

    let a = identify_dir(&src, true, &cache).unwrap();
    assert_eq!(a.identity, Identity::GitDirtyContent);
    assert_eq!(a.git_commit, clean.git_commit);
    assert!(a.content_sha256.is_some());
    assert_eq!(identify_dir(&src, true, &cache).unwrap(), a);
    // A further edit of a tracked file changes it.
    fs::write(src.join("Makefile"), format!("{mk}VERSION = 8\n")).unwrap();
    let b = identify_dir(&src, true, &cache).unwrap();
    assert_ne!(a, b);
    // So do an untracked file and its edit.
    fs::write(src.join("kernel/new.c"), "int x;\n").unwrap();
    let e = identify_dir(&src, false, &cache).unwrap_err().to_string();
    assert!(e.contains("?? kernel/new.c"), "{e}");
    let c = identify_dir(&src, true, &cache).unwrap();
    assert_ne!(b, c);
    fs::write(src.join("kernel/new.c"), "int y;\n").unwrap();
    assert_ne!(identify_dir(&src, true, &cache).unwrap(), c);
}

/// The dirty hash records untracked links as the content walk does: one
/// that leaves the tree is refused there too.
#[test]
fn an_untracked_link_out_of_a_dirty_tree_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (src, cache) = (d.path().join("linux"), d.path().join("cache"));
    tree(&src);
    git_in(&src, &["init", "-q"]);
    commit_all(&src, "one");
    fs::write(d.path().join("site_defconfig"), "CONFIG_A=y\n").unwrap();
    std::os::unix::fs::symlink("../../site_defconfig", src.join("kernel/site")).unwrap();
    let e = identify_dir(&src, true, &cache).unwrap_err().to_string();
    assert!(
        e.contains("links to") && e.contains("outside the tree"),
        "{e}"
    );
}

#[test]
fn an_untracked_file_alone_makes_a_tree_dirty() {
    let d = tempfile::tempdir().unwrap();
    let (src, cache) = (d.path().join("linux"), d.path().join("cache"));
    tree(&src);
    git_in(&src, &["init", "-q"]);
    commit_all(&src, "one");
    fs::write(src.join("kernel/new.c"), "int x;\n").unwrap();
    let e = identify_dir(&src, false, &cache).unwrap_err().to_string();
    assert!(e.contains("?? kernel/new.c"), "{e}");
}
