//! The agent's integration tests, in one binary: the host build in tool
//! mode against generated vmcores and prepared disk images, and (slow tier)
//! the s390x build under qemu-user.

mod common;

mod binary;
mod dump;
mod filtered;
mod hsa;
mod ipl;
mod order;
mod s390x;
