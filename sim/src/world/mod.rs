//! The world: the virtual clock, the hosts, the network, the decision source, the trace and
//! the checks, and the loop that runs them.
//!
//! Time jumps to the next event. Each host has its own timer queue (its reactor's), all
//! sharing one sequence counter with the link's in-flight queue, so that events on
//! different hosts have one global first-in, first-out order at equal times. Each step runs
//! the earliest event; when events on *different* hosts are due at the same instant, the
//! decision source may pick which goes first (choice 0: FIFO). Events on the same host
//! always run in FIFO order: that is the reactor contract.
//!
//! After every event, connections that asked to be flushed (a write, a close, a resumed
//! reader) are flushed, outside any user callback: a real reactor flushes when the socket is
//! writable, never inside `write`.
//!
//! The world is split by concept: [`config`] (settings, errors), [`builder`] and [`sim`]
//! (the public API: building a world and driving it), [`sched`] (the scheduler: what runs
//! next, and one step), and this module, the state they share.

mod builder;
mod clean;
mod config;
mod sched;
mod sim;
#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::time::Duration;

use torsion::reactor::TimerQueue;

pub use builder::{SimBuilder, PORTFOLIO_HORIZON, PORTFOLIO_PCT, PORTFOLIO_QUANTA};
pub use clean::Leftover;
pub(crate) use clean::{LostConn, LostConns};
pub use config::{Config, SimError, FRAGMENT_ODDS};
pub use sim::{Sim, Stop};

/// `d` in nanoseconds, saturating at `u64::MAX` (about 584 years, the end of simulated
/// time) instead of truncating: a limit or a fault time past the clock's range must mean
/// "never", not wrap to a time near zero.
pub(crate) fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

use crate::decide::Decisions;
use crate::host::{Host, HostState};
use crate::keyed::{At, MAX_INDEX, MAX_SEQ};
use crate::net::Net;
use crate::trace::{Event, Kind, Trace};

/// A user invariant: its name, when it is evaluated, and the check.
pub(crate) struct Invariant {
    pub(crate) name: String,
    pub(crate) cadence: Cadence,
    /// The step count (for [`Cadence::EverySteps`]) or simulated nanoseconds (for
    /// [`Cadence::Every`]) at which it was last evaluated.
    pub(crate) last: Cell<u64>,
    pub(crate) check: Box<dyn Fn() -> Result<(), String>>,
}

/// When an invariant (see [`Sim::invariant_with`](crate::Sim::invariant_with)) is evaluated.
///
/// Evaluating after every event catches a violation at the event that caused it, which
/// makes the trace end right there; that is the default. An invariant that is costly to
/// evaluate can run less often: whatever the cadence, every invariant is also evaluated
/// when a run stops (idle, time reached, or its condition met), so a violation that
/// persists to the end is never missed, only reported later than the event that caused it.
/// A violation that appears and heals between two evaluations is missed: choose the
/// cadence with that in mind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cadence {
    /// After every event.
    EveryStep,
    /// After every `n`-th event (`0` and `1` mean every event).
    EverySteps(u64),
    /// After the first event at least this much simulated time after the last evaluation.
    Every(Duration),
    /// Only when a run stops.
    AtEnd,
}

pub(crate) struct World {
    pub(crate) cfg: Config,
    /// This world's fragmentation: a segment is split with probability `1/split_odds`
    /// (`0`: never). See [`Config::fragment`].
    pub(crate) split_odds: u64,
    pub(crate) now: Cell<u64>,
    pub(crate) seq: Rc<Cell<u64>>,
    pub(crate) decide: RefCell<Decisions>,
    pub(crate) hosts: RefCell<Vec<Host>>,
    pub(crate) net: Net,
    pub(crate) trace: RefCell<Trace>,
    pub(crate) errors: RefCell<Vec<SimError>>,
    pub(crate) steps: Cell<u64>,
    pub(crate) invariants: RefCell<Vec<Invariant>>,
    pub(crate) next_conn: Cell<u64>,
    /// World-level events (fault schedules, deadlines), on the shared sequence.
    pub(crate) sys: TimerQueue,
    /// Every (global time, sequence, host) ever scheduled, as an index over the hosts'
    /// queues (`SYS` for the world's own). Entries whose call was cancelled or moved are
    /// found stale and dropped when they surface: see [`sched`].
    pub(crate) wakeups: RefCell<BinaryHeap<At>>,
    /// Calls from other threads (`call_from_thread`). A simulated world has no threads of
    /// its own; these come from the test harness, and run before the next event.
    pub(crate) thread_calls: torsion::reactor::ThreadCallQueue,
    /// Scratch space for the scheduler.
    pub(crate) scratch: RefCell<sched::Scratch>,
    /// The `buggify!` sites this run has enabled.
    pub(crate) buggify: crate::buggify::Sites,
    /// PCT mode's state (see [`Config::pct`]).
    pub(crate) pct: RefCell<Option<crate::pct::Pct>>,
}

/// The host index of the world's own queue in `wakeups`.
pub(crate) const SYS: usize = usize::MAX;

/// `SYS` as a wakeup entry's index.
pub(crate) const SYS_SLOT: u32 = MAX_INDEX - 1;

/// The queue a wakeup entry names.
pub(crate) fn queue_of(e: &At) -> usize {
    match e.index() {
        SYS_SLOT => SYS,
        i => i as usize,
    }
}

impl World {
    pub(crate) fn record(&self, host: Option<usize>, conn: Option<u64>, kind: Kind) {
        self.trace.borrow_mut().push(Event {
            time: self.now.get(),
            host,
            conn,
            kind,
        });
    }

    pub(crate) fn record_data(&self, host: usize, conn: Option<u64>, recv: bool, data: &[u8]) {
        self.trace
            .borrow_mut()
            .push_data(self.now.get(), Some(host), conn, recv, data);
    }

    pub(crate) fn fail(&self, error: SimError) {
        let what = error.to_string();
        self.record(None, None, Kind::CheckFailed { what });
        self.errors.borrow_mut().push(error);
    }

    /// Indexes a call scheduled at global time `at` on queue `index` (a host, or `SYS`).
    pub(crate) fn wake(&self, at: u64, seq: u64, index: usize) {
        if !self.seq_fits(seq) {
            return;
        }
        let slot = if index == SYS { SYS_SLOT } else { index as u32 };
        if index != SYS && index >= SYS_SLOT as usize {
            self.fail(SimError::Capacity { what: "2^24 hosts" });
        } else {
            self.wakeups.borrow_mut().push(At::new(at, seq, slot));
        }
    }

    /// Whether `seq` fits a heap entry; a run that outgrows the sequence space fails.
    pub(crate) fn seq_fits(&self, seq: u64) -> bool {
        let fits = seq < MAX_SEQ;
        if !fits {
            self.fail(SimError::Capacity {
                what: "2^40 scheduled calls and segments",
            });
        }
        fits
    }

    pub(crate) fn choose(&self, n: u64) -> u64 {
        self.decide.borrow_mut().choose(n)
    }

    pub(crate) fn chance(&self, ppm: u32) -> bool {
        self.decide.borrow_mut().chance(ppm)
    }

    pub(crate) fn host(&self, index: usize) -> Option<Host> {
        self.hosts.borrow().get(index).cloned()
    }

    /// Runs `f` on host `index`'s state under a short borrow of the host table (`f` must not
    /// run user code, which may add hosts).
    pub(crate) fn with_host<R>(&self, index: usize, f: impl FnOnce(&HostState) -> R) -> Option<R> {
        self.hosts.borrow().get(index).map(|h| f(&h.st))
    }

    /// A host's name, or "" for an index no host has.
    pub(crate) fn host_name(&self, index: usize) -> String {
        self.host(index)
            .map(|h| h.name().to_string())
            .unwrap_or_default()
    }

    /// A latency draw within the configured range (whole microseconds), in nanoseconds.
    pub(crate) fn latency(&self) -> u64 {
        let micros = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let (lo, hi) = (micros(self.cfg.latency_min), micros(self.cfg.latency_max));
        self.decide.borrow_mut().range(lo, hi).saturating_mul(1_000)
    }
}
