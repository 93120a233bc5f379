//! TCP on mio: listeners, connections, connectors.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::rc::{Rc, Weak};
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token};
use socket2::{Domain, Protocol as SockProtocol, SockRef, Socket, Type};

use super::{addr, failure_from_io, resolve, Inner, Source, READS_PER_TURN};
use crate::defer::{succeed, Deferred, Failure};
use crate::error::{ConnectionDone, ConnectionRefused};
use crate::protocol::{
    Address, ClientFactory, CloseAction, ConnectIo, Connection, Connector, ConnectorCore,
    EofAction, Factory, FactoryStarts,
};
use crate::reactor::{
    CannotListenError, DelayedCall, Instant, ListeningPort, ListeningPortDriver, ReactorThreadsExt,
    ReactorTime, ReactorTimeExt, TimerQueue,
};

/// How long accept backs off after running out of file descriptors.
const EMFILE_BACKOFF: Duration = Duration::from_millis(100);

pub(crate) struct Listener {
    token: Cell<Token>,
    socket: RefCell<Option<TcpListener>>,
    factory: Rc<dyn Factory>,
    host: Address,
    backing_off: Cell<bool>,
    reactor: Weak<Inner>,
}

pub(crate) fn listen(
    inner: &Rc<Inner>,
    port: u16,
    factory: Rc<dyn Factory>,
    backlog: u32,
    interface: &str,
) -> Result<ListeningPort, CannotListenError> {
    let fail = |reason: String| CannotListenError {
        interface: interface.to_string(),
        port,
        reason,
    };
    let at = resolve(interface, port).map_err(|e| fail(e.to_string()))?;
    let socket = Socket::new(
        Domain::for_address(at),
        Type::STREAM,
        Some(SockProtocol::TCP),
    )
    .map_err(|e| fail(e.to_string()))?;
    socket
        .set_reuse_address(true)
        .map_err(|e| fail(e.to_string()))?;
    socket.bind(&at.into()).map_err(|e| fail(e.to_string()))?;
    socket
        .listen(backlog.min(i32::MAX as u32) as i32)
        .map_err(|e| fail(e.to_string()))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| fail(e.to_string()))?;
    let mut listener = TcpListener::from_std(socket.into());
    let host = addr(listener.local_addr().map_err(|e| fail(e.to_string()))?);
    let l = Rc::new(Listener {
        token: Cell::new(Token(0)),
        socket: RefCell::new(None),
        factory: factory.clone(),
        host,
        backing_off: Cell::new(false),
        reactor: Rc::downgrade(inner),
    });
    let token = inner.insert(|_| Source::Listener(l.clone()));
    l.token.set(token);
    inner
        .registry
        .register(&mut listener, token, Interest::READABLE)
        .map_err(|e| {
            inner.remove(token);
            fail(e.to_string())
        })?;
    *l.socket.borrow_mut() = Some(listener);
    inner.starts.borrow_mut().do_start(&factory);
    Ok(ListeningPort::new(l))
}

impl ListeningPortDriver for Listener {
    fn stop_listening(&self) -> Deferred<()> {
        let taken = self.socket.borrow_mut().take();
        if let (Some(mut socket), Some(inner)) = (taken, self.reactor.upgrade()) {
            let _ = inner.registry.deregister(&mut socket);
            inner.remove(self.token.get());
            inner.starts.borrow_mut().do_stop(&self.factory);
        }
        succeed(())
    }

    fn get_host(&self) -> Address {
        self.host
    }
}

fn is_out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Accepts until the queue is empty (mio's readiness is edge-triggered).
pub(crate) fn accept(inner: &Inner, l: &Rc<Listener>) {
    if l.backing_off.get() {
        return;
    }
    loop {
        let accepted = match l.socket.borrow().as_ref() {
            Some(s) => s.accept(),
            None => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let peer = addr(peer);
                let Some(protocol) = l.factory.build_protocol(&peer) else {
                    drop(stream); // refused by the factory: close at once
                    continue;
                };
                let host = stream.local_addr().map(addr).unwrap_or(l.host);
                if let Some(c) = TcpConn::start(inner, stream, host, peer, protocol) {
                    c.conn.make_connection();
                    inner.mark_dirty(&c);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_out_of_fds(&e) => {
                tracing::warn!(error = %e, "out of file descriptors: pausing accept");
                l.backing_off.set(true);
                let (l2, r) = (l.clone(), inner.me.clone());
                if let Some(reactor) = inner.handle() {
                    reactor.call_later(EMFILE_BACKOFF, move || {
                        l2.backing_off.set(false);
                        if let Some(inner) = r.upgrade() {
                            accept(&inner, &l2);
                        }
                    });
                }
                return;
            }
            Err(e) => {
                // A connection reset before accept (ECONNABORTED) and the like: skip it.
                tracing::debug!(error = %e, "accept failed");
                continue;
            }
        }
    }
}

/// A connection's clock: the reactor, without keeping it alive. The reactor owns its
/// connections; a strong handle here would make a cycle (reactor → connection → reactor)
/// that keeps a dropped reactor, its sockets and its protocols alive forever. Once the reactor
/// is gone, calls come back cancelled.
struct ConnClock(Weak<Inner>);

impl ReactorTime for ConnClock {
    fn seconds(&self) -> Instant {
        self.0.upgrade().map_or(Instant::ZERO, |inner| inner.now())
    }

    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        match self.0.upgrade().and_then(|inner| inner.handle()) {
            Some(reactor) => reactor.call_later_boxed(delay, f),
            None => {
                let call = TimerQueue::new().call_later_boxed(delay, f);
                let _ = call.cancel();
                call
            }
        }
    }
}

/// One TCP connection: the socket and the shared [`Connection`] state.
pub(crate) struct TcpConn {
    pub(crate) token: Cell<Token>,
    pub(crate) conn: Rc<Connection>,
    stream: RefCell<Option<TcpStream>>,
    pub(crate) queued: Cell<bool>,
    /// Reading stopped because the protocol paused it; resume reading when it unpauses.
    read_held: Cell<bool>,
    wants_write: Cell<bool>,
    nodelay: Cell<bool>,
    /// Its read budget ran out with data likely left: it is on the reactor's list of
    /// connections read again next turn.
    pub(crate) read_later: Cell<bool>,
}

impl TcpConn {
    /// Registers `stream` and builds its connection (not yet made).
    fn start(
        inner: &Inner,
        mut stream: TcpStream,
        host: Address,
        peer: Address,
        protocol: Box<dyn crate::protocol::Protocol>,
    ) -> Option<Rc<TcpConn>> {
        let clock: Rc<dyn ReactorTime> = Rc::new(ConnClock(inner.me.clone()));
        let r = inner.me.clone();
        let c = Rc::new_cyclic(|me: &Weak<TcpConn>| {
            let me = me.clone();
            let wake: Rc<dyn Fn()> = Rc::new(move || {
                if let (Some(inner), Some(c)) = (r.upgrade(), me.upgrade()) {
                    inner.mark_dirty(&c);
                }
            });
            TcpConn {
                token: Cell::new(Token(0)),
                conn: Connection::new(clock, wake, host, peer, protocol),
                stream: RefCell::new(None),
                queued: Cell::new(false),
                read_held: Cell::new(false),
                wants_write: Cell::new(false),
                nodelay: Cell::new(false),
                read_later: Cell::new(false),
            }
        });
        let token = inner.insert(|_| Source::Conn(c.clone()));
        c.token.set(token);
        if let Err(e) =
            inner
                .registry
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
        {
            tracing::warn!(error = %e, "cannot register a connection");
            inner.remove(token);
            return None;
        }
        c.wants_write.set(true);
        *c.stream.borrow_mut() = Some(stream);
        Some(c)
    }

    fn close(&self, inner: &Inner, reason: Failure, reset: bool) {
        if let Some(mut s) = self.stream.borrow_mut().take() {
            if reset {
                let _ = SockRef::from(&s).set_linger(Some(Duration::ZERO));
            }
            let _ = inner.registry.deregister(&mut s);
            drop(s);
        }
        inner.remove(self.token.get());
        self.conn.connection_lost(reason);
    }
}

/// Reads until the socket would block, the protocol pauses (or read backpressure holds
/// input), the peer closes, or the read budget of this turn ([`READS_PER_TURN`]) is spent.
/// Unless `drain` is set, a short read also ends it (the queue is empty; new data raises a new
/// edge). `drain` is for an event that reported the peer's FIN or an error, for resuming
/// after a pause, and for a connection carried over from the last turn: then only `EAGAIN` or
/// EOF ends it.
///
/// mio's readiness is edge-triggered: a socket left with data after its budget raises no new
/// event. So it goes on the reactor's list of connections read again next turn, and that
/// turn polls without waiting.
pub(crate) fn read(inner: &Inner, c: &Rc<TcpConn>, drain: bool) {
    if c.conn.is_closed() || c.conn.eof_received() {
        return;
    }
    let mut buf = inner.read_buf.borrow_mut();
    for _ in 0..READS_PER_TURN {
        if c.conn.reading_paused() {
            c.read_held.set(true);
            return;
        }
        let got = match c.stream.borrow_mut().as_mut() {
            Some(s) => s.read(&mut buf),
            None => return,
        };
        match got {
            Ok(0) => {
                drop(buf);
                match c.conn.read_eof() {
                    EofAction::Close => c.close(inner, Failure::new(ConnectionDone), false),
                    // Half-close: the protocol goes on writing; done once our side shuts.
                    EofAction::StayOpen => inner.mark_dirty(c),
                }
                return;
            }
            Ok(n) => {
                // The protocol may re-enter the reactor (write, close, schedule); the buffer
                // stays borrowed here, and nothing it can call reads.
                c.conn.deliver(&buf[..n]);
                if c.conn.is_closed() {
                    return;
                }
                if n < buf.len() && !drain {
                    // A short read emptied the socket's queue: stop here rather than spend a
                    // syscall on the EAGAIN (as tokio does). Data that arrives later raises a
                    // new edge, and so does the peer's FIN.
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                drop(buf);
                c.close(inner, failure_from_io(&e), false);
                return;
            }
        }
    }
    // The budget is spent and the socket may hold more: other connections, timers and
    // signals get their turn first.
    inner.read_later(c);
}

/// Sends what is buffered, performs a pending close, and keeps the interests right.
pub(crate) fn flush(inner: &Inner, c: &Rc<TcpConn>) {
    if c.conn.is_closed() {
        return;
    }
    if let CloseAction::Abort(reason) = c.conn.close_action() {
        c.close(inner, reason, true);
        return;
    }
    if c.conn.nodelay() != c.nodelay.get() {
        c.nodelay.set(c.conn.nodelay());
        if let Some(s) = c.stream.borrow().as_ref() {
            let _ = s.set_nodelay(c.nodelay.get());
        }
    }
    while c.conn.pending_output() > 0 && !c.conn.write_shut() {
        let sent = c
            .conn
            .peek_output(|a, b| match c.stream.borrow_mut().as_mut() {
                // One contiguous run (the common case) is a plain `send`.
                Some(s) if b.is_empty() => s.write(a),
                Some(s) => s.write_vectored(&[IoSlice::new(a), IoSlice::new(b)]),
                None => Ok(0),
            });
        match sent {
            Ok(0) => break,
            Ok(n) => c.conn.consume_output(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                c.close(inner, failure_from_io(&e), false);
                return;
            }
        }
    }
    match c.conn.close_action() {
        CloseAction::None => {}
        CloseAction::Close => {
            c.close(inner, Failure::new(ConnectionDone), false);
            return;
        }
        CloseAction::Abort(reason) => {
            c.close(inner, reason, true);
            return;
        }
        CloseAction::ShutdownWrite => {
            if let Some(s) = c.stream.borrow().as_ref() {
                let _ = s.shutdown(Shutdown::Write);
            }
            if c.conn.write_shutdown_done() == EofAction::Close {
                c.close(inner, Failure::new(ConnectionDone), false);
                return;
            }
        }
    }
    // Ask for WRITABLE only while output is left over.
    let want = c.conn.pending_output() > 0 && !c.conn.write_shut();
    if want != c.wants_write.get() {
        c.wants_write.set(want);
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if let Some(s) = c.stream.borrow_mut().as_mut() {
            let _ = inner.registry.reregister(s, c.token.get(), interest);
        }
    }
    // The protocol resumed reading: take what the kernel held meanwhile.
    if c.read_held.get() && !c.conn.reading_paused() {
        c.read_held.set(false);
        read(inner, c, true);
    }
}

/// The I/O half of an outgoing connection on mio (the state machine is the engine's
/// [`ConnectorCore`]): resolve the name, open a nonblocking socket, wait for it to become
/// writable.
pub(crate) struct MioConnector {
    me: Weak<MioConnector>,
    reactor: Weak<Inner>,
    host: String,
    port: u16,
    bind: Option<SocketAddr>,
    token: Cell<Option<Token>>,
    stream: RefCell<Option<TcpStream>>,
    dest: Cell<Option<SocketAddr>>,
    /// The attempt in flight and its connector, held while the socket is registered (the
    /// reactor keeps an attempt alive, as Twisted's does).
    pending: RefCell<Option<(Rc<ConnectorCore>, u64)>>,
}

/// The handle the core owns; the slab holds the same `MioConnector` while connecting.
struct MioConnectIo(Rc<MioConnector>);

pub(crate) fn connect(
    inner: &Rc<Inner>,
    host: &str,
    port: u16,
    factory: Rc<dyn ClientFactory>,
    timeout: Duration,
    bind: Option<SocketAddr>,
) -> Connector {
    let io = Rc::new_cyclic(|me| MioConnector {
        me: me.clone(),
        reactor: Rc::downgrade(inner),
        host: host.to_string(),
        port,
        bind,
        token: Cell::new(None),
        stream: RefCell::new(None),
        dest: Cell::new(None),
        pending: RefCell::new(None),
    });
    let core = ConnectorCore::new(factory, timeout, Box::new(MioConnectIo(io)));
    let handle = core.handle();
    core.start();
    handle
}

impl MioConnector {
    fn open(&self, dest: SocketAddr) -> io::Result<TcpStream> {
        let socket = Socket::new(
            Domain::for_address(dest),
            Type::STREAM,
            Some(SockProtocol::TCP),
        )?;
        socket.set_nonblocking(true)?;
        if let Some(b) = self.bind {
            socket.bind(&b.into())?;
        }
        match socket.connect(&dest.into()) {
            Ok(()) => {}
            Err(e)
                if e.raw_os_error() == Some(libc::EINPROGRESS)
                    || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(TcpStream::from_std(socket.into()))
    }

    fn begin(&self, core: &Rc<ConnectorCore>, attempt: u64) {
        let (Some(inner), Some(me)) = (self.reactor.upgrade(), self.me.upgrade()) else {
            return;
        };
        let Some(reactor) = inner.handle() else {
            return;
        };
        // An IP literal connects at once; a name is resolved on the worker pool (the
        // system resolver blocks), as Twisted's threaded resolver does.
        if let Ok(ip) = self.host.parse::<std::net::IpAddr>() {
            self.open_and_register(&inner, &me, core, attempt, SocketAddr::new(ip, self.port));
            return;
        }
        let (host, port) = (self.host.clone(), self.port);
        let resolved = reactor
            .defer_to_thread(move || resolve(&host, port).map_err(|e| (e.kind(), e.to_string())));
        let core = core.clone();
        let _ = resolved.add_callback(move |r| {
            let Some(inner) = me.reactor.upgrade() else {
                return;
            };
            match r {
                Ok(dest) => me.open_and_register(&inner, &me, &core, attempt, dest),
                Err((kind, text)) => {
                    let reason = me.error_reason(&io::Error::new(kind, text));
                    core.failed(attempt, reason);
                }
            }
        });
    }

    /// Opens a socket to `dest` and waits for it to connect (writable).
    fn open_and_register(
        &self,
        inner: &Rc<Inner>,
        me: &Rc<MioConnector>,
        core: &Rc<ConnectorCore>,
        attempt: u64,
        dest: SocketAddr,
    ) {
        if !core.is_current(attempt) {
            return; // stopped or timed out while resolving
        }
        let Some(reactor) = inner.handle() else {
            return;
        };
        self.dest.set(Some(dest));
        let fail_next_turn = |reason: Failure| {
            // Reported on the next turn, never from inside connect_tcp.
            let core = core.clone();
            reactor.call_soon(move || core.failed(attempt, reason));
        };
        let mut stream = match self.open(dest) {
            Ok(s) => s,
            Err(e) => return fail_next_turn(self.error_reason(&e)),
        };
        let token = inner.insert(|_| Source::Connecting(me.clone()));
        if let Err(e) = inner
            .registry
            .register(&mut stream, token, Interest::WRITABLE)
        {
            inner.remove(token);
            return fail_next_turn(failure_from_io(&e));
        }
        self.token.set(Some(token));
        *self.stream.borrow_mut() = Some(stream);
        *self.pending.borrow_mut() = Some((core.clone(), attempt));
    }

    fn error_reason(&self, e: &io::Error) -> Failure {
        if e.kind() == io::ErrorKind::ConnectionRefused {
            Failure::new(ConnectionRefused {
                peer: format!("{}:{}", self.host, self.port),
            })
        } else {
            failure_from_io(e)
        }
    }

    /// Deregisters and drops the socket of the attempt in flight.
    fn release(&self) {
        let stream = self.stream.borrow_mut().take();
        if let (Some(inner), Some(token)) = (self.reactor.upgrade(), self.token.take()) {
            if let Some(mut s) = stream {
                let _ = inner.registry.deregister(&mut s);
            }
            inner.remove(token);
        }
        self.pending.borrow_mut().take();
    }
}

impl ConnectIo for MioConnectIo {
    fn open(&self, core: &Rc<ConnectorCore>, attempt: u64) {
        self.0.begin(core, attempt);
    }

    fn release(&self) {
        self.0.release();
    }

    fn destination(&self) -> Address {
        self.0.dest.get().map_or_else(
            || {
                resolve(&self.0.host, self.0.port)
                    .map(addr)
                    .unwrap_or_else(|_| addr(SocketAddr::from(([0, 0, 0, 0], self.0.port))))
            },
            addr,
        )
    }

    fn call_later(&self, delay: Duration, f: Box<dyn FnOnce()>) -> Option<DelayedCall> {
        let reactor = self.0.reactor.upgrade()?.handle()?;
        Some(reactor.call_later(delay, f))
    }

    fn with_starts(&self, f: &mut dyn FnMut(&mut FactoryStarts)) {
        if let Some(inner) = self.0.reactor.upgrade() {
            f(&mut inner.starts.borrow_mut());
        }
    }
}

/// The connecting socket became writable: connected, or failed.
pub(crate) fn connect_ready(inner: &Inner, c: &Rc<MioConnector>) {
    let Some((core, attempt)) = c.pending.borrow().clone() else {
        return;
    };
    let status = match c.stream.borrow().as_ref() {
        Some(s) => match s.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match s.peer_addr() {
                Ok(peer) => Ok(Some(peer)),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(None),
                Err(e) => Err(e),
            },
        },
        None => return,
    };
    let peer = match status {
        Ok(Some(peer)) => peer,
        Ok(None) => return, // not yet: wait for the next event
        Err(e) => {
            core.failed(attempt, c.error_reason(&e));
            return;
        }
    };
    // The socket leaves the connector: from here it belongs to the connection.
    let Some(mut stream) = c.stream.borrow_mut().take() else {
        return;
    };
    if let Some(token) = c.token.take() {
        let _ = inner.registry.deregister(&mut stream);
        inner.remove(token);
    }
    c.pending.borrow_mut().take();
    let peer = addr(peer);
    let Some(protocol) = core.build_protocol(attempt, &peer) else {
        return; // declined (already reported as failed) or stale: the socket closes here
    };
    let host = stream.local_addr().map(addr).unwrap_or(peer);
    let Some(conn) = TcpConn::start(inner, stream, host, peer, protocol) else {
        core.failed(attempt, Failure::msg("cannot register the connection"));
        return;
    };
    core.connected(attempt, &conn.conn);
    conn.conn.make_connection();
    inner.mark_dirty(&conn);
}
