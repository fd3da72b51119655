//! The agent's two text inputs: its config file (`/etc/zfcpdump.conf`,
//! from the profile) and the kernel command line (`/proc/cmdline`, where
//! the operator's SCP data lands). The same text goes to both.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zfcpdump_agent::cmdline::{self, parse_u64};
use zfcpdump_format::config::AgentConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match AgentConfig::parse(text) {
        // What the build writes from a config reads back the same.
        Ok(c) => assert_eq!(AgentConfig::parse(&c.render()), Ok(c)),
        Err(e) => assert!(
            e.line >= 1 && e.line <= text.lines().count(),
            "error line {} of {}",
            e.line,
            text.lines().count()
        ),
    }
    let c = cmdline::parse(text);
    if let Some(l) = c.dump_level {
        assert!(l.bits() <= 31);
    }
    if let Some(d) = c.dump_debug {
        assert!(d >= 1);
    }
    // Every value taken came from the text.
    for v in [&c.source, &c.disk].into_iter().flatten() {
        assert!(!v.is_empty() && text.contains(v.as_str()), "{v:?}");
    }
    let _ = parse_u64(text);
});
