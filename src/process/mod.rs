//! Subprocesses: asyncio's `create_subprocess_exec` and tokio's `process`, on the driver.
//!
//! [`Command`] is std's builder; [`Command::spawn`] gives a [`Child`] whose
//! [`wait`](Child::wait) is a future: the child's pidfd (`pidfd_open(2)`) becomes readable
//! when it exits, which the ring sees with a `POLL_ADD` and the epoll driver with
//! `waitid(P_PIDFD, WNOWAIT)` on readiness; then `waitid(P_PIDFD)` reaps it. Signals go
//! through the pidfd too (`pidfd_send_signal`), so nothing here can reach another process
//! that reused the pid. Linux 5.4. No `SIGCHLD` handler is installed, so the program's own
//! handling of that signal is left alone. (`IORING_OP_WAITID`, Linux 6.7, would save the
//! reaping `waitid` but not a wake-up, and needs a probe and a fallback anyway: the pidfd works
//! on every kernel ringloop supports.)
//!
//! The child's piped standard streams ([`Child::stdin`], [`Child::stdout`],
//! [`Child::stderr`]) are read and written with owned buffers, like sockets; a read dropped
//! before it completes loses no byte. A `Child` dropped before its process was reaped hands
//! the pidfd to a reaper thread, so no child is left a zombie; [`Command::kill_on_drop`]
//! kills it first.
//!
//! # Examples
//!
//! ```
//! use ringloop::process::Command;
//!
//! ringloop::run(async {
//!     let out = Command::new("echo").arg("hello").output().await.unwrap();
//!     assert!(out.status.success());
//!     assert_eq!(out.stdout, b"hello\n");
//! });
//! ```

mod pipe;
mod reaper;

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Output, Stdio};

pub use self::pipe::{ChildStderr, ChildStdin, ChildStdout};
use crate::driver::fd::{Fd, SharedFd};
use crate::driver::op::Op;
use crate::driver::op::process::{self as pidfd, PidfdExit};
use crate::io::BufResult;

/// A process builder: [`std::process::Command`]'s methods, and a [`spawn`](Self::spawn) whose
/// [`Child`] is awaited on the loop.
pub struct Command {
    std: std::process::Command,
    stdin_set: bool,
    stdout_set: bool,
    stderr_set: bool,
    kill_on_drop: bool,
}

impl Command {
    /// A command running `program` (looked up in `PATH` if it has no `/`), with no arguments,
    /// the parent's environment and working directory, and inherited standard streams.
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command::from(std::process::Command::new(program))
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.std.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.std.args(args);
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(&mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> &mut Command {
        self.std.env(key, val);
        self
    }

    /// Sets environment variables for the child.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.std.envs(vars);
        self
    }

    /// Removes an environment variable from the child's environment.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Command {
        self.std.env_remove(key);
        self
    }

    /// Starts the child with an empty environment (plus what `env` adds).
    pub fn env_clear(&mut self) -> &mut Command {
        self.std.env_clear();
        self
    }

    /// Sets the child's working directory.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.std.current_dir(dir);
        self
    }

    /// The child's standard input: `Stdio::piped()` gives [`Child::stdin`].
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.std.stdin(cfg);
        self.stdin_set = true;
        self
    }

    /// The child's standard output: `Stdio::piped()` gives [`Child::stdout`].
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.std.stdout(cfg);
        self.stdout_set = true;
        self
    }

    /// The child's standard error: `Stdio::piped()` gives [`Child::stderr`].
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.std.stderr(cfg);
        self.stderr_set = true;
        self
    }

    /// Kill the child (`SIGKILL`) if its [`Child`] is dropped before the child exited
    /// (default: `false`, the child runs on and is reaped when it exits).
    pub fn kill_on_drop(&mut self, kill: bool) -> &mut Command {
        self.kill_on_drop = kill;
        self
    }

    /// The std builder inside, for settings this type does not mirror (`pre_exec`, `uid`,
    /// `process_group`, ...).
    pub fn as_std_mut(&mut self) -> &mut std::process::Command {
        &mut self.std
    }

    /// Starts the child.
    ///
    /// # Errors
    ///
    /// What `std::process::Command::spawn` reports (a missing program is `NotFound`), or the
    /// kernel refusing a pidfd (Linux before 5.4; the child is then killed and reaped), or
    /// the child having been reaped by someone else already (`SIGCHLD` set to `SIG_IGN`).
    pub fn spawn(&mut self) -> io::Result<Child> {
        Child::from_std(self.std.spawn()?, self.kill_on_drop)
    }

    /// Runs the child to completion with its standard output and error captured (and its
    /// standard input empty unless set), like std's `output`. Both pipes are read at once, so a
    /// child that fills one while the other is unread does not deadlock.
    pub async fn output(&mut self) -> io::Result<Output> {
        if !self.stdin_set {
            self.std.stdin(Stdio::null());
        }
        if !self.stdout_set {
            self.std.stdout(Stdio::piped());
        }
        if !self.stderr_set {
            self.std.stderr(Stdio::piped());
        }
        let child = self.spawn();
        // A later `spawn` of this builder gets what the caller set, not output's defaults.
        self.restore_defaults();
        child?.wait_with_output().await
    }

    /// Runs the child to completion (standard streams inherited unless set) and returns how
    /// it exited.
    pub async fn status(&mut self) -> io::Result<ExitStatus> {
        self.spawn()?.wait().await
    }

    fn restore_defaults(&mut self) {
        if !self.stdin_set {
            self.std.stdin(Stdio::inherit());
        }
        if !self.stdout_set {
            self.std.stdout(Stdio::inherit());
        }
        if !self.stderr_set {
            self.std.stderr(Stdio::inherit());
        }
    }
}

impl From<std::process::Command> for Command {
    fn from(std: std::process::Command) -> Command {
        Command {
            std,
            stdin_set: false,
            stdout_set: false,
            stderr_set: false,
            kill_on_drop: false,
        }
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.std, f)
    }
}

/// A running (or exited) child process, from [`Command::spawn`].
///
/// Not reaped until [`wait`](Self::wait) or [`try_wait`](Self::try_wait) sees it exit; if
/// the `Child` is dropped first, a reaper thread reaps it when it exits (after a `SIGKILL`
/// if [`Command::kill_on_drop`] was set).
pub struct Child {
    /// The parent's end of the child's standard input, if it was `Stdio::piped()`.
    pub stdin: Option<ChildStdin>,
    /// The parent's end of the child's standard output, if it was `Stdio::piped()`.
    pub stdout: Option<ChildStdout>,
    /// The parent's end of the child's standard error, if it was `Stdio::piped()`.
    pub stderr: Option<ChildStderr>,
    pid: u32,
    /// `None` once reaped.
    pidfd: Option<SharedFd>,
    /// The pidfd was opened `PIDFD_NONBLOCK` (Linux 5.10).
    nonblocking: bool,
    status: Option<ExitStatus>,
    kill_on_drop: bool,
}

impl Child {
    fn from_std(mut child: std::process::Child, kill_on_drop: bool) -> io::Result<Child> {
        let pid = child.id();
        // The child is unreaped (a zombie at worst), so its pid cannot be reused meanwhile.
        let (pidfd, nonblocking) = match pidfd::open(pid) {
            Ok(opened) => opened,
            Err(e) => return Err(no_pidfd(&mut child, e)),
        };
        Ok(Child {
            stdin: child.stdin.take().map(ChildStdin::from_std),
            stdout: child.stdout.take().map(ChildStdout::from_std),
            stderr: child.stderr.take().map(ChildStderr::from_std),
            pid,
            pidfd: Some(Fd::new(pidfd)),
            nonblocking,
            status: None,
            kill_on_drop,
        })
    }

    /// The child's process id, until it has been reaped (then `None`: the id may belong to
    /// another process by now).
    pub fn id(&self) -> Option<u32> {
        self.status.is_none().then_some(self.pid)
    }

    /// Sends `SIGKILL` to the child (it does not wait: call [`wait`](Self::wait) to reap it).
    /// `Ok` if it has already exited.
    pub fn kill(&mut self) -> io::Result<()> {
        self.signal(libc::SIGKILL)
    }

    /// Sends `signum` to the child (`SIGTERM`, say). `Ok` if it has already exited. Goes
    /// through the child's pidfd, so it can never reach another process that reused the pid.
    pub fn signal(&mut self, signum: i32) -> io::Result<()> {
        match &self.pidfd {
            None => Ok(()),
            Some(fd) => match pidfd::send_signal(fd, signum) {
                // Reaped behind our back (SIGCHLD ignored): nothing left to signal.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
                r => r,
            },
        }
    }

    /// A handle that can kill the child from elsewhere on this loop (the pool's manager keeps
    /// one while a task owns the `Child` to wait for it).
    pub(crate) fn killer(&self) -> Option<Killer> {
        self.pidfd.clone().map(Killer)
    }

    /// Reaps the child if it has exited: its status, or `None` if it is still running.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let Some(fd) = &self.pidfd else {
            unreachable!("an unreaped child keeps its pidfd");
        };
        match pidfd::try_reap(fd) {
            Ok(None) => Ok(None),
            Ok(Some(status)) => {
                self.status = Some(status);
                self.pidfd = None;
                Ok(Some(status))
            }
            Err(e) => Err(self.reap_error(e)),
        }
    }

    /// Says why a child cannot be reaped: usually because the kernel reaped it already.
    fn reap_error(&self, e: io::Error) -> io::Error {
        if e.raw_os_error() != Some(libc::ECHILD) {
            return e;
        }
        io::Error::new(
            e.kind(),
            format!(
                "ringloop: cannot reap child {} ({e}): it was reaped already, because SIGCHLD \
                 is set to SIG_IGN or other code waited for it; its exit status is lost",
                self.pid
            ),
        )
    }

    /// Waits for the child to exit and reaps it: its exit status. Closes [`stdin`](Self::stdin)
    /// first, so that a child reading it sees end of file. Cancel-safe: dropping the future
    /// leaves the child as it was, and a later `wait` still gets the status.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        drop(self.stdin.take());
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            let Some(pidfd) = &self.pidfd else {
                unreachable!("an unreaped child keeps its pidfd");
            };
            let op = Op::submit(PidfdExit::new(pidfd, self.nonblocking)).map_err(|(e, _)| e)?;
            if let Err(e) = op.await.0 {
                return Err(self.reap_error(e));
            }
        }
    }

    /// Waits for the child to exit while reading all of its standard output and error (the
    /// ones that were piped), at once, so that neither pipe fills and blocks the child.
    pub async fn wait_with_output(mut self) -> io::Result<Output> {
        let stdout = self.stdout.take();
        let stderr = self.stderr.take();
        let out = async {
            match &stdout {
                Some(p) => p.read_to_end(Vec::new()).await,
                None => BufResult(Ok(0), Vec::new()),
            }
        };
        let err = async {
            match &stderr {
                Some(p) => p.read_to_end(Vec::new()).await,
                None => BufResult(Ok(0), Vec::new()),
            }
        };
        let (out, err, status) = crate::future::gather3(out, err, self.wait()).await;
        let BufResult(r, stdout) = out;
        r?;
        let BufResult(r, stderr) = err;
        r?;
        Ok(Output {
            status: status?,
            stdout,
            stderr,
        })
    }
}

/// The kernel gave no pidfd: kill and reap the child (it would be unmanageable) and say why.
fn no_pidfd(child: &mut std::process::Child, e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::ESRCH) {
        // The child exited and was reaped before its pidfd could be opened: only an ignored
        // SIGCHLD (or another thread's wait for any child) does that. Its pid may be reused
        // already, so it is not signalled.
        return io::Error::new(
            e.kind(),
            "ringloop: the child exited and was reaped before ringloop could watch it \
             (SIGCHLD is set to SIG_IGN, or other code waits for any child); its exit status \
             is lost",
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    io::Error::new(
        e.kind(),
        format!(
            "ringloop: pidfd_open failed ({e}); ringloop's subprocesses need Linux 5.4 or \
             later (see LINUX_ONLY.md)"
        ),
    )
}

/// Kills a child through its pidfd, from wherever its [`Child`] is.
#[derive(Debug, Clone)]
pub(crate) struct Killer(SharedFd);

impl Killer {
    /// `SIGKILL`; nothing (and no other process) if the child is gone.
    pub(crate) fn kill(&self) {
        let _ = pidfd::send_signal(&self.0, libc::SIGKILL);
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        if self.kill_on_drop {
            let _ = self.kill();
        }
        match self.pidfd.take().map(Fd::into_owned) {
            Some(Ok(fd)) => reaper::adopt(fd),
            _ => eprintln!(
                "ringloop: child {} dropped unreaped and its pidfd lost; it stays a zombie",
                self.pid
            ),
        }
    }
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.pid)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}
