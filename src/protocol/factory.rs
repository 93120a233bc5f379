//! Factories: what a listening port or a connector asks for a protocol per connection.

use std::marker::PhantomData;
use std::rc::Rc;

use crate::defer::Failure;
use crate::protocol::{Address, Connector, Protocol, Transport};

/// Builds a protocol for each new connection (Twisted's `Factory`).
///
/// Methods take `&self`: a factory is shared by the port (or connector) and, usually, the
/// protocols it builds; state they share lives behind a `Cell` / `RefCell` / `Rc` inside.
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// use torsion::protocol::{Address, Factory, Protocol, Transport};
///
/// struct Counter { transport: Transport, served: Rc<Cell<u32>> }
/// impl Protocol for Counter {
///     fn connection_made(&mut self, t: &Transport) {
///         self.served.set(self.served.get() + 1);
///         t.write(format!("you are visitor {}\r\n", self.served.get()));
///         t.lose_connection();
///     }
///     fn data_received(&mut self, _data: &[u8]) {}
/// }
///
/// struct CounterFactory { served: Rc<Cell<u32>> }
/// impl Factory for CounterFactory {
///     fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
///         Some(Box::new(Counter { transport: Default::default(), served: self.served.clone() }))
///     }
/// }
/// ```
pub trait Factory: 'static {
    /// A protocol for a connection from (or to) `addr`, or `None` to refuse it.
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>>;

    /// Called before the first port or connector using this factory starts.
    fn start_factory(&self) {}

    /// Called after the last port or connector using this factory stops.
    fn stop_factory(&self) {}
}

/// A factory for outgoing connections (Twisted's `ClientFactory`).
pub trait ClientFactory: Factory {
    /// A connection attempt is starting.
    fn started_connecting(&self, connector: &Connector) {
        let _ = connector;
    }

    /// The attempt failed (refused, unreachable, timed out).
    fn client_connection_failed(&self, connector: &Connector, reason: Failure) {
        let _ = (connector, reason);
    }

    /// An established connection was lost.
    fn client_connection_lost(&self, connector: &Connector, reason: Failure) {
        let _ = (connector, reason);
    }
}

/// A factory that builds `P::default()` for every connection (Twisted's
/// `Factory.forProtocol`).
///
/// ```
/// use torsion::protocol::{Address, Factory, ForProtocol, Protocol};
///
/// #[derive(Default)]
/// struct Discard;
/// impl Protocol for Discard { fn data_received(&mut self, _d: &[u8]) {} }
///
/// let f = ForProtocol::<Discard>::new();
/// assert!(f.build_protocol(&Address::tcp("10.0.0.1:9".parse().unwrap())).is_some());
/// ```
pub struct ForProtocol<P>(PhantomData<fn() -> P>);

impl<P: Protocol + Default> ForProtocol<P> {
    /// The factory, shared.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Rc<Self> {
        Rc::new(ForProtocol(PhantomData))
    }
}

impl<P: Protocol + Default> Factory for ForProtocol<P> {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(P::default()))
    }
}

impl<P: Protocol + Default> ClientFactory for ForProtocol<P> {}

/// A factory from a closure.
///
/// ```
/// use torsion::protocol::{factory_fn, Protocol};
///
/// struct Quiet;
/// impl Protocol for Quiet { fn data_received(&mut self, _d: &[u8]) {} }
/// let factory = factory_fn(|_addr| Some(Box::new(Quiet) as Box<dyn Protocol>));
/// ```
pub fn factory_fn<F>(f: F) -> Rc<FnFactory<F>>
where
    F: Fn(&Address) -> Option<Box<dyn Protocol>> + 'static,
{
    Rc::new(FnFactory(f))
}

/// The factory [`factory_fn`] returns.
pub struct FnFactory<F>(F);

impl<F> Factory for FnFactory<F>
where
    F: Fn(&Address) -> Option<Box<dyn Protocol>> + 'static,
{
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        (self.0)(addr)
    }
}

impl<F> ClientFactory for FnFactory<F> where F: Fn(&Address) -> Option<Box<dyn Protocol>> + 'static {}

/// A factory from a closure that builds the protocol itself (no boxing at the call site):
/// the shortest way to give each connection a protocol holding shared state.
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// use torsion::protocol::{protocol_fn, Protocol};
///
/// struct Counter { bytes: Rc<Cell<usize>> }
/// impl Protocol for Counter {
///     fn data_received(&mut self, d: &[u8]) { self.bytes.set(self.bytes.get() + d.len()); }
/// }
/// let bytes = Rc::new(Cell::new(0));
/// let factory = protocol_fn(move |_addr| Counter { bytes: bytes.clone() });
/// ```
pub fn protocol_fn<P, F>(f: F) -> Rc<ProtocolFn<F>>
where
    P: Protocol + 'static,
    F: Fn(&Address) -> P + 'static,
{
    Rc::new(ProtocolFn(f))
}

/// The factory [`protocol_fn`] returns.
pub struct ProtocolFn<F>(F);

impl<P, F> Factory for ProtocolFn<F>
where
    P: Protocol + 'static,
    F: Fn(&Address) -> P + 'static,
{
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new((self.0)(addr)))
    }
}

impl<P, F> ClientFactory for ProtocolFn<F>
where
    P: Protocol + 'static,
    F: Fn(&Address) -> P + 'static,
{
}

/// The one-shot client factory of
/// [`ReactorTcpExt::connect_protocol`](crate::reactor::ReactorTcpExt::connect_protocol):
/// builds its protocol once, wrapped so that `connected` fires with the transport.
pub(crate) struct ConnectOnce<P> {
    protocol: std::cell::RefCell<Option<P>>,
    connected: crate::defer::Deferred<Transport>,
}

impl<P: Protocol + 'static> ConnectOnce<P> {
    pub(crate) fn new(protocol: P) -> (Rc<Self>, crate::defer::Deferred<Transport>) {
        let connected = crate::defer::Deferred::new();
        let f = Rc::new(ConnectOnce {
            protocol: std::cell::RefCell::new(Some(protocol)),
            connected: connected.clone(),
        });
        (f, connected)
    }
}

impl<P: Protocol + 'static> Factory for ConnectOnce<P> {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        let inner = self.protocol.borrow_mut().take()?;
        Some(Box::new(Announce {
            inner,
            connected: Some(self.connected.clone()),
        }))
    }
}

impl<P: Protocol + 'static> ClientFactory for ConnectOnce<P> {
    fn client_connection_failed(&self, _connector: &Connector, reason: Failure) {
        let _ = self.connected.errback(reason);
    }
}

/// Runs `inner`, and fires `connected` with the transport once it is connected.
struct Announce<P> {
    inner: P,
    connected: Option<crate::defer::Deferred<Transport>>,
}

impl<P: Protocol> Protocol for Announce<P> {
    fn connection_made(&mut self, transport: &Transport) {
        self.inner.connection_made(transport);
        if let Some(d) = self.connected.take() {
            let _ = d.callback(transport.clone());
        }
    }
    fn data_received(&mut self, data: &[u8]) {
        self.inner.data_received(data);
    }
    fn connection_lost(&mut self, reason: Failure) {
        self.inner.connection_lost(reason);
    }
    fn half_close(&self) -> bool {
        self.inner.half_close()
    }
    fn read_connection_lost(&mut self) {
        self.inner.read_connection_lost();
    }
    fn write_connection_lost(&mut self) {
        self.inner.write_connection_lost();
    }
    fn pause_producing(&mut self) {
        self.inner.pause_producing();
    }
    fn resume_producing(&mut self) {
        self.inner.resume_producing();
    }
    fn stop_producing(&mut self) {
        self.inner.stop_producing();
    }
    fn wrapped_protocol(&mut self) -> Option<&mut dyn Protocol> {
        Some(&mut self.inner)
    }
}

/// Counts, per factory, the ports and connectors using it, so that `start_factory` runs
/// before the first and `stop_factory` after the last (Twisted's `doStart` / `doStop` and
/// `numPorts`). Reactors keep one and call it as ports and connectors start and stop.
#[derive(Default)]
pub struct FactoryStarts {
    entries: Vec<(*const (), u32)>,
}

impl FactoryStarts {
    /// An empty count.
    pub fn new() -> Self {
        Self::default()
    }

    fn key<F: ?Sized>(factory: &Rc<F>) -> *const () {
        Rc::as_ptr(factory) as *const ()
    }

    /// One more user of `factory`; calls `start_factory` if it is the first.
    pub fn do_start<F: Factory + ?Sized>(&mut self, factory: &Rc<F>) {
        let key = Self::key(factory);
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => {
                self.entries.push((key, 1));
                factory.start_factory();
            }
        }
    }

    /// One fewer user of `factory`; calls `stop_factory` if it was the last.
    pub fn do_stop<F: Factory + ?Sized>(&mut self, factory: &Rc<F>) {
        let key = Self::key(factory);
        if let Some(pos) = self.entries.iter().position(|(k, _)| *k == key) {
            self.entries[pos].1 -= 1;
            if self.entries[pos].1 == 0 {
                self.entries.remove(pos);
                factory.stop_factory();
            }
        }
    }

    /// How many ports and connectors use `factory`.
    pub fn count<F: ?Sized>(&self, factory: &Rc<F>) -> u32 {
        let key = Self::key(factory);
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(0, |(_, n)| *n)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    struct Logged(RefCell<Vec<&'static str>>);
    impl Factory for Logged {
        fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
            None
        }
        fn start_factory(&self) {
            self.0.borrow_mut().push("start");
        }
        fn stop_factory(&self) {
            self.0.borrow_mut().push("stop");
        }
    }

    #[test]
    fn start_and_stop_factory_are_counted() {
        let f = Rc::new(Logged(RefCell::new(Vec::new())));
        let mut starts = FactoryStarts::new();
        starts.do_start(&f);
        starts.do_start(&f);
        assert_eq!(*f.0.borrow(), vec!["start"]);
        assert_eq!(starts.count(&f), 2);
        starts.do_stop(&f);
        assert_eq!(*f.0.borrow(), vec!["start"]);
        starts.do_stop(&f);
        assert_eq!(*f.0.borrow(), vec!["start", "stop"]);
        starts.do_stop(&f); // an extra stop is ignored
        assert_eq!(f.0.borrow().len(), 2);
    }
}
