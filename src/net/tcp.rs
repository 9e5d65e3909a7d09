//! TCP: `TcpListener` and `TcpStream`.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::addr::{ToSocketAddr, ip_addr};
use super::socket::{Acceptor, Socket};
use super::stream::Stream;
use super::{compat_stream, send_stream, stream_methods};
use crate::driver::op::Op;
use crate::driver::op::net as op;

/// Backlog of listening sockets.
const BACKLOG: libc::c_int = 1024;

/// A TCP socket listening for connections.
///
/// # Examples
///
/// ```
/// use ringloop::net::{TcpListener, TcpStream};
///
/// ringloop::run(async {
///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
///     let addr = listener.local_addr().unwrap();
///     let client = ringloop::spawn(async move {
///         let stream = TcpStream::connect(addr).await.unwrap();
///         let ringloop::io::BufResult(r, _) = stream.write_all(b"hello".to_vec()).await;
///         r.unwrap();
///     });
///     let (stream, _peer) = listener.accept().await.unwrap();
///     let ringloop::io::BufResult(n, buf) = stream.read(Vec::with_capacity(16)).await;
///     assert_eq!(n.unwrap(), 5);
///     assert_eq!(buf, b"hello");
///     client.await.unwrap();
/// });
/// ```
#[derive(Debug)]
pub struct TcpListener {
    // Field order is drop order: the acceptor cancels its multishot accept (which holds the
    // socket open in the kernel) before the socket's fd is closed.
    acceptor: Acceptor,
    sock: Socket,
}

impl TcpListener {
    /// Creates a listening socket bound to the first of `addr`'s addresses that works, with
    /// `SO_REUSEADDR` (never `SO_REUSEPORT`) and a backlog of 1024. Synchronous: binding
    /// never blocks (but a host name in `addr` is resolved with the blocking std resolver).
    /// [`TcpListener::builder`] sets the backlog, `SO_REUSEPORT` and `IPV6_V6ONLY`.
    ///
    /// # Errors
    ///
    /// The last address's error if none could be bound (`AddrInUse`, ...).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        TcpListener::builder().bind(addr)
    }

    /// Like [`bind`](TcpListener::bind), with `SO_REUSEPORT` (and `SO_REUSEADDR`): several
    /// listeners, one per shard of a [`ShardedRuntime`](crate::ShardedRuntime), can bind the
    /// same address, and the kernel spreads incoming connections among them.
    ///
    /// # Errors
    ///
    /// As [`bind`](TcpListener::bind); `AddrInUse` if a listener without `SO_REUSEPORT` (or
    /// of another user) holds the address.
    ///
    /// # Examples
    ///
    /// ```
    /// ringloop::run(async {
    ///     let a = ringloop::net::TcpListener::bind_reuse_port("127.0.0.1:0").unwrap();
    ///     let b = ringloop::net::TcpListener::bind_reuse_port(a.local_addr().unwrap()).unwrap();
    ///     assert_eq!(a.local_addr().unwrap(), b.local_addr().unwrap());
    /// });
    /// ```
    pub fn bind_reuse_port(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        TcpListener::builder().reuse_port(true).bind(addr)
    }

    /// Options for a listener: backlog, `SO_REUSEPORT`, `IPV6_V6ONLY`.
    pub fn builder() -> TcpListenerBuilder {
        TcpListenerBuilder {
            backlog: BACKLOG,
            reuse_port: false,
            only_v6: None,
        }
    }

    /// Accepts a connection: the stream (close-on-exec) and the peer's address.
    ///
    /// Cancel-safe: if the future is dropped and the kernel accepted a connection for it
    /// anyway, the next `accept` returns that connection.
    ///
    /// # Errors
    ///
    /// The errno of `accept4`, e.g. `EMFILE` when the process is out of fds (the listener
    /// keeps working once fds are freed).
    ///
    /// On Linux 5.19+ the first accept arms a multishot accept that stays in the kernel:
    /// connections are accepted as they arrive and handed out by later `accept` calls, with
    /// no submission per connection (older kernels use one accept request per call). Once 64
    /// connections wait unclaimed the request is paused, and further ones wait in the
    /// kernel's backlog as they would without multishot; a burst that arrives before the loop
    /// runs can still be taken ahead in full. Dropping the listener cancels the request.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (fd, addr) = self.acceptor.accept(self.sock.fd()).await?;
        let stream = TcpStream::from_fd(fd);
        Ok((stream, addr.ip()?))
    }

    /// Turns the listener into a std listener, and hands back the connections it had already
    /// accepted but not yet returned from [`accept`](TcpListener::accept), in the order they
    /// arrived: tokio's `into_std`, without losing a connection.
    ///
    /// On io_uring the listener keeps a multishot accept armed in the kernel (see
    /// [`accept`](TcpListener::accept)), which accepts connections ahead of `accept` calls, and
    /// a connection the kernel has accepted cannot be put back into the backlog. So
    /// `into_std` ends that request, waits for its last completion, and returns what it took
    /// beside the listener, none closed (their clients see no EOF or reset). Connections that
    /// a cancelled `accept` got anyway are returned too, on either driver. Connections the
    /// kernel has not accepted yet stay in the backlog, for the std listener's `accept`. The
    /// list is empty when nothing was taken ahead (always before the first `accept`).
    ///
    /// Await it on the loop the listener accepted on, which delivers those completions; it
    /// finishes at once when nothing is armed. The std listener and streams may be in
    /// non-blocking mode (the epoll driver sets it): call `set_nonblocking` to choose.
    ///
    /// There is no `From<TcpListener> for std::net::TcpListener`: a synchronous conversion
    /// could only close the connections already taken.
    ///
    /// # Errors
    ///
    /// Only if a returned connection's peer address cannot be read (a family other than
    /// IPv4 or IPv6, which TCP never gives).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    ///
    /// ringloop::run(async {
    ///     let listener = ringloop::net::TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let addr = listener.local_addr().unwrap();
    ///     let mut client = std::net::TcpStream::connect(addr).unwrap();
    ///     let (listener, accepted) = listener.into_std().await.unwrap();
    ///     // Taken ahead by the ring, or still in the backlog: the client is served either way.
    ///     let mut server = match accepted.into_iter().next() {
    ///         Some((stream, _peer)) => stream,
    ///         None => listener.accept().unwrap().0,
    ///     };
    ///     server.set_nonblocking(false).unwrap();
    ///     client.write_all(b"hi").unwrap();
    ///     let mut buf = [0; 2];
    ///     server.read_exact(&mut buf).unwrap();
    ///     assert_eq!(&buf, b"hi");
    /// });
    /// ```
    pub async fn into_std(
        self,
    ) -> io::Result<(
        std::net::TcpListener,
        Vec<(std::net::TcpStream, SocketAddr)>,
    )> {
        let TcpListener { acceptor, sock } = self;
        let accepted = acceptor.stop().await;
        sock.forget_registration();
        // No accept holds the descriptor any more (`stop` waited for the cancelled ones), so
        // this gives the descriptor itself, never a duplicate.
        let listener = std::net::TcpListener::from(sock.try_into_fd()?);
        let mut streams = Vec::with_capacity(accepted.len());
        for (fd, addr) in accepted {
            streams.push((std::net::TcpStream::from(fd), addr.ip()?));
        }
        Ok((listener, streams))
    }

    /// How this listener accepts: "multishot" (one request armed in the kernel, Linux
    /// 5.19+), "single-shot", or "not yet" before the first accept. A diagnostic for tests.
    #[doc(hidden)]
    pub fn accept_mode(&self) -> &'static str {
        self.acceptor.mode()
    }

    /// The address the listener is bound to (with the port the kernel picked for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(self.sock.sock_ref().local_addr())
    }
}

/// Builds a [`TcpListener`] with options `bind` does not set: the backlog, `SO_REUSEPORT`
/// (one listener per shard, the kernel spreads connections) and `IPV6_V6ONLY`.
///
/// # Examples
///
/// ```
/// use ringloop::net::TcpListener;
///
/// ringloop::run(async {
///     let listener = TcpListener::builder()
///         .backlog(4096)
///         .reuse_port(true)
///         .bind("127.0.0.1:0")
///         .unwrap();
///     assert!(listener.local_addr().unwrap().port() != 0);
/// });
/// ```
#[derive(Debug, Clone)]
pub struct TcpListenerBuilder {
    backlog: libc::c_int,
    reuse_port: bool,
    only_v6: Option<bool>,
}

impl TcpListenerBuilder {
    /// The length of the queue of connections not yet accepted (`listen(2)`; the kernel caps
    /// it at `net.core.somaxconn`). Default 1024.
    pub fn backlog(mut self, backlog: u32) -> TcpListenerBuilder {
        self.backlog = backlog.min(libc::c_int::MAX as u32) as libc::c_int;
        self
    }

    /// `SO_REUSEPORT`: other listeners with it may bind the same address, and the kernel
    /// spreads connections among them. Default off.
    pub fn reuse_port(mut self, reuse: bool) -> TcpListenerBuilder {
        self.reuse_port = reuse;
        self
    }

    /// `IPV6_V6ONLY` on an IPv6 address: `true` accepts IPv6 only, `false` also IPv4 (as
    /// mapped addresses). Default: the system's (`net.ipv6.bindv6only`, usually `false`).
    pub fn only_v6(mut self, only: bool) -> TcpListenerBuilder {
        self.only_v6 = Some(only);
        self
    }

    /// Binds to the first of `addr`'s addresses that works and listens. Always sets
    /// `SO_REUSEADDR` and close-on-exec.
    ///
    /// # Errors
    ///
    /// The last address's error if none could be bound (`AddrInUse`, ...).
    pub fn bind(&self, addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        let mut last = None;
        for addr in addr.to_socket_addrs()? {
            match self.bind_one(addr) {
                Ok(l) => return Ok(l),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "ringloop: the address resolved to no address to bind",
            )
        }))
    }

    fn bind_one(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        use socket2::{Domain, Socket as Socket2, Type};
        // socket2 creates it close-on-exec.
        let socket = Socket2::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        if self.reuse_port {
            socket.set_reuse_port(true)?;
        }
        if let (Some(only), SocketAddr::V6(_)) = (self.only_v6, addr) {
            socket.set_only_v6(only)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(self.backlog)?;
        Ok(TcpListener::from(std::net::TcpListener::from(socket)))
    }
}

impl From<std::net::TcpListener> for TcpListener {
    /// Wraps a std listener (blocking or not; the epoll driver makes it non-blocking when it
    /// first uses it).
    fn from(l: std::net::TcpListener) -> TcpListener {
        TcpListener {
            sock: Socket::from_fd(OwnedFd::from(l)),
            acceptor: Acceptor::default(),
        }
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.raw()
    }
}

impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd is open while `self` lives, which bounds the borrow.
        unsafe { BorrowedFd::borrow_raw(self.sock.raw()) }
    }
}

/// A connected TCP stream.
///
/// Reads and writes take `&self`, so one task can read and write at once (e.g. with
/// [`gather2`](crate::gather2)). Concurrent reads on one stream are served one after the
/// other.
///
/// # Examples
///
/// ```
/// use ringloop::io::BufResult;
/// use ringloop::net::{TcpListener, TcpStream};
///
/// ringloop::run(async {
///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
///     let addr = listener.local_addr().unwrap();
///     let echo = ringloop::spawn(async move {
///         let (stream, _) = listener.accept().await.unwrap();
///         let mut buf = Vec::with_capacity(4096);
///         loop {
///             let BufResult(n, b) = stream.read(buf).await;
///             if n.unwrap() == 0 {
///                 break;
///             }
///             let BufResult(r, b) = stream.write_all(b).await;
///             r.unwrap();
///             buf = b;
///         }
///     });
///     let stream = TcpStream::connect(addr).await.unwrap();
///     stream.set_nodelay(true).unwrap();
///     let BufResult(r, _) = stream.write_all("ping").await;
///     r.unwrap();
///     let BufResult(n, buf) = stream.read(vec![0u8; 16]).await;
///     assert_eq!(&buf[..n.unwrap()], b"ping");
///     stream.shutdown(std::net::Shutdown::Write).await.unwrap();
///     echo.await.unwrap();
/// });
/// ```
#[derive(Debug)]
pub struct TcpStream {
    inner: Stream,
}

impl TcpStream {
    fn from_fd(fd: OwnedFd) -> TcpStream {
        TcpStream {
            inner: Stream::new(Socket::from_fd(fd)),
        }
    }

    /// Connects to `addr` (IORING_OP_CONNECT): a `SocketAddr`, an `(ip, port)` pair or a
    /// literal `"ip:port"` string (see [`ToSocketAddr`]). For a host name, see
    /// [`connect_host`](TcpStream::connect_host).
    ///
    /// # Errors
    ///
    /// `ConnectionRefused` if nothing listens there, and the other errnos of `connect`.
    pub async fn connect(addr: impl ToSocketAddr) -> io::Result<TcpStream> {
        let addr = addr.to_socket_addr()?;
        let domain = if addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        let sock = Socket::new(domain, libc::SOCK_STREAM)?;
        let (c, _connect) = Op::submit(op::Connect::new(sock.fd(), op::RawAddr::from_ip(&addr)))
            .map_err(|(e, _)| e)?
            .await;
        c?;
        Ok(TcpStream {
            inner: Stream::new(sock),
        })
    }

    stream_methods!(TcpStream);

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm: small writes go out at once).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.sock.sock_ref().set_tcp_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.sock.sock_ref().tcp_nodelay()
    }

    /// The address of the peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(self.inner.sock.sock_ref().peer_addr())
    }

    /// The local address of the stream.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(self.inner.sock.sock_ref().local_addr())
    }
}

compat_stream!(TcpStream);
send_stream!(TcpStream, std::net::TcpStream);

impl From<std::net::TcpStream> for TcpStream {
    /// Wraps a connected std stream (blocking or not; the epoll driver makes it non-blocking
    /// when it first uses it).
    fn from(s: std::net::TcpStream) -> TcpStream {
        TcpStream::from_fd(OwnedFd::from(s))
    }
}

impl From<TcpStream> for std::net::TcpStream {
    /// Unwraps the std stream at once. Bytes the loop had received and not yet returned (kept
    /// from cancelled reads, or queued by [`read_lent`](TcpStream::read_lent)) are lost, and
    /// a receive armed by `read_lent` may take more before its cancellation lands: use
    /// [`into_std`](TcpStream::into_std) to keep them.
    fn from(s: TcpStream) -> std::net::TcpStream {
        std::net::TcpStream::from(s.inner.sock.into_fd())
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.sock.raw()
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd is open while `self` lives, which bounds the borrow.
        unsafe { BorrowedFd::borrow_raw(self.inner.sock.raw()) }
    }
}

impl FromRawFd for TcpStream {
    /// # Safety
    ///
    /// `fd` is an open, connected TCP socket that the caller owns and gives up.
    unsafe fn from_raw_fd(fd: RawFd) -> TcpStream {
        // SAFETY: forwarded from this function's contract.
        TcpStream::from_fd(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}
