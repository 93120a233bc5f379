//! A slow poetry server: `cargo run --release --example poetry_server -- 10000 [DELAY_MS]`
//! (every interface; `127.0.0.1:10000` for one) writes its poem 16 bytes at a time,
//! DELAY_MS (default 100) apart, then closes. With no argument: port 10000.
//!
//! ```python
//! class PoetryProtocol(Protocol):
//!     def connectionMade(self):
//!         self.transport.write(self.factory.poem)
//!         self.transport.loseConnection()
//! ```

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use torsion::mio::MioReactor;
use torsion::prelude::*;
use torsion_apps::cli::{self, CliError};
use torsion_apps::poetry::{PoetryServerFactory, POEM};

fn main() -> ExitCode {
    cli::main("poetry_server", "[PORT | HOST:PORT] [DELAY_MS]", run)
}

fn run(args: Vec<OsString>) -> Result<(), CliError> {
    cli::at_most(&args, 2)?;
    let at = cli::listen_address(args.first().map(OsString::as_os_str), 10000)?;
    let delay = match args.get(1) {
        Some(d) => cli::millis(d)?,
        None => Duration::from_millis(100),
    };
    let reactor = MioReactor::new().map_err(CliError::failed)?;
    let factory = PoetryServerFactory::new(POEM, 16, delay);
    let port = reactor
        .listen_tcp_with(at.port, factory, 50, &at.interface)
        .map_err(CliError::failed)?;
    println!("poetry server listening on {}", port.get_host());
    reactor.run().map_err(CliError::failed)
}
