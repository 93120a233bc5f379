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
    portfolio: bool,
    /// Hosts and horizon of the portfolio's swarm seeds, when known.
    portfolio_span: Option<(usize, Duration)>,
    /// Faults were set explicitly (`faults`, `swarm` or `config`): the portfolio keeps them.
    faults_set: bool,
    /// The arrival grid was set explicitly.
    quantum_set: bool,
    /// PCT mode was set explicitly.
    pct_set: bool,
}

/// The arrival grids the portfolio draws from (see [`Config::quantum`]): none, 1 ms, 5 ms.
pub const PORTFOLIO_QUANTA: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(1),
    Duration::from_millis(5),
];

/// The PCT depths the portfolio draws from (see [`Config::pct`]): off, 1, 2, 3.
pub const PORTFOLIO_PCT: [Option<u32>; 4] = [None, Some(1), Some(2), Some(3)];

/// The horizon of the portfolio's swarm seeds: the run's time limit, but at most this.
pub const PORTFOLIO_HORIZON: Duration = Duration::from_secs(10);

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

    /// The whole configuration (its faults, arrival grid and PCT mode count as set
    /// explicitly: the portfolio keeps them).
    pub fn config(mut self, cfg: Config) -> Self {
        self.cfg = cfg;
        self.faults_set = true;
        self.quantum_set = true;
        self.pct_set = true;
        self
    }

    /// The default portfolio, which [`check()`](crate::check()) uses: each seed draws
    /// what kind of world it is, from the decision source, so that one sweep tries the
    /// simplest schedule, varied fault-free schedules, and fault mixes in turn:
    ///
    /// - seed 0 is the all-zero schedule (every choice 0: least latency, whole writes,
    ///   first-in first-out, no fault);
    /// - seeds `k` with `k % 4 == 0` are fault-free, with varied schedules;
    /// - the other seeds are swarm seeds: a fault mix drawn as by
    ///   [`Faults::swarm_unknown_span`], over a horizon of the run's time limit, at most
    ///   [`PORTFOLIO_HORIZON`] (resets, refusals, latency spikes that outlast second-long
    ///   timeouts, partitions and crashes of the first two hosts created).
    ///
    /// Every seed also draws an arrival grid ([`PORTFOLIO_QUANTA`], for collisions on
    /// purpose) and a PCT depth ([`PORTFOLIO_PCT`]). Whatever was set explicitly is kept:
    /// faults given by [`faults`](Self::faults), [`swarm`](Self::swarm) or
    /// [`config`](Self::config), and the grid or PCT mode given by [`quantum`](Self::quantum)
    /// or [`pct`](Self::pct); the portfolio varies the rest. The seed alone decides the world
    /// (the kind of world is the first choice, forced from the seed and recorded, so a
    /// recorded run replays and shrinks like any other: a shrunk failure that does not need
    /// faults becomes a fault-free one). Invariants learn a seed's faults from
    /// [`Sim::faults`](crate::Sim::faults).
    pub fn portfolio(mut self) -> Self {
        self.portfolio = true;
        self
    }

    /// The default portfolio (see [`portfolio`](Self::portfolio)) for a body whose hosts
    /// and span are known: its swarm seeds draw their faults as [`swarm`](Self::swarm)
    /// would, over `hosts` hosts and `horizon`.
    pub fn portfolio_swarm(mut self, hosts: usize, horizon: Duration) -> Self {
        self.portfolio = true;
        self.portfolio_span = Some((hosts, horizon));
        self
    }

    /// The arrival grid (see [`Config::quantum`]).
    pub fn quantum(mut self, grid: Duration) -> Self {
        self.cfg.quantum = grid;
        self.quantum_set = true;
        self
    }

    /// PCT mode of depth `depth`, or off with `None` (see [`Config::pct`]).
    pub fn pct(mut self, depth: Option<u32>) -> Self {
        self.cfg.pct = depth;
        self.pct_set = true;
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
        self.faults_set = true;
        self
    }

    /// Swarm mode: draw a fault mix for `hosts` hosts over `horizon` from the decision source.
    pub fn swarm(mut self, hosts: usize, horizon: Duration) -> Self {
        self.swarm = Some((hosts, horizon));
        self.faults_set = true;
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
            None if self.portfolio && self.seed == 0 => Decisions::replay(Vec::new()),
            None if self.portfolio => Decisions::seeded_after(vec![self.seed % 4], self.seed),
            None => Decisions::seeded(self.seed),
        };
        if self.record {
            decide.start_recording();
        }
        let mut cfg = self.cfg;
        if self.portfolio {
            let swarm = decide.choose(4) != 0;
            if !self.quantum_set {
                let q = decide.choose(PORTFOLIO_QUANTA.len() as u64) as usize;
                cfg.quantum = PORTFOLIO_QUANTA[q];
            }
            if !self.pct_set {
                cfg.pct = PORTFOLIO_PCT[decide.choose(PORTFOLIO_PCT.len() as u64) as usize];
            }
            if swarm && !self.faults_set {
                cfg.faults = match self.portfolio_span {
                    Some((hosts, horizon)) => Faults::swarm(&mut decide, hosts, horizon),
                    None => {
                        let horizon = cfg.max_time.min(PORTFOLIO_HORIZON);
                        Faults::swarm_unknown_span(&mut decide, horizon)
                    }
                };
            }
        }
        if let Some((hosts, horizon)) = self.swarm {
            cfg.faults = Faults::swarm(&mut decide, hosts, horizon);
        }
        let pct = cfg
            .pct
            .map(|depth| crate::pct::Pct::new(&mut decide, depth));
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
            pct: RefCell::new(pct),
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
