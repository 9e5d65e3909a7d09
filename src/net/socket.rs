//! `Socket`: the owner of a socket's fd, shared with the operations in flight on it. The
//! accept side of listeners is `driver::accept::Acceptor`.

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub(crate) use crate::driver::accept::Acceptor;
use crate::driver::fd::{Fd, SharedFd};

/// An open socket. Its fd is shared with the operations in flight on it, which keep it open
/// until they complete (an operation may name the fd by number until the kernel is done with
/// it, and a number closed too early could be reused by another file by then); dropping the
/// socket closes the fd once the last of them is done.
///
/// `!Send`: its operations are queued on the driver of the thread that made them.
#[derive(Debug)]
pub(crate) struct Socket {
    /// `Some` until `into_fd`. Shared with the in-flight operations, which keep the number
    /// from being reused until they complete.
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
            fd: Some(Fd::new(fd)),
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
    ///
    /// # Panics
    ///
    /// If a cancelled operation still holds the fd and duplicating it fails (`EMFILE`); see
    /// [`Socket::try_into_fd`].
    pub(crate) fn into_fd(self) -> OwnedFd {
        self.try_into_fd()
            .expect("ringloop: cannot duplicate a socket's fd for the std conversion")
    }

    /// Gives the fd up; if operations still in flight (cancelled ones awaiting their
    /// completion) share it, hands out a duplicate, and the original closes after them.
    pub(crate) fn try_into_fd(mut self) -> std::io::Result<OwnedFd> {
        let fd = self.fd.take().expect("socket is open");
        Fd::into_owned(fd)
    }

    /// Forgets the driver's registration of this socket (epoll), before it leaves ringloop.
    pub(crate) fn forget_registration(&self) {
        if let Some(driver) = crate::driver::try_current()
            && let Ok(mut driver) = driver.try_borrow_mut()
        {
            driver.forget_fd(self.fd());
        }
    }

    /// A borrowed socket2 view of this socket, for the option and address calls.
    pub(crate) fn sock_ref(&self) -> socket2::SockRef<'_> {
        socket2::SockRef::from(&**self.fd())
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
