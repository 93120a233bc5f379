//! Waiting on many Deferreds: `DeferredList`, `gather_results`, `race`.
//!
//! Each takes the member Deferreds by value and ends their chains: a member's value moves
//! into the combined result and the member's own chain continues with `()`. A member's
//! failure is copied in (failures are cheap to clone) and stays in the member unless
//! `consume_errors` is set — then, as in Twisted, it is not reported as unhandled.

use std::cell::RefCell;
use std::rc::Rc;

use crate::defer::{Deferred, Failure};
use crate::error::{FailureGroup, FirstError};

/// Twisted's `DeferredList`: waits for every member (or the first success or failure, with
/// the options) and fires with their results in input order.
///
/// ```
/// use torsion::defer::{succeed, fail, DeferredList, Failure};
///
/// let list = DeferredList::new(vec![succeed(1), fail(Failure::msg("no")), succeed(3)])
///     .consume_errors(true)
///     .build();
/// let results = list.take_result().unwrap().unwrap();
/// assert_eq!(results[0].as_ref().ok(), Some(&1));
/// assert!(results[1].is_err());
/// ```
pub struct DeferredList<T> {
    members: Vec<Deferred<T>>,
    fire_on_one_errback: bool,
    consume_errors: bool,
}

/// The result of [`DeferredList::first_callback`] (Twisted's `fireOnOneCallback`).
#[derive(Debug)]
pub enum FirstCallback<T> {
    /// The first member to succeed, and its index.
    First(T, usize),
    /// No member succeeded: every result, in input order.
    None(Vec<Result<T, Failure>>),
}

struct ListState<T> {
    results: Vec<Option<Result<T, Failure>>>,
    remaining: usize,
    done: bool,
}

impl<T: 'static> DeferredList<T> {
    /// A list over `members`, with every option off.
    pub fn new(members: Vec<Deferred<T>>) -> Self {
        DeferredList {
            members,
            fire_on_one_errback: false,
            consume_errors: false,
        }
    }

    /// Fail with [`FirstError`] as soon as any member fails (Twisted's `fireOnOneErrback`).
    pub fn fire_on_one_errback(mut self, on: bool) -> Self {
        self.fire_on_one_errback = on;
        self
    }

    /// Mark member failures as handled (Twisted's `consumeErrors`).
    pub fn consume_errors(mut self, on: bool) -> Self {
        self.consume_errors = on;
        self
    }

    /// Every member's result, in input order, once all have fired (an empty list fires at
    /// once with `[]`); with `fire_on_one_errback`, the first failure as [`FirstError`].
    /// Cancelling it calls `cancel` on every member: those still pending fail with
    /// [`CancelledError`](crate::error::CancelledError), those paused on an inner Deferred
    /// cancel that inner, those done are left alone.
    #[track_caller]
    pub fn build(self) -> Deferred<Vec<Result<T, Failure>>> {
        let n = self.members.len();
        let out = canceller_over(&self.members);
        if n == 0 {
            let _ = out.callback(Vec::new());
            return out;
        }
        let on_err = self.fire_on_one_errback;
        self.watch(out, move |st, index, r| {
            let failed = r.as_ref().err().cloned();
            st.results[index] = Some(r);
            st.remaining -= 1;
            if st.done {
                None
            } else if let (true, Some(failure)) = (on_err, failed) {
                st.done = true;
                Some(Err(FirstError { failure, index }.into()))
            } else if st.remaining == 0 {
                st.done = true;
                Some(Ok(st.results.iter_mut().filter_map(Option::take).collect()))
            } else {
                None
            }
        })
    }

    /// Fires with the first member to succeed and its index (Twisted's
    /// `fireOnOneCallback`); if none does, with every result. Never fires for an empty list.
    #[track_caller]
    pub fn first_callback(self) -> Deferred<FirstCallback<T>> {
        let out = canceller_over(&self.members);
        let on_err = self.fire_on_one_errback;
        self.watch(out, move |st, index, r| {
            st.remaining -= 1;
            if st.done {
                st.results[index] = Some(r);
                return None;
            }
            match r {
                Ok(v) => {
                    st.done = true;
                    Some(Ok(FirstCallback::First(v, index)))
                }
                Err(failure) if on_err => {
                    st.done = true;
                    Some(Err(FirstError { failure, index }.into()))
                }
                Err(f) => {
                    st.results[index] = Some(Err(f));
                    if st.remaining == 0 {
                        st.done = true;
                        let all = st.results.iter_mut().filter_map(Option::take);
                        Some(Ok(FirstCallback::None(all.collect())))
                    } else {
                        None
                    }
                }
            }
        })
    }

    /// Adds `step` to every member: it records the member's result in the shared state and
    /// says whether (and with what) `out` fires now. A failure is passed on down the
    /// member's own chain unless `consume_errors` is set.
    fn watch<U: 'static>(
        self,
        out: Deferred<U>,
        step: impl Fn(&mut ListState<T>, usize, Result<T, Failure>) -> Option<Result<U, Failure>>
            + 'static,
    ) -> Deferred<U> {
        let n = self.members.len();
        let state = Rc::new(RefCell::new(ListState::<T> {
            results: (0..n).map(|_| None).collect(),
            remaining: n,
            done: false,
        }));
        let step = Rc::new(step);
        let consume = self.consume_errors;
        for (index, d) in self.members.into_iter().enumerate() {
            let (state, out, step) = (state.clone(), out.clone(), step.clone());
            let _ = d.add_both(move |r: Result<T, Failure>| {
                let keep = match &r {
                    Err(f) if !consume => Err(f.clone()),
                    _ => Ok(()),
                };
                let fire = step(&mut state.borrow_mut(), index, r);
                if let Some(result) = fire {
                    let _ = out.resolve(result);
                }
                keep
            });
        }
        out
    }
}

/// A Deferred whose canceller cancels every member, as Twisted's `DeferredList.cancel`
/// does: `cancel` on a member that has fired does nothing, unless the member is paused
/// waiting on an inner Deferred, which it then cancels.
#[track_caller]
fn canceller_over<T: 'static, U: 'static>(members: &[Deferred<T>]) -> Deferred<U> {
    let handles: Vec<Deferred<T>> = members.to_vec();
    Deferred::with_canceller(move |_| {
        for d in &handles {
            d.cancel();
        }
    })
}

/// Every member's value in input order, or the first failure as [`FirstError`] (Twisted's
/// `gatherResults`).
///
/// ```
/// use torsion::defer::{gather_results, succeed};
///
/// let all = gather_results(vec![succeed("a"), succeed("b")], false);
/// assert_eq!(all.result().unwrap().unwrap(), vec!["a", "b"]);
/// ```
#[track_caller]
pub fn gather_results<T: 'static>(ds: Vec<Deferred<T>>, consume_errors: bool) -> Deferred<Vec<T>> {
    DeferredList::new(ds)
        .fire_on_one_errback(true)
        .consume_errors(consume_errors)
        .build()
        .and_then(|results| results.into_iter().collect::<Result<Vec<T>, Failure>>())
}

/// The first member to succeed, with its index; the others are cancelled (before the
/// result is delivered, including members paused on an inner Deferred). If all fail, a
/// [`FailureGroup`] (Twisted's `race`). Cancelling it cancels every member.
///
/// ```
/// use torsion::defer::{race, Deferred};
///
/// let (slow, fast) = (Deferred::<&str>::new(), Deferred::<&str>::new());
/// let winner = race(vec![slow.clone(), fast.clone()]);
/// fast.callback("fast").unwrap();
/// assert_eq!(winner.result().unwrap().unwrap(), (1, "fast"));
/// assert!(slow.called(), "the loser was cancelled");
/// ```
#[track_caller]
pub fn race<T: 'static>(ds: Vec<Deferred<T>>) -> Deferred<(usize, T)> {
    let n = ds.len();
    let handles: Vec<Deferred<T>> = ds.clone();
    let out = canceller_over::<T, (usize, T)>(&ds);
    let failures: Rc<RefCell<Vec<Option<Failure>>>> = Rc::new(RefCell::new(vec![None; n]));
    let won = Rc::new(std::cell::Cell::new(false));
    for (index, d) in ds.into_iter().enumerate() {
        let (out, failures, won, handles) =
            (out.clone(), failures.clone(), won.clone(), handles.clone());
        let _ = d.add_both(move |r: Result<T, Failure>| {
            if won.get() {
                return Ok::<(), Failure>(()); // a loser's result (often its CancelledError)
            }
            match r {
                Ok(v) => {
                    won.set(true);
                    // As Twisted: cancel the losers (also those that fired but wait on an
                    // inner Deferred), then fire the winner's result.
                    for (i, other) in handles.iter().enumerate() {
                        if i != index {
                            other.cancel();
                        }
                    }
                    let _ = out.callback((index, v));
                }
                Err(f) => {
                    let all_failed = {
                        let mut fs = failures.borrow_mut();
                        fs[index] = Some(f);
                        fs.iter().all(Option::is_some)
                    };
                    if all_failed {
                        let failures = failures
                            .borrow_mut()
                            .iter_mut()
                            .filter_map(Option::take)
                            .collect();
                        let _ = out.errback(FailureGroup { failures });
                    }
                }
            }
            Ok(())
        });
    }
    out
}
