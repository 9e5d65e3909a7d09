//! Combinators on the ringloop runtime: wait_for, shield, wait (and gather / try_gather /
//! as_completed with tasks, once those land), observed through drop guards and task states.

mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringloop::{Elapsed, JoinError, ReturnWhen};
use support::{DropGuard, counter};

async fn sleep_ms(ms: u64) {
    ringloop::sleep(Duration::from_millis(ms)).await;
}

#[test]
fn wait_for_returns_the_output_in_time() {
    ringloop::run(async {
        let r = ringloop::wait_for(
            async {
                sleep_ms(1).await;
                "done"
            },
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(r, Ok("done"));
    });
}

#[test]
fn wait_for_expiry_drops_the_inner_future_at_once() {
    ringloop::run(async {
        let dropped = counter();
        let guard = DropGuard(dropped.clone());
        let start = Instant::now();
        let mut fut = std::pin::pin!(ringloop::wait_for(
            async move {
                let _g = guard;
                sleep_ms(3_600_000).await;
            },
            Duration::from_millis(2),
        ));
        let r = (&mut fut).await;
        assert!(matches!(r, Err(Elapsed { .. })));
        assert!(start.elapsed() >= Duration::from_millis(2));
        // Dropped on expiry, while the WaitFor itself is still alive.
        assert_eq!(dropped.get(), 1);
        let e = r.unwrap_err();
        assert!(e.to_string().contains("deadline has elapsed"));
        let io: std::io::Error = e.into();
        assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    });
}

#[test]
fn wait_for_on_a_task_cancels_the_task() {
    ringloop::run(async {
        let dropped = counter();
        let guard = DropGuard(dropped.clone());
        let task = ringloop::spawn(async move {
            let _g = guard;
            sleep_ms(3_600_000).await;
        });
        let task_ref = task.task_ref();
        assert!(
            ringloop::wait_for(task, Duration::from_millis(1))
                .await
                .is_err()
        );
        ringloop::yield_now().await;
        assert!(task_ref.is_done() && task_ref.is_cancelled());
        assert_eq!(dropped.get(), 1);
    });
}

#[test]
fn timeout_is_an_alias_and_zero_duration_still_lets_ready_futures_win() {
    ringloop::run(async {
        assert_eq!(ringloop::timeout(async { 1 }, Duration::ZERO).await, Ok(1));
        assert!(
            ringloop::timeout(sleep_ms(10), Duration::ZERO)
                .await
                .is_err()
        );
    });
}

#[test]
fn wait_for_cancels_in_flight_io_safely() {
    ringloop::run(async {
        for _ in 0..200 {
            let _ = ringloop::wait_for(
                async {
                    loop {
                        ringloop::io::nop().await.unwrap();
                    }
                },
                Duration::from_micros(50),
            )
            .await;
        }
        ringloop::io::nop().await.unwrap();
    });
}

#[test]
fn shield_survives_its_waiter_and_can_be_awaited_again() {
    ringloop::run(async {
        let finished = Rc::new(Cell::new(false));
        let f = finished.clone();
        let mut shielded = ringloop::shield(async move {
            sleep_ms(5).await;
            f.set(true);
            "result"
        });
        assert!(
            ringloop::wait_for(&mut shielded, Duration::from_millis(1))
                .await
                .is_err()
        );
        assert!(!shielded.task().is_done());
        assert!(!shielded.task().is_cancelled());
        assert_eq!(shielded.await, Ok("result"));
        assert!(finished.get());
    });
}

#[test]
fn shield_survives_the_cancellation_of_the_awaiting_task() {
    ringloop::run(async {
        let inner = ringloop::spawn(async {
            sleep_ms(5).await;
            7
        });
        let inner_ref = inner.task_ref();
        let shielded = ringloop::shield(inner);
        let shielded_task = shielded.task().task_ref();
        let waiter = ringloop::spawn(shielded);
        sleep_ms(1).await;
        waiter.cancel();
        assert_eq!(waiter.await, Err(JoinError::Cancelled));
        sleep_ms(10).await;
        assert!(inner_ref.is_done() && !inner_ref.is_cancelled());
        assert!(shielded_task.is_done() && !shielded_task.is_cancelled());
    });
}

#[test]
fn a_shielded_panic_is_reported() {
    ringloop::run(async {
        let r = ringloop::shield(async {
            panic!("inside shield");
        })
        .await;
        assert_eq!(r, Err::<(), _>(JoinError::Panicked("inside shield".into())));
    });
}

fn sleepers(ms: &[u64]) -> Vec<ringloop::Task<u64>> {
    ms.iter()
        .map(|&ms| {
            ringloop::spawn(async move {
                sleep_ms(ms).await;
                ms
            })
        })
        .collect()
}

#[test]
fn wait_first_completed() {
    ringloop::run(async {
        let (done, pending) =
            ringloop::wait(sleepers(&[50, 2, 60]), None, ReturnWhen::FirstCompleted).await;
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].result(), Some(Ok(2)));
        assert_eq!(pending.len(), 2);
        // Nothing was cancelled: the pending tasks finish.
        for t in pending {
            assert!(!t.is_cancelled());
            assert!(t.await.is_ok());
        }
    });
}

#[test]
fn wait_all_completed() {
    ringloop::run(async {
        let (done, pending) =
            ringloop::wait(sleepers(&[3, 1, 2]), None, ReturnWhen::AllCompleted).await;
        assert!(pending.is_empty());
        let got: Vec<_> = done.iter().map(|t| t.result().unwrap().unwrap()).collect();
        assert_eq!(got, vec![3, 1, 2], "input order");
    });
}

#[test]
fn wait_first_exception_returns_on_the_first_failure() {
    ringloop::run(async {
        let ok = ringloop::spawn(async {
            sleep_ms(1).await;
            1
        });
        let bad = ringloop::spawn(async {
            sleep_ms(3).await;
            panic!("failed");
        });
        let slow = ringloop::spawn(async {
            sleep_ms(3_600_000).await;
            3
        });
        let (done, pending) =
            ringloop::wait(vec![ok, bad, slow], None, ReturnWhen::FirstException).await;
        assert_eq!(done.len(), 2);
        assert_eq!(
            done[1].result(),
            Some(Err(JoinError::Panicked("failed".into())))
        );
        assert_eq!(pending.len(), 1);
        assert!(!pending[0].is_done());
        pending[0].cancel();
    });
}

#[test]
fn wait_first_exception_without_failures_waits_for_all() {
    ringloop::run(async {
        let (done, pending) =
            ringloop::wait(sleepers(&[1, 2]), None, ReturnWhen::FirstException).await;
        assert_eq!((done.len(), pending.len()), (2, 0));
    });
}

#[test]
fn wait_with_a_timeout_returns_what_is_done_and_cancels_nothing() {
    for how in [
        ReturnWhen::AllCompleted,
        ReturnWhen::FirstCompleted,
        ReturnWhen::FirstException,
    ] {
        ringloop::run(async move {
            let start = Instant::now();
            let (done, pending) = ringloop::wait(
                sleepers(&[1, 3_600_000, 3_600_000]),
                Some(Duration::from_millis(20)),
                how,
            )
            .await;
            if how == ReturnWhen::FirstCompleted {
                assert!(start.elapsed() < Duration::from_secs(3000));
            } else {
                assert!(start.elapsed() >= Duration::from_millis(20));
            }
            assert_eq!(done.len(), 1);
            assert_eq!(pending.len(), 2);
            for t in &pending {
                assert!(!t.is_done() && !t.is_cancelled());
            }
            // Still running: they can be waited on again.
            let (done2, pending2) = ringloop::wait(
                pending,
                Some(Duration::from_millis(1)),
                ReturnWhen::AllCompleted,
            )
            .await;
            assert!(done2.is_empty());
            assert_eq!(pending2.len(), 2);
        });
    }
}

#[test]
fn wait_on_nothing_returns_at_once() {
    ringloop::run(async {
        let (done, pending) = ringloop::wait(
            Vec::<ringloop::Task<()>>::new(),
            None,
            ReturnWhen::AllCompleted,
        )
        .await;
        assert!(done.is_empty() && pending.is_empty());
    });
}

#[test]
fn cancellation_is_not_an_exception_for_first_exception() {
    ringloop::run(async {
        let tasks = sleepers(&[3_600_000, 20]);
        tasks[0].cancel();
        // asyncio: a cancelled task is done but did not raise, so FIRST_EXCEPTION keeps
        // waiting until all are done.
        let (done, pending) = ringloop::wait(tasks, None, ReturnWhen::FirstException).await;
        assert_eq!(done.len(), 2);
        assert!(done[0].is_cancelled());
        assert!(pending.is_empty());
        // FirstCompleted counts the cancelled one as completed.
        let tasks = sleepers(&[3_600_000, 3_600_000]);
        tasks[1].cancel();
        let (done, pending) = ringloop::wait(tasks, None, ReturnWhen::FirstCompleted).await;
        assert_eq!((done.len(), pending.len()), (1, 1));
        pending[0].cancel();
    });
}

#[test]
fn wait_scales_to_many_tasks() {
    ringloop::run(async {
        let n = 20_000u64;
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                ringloop::spawn(async move {
                    ringloop::sleep(Duration::from_micros(i % 1000)).await;
                    i
                })
            })
            .collect();
        let (done, pending) = ringloop::wait(tasks, None, ReturnWhen::AllCompleted).await;
        assert!(pending.is_empty());
        let sum: u64 = done.into_iter().map(|t| t.result().unwrap().unwrap()).sum();
        assert_eq!(sum, n * (n - 1) / 2);
    });
}
