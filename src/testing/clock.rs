//! `Clock`: a manually advanced [`ReactorTime`].

use std::time::Duration;

use std::any::Any;
use std::rc::Rc;

use crate::defer::Deferred;
use crate::reactor::{
    run_work, DelayedCall, Instant, ReactorRandom, ReactorThreads, ReactorTime, SplitMix64,
    ThreadCallQueue, ThreadCaller, ThreadWork, TimerQueue,
};

/// A reactor clock that moves only when told to (Twisted's `task.Clock`).
///
/// ```
/// use std::{cell::RefCell, rc::Rc, time::Duration};
/// use torsion::prelude::*;
/// use torsion::testing::Clock;
///
/// let clock = Clock::new();
/// let seen = Rc::new(RefCell::new(Vec::new()));
/// for secs in [3, 1, 2] {
///     let (seen, c) = (seen.clone(), clock.clone());
///     clock.call_later(Duration::from_secs(secs), move || seen.borrow_mut().push(c.seconds()));
/// }
/// clock.advance(Duration::from_secs(10));
/// // Each call saw its own time, not the end of the advance.
/// let secs: Vec<u64> = seen.borrow().iter().map(|t| t.since_epoch().as_secs()).collect();
/// assert_eq!(secs, vec![1, 2, 3]);
/// assert_eq!(clock.seconds().since_epoch(), Duration::from_secs(10));
/// ```
#[derive(Clone)]
pub struct Clock {
    queue: TimerQueue,
    threads: Rc<ThreadCallQueue>,
    random: Rc<SplitMix64>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            queue: TimerQueue::new(),
            threads: Rc::new(ThreadCallQueue::new(None)),
            random: Rc::new(SplitMix64::new(0)),
        }
    }
}

impl Clock {
    /// A clock reading zero with nothing scheduled.
    pub fn new() -> Self {
        Self::default()
    }

    /// A clock whose random source (for jitter) is seeded with `seed` (the default is 0).
    pub fn with_seed(seed: u64) -> Self {
        Clock {
            random: Rc::new(SplitMix64::new(seed)),
            ..Self::default()
        }
    }

    /// Moves time forward by `amount`, running every call that falls due on the way, each at
    /// its own time and in (deadline, sequence) order, including calls those calls schedule.
    /// Calls queued from other threads (`call_from_thread`) run first, at the current time.
    pub fn advance(&self, amount: Duration) {
        let end = self.queue.now() + amount;
        loop {
            self.threads.drain();
            let Some((at, call)) = self.queue.pop_due(end) else {
                break;
            };
            self.queue.set_now(at);
            call();
        }
        self.queue.set_now(end);
        self.threads.drain();
    }

    /// Advances by each amount in turn (Twisted's `pump`).
    pub fn pump(&self, amounts: &[Duration]) {
        for amount in amounts {
            self.advance(*amount);
        }
    }

    /// Runs the calls due now without moving time (calls they schedule for now run too).
    pub fn run_due(&self) {
        self.advance(Duration::ZERO);
    }

    /// The pending calls, earliest first (Twisted's `getDelayedCalls`).
    pub fn get_delayed_calls(&self) -> Vec<DelayedCall> {
        self.queue.delayed_calls()
    }
}

impl ReactorTime for Clock {
    fn seconds(&self) -> Instant {
        self.queue.now()
    }

    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        self.queue.call_later_boxed(delay, f)
    }
}

/// A clock is also a random source, so code that jitters (`ReconnectingClientFactory`) can
/// be tested on it alone.
impl ReactorRandom for Clock {
    fn next_u64(&self) -> u64 {
        self.random.next_u64()
    }
}

impl ReactorThreads for Clock {
    fn thread_caller(&self) -> ThreadCaller {
        self.threads.caller()
    }

    /// Runs `work` inline (a test double has no threads) and fires the Deferred on the next
    /// turn, as a worker's result would arrive.
    fn defer_to_thread_boxed(&self, work: ThreadWork) -> Deferred<Box<dyn Any + Send>> {
        let d = Deferred::new();
        let result = run_work(work);
        let fire = d.clone();
        self.queue.call_later(Duration::ZERO, move || {
            let _ = fire.resolve(result);
        });
        d
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::reactor::ReactorTimeExt;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn test_seconds_starts_at_zero() {
        assert_eq!(Clock::new().seconds(), Instant::ZERO);
    }

    #[test]
    fn test_advance_moves_time() {
        let c = Clock::new();
        c.advance(secs(1));
        assert_eq!(c.seconds(), Instant::ZERO + secs(1));
    }

    #[test]
    fn test_call_later_runs_at_its_time() {
        let c = Clock::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        let (l, cc) = (log.clone(), c.clone());
        c.call_later(secs(2), move || l.borrow_mut().push(cc.seconds()));
        c.advance(secs(1));
        assert!(log.borrow().is_empty());
        c.advance(secs(5));
        assert_eq!(*log.borrow(), vec![Instant::ZERO + secs(2)]);
    }

    #[test]
    fn test_chained_calls_each_run_at_own_time() {
        // Twisted #9819: chained call_laters inside one advance each run at their own time.
        let c = Clock::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        let (l, cc) = (log.clone(), c.clone());
        c.call_later(secs(1), move || {
            l.borrow_mut().push(cc.seconds());
            let (l2, cc2) = (l.clone(), cc.clone());
            cc.call_later(secs(1), move || l2.borrow_mut().push(cc2.seconds()));
        });
        c.advance(secs(5));
        assert_eq!(
            *log.borrow(),
            vec![Instant::ZERO + secs(1), Instant::ZERO + secs(2)]
        );
    }

    #[test]
    fn test_call_soon_runs_after_current_call() {
        let c = Clock::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        let (l, cc) = (log.clone(), c.clone());
        c.call_later(secs(1), move || {
            let l2 = l.clone();
            cc.call_soon(move || l2.borrow_mut().push("soon"));
            l.borrow_mut().push("first");
        });
        let l3 = log.clone();
        c.call_later(secs(1), move || l3.borrow_mut().push("second"));
        c.advance(secs(1));
        assert_eq!(*log.borrow(), vec!["first", "second", "soon"]);
    }

    #[test]
    fn test_call_from_thread_runs_on_advance() {
        use crate::reactor::ReactorThreadsExt;
        let c = Clock::new();
        let caller = c.thread_caller();
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f = flag.clone();
        #[allow(clippy::disallowed_methods)]
        std::thread::spawn(move || {
            caller.call(move || f.store(true, std::sync::atomic::Ordering::SeqCst))
        })
        .join()
        .unwrap();
        assert!(!flag.load(std::sync::atomic::Ordering::SeqCst));
        c.run_due();
        assert!(flag.load(std::sync::atomic::Ordering::SeqCst));
        let d = c.defer_to_thread(|| 6 * 7);
        assert!(!d.called(), "fires on a later turn");
        c.run_due();
        assert_eq!(d.result().unwrap().unwrap(), 42);
    }

    #[test]
    fn test_pump_and_delayed_calls() {
        let c = Clock::new();
        let a = c.call_later(secs(3), || {});
        assert_eq!(c.get_delayed_calls().len(), 1);
        c.pump(&[secs(1), secs(1), secs(1)]);
        assert!(a.called());
        assert!(c.get_delayed_calls().is_empty());
    }

    #[test]
    fn test_delays_past_the_clock_range_saturate() {
        let c = Clock::new();
        c.advance(secs(10));
        let end = Instant::from_nanos(u64::MAX);
        let never = c.call_later(Duration::MAX, || panic!("runs at the end of time"));
        assert_eq!(never.get_time(), end);
        let later = c.call_later(secs(1), || {});
        later.delay(Duration::MAX).unwrap();
        assert_eq!(later.get_time(), end);
        let reset = c.call_later(secs(1), || {});
        reset.reset(Duration::MAX).unwrap();
        assert_eq!(reset.get_time(), end);
        c.advance(secs(3600));
        assert!(never.active() && later.active() && reset.active());
        // Advancing past the end stops there rather than wrapping to the start.
        never.cancel().unwrap();
        c.advance(Duration::MAX);
        assert_eq!(c.seconds(), end);
        assert!(later.called() && reset.called());
    }
}
