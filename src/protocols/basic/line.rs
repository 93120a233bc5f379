//! `LineReceiver`: lines delimited by `\r\n`, with a raw mode (Twisted's
//! `basic.LineReceiver`).

use crate::protocol::Transport;

/// Twisted's default `MAX_LENGTH` for lines.
pub const LINE_MAX_LENGTH: usize = 16384;

/// The buffer and settings a [`LineReceiver`] keeps: embed one in the protocol struct.
#[derive(Debug, Clone)]
pub struct LineBuffer {
    /// The line delimiter (Twisted's `delimiter`), `\r\n` by default.
    pub delimiter: Vec<u8>,
    /// The longest line accepted (Twisted's `MAX_LENGTH`), 16384 by default.
    pub max_length: usize,
    buf: Vec<u8>,
    pos: usize,
    scan: DelimiterScan,
    line_mode: bool,
    paused: bool,
    busy: bool,
    transport: Transport,
}

impl Default for LineBuffer {
    fn default() -> Self {
        LineBuffer {
            delimiter: b"\r\n".to_vec(),
            max_length: LINE_MAX_LENGTH,
            buf: Vec::new(),
            pos: 0,
            scan: DelimiterScan::default(),
            line_mode: true,
            paused: false,
            busy: false,
            transport: Transport::default(),
        }
    }
}

impl LineBuffer {
    /// A buffer with Twisted's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// A buffer with another delimiter.
    pub fn with_delimiter(delimiter: &[u8]) -> Self {
        LineBuffer {
            delimiter: delimiter.to_vec(),
            ..Self::default()
        }
    }

    /// Keeps the transport (call from `connection_made`).
    pub fn attach(&mut self, transport: &Transport) {
        self.transport = transport.clone();
    }

    /// The transport.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Whether line delivery is paused.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Whether it is in line mode (as opposed to raw mode).
    pub fn line_mode(&self) -> bool {
        self.line_mode
    }

    /// Bytes buffered and not yet delivered.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Bytes examined by the delimiter search so far (linear in the bytes received).
    #[cfg(test)]
    pub(crate) fn scanned(&self) -> u64 {
        self.scan.scanned
    }

    /// Drops everything buffered, delivered or not.
    fn discard(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.scan.reset();
    }
}

/// Where the delimiter search in a receive buffer stopped, so that a line arriving in many
/// pieces is scanned once, not once per piece. The search resumes `delimiter.len() - 1` bytes
/// before where it stopped (a delimiter may straddle two pieces) and starts over when the
/// delimiter changes or the buffer is dropped.
#[derive(Debug, Clone, Default)]
pub(crate) struct DelimiterScan {
    /// No delimiter lies wholly before this index of the buffer (from the search start on).
    searched: usize,
    /// The delimiter `searched` was found for.
    delimiter: Vec<u8>,
    /// Bytes examined, for the tests of the bound.
    pub(crate) scanned: u64,
}

impl DelimiterScan {
    /// The index of the first `delimiter` in `buf` at or after `from`.
    pub(crate) fn find(&mut self, buf: &[u8], from: usize, delimiter: &[u8]) -> Option<usize> {
        if delimiter.is_empty() {
            return None;
        }
        if self.delimiter != delimiter {
            self.delimiter = delimiter.to_vec();
            self.searched = 0;
        }
        let resume = self.searched.saturating_sub(delimiter.len() - 1);
        let start = from.max(resume).min(buf.len());
        match find(&buf[start..], delimiter) {
            Some(i) => {
                self.scanned += (i + delimiter.len()) as u64;
                self.searched = start + i;
                Some(start + i)
            }
            None => {
                self.scanned += (buf.len() - start) as u64;
                self.searched = buf.len();
                None
            }
        }
    }

    /// The first `n` bytes of the buffer were removed.
    pub(crate) fn consumed(&mut self, n: usize) {
        self.searched = self.searched.saturating_sub(n);
    }

    /// The buffer was emptied or replaced: search it from the start.
    pub(crate) fn reset(&mut self) {
        self.searched = 0;
    }
}

/// Twisted's `LineReceiver`, as a trait: implement [`line_state`](Self::line_state) (where
/// the [`LineBuffer`] lives) and [`line_received`](Self::line_received), and forward
/// `data_received` to [`feed`](Self::feed).
///
/// ```
/// use torsion::protocol::{Protocol, Transport};
/// use torsion::protocols::basic::{LineBuffer, LineReceiver};
///
/// #[derive(Default)]
/// struct Shout { lines: LineBuffer }
///
/// impl Protocol for Shout {
///     fn connection_made(&mut self, t: &Transport) { self.lines.attach(t); }
///     fn data_received(&mut self, data: &[u8]) { self.feed(data) }
/// }
///
/// impl LineReceiver for Shout {
///     fn line_state(&mut self) -> &mut LineBuffer { &mut self.lines }
///     fn line_received(&mut self, line: &[u8]) {
///         self.send_line(&line.to_ascii_uppercase());
///     }
/// }
/// ```
pub trait LineReceiver {
    /// Where this protocol keeps its [`LineBuffer`].
    fn line_state(&mut self) -> &mut LineBuffer;

    /// A complete line arrived (without its delimiter).
    fn line_received(&mut self, line: &[u8]);

    /// Data arrived in raw mode.
    fn raw_data_received(&mut self, data: &[u8]) {
        let _ = data;
    }

    /// A line longer than `max_length` arrived, or the buffer reached `max_length` plus the
    /// delimiter's length without one. `line` is what was buffered. By default: lose the
    /// connection.
    fn line_length_exceeded(&mut self, line: &[u8]) {
        let _ = line;
        self.line_state().transport.lose_connection();
    }

    /// Feeds received bytes: delivers every complete line (or raw data), stopping while
    /// paused or once the transport is disconnecting. Re-entrant calls (from a callback that
    /// switches modes) only append, so switching per line never recurses.
    fn feed(&mut self, data: &[u8]) {
        let st = self.line_state();
        if st.transport.disconnecting() {
            return; // nothing is delivered once the connection is closing
        }
        st.buf.extend_from_slice(data);
        if st.busy {
            return;
        }
        st.busy = true;
        loop {
            let st = self.line_state();
            if st.pos >= st.buf.len() || st.paused {
                break;
            }
            if st.line_mode {
                let found = st.scan.find(&st.buf, st.pos, &st.delimiter);
                match found {
                    None => {
                        if st.buf.len() - st.pos >= st.max_length + st.delimiter.len() {
                            let line = st.buf.split_off(st.pos);
                            st.discard();
                            st.busy = false;
                            self.line_length_exceeded(&line);
                            return;
                        }
                        break;
                    }
                    Some(end) => {
                        let start = st.pos;
                        if end - start > st.max_length {
                            let rest = st.buf.split_off(start);
                            st.discard();
                            st.busy = false;
                            self.line_length_exceeded(&rest);
                            return;
                        }
                        let line = st.buf[start..end].to_vec();
                        st.pos = end + st.delimiter.len();
                        self.line_received(&line);
                        if self.line_state().transport.disconnecting() {
                            break;
                        }
                    }
                }
            } else {
                let data = st.buf.split_off(st.pos);
                st.discard();
                self.raw_data_received(&data);
            }
        }
        let st = self.line_state();
        st.buf.drain(..st.pos);
        st.scan.consumed(st.pos);
        st.pos = 0;
        st.busy = false;
    }

    /// Writes `line` and the delimiter (Twisted's `sendLine`).
    fn send_line(&mut self, line: &[u8]) {
        let st = self.line_state();
        st.transport.write_sequence(&[line, &st.delimiter]);
    }

    /// Switches to raw mode: the rest of the buffer, and all later data, goes to
    /// `raw_data_received`.
    fn set_raw_mode(&mut self) {
        let st = self.line_state();
        st.line_mode = false;
        st.scan.reset();
    }

    /// Switches back to line mode, re-feeding `extra` as if just received.
    fn set_line_mode(&mut self, extra: &[u8]) {
        let st = self.line_state();
        st.line_mode = true;
        st.scan.reset();
        if !extra.is_empty() {
            self.feed(extra);
        }
    }

    /// Takes what is buffered and not yet delivered.
    fn clear_line_buffer(&mut self) -> Vec<u8> {
        let st = self.line_state();
        let rest = st.buf.split_off(st.pos);
        st.discard();
        rest
    }

    /// Stops delivering lines (and asks the transport to stop reading).
    fn pause_producing(&mut self) {
        let st = self.line_state();
        st.paused = true;
        st.transport.pause_producing();
    }

    /// Stops delivering for good and closes the connection (Twisted's `stopProducing`).
    fn stop_producing(&mut self) {
        let st = self.line_state();
        st.paused = true;
        st.transport.stop_producing();
    }

    /// Delivers again, starting with what was buffered.
    fn resume_producing(&mut self) {
        let st = self.line_state();
        st.paused = false;
        st.transport.resume_producing();
        self.feed(&[]);
    }
}

/// The first position of `needle` in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    match needle.len() {
        0 => None,
        1 => hay.iter().position(|b| *b == needle[0]),
        n => hay.windows(n).position(|w| w == needle),
    }
}
