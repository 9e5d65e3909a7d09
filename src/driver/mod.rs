//! The driver: the only code that speaks io_uring (`driver/uring`) or epoll (`driver/epoll`).
//! It owns the table of in-flight operations, runs each operation (as an SQE, a readiness-driven
//! non-blocking syscall, or a syscall on its blocking threads), parks with a deadline, cancels,
//! and lets other threads wake a parked loop. Everything above it sees one operation type
//! (`op::OpCode`), one future (`op::Op`) and one result type (`io::Result<u32>`), and never
//! learns which driver ran an operation.
//!
//! # Ground rules
//!
//! * The driver lives in an `Rc<RefCell<Driver>>` owned by one loop thread. Only that thread
//!   submits, reaps or parks. Other threads reach the loop only through [`Notifier`]; the
//!   blocking threads hand results back through `blocking::Pool` and the same notifier.
//! * Every operation the kernel (or a blocking thread) may still be running has an entry in the
//!   table, and the entry owns the operation's memory (directly, or through the [`op::Op`]
//!   future that created it) until the result has been collected. Dropping an `Op` early moves
//!   its data into the entry ([`Lifecycle::Ignored`]) and cancels; the data is freed when the
//!   result comes. An epoll operation still waiting for readiness has run no syscall, so it is
//!   withdrawn at once.
//! * Dropping the driver cancels everything in flight and waits, for a bounded time, for the
//!   results; data whose result never came is leaked rather than freed.
//! * The driver knows nothing of tasks: it stores and wakes `Waker`s.

pub(crate) mod accept;
pub(crate) mod blocking;
mod epoll;
pub(crate) mod fd;
pub(crate) mod lent;
pub(crate) mod notify;
pub(crate) mod op;
#[cfg(test)]
mod tests;
mod uring;

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use slab::Slab;

pub(crate) use notify::Notifier;
use op::{OpCode, Plan};

/// Which driver a runtime runs on.
///
/// # Examples
///
/// ```
/// use ringloop::{DriverKind, Runtime};
///
/// // Auto (the default) takes io_uring where the kernel allows it, else epoll.
/// let rt = Runtime::new()?;
/// assert_ne!(rt.driver_kind(), DriverKind::Auto);
///
/// // Epoll works everywhere.
/// let rt = Runtime::builder().driver(DriverKind::Epoll).build()?;
/// assert_eq!(rt.driver_kind(), DriverKind::Epoll);
/// # std::io::Result::Ok(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriverKind {
    /// io_uring when the kernel allows it, else epoll; `RINGLOOP_DRIVER=io_uring|epoll`
    /// overrides the choice.
    #[default]
    Auto,
    /// io_uring only: building fails, with an error that names the cause, where it is refused.
    IoUring,
    /// epoll readiness, with file operations on the driver's blocking threads.
    Epoll,
}

/// Options the runtime's `Builder` passes down to the driver.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DriverConfig {
    pub(crate) kind: DriverKind,
    /// Submission queue entries (the kernel rounds up to a power of two).
    pub(crate) entries: u32,
    /// `IORING_SETUP_SQPOLL` with this idle time in milliseconds.
    pub(crate) sqpoll_idle_ms: Option<u32>,
    /// Buffers of the provided buffer ring (a power of two; 0: no ring, lent buffers come from
    /// the heap).
    pub(crate) recv_buffers: u16,
    /// The size of each lent buffer.
    pub(crate) recv_buffer_size: u32,
    /// Registered buffers for lent file reads (0: none, heap buffers instead).
    pub(crate) file_buffers: u16,
    /// The size of each registered buffer.
    pub(crate) file_buffer_size: u32,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            kind: DriverKind::Auto,
            entries: 256,
            sqpoll_idle_ms: None,
            recv_buffers: 256,
            recv_buffer_size: 4096,
            file_buffers: 64,
            file_buffer_size: 16 * 1024,
        }
    }
}

/// How long the driver waits, when it closes, for the results of cancelled operations before
/// it leaks their data instead.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A raw result that means "the time limit of [`op::Op::submit_within`] passed".
const TIMED_OUT: i32 = i32::MIN;

/// Set in a negated raw result (`-(NO_THREAD | errno)`) when no blocking thread could be
/// started to run the operation: `errno` is `pthread_create`'s. Far above any errno.
const NO_THREAD: i32 = 1 << 24;

/// The result type above the driver.
fn result_of(raw: i32) -> io::Result<u32> {
    match raw {
        TIMED_OUT => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "ringloop: the operation timed out",
        )),
        r if r < 0 && (-r) & NO_THREAD != 0 => {
            let cause = io::Error::from_raw_os_error((-r) & !NO_THREAD);
            Err(io::Error::new(
                cause.kind(),
                format!(
                    "ringloop: could not start a thread to run a blocking operation ({cause}); \
                     the process or user may be at its thread limit (RLIMIT_NPROC)"
                ),
            ))
        }
        r if r < 0 => Err(io::Error::from_raw_os_error(-r)),
        r => Ok(r as u32),
    }
}

/// What the data of a dropped operation receives: `None` when the cancellation won (the
/// operation did nothing).
fn orphan_result(raw: i32) -> Option<io::Result<u32>> {
    match raw {
        TIMED_OUT => None,
        r if r == -libc::ECANCELED || r == -libc::EINTR => None,
        r => Some(result_of(r)),
    }
}

/// Where an in-flight operation is in its life.
pub(crate) enum Lifecycle {
    /// Submitted; nobody has polled it yet.
    Submitted,
    /// Submitted; this waker wants the result.
    Waiting(Waker),
    /// The future was dropped first. The entry keeps the operation's data alive inside this
    /// handler until the result arrives; the handler then gets the result and the data (to
    /// drop them, or to keep bytes a cancelled read received anyway).
    Ignored(OrphanHandler),
    /// The raw result (a count, or a negated errno) waits for its future to collect it.
    Completed(i32),
    /// A multishot operation (io_uring's multishot accept): every completion goes to the
    /// handler, run after the reap like an orphan handler, until one says no more will come.
    Multishot(MultishotHandler),
}

/// How an entry's operation runs, so a cancellation knows whom to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// An SQE on the ring.
    Ring,
    /// A syscall on the blocking threads (cannot be stopped; its result is awaited).
    Blocking,
    /// Waits for readiness in the epoll driver (withdrawn at once on cancellation).
    Ready,
    /// Completes on the next pass (a NOP, or a result known at submission).
    Local,
}

struct Entry {
    life: Lifecycle,
    via: Via,
    /// Submitted with a time limit (io_uring: a linked timeout, whose `-ECANCELED` means
    /// "timed out").
    timed: bool,
}

/// One completion of a multishot operation: the raw result, whether more will come, and the
/// provided buffer the kernel filled, if it picked one (owned from the reap on, so a buffer
/// whose completion nobody takes still goes back to the ring).
#[derive(Debug)]
pub(crate) struct MultishotEvent {
    pub(crate) result: i32,
    pub(crate) more: bool,
    pub(crate) buf: Option<lent::LentBuf>,
}

/// What one completion of a multishot receive means, for the stream above the driver.
#[derive(Debug)]
pub(crate) enum Received {
    /// Bytes, in a lent buffer.
    Data(lent::LentBuf),
    /// End of stream.
    Eof,
    /// Nothing: the request was cancelled, or the buffer ring ran dry (the request then ends;
    /// a later read arms a new one or reads without the ring).
    Nothing,
    Error(io::Error),
}

impl MultishotEvent {
    /// This completion of a multishot receive.
    pub(crate) fn received(self) -> Received {
        match (self.result, self.buf) {
            (n, Some(buf)) if n > 0 => Received::Data(buf),
            (0, _) => Received::Eof,
            (e, _) if e == -libc::ENOBUFS || e == -libc::ECANCELED => Received::Nothing,
            (e, _) if e < 0 => Received::Error(io::Error::from_raw_os_error(-e)),
            // Not something the kernel does; an error rather than a panic on the loop.
            (n, _) => Received::Error(io::Error::other(format!(
                "ringloop: the kernel reported {n} bytes received without a buffer"
            ))),
        }
    }
}

/// Receives each completion of a multishot operation.
pub(crate) type MultishotHandler = Rc<dyn Fn(MultishotEvent)>;

/// Cancellations of multishot operations asked for while the driver was borrowed (by code
/// that runs inside a driver call: an orphan handler during the shutdown drain, a destructor
/// run there). The driver carries them out at the start of its next turn (`poll_io`, `park`).
/// Each names the operation by key and by its handler, so that a key reused since by another
/// operation is never cancelled by mistake.
type DeferredCancels = Rc<RefCell<Vec<(usize, std::rc::Weak<dyn Fn(MultishotEvent)>)>>>;

/// The cancellation handle of one multishot operation: [`MultishotCancel::cancel`] works
/// whether or not the driver is borrowed at the time.
pub(crate) struct MultishotCancel {
    driver: DriverRef,
    deferred: DeferredCancels,
    key: usize,
    handler: std::rc::Weak<dyn Fn(MultishotEvent)>,
}

impl MultishotCancel {
    /// The handle of multishot operation `key`, whose handler is `handler`, on `driver`.
    pub(crate) fn new(driver: DriverRef, key: usize, handler: &MultishotHandler) -> Self {
        let deferred = Rc::clone(&driver.borrow().deferred);
        MultishotCancel {
            driver,
            deferred,
            key,
            handler: Rc::downgrade(handler),
        }
    }

    /// Ends the operation: at once (the cancellation goes to the kernel before this returns)
    /// if the driver is free, else at the start of the driver's next turn. Its last
    /// completion reaches the handler either way. A no-op if it already ended.
    pub(crate) fn cancel(&self) {
        match self.driver.try_borrow_mut() {
            Ok(mut driver) => {
                driver.cancel_multishot(self.key, &self.handler);
                let _ = driver.flush_submissions();
            }
            Err(_) => self
                .deferred
                .borrow_mut()
                .push((self.key, self.handler.clone())),
        }
    }
}

impl std::fmt::Debug for MultishotCancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultishotCancel")
            .field("key", &self.key)
            .finish()
    }
}

/// Receives the result of an operation whose future was dropped; owns its data.
pub(crate) type OrphanHandler = Box<dyn FnOnce(Option<io::Result<u32>>)>;

/// A completion nobody polls for, collected by a reap and run after it (outside the driver's
/// borrow): a dropped operation's handler, or one completion of a multishot operation.
pub(crate) enum Orphaned {
    /// The result of an operation whose future was dropped (`None`: the cancellation won).
    Op(OrphanHandler, Option<io::Result<u32>>),
    /// One completion of a multishot operation.
    Multishot(MultishotHandler, MultishotEvent),
}

impl Orphaned {
    /// Hands the completion to its handler.
    pub(crate) fn run(self) {
        match self {
            Orphaned::Op(handler, result) => handler(result),
            Orphaned::Multishot(handler, event) => handler(event),
        }
    }
}

/// The table of in-flight operations, keyed by `user_data` (io_uring) or registration order,
/// shared by both backends.
struct Table {
    ops: Slab<Entry>,
    /// Wakers collected while reaping, woken after the reap so no waker runs under our borrow.
    to_wake: Vec<Waker>,
    /// Orphan handlers whose result arrived, run after the reap for the same reason.
    orphans: Vec<Orphaned>,
}

impl Table {
    fn insert(&mut self, life: Lifecycle, via: Via, timed: bool) -> usize {
        self.ops.insert(Entry { life, via, timed })
    }

    fn via(&self, key: usize) -> Via {
        self.ops[key].via
    }

    fn is_timed(&self, key: usize) -> bool {
        self.ops.get(key).is_some_and(|e| e.timed)
    }

    /// Records the raw result of single-shot operation `key`.
    fn complete(&mut self, key: usize, raw: i32) {
        let Some(entry) = self.ops.get_mut(key) else {
            unreachable!("ringloop: a result arrived for operation {key}, which is not in flight");
        };
        match std::mem::replace(&mut entry.life, Lifecycle::Completed(raw)) {
            Lifecycle::Submitted => {}
            Lifecycle::Waiting(waker) => self.to_wake.push(waker),
            Lifecycle::Ignored(handler) => {
                // The future is gone and the kernel is done with the data: hand both to the
                // handler.
                self.ops.remove(key);
                self.orphans.push(Orphaned::Op(handler, orphan_result(raw)));
            }
            Lifecycle::Completed(_) => {
                unreachable!("ringloop: a second result for single-shot operation {key}")
            }
            Lifecycle::Multishot(_) => {
                unreachable!("ringloop: a multishot operation completed as single-shot")
            }
        }
    }

    /// Records one completion of multishot operation `key`.
    fn complete_multishot(&mut self, key: usize, event: MultishotEvent) {
        let Some(Entry {
            life: Lifecycle::Multishot(handler),
            ..
        }) = self.ops.get(key)
        else {
            unreachable!("ringloop: a multishot completion for {key}, which is not multishot");
        };
        let handler = Rc::clone(handler);
        if !event.more {
            self.ops.remove(key);
        }
        self.orphans.push(Orphaned::Multishot(handler, event));
    }

    /// Takes the result of `key` if it has arrived, else records `waker`.
    fn poll(&mut self, key: usize, waker: &Waker) -> Option<io::Result<u32>> {
        let entry = self
            .ops
            .get_mut(key)
            .expect("ringloop: polled an operation that is not in flight");
        match &entry.life {
            Lifecycle::Completed(raw) => {
                let raw = *raw;
                self.ops.remove(key);
                Some(result_of(raw))
            }
            Lifecycle::Waiting(w) if w.will_wake(waker) => None,
            _ => {
                entry.life = Lifecycle::Waiting(waker.clone());
                None
            }
        }
    }

    /// The future of `key` was dropped: the entry takes `handler` (which owns the data). Returns
    /// the handler and its result if the operation had already completed.
    fn abandon(
        &mut self,
        key: usize,
        handler: OrphanHandler,
    ) -> Option<(OrphanHandler, Option<io::Result<u32>>)> {
        let entry = self
            .ops
            .get_mut(key)
            .unwrap_or_else(|| unreachable!("ringloop: abandoning {key}, which is not in flight"));
        if let Lifecycle::Completed(raw) = entry.life {
            self.ops.remove(key);
            return Some((handler, orphan_result(raw)));
        }
        entry.life = Lifecycle::Ignored(handler);
        None
    }

    /// Operations whose result has not come yet (abandoned ones only, or all).
    fn pending(&self, abandoned_only: bool) -> usize {
        self.ops
            .iter()
            .filter(|(_, e)| match e.life {
                Lifecycle::Ignored(_) => true,
                Lifecycle::Completed(_) => false,
                _ => !abandoned_only,
            })
            .count()
    }
}

enum Backend {
    Uring(uring::Uring),
    Epoll(epoll::Epoll),
}

/// The loop's driver: the table, the backend that runs operations, and the blocking threads.
pub(crate) struct Driver {
    table: Table,
    backend: Backend,
    /// Threads for syscalls that may block (files on epoll, opcodes the ring lacks).
    blocking: blocking::Pool,
    /// Entries that complete on the next pass ([`Via::Local`]).
    local: Vec<(usize, i32)>,
    /// Multishot cancellations asked for while the driver was borrowed.
    deferred: DeferredCancels,
    /// The heap-only buffer pool of lent reads on epoll (io_uring's lives in its backend).
    heap_pool: Option<Rc<lent::BufPool>>,
    config: DriverConfig,
}

/// Shared ownership of the loop's driver; operations keep one so they can cancel on drop.
pub(crate) type DriverRef = Rc<RefCell<Driver>>;

thread_local! {
    static CURRENT: RefCell<Option<DriverRef>> = const { RefCell::new(None) };
}

/// Installs `driver` as this thread's current driver; returns the previous one.
pub(crate) fn set_current(driver: Option<DriverRef>) -> Option<DriverRef> {
    // `try_with`: a runtime kept in a thread-local may be dropped at thread exit, after this
    // slot is gone; it then closes without a current driver (its operations hold their own
    // reference to it).
    CURRENT.try_with(|c| c.replace(driver)).ok().flatten()
}

/// This thread's current driver, if a runtime runs on it.
pub(crate) fn try_current() -> Option<DriverRef> {
    // `try_with`: also called from destructors at thread exit, after the slot may be gone.
    CURRENT.try_with(|c| c.borrow().clone()).ok().flatten()
}

/// This thread's current driver.
///
/// # Panics
///
/// Outside a running ringloop runtime.
pub(crate) fn current() -> DriverRef {
    try_current().expect("ringloop: I/O operations must be started from inside a ringloop runtime")
}

/// The value of `RINGLOOP_DRIVER`, if set: it overrides [`DriverKind::Auto`].
fn kind_from_env() -> io::Result<DriverKind> {
    match std::env::var("RINGLOOP_DRIVER") {
        Err(std::env::VarError::NotPresent) => Ok(DriverKind::Auto),
        Ok(v) if v.is_empty() || v == "auto" => Ok(DriverKind::Auto),
        Ok(v) if v == "io_uring" || v == "uring" => Ok(DriverKind::IoUring),
        Ok(v) if v == "epoll" => Ok(DriverKind::Epoll),
        Ok(v) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("ringloop: RINGLOOP_DRIVER={v:?} is not one of io_uring, epoll, auto"),
        )),
        Err(e) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("ringloop: RINGLOOP_DRIVER: {e}"),
        )),
    }
}

impl Driver {
    /// Builds the driver `config` asks for (see [`DriverKind`]).
    pub(crate) fn new(config: &DriverConfig, notifier: Arc<Notifier>) -> io::Result<Driver> {
        if config.entries == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ringloop: ring entries must be at least 1",
            ));
        }
        let kind = match config.kind {
            DriverKind::Auto => kind_from_env()?,
            explicit => explicit,
        };
        let backend = match kind {
            DriverKind::IoUring => Backend::Uring(uring::Uring::new(config, &notifier)?),
            DriverKind::Epoll => Backend::Epoll(epoll::Epoll::new(&notifier)?),
            // io_uring refused (seccomp, sysctl, too old a kernel, no locked memory): epoll.
            DriverKind::Auto => match uring::Uring::new(config, &notifier) {
                Ok(ring) => Backend::Uring(ring),
                Err(_) => Backend::Epoll(epoll::Epoll::new(&notifier)?),
            },
        };
        Ok(Driver {
            table: Table {
                ops: Slab::with_capacity(64),
                to_wake: Vec::new(),
                orphans: Vec::new(),
            },
            backend,
            blocking: blocking::Pool::new(notifier),
            local: Vec::new(),
            deferred: DeferredCancels::default(),
            heap_pool: None,
            config: *config,
        })
    }

    /// Which driver this is: never `Auto`.
    pub(crate) fn kind(&self) -> DriverKind {
        match self.backend {
            Backend::Uring(_) => DriverKind::IoUring,
            Backend::Epoll(_) => DriverKind::Epoll,
        }
    }

    /// Starts `op`; returns the key its future polls. With `timeout`, an operation that has
    /// not completed in time completes with `ErrorKind::TimedOut` (see
    /// [`op::Op::submit_within`]).
    pub(crate) fn submit<T: OpCode>(
        &mut self,
        op: &mut T,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        match &mut self.backend {
            Backend::Uring(ring) if ring.supports(T::CODE) => {
                let all = op.send_all();
                ring.submit(&mut self.table, op.sqe(), timeout, all)
            }
            // The kernel's ring lacks the opcode (the probe said so): run the syscall without
            // it. Sockets are blocking descriptors under io_uring, so a readiness plan runs
            // on a blocking thread too.
            Backend::Uring(_) => match op.plan() {
                _ if timeout.is_some() => Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "ringloop: a time limit needs the kernel's ring to have the opcode",
                )),
                Plan::Ready { call, .. }
                | Plan::Connect { call, .. }
                | Plan::File { call, .. }
                | Plan::Blocking(call) => Ok(self.submit_blocking(call)),
                plan => Ok(self.submit_local(plan)),
            },
            Backend::Epoll(epoll) => {
                let all = op.send_all();
                match op.plan() {
                    Plan::Ready {
                        fd,
                        interest,
                        call,
                        full,
                    } => {
                        let ready = epoll::Ready {
                            interest,
                            call,
                            full,
                            all,
                        };
                        epoll.submit_ready(&mut self.table, fd, ready, timeout)
                    }
                    Plan::File { fd, interest, call } if epoll.has_readiness(fd)? => {
                        let ready = epoll::Ready {
                            interest,
                            call,
                            full: None,
                            all: None,
                        };
                        epoll.submit_ready(&mut self.table, fd, ready, timeout)
                    }
                    _ if timeout.is_some() => Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "ringloop: only readiness operations take a time limit",
                    )),
                    Plan::File { call, .. } => Ok(self.submit_blocking(call)),
                    Plan::Connect { fd, call } => epoll.submit_connect(&mut self.table, fd, call),
                    Plan::Blocking(call) => Ok(self.submit_blocking(call)),
                    plan => Ok(self.submit_local(plan)),
                }
            }
        }
    }

    fn submit_blocking(&mut self, call: op::Syscall) -> usize {
        let key = self
            .table
            .insert(Lifecycle::Submitted, Via::Blocking, false);
        self.blocking.run(key, call);
        key
    }

    fn submit_local(&mut self, plan: Plan<'_>) -> usize {
        let raw = match plan {
            // SAFETY: the operation that built the syscall is alive: it is being submitted.
            Plan::Now(call) => unsafe { call.run() },
            Plan::Nop => 0,
            _ => unreachable!("ringloop: only Now and Nop plans complete locally"),
        };
        let key = self.table.insert(Lifecycle::Submitted, Via::Local, false);
        self.local.push((key, raw));
        key
    }

    /// Forgets what the driver keeps about `fd` (its epoll registration), before the
    /// descriptor moves to another loop.
    pub(crate) fn forget_fd(&mut self, fd: &fd::Fd) {
        if let Backend::Epoll(epoll) = &mut self.backend {
            epoll.forget(fd);
        }
    }

    /// Takes the result of `key` if it has arrived, else records `waker`.
    pub(crate) fn poll_op(&mut self, key: usize, waker: &Waker) -> Option<io::Result<u32>> {
        self.table.poll(key, waker)
    }

    /// Called by a dropped [`op::Op`] whose result has not been collected: the entry takes the
    /// data (inside `handler`) and the operation is cancelled. Returns the handler and its
    /// result when it can run at once (the operation had completed, or was withdrawn before
    /// it ran); the caller runs it outside the driver's borrow.
    pub(crate) fn abandon(
        &mut self,
        key: usize,
        handler: OrphanHandler,
        cancel: bool,
    ) -> Option<(OrphanHandler, Option<io::Result<u32>>)> {
        if !cancel {
            // Let it run to completion; the handler gets the result and frees the data.
            return self.table.abandon(key, handler);
        }
        if let Backend::Epoll(epoll) = &mut self.backend
            && self.table.via(key) == Via::Ready
            && epoll.withdraw(key)
        {
            self.table.ops.remove(key);
            return Some((handler, None));
        }
        let via = self.table.via(key);
        let ready = self.table.abandon(key, handler);
        if ready.is_none()
            && via == Via::Ring
            && let Backend::Uring(ring) = &mut self.backend
        {
            ring.cancel(key);
        }
        ready
    }

    /// Starts a multishot accept on the listening socket `fd`, whose every completion goes to
    /// `handler`; returns its key, or `None` where multishot accept does not exist (epoll, or
    /// a kernel before 5.19): the caller then uses single-shot accepts.
    pub(crate) fn accept_multishot(
        &mut self,
        fd: std::os::fd::RawFd,
        handler: MultishotHandler,
    ) -> Option<io::Result<usize>> {
        match &mut self.backend {
            Backend::Uring(ring) => ring.accept_multishot(&mut self.table, fd, handler),
            Backend::Epoll(_) => None,
        }
    }

    /// The loop's pool of lent buffers (made on first use: on io_uring with multishot
    /// receive, a provided buffer ring; else heap buffers).
    pub(crate) fn buf_pool(&mut self) -> Rc<lent::BufPool> {
        let config = self.config;
        match &mut self.backend {
            Backend::Uring(ring) => ring.buf_pool(&config),
            Backend::Epoll(_) => Rc::clone(self.heap_pool.get_or_insert_with(|| {
                Rc::new(lent::BufPool::new(config.recv_buffer_size as usize))
            })),
        }
    }

    /// A registered buffer for a lent file read, if the backend has them and one is free.
    pub(crate) fn fixed_buf(&mut self) -> Option<lent::LentBuf> {
        let config = self.config;
        match &mut self.backend {
            Backend::Uring(ring) => ring.fixed_buf(&config),
            Backend::Epoll(_) => None,
        }
    }

    /// Whether [`Driver::recv_multishot`] would start a request now (a cheap check, so a
    /// caller builds its handler only when it will be used).
    pub(crate) fn recv_multishot_ready(&mut self) -> bool {
        let config = self.config;
        match &mut self.backend {
            Backend::Uring(ring) => ring.recv_ring_ready(&config),
            Backend::Epoll(_) => false,
        }
    }

    /// Starts a multishot receive on the stream socket `fd` into the loop's provided buffer
    /// ring, whose every completion goes to `handler`; returns its key, or `None` where there
    /// is none (epoll, a kernel before 6.0, no ring, or the ring is empty): the caller then
    /// reads into a heap buffer.
    pub(crate) fn recv_multishot(
        &mut self,
        fd: std::os::fd::RawFd,
        handler: MultishotHandler,
    ) -> Option<io::Result<usize>> {
        match &mut self.backend {
            Backend::Uring(ring) => ring.recv_multishot(&mut self.table, &self.config, fd, handler),
            Backend::Epoll(_) => None,
        }
    }

    /// Ends multishot operation `key` if it is still the one whose handler is `handler`; its
    /// last completion reaches the handler and removes the entry. A no-op if it already ended.
    fn cancel_multishot(&mut self, key: usize, handler: &std::rc::Weak<dyn Fn(MultishotEvent)>) {
        if let Some(Entry {
            life: Lifecycle::Multishot(h),
            ..
        }) = self.table.ops.get(key)
            && std::ptr::addr_eq(Rc::as_ptr(h), handler.as_ptr())
            && let Backend::Uring(ring) = &mut self.backend
        {
            ring.cancel(key);
        }
    }

    /// Carries out the multishot cancellations asked for while the driver was borrowed.
    fn run_deferred_cancels(&mut self) {
        let asked = std::mem::take(&mut *self.deferred.borrow_mut());
        for (key, handler) in asked {
            self.cancel_multishot(key, &handler);
        }
    }

    /// Hands queued submissions to the kernel and returns once it has consumed them. A socket
    /// or listener calls this before its descriptor closes: a queued SQE names the descriptor
    /// by number, resolved when the kernel consumes it.
    pub(crate) fn flush_submissions(&mut self) -> io::Result<()> {
        match &mut self.backend {
            Backend::Uring(ring) => ring.flush_submissions(&mut self.table),
            Backend::Epoll(_) => Ok(()),
        }
    }

    /// Collects what completed: local results, blocking threads' results, and the backend's.
    fn collect(&mut self) {
        for (key, raw) in self.local.drain(..) {
            self.table.complete(key, raw);
        }
        let table = &mut self.table;
        self.blocking.drain(|key, raw| table.complete(key, raw));
    }

    /// Submits what is queued and collects every completion that is ready. Never blocks. The
    /// wakers and orphan handlers collected are taken with [`Driver::take_ready`].
    pub(crate) fn poll_io(&mut self) -> io::Result<()> {
        self.run_deferred_cancels();
        self.collect();
        match &mut self.backend {
            Backend::Uring(ring) => ring.poll_io(&mut self.table),
            Backend::Epoll(epoll) => epoll.poll_io(&mut self.table),
        }
    }

    /// Tells the driver how many tasks the loop polled since it last asked for I/O: epoll
    /// looks for readiness after enough of them even while the loop stays busy.
    pub(crate) fn tasks_ran(&mut self, n: usize) {
        if let Backend::Epoll(epoll) = &mut self.backend {
            epoll.tasks_ran(n);
        }
    }

    /// Waits until an operation completes, `timeout` passes, or another thread notifies; then
    /// collects (see [`Driver::poll_io`]). `None` waits without limit.
    pub(crate) fn park(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.park_inner(timeout, true)
    }

    /// [`Driver::park`]; `notify` keeps the eventfd read armed on io_uring (not when the
    /// driver closes, which waits only for its own operations and has cancelled that read).
    fn park_inner(&mut self, timeout: Option<Duration>, notify: bool) -> io::Result<()> {
        self.run_deferred_cancels();
        // Results already collected (a reap inside a submission that found the SQ full, a
        // blocking thread's) must reach their tasks before the loop sleeps.
        let collected = !self.table.to_wake.is_empty() || !self.table.orphans.is_empty();
        if collected || !self.local.is_empty() || self.blocking.has_results() {
            return self.poll_io();
        }
        match &mut self.backend {
            Backend::Uring(ring) => ring.park(&mut self.table, timeout, notify)?,
            Backend::Epoll(epoll) => epoll.park(&mut self.table, timeout)?,
        }
        self.collect();
        Ok(())
    }

    /// Moves what the last reaps collected into `wakers` and `orphans`: the caller wakes and
    /// runs them once the driver is no longer borrowed.
    pub(crate) fn take_ready(&mut self, wakers: &mut Vec<Waker>, orphans: &mut Vec<Orphaned>) {
        wakers.append(&mut self.table.to_wake);
        orphans.append(&mut self.table.orphans);
    }

    /// Collects until every abandoned operation's result has come or `grace` has passed; with
    /// `everything`, until nothing at all is in flight. Runs the orphan handlers it collects
    /// (their data is dropped here) and drops the wakers.
    fn drain(&mut self, grace: Duration, everything: bool) {
        let deadline = Instant::now() + grace;
        loop {
            let _ = self.poll_io();
            self.table.to_wake.clear();
            for orphan in std::mem::take(&mut self.table.orphans) {
                // A panic here would be a panic in a destructor: report it and go on.
                let run = std::panic::AssertUnwindSafe(move || orphan.run());
                if std::panic::catch_unwind(run).is_err() {
                    eprintln!("ringloop: dropping a cancelled operation's data panicked");
                }
            }
            let quiet = match &self.backend {
                Backend::Uring(ring) => !everything || ring.quiescent(),
                Backend::Epoll(_) => true,
            };
            let now = Instant::now();
            if (self.table.pending(!everything) == 0 && quiet) || now >= deadline {
                return;
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            // When the driver closes, its eventfd read has been cancelled: park without
            // re-arming it (or the drain would wait for that read forever); results of the
            // blocking threads are then collected within one 50 ms slice.
            let _ = self.park_inner(Some(wait), !everything);
        }
    }

    /// Collects until every abandoned operation's result has come or `grace` has passed. Used
    /// when the runtime closes, after every task (and so every `Op`) has been dropped.
    pub(crate) fn drain_abandoned(&mut self, grace: Duration) {
        self.drain(grace, false);
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Every Op holds the DriverRef, so no Op is alive now: entries are Ignored (data owned
        // here), Completed, multishot, or Submitted-but-forgotten. Cancel all of them and
        // wait, bounded, for their results.
        let keys: Vec<usize> = self
            .table
            .ops
            .iter()
            .filter(|(_, e)| !matches!(e.life, Lifecycle::Completed(_)))
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            // A reap while cancelling an earlier key may have completed this one.
            let Some(via) = self.table.ops.get(key).map(|e| e.via) else {
                continue;
            };
            let withdrawn = match (&mut self.backend, via) {
                (Backend::Uring(ring), Via::Ring) => {
                    ring.cancel(key);
                    false
                }
                (Backend::Epoll(epoll), Via::Ready) => epoll.withdraw(key),
                _ => false,
            };
            if withdrawn {
                self.table.complete(key, -libc::ECANCELED);
            }
        }
        if let Backend::Uring(ring) = &mut self.backend {
            ring.cancel_notify();
        }
        self.drain(SHUTDOWN_GRACE, true);
        // Whatever is still in flight may yet be written by the kernel or a blocking thread:
        // leak it, never free it (with the lent-buffer mappings a receive could fill).
        let mut leaked = false;
        for entry in self.table.ops.drain() {
            if !matches!(entry.life, Lifecycle::Completed(_)) {
                std::mem::forget(entry);
                leaked = true;
            }
        }
        if leaked && let Backend::Uring(ring) = &mut self.backend {
            ring.leak_buffers();
        }
        self.blocking.shutdown(SHUTDOWN_GRACE);
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("kind", &self.kind())
            .field("in_flight", &self.table.ops.len())
            .finish()
    }
}
