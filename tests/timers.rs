//! Timers: sleep, sleep_until, interval, time, and their cancellation.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[test]
fn sleep_never_ends_early() {
    ringloop::run(async {
        for us in [0u64, 1, 50, 300, 1500, 5000] {
            let d = Duration::from_micros(us);
            let start = Instant::now();
            ringloop::sleep(d).await;
            assert!(
                start.elapsed() >= d,
                "sleep({d:?}) ended after {:?}",
                start.elapsed()
            );
        }
    });
}

#[test]
fn sleeps_end_in_deadline_order() {
    let order = Rc::new(RefCell::new(Vec::new()));
    ringloop::run({
        let order = order.clone();
        async move {
            let tasks: Vec<_> = [7u64, 1, 5, 3, 9, 2]
                .into_iter()
                .map(|ms| {
                    let order = order.clone();
                    ringloop::spawn(async move {
                        ringloop::sleep(Duration::from_millis(ms)).await;
                        order.borrow_mut().push(ms);
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        }
    });
    assert_eq!(*order.borrow(), vec![1, 2, 3, 5, 7, 9]);
}

#[test]
fn sleep_until_a_past_deadline_is_ready_at_once() {
    ringloop::run(async {
        let past = Instant::now() - Duration::from_secs(1);
        let mut s = std::pin::pin!(ringloop::sleep_until(past));
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(s.as_mut().poll(&mut cx).is_ready());
        assert!(ringloop::sleep_until(past).is_elapsed());
    });
}

use std::future::Future;

#[test]
fn one_hundred_thousand_concurrent_sleeps_all_complete() {
    let n = 100_000u64;
    let (sum, elapsed) = ringloop::run(async move {
        let start = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                ringloop::spawn(async move {
                    let d = Duration::from_micros(1000 + (i * 7919) % 20_000);
                    let t0 = Instant::now();
                    ringloop::sleep(d).await;
                    assert!(t0.elapsed() >= d);
                    i
                })
            })
            .collect();
        let mut sum = 0;
        for t in tasks {
            sum += t.await.unwrap();
        }
        (sum, start.elapsed())
    });
    assert_eq!(sum, n * (n - 1) / 2);
    assert!(elapsed >= Duration::from_millis(1));
}

#[test]
fn a_dropped_sleep_never_wakes_its_task() {
    ringloop::run(async {
        let polls = Rc::new(std::cell::Cell::new(0));
        let p = polls.clone();
        let task = ringloop::spawn(futures::future::poll_fn(move |cx| {
            p.set(p.get() + 1);
            if p.get() == 1 {
                // Register a 1 ms timer, then drop it: its wake-up must not arrive.
                let mut s = Box::pin(ringloop::sleep(Duration::from_millis(1)));
                assert!(s.as_mut().poll(cx).is_pending());
            }
            std::task::Poll::<()>::Pending
        }));
        ringloop::sleep(Duration::from_millis(10)).await;
        assert_eq!(polls.get(), 1, "the dropped timer woke the task");
        task.cancel();
    });
}

#[test]
fn sleep_reset_moves_the_deadline() {
    ringloop::run(async {
        let start = Instant::now();
        let mut s = Box::pin(ringloop::sleep(Duration::from_secs(3600)));
        let waker = futures::task::noop_waker();
        assert!(
            s.as_mut()
                .poll(&mut std::task::Context::from_waker(&waker))
                .is_pending()
        );
        s.as_mut().reset(start + Duration::from_millis(3));
        s.await;
        let e = start.elapsed();
        assert!(e >= Duration::from_millis(3) && e < Duration::from_secs(60));
    });
}

#[test]
fn interval_ticks_on_schedule() {
    ringloop::run(async {
        let period = Duration::from_millis(2);
        let mut iv = ringloop::interval(period);
        assert_eq!(iv.period(), period);
        let first = iv.tick().await;
        let mut last = first;
        for k in 1..=5u32 {
            let at = iv.tick().await;
            assert_eq!(at, first + period * k, "ticks keep the original schedule");
            assert!(Instant::now() >= at);
            last = at;
        }
        assert!(last - first == period * 5);
    });
}

#[test]
#[should_panic(expected = "period must be non-zero")]
fn a_zero_interval_is_refused() {
    ringloop::run(async {
        let _ = ringloop::interval(Duration::ZERO);
    });
}

#[test]
fn time_is_the_monotonic_clock() {
    ringloop::run(async {
        let a = ringloop::time();
        ringloop::sleep(Duration::from_millis(1)).await;
        let b = ringloop::time();
        assert!(b - a >= Duration::from_millis(1));
    });
}

#[test]
fn a_huge_sleep_does_not_overflow() {
    ringloop::run(async {
        let s = ringloop::sleep(Duration::MAX);
        assert!(s.deadline() > Instant::now() + Duration::from_secs(86400 * 365));
        // Polling it registers a timer far away; the loop must still run other work.
        let task = ringloop::spawn(s);
        ringloop::sleep(Duration::from_millis(1)).await;
        assert!(!task.is_done());
        task.cancel();
    });
}
