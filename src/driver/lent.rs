//! Lent buffers: the buffers of [`read_lent`](crate::net::TcpStream::read_lent), which the
//! loop picks when data arrives instead of the caller handing one in per read.
//!
//! A loop's [`BufPool`] (made on first use) has two sources:
//!
//! * On io_uring with multishot receive (Linux 6.0), a provided buffer ring
//!   (`uring::buf_ring`): the kernel picks a buffer only when bytes arrive, so an idle
//!   connection holds none, and one multishot receive serves every read of a stream.
//! * Elsewhere (epoll, older kernels, `Builder::recv_buffers(0, _)`), and whenever the ring is
//!   empty: heap buffers of the same size, kept on a free list for reuse.
//!
//! A [`LentBuf`] owns its buffer until it is dropped, which puts a ring buffer back in the ring
//! (no syscall) and a heap buffer on the free list. It is an [`IoBuf`](crate::io::IoBuf), so
//! it can be written out as it is; a write in flight owns it like any other buffer.

use std::cell::RefCell;
use std::rc::Rc;

use super::uring::buf_ring::BufRing;

/// Heap buffers kept for reuse by one loop.
const HEAP_KEPT: usize = 64;

/// The buffers one loop lends. See the module docs.
pub(crate) struct BufPool {
    ring: Option<BufRing>,
    buf_size: usize,
    heap: RefCell<Vec<Vec<u8>>>,
}

impl std::fmt::Debug for BufPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufPool")
            .field("ring", &self.ring)
            .field("buf_size", &self.buf_size)
            .finish_non_exhaustive()
    }
}

impl BufPool {
    pub(crate) fn new(ring: Option<BufRing>, buf_size: usize) -> BufPool {
        BufPool {
            ring,
            buf_size,
            heap: RefCell::default(),
        }
    }

    /// The size of every buffer.
    pub(crate) fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// The provided buffer ring, if this loop has one.
    pub(crate) fn ring(&self) -> Option<&BufRing> {
        self.ring.as_ref()
    }

    /// A heap buffer of `buf_size` capacity, empty.
    pub(crate) fn heap_buf(&self) -> Vec<u8> {
        self.heap
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.buf_size))
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        if buf.capacity() == self.buf_size {
            let mut heap = self.heap.borrow_mut();
            if heap.len() < HEAP_KEPT {
                buf.clear();
                heap.push(buf);
            }
        }
    }
}

/// A buffer lent by the loop, holding the bytes of one read: it derefs to them. Dropping it
/// gives the buffer back for later reads (on io_uring, into the kernel's provided buffer ring,
/// with no syscall). An empty `LentBuf` means end of stream.
///
/// It is an [`IoBuf`](crate::io::IoBuf), so it can be written back out as it is (an echo
/// server copies nothing), and it derefs mutably to edit the bytes in place. Like every loop
/// resource it is `!Send`; [`to_vec`](<[u8]>::to_vec) copies the bytes out.
///
/// Hold lent buffers briefly: a loop has a fixed number of ring buffers
/// ([`Builder::recv_buffers`](crate::Builder::recv_buffers)). While they are all out, reads
/// fall back to heap buffers, which costs a copy and an allocation but never stalls.
pub struct LentBuf {
    pool: Rc<BufPool>,
    kind: Kind,
}

enum Kind {
    /// Ring buffer `bid`, holding `len` bytes.
    Ring { bid: u16, len: u32 },
    /// A heap buffer from the pool (or an empty one, for end of stream).
    Heap(Vec<u8>),
}

impl LentBuf {
    /// Ring buffer `bid`, which a CQE just lent, holding `len` bytes.
    pub(crate) fn ring(pool: Rc<BufPool>, bid: u16, len: u32) -> LentBuf {
        let ring = pool.ring.as_ref().expect("a ring buffer without a ring");
        debug_assert!(len as usize <= ring.buf_size());
        ring.lent(bid);
        LentBuf {
            pool,
            kind: Kind::Ring { bid, len },
        }
    }

    /// A heap buffer's bytes.
    pub(crate) fn heap(pool: Rc<BufPool>, buf: Vec<u8>) -> LentBuf {
        LentBuf {
            pool,
            kind: Kind::Heap(buf),
        }
    }

    /// Whether the buffer came from the kernel's provided buffer ring (a diagnostic for
    /// tests and benchmarks; `false` on epoll and after fallbacks).
    #[doc(hidden)]
    pub fn is_from_ring(&self) -> bool {
        matches!(self.kind, Kind::Ring { .. })
    }

    /// Drops the first `n` bytes (all of them if `n` is larger), keeping the rest.
    pub(crate) fn consume(&mut self, n: usize) {
        match &mut self.kind {
            Kind::Heap(v) => {
                v.drain(..n.min(v.len()));
            }
            Kind::Ring { bid, len } => {
                let n = (n as u32).min(*len);
                let ring = self
                    .pool
                    .ring
                    .as_ref()
                    .expect("a ring buffer without a ring");
                let p = ring.buf_ptr(*bid);
                // SAFETY: the buffer is lent to us; bytes n..len are initialized and move to
                // the front, inside the same buffer.
                unsafe { std::ptr::copy(p.add(n as usize), p, (*len - n) as usize) };
                *len -= n;
            }
        }
    }
}

impl std::ops::Deref for LentBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.kind {
            Kind::Heap(v) => v,
            Kind::Ring { bid, len } => {
                let ring = self
                    .pool
                    .ring
                    .as_ref()
                    .expect("a ring buffer without a ring");
                // SAFETY: the kernel wrote `len` bytes into buffer `bid`, which is lent to
                // this value alone until it drops.
                unsafe { std::slice::from_raw_parts(ring.buf_ptr(*bid), *len as usize) }
            }
        }
    }
}

impl std::ops::DerefMut for LentBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.kind {
            Kind::Heap(v) => v,
            Kind::Ring { bid, len } => {
                let ring = self
                    .pool
                    .ring
                    .as_ref()
                    .expect("a ring buffer without a ring");
                // SAFETY: as in `deref`; `&mut self` makes the access exclusive.
                unsafe { std::slice::from_raw_parts_mut(ring.buf_ptr(*bid), *len as usize) }
            }
        }
    }
}

impl Drop for LentBuf {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.kind, Kind::Heap(Vec::new())) {
            Kind::Ring { bid, .. } => {
                if let Some(ring) = &self.pool.ring {
                    ring.recycle(bid);
                }
            }
            Kind::Heap(v) => self.pool.give_back(v),
        }
    }
}

impl std::fmt::Debug for LentBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LentBuf")
            .field("len", &self.len())
            .field("from_ring", &self.is_from_ring())
            .finish()
    }
}

impl crate::buf::sealed::Sealed for LentBuf {}

// The bytes stay put when the value moves: a ring buffer is a fixed slot of the pool's
// mapping, which the `Rc` keeps alive; a heap buffer is a `Vec`'s allocation.
impl crate::buf::IoBuf for LentBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.len()
    }

    fn bytes_total(&self) -> usize {
        self.len()
    }
}
