//! `Stream`: the byte-stream half shared by `TcpStream` and `UnixStream`: reads that lose no
//! byte when they are cancelled, writes, gathered writes and shutdown.
//!
//! # Lossless reads
//!
//! A read submits a receive. If its future is dropped before the completion (a `wait_for` that
//! expired, a `select` that went the other way), the kernel may still complete the receive
//! with data before the cancellation lands. The op's orphan handler then appends those bytes
//! to `ReadState::leftover`, and the next read returns them first. An EOF or an error seen by
//! an orphaned receive is remembered too and reported once the leftover bytes are consumed
//! (the driver reports `None` when the cancellation won and nothing was received).
//!
//! At most one receive per stream is in flight: a read waits for the previous one to finish
//! (an orphaned one included) before it looks at `leftover` and submits, so bytes are never
//! reordered between two receives in flight.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::socket::Socket;
use crate::driver::op::net as op;
use crate::driver::op::{Op, OpCode};
use crate::io::{BufResult, IoBuf, IoBufMut};

/// A connected byte stream (TCP or Unix).
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) sock: Socket,
    pub(super) reads: Rc<RefCell<ReadState>>,
}

/// What cancelled reads of one byte stream left behind, and whose turn it is to read; shared
/// by sockets and by a child process's pipes (`process/`).
#[derive(Debug, Default)]
pub(crate) struct ReadState {
    /// Bytes received by cancelled reads, not yet returned.
    pub(super) leftover: VecDeque<u8>,
    /// A cancelled read saw end of stream.
    eof: bool,
    /// A cancelled read failed with this error.
    error: Option<io::Error>,
    /// A RECV of this stream is in flight (its future may be gone).
    pub(crate) in_flight: bool,
    /// Reads waiting for `in_flight` to clear.
    waiters: Vec<Waker>,
    /// Cancelled reads whose data was kept.
    rescued: u64,
}

impl ReadState {
    /// The read in flight finished: let the next read go.
    pub(crate) fn finish(state: &RefCell<ReadState>) {
        let waiters = {
            let mut s = state.borrow_mut();
            s.in_flight = false;
            std::mem::take(&mut s.waiters)
        };
        for w in waiters {
            w.wake();
        }
    }

    /// The result of a receive whose read was cancelled: keep what it got.
    pub(crate) fn orphaned<B: IoBuf>(
        state: &RefCell<ReadState>,
        r: Option<io::Result<u32>>,
        buf: &B,
    ) {
        {
            let mut s = state.borrow_mut();
            match r {
                Some(Ok(n)) if n > 0 => {
                    // SAFETY: the kernel wrote n bytes (at most bytes_total) at the buffer's
                    // stable address, which the buffer still owns.
                    let got = unsafe { std::slice::from_raw_parts(buf.stable_ptr(), n as usize) };
                    s.leftover.extend(got);
                    s.rescued += 1;
                }
                Some(Ok(_)) => s.eof = true,
                // The cancellation won, or a time limit passed: nothing was received.
                None => {}
                Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut => {}
                Some(Err(e)) => s.error = Some(e),
            }
        }
        ReadState::finish(state);
    }
}

impl ReadState {
    /// One read of a byte stream that loses nothing if it is cancelled: waits its turn, hands
    /// out what cancelled reads left behind first, and otherwise submits `op(buf)` (with a
    /// time limit if `timeout`), whose data, if the read's future is dropped before the
    /// completion, is kept here for the next read.
    pub(crate) async fn read<B, T>(
        state: &Rc<RefCell<ReadState>>,
        mut buf: B,
        timeout: Option<Duration>,
        op: impl FnOnce(B) -> T,
    ) -> BufResult<usize, B>
    where
        B: IoBufMut,
        T: ReadInto<B>,
    {
        poll_fn(|cx| ReadState::poll_turn(state, cx)).await;
        if let Some(r) = ReadState::take_buffered(state, &mut buf) {
            return BufResult(r, buf);
        }
        if buf.bytes_total() == 0 {
            return BufResult(Ok(0), buf);
        }
        let read = match Op::submit_within(op(buf), timeout) {
            Ok(read) => read,
            Err((e, read)) => return BufResult(Err(e), read.into_buf()),
        };
        state.borrow_mut().in_flight = true;
        let orphans = Rc::clone(state);
        let (r, read) = read
            .on_orphan(move |r, read: T| ReadState::orphaned(&orphans, r, read.buf()))
            .await;
        ReadState::finish(state);
        let mut buf = read.into_buf();
        match r {
            Ok(n) => {
                // SAFETY: the kernel wrote n bytes (at most bytes_total) at the buffer's start.
                unsafe { buf.set_init(n as usize) };
                BufResult(Ok(n as usize), buf)
            }
            Err(e) => BufResult(Err(e), buf),
        }
    }

    /// Waits until no read of the stream is in flight (the caller then reads next).
    pub(crate) fn poll_turn(state: &RefCell<ReadState>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = state.borrow_mut();
        if !s.in_flight {
            return Poll::Ready(());
        }
        if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            s.waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// What cancelled reads left behind: bytes first, then their EOF or error.
    pub(crate) fn take_buffered<B: IoBufMut>(
        state: &RefCell<ReadState>,
        buf: &mut B,
    ) -> Option<io::Result<usize>> {
        let mut s = state.borrow_mut();
        if !s.leftover.is_empty() {
            let n = s.leftover.len().min(buf.bytes_total());
            let dst = buf.stable_mut_ptr();
            let (a, b) = s.leftover.as_slices();
            let from_a = a.len().min(n);
            // SAFETY: dst is valid for bytes_total >= n bytes and does not overlap the
            // leftover queue; we copy n bytes in total from its two halves.
            unsafe {
                std::ptr::copy_nonoverlapping(a.as_ptr(), dst, from_a);
                std::ptr::copy_nonoverlapping(b.as_ptr(), dst.add(from_a), n - from_a);
                buf.set_init(n);
            }
            s.leftover.drain(..n);
            return Some(Ok(n));
        }
        if std::mem::take(&mut s.eof) {
            // SAFETY: zero bytes are trivially initialized.
            unsafe { buf.set_init(0) };
            return Some(Ok(0));
        }
        s.error.take().map(Err)
    }
}

/// An operation that reads into a buffer it owns (a socket's RECV, a pipe's READ), for
/// [`ReadState::read`].
pub(crate) trait ReadInto<B>: OpCode + 'static {
    fn buf(&self) -> &B;
    fn into_buf(self) -> B;
}

impl<B: IoBufMut> ReadInto<B> for op::Recv<B> {
    fn buf(&self) -> &B {
        &self.buf
    }

    fn into_buf(self) -> B {
        self.buf
    }
}

impl<B: IoBufMut> ReadInto<B> for crate::driver::op::fs::Read<B> {
    fn buf(&self) -> &B {
        &self.buf
    }

    fn into_buf(self) -> B {
        self.buf
    }
}

/// A stream on its way to another loop: the descriptor, and what cancelled reads left behind
/// (bytes first, then their EOF or error), so that none of it is lost in the move.
#[derive(Debug)]
pub(crate) struct Moved {
    fd: std::os::fd::OwnedFd,
    leftover: VecDeque<u8>,
    eof: bool,
    error: Option<io::Error>,
}

impl Stream {
    /// Waits until no receive is in flight (a cancelled one's bytes are then kept), and takes
    /// the stream apart for a move to another loop.
    pub(crate) async fn into_moved(self) -> io::Result<Moved> {
        poll_fn(|cx| self.poll_turn(cx)).await;
        crate::driver::current()
            .borrow_mut()
            .forget_fd(self.sock.fd());
        let Stream { sock, reads } = self;
        let mut reads = reads.borrow_mut();
        Ok(Moved {
            fd: sock.try_into_fd()?,
            leftover: std::mem::take(&mut reads.leftover),
            eof: reads.eof,
            error: reads.error.take(),
        })
    }

    /// The stream again, on this loop.
    pub(crate) fn from_moved(m: Moved) -> Stream {
        Stream {
            sock: Socket::from_fd(m.fd),
            reads: Rc::new(RefCell::new(ReadState {
                leftover: m.leftover,
                eof: m.eof,
                error: m.error,
                ..ReadState::default()
            })),
        }
    }

    pub(crate) fn new(sock: Socket) -> Stream {
        Stream {
            sock,
            reads: Rc::default(),
        }
    }

    /// Waits until no RECV of this stream is in flight.
    pub(super) fn poll_turn(&self, cx: &mut Context<'_>) -> Poll<()> {
        ReadState::poll_turn(&self.reads, cx)
    }

    #[cfg(feature = "hyper")]
    /// What cancelled reads left behind, for a poll-level read: at most `max` bytes handed to
    /// `out`, then their EOF or error.
    pub(super) fn take_buffered_into(
        &self,
        max: usize,
        out: &mut dyn FnMut(&[u8]),
    ) -> Option<io::Result<usize>> {
        let mut s = self.reads.borrow_mut();
        if !s.leftover.is_empty() {
            let (a, b) = s.leftover.as_slices();
            let from_a = a.len().min(max);
            out(&a[..from_a]);
            let from_b = b.len().min(max - from_a);
            out(&b[..from_b]);
            s.leftover.drain(..from_a + from_b);
            return Some(Ok(from_a + from_b));
        }
        if std::mem::take(&mut s.eof) {
            return Some(Ok(0));
        }
        s.error.take().map(Err)
    }

    pub(crate) async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        self.read_within(buf, None).await
    }

    /// A read whose RECV carries a linked timeout: the kernel cancels it if nothing arrived
    /// within `timeout`, and then nothing was consumed.
    pub(crate) async fn read_timeout<B: IoBufMut>(
        &self,
        buf: B,
        timeout: Duration,
    ) -> BufResult<usize, B> {
        self.read_within(buf, Some(timeout)).await
    }

    async fn read_within<B: IoBufMut>(
        &self,
        buf: B,
        timeout: Option<Duration>,
    ) -> BufResult<usize, B> {
        let fd = self.sock.fd();
        let BufResult(r, buf) =
            ReadState::read(&self.reads, buf, timeout, |buf| op::Recv::stream(fd, buf)).await;
        match r {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                let e = io::Error::new(io::ErrorKind::TimedOut, "ringloop: read timed out");
                BufResult(Err(e), buf)
            }
            r => BufResult(r, buf),
        }
    }

    pub(crate) async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        if buf.bytes_init() == 0 {
            return BufResult(Ok(0), buf);
        }
        match Op::submit(op::Send::stream(self.sock.fd(), buf)) {
            Ok(send) => {
                let (r, send) = send.await;
                BufResult(r.map(|n| n as usize), send.buf)
            }
            Err((e, send)) => BufResult(Err(e), send.buf),
        }
    }

    pub(crate) async fn write_all<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        crate::io::write_all_with(buf, |slice| self.write(slice)).await
    }

    pub(crate) async fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        match Op::submit(op::SendMsg::new(self.sock.fd(), bufs, None)) {
            Ok(send) => {
                let (r, send) = send.await;
                BufResult(r.map(|n| n as usize), send.bufs)
            }
            Err((e, send)) => BufResult(Err(e), send.bufs),
        }
    }

    pub(crate) async fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Both => libc::SHUT_RDWR,
        };
        let shutdown = Op::submit(op::Shutdown::new(self.sock.fd(), how)).map_err(|(e, _)| e)?;
        shutdown.await.0.map(drop)
    }

    /// How many cancelled reads had received data that was kept for later reads.
    pub(crate) fn rescued_reads(&self) -> u64 {
        self.reads.borrow().rescued
    }
}
