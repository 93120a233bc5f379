//! Heartbeats: the client beats every `interval` with a [`LoopingCall`]; the server closes
//! any connection silent for `timeout` with the [`TimeoutMixin`] policy and counts it.
//! Under a partition the server must notice within `timeout`; after the heal the client is
//! told (its connection is gone) rather than beating into the void.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use torsion::defer::Failure;
use torsion::protocol::{Address, ClientFactory, Factory, Protocol, Transport};
use torsion::protocols::basic::{LineBuffer, LineReceiver};
use torsion::protocols::policies::{Timeout, TimeoutMixin};
use torsion::reactor::ReactorTime;
use torsion::task::LoopingCall;

/// What a heartbeat server saw.
#[derive(Default, Debug)]
pub struct HeartbeatStats {
    /// Beats received.
    pub beats: Cell<u64>,
    /// Connections closed for silence.
    pub timeouts: Cell<u64>,
    /// Connections that ended.
    pub closed: Cell<u64>,
}

/// The server side: a line per beat, closed after `timeout` of silence.
pub struct HeartbeatServer {
    lines: LineBuffer,
    timeout: Timeout,
    period: Duration,
    stats: Rc<HeartbeatStats>,
}

impl Protocol for HeartbeatServer {
    fn connection_made(&mut self, transport: &Transport) {
        self.lines.attach(transport);
        self.timeout.attach(transport);
        self.set_timeout(Some(self.period));
    }
    fn data_received(&mut self, data: &[u8]) {
        self.reset_timeout();
        self.feed(data);
    }
    fn connection_lost(&mut self, _reason: Failure) {
        self.stats.closed.set(self.stats.closed.get() + 1);
    }
}

impl LineReceiver for HeartbeatServer {
    fn line_state(&mut self) -> &mut LineBuffer {
        &mut self.lines
    }
    fn line_received(&mut self, _line: &[u8]) {
        self.stats.beats.set(self.stats.beats.get() + 1);
    }
}

impl TimeoutMixin for HeartbeatServer {
    fn timeout_state(&mut self) -> &mut Timeout {
        &mut self.timeout
    }
    fn timeout_connection(&mut self) {
        self.stats.timeouts.set(self.stats.timeouts.get() + 1);
        self.lines.transport().abort_connection();
    }
}

/// Builds [`HeartbeatServer`]s sharing one [`HeartbeatStats`].
pub struct HeartbeatServerFactory {
    timeout: Duration,
    stats: Rc<HeartbeatStats>,
}

impl HeartbeatServerFactory {
    /// Closes connections silent for `timeout`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(timeout: Duration) -> (Rc<Self>, Rc<HeartbeatStats>) {
        let stats = Rc::new(HeartbeatStats::default());
        (
            Rc::new(HeartbeatServerFactory {
                timeout,
                stats: stats.clone(),
            }),
            stats,
        )
    }
}

impl Factory for HeartbeatServerFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(HeartbeatServer {
            lines: LineBuffer::default(),
            timeout: Timeout::default(),
            period: self.timeout,
            stats: self.stats.clone(),
        }))
    }
}

/// The client side: `beats` heartbeats, `interval` apart, then a clean close.
pub struct HeartbeatClient {
    clock: Rc<dyn ReactorTime>,
    interval: Duration,
    beats: u64,
    call: Option<LoopingCall>,
    sent: Rc<Cell<u64>>,
}

impl Protocol for HeartbeatClient {
    fn connection_made(&mut self, transport: &Transport) {
        let (t, sent, beats) = (transport.clone(), self.sent.clone(), self.beats);
        let call = LoopingCall::new(self.clock.clone(), move || {
            if sent.get() >= beats {
                t.lose_connection();
                return;
            }
            t.write("beat\r\n");
            sent.set(sent.get() + 1);
        });
        let _ = call.start(self.interval, true);
        self.call = Some(call);
    }
    fn data_received(&mut self, _data: &[u8]) {}
    fn connection_lost(&mut self, _reason: Failure) {
        if let Some(call) = self.call.take() {
            let _ = call.stop();
        }
    }
}

/// Builds one [`HeartbeatClient`]; `sent` counts its beats.
pub struct HeartbeatClientFactory {
    clock: Rc<dyn ReactorTime>,
    interval: Duration,
    beats: u64,
    sent: Rc<Cell<u64>>,
}

impl HeartbeatClientFactory {
    /// `beats` heartbeats every `interval`, timed by `clock`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(
        clock: Rc<dyn ReactorTime>,
        interval: Duration,
        beats: u64,
    ) -> (Rc<Self>, Rc<Cell<u64>>) {
        let sent = Rc::new(Cell::new(0));
        (
            Rc::new(HeartbeatClientFactory {
                clock,
                interval,
                beats,
                sent: sent.clone(),
            }),
            sent,
        )
    }
}

impl Factory for HeartbeatClientFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(HeartbeatClient {
            clock: self.clock.clone(),
            interval: self.interval,
            beats: self.beats,
            call: None,
            sent: self.sent.clone(),
        }))
    }
}

impl ClientFactory for HeartbeatClientFactory {}

#[cfg(test)]
mod tests {
    use torsion::testing::{connect, Clock};

    use super::*;

    fn pair(
        beats: u64,
    ) -> (
        Clock,
        torsion::testing::IOPump,
        Rc<HeartbeatStats>,
        Rc<Cell<u64>>,
    ) {
        let clock = Clock::new();
        let (sf, stats) = HeartbeatServerFactory::new(Duration::from_secs(3));
        let (cf, sent) =
            HeartbeatClientFactory::new(Rc::new(clock.clone()), Duration::from_secs(1), beats);
        let a = Address::tcp("10.0.0.1:1".parse().unwrap());
        let pump = connect(
            &clock,
            sf.build_protocol(&a).unwrap(),
            cf.build_protocol(&a).unwrap(),
        );
        (clock, pump, stats, sent)
    }

    #[test]
    fn beats_keep_the_connection_alive() {
        let (_clock, pump, stats, sent) = pair(10);
        pump.flush();
        for _ in 0..12 {
            pump.advance(Duration::from_secs(1));
        }
        assert_eq!(sent.get(), 10);
        assert_eq!(stats.beats.get(), 10);
        assert_eq!(stats.timeouts.get(), 0);
        assert_eq!(stats.closed.get(), 1);
    }

    #[test]
    fn silence_times_out() {
        let (_clock, pump, stats, sent) = pair(1_000);
        pump.flush();
        // Advance the clock without pumping: the client beats, but nothing reaches the
        // server (as under a partition), which closes the connection after 3 s.
        pump.clock().advance(Duration::from_millis(2_999));
        assert_eq!(stats.timeouts.get(), 0);
        pump.clock().advance(Duration::from_millis(1));
        assert_eq!(stats.timeouts.get(), 1);
        assert!(sent.get() >= 3);
        pump.flush();
        assert_eq!(stats.closed.get(), 1);
        assert!(
            pump.client().is_closed(),
            "the client learns its connection is gone"
        );
    }
}
