//! A global tracing subscriber that records the target and thread of
//! every event, to prove on which thread a piece of work ran (a test on a
//! current-thread runtime: the runtime's only thread is the test's).

use std::sync::Mutex;
use std::thread::ThreadId;

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// The target and thread of every log event since the last [`clear`].
static EVENTS: Mutex<Vec<(String, ThreadId)>> = Mutex::new(Vec::new());

/// Records the target and thread of every event (install it with
/// `tracing_subscriber::util::SubscriberInitExt::try_init`, which also
/// forwards `log` records, as the daemon does).
pub struct ThreadRecorder;

impl Subscriber for ThreadRecorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let target = e.metadata().target().to_string();
        EVENTS
            .lock()
            .unwrap()
            .push((target, std::thread::current().id()));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Forgets the events recorded so far.
pub fn clear() {
    EVENTS.lock().unwrap().clear();
}

/// The events recorded since the last [`clear`]: target and thread.
pub fn events() -> Vec<(String, ThreadId)> {
    EVENTS.lock().unwrap().clone()
}
