//! The world's settings ([`Config`]) and why a run fails ([`SimError`]).

use std::time::Duration;

use crate::faults::Faults;

/// The fragmentation odds a world draws from when [`Config::fragment`] is on: a segment is
/// split with probability `1/odds` (`0`: never). Choice 0 is "never", so a shrunk failure
/// keeps fragmentation only if it needs it.
pub const FRAGMENT_ODDS: [u64; 4] = [0, 16, 4, 2];

/// Network and run settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Smallest one-way latency of a segment.
    pub latency_min: Duration,
    /// Largest one-way latency of a segment.
    pub latency_max: Duration,
    /// Whether writes may be split into several segments (on by default: arbitrary
    /// fragmentation is the default hardship for every parser).
    ///
    /// How often is itself drawn per world, swarm-style: each seed splits one segment in 2,
    /// one in 4, one in 16, or none ([`FRAGMENT_ODDS`]). Runs of varied intensity find
    /// more than runs all at full strength — a parser bug that needs one write split among
    /// many whole ones shows at low rates — and the gentler seeds run fewer events (an echo
    /// re-fragments what it echoes, so the cost compounds).
    pub fragment: bool,
    /// Receive window per direction, in bytes: a writer may have this much sent and not yet
    /// acknowledged as read, so a reader that stops reading stalls its writer. The reader's
    /// acknowledgements cross the link like any packet (on its data, or as a window update
    /// once half a window is owed): they take a latency, and a partition holds them.
    pub window: usize,
    /// Whether same-time events on different hosts may be reordered.
    pub reorder: bool,
    /// The arrival grid: every packet arrives at a multiple of this (zero: no grid, the
    /// latency alone decides, to the microsecond). A coarse grid (1 ms, 5 ms) makes packets
    /// sent by different hosts at slightly different times arrive at the same instant, so
    /// that races between them are tried on purpose rather than by the luck of equal
    /// latencies. The order of packets on one connection is kept.
    pub quantum: Duration,
    /// PCT mode (probabilistic concurrency testing) with this depth: when events on
    /// different hosts are due at the same instant, the one on the host of highest priority
    /// runs first; each host draws a random priority when it first competes, and at `depth`
    /// change points (drawn among the first competitions) the host that won drops to the
    /// lowest priority. `None`: the decision source picks uniformly. See [`crate::pct`].
    pub pct: Option<u32>,
    /// The step budget: a run that takes more steps fails (a `call_later(0)` loop).
    pub max_steps: u64,
    /// The simulated-time limit.
    pub max_time: Duration,
    /// Faults.
    pub faults: Faults,
    /// Keep the full trace (otherwise only its hash).
    pub trace: bool,
    /// Bytes of each payload a kept trace shows (default [`PREVIEW`](crate::trace::PREVIEW)).
    pub preview: usize,
    /// Fail a run that ends idle with anything left that should not be (open connections,
    /// lost connections still alive, ports listening on stopped hosts): see
    /// [`Sim::leftovers`](crate::Sim::leftovers).
    pub check_clean: bool,
    /// A panic in a protocol fails the run (on by default). Off, the panic is traced and the
    /// connection lost, as on the real reactor, and the run goes on (for testing isolation).
    pub fail_on_panic: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            latency_min: Duration::from_millis(1),
            latency_max: Duration::from_millis(10),
            fragment: true,
            window: 64 * 1024,
            reorder: true,
            quantum: Duration::ZERO,
            pct: None,
            max_steps: 10_000_000,
            max_time: Duration::from_secs(24 * 3600),
            faults: Faults::none(),
            trace: false,
            preview: crate::trace::PREVIEW,
            check_clean: false,
            fail_on_panic: true,
        }
    }
}

/// Why a run failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimError {
    /// User code panicked.
    Panic {
        /// The host.
        host: String,
        /// The connection, if the panic was in a protocol.
        conn: Option<u64>,
        /// The message.
        message: String,
    },
    /// A Deferred failed and nobody handled it.
    Unhandled {
        /// The failure, as text.
        failure: String,
    },
    /// A user invariant did not hold.
    Invariant {
        /// The invariant's name.
        name: String,
        /// What it said.
        message: String,
    },
    /// A liveness deadline passed with its condition false.
    Deadline {
        /// The deadline's name.
        name: String,
    },
    /// The step budget ran out.
    StepBudget {
        /// The budget.
        steps: u64,
    },
    /// The run ended idle with something left that should not be (see
    /// [`Config::check_clean`]).
    DirtyEnd {
        /// What was left, one line each.
        left: Vec<String>,
    },
    /// The run outgrew what the simulator can index: over 2^40 scheduled calls and
    /// segments, 2^24 segments in flight at once, or 2^24 hosts.
    Capacity {
        /// Which bound.
        what: &'static str,
    },
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimError::Panic {
                host,
                conn: Some(c),
                message,
            } => write!(f, "panic on {host} in connection c{c}: {message}"),
            SimError::Panic { host, message, .. } => write!(f, "panic on {host}: {message}"),
            SimError::Unhandled { failure } => write!(f, "unhandled error in Deferred: {failure}"),
            SimError::Invariant { name, message } => {
                write!(f, "invariant '{name}' violated: {message}")
            }
            SimError::Deadline { name } => write!(f, "liveness deadline missed: {name}"),
            SimError::StepBudget { steps } => {
                write!(f, "step budget of {steps} exhausted (a runaway loop?)")
            }
            SimError::DirtyEnd { left } => {
                write!(f, "unclean end: {} left", left.len())?;
                for l in left {
                    write!(f, "\n  - {l}")?;
                }
                Ok(())
            }
            SimError::Capacity { what } => write!(f, "simulator capacity exceeded: {what}"),
        }
    }
}

impl std::error::Error for SimError {}
