//! The one error type of hivent-core, shared by every backend through the traits.

use std::path::PathBuf;

/// What a handler returns when it fails: any error type, boxed.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in hivent, with the context needed to act on it.
///
/// Backends report their own failures through [`Error::Backend`], keeping their
/// error as the `source`; classify errors with [`Error::is_transient`] and
/// [`Error::is_fenced`] rather than by their text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration option has a value hivent cannot use.
    #[error("invalid configuration: option `{option}` cannot be {value:?}: {reason}")]
    InvalidConfig {
        /// The option, as it is spelled in code, TOML and (upper-cased, `HIVENT_` prefixed) the environment.
        option: &'static str,
        /// The value that was given.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A configuration file could not be read.
    #[error("could not read the configuration file {path}")]
    ConfigFileUnreadable {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// A configuration file is not valid TOML or has an unknown option.
    #[error("the configuration file {path} is not valid: {reason}")]
    ConfigFileInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A signal name hivent does not accept.
    #[error("invalid signal name {name:?}: {reason}")]
    InvalidSignalName {
        /// The name that was given.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The payload could not be encoded as JSON; nothing was emitted.
    #[error("the payload of signal {name:?} could not be encoded as JSON, so it was not emitted")]
    PayloadNotEncodable {
        /// The signal.
        name: String,
        /// The encoder's error.
        source: serde_json::Error,
    },
    /// The event is larger than `max_event_bytes`; nothing was sent.
    #[error("signal {name:?}: the event is {actual} bytes, more than the limit of {limit} (max_event_bytes), so it was not emitted; send a reference to large data instead")]
    EventTooLarge {
        /// The signal.
        name: String,
        /// The event's size as stored.
        actual: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The backend failed to store an emitted event; nothing was emitted.
    #[error("signal {name:?} (event {event_uuid}) was not emitted")]
    EmitFailed {
        /// The signal.
        name: String,
        /// The event that was not stored.
        event_uuid: String,
        /// Why the backend failed.
        source: Box<Error>,
    },
    /// The backend failed after an emit was sent, so its events may have been stored:
    /// the reply was lost. Retrying the same call with [`crate::Hivent::retry_emit`]
    /// completes it without storing a second copy.
    #[error("signal {name:?} (event {event_uuid}) may have been stored (the reply was lost); retry it with Hivent::retry_emit to complete it without a second copy")]
    EmitUncertain {
        /// The signal (of the first event, for a batch).
        name: String,
        /// The event (the first of a batch).
        event_uuid: String,
        /// What [`crate::Hivent::retry_emit`] needs to send the same call again.
        retry: Box<crate::EmitRetry>,
        /// Why the backend failed.
        source: Box<Error>,
    },
    /// The backend stored an emit for some receiving services and not for others (one
    /// of its lists is another tool's key of another type). It is not tried again:
    /// that would store second copies for the services that have the events.
    #[error("signal {name:?} (event {event_uuid}) was stored for some receiving services but not for all, and is not retried (that would store second copies)")]
    EmitPartlyStored {
        /// The signal (of the first event, for a batch).
        name: String,
        /// The event (the first of a batch).
        event_uuid: String,
        /// What the backend stored and what not.
        source: Box<Error>,
    },
    /// A backend stored a write for some of its targets and not for others; trying it
    /// again would store second copies.
    #[error("the {backend} backend stored the write for some of its targets but not for all")]
    PartlyStored {
        /// Which backend.
        backend: &'static str,
        /// The backend's own error.
        source: HandlerError,
    },
    /// A backend failed after a write was sent: it may have been applied.
    #[error("the {backend} backend failed after the write was sent, so it may have been applied")]
    MaybeStored {
        /// Which backend.
        backend: &'static str,
        /// The backend's own error.
        source: HandlerError,
    },
    /// A service that receives an event has no usable partition count, so the emit was refused before anything was written.
    #[error("service {service:?} receives {event:?} but has no valid partition count ({found:?}); nothing was emitted")]
    MissingPartitionCount {
        /// The receiving service.
        service: String,
        /// The event being emitted.
        event: String,
        /// What was stored instead of a partition count, if anything.
        found: Option<String>,
    },
    /// A worker tried to start with a partition count that would strand events.
    #[error("service {service:?} is configured with {requested} partitions but {stored} are stored and partitions {non_empty:?} still hold events; drain them (or start with partition_count = {stored}) before changing the count")]
    PartitionCountConflict {
        /// The service.
        service: String,
        /// The configured partition count.
        requested: u32,
        /// The stored partition count.
        stored: u32,
        /// The old partitions that still hold events.
        non_empty: Vec<u32>,
    },
    /// This consumer no longer owns the partition; its write was rejected and the new owner will process the events again.
    #[error("partition {partition} of service {service:?} is owned by another consumer now; this consumer's write was rejected")]
    Fenced {
        /// The service.
        service: String,
        /// The partition.
        partition: u32,
    },
    /// A handler returned an error for an event.
    #[error("a handler for {event:?} {} failed", describe_version(.version))]
    HandlerFailed {
        /// The event name.
        event: String,
        /// The event version.
        version: Option<i64>,
        /// The handler's error.
        source: HandlerError,
    },
    /// A handler panicked; the panic was caught and treated as a failure.
    #[error("a handler for {event:?} {} panicked: {message}", describe_version(.version))]
    HandlerPanicked {
        /// The event name.
        event: String,
        /// The event version.
        version: Option<i64>,
        /// The panic message.
        message: String,
    },
    /// An event's payload does not deserialize into the type a typed receiver expects.
    #[error(
        "the payload of {event:?} {} does not match the receiver's type",
        describe_version(.version)
    )]
    PayloadMismatch {
        /// The event name.
        event: String,
        /// The event version.
        version: Option<i64>,
        /// The decoder's error.
        source: serde_json::Error,
    },
    /// An item in a partition is not a hivent event (not JSON, or missing `payload`/`meta`).
    #[error("an item in partition {partition} of service {service:?} is not a valid event")]
    MalformedEvent {
        /// The service.
        service: String,
        /// The partition.
        partition: u32,
        /// The decoder's error.
        source: serde_json::Error,
    },
    /// The backend has no registration of the service (never registered, or the backend
    /// lost its data, e.g. a Redis restarted without persistence or flushed).
    #[error("service {service:?} is not registered with the backend ({found:?} is stored as its partition count); a worker of it registers it at start")]
    NotRegistered {
        /// The service.
        service: String,
        /// What the backend holds as the partition count, if anything.
        found: Option<String>,
    },
    /// An item in a partition is not UTF-8, so it cannot be an event (JSON is UTF-8);
    /// it is dead-lettered byte for byte.
    #[error("an item in partition {partition} of service {service:?} is not UTF-8, so it is not an event")]
    NotUtf8 {
        /// The service.
        service: String,
        /// The partition.
        partition: u32,
    },
    /// An operation named a partition the service does not have.
    #[error("service {service:?} has no partition {partition}; its partitions are 0 to {}", .partition_count.saturating_sub(1))]
    NoSuchPartition {
        /// The service.
        service: String,
        /// The partition asked for.
        partition: u32,
        /// The service's stored partition count.
        partition_count: u32,
    },
    /// A backend (Redis, memory) failed.
    #[error("the {backend} backend failed")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// Whether trying again later may succeed (connection lost, timeout).
        transient: bool,
        /// The backend's own error.
        source: HandlerError,
    },
    /// A consumer was started for a service with no receivers.
    #[error("service {service:?} has no receivers; register at least one with `Signal::receive` before starting a consumer")]
    NoReceivers {
        /// The service.
        service: String,
    },
    /// The runtime of an async handler shut down while the handler ran: the consumer
    /// stops, and the event stays first in its partition, with no attempt counted.
    #[error("the tokio runtime of the async handlers of service {service:?} shut down while one ran; the consumer stops and the event stays first in partition {partition}")]
    HandlerRuntimeGone {
        /// The service.
        service: String,
        /// The partition whose event was in hand.
        partition: u32,
    },
    /// A consumer thread died by panicking.
    #[error("consumer thread {thread:?} panicked: {message}")]
    ConsumerPanicked {
        /// The thread name.
        thread: String,
        /// The panic message.
        message: String,
    },
}

impl Error {
    /// Whether the operation may succeed if tried again later (a lost connection, a timeout).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Backend { transient, .. } => *transient,
            Error::EmitFailed { source, .. } | Error::EmitUncertain { source, .. } => {
                source.is_transient()
            }
            Error::MaybeStored { .. } => true,
            _ => false,
        }
    }

    /// Whether this is a fencing rejection: the consumer lost the partition.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Error::Fenced { .. })
    }

    /// For an emit that may have been stored, what [`crate::Hivent::retry_emit`] needs
    /// to complete it without a second copy.
    pub fn emit_retry(&self) -> Option<&crate::EmitRetry> {
        match self {
            Error::EmitUncertain { retry, .. } => Some(retry),
            _ => None,
        }
    }

    /// Whether the backend has no registration of the service.
    pub fn is_not_registered(&self) -> bool {
        matches!(self, Error::NotRegistered { .. })
    }
}

/// `version 2`, or `without a version` for a gem event whose version is null.
fn describe_version(version: &Option<i64>) -> String {
    match version {
        Some(v) => format!("version {v}"),
        None => "without a version".to_owned(),
    }
}

/// A `Result` with hivent's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error and its causes as one line, for failure records.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    crate::ErrorChain(error).to_string()
}

/// Turns a caught panic's payload into its message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}
