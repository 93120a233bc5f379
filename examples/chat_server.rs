//! The chat server: `cargo run --release --example chat_server -- 8123` (every interface;
//! `127.0.0.1:8123` for one), then `nc 127.0.0.1 8123` a few times. `/nick NAME` renames,
//! `/quit` leaves, anything else is broadcast. The protocol (a `LineReceiver`) is
//! `torsion_apps::chat::Chat`.
//!
//! ```python
//! class Chat(LineReceiver):
//!     def lineReceived(self, line):
//!         for protocol in self.users.values():
//!             if protocol != self:
//!                 protocol.sendLine(b"<" + self.name + b"> " + line)
//! ```

use std::ffi::OsString;
use std::process::ExitCode;

use torsion::mio::MioReactor;
use torsion::prelude::*;
use torsion_apps::chat::ChatFactory;
use torsion_apps::cli::{self, CliError};

fn main() -> ExitCode {
    cli::main("chat_server", "[PORT | HOST:PORT]", run)
}

fn run(args: Vec<OsString>) -> Result<(), CliError> {
    cli::at_most(&args, 1)?;
    let at = cli::listen_address(args.first().map(OsString::as_os_str), 8123)?;
    let reactor = MioReactor::new().map_err(CliError::failed)?;
    let (factory, _room) = ChatFactory::new();
    let port = reactor
        .listen_tcp_with(at.port, factory, 50, &at.interface)
        .map_err(CliError::failed)?;
    println!("chat server listening on {}", port.get_host());
    reactor.run().map_err(CliError::failed)
}
