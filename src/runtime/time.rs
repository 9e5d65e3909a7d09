//! The public time API: `sleep`, `sleep_until`, `interval`, `time`, and the callback scheduling
//! of asyncio's loop (`call_soon`, `call_later`, `call_at`) with their `TimerHandle`.

use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::runtime::context;
use crate::runtime::scheduler::Local;
use crate::runtime::timer::{Action, TimerKey};

/// The loop's clock: asyncio's `loop.time()`. Monotonic; the same clock `sleep_until`,
/// `call_at` and the timers use.
pub fn time() -> Instant {
    Instant::now()
}

/// Far enough in the future to mean "never" without overflowing `Instant`.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

/// Waits until `duration` has passed, counted from this call: asyncio's `sleep`.
///
/// Timers are exact to the nanosecond in the loop; what remains is the kernel's wake-up
/// latency (typically tens of microseconds).
///
/// # Panics
///
/// When polled outside a ringloop runtime.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// ringloop::run(async {
///     let start = Instant::now();
///     ringloop::sleep(Duration::from_millis(5)).await;
///     assert!(start.elapsed() >= Duration::from_millis(5));
/// });
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(
        Instant::now()
            .checked_add(duration)
            .unwrap_or_else(far_future),
    )
}

/// Waits until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        timer: None,
    }
}

/// Future of [`sleep`] and [`sleep_until`]. Dropping it removes its timer.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    /// The registered timer; set on the first pending poll.
    timer: Option<TimerKey>,
}

impl Sleep {
    /// When the sleep ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// True once the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Moves the deadline (like tokio's `Sleep::reset`).
    pub fn reset(&mut self, deadline: Instant) {
        self.remove_timer();
        self.deadline = deadline;
    }

    fn remove_timer(&mut self) {
        if let Some(key) = self.timer.take() {
            let removed = context::with_local(|l| l.timers.borrow_mut().remove(key));
            drop(removed);
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let polled = context::with_local(|local| {
            let mut timers = local.timers.borrow_mut();
            match this.timer {
                // Still registered: not yet fired.
                Some(key) if timers.update_waker(key, cx.waker()) => Poll::Pending,
                // Fired (the loop removed it), or never registered and already due.
                _ if Instant::now() >= this.deadline => Poll::Ready(()),
                // Not due and not registered here (first poll, or moved between runtimes).
                _ => {
                    this.timer = Some(
                        timers.insert(this.deadline, Action::Wake(Some(cx.waker().clone()))),
                    );
                    Poll::Pending
                }
            }
        })
        .expect("ringloop: sleep polled outside a ringloop runtime; await it inside Runtime::block_on, ringloop::run or a task");
        if polled.is_ready() {
            this.timer = None;
        }
        polled
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.remove_timer();
    }
}

/// A stream of evenly spaced ticks: see [`interval`].
#[derive(Debug)]
pub struct Interval {
    next: Instant,
    period: Duration,
    sleep: Sleep,
}

/// Ticks every `period`; the first tick completes at once. A tick that is late (the loop was
/// busy) completes as soon as possible and later ticks keep the original schedule, catching up
/// in a burst (tokio's default `MissedTickBehavior::Burst`).
///
/// # Panics
///
/// If `period` is zero.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// ringloop::run(async {
///     let mut every = ringloop::interval(Duration::from_millis(1));
///     for _ in 0..3 {
///         every.tick().await;
///     }
/// });
/// ```
pub fn interval(period: Duration) -> Interval {
    assert!(
        !period.is_zero(),
        "ringloop::interval: the period must be non-zero"
    );
    let now = Instant::now();
    Interval {
        next: now,
        period,
        sleep: sleep_until(now),
    }
}

impl Interval {
    /// Waits for the next tick; returns its scheduled time.
    pub async fn tick(&mut self) -> Instant {
        let at = self.next;
        if self.sleep.deadline() != at {
            self.sleep.reset(at);
        }
        (&mut self.sleep).await;
        self.next = at.checked_add(self.period).unwrap_or_else(far_future);
        at
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }
}

/// A scheduled callback: asyncio's `TimerHandle` (also returned for `call_soon`, asyncio's
/// `Handle`). Dropping it does not cancel the callback.
#[derive(Debug, Clone)]
pub struct TimerHandle {
    local: Weak<LocalMarker>,
    key: TimerKey,
    when: Option<Instant>,
}

/// Ties a `TimerHandle` to its loop without keeping the loop alive.
#[derive(Debug)]
pub(crate) struct LocalMarker;

impl TimerHandle {
    /// Cancels the callback if it has not run yet; returns true if it was pending.
    pub fn cancel(&self) -> bool {
        if self.local.upgrade().is_none() {
            return false;
        }
        let removed = context::with_local(|l| {
            if Rc::ptr_eq(&l.marker, &self.local.upgrade().expect("checked above")) {
                l.timers.borrow_mut().remove(self.key)
            } else {
                None
            }
        })
        .flatten();
        removed.is_some()
    }

    /// When the callback is scheduled to run (`None` for `call_soon`).
    pub fn when(&self) -> Option<Instant> {
        self.when
    }
}

fn with_loop<R>(what: &str, f: impl FnOnce(&Local) -> R) -> R {
    context::with_local(f).unwrap_or_else(|| {
        panic!(
            "ringloop::{what} called outside a ringloop runtime; call it from inside \
             Runtime::block_on, ringloop::run or a task"
        )
    })
}

/// Runs `f` on the loop soon, after the callbacks already queued (FIFO): asyncio's
/// `call_soon`. A panic in `f` is reported on stderr; the loop keeps running.
///
/// # Panics
///
/// Outside a ringloop runtime.
pub fn call_soon(f: impl FnOnce() + 'static) -> TimerHandle {
    with_loop("call_soon", |l| TimerHandle {
        local: Rc::downgrade(&l.marker),
        key: l.call_soon(Box::new(f)),
        when: None,
    })
}

/// Runs `f` once `delay` has passed: asyncio's `call_later`.
///
/// # Panics
///
/// Outside a ringloop runtime.
pub fn call_later(delay: Duration, f: impl FnOnce() + 'static) -> TimerHandle {
    call_at(
        Instant::now().checked_add(delay).unwrap_or_else(far_future),
        f,
    )
}

/// Runs `f` at `when` (on the [`time`] clock): asyncio's `call_at`. Callbacks due at the
/// same instant run in the order they were scheduled.
///
/// # Panics
///
/// Outside a ringloop runtime.
pub fn call_at(when: Instant, f: impl FnOnce() + 'static) -> TimerHandle {
    with_loop("call_at", |l| TimerHandle {
        local: Rc::downgrade(&l.marker),
        key: l
            .timers
            .borrow_mut()
            .insert(when, Action::Call(Box::new(f))),
        when: Some(when),
    })
}
