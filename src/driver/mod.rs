//! The only code that speaks io_uring: the ring, the table of in-flight operations keyed by
//! `user_data`, submission, reaping, parking with a deadline, cancellation of in-flight
//! operations, and the eventfd read that lets other threads wake a parked loop.
//!
//! # Ground rules
//!
//! * The driver lives in an `Rc<RefCell<Driver>>` owned by one loop thread. Only that thread
//!   pushes SQEs or reaps CQEs. Other threads reach the loop only through [`Notifier`].
//! * Every SQE that carries a pointer into user memory has an entry in [`Driver::ops`], and that
//!   entry owns the memory (directly, or through the [`Op`] future that created it) until the
//!   entry's CQE has been reaped. Dropping an [`Op`] early moves its data into the entry
//!   ([`Lifecycle::Ignored`]) and submits an `ASYNC_CANCEL`; the data is freed when the CQE comes.
//! * Dropping the driver cancels everything in flight and waits, for a bounded time, for the
//!   CQEs; data whose CQE never came is leaked rather than freed.
//! * The driver knows nothing of tasks: it stores and wakes `Waker`s.

pub(crate) mod notify;
pub(crate) mod op;
pub(crate) mod probe;

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, squeue, types};
use slab::Slab;

pub(crate) use notify::Notifier;

pub(crate) use probe::RingConfig;

/// `user_data` of the eventfd read that wakes a parked loop.
const NOTIFY_USER_DATA: u64 = u64::MAX;
/// `user_data` of `ASYNC_CANCEL` requests; their own CQEs carry nothing we need.
const CANCEL_USER_DATA: u64 = u64::MAX - 1;
/// `user_data` of `LINK_TIMEOUT`s; their CQEs (`-ETIME` when they fired, `-ECANCELED` when the
/// operation finished first) carry nothing we need: the operation's own CQE tells.
const LINK_TIMEOUT_USER_DATA: u64 = u64::MAX - 2;
/// How long dropping the driver waits for the CQEs of cancelled operations before it leaks
/// their buffers instead.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Where an in-flight operation is in its life.
pub(crate) enum Lifecycle {
    /// Submitted; nobody has polled it yet.
    Submitted,
    /// Submitted; this waker wants the completion.
    Waiting(Waker),
    /// The future was dropped before the completion. The entry keeps the operation's data
    /// (buffers, addresses) alive inside this handler until the CQE arrives; the handler then
    /// gets the completion and the data (to drop them, or to keep bytes a cancelled read
    /// received anyway).
    Ignored(OrphanHandler),
    /// The CQE arrived and waits for its future to collect it.
    Completed(Completion),
    /// A multishot operation (multishot accept): every CQE goes to the handler, run after the
    /// reap like an orphan handler; the first CQE without `IORING_CQE_F_MORE` ends it.
    Multishot(MultishotHandler),
}

/// Receives each completion of a multishot operation.
pub(crate) type MultishotHandler = Rc<dyn Fn(Completion)>;

/// Receives the completion of an operation whose future was dropped; owns its data.
pub(crate) type OrphanHandler = Box<dyn FnOnce(Completion)>;

/// What a CQE said.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Completion {
    /// `cqe.res`: a count, or a negated errno.
    pub(crate) result: i32,
    /// `cqe.flags`.
    pub(crate) flags: u32,
}

impl Completion {
    /// `IORING_CQE_F_MORE`: a multishot operation will post more CQEs.
    pub(crate) fn more(&self) -> bool {
        io_uring::cqueue::more(self.flags)
    }

    /// The result as `io::Result`, with a negative `res` turned into its errno.
    pub(crate) fn into_io(self) -> io::Result<u32> {
        if self.result < 0 {
            Err(io::Error::from_raw_os_error(-self.result))
        } else {
            Ok(self.result as u32)
        }
    }
}

/// The ring and its in-flight table. See the module docs for who may touch what.
pub(crate) struct Driver {
    ring: IoUring,
    /// In-flight operations; an entry's key is its SQEs' `user_data`.
    ops: Slab<Lifecycle>,
    notifier: Arc<Notifier>,
    /// The 8-byte buffer of the eventfd read. Boxed so its address is stable; leaked, not freed,
    /// if the read is still in flight when the driver goes away.
    notify_buf: Box<u64>,
    /// Whether the eventfd read is in flight.
    notify_armed: bool,
    /// Wakers collected while reaping, woken after the reap so no waker runs under our borrow.
    to_wake: Vec<Waker>,
    /// Orphan handlers whose CQE arrived, run after the reap for the same reason.
    orphans: Vec<(OrphanHandler, Completion)>,
}

/// Shared ownership of the loop's driver; operations keep one so they can cancel on drop.
pub(crate) type DriverRef = Rc<RefCell<Driver>>;

thread_local! {
    static CURRENT: RefCell<Option<DriverRef>> = const { RefCell::new(None) };
}

/// Installs `driver` as this thread's current driver; returns the previous one.
pub(crate) fn set_current(driver: Option<DriverRef>) -> Option<DriverRef> {
    CURRENT.with(|c| c.replace(driver))
}

/// This thread's current driver.
///
/// # Panics
///
/// Outside a running ringloop runtime.
pub(crate) fn current() -> DriverRef {
    CURRENT
        .with(|c| c.borrow().clone())
        .expect("ringloop: I/O operations must be started from inside a ringloop runtime")
}

impl Driver {
    pub(crate) fn new(config: &RingConfig, notifier: Arc<Notifier>) -> io::Result<Driver> {
        let ring = probe::setup(config)?;
        Ok(Driver {
            ring,
            ops: Slab::with_capacity(64),
            notifier,
            notify_buf: Box::new(0),
            notify_armed: false,
            to_wake: Vec::new(),
            orphans: Vec::new(),
        })
    }

    /// Registers a new in-flight operation and queues its SQE (its `user_data` is set here).
    ///
    /// # Safety
    ///
    /// Every pointer in `sqe` must stay valid until the operation's CQE is reaped. The caller
    /// guarantees this by keeping the pointed-to data in the returned key's [`Op`] (which moves
    /// it into the table if dropped early).
    pub(crate) unsafe fn submit_op(&mut self, sqe: squeue::Entry) -> io::Result<usize> {
        let key = self.ops.insert(Lifecycle::Submitted);
        // SAFETY: forwarded from this function's contract.
        if let Err(e) = unsafe { self.push(sqe.user_data(key as u64)) } {
            self.ops.remove(key);
            return Err(e);
        }
        Ok(key)
    }

    /// Like [`Driver::submit_op`], with a linked timeout: if the operation has not completed
    /// `timeout` after the kernel starts it, the kernel cancels it and its CQE says
    /// `-ECANCELED`. Cheaper than a runtime timer plus an `ASYNC_CANCEL`, and exact: an
    /// operation that completed is never reported as timed out.
    ///
    /// # Safety
    ///
    /// As [`Driver::submit_op`], and `timeout` must stay valid until the operation's CQE is
    /// reaped (the kernel reads it when it consumes the SQE).
    pub(crate) unsafe fn submit_op_with_timeout(
        &mut self,
        sqe: squeue::Entry,
        timeout: *const types::Timespec,
    ) -> io::Result<usize> {
        if self.ring.submission().capacity() < 2 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "ringloop: a linked timeout needs a ring of at least 2 entries",
            ));
        }
        // Both SQEs must go in one batch: a link cannot span two submissions.
        loop {
            let free = {
                let mut sq = self.ring.submission();
                sq.sync();
                sq.capacity() - sq.len()
            };
            if free >= 2 {
                break;
            }
            self.submit()?;
        }
        let key = self.ops.insert(Lifecycle::Submitted);
        let entries = [
            sqe.user_data(key as u64).flags(squeue::Flags::IO_LINK),
            // SAFETY (of the pointer): the caller keeps `timeout` valid until the CQE.
            opcode::LinkTimeout::new(timeout)
                .build()
                .user_data(LINK_TIMEOUT_USER_DATA),
        ];
        // SAFETY: forwarded from this function's contract; there is room for both (checked
        // above, and nothing else pushed since).
        unsafe { self.ring.submission().push_multiple(&entries) }
            .expect("ringloop: room for two SQEs was made just above");
        Ok(key)
    }

    /// Submits a multishot operation: each of its CQEs is handed to `handler` (after the reap,
    /// outside the driver's borrow) until one comes without `IORING_CQE_F_MORE`. Returns the
    /// key to cancel it with.
    ///
    /// # Safety
    ///
    /// As [`Driver::submit_op`]; the operations ringloop makes multishot carry no pointer.
    pub(crate) unsafe fn submit_multishot(
        &mut self,
        sqe: squeue::Entry,
        handler: MultishotHandler,
    ) -> io::Result<usize> {
        let key = self.ops.insert(Lifecycle::Multishot(handler));
        // SAFETY: forwarded from this function's contract.
        if let Err(e) = unsafe { self.push(sqe.user_data(key as u64)) } {
            self.ops.remove(key);
            return Err(e);
        }
        Ok(key)
    }

    /// Asks the kernel to end a multishot operation; its last CQE (`-ECANCELED`) reaches the
    /// handler and removes the entry. A no-op if it already ended.
    pub(crate) fn cancel_multishot(&mut self, key: usize) {
        if matches!(self.ops.get(key), Some(Lifecycle::Multishot(_))) {
            self.cancel(key);
        }
    }

    /// Queues one SQE, flushing the submission queue to the kernel when it is full.
    ///
    /// # Safety
    ///
    /// Every pointer in `sqe` must stay valid until its CQE is reaped.
    unsafe fn push(&mut self, sqe: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: forwarded from this function's contract.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return Ok(());
            }
            // The SQ is full: hand what is queued to the kernel, then retry.
            self.submit()?;
        }
    }

    /// Hands queued SQEs to the kernel without waiting. Retries on EINTR; on EBUSY / EAGAIN (the
    /// kernel is short of CQ space or memory) reaps completions first, then retries.
    pub(crate) fn submit(&mut self) -> io::Result<()> {
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EBUSY) | Some(libc::EAGAIN) => {
                        self.reap();
                        // Give the kernel a moment to finish work that frees resources.
                        std::thread::yield_now();
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    /// Hands the SQEs queued so far to the kernel, if there are any, and returns once the kernel
    /// has consumed them (with SQPOLL: waits, bounded, for its thread to catch up). A socket
    /// calls this before closing its fd: a queued SQE names the fd only by number, and the
    /// kernel resolves the number when it consumes the SQE, so closing first could let the
    /// operation reach a file that reused the number.
    pub(crate) fn flush_submissions(&mut self) -> io::Result<()> {
        let queued = {
            let mut sq = self.ring.submission();
            sq.sync();
            !sq.is_empty()
        };
        if !queued {
            return Ok(());
        }
        self.submit()?;
        if self.ring.params().is_setup_sqpoll() {
            let deadline = Instant::now() + Duration::from_millis(100);
            loop {
                let mut sq = self.ring.submission();
                sq.sync();
                if sq.is_empty() || Instant::now() >= deadline {
                    break;
                }
                drop(sq);
                std::thread::yield_now();
            }
        }
        Ok(())
    }

    /// Whether anything is queued in the SQ or the kernel holds completions back until a
    /// syscall (CQ overflow, deferred task work).
    fn needs_enter(&mut self) -> bool {
        let mut sq = self.ring.submission();
        sq.sync();
        !sq.is_empty() || sq.cq_overflow() || sq.taskrun()
    }

    /// Submits queued SQEs (a syscall only if there are any, or the kernel asks for one) and
    /// reaps every available CQE. Never blocks. The waiters' wakers are collected: take them
    /// with [`Driver::take_wakers`] and wake them once the driver is no longer borrowed.
    pub(crate) fn poll_io(&mut self) -> io::Result<()> {
        if self.needs_enter() {
            self.submit()?;
        }
        self.reap();
        Ok(())
    }

    /// Moves what the last reaps collected into `wakers` and `orphans`: the caller wakes and
    /// runs them once the driver is no longer borrowed.
    pub(crate) fn take_ready(
        &mut self,
        wakers: &mut Vec<Waker>,
        orphans: &mut Vec<(OrphanHandler, Completion)>,
    ) {
        wakers.append(&mut self.to_wake);
        orphans.append(&mut self.orphans);
    }

    /// Waits in `io_uring_enter` until a CQE arrives, `timeout` passes, or another thread
    /// notifies; then reaps (collecting wakers, see [`Driver::poll_io`]). `timeout = None` waits
    /// without limit.
    pub(crate) fn park(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.arm_notify()?;
        let res = match timeout {
            Some(t) => {
                let ts = types::Timespec::new()
                    .sec(t.as_secs())
                    .nsec(t.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submitter().submit_and_wait(1),
        };
        if let Err(e) = res {
            match e.raw_os_error() {
                // ETIME: the timeout passed. EINTR: a signal; the caller re-checks its state.
                // EBUSY / EAGAIN: the kernel is short of CQ space; reaping below makes room.
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => {}
                _ => return Err(e),
            }
        }
        self.reap();
        Ok(())
    }

    /// Keeps a read of the wake-up eventfd in flight so that a notification ends a park.
    fn arm_notify(&mut self) -> io::Result<()> {
        if self.notify_armed {
            return Ok(());
        }
        let sqe = opcode::Read::new(
            types::Fd(self.notifier.raw_fd()),
            (&raw mut *self.notify_buf).cast(),
            8,
        )
        .build()
        .user_data(NOTIFY_USER_DATA);
        // SAFETY: the read targets `notify_buf`, a heap allocation owned by the driver that is
        // leaked, never freed, if the read is still in flight when the driver drops.
        unsafe { self.push(sqe)? };
        self.notify_armed = true;
        Ok(())
    }

    /// Moves every available CQE into the ops table; collects the wakers to wake.
    fn reap(&mut self) {
        loop {
            let mut cq = self.ring.completion();
            cq.sync();
            if cq.is_empty() {
                break;
            }
            for cqe in &mut cq {
                match cqe.user_data() {
                    NOTIFY_USER_DATA => self.notify_armed = false,
                    CANCEL_USER_DATA | LINK_TIMEOUT_USER_DATA => {}
                    key => complete(
                        &mut self.ops,
                        &mut self.to_wake,
                        &mut self.orphans,
                        key as usize,
                        Completion {
                            result: cqe.result(),
                            flags: cqe.flags(),
                        },
                    ),
                }
            }
        }
    }

    /// Called by a dropped [`Op`] whose CQE has not arrived: the entry takes the data and the
    /// kernel is asked to cancel.
    /// Returns the handler if the CQE had already arrived (the caller then runs it with the
    /// completion, outside the driver's borrow).
    pub(crate) fn abandon(
        &mut self,
        key: usize,
        handler: OrphanHandler,
    ) -> Option<(OrphanHandler, Completion)> {
        match self.ops.get_mut(key) {
            Some(Lifecycle::Completed(c)) => {
                let c = *c;
                self.ops.remove(key);
                Some((handler, c))
            }
            Some(entry) => {
                *entry = Lifecycle::Ignored(handler);
                self.cancel(key);
                None
            }
            None => unreachable!("ringloop: abandoning operation {key}, which is not in flight"),
        }
    }

    fn cancel(&mut self, key: usize) {
        let sqe = opcode::AsyncCancel::new(key as u64)
            .build()
            .user_data(CANCEL_USER_DATA);
        // SAFETY: ASYNC_CANCEL carries no pointer, only the target's user_data.
        // A failure to queue (the kernel refusing submission) leaves the operation to finish
        // on its own; its data stays in the table until then, so nothing is freed early.
        let _ = unsafe { self.push(sqe) };
    }

    /// Takes the completion of `key` if it has arrived, else records `waker`.
    pub(crate) fn poll_op(&mut self, key: usize, waker: &Waker) -> Option<Completion> {
        let entry = self
            .ops
            .get_mut(key)
            .expect("ringloop: polled an operation that is not in flight");
        match entry {
            Lifecycle::Completed(c) => {
                let c = *c;
                self.ops.remove(key);
                Some(c)
            }
            Lifecycle::Waiting(w) if w.will_wake(waker) => None,
            _ => {
                *entry = Lifecycle::Waiting(waker.clone());
                None
            }
        }
    }

    /// Reaps until every abandoned operation's CQE has come or the grace period has passed.
    /// Used when the runtime closes, after every task (and so every `Op`) has been dropped.
    pub(crate) fn drain_abandoned(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        loop {
            self.reap();
            let pending = self
                .ops
                .iter()
                .filter(|(_, op)| matches!(op, Lifecycle::Ignored(_)))
                .count();
            let now = Instant::now();
            if pending == 0 || now >= deadline {
                return;
            }
            let _ = self.submit();
            let _ = self.park(Some((deadline - now).min(Duration::from_millis(50))));
        }
    }
}

/// Records the CQE of operation `key`.
fn complete(
    ops: &mut Slab<Lifecycle>,
    to_wake: &mut Vec<Waker>,
    orphans: &mut Vec<(OrphanHandler, Completion)>,
    key: usize,
    c: Completion,
) {
    let Some(entry) = ops.get_mut(key) else {
        unreachable!("ringloop: a CQE arrived for user_data {key}, which is not in flight");
    };
    if let Lifecycle::Multishot(handler) = entry {
        let handler = Rc::clone(handler);
        if !c.more() {
            ops.remove(key);
        }
        orphans.push((Box::new(move |c| handler(c)), c));
        return;
    }
    match std::mem::replace(entry, Lifecycle::Completed(c)) {
        Lifecycle::Submitted => {}
        Lifecycle::Waiting(waker) => to_wake.push(waker),
        Lifecycle::Ignored(handler) => {
            // The future is gone; the kernel is done with the data: hand both to the handler
            // (which drops the data, or keeps bytes a cancelled read received anyway).
            ops.remove(key);
            orphans.push((handler, c));
        }
        Lifecycle::Completed(_) => {
            unreachable!("ringloop: a second CQE for single-shot operation {key}")
        }
        Lifecycle::Multishot(_) => unreachable!("ringloop: handled above"),
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Every Op holds the DriverRef, so no Op is alive now: entries are Ignored (data owned
        // here), Completed or Submitted-but-forgotten. Ask the kernel to cancel all of them,
        // including the eventfd read, and wait for the CQEs.
        let keys: Vec<usize> = self.ops.iter().map(|(k, _)| k).collect();
        for key in keys {
            if !matches!(self.ops[key], Lifecycle::Completed(_)) {
                self.cancel(key);
            }
        }
        if self.notify_armed {
            self.cancel_notify();
        }
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        loop {
            self.reap();
            self.to_wake.clear();
            for (handler, c) in std::mem::take(&mut self.orphans) {
                // A panic here would be a panic in a destructor: report it and go on.
                let run = std::panic::AssertUnwindSafe(move || handler(c));
                if std::panic::catch_unwind(run).is_err() {
                    eprintln!("ringloop: dropping a cancelled operation's data panicked");
                }
            }
            let pending = self
                .ops
                .iter()
                .any(|(_, op)| !matches!(op, Lifecycle::Completed(_)));
            let now = Instant::now();
            if (!pending && !self.notify_armed) || now >= deadline {
                break;
            }
            let _ = self.park_for_shutdown(deadline - now);
        }
        // Whatever is still in flight may yet be written by the kernel: leak it, never free it.
        for op in self.ops.drain() {
            if !matches!(op, Lifecycle::Completed(_)) {
                std::mem::forget(op);
            }
        }
        if self.notify_armed {
            std::mem::forget(std::mem::replace(&mut self.notify_buf, Box::new(0)));
        }
    }
}

impl Driver {
    fn cancel_notify(&mut self) {
        let sqe = opcode::AsyncCancel::new(NOTIFY_USER_DATA)
            .build()
            .user_data(CANCEL_USER_DATA);
        // SAFETY: ASYNC_CANCEL carries no pointer.
        let _ = unsafe { self.push(sqe) };
    }

    fn park_for_shutdown(&mut self, left: Duration) -> io::Result<usize> {
        let t = left.min(Duration::from_millis(50));
        let ts = types::Timespec::new()
            .sec(t.as_secs())
            .nsec(t.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        self.ring.submitter().submit_with_args(1, &args)
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("in_flight", &self.ops.len())
            .field("notify_armed", &self.notify_armed)
            .finish()
    }
}
