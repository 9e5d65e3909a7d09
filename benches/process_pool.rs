//! The process pool against Python's `concurrent.futures.ProcessPoolExecutor`, and subprocess
//! spawn + wait against tokio's `process::Command`.
//!
//! ```text
//! cargo bench --bench process_pool            # needs python3 for the Python column
//! ```
//!
//! Each repetition runs every column once, alternating (ringloop, Python, ...); the table
//! shows medians of 5 repetitions (`BENCH_REPS=n`; 1 when not run by `cargo bench`).
//! Python's figures are timed inside its own process
//! (`benches/process_pool.py`), so its interpreter start-up is not counted.
//!
//! - `submit 10k tiny jobs`: 4 workers, already started; 10,000 jobs (`sum(range(100))`)
//!   submitted at once, then all awaited (ringloop: `.await` in a `ringloop::run`). ns per
//!   job. Goal: ringloop ≤ 0.1x Python.
//! - `map 1M items, chunksize 1000`: 4 workers, already started; `map(inc, 0..1e6, 1000)`
//!   consumed. ns per item. Goal: ≤ 0.05x Python.
//! - `fresh pool to first result`: make a pool of 4, submit one tiny job, wait for it (then
//!   shut down, not timed). µs.
//! - `spawn + wait "true"`: 200 sequential `Command::new("true").status().await`, ringloop
//!   vs tokio (current_thread). µs per child. Goal: ringloop ≤ 1.0x tokio.

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;

use ringloop::ProcessPool;

const WORKERS: usize = 4;

/// `sum(range(100))`; the argument only makes each job distinct.
fn tiny(i: u64) -> u64 {
    black_box(i);
    (0..100u64).map(black_box).sum::<u64>()
}

fn inc(x: u64) -> u64 {
    x + 1
}

fn warm(pool: &ProcessPool) {
    let _: Vec<u64> = pool.map(tiny, 0..(4 * WORKERS) as u64, 1).collect();
}

fn ringloop_submit() -> f64 {
    let pool = ProcessPool::new(WORKERS).unwrap();
    warm(&pool);
    let n = 10_000u64;
    let t = Instant::now();
    let futs: Vec<_> = (0..n).map(|i| pool.submit(tiny, i)).collect();
    ringloop::run(async {
        for f in futs {
            black_box(f.await.unwrap());
        }
    });
    t.elapsed().as_nanos() as f64 / n as f64
}

fn ringloop_map() -> f64 {
    let pool = ProcessPool::new(WORKERS).unwrap();
    warm(&pool);
    let n = 1_000_000u64;
    let t = Instant::now();
    let s: u64 = pool.map(inc, 0..n, 1000).sum();
    let dt = t.elapsed();
    assert_eq!(s, n * (n + 1) / 2);
    dt.as_nanos() as f64 / n as f64
}

fn ringloop_first() -> f64 {
    let t = Instant::now();
    let pool = ProcessPool::new(WORKERS).unwrap();
    black_box(pool.submit(tiny, 0).result(None).unwrap());
    let dt = t.elapsed();
    drop(pool);
    dt.as_nanos() as f64
}

/// Runs the Python side; `None` without python3.
fn python(which: &str) -> Option<f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/process_pool.py");
    let out = std::process::Command::new("python3")
        .args([script, which, &WORKERS.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("python3 failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

const CHILDREN: u32 = 200;

fn ringloop_spawn() -> f64 {
    let t = Instant::now();
    ringloop::run(async {
        for _ in 0..CHILDREN {
            let st = ringloop::process::Command::new("true")
                .status()
                .await
                .unwrap();
            assert!(st.success());
        }
    });
    t.elapsed().as_nanos() as f64 / f64::from(CHILDREN)
}

fn tokio_spawn() -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = Instant::now();
    rt.block_on(async {
        for _ in 0..CHILDREN {
            let st = tokio::process::Command::new("true").status().await.unwrap();
            assert!(st.success());
        }
    });
    t.elapsed().as_nanos() as f64 / f64::from(CHILDREN)
}

fn main() {
    let mut rows: Vec<(&str, &str, Vec<f64>, Vec<f64>)> = vec![
        ("submit 10k tiny jobs (ns/job)", "Python", vec![], vec![]),
        (
            "map 1M items, chunksize 1000 (ns/item)",
            "Python",
            vec![],
            vec![],
        ),
        ("fresh pool to first result (us)", "Python", vec![], vec![]),
        ("spawn + wait \"true\" (us/child)", "tokio", vec![], vec![]),
    ];
    let reps = common::settings().reps;
    for _ in 0..reps {
        rows[0].2.push(ringloop_submit());
        rows[0].3.extend(python("submit"));
        rows[1].2.push(ringloop_map());
        rows[1].3.extend(python("map"));
        rows[2].2.push(ringloop_first() / 1e3);
        rows[2].3.extend(python("first").map(|ns| ns / 1e3));
        rows[3].2.push(ringloop_spawn() / 1e3);
        rows[3].3.push(tokio_spawn() / 1e3);
    }
    println!(
        "driver: {}; {WORKERS} workers; medians of {reps}",
        common::driver_name(ringloop::Runtime::new().unwrap().driver_kind())
    );
    println!(
        "{:<42} {:>12} {:>12} {:>8}",
        "", "ringloop", "baseline", "ratio"
    );
    for (name, base, ours, theirs) in &rows {
        let a = common::median(ours);
        if theirs.is_empty() {
            println!("{name:<42} {a:>12.1} {:>12} {:>8}", "n/a", "-");
            continue;
        }
        let b = common::median(theirs);
        println!("{name:<42} {a:>12.1} {b:>12.1} {:>7.3}x  ({base})", a / b);
    }
}
