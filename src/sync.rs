//! The lock helper every module uses: a poisoned mutex is used anyway.
//!
//! A mutex is poisoned when a thread panicked while holding it. ringloop's mutexes guard
//! plain bookkeeping (queues, states, waker lists) whose every update is complete before
//! anything that could panic runs, so the data behind a poisoned lock is consistent;
//! refusing it would turn one panic into a cascade.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, ignoring poisoning (see the module docs).
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
