//! Logging to stderr through `tracing`, and a life-cycle handler that logs each event.

use std::sync::Arc;

use hivent::{Error, Event, LifeCycleEventHandler};
use serde_json::Value;

/// Installs a stderr subscriber at `level`; fails on an unknown level name.
pub fn init(level: &str) -> Result<(), String> {
    let filter: tracing::level_filters::LevelFilter = level.parse().map_err(|_| {
        format!("unknown log level {level:?} (use error, warn, info, debug or trace)")
    })?;
    // A second initialisation (tests running several workers) keeps the first.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(filter)
        .with_target(false)
        .try_init();
    Ok(())
}

/// Logs every life-cycle event at debug level, then passes it to the application's handler.
pub struct LoggingHandler {
    inner: Arc<dyn LifeCycleEventHandler>,
}

impl LoggingHandler {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn LifeCycleEventHandler>) -> LoggingHandler {
        LoggingHandler { inner }
    }
}

impl LifeCycleEventHandler for LoggingHandler {
    fn application_registered(&self, client_id: &str, events: &[String], partition_count: u32) {
        tracing::debug!(
            client_id,
            ?events,
            partition_count,
            "application registered"
        );
        self.inner
            .application_registered(client_id, events, partition_count);
    }

    fn event_processing_succeeded(&self, event_name: &str, event_version: i64, event: &Event) {
        tracing::debug!(event = event_name, version = event_version, uuid = %event.meta.event_uuid, "event processed");
        self.inner
            .event_processing_succeeded(event_name, event_version, event);
    }

    fn event_processing_failed(
        &self,
        error: &Error,
        payload: Option<&Value>,
        raw_payload: &str,
        dead_letter_queue_name: &str,
    ) {
        tracing::debug!(%error, queue = dead_letter_queue_name, "event dead-lettered");
        self.inner
            .event_processing_failed(error, payload, raw_payload, dead_letter_queue_name);
    }

    fn partitions_assigned(&self, service: &str, partitions: &[u32]) {
        tracing::debug!(service, ?partitions, "partitions assigned");
        self.inner.partitions_assigned(service, partitions);
    }

    fn partitions_revoked(&self, service: &str, partitions: &[u32]) {
        tracing::debug!(service, ?partitions, "partitions revoked");
        self.inner.partitions_revoked(service, partitions);
    }
}
