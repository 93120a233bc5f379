//! Debug mode (Twisted's `setDebugging`) and what `Debug` shows of a Deferred.

use super::support::Unhandled;
use crate::defer::{get_debugging, set_debugging, Deferred, Failure};
use crate::error::AlreadyCalledError;

/// Debug mode on for this thread while alive.
struct Debugging;

impl Debugging {
    fn on() -> Self {
        set_debugging(true);
        Debugging
    }
}

impl Drop for Debugging {
    fn drop(&mut self) {
        set_debugging(false);
    }
}

fn site(line: u32) -> String {
    format!("{}:{line}:", file!())
}

#[test]
fn test_debugging_is_off_by_default_and_records_nothing() {
    assert!(!get_debugging());
    let d = Deferred::<i32>::new();
    d.callback(1).unwrap();
    let err = d.callback(2).unwrap_err();
    assert_eq!(err.call_sites(), None);
    assert_eq!(err.to_string(), "the Deferred has already been called");
    assert!(!format!("{d:?}").contains("created at"));
}

#[test]
fn test_already_called_error_in_debug_mode_names_the_call_sites() {
    let _on = Debugging::on();
    let created = line!() + 1;
    let d = Deferred::<i32>::new();
    let fired = line!() + 1;
    d.callback(1).unwrap();
    let again = line!() + 1;
    let err = d.errback(Failure::msg("late")).unwrap_err();
    let sites = err.call_sites().expect("recorded in debug mode");
    assert!(
        sites.contains(&format!("created at {}", site(created))),
        "{sites}"
    );
    assert!(
        sites.contains(&format!("first fired at {}", site(fired))),
        "{sites}"
    );
    assert!(
        sites.contains(&format!("fired again at {}", site(again))),
        "{sites}"
    );
    assert!(err.to_string().contains(sites));
    assert_eq!(
        err,
        AlreadyCalledError::new(),
        "call sites do not change the error"
    );
}

#[test]
fn test_unhandled_failure_in_debug_mode_names_the_call_sites() {
    let u = Unhandled::capture();
    let _on = Debugging::on();
    let created = line!() + 1;
    let d = Deferred::<i32>::new();
    let fired = line!() + 1;
    d.errback(Failure::msg("boom")).unwrap();
    drop(d);
    let seen = u.seen.borrow();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].contains(&site(created)), "{}", seen[0]);
    assert!(seen[0].contains(&site(fired)), "{}", seen[0]);
    assert!(seen[0].ends_with(": boom"), "{}", seen[0]);
}

#[test]
fn test_debug_shows_state_result_and_what_it_waits_on() {
    let pending = Deferred::<i32>::new();
    assert_eq!(format!("{pending:?}"), "Deferred<i32>(pending)");
    let done = Deferred::<i32>::new();
    done.callback(3).unwrap();
    assert_eq!(format!("{done:?}"), "Deferred<i32>(fired, result: i32)");
    let failed = Deferred::<i32>::new();
    failed.errback(Failure::msg("boom")).unwrap();
    assert_eq!(format!("{failed:?}"), "Deferred<i32>(fired, failure: boom)");
    let _ = failed.take_result();
    assert_eq!(
        format!("{failed:?}"),
        "Deferred<i32>(fired, result passed on)"
    );

    let outer = Deferred::<i32>::new();
    let p = pending.clone();
    let waiting = outer.clone().and_then(move |_| p);
    outer.callback(0).unwrap();
    assert_eq!(
        format!("{waiting:?}"),
        "Deferred<i32>(waiting, waiting on Deferred(pending))"
    );
    let paused = Deferred::<i32>::new();
    paused.pause();
    paused.callback(1).unwrap();
    assert_eq!(format!("{paused:?}"), "Deferred<i32>(paused, result: i32)");
}

#[test]
fn test_debug_in_debug_mode_shows_the_call_sites() {
    let _on = Debugging::on();
    let created = line!() + 1;
    let d = Deferred::<i32>::new();
    let shown = format!("{d:?}");
    assert!(
        shown.contains(&format!("created at {}", site(created))),
        "{shown}"
    );
    let fired = line!() + 1;
    d.callback(1).unwrap();
    let shown = format!("{d:?}");
    assert!(
        shown.contains(&format!("first fired at {}", site(fired))),
        "{shown}"
    );
}
