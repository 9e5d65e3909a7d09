//! The loop's registry of unfinished tasks, for `all_tasks` and for the close that cancels
//! them: a slab of one word per slot. A slot holds a task's header pointer (the registry's
//! counted reference to the task) or, vacant, the index of the next vacant slot, tagged with
//! the low bit (a header is 8-aligned, so a pointer never has it). A spawn takes the vacant
//! slot freed last (or a new one at the end) and records its index in the task's state; the
//! completion empties it. Half the size of a `slab::Slab<RawTask>`, whose entries are an enum.

use std::ptr::NonNull;

use super::raw::{Header, RawTask};

/// No vacant slot.
const NONE: usize = usize::MAX >> 1;

pub(crate) struct Registry {
    /// A header pointer, or `(next vacant << 1) | 1`.
    slots: Vec<usize>,
    /// The first vacant slot, or `NONE`.
    free: usize,
    len: usize,
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry {
            slots: Vec::new(),
            free: NONE,
            len: 0,
        }
    }

    /// Keeps `task`'s reference and records the task's key in its state.
    #[inline]
    pub(crate) fn insert(&mut self, task: RawTask) {
        let ptr = task.into_ptr();
        let key = if self.free != NONE {
            let key = self.free;
            self.free = self.slots[key] >> 1;
            self.slots[key] = ptr.as_ptr() as usize;
            key
        } else {
            self.slots.push(ptr.as_ptr() as usize);
            self.slots.len() - 1
        };
        self.len += 1;
        let key = u32::try_from(key).expect("ringloop: more than 4 billion live tasks");
        // SAFETY: the registry now holds a reference, so the header is alive.
        unsafe { ptr.as_ref() }.state.set_registry_key(key);
    }

    /// Takes back the reference to the task whose header is `ptr`, if it is in the registry
    /// (at its recorded key).
    #[inline]
    pub(crate) fn remove(&mut self, ptr: NonNull<Header>) -> Option<RawTask> {
        // SAFETY: the caller's pointer is to a live header (it holds a reference).
        let key = unsafe { ptr.as_ref() }.state.registry_key() as usize;
        let slot = self.slots.get_mut(key)?;
        if *slot != ptr.as_ptr() as usize {
            return None;
        }
        *slot = (self.free << 1) | 1;
        self.free = key;
        self.len -= 1;
        // SAFETY: the slot held the registry's counted reference, handed over here.
        Some(unsafe { RawTask::from_owned(ptr) })
    }

    /// For the loom models' checks.
    #[cfg(all(test, loom))]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A new reference to every task in the registry, in no particular order.
    pub(crate) fn tasks(&self) -> Vec<RawTask> {
        if self.len == 0 {
            // The close asks at least twice; a registry that once held many tasks is long.
            return Vec::new();
        }
        let mut tasks = Vec::with_capacity(self.len);
        for &slot in &self.slots {
            if let Some(ptr) = occupant(slot) {
                // SAFETY: the registry holds a reference, so the header is alive.
                tasks.push(unsafe { RawTask::from_borrowed(ptr) });
            }
        }
        tasks
    }
}

/// The task in a slot, if it is not vacant.
fn occupant(slot: usize) -> Option<NonNull<Header>> {
    if slot & 1 == 1 {
        None
    } else {
        NonNull::new(slot as *mut Header)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for &slot in &self.slots {
            if let Some(ptr) = occupant(slot) {
                // SAFETY: the slot held the registry's counted reference, released here.
                drop(unsafe { RawTask::from_owned(ptr) });
            }
        }
    }
}
