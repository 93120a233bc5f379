//! `Int8StringReceiver`, `Int16StringReceiver`, `Int32StringReceiver`: strings prefixed by
//! their big-endian length (Twisted's `basic.IntNStringReceiver` family).

use thiserror::Error;

use crate::protocol::Transport;

/// Twisted's default `MAX_LENGTH` for length-prefixed strings.
pub const INT_N_MAX_LENGTH: usize = 99999;

/// A string too long for the length prefix (Twisted's `StringTooLongError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("a {len}-byte string does not fit a {prefix}-byte length prefix")]
pub struct StringTooLongError {
    /// The string's length.
    pub len: usize,
    /// The prefix width in bytes.
    pub prefix: usize,
}

/// The buffer and settings of an [`IntNStringReceiver`].
#[derive(Debug, Clone)]
pub struct IntNBuffer {
    prefix: usize,
    /// The longest string accepted (Twisted's `MAX_LENGTH`), 99999 by default.
    pub max_length: usize,
    buf: Vec<u8>,
    paused: bool,
    transport: Transport,
}

impl IntNBuffer {
    fn with_prefix(prefix: usize) -> Self {
        IntNBuffer {
            prefix,
            max_length: INT_N_MAX_LENGTH,
            buf: Vec::new(),
            paused: false,
            transport: Transport::default(),
        }
    }

    /// One-byte lengths (Twisted's `Int8StringReceiver`).
    pub fn int8() -> Self {
        Self::with_prefix(1)
    }

    /// Two-byte lengths (Twisted's `Int16StringReceiver`).
    pub fn int16() -> Self {
        Self::with_prefix(2)
    }

    /// Four-byte lengths (Twisted's `Int32StringReceiver`).
    pub fn int32() -> Self {
        Self::with_prefix(4)
    }

    /// The prefix width in bytes.
    pub fn prefix_length(&self) -> usize {
        self.prefix
    }

    /// Keeps the transport (call from `connection_made`).
    pub fn attach(&mut self, transport: &Transport) {
        self.transport = transport.clone();
    }

    /// The transport.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Encodes `s` with its length prefix.
    pub fn encode(&self, s: &[u8]) -> Result<Vec<u8>, StringTooLongError> {
        let fits = self.prefix >= 8 || (s.len() as u64) < (1u64 << (8 * self.prefix));
        if !fits {
            return Err(StringTooLongError {
                len: s.len(),
                prefix: self.prefix,
            });
        }
        let len = (s.len() as u64).to_be_bytes();
        let mut out = Vec::with_capacity(self.prefix + s.len());
        out.extend_from_slice(&len[8 - self.prefix..]);
        out.extend_from_slice(s);
        Ok(out)
    }
}

/// Twisted's `IntNStringReceiver`: implement [`int_n_state`](Self::int_n_state) and
/// [`string_received`](Self::string_received), and forward `data_received` to
/// [`feed`](Self::feed).
///
/// ```
/// use torsion::protocol::{Protocol, Transport};
/// use torsion::protocols::basic::{IntNBuffer, IntNStringReceiver};
///
/// struct Kv { frames: IntNBuffer }
/// impl Protocol for Kv {
///     fn connection_made(&mut self, t: &Transport) { self.frames.attach(t); }
///     fn data_received(&mut self, data: &[u8]) { self.feed(data) }
/// }
/// impl IntNStringReceiver for Kv {
///     fn int_n_state(&mut self) -> &mut IntNBuffer { &mut self.frames }
///     fn string_received(&mut self, s: &[u8]) { let _ = self.send_string(s); }
/// }
/// let _ = Kv { frames: IntNBuffer::int32() };
/// ```
pub trait IntNStringReceiver {
    /// Where this protocol keeps its buffer.
    fn int_n_state(&mut self) -> &mut IntNBuffer;

    /// A complete string arrived.
    fn string_received(&mut self, s: &[u8]);

    /// A length prefix over `max_length` arrived (default: lose the connection).
    fn length_limit_exceeded(&mut self, length: usize) {
        let _ = length;
        self.int_n_state().transport.lose_connection();
    }

    /// Feeds received bytes, delivering every complete string.
    fn feed(&mut self, data: &[u8]) {
        let st = self.int_n_state();
        if st.transport.disconnecting() {
            return; // nothing is delivered once the connection is closing
        }
        let mut buf = std::mem::take(&mut st.buf);
        buf.extend_from_slice(data);
        let prefix = st.prefix;
        let max = st.max_length;
        let mut pos = 0;
        loop {
            let st = self.int_n_state();
            if st.paused || st.transport.disconnecting() || buf.len() < pos + prefix {
                break;
            }
            let mut be = [0u8; 8];
            be[8 - prefix..].copy_from_slice(&buf[pos..pos + prefix]);
            let length = u64::from_be_bytes(be) as usize;
            if length > max {
                buf.drain(..pos);
                self.int_n_state().buf = buf;
                self.length_limit_exceeded(length);
                return;
            }
            let start = pos + prefix;
            if buf.len() < start + length {
                break;
            }
            pos = start + length;
            self.string_received(&buf[start..pos]);
        }
        buf.drain(..pos);
        self.int_n_state().buf = buf;
    }

    /// Writes `s` with its length prefix (Twisted's `sendString`).
    fn send_string(&mut self, s: &[u8]) -> Result<(), StringTooLongError> {
        let st = self.int_n_state();
        let framed = st.encode(s)?;
        st.transport.write(framed);
        Ok(())
    }

    /// Stops delivering strings.
    fn pause_producing(&mut self) {
        let st = self.int_n_state();
        st.paused = true;
        st.transport.pause_producing();
    }

    /// Delivers again, starting with what was buffered.
    fn resume_producing(&mut self) {
        let st = self.int_n_state();
        st.paused = false;
        st.transport.resume_producing();
        self.feed(&[]);
    }
}
