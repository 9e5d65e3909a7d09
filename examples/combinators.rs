//! The asyncio documentation's classic examples, in ringloop: `gather` of factorials,
//! `wait_for` timing out, `shield`, `wait` and `as_completed`.
//!
//! ```text
//! cargo run --release --example combinators
//! ```

use std::time::{Duration, Instant};

use ringloop::ReturnWhen;

// asyncio docs, "Running Tasks Concurrently":
//
//     async def factorial(name, number):
//         f = 1
//         for i in range(2, number + 1):
//             print(f"Task {name}: Compute factorial({number}), currently i={i}...")
//             await asyncio.sleep(1)
//             f *= i
//         print(f"Task {name}: factorial({number}) = {f}")
//         return f
//
//     L = await asyncio.gather(factorial("A", 2), factorial("B", 3), factorial("C", 4))
//     print(L)
async fn factorial(name: &str, number: u64) -> u64 {
    let mut f = 1;
    for i in 2..=number {
        println!("Task {name}: Compute factorial({number}), currently i={i}...");
        ringloop::sleep(Duration::from_millis(100)).await;
        f *= i;
    }
    println!("Task {name}: factorial({number}) = {f}");
    f
}

// asyncio docs, "Timeouts":
//
//     async def eternity():
//         await asyncio.sleep(3600)
//         print('yay!')
//
//     try:
//         await asyncio.wait_for(eternity(), timeout=1.0)
//     except TimeoutError:
//         print('timeout!')
async fn eternity() {
    ringloop::sleep(Duration::from_secs(3600)).await;
    println!("yay!");
}

fn main() {
    ringloop::run(async {
        println!("== gather ==");
        let l = ringloop::gather([factorial("A", 2), factorial("B", 3), factorial("C", 4)]).await;
        println!("{l:?}");

        println!("\n== wait_for ==");
        match ringloop::wait_for(eternity(), Duration::from_millis(100)).await {
            Ok(()) => println!("finished?"),
            Err(_) => println!("timeout!"),
        }

        println!("\n== shield ==");
        // The waiter gives up after 50 ms; the shielded work finishes anyway.
        let start = Instant::now();
        let mut work = ringloop::shield(async move {
            ringloop::sleep(Duration::from_millis(150)).await;
            println!("shielded work finished at +{:?}", start.elapsed());
            "result"
        });
        if ringloop::wait_for(&mut work, Duration::from_millis(50))
            .await
            .is_err()
        {
            println!(
                "waiter timed out at +{:?}; the work goes on",
                start.elapsed()
            );
        }
        println!("awaiting the shield again: {:?}", work.await);

        println!("\n== wait (FIRST_COMPLETED, then ALL_COMPLETED) ==");
        let tasks: Vec<_> = [300u64, 100, 200]
            .into_iter()
            .map(|ms| {
                ringloop::spawn(async move {
                    ringloop::sleep(Duration::from_millis(ms)).await;
                    ms
                })
            })
            .collect();
        let (done, pending) = ringloop::wait(tasks, None, ReturnWhen::FirstCompleted).await;
        println!("done: {}, pending: {}", done.len(), pending.len());
        let (done, _) = ringloop::wait(pending, None, ReturnWhen::AllCompleted).await;
        let results: Vec<_> = done.iter().map(|t| t.result().unwrap().unwrap()).collect();
        println!("then the rest: {results:?}");

        println!("\n== as_completed ==");
        let mut stream = ringloop::as_completed([3u64, 1, 2].map(|n| async move {
            ringloop::sleep(Duration::from_millis(n * 50)).await;
            n
        }));
        while let Some(n) = stream.next().await {
            println!("completed: {n}");
        }
    });
}
