//! Split brain under partition: two nodes elect a leader through a lock server that grants
//! a 500 ms lease, renewed every 100 ms. The buggy node believes it leads from a grant until
//! it is told otherwise; cut off from the lock server, it never is, and the other node
//! takes the lease once it expires: two leaders. The twin counts its lease from when it
//! asked, with a safety margin, and stops leading when it runs out unrenewed.
//!
//! The bug needs a partition (or a reset with a slow reconnect): a fault. Its swarm world: swarm
//! over the three hosts and the workload's span.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use torsion::defer::Failure;
use torsion::protocol::{
    factory_fn, Address, Backoff, ClientFactory, Connector, Factory, Protocol,
    ReconnectingClientFactory, Transport,
};
use torsion::protocols::basic::{LineBuffer, LineReceiver};
use torsion::reactor::{Instant, ReactorTcpExt, ReactorTime, ReactorTimeExt};
use torsion_sim::{Host, Sim, SimBuilder};

use super::{quick_retry, Bug, Variant};

/// The bug's entry in the battery.
pub const BUG: Bug = Bug {
    name: "split_brain",
    body,
    swarm: Some(swarm),
};

const LEASE: Duration = Duration::from_millis(500);
const RENEW: Duration = Duration::from_millis(100);
const RUN: Duration = Duration::from_secs(4);
const NODES: [&str; 2] = ["n1", "n2"];

fn swarm() -> SimBuilder {
    Sim::builder().swarm(3, RUN)
}

/// The lock server's durable state: who holds the lease, until when (its own clock).
#[derive(Default)]
struct Lease {
    holder: Option<String>,
    expiry: Option<Instant>,
}

struct LockServer {
    lines: LineBuffer,
    lease: Rc<RefCell<Lease>>,
    clock: Host,
}

impl Protocol for LockServer {
    fn connection_made(&mut self, t: &Transport) {
        self.lines.attach(t);
    }
    fn data_received(&mut self, data: &[u8]) {
        self.feed(data);
    }
}

impl LineReceiver for LockServer {
    fn line_state(&mut self) -> &mut LineBuffer {
        &mut self.lines
    }
    fn line_received(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line).into_owned();
        let Some(name) = text.strip_prefix("ACQUIRE ") else {
            self.lines.transport().lose_connection();
            return;
        };
        let now = self.clock.seconds();
        let mut lease = self.lease.borrow_mut();
        let free = lease.expiry.is_none_or(|e| now >= e);
        let granted = free || lease.holder.as_deref() == Some(name);
        if granted {
            lease.holder = Some(name.to_string());
            lease.expiry = Some(now + LEASE);
        }
        drop(lease);
        self.send_line(if granted { b"GRANTED" } else { b"DENIED" });
    }
}

/// One node's process state (a restarted node starts with none of it).
#[derive(Default)]
struct Node {
    /// The buggy node's belief.
    leading: Cell<bool>,
    /// The twin's belief: it leads until then (its own clock).
    lease_until: Cell<Option<Instant>>,
    /// When the outstanding request was sent (its own clock).
    asked_at: Cell<Option<Instant>>,
    transport: RefCell<Option<Transport>>,
}

impl Node {
    fn reset(&self) {
        self.leading.set(false);
        self.lease_until.set(None);
        self.asked_at.set(None);
        *self.transport.borrow_mut() = None;
    }

    fn leads(&self, variant: Variant, now: Instant) -> bool {
        match variant {
            Variant::Buggy => self.leading.get(),
            Variant::Twin => self.lease_until.get().is_some_and(|u| now < u),
        }
    }
}

struct NodeClient {
    lines: LineBuffer,
    node: Rc<Node>,
    backoff: Backoff,
    variant: Variant,
}

impl Protocol for NodeClient {
    fn connection_made(&mut self, t: &Transport) {
        self.lines.attach(t);
        self.backoff.reset_delay();
        *self.node.transport.borrow_mut() = Some(t.clone());
    }
    fn data_received(&mut self, data: &[u8]) {
        self.feed(data);
    }
    fn connection_lost(&mut self, _reason: Failure) {
        *self.node.transport.borrow_mut() = None;
        self.node.asked_at.set(None);
    }
}

impl LineReceiver for NodeClient {
    fn line_state(&mut self) -> &mut LineBuffer {
        &mut self.lines
    }
    fn line_received(&mut self, line: &[u8]) {
        let Some(asked) = self.node.asked_at.take() else {
            return;
        };
        match line {
            b"GRANTED" => match self.variant {
                Variant::Buggy => self.node.leading.set(true),
                // The lock server started the lease after we asked: counting from the
                // request, less a margin for clock drift, is safe.
                Variant::Twin => self.node.lease_until.set(Some(asked + LEASE * 8 / 10)),
            },
            b"DENIED" => {
                self.node.leading.set(false);
                self.node.lease_until.set(None);
            }
            _ => {}
        }
    }
}

struct NodeFactory {
    node: Rc<Node>,
    backoff: Backoff,
    variant: Variant,
}

impl Factory for NodeFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(NodeClient {
            lines: LineBuffer::default(),
            node: self.node.clone(),
            backoff: self.backoff.clone(),
            variant: self.variant,
        }))
    }
}

impl ClientFactory for NodeFactory {
    fn client_connection_lost(&self, _c: &Connector, _reason: Failure) {}
}

/// Every 100 ms: ask for (or renew) the lease if nothing is outstanding; at the end of the
/// run, resign and disconnect.
fn tick(h: Host, node: Rc<Node>, backoff: Backoff, name: &'static str) {
    let now = h.seconds();
    if now.since_epoch() >= RUN {
        node.leading.set(false);
        node.lease_until.set(None);
        backoff.stop_trying();
        if let Some(t) = node.transport.borrow().as_ref() {
            t.lose_connection();
        }
        return;
    }
    if node.asked_at.get().is_none() {
        if let Some(t) = node.transport.borrow().as_ref() {
            node.asked_at.set(Some(now));
            t.write(format!("ACQUIRE {name}\r\n"));
        }
    }
    let h2 = h.clone();
    h.call_later(RENEW, move || tick(h2, node, backoff, name));
}

fn body(sim: &Sim, variant: Variant) {
    let lease: Rc<RefCell<Lease>> = Rc::default();
    let l = lease.clone();
    sim.host("lock").start(move |h| {
        let (l, clock) = (l.clone(), h.clone());
        h.listen_tcp(
            7000,
            factory_fn(move |_| {
                Some(Box::new(LockServer {
                    lines: LineBuffer::default(),
                    lease: l.clone(),
                    clock: clock.clone(),
                }) as Box<dyn Protocol>)
            }),
        )
        .expect("the lock server listens");
    });
    let mut nodes = Vec::new();
    for name in NODES {
        let node: Rc<Node> = Rc::default();
        let host = sim.host(name);
        let n = node.clone();
        host.start(move |h| {
            n.reset();
            let backoff = Backoff::with_policy(Rc::new(h.clone()), quick_retry());
            let inner = Rc::new(NodeFactory {
                node: n.clone(),
                backoff: backoff.clone(),
                variant,
            });
            h.connect_tcp(
                "lock",
                7000,
                ReconnectingClientFactory::new(backoff.clone(), inner),
            );
            tick(h.clone(), n.clone(), backoff, name);
        });
        nodes.push((host, node));
    }
    sim.invariant("at most one leader at a time", move || {
        let leaders: Vec<&str> = nodes
            .iter()
            .filter(|(h, n)| h.is_up() && n.leads(variant, h.seconds()))
            .map(|(h, _)| h.name())
            .collect();
        if leaders.len() > 1 {
            return Err(format!("{} lead at once", leaders.join(" and ")));
        }
        Ok(())
    });
    sim.run_until_idle();
}
