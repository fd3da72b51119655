//! The link step: one variant's image from the shared compile.
//!
//! The compile is always of the external variant's .config. A profile with
//! `initramfs.builtin` adds `CONFIG_INITRAMFS_SOURCE` (and, for an
//! uncompressed archive, `CONFIG_INITRAMFS_COMPRESSION_NONE`), puts the
//! initramfs stage's archive at a stable path inside the `O=` directory and
//! runs make again: kbuild rebuilds `usr/` and relinks, nothing else, since
//! configure checked that only `CONFIG_INITRAMFS_*` options differ.
//!
//! Each variant's image and vmlinux are copied out under their link key,
//! because the next variant's link in the same `O=` directory replaces them.

use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::ccache::Setting;
use super::compile::STATS_LOG;
use super::{
    CompileRecord, ConfigureRecord, Embedded, Kernel, KernelRecord, Progress, footprint, run_logged,
};
use crate::cache::{Inputs, Slot};
use crate::kconfig::{self, Config, Requirement};
use crate::profile::Compression;
use crate::util;

/// Bump when the link step changes what it produces.
const LINK_VERSION: &str = "link-1";

/// The option that embeds the archive.
pub const EMBEDDED_OPTION: &str = "CONFIG_INITRAMFS_SOURCE";

/// The archive's name in the `O=` directory, where make runs, so the
/// relative `CONFIG_INITRAMFS_SOURCE` finds it and names no build path. A
/// `.cpio.<ext>` suffix makes kbuild embed it as it is, not compress it
/// again.
pub fn embedded_name(c: Compression) -> String {
    let ext = match c {
        Compression::Gzip => ".gz",
        Compression::Xz => ".xz",
        Compression::Zstd => ".zst",
        Compression::None => "",
    };
    format!("zfcpdump-initramfs.cpio{ext}")
}

impl Kernel<'_> {
    /// The options a built-in initramfs adds to the compile's .config.
    pub fn link_requirements(&self) -> Vec<Requirement> {
        let i = &self.profile.initramfs;
        if !i.builtin {
            return Vec::new();
        }
        let origin = format!(
            "kernel stage (initramfs.builtin = true; initramfs.compression = {})",
            i.compression
        );
        let mut reqs = vec![Requirement {
            option: EMBEDDED_OPTION.into(),
            value: format!("\"{}\"", embedded_name(i.compression)),
            origin: origin.clone(),
        }];
        if i.compression == Compression::None {
            // Otherwise kbuild gzips a plain .cpio.
            reqs.push(Requirement {
                option: "CONFIG_INITRAMFS_COMPRESSION_NONE".into(),
                value: "y".into(),
                origin,
            });
        }
        reqs
    }

    /// The link .config: the compile's final one plus the built-in options,
    /// through olddefconfig, checked, and differing only in
    /// `CONFIG_INITRAMFS_*` so that the compile can be shared.
    pub(super) fn configure_link(
        &self,
        src: &Path,
        scratch: &Path,
        compile_text: &str,
        reqs: &[Requirement],
        log: &Path,
    ) -> Result<String> {
        let link_reqs = self.link_requirements();
        let dotconfig = scratch.join(".config");
        fs::write(&dotconfig, kconfig::apply(compile_text, &link_reqs))?;
        run_logged(
            self.make(src, scratch)?.arg("olddefconfig"),
            log,
            "kernel olddefconfig (built-in initramfs)",
            None,
        )?;
        let text = fs::read_to_string(&dotconfig)?;
        let all: Vec<Requirement> = reqs.iter().cloned().chain(link_reqs).collect();
        self.check_final(src, &all, &text, &dotconfig)?;
        let others: Vec<String> = Config::parse(compile_text)
            .differing(&Config::parse(&text))
            .into_iter()
            .filter(|o| !o.starts_with("CONFIG_INITRAMFS_"))
            .collect();
        if !others.is_empty() {
            bail!(
                "kernel configuration of profile {:?}: the built-in initramfs options changed \
                 other options too ({}), so the compile cannot be shared with the external \
                 variant; set them in a fragment. Link .config: {}",
                self.profile.name,
                others.join(", "),
                dotconfig.display()
            );
        }
        Ok(text)
    }

    /// The slot of this variant's image: None for a built-in profile whose
    /// initramfs is not built yet (`plan`).
    pub(super) fn link_slot(&self, c: &ConfigureRecord) -> Result<Option<Slot>> {
        let mut i = Inputs::new();
        i.insert("stage".into(), LINK_VERSION.into());
        i.insert("compile".into(), c.compile_key.clone());
        if self.profile.initramfs.builtin {
            let Some(rd) = self.embed else {
                return Ok(None);
            };
            let config = c.link_config_sha256.clone().with_context(|| {
                format!(
                    "configure record {} has no link .config: remove it and build again",
                    self.configure_record_path(&c.configure_key).display()
                )
            })?;
            i.insert("config".into(), config);
            i.insert("embedded".into(), util::sha256_file(&rd.rd)?);
        } else {
            i.insert("config".into(), c.config_sha256.clone());
            i.insert("embedded".into(), "none".into());
        }
        Ok(Some(Slot::new(
            &self.cache.join("images"),
            &self.profile.name,
            i,
        )))
    }

    /// Makes the variant's image in the `O=` directory and copies it out.
    /// `fresh`: the compile just ran, so the external variant's image is
    /// already there.
    pub(super) fn link(
        &self,
        c: &ConfigureRecord,
        slot: &Slot,
        fresh: bool,
    ) -> Result<KernelRecord> {
        let t = Instant::now();
        let obj = self.build_dir(&c.compile_key);
        let compiled: CompileRecord = self
            .compiled(&c.compile_key)
            .context("the link step needs a compile")?;
        let (config_path, config_sha256) = match self.embed {
            Some(_) => (
                self.link_config_path(&c.configure_key),
                c.link_config_sha256.clone().unwrap_or_default(),
            ),
            None => (self.config_path(&c.configure_key), c.config_sha256.clone()),
        };
        let text = fs::read_to_string(&config_path)
            .with_context(|| format!("cannot read {}", config_path.display()))?;
        let embedded = self.place_embedded(&obj)?;
        let log = obj.join("make.log");
        let relink = !(fresh && self.embed.is_none());
        if relink {
            self.relink(&obj, &log, &text, embedded.as_ref(), compiled.compile_cache)?;
        }
        let dir = slot.dir();
        copy_out(&obj, &dir, &text)?;
        let image = dir.join("bzImage");
        let rec = KernelRecord {
            compile_key: c.compile_key.clone(),
            link_key: slot.key.clone(),
            image_size: fs::metadata(&image)?.len(),
            image,
            footprint: footprint(&dir.join("vmlinux"))?,
            vmlinux: dir.join("vmlinux"),
            release: compiled.release,
            config_sha256,
            config: dir.join("config"),
            source: compiled.source,
            build_dir: obj.clone(),
            log,
            embedded,
        };
        slot.store(&rec)?;
        slot.remember()?;
        eprintln!(
            "[kernel] {} {} in {}: image {} bytes, footprint {:#x} ({:.1} MiB)",
            if relink { "linked" } else { "built" },
            rec.release,
            util::fmt_duration(t.elapsed()),
            rec.image_size,
            rec.footprint,
            rec.footprint as f64 / (1 << 20) as f64
        );
        Ok(rec)
    }

    /// Puts the embedded initramfs where `CONFIG_INITRAMFS_SOURCE` names it
    /// in the `O=` directory; rewritten only when it changed, since make
    /// goes by its mtime.
    fn place_embedded(&self, obj: &Path) -> Result<Option<Embedded>> {
        let Some(rd) = self.embed else {
            return Ok(None);
        };
        let name = embedded_name(self.profile.initramfs.compression);
        let data = fs::read(&rd.rd).with_context(|| format!("cannot read {}", rd.rd.display()))?;
        let dest = obj.join(&name);
        if fs::read(&dest).ok().as_deref() != Some(&data[..]) {
            util::write_atomic(&dest, &data)?;
        }
        Ok(Some(Embedded {
            name,
            size: data.len() as u64,
            sha256: util::sha256_bytes(&data),
        }))
    }

    /// The variant's .config into the `O=` directory (when it differs, for
    /// make goes by mtimes), then make: kbuild rebuilds `usr/` and relinks.
    /// CC is the compile's (`cached`: through the compile cache), whatever
    /// the setting is now: kbuild compiles everything again when the
    /// command line changes.
    fn relink(
        &self,
        obj: &Path,
        log: &Path,
        text: &str,
        embedded: Option<&Embedded>,
        cached: bool,
    ) -> Result<()> {
        if fs::read_to_string(obj.join(".config")).ok().as_deref() != Some(text) {
            fs::write(obj.join(".config"), text)?;
        }
        let src = self.source_root()?;
        eprintln!(
            "[kernel] linking {} in {} (the compile is shared; log: {})",
            match embedded {
                Some(e) => format!("the image with the initramfs built in ({} bytes)", e.size),
                None => "the image for an external initramfs".into(),
            },
            obj.display(),
            log.display()
        );
        let cache = Setting::for_relink(cached);
        let stats_log = obj.join(STATS_LOG);
        let _ = fs::remove_file(&stats_log);
        self.make_image(
            &src,
            obj,
            log,
            "kernel link",
            &Progress {
                label: "linking",
                expected: None,
            },
            cache.as_ref().map(|c| (c, stats_log.as_path())),
        )?;
        Ok(())
    }
}

/// Copies the image, vmlinux and .config out of the `O=` directory into
/// `dir`, staged aside and renamed in: a record never names a partial copy.
fn copy_out(obj: &Path, dir: &Path, config: &str) -> Result<()> {
    let tmp = util::tmp_name(dir);
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    fs::copy(obj.join("arch/s390/boot/bzImage"), tmp.join("bzImage"))
        .with_context(|| format!("make succeeded but {} has no bzImage", obj.display()))?;
    fs::copy(obj.join("vmlinux"), tmp.join("vmlinux"))?;
    fs::write(tmp.join("config"), config)?;
    let _ = fs::remove_dir_all(dir);
    fs::rename(&tmp, dir)?;
    Ok(())
}
