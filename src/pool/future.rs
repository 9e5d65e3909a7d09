//! [`PoolFuture`] and the completion state it shares with the job, the pool and
//! [`wait`](super::wait) / [`as_completed`](super::as_completed) waiters.

use std::cell::UnsafeCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::error::PoolError;
use crate::callbacks::{CallbackId, Callbacks, run_guarded};

/// A done-callback registered with [`PoolFuture::add_done_callback`].
type Callback<T> = Box<dyn FnOnce(&PoolFuture<T>) + Send + 'static>;

/// Source of waker keys for cloned handles (the original handle uses key 0).
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// Where a job is in its life.
enum State<T> {
    /// Queued, not started: can still be cancelled.
    Pending,
    /// A worker is running the job.
    Running,
    /// Finished: the value, the panic, the cancellation, ...
    Done(Result<T, PoolError>),
    /// Finished with `Ok`, and the value was moved out (`.await` / `into_result`).
    Taken,
}

/// How a future finished, as seen by [`wait`](super::wait) and [`as_completed`](super::as_completed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Finished with a value.
    Ok,
    /// Finished with an error other than cancellation (panic, broken pool, ...).
    Failed,
    /// Cancelled before it started.
    Cancelled,
}

/// A multi-future waiter used by `wait` and `as_completed`: futures push their index
/// and outcome here when they complete; one thread blocks on the condvar.
pub(crate) struct Waiter {
    pub(crate) events: Mutex<Vec<(usize, Outcome)>>,
    pub(crate) cond: Condvar,
}

impl Waiter {
    pub(crate) fn new() -> Arc<Waiter> {
        Arc::new(Waiter {
            events: Mutex::new(Vec::new()),
            cond: Condvar::new(),
        })
    }

    /// Sleeps on the condvar until notified, or until `deadline`. Returns `None` (releasing
    /// the lock) if the deadline had passed before the wait.
    pub(crate) fn wait_events<'a>(
        &self,
        events: MutexGuard<'a, Vec<(usize, Outcome)>>,
        deadline: Option<Instant>,
    ) -> Option<MutexGuard<'a, Vec<(usize, Outcome)>>> {
        match deadline {
            None => Some(
                self.cond
                    .wait(events)
                    .unwrap_or_else(PoisonError::into_inner),
            ),
            Some(deadline) => {
                let left = deadline.checked_duration_since(Instant::now())?;
                let (events, _) = self
                    .cond
                    .wait_timeout(events, left)
                    .unwrap_or_else(PoisonError::into_inner);
                Some(events)
            }
        }
    }

    fn notify(&self, index: usize, outcome: Outcome) {
        lock(&self.events).push((index, outcome));
        self.cond.notify_one();
    }
}

/// The mutable part of a future's shared state.
struct Inner<T> {
    state: State<T>,
    /// Threads blocked on `Shared::cond` (only notify when non-zero: saves a syscall per job).
    blocked: usize,
    /// Async awaiters, keyed by handle so a re-poll replaces instead of accumulating.
    wakers: Vec<(u64, Waker)>,
    callbacks: Callbacks<Callback<T>>,
    watchers: Vec<(Arc<Waiter>, usize)>,
    /// How to cancel the work once it runs, if it can be (a `Handle::spawn` future can; a
    /// pool job cannot, as in concurrent.futures).
    cancel_running: Option<Box<dyn FnOnce() + Send>>,
    /// `cancel()` succeeded on running work: it finishes `Cancelled`, whatever it returns
    /// (asyncio's rule: after a `cancel()` that returned true, the future is cancelled).
    cancel_requested: bool,
}

/// What a [`Shared`] carries besides the completion state: the job's closure ([`JobCell`]),
/// or nothing (`()`) for futures no pool job completes (`Handle::spawn`, already failed).
pub(crate) trait JobSlot: Send + Sync {}

impl JobSlot for () {}

/// A job's closure, kept in the same allocation as its completion state so that a submit
/// costs one allocation.
///
/// # Invariant
///
/// Only the holder of the job's queue entry (one `Arc`, owned by the queue and then by the one
/// worker that pops it) touches `f`: it takes the closure to run it, or to drop it when the job
/// was cancelled or abandoned.
pub(crate) struct JobCell<F> {
    f: UnsafeCell<Option<F>>,
}

impl<F> JobCell<F> {
    pub(crate) fn new(f: F) -> JobCell<F> {
        JobCell {
            f: UnsafeCell::new(Some(f)),
        }
    }

    /// Takes the closure.
    ///
    /// # Safety
    ///
    /// The caller holds the job's queue entry (see the type's invariant).
    pub(crate) unsafe fn take(&self) -> Option<F> {
        // SAFETY: exclusive access by the caller's contract.
        unsafe { (*self.f.get()).take() }
    }
}

// SAFETY: the closure is touched by one thread at a time, the holder of the queue entry (the
// type's invariant), and moving it between threads needs only `F: Send`.
unsafe impl<F: Send> Sync for JobCell<F> {}

impl<F: Send> JobSlot for JobCell<F> {}

/// Completion state shared by every handle to one job, the queued job itself, and waiters;
/// `job` holds the closure while queued (type-erased in handles: `Shared<T>`).
pub(crate) struct Shared<T, J: ?Sized + JobSlot = dyn JobSlot> {
    inner: Mutex<Inner<T>>,
    cond: Condvar,
    /// A copy of where `inner.state` is (the `STATUS_*` values), written under the lock at
    /// every transition and read without it by `done()`, `running()` and `cancelled()`, so
    /// those never wait for the lock: a `Clone` of `T` run by `result()` under the lock (user
    /// code) may call them on the same future without deadlocking.
    status: AtomicU8,
    pub(crate) job: J,
}

const STATUS_PENDING: u8 = 0;
const STATUS_RUNNING: u8 = 1;
const STATUS_OK: u8 = 2;
const STATUS_CANCELLED: u8 = 3;
const STATUS_FAILED: u8 = 4;

fn status_of<T>(state: &State<T>) -> u8 {
    match state {
        State::Pending => STATUS_PENDING,
        State::Running => STATUS_RUNNING,
        State::Done(Ok(_)) | State::Taken => STATUS_OK,
        State::Done(Err(PoolError::Cancelled)) => STATUS_CANCELLED,
        State::Done(Err(_)) => STATUS_FAILED,
    }
}

pub(crate) use crate::sync::lock;

fn outcome_of<T>(state: &State<T>) -> Option<Outcome> {
    match state {
        State::Pending | State::Running => None,
        State::Done(Ok(_)) | State::Taken => Some(Outcome::Ok),
        State::Done(Err(PoolError::Cancelled)) => Some(Outcome::Cancelled),
        State::Done(Err(_)) => Some(Outcome::Failed),
    }
}

impl<T, J: JobSlot> Shared<T, J> {
    fn with_job(state: State<T>, job: J) -> Arc<Shared<T, J>> {
        let status = AtomicU8::new(status_of(&state));
        Arc::new(Shared {
            status,
            inner: Mutex::new(Inner {
                state,
                blocked: 0,
                wakers: Vec::new(),
                callbacks: Callbacks::default(),
                watchers: Vec::new(),
                cancel_running: None,
                cancel_requested: false,
            }),
            cond: Condvar::new(),
            job,
        })
    }

    /// A fresh shared state for a queued job, holding its closure.
    pub(crate) fn new_job(job: J) -> Arc<Shared<T, J>> {
        Self::with_job(State::Pending, job)
    }
}

impl<T> Shared<T> {
    fn with_state(state: State<T>) -> Arc<Shared<T>> {
        Shared::<T, ()>::with_job(state, ())
    }

    /// A fresh pending state that no pool job completes (`Handle::spawn` completes it).
    pub(crate) fn new_pending() -> Arc<Shared<T>> {
        Self::with_state(State::Pending)
    }

    /// Moves `Pending` to `Running`; `false` if the job was cancelled (or otherwise
    /// finished) and must not run.
    pub(crate) fn try_start(&self) -> bool {
        let mut g = lock(&self.inner);
        if matches!(g.state, State::Pending) {
            g.state = State::Running;
            self.status.store(STATUS_RUNNING, Ordering::Release);
            true
        } else {
            false
        }
    }

    /// Like [`try_start`](Self::try_start), and records how to cancel the running work (so
    /// that `PoolFuture::cancel` succeeds while it runs, as asyncio's does for
    /// `run_coroutine_threadsafe`).
    pub(crate) fn try_start_cancellable(&self, cancel: Box<dyn FnOnce() + Send>) -> bool {
        let mut g = lock(&self.inner);
        if matches!(g.state, State::Pending) {
            g.state = State::Running;
            self.status.store(STATUS_RUNNING, Ordering::Release);
            g.cancel_running = Some(cancel);
            true
        } else {
            false
        }
    }

    /// Cancels pending work, or running work that can be cancelled; see `PoolFuture::cancel`.
    fn cancel(this: &Arc<Self>) -> bool {
        let mut g = lock(&this.inner);
        match g.state {
            State::Pending => {
                Self::finish(this, g, Err(PoolError::Cancelled));
                true
            }
            State::Running => match g.cancel_running.take() {
                Some(cancel) => {
                    g.cancel_requested = true;
                    drop(g);
                    // The work stops at its next await point; `settle` turns whatever it
                    // reports into Cancelled.
                    cancel();
                    true
                }
                // Cancelled already (a second `cancel()` says so too), or not cancellable.
                None => g.cancel_requested,
            },
            State::Done(Err(PoolError::Cancelled)) => true,
            _ => false,
        }
    }

    /// Finishes a still-pending job with `err` (cancellation, broken pool, ...).
    /// Returns `true` if this call finished it, or if it was already cancelled and
    /// `err` is `Cancelled` (Python's `cancel()` returns `True` for a cancelled future).
    pub(crate) fn fail_if_pending(this: &Arc<Self>, err: PoolError) -> bool {
        let g = lock(&this.inner);
        match &g.state {
            State::Pending => {
                Self::finish(this, g, Err(err));
                true
            }
            State::Done(Err(PoolError::Cancelled)) => err.is_cancelled(),
            _ => false,
        }
    }

    /// Stores the result (of a job, or from a `Completer`) and notifies everyone waiting for
    /// it, unless the future is already done (cancelled while pending, or settled before):
    /// then `false`, and `result` is dropped.
    pub(crate) fn settle(this: &Arc<Self>, result: Result<T, PoolError>) -> bool {
        let g = lock(&this.inner);
        if outcome_of(&g.state).is_some() {
            return false;
        }
        // Decided under the same lock as `cancel`: a true `cancel()` means Cancelled even if
        // the work finished in the same instant.
        let result = if g.cancel_requested {
            Err(PoolError::Cancelled)
        } else {
            result
        };
        Self::finish(this, g, result);
        true
    }

    /// Sets `Done(result)` under the held lock, then (unlocked) wakes blocked threads,
    /// async awaiters and `wait` waiters, and runs the done-callbacks in order.
    fn finish(this: &Arc<Self>, mut g: MutexGuard<'_, Inner<T>>, result: Result<T, PoolError>) {
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(PoolError::Cancelled) => Outcome::Cancelled,
            Err(_) => Outcome::Failed,
        };
        g.state = State::Done(result);
        this.status.store(status_of(&g.state), Ordering::Release);
        let notify_blocked = g.blocked > 0;
        let wakers = std::mem::take(&mut g.wakers);
        let has_callbacks = !g.callbacks.is_empty();
        let callbacks = g.callbacks.take();
        let watchers = std::mem::take(&mut g.watchers);
        drop(g);
        // Callbacks first: a callback gets the future so that it can call `result()`, which
        // must not find the value already moved out by an awaiter woken before it.
        if has_callbacks {
            let handle = PoolFuture {
                shared: Arc::clone(this),
                key: 0,
                registered: AtomicBool::new(false),
            };
            for cb in callbacks {
                run_callback(cb, &handle);
            }
        }
        if notify_blocked {
            this.cond.notify_all();
        }
        for (_, waker) in wakers {
            waker.wake();
        }
        for (waiter, index) in watchers {
            waiter.notify(index, outcome);
        }
    }

    /// Registers a `wait`/`as_completed` waiter, or returns the outcome if already done.
    pub(crate) fn watch(&self, waiter: &Arc<Waiter>, index: usize) -> Option<Outcome> {
        let mut g = lock(&self.inner);
        let outcome = outcome_of(&g.state);
        if outcome.is_none() {
            g.watchers.push((Arc::clone(waiter), index));
        }
        outcome
    }

    /// Removes a waiter registered by [`watch`](Self::watch) (no-op if already notified).
    pub(crate) fn unwatch(&self, waiter: &Arc<Waiter>) {
        let mut g = lock(&self.inner);
        g.watchers.retain(|(w, _)| !Arc::ptr_eq(w, waiter));
    }

    /// Blocks until the job is done, or `Err(Timeout)` once `timeout` has passed.
    fn wait_done(&self, timeout: Option<Duration>) -> Result<MutexGuard<'_, Inner<T>>, PoolError> {
        let mut g = lock(&self.inner);
        if outcome_of(&g.state).is_some() {
            return Ok(g);
        }
        // `None` (or a timeout too large to represent) waits forever.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        g.blocked += 1;
        let result = loop {
            if outcome_of(&g.state).is_some() {
                break Ok(());
            }
            match deadline {
                None => g = self.cond.wait(g).unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break Err(PoolError::Timeout);
                    }
                    g = self
                        .cond
                        .wait_timeout(g, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        };
        g.blocked -= 1;
        result.map(|()| g)
    }
}

/// Runs one done-callback, catching (and reporting on stderr) a panic so that a
/// failing callback neither kills the worker nor skips the other callbacks.
fn run_callback<T>(cb: Callback<T>, handle: &PoolFuture<T>) {
    run_guarded("a PoolFuture done-callback", || cb(handle));
}

const TAKEN_MSG: &str = "PoolFuture: the value was already moved out by `.await` or \
    `into_result()` (on this handle or a clone); use `result()` (T: Clone) or a done-callback \
    to observe one result from several handles";

/// The eventual result of a job submitted to a [`ThreadPool`](crate::pool::ThreadPool),
/// like Python's `concurrent.futures.Future`.
///
/// * Blocking: [`result`](Self::result) (clones the value), [`into_result`](Self::into_result)
///   (moves it), [`exception`](Self::exception), each with an optional timeout.
/// * Async: `PoolFuture<T>` is a [`Future`] with `Output = Result<T, PoolError>`, awaitable
///   from **any** executor (tokio, `futures::executor`, ringloop): the worker that finishes
///   the job wakes the stored [`Waker`]. Awaiting moves the value out.
/// * [`cancel`](Self::cancel) succeeds only before the job started; such a job never runs.
/// * [`add_done_callback`](Self::add_done_callback) runs a closure exactly once on completion.
///
/// Dropping a `PoolFuture` does **not** cancel the job (as in `concurrent.futures`).
///
/// `PoolFuture` is [`Clone`]: clones are handles to the same job (cheap, an `Arc`), so
/// several threads or tasks can wait on it. Moving the value out (`.await`,
/// [`into_result`](Self::into_result)) is one-shot across all clones: afterwards,
/// awaiting, `into_result` or `result` on any clone **panics** with a message saying so
/// (errors are never moved, so a failed future can be awaited any number of times).
/// It is `Send + Sync` when `T: Send`.
///
/// # Examples
///
/// ```
/// use ringloop::ThreadPool;
/// use std::time::Duration;
///
/// let pool = ThreadPool::new(2);
/// let fut = pool.submit(|| 6 * 7);
/// assert_eq!(fut.result(Some(Duration::from_secs(5))), Ok(42));
/// assert!(fut.done());
/// // Awaitable from any executor:
/// let again = pool.submit(|| "hi");
/// assert_eq!(futures::executor::block_on(again), Ok("hi"));
/// ```
pub struct PoolFuture<T> {
    shared: Arc<Shared<T>>,
    /// Identifies this handle's waker slot.
    key: u64,
    /// Whether this handle may have a waker registered (cleaned up on drop).
    registered: AtomicBool,
}

impl<T> PoolFuture<T> {
    pub(crate) fn from_shared(shared: Arc<Shared<T>>) -> Self {
        PoolFuture {
            shared,
            key: 0,
            registered: AtomicBool::new(false),
        }
    }

    /// A pending future and the [`Completer`] that settles it: concurrent.futures' `Future()`,
    /// for writing an executor of your own (the process pool uses it).
    ///
    /// The future starts pending, so [`cancel`](Self::cancel) succeeds until the executor calls
    /// [`Completer::set_running_or_notify_cancel`]. Dropping the completer without a result
    /// fails the future with [`PoolError::Broken`], so that no waiter hangs.
    ///
    /// # Examples
    ///
    /// ```
    /// use ringloop::PoolFuture;
    ///
    /// let (fut, completer) = PoolFuture::pending();
    /// let worker = std::thread::spawn(move || {
    ///     if completer.set_running_or_notify_cancel() {
    ///         completer.set_result(6 * 7);
    ///     }
    /// });
    /// assert_eq!(fut.result(None), Ok(42));
    /// worker.join().unwrap();
    /// ```
    pub fn pending() -> (PoolFuture<T>, Completer<T>) {
        let shared = Shared::new_pending();
        let completer = Completer {
            shared: Some(Arc::clone(&shared)),
        };
        (Self::from_shared(shared), completer)
    }

    /// A future that has already failed with `err` (submit after shutdown, broken pool).
    pub(crate) fn failed(err: PoolError) -> Self {
        Self::from_shared(Shared::with_state(State::Done(Err(err))))
    }

    pub(crate) fn shared(&self) -> &Arc<Shared<T>> {
        &self.shared
    }

    /// Waits up to `timeout` (`None`: forever) for the job and returns a clone of its
    /// value, or its error. [`PoolError::Timeout`] if it is not done in time (the job
    /// keeps running; you can wait again).
    ///
    /// # Panics
    ///
    /// If the value was already moved out by `.await` or [`into_result`](Self::into_result).
    ///
    /// # Examples
    ///
    /// ```
    /// use ringloop::{PoolError, ThreadPool};
    /// use std::time::Duration;
    ///
    /// let pool = ThreadPool::new(1);
    /// let slow = pool.submit(|| { std::thread::sleep(Duration::from_millis(200)); 1 });
    /// assert_eq!(slow.result(Some(Duration::from_millis(1))), Err(PoolError::Timeout));
    /// assert_eq!(slow.result(None), Ok(1));
    /// ```
    pub fn result(&self, timeout: Option<Duration>) -> Result<T, PoolError>
    where
        T: Clone,
    {
        let g = self.shared.wait_done(timeout)?;
        match &g.state {
            State::Done(r) => r.clone(),
            State::Taken => panic!("{TAKEN_MSG}"),
            State::Pending | State::Running => unreachable!("wait_done returned early"),
        }
    }

    /// Like [`result`](Self::result) but moves the value out (no `Clone` needed).
    ///
    /// On [`PoolError::Timeout`] this handle is consumed; the job keeps running and its
    /// value stays reachable through clones of this future (if any). Use
    /// [`result`](Self::result) or [`pool::wait`](crate::pool::wait) to wait without
    /// giving the handle up.
    ///
    /// # Panics
    ///
    /// If the value was already moved out by another clone.
    ///
    /// # Examples
    ///
    /// ```
    /// use ringloop::ThreadPool;
    ///
    /// let pool = ThreadPool::new(1);
    /// let v = pool.submit(|| vec![1, 2, 3]).into_result(None).unwrap();
    /// assert_eq!(v, [1, 2, 3]);
    /// ```
    pub fn into_result(self, timeout: Option<Duration>) -> Result<T, PoolError> {
        let mut g = self.shared.wait_done(timeout)?;
        take_result(&mut g.state)
    }

    /// Waits up to `timeout` for the job and returns `Ok(None)` if it succeeded,
    /// `Ok(Some(err))` if it failed (panicked, was cancelled, pool broken, ...), or
    /// `Err(PoolError::Timeout)` if it is not done in time. Like Python's `exception()`.
    ///
    /// Works after the value was moved out (returns `Ok(None)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use ringloop::{PoolError, ThreadPool};
    ///
    /// let pool = ThreadPool::new(1);
    /// assert_eq!(pool.submit(|| 1).exception(None), Ok(None));
    /// let bad = pool.submit(|| -> i32 { panic!("nope") });
    /// assert_eq!(bad.exception(None), Ok(Some(PoolError::Panicked("nope".into()))));
    /// ```
    pub fn exception(&self, timeout: Option<Duration>) -> Result<Option<PoolError>, PoolError> {
        let g = self.shared.wait_done(timeout)?;
        Ok(match &g.state {
            State::Done(Err(e)) => Some(e.clone()),
            _ => None,
        })
    }

    /// Cancels the job if it has not started: returns `true` and the job will never run
    /// (the future finishes with [`PoolError::Cancelled`], waking waiters and running
    /// done-callbacks on this thread). Also `true` if it was already cancelled.
    /// Returns `false` if the job is running or finished; except for a future from
    /// [`Handle::spawn`](crate::Handle::spawn), which, like asyncio's
    /// `run_coroutine_threadsafe`, can also be cancelled while it runs: its task is dropped
    /// at its next scheduling point and the future reports `Cancelled`.
    ///
    /// # Examples
    ///
    /// ```
    /// use ringloop::ThreadPool;
    /// use std::sync::mpsc;
    ///
    /// let pool = ThreadPool::new(1);
    /// let (tx, rx) = mpsc::channel::<()>();
    /// let busy = pool.submit(move || rx.recv().ok()); // occupies the only worker
    /// let queued = pool.submit(|| unreachable!("cancelled jobs never run"));
    /// assert!(queued.cancel());
    /// assert!(queued.cancelled());
    /// tx.send(()).unwrap();
    /// assert_eq!(busy.result(None), Ok(Some(())));
    /// assert!(!busy.cancel()); // finished: too late
    /// ```
    pub fn cancel(&self) -> bool {
        Shared::cancel(&self.shared)
    }

    /// `true` if the job was cancelled before it started.
    pub fn cancelled(&self) -> bool {
        self.shared.status.load(Ordering::Acquire) == STATUS_CANCELLED
    }

    /// `true` while a worker is running the job.
    pub fn running(&self) -> bool {
        self.shared.status.load(Ordering::Acquire) == STATUS_RUNNING
    }

    /// `true` once the job finished, failed or was cancelled.
    pub fn done(&self) -> bool {
        self.shared.status.load(Ordering::Acquire) >= STATUS_OK
    }

    /// Calls `f` exactly once when the future is done (finished, failed or cancelled).
    ///
    /// If it is already done, `f` runs at once on the calling thread; otherwise it runs
    /// on the thread that completes the future (the worker, or the thread calling
    /// [`cancel`](Self::cancel) / [`ThreadPool::shutdown`](crate::pool::ThreadPool::shutdown)).
    /// Callbacks run in the order they were added. A panicking callback is caught and
    /// reported on stderr; the other callbacks still run.
    ///
    /// # Examples
    ///
    /// ```
    /// use ringloop::ThreadPool;
    /// use std::sync::mpsc;
    ///
    /// let pool = ThreadPool::new(1);
    /// let (tx, rx) = mpsc::channel();
    /// let fut = pool.submit(|| 21 * 2);
    /// fut.add_done_callback(move |f| tx.send(f.result(None)).unwrap());
    /// assert_eq!(rx.recv().unwrap(), Ok(42));
    /// ```
    pub fn add_done_callback<F>(&self, f: F) -> CallbackId
    where
        F: FnOnce(&PoolFuture<T>) + Send + 'static,
    {
        let mut g = lock(&self.shared.inner);
        if outcome_of(&g.state).is_some() {
            let id = g.callbacks.new_id();
            drop(g);
            run_callback(Box::new(f), self);
            id
        } else {
            g.callbacks.add(Box::new(f))
        }
    }

    /// Removes a done-callback that has not run yet; `true` if it was found.
    pub fn remove_done_callback(&self, id: CallbackId) -> bool {
        let removed = lock(&self.shared.inner).callbacks.remove(id);
        // Dropped outside the lock: the closure's captures are the caller's values.
        removed.is_some()
    }
}

fn take_result<T>(state: &mut State<T>) -> Result<T, PoolError> {
    match state {
        State::Done(Err(e)) => Err(e.clone()),
        State::Done(Ok(_)) => match std::mem::replace(state, State::Taken) {
            State::Done(Ok(v)) => Ok(v),
            _ => unreachable!(),
        },
        State::Taken => panic!("{TAKEN_MSG}"),
        State::Pending | State::Running => unreachable!("take_result on an unfinished future"),
    }
}

impl<T> Clone for PoolFuture<T> {
    fn clone(&self) -> Self {
        PoolFuture {
            shared: Arc::clone(&self.shared),
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            registered: AtomicBool::new(false),
        }
    }
}

impl<T> Drop for PoolFuture<T> {
    fn drop(&mut self) {
        if self.registered.load(Ordering::Relaxed) {
            let key = self.key;
            lock(&self.shared.inner).wakers.retain(|(k, _)| *k != key);
        }
    }
}

impl<T> PoolFuture<T> {
    /// Ready once the job is done, without taking the result; otherwise registers `cx`'s
    /// waker. Used by `ringloop::wait`.
    pub(crate) fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut g = lock(&self.shared.inner);
        match g.state {
            State::Pending | State::Running => {
                self.register(&mut g, cx);
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }

    /// Records `cx`'s waker in this handle's slot (replacing the previous one).
    fn register(&self, g: &mut Inner<T>, cx: &Context<'_>) {
        let key = self.key;
        match g.wakers.iter_mut().find(|(k, _)| *k == key) {
            Some((_, w)) => w.clone_from(cx.waker()),
            None => g.wakers.push((key, cx.waker().clone())),
        }
        self.registered.store(true, Ordering::Relaxed);
    }

    /// True if the job finished with an error other than cancellation (a panic, a broken
    /// or shut-down pool): what `ReturnWhen::FirstException` waits for.
    pub(crate) fn is_failed(&self) -> bool {
        matches!(
            lock(&self.shared.inner).state,
            State::Done(Err(ref e)) if !e.is_cancelled()
        )
    }
}

/// Awaiting yields the job's result, moving the value out.
///
/// # Panics
///
/// Polling after the value was moved out (by this handle or a clone) panics with a
/// message saying so. An error result can be awaited repeatedly.
impl<T> Future for PoolFuture<T> {
    type Output = Result<T, PoolError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut g = lock(&this.shared.inner);
        match g.state {
            State::Pending | State::Running => {
                this.register(&mut g, cx);
                Poll::Pending
            }
            _ => Poll::Ready(take_result(&mut g.state)),
        }
    }
}

impl<T> fmt::Debug for PoolFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = lock(&self.shared.inner);
        let state = match &g.state {
            State::Pending => "pending",
            State::Running => "running",
            State::Done(Ok(_)) => "finished",
            State::Done(Err(PoolError::Cancelled)) => "cancelled",
            State::Done(Err(_)) => "failed",
            State::Taken => "finished (value taken)",
        };
        f.debug_struct("PoolFuture").field("state", &state).finish()
    }
}

/// The producer's side of a [`PoolFuture`] made by [`PoolFuture::pending`]: what an executor
/// holds while it runs the work (concurrent.futures' `Future.set_running_or_notify_cancel`,
/// `set_result`, `set_exception`).
///
/// `Completer<T>` is `Send` (when `T` is) so the work may finish on any thread. Setting a
/// result consumes it; dropping it unset fails the future with [`PoolError::Broken`].
pub struct Completer<T> {
    /// `None` once settled.
    shared: Option<Arc<Shared<T>>>,
}

impl<T> Completer<T> {
    /// Marks the future running, so that [`PoolFuture::cancel`] no longer succeeds, and
    /// returns `true`; or returns `false` if it was cancelled already (skip the work: the
    /// future is done, its waiters were told). Call it once, before starting the work.
    ///
    /// # Panics
    ///
    /// If the future is already running or settled (a second call): that is a bug in the
    /// executor, as Python's `RuntimeError` says.
    pub fn set_running_or_notify_cancel(&self) -> bool {
        let Some(shared) = &self.shared else {
            unreachable!("a settled Completer is consumed");
        };
        if shared.try_start() {
            return true;
        }
        let cancelled = shared.status.load(Ordering::Acquire) == STATUS_CANCELLED;
        assert!(
            cancelled,
            "Completer::set_running_or_notify_cancel: the future is already running or done"
        );
        false
    }

    /// Settles the future with `value`, waking its waiters and running its done-callbacks on
    /// this thread. If the future was cancelled meanwhile, `value` is dropped.
    pub fn set_result(mut self, value: T) {
        if let Some(shared) = self.shared.take() {
            Shared::settle(&shared, Ok(value));
        }
    }

    /// Settles the future with an error: it reports [`PoolError::Failed`] carrying the
    /// error's message (`PoolError` is `Clone`, so the message is what every handle sees).
    pub fn set_exception(mut self, error: impl Into<Box<dyn std::error::Error + Send + Sync>>) {
        let msg = error.into().to_string();
        if let Some(shared) = self.shared.take() {
            Shared::settle(&shared, Err(PoolError::Failed(msg)));
        }
    }

    /// Settles the future with any [`PoolError`] (a panic, a broken pool, ...).
    #[cfg(feature = "process")]
    pub(crate) fn set_error(mut self, error: PoolError) {
        if let Some(shared) = self.shared.take() {
            Shared::settle(&shared, Err(error));
        }
    }

    /// `true` if the future was cancelled (the work need not run or finish).
    pub fn is_cancelled(&self) -> bool {
        self.shared
            .as_ref()
            .is_some_and(|s| s.status.load(Ordering::Acquire) == STATUS_CANCELLED)
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            Shared::settle(
                &shared,
                Err(PoolError::Broken(
                    "its Completer was dropped without setting a result".to_string(),
                )),
            );
        }
    }
}

impl<T> fmt::Debug for Completer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completer")
            .field("settled", &self.shared.is_none())
            .finish()
    }
}
