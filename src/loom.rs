//! A facade over `std` and `loom`, so that the cross-thread parts of the runtime (the inject
//! queue and park word, and the task cell: its state, reference count, stage and waker) are
//! model-checked as they are, with `RUSTFLAGS="--cfg loom"`.
//!
//! * `sync`: `loom::sync` under `--cfg loom`, `std::sync` otherwise (atomics, `fence`, `Mutex`).
//! * `cell::UnsafeCell`: `loom::cell::UnsafeCell` under loom, which checks that no two threads
//!   touch the cell without a happens-before edge between them; otherwise a zero-cost wrapper
//!   around `std::cell::UnsafeCell` with the same `with` / `with_mut` API.
//!
//! What stays `std` under loom (and why it can): `Arc` (std's is correct by construction, and
//! the runtime hands `Arc<Shared>` to code that never runs under loom), the loop's thread-local
//! context (loom runs its threads on one OS thread, so a std thread-local is shared by all
//! model threads; the models never install a loop there, so every wake in a model takes the
//! cross-thread path through the inject queue), and the eventfd (the models build `Shared`
//! without one; `Shared::push` / `unpark` return whether they would have written it).

#[cfg(loom)]
pub(crate) use loom::sync;

#[cfg(not(loom))]
pub(crate) use std::sync;

/// `UnsafeCell` with loom's closure API.
pub(crate) mod cell {
    #[cfg(loom)]
    pub(crate) use loom::cell::UnsafeCell;

    /// `std::cell::UnsafeCell` behind loom's API: `with` / `with_mut` hand the closure the raw
    /// pointer (and cost nothing more than `get`).
    #[cfg(not(loom))]
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    #[cfg(not(loom))]
    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(value: T) -> UnsafeCell<T> {
            UnsafeCell(std::cell::UnsafeCell::new(value))
        }

        /// Reads through the pointer given to `f`.
        #[inline(always)]
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Reads or writes through the pointer given to `f`.
        #[inline(always)]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}
