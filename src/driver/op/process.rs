//! `PidfdExit`: waits until the process behind a pidfd has exited (without reaping it).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::{opcode, squeue, types};

use super::{Interest, OpCode, Plan, Syscall};
use crate::driver::fd::SharedFd;

/// Completes once the process behind `fd` (a pidfd, `pidfd_open(2)`) has exited; the caller
/// then reaps it ([`try_reap`]). On the ring it is a `POLL_ADD` for `POLLIN` (a pidfd is
/// readable once its process exits); on epoll it is `waitid(P_PIDFD, .., WNOWAIT)` retried on
/// readiness, which says `EAGAIN` while the process runs if the pidfd was opened
/// `PIDFD_NONBLOCK` (Linux 5.10); without that flag it runs on a blocking thread.
#[derive(Debug)]
pub(crate) struct PidfdExit {
    fd: SharedFd,
    nonblocking: bool,
    /// Where `waitid` writes; boxed so its address survives moves of the op.
    info: Box<libc::siginfo_t>,
}

impl PidfdExit {
    /// `nonblocking`: the pidfd was opened with `PIDFD_NONBLOCK`.
    pub(crate) fn new(fd: &SharedFd, nonblocking: bool) -> PidfdExit {
        PidfdExit {
            fd: fd.clone(),
            nonblocking,
            // SAFETY: siginfo_t is a C struct of integers and unions of them: all-zero bytes
            // are a valid value.
            info: Box::new(unsafe { std::mem::zeroed() }),
        }
    }
}

// SAFETY: the only pointer is the op's boxed siginfo, which stays put when the op moves; the
// `SharedFd` keeps the pidfd open.
unsafe impl OpCode for PidfdExit {
    const CODE: u8 = opcode::PollAdd::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::PollAdd::new(types::Fd(self.fd.as_raw_fd()), libc::POLLIN as u32).build()
    }

    fn plan(&mut self) -> Plan<'_> {
        let flags = libc::WEXITED | libc::WNOWAIT;
        let info = (&raw mut *self.info) as usize;
        let fd = self.fd.as_raw_fd() as usize;
        let call = |flags: i32| {
            Syscall::new(
                libc::SYS_waitid,
                &[P_PIDFD as usize, fd, info, flags as usize, 0],
            )
        };
        if self.nonblocking {
            Plan::Ready {
                fd: &self.fd,
                interest: Interest::Read,
                // Not WNOHANG: with it waitid says 0 for "running"; without it, a
                // non-blocking pidfd makes it say EAGAIN, which is what readiness needs.
                call: call(flags),
                full: None,
            }
        } else {
            Plan::Blocking(call(flags))
        }
    }
}

/// `pidfd_open(pid, flags)`.
fn pidfd_open(pid: u32, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes no pointers; the result is checked before use.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor (pidfds are close-on-exec) that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A pidfd for the child `pid`, and whether it is `PIDFD_NONBLOCK` (for [`PidfdExit::new`]).
/// Kernels before 5.10 refuse the flag with `EINVAL` (the flag is the only thing that call can
/// find invalid: the pid is our own unreaped child); they get a blocking pidfd.
pub(crate) fn open(pid: u32) -> io::Result<(OwnedFd, bool)> {
    match pidfd_open(pid, libc::O_NONBLOCK as libc::c_uint) {
        Ok(fd) => Ok((fd, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok((pidfd_open(pid, 0)?, false)),
        Err(e) => Err(e),
    }
}

/// `P_PIDFD` for `waitid` (Linux 5.4).
const P_PIDFD: libc::idtype_t = 3;

/// Reaps the child behind `pidfd` if it has exited (`waitid(P_PIDFD, WEXITED | WNOHANG)`):
/// its status, or `None` while it runs. Going by pidfd, never by pid, nothing here can reap or
/// misread another process, even if the pid was reused.
pub(crate) fn try_reap(pidfd: &impl AsRawFd) -> io::Result<Option<std::process::ExitStatus>> {
    use std::os::unix::process::ExitStatusExt;
    // SAFETY: siginfo_t is plain data: all-zero bytes are a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes one siginfo_t into the live local.
    let r = unsafe {
        libc::waitid(
            P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &raw mut info,
            libc::WEXITED | libc::WNOHANG,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid filled `info` for a child (si_pid is 0 if none had exited).
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    // Rebuild the wait(2) status word that ExitStatus wraps.
    let raw = match info.si_code {
        libc::CLD_EXITED => (status & 0xff) << 8,
        libc::CLD_KILLED => status & 0x7f,
        libc::CLD_DUMPED => (status & 0x7f) | 0x80,
        _ => status,
    };
    Ok(Some(std::process::ExitStatus::from_raw(raw)))
}

/// Sends `signum` to the process behind `pidfd` (`pidfd_send_signal`, Linux 5.1): `ESRCH` once
/// it has been reaped, never another process.
pub(crate) fn send_signal(pidfd: &impl AsRawFd, signum: i32) -> io::Result<()> {
    // SAFETY: pidfd_send_signal with a null siginfo takes no pointer to read.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signum,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
