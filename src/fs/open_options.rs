//! `OpenOptions`: the flags of an `openat`, built the way `std::fs::OpenOptions` builds them.

use std::io;
use std::path::Path;

use super::{File, cstring};
use crate::driver::op::Op;
use crate::driver::op::fs as op;

/// Options for opening a file, as [`std::fs::OpenOptions`]: choose the access mode and what to
/// do if the file exists or not, then [`open`](OpenOptions::open) it through the driver
/// (`IORING_OP_OPENAT`). `O_CLOEXEC` is always set.
///
/// # Examples
///
/// ```
/// use ringloop::fs::OpenOptions;
///
/// let path = std::env::temp_dir().join(format!("ringloop-doc-oo-{}", std::process::id()));
/// ringloop::run(async {
///     let file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600)
///         .open(&path).await?;
///     file.write_all_at(&b"hello"[..], 0).await.0?;
///     let log = OpenOptions::new().append(true).open(&path).await?;
///     log.write_all(&b" world"[..]).await.0?;
///     assert_eq!(ringloop::fs::read(&path).await?, b"hello world");
///     ringloop::fs::remove_file(&path).await
/// })
/// .unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    mode: u32,
    custom_flags: i32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions::new()
    }
}

impl OpenOptions {
    /// All options off, mode `0o666` (less the umask).
    pub fn new() -> OpenOptions {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            mode: 0o666,
            custom_flags: 0,
        }
    }

    /// Opens for reading.
    pub fn read(&mut self, read: bool) -> &mut OpenOptions {
        self.read = read;
        self
    }

    /// Opens for writing.
    pub fn write(&mut self, write: bool) -> &mut OpenOptions {
        self.write = write;
        self
    }

    /// Opens for appending (`O_APPEND`): every write goes to the end of the file, whatever
    /// position or offset it names. Implies writing.
    pub fn append(&mut self, append: bool) -> &mut OpenOptions {
        self.append = append;
        self
    }

    /// Truncates an existing file to length 0 (`O_TRUNC`). Needs write access.
    pub fn truncate(&mut self, truncate: bool) -> &mut OpenOptions {
        self.truncate = truncate;
        self
    }

    /// Creates the file if it does not exist (`O_CREAT`). Needs write or append access.
    pub fn create(&mut self, create: bool) -> &mut OpenOptions {
        self.create = create;
        self
    }

    /// Creates the file, failing with [`io::ErrorKind::AlreadyExists`] if it exists
    /// (`O_CREAT | O_EXCL`, atomic). Overrides `create` and `truncate`.
    pub fn create_new(&mut self, create_new: bool) -> &mut OpenOptions {
        self.create_new = create_new;
        self
    }

    /// The permission bits a created file gets (less the umask). Default `0o666`.
    pub fn mode(&mut self, mode: u32) -> &mut OpenOptions {
        self.mode = mode;
        self
    }

    /// Extra `open(2)` flags (e.g. `libc::O_DIRECT`, `libc::O_NOFOLLOW`). The access-mode bits
    /// are ignored: use `read` / `write` / `append`.
    pub fn custom_flags(&mut self, flags: i32) -> &mut OpenOptions {
        self.custom_flags = flags;
        self
    }

    /// Opens `path` with these options through the driver.
    ///
    /// # Errors
    ///
    /// The kernel's (`NotFound`, `PermissionDenied`, `AlreadyExists` for `create_new`, `EISDIR`
    /// for a directory opened for writing, ...); `InvalidInput` for a path with an interior NUL
    /// byte or an invalid combination of options (no access mode; `create` / `truncate`
    /// without write access; `append` with `truncate`), as std reports them.
    pub async fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
        let flags = self.flags()?;
        let path = cstring(path.as_ref())?;
        // A cancelled open whose openat succeeded anyway must not leak the new descriptor.
        let open = Op::submit(op::OpenAt::new(path, flags, self.mode))
            .map_err(|(e, _)| e)?
            .on_orphan(|r: Option<io::Result<u32>>, _open| {
                if let Some(Ok(fd)) = r {
                    // SAFETY: the kernel opened this descriptor for the dropped open; nobody
                    // else owns it.
                    drop(unsafe {
                        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32)
                    });
                }
            });
        let (completion, _open) = open.await;
        let fd = completion?;
        // SAFETY: a successful openat returned a new descriptor that nothing else owns.
        Ok(unsafe { File::from_new_fd(fd as i32) })
    }

    /// The `open(2)` flags, with std's rules for invalid combinations.
    fn flags(&self) -> io::Result<i32> {
        let invalid = || io::Error::from_raw_os_error(libc::EINVAL);
        let access = match (self.read, self.write, self.append) {
            (true, false, false) => libc::O_RDONLY,
            (false, true, false) => libc::O_WRONLY,
            (true, true, false) => libc::O_RDWR,
            (false, _, true) => libc::O_WRONLY | libc::O_APPEND,
            (true, _, true) => libc::O_RDWR | libc::O_APPEND,
            (false, false, false) => return Err(invalid()),
        };
        if !self.write && !self.append && (self.truncate || self.create || self.create_new) {
            return Err(invalid());
        }
        if self.append && self.truncate && !self.create_new {
            return Err(invalid());
        }
        let creation = match (self.create, self.truncate, self.create_new) {
            (_, _, true) => libc::O_CREAT | libc::O_EXCL,
            (false, false, false) => 0,
            (true, false, false) => libc::O_CREAT,
            (false, true, false) => libc::O_TRUNC,
            (true, true, false) => libc::O_CREAT | libc::O_TRUNC,
        };
        Ok(libc::O_CLOEXEC | access | creation | (self.custom_flags & !libc::O_ACCMODE))
    }
}
