//! Addresses of connection endpoints (Twisted's `IPv4Address` / `IPv6Address`).

use std::fmt;
use std::net::SocketAddr;

/// Which transport an address belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressKind {
    /// A TCP endpoint.
    Tcp,
    /// A UDP endpoint.
    Udp,
}

/// One end of a connection or a listening port: a kind, an IP and a port.
///
/// The simulator gives each host an address of its own, so the same type serves the real
/// network and the simulated one.
///
/// ```
/// use torsion::protocol::Address;
///
/// let a = Address::tcp("127.0.0.1:8000".parse().unwrap());
/// assert_eq!(a.to_string(), "tcp:127.0.0.1:8000");
/// assert_eq!(a.port(), 8000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    /// TCP or UDP.
    pub kind: AddressKind,
    /// IP and port.
    pub addr: SocketAddr,
}

impl Address {
    /// A TCP address.
    pub fn tcp(addr: SocketAddr) -> Self {
        Address {
            kind: AddressKind::Tcp,
            addr,
        }
    }

    /// A UDP address.
    pub fn udp(addr: SocketAddr) -> Self {
        Address {
            kind: AddressKind::Udp,
            addr,
        }
    }

    /// The port number.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The IP, as text.
    pub fn host(&self) -> String {
        self.addr.ip().to_string()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            AddressKind::Tcp => "tcp",
            AddressKind::Udp => "udp",
        };
        write!(f, "{kind}:{}", self.addr)
    }
}
