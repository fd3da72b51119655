//! Step 1 of e2e, shared with the fault lab: provisioning, the builds of
//! the profile (and of its variant with zero-page elision, which the crash
//! lab builds too), the host tools, the readers, and the Debian package for
//! `e2e --deb`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use super::ctx::{Ctx, step};
use crate::LabArgs;
use crate::readers::Readers;
use zfcpdump_builder::cmd::{self, cmd};
use zfcpdump_builder::dist::{self, DistArgs, IMAGE, RD};
use zfcpdump_builder::profile::{self, ProfileArgs};
use zfcpdump_builder::{provision, util};

/// What turns the agent's zero-page elision on for the elided run.
const ELISION_SET: &str = "agent.dump_level=1";

/// Where the dump tool under test comes from.
#[derive(Debug, Clone)]
pub(crate) enum Tool {
    /// This checkout's build of the profile (`dist/<profile>/`).
    Dist,
    /// The profile's Debian package, as `dpkg-deb -x` unpacks it.
    Deb,
    /// A build made elsewhere (another toolchain's, ci/trixie.sh): a
    /// directory with dist's files and the kernel's `vmlinux`.
    From(PathBuf),
}

/// Step 1, shared with the fault lab: provisions, builds the profile (and
/// its variant with zero-page elision), the host tools and the readers.
pub(crate) fn setup(
    profile_name: &str,
    tool: &Tool,
    lab: &LabArgs,
    work: &Path,
    timings: &mut Vec<(String, Duration)>,
) -> Result<Ctx> {
    let root = util::project_root();
    let cache = util::cache_dir(&root);
    let needs: Vec<&provision::Need> = provision::TEST.iter().collect();
    provision::ensure(&needs, &[], !lab.no_provision && !lab.offline)?;

    step(format!("1. building the {} profile", profile_name));
    let t = Instant::now();
    let profile_args = ProfileArgs {
        profile: profile_name.to_string(),
        sets: vec![],
    };
    let kernel_rec = dist::run(&DistArgs::new(
        profile_args.clone(),
        lab.no_provision,
        lab.offline,
    ))?
    .kernel;
    let profile = profile_args.load()?;
    let dist_dir = dist::dist_dir(&root, &profile);
    let external = !profile.initramfs.builtin;
    let vmlinux = kernel_rec.vmlinux.clone();
    ensure!(
        vmlinux.is_file(),
        "{} is missing: the kernel build directory is incomplete",
        vmlinux.display()
    );
    let (disk_tool, fixture_tool) = build_host_tools(&root, &cache, lab.offline)?;
    let readers = Readers::for_kernel(&kernel_rec.release, &cache, lab.offline)?;
    step(format!(
        "   kernel {}: readers {}",
        kernel_rec.release,
        readers.versions.join("; ")
    ));
    timings.push(("build (cached)".into(), t.elapsed()));

    let t = Instant::now();
    let elided_dir = elided_build(
        &root,
        work,
        &profile,
        &dist_dir,
        lab.no_provision,
        lab.offline,
    )?;
    timings.push(("build with zero-page elision".into(), t.elapsed()));
    let (image, initrd, manifest) = match tool {
        Tool::Deb => {
            let t = Instant::now();
            let files = unpacked_deb(&profile_args, work, lab)?;
            timings.push(("Debian package, dpkg-deb -x".into(), t.elapsed()));
            (
                files.join("zfcpdump-image"),
                external.then(|| files.join("zfcpdump-initrd")),
                dist_dir.join(dist::MANIFEST),
            )
        }
        Tool::Dist => (
            dist_dir.join(IMAGE),
            external.then(|| dist_dir.join(RD)),
            dist_dir.join(dist::MANIFEST),
        ),
        Tool::From(dir) => (
            dir.join(IMAGE),
            external.then(|| dir.join(RD)),
            dir.join(dist::MANIFEST),
        ),
    };
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(&manifest).with_context(|| format!("cannot read {}", manifest.display()))?,
    )?;
    let (vmlinux, release) = match tool {
        Tool::From(dir) => {
            step(format!(
                "1d. the dump tool under test is the one in {} (built elsewhere)",
                dir.display()
            ));
            let release = manifest["kernel"]["release"]
                .as_str()
                .context("the manifest has no kernel.release")?
                .to_string();
            (dir.join("vmlinux"), release)
        }
        _ => (vmlinux, kernel_rec.release.clone()),
    };
    ensure!(vmlinux.is_file(), "{} is missing", vmlinux.display());
    if let Some(rd) = &initrd {
        step(format!("   {}", agent_in(rd, &manifest)?));
    }
    let ctx = Ctx {
        cache,
        work: work.to_path_buf(),
        image,
        initrd,
        elided_image: elided_dir.join(IMAGE),
        elided_initrd: external.then(|| elided_dir.join(RD)),
        memory: profile.budget.total,
        disk_tool,
        fixture_tool,
        readers,
        vmlinux,
        release,
        keep: lab.keep,
    };

    Ok(ctx)
}

/// Which agent the initramfs `rd` holds, checked against the manifest's
/// `agent.target`: glibc's static binaries carry the GNU ABI note
/// (`.note.ABI-tag`), musl's do not. Read with GNU cpio and the
/// compressor's own tool, independently of the builder's archive writer.
fn agent_in(rd: &Path, manifest: &serde_json::Value) -> Result<String> {
    use object::{Object, ObjectSection};
    let target = manifest["profile"]["agent"]["target"]
        .as_str()
        .context("the manifest has no profile.agent.target")?;
    let cat = match manifest["profile"]["initramfs"]["compression"].as_str() {
        Some("xz") => "xzcat",
        Some("zstd") => "zstdcat",
        Some("none") => "cat",
        _ => "zcat",
    };
    let o = Command::new("sh")
        .args([
            "-c",
            &format!("{cat} \"$1\" | cpio -i --quiet --to-stdout init"),
        ])
        .args(["sh", &rd.display().to_string()])
        .output()?;
    ensure!(
        o.status.success() && !o.stdout.is_empty(),
        "cannot read /init out of {}: {}",
        rd.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let elf = object::File::parse(&*o.stdout).context("/init is not an ELF file")?;
    let glibc = elf
        .section_by_name(".note.ABI-tag")
        .is_some_and(|s| s.size() > 0);
    let want_glibc = target == zfcpdump_builder::agent::GNU_TARGET;
    ensure!(
        glibc == want_glibc,
        "/init of {} is a {} binary, but the manifest says agent.target = {target}",
        rd.display(),
        if glibc { "glibc" } else { "musl" }
    );
    Ok(format!(
        "agent: /init is {} bytes, {} (agent.target = {target})",
        o.stdout.len(),
        if glibc {
            "static glibc (GNU ABI note)"
        } else {
            "static musl (no GNU ABI note)"
        }
    ))
}

/// The profile's Debian package, unpacked with `dpkg-deb -x` into the work
/// directory; returns the directory that holds zfcpdump-image (and -initrd).
fn unpacked_deb(profile: &ProfileArgs, work: &Path, lab: &LabArgs) -> Result<PathBuf> {
    step("1c. the Debian package of the profile, unpacked with dpkg-deb -x");
    let deb = zfcpdump_builder::package::build(&zfcpdump_builder::package::PackageArgs {
        profile: profile.clone(),
        deb: true,
        out_dir: Some(work.join("deb")),
        no_provision: lab.no_provision,
        offline: lab.offline,
    })?;
    let root = work.join("deb-root");
    let sh = cmd::shell()?;
    let package = &deb.path;
    cmd::output(cmd!(sh, "dpkg-deb -x {package} {root}"))?;
    let files = root.join(zfcpdump_builder::package::ZFCPDUMP_DIR);
    ensure!(
        files.join("zfcpdump-image").is_file(),
        "{} holds no zfcpdump-image",
        deb.path.display()
    );
    step(format!(
        "   {} {}: zipl and the boots take the dump tool from {}",
        deb.name,
        deb.version,
        files.display()
    ));
    Ok(files)
}

/// The profile with `--set agent.dump_level=1`, loaded, built (the
/// kernel and agent stages are cached, only the initramfs differs) and
/// published into `<work>/dist-<profile>-elided/`, not over
/// `dist/<profile>/`. Returns that directory.
pub(crate) fn elided_build(
    root: &Path,
    work: &Path,
    profile: &profile::Profile,
    dist_dir: &Path,
    no_provision: bool,
    offline: bool,
) -> Result<PathBuf> {
    let name = &profile.name;
    step(format!(
        "1b. building the {name} profile with --set {ELISION_SET} into the work directory"
    ));
    let sets = vec![ELISION_SET.to_string()];
    let elided = profile::load(root, name, &sets)?;
    ensure!(
        elided.agent.dump_level() == 1 && profile.agent.dump_level() == 0,
        "the {name} profile should have zero-page elision off, and on with --set {ELISION_SET}"
    );
    ensure!(
        elided.budget.total == profile.budget.total,
        "--set {ELISION_SET} changed the memory budget"
    );
    let dir = work.join(format!("dist-{name}-elided"));
    // `dist::run` with an output directory: `profile::load` with the sets,
    // `dist::build`, the manifest and `dist::publish` into `dir`.
    dist::run(&DistArgs {
        out_dir: Some(dir.clone()),
        ..DistArgs::new(
            ProfileArgs {
                profile: name.clone(),
                sets,
            },
            no_provision,
            offline,
        )
    })?;
    let same = |name: &str| -> Result<bool> {
        Ok(fs::read(dir.join(name))? == fs::read(dist_dir.join(name))?)
    };
    if profile.initramfs.builtin {
        // The initramfs is in the image: only a relink differs.
        ensure!(
            !same(IMAGE)? && !dir.join(RD).exists(),
            "{} should differ from {} (the initramfs is built in) and come without {RD}",
            dir.join(IMAGE).display(),
            dist_dir.join(IMAGE).display()
        );
        step(format!(
            "   {}: {IMAGE} {} bytes, relinked with the dump_level = 1 initramfs",
            dir.display(),
            fs::metadata(dir.join(IMAGE))?.len()
        ));
        return Ok(dir);
    }
    ensure!(
        same(IMAGE)?,
        "{} differs from {}: the elision setting should change only the initramfs",
        dir.join(IMAGE).display(),
        dist_dir.join(IMAGE).display()
    );
    ensure!(
        !same(RD)?,
        "{} equals {}: the elision setting did not reach the initramfs",
        dir.join(RD).display(),
        dist_dir.join(RD).display()
    );
    step(format!(
        "   {}: the same {IMAGE}, {RD} {} bytes (with dump_level = 1)",
        dir.display(),
        fs::metadata(dir.join(RD))?.len()
    ));
    Ok(dir)
}

/// `cargo build --release` of the two host tools; returns their paths.
pub(crate) fn build_host_tools(
    root: &Path,
    cache: &Path,
    offline: bool,
) -> Result<(PathBuf, PathBuf)> {
    let mut c = Command::new(env!("CARGO"));
    c.args([
        "build",
        "--quiet",
        "--locked",
        "--release",
        "-p",
        "zfcpdump-disk",
        "-p",
        "vmcore-fixture",
    ])
    .current_dir(root);
    if offline {
        c.arg("--offline");
    }
    let st = c.status().context("cannot run cargo")?;
    ensure!(
        st.success(),
        "cargo build --release -p zfcpdump-disk -p vmcore-fixture failed ({st})"
    );
    // util::cache_dir is <target>/zfcpdump.
    let release = cache
        .parent()
        .context("cache dir has no parent")?
        .join("release");
    let bins = (
        release.join("zfcpdump-disk"),
        release.join("vmcore-fixture"),
    );
    for b in [&bins.0, &bins.1] {
        ensure!(b.is_file(), "{} was not built", b.display());
    }
    Ok(bins)
}
