//! The event loop: `Runtime`, its `Builder`, the thread-safe `Handle`, `run`, and the task,
//! timer and context machinery under them.

pub(crate) mod context;
pub(crate) mod inject;
pub(crate) mod scheduler;
pub(crate) mod task;
pub(crate) mod time;
pub(crate) mod timer;

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::marker::PhantomData;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use crate::driver::{Driver, DriverConfig, DriverKind, Notifier};
use context::Enter;
use inject::{Injected, Shared};
use scheduler::Local;

/// Configures and builds a [`Runtime`].
///
/// # Examples
///
/// ```
/// let rt = ringloop::Runtime::builder().entries(64).build()?;
/// assert_eq!(rt.block_on(async { 1 + 1 }), 2);
/// # std::io::Result::Ok(())
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    driver: DriverConfig,
    blocking_threads: Option<usize>,
}

impl Builder {
    /// Submission queue entries of the ring (default 256; the completion queue gets twice as
    /// many). More operations than this may be in flight at once: a full queue is flushed to
    /// the kernel and the push retried. Must be at least 1; the epoll driver has no ring and
    /// ignores it otherwise.
    pub fn entries(mut self, entries: u32) -> Builder {
        self.driver.entries = entries;
        self
    }

    /// Uses a kernel thread that polls the submission queue (`IORING_SETUP_SQPOLL`), going idle
    /// after `idle` milliseconds without work. Saves the submit syscall at the cost of a core.
    /// Has no effect on the epoll driver.
    pub fn sqpoll(mut self, idle_ms: u32) -> Builder {
        self.driver.sqpoll_idle_ms = Some(idle_ms);
        self
    }

    /// The buffers lent by [`read_lent`](crate::net::TcpStream::read_lent): `count` buffers of
    /// `size` bytes in the loop's provided buffer ring (default 256 of 4 KiB; the memory is
    /// mapped on the first lent read, and pages become resident as the kernel fills them).
    /// `count` must be a power of two of at most 32768; 0 turns the ring off, and lent reads
    /// then use heap buffers of `size` bytes, as on epoll. Ignored by the epoll driver except
    /// for `size`.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = ringloop::Runtime::builder().recv_buffers(1024, 16 * 1024).build()?;
    /// # drop(rt);
    /// # std::io::Result::Ok(())
    /// ```
    ///
    /// # Panics
    ///
    /// If `count` is not 0 or a power of two of at most 32768, or `size` is 0 or does not fit
    /// in a `u32`.
    pub fn recv_buffers(mut self, count: u16, size: usize) -> Builder {
        assert!(
            count == 0 || (count.is_power_of_two() && count <= 1 << 15),
            "ringloop: recv_buffers count must be 0 or a power of two of at most 32768, not {count}"
        );
        assert!(
            size > 0 && u32::try_from(size).is_ok(),
            "ringloop: recv_buffers size must be between 1 and u32::MAX bytes, not {size}"
        );
        self.driver.recv_buffers = count;
        self.driver.recv_buffer_size = size as u32;
        self
    }

    /// The registered buffers lent by [`File::read_lent_at`](crate::fs::File::read_lent_at):
    /// `count` buffers of `size` bytes (default 64 of 16 KiB), registered with the ring
    /// (`IORING_REGISTER_BUFFERS`, which pins them in memory) on the first lent file read.
    /// 0 turns them off (lent file reads then use heap buffers, as on epoll). Ignored by the
    /// epoll driver.
    ///
    /// # Panics
    ///
    /// If `size` is 0 or does not fit in a `u32` while `count` is not 0.
    pub fn file_buffers(mut self, count: u16, size: usize) -> Builder {
        assert!(
            count == 0 || (size > 0 && u32::try_from(size).is_ok()),
            "ringloop: file_buffers size must be between 1 and u32::MAX bytes, not {size}"
        );
        self.driver.file_buffers = count;
        self.driver.file_buffer_size = size.min(u32::MAX as usize) as u32;
        self
    }

    /// Maximum number of threads of the runtime's blocking pool (`spawn_blocking`); default
    /// min(32, CPUs + 4), as Python's ThreadPoolExecutor.
    pub fn blocking_threads(mut self, n: usize) -> Builder {
        self.blocking_threads = Some(n);
        self
    }

    /// Chooses the driver (default [`DriverKind::Auto`]: io_uring where the kernel allows it,
    /// else epoll). An explicit choice wins over the `RINGLOOP_DRIVER` environment variable,
    /// which overrides only `Auto`. See LINUX_ONLY.md for what differs on epoll.
    ///
    /// # Examples
    ///
    /// ```
    /// use ringloop::{DriverKind, Runtime};
    ///
    /// let rt = Runtime::builder().driver(DriverKind::Epoll).build()?;
    /// assert_eq!(rt.driver_kind(), DriverKind::Epoll);
    /// assert_eq!(rt.block_on(async { ringloop::fs::read("/proc/self/stat").await.is_ok() }), true);
    /// # std::io::Result::Ok(())
    /// ```
    pub fn driver(mut self, kind: DriverKind) -> Builder {
        self.driver.kind = kind;
        self
    }

    /// Creates the runtime.
    ///
    /// # Errors
    ///
    /// With [`DriverKind::IoUring`] (asked for, or by `RINGLOOP_DRIVER=io_uring`), when
    /// io_uring cannot be used (disabled by sysctl or seccomp, kernel too old, out of locked
    /// memory or file descriptors): the error names the cause and points to LINUX_ONLY.md.
    /// `InvalidInput` for zero ring entries or an unknown `RINGLOOP_DRIVER` value. Otherwise
    /// only when the process is out of file descriptors.
    pub fn build(self) -> io::Result<Runtime> {
        let notifier = Arc::new(Notifier::new()?);
        let driver = Driver::new(&self.driver, notifier.clone())?;
        let shared = Arc::new(Shared::new(Some(notifier)));
        let _ = shared.driver_kind.set(driver.kind());
        let local = Rc::new(Local::new(shared, driver, self.blocking_threads));
        Ok(Runtime {
            local,
            _not_send: PhantomData,
        })
    }
}

/// An event loop on one thread with one driver (an io_uring, or an epoll set where io_uring is
/// refused): asyncio's event loop.
///
/// A `Runtime` is `!Send`: it runs on the thread that created it. Other threads reach it
/// through a [`Handle`]. Dropping it (or [`Runtime::close`]) drops every task's future on this
/// thread, cancels in-flight I/O and reaps its completions before any buffer is freed.
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<ringloop::Runtime>();
/// ```
///
/// # Examples
///
/// ```
/// let rt = ringloop::Runtime::new()?;
/// let answer = rt.block_on(async {
///     let task = ringloop::spawn(async { 6 * 7 });
///     task.await.unwrap()
/// });
/// assert_eq!(answer, 42);
/// # std::io::Result::Ok(())
/// ```
pub struct Runtime {
    local: Rc<Local>,
    _not_send: PhantomData<*const ()>,
}

impl Runtime {
    /// A runtime with default settings.
    ///
    /// # Errors
    ///
    /// See [`Builder::build`].
    pub fn new() -> io::Result<Runtime> {
        Runtime::builder().build()
    }

    /// A [`Builder`] with default settings.
    pub fn builder() -> Builder {
        Builder {
            driver: DriverConfig::default(),
            blocking_threads: None,
        }
    }

    /// Runs the loop until `future` completes and returns its output: asyncio's
    /// `run_until_complete`. Tasks spawned meanwhile keep running whenever the loop runs
    /// again; those still pending when the runtime is dropped are cancelled then.
    ///
    /// A [`stop`](Runtime::stop) requested meanwhile does not end `block_on`; it ends the
    /// next [`run_forever`](Runtime::run_forever) after one pass.
    ///
    /// # Panics
    ///
    /// If a runtime is already running on this thread (`block_on` inside `block_on`), if the
    /// runtime was closed, or if `future` panics (the panic propagates; the runtime stays
    /// usable).
    pub fn block_on<F: IntoFuture>(&self, future: F) -> F::Output {
        let _guard = self.enter("block_on");
        let mut future = pin!(future.into_future());
        let main = Arc::new(MainWaker {
            woken: AtomicBool::new(true),
            shared: self.local.shared.clone(),
            loop_thread: std::thread::current().id(),
        });
        let waker = Waker::from(main.clone());
        let mut cx = Context::from_waker(&waker);
        let main_ready = || main.woken.load(Ordering::SeqCst);
        loop {
            if main.woken.swap(false, Ordering::AcqRel) {
                if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                    self.local.flush_submissions();
                    return out;
                }
            }
            self.local.tick(&main_ready, false);
        }
    }

    /// Alias of [`block_on`](Runtime::block_on), asyncio's name.
    pub fn run_until_complete<F: IntoFuture>(&self, future: F) -> F::Output {
        self.block_on(future)
    }

    /// Runs the loop until [`stop`](Runtime::stop) is called (from a task, a callback, or
    /// another thread through [`Handle::stop`]); then returns. If `stop` was called before,
    /// runs one pass and returns, as asyncio does.
    ///
    /// # Panics
    ///
    /// As [`block_on`](Runtime::block_on).
    pub fn run_forever(&self) {
        let _guard = self.enter("run_forever");
        let never = || false;
        loop {
            self.local.tick(&never, true);
            if self
                .local
                .shared
                .stop_requested
                .swap(false, Ordering::AcqRel)
            {
                self.local.flush_submissions();
                return;
            }
        }
    }

    /// Asks [`run_forever`](Runtime::run_forever) to return after the current pass.
    pub fn stop(&self) {
        self.handle().stop();
    }

    /// Spawns a task on this runtime, which need not be running yet (asyncio's
    /// `loop.create_task`); it starts when the loop next runs.
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> crate::Task<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let location = std::panic::Location::caller();
        let _guard = Enter::new(self.local.clone());
        self.local.spawn(future, location)
    }

    /// Closes the runtime: every unfinished task is cancelled (its future dropped on this
    /// thread, done callbacks run), in-flight I/O is cancelled and reaped, and the driver (ring
    /// or epoll set) is released. Same as dropping it.
    pub fn close(self) {}

    /// True while `block_on` or `run_forever` runs.
    pub fn is_running(&self) -> bool {
        self.local.shared.running.load(Ordering::Acquire)
    }

    /// True once the runtime is closed (only observable through a [`Handle`], since `close`
    /// consumes the runtime).
    pub fn is_closed(&self) -> bool {
        self.local.is_closed()
    }

    /// Which driver this runtime runs on: [`DriverKind::IoUring`] or [`DriverKind::Epoll`],
    /// never `Auto`.
    pub fn driver_kind(&self) -> DriverKind {
        self.local.driver.borrow().kind()
    }

    /// Gives the runtime a blocking pool it shares with others (the shards of a
    /// `ShardedRuntime`), instead of the one it would create on first use; `close` is how the
    /// runtime lets go of it when it closes.
    pub(crate) fn set_blocking_pool(&self, pool: scheduler::ErasedPool) {
        *self.local.blocking_pool.borrow_mut() = Some(pool);
    }

    /// A thread-safe handle to this runtime.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.local.shared.clone(),
        }
    }

    fn enter(&self, what: &str) -> RunGuard {
        assert!(
            !context::is_entered(),
            "ringloop: Runtime::{what} called while a ringloop runtime is already running on \
             this thread (block_on inside block_on or inside a task); spawn the future or \
             await it instead"
        );
        assert!(
            !self.local.is_closed(),
            "ringloop: Runtime::{what} on a closed runtime"
        );
        self.local.shared.running.store(true, Ordering::Release);
        RunGuard {
            _enter: Enter::new(self.local.clone()),
            shared: self.local.shared.clone(),
        }
    }
}

/// Marks the loop running and current for the duration of `block_on` / `run_forever`.
struct RunGuard {
    _enter: Enter,
    shared: Arc<Shared>,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.shared.running.store(false, Ordering::Release);
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _enter = Enter::new(self.local.clone());
        self.local.close();
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("running", &self.is_running())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// The waker of the `block_on` future: a flag the loop checks each pass.
struct MainWaker {
    woken: AtomicBool,
    shared: Arc<Shared>,
    /// The loop's thread: a wake from it needs no unpark (the loop is running, not parked).
    loop_thread: std::thread::ThreadId,
}

impl Wake for MainWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if std::thread::current().id() != self.loop_thread {
            self.shared.unpark();
        }
    }
}

/// A thread-safe reference to a runtime: `Send + Sync + Clone`. Lets other threads stop the
/// loop and hand it work.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// The handle of the runtime running on this thread.
    ///
    /// # Panics
    ///
    /// Outside a ringloop runtime.
    pub fn current() -> Handle {
        context::with_local(|local| Handle {
            shared: local.shared.clone(),
        })
        .expect(
            "ringloop::Handle::current called outside a ringloop runtime; call it from inside \
             Runtime::block_on, ringloop::run or a task, and pass the Handle to other threads",
        )
    }

    /// Which driver the runtime runs on: [`DriverKind::IoUring`] or [`DriverKind::Epoll`].
    pub fn driver_kind(&self) -> DriverKind {
        *self
            .shared
            .driver_kind
            .get()
            .expect("set when the runtime is built")
    }

    /// Asks `run_forever` to return after its current pass; wakes the loop if it is parked.
    pub fn stop(&self) {
        self.shared.stop_requested.store(true, Ordering::Release);
        self.shared.unpark();
    }

    /// Runs `f` on the loop thread soon: asyncio's `call_soon_threadsafe`. Returns false if
    /// the runtime is closed (then `f` is dropped without running).
    pub fn call_soon_threadsafe(&self, f: impl FnOnce() + Send + 'static) -> bool {
        self.shared.push(Injected::Call(Box::new(f))).is_ok()
    }

    /// True while the runtime runs `block_on` or `run_forever`.
    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::Acquire)
    }

    /// True once the runtime is closed.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("running", &self.is_running())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Runs `future` to completion on a new runtime, then closes it: asyncio's `run`.
///
/// # Panics
///
/// If the runtime cannot be built (use [`Runtime::new`] to handle that error: with the
/// default driver choice that is only `RINGLOOP_DRIVER=io_uring` where io_uring is refused, or
/// a process out of descriptors), if called inside a running runtime, or if `future` panics.
///
/// # Examples
///
/// ```
/// let n = ringloop::run(async { 7 });
/// assert_eq!(n, 7);
/// ```
pub fn run<F: IntoFuture>(future: F) -> F::Output {
    let rt = Runtime::new().unwrap_or_else(|e| panic!("ringloop::run: {e}"));
    rt.block_on(future)
}
