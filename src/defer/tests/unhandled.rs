//! Unhandled-failure reporting and what clears it.

use super::support::Unhandled;
use crate::defer::{fail, Deferred, Failure};

#[test]
fn test_unhandled_failure_reported_once_when_last_handle_drops() {
    let u = Unhandled::capture();
    let d = Deferred::<()>::new();
    let d2 = d.clone();
    d.errback(Failure::msg("lost")).unwrap();
    drop(d);
    assert_eq!(u.count(), 0, "a handle is still alive");
    drop(d2);
    assert_eq!(*u.seen.borrow(), vec!["lost"]);
}

#[test]
fn test_handling_later_clears_it() {
    let u = Unhandled::capture();
    let d = fail::<i32>(Failure::msg("x"));
    let _ = d.add_errback(|_f| Ok::<_, Failure>(0));
    assert_eq!(u.count(), 0);
}

#[test]
fn test_take_result_clears_it() {
    let u = Unhandled::capture();
    let d = fail::<i32>(Failure::msg("x"));
    assert!(d.take_result().unwrap().is_err());
    drop(d);
    assert_eq!(u.count(), 0);
}

#[test]
fn test_success_never_reported() {
    let u = Unhandled::capture();
    let d = Deferred::<i32>::new();
    d.callback(1).unwrap();
    drop(d);
    assert_eq!(u.count(), 0);
}

#[test]
fn test_unfired_deferred_not_reported() {
    let u = Unhandled::capture();
    drop(Deferred::<i32>::new());
    assert_eq!(u.count(), 0);
}

#[test]
fn test_cancelled_and_unhandled_is_reported() {
    let u = Unhandled::capture();
    let d = Deferred::<i32>::new();
    d.cancel();
    drop(d);
    assert_eq!(u.count(), 1);
    assert!(u.seen.borrow()[0].contains("cancelled"));
}

#[test]
fn test_failure_passed_to_chained_deferred_is_reported_there_only() {
    let u = Unhandled::capture();
    let outer = Deferred::<i32>::new();
    let inner = fail::<i32>(Failure::msg("once"));
    let i = inner.clone();
    let out = outer.clone().and_then(move |_| i);
    outer.callback(0).unwrap();
    drop((inner, outer));
    assert_eq!(u.count(), 0, "the outer still holds it");
    drop(out);
    assert_eq!(*u.seen.borrow(), vec!["once"]);
}

#[test]
fn test_default_hook_does_not_panic() {
    // No hook installed: the report goes to tracing.
    let d = fail::<()>(Failure::msg("to the log"));
    drop(d);
}
