//! DeferredLock, DeferredSemaphore and DeferredQueue under cancellation: a cancelled waiter
//! never releases a lock it does not hold, and a queue never loses or duplicates a value.
//! Ends with property tests of random sequences checked against a model.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use proptest::prelude::*;

use super::support::Unhandled;
use crate::defer::{Deferred, DeferredLock, DeferredQueue, DeferredSemaphore, Failure};
use crate::error::CancelledError;

#[test]
fn test_cancel_lock_run_before_acquired_does_not_release() {
    let _u = Unhandled::capture();
    let lock = DeferredLock::new();
    let gate = Deferred::<()>::new();
    let g = gate.clone();
    let first = lock.run(move || g);
    let second = lock.run(|| Ok::<_, Failure>(()));
    second.cancel();
    assert!(second
        .take_result()
        .unwrap()
        .unwrap_err()
        .is::<CancelledError>());
    assert!(lock.locked(), "the first run still holds the lock");
    let third = lock.acquire();
    assert!(!third.called(), "mutual exclusion holds");
    gate.callback(()).unwrap();
    assert!(first.has_result());
    assert!(
        third.called(),
        "the lock passes on when the holder finishes"
    );
}

#[test]
fn test_cancel_lock_before_acquired() {
    let lock = DeferredLock::new();
    let first = lock.acquire();
    let second = lock.acquire();
    second.cancel();
    assert!(second
        .take_result()
        .unwrap()
        .unwrap_err()
        .is::<CancelledError>());
    assert!(lock.locked());
    lock.release().unwrap();
    assert!(
        !lock.locked(),
        "the cancelled waiter was not handed the lock"
    );
    drop(first);
}

#[test]
fn test_cancel_lock_after_acquired_does_nothing() {
    let lock = DeferredLock::new();
    let d = lock.acquire();
    d.cancel();
    assert!(d.result().unwrap().is_ok(), "it already holds the lock");
    assert!(lock.locked());
}

#[test]
fn test_cancel_lock_run_while_running_cancels_the_function_and_releases() {
    let _u = Unhandled::capture();
    let lock = DeferredLock::new();
    let work = Deferred::<u8>::new();
    let w = work.clone();
    let running = lock.run(move || w);
    running.cancel();
    assert!(work.called(), "the function's Deferred was cancelled");
    assert!(!lock.locked(), "and the lock released once it settled");
    let _ = running.take_result();
}

#[test]
fn test_cancel_semaphore_run_before_acquired_does_not_release() {
    let _u = Unhandled::capture();
    let sem = DeferredSemaphore::new(2).unwrap();
    let gates: Vec<Deferred<()>> = (0..2).map(|_| Deferred::new()).collect();
    let runs: Vec<Deferred<()>> = gates
        .iter()
        .map(|g| {
            let g = g.clone();
            sem.run(move || g)
        })
        .collect();
    let waiting = sem.run(|| Ok::<_, Failure>(()));
    waiting.cancel();
    assert_eq!(sem.tokens(), 0, "both holders still hold their tokens");
    let next = sem.acquire();
    assert!(!next.called(), "never more than two holders");
    gates[0].callback(()).unwrap();
    assert!(next.called());
    drop(runs);
}

#[test]
fn test_cancel_semaphore_before_acquired() {
    let sem = DeferredSemaphore::new(1).unwrap();
    let _held = sem.acquire();
    let waiting = sem.acquire();
    waiting.cancel();
    assert_eq!(sem.waiting(), 0);
    assert_eq!(sem.tokens(), 0);
    sem.release().unwrap();
    assert_eq!(sem.tokens(), 1);
    let _ = waiting.take_result();
}

#[test]
fn test_lock_run_function_that_panics_releases() {
    let lock = DeferredLock::new();
    let r = lock.run(|| -> Result<(), Failure> { panic!("in the critical section") });
    assert!(r.take_result().unwrap().is_err());
    assert!(!lock.locked());
}

#[test]
fn test_semaphore_waiter_fired_by_hand_is_skipped() {
    let sem = DeferredSemaphore::new(1).unwrap();
    let _held = sem.acquire();
    let rogue = sem.acquire();
    let honest = sem.acquire();
    rogue.callback(()).unwrap(); // not through release: it never got a token
    sem.release().unwrap();
    assert!(honest.called(), "the token goes to the next live waiter");
    assert_eq!(sem.tokens(), 0);
}

#[test]
fn test_cancel_queue_after_get() {
    let q = DeferredQueue::<u8>::new(None, None);
    let cancelled = q.get().unwrap();
    let kept = q.get().unwrap();
    cancelled.cancel();
    q.put(7).unwrap();
    assert_eq!(kept.result().unwrap().unwrap(), 7);
    assert!(cancelled
        .take_result()
        .unwrap()
        .unwrap_err()
        .is::<CancelledError>());
    assert!(q.is_empty());
}

#[test]
fn test_cancel_queue_after_synchronous_get_does_nothing() {
    let q = DeferredQueue::<u8>::new(None, None);
    q.put(1).unwrap();
    let got = q.get().unwrap();
    got.cancel();
    assert_eq!(got.result().unwrap().unwrap(), 1);
}

#[test]
fn test_queue_getter_fired_by_hand_does_not_lose_a_value() {
    let q = DeferredQueue::<u8>::new(None, None);
    let rogue = q.get().unwrap();
    rogue.callback(0).unwrap();
    q.put(5).unwrap();
    assert_eq!(
        q.len(),
        1,
        "the value is held, not handed to a fired getter"
    );
    assert_eq!(q.get().unwrap().result().unwrap().unwrap(), 5);
}

/// One step of a random lock/semaphore session.
#[derive(Debug, Clone)]
enum LockOp {
    Acquire,
    Run,
    /// Release one token held through `acquire` (the oldest).
    Release,
    /// Finish the function of the i-th `run` (modulo the runs so far).
    FireGate(usize),
    CancelAcquire(usize),
    CancelRun(usize),
}

fn lock_op() -> impl Strategy<Value = LockOp> {
    prop_oneof![
        Just(LockOp::Acquire),
        Just(LockOp::Run),
        Just(LockOp::Release),
        any::<usize>().prop_map(LockOp::FireGate),
        any::<usize>().prop_map(LockOp::CancelAcquire),
        any::<usize>().prop_map(LockOp::CancelRun),
    ]
}

/// The model: who holds a token now, and the most that ever held one at once.
#[derive(Default)]
struct Holders {
    now: Cell<usize>,
    max: Cell<usize>,
}

impl Holders {
    fn enter(&self) {
        self.now.set(self.now.get() + 1);
        self.max.set(self.max.get().max(self.now.get()));
    }
    fn leave(&self) {
        self.now.set(self.now.get() - 1);
    }
}

struct AcquireHandle {
    d: Deferred<()>,
    held: Rc<Cell<bool>>,
    released: bool,
}

/// Runs `ops` against a semaphore with `tokens` tokens (a `DeferredLock` when `lock` is set)
/// and checks the model after every step.
fn run_lock_session(tokens: usize, lock: bool, ops: &[LockOp]) -> Result<(), TestCaseError> {
    let _u = Unhandled::capture();
    let tokens = if lock { 1 } else { tokens };
    let sem = DeferredSemaphore::new(tokens).unwrap();
    let dlock = DeferredLock::new();
    let holders = Rc::new(Holders::default());
    let mut acquires: Vec<AcquireHandle> = Vec::new();
    let runs: RefCell<Vec<(Deferred<()>, Deferred<()>)>> = RefCell::default();
    for op in ops {
        match op {
            LockOp::Acquire => {
                let held = Rc::new(Cell::new(false));
                let (h, m) = (held.clone(), holders.clone());
                let on_held = move || {
                    h.set(true);
                    m.enter();
                };
                let d = if lock {
                    dlock.acquire().add_callback(move |_| on_held())
                } else {
                    sem.acquire().add_callback(move |()| on_held())
                };
                acquires.push(AcquireHandle {
                    d,
                    held,
                    released: false,
                });
            }
            LockOp::Run => {
                let gate = Deferred::<()>::new();
                let (g, m) = (gate.clone(), holders.clone());
                let f = move || {
                    m.enter();
                    g.add_finally(move || m.leave())
                };
                let d = if lock { dlock.run(f) } else { sem.run(f) };
                runs.borrow_mut().push((d, gate));
            }
            LockOp::Release => {
                if let Some(a) = acquires.iter_mut().find(|a| a.held.get() && !a.released) {
                    a.released = true;
                    holders.leave();
                    let r = if lock { dlock.release() } else { sem.release() };
                    prop_assert!(r.is_ok(), "releasing a held token");
                }
            }
            LockOp::FireGate(i) => {
                let gate = {
                    let runs = runs.borrow();
                    (!runs.is_empty()).then(|| runs[i % runs.len()].1.clone())
                };
                if let Some(gate) = gate.filter(|g| !g.called()) {
                    gate.callback(()).unwrap();
                }
            }
            LockOp::CancelAcquire(i) => {
                if !acquires.is_empty() {
                    let n = acquires.len();
                    acquires[i % n].d.cancel();
                }
            }
            LockOp::CancelRun(i) => {
                let d = {
                    let runs = runs.borrow();
                    (!runs.is_empty()).then(|| runs[i % runs.len()].0.clone())
                };
                if let Some(d) = d {
                    d.cancel();
                }
            }
        }
        let free = if lock {
            usize::from(!dlock.locked())
        } else {
            sem.tokens()
        };
        prop_assert!(holders.max.get() <= tokens, "more holders than tokens");
        prop_assert_eq!(free + holders.now.get(), tokens, "tokens leaked or forged");
        let waiting = if lock { 0 } else { sem.waiting() };
        prop_assert!(
            free == 0 || waiting == 0,
            "a token is free while someone waits"
        );
    }
    Ok(())
}

/// One step of a random queue session.
#[derive(Debug, Clone)]
enum QueueOp {
    Put,
    Get,
    CancelGet(usize),
}

fn queue_op() -> impl Strategy<Value = QueueOp> {
    prop_oneof![
        Just(QueueOp::Put),
        Just(QueueOp::Get),
        any::<usize>().prop_map(QueueOp::CancelGet),
    ]
}

/// Every value put is delivered once, in order, to a getter that was not cancelled, or is
/// still held by the queue.
fn run_queue_session(ops: &[QueueOp]) -> Result<(), TestCaseError> {
    let _u = Unhandled::capture();
    let q = DeferredQueue::<u32>::new(None, None);
    let delivered: Rc<RefCell<Vec<u32>>> = Rc::default();
    let mut getters: Vec<Deferred<()>> = Vec::new();
    let mut next = 0u32;
    for op in ops {
        match op {
            QueueOp::Put => {
                q.put(next).unwrap();
                next += 1;
            }
            QueueOp::Get => {
                let out = delivered.clone();
                let g = q
                    .get()
                    .unwrap()
                    .add_callback(move |v| out.borrow_mut().push(v));
                getters.push(g);
            }
            QueueOp::CancelGet(i) => {
                if !getters.is_empty() {
                    let n = getters.len();
                    getters[i % n].cancel();
                }
            }
        }
        let got = delivered.borrow().len();
        prop_assert_eq!(
            got + q.len(),
            next as usize,
            "a value was lost or duplicated"
        );
        let expected: Vec<u32> = (0..got as u32).collect();
        prop_assert_eq!(&*delivered.borrow(), &expected, "values out of order");
        prop_assert!(q.is_empty() || q.waiting() == 0);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn semaphore_never_exceeds_its_tokens(
        tokens in 1usize..4,
        ops in proptest::collection::vec(lock_op(), 0..40),
    ) {
        run_lock_session(tokens, false, &ops)?;
    }

    #[test]
    fn lock_never_has_two_holders(ops in proptest::collection::vec(lock_op(), 0..40)) {
        run_lock_session(1, true, &ops)?;
    }

    #[test]
    fn queue_delivers_every_value_once_in_order(
        ops in proptest::collection::vec(queue_op(), 0..40),
    ) {
        run_queue_session(&ops)?;
    }
}
