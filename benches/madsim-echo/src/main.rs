//! The echo workload of torsion's `benches/sim.rs`, on madsim: 1 server and 10 clients, each
//! client ping-ponging 100 messages of 1..64 bytes over TCP, latency 1..10 ms, no faults, one
//! runtime per seed on one thread.
//!
//! Usage: `madsim-echo SEEDS START` runs seeds START..START+SEEDS and prints
//! `madsim_echo_seconds: S` (the wall time of the whole sweep) and `madsim_echo_seeds: N`.
//! Must be built with `RUSTFLAGS="--cfg madsim"`; without it madsim is plain tokio and the
//! program says so and exits 2.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use madsim::net::{TcpListener, TcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn run_seed(seed: u64) {
    let mut config = madsim::Config::default();
    config.net.send_latency = Duration::from_millis(1)..Duration::from_millis(10);
    config.net.packet_loss_rate = 0.0;
    let rt = madsim::runtime::Runtime::with_seed_and_config(seed, config);
    let server_addr: SocketAddr = "10.0.0.1:7".parse().unwrap();
    let server = rt.create_node().ip(server_addr.ip()).build();
    let ready = std::sync::Arc::new(tokio::sync::Barrier::new(11));
    let r = ready.clone();
    server.spawn(async move {
        let listener = TcpListener::bind(server_addr).await.unwrap();
        r.wait().await;
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            madsim::task::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            // madsim's streams send on flush.
                            if stream.write_all(&buf[..n]).await.is_err()
                                || stream.flush().await.is_err()
                            {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    let mut clients = Vec::new();
    for i in 0..10u8 {
        let node = rt
            .create_node()
            .ip(format!("10.0.1.{}", i + 1).parse().unwrap())
            .build();
        let r = ready.clone();
        clients.push(node.spawn(async move {
            r.wait().await;
            let mut stream = TcpStream::connect(server_addr).await.unwrap();
            let mut buf = [0u8; 64];
            for _ in 0..100 {
                let len = 1 + (madsim::rand::random::<u32>() % 64) as usize;
                stream.write_all(&[b'x'; 64][..len]).await.unwrap();
                stream.flush().await.unwrap();
                let mut got = 0;
                while got < len {
                    let n = stream.read(&mut buf[got..len]).await.unwrap();
                    assert!(n > 0, "the server closed early");
                    got += n;
                }
            }
        }));
    }
    rt.block_on(async move {
        for c in clients {
            c.await.unwrap();
        }
    });
}

fn main() {
    if !cfg!(madsim) {
        eprintln!("madsim-echo: build with RUSTFLAGS=\"--cfg madsim\"");
        std::process::exit(2);
    }
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let (Some(Ok(seeds)), Some(Ok(start))) = (args.next(), args.next()) else {
        eprintln!("usage: madsim-echo SEEDS START");
        std::process::exit(2);
    };
    let t = Instant::now();
    for seed in start..start + seeds {
        run_seed(seed);
    }
    println!("madsim_echo_seconds: {}", t.elapsed().as_secs_f64());
    println!("madsim_echo_seeds: {seeds}");
}
