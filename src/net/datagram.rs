//! The datagram operations shared by `UdpSocket` and `UnixDatagram`; each converts addresses
//! its own way around them.

use crate::driver::op::SharedFd;
use crate::driver::op::net::{self as op, RawAddr};
use crate::io::{BufResult, IoBuf, IoBufMut};

/// Sends `buf`'s initialized bytes as one datagram to `addr`.
pub(crate) async fn send_to<B: IoBuf>(fd: &SharedFd, buf: B, addr: RawAddr) -> BufResult<usize, B> {
    match op::send_to(fd, buf, addr) {
        Ok(op) => {
            let (c, (buf, _msg)) = op.await;
            BufResult(c.into_io().map(|n| n as usize), buf)
        }
        Err((e, buf)) => BufResult(Err(e), buf),
    }
}

/// Receives one datagram into `buf`; returns its length and the sender's raw address.
pub(crate) async fn recv_from<B: IoBufMut>(
    fd: &SharedFd,
    buf: B,
) -> BufResult<(usize, RawAddr), B> {
    match op::recv_from(fd, buf) {
        Ok(op) => {
            let (c, (mut buf, msg)) = op.await;
            let r = c.into_io().map(|n| {
                // SAFETY: the kernel wrote n bytes at the start of the buffer.
                unsafe { buf.set_init(n as usize) };
                let mut addr = msg.addr;
                addr.len = msg.name_len();
                (n as usize, addr)
            });
            BufResult(r, buf)
        }
        Err((e, buf)) => BufResult(Err(e), buf),
    }
}

/// Sends one datagram to the connected address.
pub(crate) async fn send<B: IoBuf>(fd: &SharedFd, buf: B) -> BufResult<usize, B> {
    match op::send(fd, buf) {
        Ok(op) => {
            let (c, buf) = op.await;
            BufResult(c.into_io().map(|n| n as usize), buf)
        }
        Err((e, buf)) => BufResult(Err(e), buf),
    }
}

/// Receives one datagram from the connected address.
pub(crate) async fn recv<B: IoBufMut>(fd: &SharedFd, buf: B) -> BufResult<usize, B> {
    match op::recv(fd, buf) {
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
