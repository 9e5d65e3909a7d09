//! Callbacks: call_soon (FIFO), call_later and call_at (deadlines, cancellation),
//! call_soon_threadsafe, and panics in callbacks.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

type Log = Rc<RefCell<Vec<String>>>;

fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

fn push(log: &Log, s: impl Into<String>) -> impl FnOnce() + 'static {
    let log = log.clone();
    let s = s.into();
    move || log.borrow_mut().push(s)
}

/// Yields (one pass of the loop each) until `done` holds; fails after 100 passes. Waits for
/// callbacks by what they did, not for a time that a slow machine may exceed.
async fn passes_until(done: impl Fn() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        ringloop::yield_now().await;
    }
    panic!("not done after 100 passes of the loop");
}

#[test]
fn call_soon_runs_in_fifo_order() {
    let l = log();
    ringloop::run({
        let l = l.clone();
        async move {
            for i in 0..5 {
                ringloop::call_soon(push(&l, format!("cb{i}")));
            }
            assert!(l.borrow().is_empty(), "callbacks never run inline");
            // Each yield is one pass of the loop; the callbacks run in the first one.
            passes_until(|| l.borrow().len() >= 5).await;
        }
    });
    assert_eq!(*l.borrow(), ["cb0", "cb1", "cb2", "cb3", "cb4"]);
}

#[test]
fn a_callback_scheduled_by_a_callback_runs_after_those_already_queued() {
    let l = log();
    ringloop::run({
        let l = l.clone();
        async move {
            let l2 = l.clone();
            ringloop::call_soon(move || {
                l2.borrow_mut().push("first".into());
                ringloop::call_soon(push(&l2, "nested"));
            });
            ringloop::call_soon(push(&l, "second"));
            passes_until(|| l.borrow().len() >= 3).await;
        }
    });
    assert_eq!(*l.borrow(), ["first", "second", "nested"]);
}

#[test]
fn call_later_and_call_at_respect_deadlines_and_order() {
    let l = log();
    let times = Rc::new(RefCell::new(Vec::new()));
    ringloop::run({
        let l = l.clone();
        let times = times.clone();
        async move {
            let start = ringloop::time();
            for (name, ms) in [("c", 6u64), ("a", 2), ("b", 4)] {
                let l = l.clone();
                let times = times.clone();
                ringloop::call_later(Duration::from_millis(ms), move || {
                    l.borrow_mut().push(name.into());
                    times.borrow_mut().push((ms, start.elapsed()));
                });
            }
            // Same instant: FIFO.
            let at = start + Duration::from_millis(3);
            let h = ringloop::call_at(at, push(&l, "at1"));
            assert_eq!(h.when(), Some(at));
            ringloop::call_at(at, push(&l, "at2"));
            ringloop::sleep(Duration::from_millis(10)).await;
        }
    });
    assert_eq!(*l.borrow(), ["a", "at1", "at2", "b", "c"]);
    for (ms, elapsed) in times.borrow().iter() {
        assert!(
            *elapsed >= Duration::from_millis(*ms),
            "fired early: {ms} ms at {elapsed:?}"
        );
    }
}

#[test]
fn cancelled_callbacks_never_run() {
    let l = log();
    ringloop::run({
        let l = l.clone();
        async move {
            let soon = ringloop::call_soon(push(&l, "soon"));
            let later = ringloop::call_later(Duration::from_millis(1), push(&l, "later"));
            let kept = ringloop::call_later(Duration::from_millis(1), push(&l, "kept"));
            assert!(soon.cancel());
            assert!(!soon.cancel(), "a second cancel finds nothing");
            assert!(later.cancel());
            assert_eq!(soon.when(), None);
            ringloop::sleep(Duration::from_millis(5)).await;
            assert!(!kept.cancel(), "already ran");
        }
    });
    assert_eq!(*l.borrow(), ["kept"]);
}

#[test]
fn a_panicking_callback_does_not_stop_the_loop() {
    let l = log();
    ringloop::run({
        let l = l.clone();
        async move {
            ringloop::call_soon(|| panic!("callback failure"));
            ringloop::call_soon(push(&l, "after"));
            ringloop::call_later(Duration::from_millis(1), || panic!("timer failure"));
            ringloop::call_later(Duration::from_millis(2), push(&l, "later"));
            ringloop::sleep(Duration::from_millis(5)).await;
        }
    });
    assert_eq!(*l.borrow(), ["after", "later"]);
}

#[test]
fn call_soon_threadsafe_from_many_threads() {
    let rt = ringloop::Runtime::new().unwrap();
    let handle = rt.handle();
    let count = Rc::new(std::cell::Cell::new(0));
    let total = 4 * 500;
    let all_ran = ringloop::Promise::<()>::new();
    let waiting = all_ran.clone();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let handle = handle.clone();
            let all_ran = all_ran.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    let all_ran = all_ran.clone();
                    // The closure is Send; it reaches loop state through call_soon.
                    assert!(handle.call_soon_threadsafe(move || {
                        // The last callback to run ends the loop's wait.
                        if COUNT.with(|c| c.replace(c.get() + 1)) + 1 == total {
                            all_ran.set_result(()).unwrap();
                        }
                    }));
                }
            })
        })
        .collect();
    thread_local!(static COUNT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) });
    let c = count.clone();
    rt.block_on(async move {
        waiting.await.unwrap();
        c.set(COUNT.with(|c| c.get()));
    });
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(count.get(), total);
}

#[test]
fn timer_handle_cancel_from_another_runtime_does_nothing() {
    let l = log();
    let rt1 = ringloop::Runtime::new().unwrap();
    let rt2 = ringloop::Runtime::new().unwrap();
    let h = rt1.block_on({
        let l = l.clone();
        async move { ringloop::call_later(Duration::from_millis(1), push(&l, "rt1")) }
    });
    assert!(!rt2.block_on(async { h.cancel() }));
    rt1.block_on(ringloop::sleep(Duration::from_millis(3)));
    assert_eq!(*l.borrow(), ["rt1"]);
    let _ = Instant::now();
}

/// Review finding (issue 13): every done callback sees the result, as in asyncio. A detached
/// task's output was dropped when the first callback's `result()` ended, and a callback that
/// dropped the real handle emptied it for the callbacks after it.
#[test]
fn every_done_callback_sees_the_result() {
    use std::cell::RefCell;
    use std::rc::Rc;
    ringloop::run(async {
        // A detached task with two callbacks.
        let seen = Rc::new(RefCell::new(Vec::new()));
        let task = ringloop::spawn(async { 5u32 });
        for _ in 0..2 {
            let seen = Rc::clone(&seen);
            task.add_done_callback(move |t| seen.borrow_mut().push(t.result()));
        }
        drop(task);
        // A task whose first callback drops the real handle.
        let holder: Rc<RefCell<Option<ringloop::Task<u32>>>> = Rc::default();
        let task = ringloop::spawn(async { 7u32 });
        let h = Rc::clone(&holder);
        task.add_done_callback(move |_| drop(h.borrow_mut().take()));
        let seen2 = Rc::clone(&seen);
        task.add_done_callback(move |t| seen2.borrow_mut().push(t.result()));
        *holder.borrow_mut() = Some(task);
        while seen.borrow().len() < 3 {
            ringloop::yield_now().await;
        }
        let got: Vec<_> = seen
            .borrow()
            .iter()
            .map(|r| r.clone().map(|r| r.unwrap()))
            .collect();
        assert_eq!(got, [Some(5), Some(5), Some(7)]);
    });
}
