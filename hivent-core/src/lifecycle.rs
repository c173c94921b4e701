//! The life-cycle handler: hooks a consumer calls as it registers and processes events.

use std::time::Duration;

use serde_json::Value;

use crate::{Error, Event, ReceivedSignal};

/// Callbacks for what happens in a consumer, for logging, metrics and error reporting.
///
/// Every method has a do-nothing default, so implement only what you need. They are
/// called on the consumer thread that processed the event (or, for the partition
/// hooks, whichever thread renewed the membership), so keep them quick and never block
/// on the consumer itself.
///
/// ```
/// use hivent_core::{Error, ErrorChain, Event, LifeCycleEventHandler};
/// struct Report;
/// impl LifeCycleEventHandler for Report {
///     fn event_processing_failed(&self, error: &Error, _payload: Option<&serde_json::Value>,
///                                _raw: &str, queue: &str) {
///         // The error says what failed; its chain says why.
///         eprintln!("dead-lettered into {queue}: {}", ErrorChain(error));
///     }
/// }
/// ```
pub trait LifeCycleEventHandler: Send + Sync {
    /// The service registered its receivers with the backend (once per consumer start):
    /// each received signal with its version filter, as the gem's `[{name:, version:}]`.
    fn application_registered(
        &self,
        client_id: &str,
        signals: &[ReceivedSignal],
        partition_count: u32,
    ) {
        let _ = (client_id, signals, partition_count);
    }

    /// Every matching handler returned `Ok` for `event`; it is about to be acknowledged.
    /// `event_version` is `None` for a gem event whose version is null.
    fn event_processing_succeeded(
        &self,
        event_name: &str,
        event_version: Option<i64>,
        event: &Event,
    ) {
        let _ = (event_name, event_version, event);
    }

    /// A handler failed for `event` and it will be tried again, in place, after `delay`:
    /// `attempt` attempts have failed so far. No later event of its partition is
    /// processed meanwhile.
    fn event_processing_retried(
        &self,
        error: &Error,
        event: &Event,
        attempt: u32,
        delay: Duration,
    ) {
        let _ = (error, event, attempt, delay);
    }

    /// Processing failed for good (the retries used up, or a failure retrying cannot
    /// fix) and the raw item was moved to `dead_letter_queue_name`, with a failure record.
    ///
    /// `payload` is the item decoded as JSON (the whole `{payload, meta}` object), or
    /// `None` when it is not JSON at all; `raw_payload` is the text exactly as it was
    /// read from the partition.
    fn event_processing_failed(
        &self,
        error: &Error,
        payload: Option<&Value>,
        raw_payload: &str,
        dead_letter_queue_name: &str,
    ) {
        let _ = (error, payload, raw_payload, dead_letter_queue_name);
    }

    /// This consumer now owns these partitions of `service` (newly gained ones only).
    fn partitions_assigned(&self, service: &str, partitions: &[u32]) {
        let _ = (service, partitions);
    }

    /// This consumer no longer owns these partitions of `service`.
    fn partitions_revoked(&self, service: &str, partitions: &[u32]) {
        let _ = (service, partitions);
    }
}

/// The default handler: ignores every life-cycle event.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopLifeCycleEventHandler;

impl LifeCycleEventHandler for NoopLifeCycleEventHandler {}
