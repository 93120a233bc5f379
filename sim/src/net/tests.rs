//! The link layer's rules, one test each: what a user sees of partitions, resets,
//! refusals, delays, datagram loss, duplication and order, and flow control.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use torsion::defer::Failure;
use torsion::protocol::{Address, ClientFactory, Connector, Factory, Protocol, Transport};
use torsion::reactor::{
    DatagramProtocol, DatagramTransport, ReactorTcp, ReactorTcpExt, ReactorTime, ReactorTimeExt,
    ReactorUdpExt,
};

use crate::faults::{Faults, Partition};
use crate::host::Host;
use crate::world::{Config, Sim};

const MS: u64 = 1_000_000;

type Log = Rc<RefCell<Vec<String>>>;

/// Records what happens to a connection, with the host's time in milliseconds; writes
/// `send` after `after` once connected.
struct Probe {
    host: Host,
    log: Log,
    send: Vec<u8>,
    after: Duration,
    t: Transport,
}

impl Probe {
    fn note(&self, what: String) {
        let ms = self.host.seconds().as_nanos() / MS;
        self.log.borrow_mut().push(format!("{ms}ms {what}"));
    }
}

impl Protocol for Probe {
    fn connection_made(&mut self, t: &Transport) {
        self.t = t.clone();
        self.note("made".into());
        if !self.send.is_empty() {
            t.call_later(self.after, |me: &mut Probe| {
                let data = std::mem::take(&mut me.send);
                me.t.write(data);
            });
        }
    }
    fn data_received(&mut self, d: &[u8]) {
        self.note(format!("got {}", d.len()));
    }
    fn connection_lost(&mut self, reason: Failure) {
        self.note(format!("lost: {reason}"));
    }
}

struct ProbeFactory {
    host: Host,
    log: Log,
    send: Vec<u8>,
    after: Duration,
}

impl Factory for ProbeFactory {
    fn build_protocol(&self, _a: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(Probe {
            host: self.host.clone(),
            log: self.log.clone(),
            send: self.send.clone(),
            after: self.after,
            t: Transport::default(),
        }))
    }
}

impl ClientFactory for ProbeFactory {
    fn client_connection_failed(&self, _c: &Connector, reason: Failure) {
        let ms = self.host.seconds().as_nanos() / MS;
        self.log
            .borrow_mut()
            .push(format!("{ms}ms failed: {reason}"));
    }
}

/// A server probe (host 0, port 1) and a client probe (host 1) that sends `send` `after`
/// it is connected; returns the server's and the client's logs after the run.
fn tcp_run(
    sim: &Sim,
    send: &[u8],
    after: Duration,
    timeout: Duration,
) -> (Vec<String>, Vec<String>) {
    let (server, client) = (sim.host("server"), sim.host("client"));
    let (slog, clog): (Log, Log) = Default::default();
    let f = Rc::new(ProbeFactory {
        host: server.clone(),
        log: slog.clone(),
        send: Vec::new(),
        after,
    });
    server.listen_tcp(1, f).unwrap();
    let f = Rc::new(ProbeFactory {
        host: client.clone(),
        log: clog.clone(),
        send: send.to_vec(),
        after,
    });
    // On the first turn, after any partition that starts at 0.
    client.start(move |h| {
        h.connect_tcp_with("server", 1, f.clone(), timeout, None);
    });
    sim.run_until_idle();
    let logs = (slog.borrow().clone(), clog.borrow().clone());
    logs
}

/// A world with every latency `ms`, whole writes, and same-instant events in FIFO order.
fn fixed_latency(ms: u64) -> crate::world::SimBuilder {
    let l = Duration::from_millis(ms);
    let fifo = Config {
        reorder: false,
        ..Config::default()
    };
    Sim::builder().config(fifo).latency(l, l).fragment(false)
}

fn partition(at_ms: u64, for_ms: u64, a: usize, b: usize, one_way: bool) -> Partition {
    Partition {
        at: Duration::from_millis(at_ms),
        duration: Duration::from_millis(for_ms),
        a,
        b,
        one_way,
    }
}

#[test]
fn pass_no_fault_crosses_in_one_latency() {
    let (server, client) = tcp_run(
        &fixed_latency(1).build(),
        b"x",
        Duration::from_millis(13),
        Duration::from_secs(30),
    );
    assert_eq!(client, vec!["2ms made"]);
    assert_eq!(server, vec!["1ms made", "16ms got 1"]);
}

/// Two partitions of one link, 10–110 ms and 20–30 ms: the link stays cut until the
/// outer one ends, so a byte sent at 15 ms arrives just after 110 ms (not at 31 ms).
#[test]
fn overlapping_partitions_heal_at_the_last_heal() {
    let faults = Faults {
        partitions: vec![
            partition(10, 100, 0, 1, false),
            partition(20, 10, 0, 1, false),
        ],
        ..Faults::none()
    };
    let sim = fixed_latency(1).faults(faults).build();
    let (server, _) = tcp_run(
        &sim,
        b"x",
        Duration::from_millis(13),
        Duration::from_secs(30),
    );
    assert_eq!(server, vec!["1ms made", "111ms got 1"]);
}

/// A partition from the server to the client holds the SYN-ACK: the client's connect
/// times out, and the SYN-ACK that arrives after the heal resets the server's end.
#[test]
fn a_partition_holds_the_syn_ack() {
    let faults = Faults {
        partitions: vec![partition(0, 5_000, 0, 1, true)],
        ..Faults::none()
    };
    let sim = fixed_latency(1).faults(faults).build();
    let (server, client) = tcp_run(&sim, b"", Duration::ZERO, Duration::from_secs(1));
    assert_eq!(client, vec!["1000ms failed: timed out after 1s"]);
    assert_eq!(
        server,
        vec![
            "1ms made",
            "5002ms lost: connection was lost: connection reset by peer"
        ]
    );
}

/// A SYN into a cut link is lost: the connect times out.
#[test]
fn a_partition_drops_the_syn() {
    let faults = Faults {
        partitions: vec![partition(0, 5_000, 1, 0, true)],
        ..Faults::none()
    };
    let sim = fixed_latency(1).faults(faults).trace(true).build();
    let (server, client) = tcp_run(&sim, b"", Duration::ZERO, Duration::from_secs(1));
    assert!(server.is_empty(), "{server:?}");
    assert_eq!(client, vec!["1000ms failed: timed out after 1s"]);
    assert!(sim.trace().render().contains("FAULT lost in partition"));
}

/// The refuse rule: the SYN crosses and is answered with a refusal (a round trip), whatever
/// listens; the server's protocol never sees the attempt.
#[test]
fn refuse_rule_refuses_the_connect() {
    let faults = Faults {
        refuse_ppm: 1_000_000,
        ..Faults::none()
    };
    let sim = fixed_latency(1).faults(faults).build();
    let (server, client) = tcp_run(&sim, b"", Duration::ZERO, Duration::from_secs(1));
    assert!(server.is_empty(), "{server:?}");
    assert_eq!(client.len(), 1);
    assert!(
        client[0].starts_with("2ms failed: connection was refused by server:1"),
        "{client:?}"
    );
}

/// The reset rule resets a connection in place of a data segment, never the handshake.
#[test]
fn reset_rule_resets_on_data() {
    let faults = Faults {
        reset_ppm: 1_000_000,
        ..Faults::none()
    };
    let sim = fixed_latency(1).faults(faults).build();
    let (server, client) = tcp_run(&sim, b"x", Duration::from_millis(3), Duration::from_secs(1));
    assert_eq!(
        client,
        vec![
            "2ms made",
            "5ms lost: connection was lost: connection reset (fault)"
        ]
    );
    assert_eq!(
        server,
        vec![
            "1ms made",
            "6ms lost: connection was lost: connection reset by peer"
        ]
    );
}

/// The spike rule delays every kind of packet, the handshake too.
#[test]
fn spike_rule_delays_every_kind_of_packet() {
    let faults = Faults {
        spike_ppm: 1_000_000,
        spike: Duration::from_millis(50),
        ..Faults::none()
    };
    let made: Vec<String> = (0..10)
        .map(|seed| {
            let sim = fixed_latency(1).seed(seed).faults(faults.clone()).build();
            tcp_run(&sim, b"", Duration::ZERO, Duration::from_secs(1)).0[0].clone()
        })
        .collect();
    assert!(made.iter().any(|m| m != "1ms made"), "{made:?}");
}

/// Collects datagrams as text.
struct Collect(Log);

impl DatagramProtocol for Collect {
    fn datagram_received(&mut self, data: &[u8], _addr: Address) {
        self.0
            .borrow_mut()
            .push(String::from_utf8_lossy(data).into_owned());
    }
}

/// Host "a" sends each of `sends` (at its time in ms) to host "b"; returns what "b" got.
fn udp_run(sim: &Sim, sends: &[(u64, &str)]) -> Vec<String> {
    let (a, b) = (sim.host("a"), sim.host("b"));
    let got: Log = Rc::default();
    b.listen_udp(2, Box::new(Collect(got.clone()))).unwrap();
    let tx: DatagramTransport = a.listen_udp(1, Box::new(Collect(Rc::default()))).unwrap();
    let to = Address::udp(SocketAddr::from((b.ip(), 2)));
    for &(ms, text) in sends {
        let (tx, text) = (tx.clone(), text.to_string());
        a.call_later(Duration::from_millis(ms), move || {
            tx.write(text.as_bytes(), to).unwrap();
        });
    }
    sim.run_until_idle();
    let got = got.borrow().clone();
    got
}

#[test]
fn a_partition_drops_datagrams() {
    let faults = Faults {
        partitions: vec![partition(0, 1_000, 0, 1, false)],
        ..Faults::none()
    };
    let sim = fixed_latency(1).faults(faults).build();
    assert_eq!(
        udp_run(&sim, &[(10, "cut"), (2_000, "healed")]),
        vec!["healed"]
    );
}

/// Datagram loss has its own knob: the TCP reset rate does not touch datagrams.
#[test]
fn datagram_loss_has_its_own_knob() {
    let resets = Faults {
        reset_ppm: 1_000_000,
        ..Faults::none()
    };
    let sim = fixed_latency(1).faults(resets).build();
    assert_eq!(udp_run(&sim, &[(1, "one"), (2, "two")]), vec!["one", "two"]);
    let loss = Faults {
        udp_loss_ppm: 1_000_000,
        ..Faults::none()
    };
    let sim = fixed_latency(1).faults(loss).trace(true).build();
    assert!(udp_run(&sim, &[(1, "one"), (2, "two")]).is_empty());
    assert!(sim.trace().render().contains("FAULT datagram lost"));
}

#[test]
fn duplicate_rule_delivers_a_datagram_twice() {
    let dup = Faults {
        udp_dup_ppm: 1_000_000,
        ..Faults::none()
    };
    let sim = fixed_latency(1).faults(dup).build();
    assert_eq!(udp_run(&sim, &[(1, "one")]), vec!["one", "one"]);
}

/// A full trace pairs each datagram's receipt with its send, even out of order: the
/// reordered, the duplicated (two receipts of one send) and the lost (none).
#[test]
fn datagrams_pair_with_their_receipts() {
    use crate::trace::Kind;
    let faults = Faults {
        udp_dup_ppm: 300_000,
        udp_loss_ppm: 300_000,
        udp_reorder_ppm: 500_000,
        ..Faults::none()
    };
    let (mut lost, mut dups, mut overtaken) = (0, 0, 0);
    for seed in 0..20 {
        let sim = Sim::builder()
            .seed(seed)
            .faults(faults.clone())
            .trace(true)
            .build();
        let sends: Vec<(u64, String)> = (0..8).map(|i| (1 + i / 2, format!("d{i}"))).collect();
        let sends: Vec<(u64, &str)> = sends.iter().map(|(t, s)| (*t, s.as_str())).collect();
        let got = udp_run(&sim, &sends);
        let trace = sim.trace();
        let events = trace.events();
        let text = |i: usize| match &events[i].kind {
            Kind::Send(_, p) | Kind::Recv(_, p) => p.clone(),
            k => panic!("seed {seed}: {k:?}"),
        };
        let mut receipts = 0;
        let mut last_send = 0;
        for m in trace.messages() {
            assert!(matches!(events[m.send].kind, Kind::Send(..)), "seed {seed}");
            let Some(r) = m.recv else {
                lost += 1;
                continue;
            };
            receipts += 1;
            assert!(matches!(events[r].kind, Kind::Recv(..)), "seed {seed}");
            assert_eq!(text(m.send), text(r), "seed {seed}: the same datagram");
            assert_eq!(events[m.send].host, Some(0));
            assert_eq!(events[r].host, Some(1));
            if m.send < last_send {
                dups += 1;
            }
            last_send = last_send.max(m.send);
        }
        assert_eq!(
            receipts,
            got.len(),
            "seed {seed}: every receipt paired once"
        );
        let mut order: Vec<usize> = trace.messages().iter().filter_map(|m| m.recv).collect();
        let by_send: Vec<usize> = order.clone();
        order.sort_unstable();
        overtaken += usize::from(order != by_send);
    }
    assert!(
        lost > 0 && dups > 0 && overtaken > 0,
        "{lost} {dups} {overtaken}"
    );
}

/// Datagrams between two hosts arrive in the order sent, whatever their latencies, unless
/// the reorder rule lets them overtake each other.
#[test]
fn datagrams_keep_their_order_unless_reordered() {
    let sends: Vec<(u64, String)> = (0..10).map(|i| (1, format!("{i}"))).collect();
    let sends: Vec<(u64, &str)> = sends.iter().map(|(t, s)| (*t, s.as_str())).collect();
    let in_order: Vec<&str> = sends.iter().map(|s| s.1).collect();
    let spread = |seed: u64, faults: Faults| {
        Sim::builder()
            .seed(seed)
            .latency(Duration::from_millis(1), Duration::from_millis(10))
            .faults(faults)
            .build()
    };
    for seed in 0..20 {
        let got = udp_run(&spread(seed, Faults::none()), &sends);
        assert_eq!(got, in_order, "seed {seed}");
    }
    let reorder = Faults {
        udp_reorder_ppm: 1_000_000,
        ..Faults::none()
    };
    let reordered = (0..20).any(|seed| udp_run(&spread(seed, reorder.clone()), &sends) != in_order);
    assert!(reordered);
}

/// Flow control: a window update crosses the link and takes a latency. With a 1,000-byte
/// window and 5 ms each way, 3,000 bytes written at 10 ms arrive in three windows, each
/// released by the previous one's update: at 15, 25 and 35 ms.
#[test]
fn window_updates_take_a_latency() {
    let sim = Sim::builder()
        .config(Config {
            window: 1_000,
            ..Config::default()
        })
        .latency(Duration::from_millis(5), Duration::from_millis(5))
        .fragment(false)
        .build();
    let (server, _) = tcp_run(&sim, &[7; 3_000], Duration::ZERO, Duration::from_secs(1));
    assert_eq!(
        server,
        vec![
            "5ms made",
            "15ms got 1000",
            "25ms got 1000",
            "35ms got 1000"
        ]
    );
}

/// A partition from the reader back to the writer holds the reader's window update, so the
/// writer stays stalled until it heals (at 100 ms).
#[test]
fn a_partition_holds_window_updates() {
    let faults = Faults {
        partitions: vec![partition(12, 88, 0, 1, true)],
        ..Faults::none()
    };
    let sim = Sim::builder()
        .config(Config {
            window: 1_000,
            ..Config::default()
        })
        .latency(Duration::from_millis(5), Duration::from_millis(5))
        .fragment(false)
        .faults(faults)
        .build();
    let (server, _) = tcp_run(&sim, &[7; 2_000], Duration::ZERO, Duration::from_secs(1));
    assert_eq!(server, vec!["5ms made", "15ms got 1000", "110ms got 1000"]);
}

/// A datagram protocol that counts its live instances.
struct Counted(Log, Rc<std::cell::Cell<i64>>);

impl Counted {
    fn new(log: &Log, live: &Rc<std::cell::Cell<i64>>) -> Box<Counted> {
        live.set(live.get() + 1);
        Box::new(Counted(log.clone(), live.clone()))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.1.set(self.1.get() - 1);
    }
}

impl DatagramProtocol for Counted {
    fn datagram_received(&mut self, data: &[u8], _addr: Address) {
        self.0
            .borrow_mut()
            .push(String::from_utf8_lossy(data).into_owned());
    }
}

#[test]
fn a_crash_closes_the_hosts_udp_ports_and_drops_their_protocols() {
    let sim = fixed_latency(1).build();
    let (a, b) = (sim.host("a"), sim.host("b"));
    let (got, live): (Log, _) = (Rc::default(), Rc::new(std::cell::Cell::new(0)));
    b.listen_udp(2, Counted::new(&got, &live)).unwrap();
    let tx = a.listen_udp(1, Box::new(Collect(Rc::default()))).unwrap();
    let to = Address::udp(SocketAddr::from((b.ip(), 2)));
    tx.write(b"before", to).unwrap();
    sim.run_until_idle();
    b.crash();
    assert_eq!(live.get(), 0, "the crashed process's protocol is gone");
    b.restart();
    tx.write(b"after the crash", to).unwrap();
    sim.run_until_idle();
    assert_eq!(*got.borrow(), vec!["before"]);
    // The port is free again for the restarted process.
    let again: Log = Rc::default();
    b.listen_udp(2, Counted::new(&again, &live)).unwrap();
    tx.write(b"new", to).unwrap();
    sim.run_until_idle();
    assert_eq!(*again.borrow(), vec!["new"]);
}

#[test]
fn dropping_a_world_drops_its_udp_protocols_at_once() {
    let live = Rc::new(std::cell::Cell::new(0));
    {
        let sim = fixed_latency(1).build();
        let h = sim.host("h");
        for port in 1..=3 {
            h.listen_udp(port, Counted::new(&Rc::default(), &live))
                .unwrap();
        }
        assert_eq!(live.get(), 3);
    }
    // Nothing else ran on this thread since: the protocols went with their world.
    assert_eq!(live.get(), 0);
}

#[test]
fn a_stale_udp_transport_does_not_stop_the_port_of_the_next_process() {
    let sim = fixed_latency(1).build();
    let (a, b) = (sim.host("a"), sim.host("b"));
    let live = Rc::new(std::cell::Cell::new(0));
    let old = b
        .listen_udp(2, Counted::new(&Rc::default(), &live))
        .unwrap();
    b.crash();
    b.restart();
    let got: Log = Rc::default();
    b.listen_udp(2, Counted::new(&got, &live)).unwrap();
    let _ = old.stop_listening();
    assert_eq!(live.get(), 1, "the new process's protocol is still there");
    let tx = a.listen_udp(1, Box::new(Collect(Rc::default()))).unwrap();
    tx.write(b"hi", Address::udp(SocketAddr::from((b.ip(), 2))))
        .unwrap();
    sim.run_until_idle();
    assert_eq!(*got.borrow(), vec!["hi"]);
}

/// Never reads.
#[derive(Default)]
struct Sleeper;
impl Protocol for Sleeper {
    fn connection_made(&mut self, t: &Transport) {
        t.pause_producing();
    }
    fn data_received(&mut self, _d: &[u8]) {}
}

/// Writes 200,000 bytes, then aborts 100 ms later.
#[derive(Default)]
struct Blaster;
impl Protocol for Blaster {
    fn connection_made(&mut self, t: &Transport) {
        t.write(vec![b'b'; 200_000]);
        let t2 = t.clone();
        t.call_later(Duration::from_millis(100), move |_me: &mut Blaster| {
            t2.abort_connection()
        });
    }
    fn data_received(&mut self, _d: &[u8]) {}
}

#[test]
fn a_reset_traces_what_each_end_threw_away() {
    use torsion::protocol::ForProtocol;
    let sim = fixed_latency(1).trace(true).build();
    sim.host("server")
        .listen_tcp(7, ForProtocol::<Sleeper>::new())
        .unwrap();
    sim.host("client")
        .connect_tcp("server", 7, ForProtocol::<Blaster>::new());
    sim.run_until_idle();
    let trace = sim.trace().render();
    // The window (64 KiB) crossed and waits unread at the server; the rest never left.
    let window = Config::default().window;
    let unsent = 200_000 - window;
    assert!(
        trace.contains(&format!("c1   rst (discarded {unsent}B unsent)")),
        "{trace}"
    );
    assert!(
        trace.contains(&format!("c2   reset by peer (discarded {window}B unread)")),
        "{trace}"
    );
}

/// A latency spike is marked in the trace on the packet it slows.
#[test]
fn a_spike_is_traced_where_it_takes_effect() {
    use torsion::protocol::ForProtocol;
    let faults = Faults {
        spike_ppm: 1_000_000,
        spike: Duration::from_millis(50),
        ..Faults::none()
    };
    let sim = fixed_latency(1).trace(true).seed(3).faults(faults).build();
    sim.host("server")
        .listen_tcp(7, ForProtocol::<Sleeper>::new())
        .unwrap();
    sim.host("client")
        .connect_tcp("server", 7, ForProtocol::<Sleeper>::new());
    sim.run_until_idle();
    let trace = sim.trace().render();
    // The SYN is the client's first packet: the spike is marked on the client's host.
    let spikes: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains("FAULT spike +"))
        .collect();
    assert!(!spikes.is_empty(), "{trace}");
    assert!(spikes[0].contains(" client "), "{trace}");
}
