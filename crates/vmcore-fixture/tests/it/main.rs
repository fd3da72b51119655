//! vmcore-fixture's integration tests, in one binary.

mod common;

mod cli;
mod elf;
mod external;
mod memory;
