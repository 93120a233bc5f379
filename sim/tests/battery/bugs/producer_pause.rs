//! A producer that ignores pause: a server streams 256 KiB to a slow reader, 4 KiB per
//! millisecond, registered as a streaming producer. The buggy producer ignores
//! `pause_producing`, so the connection's write buffer grows with everything the reader has
//! not yet taken: memory without bound, for a big enough stream. The twin stops on pause and
//! goes on when resumed.
//!
//! Nothing but the schedule is needed: no faults.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use torsion::protocol::{factory_fn, Producer, Protocol, Transport, HIGH_WATER_MARK};
use torsion::reactor::ReactorTcpExt;
use torsion_sim::Sim;

use super::{Bug, Variant};

/// The bug's entry in the battery.
pub const BUG: Bug = Bug {
    name: "producer_pause",
    body,
    swarm: None,
};

const CHUNK: usize = 4 * 1024;
const CHUNKS: usize = 64;
const EVERY: Duration = Duration::from_millis(1);
/// The reader takes 10 µs per byte (100 kB/s).
const PER_BYTE: Duration = Duration::from_micros(10);

struct Source {
    t: Transport,
    /// Every source's connection, for the invariant.
    all: Rc<RefCell<Vec<Transport>>>,
    sent: usize,
    paused: bool,
    ticking: bool,
    variant: Variant,
}

impl Source {
    fn schedule(&mut self) {
        if !self.ticking {
            self.ticking = true;
            self.t.call_later(EVERY, Source::tick);
        }
    }

    fn tick(&mut self) {
        self.ticking = false;
        if self.paused {
            return;
        }
        self.t.write(vec![b'x'; CHUNK]);
        self.sent += 1;
        if self.sent == CHUNKS {
            self.t.unregister_producer();
            self.t.lose_connection();
        } else {
            self.schedule();
        }
    }
}

impl Protocol for Source {
    fn connection_made(&mut self, t: &Transport) {
        self.t = t.clone();
        self.all.borrow_mut().push(t.clone());
        t.register_producer(Producer::Protocol { streaming: true })
            .expect("a fresh connection has no producer");
        self.schedule();
    }
    fn data_received(&mut self, _data: &[u8]) {}
    fn pause_producing(&mut self) {
        if self.variant == Variant::Twin {
            self.paused = true;
        }
    }
    fn resume_producing(&mut self) {
        if self.variant == Variant::Twin {
            self.paused = false;
            self.schedule();
        }
    }
}

/// Reads slowly: after each delivery, stops reading for as long as it takes to digest it.
#[derive(Default)]
struct SlowSink {
    t: Transport,
    got: Rc<Cell<usize>>,
}

impl Protocol for SlowSink {
    fn connection_made(&mut self, t: &Transport) {
        self.t = t.clone();
    }
    fn data_received(&mut self, data: &[u8]) {
        self.got.set(self.got.get() + data.len());
        self.t.pause_producing();
        self.t
            .call_later(PER_BYTE * data.len() as u32, |me: &mut SlowSink| {
                me.t.resume_producing()
            });
    }
}

fn body(sim: &Sim, variant: Variant) {
    let sources: Rc<RefCell<Vec<Transport>>> = Rc::default();
    let s = sources.clone();
    sim.host("server")
        .listen_tcp(
            7000,
            factory_fn(move |_| {
                Some(Box::new(Source {
                    t: Transport::default(),
                    all: s.clone(),
                    sent: 0,
                    paused: false,
                    ticking: false,
                    variant,
                }) as Box<dyn Protocol>)
            }),
        )
        .expect("a fresh host listens");
    let got = Rc::new(Cell::new(0));
    let g = got.clone();
    sim.host("client").connect_tcp(
        "server",
        7000,
        factory_fn(move |_| {
            Some(Box::new(SlowSink {
                t: Transport::default(),
                got: g.clone(),
            }) as Box<dyn Protocol>)
        }),
    );
    let s = sources.clone();
    sim.invariant("the write buffer stays bounded", move || {
        for t in s.borrow().iter() {
            if t.buffered() > 2 * HIGH_WATER_MARK {
                return Err(format!("{} bytes buffered", t.buffered()));
            }
        }
        Ok(())
    });
    // Liveness holds on a perfect network; a seed's faults may rightly cut the stream.
    if sim.faults().is_none() {
        let g = got.clone();
        sim.deadline("the stream arrives", Duration::from_secs(10), move || {
            g.get() == CHUNK * CHUNKS
        });
    }
    sim.run_until_idle();
}
