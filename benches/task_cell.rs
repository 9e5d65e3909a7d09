//! Why ringloop's task cell is hand-written: the spawn and yield workloads of
//! `benches/runtime.rs`, run on ringloop and on a minimal single-thread executor built on
//! `async-task` (the well-kept crate the issue suggested: `spawn_local`-style cells, a
//! `VecDeque<Runnable>` run queue, nothing else), side by side in one process.
//!
//! The async-task executor here does strictly less than ringloop (no timers, no I/O, no
//! registry for `all_tasks`, no cancel-at-next-scheduling-point, no done callbacks, no
//! names), so it is a lower bound on what a runtime built on async-task would cost.
//!
//! `cargo bench --bench task_cell` (env BENCH_REPS, default 5; medians).

mod common;
use common::median;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

const SPAWNS: usize = 1_000_000;
const YIELDS: usize = 10_000_000;

/// The same hand-written yield future for both: wake_by_ref, then Pending once.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A minimal executor on async-task: a local run queue of Runnables.
struct Mini {
    queue: Rc<RefCell<VecDeque<async_task::Runnable>>>,
}

impl Mini {
    fn new() -> Mini {
        Mini {
            queue: Rc::new(RefCell::new(VecDeque::new())),
        }
    }

    fn spawn<F: Future + 'static>(&self, fut: F) -> async_task::Task<F::Output>
    where
        F::Output: 'static,
    {
        // The schedule function must be Send + Sync; a thread-local queue keeps this
        // executor single-threaded, as ringloop's loop is.
        thread_local! {
            static QUEUE: RefCell<Option<Rc<RefCell<VecDeque<async_task::Runnable>>>>> =
                const { RefCell::new(None) };
        }
        QUEUE.with(|q| *q.borrow_mut() = Some(self.queue.clone()));
        let schedule = |r| {
            QUEUE.with(|q| q.borrow().as_ref().unwrap().borrow_mut().push_back(r));
        };
        let (runnable, task) = async_task::spawn_local(fut, schedule);
        runnable.schedule();
        task
    }

    fn block_on<F: Future + 'static>(&self, fut: F) -> F::Output
    where
        F::Output: 'static,
    {
        let mut main = self.spawn(fut);
        loop {
            let next = self.queue.borrow_mut().pop_front();
            match next {
                Some(r) => {
                    r.run();
                }
                None => break,
            }
            if main.is_finished() {
                break;
            }
        }
        let waker = futures::task::noop_waker();
        match Pin::new(&mut main).poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("main task did not finish"),
        }
    }
}

fn ringloop_spawn() -> f64 {
    let rt = ringloop::Runtime::new().unwrap();
    let start = Instant::now();
    let sum = rt.block_on(async {
        let tasks: Vec<_> = (0..SPAWNS)
            .map(|i| ringloop::spawn(async move { i }))
            .collect();
        let mut sum = 0;
        for t in tasks {
            sum += t.await.unwrap();
        }
        sum
    });
    assert_eq!(sum, SPAWNS * (SPAWNS - 1) / 2);
    start.elapsed().as_nanos() as f64 / SPAWNS as f64
}

fn async_task_spawn() -> f64 {
    let ex = Rc::new(Mini::new());
    let start = Instant::now();
    let ex2 = ex.clone();
    let sum = ex.block_on(async move {
        let tasks: Vec<_> = (0..SPAWNS).map(|i| ex2.spawn(async move { i })).collect();
        let mut sum = 0;
        for t in tasks {
            sum += t.await;
        }
        sum
    });
    assert_eq!(sum, SPAWNS * (SPAWNS - 1) / 2);
    start.elapsed().as_nanos() as f64 / SPAWNS as f64
}

fn ringloop_yield() -> f64 {
    let rt = ringloop::Runtime::new().unwrap();
    let start = Instant::now();
    rt.block_on(rt.spawn(async {
        for _ in 0..YIELDS {
            YieldOnce(false).await;
        }
    }))
    .unwrap();
    start.elapsed().as_nanos() as f64 / YIELDS as f64
}

fn async_task_yield() -> f64 {
    let ex = Mini::new();
    let start = Instant::now();
    ex.block_on(async {
        for _ in 0..YIELDS {
            YieldOnce(false).await;
        }
    });
    start.elapsed().as_nanos() as f64 / YIELDS as f64
}

fn main() {
    // `cargo test --all-targets` runs bench binaries without --bench: stay quick there.
    if !std::env::args().any(|a| a == "--bench") {
        println!("task_cell: run with `cargo bench --bench task_cell`");
        return;
    }
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let (mut rs, mut ats, mut ry, mut aty) = (vec![], vec![], vec![], vec![]);
    for _ in 0..reps {
        rs.push(ringloop_spawn());
        ats.push(async_task_spawn());
        ry.push(ringloop_yield());
        aty.push(async_task_yield());
    }
    let row = |name: &str, r: f64, a: f64| {
        println!("| {name:<14} | {r:>10.1} | {a:>14.1} | {:>6.2} |", r / a);
    };
    println!("| workload (ns) |   ringloop | async-task mini | ratio |");
    println!("|----------------|------------|-----------------|-------|");
    row("spawn / task", median(&rs), median(&ats));
    row("yield", median(&ry), median(&aty));
}
