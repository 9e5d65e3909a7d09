//! [`ProcessPool`]: Python's `concurrent.futures.ProcessPoolExecutor`.
//!
//! Jobs are plain `fn(A) -> R` items (non-capturing closures coerce to them) whose argument
//! and result are serde values; they run in worker processes, which are the program's own
//! binary re-executed. Their futures are ordinary [`PoolFuture`]s.
//!
//! * `wire.rs`: the frames on a worker's socket, and how a worker finds a function from its
//!   code offset (the binary is the same; ASLR moves only the base).
//! * `worker.rs`: the worker's side: the constructor hook (and [`ProcessPool::init`]) that
//!   serves jobs instead of `main`.
//! * `manager.rs`: the pool's manager, a ringloop loop on its own thread, watching every
//!   worker's socket and reaping it through its pidfd.

mod manager;
mod wire;
mod worker;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::thread::{JoinHandle, ThreadId};

use serde::Serialize;
use serde::de::DeserializeOwned;

use self::wire::Call;
use crate::callbacks::panic_message;
use crate::pool::future::Completer;
use crate::pool::{PoolError, PoolFuture};
use crate::sync::lock;

/// A process pool: runs `fn(A) -> R` jobs in worker processes.
///
/// | Python `concurrent.futures`                    | `ringloop`                                   |
/// |------------------------------------------------|----------------------------------------------|
/// | `if __name__ == "__main__":`                   | nothing, or [`ProcessPool::init()`] first in `main` |
/// | `ProcessPoolExecutor(max_workers=n)`           | [`ProcessPool::new(n)`](Self::new) / [`ProcessPool::builder`] |
/// | `initializer=`, `max_tasks_per_child=`          | [`ProcessPoolBuilder::initializer`], [`ProcessPoolBuilder::max_tasks_per_child`] |
/// | `executor.submit(fn, arg)`                     | [`submit(f, arg)`](Self::submit) → [`PoolFuture`] |
/// | `executor.map(fn, it, chunksize=c)`            | [`map(f, it, c)`](Self::map) (values), [`try_map`](Self::try_map) (`Result`s) |
/// | `executor.shutdown(wait, cancel_futures=)`     | [`shutdown`](Self::shutdown); dropping the pool = leaving the `with` block |
/// | `BrokenProcessPool`                            | [`PoolError::Broken`]                        |
///
/// # Workers
///
/// A worker is this program's own binary (`/proc/self/exe`, with the same arguments,
/// environment and working directory), started with a marker in its environment. It never
/// runs `main`: a constructor hook (code the C runtime runs before `main`) sees the marker,
/// serves jobs and exits. So, unlike Python, a program needs no `__main__` guard; see
/// [`init`](Self::init) for when one is needed. Workers start as jobs arrive, up to
/// `max_workers`, and stay until shutdown (or `max_tasks_per_child`).
///
/// A job's function is found in the worker by its offset in the binary, so it must be
/// code of the executable itself (any Rust function or non-capturing closure of the program or
/// its statically linked crates; not a function of a library loaded with `dlopen`).
///
/// # Faults
///
/// A job that panics fails its own future with [`PoolError::Panicked`] (the message) and the
/// worker serves on. An argument or result that serde cannot encode or decode fails its
/// future with [`PoolError::Failed`]. A worker that dies (killed, aborted, out of memory)
/// breaks the pool, as Python's does: every job not yet finished fails with
/// [`PoolError::Broken`] naming the worker's pid and how it died, the other workers are
/// killed, later submits fail at once, and dropping the pool returns promptly. A panicking
/// [`initializer`](ProcessPoolBuilder::initializer) breaks the pool the same way.
///
/// A worker holds the job it runs and at most one more, as Python's call queue does, so a
/// queued job stays cancellable ([`PoolFuture::cancel`]) until shortly before it runs.
/// Once a worker's jobs are measured to take under 200 µs each, it is given up to 64 at a
/// time while the queue is long, so that tiny jobs cost little each; a job handed to a worker
/// is `running()` and can no longer be cancelled. Results go back as soon as each job ends.
///
/// Done-callbacks of the pool's futures run on the pool's manager thread, which also
/// delivers every result: a callback that blocks waiting for another job of the same pool
/// waits forever (as in Python). Hand such work to another thread or task.
///
/// # Examples
///
/// ```
/// use ringloop::ProcessPool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = ProcessPool::new(2).unwrap();
/// let fut = pool.submit(square, 7);
/// assert_eq!(fut.result(None), Ok(49));
/// let squares: Vec<u64> = pool.map(square, 1..=4, 2).collect();
/// assert_eq!(squares, [1, 4, 9, 16]);
/// // Non-capturing closures coerce to `fn` pointers.
/// assert_eq!(pool.submit(|s: String| s.len(), "four".into()).result(None), Ok(4));
/// ```
pub struct ProcessPool {
    shared: Arc<Shared>,
    manager: Mutex<Option<JoinHandle<()>>>,
    manager_thread: ThreadId,
}

/// State shared by the pool's handles and its manager thread.
pub(super) struct Shared {
    state: Mutex<State>,
    config: Config,
}

struct Config {
    max_workers: usize,
    /// 0: unlimited.
    max_tasks_per_child: u64,
    /// The initializer's code offset.
    initializer: Option<u64>,
}

struct State {
    /// Jobs not yet handed to a worker.
    queue: VecDeque<Job>,
    shutdown: bool,
    broken: Option<String>,
    /// The manager's dispatcher, waiting for work.
    waker: Option<Waker>,
}

/// A job: its frame (until sent), and how to settle its future.
pub(super) struct Job {
    frame: Vec<u8>,
    settle: Box<dyn Settle>,
}

/// A job's typed end: starts, settles or fails the [`PoolFuture`] of one job.
pub(super) trait Settle: Send {
    /// Marks the future running; `false` if it was cancelled (skip the job).
    fn start(&self) -> bool;
    /// The worker's answer: a `wire::STATUS_*` and its bytes.
    fn finish(self: Box<Self>, status: u8, bytes: &[u8]);
    fn fail(self: Box<Self>, err: PoolError);
}

impl<T: DeserializeOwned + Send> Settle for Completer<T> {
    fn start(&self) -> bool {
        self.set_running_or_notify_cancel()
    }

    fn finish(self: Box<Self>, status: u8, bytes: &[u8]) {
        let text = || String::from_utf8_lossy(bytes).into_owned();
        match status {
            // The result type's `Deserialize` is user code, run on the manager thread: a
            // panic in it fails this job rather than the manager.
            wire::STATUS_OK => {
                match catch_unwind(AssertUnwindSafe(|| postcard::from_bytes::<T>(bytes))) {
                    Ok(Ok(v)) => self.set_result(v),
                    Ok(Err(e)) => self.set_error(PoolError::Failed(format!(
                        "cannot deserialize the job's result: {e}"
                    ))),
                    Err(p) => self.set_error(PoolError::Failed(format!(
                        "deserializing the job's result panicked: {}",
                        panic_message(&*p)
                    ))),
                }
            }
            wire::STATUS_PANIC => self.set_error(PoolError::Panicked(text())),
            _ => self.set_error(PoolError::Failed(text())),
        }
    }

    fn fail(self: Box<Self>, err: PoolError) {
        self.set_error(err);
    }
}

/// Settings for a [`ProcessPool`]: Python's `ProcessPoolExecutor` keyword arguments.
#[derive(Debug, Clone, Default)]
pub struct ProcessPoolBuilder {
    max_workers: usize,
    initializer: Option<fn()>,
    max_tasks_per_child: u64,
}

impl ProcessPoolBuilder {
    /// The most worker processes at once (default, or 0: the number of CPUs, as Python).
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = n;
        self
    }

    /// A function each worker runs once before its first job. If it panics in a worker, the
    /// pool is broken (every job fails with [`PoolError::Broken`] carrying the message).
    pub fn initializer(mut self, f: fn()) -> Self {
        self.initializer = Some(f);
        self
    }

    /// Replace a worker by a fresh process after it has run `n` jobs (default, or 0: never).
    /// Useful when jobs leak memory or state.
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks_per_child = n;
        self
    }

    /// Starts the pool's manager thread (workers start as jobs arrive).
    ///
    /// # Errors
    ///
    /// If the manager thread or its loop cannot be created.
    pub fn build(self) -> io::Result<ProcessPool> {
        if std::env::var_os(worker::ENV).is_some() {
            // A worker whose `main` ran (the hook was turned off and `init()` not called):
            // it must not start pools of its own (a fork bomb). The parent reports it.
            eprintln!(
                "ringloop: this process is a ProcessPool worker, but its main() ran: call \
                 ringloop::ProcessPool::init() first in main (see its documentation)"
            );
            std::process::exit(worker::EXIT_SETUP);
        }
        worker::keep_hook();
        let max_workers = match self.max_workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                shutdown: false,
                broken: None,
                waker: None,
            }),
            config: Config {
                max_workers,
                max_tasks_per_child: self.max_tasks_per_child,
                initializer: self.initializer.map(|f| wire::offset_of(f as usize)),
            },
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let for_manager = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("ringloop-process-pool".into())
            .spawn(move || match crate::Runtime::new() {
                Ok(rt) => {
                    let _ = tx.send(Ok(()));
                    rt.block_on(manager::run(for_manager));
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            })?;
        let started = rx.recv().unwrap_or_else(|_| {
            Err(io::Error::other(
                "ringloop: the process pool's manager thread died at start",
            ))
        });
        started?;
        Ok(ProcessPool {
            shared,
            manager_thread: thread.thread().id(),
            manager: Mutex::new(Some(thread)),
        })
    }
}

impl ProcessPool {
    /// Serves jobs and exits if this process is a pool's worker; returns at once otherwise.
    ///
    /// This is Rust's counterpart of Python's `if __name__ == "__main__":` guard, and
    /// usually unnecessary: a constructor hook already serves jobs in a worker before `main`
    /// runs, so `main` never runs there (this also makes pools work inside test binaries).
    /// Call it first in `main` if the hook is turned off with the environment variable
    /// `RINGLOOP_PROCESS_POOL_CTOR=0` (for a program that must run no code before `main`).
    /// Without either, a worker would run `main`: the first pool it tries to make exits it
    /// instead (no fork bomb), and the parent's jobs fail with [`PoolError::Broken`] saying
    /// that `init()` was missing.
    ///
    /// Call it before starting threads: a worker takes its marker out of the environment.
    pub fn init() {
        worker::serve_if_worker();
    }

    /// A pool of at most `max_workers` worker processes (0: the number of CPUs).
    ///
    /// # Errors
    ///
    /// If the manager thread or its loop cannot be created.
    pub fn new(max_workers: usize) -> io::Result<ProcessPool> {
        Self::builder().max_workers(max_workers).build()
    }

    /// A builder for the other settings (initializer, max_tasks_per_child).
    pub fn builder() -> ProcessPoolBuilder {
        ProcessPoolBuilder::default()
    }

    /// The most worker processes this pool runs at once.
    pub fn max_workers(&self) -> usize {
        self.shared.config.max_workers
    }

    /// Runs `f(arg)` in a worker process. The argument is serialized now: one that cannot
    /// be fails the future at once with [`PoolError::Failed`]. After
    /// [`shutdown`](Self::shutdown) the future fails with [`PoolError::Shutdown`]; on a broken
    /// pool with [`PoolError::Broken`].
    pub fn submit<A, R>(&self, f: fn(A) -> R, arg: A) -> PoolFuture<R>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let call: Call = wire::call_one::<A, R>;
        self.submit_raw(call, f as usize, &arg)
    }

    /// Like `map` on an iterator, in worker processes: the items go in chunks of `chunksize`
    /// (0 counts as 1), each chunk one job; the values come back in input order. Every chunk is
    /// submitted now (as Python's `map`); the iterator blocks for each result in turn.
    ///
    /// The iterator panics, with the job's error, at an item whose job failed (Python's
    /// `map` re-raises there); [`try_map`](Self::try_map) yields the errors instead.
    pub fn map<A, R, I>(&self, f: fn(A) -> R, iter: I, chunksize: usize) -> ProcessMap<R>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        ProcessMap(self.try_map(f, iter, chunksize))
    }

    /// [`map`](Self::map) yielding `Result`s: `Err(PoolError::Panicked(msg))` for an item
    /// whose call panicked (the other items of its chunk are unaffected), or the chunk's
    /// error (cancelled, broken pool, shut down) for each of its items.
    pub fn try_map<A, R, I>(&self, f: fn(A) -> R, iter: I, chunksize: usize) -> ProcessTryMap<R>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let call: Call = wire::call_chunk::<A, R>;
        let chunksize = chunksize.max(1);
        let mut chunks = VecDeque::new();
        let mut items = iter.into_iter();
        loop {
            let chunk: Vec<A> = items.by_ref().take(chunksize).collect();
            if chunk.is_empty() {
                break;
            }
            let fut = self.submit_raw(call, f as usize, &chunk);
            let refused = fut.done()
                && fut
                    .exception(None)
                    .ok()
                    .flatten()
                    .is_some_and(|e| e.is_shutdown() || e.is_broken());
            chunks.push_back((fut, chunk.len()));
            if refused {
                break; // Python's `map` raises from `submit`: take no more input
            }
        }
        ProcessTryMap {
            chunks,
            current: Chunk::Values(Vec::new().into_iter()),
        }
    }

    fn submit_raw<T, P>(&self, call: Call, func: usize, arg: &P) -> PoolFuture<T>
    where
        T: DeserializeOwned + Send + 'static,
        P: Serialize + ?Sized,
    {
        if !wire::in_executable(func) || !wire::in_executable(call as usize) {
            return PoolFuture::failed(PoolError::Failed(
                "the job's function is not code of the executable (a dynamically loaded \
                 library?): a worker process could not find it"
                    .into(),
            ));
        }
        let mut frame = Vec::with_capacity(64);
        let start = wire::begin_frame(&mut frame, wire::JOB);
        frame.extend_from_slice(&wire::offset_of(call as usize).to_le_bytes());
        frame.extend_from_slice(&wire::offset_of(func).to_le_bytes());
        let mut frame = match postcard::to_extend(arg, frame) {
            Ok(frame) => frame,
            Err(e) => {
                return PoolFuture::failed(PoolError::Failed(format!(
                    "cannot serialize the job's argument: {e}"
                )));
            }
        };
        if frame.len() - 4 > u32::MAX as usize {
            return PoolFuture::failed(PoolError::Failed(
                "the job's argument is larger than 4 GiB".into(),
            ));
        }
        wire::end_frame(&mut frame, start);
        let (fut, completer) = PoolFuture::pending();
        let job = Job {
            frame,
            settle: Box::new(completer),
        };
        let mut st = lock(&self.shared.state);
        if let Some(why) = &st.broken {
            let err = PoolError::Broken(why.clone());
            drop(st);
            job.settle.fail(err);
            return fut;
        }
        if st.shutdown {
            drop(st);
            job.settle.fail(PoolError::Shutdown);
            return fut;
        }
        st.queue.push_back(job);
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
        fut
    }

    /// Stops taking jobs (later submits fail with [`PoolError::Shutdown`]). With
    /// `cancel_futures`, jobs not yet handed to a worker are cancelled; the others run to
    /// completion. With `wait`, returns once every job is done and every worker has exited
    /// (not when called from one of this pool's done-callbacks, which run on the manager
    /// thread: there it does not wait). Calling it again is harmless.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        let (cancelled, waker) = {
            let mut st = lock(&self.shared.state);
            st.shutdown = true;
            let cancelled: Vec<Job> = if cancel_futures {
                st.queue.drain(..).collect()
            } else {
                Vec::new()
            };
            (cancelled, st.waker.take())
        };
        for job in cancelled {
            job.settle.fail(PoolError::Cancelled);
        }
        if let Some(w) = waker {
            w.wake();
        }
        if wait && std::thread::current().id() != self.manager_thread {
            // Joined under the lock, so that a second caller waits for the first one's join
            // instead of returning while workers still run.
            let mut thread = lock(&self.manager);
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Waits for every job and worker, as leaving Python's `with` block does.
impl Drop for ProcessPool {
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

impl fmt::Debug for ProcessPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.shared.state);
        f.debug_struct("ProcessPool")
            .field("max_workers", &self.shared.config.max_workers)
            .field("queued", &st.queue.len())
            .field("shutdown", &st.shutdown)
            .field("broken", &st.broken)
            .finish()
    }
}

/// A `map` chunk's future.
type ChunkFuture<R> = PoolFuture<wire::ChunkResult<R>>;

/// The items of the chunk being yielded.
enum Chunk<R> {
    Values(std::vec::IntoIter<R>),
    Mixed(std::vec::IntoIter<Result<R, String>>),
    Failed(PoolError, usize),
}

impl<R> Chunk<R> {
    fn next(&mut self) -> Option<Result<R, PoolError>> {
        match self {
            Chunk::Values(it) => it.next().map(Ok),
            Chunk::Mixed(it) => it.next().map(|r| r.map_err(PoolError::Panicked)),
            Chunk::Failed(_, 0) => None,
            Chunk::Failed(e, n) => {
                *n -= 1;
                Some(Err(e.clone()))
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Chunk::Values(it) => it.len(),
            Chunk::Mixed(it) => it.len(),
            Chunk::Failed(_, n) => *n,
        }
    }
}

/// The results of [`ProcessPool::try_map`], in input order.
///
/// Each `next()` blocks until the next item's chunk is done. Dropping the iterator cancels
/// the chunks not yet handed to a worker.
pub struct ProcessTryMap<R> {
    /// Each chunk's future and its length.
    chunks: VecDeque<(ChunkFuture<R>, usize)>,
    current: Chunk<R>,
}

impl<R> Iterator for ProcessTryMap<R> {
    type Item = Result<R, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.current.next() {
                return Some(item);
            }
            let (fut, n) = self.chunks.pop_front()?;
            self.current = match fut.into_result(None) {
                Ok(Ok(values)) => Chunk::Values(values.into_iter()),
                Ok(Err(mixed)) => Chunk::Mixed(mixed.into_iter()),
                Err(e) => Chunk::Failed(e, n),
            };
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.current.len() + self.chunks.iter().map(|(_, n)| n).sum::<usize>();
        (n, Some(n))
    }
}

impl<R> Drop for ProcessTryMap<R> {
    fn drop(&mut self) {
        for (fut, _) in &self.chunks {
            fut.cancel();
        }
    }
}

impl<R> fmt::Debug for ProcessTryMap<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessTryMap")
            .field("chunks_left", &self.chunks.len())
            .finish()
    }
}

/// The values of [`ProcessPool::map`], in input order: a [`ProcessTryMap`] that panics where
/// an item's job failed.
#[derive(Debug)]
pub struct ProcessMap<R>(ProcessTryMap<R>);

impl<R> Iterator for ProcessMap<R> {
    type Item = R;

    /// # Panics
    ///
    /// If the call for this item panicked, or its chunk was cancelled or the pool broke
    /// or was shut down first; the message names the [`PoolError`].
    fn next(&mut self) -> Option<R> {
        self.0
            .next()
            .map(|r| r.unwrap_or_else(|e| panic!("ringloop: ProcessPool::map job failed: {e}")))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}
