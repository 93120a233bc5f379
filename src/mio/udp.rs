//! UDP on mio.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};

use mio::net::UdpSocket;
use mio::{Interest, Token};

use super::{resolve, Inner, Source};
use crate::defer::{succeed, Deferred};
use crate::protocol::Address;
use crate::reactor::{
    CannotListenError, DatagramProtocol, DatagramTransport, DatagramTransportDriver, UdpError,
};

pub(crate) struct UdpPort {
    me: Weak<UdpPort>,
    token: Cell<Token>,
    socket: RefCell<Option<UdpSocket>>,
    protocol: RefCell<Option<Box<dyn DatagramProtocol>>>,
    host: Address,
    peer: Cell<Option<SocketAddr>>,
    max: usize,
    reactor: Weak<Inner>,
}

pub(crate) fn listen(
    inner: &Rc<Inner>,
    port: u16,
    protocol: Box<dyn DatagramProtocol>,
    interface: &str,
    max_packet_size: usize,
) -> Result<DatagramTransport, CannotListenError> {
    let fail = |reason: String| CannotListenError {
        interface: interface.to_string(),
        port,
        reason,
    };
    let at = resolve(interface, port).map_err(|e| fail(e.to_string()))?;
    let mut socket = UdpSocket::bind(at).map_err(|e| fail(e.to_string()))?;
    let host = Address::udp(socket.local_addr().map_err(|e| fail(e.to_string()))?);
    let p = Rc::new_cyclic(|me| UdpPort {
        me: me.clone(),
        token: Cell::new(Token(0)),
        socket: RefCell::new(None),
        protocol: RefCell::new(Some(protocol)),
        host,
        peer: Cell::new(None),
        max: max_packet_size,
        reactor: Rc::downgrade(inner),
    });
    let token = inner.insert(|_| Source::Udp(p.clone()));
    p.token.set(token);
    inner
        .registry
        .register(&mut socket, token, Interest::READABLE)
        .map_err(|e| {
            inner.remove(token);
            fail(e.to_string())
        })?;
    *p.socket.borrow_mut() = Some(socket);
    let transport = DatagramTransport::new(p.clone());
    p.with_protocol(|proto| proto.start_protocol(&transport));
    Ok(transport)
}

impl UdpPort {
    /// Runs `f` with the protocol, isolating a panic (the port stays up; the datagram is
    /// dropped).
    fn with_protocol(&self, f: impl FnOnce(&mut dyn DatagramProtocol)) {
        let taken = self.protocol.borrow_mut().take();
        let Some(mut p) = taken else { return };
        if catch_unwind(AssertUnwindSafe(|| f(&mut *p))).is_err() {
            tracing::error!(port = %self.host, "a datagram protocol panicked");
        }
        if self.socket.borrow().is_some() {
            *self.protocol.borrow_mut() = Some(p);
        }
    }
}

/// Receives until the socket would block.
pub(crate) fn read(inner: &Inner, p: &Rc<UdpPort>) {
    let mut buf = inner.read_buf.borrow_mut();
    if buf.len() < p.max {
        buf.resize(p.max, 0);
    }
    loop {
        let got = match p.socket.borrow().as_ref() {
            Some(s) => s.recv_from(&mut buf[..p.max.max(1)]),
            None => return,
        };
        match got {
            Ok((n, from)) => {
                let from = Address::udp(from);
                p.with_protocol(|proto| proto.datagram_received(&buf[..n], from));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                p.with_protocol(|proto| proto.connection_refused());
            }
            Err(e) => {
                tracing::debug!(error = %e, "udp receive failed");
                return;
            }
        }
    }
}

impl DatagramTransportDriver for UdpPort {
    fn write(&self, data: &[u8], to: Option<Address>) -> Result<(), UdpError> {
        if data.len() > self.max {
            return Err(UdpError::TooLarge {
                size: data.len(),
                max: self.max,
            });
        }
        let socket = self.socket.borrow();
        let Some(s) = socket.as_ref() else {
            return Err(UdpError::Closed);
        };
        let sent = match (self.peer.get(), to) {
            (Some(peer), Some(a)) if a.addr != peer => return Err(UdpError::WrongDestination),
            (Some(_), _) => s.send(data),
            (None, Some(a)) => s.send_to(data, a.addr),
            (None, None) => return Err(UdpError::NoDestination),
        };
        match sent {
            Ok(_) => Ok(()),
            // A full socket buffer drops the datagram, as the network may.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                if let Some(me) = self.me.upgrade() {
                    me.with_protocol(|proto| proto.connection_refused());
                }
                Ok(())
            }
            Err(e) => {
                tracing::debug!(error = %e, "udp send failed");
                Ok(())
            }
        }
    }

    fn connect(&self, to: Address) -> Result<(), UdpError> {
        let socket = self.socket.borrow();
        let Some(s) = socket.as_ref() else {
            return Err(UdpError::Closed);
        };
        s.connect(to.addr).map_err(|_| UdpError::NoDestination)?;
        self.peer.set(Some(to.addr));
        Ok(())
    }

    fn get_host(&self) -> Address {
        self.host
    }

    fn stop_listening(&self) -> Deferred<()> {
        let taken = self.socket.borrow_mut().take();
        if let (Some(mut s), Some(inner)) = (taken, self.reactor.upgrade()) {
            let _ = inner.registry.deregister(&mut s);
            inner.remove(self.token.get());
            let proto = self.protocol.borrow_mut().take();
            if let Some(mut proto) = proto {
                let _ = catch_unwind(AssertUnwindSafe(|| proto.stop_protocol()));
            }
        }
        succeed(())
    }

    fn max_packet_size(&self) -> usize {
        self.max
    }
}
