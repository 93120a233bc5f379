//! Delimiter split across segments: a hand-rolled line parser that keeps a buffer but looks
//! for `\r\n` only in the bytes that just arrived. When the network splits a write between
//! the `\r` and the `\n`, the delimiter is never seen and two lines run together. The twin
//! is torsion's [`LineReceiver`], which searches the whole buffer.
//!
//! Nothing but the schedule is needed (fragmentation is on by default): no faults.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use torsion::protocol::{factory_fn, Protocol, Transport};
use torsion::protocols::basic::{LineBuffer, LineReceiver};
use torsion::reactor::ReactorTcpExt;
use torsion_sim::Sim;

use super::{Bug, Variant};

/// The bug's entry in the battery.
pub const BUG: Bug = Bug {
    name: "delimiter_split",
    body,
    swarm: None,
};

const LINES: usize = 10;

type Lines = Rc<RefCell<Vec<String>>>;

/// The planted bug: the delimiter is looked for in each chunk, not in the buffer.
struct ChunkParser {
    buf: Vec<u8>,
    got: Lines,
}

impl Protocol for ChunkParser {
    fn data_received(&mut self, data: &[u8]) {
        let mut rest = data;
        while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
            self.buf.extend_from_slice(&rest[..i]);
            let line = String::from_utf8_lossy(&self.buf).into_owned();
            self.got.borrow_mut().push(line);
            self.buf.clear();
            rest = &rest[i + 2..];
        }
        self.buf.extend_from_slice(rest);
    }
}

/// The twin: torsion's line receiver.
struct Collector {
    lines: LineBuffer,
    got: Lines,
}

impl Protocol for Collector {
    fn connection_made(&mut self, t: &Transport) {
        self.lines.attach(t);
    }
    fn data_received(&mut self, data: &[u8]) {
        self.feed(data);
    }
}

impl LineReceiver for Collector {
    fn line_state(&mut self) -> &mut LineBuffer {
        &mut self.lines
    }
    fn line_received(&mut self, line: &[u8]) {
        self.got
            .borrow_mut()
            .push(String::from_utf8_lossy(line).into_owned());
    }
}

/// Writes its lines, one write each, then closes.
struct Sender;

impl Protocol for Sender {
    fn connection_made(&mut self, t: &Transport) {
        for line in sent() {
            t.write(format!("{line}\r\n"));
        }
        t.lose_connection();
    }
    fn data_received(&mut self, _data: &[u8]) {}
}

fn sent() -> Vec<String> {
    (0..LINES).map(|i| format!("line {i}")).collect()
}

fn body(sim: &Sim, variant: Variant) {
    let got: Lines = Rc::default();
    let g = got.clone();
    sim.host("server")
        .listen_tcp(
            7000,
            factory_fn(move |_| {
                let got = g.clone();
                Some(match variant {
                    Variant::Buggy => Box::new(ChunkParser {
                        buf: Vec::new(),
                        got,
                    }) as Box<dyn Protocol>,
                    Variant::Twin => Box::new(Collector {
                        lines: LineBuffer::default(),
                        got,
                    }),
                })
            }),
        )
        .expect("a fresh host listens");
    sim.host("client").connect_tcp(
        "server",
        7000,
        factory_fn(|_| Some(Box::new(Sender) as Box<dyn Protocol>)),
    );
    let want = sent();
    let g = got.clone();
    sim.invariant("lines arrive as sent", move || {
        match g.borrow().iter().zip(&want).find(|(a, b)| a != b) {
            Some((a, b)) => Err(format!("got {a:?}, expected {b:?}")),
            None => Ok(()),
        }
    });
    // Liveness holds on a perfect network; a seed's faults may rightly lose lines.
    if sim.faults().is_none() {
        let g = got.clone();
        sim.deadline("every line arrives", Duration::from_secs(1), move || {
            g.borrow().len() == LINES
        });
    }
    sim.run_until_idle();
}
