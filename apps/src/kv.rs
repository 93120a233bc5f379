//! A key-value store over [`Int32StringReceiver`](torsion::protocols::basic::IntNStringReceiver)
//! frames, and a client that retries through
//! [`ReconnectingClientFactory`](torsion::protocol::ReconnectingClientFactory).
//!
//! Requests carry a client id and a sequence number: `SET id seq key value`,
//! `INCR id seq key`, `GET id seq key`; the answer is `OK seq value`. A client has one
//! request outstanding at a time and resends it, with the same sequence number, after a
//! reconnect. The server remembers each client's last sequence number and answer, so a
//! retried request is answered again rather than applied twice: retries are idempotent.
//! [`KvServerFactory::without_dedupe`] is the planted bug that forgets this, so a retried
//! `INCR` whose first answer was lost to a reset is applied twice.
//!
//! The store lives outside the server's host (think of it as the disk): a crashed and
//! restarted server keeps its data.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use torsion::defer::Failure;
use torsion::protocol::{Address, Backoff, ClientFactory, Connector, Factory, Protocol, Transport};
use torsion::protocols::basic::{IntNBuffer, IntNStringReceiver};

/// The server's data: values, and per client the last request applied and its answer.
#[derive(Default, Debug)]
pub struct KvStore {
    values: BTreeMap<String, i64>,
    last: BTreeMap<String, (u64, String)>,
    /// Requests applied (counting double applications).
    pub applied: u64,
}

impl KvStore {
    /// A shared, empty store.
    pub fn new() -> Rc<RefCell<KvStore>> {
        Rc::default()
    }

    /// A key's value.
    pub fn get(&self, key: &str) -> Option<i64> {
        self.values.get(key).copied()
    }
}

/// One client's connection to the server.
pub struct KvServer {
    frames: IntNBuffer,
    store: Rc<RefCell<KvStore>>,
    dedupe: bool,
}

impl Protocol for KvServer {
    fn connection_made(&mut self, transport: &Transport) {
        self.frames.attach(transport);
    }
    fn data_received(&mut self, data: &[u8]) {
        self.feed(data);
    }
}

impl IntNStringReceiver for KvServer {
    fn int_n_state(&mut self) -> &mut IntNBuffer {
        &mut self.frames
    }

    fn string_received(&mut self, s: &[u8]) {
        let text = String::from_utf8_lossy(s);
        let parts: Vec<&str> = text.split(' ').collect();
        let (Some(op), Some(client), Some(seq)) = (parts.first(), parts.get(1), parts.get(2))
        else {
            self.frames.transport().lose_connection();
            return;
        };
        let Ok(seq) = seq.parse::<u64>() else {
            self.frames.transport().lose_connection();
            return;
        };
        let mut store = self.store.borrow_mut();
        if self.dedupe {
            if let Some((last, answer)) = store.last.get(*client) {
                if *last == seq {
                    let answer = answer.clone();
                    drop(store);
                    let _ = self.send_string(answer.as_bytes());
                    return;
                }
            }
        }
        let value = match (*op, parts.get(3), parts.get(4)) {
            ("SET", Some(key), Some(v)) => {
                let v = v.parse::<i64>().unwrap_or(0);
                store.values.insert(key.to_string(), v);
                v
            }
            ("INCR", Some(key), _) => {
                let v = store.values.entry(key.to_string()).or_insert(0);
                *v += 1;
                *v
            }
            ("GET", Some(key), _) => store.values.get(*key).copied().unwrap_or(0),
            _ => {
                drop(store);
                self.frames.transport().lose_connection();
                return;
            }
        };
        store.applied += 1;
        let answer = format!("OK {seq} {value}");
        store.last.insert(client.to_string(), (seq, answer.clone()));
        drop(store);
        let _ = self.send_string(answer.as_bytes());
    }
}

/// Builds [`KvServer`]s over one store.
pub struct KvServerFactory {
    store: Rc<RefCell<KvStore>>,
    dedupe: bool,
}

impl KvServerFactory {
    /// A correct server over `store`.
    pub fn new(store: Rc<RefCell<KvStore>>) -> Rc<Self> {
        Rc::new(KvServerFactory {
            store,
            dedupe: true,
        })
    }

    /// The planted bug: retried requests are applied again.
    pub fn without_dedupe(store: Rc<RefCell<KvStore>>) -> Rc<Self> {
        Rc::new(KvServerFactory {
            store,
            dedupe: false,
        })
    }
}

impl Factory for KvServerFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(KvServer {
            frames: IntNBuffer::int32(),
            store: self.store.clone(),
            dedupe: self.dedupe,
        }))
    }
}

/// One operation of a client's script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// Set a key.
    Set(String, i64),
    /// Increment a key.
    Incr(String),
    /// Read a key.
    Get(String),
}

impl KvOp {
    fn encode(&self, client: &str, seq: u64) -> String {
        match self {
            KvOp::Set(k, v) => format!("SET {client} {seq} {k} {v}"),
            KvOp::Incr(k) => format!("INCR {client} {seq} {k}"),
            KvOp::Get(k) => format!("GET {client} {seq} {k}"),
        }
    }
}

/// A client's progress, shared across its connections.
#[derive(Debug, Default)]
pub struct KvProgress {
    /// Operations acknowledged, with the value each answer carried.
    pub acked: Vec<(KvOp, i64)>,
    /// Connections made.
    pub connections: u64,
    /// Whether the script is finished.
    pub done: bool,
}

struct ClientShared {
    name: String,
    script: Vec<KvOp>,
    backoff: Backoff,
    reset_delay: bool,
    progress: Rc<RefCell<KvProgress>>,
}

/// One connection of a scripted client.
pub struct KvClient {
    frames: IntNBuffer,
    sh: Rc<ClientShared>,
}

impl KvClient {
    fn send_current(&mut self) {
        let next = self.sh.progress.borrow().acked.len();
        match self.sh.script.get(next) {
            Some(op) => {
                let req = op.encode(&self.sh.name, next as u64 + 1);
                let _ = self.send_string(req.as_bytes());
            }
            None => {
                self.sh.progress.borrow_mut().done = true;
                self.sh.backoff.stop_trying();
                self.frames.transport().lose_connection();
            }
        }
    }
}

impl Protocol for KvClient {
    fn connection_made(&mut self, transport: &Transport) {
        self.frames.attach(transport);
        self.sh.progress.borrow_mut().connections += 1;
        if self.sh.reset_delay {
            self.sh.backoff.reset_delay();
        }
        self.send_current();
    }
    fn data_received(&mut self, data: &[u8]) {
        self.feed(data);
    }
}

impl IntNStringReceiver for KvClient {
    fn int_n_state(&mut self) -> &mut IntNBuffer {
        &mut self.frames
    }
    fn string_received(&mut self, s: &[u8]) {
        let text = String::from_utf8_lossy(s);
        let mut parts = text.split(' ');
        let (Some("OK"), Some(seq), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            self.frames.transport().abort_connection();
            return;
        };
        let (Ok(seq), Ok(value)) = (seq.parse::<u64>(), value.parse::<i64>()) else {
            self.frames.transport().abort_connection();
            return;
        };
        let next = self.sh.progress.borrow().acked.len();
        let Some(op) = self.sh.script.get(next).cloned() else {
            return; // the script is done: nothing is outstanding
        };
        if seq != next as u64 + 1 {
            return; // a stale answer
        }
        self.sh.progress.borrow_mut().acked.push((op, value));
        self.send_current();
    }
}

/// The client factory: builds [`KvClient`]s and reconnects through a [`Backoff`].
pub struct KvClientFactory {
    sh: Rc<ClientShared>,
}

impl KvClientFactory {
    /// A client `name` running `script`, retrying with `backoff`. With `reset_delay` false
    /// it never resets the backoff after a successful connection (the planted bug).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(
        name: &str,
        script: Vec<KvOp>,
        backoff: Backoff,
        reset_delay: bool,
    ) -> (
        Rc<torsion::protocol::ReconnectingClientFactory>,
        Rc<RefCell<KvProgress>>,
    ) {
        let progress = Rc::new(RefCell::new(KvProgress::default()));
        let inner = Rc::new(KvClientFactory {
            sh: Rc::new(ClientShared {
                name: name.to_string(),
                script,
                backoff: backoff.clone(),
                reset_delay,
                progress: progress.clone(),
            }),
        });
        (
            torsion::protocol::ReconnectingClientFactory::new(backoff, inner),
            progress,
        )
    }
}

impl Factory for KvClientFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(KvClient {
            frames: IntNBuffer::int32(),
            sh: self.sh.clone(),
        }))
    }
}

impl ClientFactory for KvClientFactory {
    fn client_connection_lost(&self, _connector: &Connector, _reason: Failure) {}
}

/// A script: for each round, `SET name.k round`, `INCR name.n`, then `GET` of both keys.
pub fn script(name: &str, rounds: u64) -> Vec<KvOp> {
    let mut ops = Vec::new();
    for r in 0..rounds {
        ops.push(KvOp::Set(format!("{name}.k"), r as i64));
        ops.push(KvOp::Incr(format!("{name}.n")));
    }
    ops.push(KvOp::Get(format!("{name}.k")));
    ops.push(KvOp::Get(format!("{name}.n")));
    ops
}

/// Checks a finished client's answers: every acknowledged write is what a later read sees,
/// and each increment's answer is one more than the last.
pub fn check_progress(name: &str, rounds: u64, p: &KvProgress) -> Result<(), String> {
    let mut incrs = 0;
    for (op, value) in &p.acked {
        if let KvOp::Incr(_) = op {
            incrs += 1;
            if *value != incrs {
                return Err(format!(
                    "{name}: increment {incrs} answered {value} (applied twice?)"
                ));
            }
        }
    }
    if p.done {
        let reads: Vec<i64> = p.acked.iter().rev().take(2).map(|(_, v)| *v).collect();
        let (n, k) = (reads[0], reads[1]);
        if n != rounds as i64 {
            return Err(format!(
                "{name}: read {n} after {rounds} acknowledged increments"
            ));
        }
        if rounds > 0 && k != rounds as i64 - 1 {
            return Err(format!(
                "{name}: read {k}, last acknowledged write was {}",
                rounds - 1
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use torsion::testing::{connect, Clock};

    use super::*;

    #[test]
    fn a_script_runs_and_checks() {
        let clock = Rc::new(Clock::new());
        let store = KvStore::new();
        let a = Address::tcp("10.0.0.1:1".parse().unwrap());
        let server = KvServerFactory::new(store.clone())
            .build_protocol(&a)
            .unwrap();
        let (f, progress) =
            KvClientFactory::new("c0", script("c0", 3), Backoff::new(clock.clone()), true);
        let client = f.build_protocol(&a).unwrap();
        let pump = connect(&clock, server, client);
        pump.set_chunk_size(5);
        pump.flush();
        let p = progress.borrow();
        assert!(p.done);
        assert_eq!(p.acked.len(), 8);
        check_progress("c0", 3, &p).unwrap();
        assert_eq!(store.borrow().get("c0.n"), Some(3));
    }

    #[test]
    fn dedupe_answers_a_retry_without_applying_it() {
        let store = KvStore::new();
        let a = Address::tcp("10.0.0.1:1".parse().unwrap());
        for (factory, want) in [
            (KvServerFactory::new(store.clone()), 1),
            (KvServerFactory::without_dedupe(KvStore::new()), 2),
        ] {
            let tr = torsion::testing::StringTransport::new();
            let mut p = factory.build_protocol(&a).unwrap();
            p.connection_made(&tr.transport());
            let req = IntNBuffer::int32().encode(b"INCR c 1 n").unwrap();
            p.data_received(&req);
            p.data_received(&req); // the retry
            let s = factory.store.borrow().get("n");
            assert_eq!(s, Some(want));
        }
    }
}
