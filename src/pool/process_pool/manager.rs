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
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{ExitStatus, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::wire;
use super::worker::{self, Spec};
use super::{Job, Shared};
use crate::io::{BufResult, IoBuf};
use crate::net::UnixStream;
use crate::pool::PoolError;
use crate::process::{Child, Command};
use crate::sync::lock;

/// The most jobs queued at one worker ahead of its results (fewer when the queue is short, so
/// that long jobs spread over the workers).
const MAX_AHEAD: usize = 64;

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
    st: RefCell<WorkerState>,
}

#[derive(Default)]
struct WorkerState {
    /// Job frames not yet written.
    outbox: Vec<u8>,
    /// Jobs sent, in order, awaiting their results.
    in_flight: VecDeque<Job>,
    /// Jobs given to this worker in all.
    assigned: u64,
    /// No more jobs: the writer closes the socket once the outbox is written.
    closing: bool,
    /// Its reader saw end of file: it is gone or going.
    dead: bool,
    writer: Option<Waker>,
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
            let ahead = (1 + st.queue.len() / cfg.max_workers).min(MAX_AHEAD);
            while !st.queue.is_empty() {
                let worker = match this.pick(ahead) {
                    Some(w) => w,
                    None if this.live.get() < cfg.max_workers => match Manager::start(this) {
                        Ok(w) => w,
                        Err(e) => {
                            let why = format!("cannot start a worker process: {e}");
                            drop(st);
                            this.break_pool(why);
                            st = lock(&this.shared.state);
                            break;
                        }
                    },
                    None => break,
                };
                let job = st.queue.pop_front().expect("queue is not empty");
                if !job.settle.start() {
                    continue; // cancelled while queued
                }
                let mut w = worker.st.borrow_mut();
                w.outbox.extend_from_slice(&job.frame);
                w.in_flight.push_back(Job {
                    frame: Vec::new(),
                    settle: job.settle,
                });
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

    /// The open worker with the fewest jobs in flight, if that is below `ahead`.
    fn pick(&self, ahead: usize) -> Option<Rc<Worker>> {
        let max_tasks = self.shared.config.max_tasks_per_child;
        let workers = self.workers.borrow();
        let best = workers
            .iter()
            .filter(|w| {
                let s = w.st.borrow();
                !s.closing && !s.dead && (max_tasks == 0 || s.assigned < max_tasks)
            })
            .min_by_key(|w| w.st.borrow().in_flight.len())?;
        let n = best.st.borrow().in_flight.len();
        // A busy worker waits its turn while the pool may still start an idle one.
        if n >= ahead || (n > 0 && self.live.get() < self.shared.config.max_workers) {
            return None;
        }
        Some(Rc::clone(best))
    }

    /// Starts a worker process and its reader and writer tasks.
    fn start(this: &Rc<Manager>) -> io::Result<Rc<Worker>> {
        let cfg = &this.shared.config;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
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
        // SAFETY: the closure runs in the forked child before exec and calls only fcntl, which
        // is async-signal-safe; it clears close-on-exec on the worker's end of the socket so
        // that this one child inherits it.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = Command::from(cmd).spawn()?;
        drop(theirs);
        let worker = Rc::new(Worker {
            pid: child.id().unwrap_or(0),
            stream: UnixStream::from(ours),
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
                // SAFETY: kill takes no pointers; the worker is unreaped (its reader reaps it
                // after end of file), so its pid is not reused.
                unsafe { libc::kill(w.pid as libc::pid_t, libc::SIGKILL) };
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
            job.settle.fail(PoolError::Broken(why));
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
async fn read_results(mgr: Rc<Manager>, worker: Rc<Worker>, mut child: Child) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    let mut start = 0;
    let mut hello = false;
    // Set when the worker misbehaved and must be stopped before it is reaped.
    let mut kill = false;
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
                        kill = true;
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
                        kill = true;
                        break 'read;
                    };
                    job.settle.finish(frame[1], &frame[2..]);
                }
                _ => {
                    mgr.break_pool(format!("protocol error from worker {}", worker.pid));
                    kill = true;
                    break 'read;
                }
            }
        }
        if start == buf.len() {
            buf.clear();
            start = 0;
        }
        // Results free room at this worker, or let shutdown close it.
        mgr.wake_dispatcher();
    }
    if kill {
        // A worker that broke the protocol may run on: stop it before reaping it. (After
        // a plain end of file it is exiting by itself, perhaps still flushing its output.)
        let _ = child.kill();
    }
    let status = child.wait().await;
    mgr.exited(&worker, status, hello);
}
