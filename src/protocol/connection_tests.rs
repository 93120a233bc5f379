//! Connection behaviour, exercised through the in-memory pump.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::defer::{Deferred, Failure};
use crate::error::{CancelledError, ConnectionAborted, ConnectionDone, ConnectionLost, Panicked};
use crate::protocol::{Producer, ProducerError, Protocol, PushProducer, Transport};
use crate::testing::{connect, Clock, IOPump};

type Log = Rc<RefCell<Vec<String>>>;

/// Records everything that happens to it; can be told to echo, panic, or half-close.
#[derive(Default)]
struct Probe {
    t: Transport,
    log: Log,
    got: Vec<u8>,
    echo: bool,
    panic_on_data: bool,
    half: bool,
    /// With `half`: answer the peer's EOF by shutting the write side only.
    shut_write_on_eof: bool,
    ticks: u32,
}

impl Probe {
    fn new(log: &Log) -> Self {
        Probe {
            log: log.clone(),
            ..Default::default()
        }
    }
    fn push(&self, s: impl Into<String>) {
        self.log.borrow_mut().push(s.into());
    }
}

impl Protocol for Probe {
    fn connection_made(&mut self, t: &Transport) {
        self.t = t.clone();
        self.push("made");
    }
    fn data_received(&mut self, data: &[u8]) {
        assert!(!self.panic_on_data, "boom in data_received");
        self.got.extend_from_slice(data);
        if self.echo {
            self.t.write(data);
        }
    }
    fn connection_lost(&mut self, reason: Failure) {
        let peer = self.t.get_peer();
        self.push(format!("lost: {reason} (peer {peer})"));
    }
    fn half_close(&self) -> bool {
        self.half
    }
    fn read_connection_lost(&mut self) {
        self.push("read lost");
        self.t.write(b"bye");
        if self.shut_write_on_eof {
            self.t.lose_write_connection();
        } else {
            self.t.lose_connection();
        }
    }
    fn write_connection_lost(&mut self) {
        self.push("write lost");
    }
    fn pause_producing(&mut self) {
        self.push("pause");
    }
    fn resume_producing(&mut self) {
        self.push("resume");
    }
    fn stop_producing(&mut self) {
        self.push("stop");
    }
}

fn pair(server: Probe, client: Probe) -> IOPump {
    connect(&Clock::new(), Box::new(server), Box::new(client))
}

fn logs() -> (Log, Log) {
    (Rc::default(), Rc::default())
}

#[test]
fn test_data_round_trip_with_fragmentation() {
    let (sl, cl) = logs();
    let server = Probe {
        echo: true,
        ..Probe::new(&sl)
    };
    let pump = pair(server, Probe::new(&cl));
    pump.set_chunk_size(3);
    pump.client().transport().write(b"hello, world");
    pump.flush();
    let got = pump.with_client(|c: &mut Probe| c.got.clone()).unwrap();
    assert_eq!(got, b"hello, world");
    assert!(
        pump.log()
            .iter()
            .filter(|l| l.starts_with("client -> server"))
            .count()
            >= 4
    );
}

#[test]
fn test_lose_connection_flushes_then_closes_both_ends() {
    let (sl, cl) = logs();
    let pump = pair(Probe::new(&sl), Probe::new(&cl));
    let t = pump.server().transport();
    t.write(b"last words");
    t.lose_connection();
    assert!(t.disconnecting());
    t.write(b" ignored"); // writes after close are dropped
    pump.flush();
    assert_eq!(
        pump.with_client(|c: &mut Probe| c.got.clone()).unwrap(),
        b"last words"
    );
    assert_eq!(
        sl.borrow().last().unwrap(),
        "lost: connection was closed cleanly (peer tcp:10.0.0.2:40000)"
    );
    assert!(cl
        .borrow()
        .last()
        .unwrap()
        .starts_with("lost: connection was closed cleanly"));
}

#[test]
fn test_abort_drops_buffer_and_reports_aborted_on_a_later_turn() {
    let (sl, cl) = logs();
    let pump = pair(Probe::new(&sl), Probe::new(&cl));
    let t = pump.server().transport();
    t.write(b"never sent");
    t.abort_connection();
    // Not synchronous: connection_lost has not been called yet.
    assert_eq!(*sl.borrow(), vec!["made"]);
    pump.flush();
    assert!(pump.with_client(|c: &mut Probe| c.got.is_empty()).unwrap());
    assert!(sl.borrow()[1].contains(&ConnectionAborted.to_string()));
    assert!(cl.borrow()[1].contains("connection reset by peer"));
}

#[test]
fn test_panic_in_protocol_loses_only_that_connection() {
    let (sl, cl) = logs();
    let server = Probe {
        panic_on_data: true,
        ..Probe::new(&sl)
    };
    let pump = pair(server, Probe::new(&cl));
    let (ol, ocl) = logs();
    let other = pair(
        Probe {
            echo: true,
            ..Probe::new(&ol)
        },
        Probe::new(&ocl),
    );
    pump.client().transport().write(b"trigger");
    other.client().transport().write(b"fine");
    pump.flush();
    other.flush();
    let lost = sl.borrow()[1].clone();
    assert!(lost.contains("panicked: boom in data_received"), "{lost}");
    assert!(pump.server().is_closed() && pump.client().is_closed());
    assert_eq!(
        other.with_client(|c: &mut Probe| c.got.clone()).unwrap(),
        b"fine"
    );
    assert!(!other.server().is_closed());
}

#[test]
fn test_panic_reason_is_typed() {
    let (sl, cl) = logs();
    let reason: Rc<RefCell<Option<Failure>>> = Rc::default();
    struct Catch(Rc<RefCell<Option<Failure>>>);
    impl Protocol for Catch {
        fn data_received(&mut self, _d: &[u8]) {
            panic!("typed");
        }
        fn connection_lost(&mut self, r: Failure) {
            *self.0.borrow_mut() = Some(r);
        }
    }
    let _ = (sl, &cl);
    let pump = connect(
        &Clock::new(),
        Box::new(Catch(reason.clone())),
        Box::new(Probe::new(&cl)),
    );
    pump.client().transport().write(b"x");
    pump.flush();
    let r = reason.borrow().clone().expect("connection_lost called");
    assert_eq!(r.downcast_ref::<Panicked>().unwrap().message, "typed");
}

#[test]
fn test_scoped_call_later_gets_the_protocol_and_is_cancelled_on_loss() {
    let (sl, cl) = logs();
    let pump = pair(Probe::new(&sl), Probe::new(&cl));
    let t = pump.server().transport();
    t.call_later(Duration::from_secs(1), |p: &mut Probe| p.ticks += 1);
    let later = t.call_later(Duration::from_secs(5), |p: &mut Probe| p.ticks += 100);
    pump.advance(Duration::from_secs(1));
    assert_eq!(pump.with_server(|p: &mut Probe| p.ticks).unwrap(), 1);
    t.lose_connection();
    pump.flush();
    assert!(
        !later.active(),
        "scoped calls are cancelled when the connection is lost"
    );
    pump.advance(Duration::from_secs(10));
    assert_eq!(pump.with_server(|p: &mut Probe| p.ticks).unwrap(), 1);
}

#[test]
fn test_when_fired_runs_on_a_later_turn() {
    let (sl, cl) = logs();
    let pump = pair(Probe::new(&sl), Probe::new(&cl));
    let t = pump.server().transport();
    let d = Deferred::<u32>::new();
    let out = t.when_fired(d.clone(), |p: &mut Probe, r: Result<u32, Failure>| {
        p.ticks = r.unwrap();
        "done"
    });
    d.callback(7).unwrap();
    assert!(
        !out.called(),
        "never inside the code that fired the Deferred"
    );
    pump.flush();
    assert_eq!(pump.with_server(|p: &mut Probe| p.ticks).unwrap(), 7);
    assert_eq!(out.result().unwrap().ok(), Some("done"));
}

#[test]
fn test_when_fired_after_connection_lost_fails_with_cancelled() {
    let (sl, cl) = logs();
    let pump = pair(Probe::new(&sl), Probe::new(&cl));
    let t = pump.server().transport();
    let d = Deferred::<u32>::new();
    let out = t.when_fired(d.clone(), |p: &mut Probe, _r| p.ticks = 1);
    t.abort_connection();
    pump.flush();
    d.callback(1).unwrap();
    pump.flush();
    assert!(out.result().unwrap().unwrap_err().is::<CancelledError>());
    assert_eq!(pump.with_server(|p: &mut Probe| p.ticks).unwrap(), 0);
}

struct Flood {
    t: Transport,
    log: Log,
    paused: Rc<RefCell<bool>>,
}

impl PushProducer for Flood {
    fn pause_producing(&mut self) {
        *self.paused.borrow_mut() = true;
        self.log
            .borrow_mut()
            .push(format!("pause at {}", self.t.buffered()));
    }
    fn resume_producing(&mut self) {
        *self.paused.borrow_mut() = false;
        self.log
            .borrow_mut()
            .push(format!("resume at {}", self.t.buffered()));
    }
    fn stop_producing(&mut self) {
        self.log.borrow_mut().push("stop".into());
    }
}

#[test]
fn test_streaming_producer_paused_at_high_water_and_resumed_when_drained() {
    let (sl, cl) = logs();
    let pump = pair(Probe::new(&sl), Probe::new(&cl));
    let t = pump.server().transport();
    let plog: Log = Rc::default();
    let paused = Rc::new(RefCell::new(false));
    t.register_producer(Producer::Push(Box::new(Flood {
        t: t.clone(),
        log: plog.clone(),
        paused: paused.clone(),
    })))
    .unwrap();
    assert_eq!(
        t.register_producer(Producer::Protocol { streaming: true }),
        Err(ProducerError::AlreadyRegistered)
    );
    // The reader stops reading: the writer's buffer fills.
    pump.client().transport().pause_producing();
    for _ in 0..100 {
        t.write([0u8; 1024]);
    }
    pump.flush();
    assert!(*paused.borrow(), "paused once past 64 KiB");
    assert_eq!(
        t.buffered(),
        100 * 1024,
        "nothing moves while the reader is paused"
    );
    pump.client().transport().resume_producing();
    pump.flush();
    assert!(!*paused.borrow());
    assert_eq!(*plog.borrow(), vec!["pause at 102400", "resume at 0"]);
    t.lose_connection();
    pump.flush();
    assert!(
        !pump.server().is_closed(),
        "lose waits for the producer to unregister"
    );
    t.unregister_producer();
    pump.flush();
    assert!(pump.server().is_closed());
    assert_eq!(
        pump.with_client(|c: &mut Probe| c.got.len()).unwrap(),
        100 * 1024
    );
}

#[test]
fn test_pull_producer_resumed_each_time_buffer_empties() {
    let (sl, cl) = logs();
    let pump = pair(Probe::new(&sl), Probe::new(&cl));
    let t = pump.server().transport();
    t.register_producer(Producer::Protocol { streaming: false })
        .unwrap();
    pump.flush();
    assert_eq!(sl.borrow().iter().filter(|l| *l == "resume").count(), 1);
    t.write(b"chunk");
    pump.flush();
    assert_eq!(sl.borrow().iter().filter(|l| *l == "resume").count(), 2);
    t.abort_connection();
    pump.flush();
    assert!(
        sl.borrow().contains(&"stop".to_string()),
        "stop_producing on loss"
    );
}

#[test]
fn test_half_close_delivers_read_connection_lost() {
    let (sl, cl) = logs();
    let server = Probe {
        half: true,
        ..Probe::new(&sl)
    };
    let client = Probe {
        half: true,
        ..Probe::new(&cl)
    };
    let pump = pair(server, client);
    let ct = pump.client().transport();
    ct.write(b"request");
    ct.lose_write_connection();
    pump.flush();
    assert!(sl.borrow().contains(&"read lost".to_string()));
    assert!(cl.borrow().contains(&"write lost".to_string()));
    // The server could still answer after the client's half-close.
    assert_eq!(
        pump.with_client(|c: &mut Probe| c.got.clone()).unwrap(),
        b"bye"
    );
    assert!(pump.server().is_closed() && pump.client().is_closed());
    assert_eq!(
        pump.with_server(|s: &mut Probe| s.got.clone()).unwrap(),
        b"request"
    );
}

/// The server answers the client's half-close by shutting its own write side: each end is
/// done once both directions are shut, also the end whose EOF came first.
#[test]
fn test_half_close_both_directions_closes_both_ends() {
    let (sl, cl) = logs();
    let server = Probe {
        half: true,
        shut_write_on_eof: true,
        ..Probe::new(&sl)
    };
    let client = Probe {
        half: true,
        ..Probe::new(&cl)
    };
    let pump = pair(server, client);
    let ct = pump.client().transport();
    ct.write(b"request");
    ct.lose_write_connection();
    pump.flush();
    assert!(pump.server().is_closed(), "server log: {:?}", sl.borrow());
    assert!(pump.client().is_closed(), "client log: {:?}", cl.borrow());
    assert!(sl
        .borrow()
        .last()
        .unwrap()
        .contains(&ConnectionDone.to_string()));
    assert_eq!(
        pump.with_client(|c: &mut Probe| c.got.clone()).unwrap(),
        b"bye"
    );
}

#[test]
fn test_peer_close_without_half_close_is_connection_done() {
    let (sl, cl) = logs();
    let pump = pair(Probe::new(&sl), Probe::new(&cl));
    pump.client().transport().lose_write_connection();
    pump.flush();
    assert!(sl.borrow()[1].contains(&ConnectionDone.to_string()));
    let _ = ConnectionLost::new("unused");
}

const KIB: usize = 1024;

/// The client sends 200 KiB to an echoing server while reading nothing, 16 KiB per step.
fn flood_a_server_that_echoes(server_setup: impl FnOnce(&Transport)) -> (IOPump, Log) {
    let (sl, cl) = logs();
    let server = Probe {
        echo: true,
        ..Probe::new(&sl)
    };
    let pump = pair(server, Probe::new(&cl));
    server_setup(&pump.server().transport());
    pump.set_chunk_size(16 * KIB);
    let client = pump.client().transport();
    client.pause_producing();
    client.write(vec![b'x'; 200 * KIB]);
    pump.flush();
    (pump, sl)
}

#[test]
fn test_read_backpressure_stops_reading_above_high_water_until_low_water() {
    let (pump, _) = flood_a_server_that_echoes(|_| {});
    // The server read until its own output passed 64 KiB (five 16 KiB reads), then stopped:
    // the rest waits in the client's buffer, not in the server's.
    let server_got = || pump.with_server(|p: &mut Probe| p.got.len()).unwrap();
    assert_eq!(server_got(), 80 * KIB);
    assert!(pump.server().reading_paused());
    assert_eq!(pump.server().pending_output(), 80 * KIB);
    assert_eq!(pump.client().pending_output(), 120 * KIB);
    // The client reads again: the server's output drains, and only once it is down to the
    // low-water mark is the server read again.
    pump.client().transport().resume_producing();
    for _ in 0..3 {
        pump.pump();
        assert_eq!(server_got(), 80 * KIB, "still above the low-water mark");
    }
    assert_eq!(pump.server().pending_output(), 32 * KIB);
    // The next step drains it to 16 KiB, and the same step reads the server again.
    pump.pump();
    assert_eq!(server_got(), 96 * KIB);
    pump.flush();
    assert_eq!(server_got(), 200 * KIB);
    assert_eq!(
        pump.with_client(|c: &mut Probe| c.got.len()).unwrap(),
        200 * KIB,
        "every byte echoed back"
    );
}

#[test]
fn test_read_backpressure_can_be_switched_off_for_a_connection() {
    let (pump, _) = flood_a_server_that_echoes(|t| t.set_read_backpressure(false));
    assert_eq!(
        pump.with_server(|p: &mut Probe| p.got.len()).unwrap(),
        200 * KIB
    );
    assert_eq!(pump.server().pending_output(), 200 * KIB);
    // Switched on again with the buffer above the mark: reading stops at once.
    pump.server().transport().set_read_backpressure(true);
    assert!(pump.server().reading_paused());
    pump.server().transport().set_read_backpressure(false);
    assert!(!pump.server().reading_paused());
}

#[test]
fn test_connecting_end_has_no_read_backpressure() {
    let (sl, cl) = logs();
    let pump = pair(Probe::new(&sl), Probe::new(&cl));
    pump.client().transport().write(vec![0u8; 100 * KIB]);
    pump.server().transport().write(vec![0u8; 100 * KIB]);
    assert!(!pump.client().reading_paused(), "the end that connected");
    assert!(pump.server().reading_paused(), "the end that accepted");
}

#[test]
fn test_wake_when_read_backpressure_lifts() {
    let wakes = Rc::new(std::cell::Cell::new(0u32));
    let w = wakes.clone();
    let addr = crate::protocol::Address::tcp(std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
    let conn = crate::protocol::Connection::new(
        Rc::new(Clock::new()),
        Rc::new(move || w.set(w.get() + 1)),
        addr,
        addr,
        Box::new(Probe::default()),
    );
    conn.make_connection();
    conn.transport().write(vec![0u8; 100 * KIB]);
    assert!(conn.reading_paused());
    let before = wakes.get();
    conn.consume_output(80 * KIB);
    assert!(
        conn.reading_paused(),
        "20 KiB left: above the low-water mark"
    );
    assert_eq!(wakes.get(), before);
    conn.consume_output(4 * KIB);
    assert!(!conn.reading_paused());
    assert_eq!(
        wakes.get(),
        before + 1,
        "the driver is told to deliver held input"
    );
}
