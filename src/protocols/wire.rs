//! The small standard services (Twisted's `twisted.protocols.wire`): Echo (RFC 862),
//! Discard (RFC 863), Chargen (RFC 864), QOTD (RFC 865), Daytime (RFC 867).

use std::rc::Rc;

use crate::protocol::{Address, Factory, Producer, Protocol, Transport};
use crate::reactor::ReactorTime;

/// Writes back whatever it reads.
#[derive(Default)]
pub struct Echo {
    transport: Transport,
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = transport.clone();
    }
    fn data_received(&mut self, data: &[u8]) {
        self.transport.write(data);
    }
}

/// Reads and ignores everything.
#[derive(Default)]
pub struct Discard;

impl Protocol for Discard {
    fn data_received(&mut self, _data: &[u8]) {}
}

/// The 95 printable characters Chargen repeats (Twisted's `Chargen.noise`).
pub const CHARGEN_NOISE: &[u8] =
    b"@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~ !\"#$%&'()*+,-./0123456789:;<=>?";

/// Writes characters as fast as the peer reads them: registers itself as a pull producer
/// and writes one block each time the transport's buffer empties.
#[derive(Default)]
pub struct Chargen {
    transport: Transport,
}

impl Protocol for Chargen {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = transport.clone();
        let _ = transport.register_producer(Producer::Protocol { streaming: false });
    }
    fn data_received(&mut self, _data: &[u8]) {}
    fn resume_producing(&mut self) {
        self.transport.write(CHARGEN_NOISE);
    }
}

/// Writes a quote and closes (RFC 865). Build with [`QotdFactory`].
pub struct Qotd {
    quote: Rc<str>,
}

impl Protocol for Qotd {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write_sequence(&[self.quote.as_bytes(), b"\r\n"]);
        transport.lose_connection();
    }
    fn data_received(&mut self, _data: &[u8]) {}
}

/// A factory serving one quote (Twisted's `QOTDFactory` with `quote`).
pub struct QotdFactory {
    quote: Rc<str>,
}

impl QotdFactory {
    /// Serves `quote`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(quote: &str) -> Rc<Self> {
        Rc::new(QotdFactory {
            quote: Rc::from(quote),
        })
    }
}

impl Factory for QotdFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(Qotd {
            quote: self.quote.clone(),
        }))
    }
}

/// Writes the reactor's current time as text and closes (RFC 867). The time is the
/// reactor's clock read as seconds since the Unix epoch, so it is virtual under simulation.
pub struct Daytime {
    clock: Rc<dyn ReactorTime>,
}

impl Daytime {
    /// Tells the time of `clock`.
    pub fn new(clock: Rc<dyn ReactorTime>) -> Self {
        Daytime { clock }
    }
}

impl Protocol for Daytime {
    fn connection_made(&mut self, transport: &Transport) {
        let secs = self.clock.seconds().since_epoch().as_secs();
        transport.write(format!("{}\r\n", asctime(secs)));
        transport.lose_connection();
    }
    fn data_received(&mut self, _data: &[u8]) {}
}

/// `secs` since the Unix epoch as C's `asctime` text in UTC, e.g.
/// `Thu Jan  1 00:00:00 1970` (what Twisted's Daytime writes).
pub fn asctime(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        y
    )
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{connect, Clock, StringTransport};

    #[test]
    fn test_echo() {
        let tr = StringTransport::new();
        let mut p = Echo::default();
        p.connection_made(&tr.transport());
        p.data_received(b"hello");
        p.data_received(b" world");
        assert_eq!(tr.value(), b"hello world");
    }

    #[test]
    fn test_discard() {
        let tr = StringTransport::new();
        let mut p = Discard;
        p.connection_made(&tr.transport());
        p.data_received(b"hello");
        assert!(tr.value().is_empty());
        assert!(!tr.disconnecting());
    }

    #[test]
    fn test_chargen_registers_a_pull_producer() {
        let tr = StringTransport::new();
        let mut p = Chargen::default();
        p.connection_made(&tr.transport());
        assert_eq!(tr.producer(), Some(false));
        p.resume_producing();
        p.resume_producing();
        assert_eq!(tr.value(), [CHARGEN_NOISE, CHARGEN_NOISE].concat());
    }

    #[test]
    fn test_chargen_writes_as_the_reader_drains() {
        let clock = Clock::new();
        let pump = connect(&clock, Box::new(Chargen::default()), Box::new(Discard));
        pump.set_chunk_size(CHARGEN_NOISE.len());
        for _ in 0..5 {
            pump.pump();
        }
        assert!(pump.log().iter().filter(|l| l.contains("->")).count() >= 3);
    }

    #[test]
    fn test_qotd() {
        let tr = StringTransport::new();
        let f = QotdFactory::new("An apple a day keeps the doctor away.");
        let mut p = f
            .build_protocol(&Address::tcp("10.0.0.1:17".parse().unwrap()))
            .unwrap();
        p.connection_made(&tr.transport());
        assert_eq!(tr.value(), b"An apple a day keeps the doctor away.\r\n");
        assert!(tr.disconnecting());
    }

    #[test]
    fn test_daytime() {
        let clock = Rc::new(Clock::new());
        clock.advance(std::time::Duration::from_secs(1_000_000_000));
        let tr = StringTransport::new();
        let mut p = Daytime::new(clock);
        p.connection_made(&tr.transport());
        assert_eq!(tr.value(), b"Sun Sep  9 01:46:40 2001\r\n");
        assert!(tr.disconnecting());
    }

    #[test]
    fn test_asctime() {
        assert_eq!(asctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime(951_782_400), "Tue Feb 29 00:00:00 2000");
        assert_eq!(asctime(1_795_000_000), "Wed Nov 18 11:06:40 2026");
    }
}
