//! Driver-level tests, with no runtime above: each operation on each driver, and cancellation
//! in every state (waiting, completed but not collected, running on a blocking thread, in
//! flight when the driver drops).

use std::cell::{Cell, RefCell};
use std::ffi::CString;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::fd::{Fd, SharedFd};
use super::op::{Nop, Op, OpCode, fs, net};
use super::{Driver, DriverConfig, DriverKind, DriverRef, Notifier, set_current};

/// A driver of `kind`, or `None` (with a message) where the kernel refuses it.
fn make_driver(kind: DriverKind) -> Option<DriverRef> {
    let config = DriverConfig {
        kind,
        ..DriverConfig::default()
    };
    match Driver::new(&config, Arc::new(Notifier::new().unwrap())) {
        Ok(d) => Some(Rc::new(RefCell::new(d))),
        Err(e) if kind == DriverKind::IoUring => {
            eprintln!("skipping the io_uring driver: {e}");
            None
        }
        Err(e) => panic!("the epoll driver: {e}"),
    }
}

/// Runs `f` once per driver, with that driver installed as the thread's current one. io_uring
/// is skipped, with a message, only where the kernel refuses it (epoll then still runs).
fn each_driver(f: impl Fn(&DriverRef)) {
    for kind in [DriverKind::IoUring, DriverKind::Epoll] {
        let Some(driver) = make_driver(kind) else {
            continue;
        };
        let prev = set_current(Some(driver.clone()));
        f(&driver);
        set_current(prev);
    }
}

/// Runs the orphan handlers the last reaps collected.
fn run_orphans(driver: &DriverRef) {
    let (mut wakers, mut orphans) = (Vec::new(), Vec::new());
    driver.borrow_mut().take_ready(&mut wakers, &mut orphans);
    for orphan in orphans {
        orphan.run();
    }
}

/// Drives `fut` to completion on `driver` alone (re-polled after every park).
fn block_on<F: Future>(driver: &DriverRef, fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(futures_task::noop_waker_ref());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        assert!(Instant::now() < deadline, "an operation did not complete");
        driver
            .borrow_mut()
            .park(Some(Duration::from_millis(20)))
            .unwrap();
        run_orphans(driver);
    }
}

/// Submits `op` and waits for it.
fn run<T: OpCode>(driver: &DriverRef, op: T) -> (io::Result<u32>, T) {
    let op = Op::submit(op).map_err(|(e, _)| e).unwrap();
    block_on(driver, op)
}

/// Parks and collects until `done()` or 10 s.
fn wait_until(driver: &DriverRef, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting");
        driver
            .borrow_mut()
            .park(Some(Duration::from_millis(20)))
            .unwrap();
        run_orphans(driver);
    }
}

fn socketpair(ty: libc::c_int) -> (SharedFd, SharedFd) {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills the two ints.
    let r =
        unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
    assert_eq!(r, 0);
    // SAFETY: fresh descriptors, owned by nobody else.
    unsafe {
        (
            Fd::new(OwnedFd::from_raw_fd(fds[0])),
            Fd::new(OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

fn temp_path(name: &str) -> CString {
    let p = std::env::temp_dir().join(format!("ringloop-driver-{name}-{}", std::process::id()));
    CString::new(p.into_os_string().into_encoded_bytes()).unwrap()
}

#[test]
fn nop_completes_after_one_pass() {
    each_driver(|driver| {
        let (r, Nop) = run(driver, Nop);
        assert_eq!(r.unwrap(), 0);
    });
}

#[test]
fn file_operations_on_both_drivers() {
    each_driver(|driver| {
        let path = temp_path("file");
        let dir = temp_path("dir");
        let renamed = temp_path("renamed");
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC;
        let (r, _) = run(driver, fs::OpenAt::new(path.clone(), flags, 0o600));
        // SAFETY: a descriptor the kernel just opened for us.
        let fd = Fd::new(unsafe { OwnedFd::from_raw_fd(r.unwrap() as i32) });

        let (r, _) = run(driver, fs::Write::new(&fd, b"driver bytes".to_vec(), 0));
        assert_eq!(r.unwrap(), 12);
        let (r, _) = run(driver, fs::Fsync::new(&fd, true));
        r.unwrap();
        let (r, read) = run(driver, fs::Read::new(&fd, Vec::with_capacity(64), 7));
        assert_eq!(r.unwrap(), 5);
        let mut buf = read.buf;
        // SAFETY: the kernel wrote 5 bytes at the start of the buffer.
        unsafe { crate::buf::IoBufMut::set_init(&mut buf, 5) };
        assert_eq!(buf, b"bytes");
        let (r, statx) = run(driver, fs::Statx::fd(&fd));
        r.unwrap();
        assert_eq!(statx.buf.stx_size, 12);
        let (r, statx) = run(driver, fs::Statx::path(path.clone(), true));
        r.unwrap();
        assert_eq!(statx.buf.stx_size, 12);

        let (r, _) = run(driver, fs::Close::new(Fd::into_owned(fd).unwrap()));
        r.unwrap();
        let (r, _) = run(driver, fs::RenameAt::new(path.clone(), renamed.clone()));
        r.unwrap();
        let (r, _) = run(driver, fs::UnlinkAt::new(renamed.clone(), false));
        r.unwrap();
        let (r, _) = run(driver, fs::MkDirAt::new(dir.clone(), 0o700));
        r.unwrap();
        // A directory renamed into itself: a real EINVAL, reported as such.
        let inside = CString::new([dir.as_bytes(), b"/sub"].concat()).unwrap();
        let (r, _) = run(driver, fs::RenameAt::new(dir.clone(), inside));
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EINVAL));
        let (r, _) = run(driver, fs::UnlinkAt::new(dir.clone(), true));
        r.unwrap();
        // Errors come back as errors.
        let (r, _) = run(driver, fs::OpenAt::new(path, libc::O_RDONLY, 0));
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::NotFound);
    });
}

#[test]
fn socket_operations_on_both_drivers() {
    each_driver(|driver| {
        // Stream: send, recv, sendmsg of several buffers, shutdown.
        let (a, b) = socketpair(libc::SOCK_STREAM);
        let (r, _) = run(driver, net::Send::new(&a, b"hello".to_vec()));
        assert_eq!(r.unwrap(), 5);
        let (r, _) = run(driver, net::Recv::new(&b, Vec::with_capacity(16)));
        assert_eq!(r.unwrap(), 5);
        let bufs = vec![b"ab".to_vec(), b"cd".to_vec()];
        let (r, _) = run(driver, net::SendMsg::new(&a, bufs, None));
        assert_eq!(r.unwrap(), 4);
        let (r, _) = run(driver, net::Recv::new(&b, Vec::with_capacity(16)));
        assert_eq!(r.unwrap(), 4);
        let (r, _) = run(driver, net::Shutdown::new(&a, libc::SHUT_WR));
        r.unwrap();
        let (r, _) = run(driver, net::Recv::new(&b, Vec::with_capacity(16)));
        assert_eq!(r.unwrap(), 0, "end of stream after shutdown");

        // Datagrams with addresses: UDP sendmsg to an address, recvmsg with the source.
        let x = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let y = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (x_addr, y_addr) = (x.local_addr().unwrap(), y.local_addr().unwrap());
        let (x, y) = (Fd::new(OwnedFd::from(x)), Fd::new(OwnedFd::from(y)));
        let to = net::RawAddr::from_ip(&y_addr);
        let (r, _) = run(
            driver,
            net::SendMsg::new(&x, vec![b"dgram".to_vec()], Some(to)),
        );
        assert_eq!(r.unwrap(), 5);
        let (r, recv) = run(driver, net::RecvMsg::new(&y, Vec::with_capacity(16)));
        assert_eq!(r.unwrap(), 5);
        assert_eq!(recv.source().ip().unwrap(), x_addr);

        // TCP: connect and accept.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = Fd::new(OwnedFd::from(listener));
        // SAFETY: plain syscall without pointers.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        // SAFETY: a fresh descriptor.
        let client = Fd::new(unsafe { OwnedFd::from_raw_fd(s) });
        let (r, _) = run(
            driver,
            net::Connect::new(&client, net::RawAddr::from_ip(&addr)),
        );
        r.unwrap();
        let (r, accept) = run(driver, net::Accept::new(&listener));
        // SAFETY: the accepted descriptor is ours.
        drop(unsafe { OwnedFd::from_raw_fd(r.unwrap() as i32) });
        let peer = accept.addr.ip().unwrap();
        assert_eq!(Some(peer), client_addr(&client));
        // A refused connect is an error (the accept op held the listener open too).
        drop((accept, listener));
        // SAFETY: as above.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        // SAFETY: a fresh descriptor.
        let refused = Fd::new(unsafe { OwnedFd::from_raw_fd(s) });
        let (r, _) = run(
            driver,
            net::Connect::new(&refused, net::RawAddr::from_ip(&addr)),
        );
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
    });
}

fn client_addr(fd: &Fd) -> Option<std::net::SocketAddr> {
    let mut raw = net::RawAddr::empty();
    // SAFETY: getsockname writes into the local storage.
    let r = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&raw mut raw.storage).cast(),
            &raw mut raw.len,
        )
    };
    if r == 0 { raw.ip().ok() } else { None }
}

#[test]
fn a_time_limit_gives_timed_out_and_consumes_nothing() {
    each_driver(|driver| {
        let (a, b) = socketpair(libc::SOCK_STREAM);
        let recv = Op::submit_within(
            net::Recv::new(&b, Vec::with_capacity(16)),
            Some(Duration::from_millis(5)),
        )
        .map_err(|(e, _)| e)
        .unwrap();
        let (r, _) = block_on(driver, recv);
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
        // Data sent afterwards is all there for the next receive.
        run(driver, net::Send::new(&a, b"later".to_vec()))
            .0
            .unwrap();
        let (r, _) = run(driver, net::Recv::new(&b, Vec::with_capacity(16)));
        assert_eq!(r.unwrap(), 5);
    });
}

/// What an orphan handler saw: `None` if it has not run; `Some(None)` if the cancellation won.
type Seen = Rc<Cell<Option<Option<Result<u32, i32>>>>>;

/// Submits a receive on the empty socket `fd`, polls it once (it waits), and drops it: its
/// orphan handler records into `seen`.
fn drop_a_waiting_receive(fd: &SharedFd, seen: &Seen) {
    let recv = Op::submit(net::Recv::new(fd, Vec::with_capacity(16)))
        .map_err(|(e, _)| e)
        .unwrap();
    let mut recv = Box::pin(watch(recv, seen));
    let mut cx = Context::from_waker(futures_task::noop_waker_ref());
    assert!(recv.as_mut().poll(&mut cx).is_pending());
}

fn watch<T: OpCode>(op: Op<T>, seen: &Seen) -> Op<T, impl super::op::OnOrphan<T>> {
    let seen = seen.clone();
    op.on_orphan(move |r: Option<io::Result<u32>>, _data: T| {
        let r = r.map(|r| r.map_err(|e| e.raw_os_error().unwrap_or(0)));
        seen.set(Some(r));
    })
}

#[test]
fn cancelling_a_waiting_receive_loses_no_byte() {
    each_driver(|driver| {
        let (a, b) = socketpair(libc::SOCK_STREAM);
        let seen: Seen = Rc::default();
        drop_a_waiting_receive(&b, &seen);
        wait_until(driver, || seen.get().is_some());
        assert_eq!(
            seen.get(),
            Some(None),
            "the cancellation won: nothing received"
        );
        run(driver, net::Send::new(&a, b"kept".to_vec())).0.unwrap();
        let (r, _) = run(driver, net::Recv::new(&b, Vec::with_capacity(16)));
        assert_eq!(r.unwrap(), 4);
    });
}

#[test]
fn cancelling_a_completed_operation_hands_its_result_to_the_handler() {
    each_driver(|driver| {
        let (a, b) = socketpair(libc::SOCK_STREAM);
        run(driver, net::Send::new(&a, b"ready".to_vec()))
            .0
            .unwrap();
        let seen: Seen = Rc::default();
        let recv = Op::submit(net::Recv::new(&b, Vec::with_capacity(16)))
            .map_err(|(e, _)| e)
            .unwrap();
        let recv = watch(recv, &seen);
        // Let it complete without collecting it, then drop it.
        for _ in 0..3 {
            driver.borrow_mut().poll_io().unwrap();
            run(driver, Nop).0.unwrap();
        }
        drop(recv);
        wait_until(driver, || seen.get().is_some());
        assert_eq!(seen.get(), Some(Some(Ok(5))), "the bytes reach the handler");
    });
}

#[test]
fn cancelling_a_file_read_waits_for_its_result() {
    each_driver(|driver| {
        let path = temp_path("cancel-read");
        std::fs::write(path.to_str().unwrap(), vec![7u8; 1 << 16]).unwrap();
        let file = Fd::new(OwnedFd::from(
            std::fs::File::open(path.to_str().unwrap()).unwrap(),
        ));
        let seen: Seen = Rc::default();
        let read = Op::submit(fs::Read::new(&file, Vec::with_capacity(1 << 16), 0))
            .map_err(|(e, _)| e)
            .unwrap();
        // Dropped at once: on io_uring the read is cancelled or completes; on epoll it runs on
        // a blocking thread, which cannot be stopped. Either way the buffer lives until then.
        drop(watch(read, &seen));
        wait_until(driver, || seen.get().is_some());
        assert!(
            matches!(seen.get(), Some(None | Some(Ok(65536)))),
            "{:?}",
            seen.get()
        );
        std::fs::remove_file(path.to_str().unwrap()).unwrap();
    });
}

#[test]
fn dropping_the_driver_with_an_operation_in_flight_runs_its_handler() {
    for kind in [DriverKind::IoUring, DriverKind::Epoll] {
        let Some(driver) = make_driver(kind) else {
            continue;
        };
        let prev = set_current(Some(driver.clone()));
        let (_a, b) = socketpair(libc::SOCK_STREAM);
        let seen: Seen = Rc::default();
        drop_a_waiting_receive(&b, &seen);
        set_current(prev);
        drop(driver);
        // Epoll withdrew the receive at once (the handler ran in the Op's drop); io_uring
        // cancelled it, and the driver's Drop reaped the CQE and ran the handler.
        assert_eq!(seen.get(), Some(None), "{kind:?}");
    }
}

#[test]
fn multishot_accept_exists_only_where_the_probe_says() {
    each_driver(|driver| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = Fd::new(OwnedFd::from(listener));
        let got = Rc::new(Cell::new(0));
        let handler = {
            let got = got.clone();
            Rc::new(move |e: super::MultishotEvent| {
                if e.result >= 0 {
                    // SAFETY: an accepted descriptor, ours to close.
                    drop(unsafe { OwnedFd::from_raw_fd(e.result) });
                    got.set(got.get() + 1);
                }
            })
        };
        let handler: super::MultishotHandler = handler;
        let armed = driver
            .borrow_mut()
            .accept_multishot(listener.as_raw_fd(), Rc::clone(&handler));
        let kind = driver.borrow().kind();
        match armed {
            None => {
                // Epoll has none; io_uring before 5.19 neither.
                if kind == DriverKind::Epoll {
                    return;
                }
                eprintln!("this kernel's io_uring has no multishot accept");
            }
            Some(key) => {
                assert_eq!(kind, DriverKind::IoUring);
                let key = key.unwrap();
                let clients: Vec<_> = (0..3)
                    .map(|_| std::net::TcpStream::connect(addr).unwrap())
                    .collect();
                wait_until(driver, || got.get() == 3);
                super::MultishotCancel::new(driver.clone(), key, &handler).cancel();
                wait_until(driver, || driver.borrow().table.ops.is_empty());
                drop(clients);
            }
        }
    });
}

#[test]
fn a_send_all_goes_out_whole_across_short_sends_without_being_polled() {
    each_driver(|driver| {
        let (a, b) = socketpair(libc::SOCK_STREAM);
        let data: Vec<u8> = (0..8usize << 20).map(|i| (i % 251) as u8).collect();
        // Far more than the socket buffer: the kernel takes it in several short sends, and the
        // driver sends each rest itself; the send's future is not polled meanwhile.
        let send = Op::submit(net::Send::stream_all(&a, data.clone()))
            .map_err(|(e, _)| e)
            .unwrap();
        let mut got = Vec::with_capacity(data.len());
        while got.len() < data.len() {
            let (r, recv) = run(driver, net::Recv::stream(&b, Vec::with_capacity(1 << 16)));
            let n = r.unwrap() as usize;
            assert!(n > 0, "end of stream after {} bytes", got.len());
            let mut buf = recv.buf;
            // SAFETY: the kernel wrote n bytes at the start of the buffer.
            unsafe { crate::buf::IoBufMut::set_init(&mut buf, n) };
            got.extend_from_slice(&buf);
        }
        let (r, _) = block_on(driver, send);
        assert_eq!(
            r.unwrap() as usize,
            data.len(),
            "one completion for the whole send"
        );
        assert!(got == data, "the bytes arrived whole and in order");
    });
}

/// Issue 13: a multishot accept cancelled while the driver is borrowed (a listener dropped
/// by code that runs inside a driver call) used to stay armed, taking and closing every
/// later connection. The cancellation now waits for the driver's next turn.
#[test]
fn a_multishot_accept_cancelled_while_the_driver_is_borrowed_still_ends() {
    let Some(driver) = make_driver(DriverKind::IoUring) else {
        return;
    };
    let prev = set_current(Some(driver.clone()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = Fd::new(OwnedFd::from(listener.try_clone().unwrap()));
    let acceptor = super::accept::Acceptor::default();
    {
        let mut accept = pin!(acceptor.accept(&fd));
        let mut cx = Context::from_waker(futures_task::noop_waker_ref());
        assert!(accept.as_mut().poll(&mut cx).is_pending());
    }
    if acceptor.mode() != "multishot" {
        eprintln!("this kernel's io_uring has no multishot accept");
        set_current(prev);
        return;
    }
    {
        let _busy = driver.borrow_mut();
        drop(acceptor);
    }
    // The request ends (its entry leaves the table)...
    wait_until(&driver, || driver.borrow().table.ops.is_empty());
    // ...so a connection made now waits in the backlog instead of being taken and closed.
    let client = std::net::TcpStream::connect(addr).unwrap();
    listener.set_nonblocking(true).unwrap();
    let (server, _) = listener.accept().expect("the connection is in the backlog");
    drop((client, server));
    set_current(prev);
}
