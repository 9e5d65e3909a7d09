//! Socket operations: connect, accept, recv, send, sendmsg, recvmsg, shutdown.
//!
//! Each operation owns everything its SQE and its syscall point to, in heap memory of its own
//! (the `OpCode` contract): socket addresses live in a `Box<RawAddr>`, message headers and
//! their iovecs in a `Box<Msg>`, data in the caller's owned buffer, and the descriptor in the
//! op's [`SharedFd`], so it stays open until the operation is done. Without a ring, each runs
//! as a non-blocking syscall when the socket is ready ([`Plan::Ready`]).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{opcode, squeue, types};

use super::{Interest, OpCode, Plan, Syscall};
use crate::buf::{IoBuf, IoBufMut};
use crate::driver::fd::SharedFd;

/// A socket address as the kernel reads and writes it: storage for any family, and its
/// length. Boxed by the operations that use it, so the kernel's pointer survives moves.
#[derive(Clone, Copy)]
pub(crate) struct RawAddr {
    pub(crate) storage: libc::sockaddr_storage,
    pub(crate) len: libc::socklen_t,
}

impl std::fmt::Debug for RawAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawAddr")
            .field("family", &self.storage.ss_family)
            .field("len", &self.len)
            .finish()
    }
}

impl RawAddr {
    /// Zeroed storage, with `len` the size of the whole storage (ready to receive an address).
    pub(crate) fn empty() -> RawAddr {
        RawAddr {
            // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
            storage: unsafe { std::mem::zeroed() },
            len: size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }

    /// An IP socket address as the kernel reads it.
    pub(crate) fn from_ip(addr: &SocketAddr) -> RawAddr {
        let mut raw = RawAddr::empty();
        match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than sockaddr_in and aligned for it.
                unsafe {
                    (&raw mut raw.storage)
                        .cast::<libc::sockaddr_in>()
                        .write(sin)
                };
                raw.len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than sockaddr_in6 and aligned for it.
                unsafe {
                    (&raw mut raw.storage)
                        .cast::<libc::sockaddr_in6>()
                        .write(sin6)
                };
                raw.len = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            }
        }
        raw
    }

    /// The IP socket address the kernel wrote here.
    pub(crate) fn ip(&self) -> io::Result<SocketAddr> {
        match self.storage.ss_family as libc::c_int {
            libc::AF_INET if self.len as usize >= size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says the storage holds a sockaddr_in, and the storage is
                // large enough and aligned for one.
                let sin = unsafe { &*(&raw const self.storage).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Ok(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 if self.len as usize >= size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 = unsafe { &*(&raw const self.storage).cast::<libc::sockaddr_in6>() };
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            family => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("ringloop: unexpected socket address family {family}"),
            )),
        }
    }
}

/// A `msghdr` with the iovecs and the address it points to, for SENDMSG / RECVMSG. Always
/// boxed: `hdr` points into the box (`addr`) and into `iovs`' heap buffer.
pub(crate) struct Msg {
    hdr: libc::msghdr,
    pub(crate) addr: RawAddr,
    iovs: Vec<libc::iovec>,
}

impl Msg {
    /// Builds the boxed header; `iovs` point into buffers owned next to the box by the op.
    /// `addr`: the destination (send) or the storage for the source (receive); `None` leaves
    /// `msg_name` null.
    fn boxed(iovs: Vec<libc::iovec>, addr: Option<RawAddr>) -> Box<Msg> {
        let has_addr = addr.is_some();
        let mut msg = Box::new(Msg {
            // SAFETY: msghdr is plain old data; all zeroes (null pointers, zero lengths) is a
            // valid value.
            hdr: unsafe { std::mem::zeroed() },
            addr: addr.unwrap_or_else(RawAddr::empty),
            iovs,
        });
        if has_addr {
            msg.hdr.msg_name = (&raw mut msg.addr.storage).cast();
            msg.hdr.msg_namelen = msg.addr.len;
        }
        msg.hdr.msg_iov = msg.iovs.as_mut_ptr();
        msg.hdr.msg_iovlen = msg.iovs.len() as _;
        msg
    }

    /// The address the kernel wrote (after a RECVMSG).
    pub(crate) fn source(&self) -> RawAddr {
        let mut addr = self.addr;
        addr.len = self.hdr.msg_namelen;
        addr
    }
}

/// A length for an SQE's 32-bit length field.
fn len32(n: usize) -> u32 {
    n.min(u32::MAX as usize) as u32
}

/// `connect(fd, addr)`.
#[derive(Debug)]
pub(crate) struct Connect {
    fd: SharedFd,
    addr: Box<RawAddr>,
}

impl Connect {
    pub(crate) fn new(fd: &SharedFd, addr: RawAddr) -> Connect {
        Connect {
            fd: fd.clone(),
            addr: Box::new(addr),
        }
    }
}

// SAFETY: the only pointer is into the op's boxed address.
unsafe impl OpCode for Connect {
    const CODE: u8 = opcode::Connect::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Connect::new(
            types::Fd(self.fd.as_raw_fd()),
            (&raw const self.addr.storage).cast(),
            self.addr.len,
        )
        .build()
    }

    fn plan(&mut self) -> Plan<'_> {
        let call = Syscall::new(
            libc::SYS_connect,
            &[
                self.fd.as_raw_fd() as usize,
                (&raw const self.addr.storage) as usize,
                self.addr.len as usize,
            ],
        );
        Plan::Connect { fd: &self.fd, call }
    }
}

/// `accept4(fd, &addr, &len, SOCK_CLOEXEC)`: the result is the new descriptor (the caller owns
/// it), the peer's address lands in [`Accept::addr`].
#[derive(Debug)]
pub(crate) struct Accept {
    fd: SharedFd,
    pub(crate) addr: Box<RawAddr>,
}

impl Accept {
    pub(crate) fn new(fd: &SharedFd) -> Accept {
        Accept {
            fd: fd.clone(),
            addr: Box::new(RawAddr::empty()),
        }
    }
}

// SAFETY: both pointers point into the op's boxed address.
unsafe impl OpCode for Accept {
    const CODE: u8 = opcode::Accept::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Accept::new(
            types::Fd(self.fd.as_raw_fd()),
            (&raw mut self.addr.storage).cast(),
            &raw mut self.addr.len,
        )
        .flags(libc::SOCK_CLOEXEC)
        .build()
    }

    fn plan(&mut self) -> Plan<'_> {
        let call = Syscall::new(
            libc::SYS_accept4,
            &[
                self.fd.as_raw_fd() as usize,
                (&raw mut self.addr.storage) as usize,
                (&raw mut self.addr.len) as usize,
                libc::SOCK_CLOEXEC as usize,
            ],
        );
        Plan::Ready {
            fd: &self.fd,
            interest: Interest::Read,
            call,
            full: None,
        }
    }
}

/// `recv(fd, buf, bytes_total, 0)`.
#[derive(Debug)]
pub(crate) struct Recv<B> {
    fd: SharedFd,
    pub(crate) buf: B,
    /// On a byte stream (not a datagram socket): a short read means it is drained.
    stream: bool,
}

impl<B: IoBufMut> Recv<B> {
    /// A receive of one datagram.
    pub(crate) fn new(fd: &SharedFd, buf: B) -> Recv<B> {
        Recv {
            fd: fd.clone(),
            buf,
            stream: false,
        }
    }

    /// A receive on a byte stream (TCP, Unix stream).
    pub(crate) fn stream(fd: &SharedFd, buf: B) -> Recv<B> {
        Recv {
            stream: true,
            ..Recv::new(fd, buf)
        }
    }
}

// SAFETY: the pointer is the buffer's stable heap address, valid for `bytes_total` bytes while
// the op owns the buffer.
unsafe impl<B: IoBufMut> OpCode for Recv<B> {
    const CODE: u8 = opcode::Recv::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Recv::new(
            types::Fd(self.fd.as_raw_fd()),
            self.buf.stable_mut_ptr(),
            len32(self.buf.bytes_total()),
        )
        .build()
    }

    fn plan(&mut self) -> Plan<'_> {
        let call = Syscall::new(
            libc::SYS_recvfrom,
            &[
                self.fd.as_raw_fd() as usize,
                self.buf.stable_mut_ptr() as usize,
                self.buf.bytes_total(),
                0,
                0,
                0,
            ],
        );
        Plan::Ready {
            fd: &self.fd,
            interest: Interest::Read,
            call,
            full: self.stream.then(|| self.buf.bytes_total()),
        }
    }
}

/// `send(fd, buf, bytes_init, MSG_NOSIGNAL)`: a closed peer gives EPIPE, never SIGPIPE.
#[derive(Debug)]
pub(crate) struct Send<B> {
    fd: SharedFd,
    pub(crate) buf: B,
    /// On a byte stream: a short send means the socket buffer is full.
    stream: bool,
    /// The driver sends the rest of a short send itself (see `OpCode::send_all`).
    all: bool,
}

impl<B: IoBuf> Send<B> {
    /// A send of one datagram.
    pub(crate) fn new(fd: &SharedFd, buf: B) -> Send<B> {
        Send {
            fd: fd.clone(),
            buf,
            stream: false,
            all: false,
        }
    }

    /// A send on a byte stream that completes only once every byte is sent (or fails): for
    /// `write_all`, and for writers that report bytes as written before the send completes.
    pub(crate) fn stream_all(fd: &SharedFd, buf: B) -> Send<B> {
        Send {
            all: true,
            ..Send::stream(fd, buf)
        }
    }

    /// A send on a byte stream (TCP, Unix stream).
    pub(crate) fn stream(fd: &SharedFd, buf: B) -> Send<B> {
        Send {
            stream: true,
            ..Send::new(fd, buf)
        }
    }
}

// SAFETY: the pointer is the buffer's stable address, valid for `bytes_init` bytes while the
// op owns the buffer.
unsafe impl<B: IoBuf> OpCode for Send<B> {
    const CODE: u8 = opcode::Send::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Send::new(
            types::Fd(self.fd.as_raw_fd()),
            self.buf.stable_ptr(),
            len32(self.buf.bytes_init()),
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
    }

    fn plan(&mut self) -> Plan<'_> {
        let call = Syscall::new(
            libc::SYS_sendto,
            &[
                self.fd.as_raw_fd() as usize,
                self.buf.stable_ptr() as usize,
                self.buf.bytes_init(),
                libc::MSG_NOSIGNAL as usize,
                0,
                0,
            ],
        );
        Plan::Ready {
            fd: &self.fd,
            interest: Interest::Write,
            call,
            full: self.stream.then(|| self.buf.bytes_init()),
        }
    }

    fn send_all(&mut self) -> Option<super::SendAll> {
        self.all.then(|| super::SendAll {
            fd: self.fd.as_raw_fd(),
            ptr: self.buf.stable_ptr() as usize,
            len: self.buf.bytes_init(),
        })
    }
}

/// `sendmsg(fd, msg, MSG_NOSIGNAL)` of buffers in order (a gathered write), to the connected
/// peer or to an address (an unconnected datagram socket).
pub(crate) struct SendMsg<B> {
    fd: SharedFd,
    pub(crate) bufs: Vec<B>,
    msg: Box<Msg>,
}

impl<B> std::fmt::Debug for SendMsg<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendMsg")
            .field("fd", &self.fd)
            .field("bufs", &self.bufs.len())
            .finish()
    }
}

impl<B: IoBuf> SendMsg<B> {
    pub(crate) fn new(fd: &SharedFd, bufs: Vec<B>, to: Option<RawAddr>) -> SendMsg<B> {
        let iovs = bufs
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.stable_ptr() as *mut libc::c_void,
                iov_len: b.bytes_init(),
            })
            .collect();
        SendMsg {
            fd: fd.clone(),
            bufs,
            msg: Msg::boxed(iovs, to),
        }
    }
}

// SAFETY: the SQE points to the boxed header, which points to the iovecs' heap buffer and the
// address (owned by the box), and the iovecs point to the buffers' stable bytes; the op owns
// the buffers and the box, and neither moves with the op.
unsafe impl<B: IoBuf> OpCode for SendMsg<B> {
    const CODE: u8 = opcode::SendMsg::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::SendMsg::new(types::Fd(self.fd.as_raw_fd()), &raw const self.msg.hdr)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
    }

    fn plan(&mut self) -> Plan<'_> {
        let call = Syscall::new(
            libc::SYS_sendmsg,
            &[
                self.fd.as_raw_fd() as usize,
                (&raw const self.msg.hdr) as usize,
                libc::MSG_NOSIGNAL as usize,
            ],
        );
        Plan::Ready {
            fd: &self.fd,
            interest: Interest::Write,
            call,
            full: None,
        }
    }
}

/// `recvmsg` into one buffer, with the sender's address ([`RecvMsg::source`]).
pub(crate) struct RecvMsg<B> {
    fd: SharedFd,
    pub(crate) buf: B,
    msg: Box<Msg>,
}

impl<B> std::fmt::Debug for RecvMsg<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvMsg").field("fd", &self.fd).finish()
    }
}

impl<B: IoBufMut> RecvMsg<B> {
    pub(crate) fn new(fd: &SharedFd, mut buf: B) -> RecvMsg<B> {
        let iov = libc::iovec {
            iov_base: buf.stable_mut_ptr().cast(),
            iov_len: buf.bytes_total(),
        };
        RecvMsg {
            fd: fd.clone(),
            buf,
            msg: Msg::boxed(vec![iov], Some(RawAddr::empty())),
        }
    }

    /// The sender's address (after the completion).
    pub(crate) fn source(&self) -> RawAddr {
        self.msg.source()
    }
}

// SAFETY: the header, address storage and iovec live in the op's box, the bytes in the
// buffer's stable memory (`bytes_total` long); the op owns both.
unsafe impl<B: IoBufMut> OpCode for RecvMsg<B> {
    const CODE: u8 = opcode::RecvMsg::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::RecvMsg::new(types::Fd(self.fd.as_raw_fd()), &raw mut self.msg.hdr).build()
    }

    fn plan(&mut self) -> Plan<'_> {
        let call = Syscall::new(
            libc::SYS_recvmsg,
            &[
                self.fd.as_raw_fd() as usize,
                (&raw mut self.msg.hdr) as usize,
                0,
            ],
        );
        Plan::Ready {
            fd: &self.fd,
            interest: Interest::Read,
            call,
            full: None,
        }
    }
}

/// `shutdown(fd, how)`.
#[derive(Debug)]
pub(crate) struct Shutdown {
    fd: SharedFd,
    how: i32,
}

impl Shutdown {
    pub(crate) fn new(fd: &SharedFd, how: i32) -> Shutdown {
        Shutdown {
            fd: fd.clone(),
            how,
        }
    }
}

// SAFETY: SHUTDOWN carries no pointer.
unsafe impl OpCode for Shutdown {
    const CODE: u8 = opcode::Shutdown::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Shutdown::new(types::Fd(self.fd.as_raw_fd()), self.how).build()
    }

    fn plan(&mut self) -> Plan<'_> {
        Plan::Now(Syscall::new(
            libc::SYS_shutdown,
            &[self.fd.as_raw_fd() as usize, self.how as usize],
        ))
    }
}

/// The peer address of a connected socket (`getpeername`).
pub(crate) fn peer_addr(fd: RawFd) -> std::io::Result<Box<RawAddr>> {
    let mut addr = Box::new(RawAddr::empty());
    // SAFETY: both pointers point into the boxed address, valid for the call.
    let r = unsafe { libc::getpeername(fd, (&raw mut addr.storage).cast(), &raw mut addr.len) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(addr)
}
