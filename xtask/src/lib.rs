//! The library behind `cargo xtask`: builds the zfcpdump kernel, agent and
//! initramfs from a profile ([`build`]), and checks the result against the
//! real s390-tools under QEMU ([`lab`]). `main.rs` only parses the command
//! line and calls in here.

pub mod build;
pub mod ci;
pub mod lab;
pub mod provision;
pub mod util;
