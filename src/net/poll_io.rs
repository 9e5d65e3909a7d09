//! `PollIo`: poll-level reads and writes of a stream, for adapters called with borrowed
//! buffers (hyper's `rt::Read` / `rt::Write`). The kernel reads into, and writes from,
//! buffers the adapter owns; bytes are copied once between those and the caller's buffer.
//! No zero-filling and no allocation per call: the read buffer and the write buffer are
//! reused for the life of the connection.
//!
//! # Rules kept
//!
//! * Lossless reads: a receive in flight when the adapter is dropped is cancelled with the
//!   stream's orphan rule (its bytes go to the stream's leftover buffer), and bytes received
//!   but not yet handed out are put back in front of them ([`PollIo::give_back`]). The
//!   adapter takes its turn with the stream's other reads (one receive in flight at a time).
//! * Writes are accepted into the write buffer and sent in the background: `poll_write`
//!   returns the count once the bytes are copied and their send is submitted; the next
//!   `poll_write` waits for that send to finish (sending the rest of a short send) and
//!   reports its error. Vectored writes are gathered into one send.
//! * `poll_flush` is ready once every accepted byte belongs to a send in flight: like a
//!   write into a socket buffer, handing bytes to the kernel is the flush. (Waiting for the
//!   completion instead made hyper see the client's EOF while it still counted the response
//!   as unflushed, and report `IncompleteMessage` for a clean keep-alive close.) The send is
//!   a send-all (`Send::stream_all`): the driver itself sends the rest of a short send, so
//!   the bytes go out whole whether or not anybody polls the adapter again; a send error is
//!   reported by the next write, flush or shutdown. `poll_shutdown` waits for the send.
//! * Dropped with a send in flight, the adapter lets the send finish instead of cancelling
//!   it (`Op::detach`), so a response written just before the drop is not cut.

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::{cell::RefCell, future::Future};

use super::stream::{ReadState, Stream};
use crate::buf::{IoBuf, IoBufMut, Slice};
use crate::driver::op::net::{Recv, Send, Shutdown};
use crate::driver::op::{OnOrphan, Op};

/// Size of the buffer the kernel receives into.
const READ_BUF: usize = 16 * 1024;

/// The orphan rule of a poll-level receive: keep what it got for the stream's next read.
pub(crate) struct Rescue(Rc<RefCell<ReadState>>);

impl OnOrphan<Recv<Vec<u8>>> for Rescue {
    fn orphaned(self, result: Option<io::Result<u32>>, recv: Recv<Vec<u8>>) {
        ReadState::orphaned(&self.0, result, &recv.buf);
    }
}

/// The state of one poll-level reader and writer of a stream. See the module docs.
pub(crate) struct PollIo {
    /// The stream's read state, where bytes not handed out go back when this is dropped.
    reads: Rc<RefCell<ReadState>>,
    /// The receive in flight, into a buffer this adapter owns.
    recv: Option<Op<Recv<Vec<u8>>, Rescue>>,
    /// Bytes received and not yet handed out: `chunk[pos..]`.
    chunk: Vec<u8>,
    pos: usize,
    /// The send in flight, of a range of the write buffer.
    send: Option<Op<Send<Slice<Vec<u8>>>>>,
    /// The write buffer, while no send uses it.
    wbuf: Vec<u8>,
    /// The error of a send that completed while nobody was writing.
    werr: Option<io::Error>,
    shutdown: Option<Op<Shutdown>>,
}

impl PollIo {
    /// The poll-level reader and writer of `stream`.
    pub(crate) fn new(stream: &Stream) -> PollIo {
        PollIo {
            reads: Rc::clone(&stream.reads),
            recv: None,
            chunk: Vec::new(),
            pos: 0,
            send: None,
            wbuf: Vec::new(),
            werr: None,
            shutdown: None,
        }
    }

    /// Reads at most `max` bytes, handing them to `out` (possibly in two pieces); `Ok(0)` is
    /// the end of the stream (or `max == 0`).
    pub(crate) fn poll_read(
        &mut self,
        stream: &Stream,
        cx: &mut Context<'_>,
        max: usize,
        out: &mut dyn FnMut(&[u8]),
    ) -> Poll<io::Result<usize>> {
        if max == 0 {
            return Poll::Ready(Ok(0));
        }
        loop {
            if self.pos < self.chunk.len() {
                let n = (self.chunk.len() - self.pos).min(max);
                out(&self.chunk[self.pos..self.pos + n]);
                self.pos += n;
                return Poll::Ready(Ok(n));
            }
            if let Some(recv) = &mut self.recv {
                let (r, done) = ready!(Pin::new(recv).poll(cx));
                self.recv = None;
                ReadState::finish(&stream.reads);
                let mut buf = done.buf;
                match r {
                    Ok(n) => {
                        // SAFETY: the kernel wrote n bytes at the start of the buffer.
                        unsafe { buf.set_init(n as usize) };
                        self.chunk = buf;
                        self.pos = 0;
                        if n == 0 {
                            return Poll::Ready(Ok(0));
                        }
                        continue;
                    }
                    Err(e) => {
                        buf.clear();
                        self.chunk = buf;
                        self.pos = 0;
                        return Poll::Ready(Err(e));
                    }
                }
            }
            // Our turn among the stream's readers, then what cancelled reads left.
            ready!(stream.poll_turn(cx));
            if let Some(r) = stream.take_buffered_into(max, out) {
                return Poll::Ready(r);
            }
            let mut buf = std::mem::take(&mut self.chunk);
            buf.clear();
            self.pos = 0;
            buf.reserve(READ_BUF);
            match Op::submit(Recv::stream(stream.sock.fd(), buf)) {
                Ok(recv) => {
                    stream.reads.borrow_mut().in_flight = true;
                    self.recv = Some(recv.on_orphan(Rescue(Rc::clone(&stream.reads))));
                }
                Err((e, recv)) => {
                    self.chunk = recv.buf;
                    return Poll::Ready(Err(e));
                }
            }
        }
    }

    /// Accepts the bytes of `bufs` (gathered into one send); first waits for the previous
    /// send and reports its error.
    pub(crate) fn poll_write<B: std::ops::Deref<Target = [u8]>>(
        &mut self,
        stream: &Stream,
        cx: &mut Context<'_>,
        bufs: &[B],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drive_send(stream, cx));
        if let Some(e) = self.werr.take() {
            return Poll::Ready(Err(e));
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        let mut buf = std::mem::take(&mut self.wbuf);
        buf.clear();
        for b in bufs {
            buf.extend_from_slice(&b[..]);
        }
        self.start_send(stream, buf, 0)?;
        Poll::Ready(Ok(total))
    }

    fn start_send(&mut self, stream: &Stream, buf: Vec<u8>, from: usize) -> io::Result<()> {
        let end = buf.len();
        match Op::submit(Send::stream_all(stream.sock.fd(), buf.slice(from..end))) {
            Ok(send) => {
                self.send = Some(send);
                Ok(())
            }
            Err((e, send)) => {
                self.wbuf = send.buf.into_inner();
                Err(e)
            }
        }
    }

    /// Collects the completion of the send in flight (a send-all: short only when an error
    /// followed some bytes, and then the rest is tried once more to get that error); an error
    /// is kept in `werr`. Ready once no send is in flight.
    fn drive_send(&mut self, stream: &Stream, cx: &mut Context<'_>) -> Poll<()> {
        while let Some(send) = &mut self.send {
            let (r, done) = ready!(Pin::new(send).poll(cx));
            self.send = None;
            let (begin, end) = (done.buf.begin(), done.buf.end());
            let buf = done.buf.into_inner();
            match r {
                Ok(0) if end > begin => {
                    self.wbuf = buf;
                    self.werr = Some(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "ringloop: sent 0 bytes",
                    ));
                }
                Ok(n) if (n as usize) < end - begin => {
                    if let Err(e) = self.start_send(stream, buf, begin + n as usize) {
                        self.werr = Some(e);
                    }
                }
                Ok(_) => self.wbuf = buf,
                Err(e) => {
                    self.wbuf = buf;
                    self.werr = Some(e);
                }
            }
        }
        Poll::Ready(())
    }

    /// Ready once every accepted byte belongs to a send in flight (see the module docs);
    /// reports the error of a send that failed.
    pub(crate) fn poll_flush(
        &mut self,
        stream: &Stream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let _ = self.drive_send(stream, cx);
        Poll::Ready(self.werr.take().map_or(Ok(()), Err))
    }

    /// Sends what was accepted, then shuts the write side down.
    pub(crate) fn poll_shutdown(
        &mut self,
        stream: &Stream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.drive_send(stream, cx));
        if let Some(e) = self.werr.take() {
            return Poll::Ready(Err(e));
        }
        if self.shutdown.is_none() {
            let op =
                Op::submit(Shutdown::new(stream.sock.fd(), libc::SHUT_WR)).map_err(|(e, _)| e)?;
            self.shutdown = Some(op);
        }
        let op = self.shutdown.as_mut().expect("set above");
        let (r, _) = ready!(Pin::new(op).poll(cx));
        self.shutdown = None;
        Poll::Ready(r.map(drop))
    }
}

impl Drop for PollIo {
    /// Hands bytes received but not handed out back to the stream, so its next read returns
    /// them first; the receive in flight, if any, is cancelled next (field drop), and what it
    /// got follows them.
    fn drop(&mut self) {
        if self.pos < self.chunk.len() {
            let mut s = self.reads.borrow_mut();
            for &b in self.chunk[self.pos..].iter().rev() {
                s.leftover.push_front(b);
            }
        }
        // Bytes accepted by a write still go out.
        if let Some(send) = self.send.take() {
            send.detach();
        }
    }
}

impl std::fmt::Debug for PollIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollIo")
            .field("receiving", &self.recv.is_some())
            .field("buffered", &(self.chunk.len() - self.pos))
            .field("sending", &self.send.is_some())
            .finish()
    }
}
