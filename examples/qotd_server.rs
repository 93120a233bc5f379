//! Quote of the Day (RFC 865): `cargo run --release --example qotd_server -- 8017` (every
//! interface; `127.0.0.1:8017` for one). With no argument: port 8017.
//!
//! ```python
//! class QOTD(Protocol):
//!     def connectionMade(self):
//!         self.transport.write(b"An apple a day keeps the doctor away\r\n")
//!         self.transport.loseConnection()
//! ```

use std::ffi::OsString;
use std::process::ExitCode;

use torsion::mio::MioReactor;
use torsion::prelude::*;
use torsion::protocol::{ForProtocol, Protocol, Transport};
use torsion_apps::cli::{self, CliError};

#[derive(Default)]
struct Qotd;

impl Protocol for Qotd {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(b"An apple a day keeps the doctor away\r\n");
        transport.lose_connection();
    }
    fn data_received(&mut self, _data: &[u8]) {}
}

fn main() -> ExitCode {
    cli::main("qotd_server", "[PORT | HOST:PORT]", run)
}

fn run(args: Vec<OsString>) -> Result<(), CliError> {
    cli::at_most(&args, 1)?;
    let at = cli::listen_address(args.first().map(OsString::as_os_str), 8017)?;
    let reactor = MioReactor::new().map_err(CliError::failed)?;
    let port = reactor
        .listen_tcp_with(at.port, ForProtocol::<Qotd>::new(), 50, &at.interface)
        .map_err(CliError::failed)?;
    println!("qotd server listening on {}", port.get_host());
    reactor.run().map_err(CliError::failed)
}
