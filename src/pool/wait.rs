//! [`wait`] and [`as_completed`]: blocking waits over many [`PoolFuture`]s, for plain threads.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::PoolError;
use super::future::{Outcome, PoolFuture, Waiter, lock};
use crate::future::ReturnWhen;

// `future::wait` watches pool futures too; the impl lives here, since pool/ is above future/.
impl<T> crate::future::waitable_sealed::Sealed for PoolFuture<T> {}

impl<T> crate::future::Waitable for PoolFuture<T> {
    fn poll_done(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        PoolFuture::poll_done(self, cx)
    }

    fn is_failed(&self) -> bool {
        PoolFuture::is_failed(self)
    }
}

/// Collects the futures, dropping duplicate handles to the same job (Python uses a set).
fn unique<T>(futs: impl IntoIterator<Item = PoolFuture<T>>) -> Vec<PoolFuture<T>> {
    let mut seen = HashSet::new();
    futs.into_iter()
        .filter(|f| seen.insert(Arc::as_ptr(f.shared()).cast::<()>() as usize))
        .collect()
}

/// Blocks until the futures satisfy `return_when` or `timeout` passes, and returns
/// `(done, not_done)`, like Python's `concurrent.futures.wait`.
///
/// * [`ReturnWhen::FirstCompleted`]: as soon as any future is done (finished or cancelled).
/// * [`ReturnWhen::FirstException`]: as soon as any future fails (panic, broken pool, ...),
///   otherwise when all are done. As in Python, a **cancelled** future does not count as
///   an exception.
/// * [`ReturnWhen::AllCompleted`]: when all are done.
///
/// `done` holds every future done at return time (possibly more than one), `not_done`
/// the rest; both keep input order. Handles to the same job are kept once. A timeout
/// is not an error: check `not_done`. Nothing is ever cancelled. An empty input returns
/// at once. Blocking: from async code, await the futures instead.
///
/// # Examples
///
/// ```
/// use ringloop::{ReturnWhen, ThreadPool};
/// use std::time::Duration;
///
/// let pool = ThreadPool::new(2);
/// let fast = pool.submit(|| 1);
/// let slow = pool.submit(|| { std::thread::sleep(Duration::from_millis(300)); 2 });
/// let (done, not_done) = ringloop::pool::wait([fast, slow], None, ReturnWhen::FirstCompleted);
/// assert_eq!((done.len(), not_done.len()), (1, 1));
/// assert_eq!(done[0].result(None), Ok(1));
/// let (done, not_done) = ringloop::pool::wait(not_done, None, ReturnWhen::AllCompleted);
/// assert_eq!((done.len(), not_done.len()), (1, 0));
/// ```
pub fn wait<T>(
    futs: impl IntoIterator<Item = PoolFuture<T>>,
    timeout: Option<Duration>,
    return_when: ReturnWhen,
) -> (Vec<PoolFuture<T>>, Vec<PoolFuture<T>>) {
    let futs = unique(futs);
    let total = futs.len();
    let waiter = Waiter::new();
    let mut done = 0;
    let mut failed = false;
    for (i, f) in futs.iter().enumerate() {
        if let Some(outcome) = f.shared().watch(&waiter, i) {
            done += 1;
            failed |= outcome == Outcome::Failed;
        }
    }
    let satisfied = |done: usize, failed: bool| {
        done == total
            || match return_when {
                ReturnWhen::FirstCompleted => done > 0,
                ReturnWhen::FirstException => failed,
                ReturnWhen::AllCompleted => false,
            }
    };
    if !satisfied(done, failed) {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut events = lock(&waiter.events);
        loop {
            for (_, outcome) in events.drain(..) {
                done += 1;
                failed |= outcome == Outcome::Failed;
            }
            if satisfied(done, failed) {
                break;
            }
            match waiter.wait_events(events, deadline) {
                Some(guard) => events = guard,
                None => break,
            }
        }
    }
    let mut finished = Vec::new();
    let mut pending = Vec::new();
    for f in futs {
        if f.done() {
            finished.push(f);
        } else {
            f.shared().unwatch(&waiter);
            pending.push(f);
        }
    }
    (finished, pending)
}

/// Returns an iterator yielding the futures as they complete (finish or are
/// cancelled), like Python's `concurrent.futures.as_completed`.
///
/// Futures already done come first (in input order), then the others in completion
/// order; each `next()` blocks. `timeout` is an overall deadline counted from this
/// call: when it passes with futures still pending, the iterator yields
/// `Err(PoolError::Timeout)` **once** and then ends (where Python raises
/// `TimeoutError`); [`AsCompleted::into_pending`] gives back the futures not yielded.
/// Handles to the same job are yielded once.
///
/// # Examples
///
/// ```
/// use ringloop::ThreadPool;
/// use std::time::Duration;
///
/// let pool = ThreadPool::new(3);
/// let futs: Vec<_> = [3u64, 1, 2]
///     .into_iter()
///     .map(|n| pool.submit(move || { std::thread::sleep(Duration::from_millis(100 * n)); n }))
///     .collect();
/// let order: Vec<u64> = ringloop::pool::as_completed(futs, None)
///     .map(|f| f.unwrap().into_result(None).unwrap())
///     .collect();
/// assert_eq!(order, [1, 2, 3]);
/// ```
pub fn as_completed<T>(
    futs: impl IntoIterator<Item = PoolFuture<T>>,
    timeout: Option<Duration>,
) -> AsCompleted<T> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let futs = unique(futs);
    let waiter = Waiter::new();
    let mut ready = VecDeque::new();
    for (i, f) in futs.iter().enumerate() {
        if f.shared().watch(&waiter, i).is_some() {
            ready.push_back(i);
        }
    }
    AsCompleted {
        remaining: futs.len(),
        futs: futs.into_iter().map(Some).collect(),
        ready,
        waiter,
        deadline,
        timed_out: false,
    }
}

/// The blocking iterator returned by [`as_completed`]: yields
/// `Ok(future)` as each completes, or `Err(PoolError::Timeout)` once if the overall
/// timeout passes first, then `None`.
pub struct AsCompleted<T> {
    futs: Vec<Option<PoolFuture<T>>>,
    /// Indices of completed futures not yet yielded, in completion order.
    ready: VecDeque<usize>,
    waiter: Arc<Waiter>,
    /// Futures not yet yielded.
    remaining: usize,
    deadline: Option<Instant>,
    timed_out: bool,
}

impl<T> AsCompleted<T> {
    /// Stops iterating and returns the futures not yielded yet (in input order),
    /// e.g. after a timeout.
    pub fn into_pending(mut self) -> Vec<PoolFuture<T>> {
        let futs = std::mem::take(&mut self.futs);
        let pending: Vec<_> = futs.into_iter().flatten().collect();
        for f in &pending {
            f.shared().unwatch(&self.waiter);
        }
        pending
    }
}

impl<T> Iterator for AsCompleted<T> {
    type Item = Result<PoolFuture<T>, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ready.is_empty() {
            if self.remaining == 0 || self.timed_out {
                return None;
            }
            let mut events = lock(&self.waiter.events);
            while events.is_empty() {
                match self.waiter.wait_events(events, self.deadline) {
                    Some(guard) => events = guard,
                    None => {
                        self.timed_out = true;
                        return Some(Err(PoolError::Timeout));
                    }
                }
            }
            self.ready.extend(events.drain(..).map(|(i, _)| i));
        }
        let i = self.ready.pop_front()?;
        self.remaining -= 1;
        self.futs[i].take().map(Ok)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.timed_out {
            (0, Some(0))
        } else {
            (self.ready.len(), Some(self.remaining + 1))
        }
    }
}

impl<T> Drop for AsCompleted<T> {
    fn drop(&mut self) {
        for f in self.futs.iter().flatten() {
            f.shared().unwatch(&self.waiter);
        }
    }
}

impl<T> fmt::Debug for AsCompleted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("remaining", &self.remaining)
            .field("timed_out", &self.timed_out)
            .finish()
    }
}
