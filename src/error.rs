//! The typed errors torsion reports: connection-lost reasons, Deferred misuse, timer misuse,
//! reactor state errors. Each is its own type so an errback can [`trap`](crate::defer::Failure::trap)
//! exactly the ones it handles.
//!
//! Layer: engine core. Nothing here does I/O.

use std::any::Any;

use thiserror::Error;

/// The connection was closed cleanly (Twisted's `ConnectionDone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("connection was closed cleanly")]
pub struct ConnectionDone;

/// The connection was lost in a non-clean fashion (Twisted's `ConnectionLost`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("connection was lost: {reason}")]
pub struct ConnectionLost {
    /// Why, in words (for example "reset by peer").
    pub reason: String,
}

impl ConnectionLost {
    /// A `ConnectionLost` with the given reason.
    pub fn new(reason: impl Into<String>) -> Self {
        ConnectionLost {
            reason: reason.into(),
        }
    }
}

/// The connection was aborted locally with `abort_connection` (Twisted's
/// `ConnectionAborted`, a kind of `ConnectionLost`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("connection was aborted locally")]
pub struct ConnectionAborted;

/// The connection attempt was refused (no listener, or a refusing peer).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("connection was refused by {peer}")]
pub struct ConnectionRefused {
    /// The address that refused.
    pub peer: String,
}

/// An operation took too long (Twisted's `TimeoutError`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("timed out after {0:?}")]
pub struct TimeoutError(pub std::time::Duration);

/// A Deferred was cancelled (Twisted's `CancelledError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the Deferred was cancelled")]
pub struct CancelledError;

/// A Deferred was fired a second time (Twisted's `AlreadyCalledError`).
///
/// With Deferred debug mode on ([`set_debugging`](crate::defer::set_debugging)), it says
/// where the Deferred was created, first fired and fired again. Those call sites are a
/// diagnostic: two `AlreadyCalledError`s compare equal whatever they carry.
#[derive(Debug, Clone, Default, Error)]
#[error("the Deferred has already been called{}", self.call_sites.as_deref().map(|s| format!(" ({s})")).unwrap_or_default())]
pub struct AlreadyCalledError {
    call_sites: Option<String>,
}

impl AlreadyCalledError {
    /// The error, without call sites.
    pub const fn new() -> Self {
        AlreadyCalledError { call_sites: None }
    }

    /// The error with a description of the call sites involved (debug mode).
    pub fn with_call_sites(call_sites: String) -> Self {
        AlreadyCalledError {
            call_sites: Some(call_sites),
        }
    }

    /// Where the Deferred was created, first fired and fired again, when debug mode
    /// recorded it.
    pub fn call_sites(&self) -> Option<&str> {
        self.call_sites.as_deref()
    }
}

impl PartialEq for AlreadyCalledError {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for AlreadyCalledError {}

/// A callback returned the very Deferred it was added to, which could never fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("a callback returned the Deferred it belongs to")]
pub struct ChainedToSelfError;

/// What a Deferred holds after its result was handed to the Deferred whose callback returned
/// it (Twisted leaves `None` there). Callbacks added to it afterwards see this error; it is
/// never reported as unhandled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the result was passed on to the Deferred that was waiting on this one")]
pub struct ResultPassedOn;

/// A handle of the wrong type was used on a Deferred chain (an internal invariant; reported
/// as a failure rather than a panic).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("Deferred value has an unexpected type (expected {expected})")]
pub struct TypeMismatch {
    /// The type the callback expected.
    pub expected: &'static str,
}

/// `cancel` or `reset` on a DelayedCall that already ran (Twisted's `AlreadyCalled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the delayed call has already been called")]
pub struct AlreadyCalled;

/// `cancel` or `reset` on a DelayedCall that was cancelled (Twisted's `AlreadyCancelled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the delayed call has already been cancelled")]
pub struct AlreadyCancelled;

/// Either way a DelayedCall can no longer be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DelayedCallError {
    /// It ran.
    #[error(transparent)]
    AlreadyCalled(#[from] AlreadyCalled),
    /// It was cancelled.
    #[error(transparent)]
    AlreadyCancelled(#[from] AlreadyCancelled),
}

/// User code panicked; the message is kept (the payload of a `panic!` with a string).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("panicked: {message}")]
pub struct Panicked {
    /// The panic message, or a placeholder when the payload was not a string.
    pub message: String,
}

impl Panicked {
    /// Extracts the message from a `catch_unwind` payload.
    pub fn from_payload(payload: Box<dyn Any + Send>) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "non-string panic payload".to_string()
        };
        Panicked { message }
    }
}

/// A Deferred's callback or errback panicked. The chain goes on down its errback path with
/// this failure, as it would after an exception in Twisted; the message is the panic's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("a Deferred callback panicked: {message}")]
pub struct CallbackPanicked {
    /// The panic message, or a placeholder when the payload was not a string.
    pub message: String,
}

impl CallbackPanicked {
    /// Extracts the message from a `catch_unwind` payload.
    pub fn from_payload(payload: Box<dyn Any + Send>) -> Self {
        CallbackPanicked {
            message: Panicked::from_payload(payload).message,
        }
    }
}

/// A member of a `DeferredList` (with `fire_on_one_errback`) or of `gather_results` failed
/// (Twisted's `FirstError`): which one, and how.
#[derive(Debug, Clone, Error)]
#[error("member {index} failed: {failure}")]
pub struct FirstError {
    /// The member's failure.
    pub failure: crate::defer::Failure,
    /// Its position in the input.
    pub index: usize,
}

/// Every member of a `race` failed (Twisted's `FailureGroup`).
#[derive(Debug, Clone, Error)]
#[error("all {} racers failed", failures.len())]
pub struct FailureGroup {
    /// The failures, in input order.
    pub failures: Vec<crate::defer::Failure>,
}

/// `put` on a full `DeferredQueue` (Twisted's `QueueOverflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the queue is full")]
pub struct QueueOverflow;

/// `get` on a `DeferredQueue` whose backlog of waiting getters is full (Twisted's
/// `QueueUnderflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("too many waiting getters")]
pub struct QueueUnderflow;

/// `release` of a lock or semaphore that is not held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("released more often than acquired")]
pub struct NotAcquired;

/// A `DeferredSemaphore` needs at least one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("a semaphore needs at least one token")]
pub struct NoTokens;
