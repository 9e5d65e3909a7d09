//! `futures-io` adapters: [`Compat`] implements `AsyncRead` and `AsyncWrite` over a ringloop
//! stream, so `futures::io::copy`, `AsyncReadExt` and the codecs of the futures ecosystem work.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use super::BufResult;

/// Size of the adapter's read buffer, and the most one `poll_write` takes.
const CHUNK: usize = 64 * 1024;

type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

#[doc(hidden)]
pub mod compat_sealed {
    /// Seals [`CompatStream`](super::CompatStream).
    pub trait Sealed {}
}

/// A byte stream that [`Compat`] can adapt: [`TcpStream`](crate::net::TcpStream) and
/// [`UnixStream`](crate::net::UnixStream). Sealed.
pub trait CompatStream: compat_sealed::Sealed + 'static {
    #[doc(hidden)]
    fn compat_read(&self, buf: Vec<u8>) -> impl Future<Output = BufResult<usize, Vec<u8>>>;
    #[doc(hidden)]
    fn compat_write_all(&self, buf: Vec<u8>) -> impl Future<Output = BufResult<(), Vec<u8>>>;
    #[doc(hidden)]
    fn compat_shutdown_write(&self) -> impl Future<Output = io::Result<()>>;
}

/// `futures_io::AsyncRead` + `AsyncWrite` over a ringloop stream (from `stream.compat()`).
///
/// Reads go through an internal 64 KiB buffer. Writes are write-behind: `poll_write` copies
/// up to 64 KiB into an owned buffer, starts sending it and reports it written; the next
/// `poll_write`, `poll_flush` or `poll_close` waits for that send to finish and reports its
/// error, if any. `poll_close` flushes, then shuts the write half down. Drop the adapter only
/// after a flush or close: a send still in flight is cancelled, and an unknown part of it
/// may be lost.
///
/// # Examples
///
/// ```
/// use futures::io::{AsyncReadExt, AsyncWriteExt};
///
/// ringloop::run(async {
///     let (a, b) = ringloop::net::UnixStream::pair().unwrap();
///     let (mut a, mut b) = (a.compat(), b.compat());
///     a.write_all(b"through futures-io").await.unwrap();
///     a.close().await.unwrap();
///     let mut got = Vec::new();
///     b.read_to_end(&mut got).await.unwrap();
///     assert_eq!(got, b"through futures-io");
/// });
/// ```
pub struct Compat<S: CompatStream> {
    read: Option<LocalFuture<BufResult<usize, Vec<u8>>>>,
    write: Option<LocalFuture<BufResult<(), Vec<u8>>>>,
    close: Option<LocalFuture<io::Result<()>>>,
    closed: bool,
    /// Bytes read and not yet handed out: `rbuf[rpos..]`.
    rbuf: Vec<u8>,
    rpos: usize,
    /// The write buffer when no send is in flight.
    wbuf: Option<Vec<u8>>,
    io: Rc<S>,
}

impl<S: CompatStream> Compat<S> {
    /// Wraps `stream`.
    pub fn new(stream: S) -> Compat<S> {
        Compat {
            read: None,
            write: None,
            close: None,
            closed: false,
            rbuf: Vec::new(),
            rpos: 0,
            wbuf: None,
            io: Rc::new(stream),
        }
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Gives the stream back. A read or write still in flight is cancelled, and bytes read into
    /// the adapter's buffer but not yet handed out are lost.
    pub fn into_inner(mut self) -> S {
        // Drop the futures (and their references to the stream) first.
        self.read = None;
        self.write = None;
        self.close = None;
        let Compat { io, .. } = self;
        Rc::try_unwrap(io)
            .ok()
            .expect("ringloop: Compat's in-flight futures are gone")
    }

    /// Waits for the send in flight, if any, and reports its error.
    fn poll_sent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(fut) = &mut self.write {
            let BufResult(r, buf) = ready!(fut.as_mut().poll(cx));
            self.write = None;
            self.wbuf = Some(buf);
            r?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: CompatStream> futures_io::AsyncRead for Compat<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if this.rpos < this.rbuf.len() {
                let n = out.len().min(this.rbuf.len() - this.rpos);
                out[..n].copy_from_slice(&this.rbuf[this.rpos..this.rpos + n]);
                this.rpos += n;
                return Poll::Ready(Ok(n));
            }
            if out.is_empty() {
                return Poll::Ready(Ok(0));
            }
            let fut = this.read.get_or_insert_with(|| {
                let mut buf = std::mem::take(&mut this.rbuf);
                buf.clear();
                buf.reserve(CHUNK);
                let io = Rc::clone(&this.io);
                Box::pin(async move { io.compat_read(buf).await })
            });
            let BufResult(r, buf) = ready!(fut.as_mut().poll(cx));
            this.read = None;
            this.rbuf = buf;
            this.rpos = 0;
            match r {
                Ok(0) => return Poll::Ready(Ok(0)),
                Ok(_) => {}
                Err(e) => {
                    this.rbuf.clear();
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

impl<S: CompatStream> futures_io::AsyncWrite for Compat<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_sent(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = data.len().min(CHUNK);
        let mut buf = this.wbuf.take().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(&data[..n]);
        let io = Rc::clone(&this.io);
        let mut fut: LocalFuture<_> = Box::pin(async move { io.compat_write_all(buf).await });
        // Poll once so the send is submitted now.
        match fut.as_mut().poll(cx) {
            Poll::Ready(BufResult(r, buf)) => {
                this.wbuf = Some(buf);
                r?;
            }
            Poll::Pending => this.write = Some(fut),
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_sent(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_sent(cx))?;
        if this.closed {
            return Poll::Ready(Ok(()));
        }
        let fut = this.close.get_or_insert_with(|| {
            let io = Rc::clone(&this.io);
            Box::pin(async move { io.compat_shutdown_write().await })
        });
        let r = ready!(fut.as_mut().poll(cx));
        this.close = None;
        this.closed = r.is_ok();
        Poll::Ready(r)
    }
}

impl<S: CompatStream + std::fmt::Debug> std::fmt::Debug for Compat<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compat")
            .field("stream", &self.io)
            .field("buffered", &(self.rbuf.len() - self.rpos))
            .field("writing", &self.write.is_some())
            .finish()
    }
}
