//! Subprocesses (`ringloop::process`): spawn, wait, kill, piped streams, output, reaping of
//! dropped children and lossless cancelled reads; on whichever driver RINGLOOP_DRIVER picks.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ringloop::io::BufResult;
use ringloop::process::Command;

mod support;

#[test]
fn output_captures_stdout_and_the_exit_status() {
    ringloop::run(async {
        let out = Command::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    });
}

#[test]
fn a_missing_program_is_not_found() {
    ringloop::run(async {
        let err = Command::new("/nonexistent/ringloop-no-such-program")
            .spawn()
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    });
}

#[test]
fn stdin_and_stdout_are_pipes_through_the_driver() {
    ringloop::run(async {
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let BufResult(r, _) = stdin.write_all(b"hello through a pipe".to_vec()).await;
        r.unwrap();
        drop(stdin); // cat sees EOF and exits
        let stdout = child.stdout.take().unwrap();
        let BufResult(r, got) = stdout.read_to_end(Vec::new()).await;
        assert_eq!(r.unwrap(), 20);
        assert_eq!(got, b"hello through a pipe");
        let status = child.wait().await.unwrap();
        assert!(status.success());
        assert_eq!(child.id(), None, "no pid once reaped");
    });
}

#[test]
fn kill_then_wait_reports_the_signal() {
    ringloop::run(async {
        let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
        assert!(child.id().is_some());
        assert!(child.try_wait().unwrap().is_none(), "still running");
        child.kill().unwrap();
        let status = child.wait().await.unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        child.kill().unwrap(); // already reaped: Ok, as std's
    });
}

#[test]
fn a_cancelled_wait_loses_nothing() {
    ringloop::run(async {
        let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
        let r = ringloop::wait_for(child.wait(), Duration::from_millis(20)).await;
        assert!(r.is_err(), "sleep 1000 does not exit in 20 ms");
        child.kill().unwrap();
        let status = child.wait().await.unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    });
}

#[test]
fn many_children_wait_concurrently() {
    ringloop::run(async {
        let waits = (0..32).map(|i| async move {
            let status = Command::new("sh")
                .args(["-c", &format!("exit {}", i % 7)])
                .status()
                .await
                .unwrap();
            status.code().unwrap()
        });
        let codes = ringloop::gather(waits).await;
        let expect: Vec<i32> = (0..32).map(|i| i % 7).collect();
        assert_eq!(codes, expect);
    });
}

#[test]
fn output_does_not_deadlock_when_both_pipes_fill() {
    // 1 MiB on each stream: far beyond a pipe's 64 KiB, so reading one pipe to the end before
    // the other would block the child forever.
    ringloop::run(async {
        let out = Command::new("sh")
            .args([
                "-c",
                "head -c 1048576 /dev/zero >&2; head -c 1048576 /dev/zero; echo done >&2",
            ])
            .output()
            .await
            .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout.len(), 1 << 20);
        assert_eq!(out.stderr.len(), (1 << 20) + 5);
    });
}

#[test]
fn a_child_whose_stdout_is_never_read_still_exits_through_wait() {
    // The child writes more than a pipe holds to a stdout nobody reads; dropping the read end
    // gives it EPIPE, so wait() returns instead of hanging.
    ringloop::run(async {
        let mut child = Command::new("sh")
            .args(["-c", "head -c 1048576 /dev/zero"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let status = child.wait().await.unwrap();
        assert!(!status.success(), "head was stopped by the closed pipe");
    });
}

/// True once `pid` is no longer a child of this process (reaped by someone).
fn reaped(pid: u32) -> bool {
    // SAFETY: siginfo_t is plain data; waitid writes into the live local.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid,
            &raw mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD)
}

#[test]
fn a_dropped_child_is_reaped_not_left_a_zombie() {
    ringloop::run(async {
        let mut pids = Vec::new();
        for _ in 0..8 {
            // `cat` waits for stdin; dropping the Child closes it, so cat exits afterwards.
            let child = Command::new("cat").stdin(Stdio::piped()).spawn().unwrap();
            pids.push(child.id().unwrap());
            drop(child);
        }
        // The reaper thread reaps each once it exits: wait for that (bounded), checking the
        // condition itself rather than sleeping for a guessed time.
        let deadline = Instant::now() + Duration::from_secs(30);
        for pid in pids {
            while !reaped(pid) {
                assert!(Instant::now() < deadline, "child {pid} is still a zombie");
                std::thread::yield_now();
            }
        }
    });
}

#[test]
fn kill_on_drop_kills_and_reaps() {
    ringloop::run(async {
        let child = Command::new("sleep")
            .arg("1000")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        drop(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !reaped(pid) {
            assert!(
                Instant::now() < deadline,
                "sleep 1000 was not killed and reaped"
            );
            std::thread::yield_now();
        }
    });
}

#[test]
fn cancelled_pipe_reads_lose_no_byte() {
    // Bytes go through `cat`; reads of its stdout are cancelled at random deadlines. Every
    // byte must come out once, in order.
    const TOTAL: usize = 4 << 20;
    const CHUNK: usize = 16 << 10;
    ringloop::run(async {
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let writer = ringloop::spawn(async move {
            let mut sent = 0usize;
            while sent < TOTAL {
                let buf: Vec<u8> = (sent..sent + CHUNK).map(|i| (i % 251) as u8).collect();
                let BufResult(r, _) = stdin.write_all(buf).await;
                r.unwrap();
                sent += CHUNK;
            }
        });
        let mut received = 0usize;
        let mut cancelled = 0u32;
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        loop {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let d = Duration::from_micros(rng % 300);
            let want = 1 + (rng >> 20) as usize % CHUNK;
            match ringloop::wait_for(stdout.read(Vec::with_capacity(want)), d).await {
                Ok(BufResult(r, buf)) => {
                    let n = r.unwrap();
                    if n == 0 {
                        break;
                    }
                    for (k, b) in buf[..n].iter().enumerate() {
                        assert_eq!(*b, ((received + k) % 251) as u8, "byte {}", received + k);
                    }
                    received += n;
                    if received == TOTAL {
                        break;
                    }
                }
                Err(_) => cancelled += 1,
            }
        }
        writer.await.unwrap();
        assert_eq!(received, TOTAL);
        assert!(cancelled > 0, "some reads were cancelled");
        drop(stdout);
        assert!(child.wait().await.unwrap().success());
    });
}

#[test]
fn with_sigchld_ignored_wait_says_why_there_is_no_status() {
    // SIGCHLD set to SIG_IGN makes the kernel reap children itself: process-wide, so in a child.
    if std::env::var_os("RINGLOOP_TEST_SIGCHLD_IGN").is_none() {
        let out = support::rerun_in_child(
            "with_sigchld_ignored_wait_says_why_there_is_no_status",
            "RINGLOOP_TEST_SIGCHLD_IGN",
        );
        assert!(out.contains("explained: 20"), "{out}");
        return;
    }
    // SAFETY: signal takes no pointers; this process is a test's own child.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    let explained = ringloop::run(async {
        let mut explained = 0;
        for _ in 0..20 {
            match Command::new("true").status().await {
                Err(e) if e.to_string().contains("SIG_IGN") => explained += 1,
                Err(e) => panic!("unexplained error: {e}"),
                // The child may have been watched before it exited and reaped: then the
                // status is lost too, and the error must say so; Ok cannot happen.
                Ok(st) => panic!("a status despite SIG_IGN: {st}"),
            }
        }
        explained
    });
    println!("explained: {explained}");
}
