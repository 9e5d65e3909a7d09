//! The pool's manager: a ringloop loop on its own thread that starts workers, hands them jobs,
//! collects results and watches for deaths.
//!
//! One dispatcher (`Manager::dispatch`, polled by the loop's main future) moves jobs from the
//! shared queue to workers. Each worker has two tasks on this loop: a writer that sends its
//! queued job frames in batches, and a reader that parses result frames, settles the futures
//! in order, and, at end of file (the worker exited, or was killed), reaps it and decides
//! whether the death was expected (shutdown, `max_tasks_per_child`) or breaks the pool.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::process::{ExitStatus, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::wire;
use super::worker::{self, Spec};
use super::{Job, Settle, Shared};
use crate::io::{BufResult, IoBuf};
use crate::net::UnixStream;
use crate::pool::PoolError;
use crate::process::{Child, Command, Killer};
use crate::sync::lock;

/// The most jobs queued at one worker ahead of its results, for jobs measured to be quick
/// (fewer when the queue is short, so that jobs spread over the workers).
const MAX_AHEAD: usize = 64;

/// A job whose measured time per job is below this counts as quick: its worker may be given
/// up to [`MAX_AHEAD`] jobs at once. Slower jobs go one at a time beyond the running one, as
/// Python's call queue does, so that they stay cancellable and spread over idle workers.
const QUICK: Duration = Duration::from_micros(200);

struct Manager {
    shared: Arc<Shared>,
    workers: RefCell<Vec<Rc<Worker>>>,
    /// Workers started and not yet reaped.
    live: Cell<usize>,
}

/// One worker process, as the manager's loop sees it.
struct Worker {
    pid: u32,
    stream: UnixStream,
    /// Signals the worker through its pidfd (never by pid, which could be reused).
    killer: Killer,
    st: RefCell<WorkerState>,
}

#[derive(Default)]
struct WorkerState {
    /// Job frames not yet written.
    outbox: Vec<u8>,
    /// The futures of the jobs sent, in order, awaiting their results.
    in_flight: VecDeque<Box<dyn Settle>>,
    /// Jobs given to this worker in all.
    assigned: u64,
    /// No more jobs: the writer closes the socket once the outbox is written.
    closing: bool,
    /// Its reader saw end of file: it is gone or going.
    dead: bool,
    writer: Option<Waker>,
    /// A smoothed time per job, from result arrivals (`None` until the first result).
    per_job: Option<Duration>,
    /// When the worker last had its in-flight jobs change (a batch sent or answered).
    since: Option<Instant>,
}

impl WorkerState {
    /// How many jobs this worker may hold, given how long the queue is.
    fn ahead(&self, queued: usize, workers: usize) -> usize {
        match self.per_job {
            Some(t) if t < QUICK => (1 + queued / workers).min(MAX_AHEAD),
            _ => 1,
        }
    }

    /// `answered` results arrived now: update the time per job.
    fn answered(&mut self, answered: usize, now: Instant) {
        if answered == 0 {
            return;
        }
        if let Some(since) = self.since {
            let sample = now.saturating_duration_since(since) / answered as u32;
            self.per_job = Some(match self.per_job {
                None => sample,
                Some(avg) => (avg * 3 + sample) / 4,
            });
        }
        self.since = (!self.in_flight.is_empty()).then_some(now);
    }
}

impl WorkerState {
    fn wake_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }
}

/// The manager's main future: returns once the pool is shut down (or broken) and every worker
/// has been reaped.
pub(super) async fn run(shared: Arc<Shared>) {
    let mgr = Rc::new(Manager {
        shared,
        workers: RefCell::new(Vec::new()),
        live: Cell::new(0),
    });
    poll_fn(|cx| Manager::dispatch(&mgr, cx)).await;
}

impl Manager {
    fn wake_dispatcher(&self) {
        let waker = lock(&self.shared.state).waker.take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn dispatch(this: &Rc<Manager>, cx: &mut Context<'_>) -> Poll<()> {
        let cfg = &this.shared.config;
        let mut st = lock(&this.shared.state);
        if st.broken.is_none() {
            let queued = st.queue.len();
            while !st.queue.is_empty() {
                let worker = match this.pick(queued) {
                    Some(w) => w,
                    None if this.live.get() < cfg.max_workers => {
                        // Start a worker without holding the queue's lock: a fork and exec
                        // must not stall every thread that submits meanwhile.
                        drop(st);
                        let started = Manager::start(this);
                        st = lock(&this.shared.state);
                        match started {
                            Ok(w) => w,
                            Err(e) => {
                                let why = format!("cannot start a worker process: {e}");
                                drop(st);
                                this.break_pool(why);
                                st = lock(&this.shared.state);
                                break;
                            }
                        }
                    }
                    None => break,
                };
                let Some(job) = st.queue.pop_front() else {
                    break; // cancelled by shutdown while the worker started
                };
                if !job.settle.start() {
                    continue; // cancelled while queued
                }
                let mut w = worker.st.borrow_mut();
                if w.in_flight.is_empty() {
                    w.since = Some(Instant::now());
                }
                w.outbox.extend_from_slice(&job.frame);
                w.in_flight.push_back(job.settle);
                w.assigned += 1;
                w.wake_writer();
            }
        }
        if let Some(why) = st.broken.clone() {
            let queued: Vec<Job> = st.queue.drain(..).collect();
            st.waker = Some(cx.waker().clone());
            drop(st);
            for job in queued {
                job.settle.fail(PoolError::Broken(why.clone()));
            }
            return if this.live.get() == 0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            };
        }
        if st.shutdown && st.queue.is_empty() {
            // Close the workers that have nothing left to do: each exits at end of file.
            for w in this.workers.borrow().iter() {
                let mut s = w.st.borrow_mut();
                if s.in_flight.is_empty() && !s.closing {
                    s.closing = true;
                    s.wake_writer();
                }
            }
            if this.live.get() == 0 {
                return Poll::Ready(());
            }
        }
        st.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The open worker with the fewest jobs in flight, if it may take another (see
    /// [`WorkerState::ahead`]; `queued` is the queue's length).
    fn pick(&self, queued: usize) -> Option<Rc<Worker>> {
        let max_tasks = self.shared.config.max_tasks_per_child;
        let workers = self.workers.borrow();
        let best = workers
            .iter()
            .filter(|w| {
                let s = w.st.borrow();
                !s.closing && !s.dead && (max_tasks == 0 || s.assigned < max_tasks)
            })
            .min_by_key(|w| w.st.borrow().in_flight.len())?;
        let s = best.st.borrow();
        let n = s.in_flight.len();
        let max_workers = self.shared.config.max_workers;
        // A busy worker waits its turn while the pool may still start an idle one.
        if n >= s.ahead(queued, max_workers) || (n > 0 && self.live.get() < max_workers) {
            return None;
        }
        drop(s);
        Some(Rc::clone(best))
    }

    /// Starts a worker process and its reader and writer tasks.
    fn start(this: &Rc<Manager>) -> io::Result<Rc<Worker>> {
        let cfg = &this.shared.config;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        // Keep the worker's end clear of 0, 1 and 2, which the child's stdio set-up overwrites
        // (possible if this process runs with one of them closed).
        let theirs = if theirs.as_raw_fd() <= 2 {
            theirs
                .as_fd()
                .try_clone_to_owned()
                .map(std::os::unix::net::UnixStream::from)?
        } else {
            theirs
        };
        let fd = theirs.as_raw_fd();
        let mut cmd = std::process::Command::new("/proc/self/exe");
        let mut args = std::env::args_os();
        if let Some(arg0) = args.next() {
            cmd.arg0(arg0);
        }
        cmd.args(args)
            .env(
                worker::ENV,
                Spec::format(fd, cfg.max_tasks_per_child, cfg.initializer),
            )
            .stdin(Stdio::null());
        // In the child, before exec: mark every other inherited descriptor close-on-exec (so
        // a worker holds no listening socket or pipe of the parent's; kernels before 5.11
        // lack the flag and skip this), clear close-on-exec on the worker's end of the socket
        // so that this one child inherits it, and have the kernel kill the worker if the
        // manager thread that forked it dies (a parent killed mid-job leaves no worker).
        // SAFETY: the closure runs in the forked child before exec and calls only fcntl,
        // close_range and prctl, which are async-signal-safe (no allocation, no lock).
        unsafe {
            cmd.pre_exec(move || {
                let (fd_u, max) = (fd as libc::c_uint, libc::c_uint::MAX);
                if fd_u > 3 {
                    libc::syscall(
                        libc::SYS_close_range,
                        3,
                        fd_u - 1,
                        libc::CLOSE_RANGE_CLOEXEC,
                    );
                }
                libc::syscall(
                    libc::SYS_close_range,
                    fd_u + 1,
                    max,
                    libc::CLOSE_RANGE_CLOEXEC,
                );
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = Command::from(cmd).spawn()?;
        drop(theirs);
        let worker = Rc::new(Worker {
            pid: child.id().unwrap_or(0),
            stream: UnixStream::from(ours),
            killer: child.killer().expect("a fresh child has a pidfd"),
            st: RefCell::default(),
        });
        this.workers.borrow_mut().push(Rc::clone(&worker));
        this.live.set(this.live.get() + 1);
        crate::spawn(write_jobs(Rc::clone(&worker))).detach();
        crate::spawn(read_results(Rc::clone(this), Rc::clone(&worker), child)).detach();
        Ok(worker)
    }

    /// Breaks the pool (once): fails every queued job, kills every worker (their readers then
    /// fail what they had in flight, and reap them).
    fn break_pool(&self, why: String) {
        {
            let mut st = lock(&self.shared.state);
            if st.broken.is_some() {
                return;
            }
            st.broken = Some(why);
        }
        for w in self.workers.borrow().iter() {
            if !w.st.borrow().dead {
                w.killer.kill();
            }
        }
        self.wake_dispatcher();
    }

    /// A worker's reader saw end of file and reaped it.
    fn exited(&self, worker: &Rc<Worker>, status: io::Result<ExitStatus>, hello: bool) {
        self.workers.borrow_mut().retain(|w| !Rc::ptr_eq(w, worker));
        self.live.set(self.live.get() - 1);
        let (in_flight, expected) = {
            let mut s = worker.st.borrow_mut();
            s.dead = true;
            s.wake_writer();
            let max = self.shared.config.max_tasks_per_child;
            let retired = max != 0 && s.assigned == max;
            let expected = s.in_flight.is_empty() && (s.closing || retired);
            (std::mem::take(&mut s.in_flight), expected)
        };
        if !expected {
            let status = match status {
                Ok(st) => st.to_string(),
                Err(e) => format!("status unknown: {e}"),
            };
            let why = if hello {
                format!(
                    "a worker process (pid {}) died unexpectedly ({status}) with {} job(s) in \
                     flight; the other workers were terminated",
                    worker.pid,
                    in_flight.len()
                )
            } else {
                format!(
                    "a worker process (pid {}) exited before serving ({status}): was \
                     ProcessPool::init() called first in main? (see ProcessPool::init)",
                    worker.pid
                )
            };
            self.break_pool(why);
        }
        let why = lock(&self.shared.state).broken.clone();
        for job in in_flight {
            let why = why
                .clone()
                .unwrap_or_else(|| "a worker process died".into());
            job.fail(PoolError::Broken(why));
        }
        self.wake_dispatcher();
    }
}

/// Writes a worker's queued job frames, a batch per write; closes the socket's sending side
/// when the worker is to stop.
async fn write_jobs(worker: Rc<Worker>) {
    let mut spare = Vec::new();
    loop {
        let next = poll_fn(|cx| {
            let mut s = worker.st.borrow_mut();
            if s.dead {
                Poll::Ready(None)
            } else if !s.outbox.is_empty() {
                Poll::Ready(Some(std::mem::replace(
                    &mut s.outbox,
                    std::mem::take(&mut spare),
                )))
            } else if s.closing {
                Poll::Ready(None)
            } else {
                s.writer = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        let Some(batch) = next else { break };
        let BufResult(r, mut batch) = worker.stream.write_all(batch).await;
        if r.is_err() {
            break; // the worker died: its reader reports it
        }
        batch.clear();
        spare = batch;
    }
    let _ = worker.stream.shutdown(std::net::Shutdown::Write).await;
}

/// Reads a worker's frames and settles its jobs in order; at end of file reaps it.
///
/// The worker's death is seen through its pidfd as well as through end of file: a task waits
/// for the child and then shuts the socket's receiving side, so the reads below return what
/// the worker wrote before it died and then end, even if another process (a job's forked
/// child) still holds the worker's end of the socket.
async fn read_results(mgr: Rc<Manager>, worker: Rc<Worker>, mut child: Child) {
    let exited = {
        let worker = Rc::clone(&worker);
        crate::spawn(async move {
            let status = child.wait().await;
            let _ = worker.stream.shutdown(std::net::Shutdown::Read).await;
            status
        })
    };
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    let mut start = 0;
    let mut hello = false;
    'read: loop {
        if buf.capacity() - buf.len() < 16 << 10 {
            if start > 0 {
                buf.drain(..start);
                start = 0;
            }
            buf.reserve(64 << 10);
        }
        let len = buf.len();
        let BufResult(r, slice) = worker.stream.read(buf.slice(len..)).await;
        buf = slice.into_inner();
        match r {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let mut answered = 0;
        while buf.len() - start >= 4 {
            let flen = u32::from_le_bytes(buf[start..start + 4].try_into().expect("4")) as usize;
            if buf.len() - start - 4 < flen {
                // Make room for the whole frame (a big result) before the next read.
                let need = start + 4 + flen - buf.len();
                if buf.capacity() - buf.len() < need {
                    buf.drain(..start);
                    start = 0;
                    buf.reserve(need);
                }
                break;
            }
            let frame = &buf[start + 4..start + 4 + flen];
            start += 4 + flen;
            match frame.first() {
                Some(&wire::HELLO) if frame.len() == 13 => {
                    if wire::u64_at(frame, 5) != wire::fingerprint() {
                        mgr.break_pool("a worker process is a different binary".into());
                        worker.killer.kill();
                        break 'read;
                    }
                    hello = true;
                }
                Some(&wire::INIT_FAILED) => {
                    let msg = String::from_utf8_lossy(&frame[1..]);
                    mgr.break_pool(format!(
                        "the initializer panicked in worker process {}: {msg}",
                        worker.pid
                    ));
                }
                Some(&wire::RESULT) if frame.len() >= 2 => {
                    let job = worker.st.borrow_mut().in_flight.pop_front();
                    let Some(job) = job else {
                        mgr.break_pool("a worker answered a job it was not given".into());
                        worker.killer.kill();
                        break 'read;
                    };
                    answered += 1;
                    job.finish(frame[1], &frame[2..]);
                }
                _ => {
                    mgr.break_pool(format!("protocol error from worker {}", worker.pid));
                    worker.killer.kill();
                    break 'read;
                }
            }
        }
        worker.st.borrow_mut().answered(answered, Instant::now());
        if start == buf.len() {
            buf.clear();
            start = 0;
        }
        // Results free room at this worker, or let shutdown close it.
        mgr.wake_dispatcher();
    }
    let status = match exited.await {
        Ok(status) => status,
        Err(e) => Err(io::Error::other(format!(
            "waiting for the worker failed: {e}"
        ))),
    };
    mgr.exited(&worker, status, hello);
}
