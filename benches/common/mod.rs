//! Helpers the benchmark binaries share (included with `mod common;`; not a benchmark itself).

#![allow(dead_code)] // Each benchmark uses its own subset.

pub mod echo;

use std::time::Duration;

use ringloop::DriverKind;

/// The drivers every ringloop workload runs on, in the order of the tables' columns.
pub const DRIVERS: [DriverKind; 2] = [DriverKind::IoUring, DriverKind::Epoll];

/// The name of a driver in tables, progress lines and child-process arguments.
pub fn driver_name(kind: DriverKind) -> &'static str {
    match kind {
        DriverKind::IoUring => "io_uring",
        DriverKind::Epoll => "epoll",
        DriverKind::Auto => "auto",
    }
}

/// A ringloop runtime on `kind`, chosen explicitly so that `RINGLOOP_DRIVER` cannot change it.
///
/// # Panics
///
/// If the runtime cannot be built on that driver.
pub fn ringloop_rt_on(kind: DriverKind) -> ringloop::Runtime {
    let rt = ringloop::Runtime::builder()
        .driver(kind)
        .build()
        .unwrap_or_else(|e| panic!("ringloop runtime on {}: {e}", driver_name(kind)));
    assert_eq!(rt.driver_kind(), kind, "the runtime's driver");
    rt
}

/// A ringloop sharded runtime of `shards` loops, all on `kind` (chosen explicitly, as above).
///
/// # Panics
///
/// If it cannot be built on that driver.
pub fn sharded_rt_on(kind: DriverKind, shards: usize) -> ringloop::ShardedRuntime {
    let rt = ringloop::ShardedRuntime::builder()
        .shards(shards)
        .driver(kind)
        .build()
        .unwrap_or_else(|e| panic!("ringloop sharded runtime on {}: {e}", driver_name(kind)));
    for shard in 0..shards {
        assert_eq!(
            rt.handle(shard).driver_kind(),
            kind,
            "shard {shard}'s driver"
        );
    }
    rt
}

/// A ringloop runtime on io_uring (explicitly: never epoll, whatever `RINGLOOP_DRIVER` says).
pub fn ringloop_rt() -> ringloop::Runtime {
    ringloop_rt_on(DriverKind::IoUring)
}

/// A ringloop runtime on epoll.
pub fn ringloop_epoll_rt() -> ringloop::Runtime {
    ringloop_rt_on(DriverKind::Epoll)
}

/// tokio's current-thread runtime, the side-by-side baseline.
pub fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The value of environment variable `name`, parsed; `None` if unset.
///
/// # Panics
///
/// If it is set to something that does not parse.
pub fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a valid value")),
    )
}

/// The settings every benchmark reads: whether it runs as a benchmark (`--bench`) or as the
/// smoke test `cargo test --all-targets` makes of it, `BENCH_REPS` (default 5, or 1 in a
/// smoke test), `BENCH_SCALE` (default 1, or 0.01) and `BENCH_ONLY` (unset: everything).
pub struct Settings {
    pub bench_mode: bool,
    pub reps: usize,
    pub scale: f64,
    pub only: Option<String>,
}

pub fn settings() -> Settings {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let reps: usize = env_parse("BENCH_REPS").unwrap_or(if bench_mode { 5 } else { 1 });
    let scale: f64 = env_parse("BENCH_SCALE").unwrap_or(if bench_mode { 1.0 } else { 0.01 });
    assert!(reps >= 1, "BENCH_REPS must be at least 1");
    assert!(scale > 0.0, "BENCH_SCALE must be positive");
    Settings {
        bench_mode,
        reps,
        scale,
        only: std::env::var("BENCH_ONLY").ok(),
    }
}

/// Median of the values that are not NaN (a run that could not measure); NaN if none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Pins the calling thread to CPU `cpu`, if the machine has at least two CPUs.
pub fn pin_to(cpu: usize) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is empty; the pointer and size are valid for the call.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// CPU time (user + system) of the calling thread.
pub fn thread_cpu() -> Duration {
    let (user, system) = thread_cpu_parts();
    user + system
}

/// CPU time of the calling thread: (user, system).
pub fn thread_cpu_parts() -> (Duration, Duration) {
    // SAFETY: a zeroed rusage is valid; getrusage fills it.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// Resident set size of this process in bytes, from /proc/self/status.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS value");
    kb * 1024
}

/// Runs this benchmark executable again as a child with `BENCH_CHILD=child` (and `envs`), so a
/// measurement starts from a fresh process (no heap retained by earlier runs), and returns the
/// one number the child printed.
///
/// # Panics
///
/// If the child fails or prints something else.
pub fn in_child(child: &str, envs: &[(&str, String)]) -> f64 {
    let exe = std::env::current_exe().expect("current_exe");
    let out = std::process::Command::new(exe)
        .env("BENCH_CHILD", child)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap_or_else(|e| panic!("spawn the {child} child: {e}"));
    assert!(
        out.status.success(),
        "the {child} child failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the {child} child printed {stdout:?}"))
}
