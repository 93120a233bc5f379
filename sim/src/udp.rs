//! Simulated UDP: datagrams that may be lost, duplicated or reordered.
//!
//! A datagram crosses the [`link`] like every packet: partitions drop it,
//! and its own fault rules (`udp_loss_ppm`, `udp_dup_ppm`, `udp_reorder_ppm` in
//! [`Faults`](crate::Faults)) lose it, deliver it twice, or let it skip the link's order
//! (choice 0: delivered once, in the order sent). A datagram to a port nobody listens on,
//! or to an address no host has, is dropped.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};

use torsion::defer::{succeed, Deferred};
use torsion::driver::DatagramTransportDriver;
use torsion::protocol::Address;
use torsion::reactor::{CannotListenError, DatagramProtocol, DatagramTransport, UdpError};

use crate::host::{Host, HostState};
use crate::net::link::{self, Packet, Payload};
use crate::world::World;

/// A port's protocol, taken out while it runs.
pub(crate) type Slot = Rc<RefCell<Option<Box<dyn DatagramProtocol>>>>;

/// A datagram in flight.
#[derive(Clone)]
pub(crate) struct Datagram {
    /// The bytes.
    pub(crate) data: Vec<u8>,
    /// The sender's address.
    from: Address,
    /// The destination port.
    port: u16,
    /// Its send in a full trace (an index into [`crate::trace::Trace::messages`]).
    pub(crate) message: Option<usize>,
}

/// A datagram reaches host `to`: the protocol listening on its port, if any, receives it.
pub(crate) fn arrive(world: &World, to: usize, d: Datagram) {
    let Some(h) = world.host(to) else { return };
    let Some(slot) = lookup(&h.st, d.port) else {
        return;
    };
    world.record_datagram(to, true, &d.data, d.message);
    let taken = slot.borrow_mut().take();
    if let Some(mut p) = taken {
        p.datagram_received(&d.data, d.from);
        *slot.borrow_mut() = Some(p);
    }
}

struct SimUdp {
    host: Weak<HostState>,
    addr: Address,
    max: usize,
    connected: RefCell<Option<Address>>,
    /// The port's protocol slot (owned by the host's table while the port is open: a
    /// transport a user keeps does not keep a closed port's protocol alive).
    slot: Weak<RefCell<Option<Box<dyn DatagramProtocol>>>>,
}

fn lookup(host: &HostState, port: u16) -> Option<Slot> {
    host.udp.borrow().get(&port).cloned()
}

impl DatagramTransportDriver for SimUdp {
    fn write(&self, data: &[u8], addr: Option<Address>) -> Result<(), UdpError> {
        if data.len() > self.max {
            return Err(UdpError::TooLarge {
                size: data.len(),
                max: self.max,
            });
        }
        let connected = *self.connected.borrow();
        let dest = match (addr, connected) {
            (Some(a), Some(c)) if a != c => return Err(UdpError::WrongDestination),
            (Some(a), _) => a,
            (None, Some(c)) => c,
            (None, None) => return Err(UdpError::NoDestination),
        };
        let Some(st) = self.host.upgrade() else {
            return Err(UdpError::Closed);
        };
        let Some(world) = st.world() else {
            return Err(UdpError::Closed);
        };
        let dest_host = match dest.addr.ip() {
            std::net::IpAddr::V4(ip) => crate::host::index_of_ip(ip),
            std::net::IpAddr::V6(_) => None,
        };
        let Some(to) = dest_host.filter(|&i| world.host(i).is_some()) else {
            world.record_datagram(st.index, false, data, None);
            return Ok(()); // nobody there: the datagram is lost
        };
        let datagram = Datagram {
            data: data.to_vec(),
            from: self.addr,
            port: dest.port(),
            message: None,
        };
        let mut pkt = Packet::between(st.index, to, Payload::Datagram(Box::new(datagram)));
        pkt.order = Some(world.net.link.datagram_order(st.index, to));
        link::send(&world, pkt);
        Ok(())
    }

    fn connect(&self, addr: Address) -> Result<(), UdpError> {
        *self.connected.borrow_mut() = Some(addr);
        Ok(())
    }

    fn get_host(&self) -> Address {
        self.addr
    }

    fn stop_listening(&self) -> Deferred<()> {
        if let Some(st) = self.host.upgrade() {
            // Only this transport's own port: after a crash and a fresh listen on the same
            // port, the old transport must not stop the new protocol.
            let slot = lookup(&st, self.addr.port())
                .filter(|s| std::ptr::eq(Rc::as_ptr(s), self.slot.as_ptr()));
            if let Some(slot) = slot {
                st.udp.borrow_mut().remove(&self.addr.port());
                let taken = slot.borrow_mut().take();
                if let Some(mut p) = taken {
                    p.stop_protocol();
                }
            }
        }
        succeed(())
    }

    fn max_packet_size(&self) -> usize {
        self.max
    }
}

pub(crate) fn listen(
    host: &Host,
    port: u16,
    mut protocol: Box<dyn DatagramProtocol>,
    interface: &str,
    max_packet_size: usize,
) -> Result<DatagramTransport, CannotListenError> {
    let port = if port == 0 { host.alloc_port() } else { port };
    if lookup(&host.st, port).is_some() {
        return Err(CannotListenError {
            interface: interface.to_string(),
            port,
            reason: "address already in use".into(),
        });
    }
    let addr = Address::udp(SocketAddr::from((host.ip(), port)));
    let slot: Slot = Rc::new(RefCell::new(None));
    let transport = DatagramTransport::new(Rc::new(SimUdp {
        host: Rc::downgrade(&host.st),
        addr,
        max: max_packet_size,
        connected: RefCell::new(None),
        slot: Rc::downgrade(&slot),
    }));
    protocol.start_protocol(&transport);
    *slot.borrow_mut() = Some(protocol);
    host.st.udp.borrow_mut().insert(port, slot);
    Ok(transport)
}
