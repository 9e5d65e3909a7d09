//! Owned-buffer I/O: the buffer traits, and driver operations that belong to no file or
//! socket.

mod compat;

pub use crate::buf::{BufResult, IoBuf, IoBufMut, Slice};
pub use crate::driver::lent::LentBuf;
pub use compat::*;

use std::io;

use crate::driver::op::{Nop, Op};

/// Submits a no-op to the driver and waits for its completion: one round trip through the
/// ring (`IORING_OP_NOP`), or one pass of the loop on epoll. Useful to measure the driver's
/// overhead, or to yield to the loop's I/O stage.
///
/// # Errors
///
/// If the driver refuses the submission.
///
/// # Examples
///
/// ```
/// ringloop::run(async { ringloop::io::nop().await.unwrap() });
/// ```
pub async fn nop() -> io::Result<()> {
    let nop = Op::submit(Nop).map_err(|(e, _)| e)?;
    nop.await.0.map(drop)
}

/// How many buffers of this loop's provided buffer ring are in the ring, not lent, and how
/// many it has; `None` without a ring (epoll, an older kernel, `recv_buffers(0, _)`). A
/// diagnostic for tests: once every [`LentBuf`] is dropped and no stream has a multishot
/// receive armed, the two are equal.
///
/// # Panics
///
/// Outside a running ringloop runtime.
#[doc(hidden)]
pub fn ring_buffers() -> Option<(u32, u16)> {
    let pool = crate::driver::current().borrow_mut().buf_pool();
    pool.ring().map(|r| (r.free(), r.count()))
}
