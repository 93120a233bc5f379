//! Same-instant lost update: a counter server that reads its state when a request arrives
//! and writes it back one loop turn later (as if the write went through an asynchronous
//! store). Two requests that arrive at the same instant both read the old value, and one
//! increment is lost. The twin reads and writes in the same turn and answers a turn later.
//!
//! Nothing but the schedule is needed: no faults.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use torsion::protocol::{factory_fn, Protocol, Transport};
use torsion::protocols::basic::{LineBuffer, LineReceiver};
use torsion::reactor::ReactorTcpExt;
use torsion_sim::Sim;

use super::{Bug, Variant};

/// The bug's entry in the battery.
pub const BUG: Bug = Bug {
    name: "lost_update",
    body,
    swarm: None,
};

const CLIENTS: usize = 4;

struct Counter {
    lines: LineBuffer,
    value: Rc<Cell<u64>>,
    variant: Variant,
}

impl Protocol for Counter {
    fn connection_made(&mut self, t: &Transport) {
        self.lines.attach(t);
    }
    fn data_received(&mut self, data: &[u8]) {
        self.feed(data);
    }
}

impl LineReceiver for Counter {
    fn line_state(&mut self) -> &mut LineBuffer {
        &mut self.lines
    }
    fn line_received(&mut self, line: &[u8]) {
        if line != b"INCR" {
            self.lines.transport().lose_connection();
            return;
        }
        let t = self.lines.transport().clone();
        match self.variant {
            Variant::Buggy => {
                // Read now, write when the store comes back, a loop turn later.
                let read = self.value.get();
                t.call_soon(move |me: &mut Counter| {
                    me.value.set(read + 1);
                    me.send_line(format!("OK {}", read + 1).as_bytes());
                });
            }
            Variant::Twin => {
                let new = self.value.get() + 1;
                self.value.set(new);
                t.call_soon(move |me: &mut Counter| {
                    me.send_line(format!("OK {new}").as_bytes());
                });
            }
        }
    }
}

/// Sends one `INCR`, records the answer, closes.
struct Client {
    lines: LineBuffer,
    answers: Rc<RefCell<Vec<u64>>>,
}

impl Protocol for Client {
    fn connection_made(&mut self, t: &Transport) {
        self.lines.attach(t);
        self.send_line(b"INCR");
    }
    fn data_received(&mut self, data: &[u8]) {
        self.feed(data);
    }
}

impl LineReceiver for Client {
    fn line_state(&mut self) -> &mut LineBuffer {
        &mut self.lines
    }
    fn line_received(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        if let Some(n) = text.strip_prefix("OK ").and_then(|n| n.parse().ok()) {
            self.answers.borrow_mut().push(n);
        }
        self.lines.transport().lose_connection();
    }
}

fn body(sim: &Sim, variant: Variant) {
    let value = Rc::new(Cell::new(0u64));
    let v = value.clone();
    sim.host("server")
        .listen_tcp(
            7000,
            factory_fn(move |_| {
                Some(Box::new(Counter {
                    lines: LineBuffer::default(),
                    value: v.clone(),
                    variant,
                }) as Box<dyn Protocol>)
            }),
        )
        .expect("a fresh host listens");
    let answers: Rc<RefCell<Vec<u64>>> = Rc::default();
    for i in 0..CLIENTS {
        let a = answers.clone();
        sim.host(&format!("client{i}")).connect_tcp(
            "server",
            7000,
            factory_fn(move |_| {
                Some(Box::new(Client {
                    lines: LineBuffer::default(),
                    answers: a.clone(),
                }) as Box<dyn Protocol>)
            }),
        );
    }
    let (a, v) = (answers.clone(), value.clone());
    sim.invariant("every acknowledged increment is counted", move || {
        let acked = a.borrow();
        let mut seen = acked.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() < acked.len() {
            return Err(format!("two clients were told the same count: {acked:?}"));
        }
        if v.get() < acked.len() as u64 {
            return Err(format!(
                "counter is {} after {} acknowledged increments",
                v.get(),
                acked.len()
            ));
        }
        Ok(())
    });
    // Liveness holds on a perfect network; under a seed's faults (a crash of the server,
    // a reset) a client may rightly go unanswered.
    if sim.faults().is_none() {
        let a = answers.clone();
        sim.deadline(
            "every client is answered",
            Duration::from_secs(1),
            move || a.borrow().len() == CLIENTS,
        );
    }
    sim.run_until_idle();
}
