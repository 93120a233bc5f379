//! A chat server over lines (Twisted's classic `Chat` example): every member gets a nick,
//! `/nick NAME` renames, `/quit` leaves, and any other line is broadcast to the others as
//! `<nick> line`. An over-long line closes that member's connection only.
//!
//! Production-shaped: the room keeps its members and the last [`HISTORY`] lines (for
//! inspection), never every line said; a member that stops reading while the others talk is
//! disconnected once [`Room::backlog_limit`] bytes wait for it, rather than buffering for it
//! without bound.
//!
//! Twisted's version:
//!
//! ```python
//! class Chat(LineReceiver):
//!     def lineReceived(self, line):
//!         for name, protocol in self.users.items():
//!             if protocol != self:
//!                 protocol.sendLine(b"<" + self.name + b"> " + line)
//! ```

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use torsion::defer::{Deferred, Failure};
use torsion::error::ConnectionDone;
use torsion::protocol::{Address, ClientFactory, Connector, Factory, Protocol, Transport};
use torsion::protocols::basic::{LineBuffer, LineReceiver};

/// Lines of history a [`Room`] keeps.
pub const HISTORY: usize = 64;

/// The default [`Room::backlog_limit`]: 256 KiB waiting for one member.
pub const BACKLOG_LIMIT: usize = 256 * 1024;

/// The members of a room, how much was said in it, and its last [`HISTORY`] lines.
pub struct Room {
    members: Vec<Member>,
    joined: u64,
    said: u64,
    recent: std::collections::VecDeque<String>,
    backlog_limit: usize,
    dropped: u64,
}

impl Default for Room {
    fn default() -> Self {
        Room {
            members: Vec::new(),
            joined: 0,
            said: 0,
            recent: std::collections::VecDeque::with_capacity(HISTORY),
            backlog_limit: BACKLOG_LIMIT,
            dropped: 0,
        }
    }
}

struct Member {
    id: u64,
    nick: String,
    transport: Transport,
    /// Disconnected for not reading: sent nothing more.
    slow: bool,
}

impl Room {
    /// A shared, empty room.
    pub fn new() -> Rc<RefCell<Room>> {
        Rc::default()
    }

    /// The members' nicks, in joining order.
    pub fn nicks(&self) -> Vec<String> {
        self.members.iter().map(|m| m.nick.clone()).collect()
    }

    /// How many lines were said (broadcast as `<nick> text`) in this room.
    pub fn said_count(&self) -> u64 {
        self.said
    }

    /// The last [`HISTORY`] lines said, oldest first, as sent (`<nick> text`).
    pub fn recent(&self) -> Vec<&str> {
        self.recent.iter().map(String::as_str).collect()
    }

    /// The bytes that may wait in one member's output before it is disconnected as a
    /// reader too slow for the room.
    pub fn backlog_limit(&self) -> usize {
        self.backlog_limit
    }

    /// Sets [`Room::backlog_limit`].
    pub fn set_backlog_limit(&mut self, bytes: usize) {
        self.backlog_limit = bytes;
    }

    /// Members disconnected for not reading.
    pub fn dropped_slow(&self) -> u64 {
        self.dropped
    }

    fn broadcast(&mut self, from: u64, line: &str) {
        let limit = self.backlog_limit;
        for m in self.members.iter_mut().filter(|m| m.id != from && !m.slow) {
            if m.transport.buffered() > limit {
                // Its connection_lost removes it from the room (after this loop: losing a
                // connection never calls back into the protocol synchronously).
                m.slow = true;
                m.transport.abort_connection();
                self.dropped += 1;
                continue;
            }
            m.transport.write_sequence(&[line.as_bytes(), b"\r\n"]);
        }
    }

    fn nick_of(&self, id: u64) -> String {
        self.members
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.nick.clone())
            .unwrap_or_default()
    }
}

/// One member's connection.
pub struct Chat {
    lines: LineBuffer,
    room: Rc<RefCell<Room>>,
    id: u64,
}

impl Protocol for Chat {
    fn connection_made(&mut self, transport: &Transport) {
        self.lines.attach(transport);
        let mut room = self.room.borrow_mut();
        room.joined += 1;
        self.id = room.joined;
        let nick = format!("guest{}", self.id);
        transport.write(format!("* welcome {nick}\r\n"));
        room.broadcast(self.id, &format!("* {nick} has joined"));
        room.members.push(Member {
            id: self.id,
            nick,
            transport: transport.clone(),
            slow: false,
        });
    }

    fn data_received(&mut self, data: &[u8]) {
        self.feed(data);
    }

    fn connection_lost(&mut self, _reason: Failure) {
        let mut room = self.room.borrow_mut();
        let nick = room.nick_of(self.id);
        room.members.retain(|m| m.id != self.id);
        room.broadcast(self.id, &format!("* {nick} has left"));
    }
}

impl LineReceiver for Chat {
    fn line_state(&mut self) -> &mut LineBuffer {
        &mut self.lines
    }

    fn line_received(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let mut room = self.room.borrow_mut();
        if let Some(new) = text.strip_prefix("/nick ") {
            let old = room.nick_of(self.id);
            if let Some(m) = room.members.iter_mut().find(|m| m.id == self.id) {
                m.nick = new.to_string();
            }
            room.broadcast(self.id, &format!("* {old} is now {new}"));
        } else if text == "/quit" {
            self.lines.transport().lose_connection();
        } else {
            let said = format!("<{}> {}", room.nick_of(self.id), text);
            room.broadcast(self.id, &said);
            room.said += 1;
            if room.recent.len() == HISTORY {
                room.recent.pop_front();
            }
            room.recent.push_back(said);
        }
    }
}

/// The chat server factory: one shared [`Room`].
pub struct ChatFactory {
    room: Rc<RefCell<Room>>,
}

impl ChatFactory {
    /// A server with an empty room; returns the factory and the room.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> (Rc<Self>, Rc<RefCell<Room>>) {
        let room = Room::new();
        (Rc::new(ChatFactory { room: room.clone() }), room)
    }
}

impl Factory for ChatFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(Chat {
            lines: LineBuffer::default(),
            room: self.room.clone(),
            id: 0,
        }))
    }
}

/// What a [`ChatClient`] saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChatLog {
    /// The member's nick.
    pub nick: String,
    /// Lines received, in order.
    pub received: Vec<String>,
    /// Whether it sent all its messages.
    pub sent_all: bool,
    /// Whether the session ended as asked: `/quit` sent, then a clean close (no reset, no
    /// timeout). Everything it sent before `/quit` then reached the server.
    pub clean: bool,
    quitting: bool,
}

/// A scripted member: on the welcome it sets its nick, says each of its messages, and
/// `quit_after` later sends `/quit`. `done` fires with what it saw when the connection ends
/// (cleanly or not).
pub struct ChatClient {
    lines: LineBuffer,
    nick: String,
    messages: Vec<String>,
    quit_after: Duration,
    log: ChatLog,
    done: Deferred<ChatLog>,
}

impl ChatClient {
    /// A member called `nick` who will say `messages`, then quit after `quit_after`.
    pub fn new(
        nick: &str,
        messages: Vec<String>,
        quit_after: Duration,
        done: Deferred<ChatLog>,
    ) -> Self {
        ChatClient {
            lines: LineBuffer::default(),
            nick: nick.to_string(),
            messages,
            quit_after,
            log: ChatLog {
                nick: nick.to_string(),
                ..ChatLog::default()
            },
            done,
        }
    }
}

impl Protocol for ChatClient {
    fn connection_made(&mut self, transport: &Transport) {
        self.lines.attach(transport);
    }
    fn data_received(&mut self, data: &[u8]) {
        self.feed(data);
    }
    fn connection_lost(&mut self, reason: Failure) {
        self.log.clean = self.log.quitting && reason.is::<ConnectionDone>();
        let _ = self.done.callback(std::mem::take(&mut self.log));
    }
}

impl LineReceiver for ChatClient {
    fn line_state(&mut self) -> &mut LineBuffer {
        &mut self.lines
    }
    fn line_received(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line).into_owned();
        if text.starts_with("* welcome ") && !self.log.sent_all {
            let nick = format!("/nick {}", self.nick);
            self.send_line(nick.as_bytes());
            for m in std::mem::take(&mut self.messages) {
                self.send_line(m.as_bytes());
            }
            self.log.sent_all = true;
            self.lines
                .transport()
                .call_later::<ChatClient>(self.quit_after, |me| {
                    me.log.quitting = true;
                    me.send_line(b"/quit");
                });
        }
        self.log.received.push(text);
    }
}

/// A factory for one [`ChatClient`]; `done` also fires (with an empty log) if the
/// connection cannot be made.
pub struct ChatClientFactory {
    nick: String,
    messages: Vec<String>,
    quit_after: Duration,
    done: Deferred<ChatLog>,
}

impl ChatClientFactory {
    /// A member `nick` saying `messages` and quitting `quit_after` later; returns the
    /// factory and the Deferred of its log.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(
        nick: &str,
        messages: Vec<String>,
        quit_after: Duration,
    ) -> (Rc<Self>, Deferred<ChatLog>) {
        let done = Deferred::new();
        let f = ChatClientFactory {
            nick: nick.to_string(),
            messages,
            quit_after,
            done: done.clone(),
        };
        (Rc::new(f), done)
    }
}

impl Factory for ChatClientFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(ChatClient::new(
            &self.nick,
            self.messages.clone(),
            self.quit_after,
            self.done.clone(),
        )))
    }
}

impl ClientFactory for ChatClientFactory {
    fn client_connection_failed(&self, _connector: &Connector, _reason: Failure) {
        let _ = self.done.callback(ChatLog::default());
    }
}

/// [`check_logs`] as a simulator invariant over a log list that only grows (members push
/// their log when their session ends): the logs are checked again only when one was added
/// since the last check, so evaluating it after every event costs a length comparison.
/// (The check is a function of the whole list: a log added later can change the verdict on
/// earlier ones, so each addition re-checks them all.)
pub fn logs_invariant(
    logs: std::rc::Rc<std::cell::RefCell<Vec<(usize, ChatLog)>>>,
    clients: usize,
    messages: usize,
    faults: bool,
) -> impl Fn() -> Result<(), String> {
    let checked = std::cell::Cell::new(0usize);
    move || {
        let logs = logs.borrow();
        if logs.len() == checked.get() {
            return Ok(());
        }
        checked.set(logs.len());
        check_logs(&logs, clients, messages, faults)
    }
}

/// Checks the members' logs (clients say `m{i}.{j}`, as the scenarios do; a restarted
/// client rejoins as `client{i}r{k}` and starts over):
///
/// - every line is well formed, and nobody receives its own messages;
/// - from each sender, a receiver gets a contiguous, increasing run of message numbers (the
///   server relays each sender's stream in order; a receiver sees a window of it);
/// - every message a member sends reaches every other member connected throughout, in order:
///   if the receiver saw the sender arrive (its `/nick`) and leave, and the sender's session
///   was clean, the receiver got all of the sender's messages, in between;
/// - without faults, each run ends at the sender's last message.
pub fn check_logs(
    logs: &[(usize, ChatLog)],
    clients: usize,
    messages: usize,
    faults: bool,
) -> Result<(), String> {
    let clean: std::collections::BTreeSet<&str> = logs
        .iter()
        .filter(|(_, l)| l.clean)
        .map(|(_, l)| l.nick.as_str())
        .collect();
    logs.iter()
        .try_for_each(|(me, log)| check_log(*me, log, clients, messages, faults, &clean))
}

fn check_log(
    me: usize,
    log: &ChatLog,
    clients: usize,
    messages: usize,
    faults: bool,
    clean: &std::collections::BTreeSet<&str>,
) -> Result<(), String> {
    let mut runs: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    let mut arrived: std::collections::BTreeSet<String> = Default::default();
    for line in &log.received {
        if let Some(rest) = line.strip_prefix("* ") {
            if let Some((_, nick)) = rest.split_once(" is now ") {
                arrived.insert(nick.to_string());
            } else if let Some(nick) = rest.strip_suffix(" has left") {
                let throughout = arrived.contains(nick) && clean.contains(nick);
                let run = runs.get(nick).map_or(&[][..], Vec::as_slice);
                if throughout && run != (0..messages).collect::<Vec<_>>().as_slice() {
                    return Err(format!(
                        "{} was connected throughout {nick}'s session but got {run:?}",
                        log.nick
                    ));
                }
            }
            continue;
        }
        let (nick, msg) = line
            .strip_prefix('<')
            .and_then(|l| l.split_once("> "))
            .ok_or_else(|| format!("client{me}: malformed line {line:?}"))?;
        // Nicks are `client{i}`, or `client{i}r{k}` for the k-th restart of that host.
        let sender: usize = nick
            .strip_prefix("client")
            .and_then(|n| n.split('r').next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("client{me}: unknown sender in {line:?}"))?;
        let want_prefix = format!("m{sender}.");
        let n: usize = msg
            .strip_prefix(&want_prefix)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("client{me}: corrupt message {line:?}"))?;
        if nick == log.nick {
            return Err(format!("{nick} got its own message {line:?}"));
        }
        if sender >= clients {
            return Err(format!("client{me}: no client{sender} in this room"));
        }
        runs.entry(nick.to_string()).or_default().push(n);
    }
    for (sender, run) in &runs {
        if run.windows(2).any(|w| w[1] != w[0] + 1) {
            return Err(format!("client{me} got {sender}'s messages as {run:?}"));
        }
        if !faults && run.last().is_some_and(|&n| n != messages - 1) {
            return Err(format!(
                "client{me} missed the end of {sender}'s messages: {run:?}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use torsion::protocols::basic::LINE_MAX_LENGTH;
    use torsion::testing::{connect, Clock, StringTransport};

    use super::*;

    fn member(room: &Rc<RefCell<Room>>) -> (Box<dyn Protocol>, StringTransport) {
        let tr = StringTransport::new();
        let (f, _) = (ChatFactory { room: room.clone() }, ());
        let mut p = f.build_protocol(&tr.transport().get_peer()).unwrap();
        p.connection_made(&tr.transport());
        (p, tr)
    }

    #[test]
    fn nick_broadcast_and_leave() {
        let room = Room::new();
        let (mut a, ta) = member(&room);
        let (mut b, tb) = member(&room);
        assert_eq!(ta.take(), b"* welcome guest1\r\n* guest2 has joined\r\n");
        assert_eq!(tb.take(), b"* welcome guest2\r\n");
        a.data_received(b"/nick alice\r\nhello\r\n");
        assert_eq!(tb.take(), b"* guest1 is now alice\r\n<alice> hello\r\n");
        assert!(ta.take().is_empty(), "no echo to the sender");
        a.data_received(b"/quit\r\n");
        assert!(ta.disconnecting());
        ta.lose(&mut *a, None);
        assert_eq!(tb.take(), b"* alice has left\r\n");
        assert_eq!(room.borrow().nicks(), vec!["guest2"]);
        b.data_received(b"anyone?\r\n");
        assert_eq!(
            room.borrow().recent(),
            ["<alice> hello", "<guest2> anyone?"]
        );
    }

    #[test]
    fn over_long_line_closes_only_that_member() {
        let room = Room::new();
        let (mut a, ta) = member(&room);
        let (_b, tb) = member(&room);
        a.data_received(&vec![b'x'; LINE_MAX_LENGTH + 10]);
        assert!(ta.disconnecting());
        assert!(!tb.disconnecting());
        ta.lose(&mut *a, None);
        assert_eq!(room.borrow().nicks(), vec!["guest2"]);
    }

    #[test]
    fn scripted_client_sets_nick_and_speaks() {
        let clock = Clock::new();
        let (factory, room) = ChatFactory::new();
        let server = factory
            .build_protocol(
                &"10.0.0.9:1"
                    .parse::<std::net::SocketAddr>()
                    .map(Address::tcp)
                    .unwrap(),
            )
            .unwrap();
        let done = Deferred::new();
        let client = ChatClient::new(
            "carol",
            vec!["hi".into(), "bye".into()],
            Duration::from_secs(1),
            done.clone(),
        );
        let pump = connect(&clock, server, Box::new(client));
        pump.set_chunk_size(3);
        pump.flush();
        assert_eq!(room.borrow().recent(), ["<carol> hi", "<carol> bye"]);
        assert_eq!(room.borrow().nicks(), vec!["carol"]);
        pump.advance(Duration::from_secs(1));
        let log = done.take_result().unwrap().unwrap();
        assert!(log.sent_all);
        assert_eq!(log.received, vec!["* welcome guest1"]);
        assert!(room.borrow().nicks().is_empty(), "quit left the room");
    }

    fn log(nick: &str, clean: bool, lines: &[&str]) -> ChatLog {
        ChatLog {
            nick: nick.into(),
            received: lines.iter().map(|l| l.to_string()).collect(),
            sent_all: true,
            clean,
            quitting: clean,
        }
    }

    #[test]
    fn a_member_connected_throughout_must_get_every_message() {
        let sender = log("client0", true, &[]);
        let short = log(
            "client1",
            true,
            &[
                "* guest1 is now client0",
                "<client0> m0.0",
                "* client0 has left",
            ],
        );
        let e = check_logs(&[(0, sender.clone()), (1, short)], 2, 2, true).unwrap_err();
        assert!(e.contains("connected throughout"), "{e}");
        let full = log(
            "client1",
            true,
            &[
                "* guest1 is now client0",
                "<client0> m0.0",
                "<client0> m0.1",
                "* client0 has left",
            ],
        );
        check_logs(&[(0, sender.clone()), (1, full)], 2, 2, true).unwrap();
        // A sender whose session was reset may have lost messages on the way: no claim.
        let reset = log("client0", false, &[]);
        let short = log(
            "client1",
            true,
            &[
                "* guest1 is now client0",
                "<client0> m0.0",
                "* client0 has left",
            ],
        );
        check_logs(&[(0, reset), (1, short)], 2, 2, true).unwrap();
        // Gaps and reordering are always wrong.
        let gap = log("client1", true, &["<client0> m0.1", "<client0> m0.0"]);
        assert!(check_logs(&[(0, sender), (1, gap)], 2, 2, true).is_err());
    }
}
