//! Owned-buffer I/O: the buffer traits, and operations on the ring that belong to no file or
//! socket.

mod buf;

pub use buf::{BufResult, IoBuf, IoBufMut, Slice};

use std::io;

use io_uring::opcode;

use crate::driver::Op;

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
    // SAFETY: a NOP carries no pointer.
    let op = unsafe { Op::submit(opcode::Nop::new().build(), ())? };
    let (completion, ()) = op.await;
    completion.into_io().map(drop)
}
