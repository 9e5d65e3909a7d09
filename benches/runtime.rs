//! ringloop on io_uring, ringloop on epoll, and tokio (current_thread), side by side in one
//! process.
//!
//! Run it with
//!
//! ```text
//! cargo bench --bench runtime
//! ```
//!
//! Every workload runs on the three runtimes, alternating per repetition (io_uring, epoll,
//! tokio, io_uring, epoll, tokio, ...) so that drift of the machine (frequency, noisy
//! neighbours) hits them alike. The table printed at the end has one column per runtime:
//!
//! - `io_uring`: ringloop's `Runtime` built with `.driver(DriverKind::IoUring)`;
//! - `epoll`: ringloop's `Runtime` built with `.driver(DriverKind::Epoll)` (both chosen
//!   explicitly, so `RINGLOOP_DRIVER` does not change them);
//! - `tokio`: tokio's current_thread runtime;
//!
//! each holding the MEDIAN over the repetitions, then the ratio of each ringloop column to tokio
//! (below 1.0 means ringloop is faster or smaller), and the goal, judged for each driver. An
//! informative row ("workload (variant)") fills the columns its variant runs in (a ringloop
//! variant runs on both drivers, another contender in the tokio column) and shows the main
//! runs' medians in the others, so its ratios compare it with them. Progress goes to stderr,
//! one line per finished run.
//!
//! Environment:
//!
//! - `BENCH_REPS=n`: repetitions per runtime (default 5).
//! - `BENCH_ONLY=name[,name...]`: run only these workloads (`spawn`, `yield`, `ping-pong`,
//!   `timers`, `memory`, `nop`, `gather`, `pool`).
//! - `BENCH_SCALE=f`: multiply every count by `f` (e.g. `0.1` for a quick run).
//! - `BENCH_CHILD=memory:<io_uring|epoll|tokio>`: internal; the harness re-executes itself
//!   with it to measure memory in a fresh process, and prints one number on stdout.
//!
//! Without the `--bench` flag (that is, under `cargo test --all-targets`) the harness runs a
//! smoke test instead: one repetition at 1% of the counts.
//!
//! All runtimes are single-threaded: ringloop's `Runtime` and tokio's `current_thread`
//! runtime with `enable_all()`, tasks spawned with plain `tokio::spawn`, as users compare them.
//! The workload code has the same shape on all; only the runtime's calls differ, and the two
//! ringloop columns run the very same function, given the driver.
//!
//! Workloads:
//!
//! 1. `spawn`: 1,000,000 tasks each returning its index; the handles are collected in a `Vec`,
//!    then awaited in order and summed. Measures the cost of a task's life: allocation,
//!    scheduling, one poll, completion, the join. Metric: ns per task.
//! 2. `yield`: one task yields 10,000,000 times through a hand-written future (wake itself,
//!    return `Pending` once), the same struct on both runtimes. Measures the bare
//!    wake / re-queue / re-poll path of the scheduler. Metric: ns per yield.
//! 3. `ping-pong`: two tasks pass a counter back and forth through two bounded channels of
//!    capacity 1, 1,000,000 round trips. Measures cross-task wake-ups (each hop parks one task
//!    and wakes the other). The channel is `futures::channel::mpsc` on both runtimes, so that
//!    only the scheduler differs; `tokio-native` adds tokio's own `tokio::sync::mpsc` for
//!    reference. Metric: ns per round trip.
//! 4. `timers`: 100,000 tasks spawned at once; each sleeps until its first poll plus
//!    1 + (i * 7919 % 100) ms and records how late it woke. tokio's timer wheel has a 1 ms
//!    granularity and rounds deadlines up, so its lateness is expected around a millisecond;
//!    ringloop keeps exact deadlines (a heap; io_uring's wait timeout, epoll's timerfd), so
//!    its lateness is the kernel's wake-up latency plus the time a woken task waits in the run
//!    queue. Metrics: p50 and p99 lateness in µs, the wall time of the whole workload in ms,
//!    and (informative) when the last task got its first poll, in ms from the start: until
//!    then woken tasks queue behind never-polled ones (both run queues are FIFO), which bounds
//!    how late the short sleeps can be; and the p99 lateness of the tasks whose deadline came
//!    10 ms after that point, once that backlog has drained (closer to the timers' own
//!    precision).
//! 5. `memory`: 1,000,000 tasks each parked on a one-hour sleep after being polled once;
//!    resident memory (VmRSS) is read before spawning and once all have been polled. Runs in
//!    a fresh child process per repetition so that one run's freed-but-retained heap does not
//!    hide the next one's growth. Metric: bytes per task (RSS delta / N), which covers the task
//!    cell, the future, the timer entry and the runtime's per-task bookkeeping.
//! 6. `nop` (ringloop only, informative): 1,000,000 sequential `ringloop::io::nop().await`
//!    (one submission and one completion through the ring each on io_uring, one pass of the
//!    loop on epoll), then 64 tasks sharing 1,000,000 nops concurrently (batched submissions).
//!    Metric: ns per op.
//! 7. `gather`: 100,000 children, each yielding once (the `yield` workload's future) and
//!    returning its index, all run concurrently and awaited, the sum checked. ringloop runs
//!    them as plain futures in `ringloop::gather` (and, informative, `gather` over spawned
//!    tasks); tokio spawns them in a `JoinSet` and drains it with `join_next` (the ratio's
//!    reference), and, informative, runs them as plain futures in `futures::future::join_all`.
//!    Measures the cost of structured fan-out: per-child bookkeeping, wake-ups and results.
//!    Metric: ns per child.
//! 8. `pool`: 200,000 tiny blocking jobs (each sums 0..100 through `black_box`) submitted at
//!    once, then each awaited in order, on the default-sized pool: `ringloop::spawn_blocking`
//!    inside `block_on` vs `tokio::task::spawn_blocking` (default blocking pool). Informative
//!    rows: a `ringloop::ThreadPool` with default size driven from the main thread
//!    (`submit` + blocking `result(None)`, no runtime, so both driver columns run the same
//!    code), and CPython's `concurrent.futures.ThreadPoolExecutor()` doing the same with
//!    `sum(range(100))`, run once per repetition as a `python3` subprocess (shown as "-" if
//!    `python3` is missing).
//!    Measures the submit / hand-off / completion path of the thread pools. Metric: ns per job.

mod common;
use common::{DRIVERS, driver_name, env_parse, median, ringloop_rt_on, rss_bytes, tokio_rt};
use ringloop::DriverKind;

use std::future::Future;
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

/// Yields once: wakes itself and returns `Pending` on the first poll, `Ready` on the second.
/// The same struct drives the `yield` workload on both runtimes.
struct YieldOnce {
    yielded: bool,
}

impl YieldOnce {
    fn new() -> YieldOnce {
        YieldOnce { yielded: false }
    }
}

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            Poll::Ready(())
        } else {
            self.yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// The sleep of task `i` in the `timers` workload: 1 to 100 ms, spread pseudo-randomly.
fn timer_delay(i: usize) -> Duration {
    Duration::from_millis(1 + (i as u64 * 7919 % 100))
}

/// Tasks of the `memory` workload that have been polled once.
static POLLED: AtomicUsize = AtomicUsize::new(0);

const HOUR: Duration = Duration::from_secs(3600);

fn ns_per(elapsed: Duration, n: usize) -> f64 {
    elapsed.as_nanos() as f64 / n as f64
}

/// p-th percentile (0..=100) of sorted values, nearest rank.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// How long after the last first poll the `timers` workload's "settled" p99 starts.
const SETTLE: Duration = Duration::from_millis(10);

/// (p50 µs, p99 µs, wall ms, first polls done ms, p99 µs of the deadlines SETTLE after that) of a
/// `timers` run, from each task's (first poll, lateness).
fn timer_metrics(start: Instant, results: &[(Instant, Duration)], wall: Duration) -> Vec<f64> {
    let mut lateness: Vec<Duration> = results.iter().map(|&(_, late)| late).collect();
    lateness.sort_unstable();
    let last_first_poll = results
        .iter()
        .map(|&(first, _)| first)
        .max()
        .unwrap_or(start);
    // Tasks whose deadline came well after every task had been polled once (SETTLE later, so
    // that the tasks woken during the first polls have run too): no backlog ahead of them.
    let mut settled: Vec<Duration> = results
        .iter()
        .enumerate()
        .filter(|&(i, &(first, _))| first + timer_delay(i) > last_first_poll + SETTLE)
        .map(|(_, &(_, late))| late)
        .collect();
    settled.sort_unstable();
    vec![
        percentile(&lateness, 50.0).as_nanos() as f64 / 1e3,
        percentile(&lateness, 99.0).as_nanos() as f64 / 1e3,
        wall.as_nanos() as f64 / 1e6,
        (last_first_poll - start).as_nanos() as f64 / 1e6,
        percentile(&settled, 99.0).as_nanos() as f64 / 1e3,
    ]
}

// ---------------------------------------------------------------------------------------------
// 1. spawn
// ---------------------------------------------------------------------------------------------

fn spawn_ringloop(kind: DriverKind, n: usize) -> Vec<f64> {
    let rt = ringloop_rt_on(kind);
    let elapsed = rt.block_on(async move {
        let start = Instant::now();
        let handles: Vec<_> = (0..n).map(|i| ringloop::spawn(async move { i })).collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await.unwrap();
        }
        assert_eq!(sum, n * (n - 1) / 2);
        start.elapsed()
    });
    vec![ns_per(elapsed, n)]
}

fn spawn_tokio(n: usize) -> Vec<f64> {
    let rt = tokio_rt();
    let elapsed = rt.block_on(async move {
        let start = Instant::now();
        let handles: Vec<_> = (0..n).map(|i| tokio::spawn(async move { i })).collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await.unwrap();
        }
        assert_eq!(sum, n * (n - 1) / 2);
        start.elapsed()
    });
    vec![ns_per(elapsed, n)]
}

// ---------------------------------------------------------------------------------------------
// 2. yield
// ---------------------------------------------------------------------------------------------

fn yield_ringloop(kind: DriverKind, n: usize) -> Vec<f64> {
    let rt = ringloop_rt_on(kind);
    let elapsed = rt.block_on(async move {
        let task = ringloop::spawn(async move {
            let start = Instant::now();
            for _ in 0..n {
                YieldOnce::new().await;
            }
            start.elapsed()
        });
        task.await.unwrap()
    });
    vec![ns_per(elapsed, n)]
}

fn yield_tokio(n: usize) -> Vec<f64> {
    let rt = tokio_rt();
    let elapsed = rt.block_on(async move {
        let task = tokio::spawn(async move {
            let start = Instant::now();
            for _ in 0..n {
                YieldOnce::new().await;
            }
            start.elapsed()
        });
        task.await.unwrap()
    });
    vec![ns_per(elapsed, n)]
}

// ---------------------------------------------------------------------------------------------
// 3. ping-pong
// ---------------------------------------------------------------------------------------------

fn ping_pong_ringloop(kind: DriverKind, n: usize) -> Vec<f64> {
    let rt = ringloop_rt_on(kind);
    let elapsed = rt.block_on(async move {
        let (mut ping_tx, mut ping_rx) = futures::channel::mpsc::channel::<usize>(1);
        let (mut pong_tx, mut pong_rx) = futures::channel::mpsc::channel::<usize>(1);
        let start = Instant::now();
        let ponger = ringloop::spawn(async move {
            while let Some(v) = ping_rx.next().await {
                pong_tx.send(v + 1).await.unwrap();
            }
        });
        let pinger = ringloop::spawn(async move {
            let mut v = 0;
            for _ in 0..n {
                ping_tx.send(v).await.unwrap();
                v = pong_rx.next().await.unwrap();
            }
            assert_eq!(v, n);
        });
        pinger.await.unwrap();
        ponger.await.unwrap();
        start.elapsed()
    });
    vec![ns_per(elapsed, n)]
}

fn ping_pong_tokio(n: usize) -> Vec<f64> {
    let rt = tokio_rt();
    let elapsed = rt.block_on(async move {
        let (mut ping_tx, mut ping_rx) = futures::channel::mpsc::channel::<usize>(1);
        let (mut pong_tx, mut pong_rx) = futures::channel::mpsc::channel::<usize>(1);
        let start = Instant::now();
        let ponger = tokio::spawn(async move {
            while let Some(v) = ping_rx.next().await {
                pong_tx.send(v + 1).await.unwrap();
            }
        });
        let pinger = tokio::spawn(async move {
            let mut v = 0;
            for _ in 0..n {
                ping_tx.send(v).await.unwrap();
                v = pong_rx.next().await.unwrap();
            }
            assert_eq!(v, n);
        });
        pinger.await.unwrap();
        ponger.await.unwrap();
        start.elapsed()
    });
    vec![ns_per(elapsed, n)]
}

/// Informative: tokio with its own channel, `tokio::sync::mpsc::channel(1)`.
fn ping_pong_tokio_native(n: usize) -> Vec<f64> {
    let rt = tokio_rt();
    let elapsed = rt.block_on(async move {
        let (ping_tx, mut ping_rx) = tokio::sync::mpsc::channel::<usize>(1);
        let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<usize>(1);
        let start = Instant::now();
        let ponger = tokio::spawn(async move {
            while let Some(v) = ping_rx.recv().await {
                pong_tx.send(v + 1).await.unwrap();
            }
        });
        let pinger = tokio::spawn(async move {
            let mut v = 0;
            for _ in 0..n {
                ping_tx.send(v).await.unwrap();
                v = pong_rx.recv().await.unwrap();
            }
            assert_eq!(v, n);
        });
        pinger.await.unwrap();
        ponger.await.unwrap();
        start.elapsed()
    });
    vec![ns_per(elapsed, n)]
}

// ---------------------------------------------------------------------------------------------
// 4. timers
// ---------------------------------------------------------------------------------------------

fn timers_ringloop(kind: DriverKind, n: usize) -> Vec<f64> {
    let rt = ringloop_rt_on(kind);
    let (start, results, wall) = rt.block_on(async move {
        let start = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|i| {
                ringloop::spawn(async move {
                    let first_poll = Instant::now();
                    let deadline = first_poll + timer_delay(i);
                    ringloop::sleep_until(deadline).await;
                    (
                        first_poll,
                        Instant::now().saturating_duration_since(deadline),
                    )
                })
            })
            .collect();
        let mut results = Vec::with_capacity(n);
        for h in handles {
            results.push(h.await.unwrap());
        }
        (start, results, start.elapsed())
    });
    timer_metrics(start, &results, wall)
}

fn timers_tokio(n: usize) -> Vec<f64> {
    let rt = tokio_rt();
    let (start, results, wall) = rt.block_on(async move {
        let start = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|i| {
                tokio::spawn(async move {
                    let first_poll = Instant::now();
                    let deadline = first_poll + timer_delay(i);
                    tokio::time::sleep_until(deadline.into()).await;
                    (
                        first_poll,
                        Instant::now().saturating_duration_since(deadline),
                    )
                })
            })
            .collect();
        let mut results = Vec::with_capacity(n);
        for h in handles {
            results.push(h.await.unwrap());
        }
        (start, results, start.elapsed())
    });
    timer_metrics(start, &results, wall)
}

// ---------------------------------------------------------------------------------------------
// 5. memory (each run in a child process, see `memory_in_child`)
// ---------------------------------------------------------------------------------------------

fn memory_child_ringloop(kind: DriverKind, n: usize) -> f64 {
    let rt = ringloop_rt_on(kind);
    let bytes = rt.block_on(async move {
        let before = rss_bytes();
        for _ in 0..n {
            ringloop::spawn(async {
                POLLED.fetch_add(1, Ordering::Relaxed);
                ringloop::sleep(HOUR).await;
            });
        }
        while POLLED.load(Ordering::Relaxed) < n {
            ringloop::sleep(Duration::from_millis(1)).await;
        }
        rss_bytes().saturating_sub(before)
    });
    drop(rt);
    bytes as f64 / n as f64
}

fn memory_child_tokio(n: usize) -> f64 {
    let rt = tokio_rt();
    let bytes = rt.block_on(async move {
        let before = rss_bytes();
        for _ in 0..n {
            tokio::spawn(async {
                POLLED.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(HOUR).await;
            });
        }
        while POLLED.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        rss_bytes().saturating_sub(before)
    });
    drop(rt);
    bytes as f64 / n as f64
}

/// Runs the `memory` workload for `runtime` (a driver's name, or "tokio") in a fresh copy of
/// this executable.
fn memory_in_child(runtime: &str, n: usize) -> Vec<f64> {
    let child = format!("memory:{runtime}");
    vec![common::in_child(
        &child,
        &[("BENCH_CHILD_N", n.to_string())],
    )]
}

fn memory_ringloop(kind: DriverKind, n: usize) -> Vec<f64> {
    memory_in_child(driver_name(kind), n)
}

fn memory_tokio(n: usize) -> Vec<f64> {
    memory_in_child("tokio", n)
}

// ---------------------------------------------------------------------------------------------
// 6. nop (ringloop only)
// ---------------------------------------------------------------------------------------------

const NOP_TASKS: usize = 64;

fn nop_ringloop(kind: DriverKind, n: usize) -> Vec<f64> {
    let rt = ringloop_rt_on(kind);
    let sequential = rt.block_on(async move {
        let task = ringloop::spawn(async move {
            let start = Instant::now();
            for _ in 0..n {
                ringloop::io::nop().await.unwrap();
            }
            start.elapsed()
        });
        task.await.unwrap()
    });
    let per_task = n.div_ceil(NOP_TASKS);
    let concurrent = rt.block_on(async move {
        let start = Instant::now();
        let handles: Vec<_> = (0..NOP_TASKS)
            .map(|_| {
                ringloop::spawn(async move {
                    for _ in 0..per_task {
                        ringloop::io::nop().await.unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        start.elapsed()
    });
    vec![
        ns_per(sequential, n),
        ns_per(concurrent, per_task * NOP_TASKS),
    ]
}

// ---------------------------------------------------------------------------------------------
// 7. gather
// ---------------------------------------------------------------------------------------------

/// A child of the `gather` workload: yields once, then returns its index.
async fn gather_child(i: usize) -> usize {
    YieldOnce::new().await;
    i
}

fn gather_check(sum: usize, n: usize) {
    assert_eq!(sum, n * (n - 1) / 2);
}

fn gather_ringloop(kind: DriverKind, n: usize) -> Vec<f64> {
    let rt = ringloop_rt_on(kind);
    let elapsed = rt.block_on(async move {
        let start = Instant::now();
        let out = ringloop::gather((0..n).map(gather_child)).await;
        gather_check(out.into_iter().sum(), n);
        start.elapsed()
    });
    vec![ns_per(elapsed, n)]
}

/// Informative: `ringloop::gather` over spawned tasks.
fn gather_ringloop_tasks(kind: DriverKind, n: usize) -> Vec<f64> {
    let rt = ringloop_rt_on(kind);
    let elapsed = rt.block_on(async move {
        let start = Instant::now();
        let out = ringloop::gather((0..n).map(|i| ringloop::spawn(gather_child(i)))).await;
        gather_check(out.into_iter().map(Result::unwrap).sum(), n);
        start.elapsed()
    });
    vec![ns_per(elapsed, n)]
}

fn gather_tokio_join_set(n: usize) -> Vec<f64> {
    let rt = tokio_rt();
    let elapsed = rt.block_on(async move {
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..n {
            set.spawn(gather_child(i));
        }
        let mut sum = 0;
        while let Some(r) = set.join_next().await {
            sum += r.unwrap();
        }
        gather_check(sum, n);
        start.elapsed()
    });
    vec![ns_per(elapsed, n)]
}

/// Informative: `futures::future::join_all` over plain futures on tokio.
fn gather_tokio_join_all(n: usize) -> Vec<f64> {
    let rt = tokio_rt();
    let elapsed = rt.block_on(async move {
        let start = Instant::now();
        let out = futures::future::join_all((0..n).map(gather_child)).await;
        gather_check(out.into_iter().sum(), n);
        start.elapsed()
    });
    vec![ns_per(elapsed, n)]
}

// ---------------------------------------------------------------------------------------------
// 8. pool
// ---------------------------------------------------------------------------------------------

/// One job of the `pool` workload.
fn pool_job() -> u64 {
    (0..100u64).map(std::hint::black_box).sum()
}

fn pool_check(sum: u64, n: usize) {
    assert_eq!(sum, 4950 * n as u64);
}

fn pool_ringloop(kind: DriverKind, n: usize) -> Vec<f64> {
    let rt = ringloop_rt_on(kind);
    let elapsed = rt.block_on(async move {
        let start = Instant::now();
        let futs: Vec<ringloop::PoolFuture<u64>> =
            (0..n).map(|_| ringloop::spawn_blocking(pool_job)).collect();
        let mut sum = 0;
        for f in futs {
            sum += f.await.unwrap();
        }
        pool_check(sum, n);
        start.elapsed()
    });
    vec![ns_per(elapsed, n)]
}

/// Informative: a default-sized `ringloop::ThreadPool` driven from the main thread, no runtime
/// (so the driver is unused: both driver columns measure the same code).
fn pool_ringloop_thread_pool(_kind: DriverKind, n: usize) -> Vec<f64> {
    let start = Instant::now();
    let pool = ringloop::ThreadPool::builder().build();
    let futs: Vec<_> = (0..n).map(|_| pool.submit(pool_job)).collect();
    let mut sum = 0;
    for f in &futs {
        sum += f.result(None).unwrap();
    }
    let elapsed = start.elapsed();
    pool_check(sum, n);
    drop(pool);
    vec![ns_per(elapsed, n)]
}

fn pool_tokio(n: usize) -> Vec<f64> {
    let rt = tokio_rt();
    let elapsed = rt.block_on(async move {
        let start = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|_| tokio::task::spawn_blocking(pool_job))
            .collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await.unwrap();
        }
        pool_check(sum, n);
        start.elapsed()
    });
    vec![ns_per(elapsed, n)]
}

/// The `pool` workload in CPython (argv[1] = job count); prints ns per job. The clock stops
/// before the `with` block joins the workers, as the Rust runs stop before the pool closes.
const POOL_PYTHON: &str = r#"
import sys, time
from concurrent.futures import ThreadPoolExecutor

def job():
    return sum(range(100))

n = int(sys.argv[1])
start = time.perf_counter_ns()
with ThreadPoolExecutor() as ex:
    futs = [ex.submit(job) for _ in range(n)]
    total = 0
    for f in futs:
        total += f.result()
    elapsed = time.perf_counter_ns() - start
assert total == 4950 * n, total
print(elapsed / n)
"#;

/// Informative: `POOL_PYTHON` in a `python3` subprocess; NaN (shown as "-") if it cannot run.
fn pool_python(n: usize) -> Vec<f64> {
    let out = match Command::new("python3")
        .arg("-c")
        .arg(POOL_PYTHON)
        .arg(n.to_string())
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("[pool] python3 not run ({e}): its row shows \"-\"");
            return vec![f64::NAN];
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.trim().parse() {
        Ok(v) if out.status.success() => vec![v],
        _ => {
            eprintln!(
                "[pool] python3 failed ({}): its row shows \"-\"\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            vec![f64::NAN]
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// One run of a workload on tokio (or another contender): takes the scaled count, returns one
/// value per metric.
type RunFn = fn(usize) -> Vec<f64>;

/// One run of a workload on ringloop on the given driver.
type DriverRunFn = fn(DriverKind, usize) -> Vec<f64>;

/// How a metric is judged, for each driver's column.
#[derive(Clone, Copy)]
enum Goal {
    /// ringloop / tokio at most this.
    RatioAtMost(f64),
    /// ringloop's own value below this.
    Below(f64),
    /// Informative only.
    None,
}

struct Metric {
    name: &'static str,
    goal: Goal,
}

/// An informative variant of a workload, run after the main ones in every repetition and shown
/// as its own row "workload (label)". The columns it does not run in show the main runs'
/// medians, so that its ratios compare it with them.
enum Extra {
    /// A ringloop variant, run on every driver; compared with tokio's main run.
    Ringloop {
        label: &'static str,
        run: DriverRunFn,
    },
    /// Another contender (a tokio variant, another language), in the tokio column; compared
    /// with each driver's main run.
    Other { label: &'static str, run: RunFn },
}

/// One workload: its name, base count, metrics and its run functions (each gets the scaled
/// count and returns one value per metric): ringloop's, run on every driver, and tokio's; plus
/// informative variants (one row each). The goals judge the main runs only.
struct Workload {
    name: &'static str,
    count: usize,
    metrics: &'static [Metric],
    ringloop: DriverRunFn,
    tokio: Option<RunFn>,
    extras: &'static [Extra],
}

fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "spawn",
            count: 1_000_000,
            metrics: &[Metric {
                name: "ns/task",
                goal: Goal::RatioAtMost(0.25),
            }],
            ringloop: spawn_ringloop,
            tokio: Some(spawn_tokio),
            extras: &[],
        },
        Workload {
            name: "yield",
            count: 10_000_000,
            metrics: &[Metric {
                name: "ns/yield",
                goal: Goal::RatioAtMost(0.8),
            }],
            ringloop: yield_ringloop,
            tokio: Some(yield_tokio),
            extras: &[],
        },
        Workload {
            name: "ping-pong",
            count: 1_000_000,
            metrics: &[Metric {
                name: "ns/round trip",
                goal: Goal::RatioAtMost(1.0),
            }],
            ringloop: ping_pong_ringloop,
            tokio: Some(ping_pong_tokio),
            extras: &[Extra::Other {
                label: "tokio-native",
                run: ping_pong_tokio_native,
            }],
        },
        Workload {
            name: "timers",
            count: 100_000,
            metrics: &[
                Metric {
                    name: "p50 lateness µs",
                    goal: Goal::Below(20.0),
                },
                Metric {
                    name: "p99 lateness µs",
                    goal: Goal::Below(250.0),
                },
                Metric {
                    name: "wall ms",
                    goal: Goal::RatioAtMost(1.0),
                },
                Metric {
                    name: "first polls done ms",
                    goal: Goal::None,
                },
                Metric {
                    name: "p99 µs, 10 ms after first polls",
                    goal: Goal::None,
                },
            ],
            ringloop: timers_ringloop,
            tokio: Some(timers_tokio),
            extras: &[],
        },
        Workload {
            name: "memory",
            count: 1_000_000,
            metrics: &[Metric {
                name: "bytes/task",
                goal: Goal::RatioAtMost(0.5),
            }],
            ringloop: memory_ringloop,
            tokio: Some(memory_tokio),
            extras: &[],
        },
        Workload {
            name: "nop",
            count: 1_000_000,
            metrics: &[
                Metric {
                    name: "ns/op sequential",
                    goal: Goal::None,
                },
                Metric {
                    name: "ns/op 64 tasks",
                    goal: Goal::None,
                },
            ],
            ringloop: nop_ringloop,
            tokio: None,
            extras: &[],
        },
        Workload {
            name: "gather",
            count: 100_000,
            metrics: &[Metric {
                name: "ns/child",
                goal: Goal::RatioAtMost(0.4),
            }],
            ringloop: gather_ringloop,
            tokio: Some(gather_tokio_join_set),
            extras: &[
                Extra::Other {
                    label: "tokio join_all",
                    run: gather_tokio_join_all,
                },
                Extra::Ringloop {
                    label: "ringloop spawned tasks",
                    run: gather_ringloop_tasks,
                },
            ],
        },
        Workload {
            name: "pool",
            count: 200_000,
            metrics: &[Metric {
                name: "ns/job",
                goal: Goal::RatioAtMost(0.05),
            }],
            ringloop: pool_ringloop,
            tokio: Some(pool_tokio),
            extras: &[
                Extra::Ringloop {
                    label: "ringloop ThreadPool, no runtime",
                    run: pool_ringloop_thread_pool,
                },
                Extra::Other {
                    label: "python ThreadPoolExecutor",
                    run: pool_python,
                },
            ],
        },
    ]
}

/// A value for the table; NaN (not measured) as "-".
fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "-".to_string()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Runs one workload on one runtime and prints a progress line; returns one value per metric.
fn run_one(workload: &Workload, label: &str, rep: usize, f: impl FnOnce() -> Vec<f64>) -> Vec<f64> {
    let values = f();
    assert_eq!(values.len(), workload.metrics.len());
    let shown: Vec<String> = workload
        .metrics
        .iter()
        .zip(&values)
        .map(|(m, v)| format!("{} {}", fmt_value(*v), m.name))
        .collect();
    eprintln!(
        "[{} rep {}] {:<12} {}",
        workload.name,
        rep + 1,
        label,
        shown.join(", ")
    );
    values
}

/// The columns of the table: one per driver (`DRIVERS`' order), then tokio.
const TOKIO: usize = DRIVERS.len();
const COLUMNS: usize = DRIVERS.len() + 1;

/// The values of one row: `[column][metric]`, each the list of its repetitions.
type Samples = Vec<Vec<Vec<f64>>>;

/// Appends one run's values (one per metric) to `samples[column]`.
fn record(samples: &mut Samples, column: usize, values: Vec<f64>) {
    for (i, v) in values.into_iter().enumerate() {
        samples[column][i].push(v);
    }
}

/// The table's cells for metric `i` of a row: each column's median (NaN if it was not run),
/// then each driver's ratio to tokio.
fn cells(medians: &[f64]) -> Vec<String> {
    let mut cells: Vec<String> = medians.iter().map(|&v| fmt_value(v)).collect();
    for &v in &medians[..TOKIO] {
        let ratio = v / medians[TOKIO];
        cells.push(if ratio.is_nan() {
            "-".to_string()
        } else {
            format!("{ratio:.3}")
        });
    }
    cells
}

impl Goal {
    /// Whether a driver's median `v` meets the goal, given tokio's median.
    fn met(self, v: f64, tokio: f64) -> bool {
        match self {
            Goal::RatioAtMost(g) => v / tokio <= g,
            Goal::Below(g) => v < g,
            Goal::None => true,
        }
    }
}

/// The goal cell of a main row: the goal, and for each driver whether it was met.
fn goal_cell(goal: Goal, medians: &[f64]) -> String {
    let what = match goal {
        Goal::RatioAtMost(g) => format!("ratio ≤ {g}"),
        Goal::Below(g) => format!("< {g}"),
        Goal::None => return "informative".to_string(),
    };
    let verdicts: Vec<String> = DRIVERS
        .iter()
        .zip(medians)
        .map(|(&d, &v)| {
            let met = goal.met(v, medians[TOKIO]);
            format!("{} {}", driver_name(d), if met { "met" } else { "MISSED" })
        })
        .collect();
    format!("{what}: {}", verdicts.join(", "))
}

fn main() {
    // Re-executed by `memory_in_child`: run one memory measurement and print it.
    if let Ok(child) = std::env::var("BENCH_CHILD") {
        let n: usize = env_parse("BENCH_CHILD_N").expect("BENCH_CHILD_N");
        let runtime = child.strip_prefix("memory:").unwrap_or("?");
        let bytes = match DRIVERS.into_iter().find(|&d| driver_name(d) == runtime) {
            Some(kind) => memory_child_ringloop(kind, n),
            None if runtime == "tokio" => memory_child_tokio(n),
            None => panic!("unknown BENCH_CHILD={child}"),
        };
        println!("{bytes}");
        return;
    }

    // `cargo bench` passes --bench; anything else (cargo test --all-targets) gets a smoke run.
    let common::Settings {
        bench_mode,
        reps,
        scale,
        only,
    } = common::settings();
    let only: Option<Vec<String>> =
        only.map(|s| s.split(',').map(|w| w.trim().to_string()).collect());

    let workloads: Vec<Workload> = workloads()
        .into_iter()
        .filter(|w| {
            only.as_ref()
                .is_none_or(|o| o.iter().any(|name| name == w.name))
        })
        .collect();
    if workloads.is_empty() {
        eprintln!("BENCH_ONLY matched no workload");
        return;
    }
    eprintln!(
        "ringloop (io_uring, epoll) vs tokio current_thread: {reps} repetitions, scale {scale}"
    );

    // Rows of the final table: workload, metric, `cells`, goal.
    let mut rows: Vec<Vec<String>> = Vec::new();
    for w in &workloads {
        let n = ((w.count as f64 * scale).round() as usize).max(2);
        let k = w.metrics.len();
        let mut main: Samples = vec![vec![Vec::new(); k]; COLUMNS];
        let mut extra: Vec<Samples> = vec![vec![vec![Vec::new(); k]; COLUMNS]; w.extras.len()];
        for rep in 0..reps {
            for (c, &d) in DRIVERS.iter().enumerate() {
                let values = run_one(w, driver_name(d), rep, || (w.ringloop)(d, n));
                record(&mut main, c, values);
            }
            if let Some(f) = w.tokio {
                record(&mut main, TOKIO, run_one(w, "tokio", rep, || f(n)));
            }
            for (x, e) in w.extras.iter().enumerate() {
                match *e {
                    Extra::Ringloop { label, run } => {
                        for (c, &d) in DRIVERS.iter().enumerate() {
                            let label = format!("{label}, {}", driver_name(d));
                            let values = run_one(w, &label, rep, || run(d, n));
                            record(&mut extra[x], c, values);
                        }
                    }
                    Extra::Other { label, run } => {
                        record(&mut extra[x], TOKIO, run_one(w, label, rep, || run(n)));
                    }
                }
            }
        }
        for (i, m) in w.metrics.iter().enumerate() {
            // A column that was not run (tokio for a ringloop-only workload) has NaN.
            let medians: Vec<f64> = main.iter().map(|col| median(&col[i])).collect();
            let mut row = vec![w.name.to_string(), m.name.to_string()];
            row.extend(cells(&medians));
            row.push(goal_cell(m.goal, &medians));
            rows.push(row);
            for (x, e) in w.extras.iter().enumerate() {
                let label = match e {
                    Extra::Ringloop { label, .. } | Extra::Other { label, .. } => label,
                };
                // The extra's own columns, the main runs' medians in the others.
                let ext: Vec<f64> = (0..COLUMNS)
                    .map(|c| {
                        let own = &extra[x][c][i];
                        if own.is_empty() {
                            medians[c]
                        } else {
                            median(own)
                        }
                    })
                    .collect();
                let mut row = vec![format!("{} ({label})", w.name), m.name.to_string()];
                row.extend(cells(&ext));
                row.push("informative".to_string());
                rows.push(row);
            }
        }
    }

    let mut header = vec!["workload".to_string(), "metric".to_string()];
    header.extend(
        DRIVERS
            .iter()
            .map(|&d| format!("{} (median)", driver_name(d))),
    );
    header.push("tokio (median)".to_string());
    header.extend(
        DRIVERS
            .iter()
            .map(|&d| format!("{} / tokio", driver_name(d))),
    );
    header.push("goal".to_string());
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    println!();
    println!(
        "ringloop (io_uring, epoll) vs tokio (current_thread), {reps} repetitions, scale {scale}"
    );
    if !bench_mode {
        println!("(smoke test without --bench: the numbers are not meaningful)");
    }
    line(&header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    println!("|-{}-|", rule.join("-|-"));
    for row in &rows {
        line(row);
    }
}
