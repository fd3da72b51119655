//! The kernel command line (/proc/cmdline).
//!
//! `dump_debug=N` is the reference tool's parameter. `zfcpdump.dump_level=N`
//! is a production parameter: the operator appends it through the HMC's SCP
//! data, which the kernel adds to the command line, and it overrides the
//! profile's `agent.dump_level`. The other `zfcpdump.*` keys are test-only
//! overrides: zipl passes a fixed parmline for a partition dump, so
//! on a real machine they are never present and the agent does exactly what
//! the reference does. They exist so that the same binary can be run under
//! QEMU (which has no FCP dump IPL) and on fake trees.

/// What the agent takes from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    /// `dump_debug=N`: 1 errors only, 2 normal, 3 and above trace.
    pub dump_debug: Option<u8>,
    /// Test-only `zfcpdump.source=PATH`: read this instead of /proc/vmcore.
    pub source: Option<String>,
    /// Test-only `zfcpdump.disk=PATH`: this whole disk instead of the IPL device.
    pub disk: Option<String>,
    /// Test-only `zfcpdump.hsa_size=N`: simulate an HSA of N bytes.
    pub hsa_size: Option<u64>,
    /// `zfcpdump.dump_level=N` (0..=31): overrides the profile's level.
    pub dump_level: Option<zfcpdump_format::filter::DumpLevel>,
    /// Test-only `zfcpdump.test_panic=1`: panic right after parsing.
    pub test_panic: bool,
    /// Values that did not parse, as messages (ignored, not fatal).
    pub warnings: Vec<String>,
}

/// Parses the command line. Unknown parameters are ignored; values that do not
/// parse are reported in [`Cmdline::warnings`] and ignored.
pub fn parse(text: &str) -> Cmdline {
    let mut c = Cmdline::default();
    for word in split_words(text) {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, unquote(v)),
            None => (word, ""),
        };
        match key {
            "dump_debug" => match value.parse::<u8>() {
                Ok(n) if n >= 1 => c.dump_debug = Some(n),
                _ => c.warnings.push(format!("ignoring dump_debug={value}: expected 1..255")),
            },
            "zfcpdump.source" if !value.is_empty() => c.source = Some(value.to_string()),
            "zfcpdump.disk" if !value.is_empty() => c.disk = Some(value.to_string()),
            "zfcpdump.hsa_size" => match parse_u64(value) {
                Some(n) => c.hsa_size = Some(n),
                None => c.warnings.push(format!(
                    "ignoring zfcpdump.hsa_size={value}: expected a decimal or 0x-prefixed hex number"
                )),
            },
            "zfcpdump.dump_level" => {
                match value.parse().ok().and_then(zfcpdump_format::filter::DumpLevel::new) {
                    Some(l) => c.dump_level = Some(l),
                    None => c.warnings.push(format!(
                        "ignoring zfcpdump.dump_level={value}: expected 0 to 31 (makedumpfile's \
                         -d bits); using the profile's level"
                    )),
                }
            }
            "zfcpdump.test_panic" => c.test_panic = value == "1",
            _ => {}
        }
    }
    c
}

/// A decimal or `0x`-prefixed hexadecimal number.
pub fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(hex, 16).ok()
    } else {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
}

/// Splits at whitespace outside double quotes, as the kernel does.
fn split_words(text: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (i, ch) in text.char_indices() {
        if ch == '"' {
            quoted = !quoted;
        }
        if ch.is_whitespace() && !quoted {
            if let Some(s) = start.take() {
                words.push(&text[s..i]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        words.push(&text[s..]);
    }
    words
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_parmline_has_no_overrides() {
        let c = parse(
            "root=/dev/ram0 dump_mem=1 possible_cpus=1 cgroup_disable=memory cio_ignore=all,!ipldev,!condev\n",
        );
        assert_eq!(c, Cmdline::default());
    }

    #[test]
    fn dump_debug_and_overrides() {
        let c = parse(
            "console=ttysclp0 dump_debug=3 zfcpdump.source=/dev/vdb zfcpdump.disk=/dev/sda \
             zfcpdump.hsa_size=0x2000000 zfcpdump.test_panic=1 zfcpdump.dump_level=31",
        );
        assert_eq!(c.dump_level.map(|l| l.bits()), Some(31));
        assert_eq!(c.dump_debug, Some(3));
        assert_eq!(c.source.as_deref(), Some("/dev/vdb"));
        assert_eq!(c.disk.as_deref(), Some("/dev/sda"));
        assert_eq!(c.hsa_size, Some(32 << 20));
        assert!(c.test_panic);
        assert!(c.warnings.is_empty());
        assert_eq!(parse("zfcpdump.hsa_size=33554432").hsa_size, Some(32 << 20));
        assert!(!parse("zfcpdump.test_panic=0").test_panic);
    }

    #[test]
    fn bad_values_warn_and_are_ignored() {
        let c = parse("dump_debug=x zfcpdump.hsa_size=32M dump_debug=0 zfcpdump.dump_level=32");
        assert_eq!(c.dump_debug, None);
        assert_eq!(c.hsa_size, None);
        assert_eq!(c.dump_level, None);
        assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
        assert!(c.warnings[1].contains("zfcpdump.hsa_size=32M"));
    }

    #[test]
    fn quotes() {
        let c = parse("a=\"x y\" zfcpdump.source=\"/my file\" dump_debug=2");
        assert_eq!(c.source.as_deref(), Some("/my file"));
        assert_eq!(c.dump_debug, Some(2));
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("0x10"), Some(16));
        assert_eq!(parse_u64("10"), Some(10));
        assert_eq!(parse_u64(" 2000000\n"), Some(2_000_000));
        assert_eq!(parse_u64("0x"), None);
        assert_eq!(parse_u64("+1"), None);
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_u64("0xffffffffffffffffff"), None);
    }
}
