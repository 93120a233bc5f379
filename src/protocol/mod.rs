//! The protocol layer: Protocol, Factory, Transport, Connector, producers, addresses.
//!
//! This is Twisted's Protocol / Factory / Transport split. A [`Factory`] builds one
//! [`Protocol`] per connection; the reactor owns that protocol and calls it as bytes arrive;
//! the protocol talks back through its [`Transport`]. Outgoing connections go through a
//! [`ClientFactory`] and a [`Connector`].
//!
//! Layer: engine. Protocols never touch sockets, clocks or threads: the reactor drives them,
//! and the same protocol runs on the real reactor and on the simulator.

mod address;
pub(crate) mod connecting;
pub(crate) mod connection;
pub(crate) mod connector;
pub(crate) mod factory;
pub(crate) mod producer;
#[allow(clippy::module_inception)]
mod protocol;
mod reconnecting;
pub(crate) mod transport;

pub use address::{Address, AddressKind};
// The driver kit's items, under their old paths for the crate's own use (the public path is
// `crate::driver`).
pub(crate) use connecting::{ConnectIo, ConnectorCore};
pub(crate) use connection::{CloseAction, Connection, EofAction};
pub(crate) use connector::ConnectorDriver;
pub use connector::{Connector, ConnectorState, WeakConnector};
pub(crate) use factory::FactoryStarts;
pub use factory::{
    factory_fn, protocol_fn, ClientFactory, Factory, FnFactory, ForProtocol, ProtocolFn,
};
pub use producer::{
    Producer, ProducerError, PullProducer, PushProducer, HIGH_WATER_MARK, LOW_WATER_MARK,
};
pub use protocol::{find_protocol, Protocol};
pub use reconnecting::{Backoff, ReconnectingClientFactory, RetryPolicy};
pub use transport::Transport;
pub(crate) use transport::{ScopedCall, TransportDriver};
