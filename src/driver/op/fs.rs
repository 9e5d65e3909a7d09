//! File operations: open, read, write, fsync, statx, close, unlink, rename, mkdir.
//!
//! # Ownership
//!
//! * Paths are `CString`s owned by the operation: the SQE and the syscall point into their
//!   heap bytes.
//! * Buffers are `IoBuf` / `IoBufMut` values owned by the operation: the SQE points at
//!   `stable_ptr()` / `stable_mut_ptr()`, which the sealed traits guarantee is heap (or static)
//!   memory that does not move with the value.
//! * Operations on an open file hold a clone of its [`SharedFd`], so the descriptor stays open
//!   (and its number cannot be reused) until every operation on it is done, cancelled ones
//!   included.
//! * A statx result lands in a `Box<libc::statx>` owned by the operation.
//!
//! Files have no readiness, so without a ring these run on the driver's blocking threads
//! ([`Plan::Blocking`]); reads and writes of pipes and FIFOs, which have, wait for readiness
//! instead ([`Plan::File`]), so that a cancelled read of an empty pipe takes nothing.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{opcode, squeue, types};

use super::{Interest, OpCode, Plan, Syscall};
use crate::buf::{IoBuf, IoBufMut};
pub(crate) use crate::driver::fd::SharedFd;

/// The most a single read or write asks for; Linux caps one transfer at this (`MAX_RW_COUNT`),
/// and it fits the SQE's 32-bit length and the CQE's 32-bit signed result.
pub(crate) const MAX_RW: usize = 0x7fff_f000;

/// An offset of `-1`: the kernel uses (and advances) the file position, as `read(2)` and
/// `write(2)` do; it is also the only offset that works on pipes and sockets.
pub(crate) const CURRENT_POSITION: u64 = u64::MAX;

/// `openat(AT_FDCWD, path, flags, mode)`; the result is the new descriptor, which the caller
/// owns.
#[derive(Debug)]
pub(crate) struct OpenAt {
    path: CString,
    flags: i32,
    mode: u32,
}

impl OpenAt {
    pub(crate) fn new(path: CString, flags: i32, mode: u32) -> OpenAt {
        OpenAt { path, flags, mode }
    }
}

// SAFETY: the only pointer is the path, into the CString's heap bytes, owned by the op.
unsafe impl OpCode for OpenAt {
    const CODE: u8 = opcode::OpenAt::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), self.path.as_ptr())
            .flags(self.flags)
            .mode(self.mode)
            .build()
    }

    fn plan(&mut self) -> Plan<'_> {
        Plan::Blocking(Syscall::new(
            libc::SYS_openat,
            &[
                libc::AT_FDCWD as usize,
                self.path.as_ptr() as usize,
                self.flags as usize,
                self.mode as usize,
            ],
        ))
    }
}

/// `pread(fd, buf, bytes_total, offset)` ([`CURRENT_POSITION`]: `read(2)`): up to
/// `buf.bytes_total()` bytes (at most [`MAX_RW`]) into the start of `buf`. The caller calls
/// `set_init(n)` with the count.
#[derive(Debug)]
pub(crate) struct Read<B> {
    fd: SharedFd,
    pub(crate) buf: B,
    offset: u64,
}

impl<B: IoBufMut> Read<B> {
    pub(crate) fn new(fd: &SharedFd, buf: B, offset: u64) -> Read<B> {
        Read {
            fd: fd.clone(),
            buf,
            offset,
        }
    }
}

/// `READ_FIXED`: a read at `offset` into a registered buffer of the loop, lent to the op (a
/// [`LentBuf`](crate::driver::lent::LentBuf) made by `Driver::fixed_buf`), of up to `len`
/// bytes (at most the buffer's size). The caller records the count with `set_fixed_len`.
#[derive(Debug)]
pub(crate) struct ReadFixed {
    fd: SharedFd,
    pub(crate) buf: crate::driver::lent::LentBuf,
    index: u16,
    ptr: *mut u8,
    len: u32,
    offset: u64,
}

impl ReadFixed {
    /// `buf` must be a registered buffer (`Driver::fixed_buf`).
    pub(crate) fn new(
        fd: &SharedFd,
        mut buf: crate::driver::lent::LentBuf,
        len: usize,
        offset: u64,
    ) -> ReadFixed {
        let (index, ptr, size) = buf
            .fixed_target()
            .expect("ringloop: READ_FIXED into a buffer that is not registered");
        ReadFixed {
            fd: fd.clone(),
            buf,
            index,
            ptr,
            len: len.min(size).min(MAX_RW) as u32,
            offset,
        }
    }
}

// SAFETY: the pointer is registered buffer `index`'s first byte, valid for its size (>= len):
// memory of the loop's mapping, lent to this op alone through `buf`, which the op (then the
// table entry) keeps until the completion. The descriptor is kept open by the `SharedFd`.
unsafe impl OpCode for ReadFixed {
    const CODE: u8 = opcode::ReadFixed::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::ReadFixed::new(
            types::Fd(self.fd.as_raw_fd()),
            self.ptr,
            self.len,
            self.index,
        )
        .offset(self.offset)
        .build()
    }

    fn plan(&mut self) -> Plan<'_> {
        let (fd, ptr, len) = (self.fd.as_raw_fd() as usize, self.ptr as usize, self.len);
        Plan::Blocking(Syscall::new(
            libc::SYS_pread64,
            &[fd, ptr, len as usize, self.offset as usize],
        ))
    }
}

// SAFETY: the pointer is `stable_mut_ptr()` for at most `bytes_total()` bytes: memory the
// buffer owns, which stays put when the buffer (inside the op) moves. The descriptor is kept
// open by the op's `SharedFd`.
unsafe impl<B: IoBufMut> OpCode for Read<B> {
    const CODE: u8 = opcode::Read::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        let len = self.buf.bytes_total().min(MAX_RW) as u32;
        opcode::Read::new(
            types::Fd(self.fd.as_raw_fd()),
            self.buf.stable_mut_ptr(),
            len,
        )
        .offset(self.offset)
        .build()
    }

    fn plan(&mut self) -> Plan<'_> {
        let (fd, ptr) = (self.fd.as_raw_fd() as usize, self.buf.stable_mut_ptr());
        let len = self.buf.bytes_total().min(MAX_RW);
        let call = if self.offset == CURRENT_POSITION {
            Syscall::new(libc::SYS_read, &[fd, ptr as usize, len])
        } else {
            Syscall::new(
                libc::SYS_pread64,
                &[fd, ptr as usize, len, self.offset as usize],
            )
        };
        Plan::File {
            fd: &self.fd,
            interest: Interest::Read,
            call,
        }
    }
}

/// `pwrite(fd, buf, bytes_init, offset)` ([`CURRENT_POSITION`]: `write(2)`): up to
/// `buf.bytes_init()` bytes (at most [`MAX_RW`]) from the start of `buf`.
#[derive(Debug)]
pub(crate) struct Write<B> {
    fd: SharedFd,
    pub(crate) buf: B,
    offset: u64,
}

impl<B: IoBuf> Write<B> {
    pub(crate) fn new(fd: &SharedFd, buf: B, offset: u64) -> Write<B> {
        Write {
            fd: fd.clone(),
            buf,
            offset,
        }
    }
}

// SAFETY: the pointer is `stable_ptr()` for at most `bytes_init()` bytes: memory the buffer
// owns (or static memory), which stays put when the op moves. The `SharedFd` keeps the
// descriptor open.
unsafe impl<B: IoBuf> OpCode for Write<B> {
    const CODE: u8 = opcode::Write::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        let len = self.buf.bytes_init().min(MAX_RW) as u32;
        opcode::Write::new(types::Fd(self.fd.as_raw_fd()), self.buf.stable_ptr(), len)
            .offset(self.offset)
            .build()
    }

    fn plan(&mut self) -> Plan<'_> {
        let (fd, ptr) = (self.fd.as_raw_fd() as usize, self.buf.stable_ptr());
        let len = self.buf.bytes_init().min(MAX_RW);
        let call = if self.offset == CURRENT_POSITION {
            Syscall::new(libc::SYS_write, &[fd, ptr as usize, len])
        } else {
            Syscall::new(
                libc::SYS_pwrite64,
                &[fd, ptr as usize, len, self.offset as usize],
            )
        };
        Plan::File {
            fd: &self.fd,
            interest: Interest::Write,
            call,
        }
    }
}

/// `fsync(fd)`, or `fdatasync(fd)` when `data_only`.
#[derive(Debug)]
pub(crate) struct Fsync {
    fd: SharedFd,
    data_only: bool,
}

impl Fsync {
    pub(crate) fn new(fd: &SharedFd, data_only: bool) -> Fsync {
        Fsync {
            fd: fd.clone(),
            data_only,
        }
    }
}

// SAFETY: an fsync carries no pointer; the `SharedFd` keeps the descriptor open.
unsafe impl OpCode for Fsync {
    const CODE: u8 = opcode::Fsync::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        let flags = if self.data_only {
            types::FsyncFlags::DATASYNC
        } else {
            types::FsyncFlags::empty()
        };
        opcode::Fsync::new(types::Fd(self.fd.as_raw_fd()))
            .flags(flags)
            .build()
    }

    fn plan(&mut self) -> Plan<'_> {
        let nr = if self.data_only {
            libc::SYS_fdatasync
        } else {
            libc::SYS_fsync
        };
        Plan::Blocking(Syscall::new(nr, &[self.fd.as_raw_fd() as usize]))
    }
}

/// The statx fields a `Metadata` uses.
const STATX_MASK: u32 = libc::STATX_BASIC_STATS | libc::STATX_BTIME;

/// `statx` of an open file (`AT_EMPTY_PATH`) or of a path relative to the current directory.
pub(crate) struct Statx {
    /// The result; boxed so its address survives moves of the op.
    pub(crate) buf: Box<libc::statx>,
    /// The path, if the statx names one.
    path: Option<CString>,
    /// The descriptor, if the statx is on an open file.
    fd: Option<SharedFd>,
    flags: i32,
}

impl std::fmt::Debug for Statx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Statx")
            .field("path", &self.path)
            .field("fd", &self.fd)
            .finish_non_exhaustive()
    }
}

fn zeroed_statx() -> Box<libc::statx> {
    // SAFETY: `libc::statx` is a C struct of integers, for which all-zero bytes are a valid value.
    Box::new(unsafe { std::mem::zeroed::<libc::statx>() })
}

impl Statx {
    /// On an open file.
    pub(crate) fn fd(fd: &SharedFd) -> Statx {
        Statx {
            buf: zeroed_statx(),
            path: None,
            fd: Some(fd.clone()),
            flags: libc::AT_EMPTY_PATH | libc::AT_STATX_SYNC_AS_STAT,
        }
    }

    /// On a path; `follow` decides whether a final symlink is followed.
    pub(crate) fn path(path: CString, follow: bool) -> Statx {
        let nofollow = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
        Statx {
            buf: zeroed_statx(),
            path: Some(path),
            fd: None,
            flags: nofollow | libc::AT_STATX_SYNC_AS_STAT,
        }
    }

    fn args(&mut self) -> (RawFd, *const libc::c_char, *mut libc::statx) {
        const EMPTY: &CStr = c"";
        let dir = self.fd.as_ref().map_or(libc::AT_FDCWD, |fd| fd.as_raw_fd());
        let path = self.path.as_deref().unwrap_or(EMPTY).as_ptr();
        (dir, path, &raw mut *self.buf)
    }
}

// SAFETY: the path is a static empty C string or the op's own CString; the result pointer is
// the op's boxed `statx`; both stay put when the op moves. The `SharedFd` keeps the
// descriptor open.
unsafe impl OpCode for Statx {
    const CODE: u8 = opcode::Statx::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        let (dir, path, buf) = self.args();
        opcode::Statx::new(types::Fd(dir), path, buf.cast::<types::statx>())
            .flags(self.flags)
            .mask(STATX_MASK)
            .build()
    }

    fn plan(&mut self) -> Plan<'_> {
        let flags = self.flags as usize;
        let (dir, path, buf) = self.args();
        Plan::Blocking(Syscall::new(
            libc::SYS_statx,
            &[
                dir as usize,
                path as usize,
                flags,
                STATX_MASK as usize,
                buf as usize,
            ],
        ))
    }
}

/// `close(fd)`. The op owns `fd`: it must not be closed again, whatever the result (Linux
/// frees the number even when close fails).
#[derive(Debug)]
pub(crate) struct Close {
    fd: RawFd,
}

impl Close {
    pub(crate) fn new(fd: std::os::fd::OwnedFd) -> Close {
        Close {
            fd: std::os::fd::IntoRawFd::into_raw_fd(fd),
        }
    }

    /// The descriptor back, unclosed (after the driver refused the op).
    pub(crate) fn into_raw(self) -> RawFd {
        self.fd
    }
}

// SAFETY: a close carries no pointer.
unsafe impl OpCode for Close {
    const CODE: u8 = opcode::Close::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Close::new(types::Fd(self.fd)).build()
    }

    fn plan(&mut self) -> Plan<'_> {
        // close(2) can block (a network file system flushing): not on the loop thread.
        Plan::Blocking(Syscall::new(libc::SYS_close, &[self.fd as usize]))
    }
}

/// `unlinkat(AT_FDCWD, path, 0 or AT_REMOVEDIR)`: removes a file, or an empty directory.
#[derive(Debug)]
pub(crate) struct UnlinkAt {
    path: CString,
    flags: i32,
}

impl UnlinkAt {
    pub(crate) fn new(path: CString, dir: bool) -> UnlinkAt {
        let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
        UnlinkAt { path, flags }
    }
}

// SAFETY: the path points into the op's CString's heap bytes.
unsafe impl OpCode for UnlinkAt {
    const CODE: u8 = opcode::UnlinkAt::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::UnlinkAt::new(types::Fd(libc::AT_FDCWD), self.path.as_ptr())
            .flags(self.flags)
            .build()
    }

    fn plan(&mut self) -> Plan<'_> {
        Plan::Blocking(Syscall::new(
            libc::SYS_unlinkat,
            &[
                libc::AT_FDCWD as usize,
                self.path.as_ptr() as usize,
                self.flags as usize,
            ],
        ))
    }
}

/// `renameat2(AT_FDCWD, from, AT_FDCWD, to, 0)`: renames, replacing `to` if it exists.
#[derive(Debug)]
pub(crate) struct RenameAt {
    from: CString,
    to: CString,
}

impl RenameAt {
    pub(crate) fn new(from: CString, to: CString) -> RenameAt {
        RenameAt { from, to }
    }
}

// SAFETY: both paths point into the op's CStrings' heap bytes.
unsafe impl OpCode for RenameAt {
    const CODE: u8 = opcode::RenameAt::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::RenameAt::new(
            types::Fd(libc::AT_FDCWD),
            self.from.as_ptr(),
            types::Fd(libc::AT_FDCWD),
            self.to.as_ptr(),
        )
        .build()
    }

    fn plan(&mut self) -> Plan<'_> {
        let cwd = libc::AT_FDCWD as usize;
        Plan::Blocking(Syscall::new(
            libc::SYS_renameat2,
            &[
                cwd,
                self.from.as_ptr() as usize,
                cwd,
                self.to.as_ptr() as usize,
                0,
            ],
        ))
    }
}

/// `mkdirat(AT_FDCWD, path, mode)`: creates a directory (mode less the umask).
#[derive(Debug)]
pub(crate) struct MkDirAt {
    path: CString,
    mode: u32,
}

impl MkDirAt {
    pub(crate) fn new(path: CString, mode: u32) -> MkDirAt {
        MkDirAt { path, mode }
    }
}

// SAFETY: the path points into the op's CString's heap bytes.
unsafe impl OpCode for MkDirAt {
    const CODE: u8 = opcode::MkDirAt::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::MkDirAt::new(types::Fd(libc::AT_FDCWD), self.path.as_ptr())
            .mode(self.mode)
            .build()
    }

    fn plan(&mut self) -> Plan<'_> {
        Plan::Blocking(Syscall::new(
            libc::SYS_mkdirat,
            &[
                libc::AT_FDCWD as usize,
                self.path.as_ptr() as usize,
                self.mode as usize,
            ],
        ))
    }
}
