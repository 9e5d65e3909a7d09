//! `gather` / `try_gather` (asyncio.gather) and their tuple forms
//! `gather2`..`gather6`, `try_gather2`..`try_gather6`.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::future::{FusedFuture, TryFuture};

use super::set::FutureSet;

/// Runs every future of `iter` concurrently and resolves to their outputs in
/// input order (asyncio `gather`).
///
/// All children are polled once on the first poll; afterwards a wake of one
/// child only re-polls that child. A finished child's future is dropped as
/// soon as it finishes (only its output is kept). Dropping the `Gather`
/// drops (cancels) every child that has not finished. An empty input
/// resolves at once to an empty `Vec`.
///
/// ```
/// # futures::executor::block_on(async {
/// let out = ringloop::gather((1..=3).map(|i| async move { i * 10 })).await;
/// assert_eq!(out, vec![10, 20, 30]);
/// # });
/// ```
pub fn gather<I>(iter: I) -> Gather<<I::Item as IntoFuture>::IntoFuture>
where
    I: IntoIterator,
    I::Item: IntoFuture,
{
    Gather {
        set: FutureSet::new(iter.into_iter().map(IntoFuture::into_future)),
        finished: false,
    }
}

/// Future returned by [`gather`].
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Gather<F: Future> {
    set: FutureSet<F, F::Output>,
    finished: bool,
}

impl<F: Future> Gather<F> {
    /// Number of children that have not finished yet.
    pub fn remaining(&self) -> usize {
        self.set.running()
    }
}

impl<F: Future> fmt::Debug for Gather<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gather")
            .field("len", &self.set.capacity())
            .field("remaining", &self.set.running())
            .finish()
    }
}

impl<F: Future> Future for Gather<F> {
    type Output = Vec<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.finished, "Gather polled after completion");
        loop {
            match this.set.poll_next(cx) {
                Poll::Ready(Some((index, out))) => this.set.store(index, out),
                Poll::Ready(None) => {
                    this.finished = true;
                    return Poll::Ready(this.set.take_outputs());
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<F: Future> FusedFuture for Gather<F> {
    fn is_terminated(&self) -> bool {
        self.finished
    }
}

/// Runs every fallible future of `iter` concurrently and resolves to all
/// their `Ok` values in input order, or to the first `Err` in completion
/// order.
///
/// On the first `Err`, every unfinished child is dropped (cancelled) before
/// the `TryGather` returns. Otherwise behaves like [`gather`].
///
/// ```
/// # futures::executor::block_on(async {
/// let out = ringloop::try_gather((1..=3).map(|i| async move {
///     if i == 2 { Err("two") } else { Ok(i) }
/// })).await;
/// assert_eq!(out, Err("two"));
/// # });
/// ```
pub fn try_gather<I, T, E>(iter: I) -> TryGather<<I::Item as IntoFuture>::IntoFuture>
where
    I: IntoIterator,
    I::Item: IntoFuture<Output = Result<T, E>>,
{
    TryGather {
        set: FutureSet::new(iter.into_iter().map(|f| TryChild {
            inner: f.into_future(),
        })),
        finished: false,
    }
}

pin_project_lite::pin_project! {
    /// Adapts a `TryFuture` so its output type is spelled `Result<Ok, Error>`.
    struct TryChild<F> {
        #[pin]
        inner: F,
    }
}

impl<F: TryFuture> Future for TryChild<F> {
    type Output = Result<F::Ok, F::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.try_poll(cx)
    }
}

/// Future returned by [`try_gather`].
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct TryGather<F: TryFuture> {
    set: FutureSet<TryChild<F>, F::Ok>,
    finished: bool,
}

impl<F: TryFuture> TryGather<F> {
    /// Number of children that have not finished yet.
    pub fn remaining(&self) -> usize {
        self.set.running()
    }
}

impl<F: TryFuture> fmt::Debug for TryGather<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TryGather")
            .field("len", &self.set.capacity())
            .field("remaining", &self.set.running())
            .finish()
    }
}

impl<F: TryFuture> Future for TryGather<F> {
    type Output = Result<Vec<F::Ok>, F::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.finished, "TryGather polled after completion");
        loop {
            match this.set.poll_next(cx) {
                Poll::Ready(Some((index, Ok(out)))) => this.set.store(index, out),
                Poll::Ready(Some((_, Err(err)))) => {
                    this.finished = true;
                    // Cancel every unfinished child before returning.
                    this.set.clear();
                    return Poll::Ready(Err(err));
                }
                Poll::Ready(None) => {
                    this.finished = true;
                    return Poll::Ready(Ok(this.set.take_outputs()));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<F: TryFuture> FusedFuture for TryGather<F> {
    fn is_terminated(&self) -> bool {
        self.finished
    }
}

/// Polls the child in `fut` (if still running); on completion drops it in
/// place and stores its output in `out`.
fn poll_child<F: Future>(
    mut fut: Pin<&mut Option<F>>,
    out: &mut Option<F::Output>,
    cx: &mut Context<'_>,
) {
    if let Some(f) = fut.as_mut().as_pin_mut()
        && let Poll::Ready(v) = f.poll(cx)
    {
        fut.set(None);
        *out = Some(v);
    }
}

macro_rules! tuple_gather {
    ($(
        $n:literal, $gather:ident, $Gather:ident, $try_gather:ident, $TryGather:ident:
        $( ($F:ident, $f:ident, $o:ident) ),+ ;
    )+) => {$(
        pin_project_lite::pin_project! {
            #[doc = concat!("Future returned by [`", stringify!($gather), "`].")]
            #[must_use = "futures do nothing unless you `.await` or poll them"]
            pub struct $Gather<$($F: Future),+> {
                $( #[pin] $f: Option<$F>, $o: Option<$F::Output>, )+
                finished: bool,
            }
        }

        #[doc = concat!(
            "Runs ", stringify!($n), " futures of possibly different types concurrently and ",
            "resolves to the tuple of their outputs (asyncio `gather` for heterogeneous ",
            "outputs). Each child is dropped as soon as it finishes; dropping the ",
            "returned future drops the unfinished children."
        )]
        pub fn $gather<$($F: IntoFuture),+>($($f: $F),+) -> $Gather<$($F::IntoFuture),+> {
            $Gather { $( $f: Some($f.into_future()), $o: None, )+ finished: false }
        }

        impl<$($F: Future),+> fmt::Debug for $Gather<$($F),+> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($Gather))
                    $( .field(stringify!($f), &if self.$f.is_some() { "running" } else { "done" }) )+
                    .finish()
            }
        }

        impl<$($F: Future),+> Future for $Gather<$($F),+> {
            type Output = ($($F::Output,)+);

            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
                let this = self.project();
                assert!(!*this.finished, concat!(stringify!($Gather), " polled after completion"));
                $( poll_child(this.$f, this.$o, cx); )+
                if $( this.$o.is_some() )&&+ {
                    *this.finished = true;
                    Poll::Ready(($( this.$o.take().expect("output present"), )+))
                } else {
                    Poll::Pending
                }
            }
        }

        impl<$($F: Future),+> FusedFuture for $Gather<$($F),+> {
            fn is_terminated(&self) -> bool {
                self.finished
            }
        }

        pin_project_lite::pin_project! {
            #[doc = concat!("Future returned by [`", stringify!($try_gather), "`].")]
            #[must_use = "futures do nothing unless you `.await` or poll them"]
            pub struct $TryGather<$($F: TryFuture),+> {
                $( #[pin] $f: Option<$F>, $o: Option<$F::Ok>, )+
                finished: bool,
            }
        }

        #[doc = concat!(
            "Runs ", stringify!($n), " fallible futures (same error type) concurrently and ",
            "resolves to the tuple of their `Ok` values, or to the first `Err` in completion ",
            "order; on that `Err` every unfinished child is dropped (cancelled) before returning."
        )]
        pub fn $try_gather<E, $($F),+>($($f: $F),+) -> $TryGather<$($F::IntoFuture),+>
        where
            $( $F: IntoFuture, $F::IntoFuture: TryFuture<Error = E>, )+
        {
            $TryGather { $( $f: Some($f.into_future()), $o: None, )+ finished: false }
        }

        impl<$($F: TryFuture),+> fmt::Debug for $TryGather<$($F),+> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($TryGather))
                    $( .field(stringify!($f), &if self.$f.is_some() { "running" } else { "done" }) )+
                    .finish()
            }
        }

        impl<E, $($F),+> Future for $TryGather<$($F),+>
        where
            $( $F: TryFuture<Error = E>, )+
        {
            type Output = Result<($($F::Ok,)+), E>;

            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
                let mut this = self.project();
                assert!(!*this.finished, concat!(stringify!($TryGather), " polled after completion"));
                let mut error = None;
                $(
                    if error.is_none()
                        && let Some(f) = this.$f.as_mut().as_pin_mut()
                        && let Poll::Ready(v) = f.try_poll(cx)
                    {
                        this.$f.set(None);
                        match v {
                            Ok(v) => *this.$o = Some(v),
                            Err(e) => error = Some(e),
                        }
                    }
                )+
                if let Some(e) = error {
                    *this.finished = true;
                    // Cancel every unfinished child before returning.
                    $( this.$f.set(None); *this.$o = None; )+
                    return Poll::Ready(Err(e));
                }
                if $( this.$o.is_some() )&&+ {
                    *this.finished = true;
                    Poll::Ready(Ok(($( this.$o.take().expect("output present"), )+)))
                } else {
                    Poll::Pending
                }
            }
        }

        impl<E, $($F),+> FusedFuture for $TryGather<$($F),+>
        where
            $( $F: TryFuture<Error = E>, )+
        {
            fn is_terminated(&self) -> bool {
                self.finished
            }
        }
    )+};
}

tuple_gather! {
    2, gather2, Gather2, try_gather2, TryGather2:
        (A, a, a_out), (B, b, b_out);
    3, gather3, Gather3, try_gather3, TryGather3:
        (A, a, a_out), (B, b, b_out), (C, c, c_out);
    4, gather4, Gather4, try_gather4, TryGather4:
        (A, a, a_out), (B, b, b_out), (C, c, c_out), (D, d, d_out);
    5, gather5, Gather5, try_gather5, TryGather5:
        (A, a, a_out), (B, b, b_out), (C, c, c_out), (D, d, d_out), (E5, e, e_out);
    6, gather6, Gather6, try_gather6, TryGather6:
        (A, a, a_out), (B, b, b_out), (C, c, c_out), (D, d, d_out), (E5, e, e_out),
        (F6, f, f_out);
}
