//! The runtime's integration with the executors: `spawn_blocking` on the runtime's own pool,
//! and `Handle::spawn` (asyncio's `run_coroutine_threadsafe`), whose result is a
//! [`PoolFuture`] that any thread can wait on.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::error::panic_message;
use super::future::Shared;
use super::{PoolError, PoolFuture, ThreadPool};
use crate::runtime::Handle;
use crate::runtime::context;

/// Runs the blocking function `f` on the runtime's thread pool and returns its future,
/// which a task can await (the loop is woken through its eventfd when the job finishes,
/// with no polling). tokio's `spawn_blocking`; asyncio's `loop.run_in_executor(None, f)`.
///
/// The pool starts its threads lazily, up to [`Builder::blocking_threads`]
/// (default min(32, CPUs + 4)); they are named `ringloop-blocking-N_i`. Closing the
/// runtime cancels jobs that have not started and waits for the running ones. A panic in
/// `f` becomes [`PoolError::Panicked`]; the worker survives.
///
/// # Panics
///
/// Outside a ringloop runtime.
///
/// # Examples
///
/// ```
/// let n = ringloop::run(async {
///     ringloop::spawn_blocking(|| (0..1000u64).sum::<u64>()).await
/// });
/// assert_eq!(n, Ok(499_500));
/// ```
///
/// [`Builder::blocking_threads`]: crate::Builder::blocking_threads
pub fn spawn_blocking<F, T>(f: F) -> PoolFuture<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let pool = context::with_local(|local| {
        let mut slot = local.blocking_pool.borrow_mut();
        let (pool, _) = slot.get_or_insert_with(|| {
            let mut builder = ThreadPool::builder().thread_name_prefix("ringloop-blocking");
            if let Some(n) = local.blocking_threads {
                builder = builder.max_workers(n);
            }
            (Box::new(builder.build()), close_blocking_pool)
        });
        pool.downcast_ref::<ThreadPool>()
            .expect("the blocking pool slot holds a ThreadPool")
            .clone()
    })
    .expect(
        "ringloop::spawn_blocking called outside a ringloop runtime; call it from inside \
         Runtime::block_on, ringloop::run or a task, or use a ThreadPool",
    );
    pool.submit(f)
}

/// Shuts the runtime's blocking pool down when the runtime closes: jobs not started are
/// cancelled, running ones are waited for.
fn close_blocking_pool(pool: Box<dyn std::any::Any>) {
    if let Ok(pool) = pool.downcast::<ThreadPool>() {
        pool.shutdown(true, true);
    }
}

impl Handle {
    /// Submits a `Send` future to this runtime from any thread and returns a [`PoolFuture`]
    /// for its output: asyncio's `run_coroutine_threadsafe`. The future runs as a task on
    /// the loop; the `PoolFuture` can be waited on from a plain thread (`result(timeout)`)
    /// or awaited from any executor.
    ///
    /// `cancel()` on the returned future succeeds while the future has not finished: before
    /// the loop starts it (then it never runs) or while it runs (its task is dropped at its
    /// next await point); after a `cancel()` that returned true the result is always
    /// [`PoolError::Cancelled`], as asyncio's. If the runtime is closed, the future fails with
    /// [`PoolError::Shutdown`]; if it closes while the future runs, with
    /// [`PoolError::Cancelled`]; a panic becomes [`PoolError::Panicked`].
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = ringloop::Runtime::new()?;
    /// let handle = rt.handle();
    /// let from_thread = std::thread::spawn(move || {
    ///     let fut = handle.spawn(async { 6 * 7 });
    ///     let answer = fut.result(None).unwrap();
    ///     handle.stop();
    ///     answer
    /// });
    /// rt.run_forever();
    /// assert_eq!(from_thread.join().unwrap(), 42);
    /// # std::io::Result::Ok(())
    /// ```
    pub fn spawn<F>(&self, future: F) -> PoolFuture<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_with(move || future)
    }

    /// Like [`Handle::spawn`], but the future is made on the loop's thread by `make`, so it
    /// need not be `Send` (Seastar's `submit_to`; `ShardedRuntime::submit_to` uses it).
    pub(crate) fn spawn_with<M, F>(&self, make: M) -> PoolFuture<F::Output>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future + 'static,
        F::Output: Send + 'static,
    {
        let shared = Shared::new_pending();
        let result = PoolFuture::from_shared(shared.clone());
        // If the loop closes with `start` still queued, the closure is dropped unrun; the guard
        // then reports Shutdown so that nobody waits forever.
        let guard = NotStarted(Some(shared));
        let start = move || {
            let mut guard = guard;
            let shared = guard
                .0
                .take()
                .expect("the guard holds the state until started");
            let cancel = Arc::new(CancelSignal::default());
            let signal = Arc::clone(&cancel);
            if shared.try_start_cancellable(Box::new(move || signal.raise())) {
                let future = match catch_unwind(AssertUnwindSafe(make)) {
                    Ok(future) => future,
                    Err(p) => {
                        Shared::settle(&shared, Err(PoolError::Panicked(panic_message(&*p))));
                        return;
                    }
                };
                crate::spawn(Reporter {
                    future: Some(future),
                    shared: Some(shared),
                    cancel,
                })
                .detach();
            }
        };
        if !self.call_soon_threadsafe(start) {
            // The closure (and the Shared inside it) was dropped unrun.
            return PoolFuture::failed(PoolError::Shutdown);
        }
        result
    }
}

/// Fails a `Handle::spawn` future with `Shutdown` if its start closure is dropped unrun.
struct NotStarted<T>(Option<Arc<Shared<T>>>);

impl<T> Drop for NotStarted<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            Shared::fail_if_pending(&shared, PoolError::Shutdown);
        }
    }
}

/// Set by `PoolFuture::cancel` (from any thread) to stop a running `Handle::spawn` future:
/// a flag and the waker of the task running the future, the `AtomicWaker` pattern (register,
/// then look at the flag again; raise, then wake), so a raise that races with a poll is never
/// missed.
#[derive(Default)]
struct CancelSignal {
    raised: std::sync::atomic::AtomicBool,
    waker: atomic_waker::AtomicWaker,
}

impl CancelSignal {
    fn raise(&self) {
        self.raised
            .store(true, std::sync::atomic::Ordering::Release);
        self.waker.wake();
    }

    /// True if raised; otherwise remembers `waker` to be woken when it is.
    fn check(&self, waker: &std::task::Waker) -> bool {
        if self.raised.load(std::sync::atomic::Ordering::Acquire) {
            return true;
        }
        self.waker.register(waker);
        // A raise between the first load and the registration found no waker: look again.
        self.raised.load(std::sync::atomic::Ordering::Acquire)
    }
}

pin_project_lite::pin_project! {
    /// Runs a `Handle::spawn` future on the loop and reports its outcome to the PoolFuture;
    /// if dropped before it finished (the runtime closed) or cancelled through the
    /// PoolFuture, reports cancellation.
    /// The future is dropped before its `PoolFuture` is told (`Some` until then), so that a
    /// waiter woken by the result never sees the future's resources still held.
    struct Reporter<F: Future> {
        #[pin]
        future: Option<F>,
        shared: Option<Arc<Shared<F::Output>>>,
        cancel: Arc<CancelSignal>,
    }

    impl<F: Future> PinnedDrop for Reporter<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            this.future.set(None);
            if let Some(shared) = this.shared.take() {
                Shared::settle(&shared, Err(PoolError::Cancelled));
            }
        }
    }
}

impl<F: Future> Future for Reporter<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        if this.cancel.check(cx.waker()) {
            // Returning finishes the task; PinnedDrop drops the future, then reports Cancelled.
            return Poll::Ready(());
        }
        let Some(future) = this.future.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        let result = match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(out)) => Ok(out),
            Err(p) => Err(PoolError::Panicked(panic_message(&*p))),
        };
        // A panicking drop is caught like a panicking poll would be.
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| this.future.set(None))) {
            crate::callbacks::report_panic("dropping a Handle::spawn future", &*p);
        }
        if let Some(shared) = this.shared.take() {
            Shared::settle(&shared, result);
        }
        Poll::Ready(())
    }
}

// Host-name resolution needs the blocking pool, which sits above net/ in the layers; so this
// one `TcpStream` constructor lives here rather than in net/tcp.rs.
impl crate::net::TcpStream {
    /// Resolves `host` (on the runtime's blocking pool, with the std resolver, so the loop
    /// never blocks) and connects to the first of its addresses that accepts.
    ///
    /// # Errors
    ///
    /// The resolver's error, or the last address's connect error.
    ///
    /// # Examples
    ///
    /// ```
    /// ringloop::run(async {
    ///     let listener = ringloop::net::TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let port = listener.local_addr().unwrap().port();
    ///     let stream = ringloop::net::TcpStream::connect_host("localhost", port).await;
    ///     // "localhost" may resolve to ::1 first; some address accepted or all were refused.
    ///     let _ = stream;
    /// });
    /// ```
    pub async fn connect_host(host: &str, port: u16) -> std::io::Result<crate::net::TcpStream> {
        let host = host.to_owned();
        let addrs = crate::spawn_blocking(move || {
            std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                .map(|a| a.collect::<Vec<_>>())
        })
        .await
        .map_err(std::io::Error::other)??;
        let mut last = None;
        for addr in addrs {
            match crate::net::TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "ringloop: the host name resolved to no address",
            )
        }))
    }
}
