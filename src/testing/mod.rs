//! Test doubles in Twisted's spirit (`twisted.internet.testing`): small, synchronous stand-ins
//! for the reactor's capabilities, for unit tests of protocols and Deferred chains.
//!
//! Where Twisted's doubles are known to mislead, these do not: [`Clock::advance`] runs each
//! call at its own scheduled time (Twisted's runs them all at the end time), and calls
//! scheduled for "now" during an advance run after the current one, in order.

mod clock;
mod iosim;
mod memory_reactor;
mod string_transport;

pub use clock::Clock;
pub use iosim::{connect, IOPump, CLIENT_ADDRESS, SERVER_ADDRESS};
pub use memory_reactor::{ConnectRecord, ListenRecord, MemoryReactor};
pub use string_transport::StringTransport;
