//! Port of the `concurrent.futures` cheat-sheet: `wait` (FIRST_COMPLETED, ALL_COMPLETED)
//! and `as_completed`.
//!
//! ```python
//! from concurrent.futures import ThreadPoolExecutor, wait, as_completed, FIRST_COMPLETED, ALL_COMPLETED
//! import time
//! def my_func(value):
//!     time.sleep(value / 10)
//!     return value ** 2
//! with ThreadPoolExecutor(max_workers=3) as executor:
//!     futures = [executor.submit(my_func, v) for v in [1, 2, 3]]
//!     done, not_done = wait(futures, return_when=FIRST_COMPLETED)
//!     print(len(done), len(not_done))
//!     print([f.result() for f in done])
//!     done, not_done = wait(futures, return_when=ALL_COMPLETED)
//!     print(len(done), len(not_done))
//!     print(sorted(f.result() for f in done))
//!     futures = [executor.submit(my_func, v) for v in [3, 1, 2]]
//!     for f in as_completed(futures):
//!         print(f.result())
//! ```
//!
//! Output (both): `1 2`, `[1]`, `3 0`, `[1, 4, 9]`, then `1`, `4`, `9` (completion order).

use std::thread;
use std::time::Duration;

use ringloop::pool::{as_completed, wait};
use ringloop::{ReturnWhen, ThreadPool};

fn my_func(value: u64) -> u64 {
    thread::sleep(Duration::from_millis(value * 100));
    value.pow(2)
}

fn main() {
    let executor = ThreadPool::new(3);

    let futures: Vec<_> = [1, 2, 3]
        .into_iter()
        .map(|v| executor.submit(move || my_func(v)))
        .collect();
    // `wait` takes the futures by value: pass clones to keep using `futures`.
    let (done, not_done) = wait(futures.iter().cloned(), None, ReturnWhen::FirstCompleted);
    println!("{} {}", done.len(), not_done.len());
    println!(
        "{:?}",
        done.iter()
            .map(|f| f.result(None).unwrap())
            .collect::<Vec<_>>()
    );

    let (done, not_done) = wait(futures.iter().cloned(), None, ReturnWhen::AllCompleted);
    println!("{} {}", done.len(), not_done.len());
    let mut results: Vec<_> = done.iter().map(|f| f.result(None).unwrap()).collect();
    results.sort();
    println!("{results:?}");

    let futures: Vec<_> = [3, 1, 2]
        .into_iter()
        .map(|v| executor.submit(move || my_func(v)))
        .collect();
    for f in as_completed(futures, None) {
        println!("{}", f.unwrap().into_result(None).unwrap());
    }
}
