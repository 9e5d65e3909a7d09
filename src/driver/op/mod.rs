//! The operation type both drivers run, and `Op<T>`, the future of one operation in flight.
//!
//! An operation is a value (`op::fs::Read`, `op::net::Recv`, ...) that owns everything the
//! kernel may touch while it runs: buffer, path, address, the descriptor. It knows two ways to
//! run, and both are built from its own fields, so a pointer and the memory it points into can
//! never be paired wrongly at a call site:
//!
//! * [`OpCode::sqe`]: the SQE that io_uring completes;
//! * [`OpCode::plan`]: a [`Plan`] for a driver without a ring (epoll), or for an opcode the
//!   kernel's ring lacks: a non-blocking syscall retried on readiness, or a syscall for the
//!   driver's blocking threads (files, which have no readiness).
//!
//! The syscall of a plan is a [`Syscall`]: a number and six machine words, computed on the
//! loop thread. It is `Send` by construction, so a blocking thread can run it without the
//! operation's data moving or being shared: the data stays with its `Op` (or the driver's
//! table) on the loop thread, exactly as while the kernel runs an SQE.

pub(crate) mod event;
pub(crate) mod fs;
pub(crate) mod net;
#[cfg(feature = "process")]
pub(crate) mod process;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use io_uring::squeue;

use super::fd::Fd;
use super::{DriverRef, current};

/// An operation both drivers can run.
///
/// # Safety
///
/// Every pointer in the SQE that [`OpCode::sqe`] builds and in the [`Syscall`] of
/// [`OpCode::plan`] points into memory that `self` owns and that does not move when `self`
/// moves (heap allocations, static memory), valid for the lengths given, for as long as `self`
/// lives. The driver keeps `self` alive (in its `Op`, or in its table once the `Op` is
/// dropped) until the kernel or the blocking thread has finished with it.
pub(crate) unsafe trait OpCode: 'static {
    /// The io_uring opcode, checked against the kernel's probe before [`OpCode::sqe`] is used.
    const CODE: u8;

    /// The SQE (its `user_data` is set by the driver).
    fn sqe(&mut self) -> squeue::Entry;

    /// How to run without the ring.
    fn plan(&mut self) -> Plan<'_>;

    /// For a stream send that must go out whole: the driver sends the rest of a short send
    /// itself and completes with the total (or the first error). `None` for every other
    /// operation.
    fn send_all(&mut self) -> Option<SendAll> {
        None
    }
}

/// The bytes of a send the driver completes in full (see [`OpCode::send_all`]).
///
/// # Invariant
///
/// `ptr..ptr + len` is memory the operation owns and keeps in place while it lives (the
/// `OpCode` contract), so the driver may send any part of it until the completion.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendAll {
    pub(crate) fd: std::os::fd::RawFd,
    pub(crate) ptr: usize,
    pub(crate) len: usize,
}

impl SendAll {
    /// The `sendto` of the bytes from `sent` on.
    pub(crate) fn syscall_from(&self, sent: usize) -> Syscall {
        Syscall::new(
            libc::SYS_sendto,
            &[
                self.fd as usize,
                self.ptr + sent,
                self.len - sent,
                libc::MSG_NOSIGNAL as usize,
                0,
                0,
            ],
        )
    }
}

/// How an operation runs where no ring runs it.
#[derive(Debug)]
pub(crate) enum Plan<'a> {
    /// A non-blocking syscall on `fd`: tried at once when the driver believes the descriptor
    /// ready, and again each time it becomes ready for `interest`, until it says something
    /// other than `EAGAIN`.
    Ready {
        fd: &'a Fd,
        interest: Interest,
        call: Syscall,
        /// On a byte stream, the length asked for: a count below it (but above 0) means the
        /// socket had no more to give (or no more room), so the driver waits for the next
        /// edge instead of trying a syscall that would say `EAGAIN`. `None` for datagrams
        /// and accepts, where a short result says nothing.
        full: Option<usize>,
    },
    /// `connect(2)` on a non-blocking socket: `EINPROGRESS`, then the result is the socket's
    /// `SO_ERROR` once it is writable.
    Connect { fd: &'a Fd, call: Syscall },
    /// A read or write of a file: like [`Plan::Ready`] where the descriptor has readiness (a
    /// pipe, FIFO or socket), else (a regular file, a device) like [`Plan::Blocking`].
    File {
        fd: &'a Fd,
        interest: Interest,
        call: Syscall,
    },
    /// May block (a file operation, which has no readiness): runs on the driver's blocking
    /// threads.
    Blocking(Syscall),
    /// Never blocks: runs at once on the loop thread.
    Now(Syscall),
    /// Nothing to run: completes with 0 on the next pass of the loop (a NOP).
    Nop,
}

/// The readiness a [`Plan::Ready`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// A raw syscall: its number and arguments, as `syscall(2)` takes them.
///
/// # Invariant
///
/// Built only by an [`OpCode`] from its own fields; pointer arguments point into memory the
/// operation owns (the `OpCode` contract), so running it is sound while the operation lives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Syscall {
    nr: libc::c_long,
    args: [usize; 6],
}

impl Syscall {
    /// A syscall with up to six arguments (missing ones are 0).
    pub(crate) fn new(nr: libc::c_long, args: &[usize]) -> Syscall {
        let mut all = [0; 6];
        all[..args.len()].copy_from_slice(args);
        Syscall { nr, args: all }
    }

    /// Runs it: the non-negative result, or the errno as a negative number.
    ///
    /// # Safety
    ///
    /// The operation that built this syscall is still alive (see the type's invariant).
    pub(crate) unsafe fn run(&self) -> i32 {
        let [a, b, c, d, e, f] = self.args;
        // SAFETY: forwarded from this function's contract: every pointer argument points into
        // live memory owned by the operation, valid for the lengths passed beside it.
        let r = unsafe { libc::syscall(self.nr, a, b, c, d, e, f) };
        if r < 0 {
            -io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO)
        } else {
            // Counts are capped at MAX_RW (fits i32) and descriptors are ints.
            r as i32
        }
    }
}

/// What a dropped operation's data receives: `Some(result)` if the operation ran (a cancelled
/// read that got bytes anyway, a cancelled open that opened), `None` if the cancellation won
/// and nothing happened.
pub(crate) trait OnOrphan<T>: 'static {
    fn orphaned(self, result: Option<io::Result<u32>>, data: T);
}

impl<T, F: FnOnce(Option<io::Result<u32>>, T) + 'static> OnOrphan<T> for F {
    fn orphaned(self, result: Option<io::Result<u32>>, data: T) {
        self(result, data)
    }
}

/// The default [`OnOrphan`]: drops the data.
#[derive(Debug)]
pub(crate) struct Discard;

impl<T> OnOrphan<T> for Discard {
    fn orphaned(self, _: Option<io::Result<u32>>, data: T) {
        drop(data);
    }
}

/// One submitted operation. Resolves to its result and gives its data back.
///
/// # Invariant
///
/// `data` is `Some` until the future resolves or is dropped. While it is `Some` the kernel (or
/// a blocking thread) may be using memory inside it; dropping the `Op` early hands it to the
/// driver's table (see `Driver::abandon`), so it is freed only after the completion.
pub(crate) struct Op<T: OpCode, H: OnOrphan<T> = Discard> {
    driver: DriverRef,
    key: usize,
    data: Option<T>,
    /// What to do with the result and the data if the future is dropped first. Boxed only
    /// then, so an operation that completes costs no allocation for it.
    on_orphan: Option<H>,
}

impl<T: OpCode> Op<T> {
    /// Submits `data` on the current thread's driver; gives it back with the error if the
    /// driver refuses it.
    pub(crate) fn submit(data: T) -> Result<Op<T>, (io::Error, T)> {
        Op::submit_within(data, None)
    }

    /// Like [`Op::submit`], with a time limit: if the operation has not completed `timeout`
    /// after it started, it is cancelled and completes with `ErrorKind::TimedOut` (having
    /// consumed nothing). io_uring links a timeout to the SQE; epoll keeps a deadline, which
    /// only a readiness operation (a receive) can have: elsewhere the submission is refused
    /// with `Unsupported`.
    pub(crate) fn submit_within(
        mut data: T,
        timeout: Option<Duration>,
    ) -> Result<Op<T>, (io::Error, T)> {
        let driver = current();
        let key = driver.borrow_mut().submit(&mut data, timeout);
        match key {
            Ok(key) => Ok(Op {
                driver,
                key,
                data: Some(data),
                on_orphan: Some(Discard),
            }),
            Err(e) => Err((e, data)),
        }
    }
}

impl<T: OpCode, H: OnOrphan<T>> Op<T, H> {
    /// Sets what happens to the result and the data if this future is dropped before the
    /// operation completes: `f` runs on the loop thread when it completes (or at once, if it
    /// already did). A stream read uses this to keep bytes that a cancelled receive got
    /// anyway, an open to close the descriptor a cancelled open got. `f` must not start
    /// operations of its own.
    pub(crate) fn on_orphan<G: OnOrphan<T>>(mut self, f: G) -> Op<T, G> {
        let data = self.data.take();
        let op = Op {
            driver: self.driver.clone(),
            key: self.key,
            data,
            on_orphan: Some(f),
        };
        // `self` no longer owns the data, so its drop does nothing.
        drop(self);
        op
    }
}

// `Op` never pins `data`: the kernel sees only memory that `data` owns and that does not move
// with it (the `OpCode` contract), so moving `data` is harmless.
impl<T: OpCode, H: OnOrphan<T>> Unpin for Op<T, H> {}

impl<T: OpCode, H: OnOrphan<T>> Future for Op<T, H> {
    type Output = (io::Result<u32>, T);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(this.data.is_some(), "ringloop: Op polled after completion");
        match this.driver.borrow_mut().poll_op(this.key, cx.waker()) {
            Some(result) => Poll::Ready((result, this.data.take().expect("checked above"))),
            None => Poll::Pending,
        }
    }
}

impl<T: OpCode, H: OnOrphan<T>> Op<T, H> {
    /// Lets the operation finish without its future, instead of cancelling it (a send whose
    /// bytes must still go out when the stream that wrote them is dropped); its data is
    /// freed, through the orphan handler, when it completes.
    #[cfg(feature = "hyper")]
    pub(crate) fn detach(mut self) {
        self.give_up(false);
    }

    /// Hands the data to the driver's table; `cancel` asks the driver to stop the operation.
    fn give_up(&mut self, cancel: bool) {
        let Some(data) = self.data.take() else {
            return;
        };
        let on_orphan = self.on_orphan.take().expect("set until the data is taken");
        let handler: super::OrphanHandler = Box::new(move |r| on_orphan.orphaned(r, data));
        let ready = self.driver.borrow_mut().abandon(self.key, handler, cancel);
        if let Some((handler, result)) = ready {
            handler(result);
        }
    }
}

impl<T: OpCode, H: OnOrphan<T>> Drop for Op<T, H> {
    fn drop(&mut self) {
        self.give_up(true);
    }
}

/// A NOP: completes with 0 after one pass through the driver.
#[derive(Debug)]
pub(crate) struct Nop;

// SAFETY: a NOP carries no pointer.
unsafe impl OpCode for Nop {
    const CODE: u8 = io_uring::opcode::Nop::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        io_uring::opcode::Nop::new().build()
    }

    fn plan(&mut self) -> Plan<'_> {
        Plan::Nop
    }
}
