//! The world's public API: [`Sim`], which creates hosts, runs the clock and reports.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use torsion::defer::{set_unhandled_error_hook, UnhandledErrorHook};
use torsion::reactor::Instant;

use super::sched::{evaluate_invariants, step, StepResult};
use super::{Cadence, Config, Invariant, SimBuilder, SimError, World};
use crate::faults::Faults;
use crate::host::{Host, HostState};
use crate::trace::Trace;

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
    pub(super) previous_hook: RefCell<Option<Option<UnhandledErrorHook>>>,
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
        let known = self.world.names.borrow().get(name).copied();
        if let Some(h) = known.and_then(|i| self.world.host(i)) {
            return h;
        }
        let index = self.world.hosts.borrow().len();
        let host = Host {
            st: HostState::new(&self.world, index, name),
        };
        self.world.trace.borrow_mut().name_host(index, name);
        self.world.hosts.borrow_mut().push(host.clone());
        self.world
            .names
            .borrow_mut()
            .insert(name.to_string(), index);
        self.world
            .addrs
            .borrow_mut()
            .entry(host.ip())
            .or_insert(index);
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

    /// The world's settings (for the portfolio's seeds, what this seed drew: faults,
    /// arrival grid, PCT mode).
    pub fn config(&self) -> &Config {
        &self.world.cfg
    }

    /// The fault mix in one line, with host names.
    pub fn describe_faults(&self) -> String {
        let names: Vec<String> = self.hosts().iter().map(|h| h.name().to_string()).collect();
        self.world.cfg.faults.describe(&names)
    }

    /// Checks `f` after every event; an `Err` fails the run.
    pub fn invariant(&self, name: &str, f: impl Fn() -> Result<(), String> + 'static) {
        self.invariant_with(name, Cadence::EveryStep, f);
    }

    /// Checks `f` at `cadence`, and whenever a run stops; an `Err` fails the run. For checks
    /// too costly to run after every event: see [`Cadence`] for what a sparser cadence can
    /// miss.
    pub fn invariant_with(
        &self,
        name: &str,
        cadence: Cadence,
        f: impl Fn() -> Result<(), String> + 'static,
    ) {
        self.world.invariants.borrow_mut().push(Invariant {
            name: name.to_string(),
            cadence,
            last: Cell::new(0),
            check: Box::new(f),
        });
    }

    /// At simulated time `at` (from the start), `condition` must hold, or the run fails with
    /// a missed liveness deadline.
    pub fn deadline(&self, name: &str, at: Duration, condition: impl Fn() -> bool + 'static) {
        let world = Rc::downgrade(&self.world);
        let name = name.to_string();
        let at = Instant::from_nanos(super::nanos(at));
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

    /// Writes the trace as a self-contained HTML page to `path` (see [`crate::html`]):
    /// `title` heads it, and the run's first error, if any, is shown as its failure. Only a
    /// world built with `.trace(true)` has events to draw.
    pub fn write_html(&self, path: &std::path::Path, title: &str) -> Result<(), String> {
        let failure = self.errors().first().map(ToString::to_string);
        crate::html::write_trace_html(path, &self.trace(), title, failure.as_deref())
    }

    /// Takes the trace out of the world (which goes on with an empty one), without copying
    /// its events.
    pub(crate) fn take_trace(&self) -> Trace {
        std::mem::take(&mut *self.world.trace.borrow_mut())
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

    pub(super) fn schedule_faults(&self) {
        let faults = self.world.cfg.faults.clone();
        let at = |d: Duration| Instant::from_nanos(super::nanos(d));
        for p in faults.partitions {
            let w = Rc::downgrade(&self.world);
            let (a, b, one_way) = (p.a, p.b, p.one_way);
            self.world.sys.call_at_boxed(
                at(p.at),
                Box::new(move || {
                    if let Some(w) = w.upgrade() {
                        crate::net::link::partition(&w, a, b, one_way);
                    }
                }),
            );
            let w = Rc::downgrade(&self.world);
            self.world.sys.call_at_boxed(
                at(p.at.saturating_add(p.duration)),
                Box::new(move || {
                    if let Some(w) = w.upgrade() {
                        crate::net::link::heal(&w, a, b, one_way);
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
        let limit = super::nanos(self.world.cfg.max_time);
        let stop = self.run_to(limit);
        if stop == Stop::Idle && self.world.cfg.check_clean {
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
        let until = self.world.now.get().saturating_add(super::nanos(d));
        self.run_to(until)
    }

    /// Runs until `condition` holds (checked after each event), the world is idle, or a
    /// limit is hit. Returns whether the condition held.
    pub fn run_until(&self, condition: impl Fn() -> bool) -> bool {
        let limit = super::nanos(self.world.cfg.max_time);
        let _current = crate::buggify::enter(&self.world);
        loop {
            if condition() {
                self.end_of_run();
                return true;
            }
            match step(&self.world, limit) {
                StepResult::Ran => {}
                _ => {
                    self.end_of_run();
                    return condition();
                }
            }
        }
    }

    /// Evaluates every invariant, whatever its cadence, when a run stops (unless a check
    /// already failed it).
    fn end_of_run(&self) {
        if self.world.errors.borrow().is_empty() {
            evaluate_invariants(&self.world, true);
        }
    }

    fn run_to(&self, until: u64) -> Stop {
        // User code run in these steps reaches the world's decisions through `buggify!`.
        let _current = crate::buggify::enter(&self.world);
        let stop = loop {
            match step(&self.world, until) {
                StepResult::Ran => {}
                StepResult::Idle => break Stop::Idle,
                StepResult::Limit => {
                    self.world.now.set(self.world.now.get().max(until));
                    break Stop::TimeReached;
                }
                StepResult::Failed => return Stop::Failed,
            }
        };
        self.end_of_run();
        if self.world.errors.borrow().is_empty() {
            stop
        } else {
            Stop::Failed
        }
    }
}
