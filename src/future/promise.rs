//! `Promise` (asyncio.Future): a settable, cancellable, awaitable,
//! cloneable one-shot result, and `PromiseError`.

use crate::callbacks::{CallbackId, Callbacks, run_guarded};
use std::error::Error;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Error of a [`Promise`] that is not (successfully) done.
#[derive(Clone)]
pub enum PromiseError {
    /// The promise has no result yet (asyncio `InvalidStateError`).
    NotDone,
    /// The promise was cancelled (asyncio `CancelledError`).
    Cancelled,
    /// The promise was completed with [`Promise::set_exception`].
    Exception(Arc<dyn Error + Send + Sync>),
}

impl PromiseError {
    /// Whether this is [`PromiseError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, PromiseError::Cancelled)
    }

    /// Whether this is [`PromiseError::NotDone`].
    pub fn is_not_done(&self) -> bool {
        matches!(self, PromiseError::NotDone)
    }

    /// Whether this is [`PromiseError::Exception`].
    pub fn is_exception(&self) -> bool {
        matches!(self, PromiseError::Exception(_))
    }

    /// The exception set with [`Promise::set_exception`], if any.
    pub fn exception(&self) -> Option<&Arc<dyn Error + Send + Sync>> {
        match self {
            PromiseError::Exception(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Debug for PromiseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PromiseError::NotDone => f.write_str("NotDone"),
            PromiseError::Cancelled => f.write_str("Cancelled"),
            PromiseError::Exception(e) => f.debug_tuple("Exception").field(e).finish(),
        }
    }
}

impl fmt::Display for PromiseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PromiseError::NotDone => f.write_str("invalid state: promise result is not set yet"),
            PromiseError::Cancelled => f.write_str("promise was cancelled"),
            PromiseError::Exception(e) => write!(f, "promise completed with an exception: {e}"),
        }
    }
}

impl Error for PromiseError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            PromiseError::Exception(e) => Some(&**e),
            _ => None,
        }
    }
}

type Callback<T> = Box<dyn FnOnce(&Promise<T>) + Send>;

/// Runs a done callback; a panic in it is reported on stderr and does not stop the others.
fn run_callback<T>(callback: Callback<T>, promise: &Promise<T>) {
    run_guarded("a promise's done callback", move || callback(promise));
}

enum State<T> {
    Pending,
    Value(T),
    Exception(Arc<dyn Error + Send + Sync>),
    Cancelled,
    /// The value was moved out by [`Promise::take`].
    Taken,
}

const TAKEN_MSG: &str = "ringloop: the promise's value was already moved out by Promise::take";

struct Inner<T> {
    state: State<T>,
    callbacks: Callbacks<Callback<T>>,
    /// Wakers of pending awaits, indexed by their key; `free` lists reusable
    /// keys. Cleared when the promise becomes done.
    waiters: Vec<Option<Waker>>,
    free: Vec<usize>,
}

/// A one-shot result that can be set, failed or cancelled from anywhere and
/// awaited by any number of tasks (asyncio `Future`).
///
/// Every clone refers to the same promise. `Promise<T>` is `Send + Sync` when
/// `T: Send`, so it can be completed from another thread. Awaiting a clone
/// (via [`IntoFuture`], for `T: Clone`) gives a clone of the value,
/// `Err(PromiseError::Cancelled)` if cancelled, or
/// `Err(PromiseError::Exception(..))` after [`set_exception`](Self::set_exception).
/// For a value that is not `Clone` (a file, a channel end), [`take`](Self::take) waits and
/// moves the value out instead.
///
/// ```
/// # futures::executor::block_on(async {
/// let p = ringloop::Promise::new();
/// let waiter = p.clone();
/// p.set_result(5).unwrap();
/// assert_eq!(waiter.await.unwrap(), 5);
/// # });
/// ```
pub struct Promise<T> {
    inner: Arc<Mutex<Inner<T>>>,
}

impl<T> Clone for Promise<T> {
    fn clone(&self) -> Self {
        Promise {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Default for Promise<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for Promise<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.lock().state {
            State::Pending => "pending",
            State::Value(_) => "finished",
            State::Exception(_) => "exception",
            State::Cancelled => "cancelled",
            State::Taken => "taken",
        };
        f.debug_struct("Promise").field("state", &state).finish()
    }
}

impl<T> Promise<T> {
    /// Creates a pending promise.
    pub fn new() -> Self {
        Promise {
            inner: Arc::new(Mutex::new(Inner {
                state: State::Pending,
                callbacks: Callbacks::default(),
                waiters: Vec::new(),
                free: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // State changes under the lock cannot panic half-way, so a poisoned
        // lock (a panic elsewhere while holding it) is still consistent.
        crate::sync::lock(&self.inner)
    }

    /// Moves a pending promise to `state`, then wakes the waiters and runs
    /// the callbacks (outside the lock). Gives `state` back if already done.
    fn complete(&self, state: State<T>) -> Result<(), State<T>> {
        let (waiters, callbacks) = {
            let mut inner = self.lock();
            if !matches!(inner.state, State::Pending) {
                return Err(state);
            }
            inner.state = state;
            inner.free = Vec::new();
            (std::mem::take(&mut inner.waiters), inner.callbacks.take())
        };
        for waker in waiters.into_iter().flatten() {
            waker.wake();
        }
        for callback in callbacks {
            run_callback(callback, self);
        }
        Ok(())
    }

    /// Completes the promise with `value`. Returns `Err(value)` (giving it
    /// back) if the promise is already done (set, failed or cancelled).
    pub fn set_result(&self, value: T) -> Result<(), T> {
        self.complete(State::Value(value))
            .map_err(|state| match state {
                State::Value(v) => v,
                _ => unreachable!(),
            })
    }

    /// Completes the promise with an error (awaiters and [`result`](Self::result)
    /// then get `Err(PromiseError::Exception(..))`).
    ///
    /// If the promise is already done, nothing changes and the error says
    /// why: `Err(PromiseError::Cancelled)` if it was cancelled, otherwise
    /// (already has a result or an exception) the rejected error is given
    /// back as `Err(PromiseError::Exception(..))`.
    pub fn set_exception(
        &self,
        error: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> Result<(), PromiseError> {
        let error: Arc<dyn Error + Send + Sync> = Arc::from(error.into());
        match self.complete(State::Exception(error)) {
            Ok(()) => Ok(()),
            Err(State::Exception(e)) if self.cancelled() => {
                drop(e);
                Err(PromiseError::Cancelled)
            }
            Err(State::Exception(e)) => Err(PromiseError::Exception(e)),
            Err(_) => unreachable!(),
        }
    }

    /// Cancels the promise. Returns `false` if it is already done.
    pub fn cancel(&self) -> bool {
        self.complete(State::Cancelled).is_ok()
    }

    /// Whether the promise is done: has a result, an exception, or was
    /// cancelled.
    pub fn done(&self) -> bool {
        !matches!(self.lock().state, State::Pending)
    }

    /// Whether the promise was cancelled.
    pub fn cancelled(&self) -> bool {
        matches!(self.lock().state, State::Cancelled)
    }

    /// The result, without waiting: `Ok(value)`, or
    /// `Err(PromiseError::NotDone)` if still pending,
    /// `Err(PromiseError::Cancelled)` if cancelled,
    /// `Err(PromiseError::Exception(..))` after `set_exception`.
    ///
    /// # Panics
    ///
    /// If the value was moved out by [`take`](Self::take).
    pub fn result(&self) -> Result<T, PromiseError>
    where
        T: Clone,
    {
        match &self.lock().state {
            State::Pending => Err(PromiseError::NotDone),
            State::Value(v) => Ok(v.clone()),
            State::Exception(e) => Err(PromiseError::Exception(e.clone())),
            State::Cancelled => Err(PromiseError::Cancelled),
            State::Taken => panic!("{TAKEN_MSG}"),
        }
    }

    /// The exception, without waiting: `Ok(Some(e))` after `set_exception`,
    /// `Ok(None)` after `set_result`, `Err(PromiseError::NotDone)` if still
    /// pending, `Err(PromiseError::Cancelled)` if cancelled.
    pub fn exception(&self) -> Result<Option<Arc<dyn Error + Send + Sync>>, PromiseError> {
        match &self.lock().state {
            State::Pending => Err(PromiseError::NotDone),
            State::Value(_) | State::Taken => Ok(None),
            State::Exception(e) => Ok(Some(e.clone())),
            State::Cancelled => Err(PromiseError::Cancelled),
        }
    }

    /// Registers `callback` to run exactly once when the promise becomes
    /// done (result, exception or cancellation), in registration order, on
    /// the thread that completes it. If the promise is already done, runs it
    /// at once, before returning.
    pub fn add_done_callback(
        &self,
        callback: impl FnOnce(&Promise<T>) + Send + 'static,
    ) -> CallbackId {
        let mut inner = self.lock();
        if matches!(inner.state, State::Pending) {
            inner.callbacks.add(Box::new(callback))
        } else {
            let id = inner.callbacks.new_id();
            drop(inner);
            run_callback(Box::new(callback), self);
            id
        }
    }

    /// Unregisters a callback that has not run yet. Returns whether it was
    /// removed.
    pub fn remove_done_callback(&self, id: CallbackId) -> bool {
        let removed = self.lock().callbacks.remove(id);
        // Dropped outside the lock: the closure's captures are the caller's values.
        removed.is_some()
    }

    /// Waits for the promise; the same as `.await` on a clone.
    ///
    /// # Panics
    ///
    /// The future panics if the value was moved out by [`take`](Self::take).
    pub fn wait(&self) -> Wait<T>
    where
        T: Clone,
    {
        Wait {
            promise: self.clone(),
            key: None,
        }
    }

    /// Waits for the promise and moves its value out: no `Clone` needed (like
    /// [`PoolFuture::into_result`](crate::PoolFuture::into_result)). Consumes this handle.
    /// Resolves to `Ok(value)`, `Err(PromiseError::Cancelled)` or
    /// `Err(PromiseError::Exception(..))`, as `.await` does.
    ///
    /// The value is there once: afterwards the promise stays done ([`done`](Self::done) is
    /// true, [`exception`](Self::exception) is `Ok(None)`), but [`result`](Self::result),
    /// `.await` or another `take` on any clone (also from a done callback that runs after
    /// the take) panics. An exception or a cancellation is not moved: every clone still sees
    /// it. Dropping the future before it resolves takes nothing.
    ///
    /// # Panics
    ///
    /// The future panics if the value was already moved out by another `take`.
    ///
    /// # Examples
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// // A channel end is not Clone: `.await` is not available, `take` is.
    /// let p = ringloop::Promise::new();
    /// let (tx, rx) = std::sync::mpsc::channel::<u32>();
    /// p.set_result(rx).unwrap();
    /// let rx = p.take().await.unwrap();
    /// tx.send(7).unwrap();
    /// assert_eq!(rx.recv().unwrap(), 7);
    /// # });
    /// ```
    pub fn take(self) -> Take<T> {
        Take {
            wait: Wait {
                promise: self,
                key: None,
            },
        }
    }
}

impl<T: Clone> IntoFuture for Promise<T> {
    type Output = Result<T, PromiseError>;
    type IntoFuture = Wait<T>;

    fn into_future(self) -> Wait<T> {
        Wait {
            promise: self,
            key: None,
        }
    }
}

impl<T: Clone> IntoFuture for &Promise<T> {
    type Output = Result<T, PromiseError>;
    type IntoFuture = Wait<T>;

    fn into_future(self) -> Wait<T> {
        self.wait()
    }
}

/// Future waiting for a [`Promise`] (from `.await` on it or
/// [`Promise::wait`]).
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Wait<T> {
    promise: Promise<T>,
    /// This await's slot in the promise's waiter list, once registered.
    key: Option<usize>,
}

impl<T> fmt::Debug for Wait<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wait")
            .field("promise", &self.promise)
            .finish()
    }
}

impl<T> Wait<T> {
    /// Polls for the outcome: `outcome` turns a done state into the result (`None` for
    /// `Pending`); otherwise registers the waker.
    fn poll_with(
        &mut self,
        cx: &mut Context<'_>,
        outcome: impl FnOnce(&mut State<T>) -> Option<Result<T, PromiseError>>,
    ) -> Poll<Result<T, PromiseError>> {
        let mut inner = self.promise.lock();
        if let Some(result) = outcome(&mut inner.state) {
            self.key = None;
            return Poll::Ready(result);
        }
        match self.key {
            Some(key) => match &mut inner.waiters[key] {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            },
            None => {
                let waker = Some(cx.waker().clone());
                let key = match inner.free.pop() {
                    Some(key) => {
                        inner.waiters[key] = waker;
                        key
                    }
                    None => {
                        inner.waiters.push(waker);
                        inner.waiters.len() - 1
                    }
                };
                self.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl<T: Clone> Future for Wait<T> {
    type Output = Result<T, PromiseError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_with(cx, |state| match state {
            State::Pending => None,
            State::Value(v) => Some(Ok(v.clone())),
            State::Exception(e) => Some(Err(PromiseError::Exception(e.clone()))),
            State::Cancelled => Some(Err(PromiseError::Cancelled)),
            State::Taken => panic!("{TAKEN_MSG}"),
        })
    }
}

/// Future of [`Promise::take`]: waits for the promise and moves its value out.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Take<T> {
    wait: Wait<T>,
}

impl<T> fmt::Debug for Take<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Take")
            .field("promise", &self.wait.promise)
            .finish()
    }
}

impl<T> Future for Take<T> {
    type Output = Result<T, PromiseError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().wait.poll_with(cx, |state| match state {
            State::Pending => None,
            State::Value(_) => match std::mem::replace(state, State::Taken) {
                State::Value(v) => Some(Ok(v)),
                _ => unreachable!("matched Value just above"),
            },
            State::Exception(e) => Some(Err(PromiseError::Exception(e.clone()))),
            State::Cancelled => Some(Err(PromiseError::Cancelled)),
            State::Taken => panic!("{TAKEN_MSG}"),
        })
    }
}

impl<T> Drop for Wait<T> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut inner = self.promise.lock();
            // Once done, the waiter list was cleared and keys are void.
            if matches!(inner.state, State::Pending) {
                inner.waiters[key] = None;
                inner.free.push(key);
            }
        }
    }
}
