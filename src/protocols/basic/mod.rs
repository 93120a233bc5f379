//! Framing protocols (Twisted's `twisted.protocols.basic`): lines, length-prefixed strings,
//! netstrings.
//!
//! Each receiver is a trait with provided methods plus a buffer struct the protocol embeds.
//! A protocol implements the trait's hooks (`line_received`, `string_received`, ...) and
//! forwards `data_received` to the provided `feed`. Composition rather than a wrapper type
//! keeps the protocol's own type intact — connection-scoped timers and Deferred callbacks
//! (`transport.call_later::<Chat>(..)`) get `&mut Chat` back — and a protocol can frame one
//! way, then another (switch to raw mode, or from lines to netstrings).
//!
//! Bad input never panics: an over-long line or frame, or a malformed netstring, calls the
//! matching hook (`line_length_exceeded`, `length_limit_exceeded`, `netstring_parse_error`)
//! whose default closes that connection.
//!
//! ```
//! use std::{cell::RefCell, rc::Rc};
//! use torsion::protocol::{Protocol, Transport};
//! use torsion::protocols::basic::{LineBuffer, LineReceiver};
//!
//! /// A chat member: `/nick NAME` renames, anything else is broadcast to the room.
//! struct Chat { lines: LineBuffer, name: String, room: Rc<RefCell<Vec<Transport>>> }
//!
//! impl Protocol for Chat {
//!     fn connection_made(&mut self, t: &Transport) {
//!         self.lines.attach(t);
//!         self.room.borrow_mut().push(t.clone());
//!     }
//!     fn data_received(&mut self, data: &[u8]) { self.feed(data) }
//! }
//!
//! impl LineReceiver for Chat {
//!     fn line_state(&mut self) -> &mut LineBuffer { &mut self.lines }
//!     fn line_received(&mut self, line: &[u8]) {
//!         let text = String::from_utf8_lossy(line);
//!         if let Some(nick) = text.strip_prefix("/nick ") {
//!             self.name = nick.to_string();
//!             return;
//!         }
//!         let me = self.lines.transport().clone();
//!         for peer in self.room.borrow().iter().filter(|t| !t.ptr_eq(&me)) {
//!             peer.write(format!("<{}> {}\r\n", self.name, text));
//!         }
//!     }
//! }
//! ```

mod int_n;
mod line;
mod line_only;
mod netstring;

#[cfg(test)]
mod tests;

pub use int_n::{IntNBuffer, IntNStringReceiver, StringTooLongError, INT_N_MAX_LENGTH};
pub use line::{LineBuffer, LineReceiver, LINE_MAX_LENGTH};
pub use line_only::{LineOnlyBuffer, LineOnlyReceiver};
pub use netstring::{
    NetstringBuffer, NetstringParseError, NetstringReceiver, NETSTRING_MAX_LENGTH,
};
