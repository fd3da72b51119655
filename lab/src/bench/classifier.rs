//! The page classifier section: `examples/bench-classifier.rs` of
//! zfcpdump-format, built with optimisations (the xtask itself is not), on
//! the 6.1 and 6.12 fixtures of the crash lab's real struct pages.

use std::process::Command;

use anyhow::{Context, Result, ensure};

use zfcpdump_builder::cmd::{self, cmd};
use zfcpdump_builder::util;

/// The agent's `elide::MIN_EXCLUDED_RUN` (the agent is not a dependency of
/// the xtask).
const MIN_RUN: usize = 4;

const FIXTURES: [&str; 2] = ["kdump-6.1.192.filter.elf", "kdump-6.12.117.filter.elf"];

/// The section's text: one table per kernel.
pub fn section(gib: u64) -> Result<String> {
    let root = util::project_root();
    eprintln!("[bench] classifier: building examples/bench-classifier (release)");
    let st = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "zfcpdump-format",
            "--example",
            "bench-classifier",
        ])
        .current_dir(&root)
        .status()
        .context("running cargo build")?;
    ensure!(st.success(), "building bench-classifier failed ({st})");
    let target = util::cache_dir(&root)
        .parent()
        .expect("the cache is in the target dir")
        .to_path_buf();
    let exe = target.join("release/examples/bench-classifier");
    let mut text = format!(
        "page classifier (dump levels): a {gib} GiB memory map tiled from 2048 real struct pages \
         of each crash-lab kernel, fed in the agent's 254-page chunks on this host; 'written \
         bytes' is the pages kept plus 56 bytes per program header. The agent's minimum \
         excluded run is {MIN_RUN} pages.\n"
    );
    let sh = cmd::shell()?;
    for f in FIXTURES {
        let fixture = root.join("crates/zfcpdump-format/tests/fixtures").join(f);
        eprintln!("[bench] classifier: {f}");
        let gib = gib.to_string();
        let out = cmd::output(cmd!(sh, "{exe} {fixture} {gib}"))?;
        text.push('\n');
        text.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    Ok(text)
}
