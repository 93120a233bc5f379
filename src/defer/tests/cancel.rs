//! Cancellation and timeouts.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use super::support::{log, push};
use crate::defer::{Deferred, Failure};
use crate::error::{AlreadyCalledError, CancelledError, TimeoutError};
use crate::reactor::ReactorTime;
use crate::testing::Clock;

#[test]
fn test_cancel_without_canceller_fails_with_cancelled_error() {
    let d = Deferred::<i32>::new();
    d.cancel();
    assert!(d.take_result().unwrap().unwrap_err().is::<CancelledError>());
}

#[test]
fn test_cancel_without_canceller_swallows_one_fire() {
    let d = Deferred::<i32>::new();
    d.cancel();
    assert_eq!(d.callback(1), Ok(()), "the first late fire is absorbed");
    assert_eq!(
        d.callback(2),
        Err(AlreadyCalledError::new()),
        "the second is not"
    );
    let _ = d.take_result();
}

#[test]
fn test_cancel_without_canceller_swallows_a_late_errback_too() {
    let d = Deferred::<i32>::new();
    d.cancel();
    assert_eq!(d.errback(Failure::msg("late")), Ok(()));
    assert!(d.take_result().unwrap().unwrap_err().is::<CancelledError>());
}

#[test]
fn test_canceller_called_once() {
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let d = Deferred::<i32>::with_canceller(move |_| c.set(c.get() + 1));
    d.cancel();
    d.cancel();
    assert_eq!(calls.get(), 1);
    assert!(d.take_result().unwrap().unwrap_err().is::<CancelledError>());
}

#[test]
fn test_canceller_that_fires_with_a_value_wins() {
    let d = Deferred::<&str>::with_canceller(|d| {
        d.callback("cancelled gracefully").unwrap();
    });
    d.cancel();
    assert_eq!(d.result().unwrap().unwrap(), "cancelled gracefully");
}

#[test]
fn test_canceller_that_errbacks_with_its_own_failure() {
    let d = Deferred::<()>::with_canceller(|d| {
        d.errback(Failure::msg("custom")).unwrap();
    });
    d.cancel();
    assert_eq!(d.take_result().unwrap().unwrap_err().to_string(), "custom");
}

#[test]
fn test_canceller_does_not_suppress_already_called() {
    let d = Deferred::<i32>::with_canceller(|_| {});
    d.cancel();
    assert_eq!(d.callback(1), Err(AlreadyCalledError::new()));
    let _ = d.take_result();
}

#[test]
fn test_cancel_on_fired_deferred_does_nothing() {
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let d = Deferred::<i32>::with_canceller(move |_| c.set(1));
    d.callback(3).unwrap();
    d.cancel();
    assert_eq!(calls.get(), 0);
    assert_eq!(d.result().unwrap().unwrap(), 3);
}

#[test]
fn test_cancel_fired_deferred_waiting_on_inner_cancels_inner() {
    let l = log();
    let l2 = l.clone();
    let inner = Deferred::<i32>::with_canceller(move |_| push(&l2, "inner cancelled"));
    let outer = Deferred::<i32>::new();
    let i = inner.clone();
    let out = outer.clone().and_then(move |_| i);
    outer.callback(0).unwrap();
    out.cancel();
    assert_eq!(*l.borrow(), vec!["inner cancelled"]);
    assert!(out
        .take_result()
        .unwrap()
        .unwrap_err()
        .is::<CancelledError>());
}

#[test]
fn test_cancel_reaches_through_two_levels() {
    let hit = Rc::new(Cell::new(false));
    let h = hit.clone();
    let innermost = Deferred::<i32>::with_canceller(move |_| h.set(true));
    let middle = Deferred::<i32>::new();
    let outer = Deferred::<i32>::new();
    let (m, im) = (middle.clone(), innermost.clone());
    let _mw = middle.clone().and_then(move |_| im);
    let out = outer.clone().and_then(move |_| m);
    outer.callback(0).unwrap();
    middle.callback(0).unwrap();
    out.cancel();
    assert!(hit.get());
    assert!(out
        .take_result()
        .unwrap()
        .unwrap_err()
        .is::<CancelledError>());
}

#[test]
fn test_errback_added_before_cancel_can_trap_it() {
    let d = Deferred::<i32>::new();
    let out = d.clone().add_errback(|f| {
        f.trap::<CancelledError>()?;
        Ok(0)
    });
    d.cancel();
    assert_eq!(out.result().unwrap().unwrap(), 0);
}

#[test]
fn test_timeout_fires_timeout_error() {
    let clock = Clock::new();
    let d = Deferred::<i32>::new().add_timeout(Duration::from_secs(10), &clock);
    clock.advance(Duration::from_secs(9));
    assert!(!d.called());
    clock.advance(Duration::from_secs(1));
    let f = d.take_result().unwrap().unwrap_err();
    assert_eq!(
        f.downcast_ref::<TimeoutError>(),
        Some(&TimeoutError(Duration::from_secs(10)))
    );
}

#[test]
fn test_timeout_not_hit_cancels_its_timer() {
    let clock = Clock::new();
    let d = Deferred::<i32>::new();
    let out = d.clone().add_timeout(Duration::from_secs(10), &clock);
    assert_eq!(clock.get_delayed_calls().len(), 1);
    clock.advance(Duration::from_secs(5));
    d.callback(1).unwrap();
    assert!(
        clock.get_delayed_calls().is_empty(),
        "the timeout call is cancelled"
    );
    assert_eq!(out.result().unwrap().unwrap(), 1);
    assert_eq!(clock.seconds().since_epoch(), Duration::from_secs(5));
}

#[test]
fn test_timeout_with_canceller_value_wins() {
    let clock = Clock::new();
    let d = Deferred::<&str>::with_canceller(|d| {
        d.callback("fallback").unwrap();
    })
    .add_timeout(Duration::from_secs(1), &clock);
    clock.advance(Duration::from_secs(1));
    assert_eq!(d.result().unwrap().unwrap(), "fallback");
}

#[test]
fn test_timeout_after_errback_that_traps_cancelled_gives_success() {
    let clock = Clock::new();
    let d = Deferred::<i32>::new()
        .add_errback(|f| {
            f.trap::<CancelledError>()?;
            Ok(99)
        })
        .add_timeout(Duration::from_secs(1), &clock);
    clock.advance(Duration::from_secs(2));
    assert_eq!(d.result().unwrap().unwrap(), 99);
}

#[test]
fn test_timeout_does_not_cover_callbacks_added_after_it() {
    let clock = Clock::new();
    let d = Deferred::<i32>::new();
    let out = d
        .clone()
        .add_timeout(Duration::from_secs(1), &clock)
        .add_errback(|f| {
            // This errback is after the conversion: it sees TimeoutError.
            Ok::<_, Failure>(if f.is::<TimeoutError>() { 1 } else { 2 })
        });
    clock.advance(Duration::from_secs(1));
    assert_eq!(out.result().unwrap().unwrap(), 1);
}

#[test]
fn test_timeout_other_failures_pass_unchanged() {
    let clock = Clock::new();
    let d = Deferred::<i32>::new();
    let out = d.clone().add_timeout(Duration::from_secs(5), &clock);
    d.errback(Failure::msg("real error")).unwrap();
    assert_eq!(
        out.take_result().unwrap().unwrap_err().to_string(),
        "real error"
    );
    assert!(clock.get_delayed_calls().is_empty());
}

#[test]
fn test_timeout_with_custom_on_timeout() {
    let clock = Clock::new();
    let d = Deferred::<i32>::new().add_timeout_with(Duration::from_secs(3), &clock, |r, t| {
        assert!(r.unwrap_err().is::<CancelledError>());
        Ok(t.as_secs() as i32)
    });
    clock.advance(Duration::from_secs(3));
    assert_eq!(d.result().unwrap().unwrap(), 3);
}

#[test]
fn test_cancel_on_deferreds_waiting_on_each_other_returns() {
    // a's callback returns b, b's returns a: each waits on the other, forever.
    let (a, b) = (Deferred::<i32>::new(), Deferred::<i32>::new());
    let (a2, b2) = (a.clone(), b.clone());
    let _ta = a.clone().and_then(move |_| b2);
    let _tb = b.clone().and_then(move |_| a2);
    a.callback(1).unwrap();
    b.callback(2).unwrap();
    assert!(a.paused() && b.paused());
    a.cancel(); // must return
    b.cancel();
    assert!(
        a.paused() && b.paused(),
        "nothing in a cycle can be cancelled"
    );
}

#[test]
fn test_cancel_on_longer_cycle_of_waiting_deferreds_returns() {
    let ds: Vec<Deferred<i32>> = (0..5).map(|_| Deferred::new()).collect();
    for i in 0..ds.len() {
        let next = ds[(i + 1) % ds.len()].clone();
        let _ = ds[i].clone().and_then(move |_| next);
    }
    for d in &ds {
        d.callback(0).unwrap();
    }
    for d in &ds {
        d.cancel();
    }
    assert!(ds.iter().all(Deferred::paused));
}

/// Counts its drops: captured by a Deferred's canceller or callbacks, it shows when that
/// Deferred's state is freed.
struct Counted(Rc<Cell<u32>>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// A Deferred nobody else holds, whose canceller logs and holds a drop counter.
fn unheld_inner(l: &super::support::Log, drops: &Rc<Cell<u32>>) -> Deferred<i32> {
    let (l, counted) = (l.clone(), Counted(drops.clone()));
    Deferred::<i32>::with_canceller(move |_| {
        let _keep = &counted;
        push(&l, "inner cancelled");
    })
}

#[test]
fn test_cancel_outer_runs_canceller_of_inner_nobody_else_holds() {
    let l = log();
    let drops = Rc::new(Cell::new(0));
    let outer = Deferred::<i32>::new();
    let (l2, d2) = (l.clone(), drops.clone());
    let out = outer.clone().and_then(move |_| unheld_inner(&l2, &d2));
    outer.callback(0).unwrap();
    assert!(out.paused());
    out.cancel();
    assert_eq!(*l.borrow(), vec!["inner cancelled"]);
    assert!(out
        .take_result()
        .unwrap()
        .unwrap_err()
        .is::<CancelledError>());
    assert!(!out.paused(), "the outer resumed with the cancellation");
    assert_eq!(drops.get(), 1, "the inner was freed once it fired");
}

#[test]
fn test_cancel_reaches_through_two_levels_nobody_else_holds() {
    let l = log();
    let drops = Rc::new(Cell::new(0));
    let outer = Deferred::<i32>::new();
    let middle = Deferred::<i32>::new();
    let (l2, d2) = (l.clone(), drops.clone());
    let middle_tail = middle.clone().and_then(move |_| unheld_inner(&l2, &d2));
    middle.callback(0).unwrap();
    drop(middle);
    let out = outer.clone().and_then(move |_| middle_tail);
    outer.callback(0).unwrap();
    out.cancel();
    assert_eq!(*l.borrow(), vec!["inner cancelled"]);
    assert!(out
        .take_result()
        .unwrap()
        .unwrap_err()
        .is::<CancelledError>());
}

#[test]
fn test_abandoned_outer_waiting_on_unheld_inner_is_freed() {
    let l = log();
    let drops = Rc::new(Cell::new(0));
    let outer = Deferred::<i32>::new();
    let (l2, d2) = (l.clone(), drops.clone());
    let after = Counted(drops.clone());
    let out = outer
        .clone()
        .and_then(move |_| unheld_inner(&l2, &d2))
        .add_callback(move |x| {
            let _keep = &after;
            x
        });
    outer.callback(0).unwrap();
    assert!(out.paused());
    drop(outer);
    assert_eq!(drops.get(), 0, "held while a handle could still cancel it");
    drop(out);
    assert_eq!(drops.get(), 2, "inner and outer freed: no reference cycle");
    assert!(l.borrow().is_empty(), "abandoning is not cancelling");
}

#[test]
fn test_abandoned_two_level_chain_is_freed() {
    let l = log();
    let drops = Rc::new(Cell::new(0));
    let (outer, middle) = (Deferred::<i32>::new(), Deferred::<i32>::new());
    let (l2, d2) = (l.clone(), drops.clone());
    let after_middle = Counted(drops.clone());
    let middle_tail = middle
        .clone()
        .and_then(move |_| unheld_inner(&l2, &d2))
        .add_finally(move || drop(after_middle));
    middle.callback(0).unwrap();
    let after_outer = Counted(drops.clone());
    let out = outer
        .clone()
        .and_then(move |_| middle_tail)
        .add_finally(move || drop(after_outer));
    outer.callback(0).unwrap();
    drop((outer, middle));
    assert_eq!(drops.get(), 0);
    drop(out);
    assert_eq!(drops.get(), 3, "all three freed");
}

#[test]
fn test_outer_waiting_on_held_inner_is_freed_after_the_inner_fires() {
    let drops = Rc::new(Cell::new(0));
    let inner = Deferred::<i32>::new();
    let outer = Deferred::<i32>::new();
    let i = inner.clone();
    let after = Counted(drops.clone());
    let out = outer.clone().and_then(move |_| i).add_callback(move |x| {
        let _keep = &after;
        x + 1
    });
    outer.callback(0).unwrap();
    inner.callback(1).unwrap();
    assert_eq!(out.result().unwrap().unwrap(), 2);
    drop((outer, out));
    assert_eq!(drops.get(), 1, "the callback ran and was dropped");
    let weak = std::rc::Rc::downgrade(&inner.core);
    drop(inner);
    assert!(
        weak.upgrade().is_none(),
        "the inner is freed: the link back was cleared"
    );
}
