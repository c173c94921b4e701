//! The metrics hivent records through the `metrics` facade: their names, labels and
//! where each is counted. Any `metrics` exporter shows them; with no recorder
//! installed, recording them does nothing.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `hivent_events_emitted_total` | counter | service, signal, version | events a service emitted and the backend stored (once per event, however many services received it) |
//! | `hivent_events_processed_total` | counter | service, signal, version | events every matching handler handled |
//! | `hivent_events_retried_total` | counter | service, signal, version | failed attempts retried in place |
//! | `hivent_events_dead_lettered_total` | counter | service, signal, version | events moved to a dead letter queue (signal and version empty for items that are no event) |
//! | `hivent_handler_duration_seconds` | histogram | service, signal, version | one attempt at an event: every matching handler, failed or not |
//! | `hivent_emit_duration_seconds` | histogram | service | one emit call (a single emit or a batch) until the backend answered |
//! | `hivent_partitions_owned` | gauge | service, member | partitions a consumer owns |
//! | `hivent_partition_lag_events` | gauge | service, partition | events waiting in a partition (set by [`crate::Hivent::record_lag`]) |
//! | `hivent_partition_oldest_event_age_seconds` | gauge | service, partition | age of a partition's oldest waiting event, 0 when none waits (same) |
//! | `hivent_heartbeat_age_seconds` | gauge | service, member | time since a consumer's last successful heartbeat, set at each heartbeat |
//! | `hivent_heartbeat_failures_total` | counter | service, member | heartbeats that failed |
//! | `hivent_rebalances_total` | counter | service, member | heartbeats after which a consumer owned other partitions than before |

use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::{counter, gauge, histogram};

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

pub(crate) fn emitted(service: &str, events: &[Event], elapsed: Duration) {
    for event in events {
        counter!(EVENTS_EMITTED, &event_labels(service, Some(&event.meta))).increment(1);
    }
    histogram!(EMIT_DURATION, "service" => service.to_owned()).record(elapsed.as_secs_f64());
}

pub(crate) fn attempted(service: &str, meta: &Meta, elapsed: Duration) {
    histogram!(HANDLER_DURATION, &event_labels(service, Some(meta))).record(elapsed.as_secs_f64());
}

pub(crate) fn processed(service: &str, meta: &Meta) {
    counter!(EVENTS_PROCESSED, &event_labels(service, Some(meta))).increment(1);
}

pub(crate) fn retried(service: &str, meta: Option<&Meta>) {
    counter!(EVENTS_RETRIED, &event_labels(service, meta)).increment(1);
}

pub(crate) fn dead_lettered(service: &str, meta: Option<&Meta>) {
    counter!(EVENTS_DEAD_LETTERED, &event_labels(service, meta)).increment(1);
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
