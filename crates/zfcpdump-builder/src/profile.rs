//! Profiles: the loader lives in the `zfcpdump-profile` crate (which the
//! fuzz targets use too); this module adds the command-line arguments.

pub use zfcpdump_profile::*;

use clap::Args;

/// Selects and adjusts a profile; shared by every task that builds.
#[derive(Args, Clone, Debug)]
pub struct ProfileArgs {
    /// Profile name (profiles/NAME.toml) or path to a .toml file
    #[arg(long, short, default_value = "default")]
    pub profile: String,
    /// Override a profile key for this run, e.g. --set initramfs.compression=xz
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

impl ProfileArgs {
    pub fn load(&self) -> anyhow::Result<Profile> {
        load(&crate::util::project_root(), &self.profile, &self.sets)
    }
}
