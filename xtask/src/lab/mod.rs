//! The lab: the verification harness around the builder's product. QEMU
//! guests, the real s390-tools as reference readers, zipl disks, vmcore
//! sources and the checks of a dump, and the tasks on top of them: `boot`
//! (smoke test), `e2e` and `bench`.

pub mod bench;
pub mod boot;
pub mod e2e;
pub mod s390tools;
