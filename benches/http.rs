//! A hyper HTTP/1.1 server over loopback: ringloop on io_uring, ringloop on epoll and tokio
//! (current_thread), side by side in one process.
//!
//! Run it with
//!
//! ```text
//! cargo bench --features hyper --bench http
//! ```
//!
//! Each run starts one server on a thread pinned to CPU 0 and a load generator pinned to CPU 1
//! (when the machine has two CPUs). The server accepts 50 connections and serves each with
//! `hyper::server::conn::http1` (keep-alive, a timer set, so hyper's default 30 s header read
//! timeout is armed for every request) and the same service (`service` below) until the
//! client closes. Servers (the rows of the table):
//!
//! - `ringloop io_uring`: `ringloop::hyper::{Io, Timer}`, one task per connection, on a runtime
//!   built with `.driver(DriverKind::IoUring)`.
//! - `ringloop epoll`: the same code on `.driver(DriverKind::Epoll)` (both chosen explicitly,
//!   so `RINGLOOP_DRIVER` does not change them).
//! - `tokio`: the same service on tokio's current_thread runtime, with hyper-util's
//!   `TokioIo` and `TokioTimer`, one `tokio::spawn` per connection.
//!
//! Endpoints (the groups of rows): `GET /` answers `Hello, World!`; `POST /echo` sends a 64 B
//! body, which the service collects and answers; `GET /16k` answers 16 KiB.
//!
//! The load generator is the same for every server and uses no HTTP library: 50 plain threads,
//! each with one keep-alive connection (a blocking std `TcpStream`, TCP_NODELAY), sending one
//! request (a single `write_all`), reading the response head up to its blank line and then
//! exactly `Content-Length` body bytes, checking status and body, and sending the next: a
//! closed loop, 100,000 requests in all. Each request's latency is timed from just before its
//! write to the end of its response.
//!
//! Columns: requests per second (wall time of the load, from the moment every client is
//! connected); p99 latency in µs over every request of the run; the server thread's CPU time
//! (user + system, `getrusage(RUSAGE_THREAD)` around its `block_on`) per request, in µs; and
//! the ratios of the three to tokio's. Every server runs once per repetition, alternating
//! (io_uring, epoll, tokio, io_uring, ...), and the table shows the medians. Goals, for both
//! ringloop drivers: CPU per request ≤ 0.8× tokio's, p99 ≤ 1.0× tokio's.
//!
//! The 50 client threads share one CPU, so latency includes their scheduling: with 50 requests
//! always in flight, the median latency is about 50 / (requests/s); the tail is what differs.
//!
//! Environment: `BENCH_REPS=n` (default 5), `BENCH_SCALE=f` (multiplies the request count),
//! `BENCH_ONLY=hello|echo|16k` (one endpoint). Without the `--bench` flag (under
//! `cargo test --all-targets --features hyper`) it runs a smoke test: one repetition at 1% of
//! the requests.

mod common;
use common::{DRIVERS, driver_name, median, pin_to, ringloop_rt_on, thread_cpu, tokio_rt};
use ringloop::DriverKind;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::ops::Range;
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};

/// Keep-alive connections (and client threads) of the load generator.
const CONNECTIONS: usize = 50;
const REQUESTS: usize = 100_000;
const HELLO: &[u8] = b"Hello, World!";
const ECHO_BODY: usize = 64;
const BIG: usize = 16 << 10;
static BIG_BODY: [u8; BIG] = [b'x'; BIG];

#[derive(Clone, Copy, PartialEq)]
enum Server {
    /// ringloop on this driver.
    Ringloop(DriverKind),
    Tokio,
}

impl Server {
    fn name(self) -> String {
        match self {
            Server::Ringloop(kind) => format!("ringloop {}", driver_name(kind)),
            Server::Tokio => "tokio".to_string(),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Endpoint {
    Hello,
    Echo,
    Big,
}

impl Endpoint {
    const ALL: [Endpoint; 3] = [Endpoint::Hello, Endpoint::Echo, Endpoint::Big];

    fn name(self) -> &'static str {
        match self {
            Endpoint::Hello => "GET /",
            Endpoint::Echo => "POST /echo",
            Endpoint::Big => "GET /16k",
        }
    }

    /// Its name in `BENCH_ONLY`.
    fn key(self) -> &'static str {
        match self {
            Endpoint::Hello => "hello",
            Endpoint::Echo => "echo",
            Endpoint::Big => "16k",
        }
    }

    /// The whole request, as the load generator writes it.
    fn request(self) -> Vec<u8> {
        match self {
            Endpoint::Hello => b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n".to_vec(),
            Endpoint::Echo => {
                let mut r = format!(
                    "POST /echo HTTP/1.1\r\nHost: bench\r\nContent-Length: {ECHO_BODY}\r\n\r\n"
                )
                .into_bytes();
                r.extend_from_slice(&echo_body());
                r
            }
            Endpoint::Big => b"GET /16k HTTP/1.1\r\nHost: bench\r\n\r\n".to_vec(),
        }
    }

    /// The response body it must get.
    fn expected(self) -> Vec<u8> {
        match self {
            Endpoint::Hello => HELLO.to_vec(),
            Endpoint::Echo => echo_body(),
            Endpoint::Big => BIG_BODY.to_vec(),
        }
    }
}

fn echo_body() -> Vec<u8> {
    (0..ECHO_BODY).map(|i| b'a' + (i % 26) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// Servers: the one service, on each runtime. Each serves CONNECTIONS connections until all
// close, and returns its CPU time.
// ---------------------------------------------------------------------------------------------

async fn service(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let body = match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => Bytes::from_static(HELLO),
        (&Method::POST, "/echo") => req.into_body().collect().await?.to_bytes(),
        (&Method::GET, "/16k") => Bytes::from_static(&BIG_BODY),
        _ => {
            let mut res = Response::new(Full::new(Bytes::from_static(b"not found")));
            *res.status_mut() = StatusCode::NOT_FOUND;
            return Ok(res);
        }
    };
    Ok(Response::new(Full::new(body)))
}

fn serve_ringloop(listener: StdListener, kind: DriverKind) -> Duration {
    use ringloop::hyper::{Io, Timer};
    let rt = ringloop_rt_on(kind);
    let start = thread_cpu();
    rt.block_on(async move {
        let listener = ringloop::net::TcpListener::from(listener);
        let mut conns = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            conns.push(ringloop::spawn(
                http1::Builder::new()
                    .timer(Timer)
                    .serve_connection(Io::new(stream), service_fn(service)),
            ));
        }
        for c in conns {
            c.await.unwrap().unwrap_or_else(|e| {
                panic!(
                    "a hyper connection on ringloop {}: {e:?}",
                    driver_name(kind)
                )
            });
        }
    });
    thread_cpu() - start
}

fn serve_tokio(listener: StdListener) -> Duration {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let rt = tokio_rt();
    let start = thread_cpu();
    rt.block_on(async move {
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let mut conns = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            conns.push(tokio::spawn(
                http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service_fn(service)),
            ));
        }
        for c in conns {
            c.await.unwrap().expect("a hyper connection on tokio");
        }
    });
    thread_cpu() - start
}

// ---------------------------------------------------------------------------------------------
// The load generator: hand-written HTTP/1.1 over blocking std sockets.
// ---------------------------------------------------------------------------------------------

/// One keep-alive client connection and the bytes read from it but not yet consumed.
struct Client {
    stream: StdStream,
    buf: Box<[u8]>,
    filled: usize,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = StdStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: vec![0; 64 << 10].into_boxed_slice(),
            filled: 0,
        }
    }

    /// Reads more bytes from the server.
    fn fill(&mut self) {
        assert!(
            self.filled < self.buf.len(),
            "a response larger than the buffer"
        );
        let n = self.stream.read(&mut self.buf[self.filled..]).unwrap();
        assert!(n > 0, "the server closed the connection");
        self.filled += n;
    }

    /// Reads one response: its head up to the blank line, then `Content-Length` bytes of body.
    /// Returns the status and where the body is in `buf`; `consume` it when done.
    fn response(&mut self) -> (u16, Range<usize>) {
        let head_end = loop {
            if let Some(i) = self.buf[..self.filled]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
            {
                break i + 4;
            }
            self.fill();
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).expect("a UTF-8 response head");
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP/1.1 status line: {head:?}"));
        let len: usize = head
            .split("\r\n")
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no Content-Length: {head:?}"));
        while self.filled < head_end + len {
            self.fill();
        }
        (status, head_end..head_end + len)
    }

    /// Drops the first `n` bytes of `buf` (one response), keeping any that follow.
    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
    }
}

/// What one load measured.
struct Load {
    /// From the moment every client is connected until the last one has closed.
    wall: Duration,
    /// Every request's latency, in ns, sorted.
    latencies: Vec<u64>,
}

/// CONNECTIONS client threads (on CPU `pin` if given), each sending `per_conn` requests to
/// `endpoint` over its own keep-alive connection, one at a time, then closing it.
fn load(addr: SocketAddr, endpoint: Endpoint, per_conn: usize, pin: Option<usize>) -> Load {
    let barrier = Arc::new(Barrier::new(CONNECTIONS + 1));
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                if let Some(cpu) = pin {
                    pin_to(cpu);
                }
                let mut client = Client::connect(addr);
                let (request, expected) = (endpoint.request(), endpoint.expected());
                let mut latencies = Vec::with_capacity(per_conn);
                barrier.wait();
                for _ in 0..per_conn {
                    let sent = Instant::now();
                    client.stream.write_all(&request).unwrap();
                    let (status, body) = client.response();
                    latencies.push(sent.elapsed().as_nanos() as u64);
                    assert_eq!(status, 200, "{}", endpoint.name());
                    assert!(client.buf[body.clone()] == expected[..], "a wrong body");
                    client.consume(body.end);
                }
                latencies
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut latencies = Vec::with_capacity(per_conn * CONNECTIONS);
    for c in clients {
        latencies.extend(c.join().unwrap());
    }
    let wall = start.elapsed();
    latencies.sort_unstable();
    Load { wall, latencies }
}

// ---------------------------------------------------------------------------------------------
// One run, and the table
// ---------------------------------------------------------------------------------------------

/// What one run measured.
struct Sample {
    rps: f64,
    p99_us: f64,
    cpu_us: f64,
}

fn run(server: Server, endpoint: Endpoint, requests: usize) -> Sample {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let per_conn = requests.div_ceil(CONNECTIONS);
    let (tx, rx) = mpsc::channel();
    let server_thread = std::thread::spawn(move || {
        pin_to(0);
        let cpu = match server {
            Server::Ringloop(kind) => serve_ringloop(listener, kind),
            Server::Tokio => serve_tokio(listener),
        };
        tx.send(cpu).unwrap();
    });
    let load = load(addr, endpoint, per_conn, Some(1));
    let cpu = rx.recv().unwrap();
    server_thread.join().unwrap();
    let total = load.latencies.len();
    // The nearest-rank 99th percentile.
    let p99 = load.latencies[(total * 99).div_ceil(100) - 1];
    Sample {
        rps: total as f64 / load.wall.as_secs_f64(),
        p99_us: p99 as f64 / 1e3,
        cpu_us: cpu.as_nanos() as f64 / 1e3 / total as f64,
    }
}

/// `ratio` with `ok` or `MISS` against `goal` (at most).
fn verdict(ratio: f64, goal: f64) -> String {
    let mark = if ratio <= goal { "ok" } else { "MISS" };
    format!("{ratio:.2}x {mark}")
}

fn main() {
    let common::Settings {
        reps, scale, only, ..
    } = common::settings();
    let requests = ((REQUESTS as f64 * scale) as usize).max(CONNECTIONS);
    let endpoints: Vec<Endpoint> = Endpoint::ALL
        .into_iter()
        .filter(|e| only.as_deref().is_none_or(|o| o == e.key()))
        .collect();
    assert!(
        !endpoints.is_empty(),
        "BENCH_ONLY must be one of hello, echo, 16k"
    );
    let servers: Vec<Server> = DRIVERS
        .into_iter()
        .map(Server::Ringloop)
        .chain([Server::Tokio])
        .collect();
    let tokio = servers.iter().position(|&s| s == Server::Tokio).unwrap();
    let mut rows = Vec::new();
    for &endpoint in &endpoints {
        let mut samples: Vec<Vec<Sample>> = servers.iter().map(|_| Vec::new()).collect();
        for rep in 0..reps {
            for (i, &server) in servers.iter().enumerate() {
                let s = run(server, endpoint, requests);
                eprintln!(
                    "{}, {}, rep {}: {:.0} requests/s, p99 {:.0} µs, {:.2} µs CPU/request",
                    endpoint.name(),
                    server.name(),
                    rep + 1,
                    s.rps,
                    s.p99_us,
                    s.cpu_us
                );
                samples[i].push(s);
            }
        }
        let med = |f: fn(&Sample) -> f64| -> Vec<f64> {
            samples
                .iter()
                .map(|v| median(&v.iter().map(f).collect::<Vec<_>>()))
                .collect()
        };
        rows.push((
            endpoint,
            med(|s| s.rps),
            med(|s| s.p99_us),
            med(|s| s.cpu_us),
        ));
    }
    let requests = requests.div_ceil(CONNECTIONS) * CONNECTIONS;
    println!();
    println!(
        "hyper HTTP/1.1 over loopback, {CONNECTIONS} keep-alive connections, {requests} \
         requests per run, median of {reps}"
    );
    println!(
        "{:<11} {:<18} {:>11} {:>9} {:>11} {:>8} {:>13} {:>13}",
        "endpoint",
        "server",
        "requests/s",
        "p99 µs",
        "CPU µs/req",
        "req/s",
        "p99 (≤1.0)",
        "CPU (≤0.8)"
    );
    println!(
        "{:<11} {:<18} {:>11} {:>9} {:>11} {:>8} {:>13} {:>13}",
        "", "", "", "", "", "vs tokio", "vs tokio", "vs tokio"
    );
    for (endpoint, rps, p99, cpu) in rows {
        for (i, &server) in servers.iter().enumerate() {
            let (p99_ratio, cpu_ratio) = (p99[i] / p99[tokio], cpu[i] / cpu[tokio]);
            let (p99_cell, cpu_cell) = if server == Server::Tokio {
                (format!("{p99_ratio:.2}x"), format!("{cpu_ratio:.2}x"))
            } else {
                (verdict(p99_ratio, 1.0), verdict(cpu_ratio, 0.8))
            };
            println!(
                "{:<11} {:<18} {:>11.0} {:>9.0} {:>11.2} {:>7.2}x {:>13} {:>13}",
                endpoint.name(),
                server.name(),
                rps[i],
                p99[i],
                cpu[i],
                rps[i] / rps[tokio],
                p99_cell,
                cpu_cell
            );
        }
    }
}
