//! The part of a loop that other threads may touch: the inject queue (wakes, callbacks and
//! stop requests from other threads) and the parked flag that decides whether a push must also
//! write the loop's eventfd.
//!
//! # The park protocol
//!
//! One atomic word holds two bits: `PENDING` (work was pushed, or something else needs the
//! loop's attention, since it last looked) and `PARKED` (the loop is about to wait in the
//! driver: `io_uring_enter` or `epoll_wait`). The loop parks only if its `fetch_or(PARKED)`
//! finds `PENDING` clear; a pusher writes the eventfd only if its `fetch_or(PENDING)` finds `PARKED` set. Both are
//! read-modify-writes of the same word, so they are totally ordered: whichever comes second
//! sees the other's bit, and no wake-up is lost. A busy loop is never `PARKED`, so its wakers
//! pay no syscall. The `loom_tests` below model-check this; those of `runtime/task/raw.rs`
//! model-check the task cell's wake path through this queue.
//!
//! Under `--cfg loom` there is no eventfd: `unparked`, a `loom::sync::Notify`, is notified
//! exactly where the eventfd would be written, and a model's parked loop waits on it
//! ([`Shared::wait_for_unpark`]), so a lost wake-up shows as a loom deadlock.

use std::sync::Arc;

use crate::driver::Notifier;
use crate::loom::sync::Mutex;
use crate::loom::sync::atomic::{AtomicBool, AtomicU8, Ordering};
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
    /// `PENDING | PARKED` (see the module docs).
    state: AtomicU8,
    /// `stop()` was requested and `run_forever` has not yet returned for it.
    pub(crate) stop_requested: AtomicBool,
    /// Inside `block_on` or `run_forever`.
    pub(crate) running: AtomicBool,
    notifier: Option<Arc<Notifier>>,
    /// Which driver the loop runs on, set once when the runtime is built (for `Handle`).
    pub(crate) driver_kind: std::sync::OnceLock<crate::driver::DriverKind>,
    /// Loom's stand-in for the eventfd (see the module docs).
    #[cfg(loom)]
    unparked: loom::sync::Notify,
}

/// Work was pushed, or the loop must look at its flags, since it last drained the queue.
const PENDING: u8 = 1;
/// The loop is (about to be) parked in the driver (`io_uring_enter` or `epoll_wait`).
const PARKED: u8 = 2;

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
            state: AtomicU8::new(0),
            stop_requested: AtomicBool::new(false),
            running: AtomicBool::new(false),
            notifier,
            driver_kind: std::sync::OnceLock::new(),
            #[cfg(loom)]
            unparked: loom::sync::Notify::new(),
        }
    }

    /// Hands `item` to the loop and wakes it if parked. Returns whether this call wrote the
    /// eventfd, or the item back if the loop is closed.
    pub(crate) fn push(&self, item: Injected) -> Result<bool, Injected> {
        {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if queue.closed {
                return Err(item);
            }
            queue.items.push(item);
        }
        Ok(self.unpark())
    }

    /// Tells the loop to look at its flags (a woken `block_on` future, a stop request, a
    /// push) and wakes it if parked; returns whether this call wrote the eventfd. Whatever the
    /// caller wrote before is visible to the loop once it sees `PENDING` (AcqRel).
    pub(crate) fn unpark(&self) -> bool {
        let prev = self.state.fetch_or(PENDING, Ordering::AcqRel);
        // Only the caller that clears PARKED writes the eventfd: one write per park.
        if prev & PARKED != 0 && self.state.fetch_and(!PARKED, Ordering::AcqRel) & PARKED != 0 {
            if let Some(notifier) = &self.notifier {
                notifier.notify();
            }
            #[cfg(loom)]
            self.unparked.notify();
            return true;
        }
        false
    }

    /// Loop side: whether anything was pushed since the last drain. Cheap; no lock.
    pub(crate) fn has_pending(&self) -> bool {
        self.state.load(Ordering::Acquire) & PENDING != 0
    }

    /// Loop side: takes everything pushed so far into `out`.
    pub(crate) fn drain_into(&self, out: &mut Vec<Injected>) {
        // Clear first: a push after this point sets it again and is seen next pass.
        self.state.fetch_and(!PENDING, Ordering::AcqRel);
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        out.append(&mut queue.items);
    }

    /// Loop side: announces the intent to park. Returns false (and withdraws the intent) if
    /// something is pending; the caller then must not park.
    pub(crate) fn prepare_park(&self) -> bool {
        let prev = self.state.fetch_or(PARKED, Ordering::AcqRel);
        if prev & PENDING != 0 {
            self.state.fetch_and(!PARKED, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Loop side, loom models only: the driver's wait for the eventfd, i.e. until an
    /// `unpark` wrote it (at once if one already did since the last wait).
    #[cfg(all(test, loom))]
    pub(crate) fn wait_for_unpark(&self) {
        self.unparked.wait();
    }

    /// Loop side: the park is over.
    pub(crate) fn finish_park(&self) {
        self.state.fetch_and(!PARKED, Ordering::AcqRel);
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
    //! Model-checks the park protocol with loom (the task cell's models, over this queue, are
    //! in `runtime/task/raw.rs`): `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_tests`.

    use super::*;
    use loom::thread;

    /// A waker on another thread pushes while the loop is deciding whether to park: the loop
    /// either sees the work and does not park, or the pusher wakes it. Never both missed.
    #[test]
    fn push_never_lost_while_parking() {
        loom::model(|| {
            let shared = Arc::new(Shared::new(None));
            let pusher = {
                let shared = shared.clone();
                thread::spawn(move || {
                    shared
                        .push(Injected::Call(Box::new(|| {})))
                        .unwrap_or_else(|_| panic!("the loop is not closed"))
                })
            };
            let parks = shared.prepare_park();
            let woke_loop = pusher.join().unwrap();
            if parks {
                assert!(woke_loop, "loop parked but the pusher did not wake it");
                shared.finish_park();
            } else {
                assert!(!woke_loop, "the loop was not parked, so no syscall");
            }
            let mut out = Vec::new();
            shared.drain_into(&mut out);
            assert_eq!(out.len(), 1);
        });
    }

    /// Two wakers race a parking loop: exactly one eventfd write per park.
    #[test]
    fn one_notification_per_park() {
        loom::model(|| {
            let shared = Arc::new(Shared::new(None));
            assert!(shared.prepare_park());
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let shared = shared.clone();
                    thread::spawn(move || shared.unpark())
                })
                .collect();
            let writes = threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .filter(|w| *w)
                .count();
            assert_eq!(writes, 1);
        });
    }
}
