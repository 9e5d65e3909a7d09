//! TCP echo over loopback: ringloop on io_uring, ringloop on epoll, tokio (current_thread) and
//! a bare io_uring loop, side by side in one process.
//!
//! Run it with
//!
//! ```text
//! cargo bench --bench net
//! ```
//!
//! Each run starts one echo server on a thread pinned to CPU 0 and a load generator pinned to
//! CPU 1 (when the machine has two CPUs): 50 client threads with blocking std sockets
//! (TCP_NODELAY), each doing request/response ping-pongs of a fixed message size on its own
//! connection (send the message, read the whole echo back), 200,000 requests in total. The
//! load generator is the same for every server. Servers (the rows of the table):
//!
//! - `ringloop io_uring`: `TcpListener::accept`, one task per connection, a 4 KiB `Vec` read
//!   into and written back with `write_all` (the `echo_server` example's loop), on a runtime
//!   built with `.driver(DriverKind::IoUring)`.
//! - `ringloop epoll`: the same code on a runtime built with `.driver(DriverKind::Epoll)`
//!   (both chosen explicitly, so `RINGLOOP_DRIVER` does not change them).
//! - `tokio`: the same on tokio's current_thread runtime (`AsyncReadExt::read`,
//!   `write_all`, a reused 4 KiB buffer).
//! - `io_uring (floor)`: a hand-written loop against the `io-uring` crate with no
//!   runtime: ACCEPT, then per connection RECV -> SEND (-> SEND rest) -> RECV, one
//!   `submit_and_wait(1)` per batch of completions.
//!
//! Metrics: the server thread's own CPU time (user + system, `getrusage(RUSAGE_THREAD)` at its
//! start and end) per request, in µs, and requests per second (wall time of the load). Every
//! server runs once per repetition, alternating (io_uring, epoll, tokio, floor, io_uring, ...),
//! and the table shows the medians and the ratio to tokio's CPU per request. Goals: ringloop on
//! io_uring ≤ 0.9× tokio at 64 B, ≤ 1.0× at 4 KiB; on epoll ≤ 0.95× at both sizes.
//!
//! Environment: `BENCH_REPS=n` (default 5), `BENCH_SCALE=f` (multiplies the request count).
//! Without the `--bench` flag (under `cargo test --all-targets`) it runs a smoke test: one
//! repetition at 1% of the requests.

mod common;
use common::echo::{CONNECTIONS, echo_ringloop, echo_tokio, load};
use common::{DRIVERS, driver_name, median, pin_to, ringloop_rt_on, thread_cpu};
use ringloop::DriverKind;

use std::net::TcpListener as StdListener;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::mpsc;
use std::time::Duration;

const REQUESTS: usize = 200_000;
const SIZES: [usize; 2] = [64, 4096];

#[derive(Clone, Copy, PartialEq)]
enum Server {
    /// ringloop on this driver.
    Ringloop(DriverKind),
    Tokio,
    /// The bare io_uring loop.
    Floor,
}

impl Server {
    fn name(self) -> String {
        match self {
            Server::Ringloop(kind) => format!("ringloop {}", driver_name(kind)),
            Server::Tokio => "tokio".to_string(),
            Server::Floor => "io_uring (floor)".to_string(),
        }
    }

    /// The goal for CPU per request, as a ratio to tokio's, at message size `size`.
    fn goal(self, size: usize) -> Option<f64> {
        match self {
            Server::Ringloop(DriverKind::IoUring) if size == 64 => Some(0.9),
            Server::Ringloop(DriverKind::IoUring) => Some(1.0),
            Server::Ringloop(_) => Some(0.95),
            Server::Tokio | Server::Floor => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Servers: each serves CONNECTIONS connections until all close, and returns its CPU time.
// ---------------------------------------------------------------------------------------------

fn serve_ringloop(listener: StdListener, kind: DriverKind) -> Duration {
    let rt = ringloop_rt_on(kind);
    let start = thread_cpu();
    rt.block_on(async move {
        let listener = ringloop::net::TcpListener::from(listener);
        let mut tasks = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let (stream, _) = listener.accept().await.unwrap();
            tasks.push(ringloop::spawn(echo_ringloop(stream)));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    thread_cpu() - start
}

fn serve_tokio(listener: StdListener) -> Duration {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = thread_cpu();
    rt.block_on(async move {
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let mut tasks = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let (stream, _) = listener.accept().await.unwrap();
            tasks.push(tokio::spawn(echo_tokio(stream)));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    thread_cpu() - start
}

/// The floor: a bare io_uring echo loop, no runtime, no allocation per request.
fn serve_io_uring(listener: StdListener) -> Duration {
    use io_uring::{IoUring, opcode, types};
    const ACCEPT: u64 = 0;
    const RECV: u64 = 1;
    const SEND: u64 = 2;
    struct Conn {
        fd: RawFd,
        buf: Vec<u8>,
        len: usize,
        sent: usize,
    }
    let mut ring = IoUring::builder()
        .setup_coop_taskrun()
        .setup_single_issuer()
        .build(256)
        .unwrap();
    let start = thread_cpu();
    let lfd = listener.as_raw_fd();
    let mut conns: Vec<Conn> = Vec::with_capacity(CONNECTIONS);
    let (mut accepted, mut closed) = (0, 0);
    let push = |ring: &mut IoUring, e: io_uring::squeue::Entry| {
        // SAFETY: every pointer in the entries below points into a `Conn`'s heap buffer, which
        // lives (and is not reallocated) until the end of this function, after every CQE.
        while unsafe { ring.submission().push(&e) }.is_err() {
            ring.submit().unwrap();
        }
    };
    let recv = |c: &mut Conn, i: usize| {
        opcode::Recv::new(types::Fd(c.fd), c.buf.as_mut_ptr(), c.buf.len() as u32)
            .build()
            .user_data((i as u64) << 2 | RECV)
    };
    let send = |c: &Conn, i: usize| {
        // SAFETY: sent <= len <= buf.len().
        let p = unsafe { c.buf.as_ptr().add(c.sent) };
        opcode::Send::new(types::Fd(c.fd), p, (c.len - c.sent) as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data((i as u64) << 2 | SEND)
    };
    push(
        &mut ring,
        opcode::Accept::new(types::Fd(lfd), std::ptr::null_mut(), std::ptr::null_mut())
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(ACCEPT),
    );
    while closed < CONNECTIONS {
        ring.submit_and_wait(1).unwrap();
        let cqes: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (ud, res) in cqes {
            let i = (ud >> 2) as usize;
            match ud & 3 {
                ACCEPT => {
                    assert!(
                        res >= 0,
                        "accept: {}",
                        std::io::Error::from_raw_os_error(-res)
                    );
                    let one: libc::c_int = 1;
                    // SAFETY: valid pointer and length for TCP_NODELAY.
                    unsafe {
                        libc::setsockopt(
                            res,
                            libc::IPPROTO_TCP,
                            libc::TCP_NODELAY,
                            (&raw const one).cast(),
                            size_of::<libc::c_int>() as libc::socklen_t,
                        )
                    };
                    conns.push(Conn {
                        fd: res,
                        buf: vec![0; 4096],
                        len: 0,
                        sent: 0,
                    });
                    let i = conns.len() - 1;
                    push(&mut ring, recv(&mut conns[i], i));
                    accepted += 1;
                    if accepted < CONNECTIONS {
                        push(
                            &mut ring,
                            opcode::Accept::new(
                                types::Fd(lfd),
                                std::ptr::null_mut(),
                                std::ptr::null_mut(),
                            )
                            .flags(libc::SOCK_CLOEXEC)
                            .build()
                            .user_data(ACCEPT),
                        );
                    }
                }
                RECV => {
                    let c = &mut conns[i];
                    if res <= 0 {
                        // SAFETY: our fd, closed once.
                        unsafe { libc::close(c.fd) };
                        closed += 1;
                    } else {
                        c.len = res as usize;
                        c.sent = 0;
                        push(&mut ring, send(c, i));
                    }
                }
                _ => {
                    let c = &mut conns[i];
                    assert!(res > 0, "send: {}", std::io::Error::from_raw_os_error(-res));
                    c.sent += res as usize;
                    if c.sent < c.len {
                        push(&mut ring, send(c, i));
                    } else {
                        push(&mut ring, recv(c, i));
                    }
                }
            }
        }
    }
    thread_cpu() - start
}

// ---------------------------------------------------------------------------------------------
// One run (the load generator is in common/echo.rs)
// ---------------------------------------------------------------------------------------------

/// Runs one server against the load; returns (server CPU µs per request, requests per second).
fn run(server: Server, size: usize, requests: usize) -> (f64, f64) {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let per_conn = requests.div_ceil(CONNECTIONS);
    let (tx, rx) = mpsc::channel();
    let server_thread = std::thread::spawn(move || {
        pin_to(0);
        let cpu = match server {
            Server::Ringloop(kind) => serve_ringloop(listener, kind),
            Server::Tokio => serve_tokio(listener),
            Server::Floor => serve_io_uring(listener),
        };
        tx.send(cpu).unwrap();
    });
    let wall = load(addr, size, per_conn, Some(1)).wall;
    let cpu = rx.recv().unwrap();
    server_thread.join().unwrap();
    let total = per_conn * CONNECTIONS;
    (
        cpu.as_nanos() as f64 / 1e3 / total as f64,
        total as f64 / wall.as_secs_f64(),
    )
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let reps: usize = if bench {
        std::env::var("BENCH_REPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5)
    } else {
        1
    };
    let scale: f64 = if bench {
        std::env::var("BENCH_SCALE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1.0)
    } else {
        0.01
    };
    let requests = ((REQUESTS as f64 * scale) as usize).max(CONNECTIONS);
    let servers: Vec<Server> = DRIVERS
        .into_iter()
        .map(Server::Ringloop)
        .chain([Server::Tokio, Server::Floor])
        .collect();
    let tokio = servers.iter().position(|&s| s == Server::Tokio).unwrap();
    let mut rows = Vec::new();
    for size in SIZES {
        let mut cpu = vec![Vec::new(); servers.len()];
        let mut rps = vec![Vec::new(); servers.len()];
        for rep in 0..reps {
            for (i, &server) in servers.iter().enumerate() {
                let (c, r) = run(server, size, requests);
                eprintln!(
                    "echo {size} B, {}, rep {}: {c:.2} µs CPU/request, {r:.0} requests/s",
                    server.name(),
                    rep + 1
                );
                cpu[i].push(c);
                rps[i].push(r);
            }
        }
        let cpu: Vec<f64> = cpu.iter().map(|v| median(v)).collect();
        let rps: Vec<f64> = rps.iter().map(|v| median(v)).collect();
        rows.push((size, cpu, rps));
    }
    println!();
    println!(
        "TCP echo over loopback, {CONNECTIONS} connections, {requests} requests per run, \
         median of {reps}"
    );
    println!(
        "{:<10} {:<18} {:>16} {:>14} {:>16} {:>9}",
        "message", "server", "CPU µs/request", "requests/s", "CPU vs tokio", "goal"
    );
    for (size, cpu, rps) in rows {
        for (i, &server) in servers.iter().enumerate() {
            let ratio = cpu[i] / cpu[tokio];
            let verdict = match server.goal(size) {
                Some(goal) if ratio <= goal => format!("≤{goal} ok"),
                Some(goal) => format!("≤{goal} MISS"),
                None => String::new(),
            };
            println!(
                "{:<10} {:<18} {:>16.2} {:>14.0} {:>15.2}x {:>9}",
                format!("{size} B"),
                server.name(),
                cpu[i],
                rps[i],
                ratio,
                verdict
            );
        }
    }
}
