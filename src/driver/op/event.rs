//! `EventRead`: an 8-byte read of an eventfd (a counter other threads, or a signal handler,
//! add to), waiting for readiness on epoll.

use std::os::fd::AsRawFd;

use io_uring::{opcode, squeue, types};

use super::{Interest, OpCode, Plan, Syscall};
use crate::driver::fd::SharedFd;

/// Reads (and so resets) an eventfd's counter; the result is 8. `K` is kept alive with the
/// operation, until its completion (a signal listener's slot lease).
#[derive(Debug)]
pub(crate) struct EventRead<K: 'static> {
    fd: SharedFd,
    /// Where the counter lands; boxed so its address survives moves of the op.
    buf: Box<u64>,
    _keep: K,
}

impl<K: 'static> EventRead<K> {
    pub(crate) fn new(fd: &SharedFd, keep: K) -> EventRead<K> {
        EventRead {
            fd: fd.clone(),
            buf: Box::new(0),
            _keep: keep,
        }
    }
}

// SAFETY: the only pointer is the op's boxed counter, 8 bytes, which stays put when the op
// moves; the `SharedFd` keeps the descriptor open.
unsafe impl<K: 'static> OpCode for EventRead<K> {
    const CODE: u8 = opcode::Read::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Read::new(
            types::Fd(self.fd.as_raw_fd()),
            (&raw mut *self.buf).cast(),
            8,
        )
        .build()
    }

    fn plan(&mut self) -> Plan<'_> {
        let call = Syscall::new(
            libc::SYS_read,
            &[
                self.fd.as_raw_fd() as usize,
                (&raw mut *self.buf) as usize,
                8,
            ],
        );
        Plan::Ready {
            fd: &self.fd,
            interest: Interest::Read,
            call,
            full: None,
        }
    }
}
