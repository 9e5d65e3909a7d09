//! The task cell: one allocation holding the header, the future and then its output; the
//! reference count; the type-erased vtable; and the `Waker` built on the cell.

use std::cell::{Cell, UnsafeCell};
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use super::JoinError;
use crate::runtime::inject::Shared;
use crate::runtime::scheduler;

/// The task's future has finished (or was cancelled, or panicked): the stage holds the output,
/// or is `Consumed` once the output was taken or dropped.
pub(crate) const COMPLETE: u8 = 1 << 0;
/// `cancel()` was called: the next time the loop picks the task up it drops the future.
pub(crate) const CANCEL_REQUESTED: u8 = 1 << 1;
/// The task finished by cancellation (its output is `Err(JoinError::Cancelled)`).
pub(crate) const CANCELLED: u8 = 1 << 2;
/// No `Task` handle owns the output any more; the output is dropped at completion.
pub(crate) const DETACHED: u8 = 1 << 3;
/// The loop is polling the future right now.
pub(crate) const RUNNING: u8 = 1 << 4;
/// `Task::result` is cloning the output: it must not be dropped or moved until this clears.
pub(crate) const OUTPUT_BORROWED: u8 = 1 << 5;
/// The loop is running the task's done callbacks: every one of them must see the output
/// (asyncio's rule), so a detached task's output, or one whose handle a callback drops, is
/// dropped only after the last callback (by the completion, which checks `DETACHED`).
pub(crate) const IN_CALLBACKS: u8 = 1 << 6;

/// A done callback, type-erased: it is called with the task's header.
pub(crate) type DoneCallback = Box<dyn FnOnce(NonNull<Header>)>;

/// Rarely used per-task data, allocated only when a task is named or given a callback.
#[derive(Default)]
pub(crate) struct Extra {
    pub(crate) name: Option<String>,
    pub(crate) callbacks: Vec<(u64, DoneCallback)>,
    pub(crate) next_callback: u64,
}

/// The type-independent part of a task, first in every cell.
///
/// # Ground rules
///
/// * `refs` and `scheduled` are atomics: wakers touch them from any thread. `vtable`, `owner`,
///   `id` and `location` never change after spawn and may be read from any thread.
/// * Every `Cell` field, the stage and everything they own are touched only on the owner
///   loop's thread. This is what lets a task's future be `!Send`.
/// * The cell is freed when `refs` reaches zero. References are held by: the `Task` handle (until
///   dropped), the loop's registry (until the task completes), each queue entry, each `Waker`
///   and each `TaskRef`.
/// * While the stage holds the future, the registry holds a reference, so the last reference
///   can only be dropped on another thread once the future is gone. The output is dropped
///   on the loop thread, by the `Task` handle or at completion if detached; so freeing the cell
///   off-thread never drops `!Send` data.
#[repr(C)]
pub(crate) struct Header {
    refs: AtomicUsize,
    /// The task is in a run queue (local or inject), or about to be put in one.
    pub(crate) scheduled: AtomicBool,
    /// `COMPLETE`, `CANCEL_REQUESTED`, `CANCELLED`, `DETACHED`, `RUNNING`, `OUTPUT_BORROWED`,
    /// `IN_CALLBACKS`;
    /// loop thread only.
    pub(crate) flags: Cell<u8>,
    /// Key of this task in the loop's registry of live tasks.
    pub(crate) registry_key: Cell<u32>,
    pub(crate) vtable: &'static Vtable,
    /// The loop that owns the task: wakes from other threads go to its inject queue.
    pub(crate) owner: Arc<Shared>,
    pub(crate) id: u64,
    pub(crate) location: &'static Location<'static>,
    /// The waker of whoever awaits the task.
    pub(crate) join_waker: Cell<Option<Waker>>,
    pub(crate) extra: Cell<Option<Box<Extra>>>,
}

impl Header {
    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags.get() & flag != 0
    }

    pub(crate) fn set(&self, flag: u8) {
        self.flags.set(self.flags.get() | flag);
    }

    pub(crate) fn clear(&self, flag: u8) {
        self.flags.set(self.flags.get() & !flag);
    }

    /// Runs `f` on the task's extra data, allocating it on first use.
    pub(crate) fn with_extra<R>(&self, f: impl FnOnce(&mut Extra) -> R) -> R {
        let mut extra = self.extra.take().unwrap_or_default();
        let r = f(&mut extra);
        self.extra.set(Some(extra));
        r
    }
}

/// Type-specific operations on a cell, reached through the header.
pub(crate) struct Vtable {
    /// Polls the future once; returns true if the task finished (output stored).
    poll: unsafe fn(NonNull<Header>) -> bool,
    /// Drops the future and stores `Err(JoinError::Cancelled)`.
    cancel: unsafe fn(NonNull<Header>),
    /// Drops the output, if any.
    drop_output: unsafe fn(NonNull<Header>),
    /// Moves the output into `*mut Option<Output<T>>`.
    take_output: unsafe fn(NonNull<Header>, *mut ()),
    /// Points at the stored `Output<T>`, or is null.
    output_ref: unsafe fn(NonNull<Header>) -> *const (),
    /// Frees the cell.
    dealloc: unsafe fn(NonNull<Header>),
}

/// A finished task's output as stored in the cell. The error is boxed so that a cell costs
/// no more than its future or its value: `JoinError` carries a `String`, and tasks that
/// return small values are the common case.
pub(crate) type Output<T> = Result<T, Box<JoinError>>;

enum Stage<F: Future> {
    Running(F),
    Finished(Output<F::Output>),
    Consumed,
}

/// The allocation. `header` MUST stay the first field (`repr(C)`): a `NonNull<Header>` is cast
/// back to the cell.
#[repr(C)]
struct TaskCell<F: Future> {
    header: Header,
    stage: UnsafeCell<Stage<F>>,
}

/// Allocates a cell for `future` with `refs` initial references and `scheduled` set.
pub(crate) fn allocate<F>(
    future: F,
    owner: Arc<Shared>,
    id: u64,
    location: &'static Location<'static>,
    refs: usize,
) -> NonNull<Header>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let cell = Box::new(TaskCell {
        header: Header {
            refs: AtomicUsize::new(refs),
            scheduled: AtomicBool::new(true),
            flags: Cell::new(0),
            registry_key: Cell::new(u32::MAX),
            vtable: &VtableFor::<F>::VTABLE,
            owner,
            id,
            location,
            join_waker: Cell::new(None),
            extra: Cell::new(None),
        },
        stage: UnsafeCell::new(Stage::Running(future)),
    });
    NonNull::from(Box::leak(cell)).cast()
}

struct VtableFor<F>(F);

impl<F: Future + 'static> VtableFor<F> {
    const VTABLE: Vtable = Vtable {
        poll: poll::<F>,
        cancel: cancel::<F>,
        drop_output: drop_output::<F>,
        take_output: take_output::<F>,
        output_ref: output_ref::<F>,
        dealloc: dealloc::<F>,
    };
}

/// # Safety
///
/// `ptr` is the header of a live `TaskCell<F>`; the caller is on the owner loop's thread and
/// holds no reference into the stage.
unsafe fn stage<F: Future>(ptr: NonNull<Header>) -> *mut Stage<F> {
    // SAFETY: the header is the first field of a repr(C) TaskCell<F> (caller's contract).
    unsafe { (*ptr.cast::<TaskCell<F>>().as_ptr()).stage.get() }
}

/// Replaces the stage, dropping the old one with the stage already set to `Consumed`, so that
/// code run by the drop (drop guards, wakes, even another handle of this task) never sees a
/// half-dropped stage. Returns the panic message if the drop panicked.
///
/// # Safety
///
/// As for [`stage`].
unsafe fn replace_stage<F: Future>(ptr: NonNull<Header>, new: Stage<F>) -> Option<String> {
    // SAFETY: caller's contract; the reference into the stage ends before the drop runs.
    let old = unsafe { std::mem::replace(&mut *stage::<F>(ptr), Stage::Consumed) };
    let panicked = catch_unwind(AssertUnwindSafe(move || drop(old))).err();
    // SAFETY: as above; no reference into the stage is alive.
    unsafe { *stage::<F>(ptr) = new };
    panicked.map(|p| super::panic_message(&*p))
}

/// # Safety
///
/// `ptr` is the header of a live `TaskCell<F>`, on the owner loop's thread, not re-entered.
unsafe fn poll<F: Future + 'static>(ptr: NonNull<Header>) -> bool {
    // SAFETY: caller's contract.
    let fut: *mut F = match unsafe { &mut *stage::<F>(ptr) } {
        Stage::Running(fut) => fut,
        _ => return true,
    };
    // The waker for this poll borrows the loop's reference (no count change); `ManuallyDrop`
    // keeps it from releasing a reference it never took.
    // SAFETY: the cell is alive for the whole poll (the caller holds a reference).
    let waker = ManuallyDrop::new(unsafe { Waker::from_raw(raw_waker(ptr)) });
    let mut cx = Context::from_waker(&waker);
    let polled = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the future is pinned: the cell never moves and the future is dropped in
        // place. Nothing else touches the stage during the poll: other handles of this task
        // read only the header while it is RUNNING.
        unsafe { Pin::new_unchecked(&mut *fut) }.poll(&mut cx)
    }));
    // SAFETY: the header outlives this call.
    let header = unsafe { ptr.as_ref() };
    let output = match polled {
        Ok(Poll::Pending) => return false,
        // asyncio: a task cancelled right before its coroutine returns ends cancelled.
        Ok(Poll::Ready(value)) if header.has(CANCEL_REQUESTED) => {
            drop_quietly(value);
            Err(Box::new(JoinError::Cancelled))
        }
        Ok(Poll::Ready(value)) => Ok(value),
        Err(payload) => Err(Box::new(JoinError::Panicked(super::panic_message(
            &*payload,
        )))),
    };
    if matches!(output.as_ref().map_err(|e| &**e), Err(JoinError::Cancelled)) {
        header.set(CANCELLED);
    }
    // SAFETY: caller's contract; the poll is over.
    unsafe { replace_stage::<F>(ptr, Stage::Finished(output)) };
    true
}

fn drop_quietly<T>(value: T) {
    let _ = catch_unwind(AssertUnwindSafe(move || drop(value)));
}

/// # Safety
///
/// As for [`poll`].
unsafe fn cancel<F: Future + 'static>(ptr: NonNull<Header>) {
    // SAFETY: caller's contract.
    let header = unsafe { ptr.as_ref() };
    header.set(CANCELLED);
    // SAFETY: caller's contract.
    unsafe { replace_stage::<F>(ptr, Stage::Finished(Err(Box::new(JoinError::Cancelled)))) };
}

/// # Safety
///
/// As for [`poll`].
unsafe fn drop_output<F: Future + 'static>(ptr: NonNull<Header>) {
    // SAFETY: caller's contract.
    if matches!(unsafe { &*stage::<F>(ptr) }, Stage::Finished(_)) {
        // SAFETY: caller's contract.
        unsafe { replace_stage::<F>(ptr, Stage::Consumed) };
    }
}

/// # Safety
///
/// As for [`poll`]; `dst` points to a valid `Option<Output<F::Output>>`.
unsafe fn take_output<F: Future + 'static>(ptr: NonNull<Header>, dst: *mut ()) {
    // SAFETY: caller's contract.
    let stage = unsafe { &mut *stage::<F>(ptr) };
    if let Stage::Finished(_) = stage {
        let Stage::Finished(out) = std::mem::replace(stage, Stage::Consumed) else {
            unreachable!("ringloop: stage checked just above")
        };
        // SAFETY: caller's contract on `dst`.
        unsafe { *dst.cast::<Option<Output<F::Output>>>() = Some(out) };
    }
}

/// # Safety
///
/// As for [`poll`]. The pointer is valid until the stage next changes.
unsafe fn output_ref<F: Future + 'static>(ptr: NonNull<Header>) -> *const () {
    // SAFETY: caller's contract.
    match unsafe { &*stage::<F>(ptr) } {
        Stage::Finished(out) => (out as *const Output<F::Output>).cast(),
        _ => std::ptr::null(),
    }
}

/// # Safety
///
/// `ptr` is the header of a `TaskCell<F>` whose last reference was just released.
unsafe fn dealloc<F: Future + 'static>(ptr: NonNull<Header>) {
    // SAFETY: caller's contract: nobody else refers to the cell.
    let mut cell = unsafe { Box::from_raw(ptr.cast::<TaskCell<F>>().as_ptr()) };
    // The box owns the cell: `get_mut` reads the stage without any unsafe precondition.
    if matches!(cell.stage.get_mut(), Stage::Consumed) {
        drop(cell);
    } else {
        // The future or output is still here, so the loop that owned it never cleaned up (a
        // forgotten runtime), and this may not be its thread: leak rather than drop `!Send`
        // data on the wrong thread.
        std::mem::forget(cell);
    }
}

/// An owned reference to a task cell.
pub(crate) struct RawTask {
    ptr: NonNull<Header>,
}

// SAFETY: a RawTask off the loop thread only moves the pointer and changes the atomic count;
// everything else in the cell is touched on the loop thread (see the Header ground rules).
unsafe impl Send for RawTask {}

impl RawTask {
    /// Takes over one reference already counted in the header.
    ///
    /// # Safety
    ///
    /// `ptr` is a live task header and the caller gives up one counted reference.
    pub(crate) unsafe fn from_owned(ptr: NonNull<Header>) -> RawTask {
        RawTask { ptr }
    }

    /// Takes a new reference.
    ///
    /// # Safety
    ///
    /// `ptr` is a live task header.
    pub(crate) unsafe fn from_borrowed(ptr: NonNull<Header>) -> RawTask {
        // SAFETY: caller's contract.
        unsafe { inc_ref(ptr) };
        RawTask { ptr }
    }

    pub(crate) fn ptr(&self) -> NonNull<Header> {
        self.ptr
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: we hold a reference, so the cell is alive.
        unsafe { self.ptr.as_ref() }
    }

    /// Gives up ownership of the reference without releasing it.
    pub(crate) fn into_ptr(self) -> NonNull<Header> {
        ManuallyDrop::new(self).ptr
    }

    // The functions below are loop-thread only (see the Header ground rules); the scheduler and
    // the handles call them there.

    /// Polls the future once; true if the task finished.
    pub(crate) fn poll(&self) -> bool {
        // SAFETY: we hold a reference; loop-thread only by the callers' contract.
        unsafe { (self.header().vtable.poll)(self.ptr) }
    }

    /// Drops the future and records cancellation.
    pub(crate) fn cancel_now(&self) {
        // SAFETY: as for `poll`.
        unsafe { (self.header().vtable.cancel)(self.ptr) }
    }

    pub(crate) fn drop_output(&self) {
        // SAFETY: as for `poll`.
        unsafe { (self.header().vtable.drop_output)(self.ptr) }
    }

    /// # Safety
    ///
    /// `T` is the task's output type.
    pub(crate) unsafe fn take_output<T>(&self) -> Option<Result<T, JoinError>> {
        let mut out: Option<Output<T>> = None;
        // SAFETY: as for `poll`; `out` has the type the vtable writes (caller's contract).
        unsafe { (self.header().vtable.take_output)(self.ptr, (&raw mut out).cast()) };
        out.map(|r| r.map_err(|e| *e))
    }

    /// # Safety
    ///
    /// `T` is the task's output type; the reference is used before the stage changes.
    pub(crate) unsafe fn output_ref<T>(&self) -> Option<&Output<T>> {
        // SAFETY: as for `poll`; the type is the caller's contract.
        let p = unsafe { (self.header().vtable.output_ref)(self.ptr) };
        // SAFETY: non-null means it points at the stored output of type Output<T>.
        (!p.is_null()).then(|| unsafe { &*p.cast::<Output<T>>() })
    }

    /// Asks the loop to poll the task (again): from any thread.
    pub(crate) fn schedule(&self) {
        // SAFETY: we hold a reference.
        unsafe { schedule(self.ptr, false) }
    }
}

impl Clone for RawTask {
    fn clone(&self) -> RawTask {
        // SAFETY: we hold a reference, so the header is alive.
        unsafe { RawTask::from_borrowed(self.ptr) }
    }
}

impl Drop for RawTask {
    fn drop(&mut self) {
        // SAFETY: we own one counted reference.
        unsafe { dec_ref(self.ptr) }
    }
}

/// # Safety
///
/// `ptr` is a live task header.
unsafe fn inc_ref(ptr: NonNull<Header>) {
    // SAFETY: caller's contract. Relaxed suffices: a new reference is made from an existing one,
    // which keeps the cell alive (the `Arc::clone` argument).
    let prev = unsafe { ptr.as_ref() }.refs.fetch_add(1, Ordering::Relaxed);
    if prev > isize::MAX as usize {
        std::process::abort();
    }
}

/// # Safety
///
/// `ptr` is a live task header and the caller gives up one counted reference.
unsafe fn dec_ref(ptr: NonNull<Header>) {
    // SAFETY: caller's contract.
    let header = unsafe { ptr.as_ref() };
    if header.refs.fetch_sub(1, Ordering::Release) == 1 {
        // Synchronise with every other release of a reference before freeing (`Arc::drop`).
        fence(Ordering::Acquire);
        let dealloc = header.vtable.dealloc;
        // SAFETY: that was the last reference.
        unsafe { dealloc(ptr) };
    }
}

/// Puts the task in a run queue unless it is already in one.
///
/// # Safety
///
/// `ptr` is a live task header; if `owned` the caller gives up one counted reference.
unsafe fn schedule(ptr: NonNull<Header>, owned: bool) {
    // SAFETY: caller's contract.
    let header = unsafe { ptr.as_ref() };
    // AcqRel pairs with the loop's `swap(false)` before it polls: either the loop sees this wake
    // (and what the waker wrote before it), or this wake sees the flag clear and queues again.
    if header.scheduled.swap(true, Ordering::AcqRel) {
        if owned {
            // SAFETY: caller's contract.
            unsafe { dec_ref(ptr) };
        }
        return;
    }
    // SAFETY: caller's contract (a live header; an owned reference, or a new one taken here).
    let task = unsafe {
        if owned {
            RawTask::from_owned(ptr)
        } else {
            RawTask::from_borrowed(ptr)
        }
    };
    scheduler::schedule(task);
}

static WAKER_VTABLE: RawWakerVTable =
    RawWakerVTable::new(waker_clone, waker_wake, waker_wake_by_ref, waker_drop);

fn raw_waker(ptr: NonNull<Header>) -> RawWaker {
    RawWaker::new(ptr.as_ptr().cast::<()>().cast_const(), &WAKER_VTABLE)
}

unsafe fn waker_clone(data: *const ()) -> RawWaker {
    let ptr = NonNull::new(data.cast_mut().cast::<Header>()).expect("task waker data is null");
    // SAFETY: a waker holds (or borrows, for the poll waker) a reference to a live header.
    unsafe { inc_ref(ptr) };
    raw_waker(ptr)
}

unsafe fn waker_wake(data: *const ()) {
    let ptr = NonNull::new(data.cast_mut().cast::<Header>()).expect("task waker data is null");
    // SAFETY: an owned waker holds one counted reference, given up here.
    unsafe { schedule(ptr, true) };
}

unsafe fn waker_wake_by_ref(data: *const ()) {
    let ptr = NonNull::new(data.cast_mut().cast::<Header>()).expect("task waker data is null");
    // SAFETY: the waker's reference keeps the header alive for this call.
    unsafe { schedule(ptr, false) };
}

unsafe fn waker_drop(data: *const ()) {
    let ptr = NonNull::new(data.cast_mut().cast::<Header>()).expect("task waker data is null");
    // SAFETY: an owned waker holds one counted reference, given up here.
    unsafe { dec_ref(ptr) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header is the per-task cost beyond the future: keep it from growing unnoticed.
    #[test]
    fn header_stays_small() {
        assert!(
            std::mem::size_of::<Header>() <= 72,
            "{}",
            std::mem::size_of::<Header>()
        );
        let small = std::mem::size_of::<Stage<std::future::Ready<usize>>>();
        assert!(small <= 24, "stage of a ready usize: {small}");
    }
}
