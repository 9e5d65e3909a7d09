//! Unix signals as futures: [`ctrl_c`], [`Signal`], and asyncio's [`add_signal_handler`] /
//! [`remove_signal_handler`].
//!
//! # How a signal arrives
//!
//! The first listener for a signal installs a process-wide handler for it (`sigaction`); from
//! then on the signal's default action (for SIGINT and SIGTERM: terminate) no longer happens,
//! as with tokio. The handler does two async-signal-safe things: it counts the delivery in
//! a per-signal atomic counter, and it adds 1 to the eventfd of every live listener. Each
//! [`Signal`] reads its eventfd through the driver (a ring read on io_uring, a read on
//! readiness on epoll) and then compares the counter with the value it last saw.
//!
//! This is the self-pipe pattern (with eventfds), not `signalfd`: a signalfd only receives
//! signals that every thread of the process blocks, and threads a program started before
//! ringloop (or a library's threads) would still take the signal and die of it.
//!
//! Every listener sees every delivery once, whatever loop or shard it lives on: a signal is
//! broadcast to all of them. Deliveries that arrive before a listener looks coalesce into
//! one, as the kernel coalesces pending signals.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::driver::fd::{Fd, SharedFd};
use crate::driver::op::Op;
use crate::driver::op::event::EventRead;

/// Most listeners ([`Signal`]s, handlers, `ctrl_c` futures) alive at once in the process.
const MAX_LISTENERS: usize = 256;
/// Signal numbers are below this (Linux: 1..=64).
const NSIG: usize = 65;

/// Deliveries per signal, counted by the handler.
static DELIVERED: [AtomicU64; NSIG] = [const { AtomicU64::new(0) }; NSIG];
/// Whether the handler is installed for a signal.
static INSTALLED: [AtomicBool; NSIG] = [const { AtomicBool::new(false) }; NSIG];
/// The eventfd of each listener slot, or -1. A slot's eventfd, once created, is never closed:
/// the handler may be about to write to it on another thread when its listener goes away,
/// and a closed number could by then name another file. Freed slots are reused.
static SLOT_FDS: [AtomicI32; MAX_LISTENERS] = [const { AtomicI32::new(-1) }; MAX_LISTENERS];
/// Whether a slot is taken by a live listener (guarded by `SLOTS_LOCK` for takers).
static SLOT_TAKEN: [AtomicBool; MAX_LISTENERS] = [const { AtomicBool::new(false) }; MAX_LISTENERS];
/// Serialises installing handlers and taking slots (never taken by the handler).
static SLOTS_LOCK: Mutex<()> = Mutex::new(());

/// The process-wide handler: async-signal-safe (atomics and `write`), and keeps `errno`.
extern "C" fn on_signal(signum: libc::c_int) {
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread.
    let errno = unsafe { *libc::__errno_location() };
    if let Some(count) = DELIVERED.get(signum as usize) {
        count.fetch_add(1, Ordering::SeqCst);
    }
    let one: u64 = 1;
    for slot in &SLOT_FDS {
        let fd = slot.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: writes 8 bytes from a live local to an eventfd that is never closed.
            let _ = unsafe { libc::write(fd, (&raw const one).cast(), 8) };
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Signals whose handler cannot be replaced, or whose delivery means the program is broken.
fn forbidden(signum: libc::c_int) -> bool {
    matches!(
        signum,
        libc::SIGKILL | libc::SIGSTOP | libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE
    )
}

fn check(signum: libc::c_int) -> io::Result<()> {
    if signum <= 0 || signum as usize >= NSIG || forbidden(signum) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "ringloop: cannot listen for signal {signum}: it is not a signal number, or one \
                 whose handler cannot be set (SIGKILL, SIGSTOP) or must stay the default \
                 (SIGSEGV, SIGBUS, SIGILL, SIGFPE)"
            ),
        ));
    }
    Ok(())
}

/// Installs the handler for `signum` once.
fn install(signum: libc::c_int) -> io::Result<()> {
    if INSTALLED[signum as usize].load(Ordering::Acquire) {
        return Ok(());
    }
    // SAFETY: sigaction is plain old data; all zeroes (no flags, empty mask) is valid.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_signal as *const () as usize;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: sigemptyset initialises the mask inside our local struct.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: installs a handler that only does async-signal-safe work (see `on_signal`).
    if unsafe { libc::sigaction(signum, &action, std::ptr::null_mut()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    INSTALLED[signum as usize].store(true, Ordering::Release);
    Ok(())
}

/// A taken listener slot; dropping the last reference frees it. A read cancelled with its
/// `Signal` may still be armed in the kernel on the slot's eventfd: it holds a reference, so
/// the slot is not handed to a new listener, whose deliveries that stale read could consume.
#[derive(Debug)]
struct SlotLease(usize);

impl Drop for SlotLease {
    fn drop(&mut self) {
        SLOT_TAKEN[self.0].store(false, Ordering::Relaxed);
    }
}

/// Takes a free listener slot, creating its eventfd on first use.
fn take_slot() -> io::Result<(usize, RawFd)> {
    for (i, taken) in SLOT_TAKEN.iter().enumerate() {
        if taken.load(Ordering::Relaxed) {
            continue;
        }
        taken.store(true, Ordering::Relaxed);
        let mut fd = SLOT_FDS[i].load(Ordering::SeqCst);
        if fd < 0 {
            // Created blocking (no EFD_NONBLOCK): io_uring reads it by arming a poll. The epoll
            // driver makes a listener's duplicate non-blocking when it registers it, which
            // changes this eventfd too (they share one open file description): harmless,
            // since the handler's 8-byte writes never fill the counter.
            // SAFETY: eventfd has no memory preconditions; the result is checked.
            fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
            if fd < 0 {
                taken.store(false, Ordering::Relaxed);
                return Err(io::Error::last_os_error());
            }
            SLOT_FDS[i].store(fd, Ordering::SeqCst);
        }
        return Ok((i, fd));
    }
    Err(io::Error::other(format!(
        "ringloop: more than {MAX_LISTENERS} signal listeners are alive at once"
    )))
}

/// A stream of deliveries of one signal: [`recv`](Signal::recv) waits for the next one.
///
/// # Examples
///
/// ```
/// use ringloop::signal::Signal;
///
/// ringloop::run(async {
///     let mut usr1 = Signal::new(libc::SIGUSR1)?;
///     // SAFETY: raise sends the signal to this thread; the handler is installed.
///     unsafe { libc::raise(libc::SIGUSR1) };
///     usr1.recv().await
/// })
/// .unwrap();
/// ```
pub struct Signal {
    signum: libc::c_int,
    /// The slot, freed when the last holder (this, or a read of it still in flight) goes.
    slot: Arc<SlotLease>,
    /// A duplicate of the slot's eventfd, for the driver (it may make it non-blocking and
    /// register it; dropping it closes only the duplicate).
    fd: SharedFd,
    seen: u64,
}

impl Signal {
    /// Starts listening for `signum` (e.g. `libc::SIGTERM`); deliveries from now on are seen
    /// by [`recv`](Signal::recv). Works outside a runtime too; `recv` needs one.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a number that is not a signal, or SIGKILL, SIGSTOP, SIGSEGV,
    /// SIGBUS, SIGILL, SIGFPE; the kernel's error if the handler cannot be installed; an
    /// error if more than 256 listeners are alive.
    pub fn new(signum: libc::c_int) -> io::Result<Signal> {
        check(signum)?;
        let _guard = crate::sync::lock(&SLOTS_LOCK);
        install(signum)?;
        let (slot, raw) = take_slot()?;
        // SAFETY: F_DUPFD_CLOEXEC on an open eventfd returns a new descriptor we own.
        let dup = unsafe { libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            SLOT_TAKEN[slot].store(false, Ordering::Relaxed);
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor fcntl just created for us.
        let fd = Fd::new(unsafe { OwnedFd::from_raw_fd(dup) });
        Ok(Signal {
            signum,
            slot: Arc::new(SlotLease(slot)),
            fd,
            seen: DELIVERED[signum as usize].load(Ordering::SeqCst),
        })
    }

    /// The signal this listens for.
    pub fn signum(&self) -> libc::c_int {
        self.signum
    }

    /// Waits for the next delivery of the signal (deliveries since the last `recv` that
    /// returned, or since [`new`](Signal::new), coalesce into one). Cancel-safe: a delivery
    /// is never consumed by a `recv` that was dropped.
    ///
    /// # Errors
    ///
    /// If the driver fails to read the eventfd.
    ///
    /// # Panics
    ///
    /// Outside a ringloop runtime.
    pub async fn recv(&mut self) -> io::Result<()> {
        let count = &DELIVERED[self.signum as usize];
        loop {
            let now = count.load(Ordering::SeqCst);
            if now != self.seen {
                self.seen = now;
                return Ok(());
            }
            // The handler counts first, then writes the eventfd: a delivery after the load
            // above leaves the counter non-zero, so this read completes at once.
            let read = Op::submit(EventRead::new(&self.fd, Arc::clone(&self.slot)));
            let read = read.map_err(|(e, _)| e)?;
            read.await.0?;
        }
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        if let Some(driver) = crate::driver::try_current()
            && let Ok(mut driver) = driver.try_borrow_mut()
        {
            driver.forget_fd(&self.fd);
        }
        // The slot is freed by the last `SlotLease`, here or in a read still in flight.
    }
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signal")
            .field("signum", &self.signum)
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

/// Waits for SIGINT (Ctrl-C in a terminal). The first call installs ringloop's handler, so
/// from then on SIGINT no longer terminates the process by default.
///
/// # Errors
///
/// As [`Signal::new`] and [`Signal::recv`].
///
/// # Examples
///
/// ```no_run
/// ringloop::run(async {
///     ringloop::signal::ctrl_c().await.unwrap();
///     println!("stopping");
/// });
/// ```
pub async fn ctrl_c() -> io::Result<()> {
    Signal::new(libc::SIGINT)?.recv().await
}

thread_local! {
    /// `add_signal_handler` tasks of the loop on this thread, by signal.
    static HANDLERS: RefCell<HashMap<libc::c_int, crate::Task<()>>> = RefCell::new(HashMap::new());
}

/// Calls `f` on the current loop each time `signum` is delivered, until
/// [`remove_signal_handler`]: asyncio's `loop.add_signal_handler`. A second call for the same
/// signal replaces the handler. `f` need not be `Send`: it runs on this loop's thread.
///
/// # Errors
///
/// As [`Signal::new`]; and outside a ringloop runtime.
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
///
/// ringloop::run(async {
///     let hits = Rc::new(Cell::new(0));
///     let seen = Rc::clone(&hits);
///     ringloop::add_signal_handler(libc::SIGUSR2, move || seen.set(seen.get() + 1)).unwrap();
///     // SAFETY: raise sends the signal to this thread; the handler is installed.
///     unsafe { libc::raise(libc::SIGUSR2) };
///     while hits.get() == 0 {
///         ringloop::yield_now().await;
///     }
///     assert!(ringloop::remove_signal_handler(libc::SIGUSR2));
/// });
/// ```
pub fn add_signal_handler(signum: libc::c_int, mut f: impl FnMut() + 'static) -> io::Result<()> {
    if !crate::runtime::context::is_entered() {
        return Err(io::Error::other(
            "ringloop::add_signal_handler called outside a ringloop runtime",
        ));
    }
    let mut signal = Signal::new(signum)?;
    let task = crate::spawn(async move {
        while signal.recv().await.is_ok() {
            f();
        }
    });
    task.set_name(format!("signal handler {signum}"));
    if let Some(old) = HANDLERS.with(|h| h.borrow_mut().insert(signum, task)) {
        old.cancel();
    }
    Ok(())
}

/// Removes the handler [`add_signal_handler`] set for `signum` on this loop's thread; returns
/// whether there was one. The signal's default action does not come back (the process-wide
/// handler stays installed; deliveries without listeners are ignored).
pub fn remove_signal_handler(signum: libc::c_int) -> bool {
    match HANDLERS.with(|h| h.borrow_mut().remove(&signum)) {
        Some(task) => {
            task.cancel();
            true
        }
        None => false,
    }
}
