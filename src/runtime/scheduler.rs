//! The event loop's state and its tick: run queue, then ready callbacks, then the inject queue,
//! then timers, then the ring (submit, reap, park). Never touches the ring directly: it calls
//! the driver's `poll_io` and `park`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::panic::Location;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::callbacks::run_guarded;

use crate::driver::{Driver, DriverRef};
use crate::runtime::context;
use crate::runtime::inject::{Injected, Shared};
use crate::runtime::task::raw::{self, Header, Ran, RawTask, Sites};
use crate::runtime::task::registry::Registry;
use crate::runtime::task::{Task, TaskRef};
use crate::runtime::time::LocalMarker;
use crate::runtime::timer::{Action, TimerKey, Timers};

/// The blocking pool, type-erased (see `Local::blocking_pool`), and the function that shuts
/// it down.
pub(crate) type ErasedPool = (Box<dyn std::any::Any>, fn(Box<dyn std::any::Any>));

/// Tasks polled per tick before the loop looks at callbacks, other threads, timers and I/O.
const BUDGET: usize = 64;

/// A loop's single-threaded state. Lives in an `Rc` owned by the `Runtime`; reached through
/// the thread-local context while the loop runs.
pub(crate) struct Local {
    pub(crate) shared: Arc<Shared>,
    pub(crate) driver: DriverRef,
    /// Identity of this loop for `TimerHandle`s (which must not keep the loop alive).
    pub(crate) marker: Rc<LocalMarker>,
    /// Tasks woken since they last ran, in wake order.
    run_queue: RefCell<VecDeque<RawTask>>,
    /// Tasks spawned and not yet polled, in spawn order. Kept apart from `run_queue` so a
    /// burst of spawns cannot delay woken tasks (a timer that fired, an I/O completion) by
    /// more than one pass: each pass serves both queues.
    spawn_queue: RefCell<VecDeque<RawTask>>,
    /// Every task that has not finished.
    registry: RefCell<Registry>,
    /// What the tasks spawned at one place share (vtable, location, this loop), by place.
    sites: RefCell<Sites>,
    pub(crate) timers: RefCell<Timers>,
    /// `call_soon` callbacks in FIFO order (their closures live in `timers`).
    soon: RefCell<VecDeque<TimerKey>>,
    current: Cell<Option<NonNull<Header>>>,
    next_id: Cell<u64>,
    /// Size of the blocking pool, if configured.
    pub(crate) blocking_threads: Option<usize>,
    /// The runtime's blocking pool (`pool::spawn_blocking`), created on first use, with the
    /// function that shuts it down at close. Type-erased so that the runtime layer does not
    /// depend on the pool layer above it.
    pub(crate) blocking_pool: RefCell<Option<ErasedPool>>,
    /// Set once the loop closed: nothing runs any more.
    closed: Cell<bool>,
    // Scratch buffers, reused every tick.
    injected: RefCell<Vec<Injected>>,
    fired: RefCell<Vec<Action>>,
    wakers: RefCell<Vec<Waker>>,
    orphans: RefCell<Vec<crate::driver::Orphaned>>,
}

/// Schedules a woken task: on its own loop's thread straight into the run queue, from anywhere
/// else through the owner's inject queue.
pub(crate) fn schedule(task: RawTask) {
    let mut task = Some(task);
    context::with_local(|local| {
        let ours = task
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(&local.shared, t.header().owner()));
        if ours && !local.closed.get() {
            local.run_queue.borrow_mut().extend(task.take());
        }
    });
    let Some(task) = task else { return };
    let owner = task.header().owner().clone();
    // A closed loop refuses the push; the task's future is already gone, so dropping the
    // reference here (possibly on another thread) is fine.
    let _ = owner.push(Injected::Wake(task));
}

impl Local {
    pub(crate) fn new(
        shared: Arc<Shared>,
        driver: Driver,
        blocking_threads: Option<usize>,
    ) -> Local {
        Local {
            blocking_threads,
            blocking_pool: RefCell::new(None),
            sites: RefCell::new(Sites::new(shared.clone())),
            shared,
            driver: Rc::new(RefCell::new(driver)),
            marker: Rc::new(LocalMarker),
            run_queue: RefCell::new(VecDeque::with_capacity(256)),
            spawn_queue: RefCell::new(VecDeque::with_capacity(256)),
            registry: RefCell::new(Registry::new()),
            timers: RefCell::new(Timers::new()),
            soon: RefCell::new(VecDeque::new()),
            current: Cell::new(None),
            next_id: Cell::new(1),
            closed: Cell::new(false),
            injected: RefCell::new(Vec::new()),
            fired: RefCell::new(Vec::new()),
            wakers: RefCell::new(Vec::new()),
            orphans: RefCell::new(Vec::new()),
        }
    }

    #[inline] // See `task::spawn`.
    pub(crate) fn spawn<F>(
        &self,
        future: F,
        location: &'static Location<'static>,
    ) -> Task<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        assert!(
            !self.closed.get(),
            "ringloop::spawn called on a runtime that is closed (at {location})"
        );
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        // Three references: the Task handle, the registry and the run-queue entry.
        let ptr = raw::allocate(&mut self.sites.borrow_mut(), future, location, id, 3);
        // SAFETY: `allocate` counted three references; each RawTask below takes one.
        let (handle, in_registry, in_queue) = unsafe {
            (
                RawTask::from_owned(ptr),
                RawTask::from_owned(ptr),
                RawTask::from_owned(ptr),
            )
        };
        self.registry.borrow_mut().insert(in_registry);
        self.spawn_queue.borrow_mut().push_back(in_queue);
        // SAFETY: the cell was allocated for F, whose output type is F::Output.
        unsafe { Task::from_raw(handle) }
    }

    pub(crate) fn current_task(&self) -> Option<TaskRef> {
        // SAFETY: the current task is being polled, so the loop holds a reference to it.
        self.current
            .get()
            .map(|ptr| TaskRef::new(unsafe { RawTask::from_borrowed(ptr) }))
    }

    pub(crate) fn all_tasks(&self) -> Vec<TaskRef> {
        let tasks = self.registry.borrow().tasks();
        let mut tasks: Vec<TaskRef> = tasks.into_iter().map(TaskRef::new).collect();
        tasks.sort_by_key(TaskRef::id);
        tasks
    }

    /// Queues a `call_soon` callback.
    pub(crate) fn call_soon(&self, f: Box<dyn FnOnce()>) -> TimerKey {
        let key = self.timers.borrow_mut().insert_unscheduled(Action::Call(f));
        self.soon.borrow_mut().push_back(key);
        key
    }

    /// Hands SQEs queued during the last poll (cancellations, operations started just before
    /// `block_on` returned) to the kernel, so that none waits in the ring while the loop is not
    /// running (their operations keep their fds open meanwhile, but a cancellation should
    /// not wait for the next `block_on`).
    pub(crate) fn flush_submissions(&self) {
        if let Ok(mut driver) = self.driver.try_borrow_mut() {
            let _ = driver.flush_submissions();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Polls one task taken from a run queue (or drops its future if it was cancelled).
    #[inline]
    fn run_task(&self, task: RawTask) {
        if task.run(&self.current) == Ran::Finished {
            self.complete(&task);
        }
    }

    /// Bookkeeping once a task's output is stored (see `RawTask::complete`).
    fn complete(&self, task: &RawTask) {
        task.complete(|ptr| self.registry.borrow_mut().remove(ptr));
    }

    /// One pass of the loop; `main_ready` tells whether the `block_on` future was woken (then
    /// the loop must not park); `honor_stop` whether a pending `stop()` concerns this caller
    /// (`run_forever`), so that the pass must not park either. Returns after at most one park.
    pub(crate) fn tick(&self, main_ready: &dyn Fn() -> bool, honor_stop: bool) {
        // 1. Ready tasks: at most BUDGET woken ones, then at most BUDGET new ones. When the
        //    block_on future is already woken, only the tasks queued before this pass run, so
        //    that it gets its turn in FIFO order (as the main task of asyncio.run would)
        //    instead of after tasks that re-queue themselves.
        let mut n_polled = 0;
        for queue in [&self.run_queue, &self.spawn_queue] {
            let limit = if main_ready() {
                queue.borrow().len().min(BUDGET)
            } else {
                BUDGET
            };
            for _ in 0..limit {
                let Some(task) = queue.borrow_mut().pop_front() else {
                    break;
                };
                self.run_task(task);
                n_polled += 1;
            }
        }
        if n_polled > 0 {
            self.driver.borrow_mut().tasks_ran(n_polled);
        }
        // 2. call_soon callbacks queued before this point (those they queue run next tick).
        self.run_soon_callbacks();
        // 3. Work from other threads.
        if self.shared.has_pending() {
            self.drain_injected();
        }
        // 4. Expired timers.
        let now_if_timers = self.fire_timers();
        // 5. I/O: submit and reap; park if there is nothing else to do.
        let idle = self.run_queue.borrow().is_empty()
            && self.spawn_queue.borrow().is_empty()
            && self.soon.borrow().is_empty()
            && !main_ready()
            && !(honor_stop
                && self
                    .shared
                    .stop_requested
                    .load(std::sync::atomic::Ordering::Relaxed));
        let result = if idle && self.shared.prepare_park() {
            let timeout = match now_if_timers {
                Some(_) => self.timers.borrow_mut().next_timeout(Instant::now()),
                None => None,
            };
            let r = if main_ready() || timeout == Some(Duration::ZERO) {
                self.driver.borrow_mut().poll_io()
            } else {
                self.driver.borrow_mut().park(timeout)
            };
            self.shared.finish_park();
            r
        } else {
            self.driver.borrow_mut().poll_io()
        };
        if let Err(e) = result {
            // The driver could not wait for I/O for a reason other than a signal, a timeout or
            // back-pressure; nothing sensible can continue.
            panic!("ringloop: the driver failed to wait for I/O: {e}");
        }
        self.wake_io();
    }

    fn wake_io(&self) {
        let mut wakers = self.wakers.take();
        let mut orphans = self.orphans.take();
        self.driver
            .borrow_mut()
            .take_ready(&mut wakers, &mut orphans);
        // User code (a waker, the drop of an orphaned operation's data) may panic: report it and
        // go on, so that the other wake-ups collected in this pass are not lost.
        for orphan in orphans.drain(..) {
            run_guarded("dropping a cancelled operation's data", move || {
                orphan.run()
            });
        }
        for w in wakers.drain(..) {
            wake_guarded(w);
        }
        self.wakers.replace(wakers);
        self.orphans.replace(orphans);
    }

    fn run_soon_callbacks(&self) {
        let n = self.soon.borrow().len();
        for _ in 0..n {
            let Some(key) = self.soon.borrow_mut().pop_front() else {
                break;
            };
            let action = self.timers.borrow_mut().take(key);
            if let Some(action) = action {
                run_action(action);
            }
        }
    }

    fn drain_injected(&self) {
        let mut items = self.injected.take();
        self.shared.drain_into(&mut items);
        for item in items.drain(..) {
            match item {
                Injected::Wake(task) => self.run_queue.borrow_mut().push_back(task),
                Injected::Call(f) => run_guarded("a call_soon_threadsafe callback", f),
            }
        }
        self.injected.replace(items);
    }

    /// Fires due timers; returns `Some(())` if timers remain (so the park needs a timeout).
    fn fire_timers(&self) -> Option<()> {
        if !self.timers.borrow_mut().has_timers() {
            return None;
        }
        let mut fired = self.fired.take();
        self.timers.borrow_mut().expire(Instant::now(), &mut fired);
        for action in fired.drain(..) {
            run_action(action);
        }
        self.fired.replace(fired);
        Some(())
    }

    /// Closes the loop: every unfinished task is cancelled (its future dropped here, on the loop
    /// thread), callbacks and timers are dropped, other threads are refused, and the driver
    /// reaps what the dropped operations left in flight. The caller has entered the context.
    pub(crate) fn close(&self) {
        if self.closed.get() {
            return;
        }
        // Refuse work from other threads first, and drop what was queued (a queued
        // `Handle::spawn` reports `Shutdown` when dropped). A blocking job that waits for the
        // loop then fails at once instead of deadlocking the pool shutdown below.
        let queued = self.shared.close();
        drop(queued);
        // Tasks: their futures may hold timers, I/O and other tasks. Dropping a future may
        // spawn or wake tasks, and done callbacks added to finished tasks are queued with
        // call_soon; so repeat until there is neither a live task nor a queued callback.
        loop {
            let tasks = self.registry.borrow().tasks();
            let callbacks = !self.soon.borrow().is_empty();
            if tasks.is_empty() && !callbacks {
                break;
            }
            for task in tasks {
                if !task.header().state.is_complete() {
                    task.cancel_now();
                    self.complete(&task);
                }
            }
            self.run_soon_callbacks();
        }
        self.closed.set(true);
        // The blocking pool: jobs not started are cancelled, running ones waited for.
        if let Some((pool, close)) = self.blocking_pool.take() {
            close(pool);
        }
        let queue = std::mem::take(&mut *self.run_queue.borrow_mut());
        drop(queue);
        let queue = std::mem::take(&mut *self.spawn_queue.borrow_mut());
        drop(queue);
        self.soon.borrow_mut().clear();
        let mut actions = Vec::new();
        self.timers.borrow_mut().clear(&mut actions);
        drop(actions);
        self.driver
            .borrow_mut()
            .drain_abandoned(Duration::from_secs(2));
        // Run the orphan handlers of what was reaped; the wakes go to closed queues.
        self.wake_io();
    }
}

/// Wakes `waker`, reporting a panic instead of unwinding through the loop.
pub(crate) fn wake_guarded(waker: Waker) {
    run_guarded("a waker", move || waker.wake());
}

fn run_action(action: Action) {
    match action {
        Action::Wake(Some(waker)) => wake_guarded(waker),
        Action::Wake(None) => {}
        Action::Call(f) => run_guarded("a callback", f),
    }
}
