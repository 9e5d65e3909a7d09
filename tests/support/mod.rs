//! Helpers shared by the integration tests (each test binary includes what it uses).

#![allow(dead_code)]

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

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
    rerun(name, &[(env_var, "1")], unset)
}

/// Like [`rerun_in_child`], with `vars` set to the given values in the child's environment.
pub fn rerun_in_child_with(name: &str, vars: &[(&str, &str)]) -> String {
    rerun(name, vars, &[])
}

fn rerun(name: &str, set: &[(&str, &str)], unset: &[&str]) -> String {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .envs(set.iter().copied());
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

/// The calling thread's kernel id, for [`wait_until_parked`].
pub fn thread_id() -> i32 {
    // SAFETY: gettid takes no argument and cannot fail.
    unsafe { libc::gettid() }
}

/// Waits until thread `tid` of this process sleeps in the kernel waiting for events: in
/// `io_uring_enter` waiting for at least one completion, or in an `epoll_wait` with a timeout
/// (what a parked loop does on either driver). Read from `/proc/self/task/<tid>/syscall`, so
/// a test waits for the park itself instead of sleeping and hoping. Panics after 10 s.
pub fn wait_until_parked(tid: i32) {
    let path = format!("/proc/self/task/{tid}/syscall");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let words: Vec<i64> = text
            .split_whitespace()
            .map(|w| i64::from_str_radix(w.trim_start_matches("0x"), 16).unwrap_or(-1))
            .collect();
        // "nr arg1 arg2 ...": arguments in hex, after the number in decimal.
        let nr = text
            .split_whitespace()
            .next()
            .and_then(|w| w.parse::<i64>().ok());
        let parked = match nr {
            Some(n) if n == libc::SYS_io_uring_enter => words.get(3).is_some_and(|&min| min > 0),
            Some(n) if n == libc::SYS_epoll_pwait => words.get(4).is_some_and(|&t| t != 0),
            #[cfg(target_arch = "x86_64")]
            Some(n) if n == libc::SYS_epoll_wait => words.get(4).is_some_and(|&t| t != 0),
            _ => false,
        };
        if parked {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "thread {tid} never parked (last: {text:?})"
        );
        std::thread::yield_now();
    }
}

/// Drives the loop, one pass per `ringloop::yield_now`, until `done()` holds: waits for what
/// other tasks, the kernel or other threads do, instead of sleeping for a time that a loaded
/// machine may exceed. Panics (naming `what`) after 30 s.
pub async fn yield_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        ringloop::yield_now().await;
    }
}
