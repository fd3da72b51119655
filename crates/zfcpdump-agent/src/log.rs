//! Console messages with the reference's `dump_debug` levels.
//!
//! Lines go to stderr, which is unbuffered: nothing is lost when the agent
//! powers off right after printing, and lines stay in order with the ones a
//! signal handler writes with write(2). Tests capture the lines instead.

use std::fmt;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

/// `dump_debug=1`: errors only.
pub const LEVEL_ERROR: u8 = 1;
/// `dump_debug=2`: normal messages (the default).
pub const LEVEL_INFO: u8 = 2;
/// `dump_debug=3` and above: trace.
pub const LEVEL_TRACE: u8 = 3;

/// Where console lines go.
#[derive(Debug)]
pub struct Log {
    level: AtomicU8,
    capture: Option<Mutex<String>>,
    echo: bool,
}

impl Log {
    /// Lines go to stderr.
    pub fn console() -> Log {
        Log {
            level: AtomicU8::new(LEVEL_INFO),
            capture: None,
            echo: true,
        }
    }

    /// Lines are kept in memory (see [`Log::captured`]); for tests.
    pub fn capture() -> Log {
        Log {
            level: AtomicU8::new(LEVEL_INFO),
            capture: Some(Mutex::new(String::new())),
            echo: false,
        }
    }

    /// The current level.
    pub fn level(&self) -> u8 {
        self.level.load(Ordering::Relaxed)
    }

    /// Sets the level (at least [`LEVEL_ERROR`]: errors always print).
    pub fn set_level(&self, level: u8) {
        self.level.store(level.max(LEVEL_ERROR), Ordering::Relaxed);
    }

    /// Prints one line if `level` is enabled.
    pub fn line(&self, level: u8, args: fmt::Arguments<'_>) {
        if level > self.level() {
            return;
        }
        // One write per line, so concurrent writers (a signal handler) cannot
        // split it.
        let mut s = String::with_capacity(96);
        let _ = fmt::write(&mut s, args);
        s.push('\n');
        if self.echo {
            // Printing must never fail the dump (or panic, as eprintln! would).
            let _ = std::io::stderr().write_all(s.as_bytes());
        }
        if let Some(mut c) = self.capture.as_ref().and_then(|c| c.lock().ok()) {
            c.push_str(&s);
        }
    }

    /// Everything captured so far (empty for a console log).
    pub fn captured(&self) -> String {
        self.capture
            .as_ref()
            .and_then(|c| c.lock().ok().map(|c| c.clone()))
            .unwrap_or_default()
    }
}

/// An error line (always printed).
#[macro_export]
macro_rules! error {
    ($log:expr, $($arg:tt)*) => { $log.line($crate::log::LEVEL_ERROR, format_args!($($arg)*)) };
}

/// A normal progress line.
#[macro_export]
macro_rules! info {
    ($log:expr, $($arg:tt)*) => { $log.line($crate::log::LEVEL_INFO, format_args!($($arg)*)) };
}

/// A trace line (`dump_debug=3` and above).
#[macro_export]
macro_rules! trace {
    ($log:expr, $($arg:tt)*) => { $log.line($crate::log::LEVEL_TRACE, format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_filter() {
        let log = Log::capture();
        info!(log, "normal {}", 1);
        trace!(log, "hidden");
        log.set_level(LEVEL_TRACE);
        trace!(log, "shown");
        log.set_level(0);
        assert_eq!(log.level(), LEVEL_ERROR);
        info!(log, "hidden too");
        error!(log, "error");
        assert_eq!(log.captured(), "normal 1\nshown\nerror\n");
    }
}
