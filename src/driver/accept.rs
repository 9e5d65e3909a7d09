//! `Acceptor`: the accept side of a listener, which keeps the connection a cancelled accept
//! got, and keeps a multishot accept armed where the driver has one.
//!
//! A cancelled accept that got a connection anyway keeps it for the next accept instead of
//! closing it (which would reset the client). An accept waiting in the kernel also takes such
//! a kept connection as soon as it appears (dropping, so cancelling, its own request), so no
//! connection waits behind a pending accept.
//!
//! On io_uring with multishot accept (Linux 5.19, known from the probe), the listener keeps one
//! multishot request armed from its first `accept()` on: each connection the kernel accepts
//! lands in `ready`, and an `accept()` takes from there, with no submission per connection. An
//! error ends the request; it is reported by the next `accept()`, which arms a new one. At most
//! [`ACCEPT_AHEAD`] connections are taken ahead of `accept()` calls before the request is
//! paused (so a server that stops accepting is not made to hold every incoming connection);
//! the kernel may complete a burst that arrives before the loop runs in full. Elsewhere (epoll,
//! older kernels) each `accept()` is one single-shot accept operation.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::fd::SharedFd;
use super::op::Op;
use super::op::net::{self as op, RawAddr};
use super::{MultishotCancel, MultishotEvent};

/// The accept side of one listener. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Acceptor {
    state: Rc<RefCell<AcceptState>>,
}

#[derive(Debug, Default)]
struct AcceptState {
    /// Connections accepted and not yet returned.
    ready: VecDeque<(OwnedFd, Box<RawAddr>)>,
    /// Accepts waiting for `ready` to grow (or for the multishot request to end).
    waiters: Vec<Waker>,
    multishot: Multishot,
    /// The error that ended the multishot request, for the next accept.
    error: Option<io::Error>,
    /// The cancellation handle of the armed multishot request (it works from anywhere, also
    /// outside `block_on` and while the driver is borrowed).
    armed: Option<MultishotCancel>,
    /// Whether the armed request has been asked to end (a pause, or [`Acceptor::stop`]).
    cancelling: bool,
    /// Single-shot accepts whose future was dropped and whose result has not come yet (one may
    /// still bring a connection for `ready`).
    orphans_in_flight: usize,
}

/// Connections a listener accepts ahead of `accept()` calls before it pauses its multishot
/// request (the rest wait in the kernel's backlog, as without multishot): bounds the fds a
/// server that stops accepting can be made to hold.
const ACCEPT_AHEAD: usize = 64;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Multishot {
    /// Never armed.
    #[default]
    Untried,
    /// Armed; this is its key in the driver.
    Armed(usize),
    /// Ended (an error, a pause, or the kernel stopped it); the next accept re-arms it.
    Ended,
    /// The driver has none: use single-shot accepts.
    Unsupported,
}

impl AcceptState {
    fn wake_all(state: &RefCell<AcceptState>) {
        let waiters = std::mem::take(&mut state.borrow_mut().waiters);
        for w in waiters {
            w.wake();
        }
    }

    /// One completion of the multishot accept.
    fn on_multishot(state: &RefCell<AcceptState>, c: MultishotEvent) {
        {
            let mut s = state.borrow_mut();
            if c.result >= 0 {
                // SAFETY: the kernel created this fd for us; nobody else owns it.
                let fd = unsafe { OwnedFd::from_raw_fd(c.result) };
                // A peer already gone has no address: drop (close) the connection.
                if let Ok(addr) = op::peer_addr(fd.as_raw_fd()) {
                    s.ready.push_back((fd, addr));
                }
                if s.ready.len() >= ACCEPT_AHEAD {
                    // Pause: the final completion marks the request ended, and the next
                    // accept() that finds `ready` empty arms a new one.
                    s.cancel_multishot();
                }
            } else if c.result != -libc::ECANCELED {
                s.error = Some(io::Error::from_raw_os_error(-c.result));
            }
            if !c.more {
                s.multishot = Multishot::Ended;
                s.armed = None;
                s.cancelling = false;
            }
        }
        AcceptState::wake_all(state);
    }

    /// Asks the armed multishot request (if any) to end, once.
    fn cancel_multishot(&mut self) {
        if let (Multishot::Armed(_), Some(armed), false) =
            (self.multishot, &self.armed, self.cancelling)
        {
            self.cancelling = true;
            armed.cancel();
        }
    }
}

impl Acceptor {
    /// Accepts one connection on the listening socket `fd`: its fd (close-on-exec) and the
    /// peer's address.
    pub(crate) async fn accept(&self, fd: &SharedFd) -> io::Result<(OwnedFd, Box<RawAddr>)> {
        let multishot = poll_fn(|cx| {
            let mut s = self.state.borrow_mut();
            if let Some(ready) = s.ready.pop_front() {
                return Poll::Ready(Some(Ok(ready)));
            }
            if let Some(e) = s.error.take() {
                return Poll::Ready(Some(Err(e)));
            }
            match s.multishot {
                Multishot::Unsupported => return Poll::Ready(None),
                Multishot::Armed(_) => {}
                Multishot::Untried | Multishot::Ended => {
                    let state = Rc::downgrade(&self.state);
                    // The request names the listener's fd by number only until the kernel
                    // takes it; the acceptor's Drop cancels and flushes before the listener's
                    // fd closes (field order), so the handler need not keep the fd open (which
                    // would keep the port until the next pass of the loop).
                    let handler = Rc::new(move |c: MultishotEvent| {
                        if let Some(state) = state.upgrade() {
                            AcceptState::on_multishot(&state, c);
                        } else if c.result >= 0 {
                            // The listener is gone: close what it accepted meanwhile.
                            // SAFETY: a fresh fd from the kernel, owned by nobody else.
                            drop(unsafe { OwnedFd::from_raw_fd(c.result) });
                        }
                    });
                    let driver = super::current();
                    let handler: super::MultishotHandler = handler;
                    let armed = driver
                        .borrow_mut()
                        .accept_multishot(fd.as_raw_fd(), Rc::clone(&handler));
                    match armed {
                        None => {
                            s.multishot = Multishot::Unsupported;
                            return Poll::Ready(None);
                        }
                        Some(Ok(key)) => {
                            s.multishot = Multishot::Armed(key);
                            s.armed = Some(MultishotCancel::new(driver, key, &handler));
                            s.cancelling = false;
                        }
                        Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                    }
                }
            }
            if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                s.waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
        match multishot {
            Some(accepted) => accepted,
            None => self.accept_single(fd).await,
        }
    }

    /// One single-shot accept.
    async fn accept_single(&self, fd: &SharedFd) -> io::Result<(OwnedFd, Box<RawAddr>)> {
        let state = Rc::clone(&self.state);
        let mut op = Op::submit(op::Accept::new(fd))
            .map_err(|(e, _)| e)?
            .on_orphan(move |r: Option<io::Result<u32>>, accept: op::Accept| {
                let mut s = state.borrow_mut();
                s.orphans_in_flight -= 1;
                if let Some(Ok(new_fd)) = r {
                    // SAFETY: the kernel created this fd for the cancelled accept; nobody
                    // else owns it.
                    let new_fd = unsafe { OwnedFd::from_raw_fd(new_fd as RawFd) };
                    s.ready.push_back((new_fd, accept.addr));
                }
                drop(s);
                AcceptState::wake_all(&state);
            });
        // Counted until the result is collected below; if the future is dropped first, the
        // orphan handler (which always runs, once the result comes) uncounts it.
        self.state.borrow_mut().orphans_in_flight += 1;
        poll_fn(|cx| {
            if let Poll::Ready((r, accept)) = Pin::new(&mut op).poll(cx) {
                self.state.borrow_mut().orphans_in_flight -= 1;
                let new_fd = r? as RawFd;
                // SAFETY: as above: a fresh fd from the kernel, owned by nobody else.
                let new_fd = unsafe { OwnedFd::from_raw_fd(new_fd) };
                return Poll::Ready(Ok((new_fd, accept.addr)));
            }
            let mut s = self.state.borrow_mut();
            if let Some(ready) = s.ready.pop_front() {
                // Returning drops `op`: its accept is cancelled, or kept if it won.
                return Poll::Ready(Ok(ready));
            }
            if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                s.waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Stops accepting, for a conversion into a std listener: ends the multishot request (if
    /// armed) and waits for its last completion and for the results of cancelled single-shot
    /// accepts, then returns every connection accepted and not yet handed out, in the order
    /// they were accepted. Connections the kernel has not accepted stay in the listening
    /// socket's backlog. Must be awaited on the loop the listener accepted on (which delivers
    /// those completions); finishes at once if there is nothing to wait for.
    pub(crate) async fn stop(self) -> Vec<(OwnedFd, Box<RawAddr>)> {
        self.state.borrow_mut().cancel_multishot();
        poll_fn(|cx| {
            let mut s = self.state.borrow_mut();
            if matches!(s.multishot, Multishot::Armed(_)) || s.orphans_in_flight > 0 {
                if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    s.waiters.push(cx.waker().clone());
                }
                return Poll::Pending;
            }
            Poll::Ready(())
        })
        .await;
        let mut s = self.state.borrow_mut();
        // An error that ended the request concerned this listener's accepting on the loop,
        // which is over; the std listener reports its own.
        s.error = None;
        std::mem::take(&mut s.ready).into()
    }

    /// How accepts are made: "multishot", "single-shot", or "not yet" (a diagnostic for
    /// tests).
    pub(crate) fn mode(&self) -> &'static str {
        match self.state.borrow().multishot {
            Multishot::Untried => "not yet",
            Multishot::Armed(_) | Multishot::Ended => "multishot",
            Multishot::Unsupported => "single-shot",
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        // The request holds the listening socket open in the kernel: cancel it now, so that
        // closing the listener refuses new connections at once.
        self.state.borrow_mut().cancel_multishot();
    }
}
