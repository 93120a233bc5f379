//! Stale read after reconnect: a feed server keeps a counter, bumps it every 100 ms and
//! pushes each change (`ADD 1`) to its subscribers. `SUB` subscribes and answers with the
//! current value in the same turn (so no change falls between the two); `WATCH` only
//! subscribes, for a reader that knows the value already. The buggy reader uses `WATCH`
//! after a reconnect, as if it had missed nothing: the changes made while it was
//! disconnected are never seen, and it reads a stale value for good. The twin subscribes
//! afresh on every connection.
//!
//! The bug needs a lost connection: a fault. Its swarm world: swarm over the three hosts and the
//! workload's span.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use torsion::defer::Failure;
use torsion::protocol::{
    factory_fn, Address, Backoff, ClientFactory, Connector, Factory, Protocol,
    ReconnectingClientFactory, Transport,
};
use torsion::protocols::basic::{LineBuffer, LineReceiver};
use torsion::reactor::{ReactorTcpExt, ReactorTimeExt};
use torsion_sim::{Host, Sim, SimBuilder, SimError};

use super::{quick_retry, Bug, Variant};

/// The bug's entry in the battery.
pub const BUG: Bug = Bug {
    name: "stale_read",
    body,
    swarm: Some(swarm),
};

const TICKS: u32 = 20;
const EVERY: Duration = Duration::from_millis(100);
const READERS: [&str; 2] = ["r1", "r2"];

fn swarm() -> SimBuilder {
    Sim::builder().swarm(3, EVERY * TICKS)
}

/// The feed's durable state.
#[derive(Default)]
struct Counter {
    value: Cell<i64>,
    ticks: Cell<u32>,
}

/// The feed process's subscribers: (reader name, connection).
type Subscribers = Rc<RefCell<Vec<(String, Transport)>>>;

struct Feed {
    lines: LineBuffer,
    counter: Rc<Counter>,
    subscribers: Subscribers,
}

impl Protocol for Feed {
    fn connection_made(&mut self, t: &Transport) {
        self.lines.attach(t);
    }
    fn data_received(&mut self, data: &[u8]) {
        self.feed(data);
    }
    fn connection_lost(&mut self, _reason: Failure) {
        let me = self.lines.transport().clone();
        self.subscribers
            .borrow_mut()
            .retain(|(_, t)| !t.ptr_eq(&me));
    }
}

impl LineReceiver for Feed {
    fn line_state(&mut self) -> &mut LineBuffer {
        &mut self.lines
    }
    fn line_received(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line).into_owned();
        if let Some(name) = text.strip_prefix("SUB ") {
            let t = self.lines.transport().clone();
            self.subscribers.borrow_mut().push((name.to_string(), t));
            let v = self.counter.value.get();
            self.send_line(format!("VALUE {v}").as_bytes());
        } else if let Some(name) = text.strip_prefix("WATCH ") {
            let t = self.lines.transport().clone();
            self.subscribers.borrow_mut().push((name.to_string(), t));
        } else {
            self.lines.transport().lose_connection();
        }
    }
}

/// Every 100 ms, while ticks remain: bump the counter and push the change.
fn tick(h: Host, counter: Rc<Counter>, subscribers: Subscribers) {
    if counter.ticks.get() >= TICKS {
        return;
    }
    counter.ticks.set(counter.ticks.get() + 1);
    counter.value.set(counter.value.get() + 1);
    for (_, t) in subscribers.borrow().iter() {
        t.write(b"ADD 1\r\n");
    }
    let h2 = h.clone();
    h.call_later(EVERY, move || tick(h2, counter, subscribers));
}

/// A reader process's state (a restarted reader starts with none of it).
#[derive(Default)]
struct Reader {
    cache: Cell<Option<i64>>,
    fetched: Cell<bool>,
}

struct ReaderClient {
    lines: LineBuffer,
    name: &'static str,
    reader: Rc<Reader>,
    backoff: Backoff,
    variant: Variant,
}

impl Protocol for ReaderClient {
    fn connection_made(&mut self, t: &Transport) {
        self.lines.attach(t);
        self.backoff.reset_delay();
        let resume = match self.variant {
            Variant::Buggy => self.reader.fetched.get(),
            Variant::Twin => false,
        };
        self.reader.fetched.set(true);
        let verb = if resume { "WATCH" } else { "SUB" };
        self.send_line(format!("{verb} {}", self.name).as_bytes());
    }
    fn data_received(&mut self, data: &[u8]) {
        self.feed(data);
    }
}

impl LineReceiver for ReaderClient {
    fn line_state(&mut self) -> &mut LineBuffer {
        &mut self.lines
    }
    fn line_received(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line).into_owned();
        let (verb, n) = text.split_once(' ').unwrap_or((&text, ""));
        let Ok(n) = n.parse::<i64>() else { return };
        match verb {
            "VALUE" => self.reader.cache.set(Some(n)),
            "ADD" => self
                .reader
                .cache
                .set(self.reader.cache.get().map(|c| c + n)),
            _ => {}
        }
    }
}

struct ReaderFactory {
    name: &'static str,
    reader: Rc<Reader>,
    backoff: Backoff,
    variant: Variant,
}

impl Factory for ReaderFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(ReaderClient {
            lines: LineBuffer::default(),
            name: self.name,
            reader: self.reader.clone(),
            backoff: self.backoff.clone(),
            variant: self.variant,
        }))
    }
}

impl ClientFactory for ReaderFactory {
    fn client_connection_lost(&self, _c: &Connector, _reason: Failure) {}
}

fn body(sim: &Sim, variant: Variant) {
    let counter: Rc<Counter> = Rc::default();
    let subscribers: Rc<RefCell<Subscribers>> = Rc::default();
    let (c, s) = (counter.clone(), subscribers.clone());
    sim.host("feed").start(move |h| {
        // A new process: no subscribers yet.
        let subs: Subscribers = Rc::default();
        *s.borrow_mut() = subs.clone();
        let (c2, subs2) = (c.clone(), subs.clone());
        h.listen_tcp(
            7000,
            factory_fn(move |_| {
                Some(Box::new(Feed {
                    lines: LineBuffer::default(),
                    counter: c2.clone(),
                    subscribers: subs2.clone(),
                }) as Box<dyn Protocol>)
            }),
        )
        .expect("the feed listens");
        let h2 = h.clone();
        let (c, subs) = (c.clone(), subs.clone());
        h.call_later(EVERY, move || tick(h2, c, subs));
    });
    let mut readers = Vec::new();
    for name in READERS {
        let reader: Rc<Reader> = Rc::default();
        let r = reader.clone();
        sim.host(name).start(move |h| {
            r.cache.set(None);
            r.fetched.set(false);
            let backoff = Backoff::with_policy(Rc::new(h.clone()), quick_retry());
            let inner = Rc::new(ReaderFactory {
                name,
                reader: r.clone(),
                backoff: backoff.clone(),
                variant,
            });
            h.connect_tcp("feed", 7000, ReconnectingClientFactory::new(backoff, inner));
        });
        readers.push((name, reader));
    }
    sim.run_until_idle();
    if !sim.errors().is_empty() {
        return;
    }
    // Quiet now: every subscribed reader must read the feed's value.
    let value = counter.value.get();
    for (name, _) in subscribers.borrow().borrow().iter() {
        let Some((_, reader)) = readers.iter().find(|(n, _)| n == name) else {
            continue;
        };
        let cached = reader.cache.get();
        if cached != Some(value) {
            sim.fail(SimError::Invariant {
                name: "a subscribed reader reads the latest value".into(),
                message: format!("{name} reads {cached:?}, the feed holds {value}"),
            });
            return;
        }
    }
}
