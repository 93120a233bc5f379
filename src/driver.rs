//! The driver kit: what a reactor is built from. Protocols, factories and applications never
//! need this module; it is the contract for writing a reactor (the real one in
//! [`crate::mio`], the simulator's hosts, [`MemoryReactor`](crate::testing::MemoryReactor)),
//! and every reactor of this crate is written against it.
//!
//! - [`Connection`]: one connection's engine-side state, sans I/O — the protocol, its output
//!   buffer, producer and backpressure rules, half-close and close decisions
//!   ([`CloseAction`], [`EofAction`]). A reactor feeds it bytes and events and asks it what
//!   to send; its [`TransportDriver`] implementation is what a protocol's
//!   [`Transport`](crate::protocol::Transport) talks to.
//! - [`ConnectorCore`] and [`ConnectIo`]: the connection-establishment state machine
//!   (attempts, timeout, factory start/stop, failure and loss), driven by a reactor's I/O
//!   half; [`ConnectorDriver`] is what a [`Connector`](crate::protocol::Connector) handle
//!   talks to.
//! - [`FactoryStarts`]: Twisted's `doStart`/`doStop` counting per factory.
//! - [`Lifecycle`] and [`SystemEventTriggers`]: run, stop, and the startup/shutdown triggers.
//! - [`TimerQueue`] (with its [`ChangeObserver`] hook, which lets a scheduler index many
//!   queues): delayed calls in deadline-then-FIFO order.
//! - [`ThreadCallQueue`], [`Notify`] and [`run_work`]: calls from other threads, and running
//!   `defer_to_thread` work.
//! - [`ListeningPortDriver`] and [`DatagramTransportDriver`]: what listening-port and
//!   datagram handles talk to.

pub use crate::protocol::connecting::{ConnectIo, ConnectorCore};
pub use crate::protocol::connection::{CloseAction, Connection, EofAction};
pub use crate::protocol::connector::ConnectorDriver;
pub use crate::protocol::factory::FactoryStarts;
pub use crate::protocol::transport::{ScopedCall, TransportDriver};
pub use crate::reactor::core::{Lifecycle, SystemEventTriggers};
pub use crate::reactor::tcp::ListeningPortDriver;
pub use crate::reactor::threads::{run_work, Notify, ThreadCallQueue};
pub use crate::reactor::timer::{ChangeObserver, TimerQueue};
pub use crate::reactor::udp::DatagramTransportDriver;
