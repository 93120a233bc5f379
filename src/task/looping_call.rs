//! `LoopingCall`: call a function every interval (Twisted's `task.LoopingCall`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use thiserror::Error;

use crate::defer::{maybe_deferred, Deferred, Failure, Outcome};
use crate::reactor::{DelayedCall, Instant, ReactorTime, ReactorTimeExt};

/// Misuse of a [`LoopingCall`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum LoopingCallError {
    /// `start` while it runs.
    #[error("the looping call is already running")]
    AlreadyRunning,
    /// `stop` or `reset` while it does not.
    #[error("the looping call is not running")]
    NotRunning,
}

type Func = Box<dyn FnMut(u64) -> Outcome<()>>;

struct Inner {
    clock: Rc<dyn ReactorTime>,
    f: RefCell<Option<Func>>,
    with_count: bool,
    running: Cell<bool>,
    run_at_start: Cell<bool>,
    interval: Cell<Duration>,
    start_time: Cell<Instant>,
    last_time: Cell<Option<Instant>>,
    call: RefCell<Option<DelayedCall>>,
    deferred: RefCell<Option<Deferred<LoopingCall>>>,
}

/// Calls a function every `interval` until stopped.
///
/// Runs are aligned to `start + k·interval`: if a run is late (the reactor was busy, or the
/// previous run's Deferred took longer than an interval), the intervals already past are
/// skipped, and a [`with_count`](Self::with_count) function learns how many there were. If
/// the function returns a Deferred, the next run waits for it. The Deferred `start` returns
/// fires with the LoopingCall when it is stopped, or fails with the function's failure
/// (which also stops it).
///
/// ```
/// use std::{cell::Cell, rc::Rc, time::Duration};
/// use torsion::task::LoopingCall;
/// use torsion::testing::Clock;
///
/// let clock = Clock::new();
/// let ticks = Rc::new(Cell::new(0));
/// let t = ticks.clone();
/// let lc = LoopingCall::new(Rc::new(clock.clone()), move || t.set(t.get() + 1));
/// let done = lc.start(Duration::from_secs(1), true).unwrap();
/// clock.pump(&[Duration::from_secs(1); 3]);
/// assert_eq!(ticks.get(), 4); // now, then at 1, 2 and 3 s
/// lc.stop().unwrap();
/// assert!(done.called());
/// ```
#[derive(Clone)]
pub struct LoopingCall {
    inner: Rc<Inner>,
}

impl LoopingCall {
    fn build(clock: Rc<dyn ReactorTime>, f: Func, with_count: bool) -> Self {
        LoopingCall {
            inner: Rc::new(Inner {
                clock,
                f: RefCell::new(Some(f)),
                with_count,
                running: Cell::new(false),
                run_at_start: Cell::new(false),
                interval: Cell::new(Duration::ZERO),
                start_time: Cell::new(Instant::ZERO),
                last_time: Cell::new(None),
                call: RefCell::new(None),
                deferred: RefCell::new(None),
            }),
        }
    }

    /// A LoopingCall of a function that returns nothing.
    pub fn new(clock: Rc<dyn ReactorTime>, mut f: impl FnMut() + 'static) -> Self {
        Self::build(
            clock,
            Box::new(move |_| {
                f();
                Outcome::Value(())
            }),
            false,
        )
    }

    /// A LoopingCall of a function that may fail or return a Deferred to wait for.
    pub fn with_outcome(
        clock: Rc<dyn ReactorTime>,
        mut f: impl FnMut() -> Outcome<()> + 'static,
    ) -> Self {
        Self::build(clock, Box::new(move |_| f()), false)
    }

    /// Twisted's `LoopingCall.withCount`: `f` receives how many intervals elapsed since its
    /// last run (1 when on time; more when runs were skipped).
    pub fn with_count(
        clock: Rc<dyn ReactorTime>,
        f: impl FnMut(u64) -> Outcome<()> + 'static,
    ) -> Self {
        Self::build(clock, Box::new(f), true)
    }

    /// Whether it is running.
    pub fn running(&self) -> bool {
        self.inner.running.get()
    }

    /// The interval it was started with.
    pub fn interval(&self) -> Duration {
        self.inner.interval.get()
    }

    /// Starts calling every `interval`, the first time now if `now`, else after one
    /// interval. (A zero interval runs once per reactor turn.) An interval that reaches past
    /// the end of the clock's range (`u64` nanoseconds, about 584 years) schedules the next
    /// run at the end of that range, as [`Instant`]'s addition saturates.
    pub fn start(
        &self,
        interval: Duration,
        now: bool,
    ) -> Result<Deferred<LoopingCall>, LoopingCallError> {
        let inner = &self.inner;
        if inner.running.get() {
            return Err(LoopingCallError::AlreadyRunning);
        }
        inner.running.set(true);
        let d = Deferred::new();
        *inner.deferred.borrow_mut() = Some(d.clone());
        inner.start_time.set(inner.clock.seconds());
        inner.interval.set(interval);
        inner.run_at_start.set(now);
        inner.last_time.set(None);
        if now {
            self.run();
        } else {
            self.schedule_from(inner.start_time.get());
        }
        Ok(d)
    }

    /// Stops it; the Deferred from `start` fires with the LoopingCall (once a pending run's
    /// Deferred has fired, if one is pending).
    pub fn stop(&self) -> Result<(), LoopingCallError> {
        let inner = &self.inner;
        if !inner.running.get() {
            return Err(LoopingCallError::NotRunning);
        }
        inner.running.set(false);
        let call = inner.call.borrow_mut().take();
        if let Some(call) = call {
            let _ = call.cancel();
            self.finish(Ok(()));
        }
        Ok(())
    }

    /// Restarts the interval from now.
    pub fn reset(&self) -> Result<(), LoopingCallError> {
        let inner = &self.inner;
        if !inner.running.get() {
            return Err(LoopingCallError::NotRunning);
        }
        let call = inner.call.borrow_mut().take();
        if let Some(call) = call {
            let _ = call.cancel();
            inner.start_time.set(inner.clock.seconds());
            self.schedule_from(inner.start_time.get());
        }
        Ok(())
    }

    fn finish(&self, result: Result<(), Failure>) {
        let d = self.inner.deferred.borrow_mut().take();
        if let Some(d) = d {
            let _ = match result {
                Ok(()) => d.callback(self.clone()),
                Err(f) => d.errback(f),
            };
        }
    }

    fn interval_of(&self, t: Instant) -> u64 {
        let interval = self.inner.interval.get().as_nanos().max(1);
        ((t - self.inner.start_time.get()).as_nanos() / interval) as u64
    }

    /// How many intervals passed since the last run (Twisted's `withCount` counter); `None`
    /// when no full interval passed (the run is skipped).
    fn count(&self) -> Option<u64> {
        let inner = &self.inner;
        let now = inner.clock.seconds();
        if inner.interval.get().is_zero() {
            inner.last_time.set(Some(now));
            return Some(1);
        }
        let last_interval = match inner.last_time.get() {
            Some(t) => self.interval_of(t) as i128,
            None if inner.run_at_start.get() => -1,
            None => 0,
        };
        let count = i128::from(self.interval_of(now)) - last_interval;
        if count > 0 {
            inner.last_time.set(Some(now));
            Some(count as u64)
        } else {
            None
        }
    }

    fn run(&self) {
        let inner = &self.inner;
        *inner.call.borrow_mut() = None;
        let n = if inner.with_count {
            match self.count() {
                Some(n) => n,
                None => {
                    self.after_run(Ok(()));
                    return;
                }
            }
        } else {
            1
        };
        let f = inner.f.borrow_mut().take();
        let Some(mut f) = f else { return };
        let d = maybe_deferred(|| f(n));
        *inner.f.borrow_mut() = Some(f);
        let me = self.clone();
        let _ = d.add_both(move |r: Result<(), Failure>| {
            me.after_run(r);
            Ok::<(), Failure>(())
        });
    }

    fn after_run(&self, r: Result<(), Failure>) {
        let inner = &self.inner;
        match r {
            Ok(()) if inner.running.get() => self.schedule_from(inner.clock.seconds()),
            Ok(()) => self.finish(Ok(())),
            Err(f) => {
                inner.running.set(false);
                self.finish(Err(f));
            }
        }
    }

    fn schedule_from(&self, when: Instant) {
        let inner = &self.inner;
        let interval = inner.interval.get();
        let delay = if interval.is_zero() {
            Duration::ZERO
        } else {
            // `running_for` fits in u64 nanoseconds (it is a difference of two instants);
            // the interval may not, and the delay then saturates at the end of the clock's
            // range rather than wrapping to a small number.
            let running_for = (when - inner.start_time.get()).as_nanos();
            let i = interval.as_nanos();
            Duration::from_nanos(u64::try_from(i - running_for % i).unwrap_or(u64::MAX))
        };
        let me = self.clone();
        let call = inner.clock.call_later(delay, move || me.run());
        *inner.call.borrow_mut() = Some(call);
    }
}

impl std::fmt::Debug for LoopingCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LoopingCall(interval {:?}, {})",
            self.interval(),
            if self.running() { "running" } else { "stopped" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Clock;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn counter() -> (Rc<Cell<u32>>, impl FnMut() + 'static) {
        let c = Rc::new(Cell::new(0));
        let c2 = c.clone();
        (c, move || c2.set(c2.get() + 1))
    }

    #[test]
    fn test_basic_function_runs_now_and_every_interval() {
        let clock = Clock::new();
        let (n, f) = counter();
        let lc = LoopingCall::new(Rc::new(clock.clone()), f);
        let d = lc.start(secs(2), true).unwrap();
        assert_eq!(n.get(), 1);
        clock.advance(secs(1));
        assert_eq!(n.get(), 1);
        clock.advance(secs(1));
        assert_eq!(n.get(), 2);
        clock.advance(secs(4));
        assert_eq!(n.get(), 4);
        lc.stop().unwrap();
        let got = d.result().unwrap().unwrap();
        assert!(!got.running());
    }

    #[test]
    fn test_not_now_waits_one_interval() {
        let clock = Clock::new();
        let (n, f) = counter();
        let lc = LoopingCall::new(Rc::new(clock.clone()), f);
        lc.start(secs(1), false).unwrap();
        assert_eq!(n.get(), 0);
        clock.advance(secs(1));
        assert_eq!(n.get(), 1);
    }

    #[test]
    fn test_start_twice_and_stop_when_stopped_are_errors() {
        let clock = Clock::new();
        let lc = LoopingCall::new(Rc::new(clock.clone()), || {});
        let _d = lc.start(secs(1), true).unwrap();
        assert_eq!(
            lc.start(secs(1), true).err(),
            Some(LoopingCallError::AlreadyRunning)
        );
        lc.stop().unwrap();
        assert_eq!(lc.stop(), Err(LoopingCallError::NotRunning));
        assert_eq!(lc.reset(), Err(LoopingCallError::NotRunning));
    }

    #[test]
    fn test_stop_from_inside_the_function() {
        let clock = Clock::new();
        let slot: Rc<RefCell<Option<LoopingCall>>> = Rc::default();
        let s = slot.clone();
        let n = Rc::new(Cell::new(0));
        let n2 = n.clone();
        let lc = LoopingCall::new(Rc::new(clock.clone()), move || {
            n2.set(n2.get() + 1);
            if n2.get() == 3 {
                s.borrow().as_ref().unwrap().stop().unwrap();
            }
        });
        *slot.borrow_mut() = Some(lc.clone());
        let d = lc.start(secs(1), true).unwrap();
        clock.pump(&[secs(1); 10]);
        assert_eq!(n.get(), 3);
        assert!(d.called());
        *slot.borrow_mut() = None;
    }

    #[test]
    fn test_failure_stops_and_fails_the_deferred() {
        let clock = Clock::new();
        let n = Rc::new(Cell::new(0));
        let n2 = n.clone();
        let lc = LoopingCall::with_outcome(Rc::new(clock.clone()), move || {
            n2.set(n2.get() + 1);
            if n2.get() == 2 {
                Outcome::Failure(Failure::msg("bad tick"))
            } else {
                Outcome::Value(())
            }
        });
        let d = lc.start(secs(1), true).unwrap();
        clock.pump(&[secs(1); 5]);
        assert_eq!(n.get(), 2);
        assert!(!lc.running());
        assert_eq!(
            d.take_result().unwrap().unwrap_err().to_string(),
            "bad tick"
        );
    }

    #[test]
    fn test_deferred_returning_function_delays_the_next_run() {
        let clock = Clock::new();
        let pending: Rc<RefCell<Vec<Deferred<()>>>> = Rc::default();
        let p = pending.clone();
        let lc = LoopingCall::with_outcome(Rc::new(clock.clone()), move || {
            let d = Deferred::new();
            p.borrow_mut().push(d.clone());
            Outcome::Deferred(d)
        });
        lc.start(secs(1), true).unwrap();
        clock.pump(&[secs(1); 3]);
        assert_eq!(
            pending.borrow().len(),
            1,
            "waits for the first run's Deferred"
        );
        let first = pending.borrow()[0].clone();
        first.callback(()).unwrap();
        clock.advance(secs(1));
        assert_eq!(pending.borrow().len(), 2);
        lc.stop().unwrap();
    }

    #[test]
    fn test_with_count_counts_skipped_intervals() {
        let clock = Clock::new();
        let counts = Rc::new(RefCell::new(Vec::new()));
        let pending: Rc<RefCell<Option<Deferred<()>>>> = Rc::default();
        let (c, p) = (counts.clone(), pending.clone());
        let lc = LoopingCall::with_count(Rc::new(clock.clone()), move |n| {
            c.borrow_mut().push(n);
            if c.borrow().len() == 2 {
                // The second run takes 3.5 intervals to finish.
                let d = Deferred::new();
                *p.borrow_mut() = Some(d.clone());
                Outcome::Deferred(d)
            } else {
                Outcome::Value(())
            }
        });
        lc.start(secs(1), true).unwrap();
        clock.advance(secs(1)); // run 2 at t=1 (count 1), which blocks
        clock.advance(Duration::from_millis(3500));
        let d = pending.borrow_mut().take().unwrap();
        d.callback(()).unwrap(); // done at t=4.5: next run aligned at t=5
        clock.advance(Duration::from_millis(500));
        assert_eq!(*counts.borrow(), vec![1, 1, 4]);
        lc.stop().unwrap();
    }

    #[test]
    fn test_runs_stay_aligned_to_the_start() {
        let clock = Clock::new();
        clock.advance(Duration::from_millis(300));
        let times = Rc::new(RefCell::new(Vec::new()));
        let (t, c) = (times.clone(), clock.clone());
        let lc = LoopingCall::new(Rc::new(clock.clone()), move || {
            t.borrow_mut().push(c.seconds())
        });
        lc.start(secs(1), true).unwrap();
        clock.advance(Duration::from_millis(2500));
        let ms: Vec<u64> = times
            .borrow()
            .iter()
            .map(|t| t.since_epoch().as_millis() as u64)
            .collect();
        assert_eq!(ms, vec![300, 1300, 2300]);
        lc.stop().unwrap();
    }

    #[test]
    fn test_reset_restarts_the_interval_from_now() {
        let clock = Clock::new();
        let (n, f) = counter();
        let lc = LoopingCall::new(Rc::new(clock.clone()), f);
        lc.start(secs(2), false).unwrap();
        clock.advance(secs(1));
        lc.reset().unwrap();
        clock.advance(secs(1));
        assert_eq!(n.get(), 0, "the first run moved to t=3");
        clock.advance(secs(1));
        assert_eq!(n.get(), 1);
        lc.stop().unwrap();
    }

    #[test]
    fn test_zero_interval_runs_every_turn() {
        let clock = Clock::new();
        let n = Rc::new(Cell::new(0));
        let slot: Rc<RefCell<Option<LoopingCall>>> = Rc::default();
        let (n2, s) = (n.clone(), slot.clone());
        let lc = LoopingCall::new(Rc::new(clock.clone()), move || {
            n2.set(n2.get() + 1);
            if n2.get() == 5 {
                s.borrow().as_ref().unwrap().stop().unwrap();
            }
        });
        *slot.borrow_mut() = Some(lc.clone());
        let d = lc.start(Duration::ZERO, true).unwrap();
        clock.run_due();
        assert_eq!(n.get(), 5);
        assert!(d.called());
        assert_eq!(clock.seconds(), Instant::ZERO, "no time passed");
        *slot.borrow_mut() = None;
    }

    #[test]
    fn test_stop_cancels_the_pending_call() {
        let clock = Clock::new();
        let lc = LoopingCall::new(Rc::new(clock.clone()), || {});
        lc.start(secs(1), true).unwrap();
        assert_eq!(clock.get_delayed_calls().len(), 1);
        lc.stop().unwrap();
        assert!(clock.get_delayed_calls().is_empty());
    }

    #[test]
    fn test_an_interval_past_the_clock_range_saturates() {
        let clock = Clock::new();
        let (n, f) = counter();
        let lc = LoopingCall::new(Rc::new(clock.clone()), f);
        // 2^64 ns plus a second: truncated to u64 nanoseconds it would be under a second.
        let huge = Duration::from_nanos(u64::MAX) + secs(1);
        lc.start(huge, true).unwrap();
        assert_eq!(n.get(), 1);
        let calls = clock.get_delayed_calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].get_time(), Instant::from_nanos(u64::MAX));
        clock.advance(secs(3600));
        assert_eq!(
            n.get(),
            1,
            "the next run is at the end of time, not in a second"
        );
        lc.stop().unwrap();

        // The largest Duration, started late and not now: no panic, no wrap.
        clock.advance(secs(5));
        lc.start(Duration::MAX, false).unwrap();
        assert_eq!(
            clock.get_delayed_calls()[0].get_time(),
            Instant::from_nanos(u64::MAX)
        );
        lc.stop().unwrap();
    }

    /// Counts live instances.
    struct Guard(Rc<Cell<i32>>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.set(self.0.get() - 1);
        }
    }
    fn guard(live: &Rc<Cell<i32>>) -> Guard {
        live.set(live.get() + 1);
        Guard(live.clone())
    }

    #[test]
    fn test_a_stopped_looping_call_is_dropped_with_its_function() {
        let clock = Clock::new();
        let live = Rc::new(Cell::new(0));
        for stop_inside in [false, true] {
            let g = guard(&live);
            let me: Rc<RefCell<Option<LoopingCall>>> = Rc::default();
            let m = Rc::downgrade(&me);
            let lc = LoopingCall::new(Rc::new(clock.clone()), move || {
                let _captured = &g;
                if stop_inside {
                    if let Some(lc) = m.upgrade().and_then(|m| m.borrow().clone()) {
                        let _ = lc.stop();
                    }
                }
            });
            *me.borrow_mut() = Some(lc.clone());
            let done = lc.start(secs(1), false).unwrap();
            clock.advance(secs(1));
            if !stop_inside {
                lc.stop().unwrap();
            }
            assert!(done.called());
            assert!(clock.get_delayed_calls().is_empty());
            drop((lc, done, me));
            assert_eq!(
                live.get(),
                0,
                "stopped (from inside: {stop_inside}): all dropped"
            );
        }
    }
}
