//! `Connector`: the handle to an outgoing connection attempt (Twisted's `IConnector`).

use std::rc::Rc;

use crate::protocol::Address;

/// Where a connector is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectorState {
    /// Not connecting and not connected.
    Disconnected,
    /// An attempt is in flight.
    Connecting,
    /// The connection is up.
    Connected,
}

/// What a reactor implements for each connector.
pub trait ConnectorDriver {
    /// Starts a (new) attempt; used by reconnecting factories.
    fn connect(&self);
    /// Abandons the attempt in flight; the factory sees `client_connection_failed` with
    /// `UserError`-like cancellation.
    fn stop_connecting(&self);
    /// Stops connecting, or closes the established connection.
    fn disconnect(&self);
    /// Where it connects to.
    fn get_destination(&self) -> Address;
    /// The current state.
    fn state(&self) -> ConnectorState;
}

/// An outgoing connection attempt and the connection it makes (Twisted's `Connector`).
/// Cheap to clone.
#[derive(Clone)]
pub struct Connector {
    driver: Rc<dyn ConnectorDriver>,
}

impl Connector {
    /// Wraps a reactor's driver.
    pub fn new(driver: Rc<dyn ConnectorDriver>) -> Self {
        Connector { driver }
    }

    /// Starts a new attempt (after a failure or a lost connection).
    pub fn connect(&self) {
        self.driver.connect();
    }

    /// Abandons the attempt in flight.
    pub fn stop_connecting(&self) {
        self.driver.stop_connecting();
    }

    /// Stops connecting, or closes the connection.
    pub fn disconnect(&self) {
        self.driver.disconnect();
    }

    /// Where it connects to.
    pub fn get_destination(&self) -> Address {
        self.driver.get_destination()
    }

    /// The current state.
    pub fn state(&self) -> ConnectorState {
        self.driver.state()
    }

    /// Whether two handles are the same connector.
    pub fn ptr_eq(&self, other: &Connector) -> bool {
        Rc::ptr_eq(&self.driver, &other.driver)
    }

    /// A handle that does not keep the connector alive (for state a connector's own factory
    /// keeps, which would otherwise form a cycle).
    pub fn downgrade(&self) -> WeakConnector {
        WeakConnector {
            driver: Rc::downgrade(&self.driver),
        }
    }
}

/// A [`Connector`] handle that does not keep it alive.
#[derive(Clone)]
pub struct WeakConnector {
    driver: std::rc::Weak<dyn ConnectorDriver>,
}

impl WeakConnector {
    /// The connector, if it still exists.
    pub fn upgrade(&self) -> Option<Connector> {
        self.driver.upgrade().map(|driver| Connector { driver })
    }
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Connector({}, {:?})",
            self.get_destination(),
            self.state()
        )
    }
}
