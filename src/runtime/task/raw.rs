//! The task cell: one allocation holding the header and the stage (the future, then its
//! output, in the same bytes); the reference counting; the type-erased vtable and the [`Site`]
//! that carries it; the `Waker` built on the cell; and the loop's two steps on a task,
//! [`RawTask::run`] and [`RawTask::complete`]. The task's state (count, `scheduled`, flags,
//! what the stage holds) lives in [`State`] (`state.rs`), changed only through its
//! transitions.
//!
//! # Why the cell is laid out as it is
//!
//! A spawn's cost is dominated by the memory it touches: the cell is written once at spawn,
//! again at completion, and every fresh page of it is a page fault. So the cell keeps only what
//! differs from task to task (the state, the id, the rarely used extra data and the stage),
//! 40 bytes of header; what all the tasks spawned at one place with one future type on one
//! loop share (the vtable, the spawn location, the owner loop) is one [`Site`], made once per
//! loop and place (see [`Sites`]) and reached through one pointer. A task's awaiter (the waker
//! of whoever awaits it before it finished) lives in its site too, in a slab, with only the
//! slab key (32 bits, beside the 32-bit reference count) in the header: most tasks never have
//! one, and those that do have it for a while only. The stage is a union of the future and the
//! output, not an enum: `State::stage` says which it holds, in the padding of the state, so a
//! task costs its header plus the larger of its future and its output.
//!
//! The atomics and the stage's `UnsafeCell` come from the `crate::loom` facade, so the
//! `loom_tests` below check this very code.

use std::any::TypeId;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use slab::Slab;

use super::JoinError;
use super::state::{Run, Stage, State};
use crate::callbacks::{Callbacks, run_guarded};
use crate::loom::cell::UnsafeCell;
use crate::runtime::inject::Shared;
use crate::runtime::scheduler;

/// A done callback, type-erased: it is called with the task's header.
pub(crate) type DoneCallback = Box<dyn FnOnce(NonNull<Header>)>;

/// Rarely used per-task data, allocated only when a task is named or given a callback.
#[derive(Default)]
pub(crate) struct Extra {
    pub(crate) name: Option<String>,
    pub(crate) callbacks: Callbacks<DoneCallback>,
}

/// The type-independent part of a task, first in every cell.
///
/// # Ground rules
///
/// * `state` holds the reference count and the `scheduled` flag (atomics: wakers touch them
///   from any thread), the lifecycle flags and what the stage holds (loop thread only); see
///   `state.rs` for the bits, their legal combinations and who may perform which transition.
///   `site` and `id` never change after spawn and may be read from any thread.
/// * Every `Cell` field, the stage, the site's awaiter slab and everything they own are
///   touched only on the owner loop's thread. This is what lets a task's future be `!Send`.
/// * `awaiter` is set only while the task is not complete (completion takes it out), so a
///   cell is never freed holding a key into the slab.
/// * The cell is freed when the count reaches zero. References are held by: the `Task` handle
///   (until dropped), the loop's registry (until the task completes), each queue entry, each
///   `Waker` and each `TaskRef`.
/// * While the stage holds the future, the registry holds a reference, so the last reference
///   can only be dropped on another thread once the future is gone. The output is dropped
///   on the loop thread, by the `Task` handle or at completion if detached; so freeing the cell
///   off-thread never drops `!Send` data.
#[repr(C)]
pub(crate) struct Header {
    /// References, `scheduled`, the lifecycle flags, what the stage holds and the registry key;
    /// private fields, named transitions. 12 bytes, so that `awaiter` fills its last word.
    pub(crate) state: State,
    /// The key of whoever awaits the task in `site.awaiters`, or `NO_AWAITER`.
    awaiter: Cell<u32>,
    /// The vtable, spawn location and owner loop, shared with the tasks of the same site.
    pub(crate) site: Arc<Site>,
    pub(crate) id: u64,
    pub(crate) extra: Cell<Option<Box<Extra>>>,
}

/// `Header::awaiter` when nobody awaits the task.
const NO_AWAITER: u32 = u32::MAX;

impl Header {
    /// Runs `f` on the task's extra data, allocating it on first use.
    pub(crate) fn with_extra<R>(&self, f: impl FnOnce(&mut Extra) -> R) -> R {
        let mut extra = self.extra.take().unwrap_or_default();
        let r = f(&mut extra);
        self.extra.set(Some(extra));
        r
    }

    /// Where the task was spawned.
    pub(crate) fn location(&self) -> &'static Location<'static> {
        self.site.location
    }

    /// The loop that owns the task: wakes from other threads go to its inject queue.
    pub(crate) fn owner(&self) -> &Arc<Shared> {
        &self.site.owner
    }

    fn vtable(&self) -> &Vtable {
        &self.site.vtable
    }

    /// Makes `waker` the task's awaiter (woken when it completes), replacing any other; keeps
    /// the one it has if that would wake the same task. Loop thread, task not complete.
    pub(crate) fn set_awaiter(&self, waker: &Waker) {
        let key = self.awaiter.get();
        if key != NO_AWAITER && self.site.awaiters.borrow()[key as usize].will_wake(waker) {
            return;
        }
        // Cloned and dropped outside the borrow: a waker's clone and drop are foreign code,
        // which may even run the loop (and complete the task, or free and reuse the key).
        let new = waker.clone();
        if self.state.is_complete() {
            return;
        }
        let old = {
            let mut awaiters = self.site.awaiters.borrow_mut();
            // Read again: the clone may have run code that changed it.
            match self.awaiter.get() {
                NO_AWAITER => {
                    let entry = awaiters.vacant_entry();
                    let key = u32::try_from(entry.key())
                        .ok()
                        .filter(|&k| k != NO_AWAITER)
                        .expect("ringloop: more than 4 billion awaiters");
                    entry.insert(new);
                    self.awaiter.set(key);
                    None
                }
                key => Some(std::mem::replace(&mut awaiters[key as usize], new)),
            }
        };
        drop(old);
    }

    /// Takes the task's awaiter out, if it has one. Loop thread.
    fn take_awaiter(&self) -> Option<Waker> {
        let key = self.awaiter.replace(NO_AWAITER);
        (key != NO_AWAITER).then(|| self.site.awaiters.borrow_mut().remove(key as usize))
    }
}

/// Type-specific operations on a cell, reached through the header's site.
#[derive(Clone, Copy)]
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

/// What the tasks spawned at one place, with one future type, on one loop share: the vtable
/// (a copy, so that a call through the header costs the two loads it would through a
/// `&'static Vtable`), the spawn location, the owner loop, and the awaiters of those of its
/// tasks that are awaited. Each cell holds a counted reference, so a site lives as long as the
/// last of its cells, on whatever thread that is freed (by then its slab is empty: see the
/// header's ground rules).
pub(crate) struct Site {
    vtable: Vtable,
    location: &'static Location<'static>,
    owner: Arc<Shared>,
    /// The wakers of whoever awaits an unfinished task of this site, keyed by
    /// `Header::awaiter`. Loop thread only, like the header's `Cell`s.
    awaiters: RefCell<Slab<Waker>>,
}

// SAFETY: other threads reach a site only through a task's header (wakers, queue entries,
// `RawTask`s), and only read its immutable fields (`vtable`, `location`, `owner`) or drop it
// after its last cell, when the slab is empty. The slab, the one field behind a `RefCell`, is
// touched only on the owner loop's thread: by `Task` handles (which are `!Send`) and by the loop's
// completion of a task (see the `Header` ground rules).
unsafe impl Sync for Site {}

/// A site's identity: the future's type and the spawn location's address.
type SiteKey = (TypeId, usize);

/// A loop's sites, so that a spawn finds its site (the last one used, else by a hash lookup)
/// instead of making one. The sites of a program are its spawn call sites times their future
/// types, a fixed set; two sites with the same contents are harmless (a `Location` may have
/// several addresses), so the key need only never mix up two future types, which `TypeId`
/// guarantees.
pub(crate) struct Sites {
    owner: Arc<Shared>,
    last: Option<(SiteKey, Arc<Site>)>,
    all: HashMap<SiteKey, Arc<Site>, BuildHasherDefault<KeyHasher>>,
}

impl Sites {
    pub(crate) fn new(owner: Arc<Shared>) -> Sites {
        Sites {
            owner,
            last: None,
            all: HashMap::default(),
        }
    }

    /// A new reference to the site of futures of type `F` spawned at `location`.
    #[inline]
    fn get<F: Future + 'static>(&mut self, location: &'static Location<'static>) -> Arc<Site> {
        let key = (TypeId::of::<F>(), std::ptr::from_ref(location) as usize);
        match &self.last {
            Some((last, site)) if *last == key => site.clone(),
            _ => self.find(key, &VtableFor::<F>::VTABLE, location),
        }
    }

    #[inline(never)]
    fn find(
        &mut self,
        key: SiteKey,
        vtable: &Vtable,
        location: &'static Location<'static>,
    ) -> Arc<Site> {
        let owner = &self.owner;
        let site = self.all.entry(key).or_insert_with(|| {
            Arc::new(Site {
                vtable: *vtable,
                location,
                owner: owner.clone(),
                awaiters: RefCell::new(Slab::new()),
            })
        });
        self.last = Some((key, site.clone()));
        site.clone()
    }

    /// For the loom models: forgets the last site used, then checks that this cache holds the
    /// only reference to every site (each cell released its own exactly once).
    #[cfg(all(test, loom))]
    fn only_cached(&mut self) -> bool {
        self.last = None;
        self.all
            .values()
            .all(|site| Arc::strong_count(site) == 1 && site.awaiters.borrow().is_empty())
    }
}

/// Hashes a [`SiteKey`]: its words mixed by a multiply (the keys are a type's hash and an
/// address, not attacker-chosen, so SipHash's strength would only cost time).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_ne_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A finished task's output as stored in the cell. The error is boxed so that a cell costs
/// no more than its future or its value: `JoinError` carries a `String`, and tasks that
/// return small values are the common case.
pub(crate) type Output<T> = Result<T, Box<JoinError>>;

/// The stage: the future, then its output, in the same bytes. `State::stage` says which one
/// it holds (or neither); the functions below keep the two in step.
union StageData<F: Future> {
    future: ManuallyDrop<F>,
    output: ManuallyDrop<Output<F::Output>>,
}

/// The allocation. `header` MUST stay the first field (`repr(C)`): a `NonNull<Header>` is cast
/// back to the cell.
#[repr(C)]
struct TaskCell<F: Future> {
    header: Header,
    stage: UnsafeCell<StageData<F>>,
}

/// Allocates a cell for `future`, spawned at `location`, with `refs` initial references and
/// `scheduled` set; its site is found in (or added to) `sites`.
#[inline] // See `task::spawn`.
pub(crate) fn allocate<F>(
    sites: &mut Sites,
    future: F,
    location: &'static Location<'static>,
    id: u64,
    refs: u32,
) -> NonNull<Header>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let cell = Box::new(TaskCell {
        header: Header {
            state: State::new(refs),
            awaiter: Cell::new(NO_AWAITER),
            site: sites.get::<F>(location),
            id,
            extra: Cell::new(None),
        },
        stage: UnsafeCell::new(StageData {
            future: ManuallyDrop::new(future),
        }),
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

/// Runs `f` on a pointer to the stage. Every access to the stage goes through here (or, when
/// the cell is freed, through `stage.with`), so that loom sees it.
///
/// # Safety
///
/// `ptr` is the header of a live `TaskCell<F>`; the caller is on the owner loop's thread (or
/// holds the last reference) and no other reference into the stage is alive.
#[inline(always)]
unsafe fn with_stage<F: Future, R>(
    ptr: NonNull<Header>,
    f: impl FnOnce(*mut StageData<F>) -> R,
) -> R {
    // SAFETY: the header is the first field of a repr(C) TaskCell<F> (caller's contract); only
    // the stage field is borrowed, and shared: it is an `UnsafeCell`.
    let stage = unsafe { &(*ptr.cast::<TaskCell<F>>().as_ptr()).stage };
    stage.with_mut(f)
}

/// Drops what the stage holds, in place (a pinned future is never moved), after marking it
/// `Empty`, so that code run by the drop (drop guards, wakes, even another handle of this
/// task) finds nothing to touch. A panic in the drop is caught and dropped: the future or the
/// output is gone either way.
///
/// # Safety
///
/// As for [`with_stage`].
unsafe fn drop_stage<F: Future>(ptr: NonNull<Header>) {
    // SAFETY: the header outlives this call (caller's contract).
    let state = unsafe { &ptr.as_ref().state };
    let held = state.stage();
    if held == Stage::Empty {
        return;
    }
    state.set_stage(Stage::Empty);
    let drop_held = |stage: *mut StageData<F>| {
        let _ = catch_unwind(AssertUnwindSafe(|| match held {
            // SAFETY: `held` says which field is initialised; it is dropped once, as the stage
            // now says `Empty`.
            Stage::Future => unsafe { ManuallyDrop::drop(&mut (*stage).future) },
            // SAFETY: as above.
            Stage::Output => unsafe { ManuallyDrop::drop(&mut (*stage).output) },
            Stage::Empty => {}
        }));
    };
    // SAFETY: caller's contract.
    unsafe { with_stage::<F, _>(ptr, drop_held) };
}

/// Stores the output in the emptied stage.
///
/// # Safety
///
/// As for [`with_stage`]; the stage is `Empty`.
unsafe fn store_output<F: Future>(ptr: NonNull<Header>, output: Output<F::Output>) {
    // SAFETY: the header outlives this call (caller's contract).
    let state = unsafe { &ptr.as_ref().state };
    debug_assert_eq!(state.stage(), Stage::Empty, "ringloop: output stored twice");
    // SAFETY: caller's contract; the stage is empty, so nothing is overwritten that needed a
    // drop.
    unsafe {
        with_stage::<F, _>(ptr, |stage| {
            (&raw mut (*stage).output).write(ManuallyDrop::new(output));
        });
    }
    state.set_stage(Stage::Output);
}

/// # Safety
///
/// `ptr` is the header of a live `TaskCell<F>`, on the owner loop's thread, not re-entered.
unsafe fn poll<F: Future + 'static>(ptr: NonNull<Header>) -> bool {
    // SAFETY: the header outlives this call (the caller holds a reference).
    let state = unsafe { &ptr.as_ref().state };
    if state.stage() != Stage::Future {
        return true;
    }
    // The waker for this poll borrows the loop's reference (no count change); `ManuallyDrop`
    // keeps it from releasing a reference it never took.
    // SAFETY: the cell is alive for the whole poll (the caller holds a reference).
    let waker = ManuallyDrop::new(unsafe { Waker::from_raw(raw_waker(ptr)) });
    let mut cx = Context::from_waker(&waker);
    let poll_stage = |stage: *mut StageData<F>| {
        catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: the stage holds the future (checked above). It is pinned: the cell never
            // moves and the future is dropped in place.
            unsafe { Pin::new_unchecked(&mut *(*stage).future) }.poll(&mut cx)
        }))
    };
    // SAFETY: caller's contract. Nothing else touches the stage during the poll: other
    // handles of this task read only the header while it is RUNNING.
    let polled = unsafe { with_stage::<F, _>(ptr, poll_stage) };
    let output = match polled {
        Ok(Poll::Pending) => return false,
        // asyncio: a task cancelled right before its coroutine returns ends cancelled.
        Ok(Poll::Ready(value)) if state.is_cancel_requested() => {
            drop_quietly(value);
            Err(Box::new(JoinError::Cancelled))
        }
        Ok(Poll::Ready(value)) => Ok(value),
        Err(payload) => {
            let message = super::panic_message(&*payload);
            // A payload whose own drop panics must not unwind out of the poll.
            drop_quietly(payload);
            Err(Box::new(JoinError::Panicked(message)))
        }
    };
    if matches!(output.as_ref().map_err(|e| &**e), Err(JoinError::Cancelled)) {
        state.mark_cancelled();
    }
    // SAFETY: caller's contract; the poll is over.
    unsafe {
        drop_stage::<F>(ptr);
        store_output::<F>(ptr, output);
    }
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
    unsafe { ptr.as_ref() }.state.mark_cancelled();
    // SAFETY: caller's contract.
    unsafe {
        drop_stage::<F>(ptr);
        store_output::<F>(ptr, Err(Box::new(JoinError::Cancelled)));
    }
}

/// # Safety
///
/// As for [`poll`].
unsafe fn drop_output<F: Future + 'static>(ptr: NonNull<Header>) {
    // SAFETY: caller's contract.
    if unsafe { ptr.as_ref() }.state.stage() == Stage::Output {
        // SAFETY: caller's contract.
        unsafe { drop_stage::<F>(ptr) };
    }
}

/// # Safety
///
/// As for [`poll`]; `dst` points to a valid `Option<Output<F::Output>>`.
unsafe fn take_output<F: Future + 'static>(ptr: NonNull<Header>, dst: *mut ()) {
    // SAFETY: caller's contract.
    let state = unsafe { &ptr.as_ref().state };
    // Only an output is moved out: a future is pinned and must not move.
    if state.stage() != Stage::Output {
        return;
    }
    state.set_stage(Stage::Empty);
    // SAFETY: caller's contract; the stage held the output, which is moved out once (the stage
    // now says `Empty`).
    let out = unsafe { with_stage::<F, _>(ptr, |stage| ManuallyDrop::take(&mut (*stage).output)) };
    // SAFETY: caller's contract on `dst`.
    unsafe { *dst.cast::<Option<Output<F::Output>>>() = Some(out) };
}

/// # Safety
///
/// As for [`poll`]. The pointer is valid until the stage next changes.
unsafe fn output_ref<F: Future + 'static>(ptr: NonNull<Header>) -> *const () {
    // SAFETY: caller's contract.
    if unsafe { ptr.as_ref() }.state.stage() != Stage::Output {
        return std::ptr::null();
    }
    // SAFETY: caller's contract; the stage holds the output (`ManuallyDrop` is transparent).
    unsafe { with_stage::<F, _>(ptr, |stage| (&raw const (*stage).output).cast()) }
}

/// # Safety
///
/// `ptr` is the header of a `TaskCell<F>` whose last reference was just released.
unsafe fn dealloc<F: Future + 'static>(ptr: NonNull<Header>) {
    // SAFETY: caller's contract: nobody else refers to the cell.
    let cell = unsafe { Box::from_raw(ptr.cast::<TaskCell<F>>().as_ptr()) };
    // Read under the stage's cell, so that loom checks this read comes after the loop's last
    // write to the stage (every change of `State::stage` is made with the stage's cell).
    let empty = cell
        .stage
        .with(|_| cell.header.state.stage() == Stage::Empty);
    if empty {
        // Completion took the awaiter out, as it did the future.
        debug_assert_eq!(
            cell.header.awaiter.get(),
            NO_AWAITER,
            "ringloop: a task cell freed with an awaiter"
        );
        // The union needs no drop; the header's fields drop with the box.
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
        unsafe { (self.header().vtable().poll)(self.ptr) }
    }

    /// Drops the future and records cancellation.
    pub(crate) fn cancel_now(&self) {
        // SAFETY: as for `poll`.
        unsafe { (self.header().vtable().cancel)(self.ptr) }
    }

    pub(crate) fn drop_output(&self) {
        // Most often the handle took the output: then there is nothing to call.
        if self.header().state.stage() == Stage::Output {
            // SAFETY: as for `poll`.
            unsafe { (self.header().vtable().drop_output)(self.ptr) }
        }
    }

    /// # Safety
    ///
    /// `T` is the task's output type.
    pub(crate) unsafe fn take_output<T>(&self) -> Option<Result<T, JoinError>> {
        let mut out: Option<Output<T>> = None;
        // SAFETY: as for `poll`; `out` has the type the vtable writes (caller's contract).
        unsafe { (self.header().vtable().take_output)(self.ptr, (&raw mut out).cast()) };
        out.map(|r| r.map_err(|e| *e))
    }

    /// # Safety
    ///
    /// `T` is the task's output type; the reference is used before the stage changes.
    pub(crate) unsafe fn output_ref<T>(&self) -> Option<&Output<T>> {
        // SAFETY: as for `poll`; the type is the caller's contract.
        let p = unsafe { (self.header().vtable().output_ref)(self.ptr) };
        // SAFETY: non-null means it points at the stored output of type Output<T>.
        (!p.is_null()).then(|| unsafe { &*p.cast::<Output<T>>() })
    }

    /// Asks the loop to poll the task (again): from any thread.
    pub(crate) fn schedule(&self) {
        // SAFETY: we hold a reference.
        unsafe { schedule(self.ptr, false) }
    }
}

/// How [`RawTask::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ran {
    /// Polled; the future is waiting for a wake.
    Pending,
    /// The output is stored (returned, panicked, or the future was dropped by a requested
    /// cancellation): the caller calls [`RawTask::complete`].
    Finished,
    /// The task had completed already (a stale queue entry): nothing was done.
    Stale,
}

impl RawTask {
    /// Loop thread: runs a task taken from a run queue once. Clears `scheduled` first (a wake
    /// during or after the poll queues the task again), then polls the future with `current`
    /// set to the task, or drops the future if a cancellation was requested.
    #[inline]
    pub(crate) fn run(&self, current: &Cell<Option<NonNull<Header>>>) -> Ran {
        let state = &self.header().state;
        match state.start_run() {
            Run::Stale => Ran::Stale,
            Run::Cancel => {
                self.cancel_now();
                Ran::Finished
            }
            Run::Poll => {
                let prev = current.replace(Some(self.ptr));
                let done = self.poll();
                current.set(prev);
                state.end_poll();
                if done { Ran::Finished } else { Ran::Pending }
            }
        }
    }

    /// Loop thread: the bookkeeping once the output is stored: marks the task complete, takes
    /// it out of the loop's registry (`leave_registry` gets the header and returns the
    /// registry's reference, which is released last), wakes the awaiter, runs the done
    /// callbacks (all of them see the output), and drops the output if no handle owns it.
    pub(crate) fn complete(&self, leave_registry: impl FnOnce(NonNull<Header>) -> Option<RawTask>) {
        let header = self.header();
        header.state.complete();
        let in_registry = leave_registry(self.ptr);
        if let Some(waker) = header.take_awaiter() {
            scheduler::wake_guarded(waker);
        }
        let callbacks = header
            .extra
            .take()
            .map(|mut extra| {
                let cbs: Vec<DoneCallback> = extra.callbacks.take().collect();
                header.extra.set(Some(extra));
                cbs
            })
            .unwrap_or_default();
        header.state.begin_callbacks();
        for callback in callbacks {
            let ptr = self.ptr;
            run_guarded("a task's done callback", move || callback(ptr));
        }
        if header.state.end_callbacks() {
            self.drop_output();
        }
        drop(in_registry);
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
#[inline]
unsafe fn inc_ref(ptr: NonNull<Header>) {
    // SAFETY: caller's contract.
    unsafe { ptr.as_ref() }.state.ref_inc();
}

/// # Safety
///
/// `ptr` is a live task header and the caller gives up one counted reference.
#[inline]
unsafe fn dec_ref(ptr: NonNull<Header>) {
    // SAFETY: caller's contract.
    let header = unsafe { ptr.as_ref() };
    if header.state.ref_dec() {
        let dealloc = header.vtable().dealloc;
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
    if !header.state.schedule() {
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The header is the per-task cost beyond the future: keep it from growing unnoticed
    /// (40 bytes and a 16-byte stage make a small task a 56-byte allocation, which glibc's
    /// malloc serves from a 64-byte chunk).
    #[test]
    fn header_stays_small() {
        assert_eq!(
            std::mem::size_of::<State>(),
            12,
            "the awaiter key fills its word"
        );
        assert!(
            std::mem::size_of::<Header>() <= 40,
            "{}",
            std::mem::size_of::<Header>()
        );
        let small = std::mem::size_of::<StageData<std::future::Ready<usize>>>();
        assert!(small <= 16, "stage of a ready usize: {small}");
        let cell = std::mem::size_of::<TaskCell<std::future::Ready<usize>>>();
        assert!(cell <= 56, "cell of a ready usize: {cell}");
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Model-checks the task cell with loom, over the real code: the state transitions
    //! (`state.rs`), the reference count, the stage (a loom `UnsafeCell`, so an access from
    //! another thread without a happens-before edge fails the model), the `Waker` vtable, the
    //! inject queue and park word (`inject.rs`), and the loop's two steps on a task,
    //! [`RawTask::run`] and [`RawTask::complete`].
    //!
    //! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_tests`.
    //!
    //! The loop thread of each model is [`ModelLoop`]: `Local::tick` reduced to what tasks need
    //! (run the queued tasks, drain the inject queue, park when idle), with the driver's wait
    //! replaced by `Shared::wait_for_unpark`, the loom stand-in for the eventfd. No loop is
    //! installed in the thread-local context, so every wake, on either thread, takes the
    //! cross-thread path: the inject queue.

    use super::*;
    use crate::runtime::inject::Injected;
    use crate::runtime::task::Task;
    use crate::runtime::task::registry::Registry;
    use loom::sync::Mutex;
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::thread;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;
    use std::sync::atomic::AtomicUsize;

    /// `loom::model`, reporting how many interleavings it explored (`--nocapture` shows it).
    fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
        model_bounded(name, None, f);
    }

    /// [`model`] with at most `preemptions` preemptions per interleaving (`None`: all
    /// interleavings; `LOOM_MAX_PREEMPTIONS` overrides).
    fn model_bounded(name: &str, preemptions: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
        let iterations = Arc::new(AtomicUsize::new(0));
        let counted = iterations.clone();
        let started = std::time::Instant::now();
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = preemptions;
        }
        builder.check(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            f();
        });
        eprintln!(
            "loom model {name}: {} interleavings in {:.2?}",
            drops(&iterations),
            started.elapsed()
        );
    }

    /// The loop side of a model (see the module docs).
    struct ModelLoop {
        shared: Arc<Shared>,
        queue: RefCell<VecDeque<RawTask>>,
        registry: RefCell<Registry>,
        sites: RefCell<Sites>,
        current: Cell<Option<NonNull<Header>>>,
    }

    impl ModelLoop {
        fn new() -> ModelLoop {
            let shared = Arc::new(Shared::new(None));
            ModelLoop {
                sites: RefCell::new(Sites::new(shared.clone())),
                shared,
                queue: RefCell::new(VecDeque::new()),
                registry: RefCell::new(Registry::new()),
                current: Cell::new(None),
            }
        }

        /// `Local::spawn`: three references (handle, registry, queue entry).
        fn spawn<F: Future + 'static>(&self, future: F) -> Task<F::Output> {
            let ptr = allocate(
                &mut self.sites.borrow_mut(),
                future,
                Location::caller(),
                1,
                3,
            );
            // SAFETY: `allocate` counted three references; each RawTask takes one.
            let (handle, in_registry, in_queue) = unsafe {
                (
                    RawTask::from_owned(ptr),
                    RawTask::from_owned(ptr),
                    RawTask::from_owned(ptr),
                )
            };
            self.registry.borrow_mut().insert(in_registry);
            self.queue.borrow_mut().push_back(in_queue);
            // SAFETY: the cell was allocated for F.
            unsafe { Task::from_raw(handle) }
        }

        /// `Local::run_task` for every queued task.
        fn run_queued(&self) {
            loop {
                let task = self.queue.borrow_mut().pop_front();
                let Some(task) = task else { break };
                if task.run(&self.current) == Ran::Finished {
                    task.complete(|ptr| self.registry.borrow_mut().remove(ptr));
                }
            }
        }

        /// `Local::drain_injected`.
        fn drain(&self) {
            let mut items = Vec::new();
            self.shared.drain_into(&mut items);
            for item in items {
                match item {
                    Injected::Wake(task) => {
                        // `scheduled` lets one queue entry exist per task at a time.
                        let mut queue = self.queue.borrow_mut();
                        assert!(!queue.iter().any(|t| t.ptr() == task.ptr()), "queued twice");
                        queue.push_back(task);
                    }
                    Injected::Call(f) => f(),
                }
            }
        }

        /// Runs until `done()`, parking when idle as `Local::tick` does. A wake-up that is lost
        /// leaves this thread waiting for ever: loom reports the deadlock.
        fn run_until(&self, done: impl Fn() -> bool) {
            loop {
                self.run_queued();
                if done() {
                    return;
                }
                if self.shared.has_pending() {
                    self.drain();
                } else if self.shared.prepare_park() {
                    self.shared.wait_for_unpark();
                    self.shared.finish_park();
                }
            }
        }

        /// After the other threads were joined: runs what is left (stale wakes find the task
        /// complete), checks every task left the registry, and closes the queue.
        fn finish(self) {
            self.drain();
            self.run_queued();
            assert!(self.registry.borrow().is_empty(), "a task never completed");
            drop(self.shared.close());
            assert!(
                self.sites.borrow_mut().only_cached(),
                "a task cell was not freed (or was freed twice)"
            );
            let shared = self.shared.clone();
            drop(self);
            assert_eq!(Arc::strong_count(&shared), 1, "a site outlived its loop");
        }
    }

    impl ModelLoop {
        /// `Local::close`'s part for tasks: refuse pushes and drop what was queued, cancel
        /// every task left (its future dropped here), drop the run queue.
        fn close(self) {
            drop(self.shared.close());
            let tasks = self.registry.borrow().tasks();
            for task in tasks {
                if !task.header().state.is_complete() {
                    task.cancel_now();
                    task.complete(|ptr| self.registry.borrow_mut().remove(ptr));
                }
            }
            self.queue.borrow_mut().clear();
            assert!(self.registry.borrow().is_empty());
        }
    }

    /// Counts its drops and checks they happen on the loop thread (futures and outputs may be
    /// `!Send`).
    struct DropProbe {
        drops: Arc<AtomicUsize>,
        on: thread::ThreadId,
    }

    impl DropProbe {
        fn new() -> (DropProbe, Arc<AtomicUsize>) {
            let drops = Arc::new(AtomicUsize::new(0));
            let probe = DropProbe {
                drops: drops.clone(),
                on: thread::current().id(),
            };
            (probe, drops)
        }
    }

    impl Drop for DropProbe {
        fn drop(&mut self) {
            assert_eq!(
                thread::current().id(),
                self.on,
                "dropped off the loop thread"
            );
            self.drops
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn drops(counter: &AtomicUsize) -> usize {
        counter.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Polls a task handle once for its output, outside any task.
    fn output<T>(task: &Task<T>) -> Option<Result<T, super::JoinError>> {
        match task.poll_output(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(out) => Some(out),
            Poll::Pending => None,
        }
    }

    /// Where a future leaves its waker for another thread.
    type Slot = Arc<Mutex<Option<Waker>>>;

    fn take_waker(slot: &Slot) -> Waker {
        slot.lock()
            .unwrap()
            .take()
            .expect("the first poll left its waker")
    }

    /// (a) A wake from another thread races the loop's next poll of the task. The task is
    /// queued (it yielded) when the waker thread sets `ready` (relaxed: only the task's
    /// `scheduled` flag or the inject queue can make it visible) and wakes it. Either the loop's
    /// clear of `scheduled` comes after the wake, and that poll sees `ready`; or the wake finds
    /// the flag clear and queues the task again. Never neither: the task completes.
    #[test]
    fn wake_from_another_thread_racing_a_poll_is_not_lost() {
        model("wake_from_another_thread_racing_a_poll_is_not_lost", || {
            let lp = ModelLoop::new();
            let ready = Arc::new(AtomicBool::new(false));
            let slot: Slot = Arc::new(Mutex::new(None));
            let polls = Rc::new(Cell::new(0));
            let (probe, future_drops) = DropProbe::new();
            let task = lp.spawn({
                let (ready, slot, polls) = (ready.clone(), slot.clone(), polls.clone());
                std::future::poll_fn(move |cx| {
                    let _ = &probe;
                    polls.set(polls.get() + 1);
                    if polls.get() == 1 {
                        *slot.lock().unwrap() = Some(cx.waker().clone());
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    if ready.load(Ordering::Relaxed) {
                        Poll::Ready(polls.get())
                    } else {
                        Poll::Pending
                    }
                })
            });
            lp.run_queued();
            let waker = take_waker(&slot);
            let waker_thread = thread::spawn(move || {
                ready.store(true, Ordering::Relaxed);
                waker.wake();
            });
            lp.run_until(|| task.is_done());
            waker_thread.join().unwrap();
            let polled = output(&task).expect("done").expect("returned");
            assert!((2..=3).contains(&polled), "polled {polled} times");
            assert_eq!(drops(&future_drops), 1);
            drop(task);
            lp.finish();
        });
    }

    /// (a, two wakers) Two threads wake the task while the loop polls it: the task is queued
    /// once at a time (`ModelLoop::drain` checks), polled until it sees both wakes' data
    /// (relaxed: only `scheduled` and the inject queue order it), and every reference the
    /// wakers took is released.
    #[test]
    fn two_wakes_from_other_threads_racing_a_poll() {
        // Three threads: all ~736,000 interleavings take ~45 s; three preemptions, under a second.
        model_bounded(
            "two_wakes_from_other_threads_racing_a_poll",
            Some(3),
            || {
                let lp = ModelLoop::new();
                let ready = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
                let slot: Slot = Arc::new(Mutex::new(None));
                let mut first = true;
                let task = lp.spawn({
                    let (ready, slot) = (ready.clone(), slot.clone());
                    std::future::poll_fn(move |cx| {
                        if std::mem::take(&mut first) {
                            *slot.lock().unwrap() = Some(cx.waker().clone());
                        }
                        if ready.load(Ordering::Relaxed) == 2 {
                            Poll::Ready(())
                        } else {
                            Poll::Pending
                        }
                    })
                });
                lp.run_queued();
                let waker = take_waker(&slot);
                let wakers: Vec<_> = [waker.clone(), waker]
                    .into_iter()
                    .map(|waker| {
                        let ready = ready.clone();
                        thread::spawn(move || {
                            ready.fetch_add(1, Ordering::Relaxed);
                            waker.wake();
                        })
                    })
                    .collect();
                lp.run_until(|| task.is_done());
                for w in wakers {
                    w.join().unwrap();
                }
                drop(task);
                lp.finish();
            },
        );
    }

    /// (b) A wake from another thread races `Task::cancel`: the future is polled no more after
    /// the cancel, dropped exactly once on the loop thread, and the task ends `Cancelled`,
    /// whichever of the two queued it (or both did).
    #[test]
    fn wake_racing_cancellation() {
        model("wake_racing_cancellation", || {
            let lp = ModelLoop::new();
            let slot: Slot = Arc::new(Mutex::new(None));
            let polls = Rc::new(Cell::new(0));
            let (probe, future_drops) = DropProbe::new();
            let task = lp.spawn({
                let (slot, polls) = (slot.clone(), polls.clone());
                std::future::poll_fn(move |cx| {
                    let _ = &probe;
                    polls.set(polls.get() + 1);
                    *slot.lock().unwrap() = Some(cx.waker().clone());
                    Poll::<()>::Pending
                })
            });
            lp.run_queued();
            let waker = take_waker(&slot);
            let waker_thread = thread::spawn(move || waker.wake());
            assert!(task.cancel(), "not finished yet");
            lp.run_until(|| task.is_done());
            waker_thread.join().unwrap();
            assert_eq!(polls.get(), 1, "polled after the cancel");
            assert_eq!(drops(&future_drops), 1);
            assert!(task.is_cancelled());
            assert!(output(&task).expect("done").unwrap_err().is_cancelled());
            drop(task);
            lp.finish();
        });
    }

    /// (c) The last reference is dropped on another thread: a waker clone is dropped there
    /// (after waking the task, if `wake_first`: then the inject queue's entry may be the
    /// last reference) while the loop completes the detached task (its handle was dropped
    /// first) and drops the output. Whoever drops the last reference frees the cell, exactly
    /// once (`ModelLoop::finish` checks the cell's `Arc<Shared>` was released exactly once);
    /// the loom stage cell checks that the free, which reads the stage, happens after the
    /// loop's last write to it (the count's release and acquire fence); the future and the
    /// output are dropped exactly once, on the loop thread.
    fn last_reference_on_another_thread(wake_first: bool) {
        let lp = ModelLoop::new();
        let slot: Slot = Arc::new(Mutex::new(None));
        let (probe, future_drops) = DropProbe::new();
        let (output_probe, output_drops) = DropProbe::new();
        let mut output_probe = Some(output_probe);
        let mut first = true;
        let task = lp.spawn({
            let slot = slot.clone();
            std::future::poll_fn(move |cx| {
                let _ = &probe;
                if std::mem::take(&mut first) {
                    *slot.lock().unwrap() = Some(cx.waker().clone());
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(output_probe.take().expect("polled once more"))
            })
        });
        lp.run_queued();
        let waker = take_waker(&slot);
        let other = thread::spawn(move || {
            if wake_first {
                waker.wake_by_ref();
            }
            drop(waker);
        });
        drop(task);
        lp.run_until(|| lp.registry.borrow().is_empty());
        assert_eq!(drops(&future_drops), 1);
        assert_eq!(
            drops(&output_drops),
            1,
            "the detached output is dropped at completion"
        );
        other.join().unwrap();
        lp.finish();
    }

    #[test]
    fn last_reference_dropped_on_another_thread() {
        model("last_reference_dropped_on_another_thread", || {
            last_reference_on_another_thread(false)
        });
    }

    #[test]
    fn last_reference_dropped_on_another_thread_after_a_wake() {
        model(
            "last_reference_dropped_on_another_thread_after_a_wake",
            || last_reference_on_another_thread(true),
        );
    }

    /// A wake from another thread races the loop's close: the push lands before the close
    /// (the close drops the entry) or is refused (the waker's thread drops the reference,
    /// perhaps the last one: the cell is freed there, holding neither future nor output). The
    /// future is dropped exactly once, on the loop thread, and the cell is freed exactly once.
    #[test]
    fn wake_racing_the_loop_closing() {
        model("wake_racing_the_loop_closing", || {
            let lp = ModelLoop::new();
            let shared = lp.shared.clone();
            let slot: Slot = Arc::new(Mutex::new(None));
            let (probe, future_drops) = DropProbe::new();
            let task = lp.spawn({
                let slot = slot.clone();
                std::future::poll_fn(move |cx| {
                    let _ = &probe;
                    *slot.lock().unwrap() = Some(cx.waker().clone());
                    Poll::<()>::Pending
                })
            });
            lp.run_queued();
            let waker = take_waker(&slot);
            let waker_thread = thread::spawn(move || waker.wake());
            drop(task);
            lp.close();
            assert_eq!(drops(&future_drops), 1);
            waker_thread.join().unwrap();
            assert_eq!(
                Arc::strong_count(&shared),
                1,
                "the cell was not freed exactly once"
            );
        });
    }

    /// (d) A `Task` awaited while it completes, the completion driven from another thread.
    /// `Task` is `!Send` by design, so what crosses threads is what a `PoolFuture` or a
    /// `Handle::spawn` result does: a worker thread publishes a value and wakes the waiting
    /// task by value (`Waker::wake`: the owned path, whose reference rides the inject queue).
    /// Task `inner` waits for that value (`Cross` below stands in for the pool's shared state);
    /// task `outer` awaits `inner`'s `Task` (the real `Join`: `join_waker`, `complete`'s wake,
    /// `take_output`). The outer task gets the worker's value; both cells are freed once.
    #[test]
    fn task_awaited_while_another_thread_completes_it() {
        /// The pool's completion state, reduced: a value and the waiter's waker.
        #[derive(Default)]
        struct Cross {
            value: Mutex<(Option<u32>, Option<Waker>)>,
        }

        model("task_awaited_while_another_thread_completes_it", || {
            let lp = ModelLoop::new();
            let cross = Arc::new(Cross::default());
            let inner = lp.spawn({
                let cross = cross.clone();
                std::future::poll_fn(move |cx| {
                    let mut g = cross.value.lock().unwrap();
                    match g.0.take() {
                        Some(v) => Poll::Ready(v),
                        None => {
                            g.1 = Some(cx.waker().clone());
                            Poll::Pending
                        }
                    }
                })
            });
            let outer = lp.spawn(async move { inner.await.expect("inner returned") + 1 });
            let worker = {
                let cross = cross.clone();
                thread::spawn(move || {
                    let waker = {
                        let mut g = cross.value.lock().unwrap();
                        g.0 = Some(41);
                        g.1.take()
                    };
                    if let Some(w) = waker {
                        w.wake();
                    }
                })
            };
            lp.run_until(|| outer.is_done());
            worker.join().unwrap();
            assert_eq!(output(&outer).expect("done").expect("returned"), 42);
            drop(outer);
            lp.finish();
        });
    }
}
