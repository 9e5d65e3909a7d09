//! Done callbacks as `Task`, `Promise` and `PoolFuture` keep them: their ids, the list, and
//! the guarded call that keeps a panicking callback from stopping the others (asyncio logs a
//! failing callback and goes on). Also the message of a caught panic.

/// Identifies a done callback (of a [`Task`](crate::Task), [`Promise`](crate::Promise) or
/// [`PoolFuture`](crate::PoolFuture)) so it can be removed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

/// Callbacks not yet run, in the order they were added, each with its id.
pub(crate) struct Callbacks<F> {
    list: Vec<(CallbackId, F)>,
    /// The last id given out.
    last: u64,
}

impl<F> Default for Callbacks<F> {
    fn default() -> Self {
        Callbacks {
            list: Vec::new(),
            last: 0,
        }
    }
}

impl<F> Callbacks<F> {
    /// A fresh id (for a callback that runs at once because its future is done already).
    pub(crate) fn new_id(&mut self) -> CallbackId {
        self.last += 1;
        CallbackId(self.last)
    }

    /// Keeps `f` to run later; its id.
    pub(crate) fn add(&mut self, f: F) -> CallbackId {
        let id = self.new_id();
        self.list.push((id, f));
        id
    }

    /// Takes out the callback `id` if it has not run yet (the caller drops it, outside any
    /// lock: its captures are user values).
    pub(crate) fn remove(&mut self, id: CallbackId) -> Option<F> {
        let at = self.list.iter().position(|(i, _)| *i == id)?;
        Some(self.list.remove(at).1)
    }

    /// Takes every callback, in order, to run them.
    pub(crate) fn take(&mut self) -> impl Iterator<Item = F> + use<F> {
        std::mem::take(&mut self.list).into_iter().map(|(_, f)| f)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Runs `f`, a callback: a panic is caught and reported on stderr (naming `what`), so that it
/// neither unwinds into the runtime or the worker nor keeps the next callbacks from running.
pub(crate) fn run_guarded(what: &str, f: impl FnOnce()) {
    if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        report_panic(what, &*p);
    }
}

/// Reports a caught panic of `what` on stderr, as asyncio logs a failing callback.
pub(crate) fn report_panic(what: &str, payload: &(dyn std::any::Any + Send)) {
    eprintln!("ringloop: {what} panicked: {}", panic_message(payload));
}

/// The message of a caught panic: the `&str` or `String` payload, else a placeholder.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}
