//! `defer_later`: a Deferred of a function's result after a delay.

use std::rc::Rc;
use std::time::Duration;

use crate::defer::{Deferred, IntoOutcome, Outcome};
use crate::reactor::{ReactorTime, ReactorTimeExt};

/// Calls `f` after `delay` and fires the Deferred with its value (Twisted's `deferLater`).
/// Cancelling the Deferred cancels the call and fails it with
/// [`CancelledError`](crate::error::CancelledError).
///
/// ```
/// use std::{rc::Rc, time::Duration};
/// use torsion::task::defer_later;
/// use torsion::testing::Clock;
///
/// let clock = Clock::new();
/// let d = defer_later(&(Rc::new(clock.clone()) as _), Duration::from_secs(3), || "done");
/// clock.advance(Duration::from_secs(3));
/// assert_eq!(d.result().unwrap().unwrap(), "done");
/// ```
pub fn defer_later<T: 'static>(
    clock: &Rc<dyn ReactorTime>,
    delay: Duration,
    f: impl FnOnce() -> T + 'static,
) -> Deferred<T> {
    defer_later_with(clock, delay, move || Outcome::Value(f()))
}

/// [`defer_later`] for a function that may fail or return a Deferred.
pub fn defer_later_with<R: IntoOutcome>(
    clock: &Rc<dyn ReactorTime>,
    delay: Duration,
    f: impl FnOnce() -> R + 'static,
) -> Deferred<R::Value> {
    let slot: Rc<std::cell::RefCell<Option<crate::reactor::DelayedCall>>> = Rc::default();
    let s = slot.clone();
    let d = Deferred::with_canceller(move |_| {
        if let Some(call) = s.borrow_mut().take() {
            let _ = call.cancel();
        }
    });
    let fire = d.clone();
    let call = clock.call_later(delay, move || {
        let inner = crate::defer::maybe_deferred(f);
        let _ = inner.chain_deferred(&fire);
    });
    *slot.borrow_mut() = Some(call);
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defer::Failure;
    use crate::error::CancelledError;
    use crate::testing::Clock;

    fn clock() -> (Clock, Rc<dyn ReactorTime>) {
        let c = Clock::new();
        (c.clone(), Rc::new(c))
    }

    #[test]
    fn test_callback_after_the_delay() {
        let (c, r) = clock();
        let d = defer_later(&r, Duration::from_secs(2), || 7);
        c.advance(Duration::from_secs(1));
        assert!(!d.called());
        c.advance(Duration::from_secs(1));
        assert_eq!(d.result().unwrap().unwrap(), 7);
    }

    #[test]
    fn test_errback_when_the_function_fails() {
        let (c, r) = clock();
        let d = defer_later_with(&r, Duration::from_secs(1), || {
            Err::<(), _>(Failure::msg("no"))
        });
        c.advance(Duration::from_secs(1));
        assert_eq!(d.take_result().unwrap().unwrap_err().to_string(), "no");
    }

    #[test]
    fn test_cancel_cancels_the_call() {
        let (c, r) = clock();
        let ran = Rc::new(std::cell::Cell::new(false));
        let rn = ran.clone();
        let d = defer_later(&r, Duration::from_secs(1), move || rn.set(true));
        d.cancel();
        assert!(c.get_delayed_calls().is_empty());
        c.advance(Duration::from_secs(5));
        assert!(!ran.get());
        assert!(d.take_result().unwrap().unwrap_err().is::<CancelledError>());
    }

    #[test]
    fn test_chained_defer_laters_each_run_at_their_own_time() {
        // Twisted #9819: each link of a chain of deferLaters runs at its own time.
        let (c, r) = clock();
        let r2 = r.clone();
        let c2 = c.clone();
        let d = defer_later_with(&r, Duration::from_secs(1), move || {
            let c3 = c2.clone();
            defer_later(&r2, Duration::from_secs(1), move || c3.seconds())
        });
        c.advance(Duration::from_secs(10));
        assert_eq!(
            d.result().unwrap().unwrap().since_epoch(),
            Duration::from_secs(2)
        );
    }
}
