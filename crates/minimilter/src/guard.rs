//! Calling filter code safely: a time limit, panics caught, errors kept, and
//! the shutdown deadline honoured. Whatever goes wrong becomes a
//! [`FilterFailure`], which the connection turns into the fail-safe reply.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::filter::BoxError;

/// Why a filter call produced no verdict.
#[derive(Debug)]
pub(crate) enum FilterFailure {
    Error(BoxError),
    Panic(String),
    Timeout(Duration),
    Shutdown,
    /// Writing a progress packet failed; the stream cannot be trusted.
    Connection,
}

impl std::fmt::Display for FilterFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilterFailure::Error(e) => write!(f, "filter error: {e}"),
            FilterFailure::Panic(m) => write!(f, "filter panicked: {m}"),
            FilterFailure::Timeout(d) => write!(f, "filter did not answer within {d:?}"),
            FilterFailure::Shutdown => write!(f, "shutdown deadline reached"),
            FilterFailure::Connection => write!(f, "writing a progress packet failed"),
        }
    }
}

/// Polls `fut` once, without waiting: its output if it is done, else
/// `Pending` (its waker is registered, and the future can be polled or
/// awaited again). For the fast paths that make a timer, a waiter or a
/// packet only when a step does not finish at once.
pub(crate) async fn poll_once<F: Future>(mut fut: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
}

/// Runs `fut` with a time limit, turning errors and panics into a failure.
pub(crate) async fn guarded<T>(
    fut: impl Future<Output = Result<T, BoxError>>,
    limit: Duration,
    kill: &CancellationToken,
) -> Result<T, FilterFailure> {
    let call = AssertUnwindSafe(fut).catch_unwind();
    tokio::pin!(call);
    // Most filter steps finish without waiting: poll once before arming a
    // timer and a cancellation waiter, which cost more than the step itself.
    let outcome = match poll_once(call.as_mut()).await {
        Poll::Ready(r) => Ok(r),
        Poll::Pending => {
            tokio::select! {
                biased;
                r = tokio::time::timeout(limit, call) => r.map_err(|_| FilterFailure::Timeout(limit)),
                _ = kill.cancelled() => Err(FilterFailure::Shutdown),
            }
        }
    };
    match outcome? {
        Err(panic) => Err(FilterFailure::Panic(panic_message(&*panic))),
        Ok(Err(e)) => Err(FilterFailure::Error(e)),
        Ok(Ok(v)) => Ok(v),
    }
}

/// The message a panic carried (`panic!("…")` payloads are `&str` or
/// `String`), for a log line or a fail-safe reason. Pass the payload itself
/// (`&*boxed` from `catch_unwind`, or `PanicHookInfo::payload()`), not the
/// box.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
