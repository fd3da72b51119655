//! The compile: the external variant's .config built in the `O=`
//! directory that the compile key names, with the progress line; its
//! record (`stage.json` there) says it is complete.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use super::{CompileRecord, ConfigureRecord, Kernel, Progress, SourceId, run_logged};
use crate::cache::{read_json, write_json};
use crate::util;

impl Kernel<'_> {
    pub(super) fn build_dir(&self, compile_key: &str) -> PathBuf {
        self.cache.join(format!("build-{}", &compile_key[..16]))
    }

    /// The record of a finished compile.
    pub(super) fn compiled(&self, compile_key: &str) -> Option<CompileRecord> {
        let rec: CompileRecord = read_json(&self.build_dir(compile_key).join("stage.json"))?;
        (rec.compile_key == compile_key).then_some(rec)
    }

    /// Compiles the external variant's .config into the `O=` directory.
    pub(super) fn compile(&self, c: &ConfigureRecord) -> Result<CompileRecord> {
        let t = Instant::now();
        let src = self.source_root()?;
        let obj = self.build_dir(&c.compile_key);
        fs::create_dir_all(&obj)?;
        let _ = fs::remove_file(obj.join("stage.json"));
        fs::copy(self.config_path(&c.configure_key), obj.join(".config"))?;
        let log = obj.join("make.log");
        let _ = fs::remove_file(&log);
        let jobs = self.jobs();
        eprintln!(
            "[kernel] compiling in {} with -j{jobs}; log: {}",
            obj.display(),
            log.display()
        );
        let source = self.source_id()?;
        let objects = self.make_image(
            &src,
            &obj,
            &log,
            "kernel compile",
            &Progress {
                label: "compiling",
                expected: self.expected_objects(&source),
            },
        )?;
        let release = fs::read_to_string(obj.join("include/config/kernel.release"))
            .context("cannot read kernel.release")?
            .trim()
            .to_string();
        let rec = CompileRecord {
            compile_key: c.compile_key.clone(),
            release,
            source,
            objects: Some(objects),
        };
        write_json(&obj.join("stage.json"), &rec)?;
        eprintln!(
            "[kernel] compiled {} in {}: {objects} objects",
            rec.release,
            util::fmt_duration(t.elapsed()),
        );
        Ok(rec)
    }

    /// `make olddefconfig` then `make -jN bzImage` in `obj`, logged, with the
    /// progress line: the compile and the link step both end so. Returns
    /// the objects compiled.
    pub(super) fn make_image(
        &self,
        src: &Path,
        obj: &Path,
        log: &Path,
        what: &str,
        progress: &Progress,
    ) -> Result<u64> {
        run_logged(
            self.make(src, obj).arg("olddefconfig"),
            log,
            "kernel olddefconfig",
            None,
        )?;
        run_logged(
            self.make(src, obj)
                .arg(format!("-j{}", self.jobs()))
                .arg("bzImage"),
            log,
            what,
            Some(progress),
        )
    }

    fn jobs(&self) -> usize {
        match self.profile.kernel.jobs {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n as usize,
        }
    }

    /// How many objects an earlier compile of the same source made, for the
    /// progress line's percentage: the largest count on record.
    pub(super) fn expected_objects(&self, source: &SourceId) -> Option<u64> {
        fs::read_dir(&self.cache)
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("build-"))
            .filter_map(|e| read_json::<CompileRecord>(&e.path().join("stage.json")))
            .filter(|r| r.source.sha256 == source.sha256 && r.source.path == source.path)
            .filter_map(|r| r.objects)
            .max()
    }
}
