//! Socket opcodes: the SQEs of net/.
//!
//! Each function builds one SQE and submits it as an [`Op`] that owns everything the SQE
//! points to, in heap memory of its own (the `Op::submit` contract): socket addresses live in a
//! `Box<RawAddr>`, message headers and their iovecs in a `Box<Msg>`, data in the caller's
//! owned buffer. If the ring refuses the submission, the data comes back with the error so
//! that a buffer is never lost.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{opcode, types};

use super::Op;
use super::SharedFd;
use crate::driver::DriverRef;
use crate::io::{IoBuf, IoBufMut};

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

    /// The length of the address the kernel wrote (after a RECVMSG).
    pub(crate) fn name_len(&self) -> libc::socklen_t {
        self.hdr.msg_namelen
    }
}

/// A length for an SQE's 32-bit length field.
fn len32(n: usize) -> u32 {
    n.min(u32::MAX as usize) as u32
}

/// `connect(fd, addr)`.
pub(crate) fn connect(fd: &SharedFd, addr: Box<RawAddr>) -> io::Result<Op<Box<RawAddr>>> {
    let sqe = opcode::Connect::new(
        types::Fd(fd.as_raw_fd()),
        (&raw const addr.storage).cast(),
        addr.len,
    )
    .build();
    // SAFETY: the SQE points into the boxed address, which the op owns.
    unsafe { Op::try_submit(sqe, addr) }
        .map(|op| op.keep_fd(fd))
        .map_err(|(e, _)| e)
}

/// `accept4(fd, &addr, &len, SOCK_CLOEXEC)`: the peer's address lands in the returned box.
pub(crate) fn accept(fd: &SharedFd) -> io::Result<Op<Box<RawAddr>>> {
    let mut addr = Box::new(RawAddr::empty());
    let sqe = opcode::Accept::new(
        types::Fd(fd.as_raw_fd()),
        (&raw mut addr.storage).cast(),
        &raw mut addr.len,
    )
    .flags(libc::SOCK_CLOEXEC)
    .build();
    // SAFETY: both pointers point into the boxed address, which the op owns.
    unsafe { Op::try_submit(sqe, addr) }
        .map(|op| op.keep_fd(fd))
        .map_err(|(e, _)| e)
}

/// `recv(fd, buf, bytes_total, 0)`.
pub(crate) fn recv<B: IoBufMut>(fd: &SharedFd, mut buf: B) -> Result<Op<B>, (io::Error, B)> {
    let sqe = opcode::Recv::new(
        types::Fd(fd.as_raw_fd()),
        buf.stable_mut_ptr(),
        len32(buf.bytes_total()),
    )
    .build();
    // SAFETY: the pointer is the buffer's stable heap address, valid for bytes_total bytes
    // while the op owns the buffer.
    unsafe { Op::try_submit(sqe, buf) }.map(|op| op.keep_fd(fd))
}

/// `send(fd, buf, bytes_init, MSG_NOSIGNAL)`: a closed peer gives EPIPE, never SIGPIPE.
pub(crate) fn send<B: IoBuf>(fd: &SharedFd, buf: B) -> Result<Op<B>, (io::Error, B)> {
    let sqe = opcode::Send::new(
        types::Fd(fd.as_raw_fd()),
        buf.stable_ptr(),
        len32(buf.bytes_init()),
    )
    .flags(libc::MSG_NOSIGNAL)
    .build();
    // SAFETY: the pointer is the buffer's stable heap address, valid for bytes_init bytes
    // while the op owns the buffer.
    unsafe { Op::try_submit(sqe, buf) }.map(|op| op.keep_fd(fd))
}

/// `sendmsg` of several buffers in order (a gathered write), with MSG_NOSIGNAL.
#[allow(clippy::type_complexity)]
pub(crate) fn sendv<B: IoBuf>(
    fd: &SharedFd,
    bufs: Vec<B>,
) -> Result<Op<(Vec<B>, Box<Msg>)>, (io::Error, Vec<B>)> {
    let iovs = bufs
        .iter()
        .map(|b| libc::iovec {
            iov_base: b.stable_ptr() as *mut libc::c_void,
            iov_len: b.bytes_init(),
        })
        .collect();
    let msg = Msg::boxed(iovs, None);
    let sqe = opcode::SendMsg::new(types::Fd(fd.as_raw_fd()), &raw const msg.hdr)
        .flags(libc::MSG_NOSIGNAL as u32)
        .build();
    // SAFETY: the SQE points to the boxed header, which points to the iovecs' heap buffer
    // (owned by the box), which point to the buffers' stable heap bytes; the op owns the
    // buffers and the box.
    unsafe { Op::try_submit(sqe, (bufs, msg)) }
        .map(|op| op.keep_fd(fd))
        .map_err(|(e, (bufs, _))| (e, bufs))
}

/// `sendmsg` of one buffer to `addr` (an unconnected datagram socket), with MSG_NOSIGNAL.
#[allow(clippy::type_complexity)]
pub(crate) fn send_to<B: IoBuf>(
    fd: &SharedFd,
    buf: B,
    addr: RawAddr,
) -> Result<Op<(B, Box<Msg>)>, (io::Error, B)> {
    let iov = libc::iovec {
        iov_base: buf.stable_ptr() as *mut libc::c_void,
        iov_len: buf.bytes_init(),
    };
    let msg = Msg::boxed(vec![iov], Some(addr));
    let sqe = opcode::SendMsg::new(types::Fd(fd.as_raw_fd()), &raw const msg.hdr)
        .flags(libc::MSG_NOSIGNAL as u32)
        .build();
    // SAFETY: as in `sendv`: header, address and iovec live in the box, the bytes in the
    // buffer; the op owns both.
    unsafe { Op::try_submit(sqe, (buf, msg)) }
        .map(|op| op.keep_fd(fd))
        .map_err(|(e, (buf, _))| (e, buf))
}

/// `recvmsg` into one buffer, with the sender's address: read `Msg::addr` (length
/// `Msg::name_len`) after the completion.
#[allow(clippy::type_complexity)]
pub(crate) fn recv_from<B: IoBufMut>(
    fd: &SharedFd,
    mut buf: B,
) -> Result<Op<(B, Box<Msg>)>, (io::Error, B)> {
    let iov = libc::iovec {
        iov_base: buf.stable_mut_ptr().cast(),
        iov_len: buf.bytes_total(),
    };
    let mut msg = Msg::boxed(vec![iov], Some(RawAddr::empty()));
    let sqe = opcode::RecvMsg::new(types::Fd(fd.as_raw_fd()), &raw mut msg.hdr).build();
    // SAFETY: the header, address storage and iovec live in the box, the bytes in the
    // buffer's stable heap memory (bytes_total long); the op owns both.
    unsafe { Op::try_submit(sqe, (buf, msg)) }
        .map(|op| op.keep_fd(fd))
        .map_err(|(e, (buf, _))| (e, buf))
}

/// `shutdown(fd, how)`.
pub(crate) fn shutdown(fd: &SharedFd, how: i32) -> io::Result<Op<()>> {
    let sqe = opcode::Shutdown::new(types::Fd(fd.as_raw_fd()), how).build();
    // SAFETY: SHUTDOWN carries no pointer.
    unsafe { Op::try_submit(sqe, ()) }
        .map(|op| op.keep_fd(fd))
        .map_err(|(e, ())| e)
}

/// `recv` with a linked timeout: completes with `-ECANCELED` if nothing arrived within
/// `timeout` (and then consumed nothing).
pub(crate) fn recv_timeout<B: IoBufMut>(
    fd: &SharedFd,
    mut buf: B,
    timeout: std::time::Duration,
) -> Result<super::TimedOp<B>, (io::Error, B)> {
    let sqe = opcode::Recv::new(
        types::Fd(fd.as_raw_fd()),
        buf.stable_mut_ptr(),
        len32(buf.bytes_total()),
    )
    .build();
    // SAFETY: the pointer is the buffer's stable heap address, valid for bytes_total bytes
    // while the op owns the buffer.
    unsafe { super::try_submit_with_timeout(sqe, timeout, buf) }.map(|op| op.keep_fd(fd))
}

/// A multishot `accept4(fd, NULL, NULL, SOCK_CLOEXEC)` (Linux 5.19): one CQE per accepted
/// connection, its result the new fd, until a CQE without `IORING_CQE_F_MORE`. Carries no
/// address pointer (one would be overwritten by every connection): the caller asks
/// `getpeername`. Returns the key that cancels it.
pub(crate) fn accept_multishot(
    driver: &DriverRef,
    fd: RawFd,
    handler: crate::driver::MultishotHandler,
) -> io::Result<usize> {
    let sqe = opcode::AcceptMulti::new(types::Fd(fd))
        .flags(libc::SOCK_CLOEXEC)
        .build();
    // SAFETY: the SQE carries no pointer.
    unsafe { driver.borrow_mut().submit_multishot(sqe, handler) }
}

/// Ends a multishot operation on `driver`'s ring and hands the cancellation to the kernel at
/// once (see `Driver::cancel_multishot`). Works outside the runtime's `block_on` too.
pub(crate) fn cancel_multishot(driver: &DriverRef, key: usize) {
    if let Ok(mut driver) = driver.try_borrow_mut() {
        driver.cancel_multishot(key);
        let _ = driver.flush_submissions();
    }
}

/// The peer address of a connected socket (`getpeername`).
pub(crate) fn peer_addr(fd: RawFd) -> io::Result<Box<RawAddr>> {
    let mut addr = Box::new(RawAddr::empty());
    // SAFETY: both pointers point into the boxed address, valid for the call.
    let r = unsafe { libc::getpeername(fd, (&raw mut addr.storage).cast(), &raw mut addr.len) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(addr)
}
