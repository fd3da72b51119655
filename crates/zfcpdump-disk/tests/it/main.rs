//! The integration tests of `zfcpdump-disk`, in one binary.

mod cli;
