//! The world: the virtual clock, the hosts, the network, the decision source, the trace and
//! the checks, and the loop that runs them.
//!
//! Time jumps to the next event. Each host has its own timer queue (its reactor's), all
//! sharing one sequence counter, so that events on different hosts have one global
//! first-in, first-out order at equal times. Network deliveries are events on the receiving
//! host's queue. Each step runs the earliest event; when events on *different* hosts are due
//! at the same instant, the decision source may pick which goes first (choice 0: FIFO).
//! Events on the same host always run in FIFO order: that is the reactor contract.
//!
//! After every event, connections that asked to be flushed (a write, a close, a resumed
//! reader) are flushed, outside any user callback: a real reactor flushes when the socket is
//! writable, never inside `write`.

use std::cell::{Cell, RefCell};
use std::collections::BinaryHeap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};
use std::time::Duration;

use torsion::defer::{set_unhandled_error_hook, Failure, UnhandledErrorHook};
use torsion::reactor::{Instant, TimerQueue};

use crate::decide::Decisions;
use crate::faults::Faults;
use crate::host::{Host, HostState};
use crate::keyed::{any_at, At, MAX_INDEX, MAX_SEQ};
use crate::net::{Flight, Net};
use crate::trace::{Event, Kind, Trace};

/// Network and run settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Smallest one-way latency of a segment.
    pub latency_min: Duration,
    /// Largest one-way latency of a segment.
    pub latency_max: Duration,
    /// Whether writes may be split into several segments (on by default: arbitrary
    /// fragmentation is the default hardship for every parser).
    pub fragment: bool,
    /// Receive window per direction, in bytes: a reader that stops reading stalls its
    /// writer once this much is in flight or unread.
    pub window: usize,
    /// Whether same-time events on different hosts may be reordered.
    pub reorder: bool,
    /// The step budget: a run that takes more steps fails (a `call_later(0)` loop).
    pub max_steps: u64,
    /// The simulated-time limit.
    pub max_time: Duration,
    /// Faults.
    pub faults: Faults,
    /// Keep the full trace (otherwise only its hash).
    pub trace: bool,
    /// Accept pending timers or open connections at the end of `run_until_idle`.
    pub allow_dirty: bool,
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
            max_steps: 10_000_000,
            max_time: Duration::from_secs(24 * 3600),
            faults: Faults::none(),
            trace: false,
            allow_dirty: true,
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
    /// Timers or connections were left at the end.
    DirtyEnd {
        /// What was left.
        what: String,
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
            SimError::DirtyEnd { what } => write!(f, "unclean end: {what}"),
            SimError::Capacity { what } => write!(f, "simulator capacity exceeded: {what}"),
        }
    }
}

impl std::error::Error for SimError {}

type Invariant = Box<dyn Fn() -> Result<(), String>>;

pub(crate) struct World {
    pub(crate) cfg: Config,
    pub(crate) now: Cell<u64>,
    pub(crate) seq: Rc<Cell<u64>>,
    pub(crate) decide: RefCell<Decisions>,
    pub(crate) hosts: RefCell<Vec<Host>>,
    pub(crate) net: Net,
    pub(crate) trace: RefCell<Trace>,
    pub(crate) errors: RefCell<Vec<SimError>>,
    pub(crate) steps: Cell<u64>,
    pub(crate) invariants: RefCell<Vec<(String, Invariant)>>,
    pub(crate) next_conn: Cell<u64>,
    /// World-level events (fault schedules, deadlines), on the shared sequence.
    pub(crate) sys: TimerQueue,
    /// Every (global time, sequence, host) ever scheduled, as an index over the hosts'
    /// queues (`SYS` for the world's own). Entries whose call was cancelled or moved are
    /// found stale and dropped when they surface: see [`next_due`].
    wakeups: RefCell<BinaryHeap<At>>,
    /// Calls from other threads (`call_from_thread`). A simulated world has no threads of
    /// its own; these come from the test harness, and run before the next event.
    pub(crate) thread_calls: torsion::reactor::ThreadCallQueue,
    /// Scratch space for [`next_due`].
    scratch: RefCell<Scratch>,
    /// The `buggify!` sites this run has enabled.
    pub(crate) buggify: crate::buggify::Sites,
}

/// The host index of the world's own queue in `wakeups`.
pub(crate) const SYS: usize = usize::MAX;

/// `SYS` as a wakeup entry's index.
const SYS_SLOT: u32 = MAX_INDEX - 1;

/// The queue a wakeup entry names.
fn queue_of(e: &At) -> usize {
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

    /// A latency draw within the configured range, in whole microseconds.
    pub(crate) fn latency(&self) -> u64 {
        let lo = self.cfg.latency_min.as_micros() as u64;
        let hi = self.cfg.latency_max.as_micros() as u64;
        let mut us = self.decide.borrow_mut().range(lo, hi);
        if self.chance(self.cfg.faults.spike_ppm) {
            let spike = self.cfg.faults.spike.as_micros() as u64;
            us += self.decide.borrow_mut().range(0, spike);
        }
        us * 1_000
    }
}

/// Builds a [`Sim`].
#[derive(Default)]
pub struct SimBuilder {
    seed: u64,
    choices: Option<Vec<u64>>,
    record: bool,
    cfg: Config,
    swarm: Option<(usize, Duration)>,
}

impl SimBuilder {
    /// Draw choices from this seed (the default is seed 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Replay these recorded choices instead of drawing from a seed.
    pub fn choices(mut self, choices: Vec<u64>) -> Self {
        self.choices = Some(choices);
        self
    }

    /// Record every choice (for replay and shrinking).
    pub fn record(mut self, on: bool) -> Self {
        self.record = on;
        self
    }

    /// The whole configuration.
    pub fn config(mut self, cfg: Config) -> Self {
        self.cfg = cfg;
        self
    }

    /// The latency range of every link.
    pub fn latency(mut self, min: Duration, max: Duration) -> Self {
        self.cfg.latency_min = min;
        self.cfg.latency_max = max.max(min);
        self
    }

    /// Whether writes may be split into several segments.
    pub fn fragment(mut self, on: bool) -> Self {
        self.cfg.fragment = on;
        self
    }

    /// Explicit faults.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.cfg.faults = faults;
        self
    }

    /// Swarm mode: draw a fault mix for `hosts` hosts over `horizon` from the decision source.
    pub fn swarm(mut self, hosts: usize, horizon: Duration) -> Self {
        self.swarm = Some((hosts, horizon));
        self
    }

    /// Keep the full trace.
    pub fn trace(mut self, on: bool) -> Self {
        self.cfg.trace = on;
        self
    }

    /// The step budget.
    pub fn max_steps(mut self, steps: u64) -> Self {
        self.cfg.max_steps = steps;
        self
    }

    /// The simulated-time limit.
    pub fn max_time(mut self, limit: Duration) -> Self {
        self.cfg.max_time = limit;
        self
    }

    /// Whether a panic in a protocol fails the run (see [`Config::fail_on_panic`]).
    pub fn fail_on_panic(mut self, on: bool) -> Self {
        self.cfg.fail_on_panic = on;
        self
    }

    /// Whether leftover timers or connections at the end fail the run.
    pub fn allow_dirty(mut self, allow: bool) -> Self {
        self.cfg.allow_dirty = allow;
        self
    }

    /// Builds the world.
    pub fn build(self) -> Sim {
        let mut decide = match self.choices {
            Some(c) => Decisions::replay(c),
            None => Decisions::seeded(self.seed),
        };
        if self.record {
            decide.start_recording();
        }
        let mut cfg = self.cfg;
        if let Some((hosts, horizon)) = self.swarm {
            cfg.faults = Faults::swarm(&mut decide, hosts, horizon);
        }
        let trace = Trace::new(cfg.trace);
        let seq = Rc::new(Cell::new(0));
        let world = Rc::new(World {
            sys: TimerQueue::with_sequence(seq.clone()),
            cfg,
            now: Cell::new(0),
            seq,
            decide: RefCell::new(decide),
            hosts: RefCell::new(Vec::new()),
            net: Net::default(),
            trace: RefCell::new(trace),
            errors: RefCell::new(Vec::new()),
            steps: Cell::new(0),
            invariants: RefCell::new(Vec::new()),
            next_conn: Cell::new(1),
            wakeups: RefCell::new(BinaryHeap::new()),
            thread_calls: torsion::reactor::ThreadCallQueue::new(None),
            scratch: RefCell::default(),
            buggify: crate::buggify::Sites::default(),
        });
        let w = Rc::downgrade(&world);
        world
            .sys
            .set_push_observer(Some(Rc::new(move |t: Instant, seq| {
                if let Some(w) = w.upgrade() {
                    w.wake(t.as_nanos(), seq, SYS);
                }
            })));
        let weak = Rc::downgrade(&world);
        let hook: UnhandledErrorHook = Rc::new(move |f: &Failure| {
            if let Some(w) = weak.upgrade() {
                w.record(
                    None,
                    None,
                    Kind::Unhandled {
                        failure: f.to_string(),
                    },
                );
                w.errors.borrow_mut().push(SimError::Unhandled {
                    failure: f.to_string(),
                });
            }
        });
        let previous = set_unhandled_error_hook(Some(hook));
        let sim = Sim {
            world,
            previous_hook: RefCell::new(Some(previous)),
        };
        sim.schedule_faults();
        sim
    }
}

/// How a run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// No event is left.
    Idle,
    /// The time asked for was reached.
    TimeReached,
    /// A check failed.
    Failed,
}

/// A simulated world: hosts, network, clock and decisions, driven by a seed.
///
/// ```
/// use std::time::Duration;
/// use torsion::prelude::*;
/// use torsion_sim::Sim;
///
/// let sim = Sim::builder().seed(7).build();
/// let host = sim.host("server");
/// let h = host.clone();
/// host.call_later(Duration::from_secs(1), move || h.log("tick"));
/// sim.run_until_idle();
/// assert_eq!(sim.now().since_epoch(), Duration::from_secs(1));
/// assert!(sim.errors().is_empty());
/// ```
pub struct Sim {
    pub(crate) world: Rc<World>,
    previous_hook: RefCell<Option<Option<UnhandledErrorHook>>>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        // Tear the hosts down first, so that Deferreds dropped with them still report here.
        let hosts = std::mem::take(&mut *self.world.hosts.borrow_mut());
        for h in &hosts {
            h.st.teardown();
        }
        drop(hosts);
        if let Some(previous) = self.previous_hook.borrow_mut().take() {
            set_unhandled_error_hook(previous);
        }
    }
}

impl Sim {
    /// A builder with the default configuration.
    pub fn builder() -> SimBuilder {
        SimBuilder::default()
    }

    /// A world with the default configuration, drawing choices from `seed`.
    pub fn new(seed: u64) -> Sim {
        Sim::builder().seed(seed).build()
    }

    /// The host named `name`, created (with the next address, 10.0.0.1 onwards) if new.
    pub fn host(&self, name: &str) -> Host {
        if let Some(h) = self.world.hosts.borrow().iter().find(|h| h.name() == name) {
            return h.clone();
        }
        let index = self.world.hosts.borrow().len();
        let host = Host {
            st: HostState::new(&self.world, index, name),
        };
        self.world.trace.borrow_mut().name_host(index, name);
        self.world.hosts.borrow_mut().push(host.clone());
        host
    }

    /// All hosts, in creation order.
    pub fn hosts(&self) -> Vec<Host> {
        self.world.hosts.borrow().clone()
    }

    /// The global simulated time.
    pub fn now(&self) -> Instant {
        Instant::from_nanos(self.world.now.get())
    }

    /// The faults of this run (drawn ones in swarm mode).
    pub fn faults(&self) -> &Faults {
        &self.world.cfg.faults
    }

    /// The fault mix in one line, with host names.
    pub fn describe_faults(&self) -> String {
        let names: Vec<String> = self.hosts().iter().map(|h| h.name().to_string()).collect();
        self.world.cfg.faults.describe(&names)
    }

    /// Checks `f` after every event; an `Err` fails the run.
    pub fn invariant(&self, name: &str, f: impl Fn() -> Result<(), String> + 'static) {
        self.world
            .invariants
            .borrow_mut()
            .push((name.to_string(), Box::new(f)));
    }

    /// At simulated time `at` (from the start), `condition` must hold, or the run fails with
    /// a missed liveness deadline.
    pub fn deadline(&self, name: &str, at: Duration, condition: impl Fn() -> bool + 'static) {
        let world = Rc::downgrade(&self.world);
        let name = name.to_string();
        let at = Instant::from_nanos(at.as_nanos() as u64);
        self.world.sys.call_at_boxed(
            at,
            Box::new(move || {
                if let Some(w) = world.upgrade() {
                    if !condition() {
                        w.fail(SimError::Deadline { name });
                    }
                }
            }),
        );
    }

    /// The errors so far.
    pub fn errors(&self) -> Vec<SimError> {
        self.world.errors.borrow().clone()
    }

    /// Fails the run with `error` (for harness code).
    pub fn fail(&self, error: SimError) {
        self.world.fail(error);
    }

    /// The trace so far.
    pub fn trace(&self) -> std::cell::Ref<'_, Trace> {
        self.world.trace.borrow()
    }

    /// The running trace hash.
    pub fn trace_hash(&self) -> u64 {
        self.world.trace.borrow().hash()
    }

    /// The choices made so far, if recording.
    pub fn recorded_choices(&self) -> Option<Vec<u64>> {
        self.world.decide.borrow().recorded().map(<[u64]>::to_vec)
    }

    /// Steps run so far.
    pub fn steps(&self) -> u64 {
        self.world.steps.get()
    }

    fn schedule_faults(&self) {
        let faults = self.world.cfg.faults.clone();
        let at = |d: Duration| Instant::from_nanos(d.as_nanos() as u64);
        for p in faults.partitions {
            let w = Rc::downgrade(&self.world);
            let (a, b, one_way) = (p.a, p.b, p.one_way);
            self.world.sys.call_at_boxed(
                at(p.at),
                Box::new(move || {
                    if let Some(w) = w.upgrade() {
                        crate::net::partition(&w, a, b, one_way);
                    }
                }),
            );
            let w = Rc::downgrade(&self.world);
            self.world.sys.call_at_boxed(
                at(p.at + p.duration),
                Box::new(move || {
                    if let Some(w) = w.upgrade() {
                        crate::net::heal(&w, a, b, one_way);
                    }
                }),
            );
        }
        for c in faults.crashes {
            let w: Weak<World> = Rc::downgrade(&self.world);
            self.world.sys.call_at_boxed(
                at(c.at),
                Box::new(move || {
                    let Some(w) = w.upgrade() else { return };
                    let Some(host) = w.host(c.host) else { return };
                    host.crash();
                    if let Some(after) = c.restart_after {
                        let when = Instant::from_nanos(w.now.get()) + after;
                        w.sys.call_at_boxed(when, Box::new(move || host.restart()));
                    }
                }),
            );
        }
    }

    /// Runs one event. Returns `false` if there was none (or a check failed).
    pub fn step(&self) -> bool {
        let _current = crate::buggify::enter(&self.world);
        step(&self.world, u64::MAX) == StepResult::Ran
    }

    /// Runs until no event is left, a check fails, or a limit is hit. Fails the run on a
    /// dirty end unless allowed.
    pub fn run_until_idle(&self) -> Stop {
        let limit = self.world.cfg.max_time.as_nanos() as u64;
        let stop = self.run_to(limit);
        if stop == Stop::Idle && !self.world.cfg.allow_dirty {
            self.check_clean();
        }
        if self.world.errors.borrow().is_empty() {
            stop
        } else {
            Stop::Failed
        }
    }

    /// Runs for `d` of simulated time.
    pub fn run_for(&self, d: Duration) -> Stop {
        let until = self.world.now.get().saturating_add(d.as_nanos() as u64);
        self.run_to(until)
    }

    /// Runs until `condition` holds (checked after each event), the world is idle, or a
    /// limit is hit. Returns whether the condition held.
    pub fn run_until(&self, condition: impl Fn() -> bool) -> bool {
        let limit = self.world.cfg.max_time.as_nanos() as u64;
        let _current = crate::buggify::enter(&self.world);
        loop {
            if condition() {
                return true;
            }
            match step(&self.world, limit) {
                StepResult::Ran => {}
                _ => return condition(),
            }
        }
    }

    fn run_to(&self, until: u64) -> Stop {
        // User code run in these steps reaches the world's decisions through `buggify!`.
        let _current = crate::buggify::enter(&self.world);
        loop {
            match step(&self.world, until) {
                StepResult::Ran => {}
                StepResult::Idle => return Stop::Idle,
                StepResult::Limit => {
                    self.world.now.set(self.world.now.get().max(until));
                    return Stop::TimeReached;
                }
                StepResult::Failed => return Stop::Failed,
            }
        }
    }

    /// Fails the run if timers or connections are left (Twisted trial's "dirty reactor").
    pub fn check_clean(&self) {
        let mut left = Vec::new();
        for h in self.hosts() {
            let (timers, conns) = h.st.leftovers();
            if timers > 0 {
                left.push(format!("{} pending timer(s) on {}", timers, h.name()));
            }
            if conns > 0 {
                left.push(format!("{} open connection(s) on {}", conns, h.name()));
            }
        }
        if !left.is_empty() {
            self.world.fail(SimError::DirtyEnd {
                what: left.join(", "),
            });
        }
    }
}

#[derive(PartialEq, Eq)]
enum StepResult {
    Ran,
    Idle,
    Limit,
    Failed,
}

/// The live (time, sequence) at the front of queue `index`, in global time.
fn front(world: &World, index: usize) -> Option<(u64, u64)> {
    if index == SYS {
        world.sys.next_key().map(|(t, seq)| (t.as_nanos(), seq))
    } else {
        world.with_host(index, HostState::next_global).flatten()
    }
}

/// What runs next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Due {
    /// The front of a host's queue (or `SYS`, the world's).
    Queue(usize),
    /// A segment in flight, by its slot.
    Packet(u32),
}

/// Scratch vectors for [`next_due`], reused step after step (cleared before each use, so
/// nothing carries over between steps or worlds).
#[derive(Default)]
struct Scratch {
    stack: Vec<usize>,
    due: Vec<(u64, usize, u32)>,
    candidates: Vec<(u64, usize, Due)>,
}

/// Finds what runs next. Every scheduled call has an entry in `wakeups`, and the heap's
/// minimum is never later than any queue's front; so a minimum entry that is not its
/// queue's front is stale (cancelled or moved) and is dropped. Segments in flight wait in
/// their own heap. When several are due at the same instant on different hosts — a host's
/// earliest timer or segment, per host — the decision source picks one (choice 0: the
/// earliest scheduled). What is not picked stays where it is.
fn next_due(world: &World, until: u64) -> Result<(u64, Due), StepResult> {
    let mut flight = world.net.in_flight.borrow_mut();
    let packet_front = flight.front();
    let mut heap = world.wakeups.borrow_mut();
    // The queues' index is validated only as far as it matters: an entry later than the
    // earliest segment cannot run next, stale or not (most steps are segments).
    let queue_front = loop {
        let Some(&top) = heap.peek() else {
            break None;
        };
        let ((t, seq), index) = (top.key(), queue_of(&top));
        if packet_front.is_some_and(|p| p < (t, seq)) || front(world, index) == Some((t, seq)) {
            break Some((t, seq, index));
        }
        heap.pop();
    };
    // (time, what, on which host).
    let first = match (queue_front, packet_front) {
        (None, None) => return Err(StepResult::Idle),
        (Some((t, seq, i)), p) if p.is_none_or(|p| (t, seq) < p) => (t, Due::Queue(i), i),
        (_, Some((t, _))) => {
            let (slot, host) = flight.front_slot().unwrap_or((u32::MAX, usize::MAX));
            (t, Due::Packet(slot), host)
        }
        (Some((t, _, i)), None) => (t, Due::Queue(i), i),
    };
    let t = first.0;
    if t > until {
        return Err(StepResult::Limit);
    }
    // Anything else due at `t`? In a min-heap, only if a child of the root is.
    let child_at = |slice: &[At]| slice.iter().skip(1).take(2).any(|e| e.time() == t);
    let others = usize::from(queue_front.is_some_and(|q| q.0 == t))
        + usize::from(packet_front.is_some_and(|p| p.0 == t))
        + usize::from(child_at(heap.as_slice()))
        + usize::from(flight.second_at(t));
    let chosen = if world.cfg.reorder && others >= 2 {
        let mut guard = world.scratch.borrow_mut();
        let sc = &mut *guard;
        // A choice exists only if something due at `t` is on another host than the first
        // (simultaneous segments of one connection are the common case, and need none).
        // Stale queue entries count here; the full look validates them.
        let host = first.2;
        let several = any_at(heap.as_slice(), t, &mut sc.stack, |e| queue_of(e) != host)
            || flight.other_host_at(t, host, &mut sc.stack);
        if several {
            pick(world, heap.as_slice(), &flight, t, sc).unwrap_or(first.1)
        } else {
            first.1
        }
    } else {
        first.1
    };
    if chosen == first.1 {
        if let Due::Queue(_) = first.1 {
            heap.pop();
        }
    }
    Ok((t, chosen))
}

/// Picks among the hosts with something due at `t`: per host, the earliest of its due
/// timers and due segments is a candidate; candidates in scheduling order, the decision
/// source chooses (choice 0: the earliest). `None` if only one host has anything due.
fn pick(world: &World, wakeups: &[At], flight: &Flight, t: u64, sc: &mut Scratch) -> Option<Due> {
    let candidates = &mut sc.candidates;
    candidates.clear();
    any_at(wakeups, t, &mut sc.stack, |e| {
        let (key, index) = (e.key(), queue_of(e));
        if front(world, index) == Some(key) && !candidates.iter().any(|c| c.1 == index) {
            candidates.push((key.1, index, Due::Queue(index)));
        }
        false
    });
    flight.due_at(t, &mut sc.due, &mut sc.stack);
    for &(seq, host, slot) in &sc.due {
        match candidates.iter_mut().find(|c| c.1 == host) {
            Some(c) if c.0 < seq => {}
            Some(c) => *c = (seq, host, Due::Packet(slot)),
            None => candidates.push((seq, host, Due::Packet(slot))),
        }
    }
    if candidates.len() < 2 {
        return None;
    }
    candidates.sort_unstable_by_key(|c| c.0);
    Some(candidates[world.choose(candidates.len() as u64) as usize].2)
}

fn step(world: &Rc<World>, until: u64) -> StepResult {
    if !world.errors.borrow().is_empty() {
        return StepResult::Failed;
    }
    if world.thread_calls.has_pending() {
        world.thread_calls.drain();
        crate::net::flush_dirty(world);
    }
    let (t, due) = match next_due(world, until) {
        Ok(due) => due,
        Err(stop) => return stop,
    };
    let steps = world.steps.get() + 1;
    world.steps.set(steps);
    if steps > world.cfg.max_steps {
        world.fail(SimError::StepBudget {
            steps: world.cfg.max_steps,
        });
        return StepResult::Failed;
    }
    world.now.set(t);
    // Hosts are looked at through short borrows of the table, never cloned: the hot path
    // of a step is a segment's arrival.
    let (host, outcome) = match due {
        Due::Packet(slot) => {
            let pkt = world.net.in_flight.borrow_mut().take(slot);
            match pkt {
                Some(p) if world.with_host(p.to_host(), |h| h.sync_to(t)) == Some(true) => {
                    let to = p.to_host();
                    let outcome = catch_unwind(AssertUnwindSafe(|| crate::net::arrive(world, p)));
                    (Some(to), Some(outcome))
                }
                // The host is down (or gone): the segment is lost.
                _ => (None, None),
            }
        }
        Due::Queue(SYS) => {
            world.sys.set_now(Instant::from_nanos(t));
            let call = world.sys.pop_due(Instant::from_nanos(t)).map(|(_, f)| f);
            (None, call.map(|f| catch_unwind(AssertUnwindSafe(f))))
        }
        Due::Queue(index) => {
            let call = world.with_host(index, |h| h.pop_due(t)).flatten();
            (Some(index), call.map(|f| catch_unwind(AssertUnwindSafe(f))))
        }
    };
    if let Some(Err(payload)) = outcome {
        let message = torsion::error::Panicked::from_payload(payload).message;
        let name = host.map_or_else(|| "world".to_string(), |i| world.host_name(i));
        world.record(
            host,
            None,
            Kind::Panic {
                message: message.clone(),
            },
        );
        world.fail(SimError::Panic {
            host: name,
            conn: None,
            message,
        });
    }
    crate::net::flush_dirty(world);
    check_invariants(world);
    if world.errors.borrow().is_empty() {
        StepResult::Ran
    } else {
        StepResult::Failed
    }
}

fn check_invariants(world: &World) {
    if world.invariants.borrow().is_empty() {
        return;
    }
    let failed: Vec<(String, String)> = {
        let inv = world.invariants.borrow();
        inv.iter()
            .filter_map(|(name, f)| f().err().map(|m| (name.clone(), m)))
            .collect()
    };
    for (name, message) in failed {
        world.fail(SimError::Invariant { name, message });
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    use torsion::defer::Failure;
    use torsion::prelude::*;
    use torsion::protocol::{ClientFactory, Factory, ForProtocol, Protocol, Transport};
    use torsion::reactor::ReactorTcpExt;

    use super::*;

    use torsion::protocols::wire::Echo;

    struct Pinger {
        t: Transport,
        want: Vec<u8>,
        got: Rc<RefCell<Vec<u8>>>,
        lost: Rc<RefCell<Vec<String>>>,
    }
    impl Protocol for Pinger {
        fn connection_made(&mut self, t: &Transport) {
            self.t = t.clone();
            t.write(&self.want);
        }
        fn data_received(&mut self, d: &[u8]) {
            self.got.borrow_mut().extend_from_slice(d);
            if self.got.borrow().len() >= self.want.len() {
                self.t.lose_connection();
            }
        }
        fn connection_lost(&mut self, reason: Failure) {
            self.lost.borrow_mut().push(reason.to_string());
        }
    }

    struct PingerFactory {
        got: Rc<RefCell<Vec<u8>>>,
        lost: Rc<RefCell<Vec<String>>>,
        failed: Rc<RefCell<Vec<String>>>,
    }
    impl Factory for PingerFactory {
        fn build_protocol(&self, _a: &torsion::protocol::Address) -> Option<Box<dyn Protocol>> {
            Some(Box::new(Pinger {
                t: Transport::default(),
                want: b"hello, simulated world".to_vec(),
                got: self.got.clone(),
                lost: self.lost.clone(),
            }))
        }
    }
    impl ClientFactory for PingerFactory {
        fn client_connection_failed(&self, _c: &torsion::protocol::Connector, r: Failure) {
            self.failed.borrow_mut().push(r.to_string());
        }
    }

    type Shared<T> = Rc<RefCell<T>>;

    fn echo_run(seed: u64, trace: bool) -> (Sim, Shared<Vec<u8>>, Shared<Vec<String>>) {
        let sim = Sim::builder().seed(seed).trace(trace).build();
        let server = sim.host("server");
        server.listen_tcp(7, ForProtocol::<Echo>::new()).unwrap();
        let client = sim.host("client");
        let got = Rc::new(RefCell::new(Vec::new()));
        let lost = Rc::new(RefCell::new(Vec::new()));
        let f = Rc::new(PingerFactory {
            got: got.clone(),
            lost: lost.clone(),
            failed: Rc::default(),
        });
        client.connect_tcp("server", 7, f);
        sim.run_until_idle();
        (sim, got, lost)
    }

    #[test]
    fn echo_round_trip_under_fragmentation() {
        for seed in 0..50 {
            let (sim, got, lost) = echo_run(seed, false);
            assert!(sim.errors().is_empty(), "seed {seed}: {:?}", sim.errors());
            assert_eq!(&*got.borrow(), b"hello, simulated world", "seed {seed}");
            assert_eq!(*lost.borrow(), vec!["connection was closed cleanly"]);
            assert_eq!(sim.hosts()[0].connection_count(), 0, "server closed too");
        }
    }

    #[test]
    fn same_seed_same_trace_hash() {
        for seed in 0..20 {
            assert_eq!(
                echo_run(seed, false).0.trace_hash(),
                echo_run(seed, false).0.trace_hash()
            );
        }
        let hashes: std::collections::BTreeSet<u64> =
            (0..20).map(|s| echo_run(s, false).0.trace_hash()).collect();
        assert!(hashes.len() > 10, "seeds should differ: {}", hashes.len());
    }

    #[test]
    fn full_trace_renders() {
        let (sim, _, _) = echo_run(3, true);
        let text = sim.trace().render();
        assert!(text.contains("listen :7"), "{text}");
        assert!(text.contains("accept from 10.0.0.2"), "{text}");
        assert!(
            text.contains("connection lost: connection was closed cleanly"),
            "{text}"
        );
    }

    #[test]
    fn connect_to_nothing_is_refused() {
        let sim = Sim::new(1);
        let client = sim.host("client");
        sim.host("server");
        let failed = Rc::new(RefCell::new(Vec::new()));
        let f = Rc::new(PingerFactory {
            got: Rc::default(),
            lost: Rc::default(),
            failed: failed.clone(),
        });
        client.connect_tcp("server", 9, f);
        sim.run_until_idle();
        assert_eq!(failed.borrow().len(), 1);
        assert!(
            failed.borrow()[0].contains("refused"),
            "{:?}",
            failed.borrow()
        );
    }

    #[test]
    fn runaway_zero_delay_loop_hits_the_step_budget() {
        let sim = Sim::builder().max_steps(1000).build();
        let h = sim.host("spinner");
        fn spin(h: Host) {
            let h2 = h.clone();
            h.call_soon(move || spin(h2));
        }
        spin(h);
        assert_eq!(sim.run_until_idle(), Stop::Failed);
        assert!(matches!(
            sim.errors()[0],
            SimError::StepBudget { steps: 1000 }
        ));
    }

    #[test]
    fn a_run_past_the_sequence_space_fails_with_a_capacity_error() {
        let sim = Sim::new(0);
        let h = sim.host("late");
        // As if 2^40 - 1 calls had been scheduled already: one more fits, the next not.
        sim.world.seq.set(MAX_SEQ - 1);
        let fired = Rc::new(Cell::new(0));
        for _ in 0..2 {
            let fired = fired.clone();
            h.call_later(Duration::from_secs(1), move || fired.set(fired.get() + 1));
        }
        assert_eq!(sim.run_until_idle(), Stop::Failed);
        assert_eq!(
            sim.errors(),
            vec![SimError::Capacity {
                what: "2^40 scheduled calls and segments"
            }]
        );
        assert_eq!(fired.get(), 0, "a failed run runs nothing more");
    }

    #[test]
    fn panic_in_timer_fails_the_run_with_host_named() {
        let sim = Sim::new(0);
        let h = sim.host("boom");
        h.call_later(Duration::from_secs(1), || panic!("kaboom"));
        sim.run_until_idle();
        assert_eq!(
            sim.errors(),
            vec![SimError::Panic {
                host: "boom".into(),
                conn: None,
                message: "kaboom".into()
            }]
        );
    }

    #[test]
    fn unhandled_deferred_failure_fails_the_run() {
        let sim = Sim::new(0);
        let h = sim.host("h");
        h.call_later(Duration::from_secs(1), || {
            let d = torsion::defer::Deferred::<()>::new();
            d.errback(Failure::msg("nobody listens")).unwrap();
        });
        sim.run_until_idle();
        assert_eq!(
            sim.errors(),
            vec![SimError::Unhandled {
                failure: "nobody listens".into()
            }]
        );
    }

    /// A server that writes many segments and closes while partitioned from its client:
    /// after the heal, the client gets every byte in order, then the FIN (the held
    /// segments keep their order although the sending connection is gone).
    #[test]
    fn held_segments_of_a_closed_connection_arrive_in_order() {
        struct Burst;
        impl Protocol for Burst {
            fn connection_made(&mut self, t: &Transport) {
                for i in 0..50u8 {
                    t.write([i; 7]);
                }
                t.lose_connection();
            }
            fn data_received(&mut self, _d: &[u8]) {}
        }
        struct Sink(Rc<RefCell<Vec<u8>>>, Rc<RefCell<Vec<String>>>);
        impl Protocol for Sink {
            fn data_received(&mut self, d: &[u8]) {
                self.0.borrow_mut().extend_from_slice(d);
            }
            fn connection_lost(&mut self, reason: Failure) {
                self.1.borrow_mut().push(reason.to_string());
            }
        }
        for seed in 0..50 {
            let faults = Faults {
                partitions: vec![crate::Partition {
                    at: Duration::from_micros(1_500),
                    duration: Duration::from_millis(50),
                    a: 0,
                    b: 1,
                    one_way: false,
                }],
                ..Faults::none()
            };
            let sim = Sim::builder()
                .seed(seed)
                .latency(Duration::from_millis(1), Duration::from_millis(10))
                .faults(faults)
                .build();
            let server = sim.host("server");
            let client = sim.host("client");
            server.start(|h| {
                h.listen_tcp(
                    1,
                    torsion::protocol::factory_fn(|_| Some(Box::new(Burst) as Box<dyn Protocol>)),
                )
                .unwrap();
            });
            let got = Rc::new(RefCell::new(Vec::new()));
            let lost = Rc::new(RefCell::new(Vec::new()));
            let (g, l) = (got.clone(), lost.clone());
            let f = torsion::protocol::factory_fn(move |_| {
                Some(Box::new(Sink(g.clone(), l.clone())) as Box<dyn Protocol>)
            });
            client.connect_tcp("server", 1, f);
            sim.run_until_idle();
            let want: Vec<u8> = (0..50u8).flat_map(|i| [i; 7]).collect();
            assert_eq!(*got.borrow(), want, "seed {seed}");
            assert_eq!(lost.borrow().len(), 1, "seed {seed}");
            assert!(
                lost.borrow()[0].contains("closed cleanly"),
                "seed {seed}: {:?}",
                lost.borrow()
            );
        }
    }
}
