//! Network benchmarks against tokio (see the file docs once written).
fn main() {}
