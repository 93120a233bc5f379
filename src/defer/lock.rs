//! `DeferredLock` and `DeferredSemaphore`: mutual exclusion for asynchronous code.
//!
//! Waiters queue first-in, first-out; `acquire` returns a Deferred that fires when the lock
//! (or a token) is yours; cancelling a waiting `acquire` takes it out of the queue. `run`
//! acquires, runs a function (which may return a Deferred), and releases on success and on
//! failure alike.
//!
//! As in Twisted (`acquire().addCallback(execute)`, where `execute` releases), the release
//! in `run` sits *inside* the callback that runs once the lock is held: a `run` cancelled
//! while it waits fails with `CancelledError` without ever holding the lock, so it releases
//! nothing. Cancelling a `run` whose function is running cancels what the function returned;
//! that settles it, and the lock is released then. A waiter that has already fired by other
//! means (someone fired the Deferred `acquire` returned) is skipped, never handed a token.

use std::cell::RefCell;
use std::rc::Rc;

use crate::defer::waiters::Waiters;
use crate::defer::{maybe_deferred, succeed, Deferred, IntoOutcome};
use crate::error::{NoTokens, NotAcquired};

struct SemState {
    limit: usize,
    tokens: usize,
    waiting: Waiters<()>,
}

/// Twisted's `DeferredSemaphore`: at most `limit` holders at once.
///
/// ```
/// use torsion::defer::DeferredSemaphore;
///
/// let sem = DeferredSemaphore::new(1).unwrap();
/// let first = sem.acquire();
/// let second = sem.acquire();
/// assert!(first.called() && !second.called());
/// sem.release().unwrap();
/// assert!(second.called());
/// ```
#[derive(Clone)]
pub struct DeferredSemaphore {
    st: Rc<RefCell<SemState>>,
}

impl DeferredSemaphore {
    /// A semaphore with `tokens` tokens (at least one).
    pub fn new(tokens: usize) -> Result<Self, NoTokens> {
        if tokens == 0 {
            return Err(NoTokens);
        }
        Ok(DeferredSemaphore {
            st: Rc::new(RefCell::new(SemState {
                limit: tokens,
                tokens,
                waiting: Waiters::default(),
            })),
        })
    }

    /// Tokens free now.
    pub fn tokens(&self) -> usize {
        self.st.borrow().tokens
    }

    /// The number of tokens it was made with.
    pub fn limit(&self) -> usize {
        self.st.borrow().limit
    }

    /// Waiters in the queue.
    pub fn waiting(&self) -> usize {
        self.st.borrow().waiting.len()
    }

    /// A Deferred that fires when a token is yours. Cancelling it while it waits removes it
    /// from the queue.
    #[track_caller]
    pub fn acquire(&self) -> Deferred<()> {
        let mut st = self.st.borrow_mut();
        if st.tokens > 0 {
            st.tokens -= 1;
            drop(st);
            return succeed(());
        }
        st.waiting.wait(Rc::downgrade(&self.st), |s| &mut s.waiting)
    }

    /// Gives a token back, handing it to the first waiter if there is one.
    pub fn release(&self) -> Result<(), NotAcquired> {
        let next = {
            let mut st = self.st.borrow_mut();
            match st.waiting.pop_front() {
                Some(d) => Some(d),
                None if st.tokens < st.limit => {
                    st.tokens += 1;
                    None
                }
                None => return Err(NotAcquired),
            }
        };
        if let Some(d) = next {
            let _ = d.callback(()); // outside the borrow: the waiter's callbacks may re-enter
        }
        Ok(())
    }

    /// Acquires, runs `f`, and releases when what `f` returns has fired (either way; a panic
    /// in `f` is a [`Panicked`](crate::error::Panicked) failure). Cancelling it while it
    /// waits for the token removes it from the queue and releases nothing.
    #[track_caller]
    pub fn run<R: IntoOutcome>(&self, f: impl FnOnce() -> R + 'static) -> Deferred<R::Value> {
        let me = self.clone();
        self.acquire().and_then(move |()| {
            // Only reached holding a token: a cancelled or failed acquire skips this.
            maybe_deferred(f).add_both(move |r| {
                let _ = me.release();
                r
            })
        })
    }
}

/// Twisted's `DeferredLock`: a semaphore with one token, that fires its waiters with itself.
///
/// ```
/// use torsion::defer::{DeferredLock, Deferred};
///
/// let lock = DeferredLock::new();
/// let gate = Deferred::<u32>::new();
/// let g = gate.clone();
/// let first = lock.run(move || g);             // holds the lock until `gate` fires
/// let second = lock.run(|| Ok::<_, torsion::defer::Failure>(2));
/// assert!(lock.locked() && !second.called());
/// gate.callback(1).unwrap();
/// assert_eq!(first.result().unwrap().unwrap(), 1);
/// assert_eq!(second.result().unwrap().unwrap(), 2);
/// assert!(!lock.locked());
/// ```
#[derive(Clone)]
pub struct DeferredLock {
    sem: DeferredSemaphore,
}

impl Default for DeferredLock {
    fn default() -> Self {
        Self::new()
    }
}

impl DeferredLock {
    /// An unlocked lock.
    pub fn new() -> Self {
        DeferredLock {
            // One token is a valid count.
            sem: DeferredSemaphore {
                st: Rc::new(RefCell::new(SemState {
                    limit: 1,
                    tokens: 1,
                    waiting: Waiters::default(),
                })),
            },
        }
    }

    /// Whether someone holds it.
    pub fn locked(&self) -> bool {
        self.sem.tokens() == 0
    }

    /// A Deferred that fires with the lock once it is yours.
    #[track_caller]
    pub fn acquire(&self) -> Deferred<DeferredLock> {
        let me = self.clone();
        self.sem.acquire().add_callback(move |()| me)
    }

    /// Releases it, handing it to the first waiter.
    pub fn release(&self) -> Result<(), NotAcquired> {
        self.sem.release()
    }

    /// Acquires, runs `f`, releases when its result has fired.
    #[track_caller]
    pub fn run<R: IntoOutcome>(&self, f: impl FnOnce() -> R + 'static) -> Deferred<R::Value> {
        self.sem.run(f)
    }
}

impl std::fmt::Debug for DeferredLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeferredLock(locked: {})", self.locked())
    }
}
