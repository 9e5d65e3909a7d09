//! The safety and no-loss rules for sockets under cancellation (DESIGN.md section 3):
//! dropped reads free nothing the kernel may still write, cancelled stream reads lose no
//! byte, and dropping the runtime with reads in flight corrupts nothing.

mod support;

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};

use futures::poll;
use ringloop::io::{BufResult, IoBuf, Slice};
use ringloop::net::{TcpListener, TcpStream, UnixStream};

/// A deterministic byte stream (xorshift64*), to check every byte's value and position.
struct Pattern {
    state: u64,
    word: [u8; 8],
    pos: usize,
}

impl Pattern {
    fn new(seed: u64) -> Pattern {
        Pattern {
            state: seed | 1,
            word: [0; 8],
            pos: 8,
        }
    }

    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            if self.pos == 8 {
                self.state ^= self.state >> 12;
                self.state ^= self.state << 25;
                self.state ^= self.state >> 27;
                self.word = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
                self.pos = 0;
            }
            *b = self.word[self.pos];
            self.pos += 1;
        }
    }
}

/// A small PRNG for the timeouts.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Streams TOTAL pattern bytes from `writer` to `reader` while the reader cancels reads at
/// random; checks every byte arrives once, in order.
async fn lossless<S: ReadWrite + 'static>(writer: S, reader: S, label: &str) {
    const TOTAL: usize = 64 << 20;
    const CHUNK: usize = 64 << 10;
    let send = ringloop::spawn(async move {
        let mut pattern = Pattern::new(0x5eed);
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0;
        while sent < TOTAL {
            pattern.fill(&mut buf);
            let BufResult(r, b) = writer.write_all(buf).await;
            r.unwrap();
            buf = b;
            sent += CHUNK;
            if sent % (CHUNK * 32) == 0 {
                // Pauses, so that some reads wait long enough for their deadline.
                ringloop::sleep(Duration::from_micros(1500)).await;
            }
        }
        drop(writer);
    });
    let mut expect = Pattern::new(0x5eed);
    let mut scratch = vec![0u8; CHUNK];
    let mut rng = 0x1234_5678_9abc_def1u64;
    let (mut received, mut reads, mut cancelled) = (0usize, 0u64, 0u64);
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let started = Instant::now();
    loop {
        let r = next(&mut rng);
        let d = if r % 4 == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(100 + (r >> 8) % 1900)
        };
        reads += 1;
        // Buffers of 1 B to 64 KiB.
        let want = 1 + (next(&mut rng) as usize) % CHUNK;
        buf.reserve(want);
        let view = std::mem::take(&mut buf).slice(..want);
        match ringloop::wait_for(reader.read_buf(view), d).await {
            Ok(BufResult(n, b)) => {
                let n = n.unwrap();
                if n == 0 {
                    break;
                }
                let b = b.into_inner();
                expect.fill(&mut scratch[..n]);
                assert!(
                    b[..n] == scratch[..n],
                    "{label}: wrong bytes at offset {received}..{}",
                    received + n
                );
                received += n;
                buf = b;
            }
            Err(_) => {
                // The buffer went with the cancelled read (freed after its CQE).
                cancelled += 1;
                buf = Vec::with_capacity(CHUNK);
            }
        }
    }
    send.await.unwrap();
    assert_eq!(received, TOTAL, "{label}: every byte arrived");
    println!(
        "{label}: {TOTAL} bytes in {:?}: {reads} reads, {cancelled} cancelled, {} of those \
         delivered data through the orphan path",
        started.elapsed(),
        reader.rescued()
    );
    assert!(cancelled > 0, "{label}: cancellations happened");
}

trait ReadWrite {
    async fn read_buf(&self, buf: Slice<Vec<u8>>) -> BufResult<usize, Slice<Vec<u8>>>;
    async fn write_all(&self, buf: Vec<u8>) -> BufResult<(), Vec<u8>>;
    fn rescued(&self) -> u64;
}

impl ReadWrite for TcpStream {
    async fn read_buf(&self, buf: Slice<Vec<u8>>) -> BufResult<usize, Slice<Vec<u8>>> {
        self.read(buf).await
    }
    async fn write_all(&self, buf: Vec<u8>) -> BufResult<(), Vec<u8>> {
        TcpStream::write_all(self, buf).await
    }
    fn rescued(&self) -> u64 {
        self.rescued_reads()
    }
}

impl ReadWrite for UnixStream {
    async fn read_buf(&self, buf: Slice<Vec<u8>>) -> BufResult<usize, Slice<Vec<u8>>> {
        self.read(buf).await
    }
    async fn write_all(&self, buf: Vec<u8>) -> BufResult<(), Vec<u8>> {
        UnixStream::write_all(self, buf).await
    }
    fn rescued(&self) -> u64 {
        self.rescued_reads()
    }
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = TcpStream::connect(addr).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

/// A waker that records that it was woken.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Polls `read` once, with a waker of its own, and checks it is pending; returns that waker's
/// flag. The driver wakes a read when its receive completes (the CQE reaped, or the syscall
/// run on readiness under epoll), so waiting for the flag waits for the completion itself
/// while the future is never polled again.
fn poll_once_with_flag<F: Future>(read: Pin<&mut F>) -> Arc<Flag> {
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    assert!(
        read.poll(&mut Context::from_waker(&waker)).is_pending(),
        "submitted, no data yet"
    );
    flag
}

/// Waits until the receive of a read polled by [`poll_once_with_flag`] completed.
async fn until_completed(flag: &Flag) {
    support::yield_until("the receive completed", || flag.0.load(Ordering::SeqCst)).await;
}

/// Blocks until `fd` has bytes to read (at most 10 s).
fn wait_readable(fd: std::os::fd::RawFd) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, 10_000) };
    assert_eq!(n, 1, "no data came");
}

#[test]
fn cancelled_reads_lose_no_byte_over_tcp() {
    ringloop::run(async {
        let (w, r) = tcp_pair().await;
        lossless(w, r, "tcp").await;
    });
}

#[test]
fn cancelled_reads_lose_no_byte_over_unix() {
    ringloop::run(async {
        let (w, r) = UnixStream::pair().unwrap();
        lossless(w, r, "unix").await;
    });
}

/// The orphan path, forced: the receive completes while nobody polls its future; dropping
/// the future then hands the bytes to the stream, and the next read returns them.
#[test]
fn a_completed_but_uncollected_read_keeps_its_bytes() {
    ringloop::run(async {
        let (a, b) = tcp_pair().await;
        {
            let read = pin!(b.read(Vec::with_capacity(64)));
            let completed = poll_once_with_flag(read);
            let BufResult(r, _) = a.write_all("rescued ").await;
            r.unwrap();
            // The loop reaps the receive's completion; the read future is never polled again.
            until_completed(&completed).await;
        }
        assert_eq!(b.rescued_reads(), 1);
        let BufResult(r, _) = a.write_all("and more").await;
        r.unwrap();
        // The new bytes wait in the socket: the kept ones must still come out first.
        wait_readable(std::os::fd::AsRawFd::as_raw_fd(&b));
        let mut got = Vec::new();
        while got.len() < 16 {
            // A small buffer: the kept bytes come out across several reads, first.
            let BufResult(n, buf) = b.read(Vec::with_capacity(5)).await;
            assert!(n.unwrap() > 0);
            got.extend_from_slice(&buf);
        }
        assert_eq!(got, b"rescued and more");
    });
}

/// An orphaned receive still in flight: the next read waits for it, so a receive submitted
/// later cannot overtake it; a cancellation that won delivers nothing and loses nothing.
#[test]
fn a_new_read_waits_for_the_orphaned_one() {
    ringloop::run(async {
        let (a, b) = UnixStream::pair().unwrap();
        for i in 0..200u32 {
            {
                let mut read = pin!(b.read(Vec::with_capacity(64)));
                assert!(poll!(read.as_mut()).is_pending());
            }
            // The cancel and the next receive are queued; data may or may not beat the cancel.
            let msg = format!("m{i:03}");
            let next = b.read(Vec::with_capacity(64));
            let BufResult(r, _) = a.write_all(msg.clone().into_bytes()).await;
            r.unwrap();
            let BufResult(n, buf) = next.await;
            assert_eq!(n.unwrap(), 4);
            assert_eq!(buf, msg.as_bytes());
        }
    });
}

/// EOF and errors seen by an orphaned receive are reported by the next read.
#[test]
fn orphaned_eof_and_errors_are_reported_later() {
    ringloop::run(async {
        let (a, b) = UnixStream::pair().unwrap();
        {
            let read = pin!(b.read(Vec::with_capacity(64)));
            let completed = poll_once_with_flag(read);
            let BufResult(r, _) = a.write_all("last").await;
            r.unwrap();
            drop(a);
            until_completed(&completed).await;
        }
        let BufResult(n, buf) = b.read(Vec::with_capacity(64)).await;
        assert_eq!(&buf[..n.unwrap()], b"last");
        let BufResult(n, _) = b.read(Vec::with_capacity(64)).await;
        assert_eq!(n.unwrap(), 0);

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (s, _) = listener.accept().await.unwrap();
        {
            let read = pin!(s.read(Vec::with_capacity(64)));
            let completed = poll_once_with_flag(read);
            let l = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: valid pointer and length for SO_LINGER.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&peer),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&raw const l).cast(),
                    size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            drop(peer);
            until_completed(&completed).await;
        }
        let BufResult(r, _) = s.read(Vec::with_capacity(64)).await;
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
    });
}

/// Rule 1: reads dropped in flight over and over; the stream keeps working.
#[test]
fn dropping_in_flight_reads_repeatedly_is_harmless() {
    ringloop::run(async {
        let (a, b) = tcp_pair().await;
        for i in 0..2000u32 {
            let d = Duration::from_micros(u64::from(i % 3) * 50);
            assert!(
                ringloop::wait_for(b.read(vec![0u8; 4096]), d)
                    .await
                    .is_err(),
                "nothing was sent"
            );
        }
        let BufResult(r, _) = a.write_all("still works").await;
        r.unwrap();
        let BufResult(n, buf) = b.read(vec![0u8; 64]).await;
        assert_eq!(&buf[..n.unwrap()], b"still works");
        assert_eq!(b.rescued_reads(), 0);
    });
}

/// Rule 3: dropping the runtime with reads in flight reaps them; the peers writing afterwards
/// corrupt no memory.
#[test]
fn runtime_drop_with_reads_in_flight_then_peers_write() {
    let mut peers = Vec::new();
    {
        let rt = ringloop::Runtime::new().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Reads started, each counted in the poll that submits it.
        let started = Arc::new(AtomicUsize::new(0));
        for _ in 0..16 {
            let peer = std::net::TcpStream::connect(addr).unwrap();
            let (s, _) = listener.accept().unwrap();
            peers.push(peer);
            let started = started.clone();
            rt.spawn(async move {
                let s = TcpStream::from(s);
                started.fetch_add(1, Ordering::SeqCst);
                let BufResult(_r, _buf) = s.read(vec![0u8; 256 << 10]).await;
                unreachable!("nobody writes while the runtime lives");
            });
        }
        let (ua, ub) = std::os::unix::net::UnixStream::pair().unwrap();
        peers.push(std::net::TcpStream::from(std::os::fd::OwnedFd::from(ua)));
        let unix_started = started.clone();
        rt.spawn(async move {
            let s = UnixStream::from(ub);
            unix_started.fetch_add(1, Ordering::SeqCst);
            let _ = s.read(vec![0u8; 256 << 10]).await;
        });
        // Every read is in flight: block_on hands what the last pass queued to the kernel.
        rt.block_on(support::yield_until("every read started", || {
            started.load(Ordering::SeqCst) == 17
        }));
        drop(rt);
    }
    // Memory the allocator may hand out where the read buffers were.
    let blocks: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 256 << 10]).collect();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        for mut p in peers {
            let _ = p.write_all(&[0xEE; 64 << 10]);
        }
    });
    writer.join().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    for (i, b) in blocks.iter().enumerate() {
        assert!(b.iter().all(|&x| x == i as u8), "block {i} was overwritten");
    }
}

/// `read_timeout` (a linked timeout in the kernel): a read that times out consumed nothing;
/// 8 MiB of a pattern read with tiny deadlines arrives whole and in order.
#[test]
fn read_timeout_loses_no_byte() {
    const TOTAL: usize = 8 << 20;
    ringloop::run(async {
        let (a, b) = UnixStream::pair().unwrap();
        // Nothing sent yet: the read must time out, after at least its deadline.
        let start = Instant::now();
        let BufResult(r, buf) = b
            .read_timeout(vec![0u8; 16], Duration::from_millis(5))
            .await;
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(5));
        drop(buf);

        let writer = ringloop::spawn(async move {
            let mut pattern = Pattern::new(7);
            let mut sent = 0;
            while sent < TOTAL {
                let mut chunk = vec![0u8; 32 << 10];
                pattern.fill(&mut chunk);
                let BufResult(r, _) = a.write_all(chunk).await;
                r.unwrap();
                sent += 32 << 10;
                // Pauses make reads find an empty socket, so deadlines fire mid-stream.
                ringloop::sleep(Duration::from_micros(300)).await;
            }
        });
        let mut expect = Pattern::new(7);
        let mut want = vec![0u8; 64 << 10];
        let (mut got, mut timeouts) = (0, 0u32);
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut buf = Vec::with_capacity(64 << 10);
        while got < TOTAL {
            let d = Duration::from_micros(1 + next(&mut rng) % 200);
            let BufResult(r, b2) = b.read_timeout(buf, d).await;
            buf = b2;
            match r {
                Ok(0) => panic!("unexpected end of stream at {got}"),
                Ok(n) => {
                    expect.fill(&mut want[..n]);
                    assert_eq!(&buf[..n], &want[..n], "bytes {got}..{} differ", got + n);
                    got += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => timeouts += 1,
                Err(e) => panic!("read failed: {e}"),
            }
        }
        writer.await.unwrap();
        println!("read_timeout: {TOTAL} bytes, {timeouts} reads timed out");
        assert!(
            timeouts > 0,
            "no deadline fired; the test did not test anything"
        );
    });
}

/// Review finding: `read_timeout(Duration::MAX)` was sent to the kernel as tv_sec = -1, which
/// failed at once as a timeout.
#[test]
fn read_timeout_of_duration_max_waits_for_data() {
    ringloop::run(async {
        let (a, b) = UnixStream::pair().unwrap();
        let writer = ringloop::spawn(async move {
            ringloop::sleep(Duration::from_millis(20)).await;
            let BufResult(r, _) = a.write_all(b"late".to_vec()).await;
            r.unwrap();
        });
        let BufResult(n, buf) = b.read_timeout(vec![0u8; 8], Duration::MAX).await;
        assert_eq!(&buf[..n.unwrap()], b"late");
        writer.await.unwrap();
    });
}

/// Peer bug (tokio-uring#147): a completion queue far smaller than the operations in flight
/// (a ring of 2 entries, so 4 CQ slots, and 2,000 receives pending at once, 10,000 in all)
/// loses no completion and does not hang. On epoll the ring size does not apply; the same
/// load runs there too.
#[test]
fn a_tiny_ring_with_thousands_of_reads_in_flight_loses_nothing() {
    const PAIRS: usize = 2000;
    const ROUNDS: usize = 5;
    let rt = ringloop::Runtime::builder().entries(2).build().unwrap();
    rt.block_on(async {
        let pairs: Vec<_> = (0..PAIRS)
            .map(|_| ringloop::net::UnixStream::pair().unwrap())
            .collect();
        let pairs = std::rc::Rc::new(pairs);
        for round in 0..ROUNDS {
            // Every reader waits at once...
            let readers: Vec<_> = (0..PAIRS)
                .map(|i| {
                    let pairs = std::rc::Rc::clone(&pairs);
                    ringloop::spawn(async move {
                        let BufResult(n, buf) = pairs[i].1.read(Vec::with_capacity(16)).await;
                        assert_eq!(n.unwrap(), 8);
                        u64::from_le_bytes(buf[..8].try_into().unwrap())
                    })
                })
                .collect();
            ringloop::yield_now().await;
            // ...then every writer sends, so thousands of completions land together.
            for (i, (w, _)) in pairs.iter().enumerate() {
                let v = (round * PAIRS + i) as u64;
                w.write_all(v.to_le_bytes().to_vec()).await.0.unwrap();
            }
            for (i, r) in readers.into_iter().enumerate() {
                assert_eq!(r.await.unwrap(), (round * PAIRS + i) as u64);
            }
        }
    });
}

/// A heap block the size of a connect's boxed address (a `sockaddr_storage` and its length),
/// holding `addr`: if a dropped connect's address were freed early, such blocks would take its
/// place, and the kernel would connect to `addr` instead.
fn address_lookalike(addr: std::net::SocketAddr) -> Vec<u8> {
    let std::net::SocketAddr::V4(v4) = addr else {
        unreachable!("the trap listens on 127.0.0.1");
    };
    let mut block = Vec::with_capacity(136);
    block.extend_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    block.extend_from_slice(&v4.port().to_be_bytes());
    block.extend_from_slice(&v4.ip().octets());
    block.resize(128, 0);
    block.extend_from_slice(&(size_of::<libc::sockaddr_in>() as u32).to_ne_bytes());
    block.resize(136, 0);
    block
}

/// Peer bug tokio-uring#125: a connect whose future is dropped must keep its address alive
/// until the kernel is done with it. Connect futures are dropped with their SQE still queued
/// (the address not yet read by the kernel) and while the kernel waits for a handshake (a
/// listener whose accept queue is full drops SYNs), and the freed heap is refilled with
/// lookalike addresses of a trap listener: nothing may ever connect to the trap, and the
/// target still accepts and the loop still serves afterwards.
#[test]
fn dropped_connects_keep_their_address_until_the_kernel_is_done() {
    ringloop::run(async {
        let target = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = target.local_addr().unwrap();
        let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        trap.set_nonblocking(true).unwrap();
        let trap_addr = trap.local_addr().unwrap();

        // Dropped right after the first poll: the SQE waits in the queue.
        for _ in 0..200 {
            {
                let mut connect = pin!(TcpStream::connect(addr));
                assert!(poll!(connect.as_mut()).is_pending());
            }
            let lookalikes: Vec<_> = (0..8).map(|_| address_lookalike(trap_addr)).collect();
            // The loop submits (the kernel reads what the SQE points to) and reaps.
            ringloop::io::nop().await.unwrap();
            drop(lookalikes);
        }

        // Dropped while the kernel waits for the handshake: a backlog of 0, filled by one
        // connection nobody accepts, makes the kernel drop the SYNs.
        let full =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        full.bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
        full.listen(0).unwrap();
        let full_addr = full.local_addr().unwrap().as_socket().unwrap();
        let _filler = std::net::TcpStream::connect(full_addr).unwrap();
        for _ in 0..50 {
            {
                let mut connect = pin!(TcpStream::connect(full_addr));
                assert!(poll!(connect.as_mut()).is_pending());
                ringloop::io::nop().await.unwrap();
                assert!(
                    poll!(connect.as_mut()).is_pending(),
                    "the accept queue is full"
                );
            }
            let lookalikes: Vec<_> = (0..8).map(|_| address_lookalike(trap_addr)).collect();
            ringloop::io::nop().await.unwrap();
            drop(lookalikes);
        }

        match trap.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("a dropped connect reached the trap: {other:?}"),
        }
        // The target serves a connect that is awaited, after whatever the dropped ones did.
        let client = TcpStream::connect(addr).await.unwrap();
        let mine = client.local_addr().unwrap();
        loop {
            let (_, peer) = target.accept().await.unwrap();
            if peer == mine {
                break;
            }
        }
    });
}
