//! The compile: the external variant's .config built in the `O=`
//! directory that the compile key names, with the progress line; its
//! record (`stage.json` there) says it is complete.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::ccache::{CompileCache, CompileReport, Setting, Stats};
use super::{CompileRecord, ConfigureRecord, Kernel, Progress, SourceId, run_logged};
use crate::cache::{read_json, write_json};
use crate::util;

/// ccache's statistics log of the last make in an `O=` directory.
pub(super) const STATS_LOG: &str = "ccache-stats.log";

impl Kernel<'_> {
    /// The `O=` directory of a compile, named by its key.
    pub(super) fn build_dir(&self, compile_key: &str) -> PathBuf {
        self.builds_root()
            .join(format!("build-{}", &compile_key[..16]))
    }

    /// Where the `O=` directories go. For a tarball, inside its unpacked
    /// tree, each a direct child of the source root: kbuild then names the
    /// source relatively (`srctree := ..`), so no compiler argument holds
    /// the checkout's path and the compile cache hits across checkouts and
    /// machines (ccache's base_dir rewrites `-I<path>`, but not the
    /// `-Wa,-I<srctree>/...` that arch/s390 passes). A source dir is not
    /// ours to write into: its compiles go beside the stage's records.
    fn builds_root(&self) -> PathBuf {
        match self.source_id().ok().and_then(|s| s.sha256) {
            Some(sum) => {
                let dest = self.tarball_dest(&sum);
                super::source::unpacked_root(&dest).unwrap_or(dest)
            }
            None => self.cache.clone(),
        }
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
        let setting = Setting::of(self.profile);
        eprintln!(
            "[kernel] compiling in {} with -j{jobs}; log: {}\n[kernel] compile cache: {}",
            obj.display(),
            log.display(),
            setting.describe()
        );
        let source = self.source_id()?;
        let stats_log = obj.join(STATS_LOG);
        let _ = fs::remove_file(&stats_log);
        let objects = self.make_image(
            &src,
            &obj,
            &log,
            "kernel compile",
            &Progress {
                label: "compiling",
                expected: self.expected_objects(&source),
            },
            setting.cache().map(|c| (c, stats_log.as_path())),
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
            compile_cache: setting.cache().is_some(),
        };
        write_json(&obj.join("stage.json"), &rec)?;
        let took = t.elapsed();
        eprintln!(
            "[kernel] compiled {} in {}: {objects} objects",
            rec.release,
            util::fmt_duration(took),
        );
        // The compile is done whatever its statistics say.
        match self.report(&setting, &c.compile_key, &stats_log, &rec.release, took) {
            Ok(r) => r.publish(),
            Err(e) => eprintln!("warning: no compile cache statistics: {e:#}"),
        }
        Ok(rec)
    }

    /// The compile cache's report of a compile that took `took`. A compile
    /// the cache did not serve becomes the cold reference of `key`.
    fn report(
        &self,
        setting: &Setting,
        key: &str,
        stats_log: &Path,
        release: &str,
        took: Duration,
    ) -> Result<CompileReport> {
        let jobs = self.jobs();
        let mut report = CompileReport {
            profile: self.profile.name.clone(),
            release: release.to_string(),
            seconds: took.as_secs_f64(),
            jobs,
            cache: setting.describe(),
            stats: None,
            cold_seconds: None,
        };
        if let Some(cache) = setting.cache() {
            let stats = Stats::read(stats_log)?;
            let cold = if stats.cold() {
                cache.remember_cold(key, jobs, took)?;
                Some(took)
            } else {
                cache.cold_time(key, jobs)
            };
            report.cold_seconds = cold.map(|d| d.as_secs_f64());
            report.stats = Some(stats);
        }
        Ok(report)
    }

    /// `make olddefconfig` then `make -jN bzImage` in `obj`, logged, with the
    /// progress line, CC through `cache` if given: the compile and the link
    /// step both end so. Returns the objects compiled.
    pub(super) fn make_image(
        &self,
        src: &Path,
        obj: &Path,
        log: &Path,
        what: &str,
        progress: &Progress,
        cache: Option<(&CompileCache, &Path)>,
    ) -> Result<u64> {
        run_logged(
            self.make_through(src, obj, cache)?.arg("olddefconfig"),
            log,
            "kernel olddefconfig",
            None,
        )?;
        run_logged(
            self.make_through(src, obj, cache)?
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
        fs::read_dir(self.builds_root())
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("build-"))
            .filter_map(|e| read_json::<CompileRecord>(&e.path().join("stage.json")))
            .filter(|r| r.source.same_tree(source))
            .filter_map(|r| r.objects)
            .max()
    }
}
