//! The threads capability (Twisted's `IReactorThreads`): the one thread-safe way in.
//!
//! Everything else in torsion lives on its reactor's thread. Another thread reaches the
//! reactor only through a [`ThreadCaller`] (`call_from_thread`): a cheap-clone, `Send +
//! Sync` handle that queues a closure for the reactor thread and, on the real reactor,
//! wakes its poll. [`ThreadCallQueue`] is the reactor side, shared by the drivers.
//!
//! `defer_to_thread` runs a function on a worker thread and fires its Deferred back on the
//! reactor thread. Under simulation there are no threads: the function runs inline and its
//! Deferred fires after a chosen virtual delay.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::defer::{Deferred, Failure};

/// A closure sent to the reactor thread.
pub type ThreadCall = Box<dyn FnOnce() + Send>;

/// What `defer_to_thread_boxed` runs: a function whose result crosses back to the reactor.
pub type ThreadWork = Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>;

/// Wakes a reactor that may be blocked (the real reactor's `mio::Waker`).
pub type Notify = Arc<dyn Fn() + Send + Sync>;

struct Shared {
    calls: Mutex<VecDeque<ThreadCall>>,
    pending: AtomicBool,
    notify: Option<Notify>,
}

/// A `Send + Sync` handle that runs closures on a reactor's thread (Twisted's
/// `callFromThread`). Calls run in the order they were made.
///
/// ```
/// use torsion::driver::ThreadCallQueue;
///
/// let queue = ThreadCallQueue::new(None);
/// let caller = queue.caller();
/// # #[allow(clippy::disallowed_methods)]
/// std::thread::spawn(move || caller.call(|| println!("on the reactor thread")))
///     .join()
///     .unwrap();
/// assert_eq!(queue.drain(), 1);
/// ```
#[derive(Clone)]
pub struct ThreadCaller {
    shared: Arc<Shared>,
}

impl ThreadCaller {
    /// Queues `f` for the reactor thread.
    pub fn call(&self, f: impl FnOnce() + Send + 'static) {
        self.call_boxed(Box::new(f));
    }

    /// Queues a boxed `f` for the reactor thread.
    pub fn call_boxed(&self, f: ThreadCall) {
        let mut calls = self
            .shared
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        calls.push_back(f);
        self.shared.pending.store(true, Ordering::Release);
        drop(calls);
        if let Some(n) = &self.shared.notify {
            n();
        }
    }
}

impl std::fmt::Debug for ThreadCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ThreadCaller")
    }
}

/// The reactor side of [`ThreadCaller`]: the queue it drains on its own thread.
pub struct ThreadCallQueue {
    caller: ThreadCaller,
}

impl ThreadCallQueue {
    /// A queue; `notify` (if any) is called after each call is queued, from the calling
    /// thread, to wake the reactor.
    pub fn new(notify: Option<Notify>) -> Self {
        ThreadCallQueue {
            caller: ThreadCaller {
                shared: Arc::new(Shared {
                    calls: Mutex::new(VecDeque::new()),
                    pending: AtomicBool::new(false),
                    notify,
                }),
            },
        }
    }

    /// A handle for other threads.
    pub fn caller(&self) -> ThreadCaller {
        self.caller.clone()
    }

    /// Whether calls are waiting (a cheap atomic read).
    pub fn has_pending(&self) -> bool {
        self.caller.shared.pending.load(Ordering::Acquire)
    }

    /// Runs every call queued so far, in order (calls queued while they run wait for the
    /// next drain). Returns how many ran.
    pub fn drain(&self) -> usize {
        if !self.has_pending() {
            return 0;
        }
        let batch: Vec<ThreadCall> = {
            let mut calls = self
                .caller
                .shared
                .calls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.caller.shared.pending.store(false, Ordering::Release);
            calls.drain(..).collect()
        };
        let n = batch.len();
        for f in batch {
            f();
        }
        n
    }
}

/// The threads capability of a reactor. Object-safe; [`ReactorThreadsExt`] has the typed
/// forms.
pub trait ReactorThreads {
    /// A handle other threads use to run code on this reactor's thread.
    fn thread_caller(&self) -> ThreadCaller;

    /// Twisted's `callFromThread`.
    fn call_from_thread(&self, f: ThreadCall) {
        self.thread_caller().call_boxed(f);
    }

    /// Runs `work` off the reactor thread (inline, under simulation) and fires the Deferred
    /// with its result on the reactor thread; a panic in `work` becomes a
    /// [`Panicked`](crate::error::Panicked) failure.
    fn defer_to_thread_boxed(&self, work: ThreadWork) -> Deferred<Box<dyn Any + Send>>;
}

/// Typed forms of [`ReactorThreads`].
pub trait ReactorThreadsExt: ReactorThreads {
    /// Twisted's `deferToThread`: `f` runs on a worker thread; its value comes back on the
    /// reactor thread.
    fn defer_to_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Deferred<T> {
        self.defer_to_thread_boxed(Box::new(move || Box::new(f()) as Box<dyn Any + Send>))
            .and_then(|any: Box<dyn Any + Send>| {
                any.downcast::<T>().map(|b| *b).map_err(|_| {
                    Failure::new(crate::error::TypeMismatch {
                        expected: std::any::type_name::<T>(),
                    })
                })
            })
    }
}

impl<R: ReactorThreads + ?Sized> ReactorThreadsExt for R {}

/// Runs `work`, catching a panic: the shared core of every driver's `defer_to_thread`.
pub fn run_work(work: ThreadWork) -> Result<Box<dyn Any + Send>, Failure> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(Failure::from_panic)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    #[test]
    fn calls_from_threads_run_in_order_on_drain() {
        let q = ThreadCallQueue::new(None);
        let seen = Arc::new(Mutex::new(Vec::new()));
        for i in 0..3 {
            let (c, s) = (q.caller(), seen.clone());
            #[allow(clippy::disallowed_methods)]
            std::thread::spawn(move || c.call(move || s.lock().unwrap().push(i)))
                .join()
                .unwrap();
        }
        assert!(q.has_pending());
        assert_eq!(q.drain(), 3);
        assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2]);
        assert!(!q.has_pending());
        assert_eq!(q.drain(), 0);
    }

    #[test]
    fn notify_is_called_per_call() {
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c2 = count.clone();
        let q = ThreadCallQueue::new(Some(Arc::new(move || {
            c2.fetch_add(1, Ordering::SeqCst);
        })));
        q.caller().call(|| {});
        q.caller().call(|| {});
        assert_eq!(count.load(Ordering::SeqCst), 2);
        let ran = Rc::new(RefCell::new(0));
        let _ = ran;
        assert_eq!(q.drain(), 2);
    }

    #[test]
    fn run_work_turns_panics_into_failures() {
        let f = run_work(Box::new(|| panic!("in worker"))).unwrap_err();
        assert_eq!(f.to_string(), "panicked: in worker");
        let ok = run_work(Box::new(|| Box::new(5u8) as Box<dyn Any + Send>)).unwrap();
        assert_eq!(*ok.downcast::<u8>().unwrap(), 5);
    }
}
