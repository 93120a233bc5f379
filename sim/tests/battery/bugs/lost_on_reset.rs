//! Message lost on reset between write and acknowledgment: a client with an outbox sends
//! one message every 200 ms and waits for each acknowledgment. The buggy client takes a
//! message off its outbox when it writes it, so if the connection resets before the
//! acknowledgment comes back, that message is never sent again. The twin removes a message
//! only when it is acknowledged, and resends the head of the outbox after reconnecting (the
//! server ignores duplicates).
//!
//! The bug needs a reset: a fault. Its swarm world: swarm over the two hosts and the workload's
//! span.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use torsion::defer::Failure;
use torsion::protocol::{
    factory_fn, Address, Backoff, ClientFactory, Connector, Factory, Protocol,
    ReconnectingClientFactory, Transport,
};
use torsion::protocols::basic::{LineBuffer, LineReceiver};
use torsion::reactor::ReactorTcpExt;
use torsion_sim::{Sim, SimBuilder};

use super::{quick_retry, Bug, Variant};

/// The bug's entry in the battery.
pub const BUG: Bug = Bug {
    name: "lost_on_reset",
    body,
    swarm: Some(swarm),
};

const MESSAGES: u64 = 10;
const EVERY: Duration = Duration::from_millis(200);

fn swarm() -> SimBuilder {
    Sim::builder().swarm(2, EVERY * MESSAGES as u32)
}

type Received = Rc<RefCell<BTreeSet<u64>>>;

struct Inbox {
    lines: LineBuffer,
    received: Received,
}

impl Protocol for Inbox {
    fn connection_made(&mut self, t: &Transport) {
        self.lines.attach(t);
    }
    fn data_received(&mut self, data: &[u8]) {
        self.feed(data);
    }
}

impl LineReceiver for Inbox {
    fn line_state(&mut self) -> &mut LineBuffer {
        &mut self.lines
    }
    fn line_received(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line).into_owned();
        match text
            .strip_prefix("MSG ")
            .and_then(|id| id.parse::<u64>().ok())
        {
            Some(id) => {
                self.received.borrow_mut().insert(id);
                self.send_line(format!("ACK {id}").as_bytes());
            }
            None => self.lines.transport().lose_connection(),
        }
    }
}

/// The client's durable outbox (it survives a crash of the client's host).
struct Outbox {
    queue: RefCell<VecDeque<u64>>,
    done: Cell<bool>,
}

struct Sender {
    lines: LineBuffer,
    outbox: Rc<Outbox>,
    backoff: Backoff,
    variant: Variant,
    /// The message written and not yet acknowledged.
    waiting: Option<u64>,
}

impl Sender {
    fn send_next(&mut self) {
        let next = match self.variant {
            Variant::Buggy => self.outbox.queue.borrow_mut().pop_front(),
            Variant::Twin => self.outbox.queue.borrow().front().copied(),
        };
        match next {
            Some(id) => {
                self.waiting = Some(id);
                self.send_line(format!("MSG {id}").as_bytes());
            }
            None => {
                self.outbox.done.set(true);
                self.backoff.stop_trying();
                self.lines.transport().lose_connection();
            }
        }
    }
}

impl Protocol for Sender {
    fn connection_made(&mut self, t: &Transport) {
        self.lines.attach(t);
        self.backoff.reset_delay();
        self.send_next();
    }
    fn data_received(&mut self, data: &[u8]) {
        self.feed(data);
    }
}

impl LineReceiver for Sender {
    fn line_state(&mut self) -> &mut LineBuffer {
        &mut self.lines
    }
    fn line_received(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line).into_owned();
        let acked = text
            .strip_prefix("ACK ")
            .and_then(|id| id.parse::<u64>().ok());
        if acked.is_none() || acked != self.waiting {
            return;
        }
        self.waiting = None;
        if self.variant == Variant::Twin {
            self.outbox.queue.borrow_mut().pop_front();
        }
        let t = self.lines.transport().clone();
        t.call_later(EVERY, |me: &mut Sender| me.send_next());
    }
}

struct SenderFactory {
    outbox: Rc<Outbox>,
    backoff: Backoff,
    variant: Variant,
}

impl Factory for SenderFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(Sender {
            lines: LineBuffer::default(),
            outbox: self.outbox.clone(),
            backoff: self.backoff.clone(),
            variant: self.variant,
            waiting: None,
        }))
    }
}

impl ClientFactory for SenderFactory {
    fn client_connection_lost(&self, _c: &Connector, _reason: Failure) {}
}

fn body(sim: &Sim, variant: Variant) {
    let received: Received = Rc::default();
    let r = received.clone();
    sim.host("server").start(move |h| {
        let r = r.clone();
        h.listen_tcp(
            7000,
            factory_fn(move |_| {
                Some(Box::new(Inbox {
                    lines: LineBuffer::default(),
                    received: r.clone(),
                }) as Box<dyn Protocol>)
            }),
        )
        .expect("the server listens");
    });
    let outbox = Rc::new(Outbox {
        queue: RefCell::new((0..MESSAGES).collect()),
        done: Cell::new(false),
    });
    let o = outbox.clone();
    sim.host("client").start(move |h| {
        let backoff = Backoff::with_policy(Rc::new(h.clone()), quick_retry());
        let inner = Rc::new(SenderFactory {
            outbox: o.clone(),
            backoff: backoff.clone(),
            variant,
        });
        h.connect_tcp(
            "server",
            7000,
            ReconnectingClientFactory::new(backoff, inner),
        );
    });
    let (o, r) = (outbox.clone(), received.clone());
    sim.invariant("a finished outbox was delivered in full", move || {
        if !o.done.get() {
            return Ok(());
        }
        let got = r.borrow();
        match (0..MESSAGES).find(|id| !got.contains(id)) {
            Some(id) => Err(format!("the client is done but message {id} never arrived")),
            None => Ok(()),
        }
    });
    if sim.faults().is_none() {
        let o = outbox.clone();
        // Each message waits `EVERY` after the previous one's answer, plus a round trip
        // of up to two latencies (10 ms each): allow twice the sending time.
        sim.deadline(
            "the outbox empties",
            EVERY * 2 * (MESSAGES as u32 + 1),
            move || o.done.get(),
        );
    }
    sim.run_until_idle();
}
