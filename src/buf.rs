//! Owned buffers for the operations the kernel performs: `IoBuf` (the kernel reads from it),
//! `IoBufMut` (the kernel writes into it), `Slice` (a range of either), and `BufResult`.
//!
//! The base layer: the driver, below every other module, hands these buffers to the kernel;
//! `ringloop::io` re-exports them.
//!
//! An operation takes its buffer by value and gives it back with the result, so the buffer
//! is owned by the operation while the kernel may touch it (DESIGN.md section 3). The traits
//! are sealed: they are implemented only for types whose bytes live on the heap (or in
//! static memory) and so do not move when the buffer value is moved, which is what makes
//! handing their address to the kernel sound.

use std::ops::{Bound, RangeBounds};

/// The result of an operation that owned a buffer: the outcome and the buffer, back.
#[derive(Debug)]
#[must_use = "the buffer comes back with the result"]
pub struct BufResult<T, B>(pub std::io::Result<T>, pub B);

impl<T, B> BufResult<T, B> {
    /// Splits into `(result, buffer)`.
    pub fn into_parts(self) -> (std::io::Result<T>, B) {
        (self.0, self.1)
    }
}

impl<T, B> From<BufResult<T, B>> for (std::io::Result<T>, B) {
    fn from(r: BufResult<T, B>) -> Self {
        (r.0, r.1)
    }
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// A buffer the kernel may read from (writes, sends).
///
/// Implemented for `Vec<u8>`, `Box<[u8]>`, `&'static [u8]`, `&'static str`, and [`Slice`]s of
/// them. Sealed: see the module docs.
pub trait IoBuf: sealed::Sealed + 'static {
    /// Address of the first byte. Stays valid while the buffer lives, even if it is moved.
    fn stable_ptr(&self) -> *const u8;

    /// Number of initialized bytes: what a write sends.
    fn bytes_init(&self) -> usize;

    /// Total capacity in bytes: how much a read may fill.
    fn bytes_total(&self) -> usize;

    /// The initialized bytes.
    fn as_slice(&self) -> &[u8] {
        // SAFETY: the sealed implementations guarantee `bytes_init` initialized bytes at
        // `stable_ptr`, borrowed for as long as `self` is.
        unsafe { std::slice::from_raw_parts(self.stable_ptr(), self.bytes_init()) }
    }

    /// A view of `range` of the buffer (of its capacity, for reads; of its initialized
    /// bytes, for writes), owning the buffer; [`Slice::into_inner`] gives it back.
    ///
    /// # Panics
    ///
    /// If the range is out of bounds of the capacity.
    fn slice(self, range: impl RangeBounds<usize>) -> Slice<Self>
    where
        Self: Sized,
    {
        // `n + 1` must not wrap (`..=usize::MAX` would become `..0`): it is out of bounds.
        let past = |n: usize| {
            n.checked_add(1).unwrap_or_else(|| {
                panic!("ringloop: slice bound {n} + 1 out of bounds of a buffer")
            })
        };
        let begin = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => past(n),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => past(n),
            Bound::Excluded(&n) => n,
            Bound::Unbounded => self.bytes_total(),
        };
        assert!(
            begin <= end && end <= self.bytes_total(),
            "ringloop: slice {begin}..{end} out of bounds of a buffer of capacity {}",
            self.bytes_total()
        );
        Slice {
            buf: self,
            begin,
            end,
        }
    }
}

/// A buffer the kernel may write into (reads, receives).
pub trait IoBufMut: IoBuf {
    /// Address of the first byte, for writing. Stays valid while the buffer lives.
    fn stable_mut_ptr(&mut self) -> *mut u8;

    /// Records that a read put `n` bytes at the start of the buffer. For a `Vec<u8>` this sets
    /// its length to `n`.
    ///
    /// # Safety
    ///
    /// The first `n` bytes (at most `bytes_total()`) are initialized.
    unsafe fn set_init(&mut self, n: usize);
}

impl sealed::Sealed for Vec<u8> {}

impl IoBuf for Vec<u8> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.len()
    }

    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

impl IoBufMut for Vec<u8> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }

    unsafe fn set_init(&mut self, n: usize) {
        debug_assert!(n <= self.capacity());
        // SAFETY: the caller guarantees the first n bytes are initialized, n <= capacity.
        unsafe { self.set_len(n) };
    }
}

impl sealed::Sealed for Box<[u8]> {}

impl IoBuf for Box<[u8]> {
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

impl IoBufMut for Box<[u8]> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }

    unsafe fn set_init(&mut self, _n: usize) {
        // Always fully initialized.
    }
}

impl sealed::Sealed for &'static [u8] {}

impl IoBuf for &'static [u8] {
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

impl sealed::Sealed for &'static str {}

impl IoBuf for &'static str {
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

/// A range `begin..end` of an owned buffer; the operation sees only that range.
#[derive(Debug)]
pub struct Slice<B> {
    buf: B,
    begin: usize,
    end: usize,
}

impl<B> Slice<B> {
    /// Start of the range in the underlying buffer.
    pub fn begin(&self) -> usize {
        self.begin
    }

    /// End of the range in the underlying buffer.
    pub fn end(&self) -> usize {
        self.end
    }

    /// The underlying buffer.
    pub fn get_ref(&self) -> &B {
        &self.buf
    }

    /// Gives the underlying buffer back.
    pub fn into_inner(self) -> B {
        self.buf
    }
}

impl<B: IoBuf> sealed::Sealed for Slice<B> {}

impl<B: IoBuf> IoBuf for Slice<B> {
    fn stable_ptr(&self) -> *const u8 {
        // SAFETY: begin <= capacity (checked at construction), so the offset is in bounds.
        unsafe { self.buf.stable_ptr().add(self.begin) }
    }

    fn bytes_init(&self) -> usize {
        self.buf.bytes_init().clamp(self.begin, self.end) - self.begin
    }

    fn bytes_total(&self) -> usize {
        self.end - self.begin
    }
}

impl<B: IoBufMut> IoBufMut for Slice<B> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: as in `stable_ptr`.
        unsafe { self.buf.stable_mut_ptr().add(self.begin) }
    }

    unsafe fn set_init(&mut self, n: usize) {
        // Bytes before `begin` must already be initialized for the underlying buffer to
        // count them; grow its initialized prefix only when the read reached past it.
        if self.buf.bytes_init() >= self.begin && self.begin + n > self.buf.bytes_init() {
            // SAFETY: bytes [0, begin) were initialized and the read initialized
            // [begin, begin + n) (caller's contract).
            unsafe { self.buf.set_init(self.begin + n) };
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[should_panic(expected = "out of bounds")]
    fn an_inclusive_bound_of_usize_max_panics_instead_of_wrapping() {
        use super::IoBuf;
        let _ = Vec::<u8>::with_capacity(8).slice(..=usize::MAX);
    }

    use super::*;

    #[test]
    fn vec_reads_fill_from_zero_and_set_len() {
        let mut v = Vec::with_capacity(8);
        v.extend_from_slice(b"abc");
        assert_eq!(v.bytes_init(), 3);
        assert!(v.bytes_total() >= 8);
        let p = v.stable_mut_ptr();
        // SAFETY: 2 bytes written within capacity.
        unsafe {
            p.write(b'x');
            p.add(1).write(b'y');
            v.set_init(2);
        }
        assert_eq!(v, b"xy");
    }

    #[test]
    fn slices_view_a_range() {
        let v = b"hello world".to_vec();
        let s = v.slice(6..);
        assert_eq!(s.as_slice(), b"world");
        assert_eq!(s.bytes_total(), 5);
        let v = s.into_inner();
        let s = v.slice(..5);
        assert_eq!(s.as_slice(), b"hello");
        let mut v = Vec::with_capacity(10);
        v.extend_from_slice(b"ab");
        let mut s = v.slice(2..6);
        assert_eq!(s.bytes_init(), 0);
        let p = s.stable_mut_ptr();
        // SAFETY: 2 bytes written inside the slice's range.
        unsafe {
            p.write(b'c');
            p.add(1).write(b'd');
            s.set_init(2);
        }
        assert_eq!(s.into_inner(), b"abcd");
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn out_of_bounds_slices_panic() {
        let _ = b"abc".to_vec().slice(2..5);
    }
}
