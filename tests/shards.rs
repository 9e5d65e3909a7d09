//! The sharded runtime: run, submit_to, shard ids, SO_REUSEPORT listeners, streams moved
//! between shards, the shared blocking pool, stop and drop with work in flight, and faults.
//! Runs on whichever driver `RINGLOOP_DRIVER` selects (CI runs both).

mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::Either;
use ringloop::io::BufResult;
use ringloop::net::{TcpListener, TcpStream};
use ringloop::{PoolError, Promise, ShardedRuntime};

#[test]
fn run_gives_every_shards_result_in_order() {
    let rt = ShardedRuntime::new(3).unwrap();
    assert_eq!(rt.shards(), 3);
    let out = rt.run(|shard| async move {
        ringloop::sleep(Duration::from_millis(1)).await;
        (shard, ringloop::shard_id(), ringloop::shard_count())
    });
    assert_eq!(out, [(0, 0, 3), (1, 1, 3), (2, 2, 3)]);
    // The loops keep serving between runs.
    let again = rt.run(|shard| async move { shard * 2 });
    assert_eq!(again, [0, 2, 4]);
}

#[test]
fn outside_a_shard_the_ids_are_those_of_one_loop() {
    assert_eq!((ringloop::shard_id(), ringloop::shard_count()), (0, 1));
    ringloop::run(async {
        assert_eq!((ringloop::shard_id(), ringloop::shard_count()), (0, 1));
    });
}

#[test]
fn shards_zero_means_one_per_cpu() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    let rt = ShardedRuntime::new(0).unwrap();
    assert_eq!(rt.shards(), cpus);
    // More shards than CPUs works, pinned or not (pinning wraps around the CPUs).
    let rt = ShardedRuntime::builder()
        .shards(cpus * 2 + 1)
        .pin_to_cores(true)
        .build()
        .unwrap();
    let out = rt.run(|shard| async move { shard });
    assert_eq!(out, (0..cpus * 2 + 1).collect::<Vec<_>>());
}

#[test]
fn not_send_state_lives_on_its_shard() {
    let rt = ShardedRuntime::new(2).unwrap();
    let out = rt.run(|shard| async move {
        let counter = Rc::new(Cell::new(0));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let counter = Rc::clone(&counter);
                ringloop::spawn(async move {
                    ringloop::yield_now().await;
                    counter.set(counter.get() + 1);
                    ringloop::shard_id()
                })
            })
            .collect();
        let mut on = Vec::new();
        for t in tasks {
            on.push(t.await.unwrap());
        }
        assert!(on.iter().all(|&s| s == shard), "a task ran off its shard");
        counter.get()
    });
    assert_eq!(out, [10, 10]);
}

#[test]
fn submit_to_from_a_shard_a_plain_thread_and_the_calling_shard() {
    let rt = ShardedRuntime::new(2).unwrap();
    // From a plain thread: waitable there, and awaitable by a plain executor.
    let fut = rt.submit_to(1, || async { ringloop::shard_id() * 100 });
    assert_eq!(fut.result(None), Ok(100));
    let fut = rt.submit_to(0, || {
        // The closure itself runs on the shard, and its future need not be Send.
        let here = Rc::new(ringloop::shard_id());
        async move { *here + 7 }
    });
    assert_eq!(futures::executor::block_on(fut), Ok(7));
    let out = rt.run(|shard| async move {
        let other = ringloop::submit_to(1 - shard, || async { ringloop::shard_id() })
            .await
            .unwrap();
        let itself = ringloop::submit_to(shard, || async { ringloop::shard_id() })
            .await
            .unwrap();
        (other, itself)
    });
    assert_eq!(out, [(1, 0), (0, 1)]);
}

#[test]
fn many_submit_to_round_trips_lose_nothing() {
    const N: usize = 100_000;
    let rt = ShardedRuntime::new(2).unwrap();
    let out = rt.run(|shard| async move {
        if shard != 0 {
            return 0;
        }
        let mut sum = 0;
        for i in 0..N {
            sum += ringloop::submit_to(1, move || async move { i + 1 })
                .await
                .unwrap();
        }
        sum
    });
    assert_eq!(out[0], N * (N + 1) / 2);
}

#[test]
fn submit_to_faults_are_errors_not_panics_or_hangs() {
    let rt = ShardedRuntime::new(2).unwrap();
    let err = rt.submit_to(5, || async { 1 }).result(None).unwrap_err();
    assert_eq!(
        err,
        PoolError::InvalidShard {
            shard: 5,
            shards: 2
        }
    );
    assert!(err.to_string().contains("no shard 5"), "{err}");
    let out = rt.run(|_| async { ringloop::submit_to(9, || async {}).await });
    assert!(
        out.iter()
            .all(|r| matches!(r, Err(PoolError::InvalidShard { .. })))
    );
    // A panic in the closure or its future comes back as Panicked.
    let err = rt
        .submit_to(1, || -> std::future::Ready<()> { panic!("closure boom") })
        .result(None)
        .unwrap_err();
    assert_eq!(err, PoolError::Panicked("closure boom".into()));
    let err = rt
        .submit_to(1, || async { panic!("future boom") })
        .result(None)
        .unwrap_err();
    assert_eq!(err, PoolError::Panicked("future boom".into()));
    // After stop, submissions fail at once with Shutdown.
    rt.stop();
    let err = rt.submit_to(0, || async { 1 }).result(None).unwrap_err();
    assert_eq!(err, PoolError::Shutdown);
}

#[test]
#[should_panic(expected = "outside a ShardedRuntime's shard")]
fn the_free_submit_to_outside_a_shard_panics_clearly() {
    drop(ringloop::submit_to(0, || async {}));
}

#[test]
fn a_panicking_shard_cancels_the_others_and_the_panic_reaches_run() {
    let rt = ShardedRuntime::new(3).unwrap();
    let cancelled = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&cancelled);
    // Set by the last of the other shards to be running: shard 1 panics only then, once
    // both wait in the kernel (parked, as accept loops would be).
    let running = Arc::new(AtomicUsize::new(0));
    let all_running = Promise::<()>::new();
    let loop_threads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.run(move |shard| {
            let seen = Arc::clone(&seen);
            let running = Arc::clone(&running);
            let all_running = all_running.clone();
            let loop_threads = Arc::clone(&loop_threads);
            async move {
                if shard == 1 {
                    ringloop::wait_for(all_running.wait(), Duration::from_secs(30))
                        .await
                        .expect("the other shards never ran")
                        .unwrap();
                    for &tid in loop_threads.lock().unwrap().iter() {
                        support::wait_until_parked(tid);
                    }
                    panic!("accept loop failed");
                }
                // Would run forever; dropped when shard 1 panics.
                struct Count(Arc<AtomicUsize>);
                impl Drop for Count {
                    fn drop(&mut self) {
                        self.0.fetch_add(1, Ordering::SeqCst);
                    }
                }
                let _count = Count(seen);
                loop_threads.lock().unwrap().push(support::thread_id());
                if running.fetch_add(1, Ordering::SeqCst) + 1 == 2 {
                    all_running.set_result(()).unwrap();
                }
                std::future::pending::<()>().await;
            }
        })
    }));
    let payload = caught.unwrap_err();
    let msg = payload.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("shard 1 panicked: accept loop failed"),
        "{msg}"
    );
    assert_eq!(
        cancelled.load(Ordering::SeqCst),
        2,
        "the other shards' futures were dropped"
    );
    // The runtime still serves.
    assert_eq!(rt.run(|shard| async move { shard }), [0, 1, 2]);
}

#[test]
fn reuse_port_listeners_on_two_shards_serve_every_connection() {
    const CONNS: usize = 1000;
    let rt = ShardedRuntime::new(2).unwrap();
    let probe = TcpListener::bind_reuse_port("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    // Never accepted on: the conversion has nothing to wait for.
    let (probe, _) = futures::executor::block_on(probe.into_std()).unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    // Set by the echo of the last connection: every shard stops accepting then (each
    // connection was accepted before it was served, so none is left).
    let all_served = Promise::<()>::new();
    // Each shard binds its own listener on the same address and echoes until every
    // connection was served; the clients run on a plain thread.
    let servers = {
        let served = Arc::clone(&served);
        std::thread::spawn(move || {
            rt.run(move |_| {
                let served = Arc::clone(&served);
                let all_served = all_served.clone();
                async move {
                    let listener = TcpListener::bind_reuse_port(addr).unwrap();
                    let mut mine = 0;
                    loop {
                        let accept = std::pin::pin!(listener.accept());
                        let done = std::pin::pin!(all_served.wait());
                        let accepted = match futures::future::select(accept, done).await {
                            Either::Left((accepted, _)) => accepted,
                            Either::Right(_) => return mine,
                        };
                        let (stream, _) = accepted.unwrap();
                        mine += 1;
                        let served = Arc::clone(&served);
                        let all_served = all_served.clone();
                        ringloop::spawn(async move {
                            let BufResult(n, buf) = stream.read(Vec::with_capacity(16)).await;
                            let n = n.unwrap();
                            stream.write_all(buf).await.0.unwrap();
                            assert_eq!(n, 8);
                            if served.fetch_add(1, Ordering::SeqCst) + 1 == CONNS {
                                all_served.set_result(()).unwrap();
                            }
                        })
                        .detach();
                    }
                }
            })
        })
    };
    // The probe listener is part of the group too: close it before the clients connect, so
    // every connection lands on a shard.
    drop(probe);
    let clients: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..CONNS / 4 {
                    use std::io::{Read, Write};
                    let mut c = loop {
                        match std::net::TcpStream::connect(addr) {
                            Ok(c) => break c,
                            // Before the shards' listeners are bound.
                            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                                std::thread::yield_now()
                            }
                            Err(e) => panic!("{e}"),
                        }
                    };
                    let msg = format!("{t}:{i:06}");
                    let msg = &msg.as_bytes()[..8];
                    c.write_all(msg).unwrap();
                    let mut back = [0u8; 8];
                    c.read_exact(&mut back).unwrap();
                    assert_eq!(&back, msg);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let per_shard = servers.join().unwrap();
    assert_eq!(per_shard.iter().sum::<usize>(), CONNS, "{per_shard:?}");
    assert_eq!(served.load(Ordering::SeqCst), CONNS);
}

#[test]
fn a_stream_moved_between_shards_keeps_its_buffered_bytes() {
    let rt = ShardedRuntime::new(2).unwrap();
    let out = rt.run(|shard| async move {
        if shard == 1 {
            return None;
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all("first second").await.0.unwrap();
        drop(client);
        // Reads cancelled at once until one got bytes: on io_uring a cancelled receive that
        // got them anyway leaves them in the stream's buffer; on epoll a read can complete
        // at once, and then it returns them here.
        let mut before = Vec::new();
        while server.rescued_reads() == 0 && before.is_empty() {
            match ringloop::wait_for(server.read(Vec::with_capacity(3)), Duration::ZERO).await {
                Ok(BufResult(n, buf)) => {
                    n.unwrap();
                    before = buf;
                }
                Err(_) => ringloop::yield_now().await,
            }
        }
        let rescued = server.rescued_reads();
        let moving = server.into_send().await.unwrap();
        let after = ringloop::submit_to(1, move || async move {
            let stream = moving.into_stream();
            let mut all = Vec::new();
            loop {
                let BufResult(n, buf) = stream.read(Vec::with_capacity(64)).await;
                if n.unwrap() == 0 {
                    return all;
                }
                all.extend_from_slice(&buf);
            }
        })
        .await
        .unwrap();
        Some((before, after, rescued))
    });
    let (mut before, after, rescued) = out[0].clone().unwrap();
    before.extend_from_slice(&after);
    assert_eq!(
        String::from_utf8(before).unwrap(),
        "first second",
        "bytes lost or reordered in the move ({rescued} rescued reads)"
    );
}

#[test]
fn the_shards_share_one_blocking_pool() {
    let rt = ShardedRuntime::builder()
        .shards(2)
        .blocking_threads(2)
        .build()
        .unwrap();
    let names = rt.run(|_| async {
        ringloop::spawn_blocking(|| {
            let name = std::thread::current().name().unwrap().to_owned();
            // The pool's number, not the worker's: "ringloop-blocking-N_i".
            name.rsplit_once('_').unwrap().0.to_owned()
        })
        .await
        .unwrap()
    });
    assert_eq!(names[0], names[1], "each shard got its own pool: {names:?}");
}

#[test]
fn stop_and_drop_with_tasks_and_io_in_flight_on_every_shard() {
    for stop_first in [false, true] {
        let rt = ShardedRuntime::new(2).unwrap();
        let started = Arc::new(AtomicUsize::new(0));
        let futs: Vec<_> = (0..2)
            .map(|shard| {
                let started = Arc::clone(&started);
                rt.submit_to(shard, move || async move {
                    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                    let addr = listener.local_addr().unwrap();
                    let client = TcpStream::connect(addr).await.unwrap();
                    let (server, _) = listener.accept().await.unwrap();
                    ringloop::spawn(async { ringloop::sleep(Duration::from_secs(3600)).await })
                        .detach();
                    started.fetch_add(1, Ordering::SeqCst);
                    // A read that never completes, and a live client.
                    let _keep = client;
                    server.read(Vec::with_capacity(8)).await.0
                })
            })
            .collect();
        while started.load(Ordering::SeqCst) < 2 {
            std::thread::yield_now();
        }
        if stop_first {
            rt.stop();
        }
        drop(rt);
        for f in futs {
            assert_eq!(f.into_result(None).unwrap_err(), PoolError::Cancelled);
        }
    }
}

#[test]
#[should_panic(expected = "from one of its own shards")]
fn run_from_a_shard_of_the_same_runtime_panics() {
    let rt = Arc::new(ShardedRuntime::new(1).unwrap());
    let inner = Arc::clone(&rt);
    let r = rt
        .submit_to(0, move || async move {
            inner.run(|_| async {});
        })
        .result(None);
    if let Err(PoolError::Panicked(msg)) = r {
        panic!("{msg}");
    }
}

#[test]
fn the_sharded_runtime_is_send_and_sync_and_so_are_moved_streams() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<ShardedRuntime>();
    send_sync::<ringloop::ShardedBuilder>();
    send::<ringloop::net::SendStream<TcpStream>>();
    send::<ringloop::net::SendStream<ringloop::net::UnixStream>>();
}
