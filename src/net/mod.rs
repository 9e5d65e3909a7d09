//! Sockets through the driver: TCP, UDP and Unix domain sockets.
//!
//! Sockets are created, bound and set to listen synchronously (those calls never block);
//! connecting, accepting, reading and writing go through the driver (io_uring, or epoll).
//! Reads and writes take an owned buffer ([`IoBuf`](crate::io::IoBuf) / [`IoBufMut`](crate::io::IoBufMut)) and give it
//! back with the result ([`BufResult`](crate::io::BufResult)), because the kernel uses the
//! buffer until the operation completes.
//!
//! # Cancellation
//!
//! Dropping an operation's future (for instance when a [`wait_for`](crate::wait_for) expires)
//! cancels it safely: the buffer stays alive until the kernel is done with it.
//!
//! - A cancelled stream **read** loses no data: if the receive completed anyway, the bytes are
//!   kept and the next read on the stream returns them first, in order.
//! - A cancelled **accept** that got a connection anyway keeps it for the next accept.
//! - A cancelled **write** may or may not have sent some of its bytes; the caller cannot know
//!   how many. Treat the stream as broken after cancelling a write (as with tokio), or do not
//!   cancel writes.
//! - A cancelled datagram receive (UDP, Unix datagram) that completed anyway drops its
//!   datagram, as if the network had lost it.
//!
//! Sends use `MSG_NOSIGNAL`: writing to a closed peer gives an error (`BrokenPipe` or
//! `ConnectionReset`), never `SIGPIPE`.

mod addr;
mod datagram;
#[cfg(feature = "hyper")]
pub(crate) mod poll_io;
mod socket;
pub(crate) mod stream;
mod tcp;
mod udp;
mod unix;

pub use addr::ToSocketAddr;
pub use tcp::{TcpListener, TcpListenerBuilder, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixListener, UnixStream};

/// A stream on its way to another shard (or thread): `Send`, unlike the stream itself. Made
/// by [`TcpStream::into_send`] or [`UnixStream::into_send`], which keep the bytes a cancelled
/// read left buffered; [`into_stream`](SendStream::<TcpStream>::into_stream) makes the
/// stream again on the loop that should own it, where the next read returns those bytes
/// first.
///
/// # Examples
///
/// ```
/// use ringloop::net::{TcpListener, TcpStream};
///
/// let rt = ringloop::ShardedRuntime::new(2)?;
/// let out = rt.run(|shard| async move {
///     if shard == 1 {
///         return Vec::new();
///     }
///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
///     let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
///     let (server, _) = listener.accept().await.unwrap();
///     client.write_all("moved").await.0.unwrap();
///     // Serve the connection on shard 1 instead.
///     let moving = server.into_send().await.unwrap();
///     ringloop::submit_to(1, move || async move {
///         let stream = moving.into_stream();
///         stream.read(Vec::with_capacity(8)).await.1
///     })
///     .await
///     .unwrap()
/// });
/// assert_eq!(out[0], b"moved");
/// # std::io::Result::Ok(())
/// ```
pub struct SendStream<S> {
    moved: stream::Moved,
    _kind: std::marker::PhantomData<fn() -> S>,
}

impl<S> std::fmt::Debug for SendStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendStream")
            .field("moved", &self.moved)
            .finish()
    }
}

/// The methods that TcpStream and UnixStream share, with their docs.
macro_rules! stream_methods {
    ($ty:ident) => {
        /// Reads up to `buf.bytes_total()` bytes into `buf` (from its start; a `Vec`'s length
        /// becomes the count) and returns the count; 0 means end of stream (or an empty
        /// buffer).
        ///
        /// Cancel-safe and lossless: if the future is dropped before it finishes, bytes the
        /// kernel received for it anyway are returned by the next read, in order.
        pub async fn read<B: $crate::io::IoBufMut>(
            &self,
            buf: B,
        ) -> $crate::io::BufResult<usize, B> {
            self.inner.read(buf).await
        }

        /// Reads the next bytes of the stream into a buffer the loop lends, instead of one
        /// the caller hands in: for servers that read from many connections, since a
        /// connection waiting for data holds no buffer. An empty buffer means end of stream.
        /// Dropping the [`LentBuf`]($crate::io::LentBuf) gives the buffer back; it can be
        /// written out as it is.
        ///
        /// On io_uring (Linux 6.0+), the first call arms one multishot receive into the
        /// loop's provided buffer ring, which stays armed while the stream lives: the kernel
        /// picks a buffer only when bytes arrive, and later reads take what it filled with no
        /// submission. Elsewhere, and while every ring buffer is lent, each call is one
        /// receive into a heap buffer kept for reuse. See
        /// [`Builder::recv_buffers`]($crate::Builder::recv_buffers).
        ///
        /// Cancel-safe and lossless: bytes that arrive after the future is dropped are
        /// returned by the next read (lent or not). [`read`](Self::read) keeps working on
        /// the same stream, copying from the lent buffers first.
        ///
        /// # Examples
        ///
        /// ```
        /// use ringloop::net::{TcpListener, TcpStream};
        ///
        /// ringloop::run(async {
        ///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        ///     let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        ///     let (server, _) = listener.accept().await.unwrap();
        ///     client.write_all(b"ping".to_vec()).await.0.unwrap();
        ///     // Echo: the lent buffer goes back out as it is.
        ///     let buf = server.read_lent().await.unwrap();
        ///     assert_eq!(&buf[..], b"ping");
        ///     server.write_all(buf).await.0.unwrap();
        ///     let echoed = client.read(Vec::with_capacity(8)).await.1;
        ///     assert_eq!(echoed, b"ping");
        /// });
        /// ```
        pub fn read_lent(
            &self,
        ) -> impl std::future::Future<Output = std::io::Result<$crate::io::LentBuf>> + '_ {
            self.inner.read_lent()
        }

        /// Like [`read`](Self::read), with a deadline carried by the kernel (a linked
        /// timeout): if no byte arrived within `timeout`, the read fails with
        /// `ErrorKind::TimedOut` and consumed nothing, so the next read sees every byte.
        /// Cheaper than `ringloop::wait_for(stream.read(buf), timeout)`, which needs a timer
        /// and a cancellation round trip.
        pub async fn read_timeout<B: $crate::io::IoBufMut>(
            &self,
            buf: B,
            timeout: std::time::Duration,
        ) -> $crate::io::BufResult<usize, B> {
            self.inner.read_timeout(buf, timeout).await
        }

        /// Writes some of `buf`'s initialized bytes; returns how many were written (possibly
        /// fewer than all).
        ///
        /// If the future is dropped before it finishes, the kernel may or may not have sent
        /// some of the bytes; there is no way to know how many.
        pub async fn write<B: $crate::io::IoBuf>(&self, buf: B) -> $crate::io::BufResult<usize, B> {
            self.inner.write(buf).await
        }

        /// Writes all of `buf`'s initialized bytes (the driver sends the rest of a short send
        /// itself, so this is usually one operation).
        ///
        /// On an error, or if the future is dropped, an unknown prefix of the bytes may have
        /// been sent: treat the stream as broken.
        pub fn write_all<B: $crate::io::IoBuf>(
            &self,
            buf: B,
        ) -> impl std::future::Future<Output = $crate::io::BufResult<(), B>> + '_ {
            self.inner.write_all(buf)
        }

        /// Writes the buffers' initialized bytes in order in one `sendmsg` (a gathered write);
        /// returns how many bytes were written (possibly fewer than all).
        pub async fn writev<B: $crate::io::IoBuf>(
            &self,
            bufs: Vec<B>,
        ) -> $crate::io::BufResult<usize, Vec<B>> {
            self.inner.writev(bufs).await
        }

        /// Shuts down the read half, the write half (the peer reads end of stream), or both.
        pub async fn shutdown(&self, how: std::net::Shutdown) -> std::io::Result<()> {
            self.inner.shutdown(how).await
        }

        /// How many cancelled reads on this stream had received data that was kept for the
        /// following reads (a diagnostic for tests).
        #[doc(hidden)]
        pub fn rescued_reads(&self) -> u64 {
            self.inner.rescued_reads()
        }

        /// An adapter implementing `futures_io::AsyncRead` and `AsyncWrite`; see
        /// [`Compat`]($crate::io::Compat).
        pub fn compat(self) -> $crate::io::Compat<$ty> {
            $crate::io::Compat::new(self)
        }
    };
}
use stream_methods;

/// `into_send` and `SendStream::into_stream` for a stream type.
macro_rules! send_stream {
    ($ty:ident, $std:ty) => {
        impl $ty {
            /// Turns the stream into its std counterpart without losing a byte: ends the
            /// receive a [`read_lent`](Self::read_lent) armed (waiting for its last
            /// completion) and waits for a cancelled read still in flight, then returns the
            /// std stream with the bytes the loop had received and not yet returned (kept
            /// from cancelled reads, or queued by lent reads), which come before anything
            /// read from the std stream. On epoll the descriptor stays non-blocking.
            ///
            /// # Errors
            ///
            /// `EMFILE` if a cancelled operation still holds the descriptor and it cannot be
            /// duplicated.
            pub async fn into_std(self) -> std::io::Result<($std, Vec<u8>)> {
                let (fd, buffered) = self.inner.into_moved().await?.into_parts();
                Ok((<$std>::from(fd), buffered))
            }

            /// Turns the stream into a [`SendStream`](crate::net::SendStream), which can move
            /// to another shard or thread. Waits for a cancelled read still in flight, so the
            /// bytes it got are kept; they, and anything else cancelled reads left buffered,
            /// come first from the next read of the stream made again.
            ///
            /// # Errors
            ///
            /// `EMFILE` if a cancelled operation still holds the descriptor and it cannot be
            /// duplicated.
            pub async fn into_send(self) -> std::io::Result<$crate::net::SendStream<$ty>> {
                Ok($crate::net::SendStream {
                    moved: self.inner.into_moved().await?,
                    _kind: std::marker::PhantomData,
                })
            }
        }

        #[cfg(feature = "hyper")]
        impl $ty {
            /// The shared stream machinery, for crate adapters (`ringloop::hyper::Io`).
            pub(crate) fn stream(&self) -> &super::stream::Stream {
                &self.inner
            }
        }

        impl $crate::net::SendStream<$ty> {
            /// The stream again, owned by this thread's loop.
            pub fn into_stream(self) -> $ty {
                $ty {
                    inner: super::stream::Stream::from_moved(self.moved),
                }
            }
        }
    };
}

/// The [`CompatStream`](crate::io::CompatStream) implementation of a stream type.
macro_rules! compat_stream {
    ($ty:ident) => {
        impl $crate::io::compat_sealed::Sealed for $ty {}

        impl $crate::io::CompatStream for $ty {
            async fn compat_read(&self, buf: Vec<u8>) -> $crate::io::BufResult<usize, Vec<u8>> {
                self.inner.read(buf).await
            }

            async fn compat_write_all(&self, buf: Vec<u8>) -> $crate::io::BufResult<(), Vec<u8>> {
                self.inner.write_all(buf).await
            }

            async fn compat_shutdown_write(&self) -> std::io::Result<()> {
                self.inner.shutdown(std::net::Shutdown::Write).await
            }
        }
    };
}
use compat_stream;
use send_stream;
