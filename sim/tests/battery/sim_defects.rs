//! Simulator defects the battery's twins found, each pinned by a direct test.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use torsion::defer::Failure;
use torsion::protocol::{factory_fn, ClientFactory, Protocol, Transport};
use torsion::reactor::ReactorTcpExt;
use torsion_sim::{Crash, Faults, Sim};

struct Counted {
    made: Rc<Cell<u32>>,
    lost: Rc<Cell<u32>>,
}

impl Protocol for Counted {
    fn connection_made(&mut self, _t: &Transport) {
        self.made.set(self.made.get() + 1);
    }
    fn data_received(&mut self, _data: &[u8]) {}
    fn connection_lost(&mut self, _reason: Failure) {
        self.lost.set(self.lost.get() + 1);
    }
}

fn counted(made: &Rc<Cell<u32>>, lost: &Rc<Cell<u32>>) -> Rc<dyn ClientFactory> {
    let (made, lost) = (made.clone(), lost.clone());
    factory_fn(move |_| {
        Some(Box::new(Counted {
            made: made.clone(),
            lost: lost.clone(),
        }) as Box<dyn Protocol>)
    })
}

/// A connection attempt in progress when its host crashes dies with the process: its
/// SYN-ACK, arriving after the host restarted, must not make a connection for the old
/// process's factory (the twins of `lost_on_reset` and `stale_read` then ran two clients
/// at once). The server's half is reset.
#[test]
fn a_connect_pending_at_a_crash_does_not_complete_after_restart() {
    let crash = Crash {
        at: Duration::from_millis(5),
        host: 1,
        restart_after: Some(Duration::from_millis(1)),
    };
    let sim = Sim::builder()
        .latency(Duration::from_millis(10), Duration::from_millis(10))
        .fragment(false)
        .faults(Faults {
            crashes: vec![crash],
            ..Faults::none()
        })
        .build();
    let (server_made, server_lost) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    sim.host("server")
        .listen_tcp(7000, counted(&server_made, &server_lost))
        .expect("a fresh host listens");
    let (made, lost) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    sim.host("client")
        .connect_tcp("server", 7000, counted(&made, &lost));
    sim.run_until_idle();
    assert!(sim.errors().is_empty(), "{:?}", sim.errors());
    assert_eq!(server_made.get(), 1, "the SYN reached the server");
    assert_eq!(made.get(), 0, "the crashed process's attempt completed");
    assert_eq!(server_lost.get(), 1, "the server's half is reset");
}
