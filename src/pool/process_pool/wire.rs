//! What crosses the socket between the pool's manager and a worker process, and how a worker
//! finds a job's function.
//!
//! Frames are `len: u32 LE` then `len` bytes, whose first byte is the kind:
//!
//! | kind          | direction        | rest of the frame                                   |
//! |---------------|------------------|-----------------------------------------------------|
//! | `HELLO`       | worker → manager | `pid: u32`, `fingerprint: u64` (after the initializer ran) |
//! | `INIT_FAILED` | worker → manager | the initializer's panic message (then it exits)     |
//! | `JOB`         | manager → worker | `call: u64`, `func: u64` (code offsets), the argument (postcard) |
//! | `RESULT`      | worker → manager | `status: u8`, the result (postcard) or a message   |
//!
//! A worker runs its jobs one at a time in the order they arrive and answers each with one
//! `RESULT`, so results match jobs by order and carry no id.
//!
//! # Functions by address
//!
//! A worker is the same executable (`/proc/self/exe`), so a function sits at the same offset
//! from any other function of the binary in both processes; only the load address differs
//! (ASLR). A job names its function by its offset from [`anchor`], and its *trampoline* (the
//! instance of [`call_one`] or [`call_chunk`] for the job's argument and result types) the
//! same way. [`fingerprint`] (the offset of a second function) is checked at start-up, so a
//! worker that is somehow a different binary refuses to serve instead of jumping anywhere.

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::pool::error::panic_message;

pub(super) const HELLO: u8 = 0;
pub(super) const JOB: u8 = 1;
pub(super) const RESULT: u8 = 2;
pub(super) const INIT_FAILED: u8 = 3;

/// A `RESULT`'s status: the value follows.
pub(super) const STATUS_OK: u8 = 0;
/// The job panicked: its message follows.
pub(super) const STATUS_PANIC: u8 = 1;
/// The argument or the result could not be (de)serialized: the message follows.
pub(super) const STATUS_FAILED: u8 = 2;

/// Bytes before a `JOB`'s argument: length, kind, call, func.
pub(super) const JOB_HEADER: usize = 4 + 1 + 8 + 8;

/// A trampoline: runs the function at the absolute address `func` on the serialized argument,
/// appends the serialized result (or a message) to `out`, and returns the status.
pub(super) type Call = fn(func: usize, arg: &[u8], out: &mut Vec<u8>) -> u8;

/// The fixed point code offsets are measured from.
#[inline(never)]
fn anchor() -> u64 {
    0x005e_ed0f_a0c4
}

/// The offset of the code at `addr` from [`anchor`].
pub(super) fn offset_of(addr: usize) -> u64 {
    addr.wrapping_sub(anchor as *const () as usize) as u64
}

/// The address in this process of the code at `offset` from [`anchor`].
pub(super) fn address_of(offset: u64) -> usize {
    (anchor as *const () as usize).wrapping_add(offset as usize)
}

/// `true` if the code at `addr` belongs to the same loaded object (the executable, with its
/// statically linked crates) as [`anchor`]: only such code is at the same offset in a worker.
/// A function of a library loaded separately (`dlopen`, a Rust `dylib`) is not. Checked with
/// `dladdr`, remembered for the last few addresses on this thread.
pub(super) fn in_executable(addr: usize) -> bool {
    use std::cell::Cell;
    use std::sync::OnceLock;
    thread_local! {
        static CHECKED: Cell<[usize; 8]> = const { Cell::new([0; 8]) };
    }
    fn object_base(addr: usize) -> Option<usize> {
        // SAFETY: Dl_info is plain data (pointers and integers): all-zero bytes are valid.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: dladdr only reads the address and writes into the live local.
        let found = unsafe { libc::dladdr(addr as *const libc::c_void, &raw mut info) };
        (found != 0).then_some(info.dli_fbase as usize)
    }
    static ANCHOR_BASE: OnceLock<Option<usize>> = OnceLock::new();
    let checked = CHECKED.get();
    if checked.contains(&addr) {
        return true;
    }
    let anchor = *ANCHOR_BASE.get_or_init(|| object_base(anchor as *const () as usize));
    // Where dladdr knows nothing (a static binary), there is only one object anyway.
    let ok = anchor.is_none() || object_base(addr) == anchor;
    if ok {
        let mut next = checked;
        next.rotate_right(1);
        next[0] = addr;
        CHECKED.set(next);
    }
    ok
}

/// Identifies the binary's layout: the offset of this function from [`anchor`].
#[inline(never)]
pub(super) fn fingerprint() -> u64 {
    offset_of(fingerprint as *const () as usize) ^ anchor()
}

/// The trampoline for a job `fn(A) -> R`.
pub(super) fn call_one<A: DeserializeOwned, R: Serialize>(
    func: usize,
    arg: &[u8],
    out: &mut Vec<u8>,
) -> u8 {
    let arg: A = match postcard::from_bytes(arg) {
        Ok(a) => a,
        Err(e) => return message(out, format!("cannot deserialize the job's argument: {e}")),
    };
    // SAFETY: `func` is the address in this process of a `fn(A) -> R`: the parent took the
    // offset from a value of exactly that type, sent it with this trampoline's offset (the
    // instance for the same `A` and `R`), and the worker checked it is the same binary.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(func) };
    match catch_unwind(AssertUnwindSafe(|| f(arg))) {
        Ok(r) => encode(out, &r),
        Err(payload) => {
            out.extend_from_slice(panic_message(&*payload).as_bytes());
            STATUS_PANIC
        }
    }
}

/// What a `map` chunk's job returns: every item's value, or (if one panicked) each item's
/// value or panic message. The first is what nearly every chunk sends, one value per item.
pub(super) type ChunkResult<R> = Result<Vec<R>, Vec<Result<R, String>>>;

/// The trampoline for a `map` chunk: `f` over each item, each panic kept apart.
pub(super) fn call_chunk<A: DeserializeOwned, R: Serialize>(
    func: usize,
    arg: &[u8],
    out: &mut Vec<u8>,
) -> u8 {
    let items: Vec<A> = match postcard::from_bytes(arg) {
        Ok(a) => a,
        Err(e) => return message(out, format!("cannot deserialize the job's argument: {e}")),
    };
    // SAFETY: as in `call_one`: `func` is a `fn(A) -> R` of this binary.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(func) };
    let n = items.len();
    let mut values: Vec<R> = Vec::with_capacity(n);
    let mut mixed: Option<Vec<Result<R, String>>> = None;
    for a in items {
        let r = catch_unwind(AssertUnwindSafe(|| f(a))).map_err(|p| panic_message(&*p));
        match (&mut mixed, r) {
            (None, Ok(v)) => values.push(v),
            (None, Err(msg)) => {
                let mut all: Vec<Result<R, String>> = Vec::with_capacity(n);
                all.extend(values.drain(..).map(Ok));
                all.push(Err(msg));
                mixed = Some(all);
            }
            (Some(all), r) => all.push(r),
        }
    }
    let result: ChunkResult<R> = match mixed {
        None => Ok(values),
        Some(all) => Err(all),
    };
    encode(out, &result)
}

fn encode<R: Serialize>(out: &mut Vec<u8>, r: &R) -> u8 {
    match postcard::to_allocvec(r) {
        Ok(v) => {
            out.extend_from_slice(&v);
            STATUS_OK
        }
        Err(e) => message(out, format!("cannot serialize the job's result: {e}")),
    }
}

fn message(out: &mut Vec<u8>, msg: String) -> u8 {
    out.extend_from_slice(msg.as_bytes());
    STATUS_FAILED
}

/// Starts a frame of `kind` in `out`; [`end_frame`] fills in its length.
pub(super) fn begin_frame(out: &mut Vec<u8>, kind: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    start
}

/// Writes the length of the frame begun at `start`.
pub(super) fn end_frame(out: &mut [u8], start: usize) {
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// Reads a little-endian `u64` at `at`.
pub(super) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
