//! Scheduling helpers (Twisted's `twisted.internet.task`): [`LoopingCall`], [`defer_later`],
//! [`coiterate`].
//!
//! All of them take the clock as an `Rc<dyn ReactorTime>` — a reactor, a simulated host or
//! a test [`Clock`](crate::testing::Clock) — and never read time any other way.

mod coiterate;
mod defer_later;
mod looping_call;

pub use coiterate::{coiterate, coiterate_with};
pub use defer_later::{defer_later, defer_later_with};
pub use looping_call::{LoopingCall, LoopingCallError};
