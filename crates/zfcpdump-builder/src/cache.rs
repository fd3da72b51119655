//! Stage cache records: a stage hashes its named inputs into a key, stores
//! a JSON record beside its outputs, and remembers the inputs of the last
//! run per profile so that `plan` can say what changed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::de::DeserializeOwned;
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

/// One stage's cache slot for one set of inputs, computed once: they give
/// the key, which names the output directory and its `stage.json` record.
/// [`crate::stage::Stage`] runs a stage through its slot.
pub struct Slot {
    stage_cache: PathBuf,
    profile: String,
    pub inputs: Inputs,
    pub key: String,
}

/// What a slot holds: a valid record, or why the stage must run.
pub enum Lookup<T> {
    Hit(T),
    Miss { why: String },
}

impl Slot {
    pub fn new(stage_cache: &Path, profile: &str, inputs: Inputs) -> Slot {
        Slot {
            stage_cache: stage_cache.to_path_buf(),
            profile: profile.to_string(),
            key: key_of(&inputs),
            inputs,
        }
    }

    /// Where this key's outputs live.
    pub fn dir(&self) -> PathBuf {
        self.stage_cache.join(&self.key[..16])
    }

    fn record_path(&self) -> PathBuf {
        self.dir().join("stage.json")
    }

    /// The stored record if `valid` accepts it (its key matches and its
    /// outputs still exist); otherwise which inputs changed.
    pub fn lookup<T: DeserializeOwned>(&self, valid: impl FnOnce(&T) -> bool) -> Lookup<T> {
        match read_json::<T>(&self.record_path()) {
            Some(rec) if valid(&rec) => Lookup::Hit(rec),
            _ => Lookup::Miss {
                why: self
                    .why_changed()
                    .unwrap_or_else(|| "its output is missing".into()),
            },
        }
    }

    /// Which inputs differ from the profile's last run; None when none does.
    pub fn why_changed(&self) -> Option<String> {
        why_changed(&self.stage_cache, &self.profile, &self.inputs)
    }

    pub fn store<T: Serialize>(&self, rec: &T) -> Result<()> {
        write_json(&self.record_path(), rec)
    }

    /// Remembers these inputs as the profile's last run, for `plan`.
    pub fn remember(&self) -> Result<()> {
        write_json(
            &last_inputs_path(&self.stage_cache, &self.profile),
            &self.inputs,
        )
    }
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
