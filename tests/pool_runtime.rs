//! The executors inside the runtime: spawn_blocking, Handle::spawn (run_coroutine_threadsafe),
//! waiting on pool futures from tasks, and the asyncio combinators over real tasks.

mod support;

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ringloop::{JoinError, PoolError, ReturnWhen, Runtime, ThreadPool};
use support::DropGuard;

fn thread_cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage struct.
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) },
        0
    );
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[test]
fn spawn_blocking_wakes_a_parked_loop_without_polling() {
    ringloop::run(async {
        let cpu_before = thread_cpu_time();
        let start = Instant::now();
        let out = ringloop::spawn_blocking(|| {
            std::thread::sleep(Duration::from_millis(200));
            std::thread::current().name().map(str::to_owned)
        })
        .await
        .unwrap();
        let wall = start.elapsed();
        let cpu = thread_cpu_time() - cpu_before;
        assert!(wall >= Duration::from_millis(200));
        assert!(out.unwrap().starts_with("ringloop-blocking"));
        // A busy-polling loop would burn ~200 ms of CPU here; a parked one almost none.
        assert!(cpu < wall / 4, "loop used {cpu:?} of CPU during {wall:?}");
    });
}

#[test]
fn spawn_blocking_reports_panics_and_the_pool_survives() {
    ringloop::run(async {
        let err = ringloop::spawn_blocking(|| -> u32 { panic!("job failed") })
            .await
            .unwrap_err();
        assert_eq!(err, PoolError::Panicked("job failed".into()));
        assert_eq!(ringloop::spawn_blocking(|| 5).await, Ok(5));
    });
}

#[test]
fn spawn_blocking_outside_a_runtime_panics_clearly() {
    let err = catch_unwind(|| ringloop::spawn_blocking(|| ())).unwrap_err();
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(msg.contains("outside a ringloop runtime"), "{msg}");
}

#[test]
fn blocking_threads_bounds_the_pool() {
    let rt = Runtime::builder().blocking_threads(2).build().unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let jobs: Vec<_> = (0..8)
            .map(|_| {
                let (running, peak) = (running.clone(), peak.clone());
                ringloop::spawn_blocking(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(10));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for j in jobs {
            j.await.unwrap();
        }
    });
    assert_eq!(peak.load(Ordering::SeqCst), 2);
}

#[test]
fn closing_the_runtime_cancels_blocking_jobs_not_started() {
    let rt = Runtime::builder().blocking_threads(1).build().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let (first, queued) = rt.block_on(async {
        let r = ran.clone();
        // Review finding: a 5 ms sleep stood in for "the first job has started", which a
        // loaded machine did not always honour; wait for the job to say so.
        let started = ringloop::Promise::<()>::new();
        let signal = started.clone();
        let first = ringloop::spawn_blocking(move || {
            signal.set_result(()).unwrap();
            std::thread::sleep(Duration::from_millis(30));
            r.fetch_add(1, Ordering::SeqCst);
        });
        let r = ran.clone();
        let queued = ringloop::spawn_blocking(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        started.wait().await.unwrap();
        (first, queued)
    });
    drop(rt);
    assert_eq!(first.result(None), Ok(()), "running jobs are waited for");
    assert_eq!(queued.result(None), Err(PoolError::Cancelled));
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[test]
fn handle_spawn_runs_on_the_loop_and_is_waitable_from_threads() {
    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    let loop_thread = std::thread::current().id();
    let threads: Vec<_> = (0..4u64)
        .map(|i| {
            let handle = handle.clone();
            std::thread::spawn(move || {
                let fut = handle.spawn(async move {
                    ringloop::sleep(Duration::from_millis(1)).await;
                    (i * 10, std::thread::current().id())
                });
                fut.result(Some(Duration::from_secs(10))).unwrap()
            })
        })
        .collect();
    let stopper = {
        let handle = handle.clone();
        std::thread::spawn(move || {
            // Stop once every submitter has its answer.
            let mut outs = Vec::new();
            for t in threads {
                outs.push(t.join().unwrap());
            }
            handle.stop();
            outs
        })
    };
    rt.run_forever();
    let outs = stopper.join().unwrap();
    let mut values: Vec<_> = outs.iter().map(|(v, _)| *v).collect();
    values.sort();
    assert_eq!(values, vec![0, 10, 20, 30]);
    assert!(outs.iter().all(|(_, t)| *t == loop_thread));
}

#[test]
fn handle_spawn_can_be_awaited_from_another_runtime() {
    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    let t = std::thread::spawn(move || {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let v = tokio.block_on(handle.spawn(async { 99 }));
        handle.stop();
        v
    });
    rt.run_forever();
    assert_eq!(t.join().unwrap(), Ok(99));
}

#[test]
fn handle_spawn_errors_panic_close_and_cancel() {
    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    // A panic becomes Panicked.
    let bad = handle.spawn(async { panic!("remote panic") });
    // Cancelled before the loop started it: never runs.
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let never = handle.spawn(async move {
        r.fetch_add(1, Ordering::SeqCst);
    });
    assert!(never.cancel());
    // Still running when the runtime closes: Cancelled.
    let forever = handle.spawn(ringloop::sleep(Duration::from_secs(3600)));
    // The loop takes both from its inject queue and starts them; the panic ends one.
    rt.block_on(support::yield_until("the remote tasks ran", || {
        bad.done() && forever.running()
    }));
    assert_eq!(
        bad.result(None),
        Err::<(), _>(PoolError::Panicked("remote panic".into()))
    );
    drop(rt);
    assert_eq!(forever.result(None), Err(PoolError::Cancelled));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    // After close: Shutdown.
    assert_eq!(
        handle.spawn(async { 1 }).result(None),
        Err(PoolError::Shutdown)
    );
}

#[test]
fn pool_futures_are_awaited_and_waited_on_from_tasks() {
    let pool = ThreadPool::new(4);
    ringloop::run(async {
        let slow = pool.submit(|| {
            std::thread::sleep(Duration::from_millis(200));
            1
        });
        let fast = pool.submit(|| 2);
        let (done, pending) =
            ringloop::wait(vec![slow, fast], None, ReturnWhen::FirstCompleted).await;
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].result(None), Ok(2));
        assert_eq!(pending.len(), 1);
        let (done, _) = ringloop::wait(pending, None, ReturnWhen::AllCompleted).await;
        assert_eq!(done[0].result(None), Ok(1));
        let failing = pool.submit(|| -> i32 { panic!("x") });
        let ok = pool.submit(|| {
            std::thread::sleep(Duration::from_millis(300));
            3
        });
        let (done, pending) =
            ringloop::wait(vec![ok, failing], None, ReturnWhen::FirstException).await;
        assert_eq!((done.len(), pending.len()), (1, 1));
        assert!(done[0].exception(None).unwrap().is_some());
    });
}

#[test]
fn gather_of_tasks_keeps_input_order() {
    let out = ringloop::run(async {
        let tasks: Vec<_> = [30u64, 10, 20]
            .into_iter()
            .map(|ms| {
                ringloop::spawn(async move {
                    ringloop::sleep(Duration::from_millis(ms)).await;
                    ms
                })
            })
            .collect();
        ringloop::gather(tasks).await
    });
    assert_eq!(out, vec![Ok(30), Ok(10), Ok(20)]);
}

#[test]
fn gather_mixes_tasks_and_plain_futures_and_tuples() {
    ringloop::run(async {
        let (a, b, c) = ringloop::gather3(
            ringloop::spawn(async { 1 }),
            async { "two" },
            ringloop::sleep(Duration::from_millis(1)),
        )
        .await;
        assert_eq!(a, Ok(1));
        assert_eq!(b, "two");
        assert_eq!(c, ());
    });
}

#[test]
fn try_gather_first_error_cancels_the_other_tasks() {
    ringloop::run(async {
        let dropped = Rc::new(Cell::new(0));
        let mut tasks = Vec::new();
        for i in 0..5u64 {
            let guard = DropGuard(dropped.clone());
            tasks.push(ringloop::spawn(async move {
                let _g = guard;
                if i == 2 {
                    ringloop::sleep(Duration::from_millis(2)).await;
                    return Err(format!("child {i} failed"));
                }
                ringloop::sleep(Duration::from_secs(3600)).await;
                Ok(i)
            }));
        }
        let refs: Vec<_> = tasks.iter().map(|t| t.task_ref()).collect();
        let flat = tasks
            .into_iter()
            .map(|t| async move { t.await.map_err(|e| e.to_string()).and_then(|r| r) });
        let err = ringloop::try_gather(flat).await.unwrap_err();
        assert_eq!(err, "child 2 failed");
        ringloop::yield_now().await;
        ringloop::yield_now().await;
        assert_eq!(dropped.get(), 5, "every task's future was dropped");
        let cancelled = refs.iter().filter(|r| r.is_cancelled()).count();
        assert_eq!(cancelled, 4);
    });
}

#[test]
fn dropping_gather_cancels_unfinished_tasks() {
    ringloop::run(async {
        let t1 = ringloop::spawn(async { 1 });
        let t2 = ringloop::spawn(ringloop::sleep(Duration::from_secs(3600)));
        let r2 = t2.task_ref();
        let g = ringloop::gather2(t1, t2);
        assert!(
            ringloop::wait_for(g, Duration::from_millis(2))
                .await
                .is_err()
        );
        ringloop::yield_now().await;
        assert!(r2.is_cancelled() && r2.is_done());
    });
}

#[test]
fn as_completed_yields_in_completion_order_with_timeout() {
    ringloop::run(async {
        let futs = [25u64, 5, 15].map(|ms| async move {
            ringloop::sleep(Duration::from_millis(ms)).await;
            ms
        });
        let mut stream = ringloop::as_completed(futs);
        let mut order = Vec::new();
        while let Some(ms) = stream.next().await {
            order.push(ms);
        }
        assert_eq!(order, vec![5, 15, 25]);

        let futs = [1u64, 3_600_000].map(|ms| async move {
            ringloop::sleep(Duration::from_millis(ms)).await;
            ms
        });
        let mut stream = ringloop::as_completed(futs).timeout(Duration::from_millis(20));
        assert_eq!(stream.next().await, Some(Ok(1)));
        assert!(matches!(
            stream.next().await,
            Some(Err(ringloop::Elapsed { .. }))
        ));
        assert_eq!(stream.next().await, None);
    });
}

#[test]
fn a_promise_set_from_another_thread_wakes_a_task() {
    let loop_thread = support::thread_id();
    ringloop::run(async move {
        let p = ringloop::Promise::new();
        let setter = p.clone();
        let t = std::thread::spawn(move || {
            // Once the waiters wait: the loop parks only when every task is pending.
            support::wait_until_parked(loop_thread);
            setter.set_result(String::from("hi")).unwrap();
        });
        let waiters: Vec<_> = (0..3)
            .map(|_| ringloop::spawn(p.clone().into_future()))
            .collect();
        for w in waiters {
            assert_eq!(w.await.unwrap().unwrap(), "hi");
        }
        t.join().unwrap();
        assert!(p.done() && !p.cancelled());
    });
}

use std::future::IntoFuture;

#[test]
fn block_on_a_panicking_pool_job_does_not_kill_the_loop() {
    let rt = Runtime::new().unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(async { ringloop::spawn_blocking(|| panic!("p")).await })
    }));
    assert!(matches!(r, Ok(Err(PoolError::Panicked(_)))));
    // The loop still runs tasks afterwards.
    let t = rt.spawn(async { Err::<(), _>(JoinError::Cancelled) });
    assert_eq!(rt.block_on(t), Ok(Err(JoinError::Cancelled)));
}

/// Review finding: like asyncio's run_coroutine_threadsafe(...).cancel(), cancelling the
/// PoolFuture of a Handle::spawn whose future is running stops it.
#[test]
fn handle_spawn_can_be_cancelled_while_running() {
    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    let dropped_on = Arc::new(std::sync::Mutex::new(None));
    struct Guard(Arc<std::sync::Mutex<Option<std::thread::ThreadId>>>);
    impl Drop for Guard {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = Some(std::thread::current().id());
        }
    }
    let guard = Guard(dropped_on.clone());
    let fut = handle.spawn(async move {
        let _g = guard;
        ringloop::sleep(Duration::from_secs(3600)).await;
        1
    });
    let canceller = {
        let (fut, handle) = (fut.clone(), handle.clone());
        std::thread::spawn(move || {
            while !fut.running() {
                std::thread::sleep(Duration::from_millis(1));
            }
            let cancelled = fut.cancel();
            let result = fut.result(Some(Duration::from_secs(10)));
            handle.stop();
            (cancelled, result)
        })
    };
    rt.run_forever();
    let (cancelled, result) = canceller.join().unwrap();
    assert!(cancelled);
    assert_eq!(result, Err(PoolError::Cancelled));
    assert!(fut.cancelled());
    assert_eq!(
        *dropped_on.lock().unwrap(),
        Some(std::thread::current().id())
    );
}

/// Review finding (issue 13): `cancel()` returned true while a `Handle::spawn` future ran, yet
/// the result could still be `Ok` (the poll in progress completed it), and a second `cancel()`
/// returned false. After a true `cancel()` the result is `Cancelled`, as in asyncio.
#[test]
fn a_true_cancel_while_running_always_means_cancelled() {
    let rt = Runtime::new().unwrap();
    let slot: Arc<std::sync::Mutex<Option<ringloop::PoolFuture<u32>>>> = Arc::default();
    let own = Arc::clone(&slot);
    let fut = rt.handle().spawn(async move {
        // Cancel itself from inside its own poll, then finish with a value anyway.
        let me = own.lock().unwrap().take().unwrap();
        assert!(
            me.cancel(),
            "a running Handle::spawn future can be cancelled"
        );
        assert!(
            me.cancel(),
            "and a second cancel() says it is cancelled too"
        );
        7
    });
    slot.lock().unwrap().replace(fut.clone());
    let result = rt.block_on(async { fut.clone().await });
    assert_eq!(result, Err(PoolError::Cancelled));
    assert!(fut.cancelled());
}

/// Peer bug tokio#8406: where no thread can be started (RLIMIT_NPROC reached), a job for the
/// blocking pool, or for the epoll driver's blocking threads, must fail with an error that
/// says so, not wait forever for a thread that never comes. Runs in a child process, which
/// drops root first (root is exempt from RLIMIT_NPROC) and then allows itself no new thread.
#[test]
fn where_no_thread_can_start_blocking_jobs_fail_clearly() {
    const CHILD: &str = "RINGLOOP_TEST_NO_THREADS_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let out = support::rerun_in_child(
            "where_no_thread_can_start_blocking_jobs_fail_clearly",
            CHILD,
        );
        assert!(out.contains("both failed clearly"), "{out}");
        return;
    }
    let rt = Runtime::new().unwrap();
    let epoll = Runtime::builder()
        .driver(ringloop::DriverKind::Epoll)
        .build()
        .unwrap();
    let path = std::env::temp_dir().join(format!("ringloop-no-threads-{}", std::process::id()));
    std::fs::write(&path, b"unread").unwrap();
    // SAFETY: a plain syscall without pointers.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        // Still removable by the child once it is nobody.
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    }
    // SAFETY: plain syscalls without pointers, then one with a pointer to a live local.
    unsafe {
        if root {
            assert_eq!(libc::setgid(65534), 0, "setgid(nobody)");
            assert_eq!(libc::setuid(65534), 0, "setuid(nobody)");
        }
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NPROC, &none), 0);
    }
    assert!(
        std::thread::Builder::new().spawn(|| ()).is_err(),
        "RLIMIT_NPROC should refuse new threads here"
    );

    let job = rt.block_on(async {
        ringloop::wait_for(ringloop::spawn_blocking(|| 42), Duration::from_secs(20)).await
    });
    match job {
        Ok(Err(PoolError::Broken(why))) => {
            assert!(why.contains("could not start a worker thread"), "{why}")
        }
        other => panic!("spawn_blocking without threads: {other:?}"),
    }

    let read = epoll.block_on(async {
        ringloop::wait_for(ringloop::fs::read(&path), Duration::from_secs(20)).await
    });
    let err = match read {
        Ok(Err(e)) => e,
        other => panic!("a file read on epoll without threads: {other:?}"),
    };
    assert!(err.to_string().contains("thread"), "names the cause: {err}");
    std::fs::remove_file(&path).unwrap();
    println!("both failed clearly: {err}");
}
