//! ProcessPool: jobs in worker processes (this test binary, re-executed: the constructor hook
//! serves jobs before the test harness's main runs, so no `init()` is needed here).

mod support;

use std::collections::HashSet;
use std::ffi::CString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ringloop::{PoolError, ProcessPool, ThreadPool};
use serde::{Deserialize, Serialize};

fn square(x: u64) -> u64 {
    x * x
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

fn boom(msg: String) -> u32 {
    panic!("{msg}")
}

fn die(_: ()) -> u32 {
    // SAFETY: kill takes no pointers; a worker killing itself is the point.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL is not caught")
}

fn sleep_long(_: ()) -> u32 {
    std::thread::sleep(Duration::from_secs(3600));
    0
}

fn reverse(mut v: Vec<u8>) -> Vec<u8> {
    v.reverse();
    v
}

#[test]
fn submit_and_map_run_in_other_processes() {
    let pool = ProcessPool::new(2).unwrap();
    assert_eq!(pool.max_workers(), 2);
    assert_eq!(pool.submit(square, 12).result(None), Ok(144));
    let worker = pool.submit(pid, ()).result(None).unwrap();
    assert_ne!(
        worker,
        std::process::id(),
        "the job ran in a worker process"
    );
    let squares: Vec<u64> = pool.map(square, 0..1000, 7).collect();
    assert_eq!(squares, (0..1000u64).map(|x| x * x).collect::<Vec<_>>());
    // Non-capturing closures coerce to fn items.
    let lens: Vec<usize> = pool
        .map(|s: String| s.len(), ["a", "bb", "ccc"].map(String::from), 2)
        .collect();
    assert_eq!(lens, [1, 2, 3]);
}

#[test]
fn futures_are_awaitable_and_waitable_beside_thread_pool_futures() {
    let procs = ProcessPool::new(1).unwrap();
    let threads = ThreadPool::new(1);
    let a = procs.submit(square, 3);
    let b = threads.submit(|| 4u64 * 4);
    let (done, pending) = ringloop::pool::wait(
        [a.clone(), b.clone()],
        None,
        ringloop::ReturnWhen::AllCompleted,
    );
    assert_eq!((done.len(), pending.len()), (2, 0));
    let c = procs.submit(square, 5);
    assert_eq!(ringloop::run(async move { c.await.map(|v| v + 1) }), Ok(26));
    assert_eq!((a.result(None), b.result(None)), (Ok(9), Ok(16)));
}

#[test]
fn a_panicking_job_fails_its_future_and_the_worker_serves_on() {
    let pool = ProcessPool::new(1).unwrap();
    let before = pool.submit(pid, ()).result(None).unwrap();
    let err = pool.submit(boom, "job went wrong".into()).result(None);
    assert_eq!(err, Err(PoolError::Panicked("job went wrong".into())));
    let after = pool.submit(pid, ()).result(None).unwrap();
    assert_eq!(
        before, after,
        "the same worker process served after the panic"
    );
}

#[test]
fn try_map_keeps_a_panicking_item_apart_and_map_reraises_it() {
    fn odd_panics(x: u32) -> u32 {
        assert!(x % 2 == 0, "odd {x}");
        x
    }
    let pool = ProcessPool::new(2).unwrap();
    let got: Vec<_> = pool.try_map(odd_panics, 0..6, 4).collect();
    assert_eq!(got.len(), 6);
    for (i, r) in got.into_iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(v as usize, i),
            Err(e) => {
                assert!(i % 2 == 1);
                assert_eq!(e, PoolError::Panicked(format!("odd {i}")));
            }
        }
    }
    let mut values = pool.map(odd_panics, [0, 2, 3], 1);
    assert_eq!(values.next(), Some(0));
    assert_eq!(values.next(), Some(2));
    let reraised = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| values.next()));
    let payload = reraised.unwrap_err();
    let msg = payload.downcast_ref::<String>().unwrap();
    assert!(msg.contains("odd 3"), "{msg}");
}

#[test]
fn a_worker_killed_mid_job_breaks_the_pool_and_nothing_hangs() {
    let pool = ProcessPool::new(2).unwrap();
    // Two workers: one busy for an hour, one that kills itself.
    let long = pool.submit(sleep_long, ());
    let dying = pool.submit(die, ());
    let queued: Vec<_> = (0..10).map(|i| pool.submit(square, i)).collect();
    let err = dying.result(None).unwrap_err();
    let PoolError::Broken(why) = &err else {
        panic!("expected Broken, got {err:?}");
    };
    assert!(
        why.contains("SIGKILL") || why.contains("signal: 9"),
        "{why}"
    );
    assert!(why.contains("pid"), "names the worker: {why}");
    // The other in-flight job and every queued one fail too (the busy worker is killed).
    assert!(long.result(None).unwrap_err().is_broken());
    for f in &queued {
        let r = f.result(None);
        assert!(r.is_ok() || r.as_ref().unwrap_err().is_broken(), "{r:?}");
    }
    // Later submits fail at once.
    assert!(pool.submit(square, 2).result(None).unwrap_err().is_broken());
    // And dropping returns although a job was meant to sleep for an hour.
    drop(pool);
}

fn count_init(_: ()) -> u32 {
    INIT_RUNS.load(Ordering::SeqCst)
}

static INIT_RUNS: AtomicU32 = AtomicU32::new(0);

fn init_once() {
    INIT_RUNS.fetch_add(1, Ordering::SeqCst);
}

fn init_panics() {
    panic!("initializer refused");
}

#[test]
fn the_initializer_runs_once_in_each_worker() {
    let pool = ProcessPool::builder()
        .max_workers(2)
        .initializer(init_once)
        .build()
        .unwrap();
    let runs: Vec<u32> = pool.map(count_init, vec![(); 20], 1).collect();
    assert!(runs.iter().all(|&n| n == 1), "{runs:?}");
    assert_eq!(INIT_RUNS.load(Ordering::SeqCst), 0, "not in this process");
}

#[test]
fn a_panicking_initializer_breaks_the_pool() {
    let pool = ProcessPool::builder()
        .max_workers(1)
        .initializer(init_panics)
        .build()
        .unwrap();
    let err = pool.submit(square, 1).result(None).unwrap_err();
    let PoolError::Broken(why) = err else {
        panic!("expected Broken")
    };
    assert!(why.contains("initializer refused"), "{why}");
    assert!(pool.submit(square, 1).result(None).unwrap_err().is_broken());
}

/// Serializes to an error, whatever serde format.
#[derive(Debug, Deserialize)]
struct Unsendable;

impl Serialize for Unsendable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Unsendable refuses"))
    }
}

fn make_unsendable(_: ()) -> Unsendable {
    Unsendable
}

fn take_unsendable(_: Unsendable) -> u8 {
    1
}

#[test]
fn arguments_and_results_that_do_not_serialize_fail_their_future() {
    let pool = ProcessPool::new(1).unwrap();
    let arg = pool
        .submit(take_unsendable, Unsendable)
        .result(None)
        .unwrap_err();
    assert!(
        matches!(&arg, PoolError::Failed(m) if m.contains("serialize the job's argument")),
        "{arg:?}"
    );
    let res = pool
        .submit(make_unsendable, ())
        .into_result(None)
        .unwrap_err();
    assert!(
        matches!(&res, PoolError::Failed(m) if m.contains("serialize the job's result")),
        "{res:?}"
    );
    // The pool is fine afterwards.
    assert_eq!(pool.submit(square, 9).result(None), Ok(81));
}

#[test]
fn a_64_mib_argument_and_result_round_trip() {
    let pool = ProcessPool::new(1).unwrap();
    let data: Vec<u8> = (0..64usize << 20).map(|i| (i * 7 % 251) as u8).collect();
    let mut expect = data.clone();
    expect.reverse();
    let got = pool.submit(reverse, data).into_result(None).unwrap();
    assert!(got == expect, "64 MiB came back reversed");
}

#[test]
fn submit_after_shutdown_fails_and_drop_waits_for_jobs() {
    let pool = ProcessPool::new(1).unwrap();
    let fut = pool.submit(square, 6);
    pool.shutdown(true, false);
    assert_eq!(
        fut.result(Some(Duration::ZERO)),
        Ok(36),
        "shutdown(wait) waited"
    );
    assert_eq!(
        pool.submit(square, 1).result(None),
        Err(PoolError::Shutdown)
    );
    pool.shutdown(true, true); // again: harmless
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringloop-pp-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn mkfifo(path: &std::path::Path) {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads the live C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Opens `started` for writing (the test, reading it, learns the job runs), then waits until
/// the test writes to `release`.
fn block_until_released(paths: (String, String)) -> u8 {
    let started = std::fs::OpenOptions::new()
        .write(true)
        .open(&paths.0)
        .unwrap();
    drop(started);
    let mut byte = [0u8];
    std::fs::File::open(&paths.1)
        .unwrap()
        .read_exact(&mut byte)
        .unwrap();
    byte[0]
}

/// A job that blocks until the test releases it, through two fifos in a temporary directory.
struct Blocker {
    dir: PathBuf,
    started: PathBuf,
    release: PathBuf,
}

impl Blocker {
    fn new(tag: &str) -> Blocker {
        let dir = temp_dir(tag);
        let (started, release) = (dir.join("started"), dir.join("release"));
        mkfifo(&started);
        mkfifo(&release);
        Blocker {
            dir,
            started,
            release,
        }
    }

    /// Submits the blocking job.
    fn submit(&self, pool: &ProcessPool) -> ringloop::PoolFuture<u8> {
        let path = |p: &PathBuf| p.to_str().unwrap().to_string();
        pool.submit(
            block_until_released,
            (path(&self.started), path(&self.release)),
        )
    }

    /// Returns once the job runs (it opened the other end of `started`).
    fn wait_started(&self) {
        drop(std::fs::File::open(&self.started).unwrap());
    }

    /// Lets the job return `byte`.
    fn release(&self, byte: u8) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&self.release)
            .unwrap()
            .write_all(&[byte])
            .unwrap();
    }
}

impl Drop for Blocker {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn shutdown_with_cancel_futures_cancels_what_is_still_queued() {
    let blocker = Blocker::new("cancel");
    let pool = ProcessPool::new(1).unwrap();
    let blocked = blocker.submit(&pool);
    blocker.wait_started(); // the only worker is busy
    let queued: Vec<_> = (0..200u64).map(|i| pool.submit(square, i)).collect();
    pool.shutdown(false, true);
    blocker.release(7);
    assert_eq!(blocked.result(None), Ok(7));
    let mut cancelled = 0;
    for (i, f) in queued.iter().enumerate() {
        match f.result(None) {
            Ok(v) => assert_eq!(v, (i * i) as u64),
            Err(e) => {
                assert!(e.is_cancelled(), "{e:?}");
                cancelled += 1;
            }
        }
    }
    // At most 64 jobs are handed to a worker ahead of time: the rest were still queued.
    assert!(cancelled >= 200 - 64, "{cancelled} cancelled");
}

fn nested_pool(x: u64) -> u64 {
    let inner = ProcessPool::new(1).unwrap();
    let r = inner.submit(square, x).result(None).unwrap();
    drop(inner);
    r + 1
}

#[test]
fn a_pool_made_and_dropped_inside_a_job_of_another_pool() {
    let outer = ProcessPool::new(1).unwrap();
    assert_eq!(outer.submit(nested_pool, 5).result(None), Ok(26));
    let threads = ThreadPool::new(1);
    let from_thread = threads.submit(|| nested_pool(6));
    assert_eq!(from_thread.result(None), Ok(37));
}

#[test]
fn done_callbacks_run_and_may_drop_the_pool() {
    let pool = ProcessPool::new(1).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let fut = pool.submit(square, 8);
    // The callback owns the pool: when it runs (on the manager thread) it drops the last
    // handle, which must not deadlock waiting for its own thread.
    fut.add_done_callback(move |f| {
        let v = f.result(None);
        drop(pool);
        tx.send(v).unwrap();
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(60)).unwrap(), Ok(64));
}

/// Counts this process's open descriptors.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// `true` if this process has an unreaped child.
fn has_zombie() -> bool {
    // SAFETY: siginfo_t is plain data; waitid writes into the live local.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &raw mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // 0 with a pid: an exited, unreaped child; ECHILD: no children at all.
    r == 0 && unsafe { info.si_pid() } != 0
}

#[test]
fn max_tasks_per_child_replaces_workers_without_zombies_or_leaks() {
    // Counts descriptors and children of the whole process: run alone, in a child.
    if std::env::var_os("RINGLOOP_TEST_MAX_TASKS").is_none() {
        support::rerun_in_child(
            "max_tasks_per_child_replaces_workers_without_zombies_or_leaks",
            "RINGLOOP_TEST_MAX_TASKS",
        );
        return;
    }
    let fds = open_fds();
    let pool = ProcessPool::builder()
        .max_workers(2)
        .max_tasks_per_child(1)
        .build()
        .unwrap();
    let pids: Vec<u32> = pool.map(pid, vec![(); 1000], 1).collect();
    drop(pool);
    let distinct: HashSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 1000, "one worker per job");
    assert!(!has_zombie(), "every worker was reaped");
    assert_eq!(open_fds(), fds, "no descriptor leaked");
}

#[test]
fn without_the_hook_or_init_a_worker_reports_instead_of_forking_more() {
    // With the hook off and no init() in this binary's main, a worker runs the test
    // harness's main, which runs this same test (workers get the parent's arguments): its
    // `ProcessPool::new` must exit it rather than start a pool, and the parent must say why.
    if std::env::var_os("RINGLOOP_PROCESS_POOL_CTOR").is_none() {
        let out = support::rerun_in_child_with(
            "without_the_hook_or_init_a_worker_reports_instead_of_forking_more",
            &[("RINGLOOP_PROCESS_POOL_CTOR", "0")],
        );
        assert!(out.contains("parent saw:"), "{out}");
        return;
    }
    let pool = ProcessPool::new(1).unwrap();
    let err = pool.submit(square, 2).result(None).unwrap_err();
    let PoolError::Broken(why) = err else {
        panic!("expected Broken")
    };
    assert!(why.contains("ProcessPool::init()"), "{why}");
    println!("parent saw: {why}");
}

/// What CPython 3.11 prints for the concurrent.futures cheat sheet's ProcessPoolExecutor
/// program (examples/process_pool.rs is that program in ringloop).
const CPYTHON_OUTPUT: &str = "\
From future 1:  1e+110
From future 2:  1.329227995784916e+146
From callback of future 3:  1.7970102999144312e+167
Mapped results:  [1.0000000000000002e-10, 1.3292279957849161e+26, 1.797010299914431e+47, \
1.0000000000000002e-10, 1.3292279957849161e+26, 1.797010299914431e+47, \
1.0000000000000002e-10, 1.3292279957849161e+26, 1.797010299914431e+47, \
1.0000000000000002e-10, 1.3292279957849161e+26, 1.797010299914431e+47, \
1.0000000000000002e-10, 1.3292279957849161e+26, 1.797010299914431e+47, \
1.0000000000000002e-10, 1.3292279957849161e+26, 1.797010299914431e+47, \
1.0000000000000002e-10, 1.3292279957849161e+26, 1.797010299914431e+47, \
1.0000000000000002e-10, 1.3292279957849161e+26, 1.797010299914431e+47, \
1.0000000000000002e-10, 1.3292279957849161e+26, 1.797010299914431e+47, \
1.0000000000000002e-10, 1.3292279957849161e+26, 1.797010299914431e+47]
";

#[test]
fn the_example_prints_what_cpython_prints() {
    // `cargo test` builds the examples next to the test binaries' directory; `cargo test
    // --test process_pool` does not, so build it then.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let example = profile_dir.join("examples/process_pool");
    if !example.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build
            .args(["build", "--example", "process_pool"])
            .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap());
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        assert!(build.status().unwrap().success(), "building the example");
    }
    let out = std::process::Command::new(&example)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", example.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), CPYTHON_OUTPUT);
}

fn env_and_cwd(var: String) -> (Option<String>, PathBuf) {
    (std::env::var(var).ok(), std::env::current_dir().unwrap())
}

#[test]
fn workers_inherit_the_environment_and_working_directory_and_the_pool_is_send_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ProcessPool>();
    fn send<T: Send>() {}
    send::<ringloop::Completer<String>>();
    // PATH is set for every test run (cargo sets it); the marker variable is not passed on.
    let pool = ProcessPool::new(1).unwrap();
    let (path, cwd) = pool
        .submit(env_and_cwd, "PATH".into())
        .result(None)
        .unwrap();
    assert_eq!(path, std::env::var("PATH").ok());
    assert_eq!(cwd, std::env::current_dir().unwrap());
    let (marker, _) = pool
        .submit(env_and_cwd, "RINGLOOP_PROCESS_POOL_WORKER".into())
        .result(None)
        .unwrap();
    assert_eq!(
        marker, None,
        "a job's own subprocesses would not become workers"
    );
}

#[test]
fn a_quick_result_is_not_held_back_behind_a_long_job() {
    let blocker = Blocker::new("holdback");
    let pool = ProcessPool::new(1).unwrap();
    // Many quick jobs first, so that the pool sends jobs ahead to the worker.
    for i in 0..500u64 {
        assert_eq!(pool.submit(square, i).into_result(None), Ok(i * i));
    }
    let quick = pool.submit(square, 3);
    let blocked = blocker.submit(&pool);
    // The quick job's answer comes while the long job still runs (it is released only after).
    assert_eq!(quick.result(Some(Duration::from_secs(60))), Ok(9));
    blocker.wait_started();
    blocker.release(1);
    assert_eq!(blocked.result(None), Ok(1));
}

#[test]
fn jobs_that_are_not_known_to_be_quick_stay_cancellable_while_queued() {
    let blocker = Blocker::new("cancellable");
    let pool = ProcessPool::new(1).unwrap();
    let blocked = blocker.submit(&pool);
    blocker.wait_started();
    let queued: Vec<_> = (0..20u64).map(|i| pool.submit(square, i)).collect();
    // As Python's pool: only the running job is out of reach (plus at most one sent ahead).
    let cancelled = queued.iter().filter(|f| f.cancel()).count();
    assert!(cancelled >= 19, "{cancelled} of 20 cancelled");
    blocker.release(2);
    assert_eq!(blocked.result(None), Ok(2));
}

/// Deserializes by panicking (in the parent, where results are decoded).
#[derive(Debug, Serialize)]
struct PanicsWhenDecoded(u8);

impl<'de> Deserialize<'de> for PanicsWhenDecoded {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("decoding refused")
    }
}

fn make_panics_when_decoded(_: ()) -> PanicsWhenDecoded {
    PanicsWhenDecoded(1)
}

#[test]
fn a_result_whose_deserialize_panics_fails_its_job_and_the_pool_goes_on() {
    let pool = ProcessPool::new(1).unwrap();
    let a = pool.submit(make_panics_when_decoded, ());
    let b = pool.submit(square, 4);
    let err = a.into_result(Some(Duration::from_secs(60))).unwrap_err();
    assert!(
        matches!(&err, PoolError::Failed(m) if m.contains("decoding refused")),
        "{err:?}"
    );
    assert_eq!(b.result(Some(Duration::from_secs(60))), Ok(16));
    pool.shutdown(true, false);
}

/// Forks a grandchild that keeps the worker's socket open (blocked on the fifo `hold`), then
/// kills its own worker process.
fn fork_then_die(hold: String) -> u8 {
    let c = CString::new(hold).unwrap();
    // SAFETY: after fork the child calls only async-signal-safe functions (open, read, _exit).
    unsafe {
        if libc::fork() == 0 {
            let fd = libc::open(c.as_ptr(), libc::O_RDONLY);
            let mut b = 0u8;
            libc::read(fd, (&raw mut b).cast(), 1);
            libc::_exit(0);
        }
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    unreachable!("SIGKILL is not caught")
}

#[test]
fn a_dead_worker_is_noticed_even_while_a_forked_child_holds_its_socket() {
    let dir = temp_dir("forked");
    let hold = dir.join("hold");
    mkfifo(&hold);
    let pool = ProcessPool::new(1).unwrap();
    let fut = pool.submit(fork_then_die, hold.to_str().unwrap().to_string());
    // Without watching the pidfd this waits until the grandchild exits, which it does only
    // after this assertion (when the fifo is written below).
    let err = fut.result(Some(Duration::from_secs(60))).unwrap_err();
    assert!(err.is_broken(), "{err:?}");
    drop(pool);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&hold)
        .unwrap()
        .write_all(&[0])
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `true` if any descriptor of this process refers to the file with this (device, inode).
fn has_file_open(id: (u64, u64)) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::metadata(e.ok()?.path()).ok())
        .any(|m| (m.dev(), m.ino()) == id)
}

#[test]
fn workers_do_not_inherit_the_parents_other_descriptors() {
    use std::os::unix::fs::MetadataExt;
    // A file of its own, opened without close-on-exec (as C libraries and socket activation
    // do); compared by identity, not by descriptor number (the worker has its own fds).
    let dir = temp_dir("inherit");
    let path = dir.join("held");
    std::fs::write(&path, b"x").unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    let c = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: open reads the live C string; the descriptor is closed below.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0);
    let pool = ProcessPool::new(1).unwrap();
    let inherited = pool
        .submit(has_file_open, (meta.dev(), meta.ino()))
        .result(None)
        .unwrap();
    drop(pool);
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        !inherited,
        "the parent's descriptor {fd} leaked into the worker"
    );
}
