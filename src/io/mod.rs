//! Owned-buffer I/O: the buffer traits, and operations on the ring that belong to no file or
//! socket.

mod buf;
mod compat;

pub use buf::{BufResult, IoBuf, IoBufMut, Slice};
pub use compat::*;

use std::io;

use crate::driver::op;

/// Submits an `IORING_OP_NOP` and waits for its completion: one round trip through the ring.
/// Useful to measure the ring's overhead, or to yield to the loop's I/O stage.
///
/// # Errors
///
/// If the ring refuses the submission.
///
/// # Examples
///
/// ```
/// ringloop::run(async { ringloop::io::nop().await.unwrap() });
/// ```
pub async fn nop() -> io::Result<()> {
    let (completion, ()) = op::nop()?.await;
    completion.into_io().map(drop)
}
