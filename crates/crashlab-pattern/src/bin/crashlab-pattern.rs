//! `crashlab-pattern SEED COUNT FILE`: writes COUNT pattern pages of SEED
//! into FILE (on the crash lab's production guest, a ramfs file, so each
//! page is a page frame of the kernel that is about to crash).

use std::io::Write;
use std::process::ExitCode;

use crashlab_pattern::{PAGE_SIZE, page};

fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(seed), Some(count), Some(path)) = (
        args.first().and_then(|s| number(s)),
        args.get(1).and_then(|s| number(s)),
        args.get(2),
    ) else {
        eprintln!("usage: crashlab-pattern SEED COUNT FILE (numbers decimal or 0x-hex)");
        return ExitCode::from(2);
    };
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
