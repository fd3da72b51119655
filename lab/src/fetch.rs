//! The lab's part of `fetch`: the reference readers' and the crash lab
//! guest's s390x sysroots, downloaded and unpacked once into the cache.

use anyhow::Result;
use zfcpdump_builder::util;

use crate::readers::sysroot;

/// Brings every sysroot the tests, e2e and the crash lab run into the cache.
pub fn sysroots() -> Result<()> {
    let cache = util::cache_dir(&util::project_root());
    for sysroot in sysroot::ALL {
        let tools = sysroot.unpacked_root(&cache, false)?;
        eprintln!(
            "[fetch] {} readers for the tests: {}",
            sysroot.label,
            tools.display()
        );
    }
    Ok(())
}
