//! Ring set-up and kernel probing: builds the `IoUring`, asks the kernel once which opcodes
//! it has (`IORING_REGISTER_PROBE`), and turns a refusal into an error that names the cause
//! and points to LINUX_ONLY.md.

use std::io;

use io_uring::{IoUring, opcode};

use crate::driver::DriverConfig;

/// What the kernel's io_uring can do, learned once when the ring is set up.
#[derive(Clone)]
pub(crate) struct Features {
    /// One bit per opcode the kernel supports.
    opcodes: [u64; 4],
    /// Multishot accept (Linux 5.19). It is a flag of `IORING_OP_ACCEPT`, which a probe cannot
    /// see, so it is read off `IORING_OP_SOCKET`, which arrived in the same release.
    pub(crate) multishot_accept: bool,
    /// Multishot receive into provided buffers (Linux 6.0), likewise read off
    /// `IORING_OP_SEND_ZC`, from the same release.
    pub(crate) multishot_recv: bool,
}

impl Features {
    /// Whether the kernel's ring has `opcode`.
    pub(crate) fn supports(&self, code: u8) -> bool {
        self.opcodes[usize::from(code / 64)] & (1 << (code % 64)) != 0
    }

    fn probe(ring: &IoUring) -> io::Result<Features> {
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "ringloop: the kernel refused IORING_REGISTER_PROBE ({e}); it needs Linux 5.6 \
                     or later, see LINUX_ONLY.md"
                ),
            )
        })?;
        let mut opcodes = [0u64; 4];
        for code in 0..=u8::MAX {
            if probe.is_supported(code) {
                opcodes[usize::from(code / 64)] |= 1 << (code % 64);
            }
        }
        Ok(Features {
            opcodes,
            multishot_accept: probe.is_supported(opcode::Socket::CODE),
            multishot_recv: probe.is_supported(opcode::SendZc::CODE),
        })
    }
}

impl std::fmt::Debug for Features {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Features")
            .field("multishot_accept", &self.multishot_accept)
            .field("multishot_recv", &self.multishot_recv)
            .finish_non_exhaustive()
    }
}

/// Builds the ring, preferring cheap task-run modes, checks the features the driver relies on,
/// and probes the opcodes.
pub(crate) fn setup(config: &DriverConfig) -> io::Result<(IoUring, Features)> {
    // Set-up flags from newest to oldest: SINGLE_ISSUER (6.0) matches our model (only the loop
    // thread submits); COOP_TASKRUN (5.19) avoids an inter-processor interrupt per completion,
    // and TASKRUN_FLAG makes the kernel say, through the SQ flags, when completions wait for
    // a syscall to be posted. A kernel that does not know a flag answers EINVAL: try the next
    // level down.
    let levels: [fn(&mut io_uring::Builder); 3] = [
        |b| {
            b.setup_coop_taskrun()
                .setup_taskrun_flag()
                .setup_single_issuer();
        },
        |b| {
            b.setup_coop_taskrun().setup_taskrun_flag();
        },
        |_| {},
    ];
    let mut result = Err(io::Error::from_raw_os_error(libc::EINVAL));
    for level in levels {
        let mut builder = IoUring::builder();
        // The completion queue is twice the submission queue; with IORING_FEAT_NODROP an
        // overflow is buffered by the kernel, never dropped.
        builder.setup_cqsize(config.entries.saturating_mul(2).max(2));
        level(&mut builder);
        if let Some(idle) = config.sqpoll_idle_ms {
            builder.setup_sqpoll(idle);
        }
        result = builder.build(config.entries);
        if !matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EINVAL)) {
            break;
        }
    }
    let ring = match result {
        Ok(ring) => ring,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && config.sqpoll_idle_ms.is_some() => {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "ringloop: cannot create an io_uring instance with SQPOLL ({e}): before \
                     Linux 5.11 SQPOLL needs CAP_SYS_ADMIN, and io_uring may be disabled (see \
                     LINUX_ONLY.md); build the runtime without Builder::sqpoll to check"
                ),
            ));
        }
        Err(e) => return Err(unavailable(e)),
    };
    if !ring.params().is_feature_ext_arg() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "ringloop: this kernel's io_uring lacks IORING_FEAT_EXT_ARG (Linux 5.11), which the \
             event loop needs to wait for a completion with a timeout; see LINUX_ONLY.md",
        ));
    }
    if !ring.params().is_feature_nodrop() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "ringloop: this kernel's io_uring lacks IORING_FEAT_NODROP (Linux 5.5), without which \
             completions can be lost when the completion queue overflows; see LINUX_ONLY.md",
        ));
    }
    let features = Features::probe(&ring)?;
    Ok((ring, features))
}

/// Turns the errno of a failed `io_uring_setup` into an error a user can act on.
pub(crate) fn unavailable(err: io::Error) -> io::Error {
    let errno = err.raw_os_error().unwrap_or(0);
    let (kind, cause) = match errno {
        libc::EPERM => (
            io::ErrorKind::PermissionDenied,
            "io_uring is disabled for this process: the sysctl kernel.io_uring_disabled is 2 \
             (or 1 and this user is not in kernel.io_uring_group), or a seccomp profile (such \
             as Docker's default) refuses io_uring_setup",
        ),
        libc::ENOSYS => (
            io::ErrorKind::Unsupported,
            "the kernel has no io_uring (built without CONFIG_IO_URING, older than 5.1, or the \
             syscall is filtered by seccomp)",
        ),
        libc::ENOMEM => (
            io::ErrorKind::OutOfMemory,
            "the ring could not be allocated; kernels before 5.12 charge rings to \
             RLIMIT_MEMLOCK, so raise `ulimit -l` or use fewer ring entries",
        ),
        libc::EINVAL => (
            io::ErrorKind::InvalidInput,
            "the kernel rejected the ring parameters (too many entries, or set-up flags this \
             kernel does not know)",
        ),
        libc::EMFILE | libc::ENFILE => (
            io::ErrorKind::Other,
            "the process or system is out of file descriptors",
        ),
        _ => (io::ErrorKind::Other, "io_uring_setup failed"),
    };
    io::Error::new(
        kind,
        format!("ringloop: cannot create an io_uring instance ({err}): {cause}; see LINUX_ONLY.md"),
    )
}
