//! The parent's ends of a child's standard streams: pipes read and written through the
//! driver with owned buffers. A read whose future is dropped loses nothing (what the kernel
//! read anyway is kept for the next read, as on sockets: `net::stream::ReadState`).

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::rc::Rc;

use crate::driver::fd::{Fd, SharedFd};
use crate::driver::op::Op;
use crate::driver::op::fs::{self as op, CURRENT_POSITION};
use crate::io::{BufResult, IoBuf, IoBufMut};
use crate::net::stream::ReadState;

/// A pipe end with lossless reads.
struct Pipe {
    fd: SharedFd,
    reads: Rc<RefCell<ReadState>>,
}

impl Pipe {
    fn new(fd: OwnedFd) -> Pipe {
        Pipe {
            fd: Fd::new(fd),
            reads: Rc::default(),
        }
    }

    async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        let fd = &self.fd;
        ReadState::read(&self.reads, buf, None, |buf| {
            op::Read::new(fd, buf, CURRENT_POSITION)
        })
        .await
    }

    async fn read_to_end(&self, mut out: Vec<u8>) -> BufResult<usize, Vec<u8>> {
        let start = out.len();
        loop {
            if out.capacity() - out.len() < 4096 {
                out.reserve(out.capacity().max(8192));
            }
            let len = out.len();
            let BufResult(r, slice) = self.read(out.slice(len..)).await;
            out = slice.into_inner();
            match r {
                Ok(0) => return BufResult(Ok(out.len() - start), out),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return BufResult(Err(e), out),
            }
        }
    }

    async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        if buf.bytes_init() == 0 {
            return BufResult(Ok(0), buf);
        }
        match Op::submit(op::Write::new(&self.fd, buf, CURRENT_POSITION)) {
            Ok(write) => {
                let (r, write) = write.await;
                BufResult(r.map(|n| n as usize), write.buf)
            }
            Err((e, write)) => BufResult(Err(e), write.buf),
        }
    }

    async fn write_all<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        write_all_with(buf, |slice| self.write(slice)).await
    }
}

macro_rules! pipe_type {
    ($(#[$doc:meta])* $name:ident, $std:ty) => {
        $(#[$doc])*
        pub struct $name {
            pipe: Pipe,
        }

        impl $name {
            pub(crate) fn from_std(end: $std) -> $name {
                $name { pipe: Pipe::new(OwnedFd::from(end)) }
            }
        }

        impl AsRawFd for $name {
            fn as_raw_fd(&self) -> RawFd {
                self.pipe.fd.as_raw_fd()
            }
        }

        impl AsFd for $name {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.pipe.fd.as_fd()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("fd", &self.pipe.fd.as_raw_fd())
                    .finish()
            }
        }
    };
}

pipe_type!(
    /// The child's standard input, written by the parent ([`Child::stdin`](super::Child::stdin)).
    /// Dropping it closes the pipe: the child reads end of file.
    ChildStdin,
    std::process::ChildStdin
);
pipe_type!(
    /// The child's standard output, read by the parent ([`Child::stdout`](super::Child::stdout)).
    ChildStdout,
    std::process::ChildStdout
);
pipe_type!(
    /// The child's standard error, read by the parent ([`Child::stderr`](super::Child::stderr)).
    ChildStderr,
    std::process::ChildStderr
);

impl ChildStdin {
    /// Writes some of `buf`; the count written and the buffer back. A child that closed its
    /// end gives `BrokenPipe`.
    pub async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.pipe.write(buf).await
    }

    /// Writes all of `buf`.
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        self.pipe.write_all(buf).await
    }
}

macro_rules! reader_methods {
    ($name:ident) => {
        impl $name {
            /// Reads into `buf`: the count read (0 at end of file: the child closed its end,
            /// usually by exiting) and the buffer back. If this future is dropped before it
            /// completes, bytes the kernel had already read are kept for the next read.
            pub async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
                self.pipe.read(buf).await
            }

            /// Reads until end of file, appending to `out`; the count appended and `out`.
            pub async fn read_to_end(&self, out: Vec<u8>) -> BufResult<usize, Vec<u8>> {
                self.pipe.read_to_end(out).await
            }
        }
    };
}

reader_methods!(ChildStdout);
reader_methods!(ChildStderr);

/// Writes all of `buf` through `write` (one write of a stream: a socket, a pipe), resuming
/// after short writes and `Interrupted`; `WriteZero` if a write takes nothing.
async fn write_all_with<B, W, F>(mut buf: B, mut write: W) -> BufResult<(), B>
where
    B: IoBuf,
    W: FnMut(crate::io::Slice<B>) -> F,
    F: Future<Output = BufResult<usize, crate::io::Slice<B>>>,
{
    let total = buf.bytes_init();
    let mut done = 0;
    while done < total {
        let BufResult(r, slice) = write(buf.slice(done..total)).await;
        buf = slice.into_inner();
        match r {
            Ok(0) => {
                let e = io::Error::new(io::ErrorKind::WriteZero, "ringloop: wrote 0 bytes");
                return BufResult(Err(e), buf);
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return BufResult(Err(e), buf),
        }
    }
    BufResult(Ok(()), buf)
}
