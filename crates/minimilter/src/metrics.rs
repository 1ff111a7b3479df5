//! What the runtime measures, for Prometheus: messages by verdict and
//! reason class, filter time per step and for end of message, connections
//! open and refused at the limit, negotiation failures, filter errors and
//! panics, fail-safe replies. Opt-in: a [`Server`](crate::Server) measures
//! only when given a `RuntimeMetrics`; without the `metrics` feature
//! every call here is empty.

#[cfg(feature = "metrics")]
pub use enabled::RuntimeMetrics;

#[cfg(feature = "metrics")]
mod enabled {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
    use prometheus_client::registry::Registry;

    type Labels = Vec<(&'static str, &'static str)>;

    fn latency() -> Histogram {
        // 100 µs .. ~105 s: a header check to a content scan near Postfix's
        // 300 s content timeout.
        Histogram::new(exponential_buckets(0.0001, 4.0, 11))
    }

    /// The runtime's metrics, registered in a [`Registry`].
    #[derive(Debug)]
    pub struct RuntimeMetrics {
        pub(crate) messages: Family<Labels, Counter>,
        pub(crate) step_seconds: Family<Labels, Histogram, fn() -> Histogram>,
        pub(crate) end_of_message_seconds: Histogram,
        pub(crate) connections_open: Gauge,
        pub(crate) connections: Counter,
        pub(crate) connections_refused: Counter,
        pub(crate) negotiation_failures: Counter,
        pub(crate) filter_failures: Family<Labels, Counter>,
        pub(crate) fail_safe_replies: Counter,
    }

    impl RuntimeMetrics {
        /// Creates the metrics and registers them in `registry` (names
        /// start with `milter_`).
        pub fn register(registry: &mut Registry) -> RuntimeMetrics {
            let m = RuntimeMetrics {
                messages: Family::default(),
                step_seconds: Family::new_with_constructor(latency),
                end_of_message_seconds: latency(),
                connections_open: Gauge::default(),
                connections: Counter::default(),
                connections_refused: Counter::default(),
                negotiation_failures: Counter::default(),
                filter_failures: Family::default(),
                fail_safe_replies: Counter::default(),
            };
            let r = registry.sub_registry_with_prefix("milter");
            r.register(
                "messages",
                "Messages whose outcome was settled, by verdict as the MTA applies it and reason class",
                m.messages.clone(),
            );
            r.register(
                "step_duration_seconds",
                "Time the filter took at each SMTP step",
                m.step_seconds.clone(),
            );
            r.register(
                "end_of_message_duration_seconds",
                "Time from end of message to the final answer",
                m.end_of_message_seconds.clone(),
            );
            r.register(
                "connections_open",
                "MTA connections being served",
                m.connections_open.clone(),
            );
            r.register(
                "connections",
                "MTA connections accepted",
                m.connections.clone(),
            );
            r.register(
                "connections_refused",
                "Connections closed at accept because max_connections was reached",
                m.connections_refused.clone(),
            );
            r.register(
                "negotiation_failures",
                "Connections that ended before option negotiation completed (probes, silence, bad packets)",
                m.negotiation_failures.clone(),
            );
            r.register(
                "filter_failures",
                "Filter steps that failed, by kind (error, panic, timeout)",
                m.filter_failures.clone(),
            );
            r.register(
                "fail_safe_replies",
                "Replies the runtime gave in the filter's place (fail_safe)",
                m.fail_safe_replies.clone(),
            );
            m
        }
    }
}

#[cfg(feature = "metrics")]
use std::sync::Arc;
use std::time::Duration;

use milter_proto::Step;

/// The runtime's handle on its metrics; empty when none were given.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observer {
    #[cfg(feature = "metrics")]
    inner: Option<Arc<RuntimeMetrics>>,
}

#[allow(unused_variables)]
impl Observer {
    #[cfg(feature = "metrics")]
    pub(crate) fn new(inner: Option<Arc<RuntimeMetrics>>) -> Observer {
        Observer { inner }
    }

    /// Whether step times are recorded: if not, the caller need not read
    /// the clock around each filter call.
    pub(crate) fn times_steps(&self) -> bool {
        #[cfg(feature = "metrics")]
        return self.inner.is_some();
        #[cfg(not(feature = "metrics"))]
        false
    }

    pub(crate) fn step(&self, step: Step, took: Duration) {
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.inner {
            m.step_seconds
                .get_or_create(&vec![("step", step_name(step))])
                .observe(took.as_secs_f64());
            if step == Step::EndOfMessage {
                m.end_of_message_seconds.observe(took.as_secs_f64());
            }
        }
    }

    pub(crate) fn message(&self, verdict: &'static str, class: &'static str) {
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.inner {
            m.messages
                .get_or_create(&vec![("verdict", verdict), ("reason", class)])
                .inc();
        }
    }

    /// A step failed (`kind`: error, panic, timeout, modification) and
    /// the fail-safe reply answers in the filter's place.
    pub(crate) fn filter_failure(&self, kind: &'static str) {
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.inner {
            m.filter_failures.get_or_create(&vec![("kind", kind)]).inc();
            m.fail_safe_replies.inc();
        }
    }

    pub(crate) fn connection_opened(&self) {
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.inner {
            m.connections.inc();
            m.connections_open.inc();
        }
    }

    pub(crate) fn connection_closed(&self) {
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.inner {
            m.connections_open.dec();
        }
    }

    pub(crate) fn negotiation_failed(&self) {
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.inner {
            m.negotiation_failures.inc();
        }
    }

    pub(crate) fn connection_refused(&self) {
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.inner {
            m.connections_refused.inc();
        }
    }
}

/// The step as a label value.
#[cfg(feature = "metrics")]
fn step_name(step: Step) -> &'static str {
    match step {
        Step::Connect => "connect",
        Step::Helo => "helo",
        Step::Mail => "mail",
        Step::Rcpt => "rcpt",
        Step::Data => "data",
        Step::Header => "header",
        Step::EndOfHeaders => "end_of_headers",
        Step::Body => "body",
        Step::EndOfMessage => "end_of_message",
        Step::Unknown => "unknown",
    }
}
