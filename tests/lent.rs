//! Lent reads (`read_lent`): the provided buffer ring and multishot receive on io_uring, heap
//! buffers on epoll and as the fallback; order with plain reads, cancellation, an empty ring,
//! streams dropped with a receive armed, and no buffer ever lost from the ring.

use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

use ringloop::io::{BufResult, LentBuf};
use ringloop::net::{TcpListener, TcpStream, UnixStream};
use ringloop::{DriverKind, Runtime};

/// The bytes of a test stream: position-dependent, so a lost, repeated or reordered chunk
/// shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn is_uring(rt: &Runtime) -> bool {
    rt.driver_kind() == DriverKind::IoUring
}

/// A connected pair: (server side on the loop, client side as a std stream).
async fn pair() -> (TcpStream, std::net::TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (server, client)
}

/// Every buffer of the ring is back (nothing lent, no request armed).
fn assert_ring_whole() {
    if let Some((free, count)) = ringloop::io::ring_buffers() {
        assert_eq!(free, u32::from(count), "ring buffers lost");
    }
}

/// Reads lent buffers with `read` (a stream's `read_lent`) until end of stream; returns the
/// bytes and how many came from the ring.
async fn read_all_lent<F, R>(mut read: F) -> (Vec<u8>, usize)
where
    F: FnMut() -> R,
    R: std::future::Future<Output = std::io::Result<LentBuf>>,
{
    let (mut got, mut from_ring) = (Vec::new(), 0);
    loop {
        let buf = read().await.unwrap();
        if buf.is_empty() {
            return (got, from_ring);
        }
        from_ring += usize::from(buf.is_from_ring());
        got.extend_from_slice(&buf);
    }
}

#[test]
fn an_echo_server_with_lent_buffers_copies_nothing_and_returns_every_buffer() {
    let rt = Runtime::new().unwrap();
    let uring = is_uring(&rt);
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let data = pattern(256 * 1024, 7);
        let sent = data.clone();
        let client = std::thread::spawn(move || {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            let mut back = vec![0; sent.len()];
            let writer = {
                let mut w = c.try_clone().unwrap();
                let sent = sent.clone();
                std::thread::spawn(move || {
                    w.write_all(&sent).unwrap();
                    w.shutdown(std::net::Shutdown::Write).unwrap();
                })
            };
            c.read_exact(&mut back).unwrap();
            writer.join().unwrap();
            assert_eq!(
                c.read(&mut [0; 1]).unwrap(),
                0,
                "the echo ended with the stream"
            );
            back
        });
        let (s, _) = listener.accept().await.unwrap();
        let mut from_ring = 0;
        loop {
            let buf = s.read_lent().await.unwrap();
            if buf.is_empty() {
                break;
            }
            from_ring += usize::from(buf.is_from_ring());
            s.write_all(buf).await.0.unwrap();
        }
        drop(s);
        assert_eq!(client.join().unwrap(), data);
        if uring {
            assert!(from_ring > 0, "no read used the provided buffer ring");
        } else {
            assert_eq!(from_ring, 0);
        }
        assert_ring_whole();
    });
}

#[test]
fn lent_and_plain_reads_share_one_ordered_stream() {
    ringloop::run(async {
        let (s, mut c) = pair().await;
        let data = pattern(64 * 1024, 3);
        let mut got = Vec::new();
        let mut chunks = data.chunks(1000);
        let mut turn = 0u32;
        c.write_all(chunks.next().unwrap()).unwrap();
        while got.len() < data.len() {
            // Alternate lent reads, plain reads of odd sizes, and a read that stops after
            // taking part of a lent buffer.
            match turn % 3 {
                0 => got.extend_from_slice(&s.read_lent().await.unwrap()),
                1 => {
                    let BufResult(n, buf) = s.read(Vec::with_capacity(7)).await;
                    assert!(n.unwrap() > 0);
                    got.extend_from_slice(&buf);
                }
                _ => {
                    let BufResult(n, buf) = s.read(Vec::with_capacity(333)).await;
                    assert!(n.unwrap() > 0);
                    got.extend_from_slice(&buf);
                }
            }
            turn += 1;
            if let Some(next) = chunks.next() {
                c.write_all(next).unwrap();
            }
        }
        assert_eq!(got, data);
        drop(c);
        assert!(s.read_lent().await.unwrap().is_empty(), "end of stream");
        let BufResult(n, _) = s.read(Vec::with_capacity(8)).await;
        assert_eq!(n.unwrap(), 0, "end of stream again, for a plain read");
    });
}

#[test]
fn a_cancelled_lent_read_keeps_its_bytes_for_the_next_read() {
    ringloop::run(async {
        let (s, mut c) = pair().await;
        // Nothing arrives: the read times out (and, on io_uring, leaves its request armed).
        let r = ringloop::wait_for(s.read_lent(), Duration::from_millis(5)).await;
        assert!(r.is_err(), "timed out");
        c.write_all(b"first").unwrap();
        let buf = s.read_lent().await.unwrap();
        assert_eq!(&buf[..], b"first");
        drop(buf);

        // Many reads cancelled at varying deadlines while 4 MiB stream in: nothing lost.
        let data = pattern(4 << 20, 11);
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            for chunk in sent.chunks(3000) {
                c.write_all(chunk).unwrap();
            }
        });
        let mut got = Vec::new();
        let mut i = 0u64;
        while got.len() < data.len() {
            i += 1;
            let deadline = Duration::from_micros(i * 7919 % 300);
            if let Ok(r) = ringloop::wait_for(s.read_lent(), deadline).await {
                got.extend_from_slice(&r.unwrap());
            }
        }
        writer.join().unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "bytes lost or reordered");
        drop(s);
        // Let the dropped stream's request finish, then every buffer is back.
        ringloop::yield_now().await;
        ringloop::io::nop().await.unwrap();
        assert_ring_whole();
    });
}

#[test]
fn an_empty_ring_falls_back_to_heap_buffers_under_a_thousand_connections() {
    // Eight ring buffers for 1,000 connections each sending 64 KiB: the ring runs dry
    // (ENOBUFS) over and over; every stream still gets every byte, in order.
    const CONNS: usize = 1000;
    const EACH: usize = 64 * 1024;
    let rt = Runtime::builder().recv_buffers(8, 4096).build().unwrap();
    let uring = is_uring(&rt);
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clients = std::thread::spawn(move || {
            let mut conns = Vec::with_capacity(CONNS);
            for i in 0..CONNS {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.write_all(&(i as u32).to_le_bytes()).unwrap();
                conns.push(c);
            }
            // Then all of them send at once, from a few threads.
            let mut threads = Vec::new();
            for (t, part) in conns.chunks_mut(CONNS / 4).enumerate() {
                let mut part: Vec<_> = part.iter().map(|c| c.try_clone().unwrap()).collect();
                threads.push(std::thread::spawn(move || {
                    for off in (0..EACH).step_by(8192) {
                        for (k, c) in part.iter_mut().enumerate() {
                            let id = t * (CONNS / 4) + k;
                            let data = pattern(EACH, id as u8);
                            c.write_all(&data[off..off + 8192]).unwrap();
                        }
                    }
                    for c in &part {
                        c.shutdown(std::net::Shutdown::Write).unwrap();
                    }
                }));
            }
            for t in threads {
                t.join().unwrap();
            }
            conns
        });
        let mut tasks = Vec::with_capacity(CONNS);
        for _ in 0..CONNS {
            let (s, _) = listener.accept().await.unwrap();
            tasks.push(ringloop::spawn(async move {
                let (got, from_ring) = read_all_lent(|| s.read_lent()).await;
                let id = u32::from_le_bytes(got[..4].try_into().unwrap());
                assert_eq!(got.len(), 4 + EACH, "connection {id}");
                assert!(
                    got[4..] == pattern(EACH, id as u8),
                    "connection {id}: bytes differ"
                );
                from_ring
            }));
        }
        let mut from_ring = 0;
        for t in tasks {
            from_ring += t.await.unwrap();
        }
        drop(clients.join().unwrap());
        if uring {
            assert!(from_ring > 0, "the ring was never used");
        }
        assert_ring_whole();
    });
}

#[test]
fn holding_every_ring_buffer_does_not_stall_a_read() {
    let rt = Runtime::builder().recv_buffers(4, 512).build().unwrap();
    rt.block_on(async {
        let (s, mut c) = pair().await;
        let mut held: Vec<LentBuf> = Vec::new();
        // Take more buffers than the ring has, one write at a time, holding all of them.
        for i in 0..12u8 {
            c.write_all(&[i; 100]).unwrap();
            let buf = s.read_lent().await.unwrap();
            assert_eq!(&buf[..], &[i; 100][..]);
            held.push(buf);
        }
        if let Some((free, count)) = ringloop::io::ring_buffers() {
            assert_eq!((free, count), (0, 4), "all four ring buffers are held");
            assert!(held.iter().filter(|b| b.is_from_ring()).count() == 4);
        }
        drop(held);
        assert_ring_whole();
        // The ring is usable again.
        c.write_all(b"again").unwrap();
        assert_eq!(&s.read_lent().await.unwrap()[..], b"again");
    });
}

#[test]
fn dropping_a_stream_with_a_receive_armed_closes_it_and_returns_its_buffers() {
    ringloop::run(async {
        for _ in 0..50 {
            let (s, mut c) = pair().await;
            let s = std::rc::Rc::new(s);
            let reader = {
                let s = s.clone();
                ringloop::spawn(async move { s.read_lent().await.map(|b| b.len()) })
            };
            // The read is armed and waiting; data queues behind it, unread.
            ringloop::yield_now().await;
            c.write_all(&[1; 3000]).unwrap();
            assert_eq!(reader.await.unwrap().unwrap(), 3000);
            c.write_all(&[2; 3000]).unwrap();
            ringloop::io::nop().await.unwrap();
            drop(s);
            // The server's side closes (once the loop has reaped the request's last
            // completion, which holds the descriptor): the client sees end of stream or a
            // reset (unread data makes the kernel reset), not a hang.
            let r = ringloop::spawn_blocking(move || c.read(&mut [0; 16]))
                .await
                .unwrap();
            match r {
                Ok(0) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
                other => panic!("expected the stream closed, got {other:?}"),
            }
        }
        ringloop::io::nop().await.unwrap();
        ringloop::yield_now().await;
        assert_ring_whole();
    });
}

#[test]
fn lent_reads_without_a_ring_use_heap_buffers() {
    let rt = Runtime::builder().recv_buffers(0, 1024).build().unwrap();
    rt.block_on(async {
        assert_eq!(ringloop::io::ring_buffers(), None);
        let (s, mut c) = pair().await;
        c.write_all(&pattern(5000, 1)).unwrap();
        drop(c);
        let mut got = Vec::new();
        loop {
            let buf = s.read_lent().await.unwrap();
            assert!(!buf.is_from_ring());
            assert!(buf.len() <= 1024, "buffers are of the configured size");
            if buf.is_empty() {
                break;
            }
            got.extend_from_slice(&buf);
        }
        assert_eq!(got, pattern(5000, 1));
    });
}

#[test]
fn a_reset_peer_is_an_error_of_a_lent_read() {
    ringloop::run(async {
        let (s, c) = pair().await;
        // Armed first, then the peer resets.
        let r = ringloop::wait_for(s.read_lent(), Duration::from_millis(1)).await;
        assert!(r.is_err());
        let l = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        use std::os::fd::AsRawFd;
        // SAFETY: valid pointer and length for SO_LINGER on an open socket.
        let r = unsafe {
            libc::setsockopt(
                c.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const l).cast(),
                size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
        drop(c);
        let e = s.read_lent().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionReset);
    });
}

#[test]
fn a_moved_stream_keeps_the_bytes_its_lent_reads_had_queued() {
    let rt = ringloop::ShardedRuntime::new(2).unwrap();
    let out = rt.run(|shard| async move {
        if shard == 1 {
            return Vec::new();
        }
        let (s, mut c) = pair().await;
        c.write_all(b"one").unwrap();
        assert_eq!(&s.read_lent().await.unwrap()[..], b"one");
        // More arrives while the receive is armed: queued unread when the stream moves (or,
        // if its completion has not come yet, still in the socket). Either way it follows.
        c.write_all(b"two").unwrap();
        ringloop::io::nop().await.unwrap();
        let moving = s.into_send().await.unwrap();
        drop(c);
        ringloop::submit_to(1, move || async move {
            let s = moving.into_stream();
            read_all_lent(|| s.read_lent()).await.0
        })
        .await
        .unwrap()
    });
    assert_eq!(out[0], b"two");
}

#[test]
fn unix_streams_lend_buffers_too() {
    ringloop::run(async {
        let (a, b) = UnixStream::pair().unwrap();
        b.write_all(pattern(10_000, 5)).await.0.unwrap();
        drop(b);
        let (got, _) = read_all_lent(|| a.read_lent()).await;
        assert_eq!(got, pattern(10_000, 5));
    });
}

/// A file of `len` pattern bytes in a fresh temporary path.
fn temp_file(name: &str, len: usize) -> (std::path::PathBuf, Vec<u8>) {
    let path = std::env::temp_dir().join(format!("ringloop-lent-{}-{name}", std::process::id()));
    let data = pattern(len, 9);
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

#[test]
fn lent_file_reads_use_registered_buffers_and_fall_back_to_the_heap() {
    let (path, data) = temp_file("fixed", 1 << 20);
    let rt = Runtime::builder().file_buffers(4, 4096).build().unwrap();
    let uring = is_uring(&rt);
    rt.block_on(async {
        let file = ringloop::fs::File::open(&path).await.unwrap();
        // Reads at odd offsets and lengths return the file's bytes.
        for (pos, len) in [
            (0, 4096),
            (1, 100),
            (4095, 4096),
            (12345, 3000),
            (1 << 19, 1),
        ] {
            let buf = file.read_lent_at(pos as u64, len).await.unwrap();
            assert_eq!(&buf[..], &data[pos..pos + len], "at {pos}");
            assert_eq!(
                buf.is_from_ring(),
                uring,
                "a registered buffer on io_uring only"
            );
        }
        // Larger than a registered buffer: a heap buffer of the asked size.
        let big = file.read_lent_at(100, 10_000).await.unwrap();
        assert_eq!(&big[..], &data[100..10_100]);
        assert!(!big.is_from_ring());
        // At and past the end.
        let tail = file
            .read_lent_at((data.len() - 10) as u64, 4096)
            .await
            .unwrap();
        assert_eq!(&tail[..], &data[data.len() - 10..]);
        assert!(
            file.read_lent_at(data.len() as u64, 4096)
                .await
                .unwrap()
                .is_empty()
        );
        drop((big, tail));
        // All four held: the fifth read still works, from the heap.
        let held: Vec<LentBuf> = {
            let mut v = Vec::new();
            for i in 0..5 {
                v.push(file.read_lent_at(i * 4096, 4096).await.unwrap());
            }
            v
        };
        for (i, b) in held.iter().enumerate() {
            assert_eq!(&b[..], &data[i * 4096..(i + 1) * 4096]);
        }
        let from_ring = held.iter().filter(|b| b.is_from_ring()).count();
        assert_eq!(from_ring, if uring { 4 } else { 0 });
        drop(held);
        // Reads cancelled in flight give their buffers back once the kernel is done.
        for i in 0..200u64 {
            let read = file.read_lent_at(i * 4096 % (1 << 20), 4096);
            let _ = ringloop::wait_for(read, Duration::ZERO).await;
        }
        ringloop::io::nop().await.unwrap();
        let mut again = Vec::new();
        for i in 0..4 {
            again.push(file.read_lent_at(i * 4096, 4096).await.unwrap());
        }
        let from_ring = again.iter().filter(|b| b.is_from_ring()).count();
        assert_eq!(
            from_ring,
            if uring { 4 } else { 0 },
            "registered buffers lost"
        );
    });
    let _ = std::fs::remove_file(&path);
}

#[test]
fn lent_file_reads_without_registered_buffers_use_the_heap() {
    let (path, data) = temp_file("heap", 64 * 1024);
    let rt = Runtime::builder().file_buffers(0, 4096).build().unwrap();
    rt.block_on(async {
        let file = ringloop::fs::File::open(&path).await.unwrap();
        let buf = file.read_lent_at(7, 5000).await.unwrap();
        assert_eq!(&buf[..], &data[7..5007]);
        assert!(!buf.is_from_ring());
        let e = file.read_lent_at(u64::MAX, 1).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    });
    let _ = std::fs::remove_file(&path);
}

#[test]
fn read_timeout_still_times_out_after_a_lent_read() {
    ringloop::run(async {
        let (s, mut c) = pair().await;
        c.write_all(b"x").unwrap();
        assert_eq!(&s.read_lent().await.unwrap()[..], b"x");
        // The lent read left its receive armed; the deadline must still hold.
        let read = s.read_timeout(Vec::with_capacity(8), Duration::from_millis(50));
        let r = ringloop::wait_for(read, Duration::from_secs(20)).await;
        let BufResult(r, _) = r.expect("read_timeout(50 ms) still pending after 20 s");
        assert_eq!(r.unwrap_err().kind(), ErrorKind::TimedOut);
        // Nothing was lost: later bytes come to either kind of read.
        c.write_all(b"after").unwrap();
        assert_eq!(&s.read_lent().await.unwrap()[..], b"after");
    });
}

#[test]
fn a_zero_length_read_returns_at_once_after_a_lent_read() {
    ringloop::run(async {
        let (s, mut c) = pair().await;
        c.write_all(b"x").unwrap();
        assert_eq!(&s.read_lent().await.unwrap()[..], b"x");
        let r = ringloop::wait_for(s.read(Vec::new()), Duration::from_secs(20)).await;
        let BufResult(n, _) = r.expect("a zero-length read blocked");
        assert_eq!(n.unwrap(), 0);
    });
}

#[test]
fn into_std_after_a_lent_read_keeps_every_byte() {
    ringloop::run(async {
        let (s, mut c) = pair().await;
        c.write_all(b"one").unwrap();
        assert_eq!(&s.read_lent().await.unwrap()[..], b"one");
        // Received by the armed receive (queued) or still in the socket: either way it
        // comes out of into_std's bytes first, then the std stream.
        c.write_all(b"two").unwrap();
        ringloop::io::nop().await.unwrap();
        let (mut std, buffered) = s.into_std().await.unwrap();
        drop(c);
        let rest = ringloop::spawn_blocking(move || {
            std.set_nonblocking(false).unwrap();
            let mut rest = Vec::new();
            std.read_to_end(&mut rest).map(|_| rest)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!([buffered, rest].concat(), b"two");
    });
}

/// Polls `f` once, then drops it.
async fn poll_once_then_drop<F: std::future::Future>(f: F) {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(|cx| {
        let _ = f.as_mut().poll(cx);
        std::task::Poll::Ready(())
    })
    .await;
}

#[test]
fn a_dropped_write_all_stops_sending() {
    ringloop::run(async {
        let (a, b) = UnixStream::pair().unwrap();
        let (b, _) = b.into_std().await.unwrap();
        b.set_nonblocking(false).unwrap();
        let len = 8 << 20;
        // The peer reads nothing yet: the first send is short, and the write is dropped
        // around the time its completion arrives.
        poll_once_then_drop(a.write_all(vec![7u8; len])).await;
        for _ in 0..20 {
            ringloop::io::nop().await.unwrap();
        }
        drop(a);
        for _ in 0..20 {
            ringloop::io::nop().await.unwrap();
        }
        let got = ringloop::spawn_blocking(move || {
            let mut b = b;
            let mut total = 0usize;
            let mut buf = vec![0; 1 << 20];
            loop {
                match b.read(&mut buf) {
                    Ok(0) => return total,
                    Ok(n) => total += n,
                    Err(e) => panic!("{e}"),
                }
            }
        })
        .await
        .unwrap();
        assert!(
            got < len,
            "a cancelled write_all sent all {len} bytes in the background"
        );
    });
}

#[test]
fn write_all_of_more_than_2_gib() {
    ringloop::run(async {
        let (a, b) = UnixStream::pair().unwrap();
        let (b, _) = b.into_std().await.unwrap();
        b.set_nonblocking(false).unwrap();
        // Zero pages: the kernel reads the shared zero page, so this costs no memory.
        let len: usize = (2 << 30) + 12345;
        let reader = std::thread::spawn(move || {
            let mut b = b;
            let (mut total, mut buf) = (0usize, vec![0; 4 << 20]);
            loop {
                match b.read(&mut buf).unwrap() {
                    0 => return total,
                    n => total += n,
                }
            }
        });
        let BufResult(r, buf) = a.write_all(vec![0u8; len]).await;
        drop((buf, a));
        r.unwrap();
        assert_eq!(reader.join().unwrap(), len);
    });
}

#[test]
fn a_slow_lent_reader_pauses_and_resumes_without_loss() {
    let rt = Runtime::builder().recv_buffers(16, 1024).build().unwrap();
    rt.block_on(async {
        let (s, c) = pair().await;
        let data = pattern(2 << 20, 5);
        let sent = data.clone();
        let w = std::thread::spawn(move || {
            let mut c = c;
            for ch in sent.chunks(777) {
                c.write_all(ch).unwrap();
            }
        });
        let mut got = Vec::new();
        let mut i = 0u32;
        while got.len() < data.len() {
            i += 1;
            if i % 50 == 0 {
                // Pacing, not synchronisation: let the receive run ahead to its pause.
                ringloop::sleep(Duration::from_millis(2)).await;
            }
            if i % 7 == 0 {
                let BufResult(n, b) = s.read(Vec::with_capacity(100)).await;
                assert!(n.unwrap() > 0);
                got.extend_from_slice(&b);
            } else {
                let b = ringloop::wait_for(s.read_lent(), Duration::from_secs(30))
                    .await
                    .expect("lent read hung")
                    .unwrap();
                assert!(!b.is_empty());
                got.extend_from_slice(&b);
            }
        }
        w.join().unwrap();
        assert!(got == data, "bytes lost or reordered");
        drop(s);
        ringloop::io::nop().await.unwrap();
        ringloop::yield_now().await;
        assert_ring_whole();
    });
}

#[test]
fn a_lent_buf_outlives_its_runtime() {
    let rt = Runtime::new().unwrap();
    let buf = rt.block_on(async {
        let (s, mut c) = pair().await;
        c.write_all(b"kept").unwrap();
        s.read_lent().await.unwrap()
    });
    drop(rt);
    assert_eq!(&buf[..], b"kept");
    drop(buf);
}
