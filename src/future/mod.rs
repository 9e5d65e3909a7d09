//! asyncio-style combinators on plain futures.

/// When [`wait`](crate::future) (and `pool::wait`) returns, as asyncio's `return_when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReturnWhen {
    /// Return as soon as any future finishes or is cancelled.
    FirstCompleted,
    /// Return when any future finishes with an error (or panic); if none does, when all finish.
    FirstException,
    /// Return when every future has finished or been cancelled.
    AllCompleted,
}
