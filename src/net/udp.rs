//! UDP: `UdpSocket`.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use super::addr::{ToSocketAddr, ip_addr};
use super::datagram;
use super::socket::Socket;
use crate::driver::op::net::RawAddr;
use crate::io::{BufResult, IoBuf, IoBufMut};

/// A UDP socket.
///
/// A receive cancelled after the kernel completed it drops its datagram (as the network
/// might have).
///
/// # Examples
///
/// ```
/// use ringloop::io::BufResult;
/// use ringloop::net::UdpSocket;
///
/// ringloop::run(async {
///     let a = UdpSocket::bind("127.0.0.1:0").unwrap();
///     let b = UdpSocket::bind("127.0.0.1:0").unwrap();
///     let BufResult(n, _) = a.send_to("hi", b.local_addr().unwrap()).await;
///     assert_eq!(n.unwrap(), 2);
///     let BufResult(r, buf) = b.recv_from(Vec::with_capacity(64)).await;
///     let (n, from) = r.unwrap();
///     assert_eq!((&buf[..n], from), (&b"hi"[..], a.local_addr().unwrap()));
/// });
/// ```
#[derive(Debug)]
pub struct UdpSocket {
    sock: Socket,
}

impl UdpSocket {
    /// Creates a socket bound to the first of `addr`'s addresses that works. Synchronous.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        Ok(UdpSocket::from(std::net::UdpSocket::bind(addr)?))
    }

    /// Sets the default destination of [`send`](UdpSocket::send) and the only source
    /// [`recv`](UdpSocket::recv) accepts. Synchronous (a UDP connect never blocks).
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        self.sock
            .with_std(|s: &std::net::UdpSocket| s.connect(addr))
    }

    /// Sends `buf`'s initialized bytes as one datagram to `addr`; returns the count sent.
    pub async fn send_to<B: IoBuf>(&self, buf: B, addr: impl ToSocketAddr) -> BufResult<usize, B> {
        let addr = match addr.to_socket_addr() {
            Ok(a) => a,
            Err(e) => return BufResult(Err(e), buf),
        };
        datagram::send_to(self.sock.fd(), buf, RawAddr::from_ip(&addr)).await
    }

    /// Receives one datagram into `buf` (bytes beyond its capacity are discarded); returns the
    /// count and the sender's address.
    ///
    /// Unlike a stream read, a cancelled receive keeps nothing: a datagram the kernel
    /// delivered to it after its future was dropped is discarded (on io_uring, where the
    /// receive may win the race with its cancellation; on epoll a cancelled receive never
    /// ran). Datagrams may be lost anyway; a protocol over UDP must tolerate it.
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> BufResult<(usize, SocketAddr), B> {
        let BufResult(r, buf) = datagram::recv_from(self.sock.fd(), buf).await;
        BufResult(r.and_then(|(n, addr)| Ok((n, addr.ip()?))), buf)
    }

    /// Sends `buf`'s initialized bytes as one datagram to the connected address.
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        datagram::send(self.sock.fd(), buf).await
    }

    /// Receives one datagram from the connected address into `buf`.
    pub async fn recv<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        datagram::recv(self.sock.fd(), buf).await
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(self.sock.sock_ref().local_addr())
    }

    /// The connected address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(self.sock.sock_ref().peer_addr())
    }
}

impl From<std::net::UdpSocket> for UdpSocket {
    fn from(s: std::net::UdpSocket) -> UdpSocket {
        UdpSocket {
            sock: Socket::from_fd(OwnedFd::from(s)),
        }
    }
}

impl From<UdpSocket> for std::net::UdpSocket {
    fn from(s: UdpSocket) -> std::net::UdpSocket {
        std::net::UdpSocket::from(s.sock.into_fd())
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.raw()
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd is open while `self` lives, which bounds the borrow.
        unsafe { BorrowedFd::borrow_raw(self.sock.raw()) }
    }
}
