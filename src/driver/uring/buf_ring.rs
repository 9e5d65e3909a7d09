//! A provided buffer ring (`IORING_REGISTER_PBUF_RING`, Linux 5.19): buffers the kernel picks
//! at completion time for multishot receives, so a connection waiting for data holds none.
//!
//! Two anonymous mappings: the ring of `io_uring_buf` descriptors (registered with the kernel,
//! which reads them from its head; we write them at our tail) and the buffers themselves,
//! `count` of `size` bytes each. Buffer `bid` lives at `bufs + bid * size` for the life of the
//! mapping. A buffer is either *in the ring* (the kernel may fill it), or *lent*: the kernel
//! handed it out in a CQE (`IORING_CQE_F_BUFFER`) and it belongs to one `LentBuf` (or to the
//! completion being handled) until [`BufRing::recycle`] puts it back at the tail.
//!
//! [`FixedBufs`] are the other kind: registered buffers (`IORING_REGISTER_BUFFERS`) for file
//! reads with `READ_FIXED`, which spares the kernel mapping the user buffer on every read. They
//! are handed out last-freed first, so a busy loop keeps reading into cache-warm memory.
//!
//! Only the loop thread touches the ring (the `Cell`s make it `!Sync`). The mappings are
//! freed with `munmap` only after the io_uring is closed (the driver drops its ring before
//! its buffer pool), and not at all if an operation was left in flight at shutdown.

use std::cell::{Cell, RefCell};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

/// The layout of `struct io_uring_buf` (what `BufRingEntry` wraps), written field by field
/// through raw pointers: slot 0's `resv` is the ring's shared tail, which the kernel reads
/// while we write the slot, so no `&mut` to a whole slot may exist.
#[repr(C)]
struct RawEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

const _: () = assert!(size_of::<RawEntry>() == size_of::<BufRingEntry>());

/// An anonymous private mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).expect("mmap returned a null mapping");
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `Mapping::new` with this length and is unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The buffer ring of one loop's io_uring. See the module docs.
pub(crate) struct BufRing {
    ring: Mapping,
    bufs: Mapping,
    /// Buffer group id: the ring's name in SQEs.
    bgid: u16,
    count: u16,
    size: u32,
    /// Our copy of the tail (the kernel reads the shared one).
    tail: Cell<u16>,
    /// Buffers in the ring (not lent).
    free: Cell<u32>,
}

impl std::fmt::Debug for BufRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufRing")
            .field("count", &self.count)
            .field("size", &self.size)
            .field("free", &self.free.get())
            .finish()
    }
}

impl BufRing {
    /// Maps `count` buffers of `size` bytes (`count` a power of two, at most 32768), puts all
    /// of them in the ring, and registers it as group `bgid` with `submitter`'s ring.
    pub(crate) fn new(
        submitter: &io_uring::Submitter<'_>,
        bgid: u16,
        count: u16,
        size: u32,
    ) -> io::Result<BufRing> {
        assert!(count.is_power_of_two() && count <= 1 << 15 && size > 0);
        let ring = Mapping::new(usize::from(count) * size_of::<BufRingEntry>())?;
        let bufs = Mapping::new(usize::from(count) * size as usize)?;
        let this = BufRing {
            ring,
            bufs,
            bgid,
            count,
            size,
            tail: Cell::new(0),
            free: Cell::new(0),
        };
        for bid in 0..count {
            this.recycle(bid);
        }
        // SAFETY: the descriptor ring is a page-aligned mapping of `count` entries that lives
        // as long as this value, which the driver keeps until the io_uring itself is closed
        // (the buffers pointed to live as long).
        unsafe {
            submitter.register_buf_ring_with_flags(
                this.ring.ptr.as_ptr() as u64,
                count,
                bgid,
                0,
            )?;
        }
        Ok(this)
    }

    /// The group id to put in SQEs.
    pub(crate) fn bgid(&self) -> u16 {
        self.bgid
    }

    /// The size of every buffer.
    pub(crate) fn buf_size(&self) -> usize {
        self.size as usize
    }

    /// Buffers in the ring, ready for the kernel to fill.
    pub(crate) fn free(&self) -> u32 {
        self.free.get()
    }

    /// Buffers in all.
    pub(crate) fn count(&self) -> u16 {
        self.count
    }

    /// The kernel lent buffer `bid` (a CQE carried it).
    pub(crate) fn lent(&self, bid: u16) {
        debug_assert!(bid < self.count);
        self.free.set(self.free.get() - 1);
    }

    /// The first byte of buffer `bid`.
    pub(crate) fn buf_ptr(&self, bid: u16) -> *mut u8 {
        assert!(bid < self.count, "ringloop: buffer id {bid} out of range");
        // SAFETY: bid < count, so the offset stays inside the buffers' mapping.
        unsafe {
            self.bufs
                .ptr
                .as_ptr()
                .add(usize::from(bid) * self.size as usize)
        }
    }

    /// Puts buffer `bid` back at the ring's tail, for the kernel to fill again. The caller
    /// gives up every pointer into the buffer.
    pub(crate) fn recycle(&self, bid: u16) {
        let tail = self.tail.get();
        let slot = usize::from(tail & (self.count - 1));
        let base = self.ring.ptr.as_ptr().cast::<BufRingEntry>();
        let addr = self.buf_ptr(bid) as u64;
        let entry = base.wrapping_add(slot).cast::<RawEntry>();
        // SAFETY: `slot` < count: inside the mapping. The kernel reads a slot only between its
        // head and the published tail, and this one is past the tail. Three fields are written
        // through raw pointers, so slot 0's `resv` (the shared tail) is not even borrowed.
        unsafe {
            (&raw mut (*entry).addr).write(addr);
            (&raw mut (*entry).len).write(self.size);
            (&raw mut (*entry).bid).write(bid);
        }
        let tail = tail.wrapping_add(1);
        self.tail.set(tail);
        self.free.set(self.free.get() + 1);
        // SAFETY: `BufRingEntry::tail` points at the first slot's `resv`, the ring's shared
        // tail, a u16 the kernel reads with acquire ordering; it is aligned, inside the
        // mapping, and written only here (by the loop thread).
        unsafe {
            let shared = BufRingEntry::tail(base).cast_mut();
            AtomicU16::from_ptr(shared).store(tail, Ordering::Release);
        }
    }
}

/// Registered buffers for `READ_FIXED` (see the module docs): `count` of `size` bytes in one
/// mapping, registered as buffer indexes `0..count`.
pub(crate) struct FixedBufs {
    map: Mapping,
    size: u32,
    /// Indexes not lent, the last freed on top.
    free: RefCell<Vec<u16>>,
}

impl std::fmt::Debug for FixedBufs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixedBufs")
            .field("size", &self.size)
            .field("free", &self.free.borrow().len())
            .finish()
    }
}

impl FixedBufs {
    /// Maps `count` buffers of `size` bytes and registers them with `submitter`'s ring.
    pub(crate) fn new(
        submitter: &io_uring::Submitter<'_>,
        count: u16,
        size: u32,
    ) -> io::Result<FixedBufs> {
        assert!(count > 0 && size > 0);
        let map = Mapping::new(usize::from(count) * size as usize)?;
        let iovecs: Vec<libc::iovec> = (0..usize::from(count))
            .map(|i| libc::iovec {
                // SAFETY: i < count, so the offset stays inside the mapping.
                iov_base: unsafe { map.ptr.as_ptr().add(i * size as usize) }.cast(),
                iov_len: size as usize,
            })
            .collect();
        // SAFETY: every iovec lies inside the mapping, which lives as long as this value; the
        // driver keeps it until the io_uring is closed (which unregisters the buffers).
        unsafe { submitter.register_buffers(&iovecs)? };
        Ok(FixedBufs {
            map,
            size,
            free: RefCell::new((0..count).rev().collect()),
        })
    }

    /// The size of every buffer.
    pub(crate) fn buf_size(&self) -> usize {
        self.size as usize
    }

    /// A free buffer's index, the last freed first.
    pub(crate) fn take(&self) -> Option<u16> {
        self.free.borrow_mut().pop()
    }

    /// Buffer `index` is free again; the caller gives up every pointer into it.
    pub(crate) fn give_back(&self, index: u16) {
        self.free.borrow_mut().push(index);
    }

    /// The first byte of buffer `index`.
    pub(crate) fn buf_ptr(&self, index: u16) -> *mut u8 {
        let offset = usize::from(index) * self.size as usize;
        assert!(
            offset < self.map.len,
            "ringloop: fixed buffer {index} out of range"
        );
        // SAFETY: the offset is inside the mapping (checked).
        unsafe { self.map.ptr.as_ptr().add(offset) }
    }
}
