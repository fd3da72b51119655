//! What the stages of `dist` have in common: named inputs hashed into a
//! key ([`Slot`]), a cache record that holds for that key or says why not,
//! and a build that makes it under the stage's lock.
//!
//! The agent and the initramfs are one slot each. The kernel's record sits
//! at the end of three levels (configure, compile, link): it overrides
//! [`Stage::lookup_in`] to walk them and builds only the levels that are
//! missing, but it runs, locks and reports like the others.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::{Inputs, Lookup, Slot};
use crate::lock::{self, Wait};
use crate::profile::Profile;

pub trait Stage {
    /// What the stage hands on, stored as its cache record (`stage.json`).
    type Record: Serialize + DeserializeOwned;

    /// "kernel", "agent", "initramfs": the log prefix and the lock's name.
    fn name(&self) -> &'static str;

    /// The stage's cache directory: its slots, its lock and the last
    /// inputs per profile.
    fn cache(&self) -> &Path;

    fn profile(&self) -> &Profile;

    /// Everything the output depends on, by name; hashed into the key.
    fn inputs(&self) -> Result<Inputs>;

    /// Whether `rec`, read from `slot`, is that slot's output and its files
    /// are still there.
    fn check(&self, slot: &Slot, rec: &Self::Record) -> bool;

    /// Makes the output of `slot`'s inputs and stores its record. Runs
    /// under the stage's lock, after a lookup found nothing valid.
    fn build(&self, slot: &Slot) -> Result<Self::Record>;

    /// The record's main file, for the "up to date" line.
    fn output<'r>(&self, rec: &'r Self::Record) -> &'r Path;

    /// What to say of a record: "110266 bytes, gzip".
    fn about(&self, rec: &Self::Record) -> String;

    /// The slot of the current inputs.
    fn slot(&self) -> Result<Slot> {
        Ok(Slot::new(
            self.cache(),
            &self.profile().name,
            self.inputs()?,
        ))
    }

    /// The valid record of `slot`, or why the stage must run. Reads
    /// records only; builds nothing.
    fn lookup_in(&self, slot: &Slot) -> Result<Lookup<Self::Record>> {
        Ok(slot.lookup(|r| self.check(slot, r)))
    }

    /// The valid record of the current inputs, or why the stage must run.
    fn lookup(&self) -> Result<Lookup<Self::Record>> {
        self.lookup_in(&self.slot()?)
    }

    /// The valid record of `slot`, or `build`'s, made under the stage's
    /// lock and looked up again once the lock is held: a build that waited
    /// for another one of the same inputs finds its output. The bool says
    /// whether it was up to date.
    fn get_or_build(&self, slot: &Slot, wait: Wait) -> Result<(Self::Record, bool)> {
        // Without the lock first: a no-op stays a no-op while another build
        // holds it.
        if let Lookup::Hit(rec) = self.lookup_in(slot)? {
            return Ok((rec, true));
        }
        let _lock = lock::acquire(self.cache(), self.name(), wait)?;
        match self.lookup_in(slot)? {
            Lookup::Hit(rec) => Ok((rec, true)),
            Lookup::Miss { .. } => Ok((self.build(slot)?, false)),
        }
    }

    /// The stage's record: cached, or built. Remembers the inputs as the
    /// profile's last run, for `plan`'s "why".
    fn run(&self, wait: Wait) -> Result<Self::Record> {
        let slot = self.slot()?;
        let (rec, cached) = self.get_or_build(&slot, wait)?;
        if cached {
            self.say_up_to_date(&rec);
        }
        slot.remember()?;
        Ok(rec)
    }

    /// `[agent] up to date: <file> (<about>)`.
    fn say_up_to_date(&self, rec: &Self::Record) {
        eprintln!(
            "[{}] up to date: {} ({})",
            self.name(),
            self.output(rec).display(),
            self.about(rec)
        );
    }
}
