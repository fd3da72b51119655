//! PID-1 duties and the crash path: mounts, console, signal handlers, panic
//! hook, re-IPL and power-off, and the peak-RSS reading.
//!
//! If PID 1 exits or dies, the kernel panics with no message and no re-IPL.
//! So every way out of the agent in PID-1 mode ends in [`power_off`]: the
//! normal return, a panic (hook), and fatal signals (handlers). The s390x
//! release build uses `-Cpanic=immediate-abort` (there is no unwinder for the
//! tier-3 target), where a panic is a trap instruction: SIGILL, handled here
//! like any other fatal signal.
//!
//! Safety rule: mounting, signal handlers, re-IPL and reboot() happen only in
//! PID-1 mode, and each privileged function checks getpid() == 1 itself, so a
//! test (run as root, or under qemu-user which passes reboot() to the host)
//! can never reach them.

use crate::error::{DumpError, DumpStep};
use crate::log::Log;
use crate::{error, trace};
use std::ffi::CStr;
use std::io;

/// Whether this process is PID 1.
pub fn is_pid1() -> bool {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() == 1 }
}

/// Mounts proc, sysfs, devtmpfs and debugfs, creating the mount points. EBUSY
/// (already mounted) is fine. proc and sysfs are required; without devtmpfs the
/// initramfs' static /dev nodes are used, and without debugfs there is no
/// zcore (no HSA release, no re-IPL), so those two only warn.
pub fn mount_all(log: &Log) -> Result<(), DumpError> {
    if !is_pid1() {
        return Err(DumpError::new(
            DumpStep::Mount,
            "refusing to mount: not PID 1",
        ));
    }
    let mounts: [(&CStr, &CStr, &CStr, bool); 4] = [
        (c"proc", c"/proc", c"proc", true),
        (c"sysfs", c"/sys", c"sysfs", true),
        (c"devtmpfs", c"/dev", c"devtmpfs", false),
        (c"debugfs", c"/sys/kernel/debug", c"debugfs", false),
    ];
    for (src, target, fstype, required) in mounts {
        let shown = target.to_string_lossy();
        match mount(src, target, fstype) {
            Ok(()) => trace!(log, "mounted {} on {shown}", fstype.to_string_lossy()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                trace!(log, "{shown} already mounted")
            }
            Err(e) if required => {
                return Err(DumpError::io(
                    DumpStep::Mount,
                    format!("mounting {} on {shown}", fstype.to_string_lossy()),
                    e,
                ));
            }
            Err(e) => error!(
                log,
                "warning: mounting {} on {shown}: {e}",
                fstype.to_string_lossy()
            ),
        }
        if target == c"/dev" {
            ensure_console();
        }
    }
    Ok(())
}

fn mount(src: &CStr, target: &CStr, fstype: &CStr) -> io::Result<()> {
    // The mount point may be missing from a minimal initramfs.
    // SAFETY: valid NUL-terminated strings.
    unsafe { libc::mkdir(target.as_ptr(), 0o755) };
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// If the kernel found no /dev/console in the initramfs, fds 0-2 are closed and
/// every message would be lost: open the console from devtmpfs instead.
pub fn ensure_console() {
    if !is_pid1() {
        return;
    }
    // SAFETY: plain fd syscalls on fds we own as PID 1.
    unsafe {
        if libc::fcntl(2, libc::F_GETFD) >= 0 {
            return;
        }
        let fd = libc::open(c"/dev/console".as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        if fd < 0 {
            return;
        }
        for target in 0..3 {
            if fd != target {
                libc::dup2(fd, target);
            }
        }
        if fd > 2 {
            libc::close(fd);
        }
    }
}

/// The signals that would kill PID 1: synchronous faults (SIGILL is what a
/// panic becomes under immediate-abort; SIGTRAP and SIGFPE are other trap
/// forms), abort, and the termination signals the reference handles.
pub const FATAL_SIGNALS: [libc::c_int; 9] = [
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGFPE,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGABRT,
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGPIPE,
];

/// The message a signal handler prints, one constant per signal so the
/// handler needs no formatting.
pub fn signal_message(sig: libc::c_int) -> &'static [u8] {
    match sig {
        libc::SIGILL => b"Dump failed: agent crashed (signal SIGILL)\n",
        libc::SIGTRAP => b"Dump failed: agent crashed (signal SIGTRAP)\n",
        libc::SIGFPE => b"Dump failed: agent crashed (signal SIGFPE)\n",
        libc::SIGSEGV => b"Dump failed: agent crashed (signal SIGSEGV)\n",
        libc::SIGBUS => b"Dump failed: agent crashed (signal SIGBUS)\n",
        libc::SIGABRT => b"Dump failed: agent crashed (signal SIGABRT)\n",
        libc::SIGINT => b"Dump failed: agent interrupted (signal SIGINT)\n",
        libc::SIGTERM => b"Dump failed: agent interrupted (signal SIGTERM)\n",
        libc::SIGPIPE => b"Dump failed: agent interrupted (signal SIGPIPE)\n",
        _ => b"Dump failed: agent crashed (signal)\n",
    }
}

/// Size of the alternate signal stack: the handler must run even when the
/// fault was a stack overflow. It needs about 5 KiB (the status buffer).
const ALT_STACK_SIZE: usize = 32 * 1024;

/// Installs the fatal-signal handlers (PID 1 only). They print the verdict and
/// the peak RSS with write(2), then re-IPL or power off; they never return.
pub fn install_signal_handlers() {
    if !is_pid1() {
        return;
    }
    let stack: &'static mut [u8] = Box::leak(vec![0u8; ALT_STACK_SIZE].into_boxed_slice());
    // SAFETY: the alternate stack is leaked, so it lives as long as the process;
    // the sigaction struct is fully initialised (zeroed, then filled).
    unsafe {
        let ss = libc::stack_t {
            ss_sp: stack.as_mut_ptr().cast(),
            ss_flags: 0,
            ss_size: stack.len(),
        };
        libc::sigaltstack(&ss, std::ptr::null_mut());
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_fatal_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = libc::SA_ONSTACK;
        // Block every other signal while the handler runs: one verdict only.
        libc::sigfillset(&mut sa.sa_mask);
        for sig in FATAL_SIGNALS {
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Async-signal-safe: only write, open, read, close, sync and reboot; no
/// allocation, no locks.
extern "C" fn on_fatal_signal(sig: libc::c_int) {
    write_raw(2, b"\n");
    write_raw(2, signal_message(sig));
    write_peak_rss_raw();
    power_off();
}

/// Sets the panic hook: print `Dump failed: agent crashed (panic ...)` and
/// the peak RSS, then power off (PID 1) or exit 1 (tool). Effective whenever
/// the panic runtime calls hooks (host builds, panic=abort); under
/// immediate-abort the SIGILL handler takes over.
pub fn set_panic_hook(pid1: bool) {
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("non-string payload");
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let line = format!("\nDump failed: agent crashed (panic{at}: {msg})\n");
        write_raw(2, line.as_bytes());
        write_peak_rss_raw();
        if pid1 {
            power_off();
        }
        std::process::exit(1);
    }));
}

/// The end of every PID-1 run: ask zcore to re-IPL the production system (if
/// the crashed kernel armed it, this does not return), sync, power off. Never
/// returns. Outside PID 1 it only exits, whatever the caller intended.
pub fn power_off() -> ! {
    // SAFETY: async-signal-safe syscalls with valid arguments.
    unsafe {
        if libc::getpid() != 1 {
            libc::_exit(1);
        }
        let fd = libc::open(crate::ZCORE_REIPL.as_ptr(), libc::O_WRONLY);
        if fd >= 0 {
            libc::write(fd, b"1".as_ptr().cast(), 1);
            libc::close(fd);
        }
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
        // reboot() does not return on success; PID 1 must not exit either way.
        loop {
            libc::pause();
        }
    }
}

/// Writes all of `buf` to `fd`, ignoring errors (nothing can be done about them).
fn write_raw(fd: libc::c_int, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n <= 0 {
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        buf = &buf[n as usize..];
    }
}

/// `peak RSS: N KiB`, allocation-free for the signal handler.
fn write_peak_rss_raw() {
    let mut line = [0u8; 48];
    let prefix = b"peak RSS: ";
    line[..prefix.len()].copy_from_slice(prefix);
    let mut n = prefix.len();
    match peak_rss_kib() {
        Some(kib) => {
            n += format_u64(kib, &mut line[n..]);
            line[n..n + 5].copy_from_slice(b" KiB\n");
            n += 5;
        }
        None => {
            line[n..n + 8].copy_from_slice(b"unknown\n");
            n += 8;
        }
    }
    write_raw(2, &line[..n]);
}

/// Decimal digits of `v` into `out`; returns their number.
fn format_u64(mut v: u64, out: &mut [u8]) -> usize {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    out[..len].copy_from_slice(&digits[i..]);
    len
}

/// The process's peak resident set size (VmHWM of /proc/self/status) in KiB.
/// Reads with raw syscalls into a stack buffer, so the signal handler can use
/// it too. /proc/self is the agent's own whatever root it works on.
pub fn peak_rss_kib() -> Option<u64> {
    let mut buf = [0u8; 4096];
    // SAFETY: valid path; buf is valid for its length.
    let len = unsafe {
        let fd = libc::open(c"/proc/self/status".as_ptr(), libc::O_RDONLY);
        if fd < 0 {
            return None;
        }
        let mut len = 0usize;
        while len < buf.len() {
            let n = libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len);
            if n <= 0 {
                break;
            }
            len += n as usize;
        }
        libc::close(fd);
        len
    };
    vmhwm_kib(&buf[..len])
}

/// Parses the `VmHWM:` line of /proc/<pid>/status (`VmHWM:\t    1234 kB`).
pub fn vmhwm_kib(status: &[u8]) -> Option<u64> {
    let key = b"VmHWM:";
    let start = status.windows(key.len()).position(|w| w == key)? + key.len();
    let mut v: u64 = 0;
    let mut seen = false;
    for &b in &status[start..] {
        match b {
            b' ' | b'\t' if !seen => {}
            b'0'..=b'9' => {
                v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
                seen = true;
            }
            _ => break,
        }
    }
    seen.then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmhwm() {
        let s = b"Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    1234 kB\nVmRSS:\t  1000 kB\n";
        assert_eq!(vmhwm_kib(s), Some(1234));
        assert_eq!(vmhwm_kib(b"VmHWM:\t kB\n"), None);
        assert_eq!(vmhwm_kib(b"nothing"), None);
        // This process has one.
        assert!(peak_rss_kib().unwrap() > 0);
    }

    #[test]
    fn digits() {
        let mut b = [0u8; 20];
        let n = format_u64(0, &mut b);
        assert_eq!(&b[..n], b"0");
        let n = format_u64(u64::MAX, &mut b);
        assert_eq!(&b[..n], b"18446744073709551615");
    }

    #[test]
    fn every_fatal_signal_has_a_verdict() {
        for sig in FATAL_SIGNALS {
            let m = signal_message(sig);
            assert!(
                m.starts_with(b"Dump failed: agent "),
                "{}",
                String::from_utf8_lossy(m)
            );
            assert!(m.ends_with(b")\n"));
        }
        assert_eq!(
            signal_message(libc::SIGILL),
            b"Dump failed: agent crashed (signal SIGILL)\n"
        );
    }

    #[test]
    fn zcore_paths_are_spelled_once() {
        // lib.rs defines them; every other source file uses the constants.
        let dir = crate::ZCORE_HSA.rsplit_once('/').unwrap().0;
        let literal = format!("\"{dir}/");
        for (file, text) in [
            ("cmdline.rs", include_str!("cmdline.rs")),
            ("copy.rs", include_str!("copy.rs")),
            ("disk.rs", include_str!("disk.rs")),
            ("error.rs", include_str!("error.rs")),
            ("filtered.rs", include_str!("filtered.rs")),
            ("hsa.rs", include_str!("hsa.rs")),
            ("ipl.rs", include_str!("ipl.rs")),
            ("log.rs", include_str!("log.rs")),
            ("main.rs", include_str!("main.rs")),
            ("sys.rs", include_str!("sys.rs")),
            ("tool.rs", include_str!("tool.rs")),
        ] {
            assert!(!text.contains(&literal), "{file} spells out {dir}/");
        }
        assert_eq!(crate::ZCORE_REIPL.to_str().unwrap(), format!("{dir}/reipl"));
    }

    #[test]
    fn privileged_calls_refuse_outside_pid1() {
        // Tests never run as PID 1: these must be no-ops or refusals.
        assert!(!is_pid1());
        let e = mount_all(&Log::capture()).unwrap_err();
        assert_eq!(e.to_string(), "mount: refusing to mount: not PID 1");
        install_signal_handlers();
        ensure_console();
    }
}
