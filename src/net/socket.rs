//! `Socket`: the owner of a socket's fd, which hands queued submissions to the kernel before it
//! closes the fd; and `Acceptor`, accepts that keep the connection a cancelled accept got.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};

use crate::driver::op::SharedFd;
use crate::driver::op::net::{self as op, RawAddr};
use crate::driver::{Completion, DriverRef};

/// An open socket. Its fd is shared with the operations in flight on it, which keep it open
/// until their CQEs (an SQE names the fd by number until the kernel consumes it, and a number
/// closed too early could be reused by another file by then); dropping the socket closes the
/// fd once the last of them is done.
///
/// `!Send`: its SQEs are queued on the ring of the thread that made them, and only that
/// thread can hand them to the kernel before the close (see `Drop`).
#[derive(Debug)]
pub(crate) struct Socket {
    /// `Some` until `into_fd`. Shared with the in-flight operations, which keep the number
    /// from being reused until their CQEs (see `Op::keep_fd`).
    fd: Option<SharedFd>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Socket {
    /// `socket(domain, ty | SOCK_CLOEXEC, 0)`.
    pub(crate) fn new(domain: libc::c_int, ty: libc::c_int) -> io::Result<Socket> {
        // SAFETY: plain syscall without pointers.
        let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just gave us this fd; nobody else owns it.
        Ok(Socket::from_fd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(crate) fn from_fd(fd: OwnedFd) -> Socket {
        Socket {
            fd: Some(Arc::new(fd)),
            _not_send: std::marker::PhantomData,
        }
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd().as_raw_fd()
    }

    /// The descriptor, for an operation to keep open until its CQE.
    pub(crate) fn fd(&self) -> &SharedFd {
        self.fd.as_ref().expect("socket is open")
    }

    /// Gives the fd up (for a conversion into a std socket).
    pub(crate) fn into_fd(mut self) -> OwnedFd {
        let fd = self.fd.take().expect("socket is open");
        // Operations still in flight (cancelled ones awaiting their CQE) share the fd: hand
        // out a duplicate then, and the original closes after them.
        Arc::try_unwrap(fd).unwrap_or_else(|fd| {
            fd.try_clone()
                .expect("ringloop: cannot duplicate a socket's fd for the std conversion")
        })
    }

    /// Runs `f` on a std view of this socket (for the synchronous calls std already has:
    /// addresses, options, connect of datagram sockets).
    pub(crate) fn with_std<S: FromRawFd, R>(&self, f: impl FnOnce(&S) -> R) -> R {
        // SAFETY: the fd is open and owned by `self` for the duration of the call;
        // ManuallyDrop keeps the std value from closing it.
        let s = ManuallyDrop::new(unsafe { S::from_raw_fd(self.raw()) });
        f(&s)
    }

    /// `listen(fd, backlog)`: also raises the backlog of a socket already listening.
    pub(crate) fn listen(&self, backlog: libc::c_int) -> io::Result<()> {
        // SAFETY: plain syscall without pointers.
        if unsafe { libc::listen(self.raw(), backlog) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The accept side of a listener. A cancelled accept that got a connection anyway keeps it
/// for the next accept instead of closing it (which would reset the client). An accept
/// waiting in the kernel also takes such a kept connection as soon as it appears (dropping,
/// so cancelling, its own request), so no connection waits behind a pending accept.
///
/// Where the kernel has it (Linux 5.19), the listener keeps one multishot accept armed from
/// its first `accept()` on: each connection the kernel accepts lands in `ready`, and an
/// `accept()` takes from there, with no submission per connection. An error ends the
/// multishot request; it is reported by the next `accept()`, which arms a new one. On older
/// kernels (the first multishot CQE is `EINVAL`) single-shot accepts are used. At most
/// `ACCEPT_AHEAD` connections are taken ahead of `accept()` calls before the request is
/// paused (so a server that stops accepting is not made to hold every incoming connection);
/// the kernel may complete a burst that arrives before the loop runs in full.
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
    /// The ring the multishot request is on (kept so it can be cancelled from anywhere,
    /// also outside `block_on`).
    driver: Option<DriverRef>,
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
    Armed { key: usize, accepted: bool },
    /// Ended (an error, or the kernel stopped it); the next accept re-arms it.
    Ended,
    /// The kernel refused it: use single-shot accepts.
    Unsupported,
}

impl AcceptState {
    fn wake_all(state: &RefCell<AcceptState>) {
        let waiters = std::mem::take(&mut state.borrow_mut().waiters);
        for w in waiters {
            w.wake();
        }
    }

    /// One CQE of the multishot accept.
    fn on_multishot(state: &RefCell<AcceptState>, c: Completion) {
        {
            let mut s = state.borrow_mut();
            let more = c.more();
            if c.result >= 0 {
                // SAFETY: the kernel created this fd for us; nobody else owns it.
                let fd = unsafe { OwnedFd::from_raw_fd(c.result) };
                // A peer already gone has no address: drop (close) the connection.
                if let Ok(addr) = op::peer_addr(fd.as_raw_fd()) {
                    s.ready.push_back((fd, addr));
                }
                if let Multishot::Armed { key, .. } = s.multishot {
                    s.multishot = Multishot::Armed {
                        key,
                        accepted: true,
                    };
                    if s.ready.len() >= ACCEPT_AHEAD
                        && let Some(driver) = &s.driver
                    {
                        // Pause: the final -ECANCELED CQE marks the request ended, and the
                        // next accept() that finds `ready` empty arms a new one.
                        op::cancel_multishot(driver, key);
                    }
                }
            } else if c.result == -libc::EINVAL
                && matches!(
                    s.multishot,
                    Multishot::Armed {
                        accepted: false,
                        ..
                    }
                )
            {
                // The kernel does not know multishot accept.
                s.multishot = Multishot::Unsupported;
            } else if c.result != -libc::ECANCELED {
                s.error = Some(io::Error::from_raw_os_error(-c.result));
            }
            if !more && s.multishot != Multishot::Unsupported {
                s.multishot = Multishot::Ended;
            }
        }
        AcceptState::wake_all(state);
    }
}

impl Acceptor {
    /// Accepts one connection: its fd (close-on-exec) and the peer's address.
    pub(crate) async fn accept(&self, sock: &Socket) -> io::Result<(OwnedFd, Box<RawAddr>)> {
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
                Multishot::Armed { .. } => {}
                Multishot::Untried | Multishot::Ended => {
                    let state = Rc::downgrade(&self.state);
                    // The request names the listener's fd by number only until the kernel
                    // takes it; the acceptor's Drop cancels and flushes before the listener's
                    // fd closes (field order), so the handler need not keep the fd open (which
                    // would keep the port until the next pass of the loop).
                    let handler = Rc::new(move |c: Completion| {
                        if let Some(state) = state.upgrade() {
                            AcceptState::on_multishot(&state, c);
                        } else if c.result >= 0 {
                            // The listener is gone: close what it accepted meanwhile.
                            // SAFETY: a fresh fd from the kernel, owned by nobody else.
                            drop(unsafe { OwnedFd::from_raw_fd(c.result) });
                        }
                    });
                    let driver = crate::driver::current();
                    let armed = op::accept_multishot(&driver, sock.raw(), handler);
                    s.driver = Some(driver);
                    match armed {
                        Ok(key) => {
                            s.multishot = Multishot::Armed {
                                key,
                                accepted: false,
                            }
                        }
                        Err(e) => return Poll::Ready(Some(Err(e))),
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
            None => self.accept_single(sock).await,
        }
    }

    /// One single-shot accept (kernels without multishot accept).
    async fn accept_single(&self, sock: &Socket) -> io::Result<(OwnedFd, Box<RawAddr>)> {
        {
            let state = Rc::clone(&self.state);
            let mut op = op::accept(sock.fd())?.on_orphan(move |c, addr| {
                if c.result >= 0 {
                    // SAFETY: the kernel created this fd for the cancelled accept; nobody
                    // else owns it.
                    let fd = unsafe { OwnedFd::from_raw_fd(c.result) };
                    state.borrow_mut().ready.push_back((fd, addr));
                    AcceptState::wake_all(&state);
                }
            });
            poll_fn(|cx| {
                if let Poll::Ready((c, addr)) = Pin::new(&mut op).poll(cx) {
                    let fd = c.into_io()? as RawFd;
                    // SAFETY: as above: a fresh fd from the kernel, owned by nobody else.
                    return Poll::Ready(Ok((unsafe { OwnedFd::from_raw_fd(fd) }, addr)));
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
    }
}

impl Acceptor {
    /// How accepts are made: "multishot", "single-shot", or "not yet" (a diagnostic for
    /// tests).
    pub(crate) fn mode(&self) -> &'static str {
        match self.state.borrow().multishot {
            Multishot::Untried => "not yet",
            Multishot::Armed { .. } | Multishot::Ended => "multishot",
            Multishot::Unsupported => "single-shot",
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        let s = self.state.borrow();
        if let (Multishot::Armed { key, .. }, Some(driver)) = (s.multishot, &s.driver) {
            // The request holds the listening socket open in the kernel: cancel it now, so
            // that closing the listener refuses new connections at once.
            op::cancel_multishot(driver, key);
        }
    }
}
