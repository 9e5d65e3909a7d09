//! Integration tests for `ringloop::pool` (ThreadPool, PoolFuture, wait, as_completed).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use ringloop::pool::{as_completed, wait};
use ringloop::{PoolError, PoolFuture, ReturnWhen, ThreadPool};

/// A latch that jobs block on until the test opens it.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }
    fn wait(&self) {
        let mut open = self.0.0.lock().unwrap();
        while !*open {
            open = self.0.1.wait(open).unwrap();
        }
    }
}

/// Occupies every worker of `pool` (size `n`) until the returned gate opens; returns
/// once all of them are running.
fn block_workers(pool: &ThreadPool, n: usize) -> (Gate, Vec<PoolFuture<()>>) {
    let gate = Gate::default();
    let futs: Vec<_> = (0..n)
        .map(|_| {
            let g = gate.clone();
            pool.submit(move || g.wait())
        })
        .collect();
    for f in &futs {
        wait_until(|| f.running());
    }
    (gate, futs)
}

fn wait_until(mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "condition not reached in 5 s"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

fn sleep_ms(ms: u64) {
    thread::sleep(Duration::from_millis(ms));
}

#[test]
fn submit_result_and_state_queries() {
    let pool = ThreadPool::new(2);
    let f = pool.submit(|| 40 + 2);
    assert_eq!(f.result(None), Ok(42));
    assert_eq!(
        f.result(Some(Duration::ZERO)),
        Ok(42),
        "result can be read again"
    );
    assert!(f.done());
    assert!(!f.running());
    assert!(!f.cancelled());
    assert_eq!(
        pool.submit(|| String::from("moved"))
            .into_result(None)
            .unwrap(),
        "moved"
    );
}

#[test]
fn running_is_true_while_the_job_runs() {
    let pool = ThreadPool::new(1);
    let (gate, futs) = block_workers(&pool, 1);
    assert!(futs[0].running());
    assert!(!futs[0].done());
    gate.open();
    assert_eq!(futs[0].result(None), Ok(()));
    assert!(!futs[0].running());
}

#[test]
#[should_panic(expected = "max_workers must be at least 1")]
fn zero_workers_panics() {
    let _ = ThreadPool::new(0);
}

#[test]
fn default_max_workers_matches_python() {
    let cpus = thread::available_parallelism().unwrap().get();
    assert_eq!(
        ThreadPool::builder().build().max_workers(),
        (cpus + 4).min(32)
    );
    assert_eq!(ThreadPool::new(7).max_workers(), 7);
}

#[test]
fn workers_start_lazily() {
    let inits = Arc::new(AtomicUsize::new(0));
    let i2 = Arc::clone(&inits);
    let pool = ThreadPool::builder()
        .max_workers(4)
        .initializer(move || {
            i2.fetch_add(1, Ordering::SeqCst);
        })
        .build();
    sleep_ms(20);
    assert_eq!(pool.worker_count(), 0, "no thread before the first submit");
    assert_eq!(inits.load(Ordering::SeqCst), 0);
    assert_eq!(pool.submit(|| 1).result(None), Ok(1));
    assert_eq!(pool.worker_count(), 1);
    assert_eq!(inits.load(Ordering::SeqCst), 1);
}

#[test]
fn idle_worker_is_reused_instead_of_starting_a_thread() {
    let pool = ThreadPool::new(8);
    for i in 0..20 {
        assert_eq!(pool.submit(move || i).result(None), Ok(i));
        // Let the worker go back to sleep so it counts as idle.
        wait_until(|| format!("{pool:?}").contains("idle: 1"));
    }
    assert_eq!(pool.worker_count(), 1);
}

#[test]
fn worker_count_never_exceeds_max_workers() {
    let pool = ThreadPool::new(3);
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let names = Arc::new(Mutex::new(HashSet::new()));
    let futs: Vec<_> = (0..60)
        .map(|_| {
            let (active, peak, names) = (active.clone(), peak.clone(), names.clone());
            pool.submit(move || {
                let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                names
                    .lock()
                    .unwrap()
                    .insert(thread::current().name().unwrap().to_owned());
                sleep_ms(2);
                active.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    assert!(pool.worker_count() <= 3);
    for f in futs {
        f.into_result(None).unwrap();
    }
    assert!(peak.load(Ordering::SeqCst) <= 3);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        3,
        "a burst of submits uses every worker"
    );
    assert_eq!(names.lock().unwrap().len(), 3);
}

#[test]
fn idle_workers_exit_after_idle_timeout() {
    let pool = ThreadPool::builder()
        .max_workers(2)
        .idle_timeout(Duration::from_millis(50))
        .build();
    let (gate, futs) = block_workers(&pool, 2);
    assert_eq!(pool.worker_count(), 2);
    gate.open();
    for f in futs {
        f.into_result(None).unwrap();
    }
    wait_until(|| pool.worker_count() == 0);
    assert_eq!(
        pool.submit(|| 5).result(None),
        Ok(5),
        "a new worker starts on demand"
    );
}

#[test]
fn thread_names_use_prefix() {
    let pool = ThreadPool::builder()
        .max_workers(2)
        .thread_name_prefix("crunch")
        .build();
    let (gate, futs) = block_workers(&pool, 2);
    let name = |p: &ThreadPool| p.submit(|| thread::current().name().map(str::to_owned));
    let n = name(&pool);
    gate.open();
    drop(futs);
    let n = n.into_result(None).unwrap().unwrap();
    assert!(n == "crunch_0" || n == "crunch_1", "unexpected name {n}");

    let default = ThreadPool::new(1);
    let n = name(&default).into_result(None).unwrap().unwrap();
    assert!(
        n.starts_with("ringloop-pool-") && n.ends_with("_0"),
        "unexpected name {n}"
    );
}

#[test]
fn initializer_runs_once_per_worker_before_its_jobs() {
    thread_local!(static INITIALIZED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    let inits = Arc::new(AtomicUsize::new(0));
    let i2 = Arc::clone(&inits);
    let pool = ThreadPool::builder()
        .max_workers(3)
        .initializer(move || {
            assert!(!INITIALIZED.get(), "initializer ran twice in one thread");
            INITIALIZED.set(true);
            i2.fetch_add(1, Ordering::SeqCst);
        })
        .build();
    let names = Arc::new(Mutex::new(HashSet::new()));
    let (gate, blockers) = block_workers(&pool, 3);
    let futs: Vec<_> = (0..30)
        .map(|_| {
            let names = names.clone();
            pool.submit(move || {
                names
                    .lock()
                    .unwrap()
                    .insert(thread::current().name().unwrap().to_owned());
                INITIALIZED.get()
            })
        })
        .collect();
    gate.open();
    drop(blockers);
    for f in futs {
        assert_eq!(
            f.into_result(None),
            Ok(true),
            "job ran before the initializer"
        );
    }
    // Three workers started (the blockers needed all of them), each initialized once.
    assert_eq!(pool.worker_count(), 3);
    assert_eq!(inits.load(Ordering::SeqCst), 3);
    assert!(names.lock().unwrap().len() <= 3);
}

#[test]
fn initializer_panic_breaks_the_pool() {
    let pool = ThreadPool::builder()
        .max_workers(1)
        .initializer(|| panic!("no database"))
        .build();
    let ran = Arc::new(AtomicBool::new(false));
    let r2 = ran.clone();
    let first = pool.submit(move || r2.store(true, Ordering::SeqCst));
    let err = first.into_result(None).unwrap_err();
    match &err {
        PoolError::Broken(why) => {
            assert!(
                why.contains("initializer panicked") && why.contains("no database"),
                "{why}"
            )
        }
        other => panic!("expected Broken, got {other:?}"),
    }
    assert!(err.is_broken());
    assert!(err.to_string().contains("create a new ThreadPool"), "{err}");
    wait_until(|| pool.worker_count() == 0);
    let later = pool.submit(|| 1);
    assert!(later.done(), "a submit to a broken pool fails at once");
    assert_eq!(later.result(None), Err(err));
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn initializer_panic_fails_every_queued_job() {
    let started = Gate::default();
    let release = Gate::default();
    let (s2, r2) = (started.clone(), release.clone());
    // The initializer blocks until several jobs are queued, then panics.
    let pool = ThreadPool::builder()
        .max_workers(1)
        .initializer(move || {
            s2.open();
            r2.wait();
            panic!("init failed");
        })
        .build();
    let futs: Vec<_> = (0..5).map(|i| pool.submit(move || i)).collect();
    started.wait();
    release.open();
    for f in futs {
        assert!(matches!(f.into_result(None), Err(PoolError::Broken(_))));
    }
}

#[test]
fn map_yields_results_in_input_order() {
    let pool = ThreadPool::new(4);
    // Earlier items sleep longer, so they finish last.
    let out: Vec<u64> = pool
        .map(
            |v: u64| {
                sleep_ms((8 - v) * 5);
                v * v
            },
            0..8,
        )
        .collect();
    assert_eq!(out, [0, 1, 4, 9, 16, 25, 36, 49]);
}

#[test]
#[should_panic(expected = "ThreadPool::map job failed: the job panicked: bad item 2")]
fn map_panics_where_a_job_failed_as_python_reraises() {
    let pool = ThreadPool::new(2);
    let mut it = pool.map(
        |v: i32| if v == 2 { panic!("bad item {v}") } else { v },
        [1, 2, 3],
    );
    assert_eq!(it.next(), Some(1));
    it.next();
}

#[test]
fn try_map_yields_err_for_a_panicking_item() {
    let pool = ThreadPool::new(2);
    let out: Vec<Result<i32, PoolError>> = pool
        .try_map(
            |v: i32| if v == 2 { panic!("bad item {v}") } else { v },
            [1, 2, 3],
        )
        .collect();
    assert_eq!(
        out,
        [Ok(1), Err(PoolError::Panicked("bad item 2".into())), Ok(3)]
    );
}

/// Counts how many items were pulled from the wrapped iterator.
struct Counting<I> {
    inner: I,
    pulled: Arc<AtomicUsize>,
}

impl<I: Iterator> Iterator for Counting<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let item = self.inner.next();
        if item.is_some() {
            self.pulled.fetch_add(1, Ordering::SeqCst);
        }
        item
    }
}

#[test]
fn map_pulls_everything_up_front() {
    let pool = ThreadPool::new(2);
    let pulled = Arc::new(AtomicUsize::new(0));
    let it = pool.try_map(
        |v: u32| v,
        Counting {
            inner: 0..10u32,
            pulled: pulled.clone(),
        },
    );
    assert_eq!(pulled.load(Ordering::SeqCst), 10);
    assert_eq!(it.map(Result::unwrap).sum::<u32>(), 45);
}

#[test]
fn map_buffered_bounds_look_ahead() {
    let pool = ThreadPool::new(2);
    let pulled = Arc::new(AtomicUsize::new(0));
    let mut it = pool.try_map_buffered(
        |v: u64| v * 2,
        Counting {
            inner: 0..100u64,
            pulled: pulled.clone(),
        },
        3,
    );
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        3,
        "only buffersize items pulled at call"
    );
    for consumed in 1..=10u64 {
        assert_eq!(it.next(), Some(Ok((consumed - 1) * 2)));
        let p = pulled.load(Ordering::SeqCst) as u64;
        assert!(p <= consumed + 3, "pulled {p} after consuming {consumed}");
        assert_eq!(p, consumed + 3);
    }
    // Works on an infinite input too, and yields in order.
    let firsts: Vec<u64> = pool
        .try_map_buffered(|v: u64| v, 0.., 2)
        .take(5)
        .map(Result::unwrap)
        .collect();
    assert_eq!(firsts, [0, 1, 2, 3, 4]);
    // Short input: everything comes out.
    let all: Vec<u64> = pool
        .try_map_buffered(|v: u64| v, 0..3, 10)
        .map(Result::unwrap)
        .collect();
    assert_eq!(all, [0, 1, 2]);
}

#[test]
#[should_panic(expected = "buffersize must be at least 1")]
fn map_buffered_zero_panics() {
    let pool = ThreadPool::new(1);
    let _ = pool.try_map_buffered(|v: u8| v, [1], 0);
}

#[test]
fn dropping_map_cancels_jobs_not_started() {
    let pool = ThreadPool::new(1);
    let ran = Arc::new(AtomicUsize::new(0));
    let (gate, blockers) = block_workers(&pool, 1);
    let r2 = ran.clone();
    let it = pool.try_map(move |_: u32| r2.fetch_add(1, Ordering::SeqCst), 0..5);
    drop(it);
    gate.open();
    drop(blockers);
    pool.shutdown(true, false);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn shutdown_cancel_futures_without_wait() {
    let pool = ThreadPool::new(1);
    let ran = Arc::new(AtomicUsize::new(0));
    let (gate, blockers) = block_workers(&pool, 1);
    let queued: Vec<_> = (0..5)
        .map(|_| {
            let r = ran.clone();
            pool.submit(move || r.fetch_add(1, Ordering::SeqCst))
        })
        .collect();
    pool.shutdown(false, true);
    for f in &queued {
        assert!(f.cancelled());
        assert_eq!(f.result(None), Err(PoolError::Cancelled));
    }
    assert!(blockers[0].running(), "the running job is not cancelled");
    gate.open();
    assert_eq!(blockers[0].result(None), Ok(()));
    pool.shutdown(true, false);
    assert_eq!(pool.worker_count(), 0);
    assert_eq!(ran.load(Ordering::SeqCst), 0, "cancelled jobs never run");
}

#[test]
fn shutdown_wait_with_cancel_futures() {
    let pool = ThreadPool::new(2);
    let ran = Arc::new(AtomicUsize::new(0));
    let (gate, blockers) = block_workers(&pool, 2);
    let queued: Vec<_> = (0..4)
        .map(|_| {
            let r = ran.clone();
            pool.submit(move || r.fetch_add(1, Ordering::SeqCst))
        })
        .collect();
    let opener = {
        let gate = gate.clone();
        thread::spawn(move || {
            sleep_ms(50);
            gate.open();
        })
    };
    pool.shutdown(true, true);
    // Returned only after the running jobs finished and the workers exited.
    assert!(blockers.iter().all(|f| f.done()));
    assert_eq!(pool.worker_count(), 0);
    assert!(queued.iter().all(|f| f.cancelled()));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    opener.join().unwrap();
}

#[test]
fn shutdown_without_cancel_still_runs_queued_jobs() {
    let pool = ThreadPool::new(1);
    let (gate, _blockers) = block_workers(&pool, 1);
    let queued: Vec<_> = (0..3).map(|i| pool.submit(move || i)).collect();
    gate.open();
    pool.shutdown(true, false);
    let values: Vec<_> = queued
        .into_iter()
        .map(|f| f.into_result(Some(Duration::ZERO)))
        .collect();
    assert_eq!(values, [Ok(0), Ok(1), Ok(2)]);
}

#[test]
fn submit_after_shutdown_fails_with_shutdown() {
    let pool = ThreadPool::new(1);
    pool.shutdown(false, false);
    let f = pool.submit(|| 1);
    assert!(f.done());
    let err = f.into_result(None).unwrap_err();
    assert_eq!(err, PoolError::Shutdown);
    assert!(err.is_shutdown());
    assert!(err.to_string().contains("shutdown"));
    // A clone shares the pool, so it is shut down too.
    let clone = pool.clone();
    assert_eq!(clone.submit(|| 2).result(None), Err(PoolError::Shutdown));
    pool.shutdown(true, true); // idempotent
}

#[test]
fn dropping_the_last_clone_waits_for_queued_jobs() {
    let pool = ThreadPool::new(2);
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..6 {
        let d = done.clone();
        pool.submit(move || {
            sleep_ms(10);
            d.fetch_add(1, Ordering::SeqCst);
        });
    }
    let clone = pool.clone();
    drop(pool);
    assert_eq!(
        clone.submit(|| 1).result(None),
        Ok(1),
        "a clone keeps the pool open"
    );
    drop(clone);
    assert_eq!(
        done.load(Ordering::SeqCst),
        6,
        "dropping the pool waited for every job"
    );
}

#[test]
fn shutdown_from_inside_a_job_does_not_deadlock() {
    let pool = ThreadPool::new(2);
    let p2 = pool.clone();
    let f = pool.submit(move || {
        p2.shutdown(true, false);
        drop(p2);
        7
    });
    assert_eq!(f.result(Some(Duration::from_secs(5))), Ok(7));
    assert_eq!(pool.submit(|| 1).result(None), Err(PoolError::Shutdown));
}

#[test]
fn dropping_a_future_does_not_cancel_the_job() {
    let pool = ThreadPool::new(1);
    let (tx, rx) = mpsc::channel();
    drop(pool.submit(move || tx.send(5).unwrap()));
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(5));
}

#[test]
fn cancel_only_before_start() {
    let pool = ThreadPool::new(1);
    let ran = Arc::new(AtomicBool::new(false));
    let (gate, blockers) = block_workers(&pool, 1);
    let r2 = ran.clone();
    let queued = pool.submit(move || r2.store(true, Ordering::SeqCst));
    assert!(!queued.running() && !queued.done());
    assert!(!blockers[0].cancel(), "a running job cannot be cancelled");
    assert!(queued.cancel());
    assert!(queued.cancel(), "cancelling again still reports true");
    assert!(queued.cancelled() && queued.done() && !queued.running());
    assert_eq!(queued.exception(None), Ok(Some(PoolError::Cancelled)));
    gate.open();
    assert_eq!(blockers[0].result(None), Ok(()));
    assert!(!blockers[0].cancel(), "a finished job cannot be cancelled");
    assert!(!blockers[0].cancelled());
    // The cancelled job was skipped: the next job runs, and the cancelled one never did.
    assert_eq!(pool.submit(|| 3).result(None), Ok(3));
    pool.shutdown(true, false);
    assert!(!ran.load(Ordering::SeqCst));
    let err = queued.into_result(None).unwrap_err();
    assert!(err.is_cancelled() && !err.is_timeout() && !err.is_panic());
}

#[test]
fn done_callbacks_run_exactly_once() {
    let pool = ThreadPool::new(1);
    let (gate, _blockers) = block_workers(&pool, 1);
    let log = Arc::new(Mutex::new(Vec::new()));
    let f = pool.submit(|| 10);
    for tag in ["a", "b"] {
        let log = log.clone();
        f.add_done_callback(move |fut| {
            log.lock().unwrap().push(format!(
                "{tag}:{:?}:{:?}",
                fut.result(None),
                thread::current().name()
            ));
        });
    }
    assert!(log.lock().unwrap().is_empty());
    gate.open();
    f.result(None).unwrap();
    // Blocked waiters are woken before callbacks run (as Python): wait for them.
    wait_until(|| log.lock().unwrap().len() == 2);
    let main_name = thread::current().name().map(str::to_owned);
    let l2 = log.clone();
    f.add_done_callback(move |fut| {
        l2.lock().unwrap().push(format!(
            "c:{:?}:{:?}",
            fut.result(None),
            thread::current().name()
        ));
    });
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 3);
    assert!(
        log[0].starts_with("a:Ok(10):Some(\"ringloop-pool-"),
        "{log:?}"
    );
    assert!(
        log[1].starts_with("b:Ok(10):Some(\"ringloop-pool-"),
        "{log:?}"
    );
    assert_eq!(
        log[2],
        format!("c:Ok(10):{main_name:?}"),
        "already done: runs on the caller"
    );
}

#[test]
fn done_callbacks_on_panic_and_on_cancel() {
    let pool = ThreadPool::new(1);
    let (gate, _blockers) = block_workers(&pool, 1);
    let (tx, rx) = mpsc::channel();
    let panics = pool.submit(|| -> u8 { panic!("kaboom") });
    let tx2 = tx.clone();
    panics.add_done_callback(move |f| tx2.send(("panic", f.exception(None))).unwrap());
    let cancelled = pool.submit(|| 1u8);
    let tx3 = tx.clone();
    cancelled.add_done_callback(move |f| tx3.send(("cancel", f.exception(None))).unwrap());
    assert!(cancelled.cancel());
    // Cancel runs the callback on the cancelling thread, before cancel() returns.
    assert_eq!(
        rx.try_recv(),
        Ok(("cancel", Ok(Some(PoolError::Cancelled))))
    );
    gate.open();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)),
        Ok(("panic", Ok(Some(PoolError::Panicked("kaboom".into())))))
    );
    drop(tx);
    pool.shutdown(true, false);
    assert!(rx.try_recv().is_err(), "no callback ran twice");
}

#[test]
fn panicking_callback_does_not_lose_others_or_kill_the_worker() {
    let pool = ThreadPool::new(1);
    let (gate, _blockers) = block_workers(&pool, 1);
    let count = Arc::new(AtomicUsize::new(0));
    let f = pool.submit(|| ());
    let c1 = count.clone();
    f.add_done_callback(move |_| {
        c1.fetch_add(1, Ordering::SeqCst);
    });
    f.add_done_callback(|_| panic!("callback bug"));
    let c3 = count.clone();
    f.add_done_callback(move |_| {
        c3.fetch_add(1, Ordering::SeqCst);
    });
    let worker = pool.submit(|| thread::current().id());
    gate.open();
    let worker_before = worker.into_result(None).unwrap();
    wait_until(|| count.load(Ordering::SeqCst) == 2);
    // Same single worker is still alive.
    assert_eq!(
        pool.submit(|| thread::current().id()).result(None),
        Ok(worker_before)
    );
    // Already done: the panic is caught on the caller too.
    f.add_done_callback(|_| panic!("late callback bug"));
}

#[test]
fn result_timeout_then_success() {
    let pool = ThreadPool::new(1);
    let gate = Gate::default();
    let g2 = gate.clone();
    let f = pool.submit(move || {
        g2.wait();
        "late"
    });
    let start = Instant::now();
    assert_eq!(
        f.result(Some(Duration::from_millis(30))),
        Err(PoolError::Timeout)
    );
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(
        f.exception(Some(Duration::from_millis(1))),
        Err(PoolError::Timeout)
    );
    assert!(!f.done(), "a timeout does not stop the job");
    gate.open();
    assert_eq!(f.result(Some(Duration::from_secs(5))), Ok("late"));
    assert!(PoolError::Timeout.is_timeout());
}

#[test]
fn exception_reports_success_and_failure() {
    let pool = ThreadPool::new(1);
    assert_eq!(pool.submit(|| 1).exception(None), Ok(None));
    let string_panic = pool.submit(|| -> u8 { panic!("{}-{}", "formatted", 1) });
    assert_eq!(
        string_panic.exception(None),
        Ok(Some(PoolError::Panicked("formatted-1".into())))
    );
    let odd_panic = pool.submit(|| -> u8 { std::panic::panic_any(17u32) });
    assert_eq!(
        odd_panic.exception(None),
        Ok(Some(PoolError::Panicked("unknown panic payload".into())))
    );
    // exception() still works after the value was moved out.
    let f = pool.submit(|| 2);
    let clone = f.clone();
    assert_eq!(f.into_result(None), Ok(2));
    assert_eq!(clone.exception(None), Ok(None));
}

#[test]
fn panicking_job_keeps_its_worker() {
    let pool = ThreadPool::new(1);
    let bad = pool.submit(|| -> thread::ThreadId { panic!("job exploded") });
    let next = pool.submit(|| thread::current().id());
    let err = bad.into_result(None).unwrap_err();
    assert_eq!(err, PoolError::Panicked("job exploded".into()));
    assert!(err.is_panic());
    assert_eq!(err.to_string(), "the job panicked: job exploded");
    let id = next.into_result(None).unwrap();
    assert_eq!(pool.submit(|| thread::current().id()).result(None), Ok(id));
    assert_eq!(pool.worker_count(), 1);
}

#[test]
#[should_panic(expected = "already moved out")]
fn result_after_value_taken_panics_clearly() {
    let pool = ThreadPool::new(1);
    let f = pool.submit(|| 1);
    let clone = f.clone();
    assert_eq!(futures::executor::block_on(f), Ok(1));
    let _ = clone.result(None);
}

fn sleeper(pool: &ThreadPool, ms: u64) -> PoolFuture<u64> {
    pool.submit(move || {
        sleep_ms(ms);
        ms
    })
}

fn values(futs: &[PoolFuture<u64>]) -> Vec<u64> {
    let mut v: Vec<u64> = futs.iter().map(|f| f.result(None).unwrap()).collect();
    v.sort();
    v
}

#[test]
fn wait_first_completed() {
    let pool = ThreadPool::new(3);
    let futs = vec![sleeper(&pool, 400), sleeper(&pool, 10), sleeper(&pool, 400)];
    let (done, not_done) = wait(futs, None, ReturnWhen::FirstCompleted);
    assert_eq!(values(&done), [10]);
    assert_eq!(not_done.len(), 2);
    // With a timeout shorter than any remaining job: nothing more is done.
    let (done, not_done) = wait(
        not_done,
        Some(Duration::from_millis(20)),
        ReturnWhen::FirstCompleted,
    );
    assert!(done.is_empty());
    assert_eq!(not_done.len(), 2);
    assert!(
        not_done.iter().all(|f| !f.cancelled()),
        "wait never cancels"
    );
    let (done, not_done) = wait(
        not_done,
        Some(Duration::from_secs(5)),
        ReturnWhen::FirstCompleted,
    );
    assert!(!done.is_empty());
    assert_eq!(done.len() + not_done.len(), 2);
}

#[test]
fn wait_all_completed() {
    let pool = ThreadPool::new(3);
    let futs = vec![sleeper(&pool, 30), sleeper(&pool, 10), sleeper(&pool, 20)];
    let (done, not_done) = wait(futs, None, ReturnWhen::AllCompleted);
    assert_eq!(values(&done), [10, 20, 30]);
    assert!(not_done.is_empty());

    let futs = vec![sleeper(&pool, 1), sleeper(&pool, 500)];
    let (done, not_done) = wait(
        futs,
        Some(Duration::from_millis(100)),
        ReturnWhen::AllCompleted,
    );
    assert_eq!(values(&done), [1]);
    assert_eq!(not_done.len(), 1);
    assert!(!not_done[0].done());

    let empty: Vec<PoolFuture<u64>> = Vec::new();
    let (done, not_done) = wait(empty, None, ReturnWhen::FirstCompleted);
    assert!(
        done.is_empty() && not_done.is_empty(),
        "empty input returns at once"
    );
}

#[test]
fn wait_first_exception() {
    let pool = ThreadPool::new(3);
    let ok = sleeper(&pool, 1);
    ok.result(None).unwrap();
    let slow = sleeper(&pool, 500);
    let fails = pool.submit(|| -> u64 {
        sleep_ms(10);
        panic!("first failure")
    });
    let (done, not_done) = wait(vec![slow, fails, ok], None, ReturnWhen::FirstException);
    assert_eq!(done.len(), 2, "the failed one and the quick one");
    assert!(
        done.iter()
            .any(|f| f.exception(None) == Ok(Some(PoolError::Panicked("first failure".into()))))
    );
    assert_eq!(not_done.len(), 1);

    // No failure: behaves like AllCompleted.
    let futs = vec![sleeper(&pool, 5), sleeper(&pool, 15)];
    let (done, not_done) = wait(futs, None, ReturnWhen::FirstException);
    assert_eq!((done.len(), not_done.len()), (2, 0));

    // A cancelled future is not an exception (as Python); timeout applies.
    let (gate, blockers) = block_workers(&pool, 3);
    let queued = pool.submit(|| 0u64);
    assert!(queued.cancel());
    let other = pool.submit(|| 1u64);
    let (done, not_done) = wait(
        vec![queued, other],
        Some(Duration::from_millis(30)),
        ReturnWhen::FirstException,
    );
    assert_eq!((done.len(), not_done.len()), (1, 1));
    assert!(done[0].cancelled());
    gate.open();
    drop(blockers);
}

#[test]
fn wait_deduplicates_clones() {
    let pool = ThreadPool::new(1);
    let f = pool.submit(|| 1u64);
    let (done, not_done) = wait(
        vec![f.clone(), f.clone(), f],
        None,
        ReturnWhen::AllCompleted,
    );
    assert_eq!((done.len(), not_done.len()), (1, 0));
}

#[test]
fn as_completed_yields_in_completion_order() {
    let pool = ThreadPool::new(3);
    let already = pool.submit(|| 0u64);
    already.result(None).unwrap();
    let futs = vec![
        sleeper(&pool, 150),
        sleeper(&pool, 50),
        sleeper(&pool, 100),
        already,
    ];
    let order: Vec<u64> = as_completed(futs, None)
        .map(|f| f.unwrap().into_result(None).unwrap())
        .collect();
    assert_eq!(
        order,
        [0, 50, 100, 150],
        "done futures first, then completion order"
    );
}

#[test]
fn as_completed_timeout_yields_err_once() {
    let pool = ThreadPool::new(2);
    let futs = vec![sleeper(&pool, 10), sleeper(&pool, 2000)];
    let start = Instant::now();
    let mut it = as_completed(futs, Some(Duration::from_millis(150)));
    assert_eq!(it.next().unwrap().unwrap().result(None), Ok(10));
    assert_eq!(it.next().unwrap().unwrap_err(), PoolError::Timeout);
    assert!(start.elapsed() >= Duration::from_millis(150));
    assert!(start.elapsed() < Duration::from_millis(1500));
    assert!(it.next().is_none());
    let rest = it.into_pending();
    assert_eq!(rest.len(), 1);
    assert!(!rest[0].done());
    assert!(rest[0].cancel() || rest[0].running());
    pool.shutdown(false, true);
}

#[test]
fn await_from_futures_executor() {
    let pool = ThreadPool::new(2);
    let f = pool.submit(|| {
        sleep_ms(20);
        vec![1, 2, 3]
    });
    assert_eq!(futures::executor::block_on(f), Ok(vec![1, 2, 3]));
    let bad = pool.submit(|| -> u8 { panic!("async boom") });
    let clone = bad.clone();
    assert_eq!(
        futures::executor::block_on(bad),
        Err(PoolError::Panicked("async boom".into()))
    );
    assert_eq!(
        futures::executor::block_on(clone),
        Err(PoolError::Panicked("async boom".into()))
    );
    // join several awaits
    let a = pool.submit(|| 1);
    let b = pool.submit(|| 2);
    let (a, b) = futures::executor::block_on(futures::future::join(a, b));
    assert_eq!((a, b), (Ok(1), Ok(2)));
}

#[test]
fn await_from_tokio_current_thread() {
    let pool = ThreadPool::new(2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let out = rt.block_on(async {
        let f = pool.submit(|| {
            sleep_ms(30);
            "from the pool"
        });
        // The tokio timer fires first; the pool's waker wakes the task later.
        let timer = tokio::time::sleep(Duration::from_millis(5));
        tokio::pin!(timer);
        let mut f = f;
        tokio::select! {
            biased;
            r = &mut f => panic!("too early: {r:?}"),
            _ = &mut timer => {}
        }
        f.await
    });
    assert_eq!(out, Ok("from the pool"));
}

#[test]
fn futures_and_pool_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PoolFuture<Vec<u8>>>();
    assert_send_sync::<ThreadPool>();
    assert_send_sync::<PoolError>();
    let _: &dyn std::error::Error = &PoolError::Broken("x".into());
}

#[test]
fn map_buffered_stops_at_shutdown() {
    let pool = ThreadPool::new(1);
    let pulled = Arc::new(AtomicUsize::new(0));
    let mut it = pool.try_map_buffered(
        |v: u64| v,
        Counting {
            inner: 0..,
            pulled: pulled.clone(),
        },
        2,
    );
    assert_eq!(it.next(), Some(Ok(0)));
    pool.shutdown(true, false);
    // Already-submitted items still come out, then one Shutdown error, then the end.
    let rest: Vec<_> = it.collect();
    assert_eq!(rest, [Ok(1), Ok(2), Err(PoolError::Shutdown)]);
    assert_eq!(pulled.load(Ordering::SeqCst), 4);
}

#[test]
fn into_result_timeout_leaves_the_job_running() {
    let pool = ThreadPool::new(1);
    let gate = Gate::default();
    let g2 = gate.clone();
    let f = pool.submit(move || {
        g2.wait();
        vec![7u8]
    });
    let keep = f.clone();
    assert_eq!(
        f.into_result(Some(Duration::from_millis(10))),
        Err(PoolError::Timeout)
    );
    gate.open();
    assert_eq!(
        keep.into_result(Some(Duration::from_secs(5))),
        Ok(vec![7u8])
    );
}

#[test]
fn callback_on_a_refused_future_runs_at_once() {
    let pool = ThreadPool::new(1);
    pool.shutdown(true, false);
    let f = pool.submit(|| 1);
    let (tx, rx) = mpsc::channel();
    f.add_done_callback(move |f| tx.send(f.exception(None)).unwrap());
    assert_eq!(rx.try_recv(), Ok(Ok(Some(PoolError::Shutdown))));
}

#[test]
fn error_messages_are_actionable() {
    let cases = [
        (PoolError::Cancelled, "cancelled"),
        (PoolError::Timeout, "wait again"),
        (PoolError::Panicked("oops".into()), "the job panicked: oops"),
        (
            PoolError::Broken("initializer panicked: x".into()),
            "create a new ThreadPool",
        ),
        (PoolError::Shutdown, "after ThreadPool::shutdown"),
    ];
    for (err, needle) in cases {
        let msg = err.to_string();
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    }
    assert!(PoolError::Broken(String::new()).is_broken());
    assert!(!PoolError::Shutdown.is_cancelled());
}

/// Review finding: awaiters were woken before the done callbacks ran, so an awaiter could move
/// the value out before a callback's `result(None)` read it.
#[test]
fn a_done_callback_sees_the_result_even_when_an_awaiter_takes_it() {
    for _ in 0..20 {
        let pool = ThreadPool::new(1);
        let fut = pool.submit(|| {
            sleep_ms(5);
            7u32
        });
        let seen = Arc::new(std::sync::Mutex::new(None));
        let s = seen.clone();
        fut.add_done_callback(move |f| *s.lock().unwrap() = Some(f.result(None)));
        assert_eq!(futures::executor::block_on(fut), Ok(7));
        assert_eq!(*seen.lock().unwrap(), Some(Ok(7)));
    }
}

/// Review finding: two jobs calling shutdown(wait = true) on their own pool waited for each
/// other forever.
#[test]
fn two_jobs_shutting_down_their_pool_do_not_deadlock() {
    let pool = ThreadPool::new(2);
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let futs: Vec<_> = (0..2)
        .map(|_| {
            let (pool2, barrier) = (pool.clone(), barrier.clone());
            pool.submit(move || {
                barrier.wait();
                pool2.shutdown(true, false);
            })
        })
        .collect();
    for f in futs {
        assert_eq!(f.result(Some(Duration::from_secs(10))), Ok(()));
    }
}

/// Review finding (issue 13): `result()` clones the value under the future's lock, and a
/// `Clone` impl that asked the same future `done()` deadlocked. The status queries no longer
/// take that lock.
#[test]
fn a_clone_that_asks_its_own_future_about_its_state_does_not_deadlock() {
    type Slot = Arc<Mutex<Option<ringloop::PoolFuture<Probe>>>>;
    struct Probe(Slot);
    impl Clone for Probe {
        fn clone(&self) -> Probe {
            let slot = self.0.lock().unwrap();
            let fut = slot.as_ref().expect("the test put the future here");
            assert!(fut.done() && !fut.running() && !fut.cancelled());
            Probe(Arc::clone(&self.0))
        }
    }
    let pool = ThreadPool::new(1);
    let slot: Slot = Arc::default();
    let inner = Arc::clone(&slot);
    let fut = pool.submit(move || Probe(inner));
    *slot.lock().unwrap() = Some(fut.clone());
    let probe = fut.result(None).unwrap();
    assert!(Arc::ptr_eq(&probe.0, &slot));
    // Break the cycle (the future holds the value, the value holds the future).
    slot.lock().unwrap().take();
}

#[test]
fn pending_future_is_settled_by_its_completer_from_another_thread() {
    let (fut, completer) = ringloop::PoolFuture::<String>::pending();
    assert!(!fut.done() && !fut.running());
    let t = std::thread::spawn(move || {
        assert!(completer.set_running_or_notify_cancel());
        completer.set_result("made elsewhere".to_string());
    });
    // Awaited from async code on a loop, and waited on from this thread, alike.
    let again = fut.clone();
    assert_eq!(
        ringloop::run(async move { again.await.map(|s| s.len()) }),
        Ok(14)
    );
    t.join().unwrap();
    assert!(fut.done());
}

#[test]
fn completer_set_exception_fails_the_future_with_its_message() {
    let (fut, completer) = ringloop::PoolFuture::<u8>::pending();
    assert!(completer.set_running_or_notify_cancel());
    assert!(!fut.cancel(), "running: too late to cancel");
    completer.set_exception("disk on fire");
    assert_eq!(
        fut.result(None),
        Err(ringloop::PoolError::Failed("disk on fire".into()))
    );
}

#[test]
fn a_cancelled_pending_future_tells_its_completer_to_skip_the_work() {
    let (fut, completer) = ringloop::PoolFuture::<u8>::pending();
    assert!(fut.cancel());
    assert!(completer.is_cancelled());
    assert!(!completer.set_running_or_notify_cancel());
    completer.set_result(1); // dropped: the future stays cancelled
    assert_eq!(fut.result(None), Err(ringloop::PoolError::Cancelled));
}

#[test]
fn dropping_an_unset_completer_breaks_the_future_instead_of_hanging() {
    let (fut, completer) = ringloop::PoolFuture::<u8>::pending();
    let (tx, rx) = std::sync::mpsc::channel();
    fut.add_done_callback(move |f| tx.send(f.exception(None).unwrap()).unwrap());
    drop(completer);
    assert!(matches!(
        rx.recv().unwrap(),
        Some(ringloop::PoolError::Broken(_))
    ));
}
