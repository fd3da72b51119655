//! Where each key of a merged profile was set: the file (and line) that won
//! the merge, or the `--set` argument. The loader's own errors point there,
//! and so can the builder's, through [`crate::Profile::origin`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a key of a profile was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A profile file, and the 1-based line of the key in it; no line when
    /// the key is not in any file (its default applies).
    File { path: PathBuf, line: Option<usize> },
    /// A `--set KEY=VALUE` argument, as given on the command line.
    Set(String),
}

/// `path/to/file.toml:LINE`, `path/to/file.toml`, or
/// `--set "kernel.source.dir=/x"` (quoted as the loader's other `--set`
/// errors quote it).
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File {
                path,
                line: Some(line),
            } => write!(f, "{}:{line}", path.display()),
            Origin::File { path, line: None } => write!(f, "{}", path.display()),
            Origin::Set(arg) => write!(f, "--set {arg:?}"),
        }
    }
}

/// Which of two settings came later: the layer (files parent first, then
/// each `--set` in order), then the line within a file.
type Rank = (usize, usize);

/// The origin of every key of the merged profile, tables included, by
/// dotted path (`kernel.source.sha256`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Origins {
    keys: BTreeMap<String, (Rank, Origin)>,
}

impl Origins {
    /// Records that `key` was set, with all that `value` holds below it.
    /// A table of `value` that replaces the key's old table (not merging
    /// into it) is named by `replaced`, which forgets what was set below.
    pub(crate) fn record(
        &mut self,
        key: &str,
        value: &toml::Value,
        replaced: &dyn Fn(&str) -> bool,
        at: &dyn Fn(&str) -> (Rank, Origin),
    ) {
        if replaced(key) {
            self.forget_below(key);
        }
        self.keys.insert(key.to_string(), at(key));
        if let toml::Value::Table(t) = value {
            for (k, v) in t {
                self.record(&format!("{key}.{k}"), v, replaced, at);
            }
        }
    }

    /// Forgets the origins of every key below `key` (which a new table
    /// replaced).
    pub(crate) fn forget_below(&mut self, key: &str) {
        let prefix = format!("{key}.");
        self.keys.retain(|k, _| !k.starts_with(&prefix));
    }

    /// Forgets what files set below `key`, keeping what `--set`s set.
    pub(crate) fn forget_below_but_sets(&mut self, key: &str) {
        let prefix = format!("{key}.");
        self.keys
            .retain(|k, (_, o)| !k.starts_with(&prefix) || matches!(o, Origin::Set(_)));
    }

    pub(crate) fn set(&mut self, key: &str, rank: Rank, origin: Origin) {
        self.keys.insert(key.to_string(), (rank, origin));
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Origin> {
        self.keys.get(key).map(|(_, o)| o)
    }

    /// Of two keys, the one set later (the one that made a pair of
    /// settings conflict); `a` when neither was set or on a tie.
    pub(crate) fn later<'k>(&self, a: &'k str, b: &'k str) -> &'k str {
        let rank = |k: &str| self.keys.get(k).map(|(r, _)| *r);
        if rank(b) > rank(a) { b } else { a }
    }
}

/// The 1-based line of every key of profile text, by dotted path: the line
/// of the key itself (`tarball = …`, `source = { … }`, the `[kernel.source]`
/// header, or a dotted key's segment). Text that does not parse has none;
/// the caller reports its parse error.
pub(crate) fn key_lines(text: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    if let Ok(doc) = toml_edit::ImDocument::parse(text) {
        let line = |pos: usize| text[..pos.min(text.len())].matches('\n').count() + 1;
        walk(doc.as_table(), "", &line, &mut out);
    }
    out
}

/// Records the line of every key of `t` (a table or an inline table) and
/// of the tables below it.
fn walk(
    t: &dyn toml_edit::TableLike,
    prefix: &str,
    line: &dyn Fn(usize) -> usize,
    out: &mut BTreeMap<String, usize>,
) {
    for (k, item) in t.iter() {
        let path = if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        };
        let start = t
            .get_key_value(k)
            .and_then(|(key, _)| key.span())
            .or_else(|| item.span())
            .map(|s| s.start);
        if let Some(start) = start {
            out.insert(path.clone(), line(start));
        }
        if let Some(sub) = item.as_table_like() {
            walk(sub, &path, line, out);
        }
        // A table whose key has no span of its own (implicit, such as
        // `kernel` of a lone `[kernel.source]`): its first key's line.
        if !out.contains_key(&path) {
            if let Some(first) = out
                .range(format!("{path}.")..)
                .take_while(|(p, _)| p.starts_with(&format!("{path}.")))
                .map(|(_, l)| *l)
                .min()
            {
                out.insert(path, first);
            }
        }
    }
}

/// The origin of `key` as set by the file at `path` with `lines`.
pub(crate) fn in_file(path: &Path, lines: &BTreeMap<String, usize>, key: &str) -> Origin {
    Origin::File {
        path: path.to_path_buf(),
        line: lines.get(key).copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_sections_inline_tables_and_dotted_keys() {
        let text = "# comment\n\
                    extends = \"default\"\n\
                    [kernel]\n\
                    source = { tarball = \"/a.tar.xz\", sha256 = \"00\" }\n\
                    fragments = [\n  \"a\",\n  \"b\",\n]\n\
                    [kernel.source2]\n\
                    dir = \"/x\"\n\
                    [agent]\n\
                    target.x = 1\n\
                    \n\
                    [budget.sub]\n\
                    total = 1\n";
        let l = key_lines(text);
        let want = [
            ("extends", 2),
            ("kernel", 3),
            ("kernel.source", 4),
            ("kernel.source.tarball", 4),
            ("kernel.source.sha256", 4),
            ("kernel.fragments", 5),
            ("kernel.source2", 9),
            ("kernel.source2.dir", 10),
            ("agent", 11),
            ("agent.target", 12),
            ("agent.target.x", 12),
            ("budget.sub", 14),
            ("budget.sub.total", 15),
        ];
        for (k, line) in want {
            assert_eq!(l.get(k), Some(&line), "{k}: {l:?}");
        }
        // An implicit table: the line of its header's first mention.
        assert_eq!(l.get("budget"), Some(&14), "{l:?}");
    }

    #[test]
    fn display() {
        let f = Origin::File {
            path: "/p/a.toml".into(),
            line: Some(3),
        };
        assert_eq!(f.to_string(), "/p/a.toml:3");
        let f = Origin::File {
            path: "/p/a.toml".into(),
            line: None,
        };
        assert_eq!(f.to_string(), "/p/a.toml");
        let s = Origin::Set("kernel.source.dir=/x".into());
        assert_eq!(s.to_string(), "--set \"kernel.source.dir=/x\"");
    }
}
