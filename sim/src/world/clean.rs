//! The clean-world check: what is still alive at the end of a run and should not be
//! (Twisted trial's "reactor unclean", made stronger).
//!
//! A run that went idle — no event left anywhere — should leave nothing behind:
//!
//! - no connection still open on both ends (two protocols waiting on each other forever);
//! - no connection whose `connection_lost` has run but which is still alive, and with it its
//!   protocol (something holds it: a leak that grows with every connection in production);
//! - no listening port on a host whose reactor was stopped;
//! - no delayed call still pending (only possible when a run stopped before idle).
//!
//! A connection whose peer's host crashed stays open with nobody to tell it (as a real
//! half-open TCP connection does, without keepalive): it is listed by [`Sim::leftovers`] but
//! does not fail the check, since no protocol can notice it without a timeout of its own.
//!
//! The check is off by default ([`SimBuilder::check_clean`](crate::SimBuilder::check_clean)),
//! on in the bundled scenarios, and runs when `run_until_idle` ends idle.

use std::fmt;
use std::rc::Weak;

use torsion::driver::Connection;
use torsion::protocol::Address;

use super::{Sim, SimError};
use crate::host::HostState;

/// One thing left at the end of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leftover {
    /// A connection still open.
    Open {
        /// The host it is on.
        host: String,
        /// Its id (`c7` in traces).
        id: u64,
        /// Local and remote address.
        ends: String,
        /// Its peer's host crashed: nobody will ever close it (listed, not a failure).
        peer_crashed: bool,
    },
    /// A connection lost (`connection_lost` ran) whose `Connection`, and so its protocol,
    /// is still alive.
    Leaked {
        /// The host it was on.
        host: String,
        /// Its id.
        id: u64,
        /// Local and remote address.
        ends: String,
    },
    /// A port still listening on a host whose reactor was stopped.
    Listening {
        /// The host.
        host: String,
        /// The port.
        port: u16,
    },
    /// Delayed calls still pending on a host that is up.
    Delayed {
        /// The host.
        host: String,
        /// How many.
        count: usize,
    },
}

impl Leftover {
    /// Whether this leftover fails the clean-world check.
    pub fn is_failure(&self) -> bool {
        !matches!(
            self,
            Leftover::Open {
                peer_crashed: true,
                ..
            }
        )
    }
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leftover::Open {
                host,
                id,
                ends,
                peer_crashed,
            } => {
                write!(f, "{host}: connection c{id} ({ends}) is still open")?;
                if *peer_crashed {
                    write!(f, "; its peer's host crashed")?;
                }
                Ok(())
            }
            Leftover::Leaked { host, id, ends } => write!(
                f,
                "{host}: connection c{id} ({ends}) was lost but it and its protocol are still \
                 alive (held by a reference cycle or a global?)"
            ),
            Leftover::Listening { host, port } => {
                write!(
                    f,
                    "{host}: port {port} still listening after the reactor stopped"
                )
            }
            Leftover::Delayed { host, count } => {
                write!(f, "{host}: {count} delayed call(s) still pending")
            }
        }
    }
}

/// A lost connection, remembered weakly to find it if it outlives its loss.
pub(crate) struct LostConn {
    id: u64,
    ends: String,
    conn: Weak<Connection>,
}

impl LostConn {
    pub(crate) fn new(id: u64, conn: &std::rc::Rc<Connection>) -> LostConn {
        let t = conn.transport();
        LostConn {
            id,
            ends: ends(&t.get_host(), &t.get_peer()),
            conn: std::rc::Rc::downgrade(conn),
        }
    }

    pub(crate) fn alive(&self) -> bool {
        self.conn.strong_count() > 0
    }
}

/// Lost connections of one host, pruned of the freed ones as they accumulate (so the list
/// stays as long as the leaks, not as the connections ever made).
#[derive(Default)]
pub(crate) struct LostConns {
    list: Vec<LostConn>,
    prune_at: usize,
}

impl LostConns {
    pub(crate) fn push(&mut self, lost: LostConn) {
        self.list.push(lost);
        if self.list.len() >= self.prune_at {
            self.list.retain(LostConn::alive);
            self.prune_at = (self.list.len() * 2).max(64);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.list.clear();
        self.prune_at = 0;
    }
}

pub(crate) fn ends(local: &Address, remote: &Address) -> String {
    format!("{} -> {}", local.addr, remote.addr)
}

/// What `host` leaves behind.
pub(crate) fn host_leftovers(host: &HostState, name: &str, out: &mut Vec<Leftover>) {
    for c in host.conns.borrow().values() {
        let t = c.transport();
        out.push(Leftover::Open {
            host: name.to_string(),
            id: c.id,
            ends: ends(&t.get_host(), &t.get_peer()),
            peer_crashed: c.peer_crashed(),
        });
    }
    for lost in host.lost.borrow().list.iter().filter(|l| l.alive()) {
        out.push(Leftover::Leaked {
            host: name.to_string(),
            id: lost.id,
            ends: lost.ends.clone(),
        });
    }
    if host.stopped() {
        for &port in host.listeners.borrow().keys() {
            out.push(Leftover::Listening {
                host: name.to_string(),
                port,
            });
        }
    }
    let count = host.pending_calls();
    if count > 0 && host.up.get() {
        out.push(Leftover::Delayed {
            host: name.to_string(),
            count,
        });
    }
}

impl Sim {
    /// What is still alive in this world and should not be at the end of a run: open
    /// connections, lost connections (and their protocols) still alive, ports listening on
    /// stopped hosts, pending delayed calls. A connection whose peer's host crashed stays
    /// open with nobody to tell it, as a real half-open TCP connection does: it is listed,
    /// but does not fail [`Sim::check_clean`] (see [`Leftover::is_failure`]).
    pub fn leftovers(&self) -> Vec<Leftover> {
        let mut out = Vec::new();
        for h in self.hosts() {
            host_leftovers(&h.st, h.name(), &mut out);
        }
        out
    }

    /// Fails the run if anything is left that should not be, with one line per leftover.
    pub fn check_clean(&self) {
        let left: Vec<String> = self
            .leftovers()
            .iter()
            .filter(|l| l.is_failure())
            .map(ToString::to_string)
            .collect();
        if !left.is_empty() {
            self.world.fail(SimError::DirtyEnd { left });
        }
    }
}
