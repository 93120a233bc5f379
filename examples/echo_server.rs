//! Twisted's echo server: `cargo run --release --example echo_server -- 8000` listens on
//! every interface; `127.0.0.1:8000` listens on one. With no argument: port 8000.
//!
//! ```python
//! class Echo(Protocol):
//!     def dataReceived(self, data):
//!         self.transport.write(data)
//!
//! reactor.listenTCP(8000, Factory.forProtocol(Echo))
//! reactor.run()
//! ```

use std::ffi::OsString;
use std::process::ExitCode;

use torsion::mio::MioReactor;
use torsion::prelude::*;
use torsion::protocol::{ForProtocol, Protocol, Transport};
use torsion_apps::cli::{self, CliError};

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

fn main() -> ExitCode {
    cli::main("echo_server", "[PORT | HOST:PORT]", run)
}

fn run(args: Vec<OsString>) -> Result<(), CliError> {
    cli::at_most(&args, 1)?;
    let at = cli::listen_address(args.first().map(OsString::as_os_str), 8000)?;
    let reactor = MioReactor::new().map_err(CliError::failed)?;
    let port = reactor
        .listen_tcp_with(at.port, ForProtocol::<Echo>::new(), 1024, &at.interface)
        .map_err(CliError::failed)?;
    println!("echo server listening on {}", port.get_host());
    reactor.run().map_err(CliError::failed)
}
