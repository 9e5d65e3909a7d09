//! Tasks: `spawn`, the `Task<T>` handle, `TaskRef`, `JoinError` and done callbacks.
//!
//! # How a task lives
//!
//! `spawn` allocates one cell ([`raw`]) holding a header and the future, with three references:
//! the `Task` handle, the loop's registry of live tasks, and the run-queue entry. The loop polls
//! the future when the task is scheduled; wakers (which are `Send + Sync`) schedule it again,
//! straight into the local run queue on the loop's own thread, or through the inject queue from
//! any other thread.
//!
//! When the future returns, panics, or is cancelled, the loop stores the output in the cell,
//! marks it `COMPLETE`, leaves the registry, wakes the awaiter and runs the done callbacks
//! (`RawTask::run` and `RawTask::complete`). Every change to the task's state goes through
//! the named transitions of [`state`], which documents the bits and who may touch them.
//!
//! Cancellation follows asyncio (DESIGN.md section 4): `cancel()` marks the task and schedules
//! it; the loop then drops the future instead of polling it. Awaiting a task ties it to the
//! awaiter: dropping the [`Join`] future before the task finished cancels it. Dropping a `Task`
//! handle that was never awaited detaches: the task runs on.

pub(crate) mod raw;
pub(crate) mod registry;
pub(crate) mod state;

use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::panic::Location;
use std::pin::Pin;
use std::ptr::NonNull;
use std::rc::Rc;
use std::task::{Context, Poll};

use raw::RawTask;
use state::CancelRequest;

use crate::runtime::context;

/// Why a task produced no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinError {
    /// The task was cancelled (by [`Task::cancel`], by dropping its awaiter, or because the
    /// runtime closed) before it finished.
    Cancelled,
    /// The task's future panicked; this is the panic message.
    Panicked(String),
}

impl JoinError {
    /// True for [`JoinError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JoinError::Cancelled)
    }

    /// True for [`JoinError::Panicked`].
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panicked(_))
    }

    /// The panic as a payload for [`std::panic::resume_unwind`], so that a caller can carry a
    /// task's panic on (tokio's `JoinError::into_panic`).
    ///
    /// The payload is the panic's message as a `String`: what `panic!` with a message gives
    /// (a `&str` payload comes back as the equal `String`). A payload of another type
    /// (`std::panic::panic_any`) is not kept: `JoinError` is `Clone + Eq` and carries text.
    ///
    /// # Panics
    ///
    /// If the error is [`JoinError::Cancelled`]; see [`try_into_panic`](Self::try_into_panic).
    ///
    /// # Examples
    ///
    /// ```
    /// let err = ringloop::run(async { ringloop::spawn(async { panic!("deep") }).await })
    ///     .unwrap_err();
    /// let resumed = std::panic::catch_unwind(|| std::panic::resume_unwind(err.into_panic()));
    /// assert_eq!(resumed.unwrap_err().downcast_ref::<String>().unwrap(), "deep");
    /// ```
    pub fn into_panic(self) -> Box<dyn std::any::Any + Send + 'static> {
        self.try_into_panic()
            .expect("JoinError::into_panic on a cancelled task, not a panic")
    }

    /// The panic's payload (see [`into_panic`](Self::into_panic)), or the error itself if the
    /// task was cancelled.
    pub fn try_into_panic(self) -> Result<Box<dyn std::any::Any + Send + 'static>, JoinError> {
        match self {
            JoinError::Panicked(msg) => Ok(Box::new(msg)),
            other => Err(other),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => f.write_str("task was cancelled before it finished"),
            JoinError::Panicked(msg) => write!(f, "task panicked: {msg}"),
        }
    }
}

impl std::error::Error for JoinError {}

pub use crate::callbacks::CallbackId;
pub(crate) use crate::callbacks::panic_message;

/// Where a task is in its life, as reported by [`TaskRef::state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Being polled right now (it is the current task).
    Running,
    /// Waiting in a run queue to be polled.
    Scheduled,
    /// Waiting for a wake-up (a timer, I/O, another task...).
    Waiting,
    /// Cancellation was requested; the future is dropped the next time the loop reaches it.
    Cancelling,
    /// Finished: returned, panicked or was cancelled.
    Done,
}

/// Spawns `future` as a task on the current thread's runtime: asyncio's `create_task`.
///
/// The task starts running at the loop's next scheduling point. The future need not be `Send`:
/// it is polled and dropped only on this thread. Dropping the returned [`Task`] detaches it (it
/// runs to completion); awaiting it gives `Result<T, JoinError>`.
///
/// # Panics
///
/// Outside a ringloop runtime (use it inside [`Runtime::block_on`](crate::Runtime::block_on),
/// [`ringloop::run`](crate::run) or a task).
///
/// # Examples
///
/// ```
/// let total = ringloop::run(async {
///     let task = ringloop::spawn(async { 40 + 2 });
///     task.await.unwrap()
/// });
/// assert_eq!(total, 42);
/// ```
#[track_caller]
// Inlined down to `raw::allocate` (each layer is `#[inline]`), so that the caller's future is
// written straight into the new cell: moved through the layers in memory, it was read back by
// wider loads than the stores that had just written it, a store-forwarding stall that cost
// about 5 ns of a ~105 ns spawn.
#[inline]
pub fn spawn<F>(future: F) -> Task<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let location = Location::caller();
    context::with_local(|local| local.spawn(future, location)).unwrap_or_else(|| {
        panic!(
            "ringloop::spawn called outside a ringloop runtime (at {location}); call it from \
             inside Runtime::block_on, ringloop::run or a task"
        )
    })
}

/// A handle to a spawned task: asyncio's `Task`.
///
/// Await it (it is [`IntoFuture`]) for the task's result. Awaiting ties the task to the
/// awaiter: dropping that future early cancels the task (use [`shield`](crate::shield) to
/// prevent it). Dropping a `Task` that is not being awaited detaches the task, which keeps
/// running.
///
/// A `Task` stays on the thread of its runtime (it is neither `Send` nor `Sync`); from other
/// threads use [`Handle::spawn`](crate::Handle::spawn).
pub struct Task<T> {
    raw: NonNull<raw::Header>,
    _marker: PhantomData<NotSendOutput<T>>,
}

/// Makes `Task<T>` `!Send + !Sync` (it touches loop-thread-only state) and covariant in `T`.
type NotSendOutput<T> = (Rc<()>, fn() -> T);

impl<T> Task<T> {
    /// # Safety
    ///
    /// `raw` is a task whose output type is `T`; the handle takes over its reference.
    pub(crate) unsafe fn from_raw(raw: RawTask) -> Task<T> {
        Task {
            raw: raw.into_ptr(),
            _marker: PhantomData,
        }
    }

    fn header(&self) -> &raw::Header {
        // SAFETY: the handle holds a reference, so the cell is alive.
        unsafe { self.raw.as_ref() }
    }

    /// A borrowed view of the cell as a `RawTask`, not dropped.
    fn raw(&self) -> std::mem::ManuallyDrop<RawTask> {
        // SAFETY: the handle's reference keeps the cell alive; ManuallyDrop releases nothing.
        std::mem::ManuallyDrop::new(unsafe { RawTask::from_owned(self.raw) })
    }

    /// The task's id, unique within its runtime (asyncio tasks have none; tokio's do).
    pub fn id(&self) -> u64 {
        self.header().id
    }

    /// The task's name: the one set with [`Task::set_name`], else `Task-{id}` (as asyncio).
    pub fn name(&self) -> String {
        name_of(self.header())
    }

    /// Names the task (shown by [`all_tasks`] and in `Debug` output).
    pub fn set_name(&self, name: impl Into<String>) {
        let name = name.into();
        self.header().with_extra(|e| e.name = Some(name));
    }

    /// Where the task was spawned.
    pub fn location(&self) -> &'static Location<'static> {
        self.header().location()
    }

    /// True once the task finished: returned, panicked, or was cancelled.
    pub fn is_done(&self) -> bool {
        self.header().state.is_complete()
    }

    /// True if the task was cancelled, or a cancellation was requested and will take effect at
    /// the task's next scheduling point (a ringloop task cannot refuse it).
    pub fn is_cancelled(&self) -> bool {
        is_cancelled(self.header())
    }

    /// Requests cancellation: at its next scheduling point the task's future is dropped and the
    /// task finishes with [`JoinError::Cancelled`]; done callbacks still run. Returns false if
    /// the task had already finished, true otherwise.
    pub fn cancel(&self) -> bool {
        cancel(&self.raw())
    }

    /// Adds a callback run once when the task finishes, with the task as its argument. If the
    /// task is already done, the callback is scheduled with [`call_soon`](crate::call_soon)
    /// (or run at once when no runtime is running on this thread).
    pub fn add_done_callback(&self, f: impl FnOnce(&Task<T>) + 'static) -> CallbackId
    where
        T: 'static,
    {
        let callback: raw::DoneCallback = Box::new(move |ptr| {
            // A view of the task for the callback; it owns no reference, so it is never dropped.
            let task = std::mem::ManuallyDrop::new(Task::<T> {
                raw: ptr,
                _marker: PhantomData,
            });
            f(&task);
        });
        let header = self.header();
        if header.state.is_complete() {
            let raw = (*self.raw()).clone();
            let run = move || callback(raw.ptr());
            if context::with_local(|_| ()).is_some() {
                crate::runtime::time::call_soon(run);
            } else {
                run();
            }
            header.with_extra(|e| e.callbacks.new_id())
        } else {
            header.with_extra(|e| e.callbacks.add(callback))
        }
    }

    /// Removes a done callback that has not run yet; true if it was found.
    pub fn remove_done_callback(&self, id: CallbackId) -> bool {
        let removed = self.header().with_extra(|e| e.callbacks.remove(id));
        // Dropped here, outside `with_extra`, in case the closure's drop touches this task.
        removed.is_some()
    }

    /// The result, if the task is done and its output has not been taken by awaiting it:
    /// a clone of the value, or the [`JoinError`]. asyncio's `Task.result()`.
    pub fn result(&self) -> Option<Result<T, JoinError>>
    where
        T: Clone,
    {
        if !self.is_done() {
            return None;
        }
        // `T::clone` is user code: it could drop the owning handle or take the output while
        // we read it. OUTPUT_BORROWED makes both wait (see `Task::drop`, `poll_output`) until
        // the guard ends the borrow, dropping the output then if the handle went away.
        if !self.header().state.borrow_output() {
            panic!("ringloop: Task::result called from inside the clone of the same task's output");
        }
        let guard = BorrowGuard { raw: self.raw };
        let raw = self.raw();
        // SAFETY: this task's output type is T; while OUTPUT_BORROWED is set nothing drops or
        // moves the stored output, so the reference stays valid through the clone.
        let out = unsafe { raw.output_ref::<T>() };
        let cloned = out.map(|r| r.clone().map_err(|e| *e));
        drop(guard);
        cloned
    }

    /// A type-erased, clonable reference to this task.
    pub fn task_ref(&self) -> TaskRef {
        TaskRef::new((*self.raw()).clone())
    }

    /// Detaches the task: it runs to completion and its output is dropped. Same as dropping
    /// the handle.
    pub fn detach(self) {}

    /// Ready once the task is done, without taking the output; otherwise registers `cx`'s
    /// waker as the task's awaiter. Used by `wait`.
    pub(crate) fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_done() {
            return Poll::Ready(());
        }
        self.header().set_awaiter(cx.waker());
        Poll::Pending
    }

    /// True if the task is done and panicked (asyncio: finished with an exception).
    pub(crate) fn is_failed(&self) -> bool {
        if !self.is_done() {
            return false;
        }
        let raw = self.raw();
        // SAFETY: this task's output type is T; the reference ends in this statement.
        let out = unsafe { raw.output_ref::<T>() };
        out.is_some_and(|r| matches!(r.as_ref().map_err(|e| &**e), Err(JoinError::Panicked(_))))
    }

    /// Polls for the output without consuming the handle; used by `Join` and `Shielded`.
    pub(crate) fn poll_output(&self, cx: &mut Context<'_>) -> Poll<Result<T, JoinError>> {
        let state = &self.header().state;
        if state.is_complete() {
            assert!(
                !state.is_output_borrowed(),
                "ringloop: a task's output was awaited from inside Task::result's clone of it"
            );
            // SAFETY: this task's output type is T.
            match unsafe { self.raw().take_output::<T>() } {
                Some(out) => Poll::Ready(out),
                None => panic!("ringloop: the task's output was already taken (awaited twice?)"),
            }
        } else {
            let _ = self.poll_done(cx);
            Poll::Pending
        }
    }
}

fn name_of(header: &raw::Header) -> String {
    let name = header.with_extra(|e| e.name.clone());
    name.unwrap_or_else(|| format!("Task-{}", header.id))
}

fn is_cancelled(header: &raw::Header) -> bool {
    header.state.is_cancelled()
}

fn cancel(raw: &RawTask) -> bool {
    match raw.header().state.request_cancel() {
        CancelRequest::Complete => false,
        CancelRequest::AlreadyRequested => true,
        CancelRequest::Requested => {
            raw.schedule();
            true
        }
    }
}

/// Ends a `Task::result` borrow of the output; drops the output if the owning handle went
/// away meanwhile.
struct BorrowGuard {
    raw: NonNull<raw::Header>,
}

impl Drop for BorrowGuard {
    fn drop(&mut self) {
        // SAFETY: the `Task` that made the guard holds a reference for the guard's lifetime.
        let header = unsafe { self.raw.as_ref() };
        // During the done callbacks the completion drops a detached output after the last one.
        if header.state.end_borrow() {
            // SAFETY: as above; the view releases no reference.
            std::mem::ManuallyDrop::new(unsafe { RawTask::from_owned(self.raw) }).drop_output();
        }
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        // If not finished, `result()` is cloning the output, or the done callbacks are running
        // (the later ones must still see it), the task is marked detached and the output is
        // dropped later (at completion, when the clone ends, or after the last callback).
        if self.header().state.drop_handle() {
            self.raw().drop_output();
        }
        // SAFETY: the handle owns one reference, released here.
        drop(unsafe { RawTask::from_owned(self.raw) });
    }
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_task(self.header(), f, "Task")
    }
}

fn debug_task(header: &raw::Header, f: &mut fmt::Formatter<'_>, ty: &str) -> fmt::Result {
    f.debug_struct(ty)
        .field("id", &header.id)
        .field("name", &name_of(header))
        .field("state", &state_of(header))
        .field("spawned_at", &format_args!("{}", header.location()))
        .finish()
}

fn state_of(header: &raw::Header) -> TaskState {
    let state = &header.state;
    if state.is_complete() {
        TaskState::Done
    } else if state.is_running() {
        TaskState::Running
    } else if state.is_cancel_requested() {
        TaskState::Cancelling
    } else if state.is_scheduled() {
        TaskState::Scheduled
    } else {
        TaskState::Waiting
    }
}

impl<T> IntoFuture for Task<T> {
    type Output = Result<T, JoinError>;
    type IntoFuture = Join<T>;

    fn into_future(self) -> Join<T> {
        Join { task: Some(self) }
    }
}

/// The future of an awaited [`Task`]. Dropping it before the task finished cancels the task
/// (asyncio's propagation); wrap the task in [`shield`](crate::shield) to keep it running.
#[must_use = "futures do nothing unless awaited"]
pub struct Join<T> {
    task: Option<Task<T>>,
}

impl<T> Join<T> {
    /// The task being awaited.
    pub fn task(&self) -> &Task<T> {
        self.task
            .as_ref()
            .expect("ringloop: Join polled after completion")
    }
}

impl<T> Future for Join<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let task = self
            .task
            .as_ref()
            .expect("ringloop: a task's Join future polled after it completed");
        let out = std::task::ready!(task.poll_output(cx));
        self.task = None;
        Poll::Ready(out)
    }
}

impl<T> Unpin for Join<T> {}

impl<T> Drop for Join<T> {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.cancel();
        }
    }
}

impl<T> fmt::Debug for Join<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Join").field("task", &self.task).finish()
    }
}

/// A type-erased, clonable reference to a task, for inspection and cancellation:
/// returned by [`current_task`] and [`all_tasks`]. It does not keep the output.
#[derive(Clone)]
pub struct TaskRef {
    raw: RawTask,
    _not_send: PhantomData<Rc<()>>,
}

impl TaskRef {
    pub(crate) fn new(raw: RawTask) -> TaskRef {
        TaskRef {
            raw,
            _not_send: PhantomData,
        }
    }

    /// The task's id.
    pub fn id(&self) -> u64 {
        self.raw.header().id
    }

    /// The task's name (`Task-{id}` unless set).
    pub fn name(&self) -> String {
        name_of(self.raw.header())
    }

    /// Names the task.
    pub fn set_name(&self, name: impl Into<String>) {
        let name = name.into();
        self.raw.header().with_extra(|e| e.name = Some(name));
    }

    /// Where the task was spawned.
    pub fn location(&self) -> &'static Location<'static> {
        self.raw.header().location()
    }

    /// The task's state.
    pub fn state(&self) -> TaskState {
        state_of(self.raw.header())
    }

    /// True once the task finished.
    pub fn is_done(&self) -> bool {
        self.raw.header().state.is_complete()
    }

    /// See [`Task::is_cancelled`].
    pub fn is_cancelled(&self) -> bool {
        is_cancelled(self.raw.header())
    }

    /// See [`Task::cancel`].
    pub fn cancel(&self) -> bool {
        cancel(&self.raw)
    }
}

impl PartialEq for TaskRef {
    fn eq(&self, other: &TaskRef) -> bool {
        self.raw.ptr() == other.raw.ptr()
    }
}

impl Eq for TaskRef {}

impl fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_task(self.raw.header(), f, "TaskRef")
    }
}

/// The task being polled right now, or `None` outside a task (including the future given to
/// `block_on`, which is not a task). asyncio's `current_task()`.
pub fn current_task() -> Option<TaskRef> {
    context::with_local(|local| local.current_task()).flatten()
}

/// Every task of the current runtime that has not finished, by id (spawn order): asyncio's
/// `all_tasks()`. Each shows its id, name, state and spawn location in `Debug`, so a stuck
/// program can be inspected. Empty outside a runtime.
pub fn all_tasks() -> Vec<TaskRef> {
    context::with_local(|local| local.all_tasks()).unwrap_or_default()
}

/// Yields to the loop once: the current task is rescheduled behind the tasks already ready.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// Future of [`yield_now`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
