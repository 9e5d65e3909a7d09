//! `shield`: protects work from the cancellation of whoever awaits it.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::runtime::task::{JoinError, Task, spawn};

/// Runs `future` as its own task and returns a handle whose dropping does *not* cancel it:
/// asyncio's `shield`. If the waiter is cancelled (dropped by a `wait_for` that expired, its
/// own task cancelled, a `try_gather` sibling failing), the work runs on to completion, and
/// the `Shielded` (or its task) can be awaited again for the result.
///
/// Accepts any `IntoFuture + 'static`, a [`Task`] included.
///
/// # Panics
///
/// Outside a ringloop runtime (it spawns a task).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// ringloop::run(async {
///     let mut work = ringloop::shield(async {
///         ringloop::sleep(Duration::from_millis(5)).await;
///         "saved"
///     });
///     // The deadline passes; the waiter gives up, the work does not.
///     assert!(ringloop::wait_for(&mut work, Duration::from_millis(1)).await.is_err());
///     assert_eq!(work.await, Ok("saved"));
/// });
/// ```
#[track_caller]
pub fn shield<F>(future: F) -> Shielded<F::Output>
where
    F: IntoFuture + 'static,
    F::Output: 'static,
{
    Shielded {
        task: spawn(future.into_future()),
    }
}

/// Future of [`shield`]: resolves to the shielded work's output, or the [`JoinError`] if it
/// panicked or was cancelled directly (through [`Shielded::task`]). `Unpin`, so `&mut
/// Shielded` can be awaited, and given up on, any number of times until it resolves; once it
/// has resolved, the output has been handed out and polling it again panics.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Shielded<T> {
    task: Task<T>,
}

impl<T> Shielded<T> {
    /// The task running the shielded work.
    pub fn task(&self) -> &Task<T> {
        &self.task
    }

    /// The task running the shielded work; dropping it detaches, awaiting it ties it again.
    pub fn into_task(self) -> Task<T> {
        self.task
    }
}

impl<T> Future for Shielded<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.task.poll_output(cx)
    }
}
