//! Traces: every event of a run as a structured record, a stable text rendering of it, and a
//! running hash.
//!
//! While exploring, only the hash is kept (it costs a few nanoseconds per event); a failing
//! seed is re-run with the full trace. The rendering uses integer nanoseconds and escaped
//! byte previews, so it is byte-for-byte stable across machines and is what `insta`
//! snapshots. Two runs with the same hash had the same events in the same order: that is the
//! determinism check.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::{self, Write as _};

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A host started listening.
    Listen {
        /// The port.
        port: u16,
    },
    /// A host started connecting.
    Connect {
        /// Destination `host:port` as given.
        to: String,
    },
    /// A listener accepted a connection.
    Accept {
        /// The peer's address.
        peer: String,
    },
    /// A connection attempt failed.
    ConnectFailed {
        /// Why.
        reason: String,
    },
    /// `connection_made` was called.
    Made,
    /// A segment left (bytes, preview).
    Send(usize, String),
    /// Bytes were delivered to a protocol (count, preview).
    Recv(usize, String),
    /// The write side closed (FIN sent).
    Fin,
    /// A reset was sent; what this end threw away.
    Rst {
        /// Output bytes never sent.
        unsent: usize,
        /// Received bytes the protocol never read.
        unread: usize,
    },
    /// A reset arrived; what this end threw away.
    ResetBy {
        /// Output bytes never sent.
        unsent: usize,
        /// Received bytes the protocol never read.
        unread: usize,
    },
    /// `connection_lost` was called.
    Lost {
        /// The reason.
        reason: String,
    },
    /// A reactor-level delayed call ran.
    Timer {
        /// Where it was scheduled (`call_later`'s caller).
        site: &'static std::panic::Location<'static>,
    },
    /// A fault was injected.
    Fault {
        /// Which and where.
        what: String,
    },
    /// The host crashed.
    Crash,
    /// The host restarted.
    Restart,
    /// A Deferred failed and nobody handled it.
    Unhandled {
        /// The failure.
        failure: String,
    },
    /// User code panicked.
    Panic {
        /// The panic message.
        message: String,
    },
    /// A line logged by the test or the protocol (`Host::log`).
    Log {
        /// The text.
        text: String,
    },
    /// A check failed (invariant, deadline, dirty end).
    CheckFailed {
        /// What.
        what: String,
    },
}

/// One trace record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Simulated time, nanoseconds since the start of the run.
    pub time: u64,
    /// The host it happened on (index into the run's hosts), if any.
    pub host: Option<usize>,
    /// The connection id, if any.
    pub conn: Option<u64>,
    /// What happened.
    pub kind: Kind,
}

/// A TCP segment or a datagram in a full trace: where it was sent and where it was
/// delivered. Kept beside the events (neither hashed nor rendered), so that a viewer can draw
/// each as an arrow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// The index of its `Send` event in [`Trace::events`].
    pub send: usize,
    /// The index of the `Recv` event that delivered it (a segment's last byte; `None`:
    /// dropped, or not delivered before the run ended or the connection closed).
    pub recv: Option<usize>,
}

/// The trace of a run: a running hash, and the events themselves when asked for.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    hash: u64,
    count: u64,
    events: Option<Vec<Event>>,
    hosts: Vec<String>,
    preview: usize,
    /// Every segment sent (full traces only).
    messages: Vec<Message>,
    /// Per receiving end (host, connection): the segments on their way to it, in stream
    /// order, as (index into `messages`, bytes not yet delivered).
    flows: BTreeMap<(usize, u64), VecDeque<(usize, usize)>>,
}

/// How many bytes of a payload a trace hashes, and shows by default (see
/// [`Trace::set_preview`]).
pub const PREVIEW: usize = 24;

const SEED: u64 = 0xcbf2_9ce4_8422_2325;
const MIX: u64 = 0x517c_c1b7_2722_0a95;
const K: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

/// Mixes one word into the running hash (the FxHash step: a bijection of the running hash
/// for each word, so no event's contribution is ever absorbed; fast and stable, good enough
/// to tell two traces apart; not a cryptographic commitment).
fn mix(h: u64, word: u64) -> u64 {
    (h.rotate_left(5) ^ word).wrapping_mul(MIX)
}

/// The 64×64→128 multiply folded to 64 bits (as in wyhash and foldhash).
fn fold(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

/// A digest of the first [`PREVIEW`] bytes and their count: up to three words read straight
/// from the slice (overlapping for lengths between the word sizes, so that, the count
/// given, every byte lands in some word), mixed by two independent folded multiplies that
/// overlap instead of lengthening the running hash's chain.
fn digest(bytes: &[u8]) -> u64 {
    let b = &bytes[..bytes.len().min(PREVIEW)];
    let n = b.len();
    let r8 = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(w)
    };
    let r4 = |i: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&b[i..i + 4]);
        u64::from(u32::from_le_bytes(w))
    };
    let (w0, w1, w2) = match n {
        16.. => (r8(0), r8(8), r8(n - 8)),
        8.. => (r8(0), r8(n - 8), 0),
        4.. => ((r4(0) << 32) | r4(n - 4), 0, 0),
        1.. => {
            let w = (u64::from(b[0]) << 16) | (u64::from(b[n / 2]) << 8) | u64::from(b[n - 1]);
            (w, 0, 0)
        }
        0 => (0, 0, 0),
    };
    fold(w0 ^ K[0], w1 ^ K[1]) ^ fold(w2 ^ K[2], n as u64 ^ K[3])
}

/// A string's contribution: eight bytes at a time, then its length (event texts are rare
/// and short; data goes through [`digest`]).
fn hash_str(mut h: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = mix(h, u64::from_le_bytes(w));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = mix(h, u64::from_le_bytes(w));
    }
    mix(h, bytes.len() as u64)
}

/// Where an event happened, and its tag, as one word: host index in the top 16 bits, the
/// tag in the next 8, the connection id in the low 40 (ids and indexes beyond those widths
/// only fold into neighbouring bits, which can merely weaken the hash, never break it).
fn place(host: Option<usize>, conn: Option<u64>, tag: u8) -> u64 {
    let host = host.map_or(0xffff, |x| x as u64);
    let conn = conn.unwrap_or((1 << 40) - 1);
    (host << 48) ^ (u64::from(tag) << 40) ^ conn
}

impl Trace {
    /// An empty trace; `full` keeps every event, otherwise only the hash.
    pub fn new(full: bool) -> Self {
        Trace {
            hash: SEED,
            count: 0,
            events: full.then(Vec::new),
            hosts: Vec::new(),
            preview: PREVIEW,
            messages: Vec::new(),
            flows: BTreeMap::new(),
        }
    }

    /// Shows up to `bytes` bytes of each payload in a kept trace (the hash still covers the
    /// first [`PREVIEW`], so traces of any preview length compare and replay alike).
    pub fn set_preview(&mut self, bytes: usize) {
        self.preview = bytes;
    }

    /// Names a host index (for rendering).
    pub fn name_host(&mut self, index: usize, name: &str) {
        if self.hosts.len() <= index {
            self.hosts.resize(index + 1, String::new());
        }
        self.hosts[index] = name.to_string();
    }

    /// Whether events are kept.
    pub fn is_full(&self) -> bool {
        self.events.is_some()
    }

    fn hash_head(&mut self, time: u64, host: Option<usize>, conn: Option<u64>, tag: u8) -> u64 {
        self.count += 1;
        mix(mix(self.hash, time), place(host, conn, tag))
    }

    /// Adds an event. (Bytes sent and received go through [`Trace::push_data`].)
    pub fn push(&mut self, event: Event) {
        let (tag, n, text) = kind_parts(&event.kind);
        let h = self.hash_head(event.time, event.host, event.conn, tag);
        self.hash = hash_str(mix(h, n), text.as_bytes());
        if let Some(events) = &mut self.events {
            events.push(event);
        }
    }

    /// Adds a send (`recv == false`) or receive of `data`. The hash covers the byte count
    /// and the first [`PREVIEW`] raw bytes; the escaped preview is only built when the
    /// trace is kept, so hash-only runs pay for no formatting.
    #[inline]
    pub fn push_data(
        &mut self,
        time: u64,
        host: Option<usize>,
        conn: Option<u64>,
        recv: bool,
        data: &[u8],
    ) {
        let h = self.hash_head(time, host, conn, if recv { 7 } else { 6 });
        self.hash = mix(mix(h, data.len() as u64), digest(data));
        if let Some(events) = &mut self.events {
            let kind = data_kind(recv, data, self.preview);
            events.push(Event {
                time,
                host,
                conn,
                kind,
            });
            if let (true, Some(h), Some(c)) = (recv, host, conn) {
                let at = events.len() - 1;
                self.delivered(at, (h, c), data.len());
            }
        }
    }

    /// Adds the send of a TCP segment from connection `conn` of `host` to the end `to`
    /// (host, connection); `delivered` is false when the network drops it. Traced and hashed
    /// as [`Trace::push_data`] does; a full trace also keeps it as a [`Message`], paired
    /// with the receive that delivers its last byte.
    pub fn push_segment(
        &mut self,
        time: u64,
        host: usize,
        conn: u64,
        data: &[u8],
        to: (usize, u64),
        delivered: bool,
    ) {
        self.push_data(time, Some(host), Some(conn), false, data);
        let Some(events) = &self.events else {
            return;
        };
        let m = self.messages.len();
        self.messages.push(Message {
            send: events.len() - 1,
            recv: None,
        });
        if delivered && !data.is_empty() {
            self.flows.entry(to).or_default().push_back((m, data.len()));
        }
    }

    /// Adds the send (`recv == false`) or receipt of a datagram on `host`, traced and
    /// hashed as [`Trace::push_data`] does. A full trace keeps each send as a [`Message`]
    /// and returns its index; a receipt names the message its send returned, and is paired
    /// with it (a duplicate's second receipt becomes a message of its own, from the same
    /// send).
    pub fn push_datagram(
        &mut self,
        time: u64,
        host: usize,
        recv: bool,
        data: &[u8],
        message: Option<usize>,
    ) -> Option<usize> {
        self.push_data(time, Some(host), None, recv, data);
        let at = self.events.as_ref()?.len() - 1;
        if !recv {
            self.messages.push(Message {
                send: at,
                recv: None,
            });
            return Some(self.messages.len() - 1);
        }
        let m = self.messages.get_mut(message?)?;
        match m.recv {
            None => m.recv = Some(at),
            Some(_) => {
                let send = m.send;
                self.messages.push(Message {
                    send,
                    recv: Some(at),
                });
            }
        }
        None
    }

    /// `n` bytes were delivered at the end `to` by event `at`: the segments they complete
    /// are paired with it.
    fn delivered(&mut self, at: usize, to: (usize, u64), mut n: usize) {
        let Some(queue) = self.flows.get_mut(&to) else {
            return;
        };
        while n > 0 {
            let Some(front) = queue.front_mut() else {
                break;
            };
            let take = n.min(front.1);
            front.1 -= take;
            n -= take;
            if front.1 == 0 {
                if let Some(m) = self.messages.get_mut(front.0) {
                    m.recv = Some(at);
                }
                queue.pop_front();
            }
        }
        if queue.is_empty() {
            self.flows.remove(&to);
        }
    }

    /// The TCP segments and datagrams sent, each with its send and receive events (full
    /// traces only).
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The hosts' names, by index (as named with [`Trace::name_host`]).
    pub fn host_names(&self) -> &[String] {
        &self.hosts
    }

    /// A host's name, or `h<index>` for a host never named.
    pub fn host_name(&self, index: usize) -> String {
        self.hosts
            .get(index)
            .filter(|n| !n.is_empty())
            .cloned()
            .unwrap_or_else(|| format!("h{index}"))
    }

    /// The running hash of every event so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// How many events there were.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether there were none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The kept events (empty unless the trace is full).
    pub fn events(&self) -> &[Event] {
        self.events.as_deref().unwrap_or(&[])
    }

    /// Renders one event as a line.
    pub fn render_event(&self, e: &Event) -> String {
        let host = e
            .host
            .map(|i| {
                self.hosts
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("h{i}"))
            })
            .unwrap_or_else(|| "-".into());
        let conn = e
            .conn
            .map(|c| format!("c{c}"))
            .unwrap_or_else(|| "-".into());
        format!(
            "{:>4}.{:09} {:<10} {:<4} {}",
            e.time / 1_000_000_000,
            e.time % 1_000_000_000,
            host,
            conn,
            e.kind
        )
    }

    /// The whole trace as text, one event per line (what `insta` snapshots).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for e in self.events() {
            out.push_str(&self.render_event(e));
            out.push('\n');
        }
        out
    }
}

/// A send or receive as kept in a full trace, with its escaped preview (out of line: only
/// full traces build it, and hash-only runs keep the formatting off their hot path).
#[inline(never)]
fn data_kind(recv: bool, data: &[u8], max: usize) -> Kind {
    let p = preview(data, max);
    if recv {
        Kind::Recv(data.len(), p)
    } else {
        Kind::Send(data.len(), p)
    }
}

/// An event kind as (tag, number, text), for hashing.
fn kind_parts(k: &Kind) -> (u8, u64, &str) {
    match k {
        Kind::Listen { port } => (1, u64::from(*port), ""),
        Kind::Connect { to } => (2, 0, to),
        Kind::Accept { peer } => (3, 0, peer),
        Kind::ConnectFailed { reason } => (4, 0, reason),
        Kind::Made => (5, 0, ""),
        // Data events are hashed by `push_data` from the raw bytes; these arms only serve
        // events built by hand.
        Kind::Send(n, p) => (6, *n as u64, p),
        Kind::Recv(n, p) => (7, *n as u64, p),
        Kind::Fin => (8, 0, ""),
        Kind::Rst { unsent, unread } => (9, (*unsent as u64) << 32 | *unread as u64, ""),
        Kind::ResetBy { unsent, unread } => (19, (*unsent as u64) << 32 | *unread as u64, ""),
        Kind::Lost { reason } => (10, 0, reason),
        Kind::Timer { site } => (11, u64::from(site.line()), site.file()),
        Kind::Fault { what } => (12, 0, what),
        Kind::Crash => (13, 0, ""),
        Kind::Restart => (14, 0, ""),
        Kind::Unhandled { failure } => (15, 0, failure),
        Kind::Panic { message } => (16, 0, message),
        Kind::Log { text } => (17, 0, text),
        Kind::CheckFailed { what } => (18, 0, what),
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Listen { port } => write!(f, "listen :{port}"),
            Kind::Connect { to } => write!(f, "connect {to}"),
            Kind::Accept { peer } => write!(f, "accept from {peer}"),
            Kind::ConnectFailed { reason } => write!(f, "connect failed: {reason}"),
            Kind::Made => write!(f, "connection made"),
            Kind::Send(n, p) => write!(f, "send {n}B {p}"),
            Kind::Recv(n, p) => write!(f, "recv {n}B {p}"),
            Kind::Fin => write!(f, "fin"),
            Kind::Rst { unsent, unread } => {
                write!(f, "rst")?;
                discarded(f, *unsent, *unread)
            }
            Kind::ResetBy { unsent, unread } => {
                write!(f, "reset by peer")?;
                discarded(f, *unsent, *unread)
            }
            Kind::Lost { reason } => write!(f, "connection lost: {reason}"),
            Kind::Timer { site } => write!(f, "timer {}:{}", site.file(), site.line()),
            Kind::Fault { what } => write!(f, "FAULT {what}"),
            Kind::Crash => write!(f, "CRASH"),
            Kind::Restart => write!(f, "restart"),
            Kind::Unhandled { failure } => write!(f, "UNHANDLED {failure}"),
            Kind::Panic { message } => write!(f, "PANIC {message}"),
            Kind::Log { text } => write!(f, "log {text}"),
            Kind::CheckFailed { what } => write!(f, "CHECK FAILED {what}"),
        }
    }
}

/// ` (discarded 12B unsent, 3B unread)`, or nothing when nothing was.
fn discarded(f: &mut fmt::Formatter<'_>, unsent: usize, unread: usize) -> fmt::Result {
    match (unsent, unread) {
        (0, 0) => Ok(()),
        (n, 0) => write!(f, " (discarded {n}B unsent)"),
        (0, m) => write!(f, " (discarded {m}B unread)"),
        (n, m) => write!(f, " (discarded {n}B unsent, {m}B unread)"),
    }
}

/// The first `max` bytes of `data`, escaped and quoted: `"GET /\r\n"...`.
pub fn preview(data: &[u8], max: usize) -> String {
    let mut s = String::with_capacity(max.min(data.len()) + 8);
    s.push('"');
    for &b in data.iter().take(max) {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s.push('"');
    if data.len() > max {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(time: u64, kind: Kind) -> Event {
        Event {
            time,
            host: Some(0),
            conn: Some(1),
            kind,
        }
    }

    #[test]
    fn rendering_is_stable_integer_nanoseconds() {
        let mut t = Trace::new(true);
        t.name_host(0, "server");
        t.push(ev(1_500_000_001, Kind::Recv(5, preview(b"hi\r\n\x00", 16))));
        assert_eq!(
            t.render(),
            "   1.500000001 server     c1   recv 5B \"hi\\r\\n\\x00\"\n"
        );
    }

    #[test]
    fn hash_depends_on_every_field_and_order() {
        let run = |events: &[Event]| {
            let mut t = Trace::new(false);
            for e in events {
                t.push(e.clone());
            }
            t.hash()
        };
        let a = ev(1, Kind::Made);
        let b = ev(2, Kind::Fin);
        assert_eq!(run(&[a.clone(), b.clone()]), run(&[a.clone(), b.clone()]));
        assert_ne!(run(&[a.clone(), b.clone()]), run(&[b.clone(), a.clone()]));
        assert_ne!(run(&[ev(1, Kind::Made)]), run(&[ev(2, Kind::Made)]));
        assert_ne!(
            run(&[ev(1, Kind::Send(3, "a".into()))]),
            run(&[ev(1, Kind::Send(3, "b".into()))])
        );
    }

    #[test]
    fn data_hash_covers_place_direction_count_and_every_preview_byte() {
        let run = |host: usize, conn: u64, recv: bool, data: &[u8]| {
            let mut t = Trace::new(false);
            t.push_data(5, Some(host), Some(conn), recv, data);
            t.hash()
        };
        let base = run(0, 1, false, &[7; 40]);
        assert_eq!(base, run(0, 1, false, &[7; 40]));
        assert_ne!(base, run(1, 1, false, &[7; 40]));
        assert_ne!(base, run(0, 2, false, &[7; 40]));
        assert_ne!(base, run(0, 1, true, &[7; 40]));
        assert_ne!(base, run(0, 1, false, &[7; 39]));
        for i in 0..PREVIEW {
            let mut d = [7u8; 40];
            d[i] = 8;
            assert_ne!(base, run(0, 1, false, &d), "byte {i}");
        }
        // Every length up to the preview, every byte position within it.
        for n in 1..=PREVIEW {
            let plain = run(0, 1, false, &vec![7; n]);
            for i in 0..n {
                let mut d = vec![7u8; n];
                d[i] = 9;
                assert_ne!(plain, run(0, 1, false, &d), "length {n}, byte {i}");
            }
        }
        // Trailing zero bytes still count (the length is hashed).
        assert_ne!(run(0, 1, false, b"a"), run(0, 1, false, b"a\0"));
    }

    #[test]
    fn preview_truncates_and_escapes() {
        assert_eq!(preview(b"abcdef", 3), "\"abc\"...");
        assert_eq!(preview(b"a\"\\", 10), "\"a\\\"\\\\\"");
    }
}
