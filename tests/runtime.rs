//! Runtime lifecycle: block_on, run, run_forever / stop, close, handles, misuse, faults.

mod support;

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ringloop::{DriverKind, Handle, Runtime};

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn block_on_returns_the_output_and_alias_matches() {
    let rt = Runtime::new().unwrap();
    assert_eq!(rt.block_on(async { 1 + 2 }), 3);
    assert_eq!(rt.run_until_complete(async { "x" }), "x");
    assert_eq!(ringloop::run(async { vec![1, 2] }), vec![1, 2]);
}

#[test]
fn block_on_accepts_a_task_and_is_reusable() {
    let rt = Runtime::new().unwrap();
    let task = rt.spawn(async { 10 });
    assert_eq!(rt.block_on(task), Ok(10));
    // Tasks spawned in one block_on keep running in the next one.
    let counter = Rc::new(Cell::new(0));
    let c = counter.clone();
    let (go, wait) = futures::channel::oneshot::channel::<()>();
    let task = rt.block_on(async move {
        ringloop::spawn(async move {
            wait.await.unwrap();
            c.set(c.get() + 1);
        })
    });
    assert_eq!(counter.get(), 0);
    go.send(()).unwrap();
    rt.block_on(task).unwrap();
    assert_eq!(counter.get(), 1);
}

#[test]
fn is_running_only_inside_the_loop() {
    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    assert!(!rt.is_running());
    assert!(rt.block_on(async { Handle::current().is_running() }));
    assert!(!handle.is_running());
    assert!(!handle.is_closed());
    rt.close();
    assert!(handle.is_closed());
    assert!(!handle.call_soon_threadsafe(|| {}));
}

#[test]
fn run_forever_stops_from_a_task() {
    let rt = Runtime::new().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    rt.spawn(async move {
        ringloop::sleep(Duration::from_millis(5)).await;
        r.set(true);
        Handle::current().stop();
    });
    rt.run_forever();
    assert!(ran.get());
    assert!(!rt.is_running());
}

#[test]
fn run_forever_stops_from_a_callback() {
    let rt = Runtime::new().unwrap();
    rt.block_on(async {
        ringloop::call_later(Duration::from_millis(2), || Handle::current().stop());
    });
    rt.run_forever();
}

#[test]
fn stop_before_run_forever_runs_one_pass() {
    let rt = Runtime::new().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    rt.spawn(async move { r.set(true) });
    rt.stop();
    rt.run_forever();
    assert!(ran.get(), "the ready task ran in the one pass");
}

#[test]
fn stop_from_another_thread_wakes_a_parked_loop() {
    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    let loop_tid = support::thread_id();
    let t = std::thread::spawn(move || {
        support::wait_until_parked(loop_tid);
        handle.stop();
    });
    // Nothing to do: the loop parks (io_uring_enter or epoll_wait) with no timeout; only the
    // eventfd written by stop() can end the park.
    rt.run_forever();
    t.join().unwrap();
}

#[test]
fn call_soon_threadsafe_runs_on_the_loop_thread() {
    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    let loop_thread = std::thread::current().id();
    let ran_on = Arc::new(std::sync::Mutex::new(None));
    let r = ran_on.clone();
    let loop_tid = support::thread_id();
    let t = std::thread::spawn(move || {
        support::wait_until_parked(loop_tid);
        let h2 = handle.clone();
        assert!(handle.call_soon_threadsafe(move || {
            *r.lock().unwrap() = Some(std::thread::current().id());
            h2.stop();
        }));
    });
    rt.run_forever();
    t.join().unwrap();
    assert_eq!(*ran_on.lock().unwrap(), Some(loop_thread));
}

#[test]
fn a_waker_used_from_another_thread_wakes_a_parked_task() {
    ringloop::run(async {
        let (tx, rx) = futures::channel::oneshot::channel();
        let loop_tid = support::thread_id();
        let t = std::thread::spawn(move || {
            support::wait_until_parked(loop_tid);
            tx.send(7).unwrap();
        });
        let task = ringloop::spawn(async move { rx.await.unwrap() });
        assert_eq!(task.await, Ok(7));
        t.join().unwrap();
    });
}

#[test]
fn many_cross_thread_wakes_are_all_delivered() {
    ringloop::run(async {
        let n = 2000;
        let mut receivers = Vec::new();
        let mut senders = Vec::new();
        for _ in 0..n {
            let (tx, rx) = futures::channel::oneshot::channel::<usize>();
            senders.push(tx);
            receivers.push(ringloop::spawn(async move { rx.await.unwrap() }));
        }
        let t = std::thread::spawn(move || {
            for (i, tx) in senders.into_iter().enumerate() {
                tx.send(i).unwrap();
                if i % 100 == 0 {
                    std::thread::yield_now();
                }
            }
        });
        let mut sum = 0;
        for r in receivers {
            sum += r.await.unwrap();
        }
        assert_eq!(sum, n * (n - 1) / 2);
        t.join().unwrap();
    });
}

#[test]
fn handle_is_send_sync_clone() {
    // (That Runtime is !Send is a compile_fail doctest on Runtime.)
    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
    assert_send_sync_clone::<Handle>();
}

#[test]
fn handle_current_inside_and_clear_panic_outside() {
    ringloop::run(async {
        let h = Handle::current();
        assert!(h.is_running());
    });
    let err = catch_unwind(Handle::current).unwrap_err();
    assert!(panic_text(err).contains("outside a ringloop runtime"));
}

#[test]
fn spawn_and_sleep_outside_a_runtime_panic_clearly() {
    let err = catch_unwind(|| ringloop::spawn(async {})).unwrap_err();
    let msg = panic_text(err);
    assert!(msg.contains("outside a ringloop runtime"), "{msg}");
    let err = catch_unwind(|| {
        let mut s = std::pin::pin!(ringloop::sleep(Duration::from_millis(1)));
        let waker = futures::task::noop_waker();
        let _ = s.as_mut().poll(&mut std::task::Context::from_waker(&waker));
    })
    .unwrap_err();
    assert!(panic_text(err).contains("outside a ringloop runtime"));
    let err = catch_unwind(|| ringloop::call_soon(|| {})).unwrap_err();
    assert!(panic_text(err).contains("outside a ringloop runtime"));
}

use std::future::Future;

#[test]
fn block_on_inside_block_on_panics_clearly() {
    let rt = Runtime::new().unwrap();
    let inner = Runtime::new().unwrap();
    let msg = rt.block_on(async {
        let err = catch_unwind(AssertUnwindSafe(|| inner.block_on(async {}))).unwrap_err();
        panic_text(err)
    });
    assert!(msg.contains("already running"), "{msg}");
    // The outer runtime is still fine.
    assert_eq!(rt.block_on(async { 5 }), 5);
}

#[test]
fn a_panicking_main_future_propagates_and_the_runtime_survives() {
    let rt = Runtime::new().unwrap();
    let background = rt.spawn(async {
        ringloop::sleep(Duration::from_millis(5)).await;
        "survived"
    });
    let err = catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(async {
            ringloop::yield_now().await;
            panic!("main went wrong");
        })
    }))
    .unwrap_err();
    assert_eq!(panic_text(err), "main went wrong");
    assert_eq!(rt.block_on(background), Ok("survived"));
}

struct DropGuard {
    on_drop: Rc<Cell<Option<std::thread::ThreadId>>>,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.on_drop.set(Some(std::thread::current().id()));
    }
}

#[test]
fn dropping_the_runtime_drops_pending_tasks_on_its_thread() {
    let dropped = Rc::new(Cell::new(None));
    let finished = Rc::new(Cell::new(false));
    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    {
        let guard = DropGuard {
            on_drop: dropped.clone(),
        };
        let f = finished.clone();
        let (started, has_started) = futures::channel::oneshot::channel::<()>();
        let task = rt.spawn(async move {
            let _g = guard;
            started.send(()).unwrap();
            ringloop::sleep(Duration::from_secs(3600)).await;
            f.set(true);
        });
        let cb_ran = Rc::new(Cell::new(0));
        let c = cb_ran.clone();
        task.add_done_callback(move |t| {
            assert!(t.is_cancelled());
            c.set(c.get() + 1);
        });
        // The task runs up to its sleep.
        rt.block_on(has_started).unwrap();
        assert_eq!(dropped.get(), None);
        drop(rt);
        assert_eq!(dropped.get(), Some(std::thread::current().id()));
        assert_eq!(
            cb_ran.get(),
            1,
            "done callbacks run when the runtime cancels"
        );
        assert!(task.is_done() && task.is_cancelled());
        assert_eq!(task.result(), Some(Err(ringloop::JoinError::Cancelled)));
    }
    assert!(!finished.get());
    assert!(handle.is_closed());
}

#[test]
fn a_full_ring_loses_no_completion() {
    // Two SQ entries and four CQ entries for 10,000 operations in flight: the SQ is flushed
    // when full and the CQ overflows into the kernel's backlog (IORING_FEAT_NODROP).
    let rt = Runtime::builder().entries(2).build().unwrap();
    let done = Rc::new(Cell::new(0usize));
    rt.block_on(async {
        let tasks: Vec<_> = (0..10_000)
            .map(|_| {
                let done = done.clone();
                ringloop::spawn(async move {
                    ringloop::io::nop().await.unwrap();
                    done.set(done.get() + 1);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    assert_eq!(done.get(), 10_000);
}

#[test]
fn a_full_ring_with_ten_thousand_timers() {
    let rt = Runtime::builder().entries(2).build().unwrap();
    let fired = rt.block_on(async {
        let tasks: Vec<_> = (0..10_000u64)
            .map(|i| {
                ringloop::spawn(async move {
                    ringloop::sleep(Duration::from_micros(i % 500)).await;
                    ringloop::io::nop().await.unwrap();
                    1u32
                })
            })
            .collect();
        let mut n = 0;
        for t in tasks {
            n += t.await.unwrap();
        }
        n
    });
    assert_eq!(fired, 10_000);
}

#[test]
fn zero_ring_entries_is_a_clear_error() {
    let err = Runtime::builder().entries(0).build().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn nested_runtimes_on_separate_threads_are_independent() {
    let counter = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let counter = counter.clone();
            std::thread::spawn(move || {
                ringloop::run(async move {
                    ringloop::sleep(Duration::from_millis(5)).await;
                    counter.fetch_add(1, Ordering::SeqCst);
                })
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(counter.load(Ordering::SeqCst), 3);
}

/// Installs a seccomp filter that makes io_uring_setup fail with EPERM, as Docker's default
/// profile does, then checks the error that asking for io_uring gives. Runs in a child
/// process, because the filter cannot be removed.
#[test]
fn io_uring_refused_by_seccomp_gives_a_clear_error() {
    const CHILD: &str = "RINGLOOP_TEST_SECCOMP_CHILD";
    if std::env::var_os(CHILD).is_some() {
        deny_io_uring_setup();
        let err = Runtime::builder()
            .driver(DriverKind::IoUring)
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        println!("ERROR: {err}");
        return;
    }
    let stdout =
        rerun_without_driver_override("io_uring_refused_by_seccomp_gives_a_clear_error", CHILD);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("ERROR: ").map(|(_, e)| e))
        .expect("child printed the error");
    assert!(line.contains("io_uring"), "{line}");
    assert!(line.contains("os error 1"), "names the errno: {line}");
    assert!(line.contains("seccomp"), "names the likely cause: {line}");
    assert!(line.contains("LINUX_ONLY.md"), "points to the docs: {line}");
}

/// Runs a test again in a child with `env_var` set and `RINGLOOP_DRIVER` unset (the seccomp
/// tests check what `Auto` chooses), returning its stdout.
fn rerun_without_driver_override(name: &str, env_var: &str) -> String {
    support::rerun_in_child_without(name, env_var, &["RINGLOOP_DRIVER"])
}

/// Where seccomp refuses io_uring (Docker's default profile), a program runs unchanged: the
/// default runtime picks epoll and serves TCP, UDP, Unix sockets, files, timers and the
/// thread pool.
#[test]
fn where_seccomp_refuses_io_uring_the_default_runtime_runs_on_epoll() {
    const CHILD: &str = "RINGLOOP_TEST_SECCOMP_EPOLL_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let stdout = rerun_without_driver_override(
            "where_seccomp_refuses_io_uring_the_default_runtime_runs_on_epoll",
            CHILD,
        );
        assert!(stdout.contains("SERVED ON Epoll"), "{stdout}");
        return;
    }
    deny_io_uring_setup();
    let rt = Runtime::new().expect("the default runtime falls back to epoll");
    assert_eq!(rt.driver_kind(), DriverKind::Epoll);
    rt.block_on(async {
        use ringloop::io::BufResult;
        // TCP echo.
        let listener = ringloop::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = ringloop::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let BufResult(n, buf) = stream.read(Vec::with_capacity(16)).await;
            assert_eq!(n.unwrap(), 4);
            stream.write_all(buf).await.0.unwrap();
        });
        let client = ringloop::net::TcpStream::connect(addr).await.unwrap();
        client.write_all(b"ping".to_vec()).await.0.unwrap();
        let BufResult(n, buf) = client.read(Vec::with_capacity(16)).await;
        assert_eq!((n.unwrap(), &buf[..]), (4, &b"ping"[..]));
        server.await.unwrap();
        // UDP.
        let a = ringloop::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = ringloop::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        a.send_to(b"dgram".to_vec(), b.local_addr().unwrap())
            .await
            .0
            .unwrap();
        let BufResult(r, buf) = b.recv_from(Vec::with_capacity(16)).await;
        assert_eq!(r.unwrap().1, a.local_addr().unwrap());
        assert_eq!(buf, b"dgram");
        // Unix stream.
        let (x, y) = ringloop::net::UnixStream::pair().unwrap();
        x.write_all("unix").await.0.unwrap();
        let BufResult(n, buf) = y.read(Vec::with_capacity(8)).await;
        assert_eq!((n.unwrap(), &buf[..]), (4, &b"unix"[..]));
        // Files.
        let path = std::env::temp_dir().join(format!("ringloop-seccomp-{}", std::process::id()));
        ringloop::fs::write(&path, "file bytes").await.unwrap();
        assert_eq!(ringloop::fs::read(&path).await.unwrap(), b"file bytes");
        ringloop::fs::remove_file(&path).await.unwrap();
        // Timers.
        let start = std::time::Instant::now();
        ringloop::sleep(Duration::from_millis(5)).await;
        assert!(start.elapsed() >= Duration::from_millis(5));
        // The thread pool and the blocking pool.
        let pool = ringloop::ThreadPool::new(2);
        assert_eq!(pool.submit(|| 6 * 7).await.unwrap(), 42);
        assert_eq!(ringloop::spawn_blocking(|| 7).await.unwrap(), 7);
    });
    println!("SERVED ON {:?}", rt.driver_kind());
}

fn deny_io_uring_setup() {
    // io_uring_setup is syscall 425 on every architecture that has it.
    const NR_IO_URING_SETUP: u32 = 425;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let filter = [
        // A = seccomp_data.nr
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: NR_IO_URING_SETUP,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with valid arguments; `prog` and `filter` outlive the calls.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const _
            ),
            0,
            "installing the seccomp filter: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn thread_cpu() -> Duration {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) }, 0);
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(us(ru.ru_utime) + us(ru.ru_stime))
}

#[test]
fn an_idle_loop_parks_instead_of_spinning() {
    let rt = Runtime::new().unwrap();
    let before = thread_cpu();
    rt.block_on(ringloop::sleep(Duration::from_millis(200)));
    let cpu = thread_cpu() - before;
    assert!(
        cpu < Duration::from_millis(50),
        "an idle 200 ms sleep used {cpu:?} of CPU"
    );
}

/// Review finding: a stop() requested during block_on (which only run_forever consumes) kept
/// the loop from parking, so block_on spun until its future finished.
#[test]
fn stop_during_block_on_does_not_make_the_loop_spin() {
    let rt = Runtime::new().unwrap();
    let before = thread_cpu();
    rt.block_on(async {
        Handle::current().stop();
        ringloop::sleep(Duration::from_millis(200)).await;
    });
    let cpu = thread_cpu() - before;
    assert!(cpu < Duration::from_millis(50), "busy spin: {cpu:?} of CPU");
    // The stop is still pending for the next run_forever, which runs one pass.
    rt.run_forever();
}

/// Review finding: a Handle::spawn still queued when the runtime closed never resolved.
#[test]
fn a_handle_spawn_queued_at_close_fails_with_shutdown() {
    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    let fut = std::thread::spawn(move || handle.spawn(async { 1 }))
        .join()
        .unwrap();
    drop(rt);
    assert_eq!(
        fut.result(Some(Duration::from_secs(5))),
        Err(ringloop::PoolError::Shutdown)
    );
}

/// Review finding: closing waited for a blocking job that itself waited for the loop.
#[test]
fn closing_does_not_deadlock_on_a_blocking_job_waiting_for_the_loop() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = Runtime::new().unwrap();
        // (Returned in a tuple: the job is a future we wait on later, not one to await here.)
        let (job,) = rt.block_on(async {
            let handle = Handle::current();
            let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
            let job = ringloop::spawn_blocking(move || {
                started_tx.send(()).unwrap();
                // Meanwhile the runtime starts closing.
                std::thread::sleep(Duration::from_millis(100));
                handle.spawn(async { 1 }).result(None)
            });
            ringloop::spawn_blocking(move || started_rx.recv().unwrap())
                .await
                .unwrap();
            (job,)
        });
        drop(rt);
        done_tx.send(job.result(None)).unwrap();
    });
    let job = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("Runtime::drop hung");
    assert_eq!(job, Ok(Err(ringloop::PoolError::Shutdown)));
}

struct PanickingWaker;

impl std::task::Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("waker panicked");
    }
}

/// Review finding: a panicking waker unwound out of the loop and the other wake-ups of the
/// same pass were lost.
#[test]
fn a_panicking_waker_does_not_lose_other_wakes() {
    let rt = Runtime::new().unwrap();
    let out = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_millis(10);
        let mut sleep = Box::pin(ringloop::sleep_until(deadline));
        let waker = std::task::Waker::from(Arc::new(PanickingWaker));
        let _ = sleep
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker));
        let victim = ringloop::spawn(async move {
            ringloop::sleep_until(deadline).await;
            7
        });
        ringloop::wait_for(victim, Duration::from_secs(5)).await
    });
    assert_eq!(out, Ok(Ok(7)));
}

/// SQPOLL: a kernel thread consumes the submission queue. Where it is allowed the runtime must
/// work the same (submissions, timers, cross-thread wakes); where it is not, the error says so.
#[test]
fn an_sqpoll_runtime_works_or_says_why_not() {
    match Runtime::builder().sqpoll(10).build() {
        Ok(rt) => {
            let handle = rt.handle();
            let n = rt.block_on(async {
                let tasks: Vec<_> = (0..1000)
                    .map(|_| ringloop::spawn(async { ringloop::io::nop().await.unwrap() }))
                    .collect();
                let count = tasks.len();
                for t in tasks {
                    t.await.unwrap();
                }
                ringloop::sleep(Duration::from_millis(5)).await;
                count
            });
            assert_eq!(n, 1000);
            let loop_tid = support::thread_id();
            let t = std::thread::spawn(move || {
                support::wait_until_parked(loop_tid);
                handle.stop();
            });
            rt.run_forever();
            t.join().unwrap();
        }
        Err(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
            assert!(e.to_string().contains("SQPOLL"), "{e}");
        }
    }
}

/// Review finding (issue 13): a `Runtime` kept in a `thread_local!` and dropped at thread exit
/// aborted the process ("thread local panicked on drop"): closing it entered the driver's
/// thread-local after that was destroyed.
#[test]
fn a_runtime_in_a_thread_local_is_dropped_at_thread_exit() {
    thread_local! {
        static RT: Runtime = Runtime::new().unwrap();
    }
    let t = std::thread::spawn(|| {
        RT.with(|rt| {
            rt.block_on(async {
                // Work left behind for the close at thread exit: a task and a timer.
                ringloop::spawn(async { ringloop::sleep(Duration::from_secs(3600)).await });
                ringloop::io::nop().await.unwrap();
            })
        });
    });
    t.join()
        .expect("the thread (and its runtime) ended normally");
}

/// Peer bug tokio#8255: a submission that the kernel refuses with EBUSY / EAGAIN (a full
/// completion queue) after SQEs were pushed must not free their data. A ring of 2 entries (a
/// CQ of 4) with 128 socket operations and 64 file operations in flight at once: every buffer
/// must hold its own bytes when its operation completes.
#[test]
fn a_tiny_ring_with_many_operations_in_flight_keeps_every_buffer() {
    use ringloop::io::BufResult;
    use ringloop::net::UnixStream;
    const PAIRS: usize = 64;
    const LEN: usize = 1024;
    let pattern = |i: usize| -> Vec<u8> { (0..LEN).map(|j| (i * 31 + j * 7) as u8).collect() };
    let rt = Runtime::builder().entries(2).build().unwrap();
    rt.block_on(async {
        let (reads, writes): (Vec<_>, Vec<_>) = (0..PAIRS)
            .map(|i| {
                let (a, b) = UnixStream::pair().unwrap();
                let read = async move {
                    let mut got = Vec::with_capacity(LEN);
                    while got.len() < LEN {
                        let BufResult(n, buf) = a.read(Vec::with_capacity(LEN)).await;
                        assert_ne!(n.unwrap(), 0, "pair {i}: early EOF");
                        got.extend_from_slice(&buf);
                    }
                    assert_eq!(got, pattern(i), "pair {i} read other bytes");
                };
                let write = async move {
                    let BufResult(r, buf) = b.write_all(pattern(i)).await;
                    r.unwrap();
                    assert_eq!(buf, pattern(i), "pair {i}'s write buffer changed");
                    b
                };
                (read, write)
            })
            .unzip();
        // One poll starts every read (each waits for its peer), then every write.
        let (_, peers) = ringloop::gather2(ringloop::gather(reads), ringloop::gather(writes)).await;
        drop(peers);

        let path = std::env::temp_dir().join(format!("ringloop-tiny-ring-{}", std::process::id()));
        let file = ringloop::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .unwrap();
        let file = &file;
        let wrote = ringloop::gather((0..PAIRS).map(|i| async move {
            let BufResult(r, buf) = file.write_all_at(pattern(i), (i * LEN) as u64).await;
            r.unwrap();
            assert_eq!(buf, pattern(i));
        }))
        .await;
        assert_eq!(wrote.len(), PAIRS);
        let read = ringloop::gather((0..PAIRS).map(|i| async move {
            let BufResult(r, buf) = file.read_exact_at(vec![0u8; LEN], (i * LEN) as u64).await;
            r.unwrap();
            assert_eq!(buf, pattern(i), "block {i} of the file");
        }))
        .await;
        assert_eq!(read.len(), PAIRS);
        std::fs::remove_file(&path).unwrap();
    });
}
