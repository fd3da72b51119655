//! The configure step: the options the stage and the profile's fragments
//! request; defconfig, fragments and olddefconfig in a scratch `O=`
//! directory; the requested-vs-final check. Its record, under the
//! configure key, holds the final .config's sha256 and the compile key
//! (and, for a built-in initramfs, the link .config's: [`super::link`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::{ConfigureRecord, Kernel, STAGE_VERSION, run_logged};
use crate::cache::{Inputs, key_of, read_json, write_json};
use crate::kconfig::{self, Config, Requirement};
use crate::util;

impl Kernel<'_> {
    /// The options the stage itself requires, before any fragment.
    pub fn stage_requirements(&self) -> Vec<Requirement> {
        let mut opts = vec![
            ("CONFIG_CRASH_DUMP", "dump mode: /proc/vmcore and the HSA"),
            ("CONFIG_BLK_DEV_INITRD", "the agent runs from an initramfs"),
        ];
        let comp = self.profile.initramfs.compression;
        if let Some(opt) = comp.kernel_option() {
            opts.push((
                opt,
                if self.profile.initramfs.builtin {
                    "unpacks the built-in initramfs"
                } else {
                    "unpacks the initrd"
                },
            ));
        }
        opts.into_iter()
            .map(|(o, why)| Requirement {
                option: o.into(),
                value: "y".into(),
                origin: format!("kernel stage ({why}; initramfs.compression = {comp})"),
            })
            .collect()
    }

    /// Stage requirements then fragments, in order.
    pub fn requirements(&self) -> Result<Vec<Requirement>> {
        let mut reqs = self.stage_requirements();
        for name in &self.profile.kernel.fragments {
            let path = self.fragment_path(name);
            let text = fs::read_to_string(&path).with_context(|| {
                format!(
                    "{}: kernel.fragments: {name:?}: cannot read {}{}",
                    self.profile.origin("kernel.fragments"),
                    path.display(),
                    self.fragment_hint(name)
                )
            })?;
            reqs.extend(kconfig::parse_fragment(name, &text)?);
        }
        kconfig::conflicts(&reqs)?;
        Ok(reqs)
    }

    /// A bare name is looked up in kernel-config/ only; when a file of that
    /// name sits beside one of the profile's files, say how to name it.
    fn fragment_hint(&self, name: &str) -> String {
        if name.contains('/') {
            return String::new();
        }
        self.profile
            .files
            .iter()
            .find(|f| f.with_file_name(name).is_file())
            .map(|f| {
                format!(
                    "; {} sits beside the profile {}: a bare name is looked up in \
                     kernel-config/ only, so write fragments = [\"./{name}\"] there",
                    f.with_file_name(name).display(),
                    f.display()
                )
            })
            .unwrap_or_default()
    }

    pub(super) fn fragment_path(&self, name: &str) -> PathBuf {
        if name.contains('/') {
            PathBuf::from(name)
        } else {
            self.root.join("kernel-config").join(name)
        }
    }

    pub(super) fn configure_record_path(&self, key: &str) -> PathBuf {
        self.cache.join("configs").join(format!("{key}.json"))
    }

    /// The configure record of a configure key, if configure ran.
    pub(super) fn configured(&self, configure_key: &str) -> Option<ConfigureRecord> {
        read_json(&self.configure_record_path(configure_key))
    }

    /// defconfig, fragments, olddefconfig, then the requested-vs-final check.
    pub(super) fn configure(
        &self,
        inputs: &Inputs,
        configure_key: &str,
    ) -> Result<ConfigureRecord> {
        let t = Instant::now();
        let src = self.source_root()?;
        let reqs = self.requirements()?;
        let scratch = self
            .cache
            .join(format!("configure-{}", &configure_key[..16]));
        let _ = fs::remove_dir_all(&scratch);
        fs::create_dir_all(&scratch)?;
        let log = scratch.join("configure.log");
        eprintln!(
            "[kernel] configuring: {} + {} fragment(s)",
            self.profile.kernel.defconfig,
            self.profile.kernel.fragments.len()
        );
        run_logged(
            self.make(&src, &scratch)?
                .arg(&self.profile.kernel.defconfig),
            &log,
            "kernel defconfig",
            None,
        )?;
        let dotconfig = scratch.join(".config");
        let base = fs::read_to_string(&dotconfig)?;
        fs::write(&dotconfig, kconfig::apply(&base, &reqs))?;
        run_logged(
            self.make(&src, &scratch)?.arg("olddefconfig"),
            &log,
            "kernel olddefconfig",
            None,
        )?;
        let final_text = fs::read_to_string(&dotconfig)?;
        self.check_final(&src, &reqs, &final_text, &dotconfig)?;
        let config_sha256 = util::sha256_bytes(final_text.as_bytes());
        let compile_key = self.compile_key(inputs, &config_sha256);
        util::write_atomic(&self.config_path(configure_key), final_text.as_bytes())?;
        let link_config_sha256 = if self.profile.initramfs.builtin {
            let text = self.configure_link(&src, &scratch, &final_text, &reqs, &log)?;
            let saved = self.link_config_path(configure_key);
            util::write_atomic(&saved, text.as_bytes())?;
            Some(util::sha256_bytes(text.as_bytes()))
        } else {
            None
        };
        let rec = ConfigureRecord {
            configure_key: configure_key.into(),
            compile_key,
            config_sha256,
            link_config_sha256,
        };
        write_json(&self.configure_record_path(configure_key), &rec)?;
        let _ = fs::remove_dir_all(&scratch);
        eprintln!(
            "[kernel] configured in {}: all {} requested options hold",
            util::fmt_duration(t.elapsed()),
            reqs.len() + self.link_requirements().len()
        );
        Ok(rec)
    }

    /// The compile key: the final .config and what of the configure
    /// inputs reaches the compiler (source, compiler, CC, make variables).
    fn compile_key(&self, inputs: &Inputs, config_sha256: &str) -> String {
        let mut ckey = Inputs::new();
        ckey.insert("stage".into(), STAGE_VERSION.into());
        ckey.insert("config".into(), config_sha256.into());
        for k in ["source", "compiler", "cc"] {
            ckey.insert(k.into(), inputs.get(k).cloned().unwrap_or_default());
        }
        // The make variables and build environment, as the inputs hold them.
        for (k, v) in inputs.iter().filter(|(k, _)| k.starts_with("make ")) {
            ckey.insert(k.clone(), v.clone());
        }
        key_of(&ckey)
    }

    /// The requested-vs-final check of a .config made by olddefconfig, in
    /// the source at `src`: an option no Kconfig file defines is told apart
    /// from one whose dependencies are off.
    pub(super) fn check_final(
        &self,
        src: &Path,
        reqs: &[Requirement],
        text: &str,
        path: &Path,
    ) -> Result<()> {
        let mismatches = kconfig::check(reqs, &Config::parse(text));
        if mismatches.is_empty() {
            return Ok(());
        }
        let known = kconfig::defined_symbols(src);
        let undefined = kconfig::undefined(&mismatches, &known);
        let mut parts = Vec::new();
        if !undefined.is_empty() {
            let list: Vec<String> = undefined
                .iter()
                .map(|m| format!("  {} (requested by {})", m.req.option, m.req.origin))
                .collect();
            parts.push(format!(
                "{} requested option(s) exist in no Kconfig file of {} (misspelled, or not in \
                 this kernel version; remove them or fix the name):\n{}",
                undefined.len(),
                src.display(),
                list.join("\n")
            ));
        }
        let dropped: Vec<String> = mismatches
            .iter()
            .filter(|m| known.contains(&m.req.option))
            .map(|m| format!("  {m}"))
            .collect();
        if !dropped.is_empty() {
            parts.push(format!(
                "{} requested option(s) did not survive olddefconfig (usually a dependency is \
                 off; add it to the fragment):\n{}",
                dropped.len(),
                dropped.join("\n")
            ));
        }
        bail!(
            "kernel configuration of profile {:?}: {}\nfinal .config: {}",
            self.profile.name,
            parts.join("\n"),
            path.display()
        )
    }

    pub(super) fn config_path(&self, configure_key: &str) -> PathBuf {
        self.cache
            .join("configs")
            .join(format!("{configure_key}.config"))
    }

    pub(super) fn link_config_path(&self, configure_key: &str) -> PathBuf {
        self.cache
            .join("configs")
            .join(format!("{configure_key}.link.config"))
    }
}
