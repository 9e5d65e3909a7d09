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
//!
//! # Lent reads
//!
//! [`Stream::read_lent`] returns a [`LentBuf`] the loop picked. On io_uring with multishot
//! receive, the first lent read arms one multishot receive into the loop's provided buffer
//! ring, which stays armed while the stream lives: each completion's buffer is queued in
//! `ReadState::lent`, and reads take from that queue. A dropped read therefore loses nothing
//! (the bytes were never the read's), and no buffer leaves the ring for good: a queued one is
//! returned when it is taken and dropped, or when the stream goes. The request is paused
//! (cancelled; the next lent read re-arms it) once [`LENT_AHEAD`] buffers wait unread, so a
//! stream whose reader is busy cannot take the whole ring. When the ring is empty the kernel
//! ends the request with `ENOBUFS`; the next read re-arms it if buffers have come back, and
//! otherwise does one plain receive into a heap buffer, so a reader never waits for another
//! stream to give buffers back. Plain `read(buf)` keeps working alongside: it copies from the
//! queue first and never submits its own receive while the multishot one is armed. Order is
//! kept because at most one of (a plain receive, the multishot receive) is in flight, and
//! `leftover` (from plain reads) is never filled while `lent` holds bytes.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::socket::Socket;
use crate::driver::Received;
use crate::driver::lent::LentBuf;
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
    /// Buffers the multishot receive filled, not yet read (see "Lent reads").
    lent: VecDeque<LentBuf>,
    /// The multishot receive, while armed.
    multishot: Option<Multishot>,
}

/// An armed multishot receive.
#[derive(Debug)]
struct Multishot {
    cancel: crate::driver::MultishotCancel,
    /// A cancellation (a pause, or the stream going away) was asked for.
    cancelling: bool,
}

/// Buffers the multishot receive of one stream may fill ahead of its reads before it is
/// paused.
pub(crate) const LENT_AHEAD: usize = 8;

impl Drop for Multishot {
    fn drop(&mut self) {
        // The stream is gone (or the request ended, which set `cancelling`): end the
        // multishot receive, which holds the socket open in the kernel until it ends.
        // Queued buffers go back with `ReadState::lent`.
        if !self.cancelling {
            self.cancel.cancel();
        }
    }
}

impl ReadState {
    /// The read in flight finished: let the next read go.
    pub(crate) fn finish(state: &RefCell<ReadState>) {
        state.borrow_mut().in_flight = false;
        ReadState::wake_all(state);
    }

    /// Records `cx`'s waker among the reads waiting for this stream (once).
    fn wait(&mut self, cx: &Context<'_>) {
        if !self.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            self.waiters.push(cx.waker().clone());
        }
    }

    /// Wakes every waiting read, keeping the list's allocation for the next waits (a stream
    /// read in a loop registers and wakes once per read).
    fn wake_all(state: &RefCell<ReadState>) {
        let mut waiters = std::mem::take(&mut state.borrow_mut().waiters);
        for w in waiters.drain(..) {
            // A waker may run code that waits on this stream again: no borrow is held.
            w.wake();
        }
        let mut s = state.borrow_mut();
        if s.waiters.is_empty() {
            s.waiters = waiters;
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
        if buf.bytes_total() == 0 {
            return BufResult(Ok(0), buf);
        }
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

    /// Waits until no plain receive of the stream is in flight, and the multishot receive (if
    /// armed) has queued something or ended: the caller then takes what is buffered, or
    /// submits a plain receive.
    pub(crate) fn poll_turn(state: &RefCell<ReadState>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = state.borrow_mut();
        let multishot_pending =
            s.multishot.is_some() && s.lent.is_empty() && !s.eof && s.error.is_none();
        if !s.in_flight && !multishot_pending {
            return Poll::Ready(());
        }
        s.wait(cx);
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
        if let Some(front) = s.lent.front_mut() {
            let n = front.len().min(buf.bytes_total());
            // SAFETY: dst is valid for bytes_total >= n bytes and does not overlap the lent
            // buffer, which holds at least n bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(front.as_ptr(), buf.stable_mut_ptr(), n);
                buf.set_init(n);
            }
            front.consume(n);
            if front.is_empty() {
                s.lent.pop_front();
            }
            return Some(Ok(n));
        }
        if std::mem::take(&mut s.eof) {
            // SAFETY: zero bytes are trivially initialized.
            unsafe { buf.set_init(0) };
            return Some(Ok(0));
        }
        s.error.take().map(Err)
    }

    /// One completion of the multishot receive.
    fn on_multishot(state: &RefCell<ReadState>, event: crate::driver::MultishotEvent) {
        {
            let mut s = state.borrow_mut();
            let more = event.more;
            match event.received() {
                Received::Data(buf) => s.lent.push_back(buf),
                Received::Eof => s.eof = true,
                // The next read re-arms the request (or reads without the ring).
                Received::Nothing => {}
                Received::Error(e) => s.error = Some(e),
            }
            if !more {
                if let Some(mut m) = s.multishot.take() {
                    m.cancelling = true;
                }
            } else if s.lent.len() >= LENT_AHEAD
                && let Some(m) = &mut s.multishot
                && !m.cancelling
            {
                m.cancelling = true;
                m.cancel.cancel();
            }
        }
        ReadState::wake_all(state);
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

impl Moved {
    /// The descriptor and the bytes received and not yet returned. An end of stream or an
    /// error a cancelled read saw is left for the descriptor's next reader to see (an end of
    /// stream is seen again; an error the kernel reported once is not).
    pub(crate) fn into_parts(self) -> (std::os::fd::OwnedFd, Vec<u8>) {
        (self.fd, self.leftover.into())
    }
}

impl Stream {
    /// Waits until no receive is in flight (a cancelled one's bytes are then kept), and takes
    /// the stream apart for a move to another loop.
    pub(crate) async fn into_moved(self) -> io::Result<Moved> {
        self.stop_multishot().await;
        poll_fn(|cx| self.poll_turn(cx)).await;
        crate::driver::current()
            .borrow_mut()
            .forget_fd(self.sock.fd());
        let Stream { sock, reads } = self;
        let mut reads = reads.borrow_mut();
        // Lent buffers belong to this loop: their bytes travel as leftover bytes.
        let lent = std::mem::take(&mut reads.lent);
        for buf in lent {
            reads.leftover.extend(buf.iter());
        }
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

    /// Ends the multishot receive, if armed, and waits for its last completion (whose bytes
    /// stay queued).
    async fn stop_multishot(&self) {
        poll_fn(|cx| {
            let mut s = self.reads.borrow_mut();
            let Some(m) = &mut s.multishot else {
                return Poll::Ready(());
            };
            if !m.cancelling {
                m.cancelling = true;
                m.cancel.cancel();
            }
            s.wait(cx);
            Poll::Pending
        })
        .await;
    }

    /// Reads the next bytes of the stream into a buffer the loop picks (see the module's
    /// "Lent reads"); an empty buffer means end of stream.
    pub(crate) async fn read_lent(&self) -> io::Result<LentBuf> {
        // The common case, a buffer the receive already queued, needs nothing else.
        if let Some(buf) = self.reads.borrow_mut().lent.pop_front() {
            return Ok(buf);
        }
        let pool = crate::driver::current().borrow_mut().buf_pool();
        if let Some(buf) = poll_fn(|cx| self.poll_lent(cx, &pool)).await? {
            return Ok(buf);
        }
        // No ring, or every ring buffer is lent: one plain receive into a heap buffer. Boxed,
        // since it is rare and a task waiting in a lent read should not carry its state.
        let fd = self.sock.fd();
        let read = ReadState::read(&self.reads, pool.heap_buf(), None, |buf| {
            op::Recv::stream(fd, buf)
        });
        let BufResult(r, buf) = Box::pin(read).await;
        let buf = LentBuf::heap(pool, buf);
        r.map(|_| buf)
    }

    /// A lent read's wait: what is queued, or an armed multishot receive's next completion;
    /// `None` when the read must fall back to a heap buffer.
    fn poll_lent(
        &self,
        cx: &mut Context<'_>,
        pool: &Rc<crate::driver::lent::BufPool>,
    ) -> Poll<io::Result<Option<LentBuf>>> {
        let mut s = self.reads.borrow_mut();
        if s.in_flight {
            // A plain receive (perhaps a cancelled one) goes first.
            s.wait(cx);
            return Poll::Pending;
        }
        if !s.leftover.is_empty() {
            let mut buf = pool.heap_buf();
            let n = s.leftover.len().min(pool.buf_size());
            buf.extend(s.leftover.drain(..n));
            return Poll::Ready(Ok(Some(LentBuf::heap(Rc::clone(pool), buf))));
        }
        if let Some(buf) = s.lent.pop_front() {
            return Poll::Ready(Ok(Some(buf)));
        }
        if std::mem::take(&mut s.eof) {
            return Poll::Ready(Ok(Some(LentBuf::heap(Rc::clone(pool), Vec::new()))));
        }
        if let Some(e) = s.error.take() {
            return Poll::Ready(Err(e));
        }
        if s.multishot.is_none() {
            let driver = crate::driver::current();
            if !driver.borrow_mut().recv_multishot_ready() {
                // No ring here, or every buffer is lent: read into a heap buffer.
                return Poll::Ready(Ok(None));
            }
            let state = Rc::downgrade(&self.reads);
            let handler: crate::driver::MultishotHandler =
                Rc::new(move |event: crate::driver::MultishotEvent| {
                    if let Some(state) = state.upgrade() {
                        ReadState::on_multishot(&state, event);
                    }
                    // Else the stream is gone; dropping the event returns its buffer.
                });
            let armed = driver
                .borrow_mut()
                .recv_multishot(self.sock.fd().as_raw_fd(), Rc::clone(&handler));
            match armed {
                // No ring here, or every buffer is lent: read into a heap buffer.
                None => return Poll::Ready(Ok(None)),
                Some(Err(e)) => return Poll::Ready(Err(e)),
                Some(Ok(key)) => {
                    // The request names the socket by number only until the kernel takes
                    // it: hand it over now, so that the number may close (and be reused)
                    // as soon as the stream drops. From then on the request holds the
                    // socket itself, until its cancellation (sent at the drop) ends it.
                    let _ = driver.borrow_mut().flush_submissions();
                    s.multishot = Some(Multishot {
                        cancel: crate::driver::MultishotCancel::new(driver, key, &handler),
                        cancelling: false,
                    });
                }
            }
        }
        s.wait(cx);
        Poll::Pending
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
        if let Some(front) = s.lent.front_mut() {
            let n = front.len().min(max);
            out(&front[..n]);
            front.consume(n);
            if front.is_empty() {
                s.lent.pop_front();
            }
            return Some(Ok(n));
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
        if timeout.is_some() && self.reads.borrow().lent.is_empty() {
            // The deadline travels with a plain receive: end an armed multishot receive
            // first (what it got by then is queued and returned at once).
            self.stop_multishot().await;
        }
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

    /// Writes all of `buf` (see [`WriteAll`]).
    pub(crate) fn write_all<B: IoBuf>(&self, buf: B) -> WriteAll<'_, B> {
        WriteAll {
            fd: self.sock.fd(),
            total: buf.bytes_init(),
            done: 0,
            state: WriteAllState::Idle(buf),
        }
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

/// The future of a stream's `write_all`: one send that the driver completes in full (it sends
/// the rest of a short send itself), repeated only after an error cut it short, to report
/// that error. Written by hand rather than as an `async fn` so that a task waiting in it
/// holds one operation and the buffer, not a copy of every argument of every layer.
pub(crate) struct WriteAll<'a, B: IoBuf> {
    fd: &'a crate::driver::fd::SharedFd,
    total: usize,
    done: usize,
    state: WriteAllState<B>,
}

enum WriteAllState<B: IoBuf> {
    /// The buffer, between sends.
    Idle(B),
    Sending(Op<op::Send<crate::io::Slice<B>>>),
    Done,
}

impl<B: IoBuf> Unpin for WriteAll<'_, B> {}

impl<B: IoBuf> std::future::Future for WriteAll<'_, B> {
    type Output = BufResult<(), B>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            match std::mem::replace(&mut this.state, WriteAllState::Done) {
                WriteAllState::Idle(buf) => {
                    if this.done >= this.total {
                        return Poll::Ready(BufResult(Ok(()), buf));
                    }
                    // At most 1 GiB per send: the kernel's count is an i32.
                    let end = this.total.min(this.done + (1 << 30));
                    let send = op::Send::stream_all(this.fd, buf.slice(this.done..end));
                    match Op::submit(send) {
                        Ok(op) => this.state = WriteAllState::Sending(op),
                        Err((e, send)) => {
                            return Poll::Ready(BufResult(Err(e), send.buf.into_inner()));
                        }
                    }
                }
                WriteAllState::Sending(mut op) => {
                    let Poll::Ready((r, send)) = std::pin::Pin::new(&mut op).poll(cx) else {
                        this.state = WriteAllState::Sending(op);
                        return Poll::Pending;
                    };
                    let buf = send.buf.into_inner();
                    match r {
                        Ok(0) => {
                            let e =
                                io::Error::new(io::ErrorKind::WriteZero, "ringloop: wrote 0 bytes");
                            return Poll::Ready(BufResult(Err(e), buf));
                        }
                        Ok(n) => this.done += n as usize,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Poll::Ready(BufResult(Err(e), buf)),
                    }
                    this.state = WriteAllState::Idle(buf);
                }
                WriteAllState::Done => panic!("ringloop: WriteAll polled after completion"),
            }
        }
    }
}
