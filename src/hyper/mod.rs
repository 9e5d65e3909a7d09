//! ringloop as a hyper 1.x runtime (feature `hyper`): [`Io`] (hyper's `rt::Read` and
//! `rt::Write` over ringloop's TCP and Unix streams), [`LocalExec`] (hyper's `Executor` for
//! `!Send` futures, spawning on the current loop) and [`Timer`] (hyper's `rt::Timer`, so
//! `header_read_timeout` and keep-alive timeouts work).
//!
//! Reads go through a buffer the connection owns (16 KiB, filled by the kernel, copied once
//! into hyper's buffer, never zero-filled); hyper's vectored writes are gathered into one
//! send. A cancelled read loses no byte (see [`Io::into_inner`]).
//!
//! HTTP/1.1 (server and client) and HTTP/2 (server and client, with `LocalExec`: hyper 1.x
//! takes a `!Send` executor for HTTP/2) both run on one loop; on a
//! [`ShardedRuntime`](crate::ShardedRuntime), each shard serves its own connections.
//!
//! # Examples
//!
//! ```
//! use http_body_util::Full;
//! use hyper::{Request, Response, body::Bytes, service::service_fn};
//! use ringloop::hyper::{Io, Timer};
//! use ringloop::net::{TcpListener, TcpStream};
//!
//! ringloop::run(async {
//!     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     ringloop::spawn(async move {
//!         let (stream, _) = listener.accept().await.unwrap();
//!         let hello = service_fn(|_req: Request<hyper::body::Incoming>| async {
//!             Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("Hello!"))))
//!         });
//!         hyper::server::conn::http1::Builder::new()
//!             .timer(Timer)
//!             .serve_connection(Io::new(stream), hello)
//!             .await
//!             .unwrap();
//!     });
//!     let stream = TcpStream::connect(addr).await.unwrap();
//!     let (mut sender, conn) = hyper::client::conn::http1::handshake(Io::new(stream)).await.unwrap();
//!     ringloop::spawn(conn);
//!     let req = Request::get("/").body(Full::new(Bytes::new())).unwrap();
//!     let res = sender.send_request(req).await.unwrap();
//!     assert_eq!(res.status(), 200);
//! });
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::net::poll_io::PollIo;
use crate::net::{TcpStream, UnixStream};

/// A ringloop stream as hyper's `rt::Read + rt::Write`.
#[derive(Debug)]
pub struct Io<S> {
    stream: S,
    io: PollIo,
}

// The sealed trait's method names a crate-private type; nobody outside the crate can name the
// trait (its module is private), so nothing private leaks.
#[allow(private_interfaces)]
mod sealed {
    /// The streams `Io` adapts, and their shared machinery.
    pub trait Sealed {
        fn stream(&self) -> &crate::net::stream::Stream;
    }
}

/// A stream hyper can use through [`Io`]: [`TcpStream`] and [`UnixStream`]. Sealed.
pub trait IoStream: sealed::Sealed {}

impl<S: IoStream> Io<S> {
    /// Wraps `stream` for hyper.
    pub fn new(stream: S) -> Io<S> {
        let io = PollIo::new(stream.stream());
        Io { stream, io }
    }

    /// The stream back. Bytes received and not yet read by hyper, and any a read in flight
    /// gets, are returned first by the stream's next read.
    pub fn into_inner(self) -> S {
        let Io { stream, io } = self;
        drop(io);
        stream
    }
}

impl<S> Io<S> {
    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }
}

macro_rules! hyper_io {
    ($ty:ty) => {
        #[allow(private_interfaces)]
        impl sealed::Sealed for $ty {
            fn stream(&self) -> &crate::net::stream::Stream {
                <$ty>::stream(self)
            }
        }

        impl IoStream for $ty {}

        impl hyper::rt::Read for Io<$ty> {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                mut buf: hyper::rt::ReadBufCursor<'_>,
            ) -> Poll<io::Result<()>> {
                let this = self.get_mut();
                let max = buf.remaining();
                this.io
                    .poll_read(sealed::Sealed::stream(&this.stream), cx, max, &mut |b| {
                        buf.put_slice(b)
                    })
                    .map_ok(drop)
            }
        }

        impl hyper::rt::Write for Io<$ty> {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                let this = self.get_mut();
                this.io
                    .poll_write(sealed::Sealed::stream(&this.stream), cx, &[buf])
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                let this = self.get_mut();
                let slices: Vec<&[u8]> = bufs.iter().map(|b| &**b).collect();
                this.io
                    .poll_write(sealed::Sealed::stream(&this.stream), cx, &slices)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                let this = self.get_mut();
                this.io.poll_flush(sealed::Sealed::stream(&this.stream), cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                let this = self.get_mut();
                this.io
                    .poll_shutdown(sealed::Sealed::stream(&this.stream), cx)
            }
        }
    };
}

hyper_io!(TcpStream);
hyper_io!(UnixStream);

/// hyper's `Executor` for `!Send` futures: spawns them as tasks on the current loop
/// (`ringloop::spawn`), detached. Give it to HTTP/2 builders
/// (`hyper::server::conn::http2::Builder::new(LocalExec)`).
///
/// # Panics
///
/// `execute` panics outside a ringloop runtime, as `spawn` does.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn execute(&self, fut: F) {
        crate::spawn(fut).detach();
    }
}

/// hyper's `rt::Timer` on the loop's timers (`ringloop::sleep_until`), so hyper's
/// `header_read_timeout`, keep-alive and HTTP/2 ping timers work.
///
/// # Panics
///
/// A sleep it makes panics when polled outside a ringloop runtime, as `ringloop::sleep`
/// does.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timer;

impl hyper::rt::Timer for Timer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let deadline = Instant::now()
            .checked_add(duration)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365 * 30));
        self.sleep_until(deadline)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Sleep(crate::sleep_until(deadline)))
    }
}

/// A hyper `Sleep`: ringloop's `Sleep`, which is already `Send + Sync` (a deadline and the key
/// of its timer; keys are unique across loops, so a sleep touched on another loop finds no
/// timer of its own there and does nothing).
struct Sleep(crate::Sleep);

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.get_mut().0).poll(cx)
    }
}

impl hyper::rt::Sleep for Sleep {}
