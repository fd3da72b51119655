//! Command-line front end: writes a synthetic s390x /proc/vmcore to a file.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use vmcore_fixture::{Fixture, S390NoteName, SegmentKind, Spec};
use zfcpdump_format::size::parse_size;

/// Generate a synthetic s390x /proc/vmcore (ELF64 big-endian core file).
///
/// The file has the shape Linux gives /proc/vmcore on s390x: one PT_NOTE
/// (PRPSINFO, per-CPU PRSTATUS/FPREGS/s390 notes, VMCOREINFO) and one
/// PT_LOAD per physical memory range, every part 4096-aligned. Memory is
/// pseudo-random from the seed, with the requested fraction of whole zero
/// pages; the same options always give the same bytes.
#[derive(Parser, Debug)]
#[command(version, after_help = EXAMPLES)]
struct Args {
    /// Memory size (sum of the PT_LOAD ranges), e.g. 4096, 64M, 2GiB, 0x800000.
    /// Units K, M, G, T (KiB, ...: powers of 1024). The file is slightly
    /// larger (headers, notes).
    #[arg(long, value_name = "BYTES", value_parser = parse_size, conflicts_with = "preset")]
    size: Option<u64>,

    /// A named layout (default: small).
    #[arg(long, value_enum, value_name = "NAME")]
    preset: Option<Preset>,

    /// Fraction of 4096-byte pages that are all zero, 0.0 to 1.0
    /// (default 0.25).
    #[arg(long, value_name = "F")]
    zero_fraction: Option<f64>,

    /// Number of CPUs (default 2).
    #[arg(long, value_name = "N")]
    cpus: Option<u32>,

    /// Seed for all pseudo-random content; decimal or 0x-prefixed hex.
    #[arg(long, value_name = "S", value_parser = parse_u64)]
    seed: Option<u64>,

    /// Leave out the vector-register notes (CPUs without the vector facility).
    #[arg(long)]
    no_vx: bool,

    /// Name the s390 notes "CORE", as older kernels did, instead of "LINUX".
    #[arg(long)]
    core_note_name: bool,

    /// Identity base: p_vaddr = p_paddr + OFFSET (decimal or 0x hex). Keep 0
    /// for zgetdump 2.16.
    #[arg(long, value_name = "OFFSET", value_parser = parse_u64)]
    vaddr_offset: Option<u64>,

    /// The kernel release in VMCOREINFO (OSRELEASE; default 6.1.0-fixture).
    #[arg(long, value_name = "RELEASE")]
    osrelease: Option<String>,

    /// The crash time in VMCOREINFO (CRASHTIME), in seconds since the epoch
    /// (default 1700000000).
    #[arg(long, value_name = "SECS")]
    crash_time: Option<i64>,

    /// Print the layout (one line per program header) to stdout.
    #[arg(long)]
    print_layout: bool,

    /// Output file; "-" writes to stdout.
    #[arg(value_name = "OUT")]
    out: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Preset {
    /// [0, 4 MiB) and [8 MiB, 10 MiB).
    Small,
    /// [0, 40 MiB) and [64 MiB, 72 MiB): the first range crosses the 32 MiB HSA.
    Hsa,
    /// Kernel-image PT_LOAD overlapping [0, 16 MiB), plus [32 MiB, 36 MiB).
    OverlappingKernel,
}

const EXAMPLES: &str = "Examples:
  vmcore-fixture small.vmcore
  vmcore-fixture --size 2G --zero-fraction 0.6 --cpus 8 big.vmcore
  vmcore-fixture --preset overlapping-kernel --print-layout k.vmcore";

fn parse_u64(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s:?}: {e}"))
}

fn build_spec(args: &Args) -> Spec {
    let mut spec = match (args.size, args.preset) {
        (Some(size), _) => Spec::sized(size, 0.25),
        (None, Some(Preset::Hsa)) => Spec::with_hsa_range(),
        (None, Some(Preset::OverlappingKernel)) => Spec::overlapping_kernel(),
        (None, Some(Preset::Small) | None) => Spec::small(),
    };
    if let Some(z) = args.zero_fraction {
        spec.zero_fraction = z;
    }
    if let Some(n) = args.cpus {
        spec.cpus = n;
    }
    if let Some(s) = args.seed {
        spec.seed = s;
    }
    if let Some(o) = args.vaddr_offset {
        spec.vaddr_offset = o;
    }
    if args.no_vx {
        spec.vx = false;
    }
    if args.core_note_name {
        spec.s390_note_name = S390NoteName::Core;
    }
    if let Some(r) = &args.osrelease {
        spec = spec.vmcoreinfo_value("OSRELEASE", r);
    }
    if let Some(t) = args.crash_time {
        spec = spec.vmcoreinfo_value("CRASHTIME", &t.to_string());
    }
    spec
}

fn print_layout(f: &Fixture) {
    let l = f.layout();
    println!(
        "file_size {} notes_offset {:#x} notes_size {:#x} data_offset {:#x} cpus {}",
        l.file_size,
        l.notes_offset,
        l.notes_size,
        l.data_offset,
        f.spec().cpus
    );
    for s in &l.segments {
        let kind = match s.kind {
            SegmentKind::KernelImage => "kernel",
            SegmentKind::Identity => "identity",
        };
        println!(
            "LOAD offset {:#x} paddr {:#x} vaddr {:#x} size {:#x} {kind}",
            s.offset, s.paddr, s.vaddr, s.size
        );
    }
}

fn run(args: &Args) -> io::Result<()> {
    let fixture = Fixture::new(&build_spec(args))?;
    let to_stdout = args.out.as_os_str() == "-";
    if to_stdout {
        fixture.write_to(io::stdout().lock())?;
    } else {
        let mut w = BufWriter::new(File::create(&args.out)?);
        fixture.write_to(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    if args.print_layout {
        // With OUT "-" stdout carries the file: the layout would corrupt it.
        if to_stdout {
            eprintln!("--print-layout is ignored when writing to stdout");
        } else {
            print_layout(&fixture);
            io::stdout().flush()?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vmcore-fixture: {}: {e}", args.out.display());
            ExitCode::FAILURE
        }
    }
}
