//! A line collector, correct and naive. The naive one is a planted bug: it takes each
//! `data_received` to be one line, which holds on a quiet loopback and breaks as soon as
//! the network splits or joins writes (the simulator's fragmentation finds it at once).

use std::cell::RefCell;
use std::rc::Rc;

use torsion::protocol::{Address, ClientFactory, Factory, Protocol, Transport};
use torsion::protocols::basic::{LineBuffer, LineReceiver};

/// Lines the server received, in order.
pub type Received = Rc<RefCell<Vec<String>>>;

/// Collects lines with [`LineReceiver`].
pub struct LineCollector {
    lines: LineBuffer,
    got: Received,
}

impl Protocol for LineCollector {
    fn connection_made(&mut self, t: &Transport) {
        self.lines.attach(t);
    }
    fn data_received(&mut self, data: &[u8]) {
        self.feed(data);
    }
}

impl LineReceiver for LineCollector {
    fn line_state(&mut self) -> &mut LineBuffer {
        &mut self.lines
    }
    fn line_received(&mut self, line: &[u8]) {
        self.got
            .borrow_mut()
            .push(String::from_utf8_lossy(line).into_owned());
    }
}

/// The planted bug: one `data_received`, one line.
pub struct NaiveLineCollector {
    got: Received,
}

impl Protocol for NaiveLineCollector {
    fn data_received(&mut self, data: &[u8]) {
        let line = data.strip_suffix(b"\r\n").unwrap_or(data);
        self.got
            .borrow_mut()
            .push(String::from_utf8_lossy(line).into_owned());
    }
}

/// Builds collectors sharing one list.
pub struct CollectorFactory {
    got: Received,
    naive: bool,
}

impl CollectorFactory {
    /// A correct (`naive` false) or naive collector; returns it and the list.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(naive: bool) -> (Rc<Self>, Received) {
        let got = Received::default();
        (
            Rc::new(CollectorFactory {
                got: got.clone(),
                naive,
            }),
            got,
        )
    }
}

impl Factory for CollectorFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        let got = self.got.clone();
        Some(if self.naive {
            Box::new(NaiveLineCollector { got })
        } else {
            Box::new(LineCollector {
                lines: LineBuffer::default(),
                got,
            })
        })
    }
}

/// Sends its lines, one write each, then closes.
pub struct LineSender {
    lines: Vec<String>,
}

impl Protocol for LineSender {
    fn connection_made(&mut self, t: &Transport) {
        for l in &self.lines {
            t.write(format!("{l}\r\n"));
        }
        t.lose_connection();
    }
    fn data_received(&mut self, _data: &[u8]) {}
}

/// Builds one [`LineSender`].
pub struct SenderFactory {
    lines: Vec<String>,
}

impl SenderFactory {
    /// A sender of `lines`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(lines: Vec<String>) -> Rc<Self> {
        Rc::new(SenderFactory { lines })
    }
}

impl Factory for SenderFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(LineSender {
            lines: self.lines.clone(),
        }))
    }
}

impl ClientFactory for SenderFactory {}
