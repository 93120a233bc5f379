//! `Failure`.

use std::any::TypeId;

use crate::defer::Failure;
use crate::error::{ConnectionDone, ConnectionLost, TimeoutError};

#[test]
fn test_is_and_downcast() {
    let f = Failure::new(ConnectionLost::new("reset"));
    assert!(f.is::<ConnectionLost>());
    assert!(!f.is::<ConnectionDone>());
    assert_eq!(f.downcast_ref::<ConnectionLost>().unwrap().reason, "reset");
}

#[test]
fn test_trap_matches_or_passes_on() {
    let f = Failure::new(ConnectionDone);
    assert!(f.trap::<ConnectionDone>().is_ok());
    let passed = f.trap::<ConnectionLost>().unwrap_err();
    assert!(passed.ptr_eq(&f), "trap passes the same failure on");
}

#[test]
fn test_trap_several_types() {
    let f = Failure::new(TimeoutError(std::time::Duration::from_secs(1)));
    let which = f
        .trap::<ConnectionDone>()
        .map(|_| "done")
        .or_else(|f| f.trap::<TimeoutError>().map(|_| "timeout"));
    assert_eq!(which.unwrap(), "timeout");
}

#[test]
fn test_check_with_type_ids() {
    let f = Failure::new(ConnectionDone);
    let types = [
        TypeId::of::<ConnectionLost>(),
        TypeId::of::<ConnectionDone>(),
    ];
    assert_eq!(f.check(&types), Some(TypeId::of::<ConnectionDone>()));
    assert_eq!(f.check(&types[..1]), None);
}

#[test]
fn test_display_shows_the_cause_chain() {
    let f = Failure::new(ConnectionDone)
        .context("fetching poem")
        .context("poetry client");
    assert_eq!(
        f.to_string(),
        "poetry client: fetching poem: connection was closed cleanly"
    );
    assert_eq!(f.causes().count(), 3);
    assert!(
        f.find::<ConnectionDone>().is_some(),
        "find searches the causes"
    );
    assert!(!f.is::<ConnectionDone>(), "is looks at the outermost only");
}

#[test]
fn test_io_error_converts_with_question_mark() {
    fn op() -> Result<(), Failure> {
        Err(std::io::Error::other("disk"))?;
        Ok(())
    }
    let f = op().unwrap_err();
    assert!(f.is::<std::io::Error>());
}

#[test]
fn test_from_panic_keeps_the_message() {
    let payload = std::panic::catch_unwind(|| panic!("oops {}", 1)).unwrap_err();
    let f = Failure::from_panic(payload);
    assert_eq!(f.to_string(), "panicked: oops 1");
}

#[test]
fn test_clone_is_cheap_and_shares() {
    let f = Failure::msg("shared");
    let g = f.clone();
    assert!(f.ptr_eq(&g));
    assert!(!f.ptr_eq(&Failure::msg("shared")));
    assert_eq!(format!("{f:?}"), "Failure(Message(\"shared\"))");
}
