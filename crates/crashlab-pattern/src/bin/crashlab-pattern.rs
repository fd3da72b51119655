//! `crashlab-pattern SEED COUNT FILE`: writes COUNT pattern pages of SEED
//! into FILE (on the crash lab's production guest, a ramfs file, so each
//! page is a page-cache frame of the kernel that is about to crash).
//!
//! `crashlab-pattern SEED COUNT --hold READY`: writes them into anonymous
//! memory of this process instead (user pages), creates READY and sleeps
//! until the kernel crashes under it.

use std::io::Write;
use std::process::ExitCode;

use crashlab_pattern::{PAGE_SIZE, page};

fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Pattern pages in anonymous memory, page-aligned (virtual alignment is
/// physical alignment), kept until the crash.
fn hold(seed: u64, count: u64, ready: &str) -> std::io::Result<()> {
    let mut mem = vec![0u8; (count as usize + 1) * PAGE_SIZE];
    let skew = mem.as_ptr().align_offset(PAGE_SIZE);
    for i in 0..count {
        let at = skew + i as usize * PAGE_SIZE;
        mem[at..at + PAGE_SIZE].copy_from_slice(&page(seed, i, count));
    }
    std::fs::write(ready, b"ready\n")?;
    println!(
        "crashlab-pattern: holding {count} pages ({} KiB) of seed {seed:#x} in anonymous memory",
        (count * PAGE_SIZE as u64) >> 10
    );
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        // Keeps the pages alive and written as far as the optimiser knows.
        std::hint::black_box(&mut mem);
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(seed), Some(count), Some(path)) = (
        args.first().and_then(|s| number(s)),
        args.get(1).and_then(|s| number(s)),
        args.get(2),
    ) else {
        eprintln!(
            "usage: crashlab-pattern SEED COUNT FILE | SEED COUNT --hold READY (numbers decimal \
             or 0x-hex)"
        );
        return ExitCode::from(2);
    };
    if path == "--hold" {
        let Some(ready) = args.get(3) else {
            eprintln!("crashlab-pattern: --hold needs the READY file to create");
            return ExitCode::from(2);
        };
        if let Err(e) = hold(seed, count, ready) {
            eprintln!("crashlab-pattern: holding the pattern: {e}");
        }
        return ExitCode::FAILURE;
    }
    let res = std::fs::File::create(path).and_then(|mut f| {
        for i in 0..count {
            f.write_all(&page(seed, i, count))?;
        }
        f.sync_all()
    });
    match res {
        Ok(()) => {
            println!(
                "crashlab-pattern: {count} pages ({} KiB) of seed {seed:#x} in {path}",
                (count * PAGE_SIZE as u64) >> 10
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crashlab-pattern: writing {path}: {e}");
            ExitCode::FAILURE
        }
    }
}
