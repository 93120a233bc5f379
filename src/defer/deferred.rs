//! `Deferred<T>`: the typed handle to a callback chain.

use std::any::{type_name, TypeId};
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;
use std::time::Duration;

use crate::defer::core::{self, Core, Handle, Res, Step, Value};
use crate::defer::Failure;
use crate::error::{AlreadyCalledError, CancelledError, TimeoutError, TypeMismatch};
use crate::reactor::{ReactorTime, ReactorTimeExt};

/// A result that will arrive later, and the chain of callbacks that will process it
/// (Twisted's `Deferred`).
///
/// A `Deferred<T>` is a handle to a chain whose current end produces a `T`. Adding a callback
/// consumes the handle and returns the handle of the same chain, typed by what the new
/// callback returns; clone a handle first to keep one (for example, to fire the chain later).
/// Handles are cheap `Rc` clones and are not `Send`: a Deferred lives on its reactor's thread.
///
/// ```
/// use torsion::defer::{Deferred, Failure};
///
/// let d = Deferred::<&str>::new();
/// let parsed = d
///     .clone()
///     .and_then(|s| s.parse::<i32>().map_err(Failure::from)) // may fail
///     .add_callback(|n| n * 2)                              // skipped on failure
///     .add_errback(|_f| Ok(-1));                            // recovers: back to success
/// d.callback("oops").unwrap();
/// assert_eq!(parsed.result().unwrap().ok(), Some(-1));
/// ```
///
/// # Panics
///
/// Adding a callback through a handle whose type is not the chain's current end type (a stale
/// clone made before another handle changed the type), or firing through a handle whose type
/// is not the chain's starting type, is a programming error and panics with both type names.
pub struct Deferred<T> {
    pub(crate) core: Handle,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Deferred<T> {
    fn clone(&self) -> Self {
        Deferred {
            core: self.core.clone(),
            _type: PhantomData,
        }
    }
}

impl<T: 'static> Default for Deferred<T> {
    #[track_caller]
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for Deferred<T> {
    /// The state (`pending`, `fired`, `paused`, `waiting`), a summary of the result (a
    /// value's type, a failure's message) and the Deferred it waits on, like Twisted's
    /// `repr`; in debug mode, where it was created and first fired.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Deferred<{}>(", type_name::<T>())?;
        core::describe(&self.core, f, true)?;
        f.write_str(")")
    }
}

/// What a callback hands on: a value, a failure, or another Deferred to wait for.
pub enum Outcome<T> {
    /// Continue down the callback path with this value.
    Value(T),
    /// Continue down the errback path with this failure.
    Failure(Failure),
    /// Wait for this Deferred, then continue with its result.
    Deferred(Deferred<T>),
}

/// Anything a callback may return to [`Deferred::and_then`], [`Deferred::add_errback`],
/// [`Deferred::add_both`] or [`Deferred::add_callbacks`]: a `Result<T, Failure>`, a
/// `Deferred<T>`, or an [`Outcome<T>`].
pub trait IntoOutcome {
    /// The value type the chain continues with.
    type Value: 'static;
    /// Converts into an [`Outcome`].
    fn into_outcome(self) -> Outcome<Self::Value>;
}

impl<T: 'static> IntoOutcome for Outcome<T> {
    type Value = T;
    fn into_outcome(self) -> Outcome<T> {
        self
    }
}

impl<T: 'static> IntoOutcome for Result<T, Failure> {
    type Value = T;
    fn into_outcome(self) -> Outcome<T> {
        match self {
            Ok(v) => Outcome::Value(v),
            Err(f) => Outcome::Failure(f),
        }
    }
}

impl<T: 'static> IntoOutcome for Deferred<T> {
    type Value = T;
    fn into_outcome(self) -> Outcome<T> {
        Outcome::Deferred(self)
    }
}

/// Takes the `T` out of a value in flight.
fn take<T: 'static>(v: &mut Value) -> Option<T> {
    v.downcast_mut::<Option<T>>().and_then(Option::take)
}

/// Puts `u` into a value in flight, reusing the box when the type is unchanged.
fn put<U: 'static>(mut v: Value, u: U) -> Value {
    match v.downcast_mut::<Option<U>>() {
        Some(slot) => {
            *slot = Some(u);
            v
        }
        None => Box::new(Some(u)),
    }
}

/// A result in flight as the typed result a `Deferred<T>` hands out.
pub(crate) fn from_res<T: 'static>(res: Res) -> Result<T, Failure> {
    match res {
        Ok(mut v) => take::<T>(&mut v).ok_or_else(mismatch::<T>),
        Err(f) => Err(f),
    }
}

fn mismatch<T>() -> Failure {
    Failure::new(TypeMismatch {
        expected: type_name::<T>(),
    })
}

/// Files what a typed callback returned as the chain's next step.
fn step_from<U: 'static>(slot: Option<Value>, outcome: Outcome<U>) -> Step {
    match outcome {
        Outcome::Value(u) => Step::Done(Ok(match slot {
            Some(v) => put(v, u),
            None => Box::new(Some(u)),
        })),
        Outcome::Failure(f) => Step::Done(Err(f)),
        Outcome::Deferred(d) => {
            let tail = d.core.st.borrow().tail;
            if tail == TypeId::of::<U>() {
                Step::Chain(d.core)
            } else {
                Step::Done(Err(mismatch::<U>()))
            }
        }
    }
}

impl<T: 'static> Deferred<T> {
    /// A Deferred that has not fired, with no canceller.
    #[track_caller]
    pub fn new() -> Self {
        Deferred {
            core: Core::make(TypeId::of::<T>(), type_name::<T>()),
            _type: PhantomData,
        }
    }

    /// A Deferred whose `cancel()` calls `canceller` (once, if it has not fired). If the
    /// canceller does not fire it, it then fails with [`CancelledError`].
    ///
    /// ```
    /// use torsion::defer::Deferred;
    /// use torsion::error::CancelledError;
    ///
    /// let d = Deferred::<u8>::with_canceller(|d| { d.callback(0).unwrap(); });
    /// d.cancel();
    /// assert_eq!(d.result().unwrap().ok(), Some(0)); // the canceller's value wins
    /// let e = Deferred::<u8>::new();
    /// e.cancel();
    /// assert!(e.result().unwrap().unwrap_err().is::<CancelledError>());
    /// ```
    #[track_caller]
    pub fn with_canceller(canceller: impl FnOnce(&Deferred<T>) + 'static) -> Self {
        let d = Self::new();
        d.core.set_canceller(Box::new(move |core| {
            canceller(&Deferred::from_core(core));
        }));
        d
    }

    pub(crate) fn from_core(core: Rc<Core>) -> Self {
        Deferred {
            core: Handle::new(core),
            _type: PhantomData,
        }
    }

    /// The same chain's handle at another type (moves the hold; no count changes).
    fn retype<U>(self) -> Deferred<U> {
        Deferred {
            core: self.core,
            _type: PhantomData,
        }
    }

    fn check_fire_type(&self) {
        let st = self.core.st.borrow();
        assert!(
            st.head == TypeId::of::<T>(),
            "fired a Deferred<{}> whose chain starts with a different type: fire the handle \
             returned by Deferred::new",
            type_name::<T>()
        );
    }

    /// Fires the chain with a value (Twisted's `callback`). Firing twice is
    /// [`AlreadyCalledError`], except the one fire a cancelled Deferred (with no canceller)
    /// silently absorbs.
    #[track_caller]
    pub fn callback(&self, value: T) -> Result<(), AlreadyCalledError> {
        self.check_fire_type();
        core::fire(&self.core, Ok(Box::new(Some(value))))
    }

    /// Fires the chain with a failure (Twisted's `errback`).
    #[track_caller]
    pub fn errback(&self, failure: impl Into<Failure>) -> Result<(), AlreadyCalledError> {
        self.check_fire_type();
        core::fire(&self.core, Err(failure.into()))
    }

    /// Fires with `Ok` as a value, `Err` as a failure.
    #[track_caller]
    pub fn resolve(&self, result: Result<T, Failure>) -> Result<(), AlreadyCalledError> {
        match result {
            Ok(v) => self.callback(v),
            Err(f) => self.errback(f),
        }
    }

    /// Whether the Deferred has fired (Twisted's `called`).
    pub fn called(&self) -> bool {
        self.core.is_called()
    }

    /// Whether the chain is paused (by [`pause`](Self::pause) or waiting on another Deferred).
    pub fn paused(&self) -> bool {
        self.core.is_paused()
    }

    /// Whether a final result is available (fired, not paused, not waiting).
    pub fn has_result(&self) -> bool {
        self.core.has_result() && !self.core.is_paused()
    }

    fn check_tail(&self) {
        let mut st = self.core.st.borrow_mut();
        if st.tail != TypeId::of::<T>() {
            let actual = st.tail_name;
            drop(st);
            panic!(
                "added a callback through a Deferred<{}> handle, but the chain now produces {}: \
                 use the handle returned by the last add_* call",
                type_name::<T>(),
                actual
            );
        }
        st.tail = TypeId::of::<T>();
    }

    fn push<U: 'static>(self, f: impl FnOnce(Res) -> Step + 'static) -> Deferred<U> {
        self.check_tail();
        {
            let mut st = self.core.st.borrow_mut();
            st.tail = TypeId::of::<U>();
            st.tail_name = type_name::<U>();
        }
        core::add_link(&self.core, Box::new(f));
        self.retype()
    }

    /// Adds a callback that maps the value (Twisted's `addCallback` with a callback that
    /// returns a plain value). Failures pass it by.
    pub fn add_callback<U: 'static>(self, f: impl FnOnce(T) -> U + 'static) -> Deferred<U> {
        self.push(move |res| match res {
            Ok(mut v) => match take::<T>(&mut v) {
                Some(t) => Step::Done(Ok(put(v, f(t)))),
                None => Step::Done(Err(mismatch::<T>())),
            },
            Err(e) => Step::Done(Err(e)),
        })
    }

    /// Adds a callback that may fail or return another Deferred to wait for (Twisted's
    /// `addCallback` with a callback that raises or returns a Deferred). It returns a
    /// `Result<U, Failure>`, a `Deferred<U>` or an [`Outcome<U>`].
    ///
    /// ```
    /// use torsion::defer::Deferred;
    ///
    /// let inner = Deferred::<String>::new();
    /// let outer = Deferred::<u32>::new();
    /// let i = inner.clone();
    /// let done = outer.clone().and_then(move |_n| i).add_callback(|s| s.len());
    /// outer.callback(1).unwrap();
    /// assert!(!done.has_result()); // waiting for `inner`
    /// inner.callback("four".into()).unwrap();
    /// assert_eq!(done.result().unwrap().ok(), Some(4));
    /// ```
    pub fn and_then<R: IntoOutcome>(self, f: impl FnOnce(T) -> R + 'static) -> Deferred<R::Value> {
        self.push(move |res| match res {
            Ok(mut v) => match take::<T>(&mut v) {
                Some(t) => step_from(Some(v), f(t).into_outcome()),
                None => Step::Done(Err(mismatch::<T>())),
            },
            Err(e) => Step::Done(Err(e)),
        })
    }

    /// Adds an errback (Twisted's `addErrback`): it sees failures only, and returns `Ok` to
    /// recover (back to the callback path), `Err` to pass a failure on, or a Deferred.
    /// Values pass it by.
    pub fn add_errback<R>(self, f: impl FnOnce(Failure) -> R + 'static) -> Deferred<T>
    where
        R: IntoOutcome<Value = T>,
    {
        self.push(move |res| match res {
            Ok(v) => Step::Done(Ok(v)),
            Err(e) => step_from(None, f(e).into_outcome()),
        })
    }

    /// Adds a callback and an errback as one pair (Twisted's `addCallbacks`): exactly one of
    /// them runs, and a callback added by either is not run by the other.
    pub fn add_callbacks<R1, R2>(
        self,
        callback: impl FnOnce(T) -> R1 + 'static,
        errback: impl FnOnce(Failure) -> R2 + 'static,
    ) -> Deferred<R1::Value>
    where
        R1: IntoOutcome,
        R2: IntoOutcome<Value = R1::Value>,
    {
        self.push(move |res| match res {
            Ok(mut v) => match take::<T>(&mut v) {
                Some(t) => step_from(Some(v), callback(t).into_outcome()),
                None => Step::Done(Err(mismatch::<T>())),
            },
            Err(e) => step_from(None, errback(e).into_outcome()),
        })
    }

    /// Adds one function for both paths (Twisted's `addBoth`); it sees `Ok(value)` or
    /// `Err(failure)`. Returning its argument passes the result through unchanged.
    pub fn add_both<R: IntoOutcome>(
        self,
        f: impl FnOnce(Result<T, Failure>) -> R + 'static,
    ) -> Deferred<R::Value> {
        self.push(move |res| match res {
            Ok(mut v) => match take::<T>(&mut v) {
                Some(t) => step_from(Some(v), f(Ok(t)).into_outcome()),
                None => Step::Done(Err(mismatch::<T>())),
            },
            Err(e) => step_from(None, f(Err(e)).into_outcome()),
        })
    }

    /// Runs `f` on either path and passes the result on unchanged (Python's `finally`).
    pub fn add_finally(self, f: impl FnOnce() + 'static) -> Deferred<T> {
        self.push(move |res| {
            f();
            Step::Done(res)
        })
    }

    /// Sends this chain's result into `other`, firing it (Twisted's `chainDeferred`); this
    /// chain continues with `()` and its failure counts as handled. Long runs of chained
    /// Deferreds fire without recursion.
    pub fn chain_deferred(self, other: &Deferred<T>) -> Deferred<()> {
        self.check_tail();
        {
            let mut st = self.core.st.borrow_mut();
            st.tail = TypeId::of::<()>();
            st.tail_name = type_name::<()>();
        }
        core::add_forward(&self.core, Rc::clone(&other.core));
        self.retype()
    }

    /// Stops the chain from running further callbacks until as many `unpause` calls
    /// (Twisted's `pause`; counted).
    pub fn pause(&self) {
        core::pause(&self.core);
    }

    /// Undoes one `pause`; at zero, the chain continues if it has fired.
    pub fn unpause(&self) {
        core::unpause(&self.core);
    }

    /// Cancels the Deferred (Twisted's `cancel`): if unfired, calls its canceller and fails
    /// it with [`CancelledError`] unless the canceller fired it; if it has fired and waits on
    /// another Deferred, cancels that one; otherwise does nothing.
    #[track_caller]
    pub fn cancel(&self) {
        core::cancel(&self.core);
    }

    /// Cancels this Deferred if it has not fired after `timeout` on `clock`, turning the
    /// resulting [`CancelledError`] into [`TimeoutError`] (Twisted's `addTimeout`). It
    /// covers the callbacks added before it; if the canceller fires with a value, the value
    /// wins; an earlier errback that traps `CancelledError` yields success.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion::defer::Deferred;
    /// use torsion::error::TimeoutError;
    /// use torsion::testing::Clock;
    ///
    /// let clock = Clock::new();
    /// let d = Deferred::<()>::new().add_timeout(Duration::from_secs(5), &clock);
    /// clock.advance(Duration::from_secs(5));
    /// assert!(d.result().unwrap().unwrap_err().is::<TimeoutError>());
    /// ```
    pub fn add_timeout(self, timeout: Duration, clock: &dyn ReactorTime) -> Deferred<T> {
        self.add_timeout_with(timeout, clock, |result, timeout| match result {
            Err(f) if f.is::<CancelledError>() => Err(Failure::new(TimeoutError(timeout))),
            other => other,
        })
    }

    /// [`add_timeout`](Self::add_timeout) with Twisted's `onTimeoutCancel`: `on_timeout`
    /// receives the result after a timeout-triggered cancel (and the timeout) and returns the
    /// result to continue with.
    pub fn add_timeout_with(
        self,
        timeout: Duration,
        clock: &dyn ReactorTime,
        on_timeout: impl FnOnce(Result<T, Failure>, Duration) -> Result<T, Failure> + 'static,
    ) -> Deferred<T> {
        let timed_out = Rc::new(std::cell::Cell::new(false));
        let target = self.clone();
        let flag = timed_out.clone();
        let call = clock.call_later(timeout, move || {
            flag.set(true);
            target.cancel();
        });
        self.add_both(move |result| {
            if timed_out.get() {
                on_timeout(result, timeout)
            } else {
                result
            }
        })
        .add_both(move |result| {
            if call.active() {
                let _ = call.cancel();
            }
            result
        })
    }

    /// The result, if the chain has one now, leaving it in place (for tests and
    /// synchronous code). `None` while unfired, paused or waiting.
    pub fn result(&self) -> Option<Result<T, Failure>>
    where
        T: Clone,
    {
        if self.core.is_paused() {
            return None;
        }
        self.core.with_result(|r| match r? {
            Ok(v) => v
                .downcast_ref::<Option<T>>()
                .and_then(|o| o.clone())
                .map(Ok),
            Err(f) => Some(Err(f.clone())),
        })
    }

    /// Takes the result out, if the chain has one now; a failure taken out counts as
    /// handled. Later callbacks see [`ResultPassedOn`](crate::error::ResultPassedOn).
    pub fn take_result(&self) -> Option<Result<T, Failure>> {
        if self.core.is_paused() {
            return None;
        }
        self.core.take_result().map(from_res::<T>)
    }
}

/// A Deferred that has already fired with `value` (Twisted's `succeed`).
#[track_caller]
pub fn succeed<T: 'static>(value: T) -> Deferred<T> {
    let d = Deferred::new();
    let _ = d.callback(value); // a new Deferred cannot be already called
    d
}

/// A Deferred that has already failed with `failure` (Twisted's `fail`).
#[track_caller]
pub fn fail<T: 'static>(failure: impl Into<Failure>) -> Deferred<T> {
    let d = Deferred::new();
    let _ = d.errback(failure); // a new Deferred cannot be already called
    d
}

/// Calls `f` and wraps what it returns in a Deferred (Twisted's `maybeDeferred`): a value or
/// failure becomes a fired Deferred, a Deferred is returned as is, and a panic in `f` becomes
/// a [`Panicked`](crate::error::Panicked) failure.
#[track_caller]
pub fn maybe_deferred<R: IntoOutcome>(f: impl FnOnce() -> R) -> Deferred<R::Value> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => match r.into_outcome() {
            Outcome::Value(v) => succeed(v),
            Outcome::Failure(e) => fail(e),
            Outcome::Deferred(d) => d,
        },
        Err(payload) => fail(Failure::from_panic(payload)),
    }
}
