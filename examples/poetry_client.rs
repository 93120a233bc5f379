//! Fetches poems from several servers at once and prints them when all have arrived:
//! `cargo run --release --example poetry_client -- localhost:10000 127.0.0.1:10001`.
//! Exits 1 if a download fails (as Twisted's `task.react` does), 2 on bad arguments.
//!
//! ```python
//! d = defer.gatherResults([get_poetry(host, port) for host, port in addresses])
//! d.addCallback(print_poems)
//! d.addBoth(lambda _: reactor.stop())
//! ```

use std::ffi::OsString;
use std::process::ExitCode;

use torsion::mio::MioReactor;
use torsion_apps::cli::{self, CliError};
use torsion_apps::poetry::get_poems;

fn main() -> ExitCode {
    cli::main("poetry_client", "HOST:PORT...", run)
}

fn run(args: Vec<OsString>) -> Result<(), CliError> {
    if args.is_empty() {
        return Err(CliError::Usage("no server address given".into()));
    }
    let addrs = args
        .iter()
        .map(|a| cli::connect_address(a))
        .collect::<Result<Vec<_>, CliError>>()?;
    let servers: Vec<(&str, u16)> = addrs.iter().map(|a| (a.host.as_str(), a.port)).collect();
    let reactor = MioReactor::new().map_err(CliError::failed)?;
    let poems = cli::react(&reactor, get_poems(&reactor, &servers), "poetry download")?;
    for (i, p) in poems.iter().enumerate() {
        println!("poem {}:\n{p}", i + 1);
    }
    Ok(())
}
