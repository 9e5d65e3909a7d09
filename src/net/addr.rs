//! Conversions between std's socket addresses and the kernel's `sockaddr`s.

use std::cell::OnceCell;
use std::ffi::OsStr;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::driver::op::net::RawAddr;

/// An IP address out of socket2's, for the address calls of TCP and UDP sockets.
pub(crate) fn ip_addr(addr: io::Result<socket2::SockAddr>) -> io::Result<SocketAddr> {
    addr?.as_socket().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "ringloop: the socket's address is not an IP address",
        )
    })
}

/// Offset of `sun_path` in `sockaddr_un`.
fn sun_path_offset() -> usize {
    std::mem::offset_of!(libc::sockaddr_un, sun_path)
}

/// A Unix socket address for `path`; a path starting with a NUL byte names an abstract socket.
pub(crate) fn unix_to_raw(path: &Path) -> io::Result<RawAddr> {
    let bytes = path.as_os_str().as_bytes();
    let mut raw = RawAddr::empty();
    // SAFETY: sockaddr_storage is larger than sockaddr_un and aligned for it; all zeroes
    // (the state RawAddr::empty leaves) is a valid sockaddr_un.
    let sun = unsafe { &mut *(&raw mut raw.storage).cast::<libc::sockaddr_un>() };
    // Room for a terminating NUL on path names (abstract names are not terminated).
    let room = sun.sun_path.len() - usize::from(bytes.first() != Some(&0));
    if bytes.is_empty() || bytes.len() > room {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "ringloop: a Unix socket path must be non-empty and shorter than 108 bytes",
        ));
    }
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &src) in sun.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let terminator = usize::from(bytes[0] != 0);
    raw.len = (sun_path_offset() + bytes.len() + terminator) as libc::socklen_t;
    Ok(raw)
}

thread_local! {
    /// An unnamed Unix socket address: std has no constructor for one, so one is taken from an
    /// unbound socket once per thread.
    static UNNAMED: OnceCell<std::os::unix::net::SocketAddr> = const { OnceCell::new() };
}

/// The Unix socket address the kernel wrote into `raw`.
pub(crate) fn unix_from_raw(raw: &RawAddr) -> io::Result<std::os::unix::net::SocketAddr> {
    let len = raw.len as usize;
    if len <= sun_path_offset() {
        return UNNAMED.with(|u| {
            if let Some(a) = u.get() {
                return Ok(a.clone());
            }
            let a = std::os::unix::net::UnixDatagram::unbound()?.local_addr()?;
            Ok(u.get_or_init(|| a).clone())
        });
    }
    // SAFETY: the storage is large enough and aligned for a sockaddr_un, any bytes are valid.
    let sun = unsafe { &*(&raw const raw.storage).cast::<libc::sockaddr_un>() };
    let path_len = (len - sun_path_offset()).min(sun.sun_path.len());
    let bytes: Vec<u8> = sun.sun_path[..path_len].iter().map(|&c| c as u8).collect();
    if bytes[0] == 0 {
        std::os::unix::net::SocketAddr::from_abstract_name(&bytes[1..])
    } else {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        std::os::unix::net::SocketAddr::from_pathname(Path::new(OsStr::from_bytes(&bytes[..end])))
    }
}

/// An IP socket address given without a name lookup: what [`TcpStream::connect`] and
/// [`UdpSocket::send_to`] accept. Implemented for `SocketAddr`, `SocketAddrV4`,
/// `SocketAddrV6`, `(IpAddr, u16)`, `(Ipv4Addr, u16)`, `(Ipv6Addr, u16)`, and strings holding
/// a literal address such as `"127.0.0.1:8080"` or `"[::1]:8080"`. A host name is refused
/// (`InvalidInput`) rather than resolved on the loop thread, which would block it: resolve it
/// with [`TcpStream::connect_host`], which uses the blocking pool.
///
/// [`TcpStream::connect`]: crate::net::TcpStream::connect
/// [`TcpStream::connect_host`]: crate::net::TcpStream::connect_host
/// [`UdpSocket::send_to`]: crate::net::UdpSocket::send_to
pub trait ToSocketAddr: sealed::Sealed {
    /// The address.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a string that is not a literal `ip:port`.
    fn to_socket_addr(&self) -> io::Result<SocketAddr>;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! literal_addr {
    ($($ty:ty),*) => {$(
        impl sealed::Sealed for $ty {}

        impl ToSocketAddr for $ty {
            fn to_socket_addr(&self) -> io::Result<SocketAddr> {
                Ok(SocketAddr::from(*self))
            }
        }
    )*};
}

literal_addr!(
    SocketAddr,
    SocketAddrV4,
    SocketAddrV6,
    (std::net::IpAddr, u16),
    (Ipv4Addr, u16),
    (Ipv6Addr, u16)
);

macro_rules! string_addr {
    ($($ty:ty),*) => {$(
        impl sealed::Sealed for $ty {}

        impl ToSocketAddr for $ty {
            fn to_socket_addr(&self) -> io::Result<SocketAddr> {
                let s: &str = self.as_ref();
                s.parse().map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "ringloop: {s:?} is not a literal ip:port address; resolve host \
                             names with TcpStream::connect_host (on the blocking pool)"
                        ),
                    )
                })
            }
        }
    )*};
}

string_addr!(str, String);

impl<T: ToSocketAddr + ?Sized> sealed::Sealed for &T {}

impl<T: ToSocketAddr + ?Sized> ToSocketAddr for &T {
    fn to_socket_addr(&self) -> io::Result<SocketAddr> {
        (**self).to_socket_addr()
    }
}
