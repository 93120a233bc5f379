//! Implicit chaining (a callback returning a Deferred) and `chain_deferred`.

use super::support::{log, push};
use crate::defer::{succeed, Deferred, Failure};
use crate::error::{AlreadyCalledError, ChainedToSelfError, ResultPassedOn};

#[test]
fn test_callback_returning_unfired_deferred_pauses_outer() {
    let outer = Deferred::<i32>::new();
    let inner = Deferred::<i32>::new();
    let i = inner.clone();
    let out = outer.clone().and_then(move |_| i).add_callback(|x| x * 2);
    outer.callback(1).unwrap();
    assert!(outer.paused());
    assert!(out.result().is_none());
    inner.callback(21).unwrap();
    assert!(!outer.paused());
    assert_eq!(out.result().unwrap().unwrap(), 42);
}

#[test]
fn test_callback_returning_fired_deferred_takes_result_at_once() {
    let outer = Deferred::<i32>::new();
    let out = outer.clone().and_then(|x| succeed(x + 1));
    outer.callback(1).unwrap();
    assert_eq!(out.result().unwrap().unwrap(), 2);
}

#[test]
fn test_inner_failure_travels_into_outer_and_is_handled_there() {
    let u = super::support::Unhandled::capture();
    let outer = Deferred::<i32>::new();
    let inner = Deferred::<i32>::new();
    let i = inner.clone();
    let out = outer
        .clone()
        .and_then(move |_| i)
        .add_errback(|f| Ok::<_, Failure>(if f.to_string() == "inner" { 7 } else { 0 }));
    outer.callback(0).unwrap();
    inner.errback(Failure::msg("inner")).unwrap();
    assert_eq!(out.result().unwrap().unwrap(), 7);
    drop((inner, outer, out));
    assert_eq!(
        u.count(),
        0,
        "passing the failure on clears it from the inner"
    );
}

#[test]
fn test_paused_inner_is_waited_on() {
    let outer = Deferred::<i32>::new();
    let inner = succeed(5);
    inner.pause();
    let i = inner.clone();
    let out = outer.clone().and_then(move |_| i);
    outer.callback(0).unwrap();
    assert!(out.result().is_none());
    inner.unpause();
    assert_eq!(out.result().unwrap().unwrap(), 5);
}

#[test]
fn test_nested_asynchronous_chained_deferreds() {
    // Twisted's test_nestedAsynchronousChainedDeferreds: the inner's own callback returns
    // a third Deferred; results and order come out right.
    let l = log();
    let first = Deferred::<&str>::new();
    let second = Deferred::<&str>::new();
    let third = Deferred::<&str>::new();
    let (s, t) = (second.clone(), third.clone());
    let (l1, l2) = (l.clone(), l.clone());
    let s2 = s.clone().and_then(move |v| {
        push(&l1, format!("second got {v}"));
        t
    });
    let out = first
        .clone()
        .and_then(move |v| {
            push(&l2, format!("first got {v}"));
            s2
        })
        .add_callback(|v| format!("final {v}"));
    first.callback("a").unwrap();
    second.callback("b").unwrap();
    third.callback("c").unwrap();
    assert_eq!(*l.borrow(), vec!["first got a", "second got b"]);
    assert_eq!(out.result().unwrap().unwrap(), "final c");
}

#[test]
fn test_extra_callbacks_on_inner_after_chaining_see_result_passed_on() {
    let outer = Deferred::<i32>::new();
    let inner = Deferred::<i32>::new();
    let i = inner.clone();
    let _out = outer.clone().and_then(move |_| i);
    outer.callback(0).unwrap();
    let extra = inner
        .clone()
        .add_both(|r| Ok::<_, Failure>(r.err().is_some_and(|f| f.is::<ResultPassedOn>())));
    inner.callback(1).unwrap();
    assert!(
        extra.result().unwrap().unwrap(),
        "the inner's result went to the outer chain; later callbacks see ResultPassedOn"
    );
}

#[test]
fn test_callback_returning_its_own_deferred_fails() {
    let d = Deferred::<i32>::new();
    let me = d.clone();
    let out = d.clone().and_then(move |_| me);
    d.callback(1).unwrap();
    assert!(out
        .take_result()
        .unwrap()
        .unwrap_err()
        .is::<ChainedToSelfError>());
}

#[test]
fn test_inner_added_to_after_outer_resumes_keeps_running() {
    let outer = Deferred::<i32>::new();
    let inner = Deferred::<i32>::new();
    let i = inner.clone();
    let out = outer.clone().and_then(move |_| i).add_callback(|x| x + 1);
    inner.callback(10).unwrap();
    outer.callback(0).unwrap();
    assert_eq!(out.result().unwrap().unwrap(), 11);
}

#[test]
fn test_chain_deferred_success() {
    let a = Deferred::<i32>::new();
    let b = Deferred::<i32>::new();
    let after_a = a.clone().chain_deferred(&b);
    let out = b.clone().add_callback(|x| x * 3);
    a.callback(2).unwrap();
    assert_eq!(out.result().unwrap().unwrap(), 6);
    assert_eq!(after_a.result().unwrap().unwrap(), ());
}

#[test]
fn test_chain_deferred_failure_is_handled_in_source() {
    let u = super::support::Unhandled::capture();
    let a = Deferred::<i32>::new();
    let b = Deferred::<i32>::new();
    let _ = a.clone().chain_deferred(&b);
    let out = b.clone().add_errback(|_f| Ok::<_, Failure>(-1));
    a.errback(Failure::msg("x")).unwrap();
    assert_eq!(out.result().unwrap().unwrap(), -1);
    drop((a, b, out));
    assert_eq!(u.count(), 0);
}

#[test]
fn test_chain_deferred_to_already_called_target() {
    let a = Deferred::<i32>::new();
    let b = Deferred::<i32>::new();
    b.callback(0).unwrap();
    let after = a.clone().chain_deferred(&b);
    a.callback(1).unwrap();
    assert!(after
        .take_result()
        .unwrap()
        .unwrap_err()
        .is::<AlreadyCalledError>());
}

#[test]
fn test_chain_deferred_preserves_order_of_later_callbacks() {
    let l = log();
    let a = Deferred::<i32>::new();
    let b = Deferred::<i32>::new();
    let l1 = l.clone();
    let _ = b.clone().add_callback(move |x| push(&l1, format!("b {x}")));
    let l2 = l.clone();
    let _ = a
        .clone()
        .chain_deferred(&b)
        .add_callback(move |()| push(&l2, "a after"));
    a.callback(5).unwrap();
    assert_eq!(*l.borrow(), vec!["b 5", "a after"]);
}
