//! Thread-per-core: `ShardedRuntime` runs N event loops, one per thread, each with its own
//! driver (ring or epoll set), queues and timers, and nothing shared on the hot path (Seastar's
//! and glommio's model: no work stealing). `submit_to` runs a closure on a given shard, which
//! makes its (possibly `!Send`) future there; `shard_id` / `shard_count` say where code runs.
//!
//! # What is per shard, what is shared
//!
//! * Per shard: the thread, its `Runtime` (driver, run queues, timers, inject queue and wake
//!   eventfd), its tasks, and every `!Send` value its tasks hold.
//! * Shared by the shards of one `ShardedRuntime`: the blocking pool (`spawn_blocking`) and
//!   the list of shard handles (`Set`), which `submit_to` reads.
//! * Crossing: only `Send` values cross, through a shard's inject queue (a mutex-guarded
//!   vector) and its eventfd, which is written only when that shard is parked. The eventfd
//!   measured better than `IORING_OP_MSG_RING` in liburing#1150, and works on both drivers.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::pool::{PoolError, PoolFuture, ThreadPool};
use crate::runtime::{Builder, Handle};
use crate::{DriverKind, ReturnWhen};

/// What every shard of one runtime shares.
struct Set {
    handles: Vec<Handle>,
    /// Set by `stop()`: the shards' loops return and their threads end.
    stopping: AtomicBool,
}

thread_local! {
    /// The shard this thread runs, and its runtime's set.
    static SHARD: RefCell<Option<(usize, Arc<Set>)>> = const { RefCell::new(None) };
}

/// The index of the shard this code runs on: `0..shard_count()`; 0 outside a sharded
/// runtime (a plain `Runtime` is one shard).
///
/// # Examples
///
/// ```
/// let rt = ringloop::ShardedRuntime::new(2)?;
/// let ids = rt.run(|shard| async move { (shard, ringloop::shard_id()) });
/// assert_eq!(ids, [(0, 0), (1, 1)]);
/// assert_eq!(ringloop::shard_id(), 0);
/// # std::io::Result::Ok(())
/// ```
pub fn shard_id() -> usize {
    // `try_with`: also callable from destructors at thread exit.
    SHARD
        .try_with(|s| s.borrow().as_ref().map_or(0, |(id, _)| *id))
        .unwrap_or(0)
}

/// How many shards the runtime this code runs on has: 1 outside a sharded runtime.
pub fn shard_count() -> usize {
    SHARD
        .try_with(|s| s.borrow().as_ref().map_or(1, |(_, set)| set.handles.len()))
        .unwrap_or(1)
}

/// Runs `f` on shard `shard` of the sharded runtime this code runs on, and returns a
/// [`PoolFuture`] for the output of the future `f` makes there (Seastar's `submit_to`). `f`
/// must be `Send`; the future it makes need not be, since it is made and polled on that
/// shard's thread. Submitting to the calling shard itself works (the closure runs on a later
/// pass of the loop).
///
/// The returned future fails with [`PoolError::InvalidShard`] for a shard that does not exist,
/// with [`PoolError::Shutdown`] once the runtime is stopping, and with
/// [`PoolError::Panicked`] if `f` or its future panics.
///
/// # Panics
///
/// Outside a shard of a [`ShardedRuntime`], with a message saying so.
///
/// # Examples
///
/// ```
/// let rt = ringloop::ShardedRuntime::new(2)?;
/// let out = rt.run(|shard| async move {
///     // Ask the other shard for its id.
///     ringloop::submit_to(1 - shard, || async { ringloop::shard_id() }).await.unwrap()
/// });
/// assert_eq!(out, [1, 0]);
/// # std::io::Result::Ok(())
/// ```
pub fn submit_to<F, Fut>(shard: usize, f: F) -> PoolFuture<Fut::Output>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    let set = SHARD.with(|s| s.borrow().as_ref().map(|(_, set)| Arc::clone(set)));
    let set = set.expect(
        "ringloop::submit_to called outside a ShardedRuntime's shard; call it from a future \
         that ShardedRuntime::run or submit_to started, or use ShardedRuntime::submit_to",
    );
    submit(&set, shard, f)
}

fn submit<F, Fut>(set: &Set, shard: usize, f: F) -> PoolFuture<Fut::Output>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    let Some(handle) = set.handles.get(shard) else {
        return PoolFuture::failed(PoolError::InvalidShard {
            shard,
            shards: set.handles.len(),
        });
    };
    if set.stopping.load(Ordering::Acquire) {
        return PoolFuture::failed(PoolError::Shutdown);
    }
    handle.spawn_with(f)
}

/// Configures and builds a [`ShardedRuntime`].
///
/// # Examples
///
/// ```
/// use ringloop::{DriverKind, ShardedRuntime};
///
/// let rt = ShardedRuntime::builder().shards(2).driver(DriverKind::Epoll).build()?;
/// assert_eq!(rt.shards(), 2);
/// # std::io::Result::Ok(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ShardedBuilder {
    shards: usize,
    pin_to_cores: bool,
    entries: Option<u32>,
    driver: DriverKind,
    blocking_threads: Option<usize>,
}

impl ShardedBuilder {
    /// How many shards (loops, threads): 0, the default, means one per CPU this process may
    /// run on. More shards than CPUs works; the kernel then time-shares them.
    pub fn shards(mut self, n: usize) -> ShardedBuilder {
        self.shards = n;
        self
    }

    /// Pins shard `i` to the `i`-th CPU this process may run on (`sched_setaffinity`),
    /// wrapping around when there are more shards than CPUs. Default off.
    pub fn pin_to_cores(mut self, pin: bool) -> ShardedBuilder {
        self.pin_to_cores = pin;
        self
    }

    /// Submission queue entries of each shard's ring (see [`Builder::entries`]).
    pub fn entries(mut self, entries: u32) -> ShardedBuilder {
        self.entries = Some(entries);
        self
    }

    /// The driver every shard runs on (see [`Builder::driver`]).
    pub fn driver(mut self, kind: DriverKind) -> ShardedBuilder {
        self.driver = kind;
        self
    }

    /// Maximum threads of the one blocking pool the shards share (`spawn_blocking`); default
    /// min(32, CPUs + 4).
    pub fn blocking_threads(mut self, n: usize) -> ShardedBuilder {
        self.blocking_threads = Some(n);
        self
    }

    /// Starts the shards: each thread builds its runtime and starts serving.
    ///
    /// # Errors
    ///
    /// As [`Builder::build`] (the first shard's error, if a shard cannot build its
    /// runtime); a thread that cannot be spawned; `pin_to_cores` refused by the kernel.
    pub fn build(self) -> io::Result<ShardedRuntime> {
        let n = match self.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let cpus = if self.pin_to_cores {
            allowed_cpus()?
        } else {
            Vec::new()
        };
        let mut pool = ThreadPool::builder().thread_name_prefix("ringloop-blocking");
        if let Some(n) = self.blocking_threads {
            pool = pool.max_workers(n);
        }
        let pool = pool.build();
        let mut builder = crate::Runtime::builder().driver(self.driver);
        if let Some(entries) = self.entries {
            builder = builder.entries(entries);
        }
        // Each shard sends its handle, then waits for the set of all handles.
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut threads = Vec::with_capacity(n);
        let mut set_txs = Vec::with_capacity(n);
        for shard in 0..n {
            let (set_tx, set_rx) = mpsc::channel::<Option<Arc<Set>>>();
            set_txs.push(set_tx);
            let ready_tx = ready_tx.clone();
            let builder = builder.clone();
            let pool = pool.clone();
            let cpu = cpus.get(shard % cpus.len().max(1)).copied();
            let spawned = std::thread::Builder::new()
                .name(format!("ringloop-shard-{shard}"))
                .spawn(move || shard_main(shard, cpu, builder, pool, ready_tx, set_rx));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    drop(set_txs);
                    join_all(threads);
                    return Err(e);
                }
            }
        }
        drop(ready_tx);
        let mut handles: Vec<Option<Handle>> = vec![None; n];
        let mut first_err = None;
        for _ in 0..n {
            match ready_rx.recv() {
                Ok((shard, Ok(handle))) => handles[shard] = Some(handle),
                Ok((_, Err(e))) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert_with(|| io::Error::other("a shard thread died"));
                }
            }
        }
        if let Some(e) = first_err {
            // Tell every shard that built its runtime to close it.
            drop(set_txs);
            join_all(threads);
            return Err(e);
        }
        let set = Arc::new(Set {
            handles: handles.into_iter().map(|h| h.expect("received")).collect(),
            stopping: AtomicBool::new(false),
        });
        for tx in set_txs {
            let _ = tx.send(Some(Arc::clone(&set)));
        }
        Ok(ShardedRuntime { set, threads, pool })
    }
}

/// The CPUs this process may run on, in order.
fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is a plain bit set; all zeroes is a valid (empty) value.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into `set`.
    if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads one bit of the set, in range by construction.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) -> io::Result<()> {
    // SAFETY: as in `allowed_cpus`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit of the set; `cpu` came from the allowed set.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: sched_setaffinity reads the set; 0 is the calling thread.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

type Ready = mpsc::Sender<(usize, io::Result<Handle>)>;

/// A shard's thread: builds its runtime, reports, then serves until the runtime stops.
fn shard_main(
    shard: usize,
    cpu: Option<usize>,
    builder: Builder,
    pool: ThreadPool,
    ready: Ready,
    set: mpsc::Receiver<Option<Arc<Set>>>,
) {
    let built = cpu.map_or(Ok(()), pin_to).and_then(|()| builder.build());
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send((shard, Err(e)));
            return;
        }
    };
    // The pool is the ShardedRuntime's: the shard's close lets go of its clone only.
    rt.set_blocking_pool((Box::new(pool), |_| {}));
    let _ = ready.send((shard, Ok(rt.handle())));
    drop(ready);
    // `None` (or a dropped sender): another shard failed to start; close at once.
    let Ok(Some(set)) = set.recv() else {
        return;
    };
    SHARD.with(|s| *s.borrow_mut() = Some((shard, Arc::clone(&set))));
    // A `stop()` from code on this shard ends one `run_forever`; only the runtime's own
    // `stop` ends the shard.
    while !set.stopping.load(Ordering::Acquire) {
        rt.run_forever();
    }
    // Closing drops every task's future here, on its own thread, and reaps in-flight I/O.
    rt.close();
    SHARD.with(|s| *s.borrow_mut() = None);
}

fn join_all(threads: Vec<JoinHandle<()>>) {
    for t in threads {
        let _ = t.join();
    }
}

/// N event loops on N threads, one driver each: thread-per-core, as Seastar and glommio run.
///
/// The loops serve from [`build`](ShardedBuilder::build) until [`stop`](ShardedRuntime::stop)
/// or drop, between and during [`run`](ShardedRuntime::run) calls. `Send + Sync`: any thread
/// may submit work. Dropping it stops every loop, drops every task on its own thread (in-flight
/// I/O is cancelled and reaped there) and joins the threads.
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
///
/// let rt = ringloop::ShardedRuntime::new(2)?;
/// // `f(shard)` runs on each shard's thread; its future need not be Send.
/// let out = rt.run(|shard| async move {
///     let local = Rc::new(shard * 10);
///     ringloop::yield_now().await;
///     *local + ringloop::shard_count()
/// });
/// assert_eq!(out, [2, 12]);
/// // From a plain thread: runs on shard 1, the result waitable here.
/// let fut = rt.submit_to(1, || async { ringloop::shard_id() });
/// assert_eq!(fut.result(None), Ok(1));
/// # std::io::Result::Ok(())
/// ```
pub struct ShardedRuntime {
    set: Arc<Set>,
    threads: Vec<JoinHandle<()>>,
    pool: ThreadPool,
}

impl ShardedRuntime {
    /// `n` shards (0: one per CPU) with default settings.
    ///
    /// # Errors
    ///
    /// See [`ShardedBuilder::build`].
    pub fn new(n: usize) -> io::Result<ShardedRuntime> {
        ShardedRuntime::builder().shards(n).build()
    }

    /// A [`ShardedBuilder`] with default settings.
    pub fn builder() -> ShardedBuilder {
        ShardedBuilder::default()
    }

    /// How many shards run.
    pub fn shards(&self) -> usize {
        self.set.handles.len()
    }

    /// The handle of shard `shard`'s loop.
    ///
    /// # Panics
    ///
    /// If `shard >= self.shards()`.
    pub fn handle(&self, shard: usize) -> Handle {
        match self.set.handles.get(shard) {
            Some(h) => h.clone(),
            None => panic!(
                "ringloop::ShardedRuntime::handle({shard}): there are only {} shards",
                self.shards()
            ),
        }
    }

    /// Runs `f(shard)` on every shard's own thread and the futures they make to completion;
    /// returns their outputs in shard order. Blocks the calling thread until every future
    /// is done.
    ///
    /// If one shard's future panics, the others' futures are cancelled (dropped at their
    /// next await point) and, once all have stopped, the panic is resumed here with its
    /// message: asyncio's TaskGroup rule, so a server whose accept loop panics on one shard
    /// does not run on with the rest.
    ///
    /// # Panics
    ///
    /// As above; if the runtime was stopped before every future finished; and when called
    /// from one of this runtime's own shards (which would wait for itself).
    pub fn run<F, Fut>(&self, f: F) -> Vec<Fut::Output>
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        let own_shard = SHARD.with(|s| {
            s.borrow()
                .as_ref()
                .is_some_and(|(_, set)| Arc::ptr_eq(set, &self.set))
        });
        assert!(
            !own_shard,
            "ringloop::ShardedRuntime::run called from one of its own shards, which would wait \
             for itself; use ringloop::submit_to there"
        );
        let f = Arc::new(f);
        let futs: Vec<PoolFuture<Fut::Output>> = (0..self.shards())
            .map(|shard| {
                let f = Arc::clone(&f);
                self.submit_to(shard, move || f(shard))
            })
            .collect();
        let (_, pending) =
            crate::pool::wait(futs.iter().cloned(), None, ReturnWhen::FirstException);
        if !pending.is_empty() {
            // One failed: stop the others, and wait until they have.
            for p in &pending {
                p.cancel();
            }
            drop(crate::pool::wait(pending, None, ReturnWhen::AllCompleted));
        }
        let results: Vec<_> = futs.into_iter().map(|f| f.into_result(None)).collect();
        if let Some((shard, msg)) = results.iter().enumerate().find_map(|(i, r)| match r {
            Err(PoolError::Panicked(msg)) => Some((i, msg.clone())),
            _ => None,
        }) {
            std::panic::resume_unwind(Box::new(format!("shard {shard} panicked: {msg}")));
        }
        results
            .into_iter()
            .enumerate()
            .map(|(shard, r)| {
                r.unwrap_or_else(|e| {
                    panic!("ringloop::ShardedRuntime::run: shard {shard} did not finish: {e}")
                })
            })
            .collect()
    }

    /// Runs `f` on shard `shard`'s thread, where it makes a future (which need not be `Send`),
    /// and returns a [`PoolFuture`] for its output, awaitable from any shard and waitable from
    /// plain threads. Works from any thread. See [`submit_to`] for the errors.
    pub fn submit_to<F, Fut>(&self, shard: usize, f: F) -> PoolFuture<Fut::Output>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        submit(&self.set, shard, f)
    }

    /// Stops every shard's loop: each closes (its tasks are dropped on its thread) and its
    /// thread ends. Later `submit_to`s fail with [`PoolError::Shutdown`]. Returns at once;
    /// drop the runtime to wait for the threads.
    pub fn stop(&self) {
        self.set.stopping.store(true, Ordering::Release);
        for h in &self.set.handles {
            h.stop();
        }
    }
}

impl Drop for ShardedRuntime {
    fn drop(&mut self) {
        self.stop();
        // Dropped on one of its own shards (the last `Arc` of it held by a task): that
        // thread cannot join itself; it ends once its loop returns.
        let me = std::thread::current().id();
        let (own, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.threads)
            .into_iter()
            .partition(|t| t.thread().id() == me);
        join_all(others);
        // The pool waits for its running jobs, except when dropped on a shard (whose jobs
        // may wait for that very shard).
        self.pool.shutdown(own.is_empty(), true);
    }
}

impl fmt::Debug for ShardedRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedRuntime")
            .field("shards", &self.shards())
            .field("stopping", &self.set.stopping.load(Ordering::Relaxed))
            .finish()
    }
}
