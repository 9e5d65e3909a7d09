//! `Fd`: a descriptor shared by its owner (a `File`, a socket) and the operations in flight on
//! it, which keep it open until the kernel is done with them.

use std::fmt;
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A descriptor shared (in an `Arc`) by its owner and its in-flight operations: an SQE names a
/// descriptor by number, and a number closed while an operation may still use it could be
/// reused by another file by then. It closes when the last holder drops it.
///
/// # Invariant
///
/// `epoll` is the id of the epoll driver that has this descriptor in its interest list (and
/// made it non-blocking), [`NOT_POLLABLE`] for a file without readiness (a regular file, a
/// device), or 0. It lives with the descriptor, not in the driver, so a new file that reuses
/// a closed descriptor's number is never mistaken for a registered one.
pub(crate) struct Fd {
    fd: OwnedFd,
    epoll: AtomicU64,
}

/// The `epoll` mark of a file that epoll cannot wait for.
const NOT_POLLABLE: u64 = u64::MAX;

/// Shared ownership of an [`Fd`].
pub(crate) type SharedFd = Arc<Fd>;

impl Fd {
    pub(crate) fn new(fd: OwnedFd) -> SharedFd {
        Arc::new(Fd {
            fd,
            epoll: AtomicU64::new(0),
        })
    }

    /// The descriptor back, if no operation holds it any more; else a duplicate (`dup`), and
    /// the original closes after the last operation.
    pub(crate) fn into_owned(fd: SharedFd) -> std::io::Result<OwnedFd> {
        match Arc::try_unwrap(fd) {
            Ok(fd) => Ok(fd.fd),
            Err(shared) => shared.fd.try_clone(),
        }
    }

    /// The descriptor, out of its last holder.
    pub(crate) fn into_inner(self) -> OwnedFd {
        self.fd
    }

    /// Whether the epoll driver `id` registered this descriptor.
    pub(crate) fn registered_with(&self, id: u64) -> bool {
        self.epoll.load(Ordering::Relaxed) == id
    }

    /// Whether this is known to be a file without readiness.
    pub(crate) fn not_pollable(&self) -> bool {
        self.epoll.load(Ordering::Relaxed) == NOT_POLLABLE
    }

    /// Records that this is a file without readiness.
    pub(crate) fn set_not_pollable(&self) {
        self.epoll.store(NOT_POLLABLE, Ordering::Relaxed);
    }

    /// Records that no epoll driver has this descriptor registered any more.
    pub(crate) fn clear_registration(&self) {
        self.epoll.store(0, Ordering::Relaxed);
    }

    /// Records that the epoll driver `id` registered this descriptor.
    pub(crate) fn set_registered(&self, id: u64) {
        self.epoll.store(id, Ordering::Relaxed);
    }
}

impl Deref for Fd {
    type Target = OwnedFd;

    fn deref(&self) -> &OwnedFd {
        &self.fd
    }
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Fd").field(&self.fd.as_raw_fd()).finish()
    }
}
