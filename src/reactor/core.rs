//! The core capability (Twisted's `IReactorCore`): run, stop, startup and shutdown triggers.

use std::cell::RefCell;
use std::rc::Rc;

use thiserror::Error;

use std::cell::Cell;

use crate::defer::Deferred;

/// Reactor state errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReactorError {
    /// `stop` when the reactor is not running (Twisted's `ReactorNotRunning`).
    #[error("the reactor is not running")]
    NotRunning,
    /// `run` while it runs (Twisted's `ReactorAlreadyRunning`).
    #[error("the reactor is already running")]
    AlreadyRunning,
    /// `run` after it stopped (Twisted's `ReactorNotRestartable`).
    #[error("the reactor cannot be restarted")]
    NotRestartable,
}

/// When a system event trigger runs, relative to the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Before; a trigger may return a Deferred that `During` waits for.
    Before,
    /// During.
    During,
    /// After.
    After,
}

/// The system events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SystemEvent {
    /// The reactor is starting.
    Startup,
    /// The reactor is stopping.
    Shutdown,
}

/// A system event trigger: returns a Deferred to make the next phase wait for it.
pub type Trigger = Box<dyn FnOnce() -> Option<Deferred<()>>>;

/// Identifies a trigger, to remove it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TriggerId(u64);

/// The core capability of a reactor (Twisted's `IReactorCore`). Object-safe; the
/// closure-taking forms are in [`ReactorCoreExt`].
pub trait ReactorCore {
    /// Runs the loop until stopped: fires the startup triggers, runs, then the shutdown
    /// triggers. A reactor runs once.
    fn run(&self) -> Result<(), ReactorError>;
    /// Asks the loop to stop: shutdown triggers run, connections are closed, `run` returns.
    ///
    /// When the reactor is not running this is [`ReactorError::NotRunning`] (Twisted's
    /// `ReactorNotRunning`), whether it has stopped already or has not started. In the second
    /// case the request is also remembered: a later `run` fires the startup triggers and the
    /// `call_when_running` calls, then stops at once and returns. So a callback that gives up
    /// before the loop starts (a client whose work turned out empty, or that failed at once)
    /// can call `stop` and rely on `run` returning. (A simulated host runs from boot, so on
    /// the simulator `stop` never comes before `run`.)
    ///
    /// ```
    /// use torsion::reactor::{ReactorCore, ReactorError};
    /// use torsion::testing::MemoryReactor;
    ///
    /// let reactor = MemoryReactor::new();
    /// assert_eq!(reactor.stop(), Err(ReactorError::NotRunning));
    /// reactor.run().unwrap(); // starts, then stops as asked
    /// assert!(!reactor.running());
    /// ```
    fn stop(&self) -> Result<(), ReactorError>;
    /// Whether the loop is running.
    fn running(&self) -> bool;
    /// Runs `f` now if running, else once startup completes.
    fn call_when_running_boxed(&self, f: Box<dyn FnOnce()>);
    /// Adds a trigger for `phase` of `event`.
    fn add_system_event_trigger_boxed(
        &self,
        phase: Phase,
        event: SystemEvent,
        f: Trigger,
    ) -> TriggerId;
    /// Removes a trigger; returns whether it was there.
    fn remove_system_event_trigger(&self, id: TriggerId) -> bool;
}

/// Closure-taking forms of [`ReactorCore`].
pub trait ReactorCoreExt: ReactorCore {
    /// Twisted's `callWhenRunning`.
    fn call_when_running(&self, f: impl FnOnce() + 'static) {
        self.call_when_running_boxed(Box::new(f));
    }

    /// Twisted's `addSystemEventTrigger` for a trigger that returns nothing to wait for.
    fn add_system_event_trigger(
        &self,
        phase: Phase,
        event: SystemEvent,
        f: impl FnOnce() + 'static,
    ) -> TriggerId {
        self.add_system_event_trigger_boxed(
            phase,
            event,
            Box::new(move || {
                f();
                None
            }),
        )
    }
}

impl<R: ReactorCore + ?Sized> ReactorCoreExt for R {}

struct Entry {
    id: TriggerId,
    phase: Phase,
    event: SystemEvent,
    f: Trigger,
}

/// The system event triggers of one reactor, in registration order, and the logic that fires
/// an event's three phases (Twisted's `_ThreePhaseEvent`). Shared by every driver.
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// use torsion::defer::Deferred;
/// use torsion::driver::SystemEventTriggers;
/// use torsion::reactor::{Phase, SystemEvent};
///
/// let triggers = SystemEventTriggers::new();
/// let log = Rc::new(RefCell::new(Vec::new()));
/// let gate = Deferred::<()>::new();
/// for (phase, name) in [(Phase::After, "after"), (Phase::During, "during"), (Phase::Before, "before")] {
///     let (log, gate) = (log.clone(), gate.clone());
///     triggers.add(phase, SystemEvent::Shutdown, Box::new(move || {
///         log.borrow_mut().push(name);
///         (phase == Phase::Before).then_some(gate)
///     }));
/// }
/// let done = triggers.fire(SystemEvent::Shutdown);
/// assert_eq!(*log.borrow(), vec!["before"]); // `during` waits for the gate
/// gate.callback(()).unwrap();
/// assert_eq!(*log.borrow(), vec!["before", "during", "after"]);
/// assert!(done.called());
/// ```
#[derive(Clone, Default)]
pub struct SystemEventTriggers {
    inner: Rc<RefCell<(u64, Vec<Entry>)>>,
}

impl SystemEventTriggers {
    /// No triggers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a trigger.
    pub fn add(&self, phase: Phase, event: SystemEvent, f: Trigger) -> TriggerId {
        let mut inner = self.inner.borrow_mut();
        inner.0 += 1;
        let id = TriggerId(inner.0);
        inner.1.push(Entry {
            id,
            phase,
            event,
            f,
        });
        id
    }

    /// Removes a trigger that has not run.
    pub fn remove(&self, id: TriggerId) -> bool {
        let removed = {
            let mut inner = self.inner.borrow_mut();
            let pos = inner.1.iter().position(|e| e.id == id);
            pos.map(|p| inner.1.remove(p))
        };
        removed.is_some()
    }

    fn take_phase(&self, phase: Phase, event: SystemEvent) -> Vec<Trigger> {
        let mut inner = self.inner.borrow_mut();
        let (taken, kept): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut inner.1)
            .into_iter()
            .partition(|e| e.phase == phase && e.event == event);
        inner.1 = kept;
        taken.into_iter().map(|e| e.f).collect()
    }

    /// Fires `event`: runs its `Before` triggers, waits for the Deferreds they return (a
    /// failed one is logged through the unhandled-error path and does not block), then runs
    /// `During` and `After`. The returned Deferred fires when all three phases have run.
    pub fn fire(&self, event: SystemEvent) -> Deferred<()> {
        let waits: Vec<Deferred<()>> = self
            .take_phase(Phase::Before, event)
            .into_iter()
            .filter_map(|f| f())
            .collect();
        let done = Deferred::<()>::new();
        let finish = {
            let (this, done) = (self.clone(), done.clone());
            move || {
                for f in this.take_phase(Phase::During, event) {
                    let _ = f();
                }
                for f in this.take_phase(Phase::After, event) {
                    let _ = f();
                }
                let _ = done.callback(());
            }
        };
        if waits.is_empty() {
            finish();
            return done;
        }
        let remaining = Rc::new(Cell::new(waits.len()));
        let finish = Rc::new(RefCell::new(Some(finish)));
        for wait in waits {
            let (remaining, finish) = (remaining.clone(), finish.clone());
            let _ = wait.add_both(move |result| {
                remaining.set(remaining.get() - 1);
                if remaining.get() == 0 {
                    let f = finish.borrow_mut().take();
                    if let Some(f) = f {
                        f();
                    }
                }
                // A failed `before` trigger does not block shutdown; it stays reported.
                result
            });
        }
        done
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LifeState {
    NotStarted,
    Running,
    Stopping,
    Stopped,
}

/// The start/stop bookkeeping a reactor keeps (Twisted's `startRunning` / `stop` / `running`
/// state, its system event triggers and its `callWhenRunning` queue), shared by the real
/// reactor and the test doubles so they agree on every transition and error.
///
/// ```
/// use torsion::driver::Lifecycle;
/// use torsion::reactor::ReactorError;
///
/// let life = Lifecycle::new();
/// assert_eq!(life.stop().err(), Some(ReactorError::NotRunning));
/// life.start().unwrap();
/// assert!(life.running());
/// assert!(life.take_stop_request()); // the early stop: the reactor stops now
/// assert!(!life.take_stop_request());
/// let shutdown = life.stop().unwrap(); // fires the shutdown triggers
/// assert!(shutdown.called() && !life.running());
/// life.finish();
/// assert_eq!(life.start().err(), Some(ReactorError::NotRestartable));
/// ```
pub struct Lifecycle {
    state: Cell<LifeState>,
    stop_requested: Cell<bool>,
    triggers: SystemEventTriggers,
    when_running: RefCell<Vec<Box<dyn FnOnce()>>>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    /// Not started, no triggers.
    pub fn new() -> Self {
        Lifecycle {
            state: Cell::new(LifeState::NotStarted),
            stop_requested: Cell::new(false),
            triggers: SystemEventTriggers::new(),
            when_running: RefCell::new(Vec::new()),
        }
    }

    /// Starts running: fires the startup triggers, then the `call_when_running` calls.
    pub fn start(&self) -> Result<(), ReactorError> {
        match self.state.get() {
            LifeState::Running | LifeState::Stopping => return Err(ReactorError::AlreadyRunning),
            LifeState::Stopped => return Err(ReactorError::NotRestartable),
            LifeState::NotStarted => {}
        }
        self.state.set(LifeState::Running);
        let _ = self.triggers.fire(SystemEvent::Startup);
        let hooks = std::mem::take(&mut *self.when_running.borrow_mut());
        for f in hooks {
            f();
        }
        Ok(())
    }

    /// Begins stopping: fires the shutdown triggers and returns the Deferred that fires once
    /// all three phases have run. The reactor calls [`finish`](Self::finish) when it is done.
    ///
    /// Before [`start`](Self::start) this is [`ReactorError::NotRunning`], and the request is
    /// kept for [`take_stop_request`](Self::take_stop_request).
    pub fn stop(&self) -> Result<Deferred<()>, ReactorError> {
        if self.state.get() == LifeState::NotStarted {
            self.stop_requested.set(true);
        }
        if self.state.get() != LifeState::Running {
            return Err(ReactorError::NotRunning);
        }
        self.state.set(LifeState::Stopping);
        Ok(self.triggers.fire(SystemEvent::Shutdown))
    }

    /// Whether `stop` was called before `start` (and not yet taken): the reactor calls this
    /// right after `start` and, if it is true, stops (see [`ReactorCore::stop`]).
    pub fn take_stop_request(&self) -> bool {
        self.stop_requested.replace(false)
    }

    /// The reactor has stopped for good.
    pub fn finish(&self) {
        self.state.set(LifeState::Stopped);
    }

    /// Whether it is running (started and not stopping).
    pub fn running(&self) -> bool {
        self.state.get() == LifeState::Running
    }

    /// Whether it was ever started.
    pub fn has_started(&self) -> bool {
        self.state.get() != LifeState::NotStarted
    }

    /// Whether `stop` was called.
    pub fn has_stopped(&self) -> bool {
        matches!(self.state.get(), LifeState::Stopping | LifeState::Stopped)
    }

    /// Runs `f` now if running, else once started.
    pub fn call_when_running(&self, f: Box<dyn FnOnce()>) {
        if self.running() {
            f();
        } else {
            self.when_running.borrow_mut().push(f);
        }
    }

    /// The system event triggers.
    pub fn triggers(&self) -> &SystemEventTriggers {
        &self.triggers
    }
}
