//! # torsion
//!
//! Twisted's event-driven networking model for Rust — Deferreds, the reactor, the
//! Protocol / Factory / Transport split — built so that every protocol written against it can
//! also run under torsion-sim's deterministic simulator.
//!
//! This crate is the engine. Its layers, bottom up:
//!
//! - [`defer`]: [`Deferred`](defer::Deferred) and [`Failure`](defer::Failure), the
//!   callback/errback chains every asynchronous result travels through, with cancellation,
//!   timeouts, combinators, locks and queues, and a bridge to `async`/`.await`;
//! - [`reactor`]: the traits every reactor implements (time first), and the timer queue the
//!   drivers share;
//! - [`testing`]: test doubles in Twisted's spirit, starting with a manual [`Clock`](testing::Clock);
//! - [`error`]: the typed errors.
//!
//! Rules the engine keeps (see each module's docs): no synchronous re-entry into user code;
//! no wall clock, thread RNG or hash-ordered iteration outside the real reactor; no `unsafe`.
//!
//! ```
//! use torsion::defer::Deferred;
//!
//! let d = Deferred::<u32>::new();
//! let done = d.clone().add_callback(|n| n * 2).add_callback(|n| format!("got {n}"));
//! d.callback(21).unwrap();
//! assert_eq!(done.result().unwrap().ok().as_deref(), Some("got 42"));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod defer;
pub mod driver;
pub mod error;
#[cfg(feature = "mio")]
pub mod mio;
pub mod protocol;
pub mod protocols;
pub mod reactor;
pub mod task;
pub mod testing;

/// The engine's version, for tools that report what they drive.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The names most programs use, in one import.
pub mod prelude {
    pub use crate::defer::{Deferred, Failure, IntoOutcome, Outcome};
    pub use crate::reactor::{
        DelayedCall, Instant, Reactor, ReactorCore, ReactorCoreExt, ReactorRandom,
        ReactorRandomExt, ReactorTcp, ReactorTcpExt, ReactorThreads, ReactorThreadsExt,
        ReactorTime, ReactorTimeExt, ReactorUdp, ReactorUdpExt,
    };
}
