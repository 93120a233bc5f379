//! The world's own tests: round trips, determinism, failures, capacity.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use torsion::defer::Failure;
use torsion::prelude::*;
use torsion::protocol::{ClientFactory, Factory, ForProtocol, Protocol, Transport};
use torsion::reactor::ReactorTcpExt;

use super::*;
use crate::faults::Faults;
use crate::host::Host;
use crate::keyed::MAX_SEQ;
use std::cell::Cell;

use torsion::protocols::wire::Echo;

struct Pinger {
    t: Transport,
    want: Vec<u8>,
    got: Rc<RefCell<Vec<u8>>>,
    lost: Rc<RefCell<Vec<String>>>,
}
impl Protocol for Pinger {
    fn connection_made(&mut self, t: &Transport) {
        self.t = t.clone();
        t.write(&self.want);
    }
    fn data_received(&mut self, d: &[u8]) {
        self.got.borrow_mut().extend_from_slice(d);
        if self.got.borrow().len() >= self.want.len() {
            self.t.lose_connection();
        }
    }
    fn connection_lost(&mut self, reason: Failure) {
        self.lost.borrow_mut().push(reason.to_string());
    }
}

struct PingerFactory {
    got: Rc<RefCell<Vec<u8>>>,
    lost: Rc<RefCell<Vec<String>>>,
    failed: Rc<RefCell<Vec<String>>>,
}
impl Factory for PingerFactory {
    fn build_protocol(&self, _a: &torsion::protocol::Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(Pinger {
            t: Transport::default(),
            want: b"hello, simulated world".to_vec(),
            got: self.got.clone(),
            lost: self.lost.clone(),
        }))
    }
}
impl ClientFactory for PingerFactory {
    fn client_connection_failed(&self, _c: &torsion::protocol::Connector, r: Failure) {
        self.failed.borrow_mut().push(r.to_string());
    }
}

type Shared<T> = Rc<RefCell<T>>;

fn echo_run(seed: u64, trace: bool) -> (Sim, Shared<Vec<u8>>, Shared<Vec<String>>) {
    let sim = Sim::builder().seed(seed).trace(trace).build();
    let server = sim.host("server");
    server.listen_tcp(7, ForProtocol::<Echo>::new()).unwrap();
    let client = sim.host("client");
    let got = Rc::new(RefCell::new(Vec::new()));
    let lost = Rc::new(RefCell::new(Vec::new()));
    let f = Rc::new(PingerFactory {
        got: got.clone(),
        lost: lost.clone(),
        failed: Rc::default(),
    });
    client.connect_tcp("server", 7, f);
    sim.run_until_idle();
    (sim, got, lost)
}

#[test]
fn echo_round_trip_under_fragmentation() {
    for seed in 0..50 {
        let (sim, got, lost) = echo_run(seed, false);
        assert!(sim.errors().is_empty(), "seed {seed}: {:?}", sim.errors());
        assert_eq!(&*got.borrow(), b"hello, simulated world", "seed {seed}");
        assert_eq!(*lost.borrow(), vec!["connection was closed cleanly"]);
        assert_eq!(sim.hosts()[0].connection_count(), 0, "server closed too");
    }
}

#[test]
fn same_seed_same_trace_hash() {
    for seed in 0..20 {
        assert_eq!(
            echo_run(seed, false).0.trace_hash(),
            echo_run(seed, false).0.trace_hash()
        );
    }
    let hashes: std::collections::BTreeSet<u64> =
        (0..20).map(|s| echo_run(s, false).0.trace_hash()).collect();
    assert!(hashes.len() > 10, "seeds should differ: {}", hashes.len());
}

#[test]
fn full_trace_renders() {
    let (sim, _, _) = echo_run(3, true);
    let text = sim.trace().render();
    assert!(text.contains("listen :7"), "{text}");
    assert!(text.contains("accept from 10.0.0.2"), "{text}");
    assert!(
        text.contains("connection lost: connection was closed cleanly"),
        "{text}"
    );
}

/// Every segment sent is paired with the receive that delivered it, on the peer's end of
/// the connection, whatever the fragmentation: each receive delivers exactly the bytes of
/// the segments paired with it.
#[test]
fn segments_pair_with_the_receives_that_deliver_them() {
    use crate::trace::Kind;
    for seed in 0..30 {
        let (sim, _, _) = echo_run(seed, true);
        let trace = sim.trace();
        let events = trace.events();
        let sends = events
            .iter()
            .filter(|e| matches!(e.kind, Kind::Send(..)))
            .count();
        assert_eq!(trace.messages().len(), sends, "seed {seed}");
        let mut delivered = vec![0usize; events.len()];
        for m in trace.messages() {
            let r = m
                .recv
                .unwrap_or_else(|| panic!("seed {seed}: {m:?} never received"));
            let (s, r_ev) = (&events[m.send], &events[r]);
            let Kind::Send(n, _) = s.kind else {
                panic!("seed {seed}: {s:?} is not a send")
            };
            assert!(matches!(r_ev.kind, Kind::Recv(..)), "seed {seed}: {r_ev:?}");
            assert!(r > m.send && r_ev.time >= s.time, "seed {seed}");
            assert_ne!(s.host, r_ev.host, "seed {seed}");
            assert_ne!(s.conn, r_ev.conn, "seed {seed}");
            delivered[r] += n;
        }
        for (i, e) in events.iter().enumerate() {
            if let Kind::Recv(n, _) = e.kind {
                assert_eq!(delivered[i], n, "seed {seed}: event {i} {e:?}");
            }
        }
    }
    // Only full traces keep them.
    assert!(echo_run(1, false).0.trace().messages().is_empty());
}

#[test]
fn connect_to_nothing_is_refused() {
    let sim = Sim::new(1);
    let client = sim.host("client");
    sim.host("server");
    let failed = Rc::new(RefCell::new(Vec::new()));
    let f = Rc::new(PingerFactory {
        got: Rc::default(),
        lost: Rc::default(),
        failed: failed.clone(),
    });
    client.connect_tcp("server", 9, f);
    sim.run_until_idle();
    assert_eq!(failed.borrow().len(), 1);
    assert!(
        failed.borrow()[0].contains("refused"),
        "{:?}",
        failed.borrow()
    );
}

#[test]
fn runaway_zero_delay_loop_hits_the_step_budget() {
    let sim = Sim::builder().max_steps(1000).build();
    let h = sim.host("spinner");
    fn spin(h: Host) {
        let h2 = h.clone();
        h.call_soon(move || spin(h2));
    }
    spin(h);
    assert_eq!(sim.run_until_idle(), Stop::Failed);
    assert!(matches!(
        sim.errors()[0],
        SimError::StepBudget { steps: 1000 }
    ));
}

#[test]
fn a_run_past_the_sequence_space_fails_with_a_capacity_error() {
    let sim = Sim::new(0);
    let h = sim.host("late");
    // As if 2^40 - 1 calls had been scheduled already: one more fits, the next not.
    sim.world.seq.set(MAX_SEQ - 1);
    let fired = Rc::new(Cell::new(0));
    for _ in 0..2 {
        let fired = fired.clone();
        h.call_later(Duration::from_secs(1), move || fired.set(fired.get() + 1));
    }
    assert_eq!(sim.run_until_idle(), Stop::Failed);
    assert_eq!(
        sim.errors(),
        vec![SimError::Capacity {
            what: "2^40 scheduled calls and segments"
        }]
    );
    assert_eq!(fired.get(), 0, "a failed run runs nothing more");
}

#[test]
fn panic_in_timer_fails_the_run_with_host_named() {
    let sim = Sim::new(0);
    let h = sim.host("boom");
    h.call_later(Duration::from_secs(1), || panic!("kaboom"));
    sim.run_until_idle();
    assert_eq!(
        sim.errors(),
        vec![SimError::Panic {
            host: "boom".into(),
            conn: None,
            message: "kaboom".into()
        }]
    );
}

#[test]
fn unhandled_deferred_failure_fails_the_run() {
    let sim = Sim::new(0);
    let h = sim.host("h");
    h.call_later(Duration::from_secs(1), || {
        let d = torsion::defer::Deferred::<()>::new();
        d.errback(Failure::msg("nobody listens")).unwrap();
    });
    sim.run_until_idle();
    assert_eq!(
        sim.errors(),
        vec![SimError::Unhandled {
            failure: "nobody listens".into()
        }]
    );
}

/// A server that writes many segments and closes while partitioned from its client:
/// after the heal, the client gets every byte in order, then the FIN (the held
/// segments keep their order although the sending connection is gone).
#[test]
fn held_segments_of_a_closed_connection_arrive_in_order() {
    struct Burst;
    impl Protocol for Burst {
        fn connection_made(&mut self, t: &Transport) {
            for i in 0..50u8 {
                t.write([i; 7]);
            }
            t.lose_connection();
        }
        fn data_received(&mut self, _d: &[u8]) {}
    }
    struct Sink(Rc<RefCell<Vec<u8>>>, Rc<RefCell<Vec<String>>>);
    impl Protocol for Sink {
        fn data_received(&mut self, d: &[u8]) {
            self.0.borrow_mut().extend_from_slice(d);
        }
        fn connection_lost(&mut self, reason: Failure) {
            self.1.borrow_mut().push(reason.to_string());
        }
    }
    for seed in 0..50 {
        let faults = Faults {
            partitions: vec![crate::Partition {
                at: Duration::from_micros(1_500),
                duration: Duration::from_millis(50),
                a: 0,
                b: 1,
                one_way: false,
            }],
            ..Faults::none()
        };
        let sim = Sim::builder()
            .seed(seed)
            .latency(Duration::from_millis(1), Duration::from_millis(10))
            .faults(faults)
            .build();
        let server = sim.host("server");
        let client = sim.host("client");
        server.start(|h| {
            h.listen_tcp(
                1,
                torsion::protocol::factory_fn(|_| Some(Box::new(Burst) as Box<dyn Protocol>)),
            )
            .unwrap();
        });
        let got = Rc::new(RefCell::new(Vec::new()));
        let lost = Rc::new(RefCell::new(Vec::new()));
        let (g, l) = (got.clone(), lost.clone());
        let f = torsion::protocol::factory_fn(move |_| {
            Some(Box::new(Sink(g.clone(), l.clone())) as Box<dyn Protocol>)
        });
        client.connect_tcp("server", 1, f);
        sim.run_until_idle();
        let want: Vec<u8> = (0..50u8).flat_map(|i| [i; 7]).collect();
        assert_eq!(*got.borrow(), want, "seed {seed}");
        assert_eq!(lost.borrow().len(), 1, "seed {seed}");
        assert!(
            lost.borrow()[0].contains("closed cleanly"),
            "seed {seed}: {:?}",
            lost.borrow()
        );
    }
}

/// A host's run state is the engine's `Lifecycle`: stopping fires the shutdown triggers,
/// closes the host's connections and ports, and cannot be undone by `run`; a crash gives the
/// restarted process a fresh lifecycle (running, no triggers left from before).
#[test]
fn host_stop_and_crash_follow_the_engine_lifecycle() {
    use torsion::reactor::{Phase, ReactorError, SystemEvent};
    let sim = Sim::new(0);
    let h = sim.host("a");
    let fired = Rc::new(Cell::new(0u32));
    assert_eq!(h.run(), Err(ReactorError::AlreadyRunning));
    let f = fired.clone();
    h.add_system_event_trigger(Phase::During, SystemEvent::Shutdown, move || {
        f.set(f.get() + 1)
    });
    h.listen_tcp(7, ForProtocol::<Echo>::new()).unwrap();
    h.stop().unwrap();
    assert!(!h.running());
    assert_eq!(h.stop(), Err(ReactorError::NotRunning));
    sim.run_until_idle();
    assert_eq!(fired.get(), 1);
    assert_eq!(h.run(), Err(ReactorError::NotRestartable));
    assert!(
        h.listen_tcp(7, ForProtocol::<Echo>::new()).is_ok(),
        "port 7 was released"
    );
    h.crash();
    h.restart();
    assert!(h.running(), "a restarted process runs");
    h.stop().unwrap();
    sim.run_until_idle();
    assert_eq!(fired.get(), 1, "the old process's trigger died with it");
}

/// A host that bumps a counter every millisecond, `n` times.
fn ticking(sim: &Sim, n: u64) -> Rc<Cell<u64>> {
    let count = Rc::new(Cell::new(0u64));
    let h = sim.host("ticker");
    for i in 1..=n {
        let c = count.clone();
        h.call_later(Duration::from_millis(i), move || c.set(c.get() + 1));
    }
    count
}

/// Registers an invariant at `cadence` that counts its evaluations and fails once `bad`
/// holds of the counter.
fn counted(
    sim: &Sim,
    cadence: Cadence,
    count: &Rc<Cell<u64>>,
    bad: impl Fn(u64) -> bool + 'static,
) -> Rc<Cell<u64>> {
    let evaluations = Rc::new(Cell::new(0u64));
    let (e, c) = (evaluations.clone(), count.clone());
    sim.invariant_with("counter", cadence, move || {
        e.set(e.get() + 1);
        if bad(c.get()) {
            Err(format!("counter at {}", c.get()))
        } else {
            Ok(())
        }
    });
    evaluations
}

#[test]
fn invariant_cadences_evaluate_as_often_as_asked_and_always_at_the_end() {
    let cases = [
        (Cadence::EveryStep, 100 + 1),
        (Cadence::EverySteps(10), 10 + 1),
        (Cadence::Every(Duration::from_millis(25)), 4 + 1),
        (Cadence::AtEnd, 1),
    ];
    for (cadence, want) in cases {
        let sim = Sim::new(0);
        let count = ticking(&sim, 100);
        let evaluations = counted(&sim, cadence, &count, |_| false);
        assert_eq!(sim.run_until_idle(), Stop::Idle);
        assert_eq!(count.get(), 100);
        assert_eq!(evaluations.get(), want, "{cadence:?}");
    }
}

#[test]
fn a_sparse_invariant_still_fails_a_run_whose_violation_lasts_to_the_end() {
    for cadence in [Cadence::EverySteps(1000), Cadence::AtEnd] {
        let sim = Sim::new(0);
        let count = ticking(&sim, 100);
        counted(&sim, cadence, &count, |c| c >= 50);
        assert_eq!(sim.run_until_idle(), Stop::Failed, "{cadence:?}");
        assert_eq!(
            sim.errors(),
            vec![SimError::Invariant {
                name: "counter".into(),
                message: "counter at 100".into()
            }]
        );
    }
    // Every step: the run stops at the event that broke it.
    let sim = Sim::new(0);
    let count = ticking(&sim, 100);
    counted(&sim, Cadence::EveryStep, &count, |c| c >= 50);
    assert_eq!(sim.run_until_idle(), Stop::Failed);
    assert_eq!(count.get(), 50);
    // A run that stops on its condition, or on time, evaluates them too.
    let sim = Sim::new(0);
    let count = ticking(&sim, 100);
    counted(&sim, Cadence::AtEnd, &count, |c| c >= 50);
    assert_eq!(sim.run_for(Duration::from_millis(60)), Stop::Failed);
    let sim = Sim::new(0);
    let count = ticking(&sim, 100);
    counted(&sim, Cadence::AtEnd, &count, |c| c >= 50);
    let c = count.clone();
    assert!(sim.run_until(move || c.get() == 70));
    assert_eq!(sim.errors().len(), 1);
}

/// A server (Echo on port 7) and a client that connects and says nothing: both ends stay
/// open with nothing left to happen.
fn idle_pair(clean: bool) -> Sim {
    let sim = Sim::builder().seed(3).check_clean(clean).build();
    let server = sim.host("server");
    server.listen_tcp(7, ForProtocol::<Echo>::new()).unwrap();
    let client = sim.host("client");
    client.connect_tcp("server", 7, ForProtocol::<Echo>::new());
    sim
}

#[test]
fn the_clean_check_fails_an_idle_world_with_open_connections_and_lists_them() {
    let sim = idle_pair(true);
    assert_eq!(sim.run_until_idle(), Stop::Failed);
    let errors = sim.errors();
    assert_eq!(errors.len(), 1);
    let SimError::DirtyEnd { left } = &errors[0] else {
        panic!("{errors:?}")
    };
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left[0].starts_with("server: connection c"), "{left:?}");
    assert!(left[0].ends_with("is still open"), "{left:?}");
    assert!(left[1].starts_with("client: connection c"), "{left:?}");
    assert!(errors[0]
        .to_string()
        .starts_with("unclean end: 2 left\n  - server: "));
    // Off (the default), the same world passes, and still says what is left.
    let sim = idle_pair(false);
    assert_eq!(sim.run_until_idle(), Stop::Idle);
    assert_eq!(sim.leftovers().len(), 2);
}

#[test]
fn a_connection_whose_peer_crashed_is_listed_but_does_not_fail_the_check() {
    let sim = idle_pair(true);
    assert!(sim.run_until(|| sim.hosts()[0].connection_count() == 1));
    sim.host("client").crash();
    assert_eq!(sim.run_until_idle(), Stop::Idle, "{:?}", sim.errors());
    let left = sim.leftovers();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(matches!(
        &left[0],
        Leftover::Open {
            peer_crashed: true,
            ..
        }
    ));
    assert!(!left[0].is_failure());
    assert!(left[0].to_string().ends_with("its peer's host crashed"));
}

#[test]
fn a_lost_connection_still_alive_is_a_leak_the_clean_check_reports() {
    let sim = idle_pair(true);
    let server = sim.host("server");
    assert!(sim.run_until(|| server.connection_count() == 1));
    // Something keeps the server's connection (and so its protocol) alive past its loss.
    let held: Vec<Rc<torsion::driver::Connection>> = server
        .st
        .conns
        .borrow()
        .values()
        .map(|c| c.conn.clone())
        .collect();
    let t = held[0].transport();
    sim.host("client").call_soon(move || t.lose_connection());
    // The client's end closes as the server's FIN arrives: only the held one is left.
    assert_eq!(sim.run_until_idle(), Stop::Failed);
    let errors = sim.errors();
    let SimError::DirtyEnd { left } = &errors[0] else {
        panic!("{errors:?}")
    };
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].starts_with("server: connection c")
            && left[0].contains("was lost but it and its protocol are still alive"),
        "{left:?}"
    );
    drop(held);
    assert!(sim.leftovers().is_empty(), "{:?}", sim.leftovers());
}

/// 2^64 ns plus `secs`: past the end of simulated time, but `secs` once truncated to u64
/// nanoseconds.
fn past_the_end(secs: u64) -> Duration {
    Duration::from_nanos(u64::MAX) + Duration::from_nanos(1) + Duration::from_secs(secs)
}

#[test]
fn a_time_limit_past_the_clock_range_does_not_wrap() {
    // `sim_time_s = 18446744074` in a scenario: 0.29 s once wrapped.
    let sim = Sim::builder()
        .max_time(Duration::from_secs(18_446_744_074))
        .build();
    let h = sim.host("h");
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    h.call_later(Duration::from_secs(1), move || r.set(true));
    assert_eq!(sim.run_until_idle(), Stop::Idle);
    assert!(ran.get(), "the limit is the end of time, not 0.29 s");
    assert!(sim.run_until(|| true));
}

#[test]
fn faults_and_deadlines_past_the_clock_range_never_fire() {
    let faults = Faults {
        partitions: vec![crate::faults::Partition {
            at: past_the_end(1),
            duration: Duration::from_secs(1),
            a: 0,
            b: 1,
            one_way: false,
        }],
        crashes: vec![crate::faults::Crash {
            at: past_the_end(2),
            host: 1,
            restart_after: Some(Duration::MAX),
        }],
        ..Faults::default()
    };
    let sim = Sim::builder().faults(faults).trace(true).build();
    sim.host("a");
    sim.host("b");
    sim.deadline("never due", past_the_end(3), || false);
    assert_eq!(sim.run_for(Duration::from_secs(10)), Stop::TimeReached);
    assert!(sim.errors().is_empty(), "{:?}", sim.errors());
    let trace = sim.trace().render();
    assert!(!trace.contains("partition"), "{trace}");
    assert!(!trace.contains("crash"), "{trace}");
    // run_for saturates too: it runs to the end of time, where the deadline falls.
    sim.run_for(past_the_end(0));
    assert_eq!(sim.now(), Instant::from_nanos(u64::MAX));
    assert!(
        matches!(&sim.errors()[..], [SimError::Deadline { name }] if name == "never due"),
        "{:?}",
        sim.errors()
    );
}

#[test]
fn a_latency_past_the_clock_range_saturates() {
    let sim = Sim::builder()
        .latency(Duration::MAX, Duration::MAX)
        .faults(Faults {
            spike_ppm: 1_000_000,
            spike: Duration::MAX,
            ..Faults::default()
        })
        .build();
    let server = sim.host("server");
    server.listen_tcp(7, ForProtocol::<Echo>::new()).unwrap();
    let failed = Rc::new(RefCell::new(Vec::new()));
    let got = Rc::new(RefCell::new(Vec::new()));
    let f = Rc::new(PingerFactory {
        got: got.clone(),
        lost: Rc::default(),
        failed: failed.clone(),
    });
    sim.host("client").connect_tcp("server", 7, f);
    assert_eq!(sim.run_for(Duration::from_secs(3600)), Stop::TimeReached);
    assert!(sim.errors().is_empty(), "{:?}", sim.errors());
    assert!(got.borrow().is_empty(), "nothing arrives within the hour");
}

#[test]
fn a_full_range_draw_does_not_overflow() {
    let mut d = crate::decide::Decisions::seeded(7);
    let _ = d.range(0, u64::MAX);
    assert_eq!(d.range(u64::MAX, u64::MAX), u64::MAX);
}

#[test]
fn a_host_timer_past_the_clock_range_runs_at_the_end_of_time() {
    for seed in 0..4 {
        let sim = Sim::builder()
            .seed(seed)
            .faults(Faults {
                drift_ppm_max: 1_000_000,
                ..Faults::default()
            })
            .max_time(Duration::MAX)
            .build();
        let h = sim.host("h");
        let ran = Rc::new(Cell::new(false));
        let r = ran.clone();
        h.call_later(Duration::MAX, move || r.set(true));
        assert_eq!(sim.run_for(Duration::from_secs(3600)), Stop::TimeReached);
        assert!(!ran.get(), "seed {seed}: not within the hour");
        assert_eq!(sim.run_until_idle(), Stop::Idle);
        assert!(ran.get(), "seed {seed}: at the end of time");
        assert!(sim.errors().is_empty(), "{:?}", sim.errors());
    }
}

/// Arms a connection-scoped timer when connected.
#[derive(Default)]
struct ScopedTimer;
impl Protocol for ScopedTimer {
    fn connection_made(&mut self, t: &Transport) {
        let line = line!() + 1;
        t.call_later(Duration::from_millis(5), move |_me: &mut ScopedTimer| {
            let _ = line;
        });
        let t = t.clone();
        t.clone()
            .call_soon(move |_me: &mut ScopedTimer| t.lose_connection());
    }
    fn data_received(&mut self, _d: &[u8]) {}
}

#[test]
fn timers_are_named_by_their_call_site_in_the_trace() {
    let sim = Sim::builder().seed(1).trace(true).build();
    let h = sim.host("h");
    let site = line!() + 1;
    h.call_later(Duration::from_millis(1), || {});
    sim.host("server")
        .listen_tcp(7, ForProtocol::<ScopedTimer>::new())
        .unwrap();
    h.connect_tcp("server", 7, ForProtocol::<Echo>::new());
    sim.run_until_idle();
    let trace = sim.trace().render();
    let file = file!();
    assert!(
        trace.contains(&format!("h          -    timer {file}:{site}")),
        "{trace}"
    );
    // A protocol's scoped call is named where the protocol asked for it, through the
    // transport and the connection.
    assert!(
        trace.contains(&format!("server     -    timer {file}:")),
        "{trace}"
    );
    assert!(!trace.contains("src/protocol/"), "{trace}");
}

#[test]
fn the_preview_length_is_configurable_and_does_not_change_the_hash() {
    let run = |preview: usize| {
        let sim = Sim::builder().seed(2).trace(true).preview(preview).build();
        let got = Rc::new(RefCell::new(Vec::new()));
        let lost = Rc::new(RefCell::new(Vec::new()));
        sim.host("server")
            .listen_tcp(7, ForProtocol::<Echo>::new())
            .unwrap();
        let f = Rc::new(PingerFactory {
            got,
            lost,
            failed: Rc::default(),
        });
        sim.host("client").connect_tcp("server", 7, f);
        sim.run_until_idle();
        let out = (sim.trace().render(), sim.trace().hash());
        out
    };
    let (short, h1) = run(4);
    let (long, h2) = run(64);
    assert_eq!(h1, h2);
    assert!(short.contains("\"hell\"..."), "{short}");
    assert!(!long.contains("..."), "{long}");
}

/// Collects what it receives.
struct Collect(Rc<RefCell<Vec<u8>>>);
impl Protocol for Collect {
    fn data_received(&mut self, d: &[u8]) {
        self.0.borrow_mut().extend_from_slice(d);
    }
}

#[test]
fn connect_protocol_hands_back_the_transport_to_drive_from_a_timer() {
    use torsion::reactor::ReactorTimeExt;
    let sim = Sim::new(4);
    sim.host("server")
        .listen_tcp(7, ForProtocol::<Echo>::new())
        .unwrap();
    let client = sim.host("client");
    let got = Rc::new(RefCell::new(Vec::new()));
    let connected = client.connect_protocol("server", 7, Collect(got.clone()));
    let c = client.clone();
    let _ = connected.add_callback(move |t: Transport| {
        // A reactor timer, not the protocol, writes and closes.
        let t2 = t.clone();
        c.call_later(Duration::from_millis(5), move || t.write(b"from a timer"));
        c.call_later(Duration::from_millis(500), move || t2.lose_connection());
        Ok::<(), Failure>(())
    });
    sim.run_until_idle();
    assert_eq!(&*got.borrow(), b"from a timer");
    // Nothing listens on port 8: the Deferred fails with the refusal.
    let refused = client.connect_protocol("server", 8, Collect(Rc::default()));
    sim.run_until_idle();
    let failure = refused.take_result().expect("fired").unwrap_err();
    assert!(failure.to_string().contains("refused"), "{failure}");
}

/// `n` client hosts each connect to one server 1 ms in (all at the same instant, so the
/// decision source chooses among `n` due hosts again and again) and echo one message.
/// Returns the run's steps and the scheduler's work.
fn star_echo(n: usize) -> (u64, u64) {
    let sim = Sim::new(1);
    let server = sim.host("server");
    server.listen_tcp(7, ForProtocol::<Echo>::new()).unwrap();
    let mut gots = Vec::new();
    for i in 0..n {
        let c = sim.host(&format!("c{i}"));
        let got = Rc::new(RefCell::new(Vec::new()));
        gots.push(got.clone());
        let f = Rc::new(PingerFactory {
            got,
            lost: Rc::default(),
            failed: Rc::default(),
        });
        let c2 = c.clone();
        c.call_later(Duration::from_millis(1), move || {
            c2.connect_tcp("server", 7, f);
        });
    }
    assert_eq!(sim.run_until_idle(), Stop::Idle);
    assert!(sim.errors().is_empty(), "{:?}", sim.errors());
    for got in &gots {
        assert_eq!(&*got.borrow(), b"hello, simulated world");
    }
    let work = sim.world.sched.borrow().work();
    (sim.steps(), work)
}

/// The scheduler's work per event (queue fronts looked up, entries of its ordered set
/// visited) does not grow with the number of hosts beyond the logarithm of an ordered set:
/// ten times the hosts, at most twice the work per event. (Before, every step with several
/// hosts due at one instant looked at every due entry, so that n hosts starting together
/// cost O(n) per event: ten times the hosts, ten times the work per event.)
#[test]
fn scheduler_work_per_event_does_not_grow_with_hosts() {
    let (steps_small, work_small) = star_echo(100);
    let (steps_large, work_large) = star_echo(1000);
    assert!(
        steps_large >= 9 * steps_small,
        "{steps_small} → {steps_large}"
    );
    let small = work_small as f64 / steps_small as f64;
    let large = work_large as f64 / steps_large as f64;
    eprintln!("work per event: {small:.1} at 100 hosts, {large:.1} at 1,000");
    assert!(large < 2.0 * small, "{small:.1} → {large:.1}");
    assert!(large < 100.0, "{large:.1}");
}

/// The scheduler keeps each host's earliest event up to date through everything that moves
/// it: a front timer cancelled, another reset to later or delayed, a host crashed with
/// timers pending, calls scheduled from another host's event.
#[test]
fn moved_and_cancelled_front_timers_are_seen_by_the_scheduler() {
    let sim = Sim::new(0);
    let (a, b, c) = (sim.host("a"), sim.host("b"), sim.host("c"));
    let log: Shared<Vec<(u64, &str)>> = Rc::default();
    let at = |h: &Host, secs: u64, what: &'static str| {
        let (log, h2) = (log.clone(), h.clone());
        h.call_later(Duration::from_secs(secs), move || {
            log.borrow_mut()
                .push((h2.seconds().as_nanos() / 1_000_000_000, what));
        })
    };
    let cancelled = at(&a, 1, "a cancelled");
    let reset = at(&a, 2, "a reset to 6");
    let delayed = at(&b, 3, "b delayed to 5");
    at(&b, 4, "b");
    at(&c, 1, "c crashed");
    cancelled.cancel().unwrap();
    reset.reset(Duration::from_secs(6)).unwrap();
    delayed.delay(Duration::from_secs(2)).unwrap();
    c.crash();
    // From an event on b, a call on a that becomes a's front.
    let (a2, log2) = (a.clone(), log.clone());
    b.call_later(Duration::from_millis(4500), move || {
        let log3 = log2.clone();
        a2.call_later(Duration::ZERO, move || {
            log3.borrow_mut().push((4, "a from b"))
        });
    });
    assert_eq!(sim.run_until_idle(), Stop::Idle);
    assert_eq!(
        *log.borrow(),
        vec![
            (4, "b"),
            (4, "a from b"),
            (5, "b delayed to 5"),
            (6, "a reset to 6")
        ]
    );
    assert_eq!(sim.now().as_nanos(), 6_000_000_000);
}

/// A host is found by its name, or by its address written as the host's own would be; a
/// name that is neither is refused. (Both go through an index, not a walk over the hosts.)
#[test]
fn connect_finds_hosts_by_name_or_address() {
    let outcome = |dest: &str| {
        let sim = Sim::new(0);
        let server = sim.host("server");
        server.listen_tcp(7, ForProtocol::<Echo>::new()).unwrap();
        let client = sim.host("client");
        assert_eq!(client.ip().to_string(), "10.0.0.2");
        let (got, failed) = (Rc::new(RefCell::new(Vec::new())), Rc::default());
        let f = Rc::new(PingerFactory {
            got: got.clone(),
            lost: Rc::default(),
            failed: Rc::clone(&failed),
        });
        client.connect_tcp(dest, 7, f);
        sim.run_until_idle();
        let echoed = got.borrow().len();
        let failed = failed.borrow().clone();
        (echoed, failed)
    };
    assert_eq!(outcome("server"), (22, vec![]));
    assert_eq!(outcome("10.0.0.1"), (22, vec![]));
    for nowhere in ["10.0.0.01", "10.0.0.9", " 10.0.0.1", "serve"] {
        let (echoed, failed) = outcome(nowhere);
        assert_eq!(echoed, 0, "{nowhere}");
        assert_eq!(failed.len(), 1, "{nowhere}");
    }
    // Many hosts: each is found by its own name.
    let sim = Sim::new(0);
    let hosts: Vec<Host> = (0..600).map(|i| sim.host(&format!("h{i}"))).collect();
    for (i, h) in hosts.iter().enumerate() {
        assert_eq!(sim.host(&format!("h{i}")).ip(), h.ip());
        assert_eq!(sim.world.resolve(&h.ip().to_string()), Some(i));
    }
    assert_eq!(sim.hosts().len(), 600);
}

/// [`echo_run`] in worlds from `b`, with `clients` clients.
fn echo_with(b: SimBuilder, clients: usize) -> (Sim, Vec<Shared<Vec<u8>>>) {
    let sim = b.build();
    let server = sim.host("server");
    server.listen_tcp(7, ForProtocol::<Echo>::new()).unwrap();
    let mut gots = Vec::new();
    for i in 0..clients {
        let got = Rc::new(RefCell::new(Vec::new()));
        let f = Rc::new(PingerFactory {
            got: got.clone(),
            lost: Rc::default(),
            failed: Rc::default(),
        });
        sim.host(&format!("client{i}")).connect_tcp("server", 7, f);
        gots.push(got);
    }
    sim.run_until_idle();
    (sim, gots)
}

#[test]
fn portfolio_seed_zero_is_the_all_zero_schedule() {
    let (sim, got) = echo_with(Sim::builder().portfolio().seed(0).record(true), 1);
    assert!(sim.faults().is_none());
    assert_eq!(sim.config().quantum, Duration::ZERO);
    assert_eq!(sim.config().pct, None);
    let choices = sim.recorded_choices().unwrap();
    assert!(!choices.is_empty(), "the kind of world is a choice");
    assert!(choices.iter().all(|&c| c == 0), "{choices:?}");
    assert_eq!(&*got[0].borrow(), b"hello, simulated world");
}

#[test]
fn portfolio_interleaves_fault_free_and_swarm_seeds_and_each_replays() {
    let (mut faulty, mut grids, mut pct) = (0, 0, 0);
    for seed in 1..200 {
        let build = || Sim::builder().portfolio().seed(seed).record(true).build();
        let sim = build();
        if seed % 4 == 0 {
            assert!(sim.faults().is_none(), "seed {seed}: {:?}", sim.faults());
        } else {
            faulty += usize::from(!sim.faults().is_none());
        }
        grids += usize::from(sim.config().quantum > Duration::ZERO);
        pct += usize::from(sim.config().pct.is_some());
        // The seed alone decides the world, and the recorded choices rebuild it.
        assert_eq!(build().faults(), sim.faults(), "seed {seed}");
        let choices = sim.recorded_choices().unwrap();
        let again = Sim::builder().portfolio().choices(choices).build();
        assert_eq!(again.faults(), sim.faults(), "seed {seed}");
        assert_eq!(again.config().quantum, sim.config().quantum, "seed {seed}");
        assert_eq!(again.config().pct, sim.config().pct, "seed {seed}");
    }
    // 149 swarm seeds: nearly all draw some fault; grids and PCT mode are common.
    assert!(faulty > 120, "{faulty}");
    assert!(grids > 100 && pct > 100, "grids {grids}, pct {pct}");
}

#[test]
fn the_portfolio_keeps_what_a_builder_sets_and_is_opt_in() {
    let f = Faults {
        reset_ppm: 7,
        ..Faults::none()
    };
    for seed in 0..40 {
        let sim = Sim::builder()
            .faults(f.clone())
            .quantum(Duration::from_millis(2))
            .pct(None)
            .portfolio()
            .seed(seed)
            .build();
        assert_eq!(sim.faults(), &f);
        assert_eq!(sim.config().quantum, Duration::from_millis(2));
        assert_eq!(sim.config().pct, None);
        let plain = Sim::builder().seed(seed).build();
        assert!(plain.faults().is_none());
        assert_eq!(plain.config().quantum, Duration::ZERO);
        assert_eq!(plain.config().pct, None);
    }
}

#[test]
fn an_arrival_grid_lands_packets_from_different_hosts_on_the_same_instant() {
    let grid = Duration::from_millis(5);
    let mut collided = 0;
    for seed in 0..20 {
        let b = Sim::builder().quantum(grid).seed(seed).trace(true);
        let (sim, gots) = echo_with(b, 3);
        assert!(sim.errors().is_empty(), "seed {seed}: {:?}", sim.errors());
        for got in &gots {
            assert_eq!(&*got.borrow(), b"hello, simulated world", "seed {seed}");
        }
        // Every event is an arrival (the echo has no timers): all on the grid.
        let trace = sim.trace();
        let events = trace.events();
        assert!(
            events.iter().all(|e| e.time % 5_000_000 == 0),
            "seed {seed}"
        );
        let accepts: Vec<u64> = events
            .iter()
            .filter(|e| matches!(e.kind, crate::trace::Kind::Accept { .. }))
            .map(|e| e.time)
            .collect();
        assert_eq!(accepts.len(), 3);
        collided += usize::from(accepts.windows(2).any(|w| w[0] == w[1]));
    }
    // Three connects with latencies of 1-10 ms land on two instants (5 and 10 ms).
    assert_eq!(collided, 20);
}

#[test]
fn pct_mode_runs_and_replays_from_its_choices() {
    for seed in 0..20 {
        let b = || {
            Sim::builder()
                .quantum(Duration::from_millis(5))
                .pct(Some(2))
        };
        let (sim, gots) = echo_with(b().seed(seed).record(true), 3);
        assert!(sim.errors().is_empty(), "seed {seed}: {:?}", sim.errors());
        assert!(gots.iter().all(|g| g.borrow().len() == 22), "seed {seed}");
        let (again, _) = echo_with(b().choices(sim.recorded_choices().unwrap()), 3);
        assert_eq!(again.trace_hash(), sim.trace_hash(), "seed {seed}");
    }
}
