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
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::time::Duration;

use torsion::driver::TimerQueue;

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
use crate::keyed::MAX_SEQ;
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
    /// Hosts by name, and by address (the first host that has it, should two share one).
    pub(crate) names: RefCell<BTreeMap<String, usize>>,
    pub(crate) addrs: RefCell<BTreeMap<Ipv4Addr, usize>>,
    pub(crate) net: Net,
    pub(crate) trace: RefCell<Trace>,
    pub(crate) errors: RefCell<Vec<SimError>>,
    pub(crate) steps: Cell<u64>,
    pub(crate) invariants: RefCell<Vec<Invariant>>,
    pub(crate) next_conn: Cell<u64>,
    /// World-level events (fault schedules, deadlines), on the shared sequence.
    pub(crate) sys: TimerQueue,
    /// The scheduler's index of every queue's earliest event (see [`sched`]).
    pub(crate) sched: RefCell<sched::Sched>,
    /// Calls from other threads (`call_from_thread`). A simulated world has no threads of
    /// its own; these come from the test harness, and run before the next event.
    pub(crate) thread_calls: torsion::driver::ThreadCallQueue,
    /// The `buggify!` sites this run has enabled.
    pub(crate) buggify: crate::buggify::Sites,
    /// PCT mode's state (see [`Config::pct`]).
    pub(crate) pct: RefCell<Option<crate::pct::Pct>>,
}

/// The queue index of the world's own queue (hosts are numbered from 0).
pub(crate) const SYS: usize = usize::MAX;

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

    /// A TCP segment leaves connection `conn` of `host` for the end `to`.
    pub(crate) fn record_segment(
        &self,
        host: usize,
        conn: u64,
        data: &[u8],
        to: (usize, u64),
        delivered: bool,
    ) {
        self.trace
            .borrow_mut()
            .push_segment(self.now.get(), host, conn, data, to, delivered);
    }

    /// A datagram leaves `host` (`recv == false`: returns its message in a full trace) or
    /// reaches it (`message`: the one its send returned).
    pub(crate) fn record_datagram(
        &self,
        host: usize,
        recv: bool,
        data: &[u8],
        message: Option<usize>,
    ) -> Option<usize> {
        self.trace
            .borrow_mut()
            .push_datagram(self.now.get(), host, recv, data, message)
    }

    pub(crate) fn fail(&self, error: SimError) {
        let what = error.to_string();
        self.record(None, None, Kind::CheckFailed { what });
        self.errors.borrow_mut().push(error);
    }

    /// Notes that the earliest event of queue `index` (a host's timers and the packets
    /// coming to it, or `SYS`) may have changed; the scheduler looks again before the next
    /// step.
    pub(crate) fn touch(&self, index: usize) {
        let touched = self.sched.borrow_mut().touch(index);
        if let Err(e) = touched {
            self.fail(e);
        }
    }

    /// A timer queue changed (a call scheduled, moved or cancelled on queue `index`): the
    /// scheduler looks at it again, and a run whose calls outgrow the sequence space fails.
    pub(crate) fn timers_changed(&self, index: usize) {
        // The last sequence drawn is one below the counter.
        if self.seq_fits(self.seq.get().saturating_sub(1)) {
            self.touch(index);
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

    /// The host named `name`, or else the one whose address reads `name`.
    pub(crate) fn resolve(&self, name: &str) -> Option<usize> {
        if let Some(&i) = self.names.borrow().get(name) {
            return Some(i);
        }
        // Only an address written as the host's own would be (no leading zeros, no spaces).
        let ip: Ipv4Addr = name.parse().ok()?;
        if ip.to_string() != name {
            return None;
        }
        self.host_at(ip)
    }

    /// The (first) host with address `ip`.
    pub(crate) fn host_at(&self, ip: Ipv4Addr) -> Option<usize> {
        self.addrs.borrow().get(&ip).copied()
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
