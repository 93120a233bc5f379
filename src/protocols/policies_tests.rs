//! Ported from the behaviours of Twisted's `twisted/test/test_policies.py`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::*;
use crate::error::ConnectionDone;
use crate::protocol::{factory_fn, ForProtocol};
use crate::protocols::wire::{Discard, Echo};
use crate::testing::{connect, Clock, IOPump};

fn addr() -> Address {
    Address::tcp("10.0.0.2:40000".parse().unwrap())
}

/// Records what reaches it; on "ping" schedules a connection-scoped reply to itself.
#[derive(Default)]
struct Recorder {
    transport: Transport,
    got: Rc<RefCell<Vec<String>>>,
}

impl Protocol for Recorder {
    fn connection_made(&mut self, t: &Transport) {
        self.transport = t.clone();
        self.got.borrow_mut().push("made".into());
    }
    fn data_received(&mut self, data: &[u8]) {
        self.got
            .borrow_mut()
            .push(String::from_utf8_lossy(data).into_owned());
        if data == b"ping" {
            self.transport
                .call_soon::<Recorder>(|me| me.transport.write("pong"));
        }
    }
    fn connection_lost(&mut self, reason: Failure) {
        let done = reason.is::<ConnectionDone>();
        self.got.borrow_mut().push(format!("lost done={done}"));
    }
}

fn serve(factory: &WrappingFactory, clock: &Clock, client: Box<dyn Protocol>) -> Option<IOPump> {
    let server = factory.build_protocol(&addr())?;
    Some(connect(clock, server, client))
}

#[test]
fn test_protocol_wrapper_forwards_everything() {
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    let inner = factory_fn(move |_| {
        Some(Box::new(Recorder {
            transport: Transport::default(),
            got: g.clone(),
        }) as Box<dyn Protocol>)
    });
    let factory = WrappingFactory::new(inner, Rc::new(Forward));
    let clock = Clock::new();
    let pump = serve(&factory, &clock, Box::new(Echo::default())).unwrap();
    assert_eq!(factory.connection_count(), 1);
    pump.client().transport().write("ping");
    pump.flush();
    // The scoped call addressed to `Recorder` reached it through the wrapper; the echo of
    // its "pong" came back.
    assert_eq!(*got.borrow(), vec!["made", "ping", "pong"]);
    pump.client().transport().lose_connection();
    pump.flush();
    assert_eq!(got.borrow().last().unwrap(), "lost done=true");
    assert_eq!(factory.connection_count(), 0);
    assert!(pump.with_server::<Recorder, _>(|_| ()).is_none() || pump.server().is_closed());
}

#[test]
fn test_wrapped_transport_reports_addresses() {
    let factory = WrappingFactory::new(ForProtocol::<Echo>::new(), Rc::new(Forward));
    let clock = Clock::new();
    let pump = serve(&factory, &clock, Box::new(Discard)).unwrap();
    let peer = pump
        .with_server::<ProtocolWrapper, _>(|w| w.wrapped().transport().get_peer())
        .unwrap();
    assert_eq!(peer, pump.client().transport().get_host());
}

#[test]
fn test_throttling_max_connection_count() {
    let clock = Rc::new(Clock::new());
    let (factory, _t) = ThrottlingFactory::new(
        clock.clone(),
        ForProtocol::<Echo>::new(),
        ThrottleLimits {
            max_connection_count: Some(2),
            ..Default::default()
        },
    );
    let a = serve(&factory, &clock, Box::new(Discard)).unwrap();
    let _b = serve(&factory, &clock, Box::new(Discard)).unwrap();
    assert!(
        factory.build_protocol(&addr()).is_none(),
        "a third is refused"
    );
    a.client().transport().lose_connection();
    a.flush();
    assert_eq!(factory.connection_count(), 1);
    assert!(factory.build_protocol(&addr()).is_some(), "room again");
}

#[test]
fn test_throttling_read_limit() {
    let clock = Rc::new(Clock::new());
    let (factory, throttle) = ThrottlingFactory::new(
        clock.clone(),
        ForProtocol::<Discard>::new(),
        ThrottleLimits {
            read_limit: Some(10),
            ..Default::default()
        },
    );
    let pump = serve(&factory, &clock, Box::new(Discard)).unwrap();
    pump.client().transport().write([b'x'; 30]);
    pump.flush();
    assert!(!throttle.reads_throttled());
    pump.advance(Duration::from_secs(1));
    assert!(throttle.reads_throttled(), "30 bytes in a second, limit 10");
    assert!(pump.server().reading_paused());
    // Paused for 30/10 - 1 = 2 seconds.
    pump.advance(Duration::from_millis(1999));
    assert!(throttle.reads_throttled());
    pump.advance(Duration::from_millis(1));
    assert!(!throttle.reads_throttled());
    assert!(!pump.server().reading_paused());
}

struct Streamer {
    paused: Rc<RefCell<Vec<&'static str>>>,
}
impl PushProducer for Streamer {
    fn pause_producing(&mut self) {
        self.paused.borrow_mut().push("pause");
    }
    fn resume_producing(&mut self) {
        self.paused.borrow_mut().push("resume");
    }
    fn stop_producing(&mut self) {
        self.paused.borrow_mut().push("stop");
    }
}

#[test]
fn test_throttling_write_limit_pauses_the_producer() {
    let clock = Rc::new(Clock::new());
    let events = Rc::new(RefCell::new(Vec::new()));
    let ev = events.clone();
    struct Writer {
        events: Rc<RefCell<Vec<&'static str>>>,
    }
    impl Protocol for Writer {
        fn connection_made(&mut self, t: &Transport) {
            t.register_producer(Producer::Push(Box::new(Streamer {
                paused: self.events.clone(),
            })))
            .unwrap();
            t.write([b'y'; 25]);
        }
        fn data_received(&mut self, _data: &[u8]) {}
    }
    let inner =
        factory_fn(move |_| Some(Box::new(Writer { events: ev.clone() }) as Box<dyn Protocol>));
    let (factory, throttle) = ThrottlingFactory::new(
        clock.clone(),
        inner,
        ThrottleLimits {
            write_limit: Some(10),
            ..Default::default()
        },
    );
    let pump = serve(&factory, &clock, Box::new(Discard)).unwrap();
    pump.flush();
    pump.advance(Duration::from_secs(1));
    assert!(throttle.writes_throttled());
    assert_eq!(*events.borrow(), vec!["pause"]);
    pump.advance(Duration::from_millis(1500)); // 25/10 - 1 = 1.5 s
    assert!(!throttle.writes_throttled());
    assert_eq!(*events.borrow(), vec!["pause", "resume"]);
}

#[test]
fn test_throttling_stops_checking_when_the_last_connection_leaves() {
    let clock = Rc::new(Clock::new());
    let (factory, _t) = ThrottlingFactory::new(
        clock.clone(),
        ForProtocol::<Discard>::new(),
        ThrottleLimits {
            read_limit: Some(10),
            write_limit: Some(10),
            ..Default::default()
        },
    );
    let pump = serve(&factory, &clock, Box::new(Discard)).unwrap();
    assert!(!clock.get_delayed_calls().is_empty());
    pump.client().transport().lose_connection();
    pump.flush();
    assert!(clock.get_delayed_calls().is_empty(), "a clean reactor");
}

#[test]
fn test_timeout_factory_closes_idle_connections() {
    let clock = Clock::new();
    let factory = TimeoutFactory::new(ForProtocol::<Echo>::new(), Duration::from_secs(3));
    let pump = serve(&factory, &clock, Box::new(Discard)).unwrap();
    pump.advance(Duration::from_secs(2));
    pump.client().transport().write("keep alive");
    pump.flush();
    pump.advance(Duration::from_secs(2));
    assert!(!pump.server().is_closed(), "activity reset the timer");
    pump.advance(Duration::from_secs(1));
    assert!(pump.server().is_closed());
    assert!(clock.get_delayed_calls().is_empty());
}

#[derive(Default)]
struct TimeoutTester {
    timeout: Timeout,
    timed_out: bool,
}

impl Protocol for TimeoutTester {
    fn connection_made(&mut self, t: &Transport) {
        self.timeout.attach(t);
        self.set_timeout(Some(Duration::from_secs(3)));
    }
    fn data_received(&mut self, _data: &[u8]) {
        self.reset_timeout();
    }
}

impl TimeoutMixin for TimeoutTester {
    fn timeout_state(&mut self) -> &mut Timeout {
        &mut self.timeout
    }
    fn timeout_connection(&mut self) {
        self.timed_out = true;
        self.timeout.transport().lose_connection();
    }
}

fn timeout_pump() -> (Clock, IOPump) {
    let clock = Clock::new();
    let pump = connect(
        &clock,
        Box::new(TimeoutTester::default()),
        Box::new(Discard),
    );
    (clock, pump)
}

fn timed_out(pump: &IOPump) -> bool {
    pump.with_server::<TimeoutTester, _>(|p| p.timed_out)
        .unwrap_or(false)
}

#[test]
fn test_timeout_mixin_overlong_fires() {
    let (_clock, pump) = timeout_pump();
    pump.advance(Duration::from_millis(2999));
    assert!(!timed_out(&pump));
    pump.advance(Duration::from_millis(1));
    assert!(timed_out(&pump));
    assert!(pump.server().is_closed());
}

#[test]
fn test_timeout_mixin_reset_on_data() {
    let (_clock, pump) = timeout_pump();
    pump.advance(Duration::from_secs(2));
    pump.client().transport().write("x");
    pump.flush();
    pump.advance(Duration::from_secs(2));
    assert!(!timed_out(&pump));
    pump.advance(Duration::from_secs(1));
    assert!(timed_out(&pump));
}

#[test]
fn test_timeout_mixin_set_timeout_returns_previous_and_none_cancels() {
    let (clock, pump) = timeout_pump();
    let prev = pump
        .with_server::<TimeoutTester, _>(|p| p.set_timeout(Some(Duration::from_secs(10))))
        .unwrap();
    assert_eq!(prev, Some(Duration::from_secs(3)));
    pump.advance(Duration::from_secs(5));
    assert!(!timed_out(&pump), "the new period replaced the old");
    let prev = pump
        .with_server::<TimeoutTester, _>(|p| p.set_timeout(None))
        .unwrap();
    assert_eq!(prev, Some(Duration::from_secs(10)));
    assert!(clock.get_delayed_calls().is_empty());
    pump.advance(Duration::from_secs(100));
    assert!(!timed_out(&pump));
}

#[test]
fn test_timeout_mixin_cannot_fire_after_connection_lost() {
    let (clock, pump) = timeout_pump();
    pump.client().transport().lose_connection();
    pump.flush();
    assert!(pump.server().is_closed());
    assert!(
        clock.get_delayed_calls().is_empty(),
        "the scoped timer went with the connection"
    );
}
