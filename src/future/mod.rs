//! asyncio-style combinators on plain futures: `wait_for`, `shield`, `wait` (and, from the
//! other files here, `gather`, `try_gather`, `as_completed`, `Promise`).

mod as_completed;
mod elapsed;
mod gather;
mod promise;
mod set;
mod shield;
mod timeout;
mod wait;

pub use as_completed::{AsCompleted, AsCompletedUntil, as_completed, as_completed_until};
pub use elapsed::Elapsed;
pub use gather::{
    Gather, Gather2, Gather3, Gather4, Gather5, Gather6, TryGather, TryGather2, TryGather3,
    TryGather4, TryGather5, TryGather6, gather, gather2, gather3, gather4, gather5, gather6,
    try_gather, try_gather2, try_gather3, try_gather4, try_gather5, try_gather6,
};
pub use promise::{Promise, PromiseError, Take, Wait};
pub use shield::{Shielded, shield};
pub use timeout::{WaitFor, timeout, wait_for, wait_until};
/// For the `Waitable` impl of `PoolFuture`, in pool/ (a layer above).
pub(crate) use wait::sealed as waitable_sealed;
pub use wait::{Waitable, wait};

/// When [`wait`] (and `pool::wait`) returns, as asyncio's `return_when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReturnWhen {
    /// Return as soon as any future finishes or is cancelled.
    FirstCompleted,
    /// Return when any future finishes by raising (a panic, or a pool error other than
    /// cancellation); if none does, when all finish.
    FirstException,
    /// Return when every future has finished or been cancelled.
    AllCompleted,
}
