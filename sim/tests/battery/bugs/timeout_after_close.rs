//! Timeout firing after close: a server closes connections that stay idle for 300 ms. Its
//! idle timer is a plain reactor call, re-armed on every line and cancelled when the client
//! says `QUIT`, but the buggy server forgets it when the connection is lost any other way:
//! the timer then fires on a connection that is already gone. The twin cancels it in
//! `connection_lost`.
//!
//! The bug needs the connection to end without `QUIT`: a fault. Its swarm world: swarm over the two
//! hosts and the workload's span.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use torsion::defer::Failure;
use torsion::protocol::{factory_fn, Protocol, Transport};
use torsion::protocols::basic::{LineBuffer, LineReceiver};
use torsion::reactor::{DelayedCall, ReactorTcpExt, ReactorTime, ReactorTimeExt};
use torsion_sim::{Host, Sim, SimBuilder};

use super::{Bug, Variant};

/// The bug's entry in the battery.
pub const BUG: Bug = Bug {
    name: "timeout_after_close",
    body,
    swarm: Some(swarm),
};

const IDLE: Duration = Duration::from_millis(300);
const PINGS: u32 = 10;
const EVERY: Duration = Duration::from_millis(200);

fn swarm() -> SimBuilder {
    Sim::builder().swarm(2, EVERY * PINGS)
}

/// What happened to each connection, in order: (connection number, event).
type Log = Rc<RefCell<Vec<(u64, &'static str)>>>;

struct IdleServer {
    lines: LineBuffer,
    id: u64,
    reactor: Rc<dyn ReactorTime>,
    idle: Option<DelayedCall>,
    log: Log,
    variant: Variant,
}

impl IdleServer {
    fn rearm(&mut self) {
        if let Some(call) = self.idle.take() {
            let _ = call.cancel();
        }
        let (t, log, id) = (self.lines.transport().clone(), self.log.clone(), self.id);
        self.idle = Some(self.reactor.call_later(IDLE, move || {
            log.borrow_mut().push((id, "idle timeout"));
            t.lose_connection();
        }));
    }
}

impl Protocol for IdleServer {
    fn connection_made(&mut self, t: &Transport) {
        self.lines.attach(t);
        self.rearm();
    }
    fn data_received(&mut self, data: &[u8]) {
        self.feed(data);
    }
    fn connection_lost(&mut self, _reason: Failure) {
        self.log.borrow_mut().push((self.id, "closed"));
        if self.variant == Variant::Twin {
            if let Some(call) = self.idle.take() {
                let _ = call.cancel();
            }
        }
    }
}

impl LineReceiver for IdleServer {
    fn line_state(&mut self) -> &mut LineBuffer {
        &mut self.lines
    }
    fn line_received(&mut self, line: &[u8]) {
        if line == b"QUIT" {
            if let Some(call) = self.idle.take() {
                let _ = call.cancel();
            }
            self.send_line(b"BYE");
            self.lines.transport().lose_connection();
        } else {
            self.rearm();
            self.send_line(b"PONG");
        }
    }
}

/// Pings every 200 ms, then says `QUIT`.
#[derive(Default)]
struct Pinger {
    t: Transport,
    sent: u32,
}

impl Pinger {
    fn tick(&mut self) {
        if self.sent < PINGS {
            self.sent += 1;
            self.t.write(b"PING\r\n");
            self.t.call_later(EVERY, Pinger::tick);
        } else {
            self.t.write(b"QUIT\r\n");
        }
    }
}

impl Protocol for Pinger {
    fn connection_made(&mut self, t: &Transport) {
        self.t = t.clone();
        self.tick();
    }
    fn data_received(&mut self, _data: &[u8]) {}
}

fn body(sim: &Sim, variant: Variant) {
    let log: Log = Rc::default();
    let server = sim.host("server");
    let (l, h) = (log.clone(), server.clone());
    let next = Rc::new(std::cell::Cell::new(0u64));
    server
        .listen_tcp(
            7000,
            factory_fn(move |_| {
                next.set(next.get() + 1);
                Some(Box::new(IdleServer {
                    lines: LineBuffer::default(),
                    id: next.get(),
                    reactor: Rc::new(h.clone()) as Rc<dyn ReactorTime>,
                    idle: None,
                    log: l.clone(),
                    variant,
                }) as Box<dyn Protocol>)
            }),
        )
        .expect("a fresh host listens");
    let client: Host = sim.host("client");
    client.connect_tcp(
        "server",
        7000,
        factory_fn(|_| Some(Box::new(Pinger::default()) as Box<dyn Protocol>)),
    );
    let l = log.clone();
    sim.invariant("no idle timeout fires on a closed connection", move || {
        let log = l.borrow();
        for (i, (id, what)) in log.iter().enumerate() {
            if *what == "idle timeout" && log[..i].contains(&(*id, "closed")) {
                return Err(format!("connection {id} timed out after it was closed"));
            }
        }
        Ok(())
    });
    sim.run_until_idle();
}
