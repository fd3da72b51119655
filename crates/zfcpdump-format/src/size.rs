//! Byte sizes as people write them, one grammar for every tool: the
//! profiles' `budget.*` (and `--set`), `zfcpdump-disk prepare --size`,
//! `--part-start`, `--part-size`, `vmcore-fixture --size` and
//! `cargo xtask bench --size`.
//!
//! ```text
//! size   = space* number space* unit? space*
//! number = digit+ | ("0x" | "0X") hexdigit+
//! unit   = "B" | "K" | "KiB" | "M" | "MiB" | "G" | "GiB" | "T" | "TiB"
//! ```
//!
//! - Units are binary, powers of 1024: `K` and `KiB` are both 1024 bytes,
//!   `M` and `MiB` 1024², `G`/`GiB` 1024³, `T`/`TiB` 1024⁴; `B` or no unit
//!   means bytes. Units are case-insensitive (`64m`, `32mib`, `1GIB`).
//! - Decimal SI units (`KB`, `MB`, ...) are refused rather than guessed:
//!   the error says to write `K` or `KiB`. So are fractions (`1.5G`),
//!   signs, and anything after the unit.
//! - A hexadecimal number's digits run to the first character that is not
//!   one: `0x10M` is 16 MiB, but `0x1B` is 27 bytes (`B` is a hex digit).
//! - A size that does not fit in 64 bits is an error, never wrapped or
//!   saturated.
//!
//! [`format_size`] writes a size back in the largest unit that holds it
//! exactly, so `parse_size(&format_size(n)) == Ok(n)` for every `n`.

use std::fmt;

/// Why a size does not parse. Its text names the input and says what is
/// allowed; there is no underlying cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeError {
    /// No number where the size starts (empty, a unit alone, a sign).
    NoNumber {
        /// The size as given.
        input: String,
    },
    /// Something after the number that is not a unit.
    BadUnit {
        /// What follows the number.
        unit: String,
        /// The size as given.
        input: String,
    },
    /// More than `u64::MAX` bytes.
    TooLarge {
        /// The size as given.
        input: String,
    },
}

const UNITS_HELP: &str = "K, M, G or T, also written KiB, MiB, GiB, TiB (powers of 1024)";

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeError::NoNumber { input } => write!(
                f,
                "invalid size '{input}': expected a number of bytes (decimal or 0x hex), \
                 optionally with a unit {UNITS_HELP}"
            ),
            SizeError::BadUnit { unit, input } => {
                write!(f, "invalid size suffix '{unit}' in '{input}': ")?;
                let lower = unit.to_ascii_lowercase();
                if ["kb", "mb", "gb", "tb"].contains(&lower.as_str()) {
                    let u = lower[..1].to_ascii_uppercase();
                    write!(
                        f,
                        "decimal units are ambiguous: write {u} or {u}iB (powers of 1024), \
                         or the number of bytes"
                    )
                } else {
                    write!(f, "use {UNITS_HELP}")
                }
            }
            SizeError::TooLarge { input } => write!(
                f,
                "size '{input}' is too large: more than {} bytes",
                u64::MAX
            ),
        }
    }
}

impl std::error::Error for SizeError {}

/// The units, smallest first: (shift, short name, long name).
const UNITS: [(u32, &str, &str); 4] = [
    (10, "K", "KiB"),
    (20, "M", "MiB"),
    (30, "G", "GiB"),
    (40, "T", "TiB"),
];

/// Parses a size in the grammar of this module, e.g. `4096`, `64M`,
/// `32MiB`, `512k`, `1 GiB`, `0x2000000`.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let (digits, radix, rest) = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => {
            let end = hex
                .find(|c: char| !c.is_ascii_hexdigit())
                .unwrap_or(hex.len());
            (&hex[..end], 16, &hex[end..])
        }
        None => {
            let end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            (&t[..end], 10, &t[end..])
        }
    };
    if digits.is_empty() {
        return Err(SizeError::NoNumber { input: s.into() });
    }
    let unit = rest.trim_start();
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        u => match UNITS.iter().find(|(_, short, long)| {
            u == short.to_ascii_lowercase() || u == long.to_ascii_lowercase()
        }) {
            Some(&(shift, _, _)) => shift,
            None => {
                return Err(SizeError::BadUnit {
                    unit: unit.into(),
                    input: s.into(),
                });
            }
        },
    };
    let too_large = || SizeError::TooLarge { input: s.into() };
    // Only digits are left, so the only error is overflow.
    let n = u64::from_str_radix(digits, radix).map_err(|_| too_large())?;
    n.checked_mul(1u64 << shift).ok_or_else(too_large)
}

/// `n` bytes in the largest unit that holds it exactly (`32MiB`, `4KiB`,
/// `1000`): what [`parse_size`] reads back as `n`.
pub fn format_size(n: u64) -> String {
    match UNITS
        .iter()
        .rev()
        .find(|(shift, _, _)| n != 0 && n.trailing_zeros() >= *shift)
    {
        Some((shift, _, long)) => format!("{}{long}", n >> shift),
        None => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testrand::XorShift;

    const K: u64 = 1 << 10;
    const M: u64 = 1 << 20;
    const G: u64 = 1 << 30;
    const T: u64 = 1 << 40;

    fn ok(s: &str) -> u64 {
        parse_size(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn err(s: &str) -> String {
        match parse_size(s) {
            Ok(n) => panic!("{s:?} parsed as {n}"),
            Err(e) => e.to_string(),
        }
    }

    /// Every size the project writes today, with the value each of the
    /// three old parsers gave it.
    #[test]
    fn the_projects_own_sizes() {
        // profiles/*.toml and README.md (budget.total, runtime_reserve);
        // the profile loader's tests (--set budget.total="64M").
        assert_eq!(ok("32MiB"), 32 * M);
        assert_eq!(ok("8MiB"), 8 * M);
        assert_eq!(ok("64M"), 64 * M);
        assert_eq!(ok("512K"), 512 * K);
        assert_eq!(ok("1G"), G);
        // zfcpdump-disk prepare (its tests, xtask's zipl and bench disks:
        // plain byte counts too) and cargo xtask bench --size.
        for (s, n) in [
            ("48M", 48 * M),
            ("40M", 40 * M),
            ("300M", 300 * M),
            ("512M", 512 * M),
            ("400M", 400 * M),
            ("1M", M),
            ("1000", 1000),
            ("51200000", 51_200_000),
            ("8M", 8 * M),
            ("9G", 9 * G),
            ("2GiB", 2 * G),
            ("1T", T),
            (" 7B ", 7),
        ] {
            assert_eq!(ok(s), n, "{s}");
        }
        // vmcore-fixture --size (e2e, faults, its tests and --help).
        for (s, n) in [
            ("10M", 10 * M),
            ("16M", 16 * M),
            ("6M", 6 * M),
            ("2G", 2 * G),
        ] {
            assert_eq!(ok(s), n, "{s}");
        }
        assert_eq!(ok("4096"), 4096);
    }

    /// What any one of the three old parsers accepted, the union accepts
    /// with the same value.
    #[test]
    fn the_union_of_the_old_grammars() {
        // The disk tool's: case-insensitive, T, a B suffix.
        assert_eq!(ok("64m"), 64 * M);
        assert_eq!(ok("1k"), K);
        assert_eq!(ok("3tib"), 3 * T);
        assert_eq!(ok("5b"), 5);
        // The profiles': a space before the unit.
        assert_eq!(ok("32 MiB"), 32 * M);
        assert_eq!(ok("12 B"), 12);
        // The fixture's: hex, with or without a unit.
        assert_eq!(ok("0x2000000"), 32 * M);
        assert_eq!(ok("0X10M"), 16 * M);
        assert_eq!(ok("0x10 G"), 16 * G);
        assert_eq!(ok("0xfff"), 0xfff);
        assert_eq!(ok("0x1B"), 0x1b);
        // And all of them: surrounding white space, zero.
        assert_eq!(ok("\t1G\n"), G);
        assert_eq!(ok("0"), 0);
        assert_eq!(ok("0K"), 0);
    }

    #[test]
    fn every_unit_and_case() {
        for (shift, short, long) in UNITS {
            for unit in [
                short.to_string(),
                short.to_ascii_lowercase(),
                long.to_string(),
                long.to_ascii_lowercase(),
                long.to_ascii_uppercase(),
            ] {
                assert_eq!(ok(&format!("3{unit}")), 3 << shift, "3{unit}");
            }
        }
        assert_eq!(ok("3B"), 3);
        assert_eq!(ok("3"), 3);
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        for s in ["", "   ", "M", "MiB", "-1", "+1", "x10", "0x", "0xM", ".5G"] {
            let e = err(s);
            assert!(e.starts_with(&format!("invalid size '{s}'")), "{s:?}: {e}");
            assert!(e.contains("powers of 1024"), "{e}");
        }
        assert_eq!(
            err("64Q"),
            "invalid size suffix 'Q' in '64Q': use K, M, G or T, also written KiB, MiB, \
             GiB, TiB (powers of 1024)"
        );
        assert!(err("1.5G").contains("suffix '.5G'"));
        assert!(err("12Q").contains("suffix 'Q'"));
        assert!(err("10X").contains("suffix 'X'"));
        assert!(err("1 G B").contains("suffix 'G B'"));
        assert!(err("1_000").contains("suffix '_000'"));
        assert!(err("4096 bytes").contains("suffix 'bytes'"));
        // Decimal units are not guessed.
        let e = err("10KB");
        assert_eq!(
            e,
            "invalid size suffix 'KB' in '10KB': decimal units are ambiguous: write K or KiB \
             (powers of 1024), or the number of bytes"
        );
        assert!(err("1mb").contains("write M or MiB"));
        assert!(err("1GB").contains("write G or GiB"));
        // A hex number ends at its last hex digit: B is one of them.
        assert!(err("0x10KB").contains("suffix 'KB'"));
        assert_eq!(ok("0x1g"), G);
        assert_eq!(ok("0x10 B"), 16);
    }

    #[test]
    fn overflow_is_an_error() {
        assert_eq!(ok("18446744073709551615"), u64::MAX);
        assert_eq!(ok("0xffffffffffffffff"), u64::MAX);
        assert_eq!(ok("16777215T"), 16_777_215 * T);
        for s in [
            "18446744073709551616",
            "99999999999999999999",
            "0x10000000000000000",
            "16777216T",
            "17179869184G",
            "18014398509481984K",
        ] {
            assert_eq!(
                parse_size(s),
                Err(SizeError::TooLarge { input: s.into() }),
                "{s}"
            );
            assert!(err(s).contains("too large"), "{s}");
        }
    }

    #[test]
    fn format_is_exact_and_reads_back() {
        assert_eq!(format_size(0), "0");
        assert_eq!(format_size(1000), "1000");
        assert_eq!(format_size(4096), "4KiB");
        assert_eq!(format_size(32 * M), "32MiB");
        assert_eq!(format_size(32 * M + K), "32769KiB");
        assert_eq!(format_size(3 * G), "3GiB");
        assert_eq!(format_size(2048 * T), "2048TiB");
        assert_eq!(format_size(u64::MAX), u64::MAX.to_string());
        let mut rng = XorShift(0x5eed_5123);
        for _ in 0..10_000 {
            let n = rng.next() >> rng.below(64);
            let n = n << rng.below(45);
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{n}");
        }
    }
}
