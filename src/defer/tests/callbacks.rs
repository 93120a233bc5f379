//! Callback order, error switching, re-entrant adds, pause, already-called.

use super::support::{log, push};
use crate::defer::{fail, maybe_deferred, succeed, Deferred, Failure, Outcome};
use crate::error::{AlreadyCalledError, CallbackPanicked, Panicked};

#[test]
fn test_callback_with_no_args() {
    let d = Deferred::<()>::new();
    let l = log();
    let l2 = l.clone();
    let _ = d.clone().add_callback(move |()| push(&l2, "called"));
    d.callback(()).unwrap();
    assert_eq!(*l.borrow(), vec!["called"]);
}

#[test]
fn test_callbacks_run_in_order_and_thread_the_value() {
    let d = Deferred::<i32>::new();
    let out = d
        .clone()
        .add_callback(|x| x + 1)
        .add_callback(|x| x * 10)
        .add_callback(|x| x - 3);
    d.callback(1).unwrap();
    assert_eq!(out.result().unwrap().unwrap(), 17);
}

#[test]
fn test_callback_may_change_the_type() {
    let d = Deferred::<u8>::new();
    let out = d
        .clone()
        .add_callback(|x| vec![x; 3])
        .add_callback(|v| v.len().to_string());
    d.callback(9).unwrap();
    assert_eq!(out.result().unwrap().unwrap(), "3");
}

#[test]
fn test_errback_receives_failure() {
    let d = Deferred::<()>::new();
    let out = d
        .clone()
        .add_errback(|f| Err::<(), _>(f.context("wrapped")));
    d.errback(Failure::msg("boom")).unwrap();
    assert_eq!(
        out.take_result().unwrap().unwrap_err().to_string(),
        "wrapped: boom"
    );
}

#[test]
fn test_failing_callback_switches_to_errback_path() {
    let d = Deferred::<i32>::new();
    let l = log();
    let (l1, l2, l3) = (l.clone(), l.clone(), l.clone());
    let out = d
        .clone()
        .and_then(|_x| Err::<i32, _>(Failure::msg("bad")))
        .add_callback(move |x| {
            push(&l1, "skipped");
            x
        })
        .add_errback(move |f| {
            push(&l2, format!("errback: {f}"));
            Ok(5)
        })
        .add_callback(move |x| {
            push(&l3, format!("back on track: {x}"));
            x
        });
    d.callback(0).unwrap();
    assert_eq!(*l.borrow(), vec!["errback: bad", "back on track: 5"]);
    assert_eq!(out.result().unwrap().unwrap(), 5);
}

#[test]
fn test_errback_returning_failure_stays_on_error_path() {
    let d = Deferred::<i32>::new();
    let out = d
        .clone()
        .add_errback(Err::<i32, _>)
        .add_callback(|x| x + 1)
        .add_errback(|f| Ok::<_, Failure>(if f.to_string() == "e" { -1 } else { -2 }));
    d.errback(Failure::msg("e")).unwrap();
    assert_eq!(out.result().unwrap().unwrap(), -1);
}

#[test]
fn test_add_callbacks_runs_exactly_one_side() {
    for ok in [true, false] {
        let d = Deferred::<i32>::new();
        let l = log();
        let (a, b) = (l.clone(), l.clone());
        let out = d.clone().add_callbacks(
            move |x| {
                push(&a, "cb");
                Ok::<_, Failure>(x)
            },
            move |_f| {
                push(&b, "eb");
                Ok::<_, Failure>(0)
            },
        );
        if ok {
            d.callback(3).unwrap();
        } else {
            d.errback(Failure::msg("x")).unwrap();
        }
        assert_eq!(*l.borrow(), vec![if ok { "cb" } else { "eb" }]);
        assert_eq!(out.result().unwrap().unwrap(), if ok { 3 } else { 0 });
    }
}

#[test]
fn test_add_callbacks_errback_does_not_see_its_own_callbacks_failure() {
    let d = Deferred::<i32>::new();
    let l = log();
    let b = l.clone();
    let out = d.clone().add_callbacks(
        |_x| Err::<i32, _>(Failure::msg("from callback")),
        move |_f| {
            push(&b, "eb");
            Ok::<_, Failure>(0)
        },
    );
    d.callback(1).unwrap();
    assert!(
        l.borrow().is_empty(),
        "the pair's errback is not run for its callback"
    );
    assert!(out.take_result().unwrap().is_err());
}

#[test]
fn test_add_both_sees_both_paths() {
    for ok in [true, false] {
        let d = Deferred::<i32>::new();
        let out = d.clone().add_both(|r| Ok::<_, Failure>(r.is_ok()));
        if ok {
            d.callback(1).unwrap();
        } else {
            d.errback(Failure::msg("x")).unwrap();
        }
        assert_eq!(out.result().unwrap().unwrap(), ok);
    }
}

#[test]
fn test_add_both_passthrough() {
    let d = Deferred::<i32>::new();
    let out = d.clone().add_both(|r| r).add_callback(|x| x * 2);
    d.callback(21).unwrap();
    assert_eq!(out.result().unwrap().unwrap(), 42);
}

#[test]
fn test_add_finally_runs_and_passes_through() {
    let l = log();
    let l2 = l.clone();
    let d = fail::<i32>(Failure::msg("kept"));
    let out = d.add_finally(move || push(&l2, "finally"));
    assert_eq!(*l.borrow(), vec!["finally"]);
    assert_eq!(out.take_result().unwrap().unwrap_err().to_string(), "kept");
}

#[test]
fn test_callback_added_to_fired_deferred_runs_at_once() {
    let d = succeed(4);
    let l = log();
    let l2 = l.clone();
    let _ = d.add_callback(move |x| push(&l2, format!("{x}")));
    assert_eq!(*l.borrow(), vec!["4"]);
}

#[test]
fn test_callback_added_during_run_goes_to_the_end() {
    let d = Deferred::<i32>::new();
    let l = log();
    let (l1, l2, l3) = (l.clone(), l.clone(), l.clone());
    let handle = d.clone();
    let tail = d.clone().add_callback(move |x| {
        push(&l1, "first start");
        // Added while the chain runs: it must not run before this callback returns.
        let l4 = l3.clone();
        let _ = handle.clone().add_callback(move |y: i32| {
            push(&l4, format!("added during run: {y}"));
            y
        });
        push(&l1, "first end");
        x + 1
    });
    let _ = tail.add_callback(move |x| {
        push(&l2, format!("second: {x}"));
        x
    });
    d.callback(1).unwrap();
    assert_eq!(
        *l.borrow(),
        vec![
            "first start",
            "first end",
            "second: 2",
            "added during run: 2"
        ]
    );
}

#[test]
fn test_already_called_callback_twice() {
    let d = Deferred::<()>::new();
    d.callback(()).unwrap();
    assert_eq!(d.callback(()), Err(AlreadyCalledError::new()));
}

#[test]
fn test_already_called_errback_after_callback() {
    let d = Deferred::<()>::new();
    d.callback(()).unwrap();
    assert_eq!(
        d.errback(Failure::msg("late")),
        Err(AlreadyCalledError::new())
    );
}

#[test]
fn test_already_called_callback_after_errback() {
    let d = Deferred::<()>::new();
    d.errback(Failure::msg("first")).unwrap();
    assert_eq!(d.callback(()), Err(AlreadyCalledError::new()));
    let _ = d.take_result(); // handled
}

#[test]
fn test_already_called_errback_twice() {
    let d = Deferred::<()>::new();
    d.errback(Failure::msg("first")).unwrap();
    assert_eq!(
        d.errback(Failure::msg("second")),
        Err(AlreadyCalledError::new())
    );
    assert_eq!(d.take_result().unwrap().unwrap_err().to_string(), "first");
}

#[test]
fn test_pause_before_fire_holds_callbacks() {
    let d = Deferred::<i32>::new();
    let l = log();
    let l2 = l.clone();
    d.pause();
    let out = d.clone().add_callback(move |x| {
        push(&l2, "ran");
        x
    });
    d.callback(1).unwrap();
    assert!(l.borrow().is_empty());
    assert!(out.result().is_none(), "paused: no result yet");
    d.unpause();
    assert_eq!(*l.borrow(), vec!["ran"]);
}

#[test]
fn test_pause_is_counted() {
    let d = Deferred::<i32>::new();
    let out = d.clone().add_callback(|x| x + 1);
    d.pause();
    d.pause();
    d.callback(1).unwrap();
    d.unpause();
    assert!(!out.has_result());
    d.unpause();
    assert_eq!(out.result().unwrap().unwrap(), 2);
}

#[test]
fn test_pause_inside_callback_stops_the_rest() {
    let d = Deferred::<i32>::new();
    let h = d.clone();
    let out = d.clone().add_callback(move |x| {
        h.pause();
        x
    });
    let out = out.add_callback(|x| x * 100);
    d.callback(1).unwrap();
    assert!(out.result().is_none());
    d.unpause();
    assert_eq!(out.result().unwrap().unwrap(), 100);
}

#[test]
fn test_unpause_on_unfired_does_nothing() {
    let d = Deferred::<i32>::new();
    d.unpause();
    let out = d.clone().add_callback(|x| x);
    d.callback(3).unwrap();
    assert_eq!(out.result().unwrap().unwrap(), 3);
}

#[test]
fn test_succeed_and_fail() {
    assert_eq!(succeed(1).result().unwrap().unwrap(), 1);
    let f = fail::<()>(Failure::msg("no"));
    assert_eq!(f.take_result().unwrap().unwrap_err().to_string(), "no");
}

#[test]
fn test_maybe_deferred_value_failure_deferred_and_panic() {
    assert_eq!(
        maybe_deferred(|| Ok::<_, Failure>(5))
            .result()
            .unwrap()
            .unwrap(),
        5
    );
    let f = maybe_deferred(|| Err::<i32, _>(Failure::msg("f")));
    assert_eq!(f.take_result().unwrap().unwrap_err().to_string(), "f");
    let inner = Deferred::<i32>::new();
    let i2 = inner.clone();
    let out = maybe_deferred(move || i2);
    assert!(!out.called());
    inner.callback(8).unwrap();
    assert_eq!(out.result().unwrap().unwrap(), 8);
    let p = maybe_deferred(|| -> Outcome<i32> { panic!("inside") });
    let failure = p.take_result().unwrap().unwrap_err();
    assert_eq!(
        failure.downcast_ref::<Panicked>().unwrap().message,
        "inside"
    );
}

#[test]
fn test_resolve_fires_either_way() {
    let d = Deferred::<i32>::new();
    d.resolve(Ok(1)).unwrap();
    assert_eq!(d.result().unwrap().unwrap(), 1);
    let e = Deferred::<i32>::new();
    e.resolve(Err(Failure::msg("x"))).unwrap();
    assert!(e.take_result().unwrap().is_err());
}

#[test]
#[should_panic(expected = "chain now produces")]
fn test_stale_handle_add_panics_with_both_types() {
    let d = Deferred::<i32>::new();
    let _s = d.clone().add_callback(|x| x.to_string());
    let _ = d.add_callback(|x| x + 1); // d's chain now produces String
}

#[test]
#[should_panic(expected = "fire the handle returned by Deferred::new")]
fn test_firing_a_tail_handle_of_another_type_panics() {
    let d = Deferred::<i32>::new();
    let s = d.add_callback(|x| x.to_string());
    let _ = s.callback("1".into());
}

#[test]
fn test_debug_shows_state() {
    let d = Deferred::<i32>::new();
    assert!(format!("{d:?}").contains("pending"));
    d.callback(1).unwrap();
    assert!(format!("{d:?}").contains("fired"));
}

#[test]
fn test_callback_that_panics_becomes_a_failure() {
    let d = Deferred::<i32>::new();
    let out = d
        .clone()
        .add_callback(|_| -> i32 { panic!("callback blew up") })
        .add_callback(|x| x + 1); // skipped: the chain is on its errback path
    d.callback(1).unwrap(); // the panic does not escape callback()
    let f = out.take_result().unwrap().unwrap_err();
    let p = f.downcast_ref::<CallbackPanicked>().unwrap();
    assert_eq!(p.message, "callback blew up");
    assert!(f.to_string().contains("callback blew up"));
}

#[test]
fn test_errback_after_panicking_callback_runs_and_recovers() {
    let d = Deferred::<i32>::new();
    let out = d
        .clone()
        .add_callback(|x| -> i32 { panic!("formatted {x}") })
        .add_errback(|f| {
            let message = f.trap::<CallbackPanicked>()?.message.clone();
            Ok(message.len() as i32)
        });
    d.callback(7).unwrap();
    assert_eq!(out.result().unwrap().unwrap(), "formatted 7".len() as i32);
    assert!(!d.paused(), "the chain is not stuck");
}

#[test]
fn test_panicking_errback_and_later_callbacks_still_run() {
    let l = log();
    let d = Deferred::<i32>::new();
    let l2 = l.clone();
    let out = d
        .clone()
        .add_errback(|_f| -> Result<i32, Failure> { panic!("errback too") })
        .add_both(move |r| {
            push(&l2, "add_both ran");
            r
        });
    d.errback(Failure::msg("first")).unwrap();
    assert_eq!(*l.borrow(), vec!["add_both ran"]);
    assert!(out
        .take_result()
        .unwrap()
        .unwrap_err()
        .is::<CallbackPanicked>());
}
