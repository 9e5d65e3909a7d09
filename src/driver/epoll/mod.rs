//! The epoll backend, for kernels and sandboxes that refuse io_uring: each operation runs as a
//! non-blocking syscall when its descriptor is ready (files go to the driver's blocking
//! threads instead, see `driver::blocking`).
//!
//! Registration and waiting go through mio (edge-triggered, one `epoll_wait` per park). Every
//! descriptor is registered once, for reading and writing, the first time an operation needs
//! it, and made non-blocking then; the registration is recorded on the descriptor itself
//! (`Fd`), and the kernel drops it when the descriptor closes.
//!
//! # Readiness
//!
//! Each registered descriptor has a readiness cache (readable, writable) and a queue of
//! operations per direction. An operation is tried at once when its direction is believed
//! ready and nobody waits before it; `EAGAIN` clears the bit and queues it. An edge sets the
//! bit again and runs the queue in order until one says `EAGAIN`. Everything runs on the loop
//! thread, so no edge can be lost between a syscall and the clearing of its bit: an edge that
//! comes after the syscall is delivered by the next `epoll_wait`.
//!
//! # Deadlines
//!
//! A park with a timeout arms a timerfd (nanosecond precision; `epoll_wait` alone rounds up
//! to milliseconds) and is re-armed only when the deadline moves. Operations submitted with a
//! time limit keep their deadline here and complete with `TimedOut` when it passes.

use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest as MioInterest, Poll, Token};

use super::fd::Fd;
use super::op::{Interest, SendAll, Syscall};
use super::{Lifecycle, Notifier, TIMED_OUT, Table, Via};

const NOTIFY_TOKEN: Token = Token(usize::MAX);
const TIMER_TOKEN: Token = Token(usize::MAX - 1);

/// A busy loop calls `epoll_wait` after this many task polls (tokio's `event_interval`, 61,
/// plays the same part) or this many passes, whichever comes first, so readiness that arrives
/// while tasks keep the loop busy is seen soon.
const POLL_EVERY_TASKS: usize = 61;
const POLL_EVERY_PASSES: u32 = 16;

/// A deadline later than the armed one by less than this does not re-arm the timerfd.
const TIMER_SLACK: Duration = Duration::from_micros(20);

/// Ids of epoll drivers, recorded on the descriptors each has registered.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

const READ: u8 = 1;
const WRITE: u8 = 2;
/// Sticky: the peer closed its side (or the socket failed). A short read may have taken the
/// last bytes before the end of stream, and no further edge will come for that end, so a
/// short transfer no longer clears readiness once this is set (tokio keeps the same bit).
const READ_CLOSED: u8 = 4;
const WRITE_CLOSED: u8 = 8;

fn closed_bit(interest: Interest) -> u8 {
    match interest {
        Interest::Read => READ_CLOSED,
        Interest::Write => WRITE_CLOSED,
    }
}

fn bit(interest: Interest) -> u8 {
    match interest {
        Interest::Read => READ,
        Interest::Write => WRITE,
    }
}

/// A registered descriptor's readiness cache and waiting operations.
#[derive(Debug, Default)]
struct FdState {
    ready: u8,
    readers: VecDeque<usize>,
    writers: VecDeque<usize>,
}

impl FdState {
    /// After a syscall that completed with `res`: a short transfer on a byte stream (some,
    /// but less than `full`) means the socket had no more, so wait for the next edge rather
    /// than try a syscall that would say `EAGAIN` (tokio does the same). A zero-byte read
    /// (end of stream) keeps the bit: later reads must see the end again, and no edge follows.
    fn note(&mut self, interest: Interest, res: i32, full: Option<usize>) {
        if let Some(full) = full
            && res > 0
            && (res as usize) < full
            && self.ready & closed_bit(interest) == 0
        {
            self.ready &= !bit(interest);
        }
    }

    fn queue(&mut self, interest: Interest) -> &mut VecDeque<usize> {
        match interest {
            Interest::Read => &mut self.readers,
            Interest::Write => &mut self.writers,
        }
    }
}

/// What a readiness operation asks of the epoll backend (from its `Plan::Ready`).
#[derive(Debug)]
pub(crate) struct Ready {
    pub(crate) interest: Interest,
    pub(crate) call: Syscall,
    /// See `Plan::Ready::full`.
    pub(crate) full: Option<usize>,
    /// A send to complete in full (see `OpCode::send_all`).
    pub(crate) all: Option<SendAll>,
}

/// An operation waiting for readiness.
#[derive(Debug)]
struct Waiting {
    fd: RawFd,
    interest: Interest,
    call: Syscall,
    /// See `Plan::Ready::full`.
    full: Option<usize>,
    /// A send to complete in full, and how much of it is sent.
    all: Option<SendAll>,
    sent: usize,
    /// A connect in progress: on writability, its result is `SO_ERROR`.
    connect: bool,
    deadline: Option<Instant>,
}

pub(crate) struct Epoll {
    id: u64,
    poll: Poll,
    events: Events,
    /// Readiness of registered descriptors, indexed by descriptor number.
    fds: Vec<FdState>,
    /// Waiting operations, indexed by table key.
    waiting: Vec<Option<Waiting>>,
    /// Time limits of waiting operations.
    deadlines: BTreeSet<(Instant, usize)>,
    timer: OwnedFd,
    /// The deadline the timerfd is armed for, if it has not fired yet.
    timer_armed: Option<Instant>,
    /// `poll_io` calls since the last `epoll_wait`.
    since_wait: u32,
    /// Tasks the loop polled since the last `epoll_wait`.
    tasks_since_wait: usize,
    /// Scratch: the descriptors an `epoll_wait` reported.
    reported: Vec<usize>,
}

impl Epoll {
    pub(crate) fn new(notifier: &Notifier) -> io::Result<Epoll> {
        let poll = Poll::new()?;
        // SAFETY: timerfd_create has no memory preconditions; the result is checked.
        let timer = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if timer < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor, owned by nobody else.
        let timer = unsafe { OwnedFd::from_raw_fd(timer) };
        let registry = poll.registry();
        registry.register(
            &mut SourceFd(&timer.as_raw_fd()),
            TIMER_TOKEN,
            MioInterest::READABLE,
        )?;
        registry.register(
            &mut SourceFd(&notifier.raw_fd()),
            NOTIFY_TOKEN,
            MioInterest::READABLE,
        )?;
        Ok(Epoll {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            poll,
            events: Events::with_capacity(1024),
            fds: Vec::new(),
            waiting: Vec::new(),
            deadlines: BTreeSet::new(),
            timer,
            timer_armed: None,
            since_wait: 0,
            tasks_since_wait: 0,
            reported: Vec::new(),
        })
    }

    /// Registers `fd` (once per descriptor and driver), making it non-blocking.
    fn register(&mut self, fd: &Fd) -> io::Result<RawFd> {
        let raw = fd.as_raw_fd();
        if fd.registered_with(self.id) {
            return Ok(raw);
        }
        let mut on: libc::c_int = 1;
        // SAFETY: FIONBIO reads one int from a live local.
        if unsafe { libc::ioctl(raw, libc::FIONBIO, &raw mut on) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let interest = MioInterest::READABLE | MioInterest::WRITABLE;
        let token = Token(raw as usize);
        let fresh = match self
            .poll
            .registry()
            .register(&mut SourceFd(&raw), token, interest)
        {
            Ok(()) => true,
            // Already in this epoll set: the mark on the descriptor was overwritten by another
            // driver that uses it too (a `File` shared between runtimes). Keep its state and
            // queued operations.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => false,
            Err(e) => return Err(e),
        };
        fd.set_registered(self.id);
        let idx = raw as usize;
        if self.fds.len() <= idx {
            self.fds.resize_with(idx + 1, FdState::default);
        }
        if fresh {
            // A new registration (a closed descriptor's number may come back as a new file,
            // whose state starts afresh). Optimistic: the first operation tries its syscall
            // at once.
            self.fds[idx].ready = READ | WRITE;
        }
        Ok(raw)
    }

    /// Whether epoll can wait for `fd` (a pipe, FIFO or socket; not a regular file or a
    /// device). Asked once per descriptor (`fstat`), remembered on it. Devices such as a
    /// terminal could be polled, but making one non-blocking would change it for every process
    /// that shares it: they go to the blocking threads, as regular files do, and so do the
    /// standard descriptors 0, 1 and 2 (a pipe from a shell is often shared with other
    /// programs).
    pub(crate) fn has_readiness(&mut self, fd: &Fd) -> io::Result<bool> {
        if fd.registered_with(self.id) {
            return Ok(true);
        }
        if fd.not_pollable() || fd.as_raw_fd() <= 2 {
            return Ok(false);
        }
        // SAFETY: `stat` is a C struct of integers, for which all-zero bytes are a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat writes one `stat` into the live local; the descriptor is open.
        if unsafe { libc::fstat(fd.as_raw_fd(), &raw mut st) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let kind = st.st_mode & libc::S_IFMT;
        if kind == libc::S_IFIFO || kind == libc::S_IFSOCK {
            return Ok(true);
        }
        fd.set_not_pollable();
        Ok(false)
    }

    /// Takes `fd` out of the interest list (it moves to another loop, whose driver registers
    /// it anew). Its operations have all completed: the stream that owns it waited for them.
    pub(crate) fn forget(&mut self, fd: &Fd) {
        if !fd.registered_with(self.id) {
            return;
        }
        let raw = fd.as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&raw));
        fd.clear_registration();
        if let Some(state) = self.fds.get_mut(raw as usize) {
            *state = FdState::default();
        }
    }

    /// Starts a readiness operation: runs it at once if the descriptor is believed ready,
    /// else queues it.
    pub(crate) fn submit_ready(
        &mut self,
        table: &mut Table,
        fd: &Fd,
        ready: Ready,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let raw = self.register(fd)?;
        let mut w = Waiting {
            fd: raw,
            interest: ready.interest,
            call: ready.call,
            full: ready.full,
            all: ready.all,
            sent: 0,
            connect: false,
            deadline: None,
        };
        let state = &mut self.fds[raw as usize];
        if state.ready & bit(w.interest) != 0 && state.queue(w.interest).is_empty() {
            // SAFETY: the operation that built the syscall is alive: it is being submitted.
            if let Some(res) = unsafe { attempt(state, &mut w) } {
                return Ok(table.insert(Lifecycle::Completed(res), Via::Local, false));
            }
        }
        Ok(self.wait(table, w, timeout))
    }

    /// Starts a connect: `connect(2)` at once; `EINPROGRESS` waits for writability.
    pub(crate) fn submit_connect(
        &mut self,
        table: &mut Table,
        fd: &Fd,
        call: Syscall,
    ) -> io::Result<usize> {
        let raw = self.register(fd)?;
        // SAFETY: the operation that built the syscall is alive: it is being submitted.
        let res = unsafe { call.run() };
        if res != -libc::EINPROGRESS {
            return Ok(table.insert(Lifecycle::Completed(res), Via::Local, false));
        }
        self.fds[raw as usize].ready &= !WRITE;
        let w = Waiting {
            fd: raw,
            interest: Interest::Write,
            call,
            full: None,
            all: None,
            sent: 0,
            connect: true,
            deadline: None,
        };
        Ok(self.wait(table, w, None))
    }

    /// Queues `w` for readiness; with `timeout`, it completes with `TimedOut` if still
    /// waiting then.
    fn wait(&mut self, table: &mut Table, mut w: Waiting, timeout: Option<Duration>) -> usize {
        let key = table.insert(Lifecycle::Submitted, Via::Ready, false);
        // A limit too far to represent (`Duration::MAX`) is no limit.
        w.deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        if let Some(d) = w.deadline {
            self.deadlines.insert((d, key));
        }
        if self.waiting.len() <= key {
            self.waiting.resize_with(key + 1, || None);
        }
        let (fd, interest) = (w.fd, w.interest);
        self.waiting[key] = Some(w);
        self.fds[fd as usize].queue(interest).push_back(key);
        key
    }

    /// Takes operation `key` out of its queue if it is still waiting (it has run no
    /// syscall); returns whether it was.
    pub(crate) fn withdraw(&mut self, key: usize) -> bool {
        let Some(w) = self.waiting.get_mut(key).and_then(Option::take) else {
            return false;
        };
        let queue = self.fds[w.fd as usize].queue(w.interest);
        if let Some(pos) = queue.iter().position(|&k| k == key) {
            queue.remove(pos);
        }
        if let Some(d) = w.deadline {
            self.deadlines.remove(&(d, key));
        }
        true
    }

    /// Runs the operations waiting on `fd` for `interest`, in order, while it stays ready.
    fn run_queue(&mut self, table: &mut Table, fd: usize, interest: Interest) {
        loop {
            let state = &mut self.fds[fd];
            if state.ready & bit(interest) == 0 {
                return;
            }
            let Some(&key) = state.queue(interest).front() else {
                return;
            };
            let w = self.waiting[key]
                .as_mut()
                .expect("a queued operation is waiting");
            // SAFETY: a waiting operation is alive (its Op, or the table entry, owns it).
            let Some(res) = (unsafe { attempt(state, w) }) else {
                return;
            };
            state.queue(interest).pop_front();
            let w = self.waiting[key].take().expect("checked above");
            if let Some(d) = w.deadline {
                self.deadlines.remove(&(d, key));
            }
            table.complete(key, res);
        }
    }

    /// Completes the operations whose time limit has passed.
    fn expire(&mut self, table: &mut Table) {
        let Some(&(first, _)) = self.deadlines.first() else {
            return;
        };
        let now = Instant::now();
        if first > now {
            return;
        }
        while let Some(&(d, key)) = self.deadlines.first() {
            if d > now {
                break;
            }
            self.withdraw(key);
            table.complete(key, TIMED_OUT);
        }
    }

    /// One `epoll_wait` with `timeout`, then runs what became ready.
    fn wait_events(&mut self, table: &mut Table, timeout: Option<Duration>) -> io::Result<()> {
        self.since_wait = 0;
        self.tasks_since_wait = 0;
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let mut fds = std::mem::take(&mut self.reported);
        for ev in self.events.iter() {
            match ev.token() {
                // The eventfd is never read: edge-triggered epoll reports every write to it,
                // and its counter cannot overflow in practice (2^64 - 2 writes); not reading
                // saves a syscall per cross-thread wake-up.
                NOTIFY_TOKEN => {}
                TIMER_TOKEN => self.timer_armed = None,
                Token(fd) => {
                    let Some(state) = self.fds.get_mut(fd) else {
                        continue;
                    };
                    // An error or hang-up makes both directions "ready": the next syscall
                    // reports it.
                    let err = ev.is_error();
                    if ev.is_readable() {
                        state.ready |= READ;
                    }
                    if ev.is_read_closed() || err {
                        state.ready |= READ | READ_CLOSED;
                    }
                    if ev.is_writable() {
                        state.ready |= WRITE;
                    }
                    if ev.is_write_closed() || err {
                        state.ready |= WRITE | WRITE_CLOSED;
                    }
                    fds.push(fd);
                }
            }
        }
        for &fd in &fds {
            self.run_queue(table, fd, Interest::Read);
            self.run_queue(table, fd, Interest::Write);
        }
        fds.clear();
        self.reported = fds;
        self.expire(table);
        Ok(())
    }

    /// Counts task polls towards the next `epoll_wait` of a busy loop.
    pub(crate) fn tasks_ran(&mut self, n: usize) {
        self.tasks_since_wait += n;
    }

    /// Never blocks. A busy loop looks at epoll only every [`POLL_EVERY_TASKS`] task polls or
    /// [`POLL_EVERY_PASSES`] calls: operations that could run at submission already did.
    pub(crate) fn poll_io(&mut self, table: &mut Table) -> io::Result<()> {
        self.since_wait += 1;
        if self.since_wait >= POLL_EVERY_PASSES || self.tasks_since_wait >= POLL_EVERY_TASKS {
            return self.wait_events(table, Some(Duration::ZERO));
        }
        self.expire(table);
        Ok(())
    }

    /// Waits until a descriptor is ready, `timeout` passes (or an operation's time limit), or
    /// another thread notifies.
    pub(crate) fn park(&mut self, table: &mut Table, timeout: Option<Duration>) -> io::Result<()> {
        let now = Instant::now();
        let mut deadline = timeout.and_then(|t| now.checked_add(t));
        if let Some(&(first, _)) = self.deadlines.first() {
            deadline = Some(deadline.map_or(first, |d| d.min(first)));
        }
        match deadline {
            None => self.wait_events(table, None),
            Some(d) if d <= now => self.wait_events(table, Some(Duration::ZERO)),
            Some(d) => {
                self.arm_timer(d, d - now)?;
                // The timerfd ends the wait; the timeout given to epoll (rounded up to a
                // millisecond) only backs it up.
                self.wait_events(table, Some(d - now + Duration::from_millis(1)))
            }
        }
    }

    /// Arms the timerfd to fire `left` from now (at `deadline`), unless it already is.
    fn arm_timer(&mut self, deadline: Instant, left: Duration) -> io::Result<()> {
        // Armed for the same deadline or an earlier one: keep it. An earlier one wakes the
        // loop early, which then parks again and arms for its new deadline; so a deadline
        // that keeps moving later (hyper's header timer, pushed back by every request) costs
        // no timerfd_settime per park.
        if let Some(armed) = self.timer_armed
            && armed <= deadline + TIMER_SLACK
        {
            return Ok(());
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: left.as_secs().min(i64::MAX as u64) as libc::time_t,
                // A zero it_value disarms: make the smallest wait one nanosecond.
                tv_nsec: (left.subsec_nanos().max(u32::from(left.as_secs() == 0))) as _,
            },
        };
        // SAFETY: reads one itimerspec from a live local; the old value is not asked for.
        let r = unsafe {
            libc::timerfd_settime(self.timer.as_raw_fd(), 0, &spec, std::ptr::null_mut())
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        self.timer_armed = Some(deadline);
        Ok(())
    }
}

/// Runs `w`'s syscall once on a descriptor believed ready: `Some(result)` when the operation
/// completed, `None` when it must wait for the next edge (`EAGAIN`, a connect still under
/// way, or a send-all with bytes left after a short send: it goes on from there).
///
/// # Safety
///
/// The operation `w` belongs to is alive.
unsafe fn attempt(state: &mut FdState, w: &mut Waiting) -> Option<i32> {
    // SAFETY: forwarded from this function's contract.
    let res = unsafe {
        if w.connect {
            connect_result(w.fd)
        } else {
            run(w.call)
        }
    };
    let Some(res) = res else {
        state.ready &= !bit(w.interest);
        return None;
    };
    if let Some(all) = w.all {
        if res > 0 {
            w.sent += res as usize;
            if w.sent < all.len {
                // A short send: the socket buffer is full; the rest goes on the next edge.
                w.call = all.syscall_from(w.sent);
                state.ready &= !bit(w.interest);
                return None;
            }
        }
        // All sent; or an error (or 0) after some bytes went out: report those, and the next
        // send reports the error.
        if res >= 0 || w.sent > 0 {
            return Some(w.sent as i32);
        }
        return Some(res);
    }
    state.note(w.interest, res, w.full);
    Some(res)
}

/// Runs a non-blocking syscall: `None` for `EAGAIN` (wait for readiness). `EINTR` is retried.
///
/// # Safety
///
/// The operation that built `call` is alive.
unsafe fn run(call: Syscall) -> Option<i32> {
    loop {
        // SAFETY: forwarded from this function's contract.
        match unsafe { call.run() } {
            r if r == -libc::EAGAIN => return None,
            r if r == -libc::EINTR => continue,
            r => return Some(r),
        }
    }
}

/// The result of a connect in progress on a socket that became writable: `SO_ERROR`, or
/// `None` if it is still connecting (a spurious wake-up).
///
/// # Safety
///
/// None beyond `fd` being open (the waiting operation keeps it open).
unsafe fn connect_result(fd: RawFd) -> Option<i32> {
    let mut err: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes one int and its length into live locals.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut err).cast(),
            &raw mut len,
        )
    };
    if r < 0 {
        return Some(
            -io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        );
    }
    if err != 0 {
        return Some(-err);
    }
    // No error: connected, unless the connect is still under way.
    let mut addr: libc::sockaddr_storage =
        // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
        unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getpeername writes at most `len` bytes into the live local storage.
    let r = unsafe { libc::getpeername(fd, (&raw mut addr).cast(), &raw mut len) };
    if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOTCONN) {
        return None;
    }
    Some(0)
}

impl std::fmt::Debug for Epoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoll")
            .field("id", &self.id)
            .field("deadlines", &self.deadlines.len())
            .finish_non_exhaustive()
    }
}
