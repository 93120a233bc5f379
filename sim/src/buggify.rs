//! BUGGIFY-style fault points: user code volunteers its own faults to the simulator.
//!
//! A protocol knows hardships the network cannot cause: a slow disk, a cache miss, a
//! backend that answers late, a buffer flushed early. Marking such a place with
//! [`buggify!`](crate::buggify!) lets the simulator take the rare branch on purpose:
//!
//! ```
//! use std::time::Duration;
//! use torsion::protocol::{Protocol, Transport};
//!
//! #[derive(Default)]
//! struct Store { t: Transport }
//!
//! impl Protocol for Store {
//!     fn connection_made(&mut self, t: &Transport) { self.t = t.clone(); }
//!     fn data_received(&mut self, data: &[u8]) {
//!         let delay = if torsion_sim::buggify!() {
//!             Duration::from_secs(2) // the disk is slow today
//!         } else {
//!             Duration::ZERO
//!         };
//!         let answer = data.to_vec();
//!         self.t.call_later(delay, move |me: &mut Store| me.t.write(&answer));
//!     }
//! }
//!
//! // Outside a simulated world, a fault point never fires.
//! assert!(!torsion_sim::buggify!());
//! ```
//!
//! The scheme is FoundationDB's, in two levels. Each call site (its file, line and column)
//! is *enabled* for a run with probability 1/4 ([`ENABLE_PPM`]), drawn the first time the
//! site is reached; an enabled site then *fires* on each call with probability 1/20
//! ([`FIRE_PPM`]). So most runs exercise a few sites, not all of them at once, and a site
//! that fires does so now and then, not always. Both draws are decisions of the run's
//! decision source, where "no" is choice 0: a failing run replays with the same firings, and
//! shrinking drops the firings it does not need. Each firing is a fault event in the trace
//! (`FAULT buggify src/store.rs:17:25`).
//!
//! A fault point is `false` whenever no simulated world is running on the current thread:
//! on the real reactor, in unit tests, and in a test body's own code before or after the
//! run. A world makes itself current while it runs (`step`, `run_for`, `run_until`,
//! `run_until_idle`), through a thread-local pointer: user code cannot be handed the world
//! through the engine's traits, which know nothing of simulation. Code that must run on the real reactor too can depend on
//! torsion-sim for this macro alone; it costs one thread-local read when not simulated.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

use crate::trace::Kind;
use crate::world::World;

/// The chance that a call site is enabled for a run, in millionths (1/4).
pub const ENABLE_PPM: u32 = 250_000;

/// The chance that an enabled call site fires on a call, in millionths (1/20).
pub const FIRE_PPM: u32 = 50_000;

/// A fault point: `true` rarely, under simulation only. See the [module](self) docs.
///
/// ```
/// if torsion_sim::buggify!() {
///     // take the rare path
/// }
/// ```
#[macro_export]
macro_rules! buggify {
    () => {
        $crate::buggify::fire(::core::concat!(
            ::core::file!(),
            ":",
            ::core::line!(),
            ":",
            ::core::column!()
        ))
    };
}

/// Whether the fault point `site` fires now: `false` unless a simulated world is running;
/// inside one, drawn as the [module](self) docs say. [`buggify!`](crate::buggify!) calls
/// this with its own file, line and column; `site` names the point in the trace.
pub fn fire(site: &'static str) -> bool {
    let world = CURRENT.with(|c| c.borrow().as_ref().and_then(Weak::upgrade));
    match world {
        Some(world) => world.buggify.fire(&world, site),
        None => false,
    }
}

/// Which sites a run has enabled: decided on first use, kept for the run.
#[derive(Default)]
pub(crate) struct Sites {
    enabled: RefCell<BTreeMap<&'static str, bool>>,
}

impl Sites {
    fn fire(&self, world: &World, site: &'static str) -> bool {
        let known = self.enabled.borrow().get(site).copied();
        let enabled = match known {
            Some(e) => e,
            None => {
                let e = world.chance(ENABLE_PPM);
                self.enabled.borrow_mut().insert(site, e);
                e
            }
        };
        if !enabled || !world.chance(FIRE_PPM) {
            return false;
        }
        world.record(
            None,
            None,
            Kind::Fault {
                what: format!("buggify {site}"),
            },
        );
        true
    }
}

thread_local! {
    /// The world running on this thread, if any.
    static CURRENT: RefCell<Option<Weak<World>>> = const { RefCell::new(None) };
}

/// Makes `world` current on this thread until dropped (then restores what was current).
pub(crate) struct Current(Option<Weak<World>>);

impl Drop for Current {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// Makes `world` the current world while it runs.
pub(crate) fn enter(world: &Rc<World>) -> Current {
    Current(CURRENT.with(|c| c.replace(Some(Rc::downgrade(world)))))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;

    use torsion::reactor::ReactorTimeExt;

    use crate::check::{run_once, sweep, Options};
    use crate::{Host, Sim, SimBuilder};

    const CALLS: u32 = 400;

    /// A timer loop on one host that asks the same fault point `calls` times; counts firings.
    fn ask(sim: &Sim, calls: u32) -> Rc<Cell<u32>> {
        fn tick(h: Host, left: u32, fired: Rc<Cell<u32>>) {
            if crate::buggify!() {
                fired.set(fired.get() + 1);
            }
            if left > 1 {
                let h2 = h.clone();
                h.call_later(Duration::from_millis(1), move || tick(h2, left - 1, fired));
            }
        }
        let fired = Rc::new(Cell::new(0));
        let h = sim.host("h");
        let (h2, f) = (h.clone(), fired.clone());
        h.call_later(Duration::ZERO, move || tick(h2, calls, f));
        fired
    }

    fn fired_in(builder: SimBuilder) -> (u32, u64, String) {
        let sim = builder.trace(true).build();
        let fired = ask(&sim, CALLS);
        sim.run_until_idle();
        let trace = sim.trace().render();
        (fired.get(), sim.trace_hash(), trace)
    }

    #[test]
    fn false_outside_a_running_world() {
        assert!(!crate::buggify!());
        let sim = Sim::new(0);
        // The body's own code, before and after the run, is not simulated.
        assert!(!(0..1_000).any(|_| crate::buggify!()));
        ask(&sim, CALLS);
        sim.run_until_idle();
        assert!(!(0..1_000).any(|_| crate::buggify!()));
    }

    /// A site enabled and firing during a run stays silent once the run is over.
    #[test]
    fn the_world_is_current_only_while_it_runs() {
        const SITE: &str = "tests:current";
        for seed in 0..64 {
            let sim = Sim::new(seed);
            let fired = Rc::new(Cell::new(0));
            let f = fired.clone();
            sim.host("h").call_later(Duration::ZERO, move || {
                f.set((0..1_000).filter(|_| super::fire(SITE)).count());
            });
            sim.run_until_idle();
            if fired.get() > 0 {
                assert!(!(0..1_000).any(|_| super::fire(SITE)), "seed {seed}");
                return;
            }
        }
        panic!("no seed of 64 enabled the site");
    }

    #[test]
    fn sites_are_enabled_for_some_runs_and_fire_rarely_in_them() {
        let counts: Vec<u32> = (0..64)
            .map(|seed| fired_in(Sim::builder().seed(seed)).0)
            .collect();
        let enabled: Vec<u32> = counts.iter().copied().filter(|&n| n > 0).collect();
        // About a quarter of the runs enable the site; in those, about 1 call in 20 fires.
        assert!(
            (6..=28).contains(&enabled.len()),
            "{} of 64 runs fired: {counts:?}",
            enabled.len()
        );
        let per_call = enabled.iter().sum::<u32>() as f64 / (enabled.len() as u32 * CALLS) as f64;
        assert!(
            (0.025..0.1).contains(&per_call),
            "fired {per_call} per call"
        );
    }

    #[test]
    fn firings_are_traced_and_deterministic() {
        let seed = (0..64)
            .find(|&s| fired_in(Sim::builder().seed(s)).0 > 0)
            .expect("some seed enables the site");
        let (n, hash, trace) = fired_in(Sim::builder().seed(seed));
        let again = fired_in(Sim::builder().seed(seed));
        assert_eq!((n, hash), (again.0, again.1));
        let traced = trace.matches("FAULT buggify sim/src/buggify.rs:").count();
        assert_eq!(traced as u32, n, "{trace}");
    }

    #[test]
    fn recorded_choices_replay_the_firings_and_all_zero_never_fires() {
        let seed = (0..64)
            .find(|&s| fired_in(Sim::builder().seed(s)).0 > 0)
            .expect("some seed enables the site");
        let sim = Sim::builder().seed(seed).record(true).build();
        let fired = ask(&sim, CALLS);
        sim.run_until_idle();
        let choices = sim.recorded_choices().expect("recording");
        let original = (fired.get(), sim.trace_hash());
        let replayed = fired_in(Sim::builder().choices(choices));
        assert_eq!(original, (replayed.0, replayed.1));
        assert_eq!(fired_in(Sim::builder().choices(Vec::new())).0, 0);
    }

    #[test]
    fn a_failure_that_needs_a_firing_is_found_and_shrinks_to_one() {
        let body = |sim: &Sim| {
            let fired = ask(sim, 40);
            sim.invariant("nothing is buggified", move || match fired.get() {
                0 => Ok(()),
                n => Err(format!("{n} firings")),
            });
            sim.run_until_idle();
        };
        let mut opts = Options::new("buggify");
        opts.seeds = 64;
        opts.jobs = 1;
        opts.replay_dir = None;
        let summary = sweep(&opts, &Sim::builder, &body);
        let report = summary.failure.expect("some seed fires");
        assert!(report.error.contains("1 firings"), "{report}");
        assert_eq!(report.trace.matches("FAULT buggify").count(), 1, "{report}");
        let make = || Sim::builder().choices(report.choices.clone()).build();
        assert!(run_once(&make, &body).error.is_some());
    }
}
