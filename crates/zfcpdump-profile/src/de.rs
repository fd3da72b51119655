//! Deserializers that say what a profile expects in the words of a profile
//! (a whole number, true or false, a table), never a Rust type's name.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Unexpected, Visitor};
use zfcpdump_format::size::parse_size;

/// A whole number from 0 to `max`, named by `what`.
struct Whole {
    max: u64,
    what: &'static str,
}

impl Visitor<'_> for Whole {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.what)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<u64, E> {
        match u64::try_from(n) {
            Ok(n) => self.visit_u64(n),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(n), &self)),
        }
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
        if n <= self.max {
            Ok(n)
        } else {
            Err(E::invalid_value(Unexpected::Unsigned(n), &self))
        }
    }
}

const WHOLE_U32: Whole = Whole {
    max: u32::MAX as u64,
    what: "a whole number from 0 to 4294967295",
};

/// `jobs`, `device_timeout_s`, …: a whole number.
pub(crate) fn whole<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    d.deserialize_u64(WHOLE_U32).map(|n| n as u32)
}

pub(crate) fn opt_whole<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    whole(d).map(Some)
}

/// makedumpfile's `-d` bits.
const DUMP_LEVEL: &str = "makedumpfile's -d bits: 1 zero pages, 2 cache, 4 private cache, \
                          8 user, 16 free";

/// `agent.dump_level`: 0 to 31.
pub(crate) fn dump_level<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    struct Level;
    impl Visitor<'_> for Level {
        type Value = u8;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a whole number from 0 to 31 ({DUMP_LEVEL})")
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<u8, E> {
            match u8::try_from(n) {
                Ok(n) if n <= 31 => Ok(n),
                _ => Err(E::custom(format!(
                    "dump_level = {n}: expected 0 to 31 ({DUMP_LEVEL})"
                ))),
            }
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<u8, E> {
            match i64::try_from(n) {
                Ok(n) => self.visit_i64(n),
                Err(_) => Err(E::custom(format!(
                    "dump_level = {n}: expected 0 to 31 ({DUMP_LEVEL})"
                ))),
            }
        }
    }
    d.deserialize_u8(Level).map(Some)
}

/// An array of strings, each passed through `check`; `expecting` names
/// the array in errors of its shape.
fn strings<'de, D: Deserializer<'de>>(
    d: D,
    expecting: &'static str,
    check: fn(&str) -> Result<(), String>,
) -> Result<Vec<String>, D::Error> {
    struct Strings {
        expecting: &'static str,
        check: fn(&str) -> Result<(), String>,
    }
    impl<'de> Visitor<'de> for Strings {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                (self.check)(&s).map_err(de::Error::custom)?;
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Strings { expecting, check })
}

/// `kernel.fragments`: an array of strings.
pub(crate) fn names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    strings(
        d,
        "an array of file names, such as [\"zfcpdump.config\"]",
        |_| Ok(()),
    )
}

pub(crate) fn opt_names<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    names(d).map(Some)
}

/// Make variables the stage sets itself, which `kernel.make_args` must
/// not override: the profile's own fields, the `O=` tree, and what makes
/// the build reproducible.
const RESERVED_MAKE_VARS: &[(&str, &str)] = &[
    ("ARCH", "kernel.arch sets it"),
    ("CROSS_COMPILE", "kernel.cross_compile sets it"),
    ("O", "the stage builds in its own O= directory"),
    ("KBUILD_OUTPUT", "the stage builds in its own O= directory"),
    (
        "SOURCE_DATE_EPOCH",
        "the build takes it from the environment",
    ),
];

/// `kernel.make_args`: an array of `NAME=value` make variables.
pub(crate) fn make_vars<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    strings(
        d,
        "an array of make variables, such as [\"LLVM=1\", \"KCFLAGS=-g0\"]",
        check_make_var,
    )
}

pub(crate) fn opt_make_vars<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    make_vars(d).map(Some)
}

/// One `NAME=value`: a make variable name, not one the stage sets.
fn check_make_var(s: &str) -> Result<(), String> {
    let Some((name, _)) = s.split_once('=') else {
        return Err(format!(
            "{s:?} is not a make variable: expected NAME=value, such as \"LLVM=1\" (make -j \
             comes from kernel.jobs)"
        ));
    };
    let valid = name
        .bytes()
        .enumerate()
        .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
    if name.is_empty() || !valid {
        return Err(format!("{s:?}: {name:?} is not a make variable name"));
    }
    if let Some((_, why)) = RESERVED_MAKE_VARS.iter().find(|(n, _)| *n == name) {
        return Err(format!("{s:?}: {name} cannot be set here: {why}"));
    }
    if name.starts_with("KBUILD_BUILD_") {
        return Err(format!(
            "{s:?}: {name} cannot be set here: the stage fixes it so that builds reproduce"
        ));
    }
    Ok(())
}

/// A lowercase name from `choices`; anything else lists them, as serde
/// does for an unknown variant.
pub(crate) fn choice<'de, D: Deserializer<'de>>(
    d: D,
    choices: &'static [&'static str],
) -> Result<usize, D::Error> {
    struct Choice(&'static [&'static str]);
    impl Visitor<'_> for Choice {
        type Value = usize;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let list: Vec<String> = self.0.iter().map(|c| format!("`{c}`")).collect();
            write!(f, "one of {}", list.join(", "))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<usize, E> {
            self.0
                .iter()
                .position(|c| *c == s)
                .ok_or_else(|| E::unknown_variant(s, self.0))
        }
    }
    d.deserialize_str(Choice(choices))
}

/// Sizes are byte counts or strings such as "32MiB", "512K", "1G": the
/// grammar of [`zfcpdump_format::size`], which every tool shares.
pub(crate) fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Str(String),
    }
    match Raw::deserialize(d) {
        Ok(Raw::Int(n)) => Ok(n),
        Ok(Raw::Str(s)) => parse_size(&s).map_err(de::Error::custom),
        Err(_) => Err(de::Error::custom(
            "expected a size: a byte count or a string such as \"32MiB\"",
        )),
    }
}

pub(crate) fn opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    size(d).map(Some)
}

/// The words serde's own types use, in a profile's: what toml calls a
/// table and an array, a bool's two values, a path.
pub(crate) fn humanize(message: &str) -> String {
    [
        ("invalid type: map,", "invalid type: table,"),
        ("invalid type: sequence,", "invalid type: array,"),
        (
            "invalid type: floating point ",
            "invalid type: decimal number ",
        ),
        ("expected a boolean", "expected true or false"),
        ("expected path string", "expected a path (a string)"),
    ]
    .iter()
    .fold(message.to_string(), |m, (from, to)| m.replace(from, to))
}
