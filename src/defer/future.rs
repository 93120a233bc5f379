//! The async bridge: a `Deferred<T>` can be `.await`ed, and `ensure_deferred` drives a
//! future on a reactor and returns a Deferred of its result (Twisted's `ensureDeferred` /
//! `Deferred.fromCoroutine`).
//!
//! `Deferred<T>` implements [`IntoFuture`] (its future is [`DeferredFuture`]) rather than
//! `Future` itself. A Deferred is eager: its callbacks run whether or not anyone awaits it,
//! and dropping a handle after adding callbacks is the everyday Twisted pattern. Were it a
//! `Future`, Rust's tooling would treat every such drop as a lost, never-polled future
//! (clippy's `let_underscore_future` flags `let _ = d.add_callback(..)`), and readers would
//! expect laziness. `.await` works the same either way.
//!
//! ```
//! use std::time::Duration;
//! use torsion::defer::{ensure_deferred, Deferred, Failure};
//! use torsion::prelude::*;
//! use torsion::testing::Clock;
//!
//! let clock = Clock::new();
//! let later = Deferred::<u32>::new();
//! let l = later.clone();
//! clock.call_later(Duration::from_secs(1), move || { l.callback(20).unwrap(); });
//! let total = ensure_deferred(&clock, async move {
//!     let n = later.await?;          // waits for the timer
//!     Ok::<_, Failure>(n + 22)
//! });
//! assert!(!total.called());
//! clock.advance(Duration::from_secs(1));
//! assert_eq!(total.result().unwrap().unwrap(), 42);
//! ```
//!
//! Scheduling is deterministic: a woken task is re-polled through the reactor's
//! `call_soon`, never inside the code that woke it. A waker is `Send + Sync`; a wake from
//! another thread goes through the reactor's [`ThreadCaller`] and touches no `Rc` state.
//!
//! Cancelling the Deferred that `ensure_deferred` returned cancels the Deferred the future
//! is awaiting; the future sees `Err(CancelledError)` at that `.await` at once, and may
//! handle it — if it then finishes with a value, that value is the result. If it is awaiting
//! something else (not a Deferred), the future is dropped. In both cases, if the future has
//! not finished when the cancellation returns, the Deferred fails with `CancelledError` (a
//! future that keeps running after catching the cancellation has its later result dropped).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::ThreadId;

use crate::defer::core::{self, Core, Step};
use crate::defer::{Deferred, Failure};
use crate::error::ResultPassedOn;
use crate::reactor::{ReactorThreads, ReactorTime, ReactorTimeExt, ThreadCaller};

impl<T: 'static> IntoFuture for Deferred<T> {
    type Output = Result<T, Failure>;
    type IntoFuture = DeferredFuture<T>;

    fn into_future(self) -> DeferredFuture<T> {
        DeferredFuture {
            d: self,
            slot: None,
        }
    }
}

/// What `.await` on a [`Deferred`] polls: ready with the chain's result once the chain
/// reaches this point.
///
/// The first poll that finds no result adds a callback to the chain, at its end, as
/// Twisted's `await` does; when the chain reaches it, that callback takes the result (so a
/// failure taken by `.await` counts as handled), wakes the awaiting task, and hands
/// [`ResultPassedOn`] down the chain. Several futures may await one Deferred: each resumes,
/// in the order they first polled; the first receives the result and the others
/// `Err(ResultPassedOn)` (in Twisted the later awaiters receive `None`).
///
/// Dropping a `DeferredFuture` before it completes detaches it: the Deferred is not
/// cancelled, and its result stays in the chain for the callbacks after it (a failure
/// nobody handles is then reported as usual). A result that had already reached the
/// dropped future is lost with it; if it was a failure, it is reported as unhandled. To
/// cancel the Deferred instead, call [`cancel`](DeferredFuture::cancel) (Twisted's
/// `asFuture(loop).cancel()`).
pub struct DeferredFuture<T> {
    d: Deferred<T>,
    /// Where the chain's callback leaves the result, once that callback is added.
    slot: Option<Rc<RefCell<AwaitSlot>>>,
}

/// Shared by a [`DeferredFuture`] and the callback it added to the chain.
struct AwaitSlot {
    waker: Option<Waker>,
    result: Option<core::Res>,
    /// The future was dropped: the callback passes the result on untouched.
    detached: bool,
}

impl<T: 'static> DeferredFuture<T> {
    /// Cancels the Deferred this future awaits (Twisted's `asFuture(loop).cancel()`). The
    /// future stays usable: polled again, it completes with the cancelled Deferred's
    /// result, normally `Err(CancelledError)`.
    ///
    /// ```
    /// use std::future::IntoFuture;
    /// use torsion::defer::Deferred;
    /// use torsion::error::CancelledError;
    ///
    /// let d = Deferred::<u8>::new();
    /// let fut = d.clone().into_future();
    /// fut.cancel();
    /// assert!(d.called());
    /// # let _ = d.take_result();
    /// ```
    pub fn cancel(&self) {
        self.d.cancel();
    }
}

impl<T: 'static> Future for DeferredFuture<T> {
    type Output = Result<T, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        note_awaiting(&this.d.core);
        if let Some(slot) = &this.slot {
            let mut s = slot.borrow_mut();
            if let Some(res) = s.result.take() {
                drop(s);
                this.slot = None;
                return Poll::Ready(crate::defer::deferred::from_res::<T>(res));
            }
            match &s.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => s.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        if this.d.has_result() {
            return Poll::Ready(
                this.d
                    .take_result()
                    .unwrap_or_else(|| Err(Failure::new(ResultPassedOn))),
            );
        }
        let slot = Rc::new(RefCell::new(AwaitSlot {
            waker: Some(cx.waker().clone()),
            result: None,
            detached: false,
        }));
        let theirs = slot.clone();
        core::add_link(
            &this.d.core,
            Box::new(move |res| {
                let mut s = theirs.borrow_mut();
                if s.detached {
                    return Step::Done(res);
                }
                s.result = Some(res);
                let waker = s.waker.take();
                drop(s);
                if let Some(w) = waker {
                    w.wake();
                }
                Step::Done(Err(Failure::new(ResultPassedOn)))
            }),
        );
        this.slot = Some(slot);
        Poll::Pending
    }
}

impl<T> Drop for DeferredFuture<T> {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        let mut s = slot.borrow_mut();
        s.detached = true;
        s.waker = None;
        if let Some(Err(failure)) = s.result.take() {
            drop(s);
            if !failure.is::<ResultPassedOn>() {
                crate::defer::unhandled::report(&failure);
            }
        }
    }
}

type TaskFuture = Pin<Box<dyn Future<Output = ()>>>;

struct Task {
    future: RefCell<Option<TaskFuture>>,
    reactor: Rc<dyn ReactorTime>,
    caller: ThreadCaller,
    scheduled: Cell<bool>,
    awaiting: RefCell<Option<Weak<Core>>>,
}

thread_local! {
    static TASKS: RefCell<BTreeMap<u64, Rc<Task>>> = const { RefCell::new(BTreeMap::new()) };
    static NEXT_TASK: Cell<u64> = const { Cell::new(0) };
    static CURRENT: Cell<Option<u64>> = const { Cell::new(None) };
}

fn task(id: u64) -> Option<Rc<Task>> {
    TASKS.with(|t| t.borrow().get(&id).cloned())
}

/// Records the Deferred the current task awaits, for cancellation.
fn note_awaiting(core: &Rc<Core>) {
    if let Some(id) = CURRENT.with(Cell::get) {
        if let Some(t) = task(id) {
            *t.awaiting.borrow_mut() = Some(Rc::downgrade(core));
        }
    }
}

struct TaskWaker {
    id: u64,
    owner: ThreadId,
    caller: ThreadCaller,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if std::thread::current().id() == self.owner {
            schedule(self.id);
        } else {
            let id = self.id;
            self.caller.call(move || schedule(id));
        }
    }
}

/// Queues a poll of task `id` on its reactor, once however many wakes come first.
fn schedule(id: u64) {
    let Some(t) = task(id) else { return };
    if t.scheduled.replace(true) {
        return;
    }
    t.reactor.call_soon(move || poll_task(id));
}

fn poll_task(id: u64) {
    let Some(t) = task(id) else { return };
    t.scheduled.set(false);
    let Some(mut fut) = t.future.borrow_mut().take() else {
        return; // being polled further up the stack
    };
    *t.awaiting.borrow_mut() = None;
    let waker = Waker::from(Arc::new(TaskWaker {
        id,
        owner: std::thread::current().id(),
        caller: t.caller.clone(),
    }));
    let previous = CURRENT.with(|c| c.replace(Some(id)));
    let ready = fut
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_ready();
    CURRENT.with(|c| c.set(previous));
    if ready {
        TASKS.with(|t| t.borrow_mut().remove(&id));
    } else {
        *t.future.borrow_mut() = Some(fut);
    }
}

/// Drives `future` on `reactor` and returns a Deferred of its result (Twisted's
/// `ensureDeferred`). The first poll happens now, as Twisted starts a coroutine at once.
#[track_caller]
pub fn ensure_deferred<T, R, F>(reactor: &R, future: F) -> Deferred<T>
where
    T: 'static,
    R: ReactorTime + ReactorThreads + Clone + 'static,
    F: Future<Output = Result<T, Failure>> + 'static,
{
    let id = NEXT_TASK.with(|n| {
        let id = n.get();
        n.set(id + 1);
        id
    });
    let out = Deferred::<T>::with_canceller(move |_| cancel_task(id));
    let fire = out.clone();
    let wrapped: TaskFuture = Box::pin(async move {
        let result = future.await;
        let _ = fire.resolve(result);
    });
    let t = Rc::new(Task {
        future: RefCell::new(Some(wrapped)),
        reactor: Rc::new(reactor.clone()),
        caller: reactor.thread_caller(),
        scheduled: Cell::new(false),
        awaiting: RefCell::new(None),
    });
    TASKS.with(|tasks| tasks.borrow_mut().insert(id, t));
    poll_task(id);
    out
}

fn cancel_task(id: u64) {
    let Some(t) = task(id) else { return };
    let awaited = t.awaiting.borrow().as_ref().and_then(Weak::upgrade);
    match awaited {
        Some(core) => {
            core::cancel(&core);
            // The future sees the cancellation at its await now, not on a later turn.
            poll_task(id);
        }
        None => {
            TASKS.with(|tasks| tasks.borrow_mut().remove(&id));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::error::CancelledError;
    use crate::reactor::ReactorTimeExt;
    use crate::testing::Clock;

    fn later<T: 'static>(clock: &Clock, secs: u64, v: T) -> Deferred<T> {
        let d = Deferred::new();
        let f = d.clone();
        clock.call_later(Duration::from_secs(secs), move || {
            let _ = f.callback(v);
        });
        d
    }

    #[test]
    fn awaiting_a_fired_deferred_completes_at_once() {
        let clock = Clock::new();
        let d = ensure_deferred(&clock, async { crate::defer::succeed(5).await });
        assert_eq!(d.result().unwrap().unwrap(), 5);
    }

    #[test]
    fn awaiting_a_timer_fired_deferred() {
        let clock = Clock::new();
        let l = later(&clock, 3, "late");
        let d = ensure_deferred(&clock, async move { l.await });
        clock.advance(Duration::from_secs(2));
        assert!(!d.called());
        clock.advance(Duration::from_secs(1));
        assert_eq!(d.result().unwrap().unwrap(), "late");
    }

    #[test]
    fn awaiting_a_failure_gives_err() {
        let clock = Clock::new();
        let d = ensure_deferred(&clock, async {
            let r = crate::defer::fail::<i32>(Failure::msg("nope")).await;
            Ok::<_, Failure>(r.is_err())
        });
        assert!(d.result().unwrap().unwrap());
    }

    #[test]
    fn a_chain_of_awaits() {
        let clock = Clock::new();
        let (a, b) = (later(&clock, 1, 1), later(&clock, 2, 2));
        let d = ensure_deferred(&clock, async move {
            let x = a.await?;
            let y = b.await?;
            Ok::<_, Failure>(x + y)
        });
        clock.advance(Duration::from_secs(5));
        assert_eq!(d.result().unwrap().unwrap(), 3);
    }

    #[test]
    fn future_returning_err_errbacks() {
        let clock = Clock::new();
        let d = ensure_deferred(&clock, async { Err::<(), _>(Failure::msg("bad")) });
        assert_eq!(d.take_result().unwrap().unwrap_err().to_string(), "bad");
    }

    #[test]
    fn cancel_reaches_the_awaited_deferred() {
        let clock = Clock::new();
        let awaited = Deferred::<i32>::new();
        let a = awaited.clone();
        let d = ensure_deferred(&clock, async move { a.await });
        d.cancel();
        assert!(awaited.called());
        assert!(d.take_result().unwrap().unwrap_err().is::<CancelledError>());
    }

    #[test]
    fn future_may_catch_the_cancellation_and_its_value_wins() {
        let clock = Clock::new();
        let awaited = Deferred::<i32>::new();
        let a = awaited.clone();
        let d = ensure_deferred(&clock, async move {
            match a.await {
                Err(f) if f.is::<CancelledError>() => Ok::<_, Failure>(-1),
                other => other,
            }
        });
        d.cancel();
        assert_eq!(d.result().unwrap().unwrap(), -1);
    }

    struct Never;
    impl Future for Never {
        type Output = Result<i32, Failure>;
        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
            Poll::Pending
        }
    }

    #[test]
    fn cancel_while_awaiting_a_non_deferred_drops_the_future() {
        let clock = Clock::new();
        let d = ensure_deferred(&clock, Never);
        assert_eq!(TASKS.with(|t| t.borrow().len()), 1);
        d.cancel();
        assert!(d.take_result().unwrap().unwrap_err().is::<CancelledError>());
        assert_eq!(TASKS.with(|t| t.borrow().len()), 0);
    }

    /// Wakes itself `n` times from inside one poll, then completes: the wakes coalesce.
    struct WakeMany {
        polls: Rc<Cell<u32>>,
    }
    impl Future for WakeMany {
        type Output = Result<u32, Failure>;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let n = self.polls.get() + 1;
            self.polls.set(n);
            if n == 1 {
                for _ in 0..5 {
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            } else {
                Poll::Ready(Ok(n))
            }
        }
    }

    #[test]
    fn many_wakes_coalesce_into_one_poll() {
        let clock = Clock::new();
        let polls = Rc::new(Cell::new(0));
        let d = ensure_deferred(
            &clock,
            WakeMany {
                polls: polls.clone(),
            },
        );
        assert_eq!(polls.get(), 1);
        clock.run_due();
        assert_eq!(polls.get(), 2);
        assert_eq!(d.result().unwrap().unwrap(), 2);
    }

    /// Hands its waker to a real thread, which wakes it.
    struct WakeFromThread {
        sent: bool,
    }
    impl Future for WakeFromThread {
        type Output = Result<&'static str, Failure>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            if self.sent {
                return Poll::Ready(Ok("woken from a thread"));
            }
            self.sent = true;
            let waker = cx.waker().clone();
            #[allow(clippy::disallowed_methods)]
            std::thread::spawn(move || waker.wake()).join().unwrap();
            Poll::Pending
        }
    }

    #[test]
    fn wake_from_another_thread_goes_through_the_thread_caller() {
        let clock = Clock::new();
        let d = ensure_deferred(&clock, WakeFromThread { sent: false });
        assert!(
            !d.called(),
            "nothing runs until the reactor drains its thread calls"
        );
        clock.run_due();
        assert_eq!(d.result().unwrap().unwrap(), "woken from a thread");
    }

    #[test]
    fn woken_task_is_polled_on_a_later_turn_not_inline() {
        let clock = Clock::new();
        let awaited = Deferred::<i32>::new();
        let a = awaited.clone();
        let d = ensure_deferred(&clock, async move { a.await });
        awaited.callback(1).unwrap();
        assert!(
            !d.called(),
            "the wake schedules a poll; it does not poll inline"
        );
        clock.run_due();
        assert_eq!(d.result().unwrap().unwrap(), 1);
    }

    #[test]
    fn test_several_coroutines_awaiting_one_deferred_all_resume() {
        let clock = Clock::new();
        let shared = Deferred::<i32>::new();
        let (a, b, c) = (shared.clone(), shared.clone(), shared.clone());
        let first = ensure_deferred(&clock, async move { a.await });
        let second = ensure_deferred(&clock, async move {
            Ok::<_, Failure>(b.await.unwrap_err().is::<ResultPassedOn>())
        });
        let third = ensure_deferred(&clock, async move {
            Ok::<_, Failure>(c.await.unwrap_err().is::<ResultPassedOn>())
        });
        shared.callback(3).unwrap();
        clock.run_due();
        assert_eq!(
            first.result().unwrap().unwrap(),
            3,
            "the first awaiter gets it"
        );
        assert!(second.result().unwrap().unwrap(), "the others resume too");
        assert!(third.result().unwrap().unwrap());
    }

    #[test]
    fn test_awaiter_sees_the_result_at_its_place_in_the_chain() {
        let clock = Clock::new();
        let d = Deferred::<i32>::new();
        let a = d.clone();
        let task = ensure_deferred(&clock, async move { a.await });
        // Added after the await began: runs after the awaiter took the result.
        let later = d.clone().add_both(|r| Ok::<_, Failure>(r.is_err()));
        d.callback(1).unwrap();
        clock.run_due();
        assert_eq!(task.result().unwrap().unwrap(), 1);
        assert!(later.result().unwrap().unwrap());
    }

    fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn test_dropped_deferred_future_leaves_the_result_in_the_chain() {
        let d = Deferred::<i32>::new();
        let mut fut = d.clone().into_future();
        assert!(poll_once(&mut fut).is_pending());
        drop(fut);
        d.callback(4).unwrap();
        assert_eq!(d.result().unwrap().unwrap(), 4);
    }

    #[test]
    fn test_dropped_deferred_future_holding_a_failure_reports_it() {
        let u = crate::defer::tests_support_capture();
        let d = Deferred::<i32>::new();
        let mut fut = d.clone().into_future();
        assert!(poll_once(&mut fut).is_pending());
        d.errback(Failure::msg("never awaited to the end")).unwrap();
        drop(fut);
        assert_eq!(*u.borrow(), vec!["never awaited to the end".to_string()]);
    }

    #[test]
    fn test_deferred_future_cancel_cancels_the_deferred() {
        let cancelled = Rc::new(Cell::new(false));
        let c = cancelled.clone();
        let d = Deferred::<i32>::with_canceller(move |_| c.set(true));
        let mut fut = d.clone().into_future();
        assert!(poll_once(&mut fut).is_pending());
        fut.cancel();
        assert!(cancelled.get(), "the canceller ran");
        match poll_once(&mut fut) {
            Poll::Ready(Err(f)) => assert!(f.is::<CancelledError>()),
            other => panic!(
                "expected the cancellation, got {:?}",
                other.map(|r| r.is_ok())
            ),
        }
    }

    #[test]
    fn deferred_future_failure_counts_as_handled() {
        let u = crate::defer::tests_support_capture();
        let clock = Clock::new();
        let d = ensure_deferred(&clock, async {
            let _ = crate::defer::fail::<()>(Failure::msg("seen")).await;
            Ok::<_, Failure>(())
        });
        drop(d);
        assert_eq!(u.borrow().len(), 0);
    }
}
