//! DeferredList, gather_results, race, DeferredLock, DeferredSemaphore, DeferredQueue.

use super::support::{log, push, Unhandled};
use crate::defer::{
    fail, gather_results, race, succeed, Deferred, DeferredList, DeferredLock, DeferredQueue,
    DeferredSemaphore, Failure, FirstCallback,
};
use crate::error::{
    CancelledError, FailureGroup, FirstError, NoTokens, NotAcquired, QueueOverflow, QueueUnderflow,
};

fn three() -> Vec<Deferred<i32>> {
    (0..3).map(|_| Deferred::new()).collect()
}

#[test]
fn test_deferred_list_results_in_input_order() {
    let ds = three();
    let list = DeferredList::new(ds.clone()).build();
    ds[2].callback(3).unwrap();
    ds[0].callback(1).unwrap();
    assert!(!list.called());
    ds[1].errback(Failure::msg("two")).unwrap();
    let r = list.take_result().unwrap().unwrap();
    assert_eq!(r[0].as_ref().unwrap(), &1);
    assert_eq!(r[1].as_ref().unwrap_err().to_string(), "two");
    assert_eq!(r[2].as_ref().unwrap(), &3);
    let _ = ds[1].take_result(); // the member kept its failure (no consume_errors)
}

#[test]
fn test_empty_deferred_list_fires_at_once() {
    let list = DeferredList::<i32>::new(vec![]).build();
    assert_eq!(list.take_result().unwrap().unwrap().len(), 0);
}

#[test]
fn test_empty_deferred_list_with_fire_on_one_callback_never_fires() {
    let list = DeferredList::<i32>::new(vec![]).first_callback();
    assert!(!list.called());
}

#[test]
fn test_fire_on_one_callback_gives_value_and_index() {
    let ds = three();
    let list = DeferredList::new(ds.clone()).first_callback();
    ds[0].errback(Failure::msg("no")).unwrap();
    ds[2].callback(30).unwrap();
    match list.take_result().unwrap().unwrap() {
        FirstCallback::First(v, i) => assert_eq!((v, i), (30, 2)),
        other => panic!("{other:?}"),
    }
    ds[1].callback(20).unwrap(); // later results are ignored
    let _ = ds[0].take_result();
}

#[test]
fn test_fire_on_one_callback_when_all_fail_gives_every_result() {
    let ds = three();
    let list = DeferredList::new(ds.clone())
        .consume_errors(true)
        .first_callback();
    for d in &ds {
        d.errback(Failure::msg("f")).unwrap();
    }
    match list.take_result().unwrap().unwrap() {
        FirstCallback::None(all) => assert_eq!(all.len(), 3),
        other => panic!("{other:?}"),
    }
}

#[test]
fn test_fire_on_one_errback_gives_first_error() {
    let ds = three();
    let list = DeferredList::new(ds.clone())
        .fire_on_one_errback(true)
        .consume_errors(true)
        .build();
    ds[0].callback(1).unwrap();
    ds[1].errback(Failure::msg("second failed")).unwrap();
    let f = list.take_result().unwrap().unwrap_err();
    let first = f.downcast_ref::<FirstError>().unwrap();
    assert_eq!(first.index, 1);
    assert_eq!(first.failure.to_string(), "second failed");
}

#[test]
fn test_consume_errors_stops_unhandled_reports() {
    let u = Unhandled::capture();
    let d = fail::<i32>(Failure::msg("member"));
    let list = DeferredList::new(vec![d]).consume_errors(true).build();
    let _ = list.take_result();
    assert_eq!(u.count(), 0);
}

#[test]
fn test_without_consume_errors_member_failure_is_reported() {
    let u = Unhandled::capture();
    let d = fail::<i32>(Failure::msg("member"));
    let list = DeferredList::new(vec![d]).build();
    let _ = list.take_result();
    assert_eq!(*u.seen.borrow(), vec!["member"]);
}

#[test]
fn test_cancelling_the_list_cancels_unfired_members() {
    let ds = three();
    ds[0].callback(0).unwrap();
    let list = DeferredList::new(ds.clone()).consume_errors(true).build();
    list.cancel();
    assert!(ds[1].called() && ds[2].called());
    let r = list.take_result().unwrap().unwrap();
    assert!(r[1].as_ref().unwrap_err().is::<CancelledError>());
}

#[test]
fn test_gather_results_success() {
    let g = gather_results(vec![succeed(1), succeed(2)], false);
    assert_eq!(g.result().unwrap().unwrap(), vec![1, 2]);
}

#[test]
fn test_gather_results_failure_is_first_error() {
    let g = gather_results(vec![succeed(1), fail(Failure::msg("bad"))], true);
    let f = g.take_result().unwrap().unwrap_err();
    assert_eq!(f.downcast_ref::<FirstError>().unwrap().index, 1);
}

#[test]
fn test_gather_results_cancel() {
    let ds = three();
    let g = gather_results(ds.clone(), true);
    g.cancel();
    assert!(ds.iter().all(Deferred::called));
    assert!(g.take_result().unwrap().is_err());
}

#[test]
fn test_race_first_success_wins_and_others_are_cancelled() {
    let ds = three();
    let r = race(ds.clone());
    ds[1].callback(11).unwrap();
    assert_eq!(r.result().unwrap().unwrap(), (1, 11));
    assert!(
        ds[0].called() && ds[2].called(),
        "the losers were cancelled"
    );
}

#[test]
fn test_race_all_fail_is_a_failure_group() {
    let ds = three();
    let r = race(ds.clone());
    for d in &ds {
        d.errback(Failure::msg("x")).unwrap();
    }
    let f = r.take_result().unwrap().unwrap_err();
    assert_eq!(f.downcast_ref::<FailureGroup>().unwrap().failures.len(), 3);
}

#[test]
fn test_race_cancel_cancels_everyone() {
    let ds = three();
    let r = race(ds.clone());
    r.cancel();
    assert!(ds.iter().all(Deferred::called));
    assert!(r.take_result().unwrap().is_err());
}

#[test]
fn test_lock_waiters_are_fifo() {
    let lock = DeferredLock::new();
    let l = log();
    let first = lock.acquire();
    assert!(first.called() && lock.locked());
    for name in ["a", "b", "c"] {
        let l = l.clone();
        let _ = lock.acquire().add_callback(move |_lock| push(&l, name));
    }
    assert!(l.borrow().is_empty());
    lock.release().unwrap();
    lock.release().unwrap();
    lock.release().unwrap();
    assert_eq!(*l.borrow(), vec!["a", "b", "c"]);
    lock.release().unwrap();
    assert!(!lock.locked());
    assert_eq!(lock.release(), Err(NotAcquired));
}

#[test]
fn test_lock_run_releases_on_failure() {
    let lock = DeferredLock::new();
    let r = lock.run(|| Err::<(), _>(Failure::msg("inside")));
    assert!(r.take_result().unwrap().is_err());
    assert!(!lock.locked());
}

#[test]
fn test_cancelled_lock_waiter_is_skipped() {
    let lock = DeferredLock::new();
    let _held = lock.acquire();
    let waiter = lock.acquire();
    let l = log();
    let l2 = l.clone();
    let next = lock.acquire().add_callback(move |_| push(&l2, "next"));
    waiter.cancel();
    lock.release().unwrap();
    assert_eq!(*l.borrow(), vec!["next"]);
    assert!(waiter
        .take_result()
        .unwrap()
        .unwrap_err()
        .is::<CancelledError>());
    let _ = next;
}

#[test]
fn test_semaphore_tokens() {
    assert_eq!(DeferredSemaphore::new(0).err(), Some(NoTokens));
    let s = DeferredSemaphore::new(2).unwrap();
    let (a, b, c) = (s.acquire(), s.acquire(), s.acquire());
    assert!(a.called() && b.called() && !c.called());
    assert_eq!((s.tokens(), s.limit(), s.waiting()), (0, 2, 1));
    s.release().unwrap();
    assert!(c.called());
    s.release().unwrap();
    s.release().unwrap();
    assert_eq!(s.tokens(), 2);
    assert_eq!(s.release(), Err(NotAcquired));
}

#[test]
fn test_semaphore_cancelled_waiter_leaves_the_queue() {
    let s = DeferredSemaphore::new(1).unwrap();
    let _a = s.acquire();
    let b = s.acquire();
    assert_eq!(s.waiting(), 1);
    b.cancel();
    assert_eq!(s.waiting(), 0);
    let _ = b.take_result();
}

#[test]
fn test_semaphore_run_limits_concurrency() {
    let s = DeferredSemaphore::new(1).unwrap();
    let gate = Deferred::<i32>::new();
    let g = gate.clone();
    let first = s.run(move || g);
    let second = s.run(|| Ok::<_, Failure>(2));
    assert!(!second.called());
    gate.callback(1).unwrap();
    assert_eq!(first.result().unwrap().unwrap(), 1);
    assert_eq!(second.result().unwrap().unwrap(), 2);
}

#[test]
fn test_queue_get_before_put() {
    let q = DeferredQueue::new(None, None);
    let a = q.get().unwrap();
    let b = q.get().unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    assert_eq!(
        (a.result().unwrap().unwrap(), b.result().unwrap().unwrap()),
        (1, 2)
    );
}

#[test]
fn test_queue_put_before_get() {
    let q = DeferredQueue::new(None, None);
    q.put("x").unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q.get().unwrap().result().unwrap().unwrap(), "x");
    assert!(q.is_empty());
}

#[test]
fn test_queue_overflow() {
    let q = DeferredQueue::new(Some(1), None);
    q.put(1).unwrap();
    assert_eq!(q.put(2), Err(QueueOverflow));
}

#[test]
fn test_queue_underflow() {
    let q = DeferredQueue::<i32>::new(None, Some(1));
    let _a = q.get().unwrap();
    assert_eq!(q.get().err(), Some(QueueUnderflow));
}

#[test]
fn test_queue_cancelled_getter_leaves_the_queue() {
    let q = DeferredQueue::new(None, None);
    let a = q.get().unwrap();
    let b = q.get().unwrap();
    a.cancel();
    assert_eq!(q.waiting(), 1);
    q.put(5).unwrap();
    assert_eq!(b.result().unwrap().unwrap(), 5);
    assert!(a.take_result().unwrap().unwrap_err().is::<CancelledError>());
}

/// A member that fired but whose callback returned an unfired inner Deferred: cancelling
/// the member cancels that inner (the inner is also held here, so only the list's own
/// cancel logic is under test).
fn member_paused_on_inner(log: &super::support::Log) -> (Deferred<i32>, Deferred<i32>) {
    let l = log.clone();
    let inner = Deferred::<i32>::with_canceller(move |_| push(&l, "inner cancelled"));
    let i = inner.clone();
    let source = Deferred::<i32>::new();
    let member = source.clone().and_then(move |_| i);
    source.callback(0).unwrap();
    assert!(member.called() && member.paused());
    (member, inner)
}

#[test]
fn test_cancel_deferred_list_cancels_member_paused_on_inner() {
    let _u = Unhandled::capture();
    let l = log();
    let (member, inner) = member_paused_on_inner(&l);
    let pending = Deferred::<i32>::new();
    let list = DeferredList::new(vec![member, pending.clone()]).build();
    list.cancel();
    assert_eq!(*l.borrow(), vec!["inner cancelled"]);
    assert!(inner.called() && pending.called());
    let results = list.take_result().unwrap().unwrap();
    assert!(results
        .iter()
        .all(|r| r.as_ref().unwrap_err().is::<CancelledError>()));
}

#[test]
fn test_cancel_gather_results_cancels_member_paused_on_inner() {
    let _u = Unhandled::capture();
    let l = log();
    let (member, _inner) = member_paused_on_inner(&l);
    let done = succeed(1);
    let all = gather_results(vec![done, member], true);
    all.cancel();
    assert_eq!(*l.borrow(), vec!["inner cancelled"]);
    let f = all.take_result().unwrap().unwrap_err();
    let first = f.downcast_ref::<FirstError>().unwrap();
    assert!(first.failure.is::<CancelledError>());
    assert_eq!(first.index, 1);
}

#[test]
fn test_race_cancels_loser_paused_on_inner() {
    let _u = Unhandled::capture();
    let l = log();
    let (loser, inner) = member_paused_on_inner(&l);
    let winner = Deferred::<i32>::new();
    let r = race(vec![loser, winner.clone()]);
    winner.callback(5).unwrap();
    assert_eq!(*l.borrow(), vec!["inner cancelled"]);
    assert!(inner.called());
    assert_eq!(r.result().unwrap().unwrap(), (1, 5));
}

#[test]
fn test_race_cancels_losers_before_firing_the_winners_result() {
    let _u = Unhandled::capture();
    let l = log();
    let l2 = l.clone();
    let loser = Deferred::<i32>::with_canceller(move |_| push(&l2, "loser cancelled"));
    let winner = Deferred::<i32>::new();
    let l3 = l.clone();
    let r = race(vec![loser, winner.clone()]).add_callback(move |(i, v)| {
        push(&l3, "winner delivered");
        (i, v)
    });
    winner.callback(5).unwrap();
    assert_eq!(*l.borrow(), vec!["loser cancelled", "winner delivered"]);
    assert_eq!(r.result().unwrap().unwrap(), (1, 5));
}

#[test]
fn test_cancel_race_cancels_member_paused_on_inner() {
    let _u = Unhandled::capture();
    let l = log();
    let (member, _inner) = member_paused_on_inner(&l);
    let r = race(vec![member, Deferred::new()]);
    r.cancel();
    assert_eq!(*l.borrow(), vec!["inner cancelled"]);
    let f = r.take_result().unwrap().unwrap_err();
    assert_eq!(f.downcast_ref::<FailureGroup>().unwrap().failures.len(), 2);
}
