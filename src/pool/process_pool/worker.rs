//! The worker side: a process started by the pool serves jobs instead of running `main`.
//!
//! A worker is the program's own binary (`/proc/self/exe`, with the parent's arguments),
//! started with [`ENV`] in its environment. A constructor hook (a function in
//! `.init_array`, which the C runtime calls before `main`, as the `ctor` crate does) sees the
//! variable and serves jobs, then exits: the program's `main` never runs in a worker, so
//! `main` cannot start pools there by accident (a job may make a pool on purpose: the marker
//! is out of the environment by then). [`ProcessPool::init`](super::ProcessPool::init) does
//! the same from `main`, for programs that turn the hook off
//! (`RINGLOOP_PROCESS_POOL_CTOR=0`).
//!
//! The hook runs before Rust's `main` set-up: it uses only the allocator, the environment,
//! blocking socket I/O, a thread and `catch_unwind`, which work there; it ignores `SIGPIPE`
//! itself (as Rust's start-up would). Jobs therefore run before constructors that come later
//! in link order (a `ctor`/`inventory` registry may be empty in a worker), without std's
//! stack-overflow message, and with `panic = "abort"` a job's panic kills its worker (the
//! pool breaks) instead of failing one future. Run under an interpreter of the binary
//! (`ld.so ./prog`, valgrind, qemu-user), `/proc/self/exe` is that interpreter and workers
//! cannot start.

use std::io::{BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::panic::catch_unwind;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use super::wire::{self, Call};
use crate::pool::error::panic_message;
use crate::sync::lock;

/// Set in a worker's environment: `fd,max_tasks,initializer,fingerprint` (the socket's
/// descriptor, jobs to serve before exiting or 0, the initializer's code offset or `-`).
pub(super) const ENV: &str = "RINGLOOP_PROCESS_POOL_WORKER";

/// `0` turns the constructor hook off; workers then serve from `ProcessPool::init()`.
pub(super) const ENV_CTOR: &str = "RINGLOOP_PROCESS_POOL_CTOR";

/// Exit status of a worker that could not start serving (bad spec, other binary).
pub(super) const EXIT_SETUP: i32 = 86;

/// What the parent told the worker.
pub(super) struct Spec {
    fd: i32,
    max_tasks: u64,
    initializer: Option<u64>,
    fingerprint: u64,
}

impl Spec {
    fn parse(s: &str) -> Option<Spec> {
        let mut it = s.split(',');
        let fd = it.next()?.parse().ok()?;
        let max_tasks = it.next()?.parse().ok()?;
        let initializer = match it.next()? {
            "-" => None,
            off => Some(off.parse().ok()?),
        };
        let fingerprint = it.next()?.parse().ok()?;
        Some(Spec {
            fd,
            max_tasks,
            initializer,
            fingerprint,
        })
    }

    pub(super) fn format(fd: i32, max_tasks: u64, initializer: Option<u64>) -> String {
        let init = initializer.map_or_else(|| "-".to_string(), |o| o.to_string());
        format!("{fd},{max_tasks},{init},{}", wire::fingerprint())
    }
}

extern "C" fn hook() {
    if std::env::var_os(ENV_CTOR).is_some_and(|v| v == "0") {
        return;
    }
    // A panic must not unwind out of an `extern "C"` function (it would abort without a word).
    let _ = catch_unwind(serve_if_worker);
}

#[used]
#[unsafe(link_section = ".init_array")]
static HOOK: extern "C" fn() = hook;

/// Keeps [`HOOK`] in the link: called by the pool's constructor, so that any binary that makes
/// a pool has the hook (a static nothing refers to could be left out with its object file).
pub(super) fn keep_hook() {
    std::hint::black_box(&HOOK);
}

/// In a worker process: serves jobs and exits. Elsewhere: returns at once.
pub(super) fn serve_if_worker() {
    let Some(spec) = std::env::var_os(ENV) else {
        return;
    };
    // SAFETY: called before `main` (the hook: one thread) or first in `main` (documented
    // on `ProcessPool::init`), so no other thread reads the environment meanwhile. Removing
    // the marker keeps it from the job's own subprocesses (which would serve as workers).
    unsafe { std::env::remove_var(ENV) };
    let code = match spec.to_str().and_then(Spec::parse) {
        Some(spec) if spec.fingerprint == wire::fingerprint() => serve(&spec),
        Some(_) => {
            eprintln!("ringloop: ProcessPool worker: this binary differs from the pool's");
            EXIT_SETUP
        }
        None => {
            eprintln!("ringloop: ProcessPool worker: malformed {ENV}={spec:?}");
            EXIT_SETUP
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// Serves jobs until the manager closes the socket (or `max_tasks` were served); the exit
/// status.
fn serve(spec: &Spec) -> i32 {
    // SAFETY: the parent passed this descriptor (a socket) for this process to own; nothing
    // else in this process knows it.
    let sock = unsafe { UnixStream::from_raw_fd(spec.fd) };
    // SAFETY: fcntl and signal take no pointers. The socket must not leak into the job's
    // subprocesses, and a closed manager must be an error (EPIPE), not a killing signal.
    unsafe {
        libc::fcntl(sock.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let mut out = Vec::with_capacity(64 << 10);
    if let Some(init) = spec.initializer {
        // SAFETY: the offset came from a `fn()` of this same binary (the fingerprint matched).
        let f = unsafe { std::mem::transmute::<usize, fn()>(wire::address_of(init)) };
        if let Err(p) = catch_unwind(f) {
            let start = wire::begin_frame(&mut out, wire::INIT_FAILED);
            out.extend_from_slice(panic_message(&*p).as_bytes());
            wire::end_frame(&mut out, start);
            let _ = (&sock).write_all(&out);
            return 3;
        }
    }
    let start = wire::begin_frame(&mut out, wire::HELLO);
    out.extend_from_slice(&std::process::id().to_le_bytes());
    out.extend_from_slice(&wire::fingerprint().to_le_bytes());
    wire::end_frame(&mut out, start);
    if (&sock).write_all(&out).is_err() {
        return 0; // the pool went away
    }
    out.clear();

    let answers = Arc::new(Answers::default());
    let writer = {
        let answers = Arc::clone(&answers);
        let sock = match sock.try_clone() {
            Ok(sock) => sock,
            Err(_) => return EXIT_SETUP,
        };
        std::thread::spawn(move || answers.send_all(&sock))
    };
    let code = run_jobs(spec, &sock, &answers);
    answers.close();
    let _ = writer.join();
    code
}

/// Runs jobs as they arrive until end of file (or `max_tasks`); the exit status.
fn run_jobs(spec: &Spec, sock: &UnixStream, answers: &Answers) -> i32 {
    let mut reader = BufReader::with_capacity(64 << 10, sock);
    let mut served = 0u64;
    let mut body = Vec::new();
    let mut out = Vec::with_capacity(4 << 10);
    loop {
        let mut len = [0u8; 4];
        if reader.read_exact(&mut len).is_err() {
            // The manager closed the socket: shutdown, or the pool is gone.
            return 0;
        }
        body.resize(u32::from_le_bytes(len) as usize, 0);
        if reader.read_exact(&mut body).is_err() {
            return 0;
        }
        if body.len() < wire::JOB_HEADER - 4 || body[0] != wire::JOB {
            eprintln!(
                "ringloop: ProcessPool worker: protocol error (frame kind {:?})",
                body.first()
            );
            return EXIT_SETUP;
        }
        let call = wire::address_of(wire::u64_at(&body, 1));
        let func = wire::address_of(wire::u64_at(&body, 9));
        // SAFETY: the offset is that of a trampoline (`wire::call_one` / `call_chunk`) of this
        // same binary, taken by the parent from a value of type `Call`.
        let call = unsafe { std::mem::transmute::<usize, Call>(call) };
        out.clear();
        let start = wire::begin_frame(&mut out, wire::RESULT);
        out.push(0);
        let status = call(func, &body[17..], &mut out);
        out[start + 5] = status;
        wire::end_frame(&mut out, start);
        if !answers.push(&out) {
            return 0; // the manager is gone
        }
        served += 1;
        if spec.max_tasks != 0 && served == spec.max_tasks {
            return 0;
        }
    }
}

/// Result frames on their way to the manager. The job thread appends each as soon as its
/// job is done; a writer thread sends whatever has accumulated in one write. So no result
/// waits for a later job (a long one, or one still arriving), and results of tiny jobs go
/// out many per write.
#[derive(Default)]
struct Answers {
    state: Mutex<AnswerState>,
    ready: Condvar,
}

#[derive(Default)]
struct AnswerState {
    frames: Vec<u8>,
    /// The job thread is done: send what is left and stop.
    closed: bool,
    /// Writing failed: the manager is gone.
    failed: bool,
    /// The writer sleeps on `ready`.
    waiting: bool,
}

impl Answers {
    /// Queues one frame; `false` once the manager is gone.
    fn push(&self, frame: &[u8]) -> bool {
        let mut st = lock(&self.state);
        if st.failed {
            return false;
        }
        st.frames.extend_from_slice(frame);
        if st.waiting {
            st.waiting = false;
            self.ready.notify_one();
        }
        true
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.ready.notify_one();
    }

    /// The writer thread: sends batches until closed and drained.
    fn send_all(&self, mut sock: &UnixStream) {
        let mut batch = Vec::with_capacity(64 << 10);
        loop {
            {
                let mut st = lock(&self.state);
                while st.frames.is_empty() && !st.closed {
                    st.waiting = true;
                    st = self.ready.wait(st).unwrap_or_else(PoisonError::into_inner);
                }
                if st.frames.is_empty() {
                    return; // closed and drained
                }
                std::mem::swap(&mut batch, &mut st.frames);
            }
            if sock.write_all(&batch).is_err() {
                lock(&self.state).failed = true;
                return;
            }
            batch.clear();
            if batch.capacity() > 4 << 20 {
                batch = Vec::with_capacity(64 << 10);
            }
        }
    }
}
