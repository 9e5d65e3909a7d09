//! The TCP echo workload of `net` and `shards`: the load generator (blocking client threads)
//! and the per-connection echo loops the servers run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::{pin_to, thread_cpu};

/// Client connections (and threads) of the load generator.
pub const CONNECTIONS: usize = 50;

/// What one load took.
pub struct Load {
    /// From the moment every client is connected until the last one has closed.
    pub wall: Duration,
    /// CPU time (user + system) of the client threads, over their whole lives.
    pub cpu: Duration,
}

/// CONNECTIONS blocking client threads (on CPU `pin` if given), each doing `per_conn`
/// ping-pongs of `size` bytes on its own connection (TCP_NODELAY): send the message, read the
/// whole echo back. Then each closes its connection.
pub fn load(addr: SocketAddr, size: usize, per_conn: usize, pin: Option<usize>) -> Load {
    let barrier = Arc::new(Barrier::new(CONNECTIONS + 1));
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                if let Some(cpu) = pin {
                    pin_to(cpu);
                }
                let mut s = StdStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                let msg = vec![0x5a_u8; size];
                let mut back = vec![0u8; size];
                barrier.wait();
                for _ in 0..per_conn {
                    s.write_all(&msg).unwrap();
                    s.read_exact(&mut back).unwrap();
                }
                drop(s);
                thread_cpu()
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let cpu = clients.into_iter().map(|c| c.join().unwrap()).sum();
    Load {
        wall: start.elapsed(),
        cpu,
    }
}

/// One connection of a ringloop echo server: a 4 KiB `Vec` read into and written back with
/// `write_all` (the `echo_server` example's loop), until the client closes.
pub async fn echo_ringloop(stream: ringloop::net::TcpStream) {
    use ringloop::io::BufResult;
    stream.set_nodelay(true).unwrap();
    let mut buf = Vec::with_capacity(4096);
    loop {
        let BufResult(n, b) = stream.read(buf).await;
        if n.unwrap() == 0 {
            break;
        }
        let BufResult(r, b) = stream.write_all(b).await;
        r.unwrap();
        buf = b;
    }
}

/// One connection of a ringloop echo server with lent buffers: `read_lent`, and the lent
/// buffer written back as it is with `write_all` (no copy, no buffer held while idle).
pub async fn echo_ringloop_lent(stream: ringloop::net::TcpStream) {
    stream.set_nodelay(true).unwrap();
    loop {
        let buf = stream.read_lent().await.unwrap();
        if buf.is_empty() {
            break;
        }
        stream.write_all(buf).await.0.unwrap();
    }
}

/// The same on tokio: `AsyncReadExt::read` into a reused 4 KiB buffer, `write_all` back.
pub async fn echo_tokio(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n]).await.unwrap();
    }
}
