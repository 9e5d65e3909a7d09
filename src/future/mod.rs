//! asyncio-style combinators on plain futures: `wait_for`, `shield`, `wait` (and, from the
//! other files here, `gather`, `try_gather`, `as_completed`, `Promise`).

mod elapsed;
mod shield;
mod timeout;
mod wait;

pub use elapsed::Elapsed;
pub use shield::{Shielded, shield};
pub use timeout::{WaitFor, timeout, wait_for, wait_until};
pub use wait::{Waitable, wait};

/// When [`wait`] (and `pool::wait`) returns, as asyncio's `return_when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReturnWhen {
    /// Return as soon as any future finishes or is cancelled.
    FirstCompleted,
    /// Return when any future finishes with an error (or panic); if none does, when all finish.
    FirstException,
    /// Return when every future has finished or been cancelled.
    AllCompleted,
}
