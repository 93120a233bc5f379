//! An echo client: `cargo run --release --example echo_client -- 127.0.0.1:8000 hello world`
//! sends each word, checks it comes back, prints the report and stops the reactor.

use torsion::mio::MioReactor;
use torsion::prelude::*;
use torsion_apps::echo::{EchoClientFactory, EchoReport};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr: std::net::SocketAddr = args.next().unwrap_or("127.0.0.1:8000".into()).parse()?;
    let mut words: Vec<Vec<u8>> = args.map(String::into_bytes).collect();
    if words.is_empty() {
        words.push(b"hello, torsion".to_vec());
    }
    let reactor = MioReactor::new()?;
    let (factory, done) = EchoClientFactory::new(words);
    reactor.connect_tcp(&addr.ip().to_string(), addr.port(), factory);
    let r = reactor.clone();
    let _ = done.add_both(move |result: Result<EchoReport, Failure>| {
        match &result {
            Ok(report) => println!(
                "echoed {} messages, {} bytes",
                report.messages, report.bytes
            ),
            Err(failure) => eprintln!("echo failed: {failure}"),
        }
        let _ = r.stop();
        Ok::<(), Failure>(())
    });
    reactor.run()?;
    Ok(())
}
