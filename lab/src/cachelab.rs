//! `cachelab`: the compile cache proven on the real kernel compile.
//!
//! Four builds of one profile, each from an empty stage cache so that make
//! really runs: cold (empty local cache, empty remote); warm from the
//! local cache; warm from the remote one, in a second checkout in another
//! directory with an empty local cache; and with the cache off. The remote is
//! a real redis-server on localhost. The four `zfcpdump.image` and
//! `zfcpdump.rd` must be bit-identical, and ccache's statistics must say
//! what each state is (misses when cold, hits when warm, remote hits from
//! the remote): without them a test of the states could pass with nothing
//! compiled. It compiles twice cold, so it is run for a measurement, not
//! in CI.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::kit::Table;
use crate::kit::table::{Left, Right};
use zfcpdump_builder::kernel::ccache::{self, CompileReport};
use zfcpdump_builder::{provision, util};

#[derive(Args, Clone, Debug)]
pub struct CachelabArgs {
    /// The profile to build in every state
    #[arg(long, default_value = "default")]
    pub profile: String,
    /// Fail listing missing host packages instead of installing them
    #[arg(long)]
    pub no_provision: bool,
    /// Also write the report (markdown) to this file
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Keep the work directory (checkouts, logs, outputs) after success
    #[arg(long)]
    pub keep: bool,
}

/// What a state's statistics must show.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    Off,
    Cold,
    WarmLocal,
    WarmRemote,
}

struct State {
    name: &'static str,
    expect: Expect,
    /// Which checkout builds: 0 or 1.
    checkout: usize,
    /// Which local cache (`XDG_CACHE_HOME`): 0 or 1.
    local: usize,
    remote: bool,
}

const STATES: [State; 4] = [
    State {
        name: "cold",
        expect: Expect::Cold,
        checkout: 0,
        local: 0,
        remote: true,
    },
    State {
        name: "warm, local",
        expect: Expect::WarmLocal,
        checkout: 0,
        local: 0,
        remote: false,
    },
    State {
        name: "warm, remote",
        expect: Expect::WarmRemote,
        checkout: 1,
        local: 1,
        remote: true,
    },
    State {
        name: "off",
        expect: Expect::Off,
        checkout: 0,
        local: 0,
        remote: false,
    },
];

/// One state's build.
struct Outcome {
    report: CompileReport,
    image: String,
    rd: String,
}

pub fn run(args: &CachelabArgs) -> Result<()> {
    let t = Instant::now();
    let root = util::project_root();
    let needs: Vec<&provision::Need> = provision::BUILD_OPTIONAL
        .iter()
        .chain(
            provision::TEST
                .iter()
                .filter(|n| n.package == Some("redis-server")),
        )
        .collect();
    provision::ensure(&needs, &[], !args.no_provision)?;
    let work = util::cache_dir(&root).join("cachelab");
    let _ = std::fs::remove_dir_all(&work);
    // Two checkouts in unrelated directories of different depth.
    let checkouts = [
        work.join("a").join("zfcpdump"),
        work.join("b")
            .join("elsewhere")
            .join("deeper")
            .join("zfcpdump"),
    ];
    for c in &checkouts {
        step(format!("copying the sources to {}", c.display()));
        zfcpdump_builder::dist::copy_sources(&root, c)?;
    }
    let locals = [work.join("local-a"), work.join("local-b")];
    let redis = Redis::start(&work.join("redis"))?;
    step(format!("remote storage: {}", redis.url));
    let mut outcomes = Vec::new();
    for s in &STATES {
        let o = build(
            args,
            s,
            &checkouts[s.checkout],
            &locals[s.local],
            &redis,
            &work,
        )?;
        check(s, &o.report)?;
        outcomes.push(o);
    }
    drop(redis);
    let first = &outcomes[0];
    for (s, o) in STATES.iter().zip(&outcomes) {
        if (&o.image, &o.rd) != (&first.image, &first.rd) {
            bail!(
                "state {:?} built other artifacts than state {:?}: image {} vs {}, rd {} vs {}",
                s.name,
                STATES[0].name,
                o.image,
                first.image,
                o.rd,
                first.rd
            );
        }
    }
    let report = render(args, &outcomes, t.elapsed());
    print!("{report}");
    if let Some(path) = &args.report {
        util::write_atomic(path, report.as_bytes())?;
        step(format!("report written to {}", path.display()));
    }
    if !args.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

fn step(msg: impl AsRef<str>) {
    eprintln!("[cachelab] {}", msg.as_ref());
}

/// `cargo xtask dist` of the profile in `checkout`, from an empty stage
/// cache, with the state's compile cache settings.
fn build(
    args: &CachelabArgs,
    s: &State,
    checkout: &Path,
    local: &Path,
    redis: &Redis,
    work: &Path,
) -> Result<Outcome> {
    let slug = s.name.replace(", ", "-");
    let out = work.join(format!("out-{slug}"));
    let reports = work.join(format!("{slug}.jsonl"));
    // The stage cache only: cargo's own build of xtask stays.
    let _ = std::fs::remove_dir_all(checkout.join("target").join("zfcpdump"));
    step(format!(
        "state {:?}: dist --profile {} in {}",
        s.name,
        args.profile,
        checkout.display()
    ));
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(checkout)
        .args(["run", "--quiet", "--package", "xtask", "--", "dist"])
        .args(["--no-provision", "--profile", &args.profile, "--out-dir"])
        .arg(&out)
        .env_remove("CARGO_TARGET_DIR")
        .env("XDG_CACHE_HOME", local)
        .env(ccache::REPORT_VAR, &reports)
        .env_remove(ccache::OFF_VAR)
        .env_remove(ccache::REMOTE_VAR);
    if s.expect == Expect::Off {
        cmd.env(ccache::OFF_VAR, "off");
    }
    if s.remote {
        cmd.env(ccache::REMOTE_VAR, &redis.url);
    }
    let status = cmd.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("state {:?}: the build failed ({status})", s.name);
    }
    let mut all = CompileReport::read_all(&reports)?;
    if all.len() != 1 {
        bail!(
            "state {:?}: expected one kernel compile, the build reported {} (from an empty \
             stage cache, make must run once)",
            s.name,
            all.len()
        );
    }
    Ok(Outcome {
        report: all.remove(0),
        image: util::sha256_file(&out.join("zfcpdump.image"))?,
        rd: util::sha256_file(&out.join("zfcpdump.rd"))?,
    })
}

/// The statistics say what the state is.
fn check(s: &State, r: &CompileReport) -> Result<()> {
    let fail = |what: &str| -> Result<()> {
        bail!(
            "state {:?}: {what}; the compile's report: {}",
            s.name,
            r.describe()
        )
    };
    match (s.expect, &r.stats) {
        (Expect::Off, None) => Ok(()),
        (Expect::Off, Some(_)) => fail("the cache was off, yet ccache ran"),
        (_, None) => fail("the cache was on, yet no ccache statistics"),
        (Expect::Cold, Some(st)) if !st.cold() => fail("a cold cache served hits"),
        (Expect::WarmLocal, Some(st)) if st.hit_rate() < 95.0 || st.remote_hits > 0 => {
            fail("expected at least 95% hits, all from the local cache")
        }
        (Expect::WarmRemote, Some(st))
            if st.hit_rate() < 95.0 || (st.remote_hits as f64) < 0.95 * st.hits as f64 =>
        {
            fail("expected at least 95% hits, from the remote storage")
        }
        _ => Ok(()),
    }
}

fn render(args: &CachelabArgs, outcomes: &[Outcome], took: Duration) -> String {
    let cold = STATES
        .iter()
        .zip(outcomes)
        .find(|(s, _)| s.expect == Expect::Cold)
        .map_or(f64::NAN, |(_, o)| o.report.seconds);
    let mut t = Table::new(&[
        ("state", Left),
        ("compile", Right),
        ("vs cold", Right),
        ("hits", Right),
        ("remote", Right),
        ("misses", Right),
        ("hit rate", Right),
    ]);
    for (s, o) in STATES.iter().zip(outcomes) {
        let r = &o.report;
        let (hits, remote, misses, rate) = match &r.stats {
            Some(st) => (
                st.hits.to_string(),
                st.remote_hits.to_string(),
                st.misses.to_string(),
                format!("{:.1}%", st.hit_rate()),
            ),
            None => Default::default(),
        };
        t.row([
            s.name.to_string(),
            util::fmt_duration(Duration::from_secs_f64(r.seconds)),
            format!("{:.2}", r.seconds / cold),
            hits,
            remote,
            misses,
            rate,
        ]);
    }
    let r = &outcomes[0].report;
    format!(
        "# Compile cache: profile {}, kernel {}\n\n\
         Four builds from an empty stage cache; the \"warm, remote\" one in a second \
         checkout with an empty local cache, through redis-server on localhost. \
         `make -j{}` on {} CPUs.\n\n{}\n\
         zfcpdump.image sha256 {} and zfcpdump.rd sha256 {} in all four states.\n\
         The run took {}.\n",
        args.profile,
        r.release,
        r.jobs,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        t.render(),
        outcomes[0].image,
        outcomes[0].rd,
        util::fmt_duration(took)
    )
}

/// A redis-server on a free localhost port, stopped when dropped.
struct Redis {
    child: Child,
    url: String,
}

impl Redis {
    fn start(dir: &Path) -> Result<Redis> {
        std::fs::create_dir_all(dir)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start redis-server (Debian package redis-server)")?;
        let redis = Redis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("redis-server does not answer on port {port} after 10 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(redis)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zfcpdump_builder::kernel::ccache::{CompileCache, Stats};

    /// A kbuild-like compile (`O=` directory, `-Wp,-MMD`, debug info, the
    /// path maps) of the same tree in `dir`, through the cache as the
    /// kernel stage sets it up. Returns the statistics and the object.
    fn compile(cache: &CompileCache, dir: &Path) -> (Stats, Vec<u8>) {
        let (src, obj) = (dir.join("src"), dir.join("obj"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&obj).unwrap();
        std::fs::write(src.join("h.h"), "#define X 3\n").unwrap();
        std::fs::write(
            src.join("a.c"),
            "#include \"h.h\"\nint f(void) { return X; }\n",
        )
        .unwrap();
        let stats = dir.join("stats.log");
        let mut cmd = Command::new(cache.launcher());
        cmd.current_dir(&obj)
            .arg("gcc")
            .args(["-g", "-O2", "-Wp,-MMD,./.a.o.d", "-I"])
            .arg(&src)
            .arg(format!(
                "-ffile-prefix-map={}=/usr/src/linux",
                src.display()
            ))
            .arg(format!(
                "-ffile-prefix-map={}=/usr/src/linux-obj",
                obj.display()
            ))
            .args(["-c", "-o", "a.o"])
            .arg(src.join("a.c"))
            // A user's ccache settings do not reach the compile.
            .env("CCACHE_DISABLE", "1")
            .env("CCACHE_RECACHE", "1");
        cache.configure(&mut cmd, &src, &obj, &stats);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        (
            Stats::read(&stats).unwrap(),
            std::fs::read(obj.join("a.o")).unwrap(),
        )
    }

    /// Two checkouts at different depths hit each other's entries in the
    /// local cache, a third with an empty local cache hits the real redis
    /// remote, and every object is the same.
    #[test]
    fn hits_across_directories_and_through_a_remote() {
        if !test_tier::slow("runs ccache and a redis-server") {
            return;
        }
        test_tier::require(
            util::have_command("ccache"),
            "ccache (Debian package ccache)",
        );
        test_tier::require(
            util::have_command("redis-server"),
            "redis-server (Debian package redis-server)",
        );
        let d = tempfile::tempdir().unwrap();
        let redis = Redis::start(&d.path().join("redis")).unwrap();
        let local = CompileCache {
            dir: d.path().join("local-a"),
            remote: Some(redis.url.clone()),
        };
        let (cold, obj_a) = compile(&local, &d.path().join("a/k"));
        assert_eq!((cold.hits, cold.misses), (0, 1), "{cold:?}");
        let (warm, obj_b) = compile(&local, &d.path().join("b/deeper/still/k"));
        assert_eq!((warm.hits, warm.remote_hits), (1, 0), "{warm:?}");
        let remote_only = CompileCache {
            dir: d.path().join("local-c"),
            remote: Some(redis.url.clone()),
        };
        let (remote, obj_c) = compile(&remote_only, &d.path().join("c/k"));
        assert_eq!((remote.hits, remote.remote_hits), (1, 1), "{remote:?}");
        assert!(obj_a == obj_b && obj_b == obj_c);
    }
}
