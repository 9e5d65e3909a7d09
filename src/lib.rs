//! ringloop: an async runtime for Linux on io_uring (or epoll where io_uring is refused), with
//! the API of Python's `asyncio` and `concurrent.futures`.
//!
//! One event loop per thread, one driver per loop. Futures need not be `Send`. Start it with
//! [`run`] or [`Runtime::block_on`]; spawn tasks with [`spawn`]; sleep, schedule callbacks and
//! combine futures the asyncio way.
//!
//! ```
//! use std::time::Duration;
//!
//! let out = ringloop::run(async {
//!     let slow = ringloop::spawn(async {
//!         ringloop::sleep(Duration::from_millis(2)).await;
//!         "slow"
//!     });
//!     let fast = ringloop::spawn(async { "fast" });
//!     (fast.await.unwrap(), slow.await.unwrap())
//! });
//! assert_eq!(out, ("fast", "slow"));
//! ```
//!
//! See docs/DESIGN.md for the contract and ARCHITECTURE.md for the layers; LINUX_ONLY.md for the
//! kernels and settings ringloop needs.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    clippy::undocumented_unsafe_blocks
)]
#![doc(test(attr(deny(warnings))))]

#[cfg(not(target_os = "linux"))]
compile_error!("ringloop runs only on Linux (it is built on io_uring); see LINUX_ONLY.md");
#[cfg(not(target_pointer_width = "64"))]
compile_error!("ringloop needs a 64-bit target (its syscalls pass 64-bit offsets in one word)");

mod buf;
mod callbacks;
mod driver;
pub mod fs;
pub mod future;
#[cfg(feature = "hyper")]
pub mod hyper;
pub mod io;
mod loom;
pub mod net;
pub mod pool;
#[cfg(feature = "process")]
pub mod process;
mod runtime;
mod shard;
pub mod signal;
mod sync;

pub use driver::DriverKind;
pub use future::{
    AsCompleted, AsCompletedUntil, Elapsed, Gather, Promise, PromiseError, ReturnWhen, Shielded,
    Take, TryGather, WaitFor, Waitable, as_completed, as_completed_until, gather, gather2, gather3,
    gather4, gather5, gather6, shield, timeout, try_gather, try_gather2, try_gather3, try_gather4,
    try_gather5, try_gather6, wait, wait_for, wait_until,
};
pub use pool::{Completer, PoolError, PoolFuture, ThreadPool, ThreadPoolBuilder, spawn_blocking};
#[cfg(feature = "process")]
pub use pool::{ProcessPool, ProcessPoolBuilder};
pub use runtime::task::{
    CallbackId, Join, JoinError, Task, TaskRef, TaskState, YieldNow, all_tasks, current_task,
    spawn, yield_now,
};
pub use runtime::time::{
    Interval, Sleep, TimerHandle, call_at, call_later, call_soon, interval, sleep, sleep_until,
    time,
};
pub use runtime::{Builder, Handle, Runtime, run};
pub use shard::{ShardedBuilder, ShardedRuntime, shard_count, shard_id, submit_to};
pub use signal::{add_signal_handler, remove_signal_handler};

/// The README's examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
