//! File I/O: ringloop on io_uring, ringloop on epoll (whose file operations run on the driver's
//! blocking threads), and tokio (current_thread, whose `tokio::fs` runs every call on its
//! blocking pool), side by side in one process.
//!
//! Run it with
//!
//! ```text
//! cargo bench --bench fs
//! ```
//!
//! Each ringloop variant runs twice per repetition, on a runtime built with
//! `.driver(DriverKind::IoUring)` ("ringloop io_uring") and one built with
//! `.driver(DriverKind::Epoll)` ("ringloop epoll"); both are chosen explicitly, so
//! `RINGLOOP_DRIVER` does not change them. Every variant of a workload runs once per
//! repetition, in turn (ringloop io_uring, ringloop epoll, tokio, ..., ringloop io_uring, ...),
//! so that drift of the machine hits all alike. The table printed at the end holds the MEDIAN
//! over the repetitions, one row per variant and driver, and each row's ratio to the main
//! ringloop row of each driver (columns `io_uring / row` and `epoll / row`; above 1.0 means
//! that ringloop driver is faster). Below it, one verdict per workload and driver. Progress
//! goes to stderr, one line per finished run.
//!
//! Environment:
//!
//! - `BENCH_REPS=n`: repetitions (default 5).
//! - `BENCH_SCALE=f`: multiply every count and file size by `f` (e.g. `0.1` for a quick run;
//!   files are at least 4 MiB).
//! - `BENCH_ONLY=random-read|copy`: run one workload.
//!
//! Without the `--bench` flag (under `cargo test --all-targets`) it runs a smoke test instead:
//! one repetition at 1% of the counts.
//!
//! Files live in a fresh directory under `std::env::temp_dir()`, removed at the end. Before
//! the first run each source file is read once, so that its pages are cached: both workloads
//! measure the I/O path (syscalls, thread hand-offs, copies), not the disk.
//!
//! Workloads:
//!
//! 1. `random-read`: 500,000 reads of 4 KiB at random 4 KiB-aligned offsets (xorshift, fixed
//!    seeds) of a 256 MiB file, 64 in flight. Metric: IOPS.
//!    - ringloop (each driver): 64 tasks sharing one `File` (`Rc<File>`), each reading in a
//!      loop with `read_at` into its own reused `Vec`.
//!    - tokio fs::File: 64 tasks, each with its own `tokio::fs::File` (a seek and a read need
//!      the file to themselves), doing `seek` + `read_exact`: each is a `spawn_blocking` hop.
//!    - tokio spawn_blocking pread: 64 tasks each awaiting `spawn_blocking(pread)` in a loop:
//!      one hop per read, the best a tokio program can do without io_uring.
//!    - informative: a plain synchronous `pread` loop on one thread (no runtime, no overlap).
//!
//!    - ringloop `read_lent_at` (each driver): the same 64 tasks, each read into a buffer the
//!      loop lends (on io_uring one of its registered buffers, read with `READ_FIXED`),
//!      dropped after its length is checked.
//!
//!    Goals: ringloop's IOPS at least 7 times the best tokio variant's on io_uring, at least
//!    the best tokio variant's on epoll; `read_lent_at` on io_uring at least 1.1 times the
//!    synchronous `pread` loop.
//! 2. `copy`: copies a 1 GiB file to a new file in 256 KiB chunks (the destination is deleted
//!    after each run, outside the timing). Metric: MiB/s.
//!    - ringloop (each driver): 4 tasks, task `t` copying chunks `t, t + 4, t + 8, ...`
//!      (`read_exact_at` then `write_all_at`): up to 4 reads or writes in flight.
//!    - informative: ringloop (each driver) with one read-then-write loop (one operation in
//!      flight).
//!    - tokio fs::File: a `read` / `write_all` loop with the same buffer size, then `flush`.
//!    - informative: `tokio::fs::copy` (`std::fs::copy` on the blocking pool, which lets the
//!      kernel copy with `copy_file_range`: no user-space copy at all).
//!
//!    Goal, on each driver: ringloop at least as fast as the tokio `fs::File` loop.

mod common;
use common::{DRIVERS, driver_name, median, ringloop_rt_on, tokio_rt};
use ringloop::DriverKind;

use std::fs::File as StdFile;
use std::io::{Read, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

const BLOCK: usize = 4096;
const IN_FLIGHT: usize = 64;
const CHUNK: usize = 256 * 1024;
const COPY_TASKS: usize = 4;
const MIB: f64 = 1024.0 * 1024.0;
/// Width of the variant column.
const LABEL: usize = 48;

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

/// xorshift64*: the offsets of the random reads, the same sequence for every variant.
struct Rng(u64);

impl Rng {
    fn new(seed: usize) -> Rng {
        Rng((seed as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A random 4 KiB-aligned offset of a file of `blocks` blocks.
    fn offset(&mut self, blocks: u64) -> u64 {
        (self.next() % blocks) * BLOCK as u64
    }
}

/// The bench's files; the directory is removed when this drops.
struct Setup {
    dir: PathBuf,
    /// The random-read file and its size.
    rr_path: PathBuf,
    rr_len: u64,
    /// The copy source and its size.
    copy_src: PathBuf,
    copy_len: u64,
    /// Reads per random-read run (a multiple of IN_FLIGHT).
    reads: usize,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Setup {
    fn copy_dst(&self) -> PathBuf {
        self.dir.join("copy-dst")
    }
}

/// Writes `len` bytes of a pattern to `path`, then reads it once to warm the page cache.
fn make_file(path: &Path, len: u64) {
    let mut f = StdFile::create(path).expect("create bench file");
    let mut chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    while written < len {
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = ((written as usize + i) % 251) as u8;
        }
        let n = (len - written).min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).expect("write bench file");
        written += n as u64;
    }
    f.sync_all().expect("sync bench file");
    warm(path);
}

/// Reads `path` once so that its pages are in the page cache.
fn warm(path: &Path) {
    let mut f = StdFile::open(path).expect("open bench file");
    let mut buf = vec![0u8; 1 << 20];
    while f.read(&mut buf).expect("read bench file") > 0 {}
}

/// Checks the copy's result: same size, same first, middle and last block.
fn check_copy(setup: &Setup) {
    let (src, dst) = (
        StdFile::open(&setup.copy_src).unwrap(),
        StdFile::open(setup.copy_dst()).unwrap(),
    );
    assert_eq!(dst.metadata().unwrap().len(), setup.copy_len, "copy size");
    for pos in [0, setup.copy_len / 2, setup.copy_len - BLOCK as u64] {
        let (mut a, mut b) = (vec![0u8; BLOCK], vec![0u8; BLOCK]);
        src.read_exact_at(&mut a, pos).unwrap();
        dst.read_exact_at(&mut b, pos).unwrap();
        assert!(a == b, "copy differs at {pos}");
    }
}

// ---------------------------------------------------------------------------------------------
// 1. random-read
// ---------------------------------------------------------------------------------------------

fn rr_ringloop(kind: DriverKind, s: &Setup) -> f64 {
    rr_ringloop_with(kind, s, false)
}

/// As `rr_ringloop`, reading with `read_lent_at` (registered buffers on io_uring), each buffer
/// dropped once its length is checked.
fn rr_ringloop_lent(kind: DriverKind, s: &Setup) -> f64 {
    rr_ringloop_with(kind, s, true)
}

fn rr_ringloop_with(kind: DriverKind, s: &Setup, lent: bool) -> f64 {
    let rt = ringloop_rt_on(kind);
    let (path, blocks, per_task) = (
        s.rr_path.clone(),
        s.rr_len / BLOCK as u64,
        s.reads / IN_FLIGHT,
    );
    rt.block_on(async move {
        let file = Rc::new(ringloop::fs::File::open(&path).await.unwrap());
        let start = Instant::now();
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|t| {
                let file = file.clone();
                ringloop::spawn(async move {
                    let mut rng = Rng::new(t);
                    let mut buf = Vec::with_capacity(BLOCK);
                    for _ in 0..per_task {
                        let pos = rng.offset(blocks);
                        if lent {
                            let lent = file.read_lent_at(pos, BLOCK).await.unwrap();
                            assert_eq!(lent.len(), BLOCK);
                            continue;
                        }
                        let (res, b) = file.read_at(buf, pos).await.into_parts();
                        assert_eq!(res.unwrap(), BLOCK);
                        buf = b;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        (per_task * IN_FLIGHT) as f64 / start.elapsed().as_secs_f64()
    })
}

fn rr_tokio_fs(s: &Setup) -> f64 {
    let rt = tokio_rt();
    let (path, blocks, per_task) = (
        s.rr_path.clone(),
        s.rr_len / BLOCK as u64,
        s.reads / IN_FLIGHT,
    );
    rt.block_on(async move {
        let mut files = Vec::new();
        for _ in 0..IN_FLIGHT {
            files.push(tokio::fs::File::open(&path).await.unwrap());
        }
        let start = Instant::now();
        let tasks: Vec<_> = files
            .into_iter()
            .enumerate()
            .map(|(t, mut file)| {
                tokio::spawn(async move {
                    let mut rng = Rng::new(t);
                    let mut buf = vec![0u8; BLOCK];
                    for _ in 0..per_task {
                        file.seek(SeekFrom::Start(rng.offset(blocks)))
                            .await
                            .unwrap();
                        file.read_exact(&mut buf).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        (per_task * IN_FLIGHT) as f64 / start.elapsed().as_secs_f64()
    })
}

fn rr_tokio_pread(s: &Setup) -> f64 {
    let rt = tokio_rt();
    let (blocks, per_task) = (s.rr_len / BLOCK as u64, s.reads / IN_FLIGHT);
    let file = Arc::new(StdFile::open(&s.rr_path).unwrap());
    rt.block_on(async move {
        let start = Instant::now();
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|t| {
                let file = file.clone();
                tokio::spawn(async move {
                    let mut rng = Rng::new(t);
                    let mut buf = vec![0u8; BLOCK];
                    for _ in 0..per_task {
                        let (file, off) = (file.clone(), rng.offset(blocks));
                        buf = tokio::task::spawn_blocking(move || {
                            file.read_exact_at(&mut buf, off).unwrap();
                            buf
                        })
                        .await
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        (per_task * IN_FLIGHT) as f64 / start.elapsed().as_secs_f64()
    })
}

fn rr_sync(s: &Setup) -> f64 {
    let (blocks, per_task) = (s.rr_len / BLOCK as u64, s.reads / IN_FLIGHT);
    let file = StdFile::open(&s.rr_path).unwrap();
    let mut buf = vec![0u8; BLOCK];
    let start = Instant::now();
    for t in 0..IN_FLIGHT {
        let mut rng = Rng::new(t);
        for _ in 0..per_task {
            file.read_exact_at(&mut buf, rng.offset(blocks)).unwrap();
        }
    }
    (per_task * IN_FLIGHT) as f64 / start.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// 2. copy
// ---------------------------------------------------------------------------------------------

/// MiB/s of a copy that took `elapsed`, after checking and deleting the destination.
fn copy_done(s: &Setup, elapsed: Duration) -> f64 {
    check_copy(s);
    std::fs::remove_file(s.copy_dst()).unwrap();
    s.copy_len as f64 / MIB / elapsed.as_secs_f64()
}

fn copy_ringloop(kind: DriverKind, s: &Setup) -> f64 {
    let rt = ringloop_rt_on(kind);
    let (src, dst, len) = (s.copy_src.clone(), s.copy_dst(), s.copy_len);
    let elapsed = rt.block_on(async move {
        let start = Instant::now();
        let from = Rc::new(ringloop::fs::File::open(&src).await.unwrap());
        let to = Rc::new(ringloop::fs::File::create(&dst).await.unwrap());
        let chunks = len.div_ceil(CHUNK as u64);
        let tasks: Vec<_> = (0..COPY_TASKS as u64)
            .map(|t| {
                let (from, to) = (from.clone(), to.clone());
                ringloop::spawn(async move {
                    let mut buf = Vec::with_capacity(CHUNK);
                    for chunk in (t..chunks).step_by(COPY_TASKS) {
                        let pos = chunk * CHUNK as u64;
                        // The last chunk may be short: read_exact_at's EOF is fine there.
                        let (res, b) = from.read_exact_at(buf, pos).await.into_parts();
                        if let Err(e) = res {
                            assert!(e.kind() == std::io::ErrorKind::UnexpectedEof);
                            assert_eq!(pos + b.len() as u64, len);
                        }
                        let (res, b) = to.write_all_at(b, pos).await.into_parts();
                        res.unwrap();
                        buf = b;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        start.elapsed()
    });
    copy_done(s, elapsed)
}

fn copy_ringloop_serial(kind: DriverKind, s: &Setup) -> f64 {
    let rt = ringloop_rt_on(kind);
    let (src, dst) = (s.copy_src.clone(), s.copy_dst());
    let elapsed = rt.block_on(async move {
        let start = Instant::now();
        let from = ringloop::fs::File::open(&src).await.unwrap();
        let to = ringloop::fs::File::create(&dst).await.unwrap();
        let mut buf = Vec::with_capacity(CHUNK);
        let mut pos = 0u64;
        loop {
            let (res, b) = from.read_at(buf, pos).await.into_parts();
            let n = res.unwrap();
            if n == 0 {
                break;
            }
            let (res, b) = to.write_all_at(b, pos).await.into_parts();
            res.unwrap();
            pos += n as u64;
            buf = b;
        }
        start.elapsed()
    });
    copy_done(s, elapsed)
}

fn copy_tokio(s: &Setup) -> f64 {
    let rt = tokio_rt();
    let (src, dst) = (s.copy_src.clone(), s.copy_dst());
    let elapsed = rt.block_on(async move {
        let start = Instant::now();
        let mut from = tokio::fs::File::open(&src).await.unwrap();
        let mut to = tokio::fs::File::create(&dst).await.unwrap();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = from.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            to.write_all(&buf[..n]).await.unwrap();
        }
        to.flush().await.unwrap();
        start.elapsed()
    });
    copy_done(s, elapsed)
}

fn copy_tokio_fs_copy(s: &Setup) -> f64 {
    let rt = tokio_rt();
    let (src, dst) = (s.copy_src.clone(), s.copy_dst());
    let elapsed = rt.block_on(async move {
        let start = Instant::now();
        tokio::fs::copy(&src, &dst).await.unwrap();
        start.elapsed()
    });
    copy_done(s, elapsed)
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Which row a variant's median is compared against for the goal.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    /// The ringloop row (one per driver) the ratios are taken against.
    Ours,
    /// A tokio variant counted for the goal (the best of them is the reference).
    Theirs,
    /// Shown for information only.
    Info,
}

/// How a variant runs.
#[derive(Clone, Copy)]
enum Run {
    /// On ringloop, once per driver: one row each, `{driver}` in the label names it.
    Ringloop(fn(DriverKind, &Setup) -> f64),
    /// Once: tokio, or no runtime at all.
    Plain(fn(&Setup) -> f64),
}

struct Variant {
    label: &'static str,
    role: Role,
    run: Run,
}

/// One row of a workload: a variant, on one driver if it is a ringloop one.
struct Row {
    label: String,
    role: Role,
    driver: Option<DriverKind>,
    run: Run,
}

impl Row {
    fn run(&self, s: &Setup) -> f64 {
        match (self.run, self.driver) {
            (Run::Ringloop(f), Some(kind)) => f(kind, s),
            (Run::Plain(f), _) => f(s),
            (Run::Ringloop(_), None) => unreachable!("a ringloop row has a driver"),
        }
    }
}

struct Workload {
    name: &'static str,
    unit: &'static str,
    /// Goal for each driver (in `DRIVERS`' order): its ringloop row's metric / the best tokio
    /// variant's at least this.
    goals: [f64; DRIVERS.len()],
    /// One more goal, between two rows: (row, reference row, at least this ratio).
    versus: Option<(&'static str, &'static str, f64)>,
    variants: Vec<Variant>,
}

impl Workload {
    /// The rows, in the order they run: each ringloop variant once per driver.
    fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for v in &self.variants {
            match v.run {
                Run::Ringloop(_) => rows.extend(DRIVERS.iter().map(|&d| Row {
                    label: v.label.replace("{driver}", driver_name(d)),
                    role: v.role,
                    driver: Some(d),
                    run: v.run,
                })),
                Run::Plain(_) => rows.push(Row {
                    label: v.label.to_string(),
                    role: v.role,
                    driver: None,
                    run: v.run,
                }),
            }
        }
        rows
    }
}

fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "random-read",
            unit: "IOPS",
            goals: [7.0, 1.0],
            versus: Some((
                "ringloop io_uring read_lent_at, 64 in flight",
                "(info) sync pread, 1 thread",
                1.1,
            )),
            variants: vec![
                Variant {
                    label: "ringloop {driver} read_at, 64 in flight",
                    role: Role::Ours,
                    run: Run::Ringloop(rr_ringloop),
                },
                Variant {
                    label: "ringloop {driver} read_lent_at, 64 in flight",
                    role: Role::Info,
                    run: Run::Ringloop(rr_ringloop_lent),
                },
                Variant {
                    label: "tokio fs::File seek+read, 64 files",
                    role: Role::Theirs,
                    run: Run::Plain(rr_tokio_fs),
                },
                Variant {
                    label: "tokio spawn_blocking pread, 64",
                    role: Role::Theirs,
                    run: Run::Plain(rr_tokio_pread),
                },
                Variant {
                    label: "(info) sync pread, 1 thread",
                    role: Role::Info,
                    run: Run::Plain(rr_sync),
                },
            ],
        },
        Workload {
            name: "copy",
            unit: "MiB/s",
            goals: [1.0, 1.0],
            versus: None,
            variants: vec![
                Variant {
                    label: "ringloop {driver} read_at/write_all_at, 4 tasks",
                    role: Role::Ours,
                    run: Run::Ringloop(copy_ringloop),
                },
                Variant {
                    label: "(info) ringloop {driver}, 1 read/write loop",
                    role: Role::Info,
                    run: Run::Ringloop(copy_ringloop_serial),
                },
                Variant {
                    label: "tokio fs::File read/write_all",
                    role: Role::Theirs,
                    run: Run::Plain(copy_tokio),
                },
                Variant {
                    label: "(info) tokio::fs::copy",
                    role: Role::Info,
                    run: Run::Plain(copy_tokio_fs_copy),
                },
            ],
        },
    ]
}

/// Free bytes on the file system holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain data; all-zero bytes are a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid statvfs to fill.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

fn main() {
    let common::Settings {
        reps, scale, only, ..
    } = common::settings();

    let scaled = |n: f64, min: f64| (n * scale).max(min);
    let rr_len = (scaled(256.0 * MIB, 4.0 * MIB) as u64) / BLOCK as u64 * BLOCK as u64;
    let reads = (scaled(500_000.0, IN_FLIGHT as f64) as usize) / IN_FLIGHT * IN_FLIGHT;
    let mut copy_len = scaled(1024.0 * MIB, 4.0 * MIB) as u64;

    let tmp = std::env::temp_dir();
    let free = free_bytes(&tmp).unwrap_or(u64::MAX);
    if free < 3 << 30 && copy_len > 256 << 20 {
        eprintln!(
            "only {:.1} GiB free under {}: the copy uses 256 MiB instead of {} MiB",
            free as f64 / MIB / 1024.0,
            tmp.display(),
            copy_len >> 20
        );
        copy_len = 256 << 20;
    }
    let dir = tmp.join(format!("ringloop-bench-fs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the bench directory");
    let setup = Setup {
        rr_path: dir.join("random-read"),
        rr_len,
        copy_src: dir.join("copy-src"),
        copy_len,
        reads,
        dir,
    };
    let workloads: Vec<Workload> = workloads()
        .into_iter()
        .filter(|w| only.as_deref().is_none_or(|o| o == w.name))
        .collect();
    eprintln!(
        "ringloop (io_uring, epoll) vs tokio current_thread, file I/O: {reps} repetitions, scale {scale}; \
         random-read: {reads} reads of a {} MiB file; copy: {} MiB; files in {}",
        rr_len >> 20,
        copy_len >> 20,
        setup.dir.display()
    );
    for w in &workloads {
        let t = Instant::now();
        match w.name {
            "random-read" => make_file(&setup.rr_path, setup.rr_len),
            _ => make_file(&setup.copy_src, setup.copy_len),
        }
        eprintln!(
            "[{}] file created and cached in {:.1?}",
            w.name,
            t.elapsed()
        );
    }

    let mut table: Vec<String> = Vec::new();
    let mut verdicts: Vec<String> = Vec::new();
    for w in &workloads {
        let rows = w.rows();
        let mut results: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
        for rep in 0..reps {
            for (i, row) in rows.iter().enumerate() {
                let value = row.run(&setup);
                eprintln!(
                    "[{}] rep {}/{reps} {:<LABEL$} {:>12.0} {}",
                    w.name,
                    rep + 1,
                    row.label,
                    value,
                    w.unit
                );
                results[i].push(value);
            }
        }
        let medians: Vec<f64> = results.iter().map(|r| median(r)).collect();
        // Each driver's ringloop row: the reference of its ratio column.
        let ours: Vec<(usize, f64)> = DRIVERS
            .iter()
            .map(|&d| {
                rows.iter()
                    .position(|r| r.role == Role::Ours && r.driver == Some(d))
                    .map(|i| (i, medians[i]))
                    .expect("a ringloop row per driver")
            })
            .collect();
        for (i, (row, m)) in rows.iter().zip(&medians).enumerate() {
            let ratios: Vec<String> = ours
                .iter()
                .map(|&(o, ours)| {
                    let ratio = if o == i {
                        "-".to_string()
                    } else {
                        format!("{:.2}", ours / m)
                    };
                    format!(" {ratio:>14} |")
                })
                .collect();
            table.push(format!(
                "| {:<12} | {:<LABEL$} | {:>12.0} {:<6} |{}",
                w.name,
                row.label,
                m,
                w.unit,
                ratios.concat()
            ));
        }
        let best = rows
            .iter()
            .zip(&medians)
            .filter(|(r, _)| r.role == Role::Theirs)
            .map(|(_, &m)| m)
            .fold(0.0, f64::max);
        for ((&d, &(_, ours)), goal) in DRIVERS.iter().zip(&ours).zip(w.goals) {
            let ratio = ours / best;
            verdicts.push(format!(
                "{}: ringloop {} / best tokio = {ratio:.2} (goal >= {goal}): {}",
                w.name,
                driver_name(d),
                if ratio >= goal { "met" } else { "NOT met" }
            ));
        }
        if let Some((mine, reference, goal)) = w.versus {
            let median_of = |label: &str| {
                rows.iter()
                    .zip(&medians)
                    .find(|(r, _)| r.label == label)
                    .map(|(_, &m)| m)
                    .unwrap_or_else(|| panic!("no row {label:?}"))
            };
            let ratio = median_of(mine) / median_of(reference);
            verdicts.push(format!(
                "{}: {mine} / {reference} = {ratio:.2} (goal >= {goal}): {}",
                w.name,
                if ratio >= goal { "met" } else { "NOT met" }
            ));
        }
    }

    println!();
    let ratio_heads: Vec<String> = DRIVERS
        .iter()
        .map(|&d| format!(" {:>14} |", format!("{} / row", driver_name(d))))
        .collect();
    println!(
        "| {:<12} | {:<LABEL$} | {:>19} |{}",
        "workload",
        "variant",
        "median",
        ratio_heads.concat()
    );
    println!(
        "|{:-<14}|{:-<w$}|{:-<21}|{}",
        "",
        "",
        "",
        format!("{:-<16}|", "").repeat(DRIVERS.len()),
        w = LABEL + 2
    );
    for row in &table {
        println!("{row}");
    }
    println!();
    for v in &verdicts {
        println!("{v}");
    }
}
