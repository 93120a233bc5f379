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
//!
//! # Who keeps a waited-on Deferred alive
//!
//! An outer Deferred paused on an inner one is held by the inner (its `Resume` link), so the
//! outer's callbacks run when the inner fires even if nobody holds the outer. The outer
//! must also reach the inner, for `cancel`: Twisted holds it as the outer's result, and a
//! cycle collector frees the pair once nobody holds either. With reference counting, a
//! strong pointer both ways would leak every chain abandoned unfired; a weak pointer back
//! loses an inner that only the outer knows of (its canceller could never run).
//!
//! So the pointer back is strong exactly while someone could still cancel through it: while
//! the outer is *kept*. A Deferred's `keepers` counts the typed handles ([`Handle`]) to it
//! plus the kept Deferreds waiting on it through a strong pointer. When a Deferred becomes
//! kept, its pointer to what it waits on turns strong and keeps that one in turn; when its
//! last keeper goes, the pointer turns weak and releases the next one. The pointer is cleared
//! when the inner fires. A chain nobody holds (no handle on any member) is therefore held
//! only from its inner end, by whoever will fire it, and is freed with it. Each transition
//! walks down the waiting chain only as far as the count changes between zero and one, so
//! the work is bounded by the number of links made and released. (A cycle of Deferreds
//! waiting on each other can never fire; it keeps itself alive, as its `Resume` links
//! already do.)

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::panic::Location;
use std::rc::Rc;

use crate::defer::debug::DebugInfo;
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
    /// Another Deferred: the chain waits for it. A handle, so the inner stays kept until
    /// the outer has taken it over.
    Chain(Handle),
}

/// A typed handle's hold on a [`Core`]: counts as one of its keepers (see the module docs).
pub(crate) struct Handle(Rc<Core>);

impl Handle {
    /// A new keeper of `core`.
    #[inline]
    pub(crate) fn new(core: Rc<Core>) -> Handle {
        keep(&core);
        Handle(core)
    }

    /// The handle of a Deferred just made (its first keeper, counted by `Core::new`).
    fn fresh(core: Rc<Core>) -> Handle {
        Handle(core)
    }
}

impl Clone for Handle {
    fn clone(&self) -> Self {
        Handle::new(self.0.clone())
    }
}

impl Drop for Handle {
    #[inline]
    fn drop(&mut self) {
        let k = self.0.keepers.get().saturating_sub(1);
        self.0.keepers.set(k);
        // The last reference of all frees the Deferred now, and `Core::drop` releases what
        // it waited on: nothing to weaken first.
        if k == 0 && Rc::strong_count(&self.0) > 1 {
            released(&self.0);
        }
    }
}

impl std::ops::Deref for Handle {
    type Target = Rc<Core>;
    fn deref(&self) -> &Rc<Core> {
        &self.0
    }
}

/// What a paused Deferred waits on: strong while it is kept, weak otherwise.
pub(crate) enum Waiting {
    Strong(Rc<Core>),
    Weak(std::rc::Weak<Core>),
}

impl Waiting {
    pub(crate) fn upgrade(&self) -> Option<Rc<Core>> {
        match self {
            Waiting::Strong(c) => Some(c.clone()),
            Waiting::Weak(w) => w.upgrade(),
        }
    }
}

/// One more keeper for `core`; on its first, its waited-on Deferred is held strongly and
/// kept in turn, down the chain.
#[inline]
fn keep(core: &Rc<Core>) {
    let k = core.keepers.get();
    core.keepers.set(k + 1);
    if k == 0 {
        kept(core);
    }
}

/// `core` has just gained its first keeper.
#[cold]
fn kept(core: &Rc<Core>) {
    let mut cur = core.clone();
    loop {
        let next = {
            let Ok(mut st) = cur.st.try_borrow_mut() else {
                return;
            };
            let inner = match &st.waiting_on {
                Some(Waiting::Weak(w)) => w.upgrade(),
                _ => None,
            };
            let Some(inner) = inner else { return };
            st.waiting_on = Some(Waiting::Strong(inner.clone()));
            inner
        };
        let k = next.keepers.get();
        next.keepers.set(k + 1);
        if k > 0 {
            return;
        }
        cur = next;
    }
}

/// One keeper fewer for `core`; at none, its waited-on Deferred is held weakly and loses
/// this keeper, down the chain.
fn unkeep(core: &Rc<Core>) {
    let k = core.keepers.get().saturating_sub(1);
    core.keepers.set(k);
    if k == 0 {
        released(core);
    }
}

/// `core` has just lost its last keeper.
#[cold]
fn released(core: &Core) {
    let Some(mut cur) = weaken(core) else { return };
    loop {
        let k = cur.keepers.get().saturating_sub(1);
        cur.keepers.set(k);
        if k > 0 {
            return;
        }
        match weaken(&cur) {
            Some(next) => cur = next,
            None => return,
        }
    }
}

/// Turns `core`'s strong pointer to what it waits on weak, returning the inner.
fn weaken(core: &Core) -> Option<Rc<Core>> {
    let mut st = core.st.try_borrow_mut().ok()?;
    match st.waiting_on.take() {
        Some(Waiting::Strong(inner)) => {
            st.waiting_on = Some(Waiting::Weak(Rc::downgrade(&inner)));
            Some(inner)
        }
        other => {
            st.waiting_on = other;
            None
        }
    }
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
    /// The inner Deferred this one waits on (for cancellation): strong while this one is
    /// kept, weak otherwise (see the module docs).
    waiting_on: Option<Waiting>,
    /// Call sites, recorded in debug mode only.
    pub(crate) debug: Option<Box<DebugInfo>>,
    /// Type of the value the chain is fired with, and of the value at its end, for the typed
    /// layer's misuse checks.
    pub(crate) head: std::any::TypeId,
    pub(crate) tail: std::any::TypeId,
    pub(crate) tail_name: &'static str,
}

/// One Deferred's shared state.
pub(crate) struct Core {
    pub(crate) st: RefCell<State>,
    /// Handles to this Deferred, plus kept Deferreds waiting on it strongly.
    keepers: std::cell::Cell<usize>,
}

impl Drop for Core {
    fn drop(&mut self) {
        let st = self.st.get_mut();
        if let Some(Err(failure)) = st.result.take() {
            if !failure.is::<ResultPassedOn>() {
                match st.debug.as_deref() {
                    None => unhandled::report(&failure),
                    info => unhandled::report(&DebugInfo::unhandled(info, &failure)),
                }
            }
        }
        // A chain of waiting Deferreds is held together by `Resume` links (each inner
        // Deferred holds the one waiting on it), and `chain_deferred` by `Forward` links.
        // Dropping such a chain naively recurses once per link; unlink it iteratively.
        let mut orphans: Vec<Rc<Core>> = Vec::new();
        if let Some(Waiting::Strong(inner)) = st.waiting_on.take() {
            // The last handle went with the last reference (`Handle::drop` leaves the
            // weakening to this drop): release what this one kept.
            unkeep(&inner);
        }
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
    /// A new Deferred and its first handle.
    #[track_caller]
    pub(crate) fn make(head: std::any::TypeId, name: &'static str) -> Handle {
        Handle::fresh(Rc::new(Core {
            keepers: std::cell::Cell::new(1),
            st: RefCell::new(State {
                called: false,
                result: None,
                paused: 0,
                running: false,
                links: VecDeque::new(),
                canceller: None,
                suppress_already_called: false,
                waiting_on: None,
                debug: DebugInfo::capture(),
                head,
                tail: head,
                tail_name: name,
            }),
        }))
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
#[track_caller]
pub(crate) fn fire(core: &Rc<Core>, res: Res) -> Result<(), AlreadyCalledError> {
    {
        let mut st = core.st.borrow_mut();
        if st.called {
            if st.suppress_already_called {
                st.suppress_already_called = false;
                return Ok(());
            }
            let err = DebugInfo::already_called(st.debug.as_deref(), Location::caller());
            drop(st);
            drop(res); // outside the borrow
            return Err(err);
        }
        st.called = true;
        st.result = Some(res);
        if let Some(info) = st.debug.as_deref_mut() {
            info.fired = Some(Location::caller());
        }
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

/// Describes `core` for `Debug`: state, result summary, what it waits on (one level, when
/// `inner` is set) and, in debug mode, its call sites.
pub(crate) fn describe(
    core: &Core,
    f: &mut std::fmt::Formatter<'_>,
    inner: bool,
) -> std::fmt::Result {
    let Ok(st) = core.st.try_borrow() else {
        return f.write_str("running");
    };
    let state = if !st.called {
        "pending"
    } else if st.waiting_on.is_some() {
        "waiting"
    } else if st.running {
        "running"
    } else if st.paused > 0 {
        "paused"
    } else {
        "fired"
    };
    f.write_str(state)?;
    match (&st.result, &st.waiting_on) {
        (_, Some(w)) => match w.upgrade() {
            Some(next) if inner => {
                f.write_str(", waiting on Deferred(")?;
                describe(&next, f, false)?;
                f.write_str(")")?;
            }
            Some(_) => f.write_str(", waiting on a Deferred")?,
            None => f.write_str(", waiting on a dropped Deferred")?,
        },
        (Some(Ok(_)), None) if st.links.is_empty() => write!(f, ", result: {}", st.tail_name)?,
        (Some(Ok(_)), None) => f.write_str(", result: a value part way down the chain")?,
        (Some(Err(e)), None) if e.is::<ResultPassedOn>() => f.write_str(", result passed on")?,
        (Some(Err(e)), None) => write!(f, ", failure: {e}")?,
        (None, None) => {}
    }
    if let Some(info) = st.debug.as_deref() {
        write!(f, ", {info}")?;
    }
    Ok(())
}

/// Twisted's `cancel`, walking down to the innermost waited-on Deferred iteratively.
///
/// Deferreds can wait on each other in a cycle (A's callback returned B, B's returned A):
/// none of them can ever fire, and the walk would go round forever. Brent's cycle detection
/// (constant memory) notices the walk coming back and returns without cancelling anything:
/// every member of such a cycle has already fired, so there is no canceller to call.
#[track_caller]
pub(crate) fn cancel(core: &Rc<Core>) {
    let mut cur = core.clone();
    let mut tortoise = core.clone();
    let (mut power, mut steps) = (1usize, 0usize);
    loop {
        let (called, waiting_on) = {
            let st = cur.st.borrow();
            (st.called, st.waiting_on.as_ref().and_then(Waiting::upgrade))
        };
        if called {
            match waiting_on {
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
                let waited = {
                    let mut ost = outer.st.borrow_mut();
                    ost.result = Some(res);
                    ost.paused = ost.paused.saturating_sub(1);
                    ost.waiting_on.take()
                };
                if let Some(Waiting::Strong(inner)) = waited {
                    unkeep(&inner); // the outer no longer keeps what it waited on
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
                    let err = match other.st.borrow().debug.as_deref() {
                        Some(info) => AlreadyCalledError::with_call_sites(format!(
                            "{info}; fired again through chain_deferred"
                        )),
                        None => AlreadyCalledError::new(),
                    };
                    cur.st.borrow_mut().result = Some(Err(Failure::new(err)));
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
        Step::Chain(handle) => {
            let inner: &Rc<Core> = &handle;
            if Rc::ptr_eq(inner, cur) {
                st.result = Some(Err(Failure::new(ChainedToSelfError)));
                drop(st);
                return;
            }
            let mut ist = inner.st.borrow_mut();
            let ready = ist.called
                && ist.paused == 0
                && ist.result.is_some()
                && ist.waiting_on.is_none()
                && !ist.running;
            let kept = cur.keepers.get() > 0;
            if ready {
                // The inner Deferred already has its result: take it now.
                let r = ist.result.replace(Err(Failure::new(ResultPassedOn)));
                st.result = r;
            } else {
                st.paused += 1;
                st.waiting_on = Some(if kept {
                    Waiting::Strong(inner.clone())
                } else {
                    Waiting::Weak(Rc::downgrade(inner))
                });
                ist.links.push_back(Link::Resume(cur.clone()));
                drop(ist);
                drop(st);
                if kept {
                    keep(inner);
                }
            }
            // Outside every borrow: the handle was the inner's keeper until now.
        }
    }
}
