//! `wait_for` (alias `timeout`): a future with a deadline; on expiry the future is dropped.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;

use super::Elapsed;
use crate::runtime::time::{Sleep, sleep_until};

/// Runs `future` for at most `duration`: asyncio's `wait_for`. Returns its output, or
/// [`Elapsed`] if the deadline passed first; the future is then dropped at once, so an
/// awaited [`Task`](crate::Task) is cancelled and in-flight I/O under it is cancelled safely.
/// To let the work go on past the deadline, pass a [`shield`](crate::shield).
///
/// The deadline is fixed when `wait_for` is called. A future that is ready when first polled
/// wins even if the duration is zero.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// ringloop::run(async {
///     let slow = ringloop::sleep(Duration::from_secs(3600));
///     assert!(ringloop::wait_for(slow, Duration::from_millis(1)).await.is_err());
///     let quick = async { 5 };
///     assert_eq!(ringloop::wait_for(quick, Duration::from_secs(1)).await, Ok(5));
/// });
/// ```
pub fn wait_for<F: IntoFuture>(future: F, duration: Duration) -> WaitFor<F::IntoFuture> {
    let deadline = Instant::now()
        .checked_add(duration)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86400 * 365 * 30));
    wait_until(future, deadline)
}

/// Like [`wait_for`], with an absolute deadline.
pub fn wait_until<F: IntoFuture>(future: F, deadline: Instant) -> WaitFor<F::IntoFuture> {
    WaitFor {
        state: State::Running {
            future: future.into_future(),
        },
        sleep: sleep_until(deadline),
    }
}

pub use wait_for as timeout;

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running { #[pin] future: F },
        Done,
    }
}

pin_project! {
    /// Future of [`wait_for`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct WaitFor<F> {
        #[pin]
        state: State<F>,
        sleep: Sleep,
    }
}

impl<F> WaitFor<F> {
    /// When the deadline passes.
    pub fn deadline(&self) -> Instant {
        self.sleep.deadline()
    }
}

impl<F: Future> Future for WaitFor<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let StateProj::Running { future } = this.state.as_mut().project() else {
            panic!("ringloop: WaitFor polled after it completed");
        };
        if let Poll::Ready(out) = future.poll(cx) {
            this.state.set(State::Done);
            return Poll::Ready(Ok(out));
        }
        if Pin::new(&mut *this.sleep).poll(cx).is_ready() {
            // Cancel the inner future now, not whenever the WaitFor is dropped.
            this.state.set(State::Done);
            return Poll::Ready(Err(Elapsed::new()));
        }
        Poll::Pending
    }
}

impl<F> std::fmt::Debug for WaitFor<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitFor")
            .field("deadline", &self.sleep.deadline())
            .finish_non_exhaustive()
    }
}
