//! `File`: an open descriptor and the owned-buffer operations on it (positional and
//! file-position reads and writes, fsync, statx, close), each one driver operation (an SQE on
//! io_uring, a syscall on the driver's blocking threads on epoll).

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use super::{Metadata, OpenOptions};
use crate::driver::fd::Fd;
use crate::driver::op::Op;
use crate::driver::op::fs::{self as op, CURRENT_POSITION, SharedFd};
use crate::io::{BufResult, IoBuf, IoBufMut};

/// An open file whose reads, writes, syncs and `statx` go through the driver (the ring, or the
/// epoll driver's blocking threads; pipes and FIFOs wait for readiness there).
///
/// Buffers are owned: an operation takes its buffer by value and gives it back in a
/// [`BufResult`], so the kernel never writes into memory that was freed or moved. A read into a
/// `Vec<u8>` fills it from index 0 up to its capacity and sets its length to the bytes read; it
/// never reallocates.
///
/// Operations take `&self`, so any number may be in flight on one file at once (share it with
/// `Rc<File>` between tasks). Positional operations ([`read_at`](File::read_at),
/// [`write_at`](File::write_at), ...) do not touch the file position; [`read`](File::read) and
/// [`write`](File::write) use and advance it, like `read(2)` / `write(2)`, and are the ones that
/// work on pipes and terminals.
///
/// # Closing
///
/// Dropping a `File` closes the descriptor synchronously with `close(2)` on the dropping thread,
/// once no operation on it is still in flight: a cancelled (dropped) operation keeps the
/// descriptor open until the kernel has finished with it, so its number cannot be reused under
/// it. [`close`](File::close) closes through the driver instead and reports the error.
///
/// `File` is `Send` and `Sync` (it is a descriptor); its operations must be started inside a
/// ringloop runtime, and each runs on the driver of the thread that started it.
///
/// # Examples
///
/// ```
/// use ringloop::fs::File;
///
/// let path = std::env::temp_dir().join(format!("ringloop-doc-file-{}", std::process::id()));
/// ringloop::run(async {
///     let file = File::create(&path).await?;
///     let (res, _buf) = file.write_all_at(b"hello, ring".to_vec(), 0).await.into_parts();
///     res?;
///     file.sync_data().await?;
///     file.close().await?;
///
///     let file = File::open(&path).await?;
///     let (res, buf) = file.read_at(Vec::with_capacity(64), 7).await.into_parts();
///     assert_eq!(res?, 4);
///     assert_eq!(buf, b"ring");
///     ringloop::fs::remove_file(&path).await
/// })
/// .unwrap();
/// ```
pub struct File {
    /// The descriptor; in-flight operations hold clones, so it closes when the last is gone.
    fd: SharedFd,
}

impl File {
    /// Opens an existing file read-only.
    ///
    /// # Errors
    ///
    /// The kernel's (`NotFound`, `PermissionDenied`, ...); `InvalidInput` for a path with an
    /// interior NUL byte.
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Opens a file write-only, creating it (mode `0o666` less the umask) or truncating it.
    ///
    /// # Errors
    ///
    /// As [`File::open`].
    pub async fn create(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .await
    }

    /// A new [`OpenOptions`], for other ways to open.
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// Takes ownership of a descriptor the kernel just returned.
    ///
    /// # Safety
    ///
    /// `fd` is open and owned by nobody else.
    pub(crate) unsafe fn from_new_fd(fd: RawFd) -> File {
        // SAFETY: forwarded from this function's contract.
        File::from(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Wraps a std file (the descriptor moves; nothing is duplicated).
    pub fn from_std(file: std::fs::File) -> File {
        File::from(OwnedFd::from(file))
    }

    /// Turns back into a std file. If a cancelled operation still holds the descriptor (see
    /// [Closing](File#closing)), the std file gets a duplicate of it (`dup`).
    ///
    /// # Errors
    ///
    /// Only when the descriptor had to be duplicated and that failed (`EMFILE`).
    pub fn into_std(self) -> io::Result<std::fs::File> {
        Ok(std::fs::File::from(Fd::into_owned(self.fd)?))
    }

    /// Reads into `buf` from offset `pos`: up to `buf.bytes_total()` bytes, placed from the
    /// buffer's start. Returns the count, 0 at or past end of file. The file position is not
    /// used or changed.
    ///
    /// # Errors
    ///
    /// The kernel's (e.g. `EBADF` on a file not open for reading, `EISDIR` on a directory).
    /// The buffer comes back either way.
    ///
    /// # Examples
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("ringloop-doc-read-at-{}", std::process::id()));
    /// ringloop::run(async {
    ///     ringloop::fs::write(&path, "0123456789").await?;
    ///     let file = ringloop::fs::File::open(&path).await?;
    ///     // A Vec with stale contents: the read fills it from index 0 and sets its length.
    ///     let buf = b"stale bytes".to_vec();
    ///     let (n, buf) = file.read_at(buf, 6).await.into_parts();
    ///     assert_eq!(n?, 4);
    ///     assert_eq!(buf, b"6789");
    ///     // Past the end: 0 bytes.
    ///     let (n, _) = file.read_at(vec![0u8; 4].into_boxed_slice(), 100).await.into_parts();
    ///     assert_eq!(n?, 0);
    ///     ringloop::fs::remove_file(&path).await
    /// })
    /// .unwrap();
    /// ```
    pub async fn read_at<B: IoBufMut>(&self, buf: B, pos: u64) -> BufResult<usize, B> {
        if let Err(e) = check_pos(pos) {
            return BufResult(Err(e), buf);
        }
        read_op(&self.fd, buf, pos).await
    }

    /// Reads up to `len` bytes from offset `pos` into a buffer the loop lends, and returns it
    /// (shorter at the end of the file; empty past it). Dropping the
    /// [`LentBuf`](crate::io::LentBuf) gives the buffer back for the next read.
    ///
    /// On io_uring the buffer is one of the loop's registered buffers (the kernel reads with
    /// `READ_FIXED`, without mapping a user buffer per read), reused last-freed first, so a
    /// loop that reads and drops keeps reading into cache-warm memory. Where there are none
    /// (epoll, `Builder::file_buffers(0, _)`, a kernel that refused to register them), when
    /// all are lent, or when `len` is larger than they are
    /// ([`Builder::file_buffers`](crate::Builder::file_buffers); 16 KiB by default), it reads
    /// into a heap buffer of `len` bytes instead, like [`read_at`](File::read_at).
    ///
    /// # Errors
    ///
    /// As [`read_at`](File::read_at).
    ///
    /// # Examples
    ///
    /// ```
    /// ringloop::run(async {
    ///     let file = ringloop::fs::File::open("/proc/self/exe").await?;
    ///     let head = file.read_lent_at(0, 4).await?;
    ///     assert_eq!(&head[..], b"\x7fELF");
    ///     std::io::Result::Ok(())
    /// })?;
    /// # std::io::Result::Ok(())
    /// ```
    pub async fn read_lent_at(&self, pos: u64, len: usize) -> io::Result<crate::io::LentBuf> {
        check_pos(pos)?;
        let driver = crate::driver::current();
        let fixed = driver.borrow_mut().fixed_buf();
        match fixed {
            Some(buf) if len <= buf.capacity_hint() => {
                let read =
                    Op::submit(op::ReadFixed::new(&self.fd, buf, len, pos)).map_err(|(e, _)| e)?;
                let (r, read) = read.await;
                let mut buf = read.buf;
                buf.set_fixed_len(r? as usize);
                Ok(buf)
            }
            _ => {
                let pool = driver.borrow_mut().buf_pool();
                let BufResult(r, buf) = read_op(&self.fd, Vec::with_capacity(len), pos).await;
                r.map(|_| crate::io::LentBuf::heap(pool, buf))
            }
        }
    }

    /// Reads exactly `buf.bytes_total()` bytes from offset `pos`, looping over short reads.
    /// A `Vec<u8>` ends up with length equal to its capacity.
    ///
    /// # Errors
    ///
    /// `UnexpectedEof` if the file ends first (the buffer then holds what was read: a `Vec`'s
    /// length says how much); otherwise the kernel's. `Interrupted` is retried.
    pub async fn read_exact_at<B: IoBufMut>(&self, mut buf: B, pos: u64) -> BufResult<(), B> {
        if let Err(e) = check_pos(pos) {
            return BufResult(Err(e), buf);
        }
        let total = buf.bytes_total();
        let mut done = 0;
        while done < total {
            let res;
            // The first read goes to the buffer itself so that a Vec's stale length is reset;
            // later ones fill the rest through a slice.
            (res, buf) = if done == 0 {
                read_op(&self.fd, buf, pos).await.into_parts()
            } else {
                let at = pos.saturating_add(done as u64);
                let (res, slice) = read_op(&self.fd, buf.slice(done..), at).await.into_parts();
                (res, slice.into_inner())
            };
            match res {
                Ok(0) => {
                    return BufResult(
                        Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "failed to fill whole buffer",
                        )),
                        buf,
                    );
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return BufResult(Err(e), buf),
            }
        }
        BufResult(Ok(()), buf)
    }

    /// Writes `buf.bytes_init()` bytes (or fewer: see the count) at offset `pos`. The file
    /// position is not used or changed; on a file opened with `append`, Linux writes at the end
    /// whatever `pos` says.
    ///
    /// # Errors
    ///
    /// The kernel's (e.g. `EBADF` on a file not open for writing). The buffer comes back either
    /// way.
    pub async fn write_at<B: IoBuf>(&self, buf: B, pos: u64) -> BufResult<usize, B> {
        if let Err(e) = check_pos(pos) {
            return BufResult(Err(e), buf);
        }
        write_op(&self.fd, buf, pos).await
    }

    /// Writes all of `buf.bytes_init()` at offset `pos`, looping over short writes.
    ///
    /// # Errors
    ///
    /// `WriteZero` if the kernel accepts no bytes; otherwise the kernel's. `Interrupted` is
    /// retried.
    pub async fn write_all_at<B: IoBuf>(&self, buf: B, pos: u64) -> BufResult<(), B> {
        if let Err(e) = check_pos(pos) {
            return BufResult(Err(e), buf);
        }
        write_all_op(&self.fd, buf, Some(pos)).await
    }

    /// Reads at the file position and advances it, like `read(2)` (this also works on pipes
    /// and terminals). Up to `buf.bytes_total()` bytes, from the buffer's start; 0 at end of
    /// file. Run one at a time per file: concurrent reads race for the position.
    ///
    /// # Errors
    ///
    /// As [`read_at`](File::read_at).
    pub async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        read_op(&self.fd, buf, CURRENT_POSITION).await
    }

    /// Writes at the file position and advances it, like `write(2)` (this also works on pipes
    /// and terminals, where positional writes fail with `ESPIPE`). Run one at a time per file.
    ///
    /// # Errors
    ///
    /// As [`write_at`](File::write_at).
    pub async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        write_op(&self.fd, buf, CURRENT_POSITION).await
    }

    /// Writes all of `buf.bytes_init()` at the file position, looping over short writes.
    ///
    /// # Errors
    ///
    /// As [`write_all_at`](File::write_all_at).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::{FromRawFd, OwnedFd};
    ///
    /// ringloop::run(async {
    ///     // Positional writes fail on a pipe; writes at the file position work.
    ///     let mut fds = [0; 2];
    ///     // SAFETY: pipe2 fills `fds` with two new descriptors.
    ///     assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    ///     // SAFETY: the descriptors are new and owned by nobody else.
    ///     let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    ///     let (reader, writer) = (ringloop::fs::File::from(r), ringloop::fs::File::from(w));
    ///     writer.write_all("through a pipe").await.0?;
    ///     let (n, buf) = reader.read(Vec::with_capacity(64)).await.into_parts();
    ///     assert_eq!(n?, 14);
    ///     assert_eq!(buf, b"through a pipe");
    ///     std::io::Result::Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        write_all_op(&self.fd, buf, None).await
    }

    /// Flushes the file's data and metadata to the device (`fsync`).
    ///
    /// # Errors
    ///
    /// The kernel's (`EIO`, ...).
    pub async fn sync_all(&self) -> io::Result<()> {
        let (completion, _) = Op::submit(op::Fsync::new(&self.fd, false))
            .map_err(|(e, _)| e)?
            .await;
        completion.map(drop)
    }

    /// Flushes the file's data, and only the metadata needed to read it back (`fdatasync`).
    ///
    /// # Errors
    ///
    /// The kernel's.
    pub async fn sync_data(&self) -> io::Result<()> {
        let (completion, _) = Op::submit(op::Fsync::new(&self.fd, true))
            .map_err(|(e, _)| e)?
            .await;
        completion.map(drop)
    }

    /// The file's metadata (`statx` on the descriptor).
    ///
    /// # Errors
    ///
    /// The kernel's.
    ///
    /// # Examples
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("ringloop-doc-meta-{}", std::process::id()));
    /// ringloop::run(async {
    ///     let file = ringloop::fs::File::create(&path).await?;
    ///     file.write_all_at("12345", 0).await.0?;
    ///     let meta = file.metadata().await?;
    ///     assert_eq!(meta.len(), 5);
    ///     assert!(meta.is_file());
    ///     ringloop::fs::remove_file(&path).await
    /// })
    /// .unwrap();
    /// ```
    pub async fn metadata(&self) -> io::Result<Metadata> {
        let (completion, data) = Op::submit(op::Statx::fd(&self.fd))
            .map_err(|(e, _)| e)?
            .await;
        completion?;
        Ok(Metadata::from_statx(*data.buf))
    }

    /// Closes the descriptor through the driver (`IORING_OP_CLOSE`, or `close(2)` on a blocking
    /// thread on epoll) and reports the kernel's
    /// error, which dropping the `File` would ignore.
    ///
    /// If a cancelled operation still holds the descriptor (see [Closing](File#closing)), the
    /// descriptor is closed when that operation finishes instead, and this returns `Ok`.
    /// Dropping this future before it completes still closes the descriptor.
    ///
    /// # Errors
    ///
    /// The kernel's (e.g. `EIO` from a network file system); the descriptor is closed anyway.
    pub async fn close(self) -> io::Result<()> {
        let fd = match Arc::try_unwrap(self.fd) {
            Ok(fd) => fd.into_inner(),
            // In-flight operations hold it: the last one closes it when the kernel is done.
            Err(shared) => {
                drop(shared);
                return Ok(());
            }
        };
        match Op::submit(op::Close::new(fd)) {
            Ok(close) => close.await.0.map(drop),
            Err((_, close)) => {
                // The driver refused the submission: close synchronously instead.
                let fd = close.into_raw();
                // SAFETY: the op owned `fd` (taken out of its OwnedFd above) and gave it back
                // unclosed; we close it once.
                if unsafe { libc::close(fd) } == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            }
        }
    }
}

/// One read into `buf` at `pos`, with the buffer's initialized length updated.
/// Offsets are `off_t` in the kernel: beyond `i64::MAX` they would read as negative, and
/// `u64::MAX` (-1) would even mean "the file position".
fn check_pos(pos: u64) -> io::Result<()> {
    if pos > i64::MAX as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "ringloop: file offset beyond i64::MAX",
        ));
    }
    Ok(())
}

pub(super) async fn read_op<B: IoBufMut>(fd: &SharedFd, buf: B, pos: u64) -> BufResult<usize, B> {
    let read = match Op::submit(op::Read::new(fd, buf, pos)) {
        Ok(read) => read,
        Err((e, read)) => return BufResult(Err(e), read.buf),
    };
    let (completion, read) = read.await;
    let mut buf = read.buf;
    match completion {
        Ok(n) => {
            let n = n as usize;
            // SAFETY: the kernel reported `n` bytes written at the buffer's `stable_mut_ptr()`,
            // and `n <= bytes_total()` since that (capped) was the length asked for.
            unsafe { buf.set_init(n) };
            BufResult(Ok(n), buf)
        }
        Err(e) => BufResult(Err(e), buf),
    }
}

/// One write of `buf` at `pos`.
async fn write_op<B: IoBuf>(fd: &SharedFd, buf: B, pos: u64) -> BufResult<usize, B> {
    let write = match Op::submit(op::Write::new(fd, buf, pos)) {
        Ok(write) => write,
        Err((e, write)) => return BufResult(Err(e), write.buf),
    };
    let (completion, write) = write.await;
    BufResult(completion.map(|n| n as usize), write.buf)
}

/// Writes all of `buf` at `pos`, or at the file position when `pos` is `None`.
async fn write_all_op<B: IoBuf>(fd: &SharedFd, mut buf: B, pos: Option<u64>) -> BufResult<(), B> {
    let total = buf.bytes_init();
    let mut done = 0;
    while done < total {
        let at = pos.map_or(CURRENT_POSITION, |p| p.saturating_add(done as u64));
        let res;
        (res, buf) = if done == 0 {
            write_op(fd, buf, at).await.into_parts()
        } else {
            let (res, slice) = write_op(fd, buf.slice(done..), at).await.into_parts();
            (res, slice.into_inner())
        };
        match res {
            Ok(0) => {
                return BufResult(
                    Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "failed to write whole buffer",
                    )),
                    buf,
                );
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return BufResult(Err(e), buf),
        }
    }
    BufResult(Ok(()), buf)
}

impl From<OwnedFd> for File {
    fn from(fd: OwnedFd) -> File {
        File { fd: Fd::new(fd) }
    }
}

impl From<std::fs::File> for File {
    fn from(file: std::fs::File) -> File {
        File::from_std(file)
    }
}

impl AsRawFd for File {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for File {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl FromRawFd for File {
    /// Takes ownership of `fd`.
    ///
    /// # Safety
    ///
    /// `fd` is an open descriptor owned by nobody else.
    unsafe fn from_raw_fd(fd: RawFd) -> File {
        // SAFETY: forwarded from this function's contract.
        File::from(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}
