//! [`Map`] and [`TryMap`]: the ordered result iterators of
//! [`ThreadPool::map`](super::ThreadPool::map) and
//! [`ThreadPool::try_map`](super::ThreadPool::try_map) (and their `_buffered` forms).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use super::error::PoolError;
use super::future::PoolFuture;
use super::thread_pool::PoolInner;

/// Iterator over the results of [`ThreadPool::try_map`](crate::pool::ThreadPool::try_map) /
/// [`try_map_buffered`](crate::pool::ThreadPool::try_map_buffered), in input order.
///
/// Each `next()` blocks until the next result in input order is ready and yields it
/// as `Result<T, PoolError>` (`Err(PoolError::Panicked(msg))` for a job that panicked).
/// In buffered mode each `next()` first pulls and submits one more input item.
///
/// Dropping the iterator cancels the submitted jobs that have not started (like
/// Python closing the `map` generator); jobs already running finish normally.
/// The iterator does not keep the pool alive: if the pool is shut down (or broken)
/// before every item was submitted, the first item refused yields
/// `Err(PoolError::Shutdown)` (or `Broken`) after the results before it, and iteration
/// ends there: no more input is pulled (Python's `map` raises from `submit`).
pub struct TryMap<I: Iterator, T> {
    pool: Arc<PoolInner>,
    f: Arc<dyn Fn(I::Item) -> T + Send + Sync>,
    /// `Some` only in buffered mode, until the input is exhausted.
    input: Option<I>,
    pending: VecDeque<PoolFuture<T>>,
}

impl<I, T> TryMap<I, T>
where
    I: Iterator,
    I::Item: Send + 'static,
    T: Send + 'static,
{
    pub(crate) fn new(
        pool: Arc<PoolInner>,
        f: Arc<dyn Fn(I::Item) -> T + Send + Sync>,
        input: I,
        buffersize: Option<usize>,
    ) -> Self {
        let mut map = TryMap {
            pool,
            f,
            input: Some(input),
            pending: VecDeque::new(),
        };
        match buffersize {
            None => while map.pull() {},
            Some(n) => {
                for _ in 0..n {
                    if !map.pull() {
                        break;
                    }
                }
            }
        }
        map
    }

    /// Pulls one input item and submits it; `false` once the input is exhausted.
    fn pull(&mut self) -> bool {
        match self.input.as_mut().and_then(Iterator::next) {
            Some(item) => {
                let f = Arc::clone(&self.f);
                match self.pool.try_submit(move || f(item)) {
                    Ok(fut) => {
                        self.pending.push_back(fut);
                        true
                    }
                    Err(err) => {
                        // Pool shut down or broken: yield this error last and stop
                        // pulling input (Python's `map` raises from `submit`).
                        self.pending.push_back(PoolFuture::failed(err));
                        self.input = None;
                        false
                    }
                }
            }
            None => {
                self.input = None;
                false
            }
        }
    }
}

impl<I, T> Iterator for TryMap<I, T>
where
    I: Iterator,
    I::Item: Send + 'static,
    T: Send + 'static,
{
    type Item = Result<T, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Buffered mode: keep `buffersize` items in flight (Python 3.14 order: submit
        // the next item, then wait for the oldest).
        self.pull();
        let fut = self.pending.pop_front()?;
        Some(fut.into_result(None))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let queued = self.pending.len();
        match &self.input {
            None => (queued, Some(queued)),
            Some(input) => {
                let (lo, hi) = input.size_hint();
                (
                    queued.saturating_add(lo),
                    hi.and_then(|h| h.checked_add(queued)),
                )
            }
        }
    }
}

impl<I: Iterator, T> Drop for TryMap<I, T> {
    fn drop(&mut self) {
        for fut in self.pending.drain(..) {
            fut.cancel();
        }
    }
}

impl<I: Iterator, T> fmt::Debug for TryMap<I, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TryMap")
            .field("in_flight", &self.pending.len())
            .field("input_exhausted", &self.input.is_none())
            .finish()
    }
}

/// Iterator over the values of [`ThreadPool::map`](crate::pool::ThreadPool::map) /
/// [`map_buffered`](crate::pool::ThreadPool::map_buffered), in input order: a [`TryMap`] that
/// yields `T` and panics, with the job's error, where a job failed (Python's `map` re-raises
/// the job's exception there).
#[derive(Debug)]
pub struct Map<I: Iterator, T>(pub(crate) TryMap<I, T>);

impl<I, T> Iterator for Map<I, T>
where
    I: Iterator,
    I::Item: Send + 'static,
    T: Send + 'static,
{
    type Item = T;

    /// # Panics
    ///
    /// If the job for this item panicked, was cancelled, or the pool was shut down or broken
    /// before it ran; the panic message names the [`PoolError`]. Use
    /// [`ThreadPool::try_map`](crate::pool::ThreadPool::try_map) to get the errors as values.
    fn next(&mut self) -> Option<T> {
        self.0
            .next()
            .map(|r| r.unwrap_or_else(|e| panic!("ringloop: ThreadPool::map job failed: {e}")))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}
