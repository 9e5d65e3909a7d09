//! File opcodes: the SQEs of fs/ (open, read, write, fsync, statx, close, unlink, rename,
//! mkdir), each a small function that builds one SQE and submits it as an [`Op`] owning every
//! byte the SQE points to.
//!
//! # Ownership
//!
//! * Paths are `CString`s moved into the op's data: the SQE points into their heap bytes.
//! * Buffers are `IoBuf` / `IoBufMut` values moved into the op's data: the SQE points at
//!   `stable_ptr()` / `stable_mut_ptr()`, which the sealed traits guarantee is heap (or static)
//!   memory that does not move with the value.
//! * Operations on an open file hold a clone of its `Arc<OwnedFd>` in their data, so the
//!   descriptor stays open (and its number cannot be reused by another open) until the kernel
//!   has finished with every operation on it, cancelled ones included.
//! * A statx result lands in a `Box<libc::statx>` owned by the op.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{opcode, types};

use super::Op;
use crate::io::{IoBuf, IoBufMut};

/// The most a single read or write asks for; Linux caps one transfer at this (`MAX_RW_COUNT`),
/// and it fits the SQE's 32-bit length and the CQE's 32-bit signed result.
pub(crate) const MAX_RW: usize = 0x7fff_f000;

/// An offset of `-1`: the kernel uses (and advances) the file position, as `read(2)` and
/// `write(2)` do; it is also the only offset that works on pipes and sockets.
pub(crate) const CURRENT_POSITION: u64 = u64::MAX;

pub(crate) use super::SharedFd;

/// `IORING_OP_OPENAT` (5.6) relative to the current directory: `openat(AT_FDCWD, path, flags,
/// mode)`. The CQE's result is the new descriptor.
pub(crate) fn open_at(path: CString, flags: i32, mode: u32) -> io::Result<Op<CString>> {
    let sqe = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr())
        .flags(flags)
        .mode(mode)
        .build();
    // SAFETY: the only pointer is the path, which points into the CString's heap bytes, owned
    // by the op's data.
    unsafe { Op::submit(sqe, path) }
}

/// `IORING_OP_READ` (5.6): reads up to `buf.bytes_total()` bytes (at most [`MAX_RW`]) into the
/// start of `buf`, at `offset` ([`CURRENT_POSITION`] for the file position). The caller calls
/// `set_init(n)` with the CQE's count.
pub(crate) fn read<B: IoBufMut>(
    fd: &SharedFd,
    mut buf: B,
    offset: u64,
) -> Result<Op<(B, SharedFd)>, (io::Error, B)> {
    let len = buf.bytes_total().min(MAX_RW) as u32;
    let sqe = opcode::Read::new(types::Fd(fd.as_raw_fd()), buf.stable_mut_ptr(), len)
        .offset(offset)
        .build();
    // SAFETY: the SQE points at `stable_mut_ptr()` for at most `bytes_total()` bytes: memory
    // the buffer owns on the heap, which stays put when the buffer moves into the op's data.
    // The descriptor is kept open by the Arc clone in the data.
    unsafe { Op::try_submit(sqe, (buf, fd.clone())) }.map_err(|(e, (buf, _))| (e, buf))
}

/// `IORING_OP_WRITE` (5.6): writes up to `buf.bytes_init()` bytes (at most [`MAX_RW`]) from the
/// start of `buf`, at `offset` ([`CURRENT_POSITION`] for the file position).
pub(crate) fn write<B: IoBuf>(
    fd: &SharedFd,
    buf: B,
    offset: u64,
) -> Result<Op<(B, SharedFd)>, (io::Error, B)> {
    let len = buf.bytes_init().min(MAX_RW) as u32;
    let sqe = opcode::Write::new(types::Fd(fd.as_raw_fd()), buf.stable_ptr(), len)
        .offset(offset)
        .build();
    // SAFETY: the SQE points at `stable_ptr()` for at most `bytes_init()` bytes: memory the
    // buffer owns on the heap (or static memory), which stays put when the buffer moves into
    // the op's data. The descriptor is kept open by the Arc clone in the data.
    unsafe { Op::try_submit(sqe, (buf, fd.clone())) }.map_err(|(e, (buf, _))| (e, buf))
}

/// `IORING_OP_FSYNC` (5.1): `fsync`, or `fdatasync` when `data_only`.
pub(crate) fn fsync(fd: &SharedFd, data_only: bool) -> io::Result<Op<SharedFd>> {
    let flags = if data_only {
        types::FsyncFlags::DATASYNC
    } else {
        types::FsyncFlags::empty()
    };
    let sqe = opcode::Fsync::new(types::Fd(fd.as_raw_fd()))
        .flags(flags)
        .build();
    // SAFETY: an fsync carries no pointer; the Arc in the data keeps the descriptor open.
    unsafe { Op::submit(sqe, fd.clone()) }
}

/// The data of a statx: where the kernel writes the result, and what the SQE names.
pub(crate) struct StatxData {
    /// The result; boxed so its address survives moves of the data.
    pub(crate) buf: Box<libc::statx>,
    /// The path, if the statx names one (kept alive for the SQE's pointer).
    _path: Option<CString>,
    /// The descriptor, if the statx is on an open file (kept open until the CQE).
    _fd: Option<SharedFd>,
}

/// The statx fields a `Metadata` uses.
const STATX_MASK: u32 = libc::STATX_BASIC_STATS | libc::STATX_BTIME;

fn zeroed_statx() -> Box<libc::statx> {
    // SAFETY: `libc::statx` is a C struct of integers, for which all-zero bytes are a valid value.
    Box::new(unsafe { std::mem::zeroed::<libc::statx>() })
}

/// `IORING_OP_STATX` (5.6) on an open file (`AT_EMPTY_PATH` with the empty path).
pub(crate) fn statx_fd(fd: &SharedFd) -> io::Result<Op<StatxData>> {
    const EMPTY: &CStr = c"";
    let mut data = StatxData {
        buf: zeroed_statx(),
        _path: None,
        _fd: Some(fd.clone()),
    };
    let sqe = opcode::Statx::new(
        types::Fd(fd.as_raw_fd()),
        EMPTY.as_ptr(),
        (&raw mut *data.buf).cast::<types::statx>(),
    )
    .flags(libc::AT_EMPTY_PATH | libc::AT_STATX_SYNC_AS_STAT)
    .mask(STATX_MASK)
    .build();
    // SAFETY: the path is a static empty C string; the result pointer is the heap allocation
    // of `data.buf`, owned by the op's data and unmoved when the data moves. The Arc keeps the
    // descriptor open.
    unsafe { Op::submit(sqe, data) }
}

/// `IORING_OP_STATX` (5.6) on a path relative to the current directory; `follow` decides
/// whether a final symlink is followed.
pub(crate) fn statx_path(path: CString, follow: bool) -> io::Result<Op<StatxData>> {
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    let mut data = StatxData {
        buf: zeroed_statx(),
        _path: None,
        _fd: None,
    };
    let sqe = opcode::Statx::new(
        types::Fd(libc::AT_FDCWD),
        path.as_ptr(),
        (&raw mut *data.buf).cast::<types::statx>(),
    )
    .flags(flags | libc::AT_STATX_SYNC_AS_STAT)
    .mask(STATX_MASK)
    .build();
    data._path = Some(path);
    // SAFETY: the path points into the CString's heap bytes and the result into `data.buf`'s
    // heap allocation; both are owned by the op's data and do not move with it.
    unsafe { Op::submit(sqe, data) }
}

/// `IORING_OP_CLOSE` (5.6): closes `fd`. The caller has given up ownership of `fd` (it must
/// not be closed again, whatever the result: Linux frees the number even when close fails).
pub(crate) fn close(fd: RawFd) -> io::Result<Op<()>> {
    let sqe = opcode::Close::new(types::Fd(fd)).build();
    // SAFETY: a close carries no pointer.
    unsafe { Op::submit(sqe, ()) }
}

/// `IORING_OP_UNLINKAT` (5.11): removes a file, or an empty directory when `dir`.
pub(crate) fn unlink_at(path: CString, dir: bool) -> io::Result<Op<CString>> {
    let sqe = opcode::UnlinkAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr())
        .flags(if dir { libc::AT_REMOVEDIR } else { 0 })
        .build();
    // SAFETY: the path points into the CString's heap bytes, owned by the op's data.
    unsafe { Op::submit(sqe, path) }
}

/// `IORING_OP_RENAMEAT` (5.11): renames `from` to `to`, replacing `to` if it exists.
pub(crate) fn rename_at(from: CString, to: CString) -> io::Result<Op<(CString, CString)>> {
    let sqe = opcode::RenameAt::new(
        types::Fd(libc::AT_FDCWD),
        from.as_ptr(),
        types::Fd(libc::AT_FDCWD),
        to.as_ptr(),
    )
    .build();
    // SAFETY: both paths point into their CStrings' heap bytes, owned by the op's data.
    unsafe { Op::submit(sqe, (from, to)) }
}

/// `IORING_OP_MKDIRAT` (5.15): creates a directory with `mode` (less the umask).
pub(crate) fn mkdir_at(path: CString, mode: u32) -> io::Result<Op<CString>> {
    let sqe = opcode::MkDirAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr())
        .mode(mode)
        .build();
    // SAFETY: the path points into the CString's heap bytes, owned by the op's data.
    unsafe { Op::submit(sqe, path) }
}
