//! Unit tests of the real reactor on 127.0.0.1 (the conformance suite covers the contract).

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::rc::Rc;
use std::time::Duration;

use super::*;
use crate::protocol::{factory_fn, ForProtocol, Protocol, Transport};
use crate::protocols::wire::Echo;
use crate::reactor::{ReactorCoreExt, ReactorTcpExt, ReactorThreadsExt, ReactorTimeExt};

fn spin(r: &MioReactor, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        r.iterate(Some(Duration::from_millis(10))).unwrap();
    }
    cond()
}

#[test]
fn port_zero_reports_the_bound_port_and_serves_a_std_client() {
    let r = MioReactor::new().unwrap();
    r.start_running().unwrap();
    let port = r.listen_tcp(0, ForProtocol::<Echo>::new()).unwrap();
    let bound = port.get_host().addr.port();
    assert_ne!(bound, 0);
    let mut client = std::net::TcpStream::connect(("127.0.0.1", bound)).unwrap();
    client.set_nonblocking(true).unwrap();
    client.write_all(b"hello").unwrap();
    let got = RefCell::new(Vec::new());
    assert!(spin(&r, || {
        let mut buf = [0u8; 64];
        if let Ok(n) = client.read(&mut buf) {
            got.borrow_mut().extend_from_slice(&buf[..n]);
        }
        got.borrow().len() >= 5
    }));
    assert_eq!(&*got.borrow(), b"hello");
}

#[test]
fn timers_fire_on_the_real_clock_in_order() {
    let r = MioReactor::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    for ms in [30u64, 10, 20] {
        let l = log.clone();
        r.call_later(Duration::from_millis(ms), move || l.borrow_mut().push(ms));
    }
    let l = log.clone();
    assert!(spin(&r, move || l.borrow().len() == 3));
    assert_eq!(*log.borrow(), vec![10, 20, 30]);
}

#[test]
fn defer_to_thread_fires_on_the_reactor_thread() {
    let r = MioReactor::new().unwrap();
    let here = std::thread::current().id();
    let d = r.defer_to_thread(move || (std::thread::current().id() != here, 6 * 7));
    let seen = Rc::new(Cell::new(None));
    let s = seen.clone();
    let _ = d.add_callback(move |v| {
        assert_eq!(std::thread::current().id(), here);
        s.set(Some(v));
    });
    let s = seen.clone();
    assert!(spin(&r, move || s.get().is_some()));
    assert_eq!(seen.get(), Some((true, 42)));
}

#[test]
fn run_returns_after_stop_and_the_shutdown_triggers() {
    let r = MioReactor::new().unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    let o = order.clone();
    r.add_system_event_trigger(Phase::During, SystemEvent::Shutdown, move || {
        o.borrow_mut().push("during shutdown")
    });
    let (o, r2) = (order.clone(), r.clone());
    r.call_when_running(move || {
        o.borrow_mut().push("running");
        r2.call_later(Duration::from_millis(20), {
            let r3 = r2.clone();
            move || r3.stop().unwrap()
        });
    });
    r.run().unwrap();
    assert_eq!(*order.borrow(), vec!["running", "during shutdown"]);
    assert_eq!(r.run(), Err(ReactorError::NotRestartable));
}

/// `stop` before `run` (a client whose work ended before the loop started) is refused as not
/// running, and `run` then starts up, shuts down and returns instead of looping forever.
#[test]
fn stop_before_run_makes_run_return_after_startup() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = MioReactor::new().unwrap();
        let order = Rc::new(RefCell::new(Vec::new()));
        let o = order.clone();
        r.call_when_running(move || o.borrow_mut().push("running"));
        let o = order.clone();
        r.add_system_event_trigger(Phase::During, SystemEvent::Shutdown, move || {
            o.borrow_mut().push("during shutdown")
        });
        let early = r.stop();
        let ran = r.run();
        let _ = tx.send((early, ran, order.borrow().clone(), r.running()));
    });
    // A bound on a hang, not a timing assertion: the old `run` never returned.
    let (early, ran, order, running) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("run returned");
    assert_eq!(early, Err(ReactorError::NotRunning));
    assert_eq!(ran, Ok(()));
    assert_eq!(order, vec!["running", "during shutdown"]);
    assert!(!running);
}

#[test]
fn a_refused_connection_reaches_the_factory() {
    let r = MioReactor::new().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let failed = Rc::new(RefCell::new(None::<String>));
    struct F(Rc<RefCell<Option<String>>>);
    impl Factory for F {
        fn build_protocol(&self, _a: &Address) -> Option<Box<dyn Protocol>> {
            Some(Box::new(Echo::default()))
        }
    }
    impl ClientFactory for F {
        fn client_connection_failed(&self, _c: &Connector, reason: Failure) {
            *self.0.borrow_mut() = Some(reason.to_string());
        }
    }
    r.connect_tcp("127.0.0.1", port, Rc::new(F(failed.clone())));
    let f = failed.clone();
    assert!(spin(&r, move || f.borrow().is_some()));
    assert!(
        failed.borrow().as_deref().unwrap().contains("refused"),
        "{:?}",
        failed.borrow()
    );
}

#[test]
fn a_panicking_protocol_loses_only_its_connection() {
    struct Boom;
    impl Protocol for Boom {
        fn data_received(&mut self, data: &[u8]) {
            if data.starts_with(b"boom") {
                panic!("boom");
            }
        }
    }
    let r = MioReactor::new().unwrap();
    r.start_running().unwrap();
    let port = r
        .listen_tcp(0, factory_fn(|_| Some(Box::new(Boom) as Box<dyn Protocol>)))
        .unwrap()
        .get_host()
        .addr
        .port();
    let mut a = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _b = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(spin(&r, || r.connection_count() == 2));
    a.write_all(b"boom").unwrap();
    assert!(spin(&r, || r.connection_count() == 1));
}

#[test]
fn an_idle_reactor_does_not_spin() {
    let r = MioReactor::new().unwrap();
    r.start_running().unwrap();
    let _port = r.listen_tcp(0, ForProtocol::<Echo>::new()).unwrap();
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    r.call_later(Duration::from_millis(300), move || f.set(true));
    let cpu = cpu_time::ThreadTime::now();
    let f = fired.clone();
    assert!(spin(&r, move || f.get()));
    // 300 ms of waiting for one timer: the thread sleeps in poll, using next to no CPU.
    assert!(
        cpu.elapsed() < Duration::from_millis(50),
        "{:?}",
        cpu.elapsed()
    );
}

#[test]
fn connect_with_a_bind_address_uses_it() {
    let r = MioReactor::new().unwrap();
    r.start_running().unwrap();
    let port = r
        .listen_tcp(0, ForProtocol::<Echo>::new())
        .unwrap()
        .get_host()
        .addr
        .port();
    let host = Rc::new(RefCell::new(None));
    struct F(Rc<RefCell<Option<Address>>>);
    struct P(Rc<RefCell<Option<Address>>>);
    impl Protocol for P {
        fn connection_made(&mut self, t: &Transport) {
            *self.0.borrow_mut() = Some(t.get_host());
        }
        fn data_received(&mut self, _d: &[u8]) {}
    }
    impl Factory for F {
        fn build_protocol(&self, _a: &Address) -> Option<Box<dyn Protocol>> {
            Some(Box::new(P(self.0.clone())))
        }
    }
    impl ClientFactory for F {}
    let bind: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    r.connect_tcp_with(
        "127.0.0.1",
        port,
        Rc::new(F(host.clone())),
        Duration::from_secs(5),
        Some(bind),
    );
    let h = host.clone();
    assert!(spin(&r, move || h.borrow().is_some()));
    let local = host.borrow().unwrap();
    assert_eq!(local.addr.ip(), bind.ip());
    assert_ne!(local.addr.port(), port);
}

#[test]
fn connect_by_name_resolves_off_the_reactor_thread() {
    let r = MioReactor::new().unwrap();
    r.start_running().unwrap();
    let port = r
        .listen_tcp_with(0, ForProtocol::<Echo>::new(), 50, "127.0.0.1")
        .unwrap()
        .get_host()
        .addr
        .port();
    let made = Rc::new(Cell::new(false));
    struct F(Rc<Cell<bool>>);
    struct P(Rc<Cell<bool>>);
    impl Protocol for P {
        fn connection_made(&mut self, _t: &Transport) {
            self.0.set(true);
        }
        fn data_received(&mut self, _d: &[u8]) {}
    }
    impl Factory for F {
        fn build_protocol(&self, _a: &Address) -> Option<Box<dyn Protocol>> {
            Some(Box::new(P(self.0.clone())))
        }
    }
    impl ClientFactory for F {}
    let connector = r.connect_tcp("localhost", port, Rc::new(F(made.clone())));
    let m = made.clone();
    assert!(spin(&r, move || m.get()));
    assert_eq!(connector.get_destination().addr.port(), port);
}

#[test]
fn udp_datagrams_both_ways_and_connected_ports() {
    use crate::reactor::{DatagramProtocol, DatagramTransport, UdpError};
    type Inbox = Rc<RefCell<Vec<(Vec<u8>, Address)>>>;
    struct Collect(Inbox, Option<DatagramTransport>, bool);
    impl DatagramProtocol for Collect {
        fn start_protocol(&mut self, t: &DatagramTransport) {
            self.1 = Some(t.clone());
        }
        fn datagram_received(&mut self, data: &[u8], from: Address) {
            self.0.borrow_mut().push((data.to_vec(), from));
            if self.2 {
                let _ = self
                    .1
                    .as_ref()
                    .unwrap()
                    .write(data.to_ascii_uppercase(), from);
            }
        }
    }
    let r = MioReactor::new().unwrap();
    let (a_in, b_in): (Inbox, Inbox) = Default::default();
    let a = r
        .listen_udp_with(
            0,
            Box::new(Collect(a_in.clone(), None, false)),
            "127.0.0.1",
            512,
        )
        .unwrap();
    let b = r
        .listen_udp_with(
            0,
            Box::new(Collect(b_in.clone(), None, true)),
            "127.0.0.1",
            512,
        )
        .unwrap();
    a.write(b"ping", b.get_host()).unwrap();
    let ai = a_in.clone();
    assert!(spin(&r, move || !ai.borrow().is_empty()));
    assert_eq!(b_in.borrow()[0].0, b"ping");
    assert_eq!(b_in.borrow()[0].1.addr, a.get_host().addr);
    assert_eq!(a_in.borrow()[0].0, b"PING");
    assert_eq!(
        a.write(vec![0u8; 513], b.get_host()),
        Err(UdpError::TooLarge {
            size: 513,
            max: 512
        })
    );
    a.connect(b.get_host()).unwrap();
    a.write_connected(b"again").unwrap();
    assert_eq!(a.write(b"x", a.get_host()), Err(UdpError::WrongDestination));
    let bi = b_in.clone();
    assert!(spin(&r, move || bi.borrow().len() == 2));
    let _ = a.stop_listening();
    assert_eq!(a.write_connected(b"late"), Err(UdpError::Closed));
}

/// Counts live instances.
struct Counted {
    live: Rc<Cell<i32>>,
    _t: Transport,
}
impl Drop for Counted {
    fn drop(&mut self) {
        self.live.set(self.live.get() - 1);
    }
}
impl Protocol for Counted {
    fn connection_made(&mut self, t: &Transport) {
        self._t = t.clone();
    }
    fn data_received(&mut self, _data: &[u8]) {}
}

fn counted(live: &Rc<Cell<i32>>) -> Rc<dyn crate::protocol::ClientFactory> {
    let live = live.clone();
    factory_fn(move |_| {
        live.set(live.get() + 1);
        Some(Box::new(Counted {
            live: live.clone(),
            _t: Transport::default(),
        }) as Box<dyn Protocol>)
    })
}

#[test]
fn a_dropped_reactor_frees_its_open_connections() {
    let live = Rc::new(Cell::new(0));
    let r = MioReactor::new().unwrap();
    r.start_running().unwrap();
    let port = r.listen_tcp(0, counted(&live)).unwrap();
    r.connect_tcp("127.0.0.1", port.get_host().addr.port(), counted(&live));
    assert!(spin(&r, || live.get() == 2 && r.connection_count() == 2));
    drop((port, r));
    assert_eq!(live.get(), 0, "both protocols go with the reactor");
}
