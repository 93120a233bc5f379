//! `Transport`: the handle a protocol writes to, and the driver trait behind it.
//!
//! Each reactor implements [`TransportDriver`] for its connections; protocols only see the
//! cheap-clone [`Transport`] handle, usable from any callback or timer on the reactor thread.
//! Nothing here calls back into a protocol synchronously: writes are buffered and closes are
//! completed by the reactor's loop.
//!
//! # Who keeps a connection alive
//!
//! The reactor owns each connection (and, through it, the protocol); the protocol keeps its
//! `Transport`. If that handle kept the connection alive too, every connection would be a
//! reference cycle — connection → protocol → transport → connection — and would never be
//! freed, protocol included. So the handle a reactor hands out ([`Transport::weak`]) does not
//! own its connection: when the driver drops the connection (after `connection_lost`, or when
//! the reactor or simulated world is torn down), the protocol is dropped with it, and any
//! handle still held elsewhere (a chat room's list of peers, a pending timer's closure) is
//! *detached*: writes and closes are ignored, `connected()` and `disconnecting()` are false,
//! `buffered()` is 0, producers are refused, scoped calls come back cancelled, and
//! `get_peer`/`get_host` keep answering the addresses the connection had. That is exactly what
//! a closed connection already answered, so the contract below does not change.
//!
//! The other way to break the cycle — the connection dropping its protocol right after
//! `connection_lost` — was not chosen: a cycle would remain whenever a driver goes away
//! without delivering `connection_lost` (a reactor dropped with connections open, a crashed or
//! finished simulated world), and test doubles could no longer show a protocol's state after
//! its connection closed. A handle built with [`Transport::new`] still owns its driver: that
//! is for drivers nothing else owns (test doubles, a policy wrapper's inner transport).

use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::defer::{Deferred, Failure};
use crate::error::{CancelledError, TypeMismatch};
use crate::protocol::{find_protocol, Address, Producer, ProducerError, Protocol};
use crate::reactor::{DelayedCall, TimerQueue};

/// A closure run with the connection's protocol (connection-scoped scheduling).
pub type ScopedCall = Box<dyn FnOnce(&mut dyn Protocol)>;

/// What a reactor implements for each connection (Twisted's `ITransport`, `ITCPTransport`,
/// `IConsumer` and `IProducer` for the read side). Protocol code uses [`Transport`] instead.
///
/// Contract: no method calls the protocol before returning; `connection_lost` is delivered
/// from the reactor loop, after the data written before a `lose_connection` has been handed to
/// the network; scoped calls never run after `connection_lost`.
pub trait TransportDriver {
    /// Buffers `data` for sending. Dropped once the connection is closing or closed.
    fn write(&self, data: &[u8]);
    /// Buffers each piece in turn.
    fn write_sequence(&self, data: &[&[u8]]) {
        for piece in data {
            self.write(piece);
        }
    }
    /// Flushes the buffer, then closes (waits for a registered streaming producer to
    /// unregister first). `connection_lost` gets `ConnectionDone`.
    fn lose_connection(&self);
    /// Closes now, dropping buffered data; `connection_lost` gets `ConnectionAborted` on a
    /// later turn.
    fn abort_connection(&self);
    /// Flushes, then shuts down the write side only (half-close).
    fn lose_write_connection(&self);
    /// The far end's address (still answered during `connection_lost`).
    fn get_peer(&self) -> Address;
    /// This end's address (still answered during `connection_lost`).
    fn get_host(&self) -> Address;
    /// Registers a producer with this transport as its consumer.
    fn register_producer(&self, producer: Producer) -> Result<(), ProducerError>;
    /// Unregisters the producer (a pending `lose_connection` may then complete).
    fn unregister_producer(&self);
    /// Stops delivering `data_received` until resumed (the read side, as a producer).
    fn pause_producing(&self);
    /// Delivers `data_received` again.
    fn resume_producing(&self);
    /// Whether reading stops while this connection's own output is above the high-water mark,
    /// until it drains to the low-water mark (see [`Transport::set_read_backpressure`]). The
    /// default does nothing: for transports with no output buffer of their own.
    fn set_read_backpressure(&self, _enabled: bool) {}
    /// Sets `TCP_NODELAY`; returns whether the transport supports it.
    fn set_tcp_nodelay(&self, enabled: bool) -> bool;
    /// Whether the connection is up and not yet closing.
    fn connected(&self) -> bool;
    /// Whether `lose_connection` or `abort_connection` was called.
    fn disconnecting(&self) -> bool;
    /// Bytes written but not yet handed to the network.
    fn buffered(&self) -> usize;
    /// Runs `f` with this connection's protocol after `delay`, unless the connection is lost
    /// first (then the call is cancelled and `f` dropped without running). `#[track_caller]`,
    /// like [`ReactorTime::call_later_boxed`](crate::reactor::ReactorTime::call_later_boxed).
    #[track_caller]
    fn call_later_scoped(&self, delay: Duration, f: ScopedCall) -> DelayedCall;
}

/// The handle a protocol uses to talk to its connection (Twisted's `self.transport`).
///
/// `Transport::default()` is a detached transport: writes go nowhere and it reports not
/// connected. It is the placeholder a protocol struct holds until `connection_made`.
///
/// Connection-scoped scheduling hands the protocol back as `&mut P`, so timers and Deferred
/// callbacks need no `Rc<RefCell<Self>>`; they are cancelled when the connection is lost.
///
/// ```
/// use std::time::Duration;
/// use torsion::protocol::{Protocol, Transport};
///
/// #[derive(Default)]
/// struct Greeter { transport: Transport, greeted: bool }
///
/// impl Protocol for Greeter {
///     fn connection_made(&mut self, transport: &Transport) {
///         self.transport = transport.clone();
///         // One second after connecting, greet — if still connected.
///         transport.call_later(Duration::from_secs(1), |me: &mut Greeter| {
///             me.transport.write(b"hello\r\n");
///             me.greeted = true;
///         });
///     }
///     fn data_received(&mut self, _data: &[u8]) {}
/// }
/// ```
#[derive(Clone)]
pub struct Transport {
    link: Link,
}

#[derive(Clone)]
enum Link {
    /// The handle owns its driver ([`Transport::new`]).
    Owned(Rc<dyn TransportDriver>),
    /// The reactor owns the connection ([`Transport::weak`]); the addresses outlive it.
    Weak {
        driver: Weak<dyn TransportDriver>,
        host: Address,
        peer: Address,
    },
}

impl Default for Transport {
    fn default() -> Self {
        Transport::new(Rc::new(Detached::unbound()))
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Transport({} -> {}, {})",
            self.get_host(),
            self.get_peer(),
            if self.connected() {
                "connected"
            } else {
                "not connected"
            }
        )
    }
}

impl Transport {
    /// Wraps a driver and keeps it alive for as long as any clone of the handle exists. For
    /// drivers nothing else owns (test doubles, wrappers); a reactor's connections use
    /// [`weak`](Self::weak).
    pub fn new(driver: Rc<dyn TransportDriver>) -> Self {
        Transport {
            link: Link::Owned(driver),
        }
    }

    /// A handle to a driver the reactor owns, which does not keep it alive (see the module
    /// docs). Once the driver is gone the handle is detached: writes and closes do nothing,
    /// it reports not connected, and [`get_host`](Self::get_host) and
    /// [`get_peer`](Self::get_peer) go on answering `host` and `peer`.
    pub fn weak(driver: Weak<dyn TransportDriver>, host: Address, peer: Address) -> Self {
        Transport {
            link: Link::Weak { driver, host, peer },
        }
    }

    /// The driver behind this handle; once a reactor's connection is gone, a detached driver
    /// that answers as described in [`weak`](Self::weak).
    pub fn driver(&self) -> Rc<dyn TransportDriver> {
        match &self.link {
            Link::Owned(d) => d.clone(),
            Link::Weak { driver, host, peer } => driver.upgrade().unwrap_or_else(|| {
                Rc::new(Detached {
                    host: *host,
                    peer: *peer,
                })
            }),
        }
    }

    /// Whether the connection is still there (always true for [`new`](Self::new) handles).
    /// A handle whose connection was dropped by its reactor is detached.
    pub fn is_attached(&self) -> bool {
        match &self.link {
            Link::Owned(_) => true,
            Link::Weak { driver, .. } => driver.strong_count() > 0,
        }
    }

    /// Runs `f` with the driver, or with a detached one once the connection is gone.
    fn with<R>(&self, f: impl FnOnce(&dyn TransportDriver) -> R) -> R {
        match &self.link {
            Link::Owned(d) => f(&**d),
            Link::Weak { driver, host, peer } => match driver.upgrade() {
                Some(d) => f(&*d),
                None => f(&Detached {
                    host: *host,
                    peer: *peer,
                }),
            },
        }
    }

    fn data_ptr(&self) -> *const () {
        match &self.link {
            Link::Owned(d) => Rc::as_ptr(d) as *const (),
            Link::Weak { driver, .. } => Weak::as_ptr(driver) as *const (),
        }
    }

    /// Whether two handles are for the same connection.
    pub fn ptr_eq(&self, other: &Transport) -> bool {
        std::ptr::eq(self.data_ptr(), other.data_ptr())
    }

    /// Buffers `data` for sending (Twisted's `write`).
    pub fn write(&self, data: impl AsRef<[u8]>) {
        self.with(|d| d.write(data.as_ref()));
    }

    /// Buffers each piece in turn (Twisted's `writeSequence`).
    pub fn write_sequence(&self, data: &[&[u8]]) {
        self.with(|d| d.write_sequence(data));
    }

    /// Flushes pending data, then closes (Twisted's `loseConnection`).
    pub fn lose_connection(&self) {
        self.with(|d| d.lose_connection());
    }

    /// Closes at once, dropping pending data (Twisted's `abortConnection`).
    pub fn abort_connection(&self) {
        self.with(|d| d.abort_connection());
    }

    /// Flushes, then shuts down our write side (Twisted's `loseWriteConnection`).
    pub fn lose_write_connection(&self) {
        self.with(|d| d.lose_write_connection());
    }

    /// The far end's address.
    pub fn get_peer(&self) -> Address {
        match &self.link {
            Link::Owned(d) => d.get_peer(),
            Link::Weak { driver, peer, .. } => driver.upgrade().map_or(*peer, |d| d.get_peer()),
        }
    }

    /// This end's address.
    pub fn get_host(&self) -> Address {
        match &self.link {
            Link::Owned(d) => d.get_host(),
            Link::Weak { driver, host, .. } => driver.upgrade().map_or(*host, |d| d.get_host()),
        }
    }

    /// Registers a producer (Twisted's `registerProducer`); a second one is an error.
    pub fn register_producer(&self, producer: Producer) -> Result<(), ProducerError> {
        self.with(|d| d.register_producer(producer))
    }

    /// Unregisters the producer (Twisted's `unregisterProducer`).
    pub fn unregister_producer(&self) {
        self.with(|d| d.unregister_producer());
    }

    /// Stops delivering `data_received` (Twisted's `transport.pauseProducing`).
    pub fn pause_producing(&self) {
        self.with(|d| d.pause_producing());
    }

    /// Resumes delivering `data_received`.
    pub fn resume_producing(&self) {
        self.with(|d| d.resume_producing());
    }

    /// Read backpressure for this connection: while on, the connection is not read while
    /// its own output is above [`HIGH_WATER_MARK`](crate::protocol::HIGH_WATER_MARK), until
    /// that output drains to [`LOW_WATER_MARK`](crate::protocol::LOW_WATER_MARK). So a peer
    /// that sends and never reads cannot make the protocol buffer without bound, even with no
    /// producer registered; the kernel's buffers push back on the peer instead.
    ///
    /// On by default for connections a listening port accepts; off for connections opened
    /// with `connect_tcp` (were both ends of a connection to apply it, each could wait for
    /// the other to read). Twisted has no such rule: turn it off for a protocol that must
    /// keep reading whatever it has queued to send (it then bounds its own buffer, for
    /// instance with a producer).
    ///
    /// ```
    /// use torsion::protocol::{Protocol, Transport};
    ///
    /// /// Echoes, and drops a peer that lets more than 1 MiB pile up rather than stop
    /// /// reading it.
    /// #[derive(Default)]
    /// struct StrictEcho { transport: Transport }
    ///
    /// impl Protocol for StrictEcho {
    ///     fn connection_made(&mut self, transport: &Transport) {
    ///         transport.set_read_backpressure(false);
    ///         self.transport = transport.clone();
    ///     }
    ///     fn data_received(&mut self, data: &[u8]) {
    ///         self.transport.write(data);
    ///         if self.transport.buffered() > 1 << 20 {
    ///             self.transport.abort_connection();
    ///         }
    ///     }
    /// }
    /// ```
    pub fn set_read_backpressure(&self, enabled: bool) {
        self.with(|d| d.set_read_backpressure(enabled));
    }

    /// Twisted's `transport.stopProducing`: closes the connection.
    pub fn stop_producing(&self) {
        self.with(|d| d.lose_connection());
    }

    /// Sets `TCP_NODELAY` where supported; returns whether it is.
    pub fn set_tcp_nodelay(&self, enabled: bool) -> bool {
        self.with(|d| d.set_tcp_nodelay(enabled))
    }

    /// Whether the connection is up and not closing.
    pub fn connected(&self) -> bool {
        self.with(|d| d.connected())
    }

    /// Whether a close has been asked for.
    pub fn disconnecting(&self) -> bool {
        self.with(|d| d.disconnecting())
    }

    /// Bytes written but not yet sent.
    pub fn buffered(&self) -> usize {
        self.with(|d| d.buffered())
    }

    /// Runs `f` with this connection's protocol, as a `&mut P`, after `delay`; cancelled if the
    /// connection is lost first. `P` may be the protocol's type or a type it wraps.
    #[track_caller]
    pub fn call_later<P: Protocol>(
        &self,
        delay: Duration,
        f: impl FnOnce(&mut P) + 'static,
    ) -> DelayedCall {
        let f: ScopedCall = Box::new(move |proto: &mut dyn Protocol| {
            if let Some(p) = find_protocol::<P>(proto) {
                f(p);
            }
        });
        // Not through `with`: a closure would hide the caller's location from the driver.
        match &self.link {
            Link::Owned(d) => d.call_later_scoped(delay, f),
            Link::Weak { driver, host, peer } => match driver.upgrade() {
                Some(d) => d.call_later_scoped(delay, f),
                None => Detached {
                    host: *host,
                    peer: *peer,
                }
                .call_later_scoped(delay, f),
            },
        }
    }

    /// [`call_later`](Self::call_later) with no delay: after whatever is running now.
    #[track_caller]
    pub fn call_soon<P: Protocol>(&self, f: impl FnOnce(&mut P) + 'static) -> DelayedCall {
        self.call_later(Duration::ZERO, f)
    }

    /// When `d` fires, runs `f` with this connection's protocol and the result, on a later
    /// loop turn (never inside the code that fired `d`). The returned Deferred fires with
    /// what `f` returns, or fails with [`CancelledError`] if the connection was lost first.
    ///
    /// ```
    /// use torsion::defer::{Deferred, Failure};
    /// use torsion::protocol::{Protocol, Transport};
    ///
    /// #[derive(Default)]
    /// struct Lookup { transport: Transport }
    ///
    /// impl Protocol for Lookup {
    ///     fn data_received(&mut self, data: &[u8]) {
    ///         let answer: Deferred<String> = Deferred::new(); // e.g. from a backend
    ///         self.transport.when_fired(answer, |me: &mut Lookup, r: Result<String, Failure>| {
    ///             me.transport.write(r.unwrap_or_else(|f| f.to_string()));
    ///         });
    ///     }
    /// }
    /// ```
    pub fn when_fired<P: Protocol, T: 'static, U: 'static>(
        &self,
        d: Deferred<T>,
        f: impl FnOnce(&mut P, Result<T, Failure>) -> U + 'static,
    ) -> Deferred<U> {
        let out = Deferred::<U>::new();
        let guard = FireOnDrop(Some(out.clone()));
        // A clone of this handle: for a reactor's connection it does not keep the connection
        // alive, and once the connection is gone the scoped call is refused (and `out` fails).
        let transport = self.clone();
        let _handled = d.add_both(move |result: Result<T, Failure>| {
            let mut guard = guard;
            transport.driver().call_later_scoped(
                Duration::ZERO,
                Box::new(move |proto: &mut dyn Protocol| {
                    let Some(out) = guard.0.take() else { return };
                    match find_protocol::<P>(proto) {
                        Some(p) => {
                            let _ = out.callback(f(p, result));
                        }
                        None => {
                            let _ = out.errback(TypeMismatch {
                                expected: std::any::type_name::<P>(),
                            });
                        }
                    }
                }),
            );
            Ok::<(), Failure>(())
        });
        out
    }
}

/// Fails the Deferred with `CancelledError` if dropped before being taken.
struct FireOnDrop<U: 'static>(Option<Deferred<U>>);

impl<U: 'static> Drop for FireOnDrop<U> {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = d.errback(CancelledError);
        }
    }
}

/// The placeholder driver of `Transport::default()` (no addresses: 0.0.0.0:0), and what a
/// detached handle talks to once its reactor's connection is gone (the addresses it had).
struct Detached {
    host: Address,
    peer: Address,
}

impl Detached {
    fn unbound() -> Self {
        let none = Address::tcp(std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
        Detached {
            host: none,
            peer: none,
        }
    }
}

impl TransportDriver for Detached {
    fn write(&self, _data: &[u8]) {}
    fn lose_connection(&self) {}
    fn abort_connection(&self) {}
    fn lose_write_connection(&self) {}
    fn get_peer(&self) -> Address {
        self.peer
    }
    fn get_host(&self) -> Address {
        self.host
    }
    fn register_producer(&self, _producer: Producer) -> Result<(), ProducerError> {
        Err(ProducerError::Disconnected)
    }
    fn unregister_producer(&self) {}
    fn pause_producing(&self) {}
    fn resume_producing(&self) {}
    fn set_tcp_nodelay(&self, _enabled: bool) -> bool {
        false
    }
    fn connected(&self) -> bool {
        false
    }
    fn disconnecting(&self) -> bool {
        false
    }
    fn buffered(&self) -> usize {
        0
    }
    fn call_later_scoped(&self, delay: Duration, f: ScopedCall) -> DelayedCall {
        // Never runs: there is no connection. Hand back a call that is already cancelled.
        let call = TimerQueue::new().call_later_boxed(delay, Box::new(move || drop(f)));
        let _ = call.cancel();
        call
    }
}
