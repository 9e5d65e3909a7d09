//! Tasks: spawning, results, panics, cancellation at every await point, propagation,
//! detaching, done callbacks, names, current_task and all_tasks.

mod support;

use std::cell::{Cell, RefCell};
use std::future::IntoFuture;
use std::rc::Rc;
use std::time::Duration;

use futures::FutureExt;
use ringloop::{JoinError, Runtime, TaskState};
use support::{DropGuard, counter};

#[test]
fn tasks_run_in_spawn_order_and_return_values() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let out = ringloop::run({
        let log = log.clone();
        async move {
            let tasks: Vec<_> = (0..5)
                .map(|i| {
                    let log = log.clone();
                    ringloop::spawn(async move {
                        log.borrow_mut().push(i);
                        i * 10
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        }
    });
    assert_eq!(out, vec![0, 10, 20, 30, 40]);
    assert_eq!(*log.borrow(), vec![0, 1, 2, 3, 4]);
}

#[test]
fn non_send_futures_are_fine() {
    let v = ringloop::run(async {
        let shared = Rc::new(RefCell::new(1));
        let s = shared.clone();
        ringloop::spawn(async move {
            ringloop::yield_now().await;
            *s.borrow_mut() += 1;
        })
        .await
        .unwrap();
        *shared.borrow()
    });
    assert_eq!(v, 2);
}

#[test]
fn yield_now_interleaves_tasks() {
    let log = Rc::new(RefCell::new(Vec::new()));
    ringloop::run({
        let log = log.clone();
        async move {
            let a = {
                let log = log.clone();
                ringloop::spawn(async move {
                    for i in 0..3 {
                        log.borrow_mut().push(("a", i));
                        ringloop::yield_now().await;
                    }
                })
            };
            let b = {
                let log = log.clone();
                ringloop::spawn(async move {
                    for i in 0..3 {
                        log.borrow_mut().push(("b", i));
                        ringloop::yield_now().await;
                    }
                })
            };
            a.await.unwrap();
            b.await.unwrap();
        }
    });
    assert_eq!(
        *log.borrow(),
        vec![("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    );
}

#[test]
fn a_panicking_task_gives_panicked_and_the_loop_keeps_running() {
    ringloop::run(async {
        let bad = ringloop::spawn(async {
            ringloop::yield_now().await;
            panic!("boom {}", 42);
        });
        // Goes on only after the panic: released once it was seen, then a timer of its own.
        let (after_panic, released) = futures::channel::oneshot::channel::<()>();
        let good = ringloop::spawn(async {
            released.await.unwrap();
            ringloop::sleep(Duration::from_millis(2)).await;
            "fine"
        });
        let err = bad.await.unwrap_err();
        assert_eq!(err, JoinError::Panicked("boom 42".into()));
        assert!(err.is_panic() && !err.is_cancelled());
        assert_eq!(err.to_string(), "task panicked: boom 42");
        assert!(!good.is_done());
        after_panic.send(()).unwrap();
        assert_eq!(good.await, Ok("fine"));
    });
}

#[test]
fn cancel_before_first_poll_never_polls_the_future() {
    ringloop::run(async {
        let polled = Rc::new(Cell::new(false));
        let dropped = counter();
        let p = polled.clone();
        let guard = DropGuard(dropped.clone());
        let task = ringloop::spawn(async move {
            let _g = guard;
            p.set(true);
        });
        assert!(task.cancel());
        assert!(task.is_cancelled());
        assert!(
            !task.is_done(),
            "cancellation takes effect at the next scheduling point"
        );
        let err = task.await.unwrap_err();
        assert_eq!(err, JoinError::Cancelled);
        assert!(!polled.get());
        assert_eq!(dropped.get(), 1);
    });
}

/// A task with several kinds of await points; `step` records how far it got.
async fn stepper(
    step: Rc<Cell<u32>>,
    guard: DropGuard,
    rx: futures::channel::oneshot::Receiver<()>,
) {
    let _g = guard;
    step.set(1);
    ringloop::yield_now().await;
    step.set(2);
    ringloop::sleep(Duration::from_millis(1)).await;
    step.set(3);
    ringloop::io::nop().await.unwrap();
    step.set(4);
    let _ = rx.await;
    step.set(5);
    ringloop::sleep(Duration::from_secs(3600)).await;
    step.set(6);
}

#[test]
fn cancellation_at_every_await_point_drops_the_future_there() {
    for stop_at in 1..=5u32 {
        ringloop::run(async move {
            let step = Rc::new(Cell::new(0));
            let dropped = counter();
            let (tx, rx) = futures::channel::oneshot::channel();
            let task = ringloop::spawn(stepper(step.clone(), DropGuard(dropped.clone()), rx));
            let mut tx = Some(tx);
            if stop_at == 5 {
                tx.take().unwrap().send(()).unwrap();
            }
            // Drive the loop one pass at a time until the task reaches the await point after
            // `stop_at`; a yield lets the task run exactly once.
            while step.get() < stop_at {
                ringloop::yield_now().await;
            }
            let at = step.get();
            assert_eq!(at, stop_at);
            assert_eq!(dropped.get(), 0);
            assert!(task.cancel());
            assert_eq!(task.await, Err(JoinError::Cancelled));
            assert_eq!(step.get(), at, "nothing after the await point ran");
            drop(tx);
            assert_eq!(dropped.get(), 1, "the future was dropped exactly once");
        });
    }
}

#[test]
fn cancel_after_done_returns_false() {
    ringloop::run(async {
        let task = ringloop::spawn(async { 1 });
        ringloop::yield_now().await;
        assert!(task.is_done());
        assert!(!task.cancel());
        assert!(!task.is_cancelled());
        assert_eq!(task.result(), Some(Ok(1)));
        assert_eq!(task.await, Ok(1));
    });
}

#[test]
fn a_task_cancelling_itself_before_returning_ends_cancelled() {
    ringloop::run(async {
        let task = ringloop::spawn(async {
            ringloop::current_task().unwrap().cancel();
            7
        });
        assert_eq!(task.await, Err(JoinError::Cancelled));
    });
}

#[test]
fn cancelling_a_task_that_awaits_another_cancels_both() {
    ringloop::run(async {
        let inner_dropped = counter();
        let guard = DropGuard(inner_dropped.clone());
        let inner = ringloop::spawn(async move {
            let _g = guard;
            ringloop::sleep(Duration::from_secs(3600)).await;
        });
        let inner_ref = inner.task_ref();
        let awaiting = Rc::new(Cell::new(false));
        let a = awaiting.clone();
        let outer = ringloop::spawn(async move {
            // Set in the poll that starts awaiting the inner task, so seen only after it.
            a.set(true);
            inner.await
        });
        support::yield_until("the outer task awaits the inner one", || awaiting.get()).await;
        assert!(!inner_ref.is_done());
        assert!(outer.cancel());
        assert_eq!(outer.await, Err(JoinError::Cancelled));
        // The inner task is cancelled at its next scheduling point.
        ringloop::yield_now().await;
        ringloop::yield_now().await;
        assert!(inner_ref.is_done() && inner_ref.is_cancelled());
        assert_eq!(inner_dropped.get(), 1);
    });
}

#[test]
fn dropping_the_await_cancels_the_task() {
    ringloop::run(async {
        let dropped = counter();
        let guard = DropGuard(dropped.clone());
        let task = ringloop::spawn(async move {
            let _g = guard;
            ringloop::sleep(Duration::from_secs(3600)).await;
        });
        let task_ref = task.task_ref();
        // Await the task, but give up after 2 ms (what wait_for does).
        futures::select! {
            _ = task.into_future().fuse() => unreachable!(),
            _ = ringloop::sleep(Duration::from_millis(2)).fuse() => {}
        }
        ringloop::yield_now().await;
        assert!(task_ref.is_cancelled() && task_ref.is_done());
        assert_eq!(dropped.get(), 1);
    });
}

#[test]
fn a_dropped_handle_detaches_and_the_task_finishes() {
    let finished = Rc::new(Cell::new(false));
    ringloop::run({
        let finished = finished.clone();
        async move {
            let f = finished.clone();
            let (tx, rx) = futures::channel::oneshot::channel::<()>();
            let task = ringloop::spawn(async move {
                rx.await.unwrap();
                ringloop::sleep(Duration::from_millis(3)).await;
                f.set(true);
            });
            // Dropped while the task waits: the task must carry on, not be cancelled.
            ringloop::yield_now().await;
            assert!(!task.is_done());
            drop(task);
            ringloop::spawn(async {}).detach();
            ringloop::yield_now().await;
            tx.send(()).unwrap();
            support::yield_until("the detached task finished", || finished.get()).await;
        }
    });
    assert!(finished.get());
}

#[test]
fn a_detached_task_output_is_dropped_at_completion() {
    ringloop::run(async {
        let dropped = counter();
        let d = dropped.clone();
        ringloop::spawn(async move { DropGuard(d) }).detach();
        ringloop::yield_now().await;
        ringloop::yield_now().await;
        assert_eq!(dropped.get(), 1);
    });
}

#[test]
fn done_callbacks_run_exactly_once_in_every_outcome() {
    ringloop::run(async {
        let calls = Rc::new(RefCell::new(Vec::new()));
        // Success.
        let ok = ringloop::spawn(async { 5 });
        let c = calls.clone();
        ok.add_done_callback(move |t| c.borrow_mut().push(format!("ok {:?}", t.result())));
        // Panic.
        let bad = ringloop::spawn(async { panic!("bad") });
        let c = calls.clone();
        bad.add_done_callback(move |t: &ringloop::Task<()>| {
            c.borrow_mut().push(format!("bad {:?}", t.result()))
        });
        // Cancel.
        let cancelled = ringloop::spawn(ringloop::sleep(Duration::from_secs(3600)));
        let c = calls.clone();
        cancelled.add_done_callback(move |t| {
            c.borrow_mut()
                .push(format!("cancelled {}", t.is_cancelled()))
        });
        cancelled.cancel();
        // Removed before it ran.
        let removed = ringloop::spawn(async {});
        let c = calls.clone();
        let id = removed.add_done_callback(move |_| c.borrow_mut().push("removed".into()));
        assert!(removed.remove_done_callback(id));
        assert!(!removed.remove_done_callback(id));

        let _ = ok.await;
        let _ = bad.await;
        let _ = cancelled.await;
        let _ = removed.await;
        // Done callbacks run at completion; a few more passes would show one run twice (or
        // run from the queue of call_soon callbacks).
        for _ in 0..3 {
            ringloop::yield_now().await;
        }
        let mut calls = calls.borrow().clone();
        calls.sort();
        assert_eq!(
            calls,
            vec![
                "bad Some(Err(Panicked(\"bad\")))".to_string(),
                "cancelled true".to_string(),
                "ok Some(Ok(5))".to_string(),
            ]
        );
    });
}

#[test]
fn a_callback_added_after_done_runs_soon_once() {
    ringloop::run(async {
        let task = ringloop::spawn(async { 3 });
        ringloop::yield_now().await;
        assert!(task.is_done());
        let n = counter();
        let c = n.clone();
        task.add_done_callback(move |t| {
            assert_eq!(t.result(), Some(Ok(3)));
            c.set(c.get() + 1);
        });
        assert_eq!(n.get(), 0, "scheduled with call_soon, not run inline");
        ringloop::yield_now().await;
        ringloop::yield_now().await;
        assert_eq!(n.get(), 1);
    });
}

#[test]
fn a_panicking_callback_does_not_stop_the_others() {
    ringloop::run(async {
        let n = counter();
        let task = ringloop::spawn(async {});
        task.add_done_callback(|_| panic!("callback fails"));
        let c = n.clone();
        task.add_done_callback(move |_| c.set(c.get() + 1));
        task.await.unwrap();
        assert_eq!(n.get(), 1);
    });
}

#[test]
fn names_ids_and_current_task() {
    ringloop::run(async {
        assert!(
            ringloop::current_task().is_none(),
            "block_on's future is not a task"
        );
        let task = ringloop::spawn(async {
            let me = ringloop::current_task().expect("inside a task");
            (me.id(), me.name(), me.state())
        });
        let id = task.id();
        assert_eq!(task.name(), format!("Task-{id}"));
        task.set_name("worker");
        assert_eq!(task.name(), "worker");
        let (seen_id, seen_name, seen_state) = task.await.unwrap();
        assert_eq!(seen_id, id);
        assert_eq!(seen_name, "worker");
        assert_eq!(seen_state, TaskState::Running);
        let other = ringloop::spawn(async {});
        assert_ne!(other.id(), id);
    });
}

#[test]
fn all_tasks_lists_unfinished_tasks_with_name_state_and_location() {
    ringloop::run(async {
        let sleeper = ringloop::spawn(ringloop::sleep(Duration::from_secs(3600)));
        sleeper.set_name("sleeper");
        let quick = ringloop::spawn(async {});
        quick.await.unwrap();
        ringloop::yield_now().await;
        let tasks = ringloop::all_tasks();
        assert_eq!(tasks.len(), 1);
        let t = &tasks[0];
        assert_eq!(t.name(), "sleeper");
        assert_eq!(t.id(), sleeper.id());
        assert_eq!(t.state(), TaskState::Waiting);
        assert!(t.location().file().ends_with("tasks.rs"));
        let debug = format!("{t:?}");
        assert!(
            debug.contains("sleeper") && debug.contains("Waiting") && debug.contains("tasks.rs"),
            "{debug}"
        );
        t.cancel();
        assert_eq!(t.state(), TaskState::Cancelling);
        assert_eq!(sleeper.await, Err(JoinError::Cancelled));
        assert!(ringloop::all_tasks().is_empty());
    });
}

#[test]
fn join_errors_display_actionable_messages() {
    assert_eq!(
        JoinError::Cancelled.to_string(),
        "task was cancelled before it finished"
    );
    let e: Box<dyn std::error::Error> = Box::new(JoinError::Panicked("x".into()));
    assert!(e.to_string().contains("panicked: x"));
}

#[test]
fn a_panic_while_dropping_a_cancelled_future_is_contained() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("drop panics");
        }
    }
    ringloop::run(async {
        let task = ringloop::spawn(async {
            let _p = PanicOnDrop;
            ringloop::sleep(Duration::from_secs(3600)).await;
        });
        ringloop::yield_now().await;
        task.cancel();
        assert_eq!(task.await, Err(JoinError::Cancelled));
        assert_eq!(ringloop::spawn(async { 1 }).await, Ok(1));
    });
}

#[test]
fn tasks_survive_across_block_on_calls_and_are_cancelled_at_close() {
    let rt = Runtime::new().unwrap();
    let dropped = counter();
    let guard = DropGuard(dropped.clone());
    let started = Rc::new(Cell::new(false));
    let s = started.clone();
    let task = rt.spawn(async move {
        let _g = guard;
        s.set(true);
        ringloop::sleep(Duration::from_secs(3600)).await;
    });
    rt.block_on(support::yield_until("the task started", || started.get()));
    // And once more: the task stays parked in its sleep across block_on calls.
    rt.block_on(ringloop::yield_now());
    assert!(!task.is_done());
    assert_eq!(dropped.get(), 0);
    rt.close();
    assert_eq!(dropped.get(), 1);
    assert!(task.is_done() && task.is_cancelled());
}

#[test]
fn many_tasks_spawned_from_tasks() {
    let n = ringloop::run(async {
        let outer: Vec<_> = (0..100)
            .map(|i| {
                ringloop::spawn(async move {
                    let inner: Vec<_> = (0..100)
                        .map(|j| ringloop::spawn(async move { i * j }))
                        .collect();
                    let mut s = 0u64;
                    for t in inner {
                        s += t.await.unwrap();
                    }
                    s
                })
            })
            .collect();
        let mut total = 0;
        for t in outer {
            total += t.await.unwrap();
        }
        total
    });
    assert_eq!(n, (0..100u64).sum::<u64>().pow(2));
}

/// Review finding: `Task::result` cloned the output through a raw reference, and a clone that
/// dropped the owning handle freed the output under it.
#[test]
fn result_survives_a_clone_that_drops_the_handle() {
    struct Evil(Vec<u8>);
    thread_local! {
        static SLOT: RefCell<Option<ringloop::Task<Evil>>> = const { RefCell::new(None) };
    }
    impl Clone for Evil {
        fn clone(&self) -> Self {
            SLOT.with(|s| drop(s.borrow_mut().take()));
            Evil(self.0.clone())
        }
    }
    let intact = Rc::new(Cell::new(None));
    ringloop::run({
        let intact = intact.clone();
        async move {
            let t = ringloop::spawn(async { Evil(vec![0xAA; 1 << 20]) });
            let seen = intact.clone();
            t.add_done_callback(move |view| {
                let r = view.result().unwrap().unwrap();
                seen.set(Some(r.0.len() == 1 << 20 && r.0.iter().all(|b| *b == 0xAA)));
            });
            SLOT.with(|s| *s.borrow_mut() = Some(t));
            support::yield_until("the done callback ran", || intact.get().is_some()).await;
            assert!(
                SLOT.with(|s| s.borrow().is_none()),
                "the clone dropped the handle"
            );
        }
    });
    assert_eq!(intact.get(), Some(true));
}

#[test]
fn a_task_panic_can_be_resumed_with_its_message() {
    let err =
        ringloop::run(async { ringloop::spawn(async { panic!("kept {}", 7) }).await }).unwrap_err();
    assert_eq!(err, JoinError::Panicked("kept 7".into()));
    let resumed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        std::panic::resume_unwind(err.into_panic())
    }))
    .unwrap_err();
    assert_eq!(
        resumed.downcast_ref::<String>().map(String::as_str),
        Some("kept 7")
    );
    let cancelled = JoinError::Cancelled.try_into_panic().unwrap_err();
    assert!(cancelled.is_cancelled());
}

/// Pin's drop guarantee: a task's future is dropped where it was polled, never moved out of
/// the cell first, whether it finished or was cancelled.
#[test]
fn a_task_future_is_dropped_where_it_was_polled() {
    struct Pinned {
        ready: bool,
        polled_at: Rc<Cell<usize>>,
        dropped_at: Rc<Cell<usize>>,
        _pin: std::marker::PhantomPinned,
    }
    impl std::future::Future for Pinned {
        type Output = ();
        fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> Poll<()> {
            self.polled_at.set(std::ptr::from_ref(&*self) as usize);
            if self.ready {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }
    impl Drop for Pinned {
        fn drop(&mut self) {
            self.dropped_at.set(std::ptr::from_ref(self) as usize);
        }
    }
    use std::task::Poll;
    for ready in [true, false] {
        let (polled_at, dropped_at) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
        ringloop::run({
            let (polled_at, dropped_at) = (polled_at.clone(), dropped_at.clone());
            async move {
                let task = ringloop::spawn(Pinned {
                    ready,
                    polled_at,
                    dropped_at,
                    _pin: std::marker::PhantomPinned,
                });
                ringloop::yield_now().await;
                if !ready {
                    task.cancel();
                }
                let _ = task.await;
            }
        });
        assert_ne!(polled_at.get(), 0, "polled");
        assert_eq!(dropped_at.get(), polled_at.get(), "ready: {ready}");
    }
}

/// A task keeps one awaiter: polling its `Join` again with the same waker keeps it, with another
/// waker replaces it, and completion wakes the last one only.
#[test]
fn the_last_awaiter_of_a_task_is_the_one_woken() {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    ringloop::run(async {
        let (a, b) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
        let mut join = ringloop::spawn(async { 7 }).into_future();
        for waker in [&wa, &wa, &wb] {
            let polled = Pin::new(&mut join).poll(&mut Context::from_waker(waker));
            assert!(polled.is_pending());
        }
        ringloop::yield_now().await;
        assert_eq!(a.0.load(Ordering::SeqCst), 0, "replaced, never woken");
        assert_eq!(b.0.load(Ordering::SeqCst), 1);
        let polled = Pin::new(&mut join).poll(&mut Context::from_waker(&wb));
        assert_eq!(polled, Poll::Ready(Ok(7)));
    });
}

// A waker whose clone runs the loop (`block_on` from inside `Waker::clone`): awaiting a task
// with it must neither register an awaiter for a task that completed meanwhile nor overwrite
// the awaiter of another task of the same spawn site that reused the freed slot.
mod reentrant_waker_clone {
    use std::cell::{Cell, RefCell};
    use std::future::{Future, IntoFuture};
    use std::pin::Pin;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

    use ringloop::Runtime;

    thread_local! {
        static RT: Cell<*const Runtime> = const { Cell::new(std::ptr::null()) };
        static ENTERED: Cell<bool> = const { Cell::new(false) };
        static SIBLING: RefCell<Option<ringloop::Task<u32>>> = const { RefCell::new(None) };
        static SIBLING_JOIN: RefCell<Option<Pin<Box<dyn Future<Output = ()>>>>> =
            const { RefCell::new(None) };
        static SIBLING_WOKEN: Cell<bool> = const { Cell::new(false) };
    }

    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, |_| {}, |_| {}, |_| {});

    /// The first clone runs the loop until the awaited task completes (freeing its awaiter
    /// slot), then registers an awaiter for a sibling task of the same site (reusing it).
    unsafe fn clone(_: *const ()) -> RawWaker {
        if !ENTERED.with(|e| e.replace(true)) {
            // SAFETY: the test keeps the runtime alive (and in place) while it polls.
            let rt = unsafe { &*RT.with(Cell::get) };
            rt.block_on(async {
                ringloop::yield_now().await;
                ringloop::yield_now().await;
            });
            let mut join = SIBLING
                .with(|s| s.borrow_mut().take())
                .unwrap()
                .into_future();
            struct Flag;
            impl std::task::Wake for Flag {
                fn wake(self: Arc<Self>) {
                    SIBLING_WOKEN.with(|w| w.set(true));
                }
            }
            let flag = Waker::from(Arc::new(Flag));
            assert!(
                Pin::new(&mut join)
                    .poll(&mut Context::from_waker(&flag))
                    .is_pending()
            );
            let keep = Box::pin(async move {
                let _ = join.await;
            });
            SIBLING_JOIN.with(|s| *s.borrow_mut() = Some(keep));
        }
        RawWaker::new(std::ptr::null(), &VTABLE)
    }

    fn gated(rt: &Runtime, gate: Rc<Cell<bool>>, v: u32) -> ringloop::Task<u32> {
        rt.spawn(std::future::poll_fn(move |cx| {
            if gate.get() {
                Poll::Ready(v)
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }))
    }

    #[test]
    fn a_waker_clone_that_runs_the_loop_loses_no_wake_up() {
        let rt = Runtime::new().unwrap();
        RT.with(|c| c.set(&rt));
        let (gate_a, gate_b) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(false)));
        let mut join = gated(&rt, gate_a.clone(), 1).into_future();
        SIBLING.with(|s| *s.borrow_mut() = Some(gated(&rt, gate_b.clone(), 2)));
        let noop = Waker::noop();
        assert!(
            Pin::new(&mut join)
                .poll(&mut Context::from_waker(noop))
                .is_pending()
        );
        gate_a.set(true);
        // SAFETY: the vtable's functions ignore the data pointer and never free anything.
        let waker = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) };
        // The clone inside this poll completes the task; either outcome of the poll is fine.
        let _ = Pin::new(&mut join).poll(&mut Context::from_waker(&waker));
        gate_b.set(true);
        rt.block_on(async {
            for _ in 0..5 {
                ringloop::yield_now().await;
            }
        });
        assert!(
            SIBLING_WOKEN.with(Cell::get),
            "the sibling's awaiter was never woken"
        );
        drop(join);
        SIBLING_JOIN.with(|s| s.borrow_mut().take());
        drop(rt);
    }
}
