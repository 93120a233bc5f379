//! Fetches poems from several servers at once and prints them when all have arrived:
//! `cargo run --release --example poetry_client -- 127.0.0.1:10000 127.0.0.1:10001`
//!
//! ```python
//! d = defer.gatherResults([get_poetry(host, port) for host, port in addresses])
//! d.addCallback(print_poems)
//! d.addBoth(lambda _: reactor.stop())
//! ```

use torsion::mio::MioReactor;
use torsion::prelude::*;
use torsion_apps::poetry::get_poems;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addrs: Vec<std::net::SocketAddr> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let hosts: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    let servers: Vec<(&str, u16)> = hosts
        .iter()
        .map(String::as_str)
        .zip(addrs.iter().map(|a| a.port()))
        .collect();
    let reactor = MioReactor::new()?;
    let r = reactor.clone();
    let _ = get_poems(&reactor, &servers).add_both(move |result: Result<Vec<String>, Failure>| {
        match &result {
            Ok(poems) => poems
                .iter()
                .enumerate()
                .for_each(|(i, p)| println!("poem {}:\n{p}", i + 1)),
            Err(failure) => eprintln!("poetry download failed: {failure}"),
        }
        let _ = r.stop();
        Ok::<(), Failure>(())
    });
    reactor.run()?;
    Ok(())
}
