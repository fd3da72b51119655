//! The builder: what `cargo xtask dist` runs, one module per stage, and the
//! tasks around it (`plan`, `size`, `install`, `agent`, `fetch`).

pub mod agent;
pub mod archive;
pub mod budget;
pub mod cache;
pub mod dist;
pub mod fetch;
pub mod initramfs;
pub mod kconfig;
pub mod kernel;
pub mod lock;
pub mod package;
pub mod profile;
pub mod sign;
