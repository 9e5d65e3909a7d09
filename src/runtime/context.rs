//! The thread-local "current runtime": set while a loop runs (`block_on`, `run_forever`, and
//! while it closes), read by `spawn`, `sleep`, wakers and everything else that needs the loop.

use std::cell::Cell;
use std::rc::Rc;

use crate::driver;
use crate::runtime::scheduler::Local;

thread_local! {
    static CURRENT: Cell<*const Local> = const { Cell::new(std::ptr::null()) };
}

/// Runs `f` with the current thread's loop, or returns `None` outside a runtime.
#[inline] // See `task::spawn`.
pub(crate) fn with_local<R>(f: impl FnOnce(&Local) -> R) -> Option<R> {
    let ptr = CURRENT.with(Cell::get);
    if ptr.is_null() {
        return None;
    }
    // SAFETY: a non-null CURRENT was set by an `Enter` guard that holds an `Rc<Local>` and resets
    // it when dropped; the guard lives on this thread's stack below any code that can get here.
    Some(f(unsafe { &*ptr }))
}

/// Whether a loop is current on this thread.
pub(crate) fn is_entered() -> bool {
    !CURRENT.with(Cell::get).is_null()
}

/// Makes `local` the current loop until dropped.
pub(crate) struct Enter {
    local: Rc<Local>,
    prev: *const Local,
    prev_driver: Option<driver::DriverRef>,
}

impl Enter {
    pub(crate) fn new(local: Rc<Local>) -> Enter {
        let prev = CURRENT.with(|c| c.replace(Rc::as_ptr(&local)));
        let prev_driver = driver::set_current(Some(local.driver.clone()));
        Enter {
            local,
            prev,
            prev_driver,
        }
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.prev));
        driver::set_current(self.prev_driver.take());
        let _ = &self.local;
    }
}
