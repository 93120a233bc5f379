//! `DeferredQueue`: a queue whose `get` returns a Deferred (Twisted's `DeferredQueue`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use crate::defer::waiters::Waiters;
use crate::defer::{succeed, Deferred};
use crate::error::{QueueOverflow, QueueUnderflow};

struct QueueState<T> {
    size: Option<usize>,
    backlog: Option<usize>,
    pending: VecDeque<T>,
    waiting: Waiters<T>,
}

/// A queue of values with asynchronous `get`.
///
/// `size` bounds the values held (`put` past it is [`QueueOverflow`]); `backlog` bounds the
/// getters waiting (`get` past it is [`QueueUnderflow`]); `None` is unbounded.
///
/// ```
/// use torsion::defer::DeferredQueue;
///
/// let q = DeferredQueue::new(None, None);
/// let waiting = q.get().unwrap();
/// q.put("job").unwrap();
/// assert_eq!(waiting.result().unwrap().unwrap(), "job");
/// ```
pub struct DeferredQueue<T> {
    st: Rc<RefCell<QueueState<T>>>,
}

impl<T> Clone for DeferredQueue<T> {
    fn clone(&self) -> Self {
        DeferredQueue {
            st: self.st.clone(),
        }
    }
}

impl<T: 'static> DeferredQueue<T> {
    /// A queue with the given bounds.
    pub fn new(size: Option<usize>, backlog: Option<usize>) -> Self {
        DeferredQueue {
            st: Rc::new(RefCell::new(QueueState {
                size,
                backlog,
                pending: VecDeque::new(),
                waiting: Waiters::default(),
            })),
        }
    }

    /// Values waiting to be taken.
    pub fn len(&self) -> usize {
        self.st.borrow().pending.len()
    }

    /// Whether no value waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Getters waiting for a value.
    pub fn waiting(&self) -> usize {
        self.st.borrow().waiting.len()
    }

    /// Hands `value` to the first waiting getter, or holds it.
    pub fn put(&self, value: T) -> Result<(), QueueOverflow> {
        let getter = {
            let mut st = self.st.borrow_mut();
            match st.waiting.pop_front() {
                Some(d) => Some(d),
                None => {
                    if st.size.is_some_and(|s| st.pending.len() >= s) {
                        return Err(QueueOverflow);
                    }
                    st.pending.push_back(value);
                    return Ok(());
                }
            }
        };
        if let Some(d) = getter {
            let _ = d.callback(value);
        }
        Ok(())
    }

    /// A Deferred of the next value: already fired if one waits. Cancelling a waiting getter
    /// removes it from the queue.
    #[track_caller]
    pub fn get(&self) -> Result<Deferred<T>, QueueUnderflow> {
        let mut st = self.st.borrow_mut();
        if let Some(v) = st.pending.pop_front() {
            drop(st);
            return Ok(succeed(v));
        }
        if st.backlog.is_some_and(|b| st.waiting.len() >= b) {
            return Err(QueueUnderflow);
        }
        Ok(st.waiting.wait(Rc::downgrade(&self.st), |s| &mut s.waiting))
    }
}
