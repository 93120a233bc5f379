//! Building a world: [`SimBuilder`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use torsion::defer::{set_unhandled_error_hook, Failure, UnhandledErrorHook};
use torsion::driver::TimerQueue;

use super::{Config, Sim, SimError, World, FRAGMENT_ODDS, SYS};
use crate::decide::Decisions;
use crate::faults::Faults;
use crate::net::Net;
use crate::trace::{Kind, Trace};

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

    /// Whether a run that ends idle fails when something is left that should not be (see
    /// [`Config::check_clean`]).
    pub fn check_clean(mut self, on: bool) -> Self {
        self.cfg.check_clean = on;
        self
    }

    /// Bytes of each payload a kept trace shows (default 24; the trace hash is the same
    /// whatever this is).
    pub fn preview(mut self, bytes: usize) -> Self {
        self.cfg.preview = bytes;
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
        let split_odds = if cfg.fragment {
            FRAGMENT_ODDS[decide.choose(FRAGMENT_ODDS.len() as u64) as usize]
        } else {
            0
        };
        let mut trace = Trace::new(cfg.trace);
        trace.set_preview(cfg.preview);
        let net = Net::new(&cfg.faults);
        let seq = Rc::new(Cell::new(0));
        let world = Rc::new(World {
            sys: TimerQueue::with_sequence(seq.clone()),
            cfg,
            split_odds,
            now: Cell::new(0),
            seq,
            decide: RefCell::new(decide),
            hosts: RefCell::new(Vec::new()),
            names: RefCell::default(),
            addrs: RefCell::default(),
            net,
            trace: RefCell::new(trace),
            errors: RefCell::new(Vec::new()),
            steps: Cell::new(0),
            invariants: RefCell::new(Vec::new()),
            next_conn: Cell::new(1),
            sched: RefCell::default(),
            thread_calls: torsion::driver::ThreadCallQueue::new(None),
            buggify: crate::buggify::Sites::default(),
        });
        let w = Rc::downgrade(&world);
        world.sys.set_change_observer(Some(Rc::new(move || {
            if let Some(w) = w.upgrade() {
                w.timers_changed(SYS);
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
