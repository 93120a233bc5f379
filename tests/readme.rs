//! The README's tour, as tests: each snippet there is an excerpt of one of these.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proptest::prelude::*;
use torsion::prelude::*;
use torsion::protocol::{ForProtocol, Protocol, Transport};
use torsion_apps::echo::{Echo, EchoClientFactory, EchoMismatch, EchoReport};
use torsion_sim::{check_with, Options, Sim};

/// One echo server, one client, a simulated network.
fn echo_world(
    sim: &Sim,
    messages: Vec<Vec<u8>>,
) -> Rc<RefCell<Option<Result<EchoReport, Failure>>>> {
    let server = sim.host("server");
    server.start(|h| {
        h.listen_tcp(7, ForProtocol::<Echo>::new()).unwrap();
    });
    echo_client(sim, messages)
}

/// A client of `server:7` sending `messages`; its outcome once finished.
fn echo_client(
    sim: &Sim,
    messages: Vec<Vec<u8>>,
) -> Rc<RefCell<Option<Result<EchoReport, Failure>>>> {
    let client = sim.host("client");
    let (factory, done) = EchoClientFactory::new(messages);
    let outcome = Rc::new(RefCell::new(None));
    let o = outcome.clone();
    let _ = done.add_both(move |r| {
        *o.borrow_mut() = Some(r);
        Ok::<(), Failure>(())
    });
    let c = client.clone();
    client.call_later(Duration::from_millis(1), move || {
        c.connect_tcp("server", 7, factory);
    });
    outcome
}

// README: "The same protocol under simulation"
#[test]
fn echo_survives_any_schedule() {
    check_with(
        Options::new("echo under swarm faults").seeds(200),
        &|| Sim::builder().swarm(2, Duration::from_secs(2)),
        |sim: &Sim| {
            let msgs = vec![b"hello".to_vec(), vec![b'x'; 5_000], b"bye".to_vec()];
            let outcome = echo_world(sim, msgs);
            sim.run_until_idle();
            let result = outcome.borrow_mut().take();
            match result {
                Some(Ok(report)) => assert_eq!(report.messages, 3),
                Some(Err(f)) => assert!(f.downcast_ref::<EchoMismatch>().is_none(), "{f}"),
                None => assert!(!sim.faults().is_none(), "no answer on a perfect network"),
            }
        },
    );
}

// README: "A property, with proptest"
proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn echo_returns_every_message(
        msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..200), 1..10),
        schedule in torsion_sim::prop::schedule(),
    ) {
        let sim = Sim::builder().choices(schedule).build();
        let outcome = echo_world(&sim, msgs.clone());
        sim.run_until_idle();
        let report = outcome.borrow_mut().take().expect("finished").expect("echoed");
        prop_assert_eq!(report.messages, msgs.len());
    }
}

// README: "A trace snapshot, with insta"
#[test]
fn echo_trace_snapshot() {
    let sim = Sim::builder().seed(27).trace(true).build();
    echo_world(&sim, vec![b"ping".to_vec()]);
    sim.run_until_idle();
    insta::with_settings!({ snapshot_path => "snapshots", prepend_module_to_snapshot => false }, {
        torsion_sim::assert_trace_snapshot!("readme_echo", sim);
    });
}

// README: "An echo server on the real reactor" (examples/echo_server.rs, here on a thread
// of its own and stopped by the test).
#[test]
fn echo_on_the_real_reactor() {
    #[derive(Default)]
    struct Upper {
        t: Transport,
    }
    impl Protocol for Upper {
        fn connection_made(&mut self, t: &Transport) {
            self.t = t.clone();
        }
        fn data_received(&mut self, data: &[u8]) {
            self.t.write(data.to_ascii_uppercase());
            self.t.lose_connection();
        }
    }
    let reactor = torsion::mio::MioReactor::new().unwrap();
    let port = reactor.listen_tcp(0, ForProtocol::<Upper>::new()).unwrap();
    let addr = port.get_host().addr;
    #[allow(clippy::disallowed_methods)]
    let client = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"hello").unwrap();
        let mut back = String::new();
        s.read_to_string(&mut back).unwrap();
        back
    });
    let r = reactor.clone();
    reactor.call_later(Duration::from_secs(10), move || {
        let _ = r.stop();
    });
    let r = reactor.clone();
    let _ = reactor
        .defer_to_thread(move || client.join().unwrap())
        .add_callback(move |back| {
            assert_eq!(back, "HELLO");
            let _ = r.stop();
        });
    reactor.run().unwrap();
}

// README: "Fault points in your own code"
#[test]
fn a_buggified_slow_answer_is_still_an_answer() {
    #[derive(Default)]
    struct SlowEcho {
        t: Transport,
    }
    impl Protocol for SlowEcho {
        fn connection_made(&mut self, t: &Transport) {
            self.t = t.clone();
        }
        fn data_received(&mut self, data: &[u8]) {
            let delay = if torsion_sim::buggify!() {
                Duration::from_secs(2)
            } else {
                Duration::ZERO
            };
            let answer = data.to_vec();
            self.t
                .call_later(delay, move |me: &mut SlowEcho| me.t.write(&answer));
        }
    }
    let buggified = std::sync::atomic::AtomicU64::new(0);
    check_with(
        Options::new("echo with a slow backend").seeds(100),
        &Sim::builder,
        |sim: &Sim| {
            sim.host("server").start(|h| {
                h.listen_tcp(7, ForProtocol::<SlowEcho>::new()).unwrap();
            });
            let msgs: Vec<Vec<u8>> = (0..30).map(|i| vec![b'a' + i; 10]).collect();
            let outcome = echo_client(sim, msgs);
            sim.run_until_idle();
            let report = outcome
                .borrow_mut()
                .take()
                .expect("finished")
                .expect("echoed");
            assert_eq!(report.messages, 30);
            if sim.now().since_epoch() > Duration::from_secs(2) {
                buggified.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        },
    );
    // Some seeds took the slow path (enabled at 1 in 4 seeds, then 1 call in 20).
    assert!(buggified.into_inner() > 0);
}
