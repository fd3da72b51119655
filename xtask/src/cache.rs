//! Stage cache records: a stage hashes its named inputs into a key, stores
//! a JSON record beside its outputs, and remembers the inputs of the last
//! run per profile so that `plan` can say what changed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::util;

/// Inputs of a stage, by name.
pub type Inputs = BTreeMap<String, String>;

pub fn key_of(inputs: &Inputs) -> String {
    util::sha256_bytes(&serde_json::to_vec(inputs).expect("inputs serialize"))
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

pub fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    util::write_atomic(path, &serde_json::to_vec_pretty(v)?)
}

/// Where a stage remembers the inputs of its last run for a profile.
pub fn last_inputs_path(stage_cache: &Path, profile: &str) -> PathBuf {
    stage_cache.join("last").join(format!("{profile}.json"))
}

/// Why a stage must run: which inputs differ from its last run for this
/// profile; None when none does.
pub fn why_changed(stage_cache: &Path, profile: &str, inputs: &Inputs) -> Option<String> {
    let Some(last) = read_json::<Inputs>(&last_inputs_path(stage_cache, profile)) else {
        return Some(format!(
            "no earlier build of profile {profile:?} in {}",
            stage_cache.display()
        ));
    };
    let mut diffs = Vec::new();
    for (k, v) in inputs {
        match last.get(k) {
            None => diffs.push(format!("{k} added")),
            Some(old) if old != v => diffs.push(format!("{k} changed")),
            _ => {}
        }
    }
    for k in last.keys().filter(|k| !inputs.contains_key(*k)) {
        diffs.push(format!("{k} removed"));
    }
    (!diffs.is_empty()).then(|| diffs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn why_names_added_changed_and_removed_inputs() {
        let d = tempfile::tempdir().unwrap();
        let mut a = Inputs::new();
        a.insert("x".into(), "1".into());
        a.insert("gone".into(), "1".into());
        assert!(
            why_changed(d.path(), "p", &a)
                .unwrap()
                .contains("no earlier build")
        );
        write_json(&last_inputs_path(d.path(), "p"), &a).unwrap();
        assert_eq!(why_changed(d.path(), "p", &a), None);
        let mut b = Inputs::new();
        b.insert("x".into(), "2".into());
        b.insert("new".into(), "1".into());
        assert_eq!(
            why_changed(d.path(), "p", &b).unwrap(),
            "new added, x changed, gone removed"
        );
    }
}
