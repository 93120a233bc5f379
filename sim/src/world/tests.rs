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
