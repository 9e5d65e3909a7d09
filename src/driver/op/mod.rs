//! `Op<T>`: the future of one in-flight operation, owning its data `T` (buffers, paths,
//! addresses) until the kernel is done with it.

pub(crate) mod fs;
pub(crate) mod net;

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use io_uring::squeue;

use super::{Completion, DriverRef, current};

/// One submitted operation. Resolves to its completion and gives its data back.
///
/// # Invariant
///
/// `data` is `Some` until the future resolves or is dropped. While it is `Some` the kernel may
/// be using memory inside it; dropping the `Op` early hands it to the driver's table (see
/// `Driver::abandon`), so it is freed only after the CQE.
pub(crate) struct Op<T: 'static> {
    driver: DriverRef,
    key: usize,
    data: Option<T>,
    /// The descriptor the SQE names, kept open until the CQE (see [`Op::keep_fd`]).
    fd: Option<SharedFd>,
    /// What to do with the completion and the data if the future is dropped first; by default
    /// they are dropped.
    on_orphan: Option<Box<dyn FnOnce(Completion, T)>>,
}

/// `IORING_OP_NOP`: completes at once; one round trip through the ring.
pub(crate) fn nop() -> io::Result<Op<()>> {
    // SAFETY: a NOP carries no pointer.
    unsafe { Op::submit(io_uring::opcode::Nop::new().build(), ()) }
}

/// A descriptor shared by its owner (a `File`, a socket) and its in-flight operations.
pub(crate) type SharedFd = Arc<OwnedFd>;

/// An operation with a linked timeout: its data travels with the boxed timespec.
pub(crate) type TimedOp<D> = Op<(D, Box<io_uring::types::Timespec>)>;

/// Like [`Op::try_submit`], with a linked timeout of `timeout` (see
/// `Driver::submit_op_with_timeout`): a CQE of `-ECANCELED` then means the time ran out.
/// The boxed timespec travels with the data so that it outlives the kernel's read of it.
///
/// # Safety
///
/// As [`Op::submit`].
pub(crate) unsafe fn try_submit_with_timeout<D: 'static>(
    sqe: squeue::Entry,
    timeout: std::time::Duration,
    data: D,
) -> Result<TimedOp<D>, (io::Error, D)> {
    let ts = Box::new(
        io_uring::types::Timespec::new()
            // The kernel reads a signed tv_sec: clamp so that Duration::MAX means "never",
            // not -1 (which it refuses, failing the linked operation).
            .sec(timeout.as_secs().min(i64::MAX as u64))
            .nsec(timeout.subsec_nanos()),
    );
    let driver = current();
    // SAFETY: forwarded from this function's contract for `sqe`; the timespec is boxed in
    // the op's data, so its address is stable and it lives until the CQE.
    let key = unsafe { driver.borrow_mut().submit_op_with_timeout(sqe, &*ts) };
    match key {
        Ok(key) => Ok(Op {
            driver,
            key,
            data: Some((data, ts)),
            fd: None,
            on_orphan: None,
        }),
        Err(e) => Err((e, data)),
    }
}

impl<T: 'static> Op<T> {
    /// Submits `sqe` on the current thread's ring.
    ///
    /// # Safety
    ///
    /// Every pointer in `sqe` must point into `data` (or into memory that outlives the
    /// operation), and must stay valid when `data` is moved: point into heap allocations that
    /// `data` owns, never into `data`'s own inline bytes.
    pub(crate) unsafe fn submit(sqe: squeue::Entry, data: T) -> io::Result<Op<T>> {
        // SAFETY: forwarded from this function's contract.
        unsafe { Op::try_submit(sqe, data) }.map_err(|(e, _)| e)
    }

    /// Like [`Op::submit`], but gives `data` back if the ring refuses the submission, so that
    /// a buffer-owning operation can return its buffer with the error.
    ///
    /// # Safety
    ///
    /// As [`Op::submit`].
    pub(crate) unsafe fn try_submit(sqe: squeue::Entry, data: T) -> Result<Op<T>, (io::Error, T)> {
        let driver = current();
        // SAFETY: forwarded from this function's contract; on success `data` moves into the Op
        // and from there only into the driver's table, never freed before the CQE. On failure
        // the SQE was not queued, so the kernel never sees the pointers.
        let key = unsafe { driver.borrow_mut().submit_op(sqe) };
        match key {
            Ok(key) => Ok(Op {
                driver,
                key,
                data: Some(data),
                fd: None,
                on_orphan: None,
            }),
            Err(e) => Err((e, data)),
        }
    }

    /// Keeps `fd` open until the operation's CQE, even if the future is dropped first: an SQE
    /// names its descriptor by number, and a number closed while the SQE waits in the ring
    /// could be reused by another file by the time the kernel reads it.
    pub(crate) fn keep_fd(mut self, fd: &SharedFd) -> Op<T> {
        self.fd = Some(Arc::clone(fd));
        self
    }

    /// Sets what happens to the completion and the data if this future is dropped before the
    /// CQE arrives: `f` runs on the loop thread when it comes (or at once, if it already came).
    /// A stream read uses this to keep bytes that a cancelled receive got anyway. `f` must not
    /// start operations of its own.
    pub(crate) fn on_orphan(mut self, f: impl FnOnce(Completion, T) + 'static) -> Op<T> {
        self.on_orphan = Some(Box::new(f));
        self
    }
}

// `Op` never pins `data`: the kernel sees only heap memory that `data` owns (the `submit`
// contract), so moving `data` is harmless.
impl<T: 'static> Unpin for Op<T> {}

impl<T: 'static> Future for Op<T> {
    type Output = (Completion, T);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(this.data.is_some(), "ringloop: Op polled after completion");
        match this.driver.borrow_mut().poll_op(this.key, cx.waker()) {
            Some(completion) => Poll::Ready((completion, this.data.take().expect("checked above"))),
            None => Poll::Pending,
        }
    }
}

impl<T: 'static> Drop for Op<T> {
    fn drop(&mut self) {
        let Some(data) = self.data.take() else {
            return;
        };
        // The handler owns the data and the descriptor until the CQE.
        let fd = self.fd.take();
        let handler: super::OrphanHandler = match self.on_orphan.take() {
            Some(f) => Box::new(move |c| {
                f(c, data);
                drop(fd);
            }),
            None => Box::new(move |_| drop((data, fd))),
        };
        let ready = self.driver.borrow_mut().abandon(self.key, handler);
        if let Some((handler, completion)) = ready {
            handler(completion);
        }
    }
}
