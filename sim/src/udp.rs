//! Simulated UDP: datagrams that may be lost, duplicated or reordered.
//!
//! Each datagram is an independent event with its own latency draw, so datagrams reorder
//! naturally when latencies differ. Loss and duplication are faults, decided per datagram
//! (choice 0: delivered once). A datagram to a port nobody listens on is dropped.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};

use torsion::defer::{succeed, Deferred};
use torsion::protocol::Address;
use torsion::reactor::{
    CannotListenError, DatagramProtocol, DatagramTransport, DatagramTransportDriver, UdpError,
};

use crate::host::{Host, HostState};
use crate::trace::Kind;

thread_local! {
    /// Open UDP ports: (host index, port) → protocol slot. Kept per thread; each world's
    /// hosts have distinct `Weak` owners, and entries of dropped worlds are pruned on use.
    static PORTS: RefCell<Vec<Port>> = const { RefCell::new(Vec::new()) };
}

struct Port {
    host: Weak<HostState>,
    port: u16,
    protocol: Slot,
}

/// A port's protocol, taken out while it runs.
type Slot = Rc<RefCell<Option<Box<dyn DatagramProtocol>>>>;

struct SimUdp {
    host: Weak<HostState>,
    addr: Address,
    max: usize,
    connected: RefCell<Option<Address>>,
}

fn lookup(host: &Rc<HostState>, port: u16) -> Option<Slot> {
    PORTS.with(|p| {
        let mut p = p.borrow_mut();
        p.retain(|e| e.host.strong_count() > 0);
        p.iter()
            .find(|e| e.port == port && e.host.upgrade().is_some_and(|h| Rc::ptr_eq(&h, host)))
            .map(|e| e.protocol.clone())
    })
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
        world.record_data(st.index, None, false, data);
        let dest_host = world
            .hosts
            .borrow()
            .iter()
            .find(|h| std::net::IpAddr::V4(h.ip()) == dest.addr.ip())
            .cloned();
        let Some(dest_host) = dest_host else {
            return Ok(()); // nobody there: the datagram is lost
        };
        let loss = world.cfg.faults.reset_ppm; // swarm's per-packet fault rate doubles as loss
        if world.chance(loss) {
            world.record(
                Some(st.index),
                None,
                Kind::Fault {
                    what: "datagram lost".into(),
                },
            );
            return Ok(());
        }
        let copies = if world.chance(loss) { 2 } else { 1 };
        for _ in 0..copies {
            let at = world.now.get() + world.latency();
            let payload = data.to_vec();
            let from = self.addr;
            let target = Rc::downgrade(&dest_host.st);
            let port = dest.port();
            dest_host.st.schedule_global(at, move || {
                let Some(h) = target.upgrade() else { return };
                if !h.up.get() {
                    return;
                }
                let Some(slot) = lookup(&h, port) else { return };
                if let Some(w) = h.world() {
                    w.record_data(h.index, None, true, &payload);
                }
                let taken = slot.borrow_mut().take();
                if let Some(mut p) = taken {
                    p.datagram_received(&payload, from);
                    *slot.borrow_mut() = Some(p);
                }
            });
        }
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
            let port = self.addr.port();
            let slot = lookup(&st, port);
            PORTS.with(|p| {
                p.borrow_mut().retain(|e| {
                    !(e.port == port && e.host.upgrade().is_some_and(|h| Rc::ptr_eq(&h, &st)))
                })
            });
            if let Some(slot) = slot {
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
    let transport = DatagramTransport::new(Rc::new(SimUdp {
        host: Rc::downgrade(&host.st),
        addr,
        max: max_packet_size,
        connected: RefCell::new(None),
    }));
    protocol.start_protocol(&transport);
    PORTS.with(|p| {
        p.borrow_mut().push(Port {
            host: Rc::downgrade(&host.st),
            port,
            protocol: Rc::new(RefCell::new(Some(protocol))),
        })
    });
    Ok(transport)
}
