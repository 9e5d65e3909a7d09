//! Helpers shared by the integration tests (each test binary includes what it uses).

#![allow(dead_code)]

use std::cell::Cell;
use std::rc::Rc;

/// Counts its drops in a shared counter: observes that a future was dropped, and how often.
pub struct DropGuard(pub Rc<Cell<u32>>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// A fresh drop counter.
pub fn counter() -> Rc<Cell<u32>> {
    Rc::new(Cell::new(0))
}

/// Runs the test `name` of this test binary again in a child process with `env_var` set, and
/// returns the child's stdout; fails if the child fails. For tests that must change
/// process-wide state (a seccomp filter, RLIMIT_NOFILE) without affecting the others.
pub fn rerun_in_child(name: &str, env_var: &str) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(env_var, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
