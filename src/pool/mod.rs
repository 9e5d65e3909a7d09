//! Thread-pool executor: Python's `concurrent.futures.ThreadPoolExecutor` and `Future`.
//!
//! | Python `concurrent.futures`              | `ringloop`                                        |
//! |------------------------------------------|---------------------------------------------------|
//! | `ThreadPoolExecutor(max_workers=n)`      | [`ThreadPool::new(n)`](ThreadPool::new) / [`ThreadPool::builder`] |
//! | `executor.submit(fn)`                    | [`ThreadPool::submit`] → [`PoolFuture`]           |
//! | `executor.map(fn, it, buffersize=b)`     | [`ThreadPool::map`] / [`ThreadPool::map_buffered`] (values; [`ThreadPool::try_map`] for `Result`s) |
//! | `executor.shutdown(wait, cancel_futures=)` | [`ThreadPool::shutdown`]; dropping the pool = `with` exit |
//! | `future.result(timeout)` / `exception()` | [`PoolFuture::result`], [`PoolFuture::into_result`], [`PoolFuture::exception`] |
//! | `future.cancel()` / `add_done_callback`  | [`PoolFuture::cancel`], [`PoolFuture::add_done_callback`] |
//! | `await asyncio.wrap_future(f)`           | `f.await` (any executor)                          |
//! | `wait(fs, timeout, return_when)`         | [`wait`]                                          |
//! | `as_completed(fs, timeout)`              | [`as_completed`]                                  |
//! | `CancelledError`, `TimeoutError`, `BrokenThreadPool` | [`PoolError`]                          |
//!
//! Workers are plain threads started lazily (one per submit while no worker is idle, up
//! to `max_workers`); they own no driver. A panicking job becomes
//! [`PoolError::Panicked`] and its worker carries on.
//!
//! # Examples
//!
//! ```
//! use ringloop::ThreadPool;
//! use std::time::Duration;
//!
//! let pool = ThreadPool::new(3);
//! let futs: Vec<_> = [1u64, 2, 3]
//!     .into_iter()
//!     .map(|v| pool.submit(move || { std::thread::sleep(Duration::from_millis(v)); v * v }))
//!     .collect();
//! for f in &futs {
//!     println!("{}", f.result(None).unwrap());
//! }
//! let squares: Vec<u64> = pool.map(|v: u64| v * v, [4, 5]).collect();
//! assert_eq!(squares, [16, 25]);
//! ```

mod blocking;
mod error;
mod future;
mod map;
#[cfg(feature = "process")]
mod process_pool;
mod thread_pool;
mod wait;

pub use self::blocking::spawn_blocking;
pub use self::error::PoolError;
pub use self::future::{Completer, PoolFuture};
pub use self::map::{Map, TryMap};
#[cfg(feature = "process")]
pub use self::process_pool::{ProcessMap, ProcessPool, ProcessPoolBuilder, ProcessTryMap};
pub use self::thread_pool::{ThreadPool, ThreadPoolBuilder};
pub use self::wait::{AsCompleted, as_completed, wait};
pub use crate::future::ReturnWhen;
