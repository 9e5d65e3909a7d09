//! `wait`: waits on a set of tasks (or pool futures) until the first completes, the first
//! fails, or all complete, with an optional timeout. Never cancels anything.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use super::ReturnWhen;
use crate::runtime::task::Task;
use crate::runtime::time::{Sleep, sleep};

/// Something [`wait`] can watch without consuming it: a [`Task`] or a
/// [`PoolFuture`](crate::PoolFuture).
pub trait Waitable: sealed::Sealed {
    /// Ready once the item is done; otherwise arranges for `cx`'s waker to be woken when it
    /// is. Never takes the output.
    fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()>;

    /// True if the item finished with an exception: a panic (or, for a pool future, a broken or
    /// shut-down pool). Cancellation is not an exception, as in asyncio.
    fn is_failed(&self) -> bool;
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

impl<T> sealed::Sealed for Task<T> {}

// `PoolFuture`'s impl is in pool/wait.rs: pool/ sits above future/ in the layers.

impl<T> Waitable for Task<T> {
    fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_done(cx)
    }

    fn is_failed(&self) -> bool {
        self.is_failed()
    }
}

/// Waits until `return_when` is met or `timeout` passes, then returns `(done, pending)`, each
/// in input order: asyncio's `wait`. Nothing is cancelled: pending tasks keep running and can
/// be awaited or waited on again.
///
/// - [`ReturnWhen::FirstCompleted`]: as soon as one item is done.
/// - [`ReturnWhen::FirstException`]: as soon as one item failed (panicked or, for pool
///   futures, failed with another error; cancellation does not count, as in asyncio);
///   otherwise when all are done.
/// - [`ReturnWhen::AllCompleted`]: when all are done.
///
/// An empty input returns at once. A wake of one item costs O(1), not a scan of all.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ringloop::ReturnWhen;
/// ringloop::run(async {
///     let tasks = vec![
///         ringloop::spawn(async { ringloop::sleep(Duration::from_millis(1)).await; 1 }),
///         ringloop::spawn(async { ringloop::sleep(Duration::from_secs(3600)).await; 2 }),
///     ];
///     let (done, pending) = ringloop::wait(tasks, None, ReturnWhen::FirstCompleted).await;
///     assert_eq!((done.len(), pending.len()), (1, 1));
///     assert!(!pending[0].is_done()); // still running
/// });
/// ```
pub async fn wait<W: Waitable>(
    items: impl IntoIterator<Item = W>,
    timeout: Option<Duration>,
    return_when: ReturnWhen,
) -> (Vec<W>, Vec<W>) {
    let items: Vec<W> = items.into_iter().collect();
    let mut waiting = Waiting::new(items.len(), return_when, timeout.map(sleep));
    std::future::poll_fn(|cx| waiting.poll(&items, cx)).await;
    waiting.partition(items)
}

/// The bookkeeping of one `wait`: which items were woken, how many are done.
struct Waiting {
    ready: Arc<ReadyList>,
    /// One waker per item, pushing its index on `ready`.
    wakers: Vec<Waker>,
    done: Vec<bool>,
    n_done: usize,
    failed: bool,
    return_when: ReturnWhen,
    timeout: Option<Sleep>,
}

/// Indices of items woken since the last poll, and the waker of the `wait` itself.
struct ReadyList {
    inner: Mutex<(Vec<usize>, Option<Waker>)>,
}

struct ItemWaker {
    index: usize,
    list: Arc<ReadyList>,
}

impl Wake for ItemWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let waker = {
            let mut inner = crate::sync::lock(&self.list.inner);
            inner.0.push(self.index);
            inner.1.clone()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Waiting {
    fn new(n: usize, return_when: ReturnWhen, timeout: Option<Sleep>) -> Waiting {
        let ready = Arc::new(ReadyList {
            // Every item is polled once at the start.
            inner: Mutex::new(((0..n).collect(), None)),
        });
        let wakers = (0..n)
            .map(|index| {
                Waker::from(Arc::new(ItemWaker {
                    index,
                    list: ready.clone(),
                }))
            })
            .collect();
        Waiting {
            ready,
            wakers,
            done: vec![false; n],
            n_done: 0,
            failed: false,
            return_when,
            timeout,
        }
    }

    fn satisfied(&self) -> bool {
        let all = self.n_done == self.done.len();
        match self.return_when {
            ReturnWhen::AllCompleted => all,
            ReturnWhen::FirstCompleted => all || self.n_done > 0,
            ReturnWhen::FirstException => all || self.failed,
        }
    }

    fn poll<W: Waitable>(&mut self, items: &[W], cx: &mut Context<'_>) -> Poll<()> {
        let woken = {
            let mut inner = crate::sync::lock(&self.ready.inner);
            match &inner.1 {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => inner.1 = Some(cx.waker().clone()),
            }
            std::mem::take(&mut inner.0)
        };
        for index in woken {
            if self.done[index] {
                continue;
            }
            let mut item_cx = Context::from_waker(&self.wakers[index]);
            if items[index].poll_done(&mut item_cx).is_ready() {
                self.done[index] = true;
                self.n_done += 1;
                self.failed |= items[index].is_failed();
            }
        }
        if self.satisfied() {
            return Poll::Ready(());
        }
        match &mut self.timeout {
            Some(sleep) => Pin::new(sleep).poll(cx),
            None => Poll::Pending,
        }
    }

    fn partition<W>(&self, items: Vec<W>) -> (Vec<W>, Vec<W>) {
        let mut done = Vec::with_capacity(self.n_done);
        let mut pending = Vec::with_capacity(items.len() - self.n_done);
        for (item, is_done) in items.into_iter().zip(&self.done) {
            if *is_done {
                done.push(item);
            } else {
                pending.push(item);
            }
        }
        (done, pending)
    }
}
