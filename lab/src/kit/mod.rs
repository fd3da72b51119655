//! The lab's kit: what the tasks (`e2e`, `crashlab`, `faults`, `bench`,
//! `boot`, `fuzz`, `test`) are made of, below all of them. Nothing here or
//! in the other modules below the tasks (`zipl`, `sources`, `checks`,
//! `readers`, `guest`) imports from a task.
//!
//! - [`ctx`]: the context of a run ([`Ctx`]), one e2e dump run
//!   ([`RunSpec`]), the agent's test overrides, the `[e2e]` progress line;
//! - [`setup`]: the builds, host tools and readers a run needs (e2e's step
//!   1, shared with `faults` and, in part, `crashlab`);
//! - [`parallel`]: the bounded worker pool of the guests run a few at a
//!   time ([`parallel_map`]);
//! - [`verdict`]: what a run got wrong and what held ([`Verdict`]);
//! - [`table`]: the renderer of the reports' tables ([`Table`]).
//!
//! Short host commands (those that run to an answer) go through the
//! builder's runner, [`zfcpdump_builder::cmd`]: status checked, stderr quoted.

pub(crate) mod ctx;
pub(crate) mod parallel;
pub(crate) mod setup;
pub(crate) mod table;
pub(crate) mod verdict;

pub(crate) use ctx::{Ctx, Expect, RunSpec, agent_append, step};
pub(crate) use parallel::parallel_map;
pub(crate) use table::Table;
pub(crate) use verdict::Verdict;
