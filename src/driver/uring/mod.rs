//! The io_uring backend: the ring, submission (a full SQ is flushed and the push retried),
//! reaping (reads the CQ ring; no syscall), parking in one `io_uring_enter` with the next
//! deadline (`IORING_ENTER_EXT_ARG`), linked timeouts, `ASYNC_CANCEL`, multishot accept and
//! receive (into the provided buffer ring of `buf_ring`), and the eventfd read that lets other
//! threads end a park.

pub(crate) mod buf_ring;
mod probe;

use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::lent::{BufPool, LentBuf};
use super::op::SendAll;
use super::{
    DriverConfig, Entry, Lifecycle, MultishotEvent, MultishotHandler, Notifier, TIMED_OUT, Table,
    Via,
};

/// `user_data` of the eventfd read that wakes a parked loop.
const NOTIFY_USER_DATA: u64 = u64::MAX;
/// `user_data` of `ASYNC_CANCEL` requests; their own CQEs carry nothing we need.
const CANCEL_USER_DATA: u64 = u64::MAX - 1;
/// `user_data` of `LINK_TIMEOUT`s; their CQEs (`-ETIME` when they fired, `-ECANCELED` when the
/// operation finished first) carry nothing we need: the operation's own CQE tells.
const LINK_TIMEOUT_USER_DATA: u64 = u64::MAX - 2;

/// The ring and what it needs beside the shared table.
pub(crate) struct Uring {
    ring: IoUring,
    features: probe::Features,
    /// The eventfd other threads write to end a park.
    notify_fd: RawFd,
    /// The 8-byte buffer of the eventfd read. Boxed so its address is stable; leaked, not freed,
    /// if the read is still in flight when the driver goes away.
    notify_buf: Box<u64>,
    /// Whether the eventfd read is in flight.
    notify_armed: bool,
    /// The timespecs of linked timeouts, by key, kept until the operation's CQE (the kernel
    /// reads one when it consumes the SQE).
    timespecs: Vec<Option<Box<types::Timespec>>>,
    /// Sends to complete in full (`OpCode::send_all`), by key, with the bytes sent so far.
    send_all: Vec<Option<(SendAll, usize)>>,
    /// The pool of lent buffers, with the provided buffer ring, once a lent read asked for it.
    /// Declared after `ring`, so the io_uring is closed before the pool can be freed.
    pool: Option<Rc<BufPool>>,
}

/// The buffer group id of the loop's provided buffer ring.
const BUF_GROUP: u16 = 0;

/// A timespec for the kernel, which reads a signed `tv_sec`: clamped so that `Duration::MAX`
/// means "never", not -1 (which it refuses).
fn timespec(t: Duration) -> types::Timespec {
    types::Timespec::new()
        .sec(t.as_secs().min(i64::MAX as u64))
        .nsec(t.subsec_nanos())
}

impl Uring {
    pub(crate) fn new(config: &DriverConfig, notifier: &Notifier) -> io::Result<Uring> {
        let (ring, features) = probe::setup(config)?;
        Ok(Uring {
            ring,
            features,
            notify_fd: notifier.raw_fd(),
            notify_buf: Box::new(0),
            notify_armed: false,
            timespecs: Vec::new(),
            send_all: Vec::new(),
            pool: None,
        })
    }

    /// Whether the kernel's ring has `code` (probed once at set-up).
    pub(crate) fn supports(&self, code: u8) -> bool {
        self.features.supports(code)
    }

    /// Registers an operation and queues its SQE (its `user_data` is set here); with
    /// `timeout`, a `LINK_TIMEOUT` follows it in the same batch.
    pub(crate) fn submit(
        &mut self,
        table: &mut Table,
        sqe: squeue::Entry,
        timeout: Option<Duration>,
        all: Option<SendAll>,
    ) -> io::Result<usize> {
        let Some(timeout) = timeout else {
            let key = table.insert(Lifecycle::Submitted, Via::Ring, false);
            // SAFETY: the SQE's pointers point into the operation's own memory (the `OpCode`
            // contract), which its `Op`, then the table entry, keeps alive until the CQE.
            if let Err(e) = unsafe { self.push(table, sqe.user_data(key as u64)) } {
                table.ops.remove(key);
                return Err(e);
            }
            if let Some(all) = all {
                if self.send_all.len() <= key {
                    self.send_all.resize_with(key + 1, || None);
                }
                self.send_all[key] = Some((all, 0));
            }
            return Ok(key);
        };
        if self.ring.submission().capacity() < 2 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "ringloop: a time limit needs a ring of at least 2 entries",
            ));
        }
        // Both SQEs must go in one batch: a link cannot span two submissions.
        loop {
            let free = {
                let mut sq = self.ring.submission();
                sq.sync();
                sq.capacity() - sq.len()
            };
            if free >= 2 {
                break;
            }
            self.submit_queued(table)?;
        }
        let key = table.insert(Lifecycle::Submitted, Via::Ring, true);
        if self.timespecs.len() <= key {
            self.timespecs.resize_with(key + 1, || None);
        }
        let ts = self.timespecs[key].insert(Box::new(timespec(timeout)));
        let entries = [
            sqe.user_data(key as u64).flags(squeue::Flags::IO_LINK),
            opcode::LinkTimeout::new(&raw const **ts)
                .build()
                .user_data(LINK_TIMEOUT_USER_DATA),
        ];
        // SAFETY: the operation's pointers are valid as above; the timespec is boxed in
        // `timespecs` until the operation's CQE, and the kernel reads it when it consumes the
        // SQE, before that. There is room for both (checked above; nothing pushed since).
        unsafe { self.ring.submission().push_multiple(&entries) }
            .expect("ringloop: room for two SQEs was made just above");
        Ok(key)
    }

    /// Starts a multishot accept (see `Driver::accept_multishot`).
    pub(crate) fn accept_multishot(
        &mut self,
        table: &mut Table,
        fd: RawFd,
        handler: MultishotHandler,
    ) -> Option<io::Result<usize>> {
        if !self.features.multishot_accept {
            return None;
        }
        let sqe = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc::SOCK_CLOEXEC)
            .build();
        let key = table.insert(Lifecycle::Multishot(handler), Via::Ring, false);
        // SAFETY: a multishot accept carries no pointer.
        if let Err(e) = unsafe { self.push(table, sqe.user_data(key as u64)) } {
            table.ops.remove(key);
            return Some(Err(e));
        }
        Some(Ok(key))
    }

    /// The loop's pool of lent buffers, made on first use. Its provided buffer ring and its
    /// registered buffers are set up on their own first use.
    pub(crate) fn buf_pool(&mut self, config: &super::DriverConfig) -> Rc<BufPool> {
        let size = config.recv_buffer_size as usize;
        Rc::clone(self.pool.get_or_insert_with(|| Rc::new(BufPool::new(size))))
    }

    /// A registered buffer for a lent file read (`READ_FIXED`), if one is free; the
    /// registered buffers (`config.file_buffers` of `config.file_buffer_size` bytes) are
    /// set up on the first call.
    pub(crate) fn fixed_buf(&mut self, config: &super::DriverConfig) -> Option<LentBuf> {
        let pool = self.buf_pool(config);
        let ring = &self.ring;
        pool.fixed_or_init(|| {
            if config.file_buffers == 0 {
                return None;
            }
            // A refusal (no memory to pin, RLIMIT_MEMLOCK before 5.12) leaves heap buffers.
            buf_ring::FixedBufs::new(
                &ring.submitter(),
                config.file_buffers,
                config.file_buffer_size,
            )
            .ok()
        })?;
        LentBuf::fixed(&pool)
    }

    /// Whether a multishot receive can start now: the provided buffer ring exists (set up
    /// here on first use, where the kernel has multishot receive) and has a free buffer.
    pub(crate) fn recv_ring_ready(&mut self, config: &super::DriverConfig) -> bool {
        let pool = self.buf_pool(config);
        let (ring, features) = (&self.ring, &self.features);
        let bufs = pool.ring_or_init(|| {
            if !features.multishot_recv || config.recv_buffers == 0 {
                return None;
            }
            // A refusal (no memory to pin, an old kernel) leaves heap buffers.
            buf_ring::BufRing::new(
                &ring.submitter(),
                BUF_GROUP,
                config.recv_buffers,
                config.recv_buffer_size,
            )
            .ok()
        });
        bufs.is_some_and(|b| b.free() > 0)
    }

    /// Starts a multishot receive on `fd` into the provided buffer ring (see
    /// `Driver::recv_multishot`); `None` without a ring, or while every buffer is lent.
    pub(crate) fn recv_multishot(
        &mut self,
        table: &mut Table,
        config: &super::DriverConfig,
        fd: RawFd,
        handler: MultishotHandler,
    ) -> Option<io::Result<usize>> {
        if !self.recv_ring_ready(config) {
            return None;
        }
        let bufs = self.pool.as_ref()?.ring()?;
        let sqe = opcode::RecvMulti::new(types::Fd(fd), bufs.bgid()).build();
        let key = table.insert(Lifecycle::Multishot(handler), Via::Ring, false);
        // SAFETY: the SQE names no memory of ours but the buffer ring, which lives until the
        // io_uring is closed (`pool` is dropped after `ring`).
        if let Err(e) = unsafe { self.push(table, sqe.user_data(key as u64)) } {
            table.ops.remove(key);
            return Some(Err(e));
        }
        Some(Ok(key))
    }

    /// Queues one SQE, flushing the submission queue to the kernel when it is full.
    ///
    /// # Safety
    ///
    /// Every pointer in `sqe` must stay valid until its CQE is reaped.
    unsafe fn push(&mut self, table: &mut Table, sqe: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: forwarded from this function's contract.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return Ok(());
            }
            // The SQ is full: hand what is queued to the kernel, then retry.
            self.submit_queued(table)?;
        }
    }

    /// Hands queued SQEs to the kernel without waiting. Retries on EINTR; on EBUSY / EAGAIN (the
    /// kernel is short of CQ space or memory) reaps completions first, then retries.
    fn submit_queued(&mut self, table: &mut Table) -> io::Result<()> {
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EBUSY) | Some(libc::EAGAIN) => {
                        self.reap(table);
                        // Give the kernel a moment to finish work that frees resources.
                        std::thread::yield_now();
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    /// Hands the SQEs queued so far to the kernel, if there are any, and returns once the kernel
    /// has consumed them (with SQPOLL: waits, bounded, for its thread to catch up).
    pub(crate) fn flush_submissions(&mut self, table: &mut Table) -> io::Result<()> {
        let queued = {
            let mut sq = self.ring.submission();
            sq.sync();
            !sq.is_empty()
        };
        if !queued {
            return Ok(());
        }
        self.submit_queued(table)?;
        if self.ring.params().is_setup_sqpoll() {
            let deadline = Instant::now() + Duration::from_millis(100);
            loop {
                let mut sq = self.ring.submission();
                sq.sync();
                if sq.is_empty() || Instant::now() >= deadline {
                    break;
                }
                drop(sq);
                std::thread::yield_now();
            }
        }
        Ok(())
    }

    /// Whether anything is queued in the SQ or the kernel holds completions back until a
    /// syscall (CQ overflow, deferred task work).
    fn needs_enter(&mut self) -> bool {
        let mut sq = self.ring.submission();
        sq.sync();
        !sq.is_empty() || sq.cq_overflow() || sq.taskrun()
    }

    /// Submits queued SQEs (a syscall only if there are any, or the kernel asks for one) and
    /// reaps every available CQE. Never blocks.
    pub(crate) fn poll_io(&mut self, table: &mut Table) -> io::Result<()> {
        if self.needs_enter() {
            self.submit_queued(table)?;
        }
        self.reap(table);
        Ok(())
    }

    /// Waits in `io_uring_enter` until a CQE arrives, `timeout` passes, or (with `notify`)
    /// another thread notifies; then reaps. `None` waits without limit.
    pub(crate) fn park(
        &mut self,
        table: &mut Table,
        timeout: Option<Duration>,
        notify: bool,
    ) -> io::Result<()> {
        if notify {
            self.arm_notify(table)?;
        }
        // A push above may have flushed a full SQ and reaped (EBUSY / EAGAIN): completions
        // it collected must reach their tasks before the loop sleeps, so do not wait then.
        let timeout = if table.to_wake.is_empty() && table.orphans.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        let res = match timeout {
            Some(t) => {
                let ts = timespec(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submitter().submit_and_wait(1),
        };
        if let Err(e) = res {
            match e.raw_os_error() {
                // ETIME: the timeout passed. EINTR: a signal; the caller re-checks its state.
                // EBUSY / EAGAIN: the kernel is short of CQ space; reaping below makes room.
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => {}
                _ => return Err(e),
            }
        }
        self.reap(table);
        Ok(())
    }

    /// Keeps a read of the wake-up eventfd in flight so that a notification ends a park.
    fn arm_notify(&mut self, table: &mut Table) -> io::Result<()> {
        if self.notify_armed {
            return Ok(());
        }
        let sqe = opcode::Read::new(
            types::Fd(self.notify_fd),
            (&raw mut *self.notify_buf).cast(),
            8,
        )
        .build()
        .user_data(NOTIFY_USER_DATA);
        // SAFETY: the read targets `notify_buf`, a heap allocation owned by the driver that is
        // leaked, never freed, if the read is still in flight when the driver drops. The
        // eventfd outlives the ring (the runtime owns it beside the driver, in an Arc).
        unsafe { self.push(table, sqe)? };
        self.notify_armed = true;
        Ok(())
    }

    /// Moves every available CQE into the table.
    fn reap(&mut self, table: &mut Table) {
        let mut resend = Vec::new();
        self.reap_into(table, &mut resend);
        // The rest of short sends that must go out whole, with the same key.
        for (key, all, sent) in resend {
            let sqe = opcode::Send::new(
                types::Fd(all.fd),
                (all.ptr + sent) as *const u8,
                (all.len - sent).min(u32::MAX as usize) as u32,
            )
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(key as u64);
            // SAFETY: the bytes belong to the send's operation, which its `Op` or the table
            // entry keeps alive until this key's final CQE (the `SendAll` invariant).
            if unsafe { self.push(table, sqe) }.is_err() {
                self.send_all[key] = None;
                table.complete(key, sent as i32);
            }
        }
    }

    fn reap_into(&mut self, table: &mut Table, resend: &mut Vec<(usize, SendAll, usize)>) {
        loop {
            let mut cq = self.ring.completion();
            cq.sync();
            if cq.is_empty() {
                break;
            }
            for cqe in &mut cq {
                match cqe.user_data() {
                    NOTIFY_USER_DATA => self.notify_armed = false,
                    CANCEL_USER_DATA | LINK_TIMEOUT_USER_DATA => {}
                    key => {
                        let key = key as usize;
                        // A buffer the kernel picked is ours from here on, whoever takes it.
                        let buf = cqueue::buffer_select(cqe.flags()).map(|bid| {
                            let pool = self.pool.as_ref().expect("a provided buffer, no ring");
                            let len = cqe.result().max(0) as u32;
                            LentBuf::ring(Rc::clone(pool), bid, len)
                        });
                        let event = MultishotEvent {
                            result: cqe.result(),
                            more: cqueue::more(cqe.flags()),
                            buf,
                        };
                        if let Some(Entry {
                            life: Lifecycle::Multishot(_),
                            ..
                        }) = table.ops.get(key)
                        {
                            table.complete_multishot(key, event);
                            continue;
                        }
                        let mut raw = cqe.result();
                        if let Some(Some((all, sent))) = self.send_all.get_mut(key) {
                            if raw > 0 && *sent + (raw as usize) < all.len {
                                *sent += raw as usize;
                                resend.push((key, *all, *sent));
                                continue;
                            }
                            // All sent; or an error after some bytes went out: report
                            // those, and the next send reports the error.
                            if raw >= 0 {
                                raw += *sent as i32;
                            } else if *sent > 0 {
                                raw = *sent as i32;
                            }
                            self.send_all[key] = None;
                        }
                        if table.is_timed(key) {
                            // A linked timeout that fired cancels its operation: ECANCELED.
                            if raw == -libc::ECANCELED {
                                raw = TIMED_OUT;
                            }
                            self.timespecs[key] = None;
                        }
                        table.complete(key, raw);
                    }
                }
            }
        }
    }

    /// Asks the kernel to cancel operation `key`. A failure to queue (the kernel refusing
    /// submission) leaves the operation to finish on its own; its data stays in the table
    /// until then, so nothing is freed early.
    pub(crate) fn cancel(&mut self, key: usize) {
        // A send that must go out whole stops at its next completion: a short send that
        // completed before this cancellation reached the kernel must not be resent.
        if let Some(all) = self.send_all.get_mut(key) {
            *all = None;
        }
        self.push_cancel(key as u64);
    }

    /// Cancels the eventfd read (when the driver closes).
    pub(crate) fn cancel_notify(&mut self) {
        if self.notify_armed {
            self.push_cancel(NOTIFY_USER_DATA);
        }
    }

    fn push_cancel(&mut self, user_data: u64) {
        let sqe = opcode::AsyncCancel::new(user_data)
            .build()
            .user_data(CANCEL_USER_DATA);
        // SAFETY: ASYNC_CANCEL carries no pointer, only the target's user_data.
        if unsafe { self.ring.submission().push(&sqe) }.is_err() {
            // The SQ is full: flush it and retry once; see above for a refusal.
            let _ = self.ring.submit();
            // SAFETY: as above.
            let _ = unsafe { self.ring.submission().push(&sqe) };
        }
    }

    /// Keeps the lent-buffer mappings alive for good: an operation was left in flight at
    /// shutdown (the driver leaks its data), and a multishot receive among them could still
    /// fill a ring buffer.
    pub(crate) fn leak_buffers(&mut self) {
        std::mem::forget(self.pool.take());
    }

    /// Whether the ring holds nothing of the driver's own (the eventfd read) in flight.
    pub(crate) fn quiescent(&self) -> bool {
        !self.notify_armed
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        // The driver has drained what it could; an eventfd read still in flight may yet be
        // written by the kernel: leak its buffer, never free it.
        if self.notify_armed {
            std::mem::forget(std::mem::replace(&mut self.notify_buf, Box::new(0)));
        }
        // Timespecs of linked timeouts whose operation never completed: leaked likewise.
        if self.timespecs.iter().any(Option::is_some) {
            std::mem::forget(std::mem::take(&mut self.timespecs));
        }
    }
}
