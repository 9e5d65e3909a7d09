//! The shared engine behind `gather`, `try_gather` and `as_completed`: a set
//! of child futures where each child has its own waker, so a wake costs O(1)
//! and the parent only re-polls the children that were actually woken.
//!
//! Layout per child (beyond the child future / its output, stored inline in
//! one pinned boxed slice):
//! * a [`Waker`] (16 bytes) backed by an `Arc<Node>` (32-byte allocation:
//!   two reference counts, the shared `Arc` and a `u32` index);
//! * one `AtomicBool` "queued" flag in the shared state;
//! * room for one `u32` index in each of the two ready lists (8 bytes).
//!
//! That is about 57 bytes of bookkeeping per child.

use std::mem;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

/// State shared between the parent and every child waker. `Send + Sync`, so
/// children may be woken from any thread even if the futures are not `Send`.
struct Shared {
    /// `queued[i]` is true while child `i` sits in the ready list (or was
    /// finished while queued); it keeps repeated wakes from taking the lock.
    queued: Box<[AtomicBool]>,
    inner: Mutex<ReadyList>,
}

struct ReadyList {
    /// Children woken since the parent last took the list.
    ready: Vec<u32>,
    /// The parent's waker, refreshed on every parent poll.
    parent: Option<Waker>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ReadyList> {
        // Nothing inside the lock can panic half-way through an update that
        // matters (pushes and swaps), so a poisoned lock is still consistent.
        crate::sync::lock(&self.inner)
    }
}

/// The waker of one child.
struct Node {
    shared: Arc<Shared>,
    index: u32,
}

impl Wake for Node {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let shared = &self.shared;
        if shared.queued[self.index as usize].swap(true, Ordering::AcqRel) {
            return; // already queued: the parent will poll this child anyway
        }
        let parent = {
            let mut list = shared.lock();
            let was_empty = list.ready.is_empty();
            list.ready.push(self.index);
            // The first push into an empty list wakes the parent; later pushes
            // are covered by that wake, because the parent always takes the
            // whole list when it runs.
            if was_empty { list.parent.clone() } else { None }
        };
        if let Some(parent) = parent {
            parent.wake();
        }
    }
}

/// The per-child wake bookkeeping, independent of how children are stored.
pub(crate) struct WakeSet {
    shared: Arc<Shared>,
    /// One waker per child; `None` once the child is finished.
    wakers: Box<[Option<Waker>]>,
    /// The batch of woken children the parent is working through.
    local: Vec<u32>,
    /// Position of the next entry of `local` to hand out.
    pos: usize,
    /// Whether `local` was refilled from the shared list during this poll.
    refilled: bool,
    /// Whether the parent has been polled at least once.
    started: bool,
}

impl WakeSet {
    /// Creates wake bookkeeping for `n` children, all initially scheduled.
    ///
    /// # Panics
    /// If `n` does not fit in a `u32`.
    pub(crate) fn new(n: usize) -> Self {
        let n32 = u32::try_from(n).expect("too many futures in one set (more than u32::MAX)");
        let shared = Arc::new(Shared {
            queued: (0..n).map(|_| AtomicBool::new(false)).collect(),
            inner: Mutex::new(ReadyList {
                ready: Vec::new(),
                parent: None,
            }),
        });
        let wakers = (0..n32)
            .map(|index| {
                Some(Waker::from(Arc::new(Node {
                    shared: shared.clone(),
                    index,
                })))
            })
            .collect();
        WakeSet {
            shared,
            wakers,
            // Every child is polled once on the first poll, in input order.
            local: (0..n32).collect(),
            pos: 0,
            // The initial batch counts as this poll's refill, so the first
            // poll polls each child exactly once.
            refilled: true,
            started: false,
        }
    }

    /// Registers the parent's waker; call at the start of every parent poll.
    pub(crate) fn register(&mut self, waker: &Waker) {
        let mut list = self.shared.lock();
        match &list.parent {
            Some(old) if old.will_wake(waker) => {}
            _ => list.parent = Some(waker.clone()),
        }
    }

    /// Starts a new parent poll: allows one refill from the shared list.
    ///
    /// Every poll after the first must be allowed a refill, even when an
    /// earlier poll returned early and left part of its batch in `local`:
    /// children woken since the last refill have already spent their wake of
    /// the parent, so this poll has to pick them up.
    pub(crate) fn begin_poll(&mut self, waker: &Waker) {
        self.register(waker);
        if self.started {
            self.refilled = false;
        } else {
            // First poll: the initial batch (every child once) is the
            // whole budget. The shared list was empty when it started, so
            // any child woken during it wakes the parent again.
            self.started = true;
        }
    }

    /// Returns the next child to poll, or `None` when the batch of this parent
    /// poll is exhausted (the parent must then return `Pending`: any child
    /// woken meanwhile has already woken the parent).
    pub(crate) fn next_woken(&mut self) -> Option<usize> {
        loop {
            if self.pos < self.local.len() {
                let index = self.local[self.pos] as usize;
                self.pos += 1;
                // A finished child keeps its flag set, so stale wakers of it
                // never queue it again.
                if self.wakers[index].is_some() {
                    // Clear before polling: a wake during the poll re-queues it.
                    self.shared.queued[index].store(false, Ordering::Release);
                    return Some(index);
                }
                continue;
            }
            if self.refilled {
                return None;
            }
            self.refilled = true;
            self.local.clear();
            self.pos = 0;
            mem::swap(&mut self.local, &mut self.shared.lock().ready);
            if self.local.is_empty() {
                return None;
            }
        }
    }

    /// The waker of child `index`.
    ///
    /// # Panics
    /// If the child was released.
    pub(crate) fn waker(&self, index: usize) -> &Waker {
        self.wakers[index]
            .as_ref()
            .expect("waker of a finished child")
    }

    /// Marks child `index` finished and frees its waker.
    pub(crate) fn release(&mut self, index: usize) {
        // Keep the flag set so that leftover clones of its waker stay no-ops.
        self.shared.queued[index].store(true, Ordering::Relaxed);
        self.wakers[index] = None;
    }

    /// Releases every child.
    pub(crate) fn release_all(&mut self) {
        for (flag, waker) in self.shared.queued.iter().zip(self.wakers.iter_mut()) {
            flag.store(true, Ordering::Relaxed);
            *waker = None;
        }
        self.local = Vec::new();
        self.pos = 0;
    }
}

/// One child: still running, finished with a kept output, or empty.
pub(crate) enum Slot<F, O> {
    /// The child future, pinned in place.
    Running(F),
    /// The output kept for the caller (used by `gather`).
    Done(O),
    /// Finished and taken, or cancelled.
    Empty,
}

/// A set of futures polled in place, each with its own waker.
///
/// `O` is the type of outputs the owner chooses to keep in the slot (for
/// example `gather` keeps `F::Output` in input order; `as_completed` keeps
/// nothing and uses `std::convert::Infallible`).
pub(crate) struct FutureSet<F, O> {
    /// The children, pinned inside one boxed slice.
    ///
    /// Pinning invariant: a `Slot::Running(F)` is never moved; it is only
    /// polled through `Pin::new_unchecked` or dropped in place by assigning a
    /// new value to its slot. `Done(O)` values are not pinned and may be
    /// moved out.
    slots: Pin<Box<[Slot<F, O>]>>,
    wake: WakeSet,
    running: usize,
}

impl<F: Future, O> FutureSet<F, O> {
    /// Creates a set from children in input order.
    pub(crate) fn new(children: impl IntoIterator<Item = F>) -> Self {
        let slots: Box<[Slot<F, O>]> = children.into_iter().map(Slot::Running).collect();
        let n = slots.len();
        FutureSet {
            slots: Box::into_pin(slots),
            wake: WakeSet::new(n),
            running: n,
        }
    }

    /// Number of children still running.
    pub(crate) fn running(&self) -> usize {
        self.running
    }

    /// Total number of slots (children given at creation, 0 after `clear`).
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The slots as plain mutable references. Private to this module, which
    /// is the safety boundary: its only callers (`store`, `take_outputs`)
    /// never move a `Running(F)`.
    fn slots_mut(&mut self) -> &mut [Slot<F, O>] {
        // Callers uphold the pinning invariant documented on `slots`: through
        // this reference a `Running(F)` is only pinned again in place
        // (`poll_next`) or dropped in place by overwriting the whole slot.
        // SAFETY: only `Done(O)` values, not structurally pinned, are moved.
        unsafe { self.slots.as_mut().get_unchecked_mut() }
    }

    /// Polls the woken children until one finishes; returns its index and
    /// output. `Ready(None)` once no child is running.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<(usize, F::Output)>> {
        if self.running == 0 {
            return Poll::Ready(None);
        }
        self.wake.begin_poll(cx.waker());
        while let Some(index) = self.wake.next_woken() {
            // Borrow the child's waker (no refcount traffic): `wake` and
            // `slots` are disjoint fields.
            let waker = self.wake.waker(index);
            let mut child_cx = Context::from_waker(waker);
            // SAFETY: see `slots_mut`; the slot lives in a pinned boxed slice
            // that is never moved or reallocated, and the child is pinned in
            // place here.
            let slot = unsafe { &mut self.slots.as_mut().get_unchecked_mut()[index] };
            let Slot::Running(fut) = slot else { continue };
            // SAFETY: `fut` lives inside the pinned slice and is never moved
            // until it is dropped in place (pinning invariant on `slots`).
            let fut = unsafe { Pin::new_unchecked(fut) };
            if let Poll::Ready(out) = fut.poll(&mut child_cx) {
                // Drop the finished future in place right away.
                *slot = Slot::Empty;
                self.wake.release(index);
                self.running -= 1;
                return Poll::Ready(Some((index, out)));
            }
        }
        Poll::Pending
    }

    /// Keeps `out` as the output of finished child `index`.
    pub(crate) fn store(&mut self, index: usize, out: O) {
        let slot = &mut self.slots_mut()[index];
        debug_assert!(!matches!(slot, Slot::Running(_)));
        *slot = Slot::Done(out);
    }

    /// Takes every kept output in input order; drops any running child.
    pub(crate) fn take_outputs(&mut self) -> Vec<O> {
        let outs = self
            .slots_mut()
            .iter_mut()
            .filter_map(|slot| match slot {
                Slot::Running(_) => {
                    *slot = Slot::Empty; // drop in place
                    None
                }
                Slot::Done(_) => match mem::replace(slot, Slot::Empty) {
                    Slot::Done(o) => Some(o),
                    _ => unreachable!(),
                },
                Slot::Empty => None,
            })
            .collect();
        self.clear();
        outs
    }

    /// Drops (cancels) every running child and every kept output now.
    pub(crate) fn clear(&mut self) {
        // Dropping the boxed slice drops each child in place.
        self.slots = Box::into_pin(Box::new([]));
        self.wake.release_all();
        self.running = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookkeeping_per_child_stays_small() {
        // Waker slot + Arc<Node> allocation (two counts + Node) + queued flag
        // + a u32 in each of the two ready lists.
        let arc_node = 2 * size_of::<usize>() + size_of::<Node>();
        let per_child =
            size_of::<Option<Waker>>() + arc_node + size_of::<AtomicBool>() + 2 * size_of::<u32>();
        assert!(per_child <= 64, "{per_child} bytes per child");
    }
}
