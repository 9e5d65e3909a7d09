//! `as_completed` (asyncio.as_completed): a stream of outputs in completion
//! order, and `as_completed_until` with an overall timeout future.

use std::convert::Infallible;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::stream::{FusedStream, Stream};

use super::elapsed::Elapsed;
use super::set::FutureSet;

/// Runs every future of `iter` concurrently and yields their outputs in
/// completion order (asyncio `as_completed`).
///
/// The returned [`AsCompleted`] is a [`Stream`] and also has an inherent
/// [`next`](AsCompleted::next), so no extension trait is needed. It ends once
/// every child has finished. Children run only while the stream is polled.
/// Dropping it drops (cancels) every unfinished child. Each input is a separate child:
/// unlike asyncio (which takes a set), two clones of one `Promise` yield twice.
///
/// ```
/// # futures::executor::block_on(async {
/// let mut stream = ringloop::as_completed((1..=2).map(|i| async move { i }));
/// let mut sum = 0;
/// while let Some(v) = stream.next().await {
///     sum += v;
/// }
/// assert_eq!(sum, 3);
/// # });
/// ```
pub fn as_completed<I>(iter: I) -> AsCompleted<<I::Item as IntoFuture>::IntoFuture>
where
    I: IntoIterator,
    I::Item: IntoFuture,
{
    AsCompleted {
        set: FutureSet::new(iter.into_iter().map(IntoFuture::into_future)),
    }
}

/// Stream returned by [`as_completed`].
#[must_use = "streams do nothing unless polled"]
pub struct AsCompleted<F: Future> {
    set: FutureSet<F, Infallible>,
}

impl<F: Future> AsCompleted<F> {
    /// Number of children that have not finished yet.
    pub fn len(&self) -> usize {
        self.set.running()
    }

    /// Whether every child has finished (the stream is exhausted).
    pub fn is_empty(&self) -> bool {
        self.set.running() == 0
    }

    /// Waits for the next child to finish and returns its output, or `None`
    /// once every child has finished.
    #[allow(clippy::should_implement_trait)] // async `next`, not `Iterator::next`
    pub fn next(&mut self) -> impl Future<Output = Option<F::Output>> + '_ {
        std::future::poll_fn(move |cx| self.poll_next_unpin(cx))
    }

    /// Polls for the next finished child (the `Stream` method without
    /// needing `Pin`).
    pub fn poll_next_unpin(&mut self, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        self.set.poll_next(cx).map(|r| r.map(|(_, out)| out))
    }

    /// Adds an overall timeout: see [`as_completed_until`].
    pub fn until<S: Future<Output = ()>>(self, timeout: S) -> AsCompletedUntil<F, S> {
        AsCompletedUntil {
            inner: self,
            timeout: Some(Box::pin(timeout)),
        }
    }

    /// Gives up once `duration` has passed: the stream then yields one `Err(Elapsed)`, drops
    /// (cancels) the unfinished children and ends. asyncio's `as_completed(aws, timeout=...)`.
    pub fn timeout(self, duration: std::time::Duration) -> AsCompletedUntil<F, crate::Sleep> {
        self.until(crate::sleep(duration))
    }
}

impl<F: Future> fmt::Debug for AsCompleted<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("remaining", &self.set.running())
            .finish()
    }
}

impl<F: Future> Stream for AsCompleted<F> {
    type Item = F::Output;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_unpin(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

impl<F: Future> FusedStream for AsCompleted<F> {
    fn is_terminated(&self) -> bool {
        self.is_empty()
    }
}

/// Like [`as_completed`], with an overall timeout given as a future.
///
/// Yields `Ok(output)` in completion order. If `timeout` completes before
/// every child has finished, yields one `Err(Elapsed)`, drops (cancels)
/// every unfinished child and then ends. Outputs that are ready when the
/// timeout fires are yielded first. The timeout future is any
/// `Future<Output = ()>` (for example a runtime's `sleep`), so this works on
/// any executor.
pub fn as_completed_until<I, S>(
    iter: I,
    timeout: S,
) -> AsCompletedUntil<<I::Item as IntoFuture>::IntoFuture, S>
where
    I: IntoIterator,
    I::Item: IntoFuture,
    S: Future<Output = ()>,
{
    as_completed(iter).until(timeout)
}

/// Stream returned by [`as_completed_until`].
#[must_use = "streams do nothing unless polled"]
pub struct AsCompletedUntil<F: Future, S> {
    inner: AsCompleted<F>,
    /// `None` once the stream has ended (all done, or timed out).
    timeout: Option<Pin<Box<S>>>,
}

impl<F: Future, S: Future<Output = ()>> AsCompletedUntil<F, S> {
    /// Number of children that have not finished yet (0 after a timeout).
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether no child is left (all finished, or dropped by the timeout).
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Waits for the next item: `Some(Ok(output))`, `Some(Err(Elapsed))`
    /// once on timeout, or `None` when the stream has ended.
    #[allow(clippy::should_implement_trait)] // async `next`, not `Iterator::next`
    pub fn next(&mut self) -> impl Future<Output = Option<Result<F::Output, Elapsed>>> + '_ {
        std::future::poll_fn(move |cx| self.poll_next_unpin(cx))
    }

    /// Polls for the next item (the `Stream` method without needing `Pin`).
    pub fn poll_next_unpin(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<F::Output, Elapsed>>> {
        let Some(timeout) = self.timeout.as_mut() else {
            return Poll::Ready(None);
        };
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(out)) => return Poll::Ready(Some(Ok(out))),
            Poll::Ready(None) => {
                self.timeout = None;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        match timeout.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.timeout = None;
                // Cancel every unfinished child before yielding the error.
                self.inner.set.clear();
                Poll::Ready(Some(Err(Elapsed::new())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F: Future, S> fmt::Debug for AsCompletedUntil<F, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompletedUntil")
            .field("remaining", &self.inner.set.running())
            .field("ended", &self.timeout.is_none())
            .finish()
    }
}

impl<F: Future, S: Future<Output = ()>> Stream for AsCompletedUntil<F, S> {
    type Item = Result<F::Output, Elapsed>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_unpin(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.timeout {
            None => (0, Some(0)),
            Some(_) => (self.inner.len().min(1), Some(self.inner.len() + 1)),
        }
    }
}

impl<F: Future, S: Future<Output = ()>> FusedStream for AsCompletedUntil<F, S> {
    fn is_terminated(&self) -> bool {
        self.timeout.is_none()
    }
}
