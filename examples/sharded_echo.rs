//! TCP echo server on every core: one shard (loop, thread, ring) per CPU, each with its own
//! `SO_REUSEPORT` listener on the same address, so the kernel spreads connections and no
//! connection ever crosses a shard.
//!
//! ```text
//! cargo run --release --example sharded_echo -- [ADDR] [SHARDS]
//! ```
//!
//! `ADDR` defaults to `127.0.0.1:7000`, `SHARDS` to 0 (one per CPU). It serves until its
//! standard input ends (Ctrl-D, or `</dev/null` to stop at once), then prints one line per
//! shard with the connections it served. Try it with `socat - TCP:127.0.0.1:7000`.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use ringloop::io::BufResult;
use ringloop::net::{TcpListener, TcpStream};
use ringloop::{Promise, ShardedRuntime};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7000".into());
    let shards: usize = match args.next() {
        Some(n) => n.parse().expect("usage: sharded_echo [ADDR] [SHARDS]"),
        None => 0,
    };
    let rt = ShardedRuntime::new(shards)?;
    println!("echo server on {addr}, {} shards", rt.shards());

    // Stops every shard's accept loop when standard input ends.
    let stop = Promise::<()>::new();
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = stop.set_result(());
        });
    }

    let served = rt.run(move |shard| serve(shard, addr.clone(), stop.clone()));
    for (shard, n) in served.iter().enumerate() {
        println!("shard {shard}: {n} connections");
    }
    Ok(())
}

/// One shard: accepts on its own listener until `stop`, one task per connection; returns how
/// many connections it accepted.
async fn serve(shard: usize, addr: String, stop: Promise<()>) -> usize {
    let listener = TcpListener::bind_reuse_port(addr.as_str())
        .unwrap_or_else(|e| panic!("shard {shard}: bind {addr}: {e}"));
    let mut stop = pin!(stop.wait());
    let mut accepted = 0;
    loop {
        let mut accept = pin!(listener.accept());
        // Whichever comes first: a connection, or the stop.
        let next = std::future::poll_fn(|cx| {
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            accept.as_mut().poll(cx).map(Some)
        })
        .await;
        match next {
            None => return accepted,
            Some(Ok((stream, peer))) => {
                accepted += 1;
                ringloop::spawn(async move {
                    if let Err(e) = echo(stream).await {
                        eprintln!("shard {shard}: {peer}: {e}");
                    }
                });
            }
            // Out of fds, for instance: report, and keep accepting.
            Some(Err(e)) => {
                eprintln!("shard {shard}: accept: {e}");
                ringloop::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
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
