//! `cat` through the ring: copies each file named on the command line to stdout.
//!
//! ```text
//! cargo run --release --example cat -- <file>...
//! ```
//!
//! Each file is read with positional reads of 64 KiB (`File::read_at`); stdout is wrapped in a
//! `ringloop::fs::File` and written with `write_all`, which writes at the file position, so it
//! works whether stdout is a file, a pipe or a terminal (positional writes fail with `ESPIPE`
//! on pipes). A file that cannot be read is reported on stderr as `cat: <path>: <error>`; the
//! others are still copied, and the exit code is 1.

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::process::ExitCode;

use ringloop::fs::File;

const CHUNK: usize = 64 * 1024;

/// Copies `path` to `out`. Errors are the reading side's; a write error is returned as
/// `Err(Err(e))` so that the caller can stop (stdout is gone).
async fn copy(path: &str, out: &File) -> Result<(), Result<io::Error, io::Error>> {
    let file = File::open(path).await.map_err(Ok)?;
    let mut buf = Vec::with_capacity(CHUNK);
    let mut pos = 0u64;
    loop {
        let (res, b) = file.read_at(buf, pos).await.into_parts();
        let n = res.map_err(Ok)?;
        if n == 0 {
            return Ok(());
        }
        pos += n as u64;
        let (res, b) = out.write_all(b).await.into_parts();
        res.map_err(Err)?;
        buf = b;
    }
}

/// The message `std::io::Error` gives, without its " (os error N)" suffix, as cat prints it.
fn message(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn main() -> ExitCode {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: cat <file>...");
        return ExitCode::from(2);
    }
    ringloop::run(async {
        // SAFETY: fd 1 is open for the life of the process; ManuallyDrop keeps the File from
        // closing it.
        let stdout = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
        let mut code = ExitCode::SUCCESS;
        for path in &paths {
            match copy(path, &stdout).await {
                Ok(()) => {}
                Err(Ok(e)) => {
                    eprintln!("cat: {path}: {}", message(&e));
                    code = ExitCode::FAILURE;
                }
                Err(Err(e)) => {
                    if e.kind() != io::ErrorKind::BrokenPipe {
                        eprintln!("cat: write error: {}", message(&e));
                    }
                    return ExitCode::FAILURE;
                }
            }
        }
        code
    })
}
