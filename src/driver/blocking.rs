//! The driver's blocking threads: they run the syscalls that have no readiness (files under
//! the epoll driver, opcodes the kernel's ring lacks) and hand the results back to the loop.
//!
//! # Ground rules
//!
//! * A job is a [`Syscall`] (a number and six words) and the key of its table entry. The
//!   operation's data stays on the loop thread, owned by its `Op` or by the table entry, until
//!   the result has been collected: the thread touches only the memory the syscall's pointers
//!   name, exactly as the kernel does for an SQE.
//! * Results go into `Shared::done`; the thread then writes the loop's eventfd, so a parked
//!   loop wakes, and sets `has_done`, which the loop checks (without locking) on every pass.
//! * Threads start on demand, up to [`MAX_THREADS`], and exit after [`IDLE`] without work or
//!   when the pool shuts down. If none runs and none can start (`RLIMIT_NPROC`), the job fails
//!   at once with an error that says so, instead of waiting in the queue forever.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Notifier;
use super::op::Syscall;

/// Most threads a driver runs blocking syscalls on at once.
const MAX_THREADS: usize = 64;
/// How long an idle thread waits for work before it exits.
const IDLE: Duration = Duration::from_secs(10);

struct Job {
    key: usize,
    call: Syscall,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Threads waiting for work that no job has been promised to yet.
    idle: usize,
    /// Wake-ups sent to idle threads and not yet taken: each promises a thread to one job, so
    /// a burst of jobs starts new threads instead of queueing behind one idle thread (which
    /// may then block for long in a syscall, a read of a FIFO nobody writes).
    notified: usize,
    threads: Vec<JoinHandle<()>>,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    done: Mutex<Vec<(usize, i32)>>,
    has_done: AtomicBool,
    notifier: Arc<Notifier>,
}

/// The blocking threads of one driver.
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

use crate::sync::lock;

impl Pool {
    pub(crate) fn new(notifier: Arc<Notifier>) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                work: Condvar::new(),
                done: Mutex::new(Vec::new()),
                has_done: AtomicBool::new(false),
                notifier,
            }),
        }
    }

    /// Runs `call` on a blocking thread; its result is collected with [`Pool::drain`] under
    /// `key`.
    ///
    /// The caller keeps the operation that built `call` alive until then.
    pub(crate) fn run(&self, key: usize, call: Syscall) {
        let mut state = lock(&self.shared.state);
        state.jobs.push_back(Job { key, call });
        if state.idle > 0 {
            state.idle -= 1;
            state.notified += 1;
            self.shared.work.notify_one();
            return;
        }
        state.threads.retain(|t| !t.is_finished());
        if state.threads.len() >= MAX_THREADS {
            // Every thread is busy: the job waits in the queue for the first one free.
            return;
        }
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("ringloop-io".into())
            .stack_size(128 * 1024)
            .spawn(move || worker(&shared));
        match spawned {
            Ok(handle) => state.threads.push(handle),
            Err(e) if state.threads.is_empty() => {
                // No thread can run the job: fail it rather than leave it queued forever.
                let job = state.jobs.pop_back().expect("pushed above");
                drop(state);
                let errno = e.raw_os_error().unwrap_or(libc::EAGAIN);
                // Marked, so the error above the driver says no thread could start (a bare
                // EAGAIN would read as the syscall's own).
                self.shared.finish(job.key, -(super::NO_THREAD | errno));
            }
            // Others are running: one of them takes the job.
            Err(_) => {}
        }
    }

    /// Whether results wait to be collected.
    pub(crate) fn has_results(&self) -> bool {
        self.shared.has_done.load(Ordering::Acquire)
    }

    /// Hands every collected result to `f`.
    pub(crate) fn drain(&self, mut f: impl FnMut(usize, i32)) {
        if !self.shared.has_done.swap(false, Ordering::Acquire) {
            return;
        }
        let done = std::mem::take(&mut *lock(&self.shared.done));
        for (key, raw) in done {
            f(key, raw);
        }
    }

    /// Stops the threads: idle ones exit at once, busy ones after their job. Waits up to
    /// `grace` for them; a thread still stuck in a syscall after that (a read of a pipe nobody
    /// writes) is left to finish on its own.
    pub(crate) fn shutdown(&self, grace: Duration) {
        let threads = {
            let mut state = lock(&self.shared.state);
            state.shutdown = true;
            state.jobs.clear();
            std::mem::take(&mut state.threads)
        };
        self.shared.work.notify_all();
        let deadline = Instant::now() + grace;
        for t in threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

impl Shared {
    fn finish(&self, key: usize, raw: i32) {
        lock(&self.done).push((key, raw));
        self.has_done.store(true, Ordering::Release);
        self.notifier.notify();
    }
}

fn worker(shared: &Shared) {
    let mut state = lock(&shared.state);
    loop {
        if let Some(job) = state.jobs.pop_front() {
            drop(state);
            // SAFETY: the loop keeps the operation that built the syscall alive until it has
            // collected this result (the table entry owns its data meanwhile).
            let raw = unsafe { job.call.run() };
            shared.finish(job.key, raw);
            state = lock(&shared.state);
            continue;
        }
        if state.shutdown {
            return;
        }
        state.idle += 1;
        let idle_since = Instant::now();
        loop {
            let left = IDLE.saturating_sub(idle_since.elapsed());
            let (s, _) = shared
                .work
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner());
            state = s;
            if state.notified > 0 {
                // Woken for a job (`run` already took this thread off `idle`).
                state.notified -= 1;
                break;
            }
            if state.shutdown || idle_since.elapsed() >= IDLE {
                state.idle -= 1;
                if state.jobs.is_empty() || state.shutdown {
                    return;
                }
                break;
            }
            // A spurious wake-up: wait on.
        }
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.shared.state);
        f.debug_struct("Pool")
            .field("threads", &state.threads.len())
            .field("queued", &state.jobs.len())
            .finish()
    }
}
