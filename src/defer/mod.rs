//! Deferreds: results that arrive later, and the callback chains that process them.
//!
//! # For Twisted users
//!
//! This is `twisted.internet.defer`, typed. A [`Deferred<T>`] is a chain of (callback,
//! errback) pairs and a result slot. Firing it with [`callback`](Deferred::callback) or
//! [`errback`](Deferred::errback) runs the chain: each callback receives the previous
//! result; a callback that fails switches to the errback path; an errback that returns a
//! value switches back. A callback may return another Deferred, and the chain waits for it.
//!
//! | Twisted | torsion |
//! |---|---|
//! | `d.addCallback(f)` (f returns a value) | [`d.add_callback(f)`](Deferred::add_callback) |
//! | `d.addCallback(f)` (f may raise or return a Deferred) | [`d.and_then(f)`](Deferred::and_then) |
//! | `d.addErrback(f)` / `d.addCallbacks(f, g)` / `d.addBoth(f)` | [`add_errback`](Deferred::add_errback), [`add_callbacks`](Deferred::add_callbacks), [`add_both`](Deferred::add_both) |
//! | `raise` in a callback | return `Err(failure)` |
//! | `failure.trap(E)` | [`failure.trap::<E>()?`](Failure::trap) |
//! | `d.chainDeferred(d2)`, `d.pause()`, `d.cancel()`, `d.addTimeout(t, clock)` | same names |
//! | `succeed`, `fail`, `maybeDeferred` | [`succeed`], [`fail`], [`maybe_deferred`] |
//!
//! Types: a callback may change the value's type, so each `add_*` consumes the handle and
//! returns the chain's handle at its new type. Clone a handle to keep one for firing.
//!
//! ```
//! use torsion::defer::{Deferred, Failure};
//! use torsion::error::ConnectionDone;
//!
//! let d = Deferred::<Vec<u8>>::new();
//! let lines = d.clone()
//!     .add_callback(|bytes| String::from_utf8_lossy(&bytes).lines().count())
//!     .add_errback(|f| { f.trap::<ConnectionDone>()?; Ok(0) });
//! d.callback(b"a\nb\n".to_vec()).unwrap();
//! assert_eq!(lines.result().unwrap().ok(), Some(2));
//! ```
//!
//! # Guarantees
//!
//! - A callback added while the chain runs goes to the end; nothing re-enters a running chain.
//! - Chains of any length and depth (callbacks returning Deferreds, `chain_deferred` links,
//!   cancellation through waiting chains) run in constant native stack.
//! - A failure still in the slot when the last handle drops is reported through the
//!   [unhandled-error hook](set_unhandled_error_hook).
//! - A callback that panics is an exception in Twisted: the chain continues down its errback
//!   path with a [`CallbackPanicked`](crate::error::CallbackPanicked) failure carrying the
//!   message; the panic never escapes `callback()` and never leaves the chain stuck.
//! - `cancel()` reaches the innermost Deferred a chain waits on, even one nobody else holds,
//!   and returns on Deferreds that wait on each other in a cycle.
//! - [`set_debugging`] records where each Deferred was made and first fired, for
//!   `AlreadyCalledError`, unhandled-failure reports and `Debug`.
//!
//! Layer: engine core. Deferreds never touch I/O or a clock; timeouts take a
//! [`ReactorTime`](crate::reactor::ReactorTime).

mod core;
mod debug;
mod deferred;
mod failure;
mod future;
mod list;
mod lock;
mod queue;
mod unhandled;
mod waiters;

#[cfg(test)]
mod tests;

/// Installs a capturing unhandled-error hook for the rest of the thread (tests only).
#[cfg(test)]
pub(crate) fn tests_support_capture() -> std::rc::Rc<std::cell::RefCell<Vec<String>>> {
    let seen: std::rc::Rc<std::cell::RefCell<Vec<String>>> = Default::default();
    let s = seen.clone();
    set_unhandled_error_hook(Some(std::rc::Rc::new(move |f: &Failure| {
        s.borrow_mut().push(f.to_string())
    })));
    seen
}

pub use debug::{get_debugging, set_debugging};
pub use deferred::{fail, maybe_deferred, succeed, Deferred, IntoOutcome, Outcome};
pub use failure::{Causes, Failure, Message};
pub use future::{ensure_deferred, DeferredFuture};
pub use list::{gather_results, race, DeferredList, FirstCallback};
pub use lock::{DeferredLock, DeferredSemaphore};
pub use queue::DeferredQueue;
pub use unhandled::{set_unhandled_error_hook, UnhandledErrorHook};
