//! Sockets: TCP, UDP and Unix round trips, faults (refused, reset, broken pipe, EOF, EMFILE),
//! short writes, deadlines, and the futures-io adapter.

mod support;

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use ringloop::io::{BufResult, IoBuf};
use ringloop::net::{TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ringloop-net-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn set_linger_zero(fd: i32) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid pointer and length for SO_LINGER.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const l).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
}

#[test]
fn tcp_round_trip_and_addresses() {
    ringloop::run(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let client = ringloop::spawn(async move {
            let s = TcpStream::connect(addr).await.unwrap();
            assert_eq!(s.peer_addr().unwrap(), addr);
            s.set_nodelay(true).unwrap();
            assert!(s.nodelay().unwrap());
            let BufResult(r, _) = s.write_all(b"hello ringloop".to_vec()).await;
            r.unwrap();
            let BufResult(n, buf) = s.read(Vec::with_capacity(64)).await;
            assert_eq!(n.unwrap(), 14);
            assert_eq!(buf, b"HELLO RINGLOOP");
            s.local_addr().unwrap()
        });
        let (s, peer) = listener.accept().await.unwrap();
        let BufResult(n, buf) = s.read(Vec::with_capacity(64)).await;
        assert_eq!(n.unwrap(), 14);
        let BufResult(r, _) = s.write_all(buf.to_ascii_uppercase()).await;
        r.unwrap();
        assert_eq!(client.await.unwrap(), peer);
    });
}

#[test]
fn eof_reads_zero_and_writev_gathers() {
    ringloop::run(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let BufResult(n, bufs) = client
            .writev(vec![b"ab".to_vec(), Vec::new(), b"cde".to_vec()])
            .await;
        assert_eq!(n.unwrap(), 5);
        assert_eq!(bufs.len(), 3);
        client.shutdown(Shutdown::Write).await.unwrap();
        let mut got = Vec::new();
        loop {
            let BufResult(n, buf) = server.read(Vec::with_capacity(3)).await;
            match n.unwrap() {
                0 => break,
                _ => got.extend_from_slice(&buf),
            }
        }
        assert_eq!(got, b"abcde");
        // EOF again, and a zero-capacity read returns 0 without touching the ring.
        let BufResult(n, _) = server.read(Vec::with_capacity(8)).await;
        assert_eq!(n.unwrap(), 0);
        let BufResult(n, _) = server.read(Vec::new()).await;
        assert_eq!(n.unwrap(), 0);
    });
}

#[test]
fn connection_refused() {
    ringloop::run(async {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let err = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    });
}

#[test]
fn connect_host_resolves_off_the_loop() {
    ringloop::run(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = ringloop::spawn(async move { listener.accept().await.map(|_| ()) });
        let s = TcpStream::connect_host("127.0.0.1", port).await.unwrap();
        assert_eq!(s.peer_addr().unwrap().port(), port);
        accept.await.unwrap().unwrap();
        let err = TcpStream::connect_host("no-such-host.invalid", port)
            .await
            .unwrap_err();
        assert_ne!(err.kind(), ErrorKind::ConnectionRefused);
    });
}

#[test]
fn peer_reset_is_connection_reset() {
    ringloop::run(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::net::TcpStream::connect(addr).unwrap();
        let (s, _) = listener.accept().await.unwrap();
        let reading = Rc::new(Cell::new(false));
        let started = reading.clone();
        let reader = ringloop::spawn(async move {
            // Set in the poll that starts the read, so seen only after it.
            started.set(true);
            let BufResult(r, _) = s.read(Vec::with_capacity(16)).await;
            r
        });
        // The reset comes while the read waits: the pass after the reader's first poll has
        // handed its receive to the kernel (or registered it with epoll).
        support::yield_until("the read started", || reading.get()).await;
        ringloop::yield_now().await;
        assert!(!reader.is_done(), "nothing was sent");
        set_linger_zero(peer.as_raw_fd());
        drop(peer);
        let err = reader.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    });
}

#[test]
fn write_to_closed_peer_is_an_error_not_sigpipe() {
    ringloop::run(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::net::TcpStream::connect(addr).unwrap();
        let (s, _) = listener.accept().await.unwrap();
        drop(peer);
        let mut buf = vec![7u8; 64 * 1024];
        let err = loop {
            let BufResult(r, b) = s.write(buf).await;
            buf = b;
            if let Err(e) = r {
                break e;
            }
        };
        assert!(
            matches!(
                err.kind(),
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
            ),
            "{err}"
        );
        // The same through a Unix pair.
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let BufResult(r, _) = a.write_all("x").await;
        assert_eq!(r.unwrap_err().kind(), ErrorKind::BrokenPipe);
    });
}

#[test]
fn write_all_handles_short_writes() {
    const LEN: usize = 8 << 20;
    ringloop::run(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            let mut got = Vec::new();
            let mut chunk = [0u8; 1000];
            loop {
                // A slow reader, so the sender's buffer fills and sends come up short.
                let n = s.read(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
                if got.len() < LEN / 4 {
                    std::thread::sleep(Duration::from_micros(20));
                }
            }
            got
        });
        let (s, _) = listener.accept().await.unwrap();
        let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        let BufResult(r, data) = s.write_all(data).await;
        r.unwrap();
        // A Slice writes only its range.
        let BufResult(r, slice) = s.write_all(data.slice(10..20)).await;
        r.unwrap();
        let data = slice.into_inner();
        drop(s);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), LEN + 10);
        assert!(got[..LEN] == data[..]);
        assert_eq!(&got[LEN..], &data[10..20]);
    });
}

#[test]
fn deadlines_on_accept_and_read() {
    ringloop::run(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let r = ringloop::wait_for(listener.accept(), Duration::from_millis(5)).await;
        assert!(r.is_err(), "nobody connected");
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = ringloop::wait_for(listener.accept(), Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        let r = ringloop::wait_for(server.read(vec![0u8; 8]), Duration::from_millis(5)).await;
        assert!(r.is_err(), "nothing was sent");
        let BufResult(r, _) = client.write_all("late").await;
        r.unwrap();
        let BufResult(n, buf) =
            ringloop::wait_for(server.read(vec![0u8; 8]), Duration::from_secs(5))
                .await
                .unwrap();
        assert_eq!(&buf[..n.unwrap()], b"late");
    });
}

#[test]
fn accept_keeps_a_connection_its_cancelled_future_got() {
    ringloop::run(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        for _ in 0..20 {
            let c = std::net::TcpStream::connect(addr).unwrap();
            // Zero timeout: the accept is submitted and cancelled in the same pass (on io_uring;
            // on epoll the accept may complete at once, and then returns the connection).
            let (s, peer) = match ringloop::wait_for(listener.accept(), Duration::ZERO).await {
                Ok(accepted) => accepted.unwrap(),
                Err(_) => ringloop::wait_for(listener.accept(), Duration::from_secs(5))
                    .await
                    .expect("the connection was kept or is still queued")
                    .unwrap(),
            };
            assert_eq!(peer, c.local_addr().unwrap());
            drop(s);
        }
    });
}

/// Accept under EMFILE, in a child process with a low RLIMIT_NOFILE.
#[test]
fn accept_under_emfile_recovers() {
    const CHILD: &str = "RINGLOOP_TEST_EMFILE_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let stdout = support::rerun_in_child("accept_under_emfile_recovers", CHILD);
        assert!(stdout.contains("EMFILE-OK"), "{stdout}");
        return;
    }
    ringloop::run(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // The clients connect before the fds run out (they sit in the accept queue).
        let clients: Vec<_> = (0..2)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let limit = libc::rlimit {
            rlim_cur: 256,
            rlim_max: 256,
        };
        // SAFETY: valid rlimit pointer.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
        let mut fillers = Vec::new();
        loop {
            match std::fs::File::open("/dev/null") {
                Ok(f) => fillers.push(f),
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
                    break;
                }
            }
        }
        let err = listener.accept().await.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
        fillers.truncate(fillers.len() - 4);
        let (s, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, clients[0].local_addr().unwrap());
        drop(s);
        let (_s, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, clients[1].local_addr().unwrap());
        println!("EMFILE-OK");
    });
}

#[test]
fn udp_round_trips() {
    ringloop::run(async {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let BufResult(n, _) = a.send_to(b"datagram one".to_vec(), ba).await;
        assert_eq!(n.unwrap(), 12);
        let BufResult(r, buf) = b.recv_from(Vec::with_capacity(64)).await;
        assert_eq!(r.unwrap(), (12, aa));
        assert_eq!(buf, b"datagram one");
        // Connected: send / recv, and the addresses.
        a.connect(ba).unwrap();
        b.connect(aa).unwrap();
        assert_eq!(a.peer_addr().unwrap(), ba);
        let BufResult(n, _) = b.send("two").await;
        assert_eq!(n.unwrap(), 3);
        let BufResult(n, buf) = a.recv(Vec::with_capacity(64)).await;
        assert_eq!(&buf[..n.unwrap()], b"two");
        // IPv6 loopback, if the host has it.
        if let Ok(c) = UdpSocket::bind("[::1]:0") {
            let d = UdpSocket::bind("[::1]:0").unwrap();
            let BufResult(n, _) = c.send_to("six", d.local_addr().unwrap()).await;
            assert_eq!(n.unwrap(), 3);
            let BufResult(r, _) = d.recv_from(Vec::with_capacity(8)).await;
            let (_, from): (usize, SocketAddr) = r.unwrap();
            assert_eq!(from, c.local_addr().unwrap());
        }
    });
}

#[test]
fn unix_stream_round_trip() {
    let dir = temp_dir("stream");
    let path = dir.join("s.sock");
    ringloop::run(async {
        let listener = UnixListener::bind(&path).unwrap();
        assert_eq!(
            listener.local_addr().unwrap().as_pathname(),
            Some(path.as_path())
        );
        let p = path.clone();
        let client = ringloop::spawn(async move {
            let s = UnixStream::connect(&p).await.unwrap();
            assert_eq!(s.peer_addr().unwrap().as_pathname(), Some(p.as_path()));
            let BufResult(r, _) = s.write_all(vec![42u8; 100_000]).await;
            r.unwrap();
            s.shutdown(Shutdown::Write).await.unwrap();
            let BufResult(n, buf) = s.read(Vec::with_capacity(16)).await;
            assert_eq!(&buf[..n.unwrap()], b"done");
        });
        let (s, addr) = listener.accept().await.unwrap();
        assert!(addr.is_unnamed());
        let mut total = 0;
        loop {
            let BufResult(n, buf) = s.read(Vec::with_capacity(8192)).await;
            let n = n.unwrap();
            if n == 0 {
                break;
            }
            assert!(buf.iter().all(|&b| b == 42));
            total += n;
        }
        assert_eq!(total, 100_000);
        let BufResult(r, _) = s.write_all("done").await;
        r.unwrap();
        client.await.unwrap();
        let err = UnixStream::connect(dir.join("missing")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unix_datagram_round_trips() {
    let dir = temp_dir("dgram");
    let (pa, pb) = (dir.join("a.sock"), dir.join("b.sock"));
    ringloop::run(async {
        let a = UnixDatagram::bind(&pa).unwrap();
        let b = UnixDatagram::bind(&pb).unwrap();
        let BufResult(n, _) = a.send_to("to b", &pb).await;
        assert_eq!(n.unwrap(), 4);
        let BufResult(r, buf) = b.recv_from(Vec::with_capacity(16)).await;
        let (n, from) = r.unwrap();
        assert_eq!(&buf[..n], b"to b");
        assert_eq!(from.as_pathname(), Some(pa.as_path()));
        // From an unbound socket the sender is unnamed.
        let u = UnixDatagram::unbound().unwrap();
        let BufResult(n, _) = u.send_to("anon", &pb).await;
        assert_eq!(n.unwrap(), 4);
        let BufResult(r, _) = b.recv_from(Vec::with_capacity(16)).await;
        assert!(r.unwrap().1.is_unnamed());
        // Connected send / recv.
        u.connect(&pa).unwrap();
        let BufResult(n, _) = u.send("conn").await;
        assert_eq!(n.unwrap(), 4);
        let BufResult(n, buf) = a.recv(Vec::with_capacity(16)).await;
        assert_eq!(&buf[..n.unwrap()], b"conn");
        // Pairs.
        let (x, y) = UnixDatagram::pair().unwrap();
        let BufResult(n, _) = y.send("pair").await;
        assert_eq!(n.unwrap(), 4);
        let BufResult(n, buf) = x.recv(Vec::with_capacity(16)).await;
        assert_eq!(&buf[..n.unwrap()], b"pair");
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn std_conversions() {
    ringloop::run(async {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let listener = TcpListener::from(l);
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        let (s, _) = listener.accept().await.unwrap();
        let mut s: std::net::TcpStream = s.into();
        c.write_all(b"std").unwrap();
        let mut got = [0u8; 3];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"std");
        let s = TcpStream::from(s);
        let BufResult(r, _) = s.write_all("back").await;
        r.unwrap();
        let mut got = [0u8; 4];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"back");
        let (_, accepted): (std::net::TcpListener, _) = listener.into_std().await.unwrap();
        assert!(accepted.is_empty(), "nothing waited to be accepted");
    });
}

/// Serves every connection of `clients` (each has sent its index as one byte) through the
/// connections a listener's `into_std` handed back and then its std listener's backlog, and
/// checks each client gets its answer: none was closed (EOF) or reset.
fn serve_after_into_std<S: Read + Write>(
    accepted: Vec<S>,
    mut accept_std: impl FnMut() -> std::io::Result<S>,
    clients: &mut [impl Read],
    set_blocking: impl Fn(&S),
) {
    let mut servers = accepted;
    // Everything else is in the backlog: every client finished connecting before into_std.
    loop {
        match accept_std() {
            Ok(s) => servers.push(s),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("accept: {e}"),
        }
    }
    assert_eq!(servers.len(), clients.len(), "a connection was lost");
    for mut server in servers {
        set_blocking(&server);
        let mut id = [0u8; 1];
        server.read_exact(&mut id).unwrap();
        server.write_all(&[id[0], b'!']).unwrap();
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let mut answer = [0u8; 2];
        client
            .read_exact(&mut answer)
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(answer, [i as u8, b'!']);
    }
}

/// Issue 13: turning a listener into a std listener closed the connections its multishot
/// accept had taken ahead (io_uring): their clients saw EOF. `into_std` now hands them back.
#[test]
fn a_tcp_listener_turned_into_std_loses_no_connection() {
    const CLIENTS: usize = 24;
    ringloop::run(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // The first accept arms the multishot accept, where the driver has one.
        let _first = std::net::TcpStream::connect(addr).unwrap();
        let _ = listener.accept().await.unwrap();
        let mut clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                c.write_all(&[i as u8]).unwrap();
                c
            })
            .collect();
        // A few passes of the loop, so the multishot accept (if any) takes connections ahead.
        for _ in 0..4 {
            ringloop::io::nop().await.unwrap();
        }
        let (std_listener, accepted) = listener.into_std().await.unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let accepted: Vec<_> = accepted.into_iter().map(|(s, _)| s).collect();
        serve_after_into_std(
            accepted,
            || std_listener.accept().map(|(s, _)| s),
            &mut clients,
            |s| s.set_nonblocking(false).unwrap(),
        );
    });
}

/// Issue 13, for Unix listeners.
#[test]
fn a_unix_listener_turned_into_std_loses_no_connection() {
    const CLIENTS: usize = 24;
    let dir = temp_dir("into-std");
    let path = dir.join("sock");
    ringloop::run(async {
        let listener = UnixListener::bind(&path).unwrap();
        let _first = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let _ = listener.accept().await.unwrap();
        let mut clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let mut c = std::os::unix::net::UnixStream::connect(&path).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                c.write_all(&[i as u8]).unwrap();
                c
            })
            .collect();
        for _ in 0..4 {
            ringloop::io::nop().await.unwrap();
        }
        let (std_listener, accepted) = listener.into_std().await.unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let accepted: Vec<_> = accepted.into_iter().map(|(s, _)| s).collect();
        serve_after_into_std(
            accepted,
            || std_listener.accept().map(|(s, _)| s),
            &mut clients,
            |s| s.set_nonblocking(false).unwrap(),
        );
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compat_copy_and_read_to_end() {
    use futures::io::{AsyncReadExt, AsyncWriteExt};
    const LEN: usize = 3 << 20;
    ringloop::run(async {
        // source -> (a1, a2) -> copy -> (b1, b2) -> sink
        let (a1, a2) = UnixStream::pair().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let b1 = TcpStream::connect(addr).await.unwrap();
        let (b2, _) = listener.accept().await.unwrap();
        let data: Vec<u8> = (0..LEN).map(|i| (i * 7 % 256) as u8).collect();
        let expect = data.clone();
        let writer = ringloop::spawn(async move {
            let mut w = a1.compat();
            for chunk in data.chunks(10_000) {
                w.write_all(chunk).await.unwrap();
            }
            w.close().await.unwrap();
        });
        let copier = ringloop::spawn(async move {
            let (mut r, mut w) = (a2.compat(), b1.compat());
            let n = futures::io::copy(&mut r, &mut w).await.unwrap();
            w.close().await.unwrap();
            n
        });
        let mut sink = b2.compat();
        let mut got = Vec::new();
        sink.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(copier.await.unwrap(), LEN as u64);
        assert!(got == expect);
    });
}

#[test]
fn connect_accepts_literal_addresses_and_refuses_host_names_clearly() {
    ringloop::run(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let text = format!("127.0.0.1:{port}");
        let a = TcpStream::connect(text.as_str()).await.unwrap();
        let b = TcpStream::connect(&text).await.unwrap();
        let c = TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        for s in [&a, &b, &c] {
            assert_eq!(s.peer_addr().unwrap().port(), port);
        }
        let err = TcpStream::connect("localhost:80").await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("connect_host"), "{err}");
    });
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

#[test]
fn listeners_use_multishot_accept_and_close_promptly() {
    ringloop::run(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(listener.accept_mode(), "not yet");
        // Several clients before and between accepts: each is accepted exactly once.
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        let mut peers = Vec::new();
        for _ in 0..3 {
            let (_, peer) = listener.accept().await.unwrap();
            peers.push(peer);
        }
        // Multishot accept needs io_uring on Linux 5.19; epoll accepts one at a time.
        let epoll = ringloop::Handle::current().driver_kind() == ringloop::DriverKind::Epoll;
        if epoll {
            assert_eq!(listener.accept_mode(), "single-shot");
        } else if kernel_at_least(5, 19) {
            assert_eq!(listener.accept_mode(), "multishot");
        }
        clients.push(TcpStream::connect(addr).await.unwrap());
        let (_, peer) = listener.accept().await.unwrap();
        peers.push(peer);
        let mut mine: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        mine.sort();
        peers.sort();
        assert_eq!(peers, mine);
        // Dropping the listener cancels its multishot request: new connections are refused.
        drop(listener);
        let err = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    });
}

/// Review finding: a listener dropped outside block_on kept its multishot accept armed, and so
/// its port.
#[test]
fn a_listener_dropped_outside_block_on_releases_its_port() {
    let rt = ringloop::Runtime::new().unwrap();
    let listener = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _c = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        listener.accept().await.unwrap();
        listener
    });
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = std::net::TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    std::net::TcpListener::bind(addr).expect("the port is free again");
}

/// Review finding (epoll): a short read was taken to mean "drained, wait for the next edge";
/// when the last bytes and the end of stream arrived together, the read that took the bytes
/// left no edge for the end, and the next read hung.
#[test]
fn a_short_read_of_the_last_bytes_still_sees_the_end() {
    use std::io::Write;
    ringloop::run(async {
        for _ in 0..20 {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().await.unwrap();
            // A first read waits (nothing is queued yet); then bytes and FIN arrive together,
            // before the loop looks again.
            let mut first = Box::pin(server.read(Vec::with_capacity(64)));
            let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
            assert!(std::future::Future::poll(first.as_mut(), &mut cx).is_pending());
            client.write_all(b"last").unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
            let BufResult(n, buf) = first.await;
            let mut got = buf[..n.unwrap()].to_vec();
            loop {
                let read = ringloop::wait_for(
                    server.read(Vec::with_capacity(64)),
                    Duration::from_secs(10),
                );
                let BufResult(n, buf) = read.await.expect("a read after the last bytes hung");
                if n.unwrap() == 0 {
                    break;
                }
                got.extend_from_slice(&buf);
            }
            assert_eq!(got, b"last");
        }
    });
}
