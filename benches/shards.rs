//! The sharded runtime against tokio's multi_thread one: the cost of a hop to another loop, and
//! the CPU an echo server spends per request when its connections are spread over shards.
//!
//! Run it with
//!
//! ```text
//! cargo bench --bench shards
//! cargo bench --bench shards -- --shards 8     # or RINGLOOP_BENCH_SHARDS=8
//! ```
//!
//! Every runtime runs once per repetition, alternating (io_uring, epoll, tokio, ..., io_uring,
//! ...), and the tables show the medians. ringloop's drivers are chosen explicitly
//! (`DriverKind::IoUring`, `DriverKind::Epoll`), so `RINGLOOP_DRIVER` does not change them.
//!
//! # Round trip to another loop
//!
//! N round trips in sequence (100,000), each awaited before the next starts, timed on the
//! awaiting side; the task spawned or submitted does nothing but return where it ran (a
//! thread-local number and `sched_getcpu`). Rows:
//!
//! - `ringloop <driver>, submit_to`: a 2-shard `ShardedRuntime`; shard 0 awaits
//!   `ringloop::submit_to(1, || async { .. })`. Each way is a push to the other loop's inject
//!   queue and, when that loop is parked, a write to its eventfd.
//! - `tokio multi_thread, spawn`: a 2-worker multi_thread runtime; a task (spawned, so that it
//!   runs on a worker: `block_on`'s own future runs on the calling thread, whose spawns always
//!   go through the inject queue) awaits `tokio::spawn(async { .. })`. This is the baseline
//!   the goal names, but tokio does not cross threads here: a spawn from a worker goes to that
//!   worker's LIFO slot (which other workers cannot steal from) and runs next on the same
//!   worker, and so does the wake-up of the awaiting task. Only after 3 LIFO polls in one
//!   scheduler tick does tokio turn the slot off and push to the stealable run queue instead,
//!   waking a parked worker, which may steal the task. `other thread` shows how often that
//!   made the task run on the other worker.
//! - `tokio 2x current_thread`: the same hop forced across threads, the way `submit_to` does
//!   it: two current_thread runtimes on two threads, and a loop on one awaiting
//!   `other_handle.spawn(async { .. })` on the other (inject queue, and unparking the other's
//!   I/O driver, both ways). tokio's multi_thread runtime has no way to spawn onto a given
//!   worker, so this is the closest tokio analogue of a cross-shard hop.
//!
//! Columns: ns per round trip; the shares of hops whose task ran on another thread, and on
//! another CPU, than the awaiting code; the ratio to tokio multi_thread's ns (goal: ringloop
//! ≤ 0.5×) and to tokio 2x current_thread's. Nothing is pinned. Every cross-thread hop wakes a
//! parked loop, and the cost of that wake-up decides the result: when the scheduler puts both
//! threads on one CPU (`other CPU` near 0%) a hop is a context switch; when they sit on two
//! CPUs, the waker has to wake an idle CPU, which on a VM can cost tens of µs. A run of either
//! kind can land in the median, so read `other CPU` with the ns.
//!
//! # Echo server CPU per request
//!
//! The TCP echo of `benches/net.rs` (its load generator, in `common/echo.rs`: 50 blocking
//! client threads, one connection each, ping-pongs of 64 B, 200,000 requests in all), against:
//!
//! - `ringloop <driver>, 2 shards`: a 2-shard `ShardedRuntime`; each shard binds its own
//!   `TcpListener::bind_reuse_port` listener on the same address, accepts and runs one task
//!   per connection (the kernel spreads the connections among the listeners by hash, so the
//!   split is uneven: about 25 ± 4 each; the progress lines show it).
//! - `ringloop <driver>, 1 shard`: the same code on a 1-shard `ShardedRuntime`.
//! - `tokio multi_thread, 2 workers`: one listener, an accept loop (a task) spawning a task
//!   per connection, with the same echo loop as `net`'s tokio server.
//!
//! Nothing is pinned: on a 2-CPU machine the server's threads and the 50 client threads share
//! both CPUs as the scheduler decides (`net` instead pins server and clients apart), so the
//! load generator competes with the server, and requests/s say as much about the scheduler as
//! about the server. Columns: the server's CPU time (user + system of its loop or worker
//! threads, plus the thread that waits for them) per request, in µs; requests per second (wall
//! time of the load); the server's and the load generator's CPU time as shares of the
//! machine's (wall time × CPUs); the ratio of CPU per request to the same driver on 1 shard
//! (goal: ≤ 1.1× for 2 shards) and to tokio multi_thread (goal: ≤ 0.9× for 2 shards).
//!
//! # Settings
//!
//! - `--shards N` (after `--`) or `RINGLOOP_BENCH_SHARDS=N`: the echo server's shard count and
//!   tokio's worker count (default 2), for bigger machines. The round trip stays between two
//!   loops.
//! - `BENCH_REPS=n` (default 5); `BENCH_SCALE=f` multiplies the round trips and requests;
//!   `BENCH_ROUND_TRIPS=n` sets the round trips per run; `BENCH_ONLY=round-trip|echo`.
//! - Without the `--bench` flag (under `cargo test --all-targets`) it runs a smoke test: one
//!   repetition at 1% of the counts.

mod common;
use common::echo::{CONNECTIONS, echo_ringloop, echo_tokio, load};
use common::{DRIVERS, driver_name, env_parse, median, sharded_rt_on, thread_cpu, tokio_rt};
use ringloop::DriverKind;

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

const ROUND_TRIPS: usize = 100_000;
const REQUESTS: usize = 200_000;
const MESSAGE: usize = 64;

/// Where the calling code runs: a number unique to its thread (from 1, cheap to read) and the
/// CPU it is on. What the hopped tasks return.
fn whereami() -> (usize, i32) {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    thread_local!(static TAG: Cell<usize> = const { Cell::new(0) });
    let thread = TAG.with(|tag| {
        if tag.get() == 0 {
            tag.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        tag.get()
    });
    // SAFETY: sched_getcpu has no preconditions.
    (thread, unsafe { libc::sched_getcpu() })
}

/// Counts the hops that ran on another thread, and on another CPU, than the awaiting code.
#[derive(Default, Clone, Copy)]
struct Elsewhere {
    thread: usize,
    cpu: usize,
}

impl Elsewhere {
    fn add(&mut self, here: (usize, i32), there: (usize, i32)) {
        self.thread += usize::from(there.0 != here.0);
        self.cpu += usize::from(there.1 != here.1);
    }
}

// ---------------------------------------------------------------------------------------------
// Round trip to another loop
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Hop {
    /// `submit_to` between the two shards of a ringloop sharded runtime on this driver.
    Ringloop(DriverKind),
    TokioMultiThread,
    TokioPair,
}

impl Hop {
    fn name(self) -> String {
        match self {
            Hop::Ringloop(kind) => format!("ringloop {}, submit_to", driver_name(kind)),
            Hop::TokioMultiThread => "tokio multi_thread, spawn".to_string(),
            Hop::TokioPair => "tokio 2x current_thread".to_string(),
        }
    }
}

/// `n` round trips; returns ns per round trip and the shares of the hops that ran on another
/// thread and on another CPU.
fn round_trips(hop: Hop, n: usize) -> [f64; 3] {
    let (elapsed, elsewhere) = match hop {
        Hop::Ringloop(kind) => trips_ringloop(kind, n),
        Hop::TokioMultiThread => trips_tokio_multi_thread(n),
        Hop::TokioPair => trips_tokio_pair(n),
    };
    let n = n as f64;
    [
        elapsed.as_nanos() as f64 / n,
        elsewhere.thread as f64 / n,
        elsewhere.cpu as f64 / n,
    ]
}

/// Returns the time the `n` round trips took and where the hops ran.
fn trips_ringloop(kind: DriverKind, n: usize) -> (Duration, Elsewhere) {
    let rt = sharded_rt_on(kind, 2);
    let out = rt.run(move |shard| async move {
        if shard != 0 {
            return (Duration::ZERO, Elsewhere::default());
        }
        let start = Instant::now();
        let mut elsewhere = Elsewhere::default();
        for _ in 0..n {
            let here = whereami();
            let there = ringloop::submit_to(1, || async { whereami() }).await;
            elsewhere.add(here, there.unwrap());
        }
        (start.elapsed(), elsewhere)
    });
    out[0]
}

fn trips_tokio_multi_thread(n: usize) -> (Duration, Elsewhere) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Spawned, so that the loop runs on a worker (see the doc on top).
    let trips = rt.spawn(async move {
        let start = Instant::now();
        let mut elsewhere = Elsewhere::default();
        for _ in 0..n {
            let here = whereami();
            let there = tokio::spawn(async { whereami() }).await;
            elsewhere.add(here, there.unwrap());
        }
        (start.elapsed(), elsewhere)
    });
    rt.block_on(trips).unwrap()
}

fn trips_tokio_pair(n: usize) -> (Duration, Elsewhere) {
    let (handle_tx, handle_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // The other loop: serves what is spawned onto it until told to stop.
    let other = std::thread::spawn(move || {
        let rt = tokio_rt();
        handle_tx.send(rt.handle().clone()).unwrap();
        rt.block_on(stop_rx).unwrap();
    });
    let there_rt = handle_rx.recv().unwrap();
    let out = tokio_rt().block_on(async move {
        let start = Instant::now();
        let mut elsewhere = Elsewhere::default();
        for _ in 0..n {
            let here = whereami();
            let there = there_rt.spawn(async { whereami() }).await;
            elsewhere.add(here, there.unwrap());
        }
        (start.elapsed(), elsewhere)
    });
    stop_tx.send(()).unwrap();
    other.join().unwrap();
    out
}

fn round_trip_table(reps: usize, n: usize) {
    let hops: Vec<Hop> = DRIVERS
        .into_iter()
        .map(Hop::Ringloop)
        .chain([Hop::TokioMultiThread, Hop::TokioPair])
        .collect();
    // Per hop: ns per round trip, share on another thread, share on another CPU.
    let mut runs = vec![Vec::new(); hops.len()];
    for rep in 0..reps {
        for (i, &hop) in hops.iter().enumerate() {
            let run = round_trips(hop, n);
            eprintln!(
                "round trip, {}, rep {}: {:.0} ns, {:.1}% on another thread, {:.1}% on another CPU",
                hop.name(),
                rep + 1,
                run[0],
                run[1] * 100.0,
                run[2] * 100.0
            );
            runs[i].push(run);
        }
    }
    let med = |i: usize, col: usize| median(&runs[i].iter().map(|r| r[col]).collect::<Vec<_>>());
    let ns: Vec<f64> = (0..hops.len()).map(|i| med(i, 0)).collect();
    let tokio_mt = ns[hops
        .iter()
        .position(|&h| h == Hop::TokioMultiThread)
        .unwrap()];
    let tokio_pair = ns[hops.iter().position(|&h| h == Hop::TokioPair).unwrap()];
    println!();
    println!("Round trip to another loop, {n} round trips per run, median of {reps}");
    println!(
        "{:<28} {:>14} {:>15} {:>12} {:>12} {:>9} {:>15}",
        "runtime",
        "ns/round trip",
        "other thread",
        "other CPU",
        "vs tokio mt",
        "goal",
        "vs tokio 2x ct"
    );
    for (i, &hop) in hops.iter().enumerate() {
        let ratio = ns[i] / tokio_mt;
        let verdict = match hop {
            Hop::Ringloop(_) if ratio <= 0.5 => "≤0.5 ok",
            Hop::Ringloop(_) => "≤0.5 MISS",
            _ => "",
        };
        println!(
            "{:<28} {:>14.0} {:>14.0}% {:>11.0}% {:>11.2}x {:>9} {:>14.2}x",
            hop.name(),
            ns[i],
            med(i, 1) * 100.0,
            med(i, 2) * 100.0,
            ratio,
            verdict,
            ns[i] / tokio_pair
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Echo server CPU per request
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Server {
    Ringloop { kind: DriverKind, shards: usize },
    TokioMultiThread { workers: usize },
}

impl Server {
    fn name(self) -> String {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        match self {
            Server::Ringloop { kind, shards } => {
                let kind = driver_name(kind);
                format!("ringloop {kind}, {shards} shard{}", plural(shards))
            }
            Server::TokioMultiThread { workers } => {
                format!("tokio multi_thread, {workers} worker{}", plural(workers))
            }
        }
    }

    /// How many listeners it binds: each reports when it has.
    fn listeners(self) -> usize {
        match self {
            Server::Ringloop { shards, .. } => shards,
            Server::TokioMultiThread { .. } => 1,
        }
    }
}

/// One run's measurements.
struct EchoRun {
    /// Server CPU time per request, µs.
    cpu_us: f64,
    requests_per_s: f64,
    /// Server and load generator CPU time, as shares of the machine's (wall time × CPUs).
    server_share: f64,
    load_share: f64,
    /// Connections each shard accepted (ringloop only).
    split: Vec<usize>,
}

/// Runs one server against the load.
fn echo(server: Server, requests: usize) -> EchoRun {
    // A free port: the listeners bind it once this probe has let it go.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let (bound_tx, bound_rx) = mpsc::channel();
    let server_thread = std::thread::spawn(move || match server {
        Server::Ringloop { kind, shards } => serve_ringloop(kind, shards, addr, bound_tx),
        Server::TokioMultiThread { workers } => serve_tokio(workers, addr, bound_tx),
    });
    for _ in 0..server.listeners() {
        bound_rx.recv().expect("the server failed to bind");
    }
    let per_conn = requests.div_ceil(CONNECTIONS);
    let load = load(addr, MESSAGE, per_conn, None);
    let (cpu, split) = server_thread.join().unwrap();
    let total = (per_conn * CONNECTIONS) as f64;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let machine = load.wall.as_secs_f64() * cpus;
    EchoRun {
        cpu_us: cpu.as_secs_f64() * 1e6 / total,
        requests_per_s: total / load.wall.as_secs_f64(),
        server_share: cpu.as_secs_f64() / machine,
        load_share: load.cpu.as_secs_f64() / machine,
        split,
    }
}

/// Serves CONNECTIONS connections on `shards` shards, each with its own listener on `addr`;
/// returns the CPU time of the shards' loops (and of this thread) and each shard's share of
/// the connections.
fn serve_ringloop(
    kind: DriverKind,
    shards: usize,
    addr: SocketAddr,
    bound: mpsc::Sender<()>,
) -> (Duration, Vec<usize>) {
    let rt = sharded_rt_on(kind, shards);
    let accepted = Arc::new(AtomicUsize::new(0));
    let start = thread_cpu();
    let out = rt.run(move |_| {
        let (bound, accepted) = (bound.clone(), Arc::clone(&accepted));
        async move {
            let start = thread_cpu();
            let listener = ringloop::net::TcpListener::bind_reuse_port(addr).unwrap();
            bound.send(()).unwrap();
            let mut conns = Vec::new();
            // Until every connection is accepted, by this shard or another: a timeout now and
            // then notices the others' (accept is cancel-safe).
            while accepted.load(Ordering::SeqCst) < CONNECTIONS {
                let next = ringloop::wait_for(listener.accept(), Duration::from_millis(10));
                if let Ok(conn) = next.await {
                    let (stream, _) = conn.unwrap();
                    accepted.fetch_add(1, Ordering::SeqCst);
                    conns.push(ringloop::spawn(echo_ringloop(stream)));
                }
            }
            let mine = conns.len();
            for conn in conns {
                conn.await.unwrap();
            }
            (thread_cpu() - start, mine)
        }
    });
    let here = thread_cpu() - start;
    let cpu = here + out.iter().map(|&(cpu, _)| cpu).sum::<Duration>();
    (cpu, out.into_iter().map(|(_, mine)| mine).collect())
}

/// Serves CONNECTIONS connections on tokio's multi_thread runtime; returns the CPU time of its
/// workers (over their whole lives) and of this thread.
fn serve_tokio(
    workers: usize,
    addr: SocketAddr,
    bound: mpsc::Sender<()>,
) -> (Duration, Vec<usize>) {
    let worker_cpu = Arc::new(Mutex::new(Duration::ZERO));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .on_thread_stop({
            let worker_cpu = Arc::clone(&worker_cpu);
            move || *worker_cpu.lock().unwrap() += thread_cpu()
        })
        .build()
        .unwrap();
    let start = thread_cpu();
    // The accept loop is a task, so that it runs on a worker.
    let served = rt.spawn(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        bound.send(()).unwrap();
        let mut conns = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let (stream, _) = listener.accept().await.unwrap();
            conns.push(tokio::spawn(echo_tokio(stream)));
        }
        for conn in conns {
            conn.await.unwrap();
        }
    });
    rt.block_on(served).unwrap();
    let here = thread_cpu() - start;
    // Dropping the runtime joins the workers, each adding its CPU time as it stops.
    drop(rt);
    let cpu = here + *worker_cpu.lock().unwrap();
    (cpu, Vec::new())
}

fn echo_table(reps: usize, requests: usize, shards: usize) {
    let mut servers = Vec::new();
    for kind in DRIVERS {
        if shards > 1 {
            servers.push(Server::Ringloop { kind, shards });
        }
        servers.push(Server::Ringloop { kind, shards: 1 });
    }
    servers.push(Server::TokioMultiThread { workers: shards });
    let mut runs: Vec<Vec<EchoRun>> = servers.iter().map(|_| Vec::new()).collect();
    for rep in 0..reps {
        for (i, &server) in servers.iter().enumerate() {
            let run = echo(server, requests);
            let split = match run.split.len() {
                0 | 1 => String::new(),
                _ => format!(", connections per shard {:?}", run.split),
            };
            eprintln!(
                "echo, {}, rep {}: {:.2} µs CPU/request, {:.0} requests/s, server {:.0}% and \
                 load generator {:.0}% of the CPUs{split}",
                server.name(),
                rep + 1,
                run.cpu_us,
                run.requests_per_s,
                run.server_share * 100.0,
                run.load_share * 100.0
            );
            runs[i].push(run);
        }
    }
    let med = |i: usize, f: fn(&EchoRun) -> f64| median(&runs[i].iter().map(f).collect::<Vec<_>>());
    let cpu: Vec<f64> = (0..servers.len()).map(|i| med(i, |r| r.cpu_us)).collect();
    let tokio = cpu[servers
        .iter()
        .position(|s| matches!(s, Server::TokioMultiThread { .. }))
        .unwrap()];
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!(
        "TCP echo, {MESSAGE} B, {CONNECTIONS} connections, {requests} requests per run, median of \
         {reps}; {cpus} CPUs, nothing pinned"
    );
    println!(
        "{:<30} {:>10} {:>11} {:>7} {:>8} {:>8} {:>10} {:>8} {:>10}",
        "server",
        "CPU µs/req",
        "requests/s",
        "server",
        "loadgen",
        "vs 1 sh",
        "goal",
        "vs tokio",
        "goal"
    );
    let verdict = |ratio: f64, goal: f64| {
        let ok = if ratio <= goal { "ok" } else { "MISS" };
        format!("≤{goal} {ok}")
    };
    for (i, &server) in servers.iter().enumerate() {
        // vs 1 shard, its goal, vs tokio, its goal: the goals are for more than one shard.
        let mut cells = [const { String::new() }; 4];
        if let Server::Ringloop { kind, shards } = server {
            let one = servers
                .iter()
                .position(|&s| s == Server::Ringloop { kind, shards: 1 })
                .unwrap();
            let (vs_one, vs_tokio) = (cpu[i] / cpu[one], cpu[i] / tokio);
            cells[0] = format!("{vs_one:.2}x");
            cells[2] = format!("{vs_tokio:.2}x");
            if shards > 1 {
                cells[1] = verdict(vs_one, 1.1);
                cells[3] = verdict(vs_tokio, 0.9);
            }
        }
        println!(
            "{:<30} {:>10.2} {:>11.0} {:>6.0}% {:>7.0}% {:>8} {:>10} {:>8} {:>10}",
            server.name(),
            cpu[i],
            med(i, |r| r.requests_per_s),
            med(i, |r| r.server_share) * 100.0,
            med(i, |r| r.load_share) * 100.0,
            cells[0],
            cells[1],
            cells[2],
            cells[3]
        );
    }
}

/// The echo server's shard count: `--shards N` (or `--shards=N`), else
/// `RINGLOOP_BENCH_SHARDS`, else 2.
fn shards_setting() -> usize {
    let args: Vec<String> = std::env::args().collect();
    let flag = args
        .iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix("--shards") {
            Some("") => Some(args.get(i + 1).cloned().unwrap_or_default()),
            Some(v) => v.strip_prefix('=').map(str::to_string),
            None => None,
        });
    let shards = match flag {
        Some(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("--shards {v:?} is not a number")),
        None => env_parse("RINGLOOP_BENCH_SHARDS").unwrap_or(2),
    };
    assert!(shards >= 1, "the shard count must be at least 1");
    shards
}

fn main() {
    let common::Settings {
        reps, scale, only, ..
    } = common::settings();
    let shards = shards_setting();
    let trips =
        env_parse("BENCH_ROUND_TRIPS").unwrap_or(((ROUND_TRIPS as f64 * scale) as usize).max(1));
    let requests = ((REQUESTS as f64 * scale) as usize).max(CONNECTIONS);
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if wanted("round-trip") {
        round_trip_table(reps, trips);
    }
    if wanted("echo") {
        echo_table(reps, requests, shards);
    }
}
