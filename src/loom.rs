//! A facade over `std::sync` and `loom::sync`, so that the cross-thread wake path can be model
//! checked with `RUSTFLAGS="--cfg loom"`.

#[cfg(loom)]
pub(crate) use loom::sync;

#[cfg(not(loom))]
pub(crate) use std::sync;
