//! The untyped engine under [`Deferred`](super::Deferred): the result slot, the callback
//! chain, pausing, chaining to inner Deferreds, cancellation, and the loop that runs it all.
//!
//! Values travel as `Box<dyn Any>` holding an `Option<T>`, so a callback that keeps the type
//! writes its output into the same box (no allocation per step) and one that changes it
//! allocates once. The typed layer in `deferred.rs` is the only code that puts values in and
//! takes them out; it checks types when callbacks are added, so the downcasts here never fail
//! in practice (if one did, the chain would carry a [`TypeMismatch`] failure, not panic).
//!
//! The loop in [`run`] is the whole of Twisted's `_runCallbacks`, with its explicit chain
//! stack: a callback that returns an unfired Deferred pauses the outer chain and leaves a
//! `Resume` link on the inner one; when the inner fires, the loop moves its result across
//! and pushes the outer chain on a heap-allocated stack instead of recursing. `chain_deferred`
//! links (`Forward`) work the same way. So chains of any depth run in constant native stack.
//! No `RefCell` borrow is held while user code runs.

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use crate::defer::unhandled;
use crate::defer::Failure;
use crate::error::{
    AlreadyCalledError, CallbackPanicked, CancelledError, ChainedToSelfError, ResultPassedOn,
};

/// A value in flight: a `Box<dyn Any>` holding `Option<T>`.
pub(crate) type Value = Box<dyn Any>;
/// A result in flight.
pub(crate) type Res = Result<Value, Failure>;

/// What a callback produced.
pub(crate) enum Step {
    /// A value or a failure: continue the chain with it.
    Done(Res),
    /// Another Deferred: the chain waits for it.
    Chain(Rc<Core>),
}

pub(crate) type Callback = Box<dyn FnOnce(Res) -> Step>;
pub(crate) type Canceller = Box<dyn FnOnce(Rc<Core>)>;

enum Link {
    /// A (callback, errback) pair, fused into one closure.
    Call(Callback),
    /// The Deferred whose callback returned this one is waiting: hand it our result.
    Resume(Rc<Core>),
    /// `chain_deferred`: fire this Deferred with our result, then continue with `()`.
    Forward(Rc<Core>),
}

pub(crate) struct State {
    pub(crate) called: bool,
    result: Option<Res>,
    paused: u32,
    running: bool,
    links: VecDeque<Link>,
    canceller: Option<Canceller>,
    suppress_already_called: bool,
    /// The inner Deferred this one waits on (for cancellation). Weak: the inner holds the
    /// waiting one strongly (through its `Resume` link), so a strong reference back would be
    /// a cycle, leaking every chain abandoned unfired. A waited-on Deferred is kept alive by
    /// whoever will fire it; one nobody can fire is dropped, and `cancel` then has nothing
    /// to reach (Twisted, with a cycle collector, would call its canceller).
    waiting_on: Option<std::rc::Weak<Core>>,
    /// Type of the value the chain is fired with, and of the value at its end, for the typed
    /// layer's misuse checks.
    pub(crate) head: std::any::TypeId,
    pub(crate) tail: std::any::TypeId,
    pub(crate) tail_name: &'static str,
}

/// One Deferred's shared state.
pub(crate) struct Core {
    pub(crate) st: RefCell<State>,
}

impl Drop for Core {
    fn drop(&mut self) {
        let st = self.st.get_mut();
        if let Some(Err(failure)) = st.result.take() {
            if !failure.is::<ResultPassedOn>() {
                unhandled::report(&failure);
            }
        }
        // A chain of waiting Deferreds is held together by `Resume` links (each inner
        // Deferred holds the one waiting on it), and `chain_deferred` by `Forward` links.
        // Dropping such a chain naively recurses once per link; unlink it iteratively.
        let mut orphans: Vec<Rc<Core>> = Vec::new();
        collect_links(st, &mut orphans);
        while let Some(core) = orphans.pop() {
            if Rc::strong_count(&core) == 1 {
                if let Ok(mut inner) = core.st.try_borrow_mut() {
                    collect_links(&mut inner, &mut orphans);
                }
            }
            drop(core); // its own links are gone: no recursion
        }
    }
}

/// Moves the Deferreds `st` holds out into `out`, dropping its callbacks.
fn collect_links(st: &mut State, out: &mut Vec<Rc<Core>>) {
    for link in st.links.drain(..) {
        match link {
            Link::Resume(c) | Link::Forward(c) => out.push(c),
            Link::Call(f) => drop(f),
        }
    }
}

pub(crate) fn marker_value() -> Value {
    Box::new(Some(()))
}

impl Core {
    pub(crate) fn new(head: std::any::TypeId, name: &'static str) -> Rc<Core> {
        Rc::new(Core {
            st: RefCell::new(State {
                called: false,
                result: None,
                paused: 0,
                running: false,
                links: VecDeque::new(),
                canceller: None,
                suppress_already_called: false,
                waiting_on: None,
                head,
                tail: head,
                tail_name: name,
            }),
        })
    }

    pub(crate) fn set_canceller(&self, c: Canceller) {
        self.st.borrow_mut().canceller = Some(c);
    }

    pub(crate) fn is_called(&self) -> bool {
        self.st.borrow().called
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.st.borrow().paused > 0
    }

    /// Whether a result is sitting in the slot (fired, not mid-callback, not waiting).
    pub(crate) fn has_result(&self) -> bool {
        let st = self.st.borrow();
        st.called && st.result.is_some() && st.waiting_on.is_none()
    }

    /// Borrows the current result, if one is present.
    pub(crate) fn with_result<R>(&self, f: impl FnOnce(Option<&Res>) -> R) -> R {
        let st = self.st.borrow();
        if st.called && st.waiting_on.is_none() {
            f(st.result.as_ref())
        } else {
            f(None)
        }
    }

    /// Takes the current result out, leaving `ResultPassedOn` (never reported).
    pub(crate) fn take_result(&self) -> Option<Res> {
        let mut st = self.st.borrow_mut();
        if !st.called || st.waiting_on.is_some() || st.result.is_none() {
            return None;
        }
        st.result.replace(Err(Failure::new(ResultPassedOn)))
    }
}

/// Fires `core` with `res` (Twisted's `callback` / `errback`).
pub(crate) fn fire(core: &Rc<Core>, res: Res) -> Result<(), AlreadyCalledError> {
    {
        let mut st = core.st.borrow_mut();
        if st.called {
            if st.suppress_already_called {
                st.suppress_already_called = false;
                return Ok(());
            }
            drop(st);
            drop(res); // outside the borrow
            return Err(AlreadyCalledError);
        }
        st.called = true;
        st.result = Some(res);
    }
    let canceller = core.st.borrow_mut().canceller.take();
    drop(canceller);
    run(core.clone());
    Ok(())
}

/// Appends a link and runs the chain if it can run now.
pub(crate) fn add_link(core: &Rc<Core>, cb: Callback) {
    core.st.borrow_mut().links.push_back(Link::Call(cb));
    maybe_run(core);
}

/// `chain_deferred`: when `core` has a result, fire `other` with it.
pub(crate) fn add_forward(core: &Rc<Core>, other: Rc<Core>) {
    core.st.borrow_mut().links.push_back(Link::Forward(other));
    maybe_run(core);
}

fn maybe_run(core: &Rc<Core>) {
    let ready = {
        let st = core.st.borrow();
        st.called && !st.running && st.paused == 0
    };
    if ready {
        run(core.clone());
    }
}

pub(crate) fn pause(core: &Core) {
    core.st.borrow_mut().paused += 1;
}

pub(crate) fn unpause(core: &Rc<Core>) {
    {
        let mut st = core.st.borrow_mut();
        st.paused = st.paused.saturating_sub(1);
    }
    maybe_run(core);
}

/// Twisted's `cancel`, walking down to the innermost waited-on Deferred iteratively.
///
/// Deferreds can wait on each other in a cycle (A's callback returned B, B's returned A):
/// none of them can ever fire, and the walk would go round forever. Brent's cycle detection
/// (constant memory) notices the walk coming back and returns without cancelling anything:
/// every member of such a cycle has already fired, so there is no canceller to call.
pub(crate) fn cancel(core: &Rc<Core>) {
    let mut cur = core.clone();
    let mut tortoise = core.clone();
    let (mut power, mut steps) = (1usize, 0usize);
    loop {
        let (called, waiting_on) = {
            let st = cur.st.borrow();
            (st.called, st.waiting_on.clone())
        };
        if called {
            match waiting_on.and_then(|w| w.upgrade()) {
                Some(inner) => {
                    if Rc::ptr_eq(&inner, &tortoise) {
                        return; // a cycle of waiting Deferreds
                    }
                    steps += 1;
                    if steps == power {
                        tortoise = inner.clone();
                        power *= 2;
                        steps = 0;
                    }
                    cur = inner;
                    continue;
                }
                None => return,
            }
        }
        let canceller = {
            let mut st = cur.st.borrow_mut();
            let c = st.canceller.take();
            if c.is_none() {
                st.suppress_already_called = true;
            }
            c
        };
        if let Some(c) = canceller {
            c(cur.clone());
        }
        if !cur.is_called() {
            // Cannot be AlreadyCalled: checked just above, and nothing runs in between.
            let _ = fire(&cur, Err(Failure::new(CancelledError)));
        }
        return;
    }
}

/// Runs callbacks until every Deferred reachable from `start` is paused, waiting or drained.
pub(crate) fn run(start: Rc<Core>) {
    let mut stack: Vec<Rc<Core>> = vec![start];
    while let Some(cur) = stack.last().cloned() {
        let link = {
            let mut st = cur.st.borrow_mut();
            if !st.called || st.running || st.paused > 0 || st.result.is_none() {
                None
            } else {
                st.links.pop_front()
            }
        };
        let Some(link) = link else {
            stack.pop();
            continue;
        };
        match link {
            Link::Call(f) => run_call(&cur, f),
            Link::Resume(outer) => {
                let res = cur.take_result_for_chain();
                {
                    let mut ost = outer.st.borrow_mut();
                    ost.result = Some(res);
                    ost.paused = ost.paused.saturating_sub(1);
                    ost.waiting_on = None;
                }
                stack.push(outer);
            }
            Link::Forward(other) => {
                let res = cur
                    .st
                    .borrow_mut()
                    .result
                    .replace(Ok(marker_value()))
                    .unwrap_or_else(|| Ok(marker_value()));
                let accepted = {
                    let mut ost = other.st.borrow_mut();
                    if ost.called {
                        if ost.suppress_already_called {
                            ost.suppress_already_called = false;
                            true
                        } else {
                            false
                        }
                    } else {
                        ost.called = true;
                        ost.result = Some(res);
                        ost.canceller = None;
                        stack.push(other.clone());
                        true
                    }
                };
                if !accepted {
                    cur.st.borrow_mut().result = Some(Err(Failure::new(AlreadyCalledError)));
                }
            }
        }
    }
}

impl Core {
    fn take_result_for_chain(&self) -> Res {
        let mut st = self.st.borrow_mut();
        st.result
            .replace(Err(Failure::new(ResultPassedOn)))
            .unwrap_or_else(|| Err(Failure::new(ResultPassedOn)))
    }
}

/// Runs one callback of `cur` and files its outcome.
fn run_call(cur: &Rc<Core>, f: Callback) {
    let res = {
        let mut st = cur.st.borrow_mut();
        st.running = true;
        st.result.take()
    };
    let Some(res) = res else {
        cur.st.borrow_mut().running = false;
        return;
    };
    // A panicking callback is an exception in Twisted: the chain carries it on as a failure.
    // No borrow is held here, and the unwound callback is gone, so no state it could have
    // broken is observed afterwards (hence `AssertUnwindSafe`).
    let step = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(res))) {
        Ok(step) => step,
        Err(payload) => Step::Done(Err(Failure::new(CallbackPanicked::from_payload(payload)))),
    };
    let mut st = cur.st.borrow_mut();
    st.running = false;
    match step {
        Step::Done(r) => st.result = Some(r),
        Step::Chain(inner) => {
            if Rc::ptr_eq(&inner, cur) {
                st.result = Some(Err(Failure::new(ChainedToSelfError)));
                return;
            }
            let mut ist = inner.st.borrow_mut();
            let ready = ist.called
                && ist.paused == 0
                && ist.result.is_some()
                && ist.waiting_on.is_none()
                && !ist.running;
            if ready {
                // The inner Deferred already has its result: take it now.
                let r = ist.result.replace(Err(Failure::new(ResultPassedOn)));
                st.result = r;
            } else {
                st.paused += 1;
                st.waiting_on = Some(Rc::downgrade(&inner));
                ist.links.push_back(Link::Resume(cur.clone()));
            }
        }
    }
}
