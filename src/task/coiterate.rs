//! `coiterate`: run an iterator's steps a few at a time, yielding to the reactor between
//! batches (Twisted's `Cooperator` / `coiterate`).
//!
//! Twisted bounds a batch by a 10 ms time slice. torsion bounds it by a step count instead:
//! reading a clock to decide when to yield would make the schedule depend on how fast the
//! machine is, which a deterministic simulation cannot allow.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::defer::{Deferred, Failure, Outcome};
use crate::reactor::{ReactorTime, ReactorTimeExt};

/// Steps per reactor turn for [`coiterate`].
pub const DEFAULT_STEPS_PER_TURN: usize = 10;

struct Work<I> {
    iter: RefCell<Option<I>>,
    clock: Rc<dyn ReactorTime>,
    done: Deferred<()>,
    steps: usize,
}

/// Runs `iter` to the end cooperatively: each item is a step (`Outcome::Value(())`), a
/// failure (which stops the iteration and fails the Deferred), or a Deferred to wait for
/// before the next step. Fires with `()` when the iterator is exhausted; cancelling it
/// stops the iteration.
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// use torsion::defer::Outcome;
/// use torsion::task::coiterate;
/// use torsion::testing::Clock;
///
/// let clock = Clock::new();
/// let n = Rc::new(Cell::new(0));
/// let n2 = n.clone();
/// let d = coiterate(&(Rc::new(clock.clone()) as _), (0..25).map(move |_| {
///     n2.set(n2.get() + 1);
///     Outcome::Value(())
/// }));
/// assert_eq!(n.get(), 10); // the first batch ran at once
/// clock.run_due();
/// assert_eq!(n.get(), 25);
/// assert!(d.called());
/// ```
pub fn coiterate<I>(clock: &Rc<dyn ReactorTime>, iter: I) -> Deferred<()>
where
    I: Iterator<Item = Outcome<()>> + 'static,
{
    coiterate_with(clock, iter, DEFAULT_STEPS_PER_TURN)
}

/// [`coiterate`] with `steps` steps per reactor turn.
pub fn coiterate_with<I>(clock: &Rc<dyn ReactorTime>, iter: I, steps: usize) -> Deferred<()>
where
    I: Iterator<Item = Outcome<()>> + 'static,
{
    let work: Rc<Work<I>> = Rc::new_cyclic(|me: &std::rc::Weak<Work<I>>| {
        let me = me.clone();
        Work {
            iter: RefCell::new(Some(iter)),
            clock: clock.clone(),
            done: Deferred::with_canceller(move |_| {
                if let Some(w) = me.upgrade() {
                    w.iter.borrow_mut().take(); // stop: no more steps
                }
            }),
            steps: steps.max(1),
        }
    });
    let d = work.done.clone();
    run_batch(work);
    d
}

fn run_batch<I>(work: Rc<Work<I>>)
where
    I: Iterator<Item = Outcome<()>> + 'static,
{
    for _ in 0..work.steps {
        let next = {
            let mut it = work.iter.borrow_mut();
            match it.as_mut() {
                Some(i) => i.next(),
                None => return, // cancelled
            }
        };
        match next {
            None => {
                work.iter.borrow_mut().take();
                let _ = work.done.callback(());
                return;
            }
            Some(Outcome::Value(())) => {}
            Some(Outcome::Failure(f)) => {
                work.iter.borrow_mut().take();
                let _ = work.done.errback(f);
                return;
            }
            Some(Outcome::Deferred(wait)) => {
                let w = work.clone();
                let _ = wait.add_both(move |r: Result<(), Failure>| {
                    match r {
                        Ok(()) => {
                            let w2 = w.clone();
                            w.clock.call_later(Duration::ZERO, move || run_batch(w2));
                        }
                        Err(f) => {
                            w.iter.borrow_mut().take();
                            let _ = w.done.errback(f);
                        }
                    }
                    Ok::<(), Failure>(())
                });
                return;
            }
        }
    }
    let w = work.clone();
    work.clock.call_later(Duration::ZERO, move || run_batch(w));
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::error::CancelledError;
    use crate::testing::Clock;

    fn clock() -> (Clock, Rc<dyn ReactorTime>) {
        let c = Clock::new();
        (c.clone(), Rc::new(c))
    }

    #[test]
    fn test_runs_in_batches_and_finishes() {
        let (c, r) = clock();
        let n = Rc::new(Cell::new(0));
        let n2 = n.clone();
        let d = coiterate_with(
            &r,
            (0..7).map(move |_| {
                n2.set(n2.get() + 1);
                Outcome::Value(())
            }),
            3,
        );
        assert_eq!(n.get(), 3);
        assert!(!d.called());
        c.run_due();
        assert_eq!(n.get(), 7);
        assert!(d.called());
    }

    #[test]
    fn test_failure_stops_iteration() {
        let (c, r) = clock();
        let n = Rc::new(Cell::new(0));
        let n2 = n.clone();
        let d = coiterate(
            &r,
            (0..100).map(move |i| {
                n2.set(n2.get() + 1);
                if i == 4 {
                    Outcome::Failure(Failure::msg("step 4"))
                } else {
                    Outcome::Value(())
                }
            }),
        );
        c.run_due();
        assert_eq!(n.get(), 5);
        assert_eq!(d.take_result().unwrap().unwrap_err().to_string(), "step 4");
    }

    #[test]
    fn test_waits_for_a_deferred_step() {
        let (c, r) = clock();
        let gate = Deferred::<()>::new();
        let g = gate.clone();
        let steps: Vec<Outcome<()>> =
            vec![Outcome::Value(()), Outcome::Deferred(g), Outcome::Value(())];
        let d = coiterate(&r, steps.into_iter());
        c.run_due();
        assert!(!d.called());
        gate.callback(()).unwrap();
        c.run_due();
        assert!(d.called());
    }

    #[test]
    fn test_cancel_stops_the_iteration() {
        let (c, r) = clock();
        let n = Rc::new(Cell::new(0));
        let n2 = n.clone();
        let d = coiterate_with(
            &r,
            (0..100).map(move |_| {
                n2.set(n2.get() + 1);
                Outcome::Value(())
            }),
            2,
        );
        d.cancel();
        c.run_due();
        assert_eq!(n.get(), 2);
        assert!(d.take_result().unwrap().unwrap_err().is::<CancelledError>());
    }
}
