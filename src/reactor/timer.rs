//! The timer queue every driver shares, and [`DelayedCall`], the handle `call_later` returns.
//!
//! Calls are ordered by (deadline, sequence): the sequence number is taken when a call is
//! scheduled, reset or delayed, so same-time calls run first-in, first-out and a call
//! scheduled for "now" while another runs goes after everything already due. Cancelled and
//! rescheduled entries stay in the heap and are skipped when they surface (lazy deletion),
//! so cancel, reset and delay are O(log n) with no search. Stale entries are not left to pile
//! up until their deadline, though (a long idle timeout reset on every read would otherwise
//! grow the heap by one entry per read): once they outnumber the pending calls (and there are
//! more than a few), the heap is rebuilt with the live ones only, as Twisted's reactor does.
//!
//! A queue does not run anything by itself: its driver asks for the next deadline, moves the
//! clock, and pops due calls one at a time ([`TimerQueue::pop_due`]), running each with no
//! borrow held, so a call may schedule, cancel or reset any other.

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::error::{AlreadyCalled, AlreadyCancelled, DelayedCallError};
use crate::reactor::Instant;

enum CallState {
    Pending(Box<dyn FnOnce()>),
    Called,
    Cancelled,
}

struct Entry {
    time: Cell<Instant>,
    seq: Cell<u64>,
    state: RefCell<CallState>,
}

struct HeapItem {
    time: Instant,
    seq: u64,
    entry: Rc<Entry>,
}

impl PartialEq for HeapItem {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl Eq for HeapItem {}
impl PartialOrd for HeapItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeapItem {
    /// Reversed, so the std max-heap pops the earliest (deadline, sequence) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

/// Told whenever a queue's earliest pending call may have changed other than by
/// [`TimerQueue::pop_due`]: a call scheduled, reset, delayed or cancelled.
pub type ChangeObserver = Rc<dyn Fn()>;

struct Inner {
    now: Cell<Instant>,
    next_seq: Rc<Cell<u64>>,
    active: Cell<usize>,
    heap: RefCell<BinaryHeap<HeapItem>>,
    observer: RefCell<Option<ChangeObserver>>,
}

impl Inner {
    fn push(&self, entry: &Rc<Entry>, time: Instant) {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        entry.time.set(time);
        entry.seq.set(seq);
        self.heap.borrow_mut().push(HeapItem {
            time,
            seq,
            entry: entry.clone(),
        });
        self.compact();
        self.changed();
    }

    /// Tells the observer, if any, that the queue changed.
    fn changed(&self) {
        let observer = self.observer.borrow().clone();
        if let Some(f) = observer {
            f();
        }
    }

    /// Drops the stale heap items (cancelled, called, or superseded by a reset) once they
    /// outnumber the live ones: amortised O(1) per operation, and the heap stays within
    /// twice the pending calls.
    fn compact(&self) {
        let mut heap = self.heap.borrow_mut();
        let live = self.active.get();
        let stale = heap.len().saturating_sub(live);
        if stale > COMPACT_MIN && stale > live {
            heap.retain(|item| {
                item.seq == item.entry.seq.get()
                    && matches!(*item.entry.state.borrow(), CallState::Pending(_))
            });
        }
    }
}

/// Stale heap items tolerated before [`Inner::compact`] considers a rebuild.
const COMPACT_MIN: usize = 64;

/// Delayed calls ordered by (deadline, sequence), with the clock reading their driver keeps.
///
/// ```
/// use std::time::Duration;
/// use torsion::driver::TimerQueue;
/// use torsion::reactor::Instant;
///
/// let q = TimerQueue::new();
/// q.call_later(Duration::from_secs(1), || println!("one"));
/// assert_eq!(q.next_deadline(), Some(Instant::from_nanos(1_000_000_000)));
/// let (at, call) = q.pop_due(Instant::from_nanos(1_000_000_000)).unwrap();
/// q.set_now(at);
/// call();
/// assert!(q.is_empty());
/// ```
#[derive(Clone)]
pub struct TimerQueue {
    inner: Rc<Inner>,
}

impl Default for TimerQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl TimerQueue {
    /// An empty queue whose clock reads [`Instant::ZERO`].
    pub fn new() -> Self {
        Self::with_sequence(Rc::new(Cell::new(0)))
    }

    /// An empty queue that draws sequence numbers from `seq`, shared with other queues, so
    /// that calls on different queues (the simulator's hosts) have one first-in, first-out
    /// order among themselves.
    pub fn with_sequence(seq: Rc<Cell<u64>>) -> Self {
        TimerQueue {
            inner: Rc::new(Inner {
                now: Cell::new(Instant::ZERO),
                next_seq: seq,
                active: Cell::new(0),
                heap: RefCell::new(BinaryHeap::new()),
                observer: RefCell::new(None),
            }),
        }
    }

    /// Calls `f` after every change that may move the earliest pending call, other than the
    /// driver's own [`pop_due`](Self::pop_due): a call scheduled, reset, delayed or cancelled
    /// (one by one when the queue is cleared). A driver watching several queues keeps its own
    /// index of their fronts with it (the simulator does) instead of scanning them all.
    pub fn set_change_observer(&self, f: Option<ChangeObserver>) {
        *self.inner.observer.borrow_mut() = f;
    }

    /// The clock reading delays are measured from.
    pub fn now(&self) -> Instant {
        self.inner.now.get()
    }

    /// Moves the clock (the driver does this before running each due call).
    pub fn set_now(&self, now: Instant) {
        self.inner.now.set(now);
    }

    /// Schedules `f` for `now + delay`.
    pub fn call_later(&self, delay: Duration, f: impl FnOnce() + 'static) -> DelayedCall {
        self.call_later_boxed(delay, Box::new(f))
    }

    /// Schedules a boxed `f` for `now + delay`.
    pub fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        self.call_at_boxed(self.now() + delay, f)
    }

    /// Schedules a boxed `f` for the absolute time `at` (the past means "now").
    pub fn call_at_boxed(&self, at: Instant, f: Box<dyn FnOnce()>) -> DelayedCall {
        let at = at.max(self.now());
        let entry = Rc::new(Entry {
            time: Cell::new(Instant::ZERO),
            seq: Cell::new(0),
            state: RefCell::new(CallState::Pending(f)),
        });
        self.inner.push(&entry, at);
        self.inner.active.set(self.inner.active.get() + 1);
        DelayedCall {
            entry,
            queue: Rc::downgrade(&self.inner),
        }
    }

    /// Drops heap items for cancelled, called or rescheduled entries from the top.
    fn discard_stale(&self) {
        let mut heap = self.inner.heap.borrow_mut();
        while let Some(top) = heap.peek() {
            let live = top.seq == top.entry.seq.get()
                && matches!(*top.entry.state.borrow(), CallState::Pending(_));
            if live {
                break;
            }
            heap.pop();
        }
    }

    /// The earliest deadline of a pending call.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.discard_stale();
        self.inner.heap.borrow().peek().map(|item| item.time)
    }

    /// The earliest pending call's (deadline, sequence number).
    pub fn next_key(&self) -> Option<(Instant, u64)> {
        self.discard_stale();
        self.inner
            .heap
            .borrow()
            .peek()
            .map(|item| (item.time, item.seq))
    }

    /// Removes and returns the earliest pending call if its deadline is at or before `limit`,
    /// marking it called. The driver sets the clock to the returned time, then runs the call.
    pub fn pop_due(&self, limit: Instant) -> Option<(Instant, Box<dyn FnOnce()>)> {
        self.discard_stale();
        let item = {
            let mut heap = self.inner.heap.borrow_mut();
            match heap.peek() {
                Some(top) if top.time <= limit => heap.pop()?,
                _ => return None,
            }
        };
        let state = item.entry.state.replace(CallState::Called);
        match state {
            CallState::Pending(f) => {
                self.inner.active.set(self.inner.active.get() - 1);
                Some((item.time, f))
            }
            // discard_stale left only live items on top.
            CallState::Called | CallState::Cancelled => None,
        }
    }

    /// Number of pending calls.
    pub fn len(&self) -> usize {
        self.inner.active.get()
    }

    /// Whether no call is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pending calls, earliest first (Twisted's `getDelayedCalls`).
    pub fn delayed_calls(&self) -> Vec<DelayedCall> {
        let heap = self.inner.heap.borrow();
        let mut live: Vec<&HeapItem> = heap
            .iter()
            .filter(|item| {
                item.seq == item.entry.seq.get()
                    && matches!(*item.entry.state.borrow(), CallState::Pending(_))
            })
            .collect();
        live.sort_by(|a, b| b.cmp(a));
        live.into_iter()
            .map(|item| DelayedCall {
                entry: item.entry.clone(),
                queue: Rc::downgrade(&self.inner),
            })
            .collect()
    }

    /// Cancels every pending call (a crashed host, a reactor being torn down).
    pub fn clear(&self) {
        for call in self.delayed_calls() {
            let _ = call.cancel();
        }
        self.inner.heap.borrow_mut().clear();
    }
}

/// A call scheduled with `call_later` (Twisted's `DelayedCall`). Cloning gives another handle
/// to the same call.
#[derive(Clone)]
pub struct DelayedCall {
    entry: Rc<Entry>,
    queue: Weak<Inner>,
}

impl DelayedCall {
    /// Whether the call is still to run.
    pub fn active(&self) -> bool {
        matches!(*self.entry.state.borrow(), CallState::Pending(_))
    }

    /// Whether the call ran.
    pub fn called(&self) -> bool {
        matches!(*self.entry.state.borrow(), CallState::Called)
    }

    /// Whether the call was cancelled.
    pub fn cancelled(&self) -> bool {
        matches!(*self.entry.state.borrow(), CallState::Cancelled)
    }

    /// When the call is (or was) due.
    pub fn get_time(&self) -> Instant {
        self.entry.time.get()
    }

    fn check_pending(&self) -> Result<(), DelayedCallError> {
        match *self.entry.state.borrow() {
            CallState::Pending(_) => Ok(()),
            CallState::Called => Err(AlreadyCalled.into()),
            CallState::Cancelled => Err(AlreadyCancelled.into()),
        }
    }

    /// Cancels the call. Its closure is dropped now.
    pub fn cancel(&self) -> Result<(), DelayedCallError> {
        self.check_pending()?;
        let old = self.entry.state.replace(CallState::Cancelled);
        if let Some(q) = self.queue.upgrade() {
            q.active.set(q.active.get() - 1);
            q.compact();
            q.changed();
        }
        drop(old); // outside any borrow: the closure's captures may have Drop impls
        Ok(())
    }

    /// Reschedules the call for `seconds_from_now` after the queue's current time.
    pub fn reset(&self, seconds_from_now: Duration) -> Result<(), DelayedCallError> {
        self.check_pending()?;
        if let Some(q) = self.queue.upgrade() {
            let at = q.now.get() + seconds_from_now;
            q.push(&self.entry, at);
        }
        Ok(())
    }

    /// Moves the call `seconds_later` later than it was due.
    pub fn delay(&self, seconds_later: Duration) -> Result<(), DelayedCallError> {
        self.check_pending()?;
        if let Some(q) = self.queue.upgrade() {
            let at = self.entry.time.get() + seconds_later;
            q.push(&self.entry, at);
        }
        Ok(())
    }
}

impl fmt::Debug for DelayedCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match *self.entry.state.borrow() {
            CallState::Pending(_) => "pending",
            CallState::Called => "called",
            CallState::Cancelled => "cancelled",
        };
        write!(f, "DelayedCall({} at {})", state, self.entry.time.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &TimerQueue, until: Instant) {
        while let Some((t, f)) = q.pop_due(until) {
            q.set_now(t);
            f();
        }
        q.set_now(until);
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn same_time_calls_run_fifo() {
        let q = TimerQueue::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        for i in 0..5 {
            let log = log.clone();
            q.call_later(secs(1), move || log.borrow_mut().push(i));
        }
        drain(&q, Instant::ZERO + secs(1));
        assert_eq!(*log.borrow(), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn cancel_then_cancel_again_is_already_cancelled() {
        let q = TimerQueue::new();
        let c = q.call_later(secs(1), || {});
        assert_eq!(q.len(), 1);
        c.cancel().unwrap();
        assert_eq!(q.len(), 0);
        assert_eq!(
            c.cancel(),
            Err(DelayedCallError::AlreadyCancelled(AlreadyCancelled))
        );
        assert_eq!(c.reset(secs(1)), Err(AlreadyCancelled.into()));
        assert_eq!(q.next_deadline(), None);
    }

    #[test]
    fn reset_and_delay_move_the_call() {
        let q = TimerQueue::new();
        let hit = Rc::new(Cell::new(0u32));
        let h = hit.clone();
        let c = q.call_later(secs(5), move || h.set(h.get() + 1));
        c.reset(secs(2)).unwrap();
        assert_eq!(c.get_time(), Instant::ZERO + secs(2));
        c.delay(secs(1)).unwrap();
        assert_eq!(q.next_deadline(), Some(Instant::ZERO + secs(3)));
        drain(&q, Instant::ZERO + secs(2));
        assert_eq!(hit.get(), 0);
        drain(&q, Instant::ZERO + secs(10));
        assert_eq!(hit.get(), 1, "a rescheduled call runs exactly once");
        assert!(c.called());
        assert_eq!(c.cancel(), Err(AlreadyCalled.into()));
    }

    #[test]
    fn delayed_calls_lists_pending_in_order() {
        let q = TimerQueue::new();
        let a = q.call_later(secs(3), || {});
        let _b = q.call_later(secs(1), || {});
        a.cancel().unwrap();
        let _c = q.call_later(secs(2), || {});
        let times: Vec<_> = q.delayed_calls().iter().map(|c| c.get_time()).collect();
        assert_eq!(
            times,
            vec![Instant::ZERO + secs(1), Instant::ZERO + secs(2)]
        );
        q.clear();
        assert!(q.is_empty());
    }

    /// Counts live closures.
    fn counted(live: &Rc<Cell<i32>>, ran: &Rc<Cell<u32>>) -> impl FnOnce() + 'static {
        struct Guard(Rc<Cell<i32>>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.set(self.0.get() - 1);
            }
        }
        live.set(live.get() + 1);
        let (guard, ran) = (Guard(live.clone()), ran.clone());
        move || {
            let _guard = guard;
            ran.set(ran.get() + 1);
        }
    }

    #[test]
    fn fired_and_cancelled_calls_drop_their_closures() {
        let q = TimerQueue::new();
        let (live, ran) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
        let fired = q.call_later(secs(1), counted(&live, &ran));
        let cancelled = q.call_later(secs(1), counted(&live, &ran));
        let reset = q.call_later(secs(1), counted(&live, &ran));
        reset.reset(secs(3)).unwrap();
        assert_eq!(live.get(), 3);
        cancelled.cancel().unwrap();
        assert_eq!(live.get(), 2, "cancelling drops the closure at once");
        drain(&q, Instant::ZERO + secs(1));
        assert!(fired.called());
        assert_eq!(live.get(), 1, "a call that ran is dropped");
        drain(&q, Instant::ZERO + secs(3));
        assert_eq!((live.get(), ran.get()), (0, 2));
        // The handles outlive their closures.
        assert!(reset.called() && cancelled.cancelled());
        q.clear();
        let pending = q.call_later(secs(1), counted(&live, &ran));
        q.clear();
        assert!(pending.cancelled());
        assert_eq!(live.get(), 0, "clear drops pending closures");
    }

    #[test]
    fn the_change_observer_hears_every_change_but_pops() {
        let q = TimerQueue::new();
        let heard = Rc::new(Cell::new(0u32));
        let h = heard.clone();
        q.set_change_observer(Some(Rc::new(move || h.set(h.get() + 1))));
        let a = q.call_later(secs(1), || {});
        let b = q.call_later(secs(2), || {});
        assert_eq!(heard.get(), 2, "scheduled");
        a.reset(secs(3)).unwrap();
        a.delay(secs(1)).unwrap();
        assert_eq!(heard.get(), 4, "reset and delayed");
        b.cancel().unwrap();
        assert_eq!(heard.get(), 5, "cancelled");
        assert!(b.cancel().is_err());
        assert_eq!(heard.get(), 5, "a failed cancel changes nothing");
        q.call_later(secs(9), || {});
        q.clear();
        assert_eq!(heard.get(), 8, "one per call cleared");
        q.call_later(secs(1), || {});
        drain(&q, Instant::ZERO + secs(1));
        assert_eq!(heard.get(), 9, "the driver's own pops are not reported");
    }

    #[test]
    fn cancelled_and_reset_calls_do_not_pile_up_in_the_heap() {
        let q = TimerQueue::new();
        let keep = q.call_later(secs(3600), || {});
        for _ in 0..10_000 {
            let c = q.call_later(secs(3600), || {});
            c.cancel().unwrap();
        }
        assert!(q.inner.heap.borrow().len() <= 2 * COMPACT_MIN, "cancelled");
        for i in 0..10_000 {
            keep.reset(secs(3600 + i)).unwrap();
        }
        assert!(q.inner.heap.borrow().len() <= 2 * COMPACT_MIN, "reset");
        assert_eq!(q.len(), 1);
        assert_eq!(q.next_deadline(), Some(Instant::ZERO + secs(3600 + 9_999)));
        // Many live calls are never compacted away.
        let calls: Vec<_> = (0..1000).map(|i| q.call_later(secs(i), || {})).collect();
        for c in &calls[..500] {
            c.cancel().unwrap();
        }
        assert_eq!(q.len(), 501);
        assert_eq!(q.delayed_calls().len(), 501);
        assert_eq!(q.next_deadline(), Some(Instant::ZERO + secs(500)));
    }
}
