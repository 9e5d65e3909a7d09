//! The part of a loop that other threads may touch: the inject queue (wakes, callbacks and
//! stop requests from other threads) and the parked flag that decides whether a push must also
//! write the loop's eventfd.
//!
//! # The park protocol
//!
//! The loop, before it parks: `parked = true` (SeqCst), then checks `pending` (SeqCst) and
//! parks only if it is false. A pusher: pushes under the lock, sets `pending = true` (SeqCst),
//! then `parked.swap(false)` (SeqCst) and writes the eventfd only if it was true. In the single
//! total order of SeqCst operations either the loop's check comes after the pusher's store (the
//! loop sees the work and does not park) or the pusher's swap comes after the loop's store (the
//! pusher sees `parked` and wakes the loop). A busy loop is never parked, so its wakers pay no
//! syscall. `tests/loom_inject.rs`-style model checking of this lives in `loom_tests` below.

use std::sync::Arc;

use crate::driver::Notifier;
use crate::loom::sync::Mutex;
use crate::loom::sync::atomic::{AtomicBool, Ordering};
use crate::runtime::task::raw::RawTask;

/// Work handed to a loop from another thread.
pub(crate) enum Injected {
    /// A task woken from another thread.
    Wake(RawTask),
    /// `call_soon_threadsafe`, `Handle::spawn` and friends.
    Call(Box<dyn FnOnce() + Send>),
}

/// A loop's thread-safe state, shared by its `Handle`s and by every waker of its tasks.
pub(crate) struct Shared {
    queue: Mutex<Queue>,
    /// Something was pushed since the loop last drained the queue.
    pending: AtomicBool,
    /// The loop is (about to be) parked in `io_uring_enter`.
    parked: AtomicBool,
    /// `stop()` was requested and `run_forever` has not yet returned for it.
    pub(crate) stop_requested: AtomicBool,
    /// Inside `block_on` or `run_forever`.
    pub(crate) running: AtomicBool,
    notifier: Option<Arc<Notifier>>,
}

struct Queue {
    items: Vec<Injected>,
    /// The loop closed: pushes are refused (and their items dropped by the pusher).
    closed: bool,
}

impl Shared {
    pub(crate) fn new(notifier: Option<Arc<Notifier>>) -> Shared {
        Shared {
            queue: Mutex::new(Queue {
                items: Vec::new(),
                closed: false,
            }),
            pending: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            stop_requested: AtomicBool::new(false),
            running: AtomicBool::new(false),
            notifier,
        }
    }

    /// Hands `item` to the loop and wakes it if parked. Returns the item if the loop is closed.
    pub(crate) fn push(&self, item: Injected) -> Result<(), Injected> {
        {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if queue.closed {
                return Err(item);
            }
            queue.items.push(item);
        }
        self.pending.store(true, Ordering::SeqCst);
        self.unpark();
        Ok(())
    }

    /// Wakes the loop if it is parked (see the module docs).
    pub(crate) fn unpark(&self) {
        if self.parked.swap(false, Ordering::SeqCst) {
            if let Some(notifier) = &self.notifier {
                notifier.notify();
            }
        }
    }

    /// Loop side: whether anything was pushed since the last drain. Cheap; no lock.
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Loop side: takes everything pushed so far into `out`.
    pub(crate) fn drain_into(&self, out: &mut Vec<Injected>) {
        // Clear first: a push after this point sets it again and is seen next tick.
        self.pending.swap(false, Ordering::AcqRel);
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        out.append(&mut queue.items);
    }

    /// Loop side: announces the intent to park. Returns false (and cancels the intent) if work
    /// arrived meanwhile; the caller then must not park.
    pub(crate) fn prepare_park(&self) -> bool {
        self.parked.store(true, Ordering::SeqCst);
        if self.pending.load(Ordering::SeqCst) {
            self.parked.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Loop side: the park is over.
    pub(crate) fn finish_park(&self) {
        self.parked.store(false, Ordering::SeqCst);
    }

    /// Loop side: refuses further pushes and returns what was queued.
    pub(crate) fn close(&self) -> Vec<Injected> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.closed = true;
        std::mem::take(&mut queue.items)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).closed
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Model-checks the park protocol and the task `scheduled` flag with loom:
    //! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_tests`.

    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::thread;

    /// A waker on another thread pushes while the loop is deciding whether to park: the loop
    /// must either see the work or be woken (never sleep with work queued).
    #[test]
    fn push_never_lost_while_parking() {
        loom::model(|| {
            let shared = Arc::new(Shared::new(None));
            let notified = Arc::new(AtomicUsize::new(0));
            let pusher = {
                let shared = shared.clone();
                let notified = notified.clone();
                thread::spawn(move || {
                    shared
                        .push(Injected::Call(Box::new(|| {})))
                        .map_err(|_| ())
                        .unwrap();
                    // Stand-in for the eventfd write that `unpark` makes when parked was set.
                    let _ = &notified;
                })
            };
            let parks = shared.prepare_park();
            // If the loop decided to park, the pusher must have observed `parked` (swapped it
            // back to false) or will; after the pusher finishes, `parked` is false iff it woke us.
            pusher.join().unwrap();
            if parks {
                assert!(
                    !shared.parked.load(Ordering::SeqCst),
                    "loop parked but the pusher did not wake it"
                );
            } else {
                let mut out = Vec::new();
                shared.drain_into(&mut out);
                assert_eq!(out.len(), 1);
            }
            let _ = notified.load(Ordering::SeqCst);
        });
    }

    /// The `scheduled` flag: a wake racing the loop's clear before a poll is never lost.
    #[test]
    fn wake_racing_poll_is_not_lost() {
        loom::model(|| {
            let scheduled = Arc::new(AtomicBool::new(true)); // task is in the queue
            let data = Arc::new(AtomicUsize::new(0));
            let queued = Arc::new(AtomicUsize::new(0));
            let waker = {
                let (scheduled, data, queued) = (scheduled.clone(), data.clone(), queued.clone());
                thread::spawn(move || {
                    data.store(1, Ordering::Relaxed);
                    if !scheduled.swap(true, Ordering::AcqRel) {
                        queued.fetch_add(1, Ordering::Relaxed);
                    }
                })
            };
            // Loop: dequeue, clear, poll (read data).
            scheduled.swap(false, Ordering::AcqRel);
            let seen = data.load(Ordering::Relaxed);
            waker.join().unwrap();
            // Either the poll saw the data, or the wake queued the task again.
            assert!(seen == 1 || queued.load(Ordering::Relaxed) == 1);
        });
    }
}
