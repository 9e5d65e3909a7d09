//! Dropping runtimes leaves no file descriptor and no thread behind. Its own test binary (one
//! test) so that no other test opens fds or threads meanwhile.

use std::time::Duration;

fn count_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn count_threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn dropped_runtimes_leave_no_fd_or_thread() {
    // Warm up lazily initialised process state.
    ringloop::run(async {});
    let fds = count_fds();
    let threads = count_threads();
    for _ in 0..20 {
        let rt = ringloop::Runtime::new().unwrap();
        rt.block_on(async {
            // Leave work behind: a parked task, an in-flight I/O, a pending timer.
            ringloop::spawn(async { ringloop::sleep(Duration::from_secs(3600)).await });
            ringloop::spawn(async { ringloop::io::nop().await });
            ringloop::call_later(Duration::from_secs(3600), || {});
            // Start the blocking pool: its threads must be gone after the drop too.
            ringloop::spawn_blocking(|| std::thread::sleep(Duration::from_millis(2)))
                .await
                .unwrap();
            ringloop::sleep(Duration::from_millis(1)).await;
        });
        drop(rt);
    }
    assert_eq!(count_fds(), fds, "a runtime leaked a file descriptor");
    assert_eq!(count_threads(), threads, "a runtime left a thread behind");
}
