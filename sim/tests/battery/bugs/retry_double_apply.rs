//! Retry double-apply with a slow answer: a client deposits money every half second and, if
//! no answer comes within a second, sends the deposit again. The buggy protocol's request
//! carries no identity, so a slow (not lost) answer makes the server apply the deposit
//! twice. The twin tags each deposit with an id the server remembers, so a retry is answered
//! again without being applied again.
//!
//! The bug needs an answer slower than the timeout: a fault. Its swarm world: swarm over the two
//! hosts and the workload's span.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use torsion::defer::Failure;
use torsion::protocol::{
    factory_fn, Address, Backoff, ClientFactory, Connector, Factory, Protocol,
    ReconnectingClientFactory, Transport,
};
use torsion::protocols::basic::{LineBuffer, LineReceiver};
use torsion::reactor::{DelayedCall, ReactorTcpExt};
use torsion_sim::{Sim, SimBuilder};

use super::{quick_retry, Bug, Variant};

/// The bug's entry in the battery.
pub const BUG: Bug = Bug {
    name: "retry_double_apply",
    body,
    swarm: Some(swarm),
};

const DEPOSITS: u64 = 6;
const AMOUNT: i64 = 10;
const EVERY: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_secs(1);

fn swarm() -> SimBuilder {
    Sim::builder().swarm(2, EVERY * DEPOSITS as u32)
}

/// The server's durable state (it survives a crash of the server's host).
#[derive(Default)]
struct Ledger {
    balance: i64,
    applied: BTreeSet<u64>,
}

struct Bank {
    lines: LineBuffer,
    ledger: Rc<RefCell<Ledger>>,
    variant: Variant,
}

impl Protocol for Bank {
    fn connection_made(&mut self, t: &Transport) {
        self.lines.attach(t);
    }
    fn data_received(&mut self, data: &[u8]) {
        self.feed(data);
    }
}

impl LineReceiver for Bank {
    fn line_state(&mut self) -> &mut LineBuffer {
        &mut self.lines
    }
    fn line_received(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line).into_owned();
        let parts: Vec<&str> = text.split(' ').collect();
        let answer = match (self.variant, parts.as_slice()) {
            (Variant::Buggy, ["DEPOSIT", amount]) => {
                self.ledger.borrow_mut().balance += amount.parse::<i64>().unwrap_or(0);
                "OK".to_string()
            }
            (Variant::Twin, ["DEPOSIT", id, amount]) => {
                let id: u64 = id.parse().unwrap_or(u64::MAX);
                let mut ledger = self.ledger.borrow_mut();
                if ledger.applied.insert(id) {
                    ledger.balance += amount.parse::<i64>().unwrap_or(0);
                }
                format!("OK {id}")
            }
            _ => {
                self.lines.transport().lose_connection();
                return;
            }
        };
        self.send_line(answer.as_bytes());
    }
}

/// The client's durable progress: how many deposits are acknowledged, how many begun.
#[derive(Default)]
struct Journal {
    acked: Cell<u64>,
    begun: Cell<u64>,
}

struct Depositor {
    lines: LineBuffer,
    journal: Rc<Journal>,
    backoff: Backoff,
    variant: Variant,
    timeout: Option<DelayedCall>,
}

impl Depositor {
    fn request(&self, id: u64) -> String {
        match self.variant {
            Variant::Buggy => format!("DEPOSIT {AMOUNT}"),
            Variant::Twin => format!("DEPOSIT {id} {AMOUNT}"),
        }
    }

    /// Sends the current deposit (again, if it was sent before) and arms the timeout.
    fn send_current(&mut self) {
        let id = self.journal.acked.get();
        if id >= DEPOSITS {
            self.backoff.stop_trying();
            self.lines.transport().lose_connection();
            return;
        }
        self.journal.begun.set(self.journal.begun.get().max(id + 1));
        let req = self.request(id);
        self.send_line(req.as_bytes());
        let t = self.lines.transport().clone();
        self.timeout = Some(t.call_later(TIMEOUT, |me: &mut Depositor| {
            me.timeout = None;
            me.send_current();
        }));
    }
}

impl Protocol for Depositor {
    fn connection_made(&mut self, t: &Transport) {
        self.lines.attach(t);
        self.backoff.reset_delay();
        self.send_current();
    }
    fn data_received(&mut self, data: &[u8]) {
        self.feed(data);
    }
}

impl LineReceiver for Depositor {
    fn line_state(&mut self) -> &mut LineBuffer {
        &mut self.lines
    }
    fn line_received(&mut self, line: &[u8]) {
        let id = self.journal.acked.get();
        let expected = match self.variant {
            Variant::Buggy => "OK".to_string(),
            Variant::Twin => format!("OK {id}"),
        };
        if line != expected.as_bytes() {
            return; // a stale answer to an earlier deposit
        }
        if let Some(call) = self.timeout.take() {
            let _ = call.cancel();
        }
        self.journal.acked.set(id + 1);
        let t = self.lines.transport().clone();
        t.call_later(EVERY, |me: &mut Depositor| me.send_current());
    }
}

struct DepositorFactory {
    journal: Rc<Journal>,
    backoff: Backoff,
    variant: Variant,
}

impl Factory for DepositorFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(Depositor {
            lines: LineBuffer::default(),
            journal: self.journal.clone(),
            backoff: self.backoff.clone(),
            variant: self.variant,
            timeout: None,
        }))
    }
}

impl ClientFactory for DepositorFactory {
    fn client_connection_lost(&self, _c: &Connector, _reason: Failure) {}
}

fn body(sim: &Sim, variant: Variant) {
    let ledger: Rc<RefCell<Ledger>> = Rc::default();
    let l = ledger.clone();
    sim.host("bank").start(move |h| {
        let l = l.clone();
        h.listen_tcp(
            7000,
            factory_fn(move |_| {
                Some(Box::new(Bank {
                    lines: LineBuffer::default(),
                    ledger: l.clone(),
                    variant,
                }) as Box<dyn Protocol>)
            }),
        )
        .expect("the bank listens");
    });
    let journal: Rc<Journal> = Rc::default();
    let j = journal.clone();
    sim.host("client").start(move |h| {
        let backoff = Backoff::with_policy(Rc::new(h.clone()), quick_retry());
        let inner = Rc::new(DepositorFactory {
            journal: j.clone(),
            backoff: backoff.clone(),
            variant,
        });
        h.connect_tcp("bank", 7000, ReconnectingClientFactory::new(backoff, inner));
    });
    let (l, j) = (ledger.clone(), journal.clone());
    sim.invariant("no deposit is applied twice", move || {
        let balance = l.borrow().balance;
        let most = AMOUNT * j.begun.get() as i64;
        if balance > most {
            return Err(format!(
                "balance {balance} after {} deposits of {AMOUNT}",
                j.begun.get()
            ));
        }
        Ok(())
    });
    if sim.faults().is_none() {
        let j = journal.clone();
        sim.deadline(
            "every deposit is acknowledged",
            EVERY * (DEPOSITS as u32 + 1),
            move || j.acked.get() == DEPOSITS,
        );
    }
    sim.run_until_idle();
}
