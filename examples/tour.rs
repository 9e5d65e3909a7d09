//! A tour of ringloop's asyncio-style API. Run it with:
//!
//! ```text
//! cargo run --release --example tour
//! ```
//!
//! Each section prints what it does and what happened.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringloop::{Handle, JoinError, Runtime};

async fn factorial(name: &'static str, n: u64) -> u64 {
    let mut f = 1;
    for i in 2..=n {
        println!("  Task {name}: compute factorial({n}), currently i={i}...");
        ringloop::sleep(Duration::from_millis(10)).await;
        f *= i;
    }
    println!("  Task {name}: factorial({n}) = {f}");
    f
}

/// A ProcessPool job: where it ran.
fn worker_pid(_: ()) -> u32 {
    std::process::id()
}

fn main() -> std::io::Result<()> {
    // asyncio.run(main()) is ringloop::run(main()); to handle "io_uring unavailable" yourself,
    // build the runtime explicitly:
    let rt = Runtime::new()?;
    let start = Instant::now();

    rt.block_on(async {
        println!("1. tasks run concurrently (asyncio.create_task):");
        let a = ringloop::spawn(factorial("A", 2));
        let b = ringloop::spawn(factorial("B", 3));
        let c = ringloop::spawn(factorial("C", 4));
        let results = (a.await.unwrap(), b.await.unwrap(), c.await.unwrap());
        println!("  results: {results:?}\n");

        println!("2. a task can be cancelled; awaiting it then reports it:");
        let sleeper = ringloop::spawn(async {
            ringloop::sleep(Duration::from_secs(3600)).await;
            "never"
        });
        sleeper.set_name("sleeper");
        sleeper.add_done_callback(|t| {
            println!(
                "  done callback: {} finished, cancelled = {}",
                t.name(),
                t.is_cancelled()
            )
        });
        ringloop::sleep(Duration::from_millis(1)).await;
        println!("  all_tasks() = {:?}", ringloop::all_tasks());
        println!("  cancel() -> {}", sleeper.cancel());
        match sleeper.await {
            Err(JoinError::Cancelled) => println!("  await -> Err(Cancelled)\n"),
            other => println!("  unexpected: {other:?}\n"),
        }

        println!("3. a panic in a task is caught and surfaces to whoever awaits it:");
        // Keep the default panic hook from printing the expected panic.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let bad = ringloop::spawn(async {
            ringloop::yield_now().await;
            panic!("something broke");
        });
        println!("  await -> {:?}\n", bad.await.map(|_: ()| ()));
        std::panic::set_hook(hook);

        println!("4. callbacks: call_soon (FIFO), call_later, call_at, cancellable handles:");
        let log = Rc::new(RefCell::new(Vec::new()));
        let t0 = ringloop::time();
        for (label, ms) in [("call_later 3 ms", 3u64), ("call_later 1 ms", 1)] {
            let log = log.clone();
            ringloop::call_later(Duration::from_millis(ms), move || {
                log.borrow_mut()
                    .push(format!("{label} at +{:?}", t0.elapsed()))
            });
        }
        let log2 = log.clone();
        ringloop::call_at(t0 + Duration::from_millis(2), move || {
            log2.borrow_mut()
                .push(format!("call_at +2 ms at +{:?}", t0.elapsed()))
        });
        let cancelled =
            ringloop::call_later(Duration::from_millis(1), || println!("  never printed"));
        cancelled.cancel();
        let log3 = log.clone();
        ringloop::call_soon(move || log3.borrow_mut().push("call_soon first".into()));
        ringloop::sleep(Duration::from_millis(5)).await;
        for line in log.borrow().iter() {
            println!("  {line}");
        }
        println!();

        println!("5. another thread hands work to the loop (call_soon_threadsafe):");
        let handle = Handle::current();
        let (tx, rx) = futures::channel::oneshot::channel();
        std::thread::spawn(move || {
            handle.call_soon_threadsafe(move || {
                let _ = tx.send(format!(
                    "ran on the loop thread: {:?}",
                    std::thread::current().name()
                ));
            });
        });
        println!("  {}\n", rx.await.unwrap());

        println!("6. an interval ticks on a fixed schedule:");
        let mut every = ringloop::interval(Duration::from_millis(2));
        let first = every.tick().await;
        for _ in 0..3 {
            let at = every.tick().await;
            println!("  tick at +{:?}", at - first);
        }
    });

    rt.block_on(async {
        println!("\n7. combinators: gather, wait_for, shield (see examples/combinators.rs):");
        let squares = ringloop::gather((1..=4u64).map(|n| async move {
            ringloop::sleep(Duration::from_millis(5 - n)).await;
            n * n
        }))
        .await;
        println!("  gather -> {squares:?} (input order, whatever the finishing order)");
        let slow = ringloop::spawn(ringloop::sleep(Duration::from_secs(3600)));
        let slow_ref = slow.task_ref();
        let r = ringloop::wait_for(slow, Duration::from_millis(2)).await;
        ringloop::yield_now().await;
        println!(
            "  wait_for(task, 2 ms) -> {r:?}; the task was cancelled: {}",
            slow_ref.is_cancelled()
        );

        println!(
            "\n8. executors: spawn_blocking on the runtime's pool, a ThreadPool, Handle::spawn:"
        );
        let sum = ringloop::spawn_blocking(|| (1..=1_000_000u64).sum::<u64>()).await;
        println!("  spawn_blocking(sum 1..=1e6) -> {sum:?}");
        let pool = ringloop::ThreadPool::builder()
            .max_workers(2)
            .thread_name_prefix("tour")
            .build();
        let job = pool.submit(|| std::thread::current().name().unwrap_or("?").to_owned());
        println!(
            "  ThreadPool::submit ran on thread {:?}",
            job.await.unwrap()
        );
        let handle = Handle::current();
        let from_thread = std::thread::spawn(move || {
            // asyncio.run_coroutine_threadsafe: a plain thread hands the loop a future and
            // blocks on the result.
            handle.spawn(async { 6 * 7 }).result(None)
        });
        while !from_thread.is_finished() {
            ringloop::sleep(Duration::from_millis(1)).await;
        }
        println!(
            "  Handle::spawn from a plain thread -> {:?}",
            from_thread.join().unwrap()
        );
    });

    println!("\n9. run_forever until stop() is called from another thread:");
    let handle = rt.handle();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        handle.stop();
    });
    let parked = Instant::now();
    rt.run_forever();
    println!("  run_forever returned after {:?}", parked.elapsed());

    println!("\n10. processes: a ProcessPool job, and a subprocess awaited on the loop:");
    // Workers are this binary, re-executed; a constructor hook serves jobs there before main.
    let pool = ringloop::ProcessPool::new(2)?;
    let in_worker = pool.submit(worker_pid, ()).result(None);
    println!(
        "  job ran in process {:?} (this one is {})",
        in_worker,
        std::process::id()
    );
    let cubes: Vec<u64> = pool.map(|x: u64| x * x * x, 1..=5, 2).collect();
    println!("  pool.map(cube, 1..=5, chunksize=2) -> {cubes:?}");
    drop(pool); // waits for the workers, as leaving Python's `with` block does
    rt.block_on(async {
        let out = ringloop::process::Command::new("sh")
            .args(["-c", "echo hello from a child; exit 3"])
            .output()
            .await;
        match out {
            Ok(out) => println!(
                "  child said {:?} and exited with {:?}",
                String::from_utf8_lossy(&out.stdout).trim_end(),
                out.status.code()
            ),
            Err(e) => println!("  could not run sh: {e}"),
        }
    });

    rt.close();
    println!("\ntour finished in {:?}", start.elapsed());
    Ok(())
}
