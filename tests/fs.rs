//! Files through the ring: round trips, positional reads, buffer semantics, metadata, syncs,
//! open options and their errors, directory operations, close, and the memory safety of
//! cancelled reads and of dropping a runtime with reads in flight.

mod support;

use std::cell::Cell;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use ringloop::fs::{self, File, OpenOptions};
use ringloop::io::{BufResult, IoBuf};

/// A fresh path under the temp dir, removed (file or directory tree) when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(tag: &str) -> TempPath {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        TempPath(
            std::env::temp_dir().join(format!("ringloop-test-fs-{}-{tag}-{n}", std::process::id())),
        )
    }
}

impl std::ops::Deref for TempPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Byte `i` of the test pattern: not periodic at any power of two up to 251 * 256.
fn pattern(i: usize) -> u8 {
    ((i % 251) ^ (i / 251 % 256)) as u8
}

fn pattern_vec(len: usize) -> Vec<u8> {
    (0..len).map(pattern).collect()
}

#[test]
fn write_all_at_then_read_at_round_trip() {
    let path = TempPath::new("round-trip");
    ringloop::run(async {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&*path)
            .await
            .unwrap();
        let BufResult(res, data) = file.write_all_at(pattern_vec(10_000), 0).await;
        res.unwrap();
        assert_eq!(data.len(), 10_000, "the buffer comes back intact");
        let BufResult(res, buf) = file.read_at(Vec::with_capacity(10_000), 0).await;
        assert_eq!(res.unwrap(), 10_000);
        assert_eq!(buf, data);
        let BufResult(res, buf) = file.read_exact_at(vec![0u8; 5000], 5000).await;
        res.unwrap();
        assert_eq!(buf, &data[5000..]);
    });
    assert_eq!(std::fs::read(&*path).unwrap(), pattern_vec(10_000));
}

#[test]
fn fs_write_then_fs_read() {
    let path = TempPath::new("write-read");
    ringloop::run(async {
        fs::write(&*path, b"hello".to_vec()).await.unwrap();
        assert_eq!(fs::read(&*path).await.unwrap(), b"hello");
        // Overwrite truncates.
        fs::write(&*path, "hi").await.unwrap();
        assert_eq!(fs::read(&*path).await.unwrap(), b"hi");
        // Empty file.
        fs::write(&*path, Vec::new()).await.unwrap();
        assert_eq!(fs::read(&*path).await.unwrap(), b"");
    });
}

#[test]
fn eight_mib_round_trip() {
    let path = TempPath::new("8mib");
    let data = pattern_vec(8 << 20);
    let expected = data.clone();
    ringloop::run(async {
        fs::write(&*path, data).await.unwrap();
        let back = fs::read(&*path).await.unwrap();
        assert_eq!(back.len(), expected.len());
        assert!(back == expected, "8 MiB read back differs");
        // Read exactly sized: the capacity is the file's size, not doubled for the EOF probe.
        assert_eq!(back.capacity(), expected.len());

        let file = File::open(&*path).await.unwrap();
        let BufResult(res, buf) = file
            .read_exact_at(Vec::with_capacity(1 << 20), 3 << 20)
            .await;
        res.unwrap();
        assert!(buf[..] == expected[3 << 20..4 << 20]);
    });
    assert_eq!(std::fs::read(&*path).unwrap(), expected);
}

#[test]
fn fs_read_of_a_file_without_a_size() {
    // /proc files report size 0: fs::read must read until EOF anyway.
    let bytes = ringloop::run(fs::read("/proc/self/status")).unwrap();
    assert!(bytes.starts_with(b"Name:"));
    assert!(String::from_utf8(bytes).unwrap().contains("VmRSS"));
}

#[test]
fn positional_reads_at_offsets_and_past_eof() {
    let path = TempPath::new("offsets");
    std::fs::write(&*path, b"0123456789").unwrap();
    ringloop::run(async {
        let file = File::open(&*path).await.unwrap();
        for (pos, want) in [
            (0u64, &b"0123"[..]),
            (3, b"3456"),
            (8, b"89"),
            (10, b""),
            (1 << 40, b""),
        ] {
            let BufResult(res, buf) = file.read_at(Vec::with_capacity(4), pos).await;
            assert_eq!(res.unwrap(), want.len(), "at {pos}");
            assert_eq!(buf, want, "at {pos}");
        }
        // read_exact_at past the end: UnexpectedEof, with what was read.
        let BufResult(res, buf) = file.read_exact_at(Vec::with_capacity(8), 6).await;
        assert_eq!(res.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        assert_eq!(buf, b"6789");
        // Positional reads do not move the file position: a position read starts at 0.
        let BufResult(res, buf) = file.read(Vec::with_capacity(3)).await;
        assert_eq!(res.unwrap(), 3);
        assert_eq!(buf, b"012");
        let BufResult(res, buf) = file.read(Vec::with_capacity(3)).await;
        assert_eq!(res.unwrap(), 3);
        assert_eq!(buf, b"345");
    });
}

#[test]
fn vec_reads_set_len_and_never_reallocate() {
    let path = TempPath::new("vec");
    std::fs::write(&*path, pattern_vec(100)).unwrap();
    ringloop::run(async {
        let file = File::open(&*path).await.unwrap();
        // Stale length and contents; capacity larger than the file.
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(&[0xAA; 1000]);
        let (ptr, cap) = (buf.as_ptr(), buf.capacity());
        let BufResult(res, buf) = file.read_at(buf, 0).await;
        assert_eq!(res.unwrap(), 100);
        assert_eq!(buf.len(), 100, "length becomes the bytes read");
        assert_eq!(buf.capacity(), cap, "capacity unchanged");
        assert_eq!(buf.as_ptr(), ptr, "no reallocation");
        assert_eq!(buf, pattern_vec(100));

        // Stale length longer than what is read (short read): length shrinks to the count.
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&[1; 50]);
        let BufResult(res, buf) = file.read_at(buf, 90).await;
        assert_eq!(res.unwrap(), 10);
        assert_eq!(buf, pattern_vec(100)[90..]);

        // At EOF the length becomes 0.
        let BufResult(res, buf) = file.read_at(vec![7u8; 16], 100).await;
        assert_eq!(res.unwrap(), 0);
        assert!(buf.is_empty());
        assert!(buf.capacity() >= 16);

        // read_exact_at into a Vec with a stale length fills up to its capacity.
        let mut buf = Vec::with_capacity(40);
        buf.extend_from_slice(&[9; 30]);
        let (ptr, cap) = (buf.as_ptr(), buf.capacity());
        let BufResult(res, buf) = file.read_exact_at(buf, 10).await;
        res.unwrap();
        assert_eq!(buf.len(), cap);
        assert_eq!(buf.as_ptr(), ptr);
        assert_eq!(buf, pattern_vec(100)[10..10 + cap]);
    });
}

#[test]
fn boxed_slices_and_slices_as_buffers() {
    let path = TempPath::new("box-slice");
    std::fs::write(&*path, pattern_vec(256)).unwrap();
    ringloop::run(async {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&*path)
            .await
            .unwrap();
        // Box<[u8]>: a read fills from its start; its length never changes.
        let BufResult(res, boxed) = file.read_at(vec![0u8; 16].into_boxed_slice(), 16).await;
        assert_eq!(res.unwrap(), 16);
        assert_eq!(&boxed[..], &pattern_vec(256)[16..32]);
        let BufResult(res, boxed) = file.read_at(boxed, 250).await;
        assert_eq!(res.unwrap(), 6);
        assert_eq!(boxed.len(), 16);
        assert_eq!(&boxed[..6], &pattern_vec(256)[250..]);

        // A slice of a Vec: the read lands in the slice's range; the prefix is kept.
        let mut v = Vec::with_capacity(20);
        v.extend_from_slice(b"head:");
        let BufResult(res, slice) = file.read_at(v.slice(5..15), 0).await;
        assert_eq!(res.unwrap(), 10);
        let v = slice.into_inner();
        assert_eq!(&v[..5], b"head:");
        assert_eq!(&v[5..], &pattern_vec(256)[..10]);

        // A slice of a Box as a write: only the range is written.
        let data: Box<[u8]> = b"xxABCDxx".to_vec().into_boxed_slice();
        let BufResult(res, slice) = file.write_all_at(data.slice(2..6), 100).await;
        res.unwrap();
        assert_eq!(slice.into_inner().len(), 8);
        let BufResult(res, buf) = file.read_exact_at(Vec::with_capacity(6), 99).await;
        res.unwrap();
        assert_eq!(&buf[1..5], b"ABCD");
        assert_eq!(buf[0], pattern(99));
        assert_eq!(buf[5], pattern(104));
    });
}

#[test]
fn static_buffers_write() {
    let path = TempPath::new("static");
    ringloop::run(async {
        let file = File::create(&*path).await.unwrap();
        let BufResult(res, back) = file.write_at(&b"static bytes"[..], 0).await;
        assert_eq!(res.unwrap(), 12);
        assert_eq!(back, b"static bytes");
        file.write_all_at(" & str", 12).await.0.unwrap();
        file.close().await.unwrap();
    });
    assert_eq!(std::fs::read(&*path).unwrap(), b"static bytes & str");
}

#[test]
fn metadata_of_files_and_directories() {
    let path = TempPath::new("meta");
    let dir = TempPath::new("meta-dir");
    std::fs::create_dir(&*dir).unwrap();
    ringloop::run(async {
        let before = SystemTime::now() - Duration::from_secs(2);
        let file = File::create(&*path).await.unwrap();
        file.write_all_at(vec![1u8; 12345], 0).await.0.unwrap();
        let meta = file.metadata().await.unwrap();
        assert_eq!(meta.len(), 12345);
        assert!(meta.is_file() && !meta.is_dir() && !meta.is_symlink());
        assert!(!meta.is_empty());
        let modified = meta.modified().unwrap();
        let after = SystemTime::now() + Duration::from_secs(2);
        assert!(modified > before && modified < after, "mtime {modified:?}");
        assert!(meta.accessed().is_ok());
        // Birth time: reported by most local file systems; if so, it is recent too.
        if let Ok(created) = meta.created() {
            assert!(created > before && created < after);
        }
        let std_meta = std::fs::metadata(&*path).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.ino(), std_meta.ino());
        assert_eq!(meta.mode(), std_meta.mode());
        assert_eq!(meta.permissions(), std_meta.permissions());
        assert_eq!(meta.uid(), std_meta.uid());
        assert_eq!(meta.nlink(), 1);

        let by_path = fs::metadata(&*path).await.unwrap();
        assert_eq!(by_path.len(), 12345);
        assert_eq!(by_path.ino(), meta.ino());

        let dmeta = fs::metadata(&*dir).await.unwrap();
        assert!(dmeta.is_dir() && !dmeta.is_file());
        let dfile = File::open(&*dir).await.unwrap();
        assert!(dfile.metadata().await.unwrap().is_dir());

        // Symlinks: metadata follows, symlink_metadata does not.
        let link = TempPath::new("meta-link");
        std::os::unix::fs::symlink(&*path, &*link).unwrap();
        assert!(fs::metadata(&*link).await.unwrap().is_file());
        assert!(fs::symlink_metadata(&*link).await.unwrap().is_symlink());

        let missing = TempPath::new("meta-missing");
        assert_eq!(
            fs::metadata(&*missing).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
    });
}

#[test]
fn sync_all_and_sync_data() {
    let path = TempPath::new("sync");
    ringloop::run(async {
        let file = File::create(&*path).await.unwrap();
        file.write_all_at(&b"durable"[..], 0).await.0.unwrap();
        file.sync_data().await.unwrap();
        file.sync_all().await.unwrap();
    });
    assert_eq!(std::fs::read(&*path).unwrap(), b"durable");
}

#[test]
fn append_mode_writes_at_the_end() {
    let path = TempPath::new("append");
    std::fs::write(&*path, b"first").unwrap();
    ringloop::run(async {
        let file = OpenOptions::new().append(true).open(&*path).await.unwrap();
        file.write_all(&b", second"[..]).await.0.unwrap();
        // Even a positional write appends under O_APPEND (Linux).
        file.write_all_at(&b", third"[..], 0).await.0.unwrap();
    });
    assert_eq!(std::fs::read(&*path).unwrap(), b"first, second, third");
}

#[test]
fn file_position_reads_and_writes() {
    let path = TempPath::new("position");
    ringloop::run(async {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&*path)
            .await
            .unwrap();
        file.write_all(&b"abc"[..]).await.0.unwrap();
        file.write_all(b"def".to_vec()).await.0.unwrap();
        // The position is now 6: a read there is at EOF.
        let BufResult(res, _) = file.read(Vec::with_capacity(4)).await;
        assert_eq!(res.unwrap(), 0);
    });
    assert_eq!(std::fs::read(&*path).unwrap(), b"abcdef");
}

#[test]
fn open_errors_come_from_the_kernel() {
    let path = TempPath::new("errors");
    let dir = TempPath::new("errors-dir");
    std::fs::create_dir(&*dir).unwrap();
    ringloop::run(async {
        // Missing file.
        let err = File::open(&*path).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));

        // create_new on an existing file.
        std::fs::write(&*path, b"x").unwrap();
        let err = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&*path)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        // create_new on a fresh path works and really creates.
        let fresh = TempPath::new("errors-fresh");
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&*fresh)
            .await
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&*fresh).unwrap().permissions().mode() & 0o777,
            0o600
        );

        // A directory opened for writing: EISDIR.
        let err = OpenOptions::new()
            .write(true)
            .open(&*dir)
            .await
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EISDIR));

        // Reading a directory: EISDIR from the read, no panic.
        let d = File::open(&*dir).await.unwrap();
        let BufResult(res, _) = d.read_at(Vec::with_capacity(8), 0).await;
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EISDIR));

        // Reading a write-only file: EBADF, the buffer comes back.
        let w = OpenOptions::new().write(true).open(&*path).await.unwrap();
        let BufResult(res, buf) = w.read_at(vec![5u8; 8], 0).await;
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EBADF));
        assert_eq!(buf, [5u8; 8], "a failed read leaves the buffer as it was");
        // Writing a read-only file: EBADF.
        let r = File::open(&*path).await.unwrap();
        let BufResult(res, _) = r.write_at(&b"no"[..], 0).await;
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EBADF));

        // Invalid combinations, as std reports them.
        for opts in [
            OpenOptions::new().clone(),
            OpenOptions::new().read(true).create(true).clone(),
            OpenOptions::new().append(true).truncate(true).clone(),
        ] {
            let err = opts.open(&*path).await.unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{opts:?}");
        }

        // An interior NUL in the path.
        let err = File::open("bad\0path").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    });
}

#[test]
fn directory_operations_and_their_errors() {
    let dir = TempPath::new("dirops");
    ringloop::run(async {
        fs::create_dir(&*dir).await.unwrap();
        assert!(std::fs::metadata(&*dir).unwrap().is_dir());
        assert_eq!(
            fs::create_dir(&*dir).await.unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            fs::create_dir(dir.join("no/such/parent"))
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );

        let a = dir.join("a");
        let b = dir.join("b");
        fs::write(&a, "contents").await.unwrap();
        fs::rename(&a, &b).await.unwrap();
        assert!(!a.exists());
        assert_eq!(std::fs::read(&b).unwrap(), b"contents");
        assert_eq!(
            fs::rename(&a, &b).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        // Rename replaces an existing target.
        fs::write(&a, "new").await.unwrap();
        fs::rename(&a, &b).await.unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"new");

        // remove_dir on a non-empty directory fails; remove_file on a directory fails.
        assert_eq!(
            fs::remove_dir(&*dir).await.unwrap_err().raw_os_error(),
            Some(libc::ENOTEMPTY)
        );
        assert_eq!(
            fs::remove_file(&*dir).await.unwrap_err().raw_os_error(),
            Some(libc::EISDIR)
        );
        // remove_dir on a file fails.
        assert_eq!(
            fs::remove_dir(&b).await.unwrap_err().raw_os_error(),
            Some(libc::ENOTDIR)
        );

        fs::remove_file(&b).await.unwrap();
        assert!(!b.exists());
        assert_eq!(
            fs::remove_file(&b).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        fs::remove_dir(&*dir).await.unwrap();
        assert!(!dir.exists());
        assert_eq!(
            fs::remove_dir(&*dir).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
    });
}

#[test]
fn close_through_the_ring() {
    let path = TempPath::new("close");
    ringloop::run(async {
        let file = File::create(&*path).await.unwrap();
        file.write_all_at(&b"closed"[..], 0).await.0.unwrap();
        file.close().await.unwrap();
        let again = File::open(&*path).await.unwrap();
        let BufResult(res, buf) = again.read_at(Vec::with_capacity(16), 0).await;
        assert_eq!(res.unwrap(), 6);
        assert_eq!(buf, b"closed");
        again.close().await.unwrap();
    });
}

#[test]
fn std_conversions() {
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
    let path = TempPath::new("std");
    let mut std_file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&*path)
        .unwrap();
    std_file.write_all(b"from std").unwrap();
    let raw = std_file.as_raw_fd();
    let mut back = ringloop::run(async move {
        let file = File::from_std(std_file);
        assert_eq!(file.as_raw_fd(), raw);
        let BufResult(res, buf) = file.read_at(Vec::with_capacity(8), 5).await;
        assert_eq!(res.unwrap(), 3);
        assert_eq!(buf, b"std");
        file.write_all_at(&b" & ring"[..], 8).await.0.unwrap();
        file.into_std().unwrap()
    });
    assert_eq!(back.as_raw_fd(), raw);
    back.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    back.read_to_string(&mut s).unwrap();
    assert_eq!(s, "from std & ring");

    let raw = back.into_raw_fd();
    ringloop::run(async move {
        // SAFETY: `raw` was just released by `into_raw_fd` and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(raw) };
        assert_eq!(file.metadata().await.unwrap().len(), 15);
    });
}

#[test]
fn many_concurrent_reads_on_one_file() {
    let path = TempPath::new("concurrent");
    let data = pattern_vec(1 << 20);
    std::fs::write(&*path, &data).unwrap();
    let data = Rc::new(data);
    ringloop::run(async {
        let file = Rc::new(File::open(&*path).await.unwrap());
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let (file, data) = (file.clone(), data.clone());
                ringloop::spawn(async move {
                    for i in 0..32 {
                        let pos = ((t * 7919 + i * 104_729) % ((1 << 20) - 4096)) as u64;
                        let BufResult(res, buf) = file.read_at(Vec::with_capacity(4096), pos).await;
                        assert_eq!(res.unwrap(), 4096);
                        assert!(buf[..] == data[pos as usize..pos as usize + 4096]);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn cancelled_reads_are_memory_safe() {
    let path = TempPath::new("cancel");
    let len = 16 << 20;
    let data = pattern_vec(len);
    std::fs::write(&*path, &data).unwrap();
    let data = Rc::new(data);
    ringloop::run(async {
        let file = Rc::new(File::open(&*path).await.unwrap());
        // Timeouts racing the reads: some complete, some are cancelled in flight.
        let mut completed = 0;
        for i in 0..1000usize {
            let pos = ((i * 1_048_573) % (len - 65_536)) as u64;
            match ringloop::wait_for(
                file.read_at(Vec::with_capacity(65_536), pos),
                Duration::from_micros(10),
            )
            .await
            {
                Ok(BufResult(res, buf)) => {
                    assert_eq!(res.unwrap(), 65_536);
                    assert!(buf[..] == data[pos as usize..pos as usize + 65_536]);
                    completed += 1;
                }
                Err(_elapsed) => {}
            }
        }
        eprintln!("{completed} of 1000 reads beat a 10 µs timeout");

        // Reads dropped right after their first poll: the SQE is queued (or already with the
        // kernel), the buffer moves into the driver's table, and the kernel may write into it
        // after the future is gone. 64 at a time, 1,000 in all.
        for round in 0..16usize {
            let mut futs = Vec::new();
            for i in 0..64usize {
                let pos = (((round * 64 + i) * 1_048_573) % (len - 65_536)) as u64;
                let mut fut = Box::pin(file.read_at(Vec::with_capacity(65_536), pos));
                assert!(futures::poll!(&mut fut).is_pending());
                futs.push(fut);
            }
            if round % 2 == 1 {
                // Let the kernel start (or finish) them before they are dropped.
                ringloop::io::nop().await.unwrap();
            }
            drop(futs);
        }

        // 64 tasks reading in a loop, cancelled while their reads are in flight.
        let reading = Rc::new(Cell::new(0usize));
        let tasks: Vec<_> = (0..64usize)
            .map(|t| {
                let (file, reading) = (file.clone(), reading.clone());
                ringloop::spawn(async move {
                    let mut i = 0usize;
                    loop {
                        let pos = ((t * 65_537 + i * 262_147) % (len - 131_072)) as u64;
                        let BufResult(res, _buf) =
                            file.read_at(Vec::with_capacity(131_072), pos).await;
                        assert_eq!(res.unwrap(), 131_072);
                        i += 1;
                        if i == 1 {
                            reading.set(reading.get() + 1);
                        }
                    }
                })
            })
            .collect();
        // Every task is in its loop (one read done, the next submitted) before the cancels.
        support::yield_until("every task finished a read", || reading.get() == 64).await;
        for t in &tasks {
            assert!(t.cancel());
        }
        for t in tasks {
            assert!(t.await.unwrap_err().is_cancelled());
        }

        // The file, a fresh buffer and the runtime are all fine afterwards.
        let BufResult(res, buf) = file.read_exact_at(Vec::with_capacity(len), 0).await;
        res.unwrap();
        assert!(buf[..] == data[..]);
        ringloop::sleep(Duration::from_millis(1)).await;
    });
    assert_eq!(std::fs::read(&*path).unwrap(), *data);
}

#[test]
fn cancelled_pipe_reads_really_in_flight() {
    use std::os::fd::{FromRawFd, OwnedFd};
    ringloop::run(async {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills `fds` with two new descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: the descriptors are new and owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let (reader, writer) = (File::from(r), File::from(w));
        // An empty pipe: the read waits in the kernel until it is cancelled.
        for _ in 0..100 {
            let res = ringloop::wait_for(
                reader.read(Vec::with_capacity(1024)),
                Duration::from_micros(200),
            )
            .await;
            assert!(res.is_err(), "a read of an empty pipe cannot complete");
        }
        // The cancelled reads took nothing: the next read gets every byte written.
        writer
            .write_all(&b"after cancellations"[..])
            .await
            .0
            .unwrap();
        let BufResult(res, buf) = reader.read(Vec::with_capacity(1024)).await;
        assert_eq!(res.unwrap(), 19);
        assert_eq!(buf, b"after cancellations");
        // Closing the writer: the reader sees EOF.
        writer.close().await.unwrap();
        let BufResult(res, _) = reader.read(Vec::with_capacity(16)).await;
        assert_eq!(res.unwrap(), 0);
    });
}

#[test]
fn dropping_a_runtime_with_reads_in_flight() {
    use std::os::fd::FromRawFd;
    let path = TempPath::new("rt-drop");
    let len = 8 << 20;
    std::fs::write(&*path, pattern_vec(len)).unwrap();
    for _ in 0..3 {
        let rt = ringloop::Runtime::new().unwrap();
        let file = Rc::new(rt.block_on(File::open(&*path)).unwrap());
        let reading = Rc::new(Cell::new(0usize));
        for t in 0..32usize {
            let (file, reading) = (file.clone(), reading.clone());
            rt.spawn(async move {
                let mut i = 0usize;
                loop {
                    let pos = ((t * 65_537 + i * 262_147) % (len - 262_144)) as u64;
                    let _ = file.read_at(Vec::with_capacity(262_144), pos).await;
                    i += 1;
                    if i == 1 {
                        reading.set(reading.get() + 1);
                    }
                }
            })
            .detach();
        }
        // And a read that can never complete by itself: an empty pipe.
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills `fds` with two new descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: the descriptors are new and owned by nobody else.
        let (r, w) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        let pipe_read = Rc::new(Cell::new(false));
        let p = pipe_read.clone();
        rt.spawn(async move {
            // Set in the poll that submits the read, so seen only after it.
            p.set(true);
            let _ = r.read(Vec::with_capacity(4096)).await;
            unreachable!("nothing is ever written to the pipe");
        })
        .detach();
        // Every file task has a read in flight (its second), and the pipe read was polled:
        // block_on hands what the last pass queued to the kernel before it returns.
        rt.block_on(support::yield_until("every read in flight", || {
            reading.get() == 32 && pipe_read.get()
        }));
        drop(file);
        drop(rt);
        drop(w);
    }
    // A new runtime does I/O normally.
    let back = ringloop::run(fs::read(&*path)).unwrap();
    assert!(back == pattern_vec(len));
}

#[test]
fn io_uring_write_then_std_sees_it_and_vice_versa() {
    let path = TempPath::new("interop");
    ringloop::run(async {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&*path)
            .await
            .unwrap();
        file.write_all_at(&b"ring"[..], 0).await.0.unwrap();
        assert_eq!(std::fs::read(&*path).unwrap(), b"ring");
        std::fs::write(&*path, b"std!").unwrap();
        let BufResult(res, buf) = file.read_at(Vec::with_capacity(4), 0).await;
        res.unwrap();
        assert_eq!(buf, b"std!");
    });
}

/// Review findings: an offset beyond i64::MAX (u64::MAX even meant "the file position"), and
/// fs::read of a huge sparse file aborting on allocation.
#[test]
fn offsets_beyond_i64_max_and_huge_files_are_errors() {
    let dir = std::env::temp_dir().join(format!("ringloop-fs-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("f");
    ringloop::run(async {
        let file = ringloop::fs::File::create(&path).await.unwrap();
        for pos in [u64::MAX, i64::MAX as u64 + 1] {
            let ringloop::io::BufResult(r, _) = file.write_at(b"abc".to_vec(), pos).await;
            assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
            let ringloop::io::BufResult(r, _) = file.read_at(vec![0u8; 3], pos).await;
            assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
        }
        let ringloop::io::BufResult(r, _) = file.write_all_at(b"abc".to_vec(), u64::MAX).await;
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
        assert_eq!(
            file.metadata().await.unwrap().len(),
            0,
            "nothing was written"
        );
        // A sparse file far larger than memory: an error, as std::fs::read gives.
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(1 << 50)
            .or_else(|_| {
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_len(1 << 42)
            })
            .unwrap();
        let err = ringloop::fs::read(&path).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::OutOfMemory);
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Review finding (epoll): jobs submitted in one pass while one blocking thread was idle all
/// queued behind that thread, so a metadata call waited behind an open of a FIFO that no
/// writer had opened yet (an open that blocks until one does).
#[test]
fn a_blocked_file_operation_does_not_hold_up_the_others() {
    let fifo = TempPath::new("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads the path from a live C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    ringloop::run(async {
        // Warm the blocking threads up, so one is idle.
        ringloop::fs::metadata("/").await.unwrap();
        let path = fifo.to_path_buf();
        // Blocks until a writer opens the FIFO.
        let reader = ringloop::spawn(async move { File::open(&path).await });
        ringloop::yield_now().await;
        let meta = ringloop::wait_for(ringloop::fs::metadata("/"), Duration::from_secs(10)).await;
        assert!(
            meta.expect("metadata waited behind the FIFO open")
                .unwrap()
                .is_dir()
        );
        // Release the reader's open: a writer opens the FIFO.
        let _writer = std::fs::OpenOptions::new()
            .write(true)
            .open(&*fifo)
            .unwrap();
        reader.await.unwrap().unwrap();
    });
}
