//! The UDP capability (Twisted's `IReactorUDP`): datagram protocols and their transports.

use std::rc::Rc;

use thiserror::Error;

use crate::defer::Deferred;
use crate::protocol::Address;
use crate::reactor::CannotListenError;

/// Twisted's default maximum datagram size.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 8192;

/// The user side of a UDP port (Twisted's `DatagramProtocol`).
pub trait DatagramProtocol: 'static {
    /// The port is open; keep `transport` to send.
    fn start_protocol(&mut self, transport: &DatagramTransport) {
        let _ = transport;
    }
    /// The port is closing.
    fn stop_protocol(&mut self) {}
    /// A datagram arrived from `addr`.
    fn datagram_received(&mut self, data: &[u8], addr: Address);
    /// On a connected port: the peer refused a datagram (ICMP port unreachable).
    fn connection_refused(&mut self) {}
}

/// Why a datagram could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UdpError {
    /// Larger than the port's maximum packet size.
    #[error("datagram of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The maximum.
        max: usize,
    },
    /// No address given and the port is not connected.
    #[error("no destination: the port is not connected")]
    NoDestination,
    /// The port is connected and the address is not its peer.
    #[error("a connected port sends only to its peer")]
    WrongDestination,
    /// The port is closed.
    #[error("the port is closed")]
    Closed,
}

/// What a reactor implements for each UDP port.
pub trait DatagramTransportDriver {
    /// Sends `data` to `addr` (or to the connected peer when `None`).
    fn write(&self, data: &[u8], addr: Option<Address>) -> Result<(), UdpError>;
    /// Connects the port to one peer (Twisted's connected UDP).
    fn connect(&self, addr: Address) -> Result<(), UdpError>;
    /// The bound address.
    fn get_host(&self) -> Address;
    /// Closes the port.
    fn stop_listening(&self) -> Deferred<()>;
    /// The largest datagram it sends or receives.
    fn max_packet_size(&self) -> usize;
}

/// A UDP port's transport. Cheap to clone.
#[derive(Clone)]
pub struct DatagramTransport {
    driver: Rc<dyn DatagramTransportDriver>,
}

impl DatagramTransport {
    /// Wraps a reactor's driver.
    pub fn new(driver: Rc<dyn DatagramTransportDriver>) -> Self {
        DatagramTransport { driver }
    }

    /// Sends a datagram to `addr`.
    pub fn write(&self, data: impl AsRef<[u8]>, addr: Address) -> Result<(), UdpError> {
        self.driver.write(data.as_ref(), Some(addr))
    }

    /// Sends a datagram to the connected peer.
    pub fn write_connected(&self, data: impl AsRef<[u8]>) -> Result<(), UdpError> {
        self.driver.write(data.as_ref(), None)
    }

    /// Connects the port to one peer.
    pub fn connect(&self, addr: Address) -> Result<(), UdpError> {
        self.driver.connect(addr)
    }

    /// The bound address.
    pub fn get_host(&self) -> Address {
        self.driver.get_host()
    }

    /// Closes the port.
    pub fn stop_listening(&self) -> Deferred<()> {
        self.driver.stop_listening()
    }

    /// The largest datagram it handles.
    pub fn max_packet_size(&self) -> usize {
        self.driver.max_packet_size()
    }
}

/// The UDP capability of a reactor.
pub trait ReactorUdp {
    /// Opens a UDP port (0 picks one) on `interface` ("" for all).
    fn listen_udp_with(
        &self,
        port: u16,
        protocol: Box<dyn DatagramProtocol>,
        interface: &str,
        max_packet_size: usize,
    ) -> Result<DatagramTransport, CannotListenError>;
}

/// [`ReactorUdp`] with Twisted's defaults.
pub trait ReactorUdpExt: ReactorUdp {
    /// Twisted's `listenUDP(port, protocol)`.
    fn listen_udp(
        &self,
        port: u16,
        protocol: Box<dyn DatagramProtocol>,
    ) -> Result<DatagramTransport, CannotListenError> {
        self.listen_udp_with(port, protocol, "", DEFAULT_MAX_PACKET_SIZE)
    }
}

impl<R: ReactorUdp + ?Sized> ReactorUdpExt for R {}
