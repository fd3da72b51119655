//! `zfcpdump-disk`: prepare, inspect and extract zipl-style SCSI dump disk images.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use zfcpdump_disk::prepare::{DEFAULT_PART_START, PrepareOptions, file_size, image_size, prepare};
use zfcpdump_disk::status::{EXIT_ERROR, human, inspect, render};
use zfcpdump_disk::{Error, extract};
use zfcpdump_format::size::parse_size;

/// Prepare, inspect and extract zipl-style SCSI dump disk images.
///
/// Works on whole-disk image files (sector 0 holds the DOS partition table and
/// zipl's MBR), never on a bare partition image. All on-disk fields are
/// big-endian; the tool runs on any host.
#[derive(Parser)]
#[command(version, about, long_about, after_help = EXIT_HELP)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

const EXIT_HELP: &str = "\
Exit codes:
  0  success (status: a complete dump)
  1  usage or I/O error
  2  status/extract: incomplete dump (busy marker: the dump tool was interrupted;
     also under a stale checksum, which the tool had not updated yet)
  3  status/extract: empty (valid metadata, no dump)
  4  status/extract: invalid (bad MBR, superblock, partition table or checksum;
     an ELF header under a stale checksum: the tool stopped before its last
     checksum update, or the block changed since)";

#[derive(Subcommand)]
enum Cmd {
    /// Create (or replace) a sparse disk image laid out like `zipl --dumpto`.
    ///
    /// Writes a DOS partition table with one partition, zipl's MBR and dump
    /// boot_info, the program table and the superblock (with a valid checksum) in
    /// zipl's reserve at the end of the partition. The dump tool's image and
    /// initrd sizes determine zipl's reserve and hence the dump size; their
    /// contents are not copied (the result is a dump target, not IPL-able). The
    /// image is written to a temporary file and renamed into place.
    Prepare {
        /// The disk image file to create.
        image_file: PathBuf,
        /// Disk size: bytes, or with a unit K, M, G, T (KiB, ...: powers of
        /// 1024), e.g. 64M.
        #[arg(long, value_parser = parse_size)]
        size: u64,
        /// The dump tool kernel image (zfcpdump-image), for its size.
        #[arg(long = "image")]
        tool_image: PathBuf,
        /// The dump tool initrd (zfcpdump-initrd), for its size.
        #[arg(long)]
        initrd: Option<PathBuf>,
        /// Logical block size of the disk.
        #[arg(long, default_value_t = 512, value_parser = parse_sector_size)]
        sector_size: u32,
        /// Partition start in bytes (suffixes allowed).
        #[arg(long, default_value_t = DEFAULT_PART_START, value_parser = parse_size)]
        part_start: u64,
        /// Partition size in bytes (suffixes allowed); default: the rest of the disk.
        #[arg(long, value_parser = parse_size)]
        part_size: Option<u64>,
    },
    /// Report what the image holds: complete, incomplete, empty or invalid.
    ///
    /// Checks the MBR, the superblock, the partition table entry and the
    /// checksum, then looks at the start of the dump area. For a complete dump,
    /// prints its size, CPUs and memory ranges. The exit code tells the state.
    #[command(after_help = EXIT_HELP)]
    Status {
        /// The disk image file.
        image_file: PathBuf,
    },
    /// Copy a complete dump out of the image into an ELF core file.
    ///
    /// Writes exactly the ELF's extent (from its program headers), sparse where
    /// the dump is zero, atomically. Refuses unless `status` says complete, with
    /// the status exit code.
    #[command(after_help = EXIT_HELP)]
    Extract {
        /// The disk image file.
        image_file: PathBuf,
        /// The ELF file to write.
        out: PathBuf,
    },
}

fn parse_sector_size(s: &str) -> Result<u32, String> {
    match s {
        "512" => Ok(512),
        "4096" => Ok(4096),
        _ => Err(format!("sector size must be 512 or 4096, not '{s}'")),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // clap exits 2 on usage errors; 2 means "incomplete" here.
            return if e.use_stderr() {
                ExitCode::from(EXIT_ERROR)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli.cmd) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("zfcpdump-disk: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cmd: Cmd) -> Result<u8, Error> {
    match cmd {
        Cmd::Prepare {
            image_file,
            size,
            tool_image,
            initrd,
            sector_size,
            part_start,
            part_size,
        } => {
            let (image_size, image_signature) = image_size(&tool_image)?;
            let opts = PrepareOptions {
                path: image_file,
                disk_size: size,
                sector_size,
                part_start,
                part_size,
                image_size,
                image_signature,
                initrd_size: initrd.as_deref().map(file_size).transpose()?,
            };
            let l = prepare(&opts)?;
            let sb = l.superblock;
            println!(
                "prepared {} ({} bytes, {}-byte sectors)",
                opts.path.display(),
                size,
                sector_size
            );
            println!(
                "partition 1: start {:#x}, {} bytes; zipl reserve {} sectors",
                sb.part_start, sb.part_size, l.reserve_blocks
            );
            println!(
                "dump area: {:#x}..{:#x} ({}); superblock at {:#x}",
                sb.dump_area().start,
                sb.dump_area().end,
                human(sb.dump_size),
                l.sb_offset
            );
            Ok(0)
        }
        Cmd::Status { image_file } => {
            let report = inspect(&image_file)?;
            print!("{}", render(&image_file, &report));
            Ok(report.state.exit_code())
        }
        Cmd::Extract { image_file, out } => {
            let n = extract::extract(&image_file, &out)?;
            println!("wrote {} bytes ({}) to {}", n, human(n), out.display());
            Ok(0)
        }
    }
}
