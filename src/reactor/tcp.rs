//! The TCP capability (Twisted's `IReactorTCP`) and listening ports.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use thiserror::Error;

use crate::defer::Deferred;
use crate::protocol::{Address, ClientFactory, Connector, Factory};

/// Twisted's default listen backlog.
pub const DEFAULT_BACKLOG: u32 = 50;
/// Twisted's default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A port could not be listened on (Twisted's `CannotListenError`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("cannot listen on {interface}:{port}: {reason}")]
pub struct CannotListenError {
    /// The interface asked for ("" for all).
    pub interface: String,
    /// The port asked for.
    pub port: u16,
    /// Why.
    pub reason: String,
}

/// What a reactor implements for each listening port.
pub trait ListeningPortDriver {
    /// Stops accepting; the Deferred fires once the port is closed.
    fn stop_listening(&self) -> Deferred<()>;
    /// The bound address (with the real port when port 0 was asked for).
    fn get_host(&self) -> Address;
}

/// A listening port (Twisted's `IListeningPort`). Cheap to clone.
#[derive(Clone)]
pub struct ListeningPort {
    driver: Rc<dyn ListeningPortDriver>,
}

impl ListeningPort {
    /// Wraps a reactor's driver.
    pub fn new(driver: Rc<dyn ListeningPortDriver>) -> Self {
        ListeningPort { driver }
    }

    /// Stops accepting (Twisted's `stopListening`).
    pub fn stop_listening(&self) -> Deferred<()> {
        self.driver.stop_listening()
    }

    /// The bound address.
    pub fn get_host(&self) -> Address {
        self.driver.get_host()
    }
}

/// The TCP capability of a reactor. Object-safe; [`ReactorTcpExt`] has Twisted's defaults.
pub trait ReactorTcp {
    /// Listens on `interface:port` ("" for all interfaces; port 0 picks one), building a
    /// protocol with `factory` for each accepted connection.
    fn listen_tcp_with(
        &self,
        port: u16,
        factory: Rc<dyn Factory>,
        backlog: u32,
        interface: &str,
    ) -> Result<ListeningPort, CannotListenError>;

    /// Connects to `host:port`; the factory hears how it goes. `bind_address` picks the
    /// local end.
    fn connect_tcp_with(
        &self,
        host: &str,
        port: u16,
        factory: Rc<dyn ClientFactory>,
        timeout: Duration,
        bind_address: Option<SocketAddr>,
    ) -> Connector;
}

/// [`ReactorTcp`] with Twisted's defaults (backlog 50, all interfaces, 30 s connect timeout).
pub trait ReactorTcpExt: ReactorTcp {
    /// Twisted's `listenTCP(port, factory)`.
    fn listen_tcp(
        &self,
        port: u16,
        factory: Rc<dyn Factory>,
    ) -> Result<ListeningPort, CannotListenError> {
        self.listen_tcp_with(port, factory, DEFAULT_BACKLOG, "")
    }

    /// Twisted's `connectTCP(host, port, factory)`.
    fn connect_tcp(&self, host: &str, port: u16, factory: Rc<dyn ClientFactory>) -> Connector {
        self.connect_tcp_with(host, port, factory, DEFAULT_CONNECT_TIMEOUT, None)
    }

    /// Twisted's `connectProtocol`: connects once and runs `protocol` on the connection. The
    /// Deferred fires with the connection's [`Transport`](crate::protocol::Transport) once it
    /// is up — a handle to write to it or close it from anywhere (a reactor timer, a test) —
    /// or fails with why the connection could not be made.
    fn connect_protocol<P: crate::protocol::Protocol + 'static>(
        &self,
        host: &str,
        port: u16,
        protocol: P,
    ) -> Deferred<crate::protocol::Transport> {
        let (factory, connected) = crate::protocol::factory::ConnectOnce::new(protocol);
        self.connect_tcp(host, port, factory);
        connected
    }
}

impl<R: ReactorTcp + ?Sized> ReactorTcpExt for R {}
