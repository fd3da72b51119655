//! The builder: what `cargo xtask dist` runs to make the dump tool from a
//! profile, one module per stage (`kernel`, `agent`, `initramfs`, each a
//! [`stage::Stage`]; then `budget` and `sign`), and the tasks around it
//! (`dist/`: `plan`, `size`, `install`; `agent`, `fetch`, `package`).
//!
//! This crate never depends on the lab (`zfcpdump-lab`): Cargo enforces
//! that the product's builder can be used, and packaged, without the
//! harness that judges it.

pub mod agent;
pub mod archive;
pub mod budget;
pub mod cache;
pub mod cmd;
pub mod dist;
pub mod fetch;
pub mod initramfs;
pub mod kconfig;
pub mod kernel;
pub mod lock;
pub mod package;
pub mod profile;
pub mod provision;
pub mod sign;
pub mod stage;
pub mod util;
pub mod vendor;
