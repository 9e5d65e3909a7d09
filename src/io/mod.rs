//! Owned-buffer I/O: the buffer traits, and driver operations that belong to no file or
//! socket.

mod compat;

pub use crate::buf::{BufResult, IoBuf, IoBufMut, Slice};
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
