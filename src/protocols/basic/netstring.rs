//! `NetstringReceiver`: `len:payload,` framing (Twisted's `basic.NetstringReceiver`, after
//! D. J. Bernstein's netstrings).

use thiserror::Error;

use crate::protocol::Transport;

/// Twisted's default `MAX_LENGTH` for netstrings.
pub const NETSTRING_MAX_LENGTH: usize = 99999;

/// Why a peer's netstring stream was rejected (Twisted's `NetstringParseError`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NetstringParseError {
    /// The length has a leading zero (only `0:` itself may start with `0`).
    #[error("netstring length has a leading zero")]
    LeadingZero,
    /// The length is not decimal digits.
    #[error("netstring length contains {0:?}, not a digit")]
    NotADigit(char),
    /// The length is larger than the receiver accepts.
    #[error("netstring length {0} exceeds the maximum")]
    TooLong(u64),
    /// No `:` after the length (the length has more digits than the maximum can need).
    #[error("netstring length has no ':' where one was expected")]
    MissingColon,
    /// No `,` after the payload.
    #[error("netstring payload is not followed by ','")]
    MissingComma,
    /// An empty length (`:` first).
    #[error("netstring length is empty")]
    EmptyLength,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Length,
    Payload(usize),
}

/// The buffer and state of a [`NetstringReceiver`].
#[derive(Debug, Clone)]
pub struct NetstringBuffer {
    /// The longest payload accepted (Twisted's `MAX_LENGTH`), 99999 by default.
    pub max_length: usize,
    buf: Vec<u8>,
    /// Where the unparsed bytes of `buf` start: the buffer is compacted once per `feed`, not
    /// once per netstring (which would be quadratic in the netstrings of one read).
    pos: usize,
    /// Bytes moved by compaction, for the tests of the bound.
    shifted: u64,
    expect: Expect,
    broken: Option<NetstringParseError>,
    transport: Transport,
}

impl Default for NetstringBuffer {
    fn default() -> Self {
        NetstringBuffer {
            max_length: NETSTRING_MAX_LENGTH,
            buf: Vec::new(),
            pos: 0,
            shifted: 0,
            expect: Expect::Length,
            broken: None,
            transport: Transport::default(),
        }
    }
}

impl NetstringBuffer {
    /// Keeps the transport (call from `connection_made`).
    pub fn attach(&mut self, transport: &Transport) {
        self.transport = transport.clone();
    }

    /// The transport.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Why the peer was marked broken, if it was (Twisted's `brokenPeer`).
    pub fn broken_peer(&self) -> Option<&NetstringParseError> {
        self.broken.as_ref()
    }

    /// Encodes `s` as a netstring.
    pub fn encode(s: &[u8]) -> Vec<u8> {
        let mut out = format!("{}:", s.len()).into_bytes();
        out.extend_from_slice(s);
        out.push(b',');
        out
    }

    /// Bytes moved to compact the buffer so far (linear in the bytes received).
    #[cfg(test)]
    pub(crate) fn shifted(&self) -> u64 {
        self.shifted
    }

    /// Drops the parsed bytes from the front of the buffer.
    fn compact(&mut self) {
        if self.pos == 0 {
            return;
        }
        self.shifted += (self.buf.len() - self.pos) as u64;
        self.buf.drain(..self.pos);
        self.pos = 0;
    }

    /// Drops everything buffered (the peer is broken).
    fn discard(&mut self) {
        self.buf.clear();
        self.pos = 0;
    }

    /// Parses the length at the front of the unparsed bytes: `Ok(Some(len, used))`,
    /// `Ok(None)` when more bytes are needed.
    fn parse_length(&self) -> Result<Option<(usize, usize)>, NetstringParseError> {
        let max_digits = self.max_length.to_string().len();
        let buf = &self.buf[self.pos..];
        for (i, &b) in buf.iter().enumerate() {
            if b == b':' {
                if i == 0 {
                    return Err(NetstringParseError::EmptyLength);
                }
                let digits = &buf[..i];
                if digits[0] == b'0' && digits.len() > 1 {
                    return Err(NetstringParseError::LeadingZero);
                }
                let n = digits
                    .iter()
                    .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
                if n > self.max_length as u64 {
                    return Err(NetstringParseError::TooLong(n));
                }
                return Ok(Some((n as usize, i + 1)));
            }
            if !b.is_ascii_digit() {
                return Err(NetstringParseError::NotADigit(char::from(b)));
            }
            if i == 1 && buf[0] == b'0' {
                return Err(NetstringParseError::LeadingZero);
            }
            if i >= max_digits {
                return Err(NetstringParseError::MissingColon);
            }
        }
        Ok(None)
    }
}

/// Twisted's `NetstringReceiver`: a parse error marks the peer broken and closes the
/// connection; nothing after it is delivered.
///
/// ```
/// use torsion::protocol::{Protocol, Transport};
/// use torsion::protocols::basic::{NetstringBuffer, NetstringReceiver};
///
/// #[derive(Default)]
/// struct Notes { ns: NetstringBuffer, got: Vec<Vec<u8>> }
/// impl Protocol for Notes {
///     fn connection_made(&mut self, t: &Transport) { self.ns.attach(t); }
///     fn data_received(&mut self, data: &[u8]) { self.feed(data) }
/// }
/// impl NetstringReceiver for Notes {
///     fn netstring_state(&mut self) -> &mut NetstringBuffer { &mut self.ns }
///     fn string_received(&mut self, s: &[u8]) { self.got.push(s.to_vec()); }
/// }
/// let mut n = Notes::default();
/// n.feed(b"5:hello,0:,");
/// assert_eq!(n.got, vec![b"hello".to_vec(), vec![]]);
/// ```
pub trait NetstringReceiver {
    /// Where this protocol keeps its buffer.
    fn netstring_state(&mut self) -> &mut NetstringBuffer;

    /// A complete netstring arrived.
    fn string_received(&mut self, s: &[u8]);

    /// The peer sent something that is not a netstring (default: lose the connection).
    fn netstring_parse_error(&mut self, error: &NetstringParseError) {
        let _ = error;
        self.netstring_state().transport.lose_connection();
    }

    /// Feeds received bytes.
    fn feed(&mut self, data: &[u8]) {
        let st = self.netstring_state();
        if st.broken.is_some() {
            return;
        }
        st.buf.extend_from_slice(data);
        loop {
            let st = self.netstring_state();
            if st.transport.disconnecting() {
                st.compact();
                return;
            }
            match st.expect {
                Expect::Length => match st.parse_length() {
                    Ok(None) => {
                        st.compact();
                        return;
                    }
                    Ok(Some((len, used))) => {
                        st.pos += used;
                        st.expect = Expect::Payload(len);
                    }
                    Err(e) => {
                        st.broken = Some(e.clone());
                        st.discard();
                        self.netstring_parse_error(&e);
                        return;
                    }
                },
                Expect::Payload(len) => {
                    if st.buf.len() - st.pos <= len {
                        st.compact();
                        return; // the payload and its comma are not all here yet
                    }
                    if st.buf[st.pos + len] != b',' {
                        let e = NetstringParseError::MissingComma;
                        st.broken = Some(e.clone());
                        st.discard();
                        self.netstring_parse_error(&e);
                        return;
                    }
                    let payload = st.buf[st.pos..st.pos + len].to_vec();
                    st.pos += len + 1;
                    st.expect = Expect::Length;
                    self.string_received(&payload);
                }
            }
        }
    }

    /// Writes `s` as a netstring.
    fn send_string(&mut self, s: &[u8]) {
        let st = self.netstring_state();
        st.transport.write(NetstringBuffer::encode(s));
    }
}
