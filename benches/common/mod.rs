//! Helpers the benchmark binaries share (included with `mod common;`; not a benchmark itself).

#![allow(dead_code)] // Each benchmark uses its own subset.

/// A ringloop runtime with default settings.
pub fn ringloop_rt() -> ringloop::Runtime {
    ringloop::Runtime::new().expect("ringloop runtime")
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
