//! zfcpdump-format's integration tests on real kernels' data (`../fixtures/`),
//! in one binary.

mod filter_fixtures;
mod kdump_layouts;
