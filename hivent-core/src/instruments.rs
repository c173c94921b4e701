//! The metrics hivent records through the `metrics` facade: their names, labels and
//! where each is counted. Any `metrics` exporter shows them; with no recorder
//! installed, recording them does nothing.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `hivent_events_emitted_total` | counter | service, signal, version | events a service's emit calls stored (once per event, however many services received it; a call completed by `Hivent::retry_emit` is not counted) |
//! | `hivent_events_processed_total` | counter | service, signal, version | events every matching handler handled |
//! | `hivent_events_retried_total` | counter | service, signal, version | failed attempts retried in place |
//! | `hivent_events_dead_lettered_total` | counter | service, signal, version | events moved to a dead letter queue (signal and version empty for items that are no event) |
//! | `hivent_handler_duration_seconds` | histogram | service, signal, version | one attempt at an event: every matching handler, failed or not (an event no handler matches is not timed) |
//! | `hivent_emit_duration_seconds` | histogram | service | one emit call (a single emit or a batch) until the backend answered |
//! | `hivent_partitions_owned` | gauge | service, member | partitions a consumer owns |
//! | `hivent_partition_lag_events` | gauge | service, partition | events waiting in a partition (set by [`crate::Hivent::record_lag`]) |
//! | `hivent_partition_oldest_event_age_seconds` | gauge | service, partition | age of a partition's oldest waiting event, 0 when none waits (same) |
//! | `hivent_heartbeat_age_seconds` | gauge | service, member | time since a consumer's last successful heartbeat, set at each heartbeat |
//! | `hivent_heartbeat_failures_total` | counter | service, member | heartbeats that failed |
//! | `hivent_rebalances_total` | counter | service, member | heartbeats after which a consumer owned other partitions than before |

use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::{counter, gauge, histogram, Counter, Histogram};

use crate::{Event, Meta, ServiceStatus};

/// `hivent_events_emitted_total`.
pub const EVENTS_EMITTED: &str = "hivent_events_emitted_total";
/// `hivent_events_processed_total`.
pub const EVENTS_PROCESSED: &str = "hivent_events_processed_total";
/// `hivent_events_retried_total`.
pub const EVENTS_RETRIED: &str = "hivent_events_retried_total";
/// `hivent_events_dead_lettered_total`.
pub const EVENTS_DEAD_LETTERED: &str = "hivent_events_dead_lettered_total";
/// `hivent_handler_duration_seconds`.
pub const HANDLER_DURATION: &str = "hivent_handler_duration_seconds";
/// `hivent_emit_duration_seconds`.
pub const EMIT_DURATION: &str = "hivent_emit_duration_seconds";
/// `hivent_partitions_owned`.
pub const PARTITIONS_OWNED: &str = "hivent_partitions_owned";
/// `hivent_partition_lag_events`.
pub const PARTITION_LAG: &str = "hivent_partition_lag_events";
/// `hivent_partition_oldest_event_age_seconds`.
pub const PARTITION_OLDEST_AGE: &str = "hivent_partition_oldest_event_age_seconds";
/// `hivent_heartbeat_age_seconds`.
pub const HEARTBEAT_AGE: &str = "hivent_heartbeat_age_seconds";
/// `hivent_heartbeat_failures_total`.
pub const HEARTBEAT_FAILURES: &str = "hivent_heartbeat_failures_total";
/// `hivent_rebalances_total`.
pub const REBALANCES: &str = "hivent_rebalances_total";

/// The labels of an event's counters; an item that is no event has empty ones.
fn event_labels(service: &str, meta: Option<&Meta>) -> [(&'static str, String); 3] {
    [
        ("service", service.to_owned()),
        ("signal", meta.map(|m| m.name.clone()).unwrap_or_default()),
        (
            "version",
            meta.and_then(|m| m.version)
                .map(|v| v.to_string())
                .unwrap_or_default(),
        ),
    ]
}

/// The handles of one service's event metrics, registered once per signal and version
/// with the recorder in use (and again when another recorder is in use), so that
/// counting an event allocates nothing: building the labels of every count cost the
/// consume loop about a tenth of its throughput.
#[derive(Default)]
pub(crate) struct EventMetrics {
    /// The recorder the handles belong to (its address).
    recorder: usize,
    emit_duration: Option<Histogram>,
    events: Vec<(String, Option<i64>, EventHandles)>,
}

/// One signal and version's handles.
pub(crate) struct EventHandles {
    pub(crate) emitted: Counter,
    pub(crate) processed: Counter,
    pub(crate) retried: Counter,
    pub(crate) dead_lettered: Counter,
    pub(crate) duration: Histogram,
}

/// The recorder that `metrics` macros would use here and now (a local one, the global
/// one or its no-op), by address.
fn current_recorder() -> usize {
    metrics::with_recorder(|recorder| {
        (recorder as *const dyn metrics::Recorder).cast::<()>() as usize
    })
}

impl EventMetrics {
    /// The handles of `meta`'s signal and version for `service` (empty labels for an
    /// item that is no event).
    pub(crate) fn of(&mut self, service: &str, meta: Option<&Meta>) -> &mut EventHandles {
        self.follow_recorder();
        let (name, version) = meta.map_or(("", None), |m| (m.name.as_str(), m.version));
        let found = self
            .events
            .iter()
            .position(|(n, v, _)| n == name && *v == version);
        let at = match found {
            Some(at) => at,
            None => {
                let labels = event_labels(service, meta);
                self.events.push((
                    name.to_owned(),
                    version,
                    EventHandles {
                        emitted: counter!(EVENTS_EMITTED, &labels),
                        processed: counter!(EVENTS_PROCESSED, &labels),
                        retried: counter!(EVENTS_RETRIED, &labels),
                        dead_lettered: counter!(EVENTS_DEAD_LETTERED, &labels),
                        duration: histogram!(HANDLER_DURATION, &labels),
                    },
                ));
                self.events.len() - 1
            }
        };
        &mut self.events[at].2
    }

    /// Records an emit call of `service`: its duration, and each of `events` as
    /// emitted.
    pub(crate) fn emitted(&mut self, service: &str, events: &[Event], elapsed: Duration) {
        self.follow_recorder();
        self.emit_duration
            .get_or_insert_with(|| histogram!(EMIT_DURATION, "service" => service.to_owned()))
            .record(elapsed.as_secs_f64());
        for event in events {
            self.of(service, Some(&event.meta)).emitted.increment(1);
        }
    }

    fn follow_recorder(&mut self) {
        let recorder = current_recorder();
        if recorder != self.recorder {
            self.recorder = recorder;
            self.events.clear();
            self.emit_duration = None;
        }
    }
}

/// After a heartbeat of `member`: its partitions, whether they changed, and its age.
pub(crate) fn heartbeat(service: &str, member: &str, outcome: Heartbeat) {
    let labels = [
        ("service", service.to_owned()),
        ("member", member.to_owned()),
    ];
    match outcome {
        Heartbeat::Succeeded { owned, changed } => {
            gauge!(PARTITIONS_OWNED, &labels).set(owned as f64);
            gauge!(HEARTBEAT_AGE, &labels).set(0.0);
            if changed {
                counter!(REBALANCES, &labels).increment(1);
            }
        }
        Heartbeat::Failed { since_success } => {
            counter!(HEARTBEAT_FAILURES, &labels).increment(1);
            gauge!(HEARTBEAT_AGE, &labels).set(since_success.as_secs_f64());
        }
        Heartbeat::Left => gauge!(PARTITIONS_OWNED, &labels).set(0.0),
    }
}

/// What a heartbeat did, for [`heartbeat`].
pub(crate) enum Heartbeat {
    Succeeded { owned: usize, changed: bool },
    Failed { since_success: Duration },
    Left,
}

/// Sets the lag gauges of every partition of `status`, as of `now`.
pub(crate) fn lag(status: &ServiceStatus, now: DateTime<Utc>) {
    for partition in &status.partitions {
        let labels = [
            ("service", status.service.clone()),
            ("partition", partition.partition.to_string()),
        ];
        gauge!(PARTITION_LAG, &labels).set(partition.waiting as f64);
        let age = partition
            .oldest_created_at
            .filter(|_| partition.waiting > 0)
            .map_or(0.0, |at| {
                (now - at).num_milliseconds().max(0) as f64 / 1000.0
            });
        gauge!(PARTITION_OLDEST_AGE, &labels).set(age);
    }
}
