//! Reaps children whose [`Child`](super::Child) was dropped before they exited, so that none is
//! left a zombie, without a `SIGCHLD` handler (which would steal the signal from the program).
//!
//! One thread, started on first use, `poll(2)`s the pidfds of the orphans and an eventfd that
//! says "new orphans"; when a pidfd becomes readable its process has exited and `waitid(P_PIDFD)`
//! reaps it. The thread lives as long as the process.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock};

use crate::driver::op::process as pidfd;
use crate::sync::lock;

struct Reaper {
    /// Pidfds of orphans handed over and not yet picked up by the thread.
    new: Mutex<Vec<OwnedFd>>,
    /// Written (1) by `adopt`, read by the thread.
    wake: OwnedFd,
}

static REAPER: OnceLock<io::Result<Reaper>> = OnceLock::new();

/// `true` if the child behind `pidfd` is gone (reaped now, or already).
fn try_reap(pidfd: &OwnedFd) -> bool {
    !matches!(pidfd::try_reap(pidfd), Ok(None))
}

/// Takes over the reaping of the child behind `pidfd`.
pub(super) fn adopt(pidfd: OwnedFd) {
    if try_reap(&pidfd) {
        return;
    }
    let reaper = match REAPER.get_or_init(start) {
        Ok(reaper) => reaper,
        Err(e) => {
            eprintln!(
                "ringloop: cannot start the thread that reaps dropped children ({e}); a \
                 dropped child stays a zombie until this process exits"
            );
            return;
        }
    };
    lock(&reaper.new).push(pidfd);
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from the live local to the eventfd, which lives in a static.
    unsafe { libc::write(reaper.wake.as_raw_fd(), (&raw const one).cast(), 8) };
}

fn start() -> io::Result<Reaper> {
    // SAFETY: eventfd takes no pointers; the result is checked before use.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let wake = unsafe { OwnedFd::from_raw_fd(fd) };
    let wake_fd = wake.as_raw_fd();
    std::thread::Builder::new()
        .name("ringloop-reaper".into())
        .spawn(move || serve(wake_fd))?;
    Ok(Reaper {
        new: Mutex::new(Vec::new()),
        wake,
    })
}

fn serve(wake_fd: i32) {
    let mut orphans: Vec<OwnedFd> = Vec::new();
    loop {
        if let Some(Ok(reaper)) = REAPER.get() {
            orphans.append(&mut lock(&reaper.new));
        }
        orphans.retain(|fd| !try_reap(fd));
        let mut fds: Vec<libc::pollfd> = std::iter::once(wake_fd)
            .chain(orphans.iter().map(AsRawFd::as_raw_fd))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: poll reads and writes `fds.len()` pollfd structs in the live vector.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            continue; // EINTR
        }
        if fds[0].revents != 0 {
            let mut count: u64 = 0;
            // SAFETY: reads 8 bytes into the live local (the eventfd is non-blocking).
            unsafe { libc::read(wake_fd, (&raw mut count).cast(), 8) };
        }
        // Readable pidfds are reaped by the `retain` at the top of the loop.
    }
}
