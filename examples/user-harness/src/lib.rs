//! A netstring key-value store, and the workload that tests it in the simulator.
//!
//! Requests and replies are netstrings (`<length>:<payload>,`): `set KEY VALUE` answers
//! `ok`, `get KEY` answers the value (or `none`). The server comes in two variants: the
//! correct one buffers bytes until a frame is complete; the buggy one (a planted bug) takes
//! each read to end on a frame boundary, so a frame the network splits across two reads is
//! cut short, stored truncated, and its rest read as garbage.
//!
//! [`registry`] registers the workload `netkv` for the `torsion_sim::cli` command line:
//! its scenarios' `[workload]` table is [`KvParams`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use serde::Deserialize;
use torsion::protocol::{factory_fn, Protocol, Transport};
use torsion::reactor::{ReactorTcpExt, ReactorTimeExt};
use torsion_sim::cli::{FieldError, Params, Registry};
use torsion_sim::scenario::Scenario;
use torsion_sim::Sim;

/// The store's port.
pub const PORT: u16 = 4000;

/// The largest frame either side accepts, in bytes.
pub const MAX_FRAME: usize = 4096;

/// `payload` as a netstring.
pub fn netstring(payload: &str) -> Vec<u8> {
    format!("{}:{payload},", payload.len()).into_bytes()
}

/// What [`next_frame`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole frame: its payload, and the bytes it took.
    Whole(String, usize),
    /// Not enough bytes yet.
    Partial,
    /// Not a netstring.
    Bad,
}

/// The frame at the start of `buf`.
pub fn next_frame(buf: &[u8]) -> Frame {
    let Some(colon) = buf.iter().position(|&b| b == b':') else {
        return if buf.len() > 5 || !buf.iter().all(u8::is_ascii_digit) {
            Frame::Bad
        } else {
            Frame::Partial
        };
    };
    let Some(len) = std::str::from_utf8(&buf[..colon])
        .ok()
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<usize>().ok())
        .filter(|&n| n <= MAX_FRAME)
    else {
        return Frame::Bad;
    };
    let end = colon + 1 + len;
    match buf.get(end) {
        None => Frame::Partial,
        Some(b',') => match std::str::from_utf8(&buf[colon + 1..end]) {
            Ok(p) => Frame::Whole(p.to_string(), end + 1),
            Err(_) => Frame::Bad,
        },
        Some(_) => Frame::Bad,
    }
}

/// The store: keys to values, shared by the server's connections.
pub type Store = Rc<RefCell<BTreeMap<String, String>>>;

/// One server connection.
pub struct KvServer {
    t: Transport,
    buf: Vec<u8>,
    store: Store,
    buggy: bool,
}

impl KvServer {
    fn answer(&self, request: &str) -> String {
        let mut words = request.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("set"), Some(k), Some(v)) => {
                self.store.borrow_mut().insert(k.to_string(), v.to_string());
                "ok".into()
            }
            (Some("get"), Some(k), None) => self
                .store
                .borrow()
                .get(k)
                .cloned()
                .unwrap_or_else(|| "none".into()),
            _ => "error".into(),
        }
    }
}

impl Protocol for KvServer {
    fn connection_made(&mut self, t: &Transport) {
        self.t = t.clone();
    }

    fn data_received(&mut self, data: &[u8]) {
        if self.buggy {
            // The planted bug: this read is taken to hold whole frames. A frame cut short
            // by the read is taken as whole (its payload truncated); bytes that do not parse
            // are dropped.
            let mut rest = data;
            while !rest.is_empty() {
                match next_frame(rest) {
                    Frame::Whole(p, n) => {
                        let reply = self.answer(&p);
                        self.t.write(netstring(&reply));
                        rest = &rest[n..];
                    }
                    Frame::Partial => {
                        let payload = rest
                            .iter()
                            .position(|&b| b == b':')
                            .map(|c| String::from_utf8_lossy(&rest[c + 1..]).into_owned());
                        if let Some(p) = payload {
                            let reply = self.answer(&p);
                            self.t.write(netstring(&reply));
                        }
                        break;
                    }
                    Frame::Bad => break,
                }
            }
            return;
        }
        self.buf.extend_from_slice(data);
        loop {
            match next_frame(&self.buf) {
                Frame::Whole(p, n) => {
                    self.buf.drain(..n);
                    let reply = self.answer(&p);
                    self.t.write(netstring(&reply));
                }
                Frame::Partial => break,
                Frame::Bad => {
                    self.t.lose_connection();
                    break;
                }
            }
        }
    }
}

/// What one client saw: replies in order, and the first wrong one.
#[derive(Debug, Default)]
pub struct Seen {
    /// Replies received.
    pub replies: usize,
    /// The first reply that is not what a correct store answers.
    pub wrong: Option<String>,
}

/// A client: sends `requests`, pipelined, and checks each reply against `expected`.
pub struct KvClient {
    t: Transport,
    buf: Vec<u8>,
    requests: Vec<String>,
    expected: Vec<String>,
    seen: Rc<RefCell<Seen>>,
}

impl Protocol for KvClient {
    fn connection_made(&mut self, t: &Transport) {
        self.t = t.clone();
        for r in &self.requests {
            t.write(netstring(r));
        }
    }

    fn data_received(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        loop {
            match next_frame(&self.buf) {
                Frame::Whole(p, n) => {
                    self.buf.drain(..n);
                    let mut seen = self.seen.borrow_mut();
                    let i = seen.replies;
                    seen.replies += 1;
                    match self.expected.get(i) {
                        Some(want) if *want == p => {}
                        want => {
                            seen.wrong.get_or_insert(format!(
                                "reply {i} to {:?} is {p:?}, expected {want:?}",
                                self.requests.get(i)
                            ));
                        }
                    }
                    if seen.replies >= self.expected.len() {
                        self.t.lose_connection();
                    }
                }
                Frame::Partial => break,
                Frame::Bad => {
                    self.seen
                        .borrow_mut()
                        .wrong
                        .get_or_insert("a reply is not a netstring".into());
                    self.t.lose_connection();
                    break;
                }
            }
        }
    }
}

/// The `[workload]` table of a `netkv` scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvParams {
    /// Keys each client sets and reads back.
    #[serde(default = "default_keys")]
    pub keys: u32,
    /// The length of each value, in bytes.
    #[serde(default = "default_value_len")]
    pub value_len: u32,
    /// Run the buggy server (the planted bug).
    #[serde(default)]
    pub buggy: bool,
}

fn default_keys() -> u32 {
    5
}

fn default_value_len() -> u32 {
    20
}

impl Params for KvParams {
    fn check(&self, s: &Scenario) -> Result<(), FieldError> {
        if self.keys == 0 || self.keys > 1_000 {
            return Err(FieldError::new("keys", "must be between 1 and 1000"));
        }
        if self.value_len == 0 || self.value_len > 1_000 {
            return Err(FieldError::new("value_len", "must be between 1 and 1000"));
        }
        if s.topology.servers != 1 {
            return Err(FieldError::new("keys", "netkv runs on exactly one server"));
        }
        Ok(())
    }
}

/// Client `i`'s requests and the replies a correct store gives: each key set, then read.
pub fn script(i: u32, p: &KvParams) -> (Vec<String>, Vec<String>) {
    let (mut requests, mut expected) = (Vec::new(), Vec::new());
    for j in 0..p.keys {
        let key = format!("c{i}k{j}");
        let mut value = format!("v{i}.{j}.");
        value.extend((0..p.value_len).map(|n| char::from(b'a' + (n % 26) as u8)));
        value.truncate(p.value_len as usize);
        requests.push(format!("set {key} {value}"));
        expected.push("ok".into());
        requests.push(format!("get {key}"));
        expected.push(value);
    }
    (requests, expected)
}

/// The `netkv` workload: one store on `server0`, each client setting and reading back its
/// own keys. Invariant: every reply is the one a correct store gives.
pub fn netkv(s: &Scenario, p: &KvParams, sim: &Sim) {
    let server = sim.host("server0");
    let buggy = p.buggy;
    server.start(move |h| {
        let store = Store::default();
        let f = factory_fn(move |_| {
            Some(Box::new(KvServer {
                t: Transport::default(),
                buf: Vec::new(),
                store: store.clone(),
                buggy,
            }) as Box<dyn Protocol>)
        });
        h.listen_tcp(PORT, f).expect("the port is free");
    });
    let mut seen = Vec::new();
    for i in 0..s.topology.clients {
        let c = sim.host(&format!("client{i}"));
        let (requests, expected) = script(i, p);
        let mine: Rc<RefCell<Seen>> = Rc::default();
        seen.push((mine.clone(), expected.len()));
        let c2 = c.clone();
        c.call_later(Duration::from_millis(1), move || {
            let (requests, expected, mine) = (requests.clone(), expected.clone(), mine.clone());
            let f = factory_fn(move |_| {
                Some(Box::new(KvClient {
                    t: Transport::default(),
                    buf: Vec::new(),
                    requests: requests.clone(),
                    expected: expected.clone(),
                    seen: mine.clone(),
                }) as Box<dyn Protocol>)
            });
            c2.connect_tcp("server0", PORT, f);
        });
    }
    let seen = Rc::new(seen);
    let s2 = seen.clone();
    sim.invariant("every reply is the one a correct store gives", move || {
        s2.iter()
            .find_map(|(c, _)| c.borrow().wrong.clone())
            .map_or(Ok(()), Err)
    });
    sim.run_until_idle();
    if sim.faults().is_none() {
        for (i, (c, want)) in seen.iter().enumerate() {
            assert_eq!(c.borrow().replies, *want, "client{i} got every reply");
        }
    }
}

/// The workloads of this crate's command line.
pub fn registry() -> Registry {
    let mut r = Registry::new("user-harness");
    r.workload(
        "netkv",
        "a netstring key-value store; clients set and read back their keys",
        netkv,
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_whole_partial_or_bad() {
        assert_eq!(next_frame(b"3:abc,x"), Frame::Whole("abc".into(), 6));
        assert_eq!(next_frame(b"3:ab"), Frame::Partial);
        assert_eq!(next_frame(b"12"), Frame::Partial);
        assert_eq!(next_frame(b"3:abcd"), Frame::Bad);
        assert_eq!(next_frame(b"x:"), Frame::Bad);
        assert_eq!(next_frame(b"99999999:"), Frame::Bad);
    }
}
