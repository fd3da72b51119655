//! The profile fuzz target's oracle and scratch directory live in the fuzz
//! crate (`fuzz/src/lib.rs`, a workspace of its own whose build needs
//! libFuzzer); their unit tests run here, in the fast tier, against this
//! crate's loader.

#[allow(dead_code)] // the fuzz target uses what these tests do not
#[path = "../../../../fuzz/src/lib.rs"]
mod fuzz_oracle;
