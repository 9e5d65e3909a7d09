//! Port of the `concurrent.futures` cheat-sheet: submit, result, done callback, map.
//!
//! ```python
//! from concurrent.futures import ThreadPoolExecutor
//! import time
//! def my_func(value):
//!     time.sleep(value / 10)
//!     return value ** 2
//! with ThreadPoolExecutor(max_workers=3) as executor:
//!     futures = [executor.submit(my_func, v) for v in [1, 2, 3]]
//!     for f in futures:
//!         print(f.result())
//!     # done callback
//!     f = executor.submit(my_func, 4)
//!     f.add_done_callback(lambda fut: print(f"callback: {fut.result()}"))
//!     # map
//!     for r in executor.map(my_func, [1, 2, 3] * 3):
//!         print(r)
//! ```
//!
//! Prints 1 4 9, then 1 4 9 1 4 9 1 4 9 from `map`, with `callback: 16` somewhere in
//! between (when the 0.4 s job finishes, as in Python).

use std::thread;
use std::time::Duration;

use ringloop::ThreadPool;

fn my_func(value: u64) -> u64 {
    thread::sleep(Duration::from_millis(value * 100));
    value.pow(2)
}

fn main() {
    // Dropping `executor` at the end of the block waits for its jobs, like `with`.
    let executor = ThreadPool::new(3);

    let futures: Vec<_> = [1, 2, 3]
        .into_iter()
        .map(|v| executor.submit(move || my_func(v)))
        .collect();
    for f in &futures {
        println!("{}", f.result(None).unwrap());
    }

    // done callback
    let f = executor.submit(|| my_func(4));
    f.add_done_callback(|fut| println!("callback: {}", fut.result(None).unwrap()));

    // map
    let inputs = [1, 2, 3].repeat(3);
    for r in executor.map(my_func, inputs) {
        println!("{r}");
    }
}
