//! Deadlines: a binary heap of `(deadline, sequence)` over a slab of entries. Gives the tick
//! its park timeout and fires what expired; never touches the ring.
//!
//! Deadlines are kept in nanoseconds since the loop started, so firing is exact to the
//! nanosecond (no wheel granularity); the lateness left is the kernel's wake-up latency.
//! Removing a timer frees its slab entry at once and leaves a stale heap entry behind, skipped
//! when it surfaces (its sequence number no longer matches); the heap is rebuilt when stale
//! entries outnumber live ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Waker;
use std::time::{Duration, Instant};

use slab::Slab;

/// The start of the next block of sequence numbers a `Timers` may take. Each loop takes a
/// block of [`SEQ_BLOCK`] numbers at a time and hands them out without touching this atomic,
/// so the timers of many loops (shards) do not contend on one cache line.
static NEXT_SEQ_BLOCK: AtomicU64 = AtomicU64::new(1);
const SEQ_BLOCK: u64 = 1 << 32;

/// What a timer does when it fires.
pub(crate) enum Action {
    /// Wake a `Sleep`. `None` until the sleep is first polled.
    Wake(Option<Waker>),
    /// Run a `call_later` / `call_at` / `call_soon` callback.
    Call(Box<dyn FnOnce()>),
}

struct Entry {
    seq: u64,
    action: Action,
}

/// Identifies a timer; stays valid (and harmless) after the timer fired or was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerKey {
    key: u32,
    seq: u64,
}

pub(crate) struct Timers {
    base: Instant,
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    entries: Slab<Entry>,
    /// The next sequence number, and the end of the block it comes from.
    next_seq: u64,
    seq_end: u64,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            base: Instant::now(),
            heap: BinaryHeap::new(),
            entries: Slab::new(),
            next_seq: 0,
            seq_end: 0,
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Adds an entry without a deadline (a `call_soon` callback queued elsewhere).
    pub(crate) fn insert_unscheduled(&mut self, action: Action) -> TimerKey {
        // Sequence numbers are unique across all runtimes (each takes its own blocks), so a
        // key used with the wrong runtime (a Sleep moved between runtimes on one thread) never
        // matches an entry.
        if self.next_seq == self.seq_end {
            self.next_seq = NEXT_SEQ_BLOCK.fetch_add(SEQ_BLOCK, Ordering::Relaxed);
            self.seq_end = self.next_seq + SEQ_BLOCK;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = self.entries.insert(Entry { seq, action });
        TimerKey {
            key: u32::try_from(key).expect("ringloop: more than 4 billion live timers"),
            seq,
        }
    }

    /// Adds a timer firing at `deadline`.
    pub(crate) fn insert(&mut self, deadline: Instant, action: Action) -> TimerKey {
        let key = self.insert_unscheduled(action);
        let at = self.nanos(deadline);
        self.heap.push(Reverse((at, key.seq, key.key)));
        key
    }

    fn live(&self, key: TimerKey) -> bool {
        self.entries
            .get(key.key as usize)
            .is_some_and(|e| e.seq == key.seq)
    }

    /// Records `waker` for a pending sleep. Returns false if the timer already fired.
    pub(crate) fn update_waker(&mut self, key: TimerKey, waker: &Waker) -> bool {
        if !self.live(key) {
            return false;
        }
        if let Action::Wake(slot) = &mut self.entries[key.key as usize].action {
            match slot {
                Some(w) if w.will_wake(waker) => {}
                _ => *slot = Some(waker.clone()),
            }
        }
        true
    }

    /// Removes a timer that has not fired; returns its action (to be dropped by the caller,
    /// outside any borrow), or `None` if it already fired or was removed.
    pub(crate) fn remove(&mut self, key: TimerKey) -> Option<Action> {
        if !self.live(key) {
            return None;
        }
        let entry = self.entries.remove(key.key as usize);
        if self.heap.len() > 1024 && self.heap.len() > 2 * self.entries.len() {
            self.compact();
        }
        Some(entry.action)
    }

    /// Takes the action of an unscheduled entry (a `call_soon` callback about to run).
    pub(crate) fn take(&mut self, key: TimerKey) -> Option<Action> {
        if !self.live(key) {
            return None;
        }
        Some(self.entries.remove(key.key as usize).action)
    }

    fn compact(&mut self) {
        let entries = &self.entries;
        self.heap.retain(|Reverse((_, seq, key))| {
            entries.get(*key as usize).is_some_and(|e| e.seq == *seq)
        });
    }

    /// Drops stale heap tops; returns the earliest live deadline in nanoseconds.
    fn peek(&mut self) -> Option<u64> {
        while let Some(&Reverse((at, seq, key))) = self.heap.peek() {
            if self.entries.get(key as usize).is_some_and(|e| e.seq == seq) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// Time from `now` to the earliest deadline (zero if already due), or `None` if no timer.
    pub(crate) fn next_timeout(&mut self, now: Instant) -> Option<Duration> {
        let at = self.peek()?;
        let now = self.nanos(now);
        Some(Duration::from_nanos(at.saturating_sub(now)))
    }

    /// True if there are live timers.
    pub(crate) fn has_timers(&mut self) -> bool {
        self.peek().is_some()
    }

    /// Removes every timer due at `now` and appends its action to `out`, earliest first
    /// (FIFO among equal deadlines).
    pub(crate) fn expire(&mut self, now: Instant, out: &mut Vec<Action>) {
        let now = self.nanos(now);
        while let Some(at) = self.peek() {
            if at > now {
                break;
            }
            let Some(Reverse((_, _, key))) = self.heap.pop() else {
                unreachable!("ringloop: peek just saw a timer")
            };
            out.push(self.entries.remove(key as usize).action);
        }
    }

    /// Removes every entry (the loop is closing); the caller drops the actions.
    pub(crate) fn clear(&mut self, out: &mut Vec<Action>) {
        self.heap.clear();
        out.extend(self.entries.drain().map(|e| e.action));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Action {
        Action::Wake(None)
    }

    #[test]
    fn expires_in_deadline_then_fifo_order() {
        let mut t = Timers::new();
        let base = t.base;
        let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        for (i, ms) in [(0, 5), (1, 1), (2, 5), (3, 3)] {
            let order = order.clone();
            t.insert(
                base + Duration::from_millis(ms),
                Action::Call(Box::new(move || order.borrow_mut().push(i))),
            );
        }
        let mut out = Vec::new();
        t.expire(base + Duration::from_millis(4), &mut out);
        assert_eq!(out.len(), 2);
        t.expire(base + Duration::from_millis(5), &mut out);
        for a in out {
            if let Action::Call(f) = a {
                f();
            }
        }
        assert_eq!(*order.borrow(), vec![1, 3, 0, 2]);
        assert!(!t.has_timers());
    }

    #[test]
    fn removed_timers_do_not_fire_and_keys_are_not_confused() {
        let mut t = Timers::new();
        let base = t.base;
        let a = t.insert(base + Duration::from_millis(1), noop());
        assert!(t.remove(a).is_some());
        assert!(t.remove(a).is_none());
        // Reuses the slab slot; the old key must not match it.
        let b = t.insert(base + Duration::from_millis(2), noop());
        assert!(t.remove(a).is_none());
        assert_eq!(
            t.next_timeout(base),
            Some(Duration::from_millis(2)),
            "the stale entry of `a` is skipped"
        );
        let mut out = Vec::new();
        t.expire(base + Duration::from_millis(10), &mut out);
        assert_eq!(out.len(), 1);
        assert!(!t.update_waker(b, futures_task::noop_waker_ref()));
    }

    #[test]
    fn compaction_keeps_live_timers() {
        let mut t = Timers::new();
        let base = t.base;
        let keys: Vec<_> = (0..5000)
            .map(|i| t.insert(base + Duration::from_micros(i), noop()))
            .collect();
        for k in keys.iter().skip(1).step_by(2).chain(keys.iter().step_by(3)) {
            t.remove(*k);
        }
        assert!(t.heap.len() <= 2 * t.entries.len().max(512));
        let mut out = Vec::new();
        t.expire(base + Duration::from_secs(1), &mut out);
        let live = keys
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == 0 && i % 3 != 0)
            .count();
        assert_eq!(out.len(), live);
    }
}
