//! Files through the driver: `File`, `OpenOptions`, `Metadata`, and whole-file and directory
//! helpers (`read`, `write`, `remove_file`, `rename`, `create_dir`, `remove_dir`, `metadata`).
//!
//! Every operation here is one or a few driver operations (open, read, write, fsync, statx,
//! close, unlink, rename, mkdir) from `driver/op/fs.rs`; none blocks the loop thread. On
//! io_uring each is one SQE (or, where the kernel's ring lacks the opcode, a syscall on the
//! driver's blocking threads); on epoll, where files have no readiness, each runs on those
//! threads. They must run inside a ringloop runtime.
//!
//! Paths are passed to the kernel as C strings: a path with an interior NUL byte fails with
//! [`io::ErrorKind::InvalidInput`]. Relative paths are relative to the process's current
//! directory.

mod file;
mod metadata;
mod open_options;

pub use file::File;
pub use metadata::Metadata;
pub use open_options::OpenOptions;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::driver::op::fs as op;
use crate::driver::op::{Op, OpCode};
use crate::io::IoBuf;

/// `path` as the C string the kernel reads.
pub(crate) fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "ringloop: file name contained an unexpected NUL byte",
        )
    })
}

/// Runs a path operation that gives nothing back but its status.
async fn run<T: OpCode>(op: T) -> io::Result<()> {
    let op = Op::submit(op).map_err(|(e, _)| e)?;
    op.await.0.map(drop)
}

/// Reads a whole file into a `Vec<u8>`: opens it, sizes the buffer with `statx`, and reads
/// until end of file (growing the buffer if the file grew).
///
/// # Errors
///
/// The kernel's (`NotFound`, `PermissionDenied`, `EISDIR`, ...).
///
/// # Examples
///
/// ```
/// let path = std::env::temp_dir().join(format!("ringloop-doc-read-{}", std::process::id()));
/// ringloop::run(async {
///     ringloop::fs::write(&path, b"some bytes".to_vec()).await?;
///     assert_eq!(ringloop::fs::read(&path).await?, b"some bytes");
///     ringloop::fs::remove_file(&path).await
/// })
/// .unwrap();
/// ```
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let file = File::open(path).await?;
    let hint = file.metadata().await.map_or(0, |m| m.len());
    // A huge (say sparse) file must give an error, not abort on allocation (as std::fs::read).
    let mut buf = Vec::new();
    usize::try_from(hint)
        .ok()
        .and_then(|hint| buf.try_reserve_exact(hint).ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("ringloop::fs::read: cannot allocate {hint} bytes for the file"),
            )
        })?;
    loop {
        let len = buf.len();
        if len == buf.capacity() {
            // Full (the size hint was reached, or was 0): probe with a small read before
            // growing, so that a file of exactly the hinted size is not reallocated.
            let (res, probe) = file
                .read_at(Vec::with_capacity(64), len as u64)
                .await
                .into_parts();
            match res {
                Ok(0) => return Ok(buf),
                Ok(_) => {
                    buf.reserve(buf.capacity().max(8192));
                    buf.extend_from_slice(&probe);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        let (res, slice) = file
            .read_at(buf.slice(len..), len as u64)
            .await
            .into_parts();
        buf = slice.into_inner();
        match res {
            Ok(0) => return Ok(buf),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes `data` as the whole contents of a file, creating it (mode `0o666` less the umask) or
/// truncating it, then closes it through the driver.
///
/// `data` is anything that converts into a `Vec<u8>`, as with `std::fs::write`: a `Vec<u8>`,
/// `String` or `Box<[u8]>` is moved without a copy; a `&str`, `&[u8]` or `&[u8; N]` (a
/// byte-string literal) is copied once into the buffer the kernel writes from.
///
/// # Errors
///
/// The kernel's.
///
/// # Examples
///
/// ```
/// let path = std::env::temp_dir().join(format!("ringloop-doc-write-{}", std::process::id()));
/// ringloop::run(async {
///     ringloop::fs::write(&path, "text").await?;
///     ringloop::fs::write(&path, b"bytes").await?;
///     assert_eq!(ringloop::fs::read(&path).await?, b"bytes");
///     ringloop::fs::remove_file(&path).await
/// })
/// .unwrap();
/// ```
pub async fn write(path: impl AsRef<Path>, data: impl Into<Vec<u8>>) -> io::Result<()> {
    let data: Vec<u8> = data.into();
    let file = File::create(path).await?;
    file.write_all_at(data, 0).await.0?;
    file.close().await
}

/// Removes a file (`unlinkat`).
///
/// # Errors
///
/// The kernel's (`NotFound`; `EISDIR` on a directory, ...).
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    unlink(path.as_ref(), false).await
}

/// Removes an empty directory (`unlinkat` with `AT_REMOVEDIR`).
///
/// # Errors
///
/// The kernel's (`NotFound`, `DirectoryNotEmpty`, `NotADirectory`, ...).
pub async fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    unlink(path.as_ref(), true).await
}

async fn unlink(path: &Path, dir: bool) -> io::Result<()> {
    run(op::UnlinkAt::new(cstring(path)?, dir)).await
}

/// Renames `from` to `to` (`renameat`), replacing `to` if it exists (an empty directory
/// included, when `from` is a directory).
///
/// # Errors
///
/// The kernel's (`NotFound`, `EXDEV` across file systems, ...).
///
/// # Examples
///
/// ```
/// let dir = std::env::temp_dir();
/// let (a, b) = (
///     dir.join(format!("ringloop-doc-ren-a-{}", std::process::id())),
///     dir.join(format!("ringloop-doc-ren-b-{}", std::process::id())),
/// );
/// ringloop::run(async {
///     ringloop::fs::write(&a, "moved").await?;
///     ringloop::fs::rename(&a, &b).await?;
///     assert_eq!(ringloop::fs::read(&b).await?, b"moved");
///     assert_eq!(ringloop::fs::metadata(&a).await.unwrap_err().kind(), std::io::ErrorKind::NotFound);
///     ringloop::fs::remove_file(&b).await
/// })
/// .unwrap();
/// ```
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let (from, to) = (cstring(from.as_ref())?, cstring(to.as_ref())?);
    run(op::RenameAt::new(from, to)).await
}

/// Creates a directory (`mkdirat`, mode `0o777` less the umask). Its parent must exist.
///
/// # Errors
///
/// The kernel's (`AlreadyExists`, `NotFound` for a missing parent, ...).
///
/// # Examples
///
/// ```
/// let dir = std::env::temp_dir().join(format!("ringloop-doc-mkdir-{}", std::process::id()));
/// ringloop::run(async {
///     ringloop::fs::create_dir(&dir).await?;
///     assert!(ringloop::fs::metadata(&dir).await?.is_dir());
///     ringloop::fs::remove_dir(&dir).await
/// })
/// .unwrap();
/// ```
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    run(op::MkDirAt::new(cstring(path.as_ref())?, 0o777)).await
}

/// Metadata of the file at `path`, following symlinks (`statx`).
///
/// # Errors
///
/// The kernel's (`NotFound`, ...).
pub async fn metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    statx(path.as_ref(), true).await
}

/// Metadata of the file at `path` itself, not following a final symlink (`statx` with
/// `AT_SYMLINK_NOFOLLOW`).
///
/// # Errors
///
/// The kernel's (`NotFound`, ...).
pub async fn symlink_metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    statx(path, false).await
}

async fn statx(path: impl AsRef<Path>, follow: bool) -> io::Result<Metadata> {
    let statx = Op::submit(op::Statx::path(cstring(path.as_ref())?, follow)).map_err(|(e, _)| e)?;
    let (r, statx) = statx.await;
    r?;
    Ok(Metadata::from_statx(*statx.buf))
}
