//! File I/O benchmarks against tokio (see the file docs once written).
fn main() {}
