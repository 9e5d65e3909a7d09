//! `Metadata`: what a `statx` said about a file (size, type, permissions, times, ids).

use std::fmt;
use std::fs::Permissions;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

/// Information about a file, from `statx(2)` (`IORING_OP_STATX` on io_uring, the syscall on a
/// blocking thread on epoll): see
/// [`File::metadata`](super::File::metadata), [`metadata`](super::metadata) and
/// [`symlink_metadata`](super::symlink_metadata).
///
/// # Examples
///
/// ```
/// let dir = std::env::temp_dir();
/// ringloop::run(async move {
///     let meta = ringloop::fs::metadata(&dir).await.unwrap();
///     assert!(meta.is_dir());
///     assert!(!meta.is_file());
/// });
/// ```
#[derive(Clone)]
pub struct Metadata {
    stx: libc::statx,
}

impl Metadata {
    pub(crate) fn from_statx(stx: libc::statx) -> Metadata {
        Metadata { stx }
    }

    fn file_type_bits(&self) -> u32 {
        u32::from(self.stx.stx_mode) & libc::S_IFMT
    }

    /// Size of the file in bytes.
    pub fn len(&self) -> u64 {
        self.stx.stx_size
    }

    /// Whether the file is empty (`len() == 0`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.file_type_bits() == libc::S_IFREG
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type_bits() == libc::S_IFDIR
    }

    /// Whether this is a symbolic link (only ever true for
    /// [`symlink_metadata`](super::symlink_metadata)).
    pub fn is_symlink(&self) -> bool {
        self.file_type_bits() == libc::S_IFLNK
    }

    /// The permissions, as std's type (its `mode()` via `PermissionsExt`).
    pub fn permissions(&self) -> Permissions {
        Permissions::from_mode(self.mode())
    }

    /// The full `st_mode`: file type and permission bits.
    pub fn mode(&self) -> u32 {
        u32::from(self.stx.stx_mode)
    }

    /// Owner's user id.
    pub fn uid(&self) -> u32 {
        self.stx.stx_uid
    }

    /// Owner's group id.
    pub fn gid(&self) -> u32 {
        self.stx.stx_gid
    }

    /// Inode number.
    pub fn ino(&self) -> u64 {
        self.stx.stx_ino
    }

    /// Number of hard links.
    pub fn nlink(&self) -> u64 {
        u64::from(self.stx.stx_nlink)
    }

    /// Space allocated on disk, in 512-byte blocks.
    pub fn blocks(&self) -> u64 {
        self.stx.stx_blocks
    }

    /// The file system's preferred I/O block size.
    pub fn blksize(&self) -> u64 {
        u64::from(self.stx.stx_blksize)
    }

    /// Last modification time.
    ///
    /// # Errors
    ///
    /// `Unsupported` if the file system does not report it.
    pub fn modified(&self) -> io::Result<SystemTime> {
        self.time(libc::STATX_MTIME, self.stx.stx_mtime, "modification")
    }

    /// Last access time.
    ///
    /// # Errors
    ///
    /// `Unsupported` if the file system does not report it.
    pub fn accessed(&self) -> io::Result<SystemTime> {
        self.time(libc::STATX_ATIME, self.stx.stx_atime, "access")
    }

    /// Creation (birth) time.
    ///
    /// # Errors
    ///
    /// `Unsupported` if the file system does not record it (tmpfs before Linux 5.x, some
    /// network file systems).
    pub fn created(&self) -> io::Result<SystemTime> {
        self.time(libc::STATX_BTIME, self.stx.stx_btime, "creation")
    }

    fn time(&self, bit: u32, ts: libc::statx_timestamp, what: &str) -> io::Result<SystemTime> {
        if self.stx.stx_mask & bit == 0 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("ringloop: the file system does not report the {what} time"),
            ));
        }
        let nanos = Duration::new(0, ts.tv_nsec);
        Ok(if ts.tv_sec >= 0 {
            SystemTime::UNIX_EPOCH + Duration::from_secs(ts.tv_sec as u64) + nanos
        } else {
            SystemTime::UNIX_EPOCH - Duration::from_secs(ts.tv_sec.unsigned_abs()) + nanos
        })
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metadata")
            .field("len", &self.len())
            .field("mode", &format_args!("{:#o}", self.mode()))
            .field("ino", &self.ino())
            .field("modified", &self.modified().ok())
            .finish_non_exhaustive()
    }
}
