//! The thread pool behind `defer_to_thread`: a few worker threads fed by a channel. A
//! finished job's result goes into a completion list and wakes the loop, which fires the
//! job's Deferred on the reactor thread (a `Deferred` never crosses threads).

use std::any::Any;
use std::cell::RefCell;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

use mio::Waker;
use slab::Slab;

use crate::defer::{Deferred, Failure};
use crate::reactor::ThreadWork;

/// Worker threads (Twisted's default pool has at most 10).
const WORKERS: usize = 4;

type Outcome = Result<Box<dyn Any + Send>, Box<dyn Any + Send>>;

struct Job {
    id: usize,
    work: ThreadWork,
}

pub(crate) struct Pool {
    waker: Arc<Waker>,
    sender: RefCell<Option<Sender<Job>>>,
    done: Arc<Mutex<Vec<(usize, Outcome)>>>,
    waiting: RefCell<Slab<Deferred<Box<dyn Any + Send>>>>,
}

impl Pool {
    pub(crate) fn new(waker: Arc<Waker>) -> Self {
        Pool {
            waker,
            sender: RefCell::new(None),
            done: Arc::default(),
            waiting: RefCell::new(Slab::new()),
        }
    }

    /// Starts the workers on first use.
    fn sender(&self) -> Sender<Job> {
        let mut slot = self.sender.borrow_mut();
        if let Some(s) = slot.as_ref() {
            return s.clone();
        }
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..WORKERS {
            let (rx, done, waker) = (rx.clone(), self.done.clone(), self.waker.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("torsion-worker-{i}"))
                .spawn(move || loop {
                    let job = {
                        let rx = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        rx.recv()
                    };
                    let Ok(job) = job else { return };
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job.work));
                    done.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((job.id, outcome));
                    let _ = waker.wake();
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a worker thread");
            }
        }
        *slot = Some(tx.clone());
        tx
    }

    pub(crate) fn submit(&self, work: ThreadWork) -> Deferred<Box<dyn Any + Send>> {
        let d = Deferred::new();
        let id = self.waiting.borrow_mut().insert(d.clone());
        if self.sender().send(Job { id, work }).is_err() {
            self.waiting.borrow_mut().remove(id);
            let _ = d.errback(Failure::msg("the worker pool is gone"));
        }
        d
    }

    /// The finished jobs, as calls that fire their Deferreds (run them on the reactor).
    pub(crate) fn completions(&self) -> Vec<Box<dyn FnOnce() + '_>> {
        if self.waiting.borrow().is_empty() {
            return Vec::new(); // nothing submitted: skip the lock
        }
        let finished = std::mem::take(
            &mut *self
                .done
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        finished
            .into_iter()
            .filter_map(|(id, outcome)| {
                let d = self.waiting.borrow_mut().try_remove(id)?;
                Some(Box::new(move || {
                    let _ = match outcome {
                        Ok(v) => d.callback(v),
                        Err(payload) => d.errback(Failure::from_panic(payload)),
                    };
                }) as Box<dyn FnOnce()>)
            })
            .collect()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the channel lets idle workers exit.
        self.sender.borrow_mut().take();
    }
}
