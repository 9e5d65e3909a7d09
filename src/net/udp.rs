//! UDP: `UdpSocket`.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use super::addr::{from_raw, to_raw};
use super::socket::Socket;
use crate::driver::op::net as op;
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
    pub async fn send_to<B: IoBuf>(&self, buf: B, addr: SocketAddr) -> BufResult<usize, B> {
        match op::send_to(self.sock.raw(), buf, to_raw(&addr)) {
            Ok(op) => {
                let (c, (buf, _msg)) = op.await;
                BufResult(c.into_io().map(|n| n as usize), buf)
            }
            Err((e, buf)) => BufResult(Err(e), buf),
        }
    }

    /// Receives one datagram into `buf` (bytes beyond its capacity are discarded); returns the
    /// count and the sender's address.
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> BufResult<(usize, SocketAddr), B> {
        match op::recv_from(self.sock.raw(), buf) {
            Ok(op) => {
                let (c, (mut buf, msg)) = op.await;
                let r = c.into_io().and_then(|n| {
                    // SAFETY: the kernel wrote n bytes at the start of the buffer.
                    unsafe { buf.set_init(n as usize) };
                    let mut addr = msg.addr;
                    addr.len = msg.name_len();
                    Ok((n as usize, from_raw(&addr)?))
                });
                BufResult(r, buf)
            }
            Err((e, buf)) => BufResult(Err(e), buf),
        }
    }

    /// Sends `buf`'s initialized bytes as one datagram to the connected address.
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        match op::send(self.sock.raw(), buf) {
            Ok(op) => {
                let (c, buf) = op.await;
                BufResult(c.into_io().map(|n| n as usize), buf)
            }
            Err((e, buf)) => BufResult(Err(e), buf),
        }
    }

    /// Receives one datagram from the connected address into `buf`.
    pub async fn recv<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        match op::recv(self.sock.raw(), buf) {
            Ok(op) => {
                let (c, mut buf) = op.await;
                let r = c.into_io().map(|n| {
                    // SAFETY: the kernel wrote n bytes at the start of the buffer.
                    unsafe { buf.set_init(n as usize) };
                    n as usize
                });
                BufResult(r, buf)
            }
            Err((e, buf)) => BufResult(Err(e), buf),
        }
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.with_std(|s: &std::net::UdpSocket| s.local_addr())
    }

    /// The connected address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock.with_std(|s: &std::net::UdpSocket| s.peer_addr())
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
