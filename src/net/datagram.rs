//! The datagram operations shared by `UdpSocket` and `UnixDatagram`; each converts addresses
//! its own way around them.

use crate::driver::fd::SharedFd;
use crate::driver::op::Op;
use crate::driver::op::net::{self as op, RawAddr};
use crate::io::{BufResult, IoBuf, IoBufMut};

/// Sends `buf`'s initialized bytes as one datagram to `addr`.
pub(crate) async fn send_to<B: IoBuf>(fd: &SharedFd, buf: B, addr: RawAddr) -> BufResult<usize, B> {
    match Op::submit(op::SendMsg::new(fd, vec![buf], Some(addr))) {
        Ok(send) => {
            let (r, send) = send.await;
            let buf = one(send.bufs);
            BufResult(r.map(|n| n as usize), buf)
        }
        Err((e, send)) => BufResult(Err(e), one(send.bufs)),
    }
}

/// The single buffer of a one-buffer `SendMsg`.
fn one<B>(bufs: Vec<B>) -> B {
    bufs.into_iter()
        .next()
        .expect("a datagram has its one buffer")
}

/// Receives one datagram into `buf`; returns its length and the sender's raw address.
pub(crate) async fn recv_from<B: IoBufMut>(
    fd: &SharedFd,
    buf: B,
) -> BufResult<(usize, RawAddr), B> {
    match Op::submit(op::RecvMsg::new(fd, buf)) {
        Ok(recv) => {
            let (r, mut recv) = recv.await;
            let r = r.map(|n| {
                // SAFETY: the kernel wrote n bytes at the start of the buffer.
                unsafe { recv.buf.set_init(n as usize) };
                (n as usize, recv.source())
            });
            BufResult(r, recv.buf)
        }
        Err((e, recv)) => BufResult(Err(e), recv.buf),
    }
}

/// Sends one datagram to the connected address.
pub(crate) async fn send<B: IoBuf>(fd: &SharedFd, buf: B) -> BufResult<usize, B> {
    match Op::submit(op::Send::new(fd, buf)) {
        Ok(send) => {
            let (r, send) = send.await;
            BufResult(r.map(|n| n as usize), send.buf)
        }
        Err((e, send)) => BufResult(Err(e), send.buf),
    }
}

/// Receives one datagram from the connected address.
pub(crate) async fn recv<B: IoBufMut>(fd: &SharedFd, buf: B) -> BufResult<usize, B> {
    match Op::submit(op::Recv::new(fd, buf)) {
        Ok(recv) => {
            let (r, mut recv) = recv.await;
            let r = r.map(|n| {
                // SAFETY: the kernel wrote n bytes at the start of the buffer.
                unsafe { recv.buf.set_init(n as usize) };
                n as usize
            });
            BufResult(r, recv.buf)
        }
        Err((e, recv)) => BufResult(Err(e), recv.buf),
    }
}
