//! The FIFO of waiting Deferreds behind `DeferredLock`, `DeferredSemaphore` and
//! `DeferredQueue`: a waiter whose Deferred is cancelled leaves the queue.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Weak;

use crate::defer::Deferred;

/// Waiting Deferreds, first come first served.
pub(crate) struct Waiters<T> {
    next_id: u64,
    queue: VecDeque<(u64, Deferred<T>)>,
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Waiters {
            next_id: 0,
            queue: VecDeque::new(),
        }
    }
}

impl<T: 'static> Waiters<T> {
    /// A new waiter at the back. Its canceller takes it out again, reaching these waiters
    /// through `owner` (the structure they live in) and `field`.
    #[track_caller]
    pub(crate) fn wait<S: 'static>(
        &mut self,
        owner: Weak<RefCell<S>>,
        field: fn(&mut S) -> &mut Waiters<T>,
    ) -> Deferred<T> {
        let id = self.next_id;
        self.next_id += 1;
        let d = Deferred::with_canceller(move |_| {
            if let Some(owner) = owner.upgrade() {
                field(&mut owner.borrow_mut())
                    .queue
                    .retain(|(i, _)| *i != id);
            }
        });
        self.queue.push_back((id, d.clone()));
        d
    }

    /// The first waiter that has not fired, removed. A waiter fired by other means (its
    /// handle is public) is dropped from the queue, so a token or value is never handed to a
    /// Deferred that cannot take it.
    pub(crate) fn pop_front(&mut self) -> Option<Deferred<T>> {
        while let Some((_, d)) = self.queue.pop_front() {
            if !d.called() {
                return Some(d);
            }
        }
        None
    }

    /// How many wait.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}
