//! Debug mode for Deferreds (Twisted's `Deferred.debug` / `defer.setDebugging`).
//!
//! With debugging on, each Deferred made on this thread records the call site that created
//! it, and the one that first fired it; [`AlreadyCalledError`] and unhandled-failure reports
//! then say where both happened, and where the second fire came from. Twisted records whole
//! stacks; torsion records the one caller location that `#[track_caller]` gives, which
//! costs no unwinding and is enough to find the line.
//!
//! Off (the default), the cost is one read of a thread-local flag when a Deferred is made
//! and when it is first fired, and no allocation: the record is an `Option<Box<_>>` left
//! `None`. The flag is per thread, as everything about a Deferred is.

use std::cell::Cell;
use std::fmt;
use std::panic::Location;

use crate::defer::Failure;
use crate::error::AlreadyCalledError;

thread_local! {
    static DEBUGGING: Cell<bool> = const { Cell::new(false) };
}

/// Turns Deferred debug mode on or off for this thread (Twisted's `setDebugging`). Only
/// Deferreds made while it is on record their call sites.
///
/// ```
/// use torsion::defer::{set_debugging, Deferred};
///
/// set_debugging(true);
/// let d = Deferred::<u8>::new();
/// d.callback(1).unwrap();
/// let err = d.callback(2).unwrap_err();
/// set_debugging(false);
/// let text = err.to_string();
/// assert!(text.contains("created at") && text.contains("first fired at"), "{text}");
/// ```
pub fn set_debugging(on: bool) {
    DEBUGGING.with(|d| d.set(on));
}

/// Whether Deferred debug mode is on for this thread (Twisted's `getDebugging`).
pub fn get_debugging() -> bool {
    DEBUGGING.with(Cell::get)
}

/// Where a Deferred was made and first fired (Twisted's `DebugInfo`).
pub(crate) struct DebugInfo {
    pub(crate) created: &'static Location<'static>,
    pub(crate) fired: Option<&'static Location<'static>>,
}

impl DebugInfo {
    /// A record of the caller, if debugging is on.
    #[track_caller]
    pub(crate) fn capture() -> Option<Box<DebugInfo>> {
        if get_debugging() {
            Some(Box::new(DebugInfo {
                created: Location::caller(),
                fired: None,
            }))
        } else {
            None
        }
    }

    /// The error for a second fire from `again`.
    pub(crate) fn already_called(
        info: Option<&DebugInfo>,
        again: &'static Location<'static>,
    ) -> AlreadyCalledError {
        match info {
            Some(info) => {
                AlreadyCalledError::with_call_sites(format!("{info}; fired again at {again}"))
            }
            None => AlreadyCalledError::new(),
        }
    }

    /// `failure` as an unhandled-failure report names it: with the call sites prepended.
    pub(crate) fn unhandled(info: Option<&DebugInfo>, failure: &Failure) -> Failure {
        match info {
            Some(info) => failure
                .clone()
                .context(format!("unhandled failure in Deferred {info}")),
            None => failure.clone(),
        }
    }
}

impl fmt::Display for DebugInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "created at {}", self.created)?;
        if let Some(fired) = self.fired {
            write!(f, ", first fired at {fired}")?;
        }
        Ok(())
    }
}
