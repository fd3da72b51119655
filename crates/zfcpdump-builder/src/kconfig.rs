//! Kernel configuration: fragments, merging, and the requested-vs-final check.
//!
//! `olddefconfig` silently drops any option whose dependencies are off. The
//! kernel stage therefore remembers every option that was asked for (by the
//! stage itself or by a fragment) and checks each against the final .config
//! before it compiles anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use anyhow::{Result, bail};

/// One `CONFIG_X=value` or `# CONFIG_X is not set` line that must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Full name, with the CONFIG_ prefix.
    pub option: String,
    /// As written in .config: `y`, `m`, `"string"`, `0x10`, or `n` for
    /// "is not set".
    pub value: String,
    /// Who asked: "kernel stage (...)" or "fragment.config:12".
    pub origin: String,
}

/// Parses a fragment. Blank lines and other comments are skipped; anything
/// else must be an assignment.
pub fn parse_fragment(name: &str, text: &str) -> Result<Vec<Requirement>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let origin = format!("{name}:{}", i + 1);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some((opt, val)) = parse_line(line) {
            out.push(Requirement {
                option: opt.to_string(),
                value: val.to_string(),
                origin,
            });
        } else if !line.starts_with('#') {
            bail!(
                "{origin}: cannot parse {line:?}: expected CONFIG_NAME=value or \"# CONFIG_NAME is not set\""
            );
        }
    }
    Ok(out)
}

/// One .config line to (option, value); `n` for "is not set".
fn parse_line(line: &str) -> Option<(&str, &str)> {
    if let Some(opt) = line
        .strip_prefix("# ")
        .and_then(|rest| rest.strip_suffix(" is not set"))
        .filter(|opt| is_option_name(opt))
    {
        return Some((opt, "n"));
    }
    let (opt, val) = line.split_once('=')?;
    is_option_name(opt).then_some((opt, val))
}

fn is_option_name(s: &str) -> bool {
    s.starts_with("CONFIG_")
        && s.len() > 7
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A .config as a map; absent options read as `n`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    values: BTreeMap<String, String>,
}

impl Config {
    pub fn parse(text: &str) -> Config {
        let values = text
            .lines()
            .filter_map(|l| parse_line(l.trim()))
            .map(|(o, v)| (o.to_string(), v.to_string()))
            .collect();
        Config { values }
    }

    pub fn get(&self, option: &str) -> &str {
        self.values.get(option).map(String::as_str).unwrap_or("n")
    }

    /// The options whose values differ between the two, absent read as `n`.
    pub fn differing(&self, other: &Config) -> Vec<String> {
        let mut names: Vec<&String> = self.values.keys().chain(other.values.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter(|o| self.get(o) != other.get(o))
            .cloned()
            .collect()
    }
}

/// Rewrites a .config with the requirements applied: existing lines are
/// replaced in place, new ones appended. olddefconfig resolves the rest.
pub fn apply(config_text: &str, reqs: &[Requirement]) -> String {
    let mut wanted: BTreeMap<&str, &str> = BTreeMap::new();
    for r in reqs {
        wanted.insert(&r.option, &r.value);
    }
    let mut out = String::with_capacity(config_text.len() + 256);
    let mut done = std::collections::BTreeSet::new();
    for line in config_text.lines() {
        match parse_line(line.trim()) {
            Some((opt, _)) if wanted.contains_key(opt) => {
                out.push_str(&render(opt, wanted[opt]));
                done.insert(opt.to_string());
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    for r in reqs {
        if done.insert(r.option.clone()) {
            out.push_str(&render(&r.option, wanted[r.option.as_str()]));
            out.push('\n');
        }
    }
    out
}

fn render(opt: &str, val: &str) -> String {
    if val == "n" {
        format!("# {opt} is not set")
    } else {
        format!("{opt}={val}")
    }
}

/// Two requirements that ask for different values of the same option.
pub fn conflicts(reqs: &[Requirement]) -> Result<()> {
    let mut first: BTreeMap<&str, &Requirement> = BTreeMap::new();
    let mut errors = Vec::new();
    for r in reqs {
        match first.get(r.option.as_str()) {
            Some(prev) if prev.value != r.value => errors.push(format!(
                "  {}: {} wants {}, but {} wants {}",
                r.option, prev.origin, prev.value, r.origin, r.value
            )),
            Some(_) => {}
            None => {
                first.insert(&r.option, r);
            }
        }
    }
    if !errors.is_empty() {
        bail!(
            "conflicting kernel options requested:\n{}",
            errors.join("\n")
        );
    }
    Ok(())
}

/// A requested option whose final value differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub req: Requirement,
    pub actual: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: requested {}, final {} (requested by {})",
            self.req.option,
            self.req.value,
            if self.actual == "n" {
                "not set"
            } else {
                &self.actual
            },
            self.req.origin
        )
    }
}

/// Every requirement must hold in the final configuration.
pub fn check(reqs: &[Requirement], fin: &Config) -> Vec<Mismatch> {
    reqs.iter()
        .filter(|r| fin.get(&r.option) != r.value)
        .map(|r| Mismatch {
            req: r.clone(),
            actual: fin.get(&r.option).to_string(),
        })
        .collect()
}

/// Every symbol a Kconfig file of the source at `src` defines (`config X`,
/// `menuconfig X`), with the CONFIG_ prefix. Build directories that sit
/// inside the source (`build-*` at its top) are skipped.
pub fn defined_symbols(src: &Path) -> BTreeSet<String> {
    let walk = walkdir::WalkDir::new(src).into_iter().filter_entry(|e| {
        let name = e.file_name().to_string_lossy();
        !(name == ".git" || (e.depth() == 1 && name.starts_with("build-")))
    });
    let mut out = BTreeSet::new();
    for e in walk.filter_map(|e| e.ok()) {
        if !e.file_type().is_file() || !e.file_name().to_string_lossy().starts_with("Kconfig") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if let (Some("config" | "menuconfig"), Some(sym)) = (words.next(), words.next()) {
                out.insert(format!("CONFIG_{sym}"));
            }
        }
    }
    out
}

/// The mismatches of requested options that no Kconfig file defines:
/// these are misspelled or absent from this kernel version, not options
/// whose dependencies are off.
pub fn undefined<'m>(mismatches: &'m [Mismatch], known: &BTreeSet<String>) -> Vec<&'m Mismatch> {
    mismatches
        .iter()
        .filter(|m| !known.contains(&m.req.option))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_parsing() {
        let f = parse_fragment(
            "x.config",
            "# comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"s p\"\n",
        )
        .unwrap();
        let got: Vec<_> = f
            .iter()
            .map(|r| (r.option.as_str(), r.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("CONFIG_A", "y"),
                ("CONFIG_B", "n"),
                ("CONFIG_C", "\"s p\"")
            ]
        );
        assert_eq!(f[1].origin, "x.config:4");
        let e = parse_fragment("x.config", "CONFIG_A=y\nA=y\n").unwrap_err();
        assert!(e.to_string().contains("x.config:2"), "{e}");
    }

    #[test]
    fn apply_replaces_in_place_and_appends() {
        let reqs = parse_fragment("f", "CONFIG_A=n\nCONFIG_B=y\nCONFIG_NEW=m\n").unwrap();
        let out = apply("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_Z=y\n", &reqs);
        assert_eq!(
            out,
            "# CONFIG_A is not set\nCONFIG_B=y\nCONFIG_Z=y\nCONFIG_NEW=m\n"
        );
    }

    #[test]
    fn check_reports_each_mismatch() {
        let reqs = parse_fragment("f", "CONFIG_A=y\nCONFIG_B=n\nCONFIG_C=y\n").unwrap();
        let fin = Config::parse("CONFIG_A=y\nCONFIG_B=y\n");
        let m = check(&reqs, &fin);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0].to_string(),
            "CONFIG_B: requested n, final y (requested by f:2)"
        );
        assert_eq!(
            m[1].to_string(),
            "CONFIG_C: requested y, final not set (requested by f:3)"
        );
    }

    #[test]
    fn conflicting_requests_are_named() {
        let mut reqs = parse_fragment("a.config", "CONFIG_X=y\n").unwrap();
        reqs.extend(parse_fragment("b.config", "# CONFIG_X is not set\n").unwrap());
        let e = conflicts(&reqs).unwrap_err().to_string();
        assert!(
            e.contains("a.config:1 wants y, but b.config:1 wants n"),
            "{e}"
        );
    }
}
