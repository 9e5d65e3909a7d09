//! TCP echo server: one task per connection, one 4 KiB buffer per connection, reused.
//!
//! ```text
//! cargo run --release --example echo_server -- 7000
//! ```
//!
//! The port defaults to 7000. A failing connection is logged and closed; the server goes on.

use ringloop::io::BufResult;
use ringloop::net::{TcpListener, TcpStream};

fn main() {
    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p.parse().expect("usage: echo_server [PORT]"),
        None => 7000,
    };
    ringloop::run(async move {
        let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind");
        println!(
            "echo server listening on {}",
            listener.local_addr().unwrap()
        );
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    ringloop::spawn(async move {
                        if let Err(e) = echo(stream).await {
                            eprintln!("{peer}: {e}");
                        }
                    });
                }
                // Out of fds, for instance: report, and keep accepting.
                Err(e) => {
                    eprintln!("accept: {e}");
                    ringloop::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    });
}

async fn echo(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        let BufResult(n, b) = stream.read(buf).await;
        if n? == 0 {
            return Ok(());
        }
        let BufResult(r, b) = stream.write_all(b).await;
        r?;
        buf = b;
    }
}
