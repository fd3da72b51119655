//! The copy engine: executes a `zfcpdump_format::plan` from a vmcore source to
//! the dump disk through one caller-provided buffer, with progress lines.
//!
//! Memory stays bounded: the only buffer is the one passed in (allocated once,
//! at most 1 MiB), nothing grows with the dump size, and the source is read
//! with pread, never mapped (mmap of /proc/vmcore caused OOMs in the
//! reference's history).

use crate::disk::DumpTarget;
use crate::error::{DumpError, DumpStep};
use crate::info;
use crate::log::Log;
use std::io;
use std::ops::Range;
use std::time::{Duration, Instant};
use zfcpdump_format::elf::ReadAt;
use zfcpdump_format::plan::{CopyStep, HEADER_BLOCK};

/// Size of the copy buffer, the agent's only large allocation: 1 MiB less
/// 8 KiB, which leave room in the 1 MiB budget for the two pages of the
/// filtered layout writer. Large sequential I/O, whole pages, and not a
/// power of two on purpose: on the project's build machine (kernel 6.18,
/// ext4) buffered 1 MiB writes at 1 MiB-aligned offsets were
/// erratically slow, 414-2620 MB/s (median 1020) against 1616-2805 MB/s
/// (median 2488) for 1016 KiB writes, in interleaved runs of the bench's
/// pattern.
pub const COPY_BUF_SIZE: usize = (1 << 20) - 2 * 4096;

/// Bytes written between two [`DumpTarget::start_writeback`] calls: the
/// device writes while the copy goes on, and each call first waits for the
/// previous call's writeback, so the copy runs at most two windows ahead of
/// the device. The final fsync then has little left to do, the dirty page
/// cache stays small, progress lines and their ETA follow the device (a
/// 2 MiB/s disk under QEMU's throttling: a line a second with an ETA that
/// holds, where 8 MiB windows left the last 10 MiB to the final fsync), and
/// a write error surfaces within a few MiB.
pub const WRITEBACK_EVERY: u64 = 2 << 20;

/// Counts written bytes and starts writeback every [`WRITEBACK_EVERY`].
#[derive(Debug, Default)]
pub struct Writeback {
    since: u64,
}

/// What a failed [`Writeback::wrote`] was doing, for the error message.
pub const WRITEBACK_WHAT: &str = "writeback of the data written so far (sync_file_range)";

/// What a failed barrier was doing: the data must be on the device before
/// the ELF header block that makes the dump look complete.
pub const BARRIER_WHAT: &str = "fsync of the dump data before the ELF header block";

impl Writeback {
    /// `n` more bytes were written to `dst`; a write error of the device
    /// reported by the writeback is returned.
    pub fn wrote<T: DumpTarget + ?Sized>(&mut self, dst: &mut T, n: u64) -> io::Result<()> {
        self.since += n;
        if self.since >= WRITEBACK_EVERY {
            self.since = 0;
            dst.start_writeback()?;
        }
        Ok(())
    }
}

const MIB: u64 = 1 << 20;

/// Progress lines at most every `interval`, and a final line at the end.
///
/// Integer arithmetic only: float formatting would add tens of KB to the
/// static binary.
#[derive(Debug)]
pub struct Progress<'a> {
    log: &'a Log,
    total: u64,
    done: u64,
    start: Instant,
    last: Instant,
    interval: Duration,
}

impl<'a> Progress<'a> {
    /// Progress over `total` bytes, a line at most every `interval_s` seconds
    /// (0: after every buffer).
    pub fn new(log: &'a Log, total: u64, interval_s: u32) -> Progress<'a> {
        let now = Instant::now();
        Progress {
            log,
            total,
            done: 0,
            start: now,
            last: now,
            interval: Duration::from_secs(interval_s as u64),
        }
    }

    /// Counts `n` more bytes done; prints a line if the interval has passed.
    pub fn add(&mut self, n: u64) {
        self.done += n;
        let now = Instant::now();
        if now.duration_since(self.last) >= self.interval && self.done < self.total {
            self.last = now;
            self.print(now);
        }
    }

    /// Prints the final line (100% when everything was copied).
    pub fn finish(&mut self) {
        self.print(Instant::now());
    }

    /// Bytes done so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    fn print(&self, now: Instant) {
        let line = progress_line(
            self.done,
            self.total,
            now.duration_since(self.start).as_millis() as u64,
        );
        info!(self.log, "{line}");
    }
}

/// `progress: 512.0 of 2048.0 MiB (25%), 85.3 MiB/s, ETA 18 s`.
pub fn progress_line(done: u64, total: u64, elapsed_ms: u64) -> String {
    let pct = if total == 0 {
        100
    } else {
        (done as u128 * 100 / total as u128) as u64
    };
    let ms = elapsed_ms.max(1) as u128;
    let eta = if done >= total {
        "0 s".to_string()
    } else if done == 0 {
        "unknown".to_string()
    } else {
        let left_ms = (total - done) as u128 * ms / done as u128;
        format!("{} s", left_ms.div_ceil(1000))
    };
    // Bytes per second, shown like a byte count.
    let rate = (done as u128 * 1000 / ms) as u64;
    format!(
        "progress: {} of {} MiB ({pct}%), {} MiB/s, ETA {eta}",
        tenths_mib(done),
        tenths_mib(total),
        tenths_mib(rate)
    )
}

/// `n` bytes in MiB with one decimal, rounded down, in integer arithmetic.
fn tenths_mib(n: u64) -> String {
    let t = n as u128 * 10 / MIB as u128;
    format!("{}.{}", t / 10, t % 10)
}

/// What a copy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Bytes copied.
    pub bytes: u64,
    /// Of those, bytes of HSA-backed ranges.
    pub hsa_bytes: u64,
}

/// Executes `steps`: every `Copy` reads file bytes `[start, end)` from `src`
/// and writes them at `base + start` of `dst`; `ReleaseHsa` calls `release`.
/// Each step is logged before it runs, so the console shows the order.
#[allow(clippy::too_many_arguments)]
pub fn execute_plan<S, T>(
    src: &mut S,
    dst: &mut T,
    base: u64,
    steps: &[CopyStep],
    buf: &mut [u8],
    progress: &mut Progress<'_>,
    release: &mut dyn FnMut() -> Result<(), DumpError>,
    log: &Log,
) -> Result<CopyStats, DumpError>
where
    S: ReadAt + ?Sized,
    T: DumpTarget + ?Sized,
{
    assert!(!buf.is_empty(), "copy buffer must not be empty");
    let mut stats = CopyStats::default();
    let mut writeback = Writeback::default();
    // The ELF header block is written last but read first: where a PT_LOAD's
    // data starts inside the first page (QEMU's dump-guest-memory puts it at
    // 0x608), part of that block is HSA memory, which reads fail for after
    // the release.
    let mut header = steps.iter().find_map(|s| match *s {
        CopyStep::Copy { start: 0, end, .. } if end <= HEADER_BLOCK => {
            Some(vec![0u8; end as usize])
        }
        _ => None,
    });
    if let Some(h) = header.as_mut() {
        src.read_exact_at(h, 0).map_err(|e| {
            DumpError::io(
                DumpStep::Copy,
                format!("reading the vmcore's first {} bytes", h.len()),
                e,
            )
        })?;
    }
    for step in steps {
        let (start, end, hsa) = match *step {
            CopyStep::ReleaseHsa => {
                release()?;
                continue;
            }
            CopyStep::Copy { start, end, hsa } => (start, end, hsa),
        };
        // The plan writes file bytes [0, 4096) last; naming it makes the order
        // visible on the console.
        let what = if hsa {
            "HSA-backed range"
        } else if start == 0 {
            "ELF header block (last)"
        } else {
            "range"
        };
        info!(
            log,
            "copy {what} {start:#x}..{end:#x} ({} KiB)",
            (end - start).div_ceil(1024)
        );
        if start == 0 {
            // Everything else must be on the device before the block that
            // makes the dump look complete: writeback goes in offset order,
            // so without this a power cut could leave the header on the disk
            // and the last data not.
            dst.sync()
                .map_err(|e| DumpError::io(DumpStep::Copy, BARRIER_WHAT, e))?;
        }
        if let Some(h) = header.take_if(|_| start == 0) {
            dst.write_all_at(&h, base).map_err(|e| {
                DumpError::io(
                    DumpStep::Copy,
                    format!("writing {} bytes at disk offset {base:#x}", h.len()),
                    e,
                )
            })?;
            stats.bytes += h.len() as u64;
            progress.add(h.len() as u64);
            continue;
        }
        copy_chunks(src, start..end, buf, progress, |chunk, off| {
            let at = base + off;
            dst.write_all_at(chunk, at).map_err(|e| {
                DumpError::io(
                    DumpStep::Copy,
                    format!("writing {} bytes at disk offset {at:#x}", chunk.len()),
                    e,
                )
            })?;
            writeback
                .wrote(dst, chunk.len() as u64)
                .map_err(|e| DumpError::io(DumpStep::Copy, WRITEBACK_WHAT, e))?;
            stats.bytes += chunk.len() as u64;
            if hsa {
                stats.hsa_bytes += chunk.len() as u64;
            }
            Ok(())
        })?;
    }
    progress.finish();
    Ok(stats)
}

/// Reads `range` of `src` in buffer-sized chunks and hands each to
/// `f(chunk, offset)`, in order, with `progress` counting them.
///
/// Sequential on purpose: a reader thread overlapping pread with the writes
/// (two 508 KiB halves) was slower on the 2-CPU build machine, 2999 against
/// 3535 MB/s byte-exact and 4414 against 5254 MB/s elided in the bench.
pub fn copy_chunks<S: ReadAt + ?Sized>(
    src: &mut S,
    range: Range<u64>,
    buf: &mut [u8],
    progress: &mut Progress<'_>,
    mut f: impl FnMut(&[u8], u64) -> Result<(), DumpError>,
) -> Result<(), DumpError> {
    let mut off = range.start;
    while off < range.end {
        let n = (buf.len() as u64).min(range.end - off) as usize;
        let chunk = &mut buf[..n];
        src.read_exact_at(chunk, off).map_err(|e| {
            DumpError::io(
                DumpStep::Copy,
                format!("reading {n} bytes of the vmcore at offset {off:#x}"),
                e,
            )
        })?;
        f(chunk, off)?;
        off += n as u64;
        progress.add(n as u64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines() {
        assert_eq!(
            progress_line(512 * MIB, 2048 * MIB, 6000),
            "progress: 512.0 of 2048.0 MiB (25%), 85.3 MiB/s, ETA 18 s"
        );
        assert_eq!(
            progress_line(0, 10 * MIB, 0),
            "progress: 0.0 of 10.0 MiB (0%), 0.0 MiB/s, ETA unknown"
        );
        assert_eq!(
            progress_line(10 * MIB, 10 * MIB, 500),
            "progress: 10.0 of 10.0 MiB (100%), 20.0 MiB/s, ETA 0 s"
        );
        assert_eq!(
            progress_line(7_364_608, 7_364_608, 0),
            "progress: 7.0 of 7.0 MiB (100%), 7023.4 MiB/s, ETA 0 s"
        );
        assert_eq!(
            progress_line(0, 0, 0),
            "progress: 0.0 of 0.0 MiB (100%), 0.0 MiB/s, ETA 0 s"
        );
    }

    /// A disk in memory that can be told to fail a write at one offset.
    struct MemDisk {
        data: Vec<u8>,
        fail_at: Option<u64>,
        /// start_writeback calls, each with the bytes written by then.
        kicks: Vec<usize>,
        written: usize,
    }

    impl DumpTarget for MemDisk {
        fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            let o = offset as usize;
            buf.copy_from_slice(&self.data[o..o + buf.len()]);
            Ok(())
        }
        fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
            if self
                .fail_at
                .is_some_and(|f| f >= offset && f < offset + buf.len() as u64)
            {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            let o = offset as usize;
            self.data[o..o + buf.len()].copy_from_slice(buf);
            self.written += buf.len();
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn start_writeback(&mut self) -> io::Result<()> {
            self.kicks.push(self.written);
            Ok(())
        }
    }

    fn mem_disk(len: usize, fill: u8, fail_at: Option<u64>) -> MemDisk {
        MemDisk {
            data: vec![fill; len],
            fail_at,
            kicks: Vec::new(),
            written: 0,
        }
    }

    #[test]
    fn writeback_starts_every_2_mib() {
        let src = vec![7u8; 20 << 20];
        let mut disk = mem_disk(20 << 20, 0, None);
        let log = Log::capture();
        let mut p = Progress::new(&log, src.len() as u64, 10);
        let mut buf = vec![0u8; COPY_BUF_SIZE];
        let steps = [
            CopyStep::ReleaseHsa,
            CopyStep::Copy {
                start: 0,
                end: 20 << 20,
                hsa: false,
            },
        ];
        execute_plan(
            &mut &src[..],
            &mut disk,
            0,
            &steps,
            &mut buf,
            &mut p,
            &mut || Ok(()),
            &log,
        )
        .unwrap();
        // After the first write that reaches 2 MiB, and again 2 MiB later.
        let chunk = COPY_BUF_SIZE;
        let per_kick = (2usize << 20).div_ceil(chunk);
        let chunks = (20usize << 20).div_ceil(chunk);
        assert_eq!(disk.kicks.len(), chunks / per_kick);
        assert!(
            disk.kicks
                .iter()
                .enumerate()
                .all(|(i, &k)| k == ((i + 1) * per_kick * chunk).min(20 << 20)),
            "{:?}",
            disk.kicks
        );
        assert!(disk.data == src);
    }

    fn steps() -> Vec<CopyStep> {
        vec![
            CopyStep::Copy {
                start: 0x2000,
                end: 0x5000,
                hsa: true,
            },
            CopyStep::ReleaseHsa,
            CopyStep::Copy {
                start: 0x1000,
                end: 0x2000,
                hsa: false,
            },
            CopyStep::Copy {
                start: 0x5000,
                end: 0x8000,
                hsa: false,
            },
            CopyStep::Copy {
                start: 0,
                end: 0x1000,
                hsa: false,
            },
        ]
    }

    #[test]
    fn copies_in_plan_order_through_a_small_buffer() {
        let src: Vec<u8> = (0..0x8000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut disk = mem_disk(0x10000, 0xee, None);
        let log = Log::capture();
        let mut p = Progress::new(&log, 0x8000, 0);
        let mut released = 0;
        let mut buf = [0u8; 0x700]; // not a divisor of any range: exercises partial chunks
        let stats = execute_plan(
            &mut &src[..],
            &mut disk,
            0x4000,
            &steps(),
            &mut buf,
            &mut p,
            &mut || {
                released += 1;
                Ok(())
            },
            &log,
        )
        .unwrap();
        assert_eq!(released, 1);
        assert_eq!(
            stats,
            CopyStats {
                bytes: 0x8000,
                hsa_bytes: 0x3000
            }
        );
        assert_eq!(&disk.data[0x4000..0xc000], &src[..]);
        assert!(
            disk.data[..0x4000]
                .iter()
                .chain(&disk.data[0xc000..])
                .all(|&b| b == 0xee)
        );
        let out = log.captured();
        let hsa = out.find("copy HSA-backed range 0x2000..0x5000").unwrap();
        let head = out
            .find("copy ELF header block (last) 0x0..0x1000")
            .unwrap();
        let rest = out.find("copy range 0x5000..0x8000").unwrap();
        assert!(hsa < rest && rest < head, "{out}");
        // Interval 0: a line per buffer, and always a final 100% line.
        let last = out.lines().last().unwrap();
        assert!(
            last.starts_with("progress: 0.0 of 0.0 MiB (100%), "),
            "{out}"
        );
        assert!(out.matches("progress: ").count() > 10, "{out}");
    }

    #[test]
    fn write_error_stops_before_the_header() {
        let src = vec![0x5au8; 0x8000];
        let mut disk = mem_disk(0x10000, 0, Some(0x4000 + 0x6000));
        let log = Log::capture();
        let mut p = Progress::new(&log, 0x8000, 10);
        let mut buf = [0u8; 0x1000];
        let e = execute_plan(
            &mut &src[..],
            &mut disk,
            0x4000,
            &steps(),
            &mut buf,
            &mut p,
            &mut || Ok(()),
            &log,
        )
        .unwrap_err();
        assert_eq!(e.step, DumpStep::Copy);
        assert_eq!(
            e.to_string(),
            "copy: writing 4096 bytes at disk offset 0xa000 (Input/output error (os error 5))"
        );
        // The header block was never written.
        assert!(disk.data[0x4000..0x5000].iter().all(|&b| b == 0));
    }

    #[test]
    fn read_error_names_the_offset() {
        let src = vec![0u8; 0x6000]; // shorter than the plan says
        let mut disk = mem_disk(0x10000, 0, None);
        let log = Log::capture();
        let mut p = Progress::new(&log, 0x8000, 10);
        let mut buf = [0u8; 0x1000];
        let e = execute_plan(
            &mut &src[..],
            &mut disk,
            0,
            &steps(),
            &mut buf,
            &mut p,
            &mut || Ok(()),
            &log,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("copy: reading 4096 bytes of the vmcore at offset 0x6000 ("),
            "{e}"
        );
    }
}
