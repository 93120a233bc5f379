//! Twisted's echo server: `cargo run --release --example echo_server -- 127.0.0.1:8000`
//!
//! ```python
//! class Echo(Protocol):
//!     def dataReceived(self, data):
//!         self.transport.write(data)
//!
//! reactor.listenTCP(8000, Factory.forProtocol(Echo))
//! reactor.run()
//! ```

use torsion::mio::MioReactor;
use torsion::prelude::*;
use torsion::protocol::{ForProtocol, Protocol, Transport};

#[derive(Default)]
struct Echo {
    transport: Transport,
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = transport.clone();
    }
    fn data_received(&mut self, data: &[u8]) {
        self.transport.write(data);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: std::net::SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or("127.0.0.1:8000".into())
        .parse()?;
    let reactor = MioReactor::new()?;
    let port = reactor.listen_tcp_with(
        addr.port(),
        ForProtocol::<Echo>::new(),
        1024,
        &addr.ip().to_string(),
    )?;
    println!("echo server listening on {}", port.get_host());
    reactor.run()?;
    Ok(())
}
