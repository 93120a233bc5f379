//! The battery's planted bugs: small protocols written against torsion's public API, each
//! with a correct twin, and a simulated body whose invariants the buggy version violates and
//! the twin keeps.
//!
//! The measure of the explorer is how many seeds of `check()`'s default world it takes to
//! find each bug ([`seeds_to_find`]): what a user who writes `check(...)` with no
//! configuration gets. Bugs that need a fault (a reset, a partition, a slow answer) also
//! name the swarm world a user would opt into for them (swarm over the body's hosts and the
//! span of its workload), measured separately ([`seeds_to_find_with`]).
//!
//! This module is shared by the `battery` test binary and the `hunt` benchmark, which
//! includes it by path; it uses only the public APIs of torsion and torsion-sim.

use std::time::Duration;

use torsion::protocol::RetryPolicy;
use torsion_sim::{check::sweep, Options, Report, Sim, SimBuilder};

pub mod delimiter_split;
pub mod lost_on_reset;
pub mod lost_update;
pub mod producer_pause;
pub mod retry_double_apply;
pub mod split_brain;
pub mod stale_read;
pub mod timeout_after_close;

/// Which version of a protocol a body runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// The planted bug.
    Buggy,
    /// The correct twin.
    Twin,
}

/// One planted bug.
pub struct Bug {
    /// A short name (for bench lines and test names).
    pub name: &'static str,
    /// The simulated body: hosts, workload, invariants, and the run.
    pub body: fn(&Sim, Variant),
    /// For a bug that needs a fault: the swarm world a user would opt into for it.
    pub swarm: Option<fn() -> SimBuilder>,
}

/// `check()`'s world: what a user gets with no configuration (the default portfolio).
pub fn default_world() -> SimBuilder {
    Sim::builder().portfolio()
}

/// The battery.
pub const BUGS: [Bug; 8] = [
    lost_update::BUG,
    retry_double_apply::BUG,
    timeout_after_close::BUG,
    lost_on_reset::BUG,
    delimiter_split::BUG,
    split_brain::BUG,
    stale_read::BUG,
    producer_pause::BUG,
];

/// A quick reconnect policy for the battery's clients: 100 ms, then up to 1 s.
pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        ..RetryPolicy::default()
    }
}

/// Looks a bug up by name.
pub fn bug(name: &str) -> &'static Bug {
    match BUGS.iter().find(|b| b.name == name) {
        Some(b) => b,
        None => panic!("no bug named {name} in the battery"),
    }
}

/// Sweep options for the battery: no shrinking, no replay files, the environment's job count.
fn options(name: &str, start: u64, seeds: u64) -> Options {
    let mut o = Options::new(name);
    o.start = start;
    o.seeds = seeds;
    o.shrink = false;
    o.replay_dir = None;
    o
}

/// Sweeps the buggy version over seeds `start_offset..start_offset + limit` of `check()`'s
/// default world, and returns the first failing seed's index relative to `start_offset`
/// (so a bug found by the first seed tried is `Some(0)`), or `None` if no seed fails.
pub fn seeds_to_find(bug: &Bug, start_offset: u64, limit: u64) -> Option<u64> {
    seeds_to_find_with(bug, default_world, start_offset, limit)
}

/// [`seeds_to_find`] in the worlds `builder` makes.
pub fn seeds_to_find_with(
    bug: &Bug,
    builder: fn() -> SimBuilder,
    start_offset: u64,
    limit: u64,
) -> Option<u64> {
    let body = bug.body;
    let summary = sweep(
        &options(bug.name, start_offset, limit),
        &builder,
        &move |sim: &Sim| body(sim, Variant::Buggy),
    );
    summary.failure.map(|r| r.seed - start_offset)
}

/// Sweeps the twin over seeds `start..start + seeds` of the worlds `builder` makes; the
/// first failure (shrunk), if any.
pub fn twin_failure(
    bug: &Bug,
    builder: fn() -> SimBuilder,
    start: u64,
    seeds: u64,
) -> Option<Report> {
    let body = bug.body;
    let mut opts = options(bug.name, start, seeds);
    opts.shrink = true;
    let summary = sweep(&opts, &builder, &move |sim: &Sim| body(sim, Variant::Twin));
    summary.failure
}
