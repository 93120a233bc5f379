//! `LineOnlyReceiver`: lines only, no raw mode, no copies (Twisted's
//! `basic.LineOnlyReceiver`).

use crate::protocol::Transport;
use crate::protocols::basic::line::{DelimiterScan, LINE_MAX_LENGTH};

/// The buffer a [`LineOnlyReceiver`] keeps.
#[derive(Debug, Clone)]
pub struct LineOnlyBuffer {
    /// The delimiter, `\r\n` by default.
    pub delimiter: Vec<u8>,
    /// The longest line accepted, 16384 by default.
    pub max_length: usize,
    buf: Vec<u8>,
    scan: DelimiterScan,
    transport: Transport,
}

impl Default for LineOnlyBuffer {
    fn default() -> Self {
        LineOnlyBuffer {
            delimiter: b"\r\n".to_vec(),
            max_length: LINE_MAX_LENGTH,
            buf: Vec::new(),
            scan: DelimiterScan::default(),
            transport: Transport::default(),
        }
    }
}

impl LineOnlyBuffer {
    /// Keeps the transport (call from `connection_made`).
    pub fn attach(&mut self, transport: &Transport) {
        self.transport = transport.clone();
    }

    /// The transport.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Bytes examined by the delimiter search so far (linear in the bytes received).
    #[cfg(test)]
    pub(crate) fn scanned(&self) -> u64 {
        self.scan.scanned
    }
}

/// Twisted's `LineOnlyReceiver`: like [`LineReceiver`](super::LineReceiver) without modes
/// or pausing, so each line is handed over as a slice of the receive buffer, uncopied.
///
/// Limits follow `LineReceiver`: a line longer than `max_length` is refused, and so is an
/// unfinished one once `max_length` plus the delimiter's length is buffered (Twisted's
/// `LineOnlyReceiver` refuses at `max_length + 1`, which also refuses a maximal line whose
/// delimiter arrives split).
pub trait LineOnlyReceiver {
    /// Where this protocol keeps its buffer.
    fn line_only_state(&mut self) -> &mut LineOnlyBuffer;

    /// A complete line arrived.
    fn line_received(&mut self, line: &[u8]);

    /// An over-long line (default: lose the connection).
    fn line_length_exceeded(&mut self, line: &[u8]) {
        let _ = line;
        self.line_only_state().transport.lose_connection();
    }

    /// Feeds received bytes.
    fn feed(&mut self, data: &[u8]) {
        let st = self.line_only_state();
        if st.transport.disconnecting() {
            return; // nothing is delivered once the connection is closing
        }
        let mut buf = std::mem::take(&mut st.buf);
        let mut scan = std::mem::take(&mut st.scan);
        buf.extend_from_slice(data);
        let delimiter = st.delimiter.clone();
        let max = st.max_length;
        let mut pos = 0;
        while let Some(end) = scan.find(&buf, pos, &delimiter) {
            if end - pos > max {
                drop_buffer(self.line_only_state(), scan);
                self.line_length_exceeded(&buf[pos..end]);
                return;
            }
            self.line_received(&buf[pos..end]);
            pos = end + delimiter.len();
            if self.line_only_state().transport.disconnecting() {
                drop_buffer(self.line_only_state(), scan);
                return;
            }
        }
        if buf.len() - pos >= max + delimiter.len() {
            drop_buffer(self.line_only_state(), scan);
            self.line_length_exceeded(&buf[pos..]);
            return;
        }
        buf.drain(..pos);
        scan.consumed(pos);
        let st = self.line_only_state();
        st.buf = buf;
        st.scan = scan;
    }

    /// Writes `line` and the delimiter.
    fn send_line(&mut self, line: &[u8]) {
        let st = self.line_only_state();
        st.transport.write_sequence(&[line, &st.delimiter]);
    }
}

/// Forgets the buffer (`feed` took it and does not put it back): the next search starts over.
fn drop_buffer(st: &mut LineOnlyBuffer, mut scan: DelimiterScan) {
    scan.reset();
    st.scan = scan;
}
