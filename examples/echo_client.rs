//! An echo client: `cargo run --release --example echo_client -- localhost:8000 hello world`
//! sends each word, checks it comes back, prints the report and stops the reactor. Exits 1
//! if the echo fails (as Twisted's `task.react` does), 2 on bad arguments. With no
//! argument: `127.0.0.1:8000`, one message.

use std::ffi::OsString;
use std::process::ExitCode;

use torsion::mio::MioReactor;
use torsion::prelude::*;
use torsion_apps::cli::{self, CliError, ConnectAddress};
use torsion_apps::echo::EchoClientFactory;

fn main() -> ExitCode {
    cli::main("echo_client", "[HOST:PORT [WORD...]]", run)
}

fn run(args: Vec<OsString>) -> Result<(), CliError> {
    let mut args = args.into_iter();
    let to = match args.next() {
        Some(a) => cli::connect_address(&a)?,
        None => ConnectAddress {
            host: "127.0.0.1".into(),
            port: 8000,
        },
    };
    let mut words = args
        .map(|w| cli::text(&w).map(|w| w.as_bytes().to_vec()))
        .collect::<Result<Vec<Vec<u8>>, CliError>>()?;
    if words.is_empty() {
        words.push(b"hello, torsion".to_vec());
    }
    let reactor = MioReactor::new().map_err(CliError::failed)?;
    let (factory, done) = EchoClientFactory::new(words);
    reactor.connect_tcp(&to.host, to.port, factory);
    let report = cli::react(&reactor, done, &format!("echo to {to}"))?;
    println!(
        "echoed {} messages, {} bytes",
        report.messages, report.bytes
    );
    Ok(())
}
