//! Quote of the Day (RFC 865): `cargo run --release --example qotd_server -- 127.0.0.1:8017`
//!
//! ```python
//! class QOTD(Protocol):
//!     def connectionMade(self):
//!         self.transport.write(b"An apple a day keeps the doctor away\r\n")
//!         self.transport.loseConnection()
//! ```

use torsion::mio::MioReactor;
use torsion::prelude::*;
use torsion::protocol::{ForProtocol, Protocol, Transport};

#[derive(Default)]
struct Qotd;

impl Protocol for Qotd {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(b"An apple a day keeps the doctor away\r\n");
        transport.lose_connection();
    }
    fn data_received(&mut self, _data: &[u8]) {}
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: std::net::SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or("127.0.0.1:8017".into())
        .parse()?;
    let reactor = MioReactor::new()?;
    let port = reactor.listen_tcp_with(
        addr.port(),
        ForProtocol::<Qotd>::new(),
        50,
        &addr.ip().to_string(),
    )?;
    println!("qotd server listening on {}", port.get_host());
    reactor.run()?;
    Ok(())
}
