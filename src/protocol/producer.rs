//! Producers and consumers (Twisted's `IPushProducer` / `IPullProducer` and flow control).
//!
//! A transport is a consumer: it buffers what is written to it. A producer registered with it
//! is told to slow down and speed up as the buffer fills and drains, so a fast source cannot
//! make a slow connection buffer without bound.
//!
//! - A **streaming** (push) producer writes whenever it likes; the transport calls
//!   `pause_producing` when its write buffer passes the high-water mark
//!   ([`HIGH_WATER_MARK`], 64 KiB) and `resume_producing` when it drains below the low-water
//!   mark.
//! - A **pull** producer writes only when asked: the transport calls `resume_producing` each
//!   time its buffer empties.
//!
//! Either gets `stop_producing` when the connection goes away.
//!
//! The same marks bound a connection with no producer: a connection the engine accepted is
//! not read while its own buffer is above the high-water mark, until it drains to the
//! low-water mark (read backpressure; see
//! [`Transport::set_read_backpressure`](crate::protocol::Transport::set_read_backpressure)).
//! So an echo-like protocol cannot be made to buffer without bound by a peer that sends and
//! never reads.
//!
//! Unlike Twisted, where `pauseProducing` can run inside the `write` that crossed the mark,
//! torsion delivers pause and resume on the next loop turn (rule 3 of the reactor contract:
//! no synchronous re-entry). A producer that writes several chunks in one turn therefore
//! also checks [`Transport::buffered`](crate::protocol::Transport::buffered) against
//! [`HIGH_WATER_MARK`] and stops early; one that writes a chunk per turn needs nothing more.

use thiserror::Error;

/// Write-buffer size above which a streaming producer is paused (Twisted's 64 KiB), and
/// above which an accepted connection stops being read.
pub const HIGH_WATER_MARK: usize = 64 * 1024;

/// Write-buffer size at or below which a paused streaming producer is resumed, and a
/// connection held by read backpressure is read again.
pub const LOW_WATER_MARK: usize = 16 * 1024;

/// A producer that writes on its own and can be paused (Twisted's `IPushProducer`).
pub trait PushProducer {
    /// Stop writing until resumed.
    fn pause_producing(&mut self);
    /// Writing may continue.
    fn resume_producing(&mut self);
    /// Stop for good.
    fn stop_producing(&mut self);
}

/// A producer that writes one chunk each time it is asked (Twisted's `IPullProducer`).
pub trait PullProducer {
    /// Produce the next chunk.
    fn resume_producing(&mut self);
    /// Stop for good.
    fn stop_producing(&mut self);
}

/// What to register with [`Transport::register_producer`](crate::protocol::Transport::register_producer).
pub enum Producer {
    /// A separate streaming producer.
    Push(Box<dyn PushProducer>),
    /// A separate pull producer.
    Pull(Box<dyn PullProducer>),
    /// The connection's own protocol, through its
    /// [`pause_producing`](crate::protocol::Protocol::pause_producing) family of methods;
    /// `streaming` chooses push (true) or pull (false) behaviour. This saves a protocol that
    /// produces its own output from sharing itself behind `Rc<RefCell<_>>`.
    Protocol {
        /// Push (true) or pull (false).
        streaming: bool,
    },
}

impl Producer {
    /// Whether this is a streaming (push) producer.
    pub fn streaming(&self) -> bool {
        match self {
            Producer::Push(_) => true,
            Producer::Pull(_) => false,
            Producer::Protocol { streaming } => *streaming,
        }
    }
}

/// Why a producer could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProducerError {
    /// A producer is already registered (Twisted raises `RuntimeError`).
    #[error("a producer is already registered with this transport")]
    AlreadyRegistered,
    /// The transport is closed or closing.
    #[error("the transport is disconnected")]
    Disconnected,
}
