//! The integration tests of the command line, in one binary (one link on
//! two cores instead of one per file). Each module is one concern; the
//! slow ones sit behind `test_tier::slow` (CONTRIBUTING.md).

mod common;

mod bench;
mod builtin;
mod dist;
mod kernel;
mod package;
mod preflight;
mod readers;
mod s390tools;
mod sign;
mod tidy;
