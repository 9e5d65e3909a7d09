//! `Elapsed`: the error of a deadline that passed first.

use std::fmt;

/// The deadline of [`wait_for`](crate::wait_for) (or of an `as_completed` with a timeout)
/// passed before the future finished; the future was dropped (cancelled). asyncio raises
/// `TimeoutError` here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Elapsed(pub(crate) ());

impl Elapsed {
    pub(crate) fn new() -> Elapsed {
        Elapsed(())
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed before the future completed (it was cancelled)")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(e: Elapsed) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, e)
    }
}
