//! The chat server: `cargo run --release --example chat_server -- 127.0.0.1:8123`, then
//! `nc 127.0.0.1 8123` a few times. `/nick NAME` renames, `/quit` leaves, anything else is
//! broadcast. The protocol (a `LineReceiver`) is `torsion_apps::chat::Chat`.
//!
//! ```python
//! class Chat(LineReceiver):
//!     def lineReceived(self, line):
//!         for protocol in self.users.values():
//!             if protocol != self:
//!                 protocol.sendLine(b"<" + self.name + b"> " + line)
//! ```

use torsion::mio::MioReactor;
use torsion::prelude::*;
use torsion_apps::chat::ChatFactory;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: std::net::SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or("127.0.0.1:8123".into())
        .parse()?;
    let reactor = MioReactor::new()?;
    let (factory, _room) = ChatFactory::new();
    let port = reactor.listen_tcp_with(addr.port(), factory, 50, &addr.ip().to_string())?;
    println!("chat server listening on {}", port.get_host());
    reactor.run()?;
    Ok(())
}
