//! Signals: `Signal::recv`, `ctrl_c`, `add_signal_handler` / `remove_signal_handler`, bad
//! signal numbers, and delivery to every shard. Each test uses its own signal, since the
//! tests of this binary run in parallel and a delivery reaches every listener.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, Barrier};
use std::task::Context;

use ringloop::signal::{Signal, ctrl_c};

fn raise(signum: libc::c_int) {
    // SAFETY: raise sends a signal to this thread; every test installs a handler first.
    assert_eq!(unsafe { libc::raise(signum) }, 0);
}

#[test]
fn recv_sees_a_delivery_and_deliveries_coalesce() {
    ringloop::run(async {
        let mut sig = Signal::new(libc::SIGUSR1).unwrap();
        assert_eq!(sig.signum(), libc::SIGUSR1);
        raise(libc::SIGUSR1);
        sig.recv().await.unwrap();
        // Two deliveries before a recv are seen as one, then recv waits again: a third one
        // is needed for the next recv.
        raise(libc::SIGUSR1);
        raise(libc::SIGUSR1);
        sig.recv().await.unwrap();
        let mut next = Box::pin(sig.recv());
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        assert!(next.as_mut().poll(&mut cx).is_pending());
        raise(libc::SIGUSR1);
        next.await.unwrap();
    });
}

#[test]
fn a_dropped_recv_consumes_no_delivery() {
    ringloop::run(async {
        let mut sig = Signal::new(libc::SIGPWR).unwrap();
        {
            let mut first = Box::pin(sig.recv());
            let mut cx = Context::from_waker(futures::task::noop_waker_ref());
            assert!(first.as_mut().poll(&mut cx).is_pending());
        }
        raise(libc::SIGPWR);
        sig.recv().await.unwrap();
    });
}

#[test]
fn ctrl_c_waits_for_sigint() {
    ringloop::run(async {
        let waiter = ringloop::spawn(ctrl_c());
        // Let it start listening before the signal is raised.
        ringloop::yield_now().await;
        raise(libc::SIGINT);
        waiter.await.unwrap().unwrap();
    });
}

#[test]
fn signal_handlers_are_added_replaced_and_removed() {
    ringloop::run(async {
        let hits = Rc::new(Cell::new(0));
        let seen = Rc::clone(&hits);
        ringloop::add_signal_handler(libc::SIGUSR2, move || seen.set(seen.get() + 1)).unwrap();
        raise(libc::SIGUSR2);
        while hits.get() == 0 {
            ringloop::yield_now().await;
        }
        // A second handler for the signal replaces the first.
        let other = Rc::new(Cell::new(0));
        let seen = Rc::clone(&other);
        ringloop::add_signal_handler(libc::SIGUSR2, move || seen.set(seen.get() + 1)).unwrap();
        raise(libc::SIGUSR2);
        while other.get() == 0 {
            ringloop::yield_now().await;
        }
        assert_eq!(hits.get(), 1, "the replaced handler ran again");
        assert!(ringloop::remove_signal_handler(libc::SIGUSR2));
        assert!(!ringloop::remove_signal_handler(libc::SIGUSR2));
    });
}

#[test]
fn bad_signal_numbers_are_clear_errors() {
    for signum in [0, -1, 65, libc::SIGKILL, libc::SIGSTOP, libc::SIGSEGV] {
        let err = Signal::new(signum).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{signum}");
        assert!(
            err.to_string().contains("cannot listen for signal"),
            "{err}"
        );
    }
    assert!(
        ringloop::add_signal_handler(libc::SIGUSR1, || {}).is_err(),
        "outside a runtime"
    );
}

#[test]
fn a_signal_reaches_a_listener_on_every_shard() {
    let rt = ringloop::ShardedRuntime::new(2).unwrap();
    let listening = Arc::new(Barrier::new(2));
    let out = rt.run(move |shard| {
        let listening = Arc::clone(&listening);
        async move {
            let mut sig = Signal::new(libc::SIGWINCH).unwrap();
            // Both listen before the signal is sent to the process.
            listening.wait();
            if shard == 0 {
                // SAFETY: kill sends SIGWINCH to this process, whose handler is installed.
                assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGWINCH) }, 0);
            }
            sig.recv().await.unwrap();
            shard
        }
    });
    assert_eq!(out, [0, 1]);
}

#[test]
fn many_listeners_come_and_go() {
    ringloop::run(async {
        for _ in 0..1000 {
            let sig = Signal::new(libc::SIGURG).unwrap();
            drop(sig);
        }
        let mut sig = Signal::new(libc::SIGURG).unwrap();
        raise(libc::SIGURG);
        sig.recv().await.unwrap();
    });
}
