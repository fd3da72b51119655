//! Tool mode: the command line of the agent when it is not PID 1.
//!
//! Hand-parsed: an argument parser crate would cost more than the rest of the
//! agent in binary size.

use crate::Env;
use crate::cmdline::parse_u64;
use std::ffi::OsString;
use std::path::PathBuf;

/// Exit code: the dump failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: bad command line.
pub const EXIT_USAGE: i32 = 2;

/// `--help` text.
pub const HELP: &str = "\
zfcpdump-agent: copy an s390x vmcore to a zipl-prepared SCSI dump partition

As PID 1 (/init of the zfcpdump initramfs) it mounts /proc, /sys, /dev and
debugfs, brings the IPL zfcp device online, copies /proc/vmcore to the dump
partition, then re-IPLs or powers off. Run any other way it is this tool,
which NEVER mounts, installs no signal handlers, never writes zcore/reipl and
never reboots: it runs the same steps against a root directory.

Usage: zfcpdump-agent --root DIR [OPTIONS]

Options (these take precedence over the kernel command line under DIR):
  --root DIR           where proc/, sys/, dev/ and etc/ are (required; '/' for
                       the real ones)
  --source FILE        vmcore to copy (default: DIR/proc/vmcore)
  --disk IMAGE         whole disk or disk image to write (default: the IPL
                       device found through DIR/sys/firmware/ipl and sysfs)
  --hsa-size N         simulate an HSA of N bytes (decimal or 0x hex): HSA-backed
                       ranges first; after the release their reads fail
                       (EFAULT), as /proc/vmcore's do
                       (default: hex from DIR/sys/kernel/debug/zcore/hsa, else 0)
  --sector-size 512|4096
                       logical block size of an image file's DOS partition table
                       (default: try 512, then 4096; block devices use sysfs)
  --config FILE        config file (default: DIR/etc/zfcpdump.conf if present)
  --debug N            1 errors only, 2 normal, 3 and above trace
  -h, --help           this text

Kernel command line (DIR/proc/cmdline, read in both modes):
  dump_debug=N             as --debug (the reference tool's parameter)
  zfcpdump.dump_level=N    pages to leave out (0-31, makedumpfile's -d bits:
                           1 zero, 2 cache, 4 private cache, 8 user, 16 free);
                           overrides the config file (HMC SCP data on the
                           real machine)
  Test-only overrides, used only when present (zipl never passes them):
  zfcpdump.source=PATH     read PATH (under DIR) instead of /proc/vmcore
  zfcpdump.disk=PATH       write whole disk PATH (under DIR) instead of the IPL
                           device; it is waited for by polling
  zfcpdump.hsa_size=N      as --hsa-size
  zfcpdump.test_panic=1    panic right after parsing (proves the crash path)

Config file (key = value, # comments): device_timeout_s (default 30),
progress_interval_s (default 10), dump_level (default 0: byte-exact;
zero_page_elision = true, deprecated, is dump_level = 1, and dump_level wins).

Exit codes (tool mode): 0 Dump successful, 1 Dump failed, 2 usage error.
The last lines are 'Dump successful' or 'Dump failed: <step>: <what> (<errno>)',
then 'peak RSS: N KiB'.
";

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Print [`HELP`].
    Help,
    /// Run a dump with this environment.
    Run(Env),
}

/// Parses the tool's arguments (without the program name).
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut root: Option<PathBuf> = None;
    let mut env = Env::new("");
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg_s = arg.to_string_lossy().into_owned();
        // Accept both "--opt value" and "--opt=value".
        let (name, inline) = match arg_s.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(OsString::from(v))),
            _ => (arg_s.clone(), None),
        };
        if name == "-h" || name == "--help" {
            return Ok(Command::Help);
        }
        let mut value = || -> Result<OsString, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args.next().ok_or_else(|| format!("{name} needs a value")),
            }
        };
        match name.as_str() {
            "--root" => root = Some(PathBuf::from(value()?)),
            "--source" => env.source = Some(PathBuf::from(value()?)),
            "--disk" => env.disk = Some(PathBuf::from(value()?)),
            "--config" => env.config = Some(PathBuf::from(value()?)),
            "--hsa-size" => {
                let v = value()?;
                let v = v.to_string_lossy();
                env.hsa_size = Some(parse_u64(&v).ok_or_else(|| {
                    format!("--hsa-size {v}: expected a decimal or 0x hex number")
                })?);
            }
            "--sector-size" => {
                let v = value()?;
                env.sector_size = match v.to_string_lossy().as_ref() {
                    "512" => Some(512),
                    "4096" => Some(4096),
                    other => return Err(format!("--sector-size {other}: expected 512 or 4096")),
                };
            }
            "--debug" => {
                let v = value()?;
                let v = v.to_string_lossy();
                env.debug = match v.parse::<u8>() {
                    Ok(n) if n >= 1 => Some(n),
                    _ => return Err(format!("--debug {v}: expected 1..255")),
                };
            }
            _ => return Err(format!("unknown argument '{arg_s}'")),
        }
    }
    // Required, so the tool never defaults to the real / by accident.
    env.root = root.ok_or("--root DIR is required (use --root / for the real system)")?;
    Ok(Command::Run(env))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn full_command_line() {
        let Command::Run(env) = parse(&[
            "--root",
            "/tmp/r",
            "--source=/v",
            "--disk",
            "/d.img",
            "--hsa-size",
            "0x2000000",
            "--sector-size",
            "4096",
            "--config",
            "/c",
            "--debug",
            "3",
        ])
        .unwrap() else {
            panic!("expected Run")
        };
        assert_eq!(env.root, PathBuf::from("/tmp/r"));
        assert_eq!(env.source, Some(PathBuf::from("/v")));
        assert_eq!(env.disk, Some(PathBuf::from("/d.img")));
        assert_eq!(env.hsa_size, Some(32 << 20));
        assert_eq!(env.sector_size, Some(4096));
        assert_eq!(env.config, Some(PathBuf::from("/c")));
        assert_eq!(env.debug, Some(3));
        assert!(!env.pid1);
    }

    #[test]
    fn help_and_errors() {
        assert!(matches!(parse(&["--help"]), Ok(Command::Help)));
        assert!(matches!(parse(&["--root", "/", "-h"]), Ok(Command::Help)));
        assert_eq!(
            parse(&[]).unwrap_err(),
            "--root DIR is required (use --root / for the real system)"
        );
        assert_eq!(parse(&["--root"]).unwrap_err(), "--root needs a value");
        assert_eq!(
            parse(&["--root", "/", "--sector-size", "1024"]).unwrap_err(),
            "--sector-size 1024: expected 512 or 4096"
        );
        assert!(parse(&["--root", "/", "--hsa-size", "32M"]).is_err());
        assert!(parse(&["--root", "/", "--debug", "0"]).is_err());
        assert_eq!(
            parse(&["--root", "/", "--bogus"]).unwrap_err(),
            "unknown argument '--bogus'"
        );
    }

    #[test]
    fn help_documents_the_interface() {
        for word in [
            "--root",
            "--source",
            "--disk",
            "--hsa-size",
            "--sector-size",
            "--config",
            "--debug",
            "dump_debug=",
            "zfcpdump.source=",
            "zfcpdump.disk=",
            "zfcpdump.hsa_size=",
            "zfcpdump.test_panic=1",
            "NEVER mounts",
            "never reboots",
            "device_timeout_s",
            "progress_interval_s",
            "Exit codes",
        ] {
            assert!(HELP.contains(word), "help lacks {word}");
        }
    }
}
