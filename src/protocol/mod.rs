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
mod connecting;
mod connection;
mod connector;
pub(crate) mod factory;
mod producer;
#[allow(clippy::module_inception)]
mod protocol;
mod reconnecting;
mod transport;

pub use address::{Address, AddressKind};
pub use connecting::{ConnectIo, ConnectorCore};
pub use connection::{CloseAction, Connection, EofAction};
pub use connector::{Connector, ConnectorDriver, ConnectorState, WeakConnector};
pub use factory::{
    factory_fn, protocol_fn, ClientFactory, Factory, FactoryStarts, FnFactory, ForProtocol,
    ProtocolFn,
};
pub use producer::{
    Producer, ProducerError, PullProducer, PushProducer, HIGH_WATER_MARK, LOW_WATER_MARK,
};
pub use protocol::{find_protocol, Protocol};
pub use reconnecting::{Backoff, ReconnectingClientFactory, RetryPolicy};
pub use transport::{ScopedCall, Transport, TransportDriver};
