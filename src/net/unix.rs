//! Unix domain sockets: `UnixListener`, `UnixStream`, `UnixDatagram`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;

use super::addr::{unix_from_raw, unix_to_raw};
use super::datagram;
use super::socket::{Acceptor, Socket};
use super::stream::Stream;
use super::{compat_stream, send_stream, stream_methods};
use crate::driver::op::Op;
use crate::driver::op::net as op;
use crate::io::{BufResult, IoBuf, IoBufMut};

/// Backlog of listening sockets.
const BACKLOG: libc::c_int = 1024;

macro_rules! fd_impls {
    ($ty:ident, $std:ty, $($sock:ident).+) => {
        impl From<$std> for $ty {
            fn from(s: $std) -> $ty {
                $ty::from_socket(Socket::from_fd(OwnedFd::from(s)))
            }
        }

        fd_impls!(@refs $ty, $($sock).+);
    };
    ($ty:ident, $std:ty, $($sock:ident).+; into) => {
        fd_impls!($ty, $std, $($sock).+);

        impl From<$ty> for $std {
            fn from(s: $ty) -> $std {
                <$std>::from(s.$($sock).+.into_fd())
            }
        }
    };
    (@refs $ty:ident, $($sock:ident).+) => {
        impl AsRawFd for $ty {
            fn as_raw_fd(&self) -> RawFd {
                self.$($sock).+.raw()
            }
        }

        impl AsFd for $ty {
            fn as_fd(&self) -> BorrowedFd<'_> {
                // SAFETY: the fd is open while `self` lives, which bounds the borrow.
                unsafe { BorrowedFd::borrow_raw(self.$($sock).+.raw()) }
            }
        }
    };
}

/// A Unix stream socket listening for connections.
///
/// # Examples
///
/// ```
/// use ringloop::net::{UnixListener, UnixStream};
///
/// let dir = std::env::temp_dir().join(format!("ringloop-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("sock");
/// let _ = std::fs::remove_file(&path);
/// ringloop::run(async {
///     let listener = UnixListener::bind(&path).unwrap();
///     let client = UnixStream::connect(&path).await.unwrap();
///     let (server, _addr) = listener.accept().await.unwrap();
///     let ringloop::io::BufResult(r, _) = client.write_all("hey").await;
///     r.unwrap();
///     let ringloop::io::BufResult(n, buf) = server.read(Vec::with_capacity(8)).await;
///     assert_eq!((n.unwrap(), &buf[..]), (3, &b"hey"[..]));
/// });
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Debug)]
pub struct UnixListener {
    // Drop order: see `TcpListener`.
    acceptor: Acceptor,
    sock: Socket,
}

impl UnixListener {
    /// Creates a socket listening at `path` (which must not exist), backlog 1024. Synchronous.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let listener = UnixListener::from(std::os::unix::net::UnixListener::bind(path)?);
        listener.sock.listen(BACKLOG)?;
        Ok(listener)
    }

    fn from_socket(sock: Socket) -> UnixListener {
        UnixListener {
            sock,
            acceptor: Acceptor::default(),
        }
    }

    /// Accepts a connection: the stream and the peer's address (usually unnamed).
    /// Cancel-safe like [`TcpListener::accept`](super::TcpListener::accept).
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (fd, addr) = self.acceptor.accept(self.sock.fd()).await?;
        Ok((
            UnixStream::from_socket(Socket::from_fd(fd)),
            unix_from_raw(&addr)?,
        ))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock
            .with_std(|l: &std::os::unix::net::UnixListener| l.local_addr())
    }

    /// Turns the listener into a std listener, and hands back the connections it had already
    /// accepted but not yet returned, in the order they arrived; see
    /// [`TcpListener::into_std`](super::TcpListener::into_std), which this mirrors (the
    /// multishot accept is ended and waited for; no connection is closed). There is no
    /// `From<UnixListener>` for the std listener, for the same reason.
    ///
    /// # Errors
    ///
    /// Only if a returned connection's peer address cannot be read.
    #[allow(clippy::type_complexity)]
    pub async fn into_std(
        self,
    ) -> io::Result<(
        std::os::unix::net::UnixListener,
        Vec<(std::os::unix::net::UnixStream, SocketAddr)>,
    )> {
        let UnixListener { acceptor, sock } = self;
        let accepted = acceptor.stop().await;
        sock.forget_registration();
        // As for TCP: no accept holds the descriptor any more, so this never duplicates it.
        let listener = std::os::unix::net::UnixListener::from(sock.try_into_fd()?);
        let mut streams = Vec::with_capacity(accepted.len());
        for (fd, addr) in accepted {
            streams.push((
                std::os::unix::net::UnixStream::from(fd),
                unix_from_raw(&addr)?,
            ));
        }
        Ok((listener, streams))
    }
}

fd_impls!(UnixListener, std::os::unix::net::UnixListener, sock);

/// A connected Unix stream socket. Same reads and writes as
/// [`TcpStream`](super::TcpStream).
///
/// # Examples
///
/// ```
/// use ringloop::io::BufResult;
///
/// ringloop::run(async {
///     let (a, b) = ringloop::net::UnixStream::pair().unwrap();
///     let BufResult(r, _) = a.write_all(b"over the pair".to_vec()).await;
///     r.unwrap();
///     let BufResult(n, buf) = b.read(Vec::with_capacity(64)).await;
///     assert_eq!(&buf[..n.unwrap()], b"over the pair");
/// });
/// ```
#[derive(Debug)]
pub struct UnixStream {
    inner: Stream,
}

impl UnixStream {
    fn from_socket(sock: Socket) -> UnixStream {
        UnixStream {
            inner: Stream::new(sock),
        }
    }

    /// Connects to the socket at `path` (a path starting with a NUL byte names an abstract
    /// socket).
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let addr = unix_to_raw(path.as_ref())?;
        let sock = Socket::new(libc::AF_UNIX, libc::SOCK_STREAM)?;
        let (c, _connect) = Op::submit(op::Connect::new(sock.fd(), addr))
            .map_err(|(e, _)| e)?
            .await;
        c?;
        Ok(UnixStream::from_socket(sock))
    }

    /// A pair of connected streams (`socketpair`). Synchronous.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        Ok((UnixStream::from(a), UnixStream::from(b)))
    }

    stream_methods!(UnixStream);

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner
            .sock
            .with_std(|s: &std::os::unix::net::UnixStream| s.local_addr())
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner
            .sock
            .with_std(|s: &std::os::unix::net::UnixStream| s.peer_addr())
    }
}

compat_stream!(UnixStream);
send_stream!(UnixStream, std::os::unix::net::UnixStream);
fd_impls!(UnixStream, std::os::unix::net::UnixStream, inner.sock; into);

/// A Unix datagram socket.
///
/// # Examples
///
/// ```
/// use ringloop::io::BufResult;
///
/// ringloop::run(async {
///     let (a, b) = ringloop::net::UnixDatagram::pair().unwrap();
///     let BufResult(n, _) = a.send("one datagram").await;
///     assert_eq!(n.unwrap(), 12);
///     let BufResult(n, buf) = b.recv(Vec::with_capacity(64)).await;
///     assert_eq!(&buf[..n.unwrap()], b"one datagram");
/// });
/// ```
#[derive(Debug)]
pub struct UnixDatagram {
    sock: Socket,
}

impl UnixDatagram {
    fn from_socket(sock: Socket) -> UnixDatagram {
        UnixDatagram { sock }
    }

    /// A socket bound to `path`. Synchronous.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram::from(std::os::unix::net::UnixDatagram::bind(
            path,
        )?))
    }

    /// A socket bound to no address (it can send, and receive replies only if connected or
    /// through a pair).
    pub fn unbound() -> io::Result<UnixDatagram> {
        Ok(UnixDatagram::from(
            std::os::unix::net::UnixDatagram::unbound()?,
        ))
    }

    /// A pair of connected datagram sockets. Synchronous.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = std::os::unix::net::UnixDatagram::pair()?;
        Ok((UnixDatagram::from(a), UnixDatagram::from(b)))
    }

    /// Sets the default destination of [`send`](UnixDatagram::send). Synchronous.
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.sock
            .with_std(|s: &std::os::unix::net::UnixDatagram| s.connect(path))
    }

    /// Sends `buf`'s initialized bytes as one datagram to the socket at `path`.
    pub async fn send_to<B: IoBuf>(&self, buf: B, path: impl AsRef<Path>) -> BufResult<usize, B> {
        let addr = match unix_to_raw(path.as_ref()) {
            Ok(a) => a,
            Err(e) => return BufResult(Err(e), buf),
        };
        datagram::send_to(self.sock.fd(), buf, addr).await
    }

    /// Receives one datagram and the sender's address.
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> BufResult<(usize, SocketAddr), B> {
        let BufResult(r, buf) = datagram::recv_from(self.sock.fd(), buf).await;
        BufResult(r.and_then(|(n, addr)| Ok((n, unix_from_raw(&addr)?))), buf)
    }

    /// Sends one datagram to the connected address.
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        datagram::send(self.sock.fd(), buf).await
    }

    /// Receives one datagram.
    pub async fn recv<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        datagram::recv(self.sock.fd(), buf).await
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock
            .with_std(|s: &std::os::unix::net::UnixDatagram| s.local_addr())
    }

    /// The connected address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock
            .with_std(|s: &std::os::unix::net::UnixDatagram| s.peer_addr())
    }
}

fd_impls!(UnixDatagram, std::os::unix::net::UnixDatagram, sock; into);
