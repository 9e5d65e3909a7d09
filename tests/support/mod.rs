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
    rerun_in_child_without(name, env_var, &[])
}

/// Like [`rerun_in_child`], with the variables `unset` removed from the child's environment
/// (the seccomp tests check what the default driver choice does, whatever RINGLOOP_DRIVER says).
pub fn rerun_in_child_without(name: &str, env_var: &str, unset: &[&str]) -> String {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(env_var, "1");
    for var in unset {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Like [`rerun_in_child`], with `vars` set to the given values in the child's environment.
pub fn rerun_in_child_with(name: &str, vars: &[(&str, &str)]) -> String {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .envs(vars.iter().copied());
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
