//! A task's state, in one place: the reference count and the `scheduled` flag (atomics, any
//! thread) and the lifecycle flags (a `Cell`, the owner loop's thread only), changed only
//! through the named transitions below. No other module reads or writes the bits.
//!
//! # The fields
//!
//! | field       | type          | who touches it | what it is |
//! |-------------|---------------|----------------|------------|
//! | `refs`      | `AtomicU32`   | any thread     | counted references to the cell (32 bits, so that the state and the header's awaiter key fill 16 bytes; past 2^31 references the process aborts, as `Arc` does past `isize::MAX`) |
//! | `scheduled` | `AtomicBool`  | any thread     | the task is in a run queue or on its way to one |
//! | `flags`     | `Cell<u8>`    | loop thread    | the lifecycle bits below |
//! | `stage`     | `Cell<Stage>` | loop thread    | what the cell's stage holds: the future, the output, or nothing (the stage itself is a union in `raw.rs`) |
//! | `slot`      | `Cell<u32>`   | loop thread    | not state: the task's key in the loop's registry, kept here because it fits in the padding after `flags` |
//!
//! References are held by the `Task` handle (until dropped), the loop's registry (until the
//! task completes), each run-queue or inject-queue entry, each `Waker` and each `TaskRef`.
//! The cell is freed by whoever drops the last one, on whatever thread.
//!
//! # The flags (loop thread only)
//!
//! | bit               | set by                                  | cleared by |
//! |-------------------|-----------------------------------------|------------|
//! | `COMPLETE`        | [`State::complete`]: the output is stored (returned, panicked or cancelled) | never |
//! | `CANCEL_REQUESTED`| [`State::request_cancel`] (`Task::cancel`, a dropped `Join`) | never |
//! | `CANCELLED`       | [`State::mark_cancelled`]: the output is `Err(Cancelled)`, set just before the future is dropped | never |
//! | `DETACHED`        | [`State::drop_handle`]: no `Task` handle owns the output any more | never |
//! | `RUNNING`         | [`State::start_run`] when it returns [`Run::Poll`] | [`State::end_poll`] |
//! | `OUTPUT_BORROWED` | [`State::borrow_output`] (`Task::result` clones the output) | [`State::end_borrow`] |
//! | `IN_CALLBACKS`    | [`State::begin_callbacks`]              | [`State::end_callbacks`] |
//!
//! # Legal combinations
//!
//! | phase                         | always   | may also be set | never |
//! |-------------------------------|----------|-----------------|-------|
//! | waiting / scheduled           | -        | `CANCEL_REQUESTED`, `DETACHED` | `COMPLETE`, `RUNNING`, `OUTPUT_BORROWED`, `IN_CALLBACKS`, `CANCELLED` |
//! | being polled                  | `RUNNING` | `CANCEL_REQUESTED` (by the future itself), `DETACHED`, `CANCELLED` (the future returned after a cancel request: its output replaces it while the poll ends) | `COMPLETE`, `OUTPUT_BORROWED`, `IN_CALLBACKS` |
//! | future being dropped (cancel) | `CANCELLED` | `CANCEL_REQUESTED`, `DETACHED` | `COMPLETE`, `RUNNING`, `OUTPUT_BORROWED`, `IN_CALLBACKS` |
//! | complete, callbacks running   | `COMPLETE`, `IN_CALLBACKS` | `CANCELLED`, `CANCEL_REQUESTED`, `DETACHED`, `OUTPUT_BORROWED` | `RUNNING` |
//! | complete                      | `COMPLETE` | `CANCELLED`, `CANCEL_REQUESTED`, `DETACHED`, `OUTPUT_BORROWED` | `RUNNING`, `IN_CALLBACKS` |
//!
//! So: `OUTPUT_BORROWED` and `IN_CALLBACKS` imply `COMPLETE`; `RUNNING` excludes all three;
//! `CANCELLED` without `COMPLETE` exists only while the future is being dropped.
//! When `COMPLETE` lands, `DETACHED` may be set but `OUTPUT_BORROWED` never is (a borrow needs
//! `COMPLETE`); `DETACHED` and `OUTPUT_BORROWED` are set together only when a handle is dropped
//! while `Task::result` clones the output (from a done callback or a `call_soon`ed one, through
//! the callback's view of the task), and then the output is dropped by whichever of
//! [`State::end_borrow`] and [`State::end_callbacks`] comes last. Debug builds check these
//! rules at every transition.
//!
//! # Who may perform each transition
//!
//! * Any thread: [`State::ref_inc`], [`State::ref_dec`], [`State::schedule`] (wakers, queue
//!   entries and `RawTask`s move between threads), and the approximate
//!   [`State::is_scheduled`].
//! * The owner loop's thread only: everything that reads or writes `flags`, `stage` or `slot`
//!   (except that whoever frees the cell reads `stage`: it holds the last reference, after the
//!   fence of [`State::ref_dec`]), and
//!   [`State::start_run`] (the loop clears `scheduled` before it polls). `Task` and `TaskRef` are
//!   `!Send`, the scheduler runs on the loop thread, and a `RawTask` moved to another thread
//!   only schedules and drops its reference; that is what makes the `Cell`s sound.
//!
//! # Orderings
//!
//! * `schedule` (`swap(true, AcqRel)`) against `start_run` (`swap(false, AcqRel)`): both are
//!   read-modify-writes of one flag, so they are totally ordered. A wake that comes after the
//!   clear finds the flag clear and queues the task again; a wake that comes before it is seen
//!   by the poll that follows, together with what the waker wrote before waking.
//! * `ref_inc` is `Relaxed` (a new reference is made from a live one), `ref_dec` is `Release`
//!   and the last one is followed by an `Acquire` fence, so everything every holder did
//!   happens before the cell is freed (std's `Arc` argument).
//!
//! The `loom_tests` in `runtime/task/raw.rs` model-check these with the real code.

use std::cell::Cell;

use crate::loom::sync::atomic::{AtomicBool, AtomicU32, Ordering, fence};

/// The task's output is stored: it returned, panicked, or was cancelled.
const COMPLETE: u8 = 1 << 0;
/// `cancel()` was called: the next time the loop picks the task up it drops the future.
const CANCEL_REQUESTED: u8 = 1 << 1;
/// The task finished by cancellation (its output is `Err(JoinError::Cancelled)`).
const CANCELLED: u8 = 1 << 2;
/// No `Task` handle owns the output any more; the output is dropped at completion.
const DETACHED: u8 = 1 << 3;
/// The loop is polling the future right now.
const RUNNING: u8 = 1 << 4;
/// `Task::result` is cloning the output: it must not be dropped or moved until this clears.
const OUTPUT_BORROWED: u8 = 1 << 5;
/// The loop is running the task's done callbacks: every one of them must see the output
/// (asyncio's rule), so a detached task's output, or one whose handle a callback drops, is
/// dropped only after the last callback (by [`State::end_callbacks`]).
const IN_CALLBACKS: u8 = 1 << 6;

/// What the cell's stage holds. Set by `raw.rs`, which keeps the future or the output in a
/// union and reads this to know which (and whether to drop one when the cell is freed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// The future, not yet finished (the state a task is spawned in).
    Future,
    /// The output: the future returned, panicked or was cancelled, and the output was neither
    /// taken by the `Task` handle nor dropped.
    Output,
    /// Neither: the output was taken or dropped, or the future or output is being dropped
    /// right now (so code run by that drop finds nothing to touch).
    Empty,
}

/// What the loop does with a task it took from a run queue ([`State::start_run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Run {
    /// Poll the future (`RUNNING` is now set; end with [`State::end_poll`]).
    Poll,
    /// Cancellation was requested: drop the future instead of polling it.
    Cancel,
    /// The task already completed (a stale queue entry): drop the entry.
    Stale,
}

/// What `cancel()` found ([`State::request_cancel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelRequest {
    /// The task had completed: nothing to cancel.
    Complete,
    /// Requested by an earlier call; nothing more to do.
    AlreadyRequested,
    /// Requested now: the caller must schedule the task so that the loop drops its future.
    Requested,
}

/// See the module docs.
pub(crate) struct State {
    refs: AtomicU32,
    scheduled: AtomicBool,
    flags: Cell<u8>,
    stage: Cell<Stage>,
    slot: Cell<u32>,
}

impl State {
    /// A new task's state: `refs` references, scheduled (its spawn queues it), no flag.
    pub(crate) fn new(refs: u32) -> State {
        State {
            refs: AtomicU32::new(refs),
            scheduled: AtomicBool::new(true),
            flags: Cell::new(0),
            stage: Cell::new(Stage::Future),
            slot: Cell::new(u32::MAX),
        }
    }

    // ---- Any thread ----

    /// Takes one more reference; the caller holds (or borrows) a live one.
    #[inline]
    pub(crate) fn ref_inc(&self) {
        // Relaxed suffices: a new reference is made from an existing one, which keeps the cell
        // alive (the `Arc::clone` argument).
        let prev = self.refs.fetch_add(1, Ordering::Relaxed);
        if prev > i32::MAX as u32 {
            std::process::abort();
        }
    }

    /// Gives up one reference; true if it was the last one, and the caller must free the cell.
    #[inline]
    #[must_use]
    pub(crate) fn ref_dec(&self) -> bool {
        if self.refs.fetch_sub(1, Ordering::Release) != 1 {
            return false;
        }
        // Synchronise with every other release of a reference before freeing (`Arc::drop`).
        fence(Ordering::Acquire);
        true
    }

    /// A wake: marks the task scheduled. True if it was not, so the caller must put it in a
    /// run queue (with a reference); false if it is queued already (or about to be).
    #[inline]
    #[must_use]
    pub(crate) fn schedule(&self) -> bool {
        // AcqRel pairs with `start_run`'s swap: either the loop sees this wake (and what the
        // waker wrote before it), or this wake sees the flag clear and queues again.
        !self.scheduled.swap(true, Ordering::AcqRel)
    }

    /// Whether the task is queued; a snapshot, for inspection (`TaskRef::state`) only.
    pub(crate) fn is_scheduled(&self) -> bool {
        self.scheduled.load(Ordering::Relaxed)
    }

    // ---- The owner loop's thread only ----

    #[inline(always)]
    fn has(&self, bits: u8) -> bool {
        self.flags.get() & bits != 0
    }

    #[inline(always)]
    fn update(&self, set: u8, clear: u8) {
        let flags = (self.flags.get() | set) & !clear;
        debug_assert!(legal(flags), "ringloop: illegal task state {flags:#09b}");
        self.flags.set(flags);
    }

    /// The loop took the task from a run queue: clears `scheduled` (so that a wake from now on
    /// queues it again) and says what to do. `Run::Poll` sets `RUNNING`.
    #[inline]
    pub(crate) fn start_run(&self) -> Run {
        self.scheduled.swap(false, Ordering::AcqRel);
        let flags = self.flags.get();
        if flags & COMPLETE != 0 {
            Run::Stale
        } else if flags & CANCEL_REQUESTED != 0 {
            Run::Cancel
        } else {
            self.update(RUNNING, 0);
            Run::Poll
        }
    }

    /// The poll that `start_run` began is over.
    #[inline]
    pub(crate) fn end_poll(&self) {
        self.update(0, RUNNING);
    }

    /// `cancel()`: see [`CancelRequest`].
    pub(crate) fn request_cancel(&self) -> CancelRequest {
        if self.has(COMPLETE) {
            CancelRequest::Complete
        } else if self.has(CANCEL_REQUESTED) {
            CancelRequest::AlreadyRequested
        } else {
            self.update(CANCEL_REQUESTED, 0);
            CancelRequest::Requested
        }
    }

    /// Whether a cancellation was requested (a future that returns anyway ends cancelled).
    pub(crate) fn is_cancel_requested(&self) -> bool {
        self.has(CANCEL_REQUESTED)
    }

    /// The output about to be stored is `Err(Cancelled)`; set before the future is dropped, so
    /// that code run by the drop sees the task cancelled.
    pub(crate) fn mark_cancelled(&self) {
        self.update(CANCELLED, 0);
    }

    /// The output is stored and the future gone: the task is done.
    pub(crate) fn complete(&self) {
        debug_assert!(
            !self.has(COMPLETE | RUNNING),
            "ringloop: task completed twice, or while polled"
        );
        debug_assert_ne!(
            self.stage.get(),
            Stage::Future,
            "ringloop: task completed with its future"
        );
        self.update(COMPLETE, 0);
    }

    /// The done callbacks start: the output must stay until [`State::end_callbacks`].
    pub(crate) fn begin_callbacks(&self) {
        self.update(IN_CALLBACKS, 0);
    }

    /// The done callbacks are over. True if the output must be dropped now (no handle owns it
    /// and no `Task::result` is cloning it).
    pub(crate) fn end_callbacks(&self) -> bool {
        self.update(0, IN_CALLBACKS);
        self.has(DETACHED) && !self.has(OUTPUT_BORROWED)
    }

    /// The `Task` handle is dropped. True if the output must be dropped now (complete, not
    /// borrowed, no callbacks running); otherwise marks the task `DETACHED`, and whichever of
    /// completion, [`State::end_borrow`] and [`State::end_callbacks`] comes last drops it.
    pub(crate) fn drop_handle(&self) -> bool {
        if self.has(COMPLETE) && !self.has(OUTPUT_BORROWED | IN_CALLBACKS) {
            true
        } else {
            self.update(DETACHED, 0);
            false
        }
    }

    /// `Task::result` starts cloning the output (the task is complete). False if a clone of
    /// this output is already running (re-entered from inside it).
    pub(crate) fn borrow_output(&self) -> bool {
        if self.has(OUTPUT_BORROWED) {
            return false;
        }
        self.update(OUTPUT_BORROWED, 0);
        true
    }

    /// The clone is over. True if the output must be dropped now (the handle went away during
    /// the clone, and no callbacks are running, which would drop it after the last one).
    pub(crate) fn end_borrow(&self) -> bool {
        self.update(0, OUTPUT_BORROWED);
        self.has(DETACHED) && !self.has(IN_CALLBACKS)
    }

    /// True once the output is stored.
    #[inline]
    pub(crate) fn is_complete(&self) -> bool {
        self.has(COMPLETE)
    }

    /// True while the loop polls the future.
    pub(crate) fn is_running(&self) -> bool {
        self.has(RUNNING)
    }

    /// True while `Task::result` clones the output.
    pub(crate) fn is_output_borrowed(&self) -> bool {
        self.has(OUTPUT_BORROWED)
    }

    /// `Task::is_cancelled`: finished by cancellation, or a cancellation will take effect at the
    /// next scheduling point.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.has(CANCELLED) || (self.has(CANCEL_REQUESTED) && !self.has(COMPLETE))
    }

    /// What the stage holds. Loop thread, or whoever holds the last reference.
    #[inline(always)]
    pub(crate) fn stage(&self) -> Stage {
        self.stage.get()
    }

    /// Records what the stage holds now (`raw.rs`, as it writes or empties the stage).
    #[inline(always)]
    pub(crate) fn set_stage(&self, stage: Stage) {
        self.stage.set(stage);
    }

    /// The task's key in the loop's registry (`u32::MAX` until set).
    pub(crate) fn registry_key(&self) -> u32 {
        self.slot.get()
    }

    /// Records the task's key in the loop's registry (at spawn).
    pub(crate) fn set_registry_key(&self, key: u32) {
        self.slot.set(key);
    }
}

/// The rules of the "Legal combinations" table that hold at every transition.
fn legal(flags: u8) -> bool {
    let has = |bit: u8| flags & bit != 0;
    (!has(OUTPUT_BORROWED) || has(COMPLETE))
        && (!has(IN_CALLBACKS) || has(COMPLETE))
        && (!has(RUNNING) || !has(COMPLETE | OUTPUT_BORROWED | IN_CALLBACKS))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_task_that_returns() {
        let s = State::new(1);
        assert_eq!(s.start_run(), Run::Poll);
        assert!(s.is_running() && !s.is_scheduled());
        assert!(s.schedule(), "a wake during the poll queues the task again");
        assert!(!s.schedule() && s.is_scheduled(), "once");
        s.end_poll();
        assert_eq!(s.start_run(), Run::Poll);
        s.end_poll();
        s.set_stage(Stage::Output);
        s.complete();
        s.begin_callbacks();
        assert!(!s.drop_handle(), "a callback may still read the output");
        assert!(
            s.end_callbacks(),
            "the last callback is over: drop the detached output"
        );
        assert!(s.schedule());
        assert_eq!(s.start_run(), Run::Stale);
        assert!(s.ref_dec());
    }

    #[test]
    fn cancellation() {
        let s = State::new(2);
        assert_eq!(s.request_cancel(), CancelRequest::Requested);
        assert_eq!(s.request_cancel(), CancelRequest::AlreadyRequested);
        assert!(s.is_cancelled() && s.is_cancel_requested());
        assert_eq!(s.start_run(), Run::Cancel);
        s.mark_cancelled();
        s.set_stage(Stage::Output);
        s.complete();
        assert_eq!(s.request_cancel(), CancelRequest::Complete);
        assert!(s.is_cancelled());
        assert!(!s.ref_dec());
        assert!(s.ref_dec());
    }

    #[test]
    fn handle_dropped_while_the_output_is_borrowed() {
        let s = State::new(1);
        assert_eq!(s.start_run(), Run::Poll);
        s.end_poll();
        s.set_stage(Stage::Output);
        s.complete();
        assert!(s.borrow_output());
        assert!(!s.borrow_output(), "no nested borrow");
        assert!(s.is_output_borrowed());
        assert!(!s.drop_handle());
        assert!(s.end_borrow(), "the borrow ends last: it drops the output");
    }

    #[test]
    fn legality() {
        assert!(legal(0));
        assert!(legal(
            COMPLETE | DETACHED | OUTPUT_BORROWED | IN_CALLBACKS | CANCELLED
        ));
        assert!(!legal(OUTPUT_BORROWED));
        assert!(!legal(IN_CALLBACKS));
        assert!(!legal(RUNNING | COMPLETE));
    }
}
