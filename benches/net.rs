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
//! - `ringloop io_uring lent` / `ringloop epoll lent`: the same, reading with `read_lent` and
//!   writing the lent buffer back as it is (on io_uring: one multishot receive per connection
//!   into the provided buffer ring, so a request costs one SEND submission; on epoll: heap
//!   buffers from the loop's pool).
//! - `tokio`: the same on tokio's current_thread runtime (`AsyncReadExt::read`,
//!   `write_all`, a reused 4 KiB buffer).
//! - `io_uring (floor)`: a hand-written loop against the `io-uring` crate with no
//!   runtime: ACCEPT, then per connection RECV -> SEND (-> SEND rest) -> RECV, one
//!   `submit_and_wait(1)` per batch of completions.
//! - `floor, fixed files` (informative): the same with every accepted socket also in the
//!   ring's registered file table, RECV and SEND naming it by index: what registered (direct)
//!   descriptors would save.
//!
//! Metrics: the server thread's own CPU time (user + system, `getrusage(RUSAGE_THREAD)` at its
//! start and end) per request, in µs (and, informative, its user-space part: most of a request
//! is the kernel's loopback TCP work, the same for every server), and requests per second (wall time of the load). Every
//! server runs once per repetition, alternating (io_uring, epoll, tokio, floor, io_uring, ...),
//! and the table shows the medians and the ratios to tokio's and to the floor's CPU per
//! request. Goals: ringloop on io_uring ≤ 0.9× tokio at 64 B, ≤ 1.0× at 4 KiB; on epoll ≤ 0.95×
//! at both sizes; with lent buffers on io_uring ≤ 0.9× the floor at both sizes and ≤ 0.8×
//! tokio at 4 KiB.
//!
//! Then `idle`: resident memory per idle connection. A server runs in a fresh child process
//! (so one run's freed-but-retained heap does not hide the next one's growth); the child's main
//! thread opens 300 connections, each sending one 64 B message and reading its echo, reads
//! VmRSS, then does the same with 1,000 more and reads VmRSS again. Metric: the difference
//! over 1,000, in bytes: what one more connection, served and then idle, costs (task, socket
//! state, and the buffer it holds while waiting: 4 KiB for the plain loops, none for the lent
//! one). The first 300 cycle through the lent buffer ring (256 buffers of 4 KiB, 1 MiB per loop,
//! resident once used: a fixed cost of the loop, not of a connection), so the difference
//! counts connections only. Goal: ringloop io_uring lent ≤ 0.25× tokio.
//!
//! Environment: `BENCH_REPS=n` (default 5), `BENCH_SCALE=f` (multiplies the request count),
//! `BENCH_ONLY=echo` or `BENCH_ONLY=idle` (one of the two tables).
//! Without the `--bench` flag (under `cargo test --all-targets`) it runs a smoke test: one
//! repetition at 1% of the requests.

mod common;
use common::echo::{CONNECTIONS, echo_ringloop, echo_ringloop_lent, echo_tokio, load};
use common::{DRIVERS, driver_name, median, pin_to, ringloop_rt_on, rss_bytes, thread_cpu_parts};
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
    /// ringloop on this driver, reading with `read_lent`.
    RingloopLent(DriverKind),
    Tokio,
    /// The bare io_uring loop.
    Floor,
    /// The same with registered files (informative).
    FloorFixed,
}

impl Server {
    fn name(self) -> String {
        match self {
            Server::Ringloop(kind) => format!("ringloop {}", driver_name(kind)),
            Server::RingloopLent(kind) => format!("ringloop {} lent", driver_name(kind)),
            Server::Tokio => "tokio".to_string(),
            Server::Floor => "io_uring (floor)".to_string(),
            Server::FloorFixed => "floor, fixed files".to_string(),
        }
    }

    /// The goals for CPU per request at message size `size`, as ratios to tokio's and to the
    /// floor's.
    fn goal(self, size: usize) -> (Option<f64>, Option<f64>) {
        match self {
            Server::Ringloop(DriverKind::IoUring) if size == 64 => (Some(0.9), None),
            Server::Ringloop(DriverKind::IoUring) => (Some(1.0), None),
            Server::Ringloop(_) => (Some(0.95), None),
            Server::RingloopLent(DriverKind::IoUring) if size == 64 => (None, Some(0.9)),
            Server::RingloopLent(DriverKind::IoUring) => (Some(0.8), Some(0.9)),
            Server::RingloopLent(_) | Server::Tokio | Server::Floor | Server::FloorFixed => {
                (None, None)
            }
        }
    }
}

/// The server thread's CPU time since `start`: (user + system, user).
struct Cpu((Duration, Duration));

impl Cpu {
    fn start() -> Cpu {
        Cpu(thread_cpu_parts())
    }

    fn elapsed(&self) -> (Duration, Duration) {
        let (user, system) = thread_cpu_parts();
        let (user0, system0) = self.0;
        (user + system - user0 - system0, user - user0)
    }
}

// ---------------------------------------------------------------------------------------------
// Servers: each serves CONNECTIONS connections until all close, and returns its CPU time.
// ---------------------------------------------------------------------------------------------

fn serve_ringloop(listener: StdListener, kind: DriverKind, lent: bool) -> (Duration, Duration) {
    let rt = ringloop_rt_on(kind);
    let start = Cpu::start();
    rt.block_on(async move {
        let listener = ringloop::net::TcpListener::from(listener);
        let mut tasks = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let (stream, _) = listener.accept().await.unwrap();
            tasks.push(if lent {
                ringloop::spawn(async move { echo_ringloop_lent(stream).await })
            } else {
                ringloop::spawn(async move { echo_ringloop(stream).await })
            });
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    start.elapsed()
}

fn serve_tokio(listener: StdListener) -> (Duration, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = Cpu::start();
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
    start.elapsed()
}

/// The floor: a bare io_uring echo loop, no runtime, no allocation per request. With `fixed`,
/// each accepted socket is also put in the ring's registered file table and named by its
/// index in RECV and SEND (what direct descriptors would save: the per-SQE file lookup).
fn serve_io_uring(listener: StdListener, fixed: bool) -> (Duration, Duration) {
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
    if fixed {
        ring.submitter()
            .register_files_sparse(CONNECTIONS as u32)
            .unwrap();
    }
    let start = Cpu::start();
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
        let (p, n) = (c.buf.as_mut_ptr(), c.buf.len() as u32);
        let e = if fixed {
            opcode::Recv::new(types::Fixed(i as u32), p, n).build()
        } else {
            opcode::Recv::new(types::Fd(c.fd), p, n).build()
        };
        e.user_data((i as u64) << 2 | RECV)
    };
    let send = |c: &Conn, i: usize| {
        // SAFETY: sent <= len <= buf.len().
        let p = unsafe { c.buf.as_ptr().add(c.sent) };
        let n = (c.len - c.sent) as u32;
        let e = if fixed {
            opcode::Send::new(types::Fixed(i as u32), p, n)
        } else {
            opcode::Send::new(types::Fd(c.fd), p, n)
        };
        e.flags(libc::MSG_NOSIGNAL)
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
                    if fixed {
                        ring.submitter()
                            .register_files_update(i as u32, &[res])
                            .unwrap();
                    }
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
    start.elapsed()
}

// ---------------------------------------------------------------------------------------------
// One run (the load generator is in common/echo.rs)
// ---------------------------------------------------------------------------------------------

/// Runs one server against the load; returns (server CPU µs per request, of which user space,
/// requests per second).
fn run(server: Server, size: usize, requests: usize) -> (f64, f64, f64) {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let per_conn = requests.div_ceil(CONNECTIONS);
    let (tx, rx) = mpsc::channel();
    // Named, so that a profile can tell the servers apart (`perf report --comm srv-lent-uring`).
    let thread_name = match server {
        Server::Ringloop(kind) => format!("srv-{}", driver_name(kind)),
        Server::RingloopLent(kind) => format!("srv-lent-{}", driver_name(kind)),
        Server::Tokio => "srv-tokio".to_string(),
        Server::Floor => "srv-floor".to_string(),
        Server::FloorFixed => "srv-floor-fixed".to_string(),
    };
    let server_thread = std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            pin_to(0);
            let cpu = match server {
                Server::Ringloop(kind) => serve_ringloop(listener, kind, false),
                Server::RingloopLent(kind) => serve_ringloop(listener, kind, true),
                Server::Tokio => serve_tokio(listener),
                Server::Floor => serve_io_uring(listener, false),
                Server::FloorFixed => serve_io_uring(listener, true),
            };
            tx.send(cpu).unwrap();
        })
        .unwrap();
    let wall = load(addr, size, per_conn, Some(1)).wall;
    let cpu = rx.recv().unwrap();
    server_thread.join().unwrap();
    let total = per_conn * CONNECTIONS;
    let per_request = |d: Duration| d.as_nanos() as f64 / 1e3 / total as f64;
    (
        per_request(cpu.0),
        per_request(cpu.1),
        total as f64 / wall.as_secs_f64(),
    )
}

// ---------------------------------------------------------------------------------------------
// idle: memory per idle connection, each server in a child process
// ---------------------------------------------------------------------------------------------

/// Connections opened before the first reading, and then between the two readings.
const IDLE_WARM: usize = 300;
const IDLE_MEASURED: usize = 1000;

/// Opens `n` connections to `addr`, each sending 64 B and reading the echo; keeps them open.
fn open_idle(addr: std::net::SocketAddr, n: usize, keep: &mut Vec<std::net::TcpStream>) {
    use std::io::{Read, Write};
    for _ in 0..n {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(&[7; 64]).unwrap();
        c.read_exact(&mut [0; 64]).unwrap();
        keep.push(c);
    }
}

/// The child's side of `idle`: serves on a thread, measures from the main thread, prints the
/// bytes per idle connection.
fn idle_child(server: &str) {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let total = IDLE_WARM + IDLE_MEASURED;
    let server = server.to_string();
    std::thread::spawn(move || match server.as_str() {
        "tokio" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    tokio::spawn(echo_tokio(stream));
                }
            });
        }
        name => {
            let (kind, lent) = match name {
                "io_uring" => (DriverKind::IoUring, false),
                "io_uring lent" => (DriverKind::IoUring, true),
                "epoll" => (DriverKind::Epoll, false),
                "epoll lent" => (DriverKind::Epoll, true),
                other => panic!("unknown idle server {other:?}"),
            };
            ringloop_rt_on(kind).block_on(async move {
                let listener = ringloop::net::TcpListener::from(listener);
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    if lent {
                        ringloop::spawn(echo_ringloop_lent(stream)).detach();
                    } else {
                        ringloop::spawn(echo_ringloop(stream)).detach();
                    }
                }
            });
        }
    });
    let mut keep = Vec::with_capacity(total);
    open_idle(addr, IDLE_WARM, &mut keep);
    let before = rss_bytes();
    open_idle(addr, IDLE_MEASURED, &mut keep);
    let after = rss_bytes();
    println!(
        "{}",
        after.saturating_sub(before) as f64 / IDLE_MEASURED as f64
    );
}

/// Runs `idle` for `server` in a fresh copy of this executable; bytes per idle connection.
fn idle_in_child(server: &str) -> f64 {
    common::in_child(&format!("idle:{server}"), &[])
}

fn idle_table(reps: usize) {
    const SERVERS: [&str; 5] = ["io_uring lent", "io_uring", "epoll lent", "epoll", "tokio"];
    let mut bytes = vec![Vec::new(); SERVERS.len()];
    for rep in 0..reps {
        for (i, server) in SERVERS.iter().enumerate() {
            let b = idle_in_child(server);
            eprintln!(
                "idle, ringloop/tokio {server}, rep {}: {b:.0} B/connection",
                rep + 1
            );
            bytes[i].push(b);
        }
    }
    let bytes: Vec<f64> = bytes.iter().map(|v| median(v)).collect();
    let tokio = bytes[SERVERS.len() - 1];
    println!();
    println!(
        "Idle connections: resident memory per connection ({IDLE_MEASURED} connections after \
         {IDLE_WARM}, each served once), median of {reps}"
    );
    println!(
        "{:<22} {:>14} {:>10} {:>9}",
        "server", "B/connection", "vs tokio", "goal"
    );
    for (i, server) in SERVERS.iter().enumerate() {
        let name = if *server == "tokio" {
            "tokio".to_string()
        } else {
            format!("ringloop {server}")
        };
        let ratio = bytes[i] / tokio;
        let goal = match *server {
            "io_uring lent" if ratio <= 0.25 => "≤0.25 ok",
            "io_uring lent" => "≤0.25 MISS",
            _ => "",
        };
        println!("{name:<22} {:>14.0} {ratio:>9.2}x {goal:>9}", bytes[i]);
    }
}

fn main() {
    if let Ok(child) = std::env::var("BENCH_CHILD")
        && let Some(server) = child.strip_prefix("idle:")
    {
        idle_child(server);
        return;
    }
    let settings = common::settings();
    let (reps, scale) = (settings.reps, settings.scale);
    let wants = |what: &str| {
        settings
            .only
            .as_ref()
            .is_none_or(|v| v.split(',').any(|w| w.trim() == what))
    };
    if wants("echo") {
        echo_table(reps, scale);
    }
    if wants("idle") {
        idle_table(reps);
    }
}

fn echo_table(reps: usize, scale: f64) {
    let requests = ((REQUESTS as f64 * scale) as usize).max(CONNECTIONS);
    let servers: Vec<Server> = DRIVERS
        .into_iter()
        .map(Server::Ringloop)
        .chain(DRIVERS.into_iter().map(Server::RingloopLent))
        .chain([Server::Tokio, Server::Floor, Server::FloorFixed])
        .collect();
    let tokio = servers.iter().position(|&s| s == Server::Tokio).unwrap();
    let floor = servers.iter().position(|&s| s == Server::Floor).unwrap();
    let mut rows = Vec::new();
    for size in SIZES {
        let mut cpu = vec![Vec::new(); servers.len()];
        let mut user = vec![Vec::new(); servers.len()];
        let mut rps = vec![Vec::new(); servers.len()];
        for rep in 0..reps {
            for (i, &server) in servers.iter().enumerate() {
                let (c, u, r) = run(server, size, requests);
                eprintln!(
                    "echo {size} B, {}, rep {}: {c:.2} µs CPU/request ({u:.2} user), \
                     {r:.0} requests/s",
                    server.name(),
                    rep + 1
                );
                cpu[i].push(c);
                user[i].push(u);
                rps[i].push(r);
            }
        }
        let med = |v: &Vec<Vec<f64>>| -> Vec<f64> { v.iter().map(|v| median(v)).collect() };
        rows.push((size, med(&cpu), med(&user), med(&rps)));
    }
    println!();
    println!(
        "TCP echo over loopback, {CONNECTIONS} connections, {requests} requests per run, \
         median of {reps}"
    );
    println!(
        "{:<10} {:<23} {:>15} {:>9} {:>11} {:>9} {:>11} {:>9} {:>11}",
        "message",
        "server",
        "CPU µs/request",
        "user µs",
        "requests/s",
        "vs tokio",
        "goal",
        "vs floor",
        "goal"
    );
    let verdict = |goal: Option<f64>, ratio: f64| match goal {
        Some(goal) if ratio <= goal => format!("≤{goal} ok"),
        Some(goal) => format!("≤{goal} MISS"),
        None => String::new(),
    };
    for (size, cpu, user, rps) in rows {
        for (i, &server) in servers.iter().enumerate() {
            let (vs_tokio, vs_floor) = (cpu[i] / cpu[tokio], cpu[i] / cpu[floor]);
            let (tokio_goal, floor_goal) = server.goal(size);
            println!(
                "{:<10} {:<23} {:>15.2} {:>9.2} {:>11.0} {:>8.2}x {:>11} {:>8.2}x {:>11}",
                format!("{size} B"),
                server.name(),
                cpu[i],
                user[i],
                rps[i],
                vs_tokio,
                verdict(tokio_goal, vs_tokio),
                vs_floor,
                verdict(floor_goal, vs_floor),
            );
        }
    }
}
