//! A slow poetry server: `cargo run --release --example poetry_server -- 127.0.0.1:10000 [DELAY_MS]`
//! writes its poem 16 bytes at a time, DELAY_MS (default 100) apart, then closes.
//!
//! ```python
//! class PoetryProtocol(Protocol):
//!     def connectionMade(self):
//!         self.transport.write(self.factory.poem)
//!         self.transport.loseConnection()
//! ```

use std::time::Duration;

use torsion::mio::MioReactor;
use torsion::prelude::*;
use torsion_apps::poetry::{PoetryServerFactory, POEM};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr: std::net::SocketAddr = args.next().unwrap_or("127.0.0.1:10000".into()).parse()?;
    let delay = Duration::from_millis(args.next().map_or(Ok(100), |d| d.parse())?);
    let reactor = MioReactor::new()?;
    let factory = PoetryServerFactory::new(POEM, 16, delay);
    let port = reactor.listen_tcp_with(addr.port(), factory, 50, &addr.ip().to_string())?;
    println!("poetry server listening on {}", port.get_host());
    reactor.run()?;
    Ok(())
}
