//! [`ThreadPool`], [`ThreadPoolBuilder`], the job queue and the worker threads.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::error::{PoolError, panic_message};
use super::future::{JobCell, PoolFuture, Shared, lock};
use super::map::{Map, TryMap};

/// Default for [`ThreadPoolBuilder::idle_timeout`].
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an idle worker polls the queue before sleeping on the condvar.
const SPIN_TIME: Duration = Duration::from_micros(50);

/// Numbers the default thread-name prefixes, like Python's `ThreadPoolExecutor-N`.
static POOL_COUNTER: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Address of the pool whose worker this thread is (0 if none): lets
    /// `shutdown(wait = true)` called from a job avoid waiting for its own thread.
    static CURRENT_POOL: Cell<usize> = const { Cell::new(0) };
}

/// A queued unit of work: runs the job, or finishes its future without running it. The queue
/// entry is the job's shared state itself (one allocation per job; see `JobCell`).
pub(crate) trait Job: Send + Sync {
    /// Runs the job unless its future was cancelled, and completes the future.
    fn run(self: Arc<Self>);
    /// Finishes the future with `err` without running the job (if it is still pending).
    fn abandon(self: Arc<Self>, err: PoolError);
}

impl<F, T> Job for Shared<T, JobCell<F>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn run(self: Arc<Self>) {
        // SAFETY: this Arc is the job's queue entry, which the worker running it now holds.
        let f = unsafe { self.job.take() };
        let shared: Arc<Shared<T>> = self;
        if !shared.try_start() {
            return; // cancelled while queued: never runs (the closure drops here)
        }
        let f = f.expect("ringloop: a queued job runs at most once");
        let result = catch_unwind(AssertUnwindSafe(f))
            .map_err(|payload| PoolError::Panicked(panic_message(&*payload)));
        Shared::settle(&shared, result);
    }

    fn abandon(self: Arc<Self>, err: PoolError) {
        // SAFETY: as in `run`: the caller holds the queue entry.
        let f = unsafe { self.job.take() };
        let shared: Arc<Shared<T>> = self;
        Shared::fail_if_pending(&shared, err);
        drop(f);
    }
}

/// What to do (outside the lock) to get one more worker onto the queue.
enum Wake {
    None,
    Notify,
    Spawn(usize),
}

/// Mutable pool state, under `PoolInner::state`.
struct PoolState {
    queue: VecDeque<Arc<dyn Job>>,
    /// Live worker threads (including ones being spawned).
    threads: usize,
    /// Workers blocked on `work_cv`.
    sleeping: usize,
    /// Idle workers briefly polling `PoolInner::queued` before going to sleep.
    spinning: usize,
    /// Sleeping workers already claimed by a submit (woken, not yet running).
    /// A submit starts a new thread only when `sleeping == claimed` (no idle worker).
    claimed: usize,
    /// Counter for worker thread names.
    spawned: usize,
    shutdown: bool,
    broken: Option<String>,
    /// Workers blocked in `shutdown(wait = true)` called from their own job.
    in_shutdown_wait: usize,
}

/// The state shared by every [`ThreadPool`] clone, the workers and [`Map`] iterators.
pub(crate) struct PoolInner {
    state: Mutex<PoolState>,
    /// Signalled when work is queued (or on shutdown / breakage).
    work_cv: Condvar,
    /// Signalled when a worker exits.
    exit_cv: Condvar,
    /// Join handles of the workers, so that `shutdown(wait = true)` returns only once their
    /// threads are gone (Python joins them too).
    handles: Mutex<Vec<thread::JoinHandle<()>>>,
    /// `queue.len()`, readable without the lock by spinning workers.
    queued: AtomicUsize,

    /// How many idle workers may spin at once before sleeping.
    max_spinning: usize,
    max_workers: usize,
    name_prefix: String,
    initializer: Option<Arc<dyn Fn() + Send + Sync>>,
    idle_timeout: Duration,
}

impl PoolInner {
    fn id(&self) -> usize {
        self as *const PoolInner as usize
    }

    /// Queues `f`, waking an idle worker or starting a new one (up to `max_workers`).
    pub(crate) fn submit<F, T>(self: &Arc<Self>, f: F) -> PoolFuture<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.try_submit(f).unwrap_or_else(PoolFuture::failed)
    }

    /// Like [`submit`](Self::submit), but says whether the pool refused the job
    /// (`Err(Shutdown)` / `Err(Broken)`).
    pub(crate) fn try_submit<F, T>(self: &Arc<Self>, f: F) -> Result<PoolFuture<T>, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let cell = Shared::new_job(JobCell::new(f));
        let shared: Arc<Shared<T>> = cell.clone();
        let job: Arc<dyn Job> = cell;
        let mut st = lock(&self.state);
        let refused = if let Some(why) = &st.broken {
            Some(PoolError::Broken(why.clone()))
        } else if st.shutdown {
            Some(PoolError::Shutdown)
        } else {
            None
        };
        if let Some(err) = refused {
            drop(st);
            // Drops the user's closure, outside our lock.
            job.abandon(err.clone());
            return Err(err);
        }
        st.queue.push_back(job);
        self.queued.store(st.queue.len(), Ordering::Relaxed);
        // A spinning worker (idle, awake) will take the job, and wakes another worker
        // itself if more jobs are queued: no wake-up syscall on this thread.
        let wake = if st.spinning > 0 {
            Wake::None
        } else {
            self.wake_one(&mut st)
        };
        drop(st);
        self.do_wake(wake);
        Ok(PoolFuture::from_shared(shared))
    }

    /// Decides how to get one more worker onto the queue: wake an idle (sleeping,
    /// unclaimed) worker, else start a thread if below `max_workers`.
    fn wake_one(&self, st: &mut PoolState) -> Wake {
        if st.sleeping > st.claimed {
            st.claimed += 1;
            Wake::Notify
        } else if st.threads < self.max_workers {
            st.threads += 1;
            st.spawned += 1;
            Wake::Spawn(st.spawned - 1)
        } else {
            Wake::None
        }
    }

    /// Carries out a [`wake_one`](Self::wake_one) decision, without the lock held.
    fn do_wake(self: &Arc<Self>, wake: Wake) {
        match wake {
            Wake::None => {}
            Wake::Notify => {
                self.work_cv.notify_one();
            }
            Wake::Spawn(index) => self.spawn_worker(index),
        }
    }

    fn spawn_worker(self: &Arc<Self>, index: usize) {
        let inner = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name(format!("{}_{}", self.name_prefix, index))
            .spawn(move || inner.worker_main());
        let spawned = spawned.map(|handle| {
            let mut handles = lock(&self.handles);
            // Forget workers that already exited (idle timeout), so the list stays short.
            handles.retain(|h| !h.is_finished());
            handles.push(handle);
        });
        if let Err(e) = spawned {
            let mut st = lock(&self.state);
            st.threads -= 1;
            // With no worker left nobody would ever run the queue: fail it.
            let none_left = st.threads == 0;
            let orphaned = self.take_queue_if(&mut st, none_left);
            drop(st);
            self.exit_cv.notify_all();
            let why = format!("could not start a worker thread: {e}");
            for job in orphaned {
                job.abandon(PoolError::Broken(why.clone()));
            }
        }
    }

    fn worker_main(self: Arc<Self>) {
        CURRENT_POOL.set(self.id());
        if let Some(init) = &self.initializer
            && let Err(payload) = catch_unwind(AssertUnwindSafe(|| init()))
        {
            self.initializer_failed(panic_message(&*payload));
            return;
        }
        let mut st = lock(&self.state);
        // Whether this worker already spun since it last ran a job.
        let mut spun = false;
        loop {
            if let Some(job) = st.queue.pop_front() {
                self.queued.store(st.queue.len(), Ordering::Relaxed);
                // More work queued and nobody spinning: get another worker going
                // before running these jobs (which may block for long).
                let wake = if !st.queue.is_empty() && st.spinning == 0 {
                    self.wake_one(&mut st)
                } else {
                    Wake::None
                };
                drop(st);
                self.do_wake(wake);
                job.run();
                st = lock(&self.state);
                spun = false;
                continue;
            }
            if st.shutdown || st.broken.is_some() {
                break;
            }
            if !spun && st.spinning < self.max_spinning {
                // Poll briefly before sleeping: under a stream of small jobs this
                // avoids a sleep + wake-up (two syscalls) per job.
                spun = true;
                st.spinning += 1;
                drop(st);
                let start = Instant::now();
                while self.queued.load(Ordering::Relaxed) == 0 && start.elapsed() < SPIN_TIME {
                    thread::yield_now();
                }
                st = lock(&self.state);
                st.spinning -= 1;
                continue;
            }
            st.sleeping += 1;
            let (guard, wait) = self
                .work_cv
                .wait_timeout(st, self.idle_timeout)
                .unwrap_or_else(PoisonError::into_inner);
            st = guard;
            st.sleeping -= 1;
            st.claimed = st.claimed.saturating_sub(1).min(st.sleeping);
            if wait.timed_out() && st.queue.is_empty() && !st.shutdown {
                break; // idle for too long
            }
        }
        st.threads -= 1;
        drop(st);
        self.exit_cv.notify_all();
    }

    /// Python's `_initializer_failed`: the pool becomes broken, queued jobs fail.
    fn initializer_failed(&self, msg: String) {
        let mut st = lock(&self.state);
        let why = st
            .broken
            .get_or_insert_with(|| format!("initializer panicked: {msg}"))
            .clone();
        let drained = self.take_queue_if(&mut st, true);
        st.threads -= 1;
        drop(st);
        self.work_cv.notify_all();
        self.exit_cv.notify_all();
        for job in drained {
            job.abandon(PoolError::Broken(why.clone()));
        }
    }

    /// Empties the queue if `cond` (keeping `queued` in step); the caller abandons the jobs
    /// once the lock is released.
    fn take_queue_if(&self, st: &mut PoolState, cond: bool) -> Vec<Arc<dyn Job>> {
        if !cond {
            return Vec::new();
        }
        self.queued.store(0, Ordering::Relaxed);
        st.queue.drain(..).collect()
    }

    pub(crate) fn shutdown(&self, wait: bool, cancel_futures: bool) {
        let mut st = lock(&self.state);
        st.shutdown = true;
        let drained = self.take_queue_if(&mut st, cancel_futures);
        drop(st);
        self.work_cv.notify_all();
        for job in drained {
            job.abandon(PoolError::Cancelled);
        }
        if wait {
            // A job shutting down its own pool must not wait for its own thread, nor for
            // other workers doing the same (each waits for the rest to exit).
            let own = CURRENT_POOL.get() == self.id();
            let mut st = lock(&self.state);
            if own {
                st.in_shutdown_wait += 1;
                self.exit_cv.notify_all();
            }
            while st.threads > st.in_shutdown_wait {
                st = self
                    .exit_cv
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if own {
                st.in_shutdown_wait -= 1;
                // Those workers are still alive (in their jobs): only a caller from outside
                // the pool joins the threads.
                return;
            }
            drop(st);
            let me = thread::current().id();
            let handles = std::mem::take(&mut *lock(&self.handles));
            for handle in handles {
                if handle.thread().id() != me {
                    // A worker's panic is caught per job; an exit by panic is a bug we
                    // must not turn into a second panic during shutdown.
                    let _ = handle.join();
                }
            }
        }
    }
}

/// Owns the pool's lifetime: dropping the last [`ThreadPool`] clone drops this.
struct Handle {
    inner: Arc<PoolInner>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inner.shutdown(true, false);
    }
}

/// A pool of worker threads running blocking closures, like Python's
/// `concurrent.futures.ThreadPoolExecutor`.
///
/// * Workers start lazily: a [`submit`](Self::submit) starts a thread only when no worker
///   is idle, up to [`max_workers`](ThreadPoolBuilder::max_workers); a worker idle for
///   [`idle_timeout`](ThreadPoolBuilder::idle_timeout) exits.
/// * Hand-off is a `Mutex<VecDeque>` + `Condvar`; a worker that runs out of work first
///   polls the queue for up to 50 µs (yielding; at most a few workers at once) before
///   sleeping, so a stream of small jobs costs no wake-up syscalls.
/// * A panicking job finishes its future with [`PoolError::Panicked`]; the worker survives.
/// * `ThreadPool` is [`Clone`]: clones share one pool. [`shutdown`](Self::shutdown) on any
///   clone shuts it down for all; dropping the **last** clone behaves as
///   `shutdown(true, false)` (Python's `with` block): queued jobs still run, and the drop
///   waits for them.
///
/// # Examples
///
/// ```
/// use ringloop::ThreadPool;
///
/// let pool = ThreadPool::new(4);
/// let futs: Vec<_> = (0..8u64).map(|i| pool.submit(move || i * i)).collect();
/// let squares: Vec<u64> = futs.into_iter().map(|f| f.into_result(None).unwrap()).collect();
/// assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49]);
/// ```
#[derive(Clone)]
pub struct ThreadPool {
    handle: Arc<Handle>,
}

impl ThreadPool {
    /// A pool of at most `max_workers` threads, with default settings otherwise.
    ///
    /// # Panics
    ///
    /// If `max_workers` is 0.
    pub fn new(max_workers: usize) -> ThreadPool {
        ThreadPool::builder().max_workers(max_workers).build()
    }

    /// A [`ThreadPoolBuilder`] to configure worker count, names, initializer and idle timeout.
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder::new()
    }

    fn inner(&self) -> &Arc<PoolInner> {
        &self.handle.inner
    }

    /// Schedules `f` on a worker and returns a [`PoolFuture`] for its result.
    ///
    /// Never panics and never blocks on the job: after [`shutdown`](Self::shutdown) the
    /// future is already failed with [`PoolError::Shutdown`], and on a broken pool with
    /// [`PoolError::Broken`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ringloop::{PoolError, ThreadPool};
    ///
    /// let pool = ThreadPool::new(2);
    /// assert_eq!(pool.submit(|| 1 + 1).result(None), Ok(2));
    /// pool.shutdown(true, false);
    /// assert_eq!(pool.submit(|| 1 + 1).result(None), Err(PoolError::Shutdown));
    /// ```
    pub fn submit<F, T>(&self, f: F) -> PoolFuture<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.inner().submit(f)
    }

    /// Runs `f` on every item of `iter` concurrently and yields the results **in input
    /// order**, like Python's `Executor.map`.
    ///
    /// All items are pulled from `iter` and submitted now (use
    /// [`map_buffered`](Self::map_buffered) to bound that). The iterator yields the values;
    /// where a job failed it panics with the job's [`PoolError`], as Python re-raises the
    /// job's exception ([`try_map`](Self::try_map) yields `Result`s instead). Dropping the
    /// iterator cancels the jobs that have not started (as Python closing the generator).
    ///
    /// # Examples
    ///
    /// ```
    /// use ringloop::ThreadPool;
    ///
    /// let pool = ThreadPool::new(3);
    /// let out: Vec<u32> = pool.map(|x: u32| x * 10, [1, 2, 3]).collect();
    /// assert_eq!(out, [10, 20, 30]);
    /// ```
    pub fn map<I, F, T>(&self, f: F, iter: I) -> Map<I::IntoIter, T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        Map(self.try_map(f, iter))
    }

    /// Like [`map`](Self::map), but with bounded look-ahead (Python 3.14's `buffersize`):
    /// `buffersize` items are pulled and submitted now, then one more each time a result
    /// is consumed, so at most `buffersize` items are in flight ahead of the consumer.
    /// Works with infinite iterators.
    ///
    /// # Panics
    ///
    /// If `buffersize` is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use ringloop::ThreadPool;
    ///
    /// let pool = ThreadPool::new(2);
    /// let first: Vec<u64> = pool
    ///     .map_buffered(|x: u64| x + 1, 0.., 4) // infinite input
    ///     .take(3)
    ///     .collect();
    /// assert_eq!(first, [1, 2, 3]);
    /// ```
    pub fn map_buffered<I, F, T>(&self, f: F, iter: I, buffersize: usize) -> Map<I::IntoIter, T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        Map(self.try_map_buffered(f, iter, buffersize))
    }

    /// Like [`map`](Self::map), yielding each job's `Result<T, PoolError>` instead of
    /// panicking on a failed job: `Err(PoolError::Panicked(msg))` for a job that panicked.
    /// `collect::<Result<Vec<_>, _>>()` stops at the first error, and dropping the iterator
    /// then cancels the remaining jobs that have not started.
    ///
    /// # Examples
    ///
    /// ```
    /// use ringloop::{PoolError, ThreadPool};
    ///
    /// let pool = ThreadPool::new(2);
    /// let out: Vec<Result<u32, PoolError>> = pool
    ///     .try_map(|x: u32| if x == 2 { panic!("two") } else { x }, [1, 2, 3])
    ///     .collect();
    /// assert_eq!(out[0], Ok(1));
    /// assert_eq!(out[1], Err(PoolError::Panicked("two".into())));
    /// ```
    pub fn try_map<I, F, T>(&self, f: F, iter: I) -> TryMap<I::IntoIter, T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        TryMap::new(
            Arc::clone(self.inner()),
            Arc::new(f),
            iter.into_iter(),
            None,
        )
    }

    /// [`try_map`](Self::try_map) with the bounded look-ahead of
    /// [`map_buffered`](Self::map_buffered).
    ///
    /// # Panics
    ///
    /// If `buffersize` is 0.
    pub fn try_map_buffered<I, F, T>(
        &self,
        f: F,
        iter: I,
        buffersize: usize,
    ) -> TryMap<I::IntoIter, T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        assert!(
            buffersize >= 1,
            "ThreadPool::map_buffered: buffersize must be at least 1"
        );
        TryMap::new(
            Arc::clone(self.inner()),
            Arc::new(f),
            iter.into_iter(),
            Some(buffersize),
        )
    }

    /// Stops accepting jobs (later [`submit`](Self::submit)s return futures failed with
    /// [`PoolError::Shutdown`]), like Python's `Executor.shutdown`.
    ///
    /// * `cancel_futures`: every queued job that has not started is cancelled now (its
    ///   future reports [`PoolError::Cancelled`], runs its done-callbacks on this thread,
    ///   and the job never runs). Otherwise queued jobs still run.
    /// * `wait`: block until every worker has finished its jobs and exited. Called from
    ///   a job of this pool, it does not wait for the calling worker itself.
    ///
    /// Calling it again is harmless.
    ///
    /// # Examples
    ///
    /// ```
    /// use ringloop::ThreadPool;
    /// use std::sync::mpsc;
    ///
    /// let pool = ThreadPool::new(1);
    /// let (tx, rx) = mpsc::channel::<()>();
    /// let running = pool.submit(move || rx.recv().is_ok());
    /// let queued = pool.submit(|| unreachable!("cancelled by shutdown"));
    /// while !running.running() { std::thread::yield_now(); }
    /// pool.shutdown(false, true);
    /// assert!(queued.cancelled());
    /// tx.send(()).unwrap();
    /// assert_eq!(running.result(None), Ok(true));
    /// ```
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.inner().shutdown(wait, cancel_futures);
    }

    /// The most worker threads this pool will run at once.
    pub fn max_workers(&self) -> usize {
        self.inner().max_workers
    }

    /// How many worker threads are alive now (0 before the first submit).
    pub fn worker_count(&self) -> usize {
        lock(&self.inner().state).threads
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner();
        let st = lock(&inner.state);
        f.debug_struct("ThreadPool")
            .field("name_prefix", &inner.name_prefix)
            .field("max_workers", &inner.max_workers)
            .field("workers", &st.threads)
            .field("idle", &(st.sleeping + st.spinning))
            .field("queued", &st.queue.len())
            .field("shutdown", &st.shutdown)
            .field("broken", &st.broken)
            .finish()
    }
}

/// Configures a [`ThreadPool`] (Python's `ThreadPoolExecutor(...)` keyword arguments).
///
/// # Examples
///
/// ```
/// use ringloop::ThreadPool;
/// use std::time::Duration;
///
/// let pool = ThreadPool::builder()
///     .max_workers(2)
///     .thread_name_prefix("io")
///     .initializer(|| println!("worker starting"))
///     .idle_timeout(Duration::from_secs(30))
///     .build();
/// let name = pool.submit(|| std::thread::current().name().map(str::to_owned));
/// assert_eq!(name.result(None).unwrap().as_deref(), Some("io_0"));
/// ```
#[derive(Clone)]
pub struct ThreadPoolBuilder {
    max_workers: Option<usize>,
    thread_name_prefix: Option<String>,
    initializer: Option<Arc<dyn Fn() + Send + Sync>>,
    idle_timeout: Duration,
}

impl Default for ThreadPoolBuilder {
    fn default() -> Self {
        ThreadPoolBuilder::new()
    }
}

impl ThreadPoolBuilder {
    /// A builder with the defaults: `min(32, available_parallelism + 4)` workers, names
    /// `ringloop-pool-N_i`, no initializer, 10 s idle timeout.
    pub fn new() -> ThreadPoolBuilder {
        ThreadPoolBuilder {
            max_workers: None,
            thread_name_prefix: None,
            initializer: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// Maximum number of worker threads. Default: `min(32, available_parallelism + 4)`,
    /// as Python. [`build`](Self::build) panics if this is 0.
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// Worker threads are named `"{prefix}_{i}"` (`i` counts threads started by this
    /// pool from 0). Default prefix: `ringloop-pool-N`, `N` numbering pools.
    pub fn thread_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name_prefix = Some(prefix.into());
        self
    }

    /// Runs `f` once in each worker thread before its first job. If it panics the pool
    /// becomes **broken** (Python's `BrokenThreadPool`): queued jobs and every later
    /// submit fail with [`PoolError::Broken`].
    pub fn initializer<F>(mut self, f: F) -> Self
    where
        F: Fn() + Send + Sync + 'static,
    {
        self.initializer = Some(Arc::new(f));
        self
    }

    /// A worker that finds no work for this long exits (a later submit starts a new
    /// one). Default: 10 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Creates the pool. No thread starts until the first [`ThreadPool::submit`].
    ///
    /// # Panics
    ///
    /// If [`max_workers`](Self::max_workers) was set to 0.
    pub fn build(self) -> ThreadPool {
        let max_workers = self.max_workers.unwrap_or_else(|| {
            let cpus = thread::available_parallelism().map_or(1, |n| n.get());
            (cpus + 4).min(32)
        });
        assert!(
            max_workers >= 1,
            "ThreadPool: max_workers must be at least 1 (got 0)"
        );
        let name_prefix = self.thread_name_prefix.unwrap_or_else(|| {
            format!(
                "ringloop-pool-{}",
                POOL_COUNTER.fetch_add(1, Ordering::Relaxed)
            )
        });
        let inner = Arc::new(PoolInner {
            state: Mutex::new(PoolState {
                queue: VecDeque::new(),
                threads: 0,
                sleeping: 0,
                spinning: 0,
                claimed: 0,
                spawned: 0,
                shutdown: false,
                broken: None,
                in_shutdown_wait: 0,
            }),
            work_cv: Condvar::new(),
            exit_cv: Condvar::new(),
            handles: Mutex::new(Vec::new()),
            queued: AtomicUsize::new(0),
            max_spinning: (thread::available_parallelism().map_or(1, |n| n.get()) / 2).clamp(2, 8),
            max_workers,
            name_prefix,
            initializer: self.initializer,
            idle_timeout: self.idle_timeout,
        });
        ThreadPool {
            handle: Arc::new(Handle { inner }),
        }
    }
}

impl fmt::Debug for ThreadPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolBuilder")
            .field("max_workers", &self.max_workers)
            .field("thread_name_prefix", &self.thread_name_prefix)
            .field("initializer", &self.initializer.as_ref().map(|_| "Fn()"))
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}
