//! Behaviour tests for the runtime-agnostic combinators (`gather`,
//! `try_gather`, tuple forms, `as_completed`, `as_completed_until`,
//! `Promise`), driven by `futures`' executors and hand-made futures.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll};
use std::thread;

use futures::StreamExt;
use futures::channel::oneshot;
use futures::executor::{LocalPool, block_on};
use futures::task::LocalSpawnExt;
use ringloop::{
    Promise, PromiseError, as_completed, as_completed_until, gather, gather2, gather6, try_gather,
    try_gather2, try_gather3,
};

/// Increments its counter when dropped.
struct DropGuard(Rc<Cell<usize>>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// Future that wakes itself and returns `Pending` once, then `Ready(())`.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Wraps a future and counts how many times it is polled.
struct CountPolls<F> {
    inner: Pin<Box<F>>,
    polls: Rc<Cell<usize>>,
}

impl<F: Future> Future for CountPolls<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.set(self.polls.get() + 1);
        self.inner.as_mut().poll(cx)
    }
}

fn channels<T>(n: usize) -> (Vec<oneshot::Sender<T>>, Vec<oneshot::Receiver<T>>) {
    (0..n).map(|_| oneshot::channel()).unzip()
}

/// Spawns `fut` on `pool`, returning a cell that receives its output.
fn spawn_output<T: 'static>(
    pool: &LocalPool,
    fut: impl Future<Output = T> + 'static,
) -> Rc<RefCell<Option<T>>> {
    let out = Rc::new(RefCell::new(None));
    let slot = out.clone();
    pool.spawner()
        .spawn_local(async move {
            let v = fut.await;
            *slot.borrow_mut() = Some(v);
        })
        .unwrap();
    out
}

#[test]
fn gather_empty_is_ready() {
    let out: Vec<u8> = block_on(gather(Vec::<std::future::Ready<u8>>::new()));
    assert!(out.is_empty());
}

#[test]
fn gather_keeps_input_order_when_children_finish_in_reverse() {
    let mut pool = LocalPool::new();
    let (txs, rxs) = channels::<usize>(5);
    let out = spawn_output(
        &pool,
        gather(
            rxs.into_iter()
                .map(|rx| async move { rx.await.unwrap() * 10 }),
        ),
    );
    pool.run_until_stalled();
    for (i, tx) in txs.into_iter().enumerate().rev() {
        assert!(out.borrow().is_none());
        tx.send(i).unwrap();
        pool.run_until_stalled();
    }
    assert_eq!(out.borrow_mut().take().unwrap(), vec![0, 10, 20, 30, 40]);
}

#[test]
fn gather_polls_every_child_before_any_completes() {
    let mut pool = LocalPool::new();
    let started = Rc::new(Cell::new(0));
    let finished = Rc::new(Cell::new(0));
    let (txs, rxs) = channels::<()>(4);
    let children = rxs.into_iter().map(|rx| {
        let (started, finished) = (started.clone(), finished.clone());
        async move {
            started.set(started.get() + 1);
            rx.await.unwrap();
            finished.set(finished.get() + 1);
        }
    });
    let out = spawn_output(&pool, gather(children));
    pool.run_until_stalled();
    assert_eq!(started.get(), 4, "every child started on the first poll");
    assert_eq!(finished.get(), 0);
    for tx in txs {
        tx.send(()).unwrap();
    }
    pool.run_until_stalled();
    assert_eq!(finished.get(), 4);
    assert_eq!(out.borrow().as_ref().unwrap().len(), 4);
}

#[test]
fn gather_accepts_into_future_items() {
    let promises: Vec<Promise<u32>> = (0..3).map(|_| Promise::new()).collect();
    for (i, p) in promises.iter().enumerate().rev() {
        p.set_result(i as u32).unwrap();
    }
    let out = block_on(gather(promises));
    let out: Vec<u32> = out.into_iter().map(Result::unwrap).collect();
    assert_eq!(out, vec![0, 1, 2]);
}

#[test]
fn dropping_gather_drops_unfinished_children_once_and_keeps_outputs_until_then() {
    let mut pool = LocalPool::new();
    let future_drops = Rc::new(Cell::new(0));
    let output_drops = Rc::new(Cell::new(0));
    let (txs, rxs) = channels::<()>(6);
    let children = rxs.into_iter().map(|rx| {
        let guard = DropGuard(future_drops.clone());
        let output_drops = output_drops.clone();
        async move {
            let _guard = guard;
            rx.await.unwrap();
            DropGuard(output_drops)
        }
    });
    let mut g = Box::pin(gather(children));
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(g.as_mut().poll(&mut cx).is_pending());
    let mut txs = txs.into_iter();
    for tx in txs.by_ref().take(3) {
        tx.send(()).unwrap();
    }
    assert!(g.as_mut().poll(&mut cx).is_pending());
    assert_eq!(g.remaining(), 3);
    // Finished children's futures are dropped as soon as they finish;
    // their outputs are kept.
    assert_eq!(future_drops.get(), 3);
    assert_eq!(output_drops.get(), 0);
    drop(g);
    assert_eq!(
        future_drops.get(),
        6,
        "each unfinished child dropped exactly once"
    );
    assert_eq!(
        output_drops.get(),
        3,
        "kept outputs dropped once, with the gather"
    );
    drop(txs);
    pool.run_until_stalled();
    assert_eq!(future_drops.get(), 6);
    assert_eq!(output_drops.get(), 3);
}

#[test]
fn try_gather_returns_all_oks_in_input_order() {
    let mut pool = LocalPool::new();
    let (txs, rxs) = channels::<Result<u8, String>>(3);
    let out = spawn_output(
        &pool,
        try_gather(rxs.into_iter().map(|rx| async move { rx.await.unwrap() })),
    );
    pool.run_until_stalled();
    for (i, tx) in txs.into_iter().enumerate().rev() {
        tx.send(Ok(i as u8)).unwrap();
        pool.run_until_stalled();
    }
    assert_eq!(out.borrow_mut().take().unwrap(), Ok(vec![0, 1, 2]));
}

#[test]
fn try_gather_first_err_cancels_the_rest_before_returning() {
    let mut pool = LocalPool::new();
    let drops = Rc::new(Cell::new(0));
    let (txs, rxs) = channels::<Result<u8, String>>(5);
    let children = rxs
        .into_iter()
        .map(|rx| {
            let guard = DropGuard(drops.clone());
            async move {
                let _guard = guard;
                rx.await.unwrap()
            }
        })
        .collect::<Vec<_>>();
    let drops_at_return = Rc::new(Cell::new(usize::MAX));
    let seen = drops_at_return.clone();
    let d = drops.clone();
    let out = spawn_output(&pool, async move {
        let r = try_gather(children).await;
        seen.set(d.get());
        r
    });
    pool.run_until_stalled();
    let mut txs: Vec<_> = txs.into_iter().map(Some).collect();
    txs[1].take().unwrap().send(Ok(1)).unwrap();
    pool.run_until_stalled();
    assert_eq!(drops.get(), 1);
    txs[3].take().unwrap().send(Err("three".into())).unwrap();
    txs[0]
        .take()
        .unwrap()
        .send(Err("zero, later".into()))
        .unwrap();
    pool.run_until_stalled();
    // Child 3 was woken first, so its Err is first in completion order.
    assert_eq!(out.borrow_mut().take().unwrap(), Err("three".to_string()));
    assert_eq!(
        drops_at_return.get(),
        5,
        "every child dropped before try_gather returned"
    );
}

#[test]
fn tuple_gather_forms() {
    let (a, b) = block_on(gather2(async { 1u8 }, async { "two" }));
    assert_eq!((a, b), (1, "two"));

    let out = block_on(gather6(
        async { 1u8 },
        async { 'b' },
        async { "c" },
        async {
            YieldOnce(false).await;
            4u64
        },
        async { String::from("e") },
        async { [6; 2] },
    ));
    assert_eq!(out, (1, 'b', "c", 4, String::from("e"), [6, 6]));

    // Order is by argument even when the second finishes first.
    let mut pool = LocalPool::new();
    let (tx_a, rx_a) = oneshot::channel::<u8>();
    let (tx_b, rx_b) = oneshot::channel::<&str>();
    let out = spawn_output(
        &pool,
        gather2(async { rx_a.await.unwrap() }, async { rx_b.await.unwrap() }),
    );
    pool.run_until_stalled();
    tx_b.send("b").unwrap();
    pool.run_until_stalled();
    assert!(out.borrow().is_none());
    tx_a.send(7).unwrap();
    pool.run_until_stalled();
    assert_eq!(out.borrow_mut().take(), Some((7, "b")));
}

#[test]
fn tuple_try_gather_forms() {
    let ok = block_on(try_gather2(async { Ok::<_, String>(1u8) }, async {
        Ok("x")
    }));
    assert_eq!(ok, Ok((1, "x")));

    let mut pool = LocalPool::new();
    let drops = Rc::new(Cell::new(0));
    let (tx, rx) = oneshot::channel::<()>();
    let g1 = DropGuard(drops.clone());
    let g2 = DropGuard(drops.clone());
    let fut = try_gather3(
        async move {
            let _g = g1;
            futures::future::pending::<Result<u8, &str>>().await
        },
        async move {
            rx.await.unwrap();
            Err::<char, _>("boom")
        },
        async move {
            let _g = g2;
            futures::future::pending::<Result<String, &str>>().await
        },
    );
    let seen = Rc::new(Cell::new(usize::MAX));
    let (s, d) = (seen.clone(), drops.clone());
    let out = spawn_output(&pool, async move {
        let r = fut.await;
        s.set(d.get());
        r
    });
    pool.run_until_stalled();
    assert_eq!(drops.get(), 0);
    tx.send(()).unwrap();
    pool.run_until_stalled();
    assert_eq!(out.borrow_mut().take(), Some(Err("boom")));
    assert_eq!(seen.get(), 2, "pending children cancelled before returning");
}

#[test]
fn as_completed_yields_in_completion_order() {
    let mut pool = LocalPool::new();
    let (txs, rxs) = channels::<usize>(4);
    let log = Rc::new(RefCell::new(Vec::new()));
    let lens = Rc::new(RefCell::new(Vec::new()));
    let (l, ls) = (log.clone(), lens.clone());
    pool.spawner()
        .spawn_local(async move {
            let mut s = as_completed(rxs.into_iter().map(|rx| async move { rx.await.unwrap() }));
            ls.borrow_mut().push(s.len());
            while let Some(v) = s.next().await {
                l.borrow_mut().push(v);
                ls.borrow_mut().push(s.len());
            }
            assert!(s.is_empty());
        })
        .unwrap();
    pool.run_until_stalled();
    let mut txs: Vec<_> = txs.into_iter().map(Some).collect();
    for i in [2, 0, 3, 1] {
        txs[i].take().unwrap().send(i).unwrap();
        pool.run_until_stalled();
    }
    assert_eq!(*log.borrow(), vec![2, 0, 3, 1]);
    assert_eq!(*lens.borrow(), vec![4, 3, 2, 1, 0]);
}

#[test]
fn as_completed_is_a_stream_and_drop_cancels() {
    let drops = Rc::new(Cell::new(0));
    let children: Vec<Pin<Box<dyn Future<Output = u8>>>> = vec![
        Box::pin(async { 1 }),
        Box::pin({
            let g = DropGuard(drops.clone());
            async move {
                let _g = g;
                futures::future::pending::<u8>().await
            }
        }),
        Box::pin(async {
            YieldOnce(false).await;
            3
        }),
    ];
    let mut s = as_completed(children);
    assert_eq!(futures::Stream::size_hint(&s), (3, Some(3)));
    // Through the `Stream` trait (futures' StreamExt).
    let first_two: Vec<u8> = block_on((&mut s).take(2).collect());
    assert_eq!(first_two, vec![1, 3]);
    assert_eq!(s.len(), 1);
    assert_eq!(drops.get(), 0);
    drop(s);
    assert_eq!(drops.get(), 1);
}

#[test]
fn as_completed_until_timeout_yields_err_once_then_ends_and_drops_the_rest() {
    let mut pool = LocalPool::new();
    let drops = Rc::new(Cell::new(0));
    let (txs, rxs) = channels::<u8>(3);
    let children = rxs
        .into_iter()
        .map(|rx| {
            let g = DropGuard(drops.clone());
            async move {
                let _g = g;
                rx.await.unwrap()
            }
        })
        .collect::<Vec<_>>();
    let (timeout_tx, timeout_rx) = oneshot::channel::<()>();
    let timeout = async move {
        let _ = timeout_rx.await;
    };
    let items = Rc::new(RefCell::new(Vec::new()));
    let drops_after_err = Rc::new(Cell::new(usize::MAX));
    let (it, dae, d) = (items.clone(), drops_after_err.clone(), drops.clone());
    pool.spawner()
        .spawn_local(async move {
            let mut s = as_completed_until(children, timeout);
            while let Some(item) = s.next().await {
                if item.is_err() {
                    dae.set(d.get());
                    assert!(s.is_empty());
                }
                it.borrow_mut().push(item);
            }
            // Ended for good.
            assert!(s.next().await.is_none());
        })
        .unwrap();
    pool.run_until_stalled();
    let mut txs = txs.into_iter();
    txs.next().unwrap().send(9).unwrap();
    pool.run_until_stalled();
    assert_eq!(drops.get(), 1);
    timeout_tx.send(()).unwrap();
    pool.run_until_stalled();
    let elapsed = *items.borrow()[1].as_ref().unwrap_err();
    assert_eq!(*items.borrow(), vec![Ok(9), Err(elapsed)]);
    assert!(elapsed.to_string().starts_with("deadline has elapsed"));
    assert_eq!(
        drops_after_err.get(),
        3,
        "unfinished children dropped when the timeout fired"
    );
}

#[test]
fn as_completed_until_ends_normally_without_timeout() {
    let s = as_completed_until(
        vec![futures::future::ready(1), futures::future::ready(2)],
        futures::future::pending::<()>(),
    );
    let items: Vec<_> = block_on(s.collect());
    assert_eq!(items, vec![Ok(1), Ok(2)]);
}

#[test]
fn a_wake_only_repolls_the_woken_child() {
    const N: usize = 1000;
    let mut pool = LocalPool::new();
    let polls = Rc::new(Cell::new(0));
    let (txs, rxs) = channels::<usize>(N);
    let children = rxs.into_iter().map(|rx| CountPolls {
        inner: Box::pin(async move { rx.await.unwrap() }),
        polls: polls.clone(),
    });
    let out = spawn_output(&pool, gather(children));
    pool.run_until_stalled();
    assert_eq!(polls.get(), N);
    // Complete one child at a time, in a scattered order.
    let mut txs: Vec<_> = txs.into_iter().map(Some).collect();
    for k in 0..N {
        let i = (k * 7919) % N;
        txs[i].take().unwrap().send(i).unwrap();
        pool.run_until_stalled();
    }
    let out = out.borrow_mut().take().unwrap();
    assert_eq!(out, (0..N).collect::<Vec<_>>());
    assert!(polls.get() <= 2 * N + 5, "child polls: {}", polls.get());
}

#[test]
fn as_completed_wake_only_repolls_the_woken_child() {
    const N: usize = 500;
    let mut pool = LocalPool::new();
    let polls = Rc::new(Cell::new(0));
    let (txs, rxs) = channels::<usize>(N);
    let children = rxs
        .into_iter()
        .map(|rx| CountPolls {
            inner: Box::pin(async move { rx.await.unwrap() }),
            polls: polls.clone(),
        })
        .collect::<Vec<_>>();
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    pool.spawner()
        .spawn_local(async move {
            let mut s = as_completed(children);
            while let Some(v) = s.next().await {
                g.borrow_mut().push(v);
            }
        })
        .unwrap();
    pool.run_until_stalled();
    for (i, tx) in txs.into_iter().enumerate().rev() {
        tx.send(i).unwrap();
        pool.run_until_stalled();
    }
    assert_eq!(*got.borrow(), (0..N).rev().collect::<Vec<_>>());
    assert!(polls.get() <= 2 * N + 5, "child polls: {}", polls.get());
}

/// Polls `fut` to completion and calls `started` once, when its first poll returned `Pending`
/// (the children of a combinator have all registered their wakers then).
fn after_first_poll<F: Future>(fut: F, started: impl FnOnce()) -> impl Future<Output = F::Output> {
    let mut fut = Box::pin(fut);
    let mut started = Some(started);
    futures::future::poll_fn(move |cx| {
        let r = fut.as_mut().poll(cx);
        if r.is_pending() {
            if let Some(started) = started.take() {
                started();
            }
        }
        r
    })
}

#[test]
fn wakes_from_other_threads_complete_gather() {
    let (txs, rxs) = channels::<usize>(8);
    // Thread i sends its value when released. Released one at a time, last first: gather
    // waits, then each child, once gather has seen its value, releases the thread before it.
    let (gos, go_rxs): (Vec<_>, Vec<_>) = (0..8).map(|_| mpsc::channel::<()>()).unzip();
    let handles: Vec<_> = txs
        .into_iter()
        .zip(go_rxs)
        .enumerate()
        .map(|(i, (tx, go))| {
            thread::spawn(move || {
                go.recv().unwrap();
                tx.send(i).unwrap();
            })
        })
        .collect();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let children: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(i, rx)| {
            let release_previous = i.checked_sub(1).map(|j| gos[j].clone());
            let seen = seen.clone();
            async move {
                let v = rx.await.unwrap();
                seen.lock().unwrap().push(v);
                if let Some(go) = release_previous {
                    go.send(()).unwrap();
                }
                v
            }
        })
        .collect();
    let last = gos[7].clone();
    let out = block_on(after_first_poll(gather(children), move || {
        last.send(()).unwrap()
    }));
    assert_eq!(out, (0..8).collect::<Vec<_>>());
    assert_eq!(
        *seen.lock().unwrap(),
        (0..8).rev().collect::<Vec<_>>(),
        "completed in reverse order"
    );
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn stale_child_waker_after_finish_is_harmless() {
    let stash: Rc<RefCell<Option<std::task::Waker>>> = Rc::new(RefCell::new(None));
    let s = stash.clone();
    let child0 = futures::future::poll_fn(move |cx| {
        *s.borrow_mut() = Some(cx.waker().clone());
        Poll::Ready(0u8)
    });
    let (tx, rx) = oneshot::channel::<u8>();
    let mut pool = LocalPool::new();
    let kids: Vec<Pin<Box<dyn Future<Output = u8>>>> =
        vec![Box::pin(child0), Box::pin(async move { rx.await.unwrap() })];
    let out = spawn_output(&pool, gather(kids));
    pool.run_until_stalled();
    let stale = stash.borrow_mut().take().unwrap();
    // Waking a finished child (from another thread, too) does nothing bad.
    stale.wake_by_ref();
    thread::spawn(move || stale.wake()).join().unwrap();
    pool.run_until_stalled();
    tx.send(5).unwrap();
    pool.run_until_stalled();
    assert_eq!(out.borrow_mut().take(), Some(vec![0, 5]));
}

// ---------------------------------------------------------------- Promise

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn promise_is_send_sync_for_send_values() {
    assert_send_sync::<Promise<u32>>();
    assert_send_sync::<PromiseError>();
}

#[test]
fn promise_pending_state() {
    let p = Promise::<u32>::new();
    assert!(!p.done());
    assert!(!p.cancelled());
    assert!(p.result().unwrap_err().is_not_done());
    assert!(p.exception().unwrap_err().is_not_done());
    let waker = futures::task::noop_waker();
    let mut fut = Box::pin(p.clone().into_future());
    assert!(
        fut.as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
}

#[test]
fn promise_result_state_and_set_twice_gives_value_back() {
    let p = Promise::new();
    assert_eq!(p.set_result(String::from("a")), Ok(()));
    assert!(p.done());
    assert!(!p.cancelled());
    assert_eq!(p.result().unwrap(), "a");
    assert!(p.exception().unwrap().is_none());
    assert_eq!(p.set_result(String::from("b")), Err(String::from("b")));
    assert!(p.set_exception("late").unwrap_err().is_exception());
    assert!(!p.cancel());
    assert_eq!(block_on(p.wait()).unwrap(), "a");
    assert_eq!(block_on(async { (&p).await }).unwrap(), "a");
}

#[test]
fn promise_exception_state() {
    let p = Promise::<u8>::new();
    p.set_exception("disk on fire").unwrap();
    assert!(p.done());
    let err = p.result().unwrap_err();
    assert!(err.is_exception());
    assert_eq!(
        err.to_string(),
        "promise completed with an exception: disk on fire"
    );
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "disk on fire"
    );
    assert_eq!(p.exception().unwrap().unwrap().to_string(), "disk on fire");
    assert_eq!(p.set_result(3), Err(3));
    assert!(!p.cancel());
    let awaited = block_on(p.wait()).unwrap_err();
    assert_eq!(awaited.exception().unwrap().to_string(), "disk on fire");
    let io = Promise::<u8>::new();
    io.set_exception(std::io::Error::other("io")).unwrap();
    assert_eq!(io.exception().unwrap().unwrap().to_string(), "io");
}

#[test]
fn promise_cancelled_state() {
    let p = Promise::<u8>::new();
    assert!(p.cancel());
    assert!(p.done());
    assert!(p.cancelled());
    assert!(!p.cancel());
    assert!(p.result().unwrap_err().is_cancelled());
    assert!(p.exception().unwrap_err().is_cancelled());
    assert_eq!(p.set_result(1), Err(1));
    assert!(p.set_exception("x").unwrap_err().is_cancelled());
    assert!(block_on(async { p.await }).unwrap_err().is_cancelled());
    assert_eq!(PromiseError::Cancelled.to_string(), "promise was cancelled");
    assert!(PromiseError::NotDone.to_string().contains("not set"));
}

#[test]
fn promise_callbacks_run_exactly_once() {
    for how in 0..3 {
        let p = Promise::<u8>::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        for tag in 0..2 {
            let (c, o) = (calls.clone(), order.clone());
            p.add_done_callback(move |p| {
                assert!(p.done());
                c.fetch_add(1, Ordering::SeqCst);
                o.lock().unwrap().push(tag);
            });
        }
        let c = calls.clone();
        let removed = p.add_done_callback(move |_| {
            c.fetch_add(100, Ordering::SeqCst);
        });
        assert!(p.remove_done_callback(removed));
        assert!(!p.remove_done_callback(removed));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        match how {
            0 => p.set_result(1).unwrap(),
            1 => p.set_exception("e").unwrap(),
            _ => assert!(p.cancel()),
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(*order.lock().unwrap(), vec![0, 1]);
        // Further completions do not re-run them.
        let _ = p.set_result(2);
        assert!(!p.cancel());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Added after done: runs at once, exactly once.
        let c = calls.clone();
        let id = p.add_done_callback(move |_| {
            c.fetch_add(10, Ordering::SeqCst);
        });
        assert_eq!(calls.load(Ordering::SeqCst), 12);
        assert!(!p.remove_done_callback(id));
    }
}

#[test]
fn promise_callback_may_read_the_promise() {
    let p = Promise::<u8>::new();
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    p.add_done_callback(move |p| s.store(p.result().unwrap() as usize, Ordering::SeqCst));
    p.set_result(42).unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 42);
}

#[test]
fn several_clones_awaiting_all_get_the_value() {
    let mut pool = LocalPool::new();
    let p = Promise::<String>::new();
    let outs: Vec<_> = (0..3)
        .map(|_| spawn_output(&pool, p.clone().into_future()))
        .collect();
    // A waiter that gives up early does not disturb the others.
    let quitter = p.clone();
    pool.spawner()
        .spawn_local(async move {
            let mut w = Box::pin(quitter.wait());
            futures::future::poll_fn(|cx| {
                let _ = w.as_mut().poll(cx);
                Poll::Ready(())
            })
            .await;
        })
        .unwrap();
    pool.run_until_stalled();
    assert!(outs.iter().all(|o| o.borrow().is_none()));
    p.set_result("v".into()).unwrap();
    pool.run_until_stalled();
    for o in outs {
        assert_eq!(o.borrow_mut().take().unwrap().unwrap(), "v");
    }
}

#[test]
fn cancelling_wakes_waiters_with_cancelled() {
    let mut pool = LocalPool::new();
    let p = Promise::<u8>::new();
    let out = spawn_output(&pool, p.clone().into_future());
    pool.run_until_stalled();
    assert!(p.cancel());
    pool.run_until_stalled();
    assert!(out.borrow_mut().take().unwrap().unwrap_err().is_cancelled());
}

/// A value that is not `Clone`: only `take` can get it out.
#[derive(Debug)]
struct NotClone(Vec<u8>);

/// Issue 13: `Promise<T>` could only be awaited for `T: Clone`; `take` waits and moves the
/// value out.
#[test]
fn promise_take_moves_a_value_that_is_not_clone() {
    let mut pool = LocalPool::new();
    let p = Promise::<NotClone>::new();
    let watcher = p.clone();
    let out = spawn_output(&pool, p.clone().take());
    pool.run_until_stalled();
    assert!(out.borrow().is_none(), "waits while pending");
    assert!(p.set_result(NotClone(b"moved".to_vec())).is_ok());
    pool.run_until_stalled();
    let got = out.borrow_mut().take().unwrap().unwrap();
    assert_eq!(got.0, b"moved");
    // Still done for every clone; the value is gone.
    assert!(watcher.done());
    assert!(watcher.exception().unwrap().is_none());
    assert_eq!(format!("{watcher:?}"), r#"Promise { state: "taken" }"#);
}

#[test]
fn promise_take_gives_cancellation_and_exception_to_every_clone() {
    let p = Promise::<NotClone>::new();
    let q = p.clone();
    assert!(p.cancel());
    assert!(block_on(q.take()).unwrap_err().is_cancelled());
    assert!(block_on(p.clone().take()).unwrap_err().is_cancelled());

    let p = Promise::<NotClone>::new();
    p.set_exception("boom").unwrap();
    let e = block_on(p.clone().take()).unwrap_err();
    assert_eq!(e.exception().unwrap().to_string(), "boom");
    assert!(block_on(p.take()).unwrap_err().is_exception());
}

#[test]
fn promise_take_dropped_before_the_result_takes_nothing() {
    let mut pool = LocalPool::new();
    let p = Promise::<u32>::new();
    let out = spawn_output(&pool, p.clone().take());
    pool.run_until_stalled();
    drop(pool);
    drop(out);
    p.set_result(5).unwrap();
    assert_eq!(p.result().unwrap(), 5);
    assert_eq!(block_on(p.take()).unwrap(), 5);
}

#[test]
#[should_panic(expected = "already moved out")]
fn promise_result_after_take_panics() {
    let p = Promise::<u32>::new();
    p.set_result(1).unwrap();
    assert_eq!(block_on(p.clone().take()).unwrap(), 1);
    let _ = p.result();
}

#[test]
fn promise_set_from_another_thread_wakes_the_waiter() {
    let p = Promise::<u64>::new();
    let q = p.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    p.add_done_callback(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    // Set once the waiter waits.
    let (go, wait_for_go) = mpsc::channel::<()>();
    let h = thread::spawn(move || {
        wait_for_go.recv().unwrap();
        q.set_result(77).unwrap();
    });
    let waited = after_first_poll(p.wait(), move || go.send(()).unwrap());
    assert_eq!(block_on(waited).unwrap(), 77);
    h.join().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn gather_of_promises_completed_from_threads() {
    let promises: Vec<Promise<usize>> = (0..4).map(|_| Promise::new()).collect();
    // Thread i sets promise i when released. Released one at a time, last first: gather
    // waits, and each thread is released once gather was polled after the previous promise
    // was set (the poll its wake caused).
    let (gos, go_rxs): (Vec<_>, Vec<_>) = (0..4).map(|_| mpsc::channel::<()>()).unzip();
    let handles: Vec<_> = promises
        .iter()
        .cloned()
        .zip(go_rxs)
        .enumerate()
        .map(|(i, (p, go))| {
            thread::spawn(move || {
                go.recv().unwrap();
                p.set_result(i).unwrap();
            })
        })
        .collect();
    let mut gathered = Box::pin(gather(promises.iter()));
    let mut released: Option<usize> = None;
    let out = block_on(futures::future::poll_fn(|cx| {
        let shown = released.is_none_or(|i| promises[i].done());
        let r = gathered.as_mut().poll(cx);
        if r.is_pending() && shown {
            let next = released.map_or(Some(3), |i| i.checked_sub(1));
            let next = next.expect("gather is still pending after every promise was set");
            gos[next].send(()).unwrap();
            released = Some(next);
        }
        r
    }));
    let out: Vec<usize> = out.into_iter().map(Result::unwrap).collect();
    assert_eq!(out, vec![0, 1, 2, 3]);
    for h in handles {
        h.join().unwrap();
    }
}

/// Counts wakes of the parent.
struct CountWaker(AtomicUsize);

impl std::task::Wake for CountWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn as_completed_no_lost_wake_after_returning_early_mid_batch() {
    let (tx0, rx0) = oneshot::channel::<u8>();
    let (tx2, rx2) = oneshot::channel::<u8>();
    // Child 1 stays pending but lets the test wake it.
    let stash: Rc<RefCell<Option<std::task::Waker>>> = Rc::new(RefCell::new(None));
    let s = stash.clone();
    let kids: Vec<Pin<Box<dyn Future<Output = u8>>>> = vec![
        Box::pin(async move { rx0.await.unwrap() }),
        Box::pin(futures::future::poll_fn(move |cx| {
            *s.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })),
        Box::pin(async move { rx2.await.unwrap() }),
    ];
    let mut stream = as_completed(kids);
    let counter = Arc::new(CountWaker(AtomicUsize::new(0)));
    let waker = std::task::Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(stream.poll_next_unpin(&mut cx).is_pending());
    tx0.send(0).unwrap();
    stash.borrow().as_ref().unwrap().wake_by_ref(); // child 1 queued too
    assert_eq!(stream.poll_next_unpin(&mut cx), Poll::Ready(Some(0)));
    // Child 1 is left in the current batch; child 2 wakes now.
    let wakes = counter.0.load(Ordering::SeqCst);
    tx2.send(2).unwrap();
    assert!(counter.0.load(Ordering::SeqCst) > wakes, "parent woken");
    // The poll answering that wake must see child 2.
    assert_eq!(stream.poll_next_unpin(&mut cx), Poll::Ready(Some(2)));
    assert_eq!(stream.len(), 1);
}

#[test]
fn combinators_are_send_when_children_are() {
    fn assert_send<T: Send>(_: &T) {}
    let g = gather((0..3).map(|i| async move { i }));
    assert_send(&g);
    let t = try_gather((0..3).map(|i| async move { Ok::<_, String>(i) }));
    assert_send(&t);
    let a = as_completed((0..3).map(|i| async move { i }));
    assert_send(&a);
    assert_eq!(block_on(g), vec![0, 1, 2]);
    assert_eq!(block_on(t), Ok(vec![0, 1, 2]));
    let empty: Result<Vec<u8>, String> = block_on(try_gather(Vec::<
        futures::future::Ready<Result<u8, String>>,
    >::new()));
    assert_eq!(empty, Ok(vec![]));
}
