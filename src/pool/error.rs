//! [`PoolError`]: why a [`PoolFuture`](super::PoolFuture) has no value.

use std::fmt;

/// Why a [`PoolFuture`](crate::pool::PoolFuture) produced no value.
///
/// Mirrors the exceptions of Python's `concurrent.futures`: `CancelledError`,
/// `TimeoutError`, the job's own exception (here a panic), `BrokenThreadPool`, and the
/// `RuntimeError` raised by `submit` after `shutdown`.
///
/// # Examples
///
/// ```
/// use ringloop::{PoolError, ThreadPool};
///
/// let pool = ThreadPool::new(1);
/// let fut = pool.submit(|| -> u32 { panic!("boom") });
/// let err = fut.into_result(None).unwrap_err();
/// assert!(err.is_panic());
/// assert_eq!(err, PoolError::Panicked("boom".to_string()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolError {
    /// The job was cancelled before it started (by [`PoolFuture::cancel`](crate::pool::PoolFuture::cancel)
    /// or by [`ThreadPool::shutdown`](crate::pool::ThreadPool::shutdown) with `cancel_futures`); it never ran.
    Cancelled,
    /// A blocking wait gave up before the job finished; the job keeps running.
    Timeout,
    /// The job panicked; carries the panic message (or `"unknown panic payload"`).
    Panicked(String),
    /// The job failed with an error set by [`Completer::set_exception`](crate::pool::Completer::set_exception)
    /// (an executor of your own); carries the error's message.
    Failed(String),
    /// The pool can no longer run jobs (a worker initializer panicked, a worker process died);
    /// carries the reason. Python's `BrokenThreadPool` / `BrokenProcessPool`.
    Broken(String),
    /// The job was submitted after the pool was shut down (or to a runtime that is stopping
    /// or closed).
    Shutdown,
    /// `submit_to` named a shard that does not exist.
    InvalidShard {
        /// The shard asked for.
        shard: usize,
        /// How many shards the runtime has.
        shards: usize,
    },
}

impl PoolError {
    /// `true` for [`PoolError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, PoolError::Cancelled)
    }

    /// `true` for [`PoolError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, PoolError::Timeout)
    }

    /// `true` for [`PoolError::Panicked`].
    pub fn is_panic(&self) -> bool {
        matches!(self, PoolError::Panicked(_))
    }

    /// A [`PoolError::Panicked`] job's panic as a payload for [`std::panic::resume_unwind`]:
    /// its message as a `String` (a payload of another type is not kept, and a process pool's
    /// job panicked in another process, so the message is all there is); any other error
    /// back as `Err`.
    ///
    /// # Examples
    ///
    /// ```
    /// use ringloop::ThreadPool;
    ///
    /// let pool = ThreadPool::new(1);
    /// let err = pool.submit(|| -> u8 { panic!("in a worker") }).into_result(None).unwrap_err();
    /// let payload = err.try_into_panic().unwrap();
    /// let resumed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
    ///     std::panic::resume_unwind(payload)
    /// }));
    /// assert_eq!(resumed.unwrap_err().downcast_ref::<String>().unwrap(), "in a worker");
    /// ```
    pub fn try_into_panic(self) -> Result<Box<dyn std::any::Any + Send + 'static>, PoolError> {
        match self {
            PoolError::Panicked(msg) => Ok(Box::new(msg)),
            other => Err(other),
        }
    }

    /// `true` for [`PoolError::Failed`].
    pub fn is_failed(&self) -> bool {
        matches!(self, PoolError::Failed(_))
    }

    /// `true` for [`PoolError::Broken`].
    pub fn is_broken(&self) -> bool {
        matches!(self, PoolError::Broken(_))
    }

    /// `true` for [`PoolError::Shutdown`].
    pub fn is_shutdown(&self) -> bool {
        matches!(self, PoolError::Shutdown)
    }
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Cancelled => f.write_str(
                "the job was cancelled before it started (PoolFuture::cancel or \
                 ThreadPool::shutdown with cancel_futures) and never ran",
            ),
            PoolError::Timeout => f.write_str(
                "timed out waiting for the job; it is still running: wait again with a \
                 longer timeout, or cancel it if it has not started",
            ),
            PoolError::Panicked(msg) => write!(f, "the job panicked: {msg}"),
            PoolError::Failed(msg) => write!(f, "the job failed: {msg}"),
            PoolError::Broken(why) => write!(
                f,
                "the pool is broken and cannot run jobs ({why}); create a new ThreadPool or ProcessPool"
            ),
            PoolError::Shutdown => f.write_str(
                "cannot run a job submitted after ThreadPool::shutdown (or after the pool \
                 was dropped, or to a runtime that is stopping or closed); submit before \
                 shutting down",
            ),
            PoolError::InvalidShard { shard, shards } => write!(
                f,
                "there is no shard {shard}: the runtime has {shards} (0..{shards}); see \
                 ringloop::shard_count()"
            ),
        }
    }
}

impl std::error::Error for PoolError {}

pub(crate) use crate::callbacks::panic_message;
