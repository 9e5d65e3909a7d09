//! Lent buffers: the buffers of [`read_lent`](crate::net::TcpStream::read_lent), which the
//! loop picks when data arrives instead of the caller handing one in per read.
//!
//! A loop's [`BufPool`] (made on first use) lends stream receives' buffers from two sources:
//!
//! * On io_uring with multishot receive (Linux 6.0), a provided buffer ring
//!   (`uring::buf_ring`): the kernel picks a buffer only when bytes arrive, so an idle
//!   connection holds none, and one multishot receive serves every read of a stream.
//! * Elsewhere (epoll, older kernels, `Builder::recv_buffers(0, _)`), and whenever the ring is
//!   empty: heap buffers of the same size, kept on a free list for reuse.
//!
//! File reads ([`read_lent_at`](crate::fs::File::read_lent_at)) lend registered buffers on
//! io_uring (`uring::buf_ring::FixedBufs`, read with `READ_FIXED`), and heap buffers
//! elsewhere or when all are out.
//!
//! A [`LentBuf`] owns its buffer until it is dropped, which puts a ring buffer back in the ring
//! (no syscall), a registered buffer on its free list, and a heap buffer on the heap free list.
//! It is an [`IoBuf`](crate::io::IoBuf), so it can be written out as it is. An operation in
//! flight (the `READ_FIXED` that fills it, a write that sends it) owns it like any other
//! buffer.

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

use super::uring::buf_ring::{BufRing, FixedBufs};

/// Heap buffers kept for reuse by one loop.
const HEAP_KEPT: usize = 64;

/// The buffers one loop lends. See the module docs.
pub(crate) struct BufPool {
    /// The provided buffer ring, set up (or found impossible) on the first lent receive.
    ring: OnceCell<Option<BufRing>>,
    /// The registered file-read buffers, set up (or found impossible) on the first lent file
    /// read.
    fixed: OnceCell<Option<FixedBufs>>,
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
    /// A pool whose heap buffers (the lent receives' fallback) have `buf_size` bytes.
    pub(crate) fn new(buf_size: usize) -> BufPool {
        BufPool {
            ring: OnceCell::new(),
            fixed: OnceCell::new(),
            buf_size,
            heap: RefCell::default(),
        }
    }

    /// The provided buffer ring, set up by `init` on first use (`None`: there is none).
    pub(crate) fn ring_or_init(&self, init: impl FnOnce() -> Option<BufRing>) -> Option<&BufRing> {
        self.ring.get_or_init(init).as_ref()
    }

    /// The registered file-read buffers, set up by `init` on first use.
    pub(crate) fn fixed_or_init(
        &self,
        init: impl FnOnce() -> Option<FixedBufs>,
    ) -> Option<&FixedBufs> {
        self.fixed.get_or_init(init).as_ref()
    }

    fn fixed(&self) -> &FixedBufs {
        self.fixed
            .get()
            .and_then(Option::as_ref)
            .expect("ringloop: a registered buffer without registered buffers")
    }

    fn the_ring(&self) -> &BufRing {
        self.ring().expect("ringloop: a ring buffer without a ring")
    }

    /// The size of every buffer.
    pub(crate) fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// The provided buffer ring, if this loop has set one up.
    pub(crate) fn ring(&self) -> Option<&BufRing> {
        self.ring.get().and_then(Option::as_ref)
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
/// fall back to heap buffers (one receive each, and an allocation when the loop's free list
/// of heap buffers is empty), which never stalls. A stream whose reader stops reading holds
/// the buffers its receive filled meanwhile, at most 8 before the receive pauses.
pub struct LentBuf {
    pool: Rc<BufPool>,
    kind: Kind,
}

enum Kind {
    /// Ring buffer `bid`, holding `len` bytes.
    Ring { bid: u16, len: u32 },
    /// Registered buffer `index`, holding `len` bytes.
    Fixed { index: u16, len: u32 },
    /// A heap buffer from the pool (or an empty one, for end of stream).
    Heap(Vec<u8>),
}

impl LentBuf {
    /// Ring buffer `bid`, which a CQE just lent, holding `len` bytes.
    pub(crate) fn ring(pool: Rc<BufPool>, bid: u16, len: u32) -> LentBuf {
        let ring = pool.the_ring();
        debug_assert!(len as usize <= ring.buf_size());
        ring.lent(bid);
        LentBuf {
            pool,
            kind: Kind::Ring { bid, len },
        }
    }

    /// A free registered buffer, empty, if one is free (the caller reads into it).
    pub(crate) fn fixed(pool: &Rc<BufPool>) -> Option<LentBuf> {
        let index = pool.fixed.get()?.as_ref()?.take()?;
        Some(LentBuf {
            pool: Rc::clone(pool),
            kind: Kind::Fixed { index, len: 0 },
        })
    }

    /// For a read into a registered buffer: its index, first byte and size.
    pub(crate) fn fixed_target(&mut self) -> Option<(u16, *mut u8, usize)> {
        match self.kind {
            Kind::Fixed { index, .. } => {
                let bufs = self.pool.fixed();
                Some((index, bufs.buf_ptr(index), bufs.buf_size()))
            }
            _ => None,
        }
    }

    /// How many bytes a read into this (empty) buffer may fill.
    pub(crate) fn capacity_hint(&self) -> usize {
        match &self.kind {
            Kind::Heap(v) => v.capacity(),
            Kind::Ring { .. } => self.pool.the_ring().buf_size(),
            Kind::Fixed { .. } => self.pool.fixed().buf_size(),
        }
    }

    /// The kernel wrote `n` bytes into this registered buffer (at most its size).
    pub(crate) fn set_fixed_len(&mut self, n: usize) {
        let size = self.pool.fixed().buf_size();
        if let Kind::Fixed { len, .. } = &mut self.kind {
            *len = n.min(size) as u32;
        }
    }

    /// A heap buffer's bytes.
    pub(crate) fn heap(pool: Rc<BufPool>, buf: Vec<u8>) -> LentBuf {
        LentBuf {
            pool,
            kind: Kind::Heap(buf),
        }
    }

    /// Whether the buffer came from the kernel's provided buffer ring or from the loop's
    /// registered buffers (a diagnostic for tests and benchmarks; `false` on epoll and after
    /// fallbacks to heap buffers).
    #[doc(hidden)]
    pub fn is_from_ring(&self) -> bool {
        matches!(self.kind, Kind::Ring { .. } | Kind::Fixed { .. })
    }

    /// Drops the first `n` bytes (all of them if `n` is larger), keeping the rest.
    pub(crate) fn consume(&mut self, n: usize) {
        if let Kind::Heap(v) = &mut self.kind {
            v.drain(..n.min(v.len()));
            return;
        }
        let (p, len) = self.raw_parts();
        let n = n.min(len);
        // SAFETY: a ring or registered buffer lent to this value: bytes n..len are initialized
        // and move to the front, inside the same buffer.
        unsafe { std::ptr::copy(p.add(n), p, len - n) };
        if let Kind::Ring { len, .. } | Kind::Fixed { len, .. } = &mut self.kind {
            *len -= n as u32;
        }
    }

    /// The first byte and the length of the bytes held.
    fn raw_parts(&self) -> (*mut u8, usize) {
        match &self.kind {
            Kind::Heap(v) => (v.as_ptr().cast_mut(), v.len()),
            Kind::Ring { bid, len } => (self.pool.the_ring().buf_ptr(*bid), *len as usize),
            Kind::Fixed { index, len } => (self.pool.fixed().buf_ptr(*index), *len as usize),
        }
    }
}

impl std::ops::Deref for LentBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let (ptr, len) = self.raw_parts();
        // SAFETY: `len` initialized bytes at `ptr` (the kernel's count, or a Vec's length), in
        // a buffer lent to this value alone until it drops.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

impl std::ops::DerefMut for LentBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        if matches!(self.kind, Kind::Heap(_)) {
            let Kind::Heap(v) = &mut self.kind else {
                unreachable!()
            };
            return v;
        }
        let (ptr, len) = self.raw_parts();
        // SAFETY: as in `deref` (a ring or registered buffer: memory of the pool's mapping,
        // not borrowed from `self`); `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }
    }
}

impl Drop for LentBuf {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.kind, Kind::Heap(Vec::new())) {
            Kind::Ring { bid, .. } => self.pool.the_ring().recycle(bid),
            Kind::Fixed { index, .. } => self.pool.fixed().give_back(index),
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

// The bytes stay put when the value moves: a ring or registered buffer is a fixed slot of the
// pool's mappings, which the `Rc` keeps alive; a heap buffer is a `Vec`'s allocation.
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
