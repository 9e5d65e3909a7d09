//! Tests that count the process's file descriptors and threads: their own test binary, and
//! serialised by `ALONE`, so that no other test opens fds or threads meanwhile.

use std::time::Duration;

/// Held by each test here: the counts are process-wide.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn count_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn count_threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn dropped_runtimes_leave_no_fd_or_thread() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
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

/// Review findings: a cancelled open whose openat succeeded leaked the fd; a listener with a
/// multishot accept took every incoming connection without bound.
#[test]
fn cancelled_opens_and_unaccepted_connections_do_not_pile_up_fds() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    use std::future::Future;
    let path = std::env::temp_dir().join(format!("ringloop-leak-{}", std::process::id()));
    std::fs::write(&path, b"x").unwrap();
    ringloop::run(async {
        let before = count_fds();
        for _ in 0..20 {
            let mut open = Box::pin(ringloop::fs::File::open(&path));
            let waker = futures::task::noop_waker();
            let _ = open
                .as_mut()
                .poll(&mut std::task::Context::from_waker(&waker));
            // Let the openat complete, then drop the open without collecting it.
            for _ in 0..3 {
                ringloop::io::nop().await.unwrap();
            }
            drop(open);
        }
        ringloop::io::nop().await.unwrap();
        assert_eq!(count_fds(), before, "cancelled opens leaked descriptors");

        let listener = ringloop::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let first = std::net::TcpStream::connect(addr).unwrap();
        let _accepted = listener.accept().await.unwrap();
        // A burst that lands before the loop runs may be accepted ahead in full (the kernel
        // completes the multishot request for each); once 64 wait, the listener pauses it.
        let mut clients: Vec<_> = (0..100)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        ringloop::sleep(Duration::from_millis(20)).await;
        let before = count_fds();
        clients.extend((0..100).map(|_| std::net::TcpStream::connect(addr).unwrap()));
        ringloop::sleep(Duration::from_millis(20)).await;
        let grown = count_fds() - before;
        // Paused: the new connections wait in the kernel's backlog, costing only the 100
        // client-side fds of this test.
        assert!(
            grown <= 100 + 2,
            "{grown} new fds for 100 unaccepted clients"
        );
        // Accepting drains what was taken ahead, then the backlog, in order of arrival.
        for _ in 0..200 {
            listener.accept().await.unwrap();
        }
        drop((first, clients));
    });
    std::fs::remove_file(&path).unwrap();
}
