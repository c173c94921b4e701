//! The one error type of hivent-redis, and how it maps onto hivent-core's.

use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Everything that can go wrong talking to Redis, with the context to act on it.
///
/// Endpoints in errors are always redacted: a password in the URL never appears in
/// an error's text. Classify with [`Error::is_transient`], not by the text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint is not a Redis URL this crate can use.
    #[error("the Redis endpoint {endpoint:?} is not valid: {reason}; expected redis://[user:password@]host:port/db (rediss:// for TLS)")]
    InvalidEndpoint {
        /// The endpoint, redacted.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An option value that cannot work.
    #[error("invalid Redis option `{option}`: {reason}")]
    InvalidOptions {
        /// The option.
        option: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// The endpoint is a Redis Cluster node, which hivent-redis does not support.
    #[error("Redis at {endpoint} is a Redis Cluster node; connect with backend `redis-cluster` (RedisClusterBackend) instead: the standalone keyspace, shared with the Ruby gem, touches many hash slots in one script")]
    ClusterNotSupported {
        /// The redacted endpoint.
        endpoint: String,
    },
    /// Redis could not be reached (or refused the credentials) when connecting.
    #[error("could not connect to Redis at {endpoint}")]
    Unreachable {
        /// The endpoint, redacted.
        endpoint: String,
        /// The client's error.
        source: RedisClientError,
    },
    /// A Redis command or script failed.
    #[error("Redis at {endpoint} failed to {operation}")]
    Command {
        /// What was being done, e.g. `publish events`.
        operation: &'static str,
        /// The endpoint, redacted.
        endpoint: String,
        /// The client's error.
        source: RedisClientError,
    },
    /// The subscription to the wake-up channel could not be set up in time.
    #[error("could not subscribe to the wake-up channel of service {service:?} at {endpoint} within {waited:?}")]
    SubscribeTimedOut {
        /// The service.
        service: String,
        /// The endpoint, redacted.
        endpoint: String,
        /// How long it waited.
        waited: Duration,
    },
    /// A key hivent reads or writes holds another type: an event name, a service name
    /// or another tool's key collides with hivent's keys. Nothing was written.
    #[error("the Redis key {key:?} is a {found}, not what hivent keeps there (an event name or another tool's key collides with it); nothing was written")]
    KeyCollision {
        /// The key.
        key: String,
        /// Its type in Redis.
        found: String,
    },
    /// A partition list of an emit by cached routes is another type: the emit's other
    /// lists got their events (a transaction does not check before it writes), this
    /// one did not (or, for a call with this list alone, its marker could not be taken
    /// back). Not retried: trying again would store second copies or nothing.
    #[error("the Redis key {key:?} is a {found}, not a partition list (another tool's key collides with it): the call's events were stored in its other lists, if it has any, but not there; fix the key and emit again what that service lacks")]
    PartlyStored {
        /// The colliding key.
        key: String,
        /// Its type.
        found: String,
    },
    /// Redis did not answer a write that was sent: it may have been applied (a lost
    /// reply, a timeout, a dropped connection).
    #[error("Redis at {endpoint} did not answer a publish call that was sent, so it may have been stored")]
    ReplyLost {
        /// The endpoint, redacted.
        endpoint: String,
        /// The client's error.
        source: RedisClientError,
    },
    /// Cluster mode: an emit wrote each receiving partition's slot on its own, and the
    /// cluster failed before every one was written, so some services may have the
    /// events and others not. Trying the same call again (`Hivent::retry_emit`) writes
    /// only what is missing: each partition's marker says whether it has the call.
    #[error("Redis Cluster failed during an emit: written for {written:?}, not (or not certainly) for {not_written:?}; retry it with Hivent::retry_emit to complete it without second copies")]
    NotAllWritten {
        /// The services every partition of which has the call's events.
        written: Vec<String>,
        /// The services some partition of which lacks them, or could not be checked.
        not_written: Vec<String>,
        /// The client's error.
        source: RedisClientError,
    },
    /// Cluster mode with [`crate::RedisOptions::replica_acks`]: the emit is stored on
    /// the masters but fewer replicas than asked acknowledged it in time, so a
    /// failover now could lose it. Trying the same call again writes nothing twice and
    /// waits again.
    #[error("the emit is stored on the Redis masters, but only {acked} of the {wanted} replicas asked for acknowledged it within {waited:?}, so a failover now could lose it; retry it with Hivent::retry_emit")]
    NotReplicated {
        /// The fewest replicas of a written master that acknowledged.
        acked: u32,
        /// How many were asked for.
        wanted: u32,
        /// How long the emit waited.
        waited: Duration,
    },
    /// A receiving service has no usable partition count; nothing was emitted.
    #[error("service {service:?} receives {event:?} but has no valid partition count ({found:?}); nothing was emitted")]
    MissingPartitionCount {
        /// The receiving service.
        service: String,
        /// The event being emitted.
        event: String,
        /// What the count key holds, if anything.
        found: Option<String>,
    },
    /// The service has no valid partition count: it was never registered (or its
    /// count key was overwritten), so it has no partitions to consume or inspect.
    #[error("service {service:?} is not registered: it has no valid partition count ({found:?}); start a worker of it first")]
    NotRegistered {
        /// The service.
        service: String,
        /// What the count key holds, if anything.
        found: Option<String>,
    },
    /// The partition does not exist under the service's partition count.
    #[error(
        "service {service:?} has {partition_count} partitions, so it has no partition {partition}"
    )]
    NoSuchPartition {
        /// The service.
        service: String,
        /// The partition asked for.
        partition: u32,
        /// The service's partition count.
        partition_count: u32,
    },
    /// A registration would change the partition count while old partitions hold events.
    #[error("service {service:?} is configured with {requested} partitions but {stored} are stored and partitions {non_empty:?} still hold events")]
    PartitionCountConflict {
        /// The service.
        service: String,
        /// The count asked for.
        requested: u32,
        /// The count stored.
        stored: u32,
        /// The old partitions that still hold events.
        non_empty: Vec<u32>,
    },
    /// This consumer no longer holds the partition; its write was rejected.
    #[error("partition {partition} of service {service:?} is owned by another consumer now; this consumer's write was rejected")]
    Fenced {
        /// The service.
        service: String,
        /// The partition.
        partition: u32,
    },
    /// The oldest item of a partition is not the one the consumer read, so it was not
    /// dead-lettered nor its failed attempt counted; something other than the owner
    /// changed the partition.
    #[error("the oldest event of partition {partition} of service {service:?} is not the one the consumer read; another process changed the partition, so nothing was changed")]
    OldestMismatch {
        /// The service.
        service: String,
        /// The partition.
        partition: u32,
    },
}

/// The Redis client's own error, as the cause of an [`Error`]. redis-rs writes an I/O
/// error's text into its message and returns that I/O error as its source as well, so
/// a chain printed through it would say "Connection refused" twice; as a cause it shows
/// its message and ends the chain. The client's error is [`RedisClientError::redis`].
///
/// ```
/// use std::error::Error as _;
/// let error = hivent_redis::RedisBackend::connect("redis://127.0.0.1:1/0").unwrap_err();
/// let cause = error.source().and_then(|c| c.downcast_ref::<hivent_redis::RedisClientError>());
/// let cause = cause.expect("the client's error is the cause");
/// assert!(cause.redis().is_connection_refusal());
/// assert!(cause.source().is_none(), "the chain ends here: its message has said it all");
/// ```
#[derive(Debug)]
pub struct RedisClientError(RedisError);

impl RedisClientError {
    /// The redis-rs error.
    pub fn redis(&self) -> &RedisError {
        &self.0
    }
}

impl From<RedisError> for RedisClientError {
    fn from(error: RedisError) -> RedisClientError {
        RedisClientError(error)
    }
}

impl std::fmt::Display for RedisClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for RedisClientError {}

impl Error {
    /// Whether the operation may succeed if tried again later: a lost connection, a
    /// timeout, a server that is loading or busy.
    ///
    /// ```
    /// use hivent_redis::RedisBackend;
    /// let refused = RedisBackend::connect("redis://127.0.0.1:1/0").unwrap_err();
    /// assert!(refused.is_transient(), "nothing listens there yet: try again later");
    /// let malformed = RedisBackend::connect("localhost:6379").unwrap_err();
    /// assert!(!malformed.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { source, .. } | Error::Command { source, .. } => {
                is_transient(&source.0)
            }
            Error::SubscribeTimedOut { .. }
            | Error::ReplyLost { .. }
            | Error::NotAllWritten { .. }
            | Error::NotReplicated { .. } => true,
            _ => false,
        }
    }
}

/// Whether a client error may go away by itself.
pub(crate) fn is_transient(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::ReadOnly
                    // A cluster's slots moving or its master failing over.
                    | ServerErrorKind::Moved
                    | ServerErrorKind::Ask
            ) | ErrorKind::ClusterConnectionNotFound
        )
        // A long-running script makes the server answer BUSY until it ends.
        || error.code() == Some("BUSY")
}

/// Whether a read was interrupted by a signal (EINTR, e.g. after SIGSTOP/SIGCONT):
/// nothing was read, the connection is fine, and the read can simply be tried again.
pub(crate) fn is_interrupted(error: &RedisError) -> bool {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let Some(cause) = std::error::Error::source(error) else {
        return false;
    };
    // redis-rs keeps an I/O error behind an `Arc` as the source; look through it.
    let cause: &(dyn std::error::Error + 'static) = match cause.downcast_ref::<Shared>() {
        Some(shared) => shared.as_ref(),
        None => cause,
    };
    cause
        .downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::Interrupted)
}

/// Whether a failed call certainly did not run: the connection was refused, or Redis
/// answered with an error that it gives before running anything.
pub(crate) fn certainly_not_run(error: &RedisError) -> bool {
    error.is_connection_refusal()
        || matches!(
            error.code(),
            Some(
                "NOSCRIPT"
                    | "BUSY"
                    | "LOADING"
                    | "OOM"
                    | "NOAUTH"
                    | "NOPERM"
                    | "WRONGPASS"
                    | "READONLY"
                    | "MASTERDOWN"
                    | "TRYAGAIN"
                    | "MOVED"
                    | "ASK"
                    | "CLUSTERDOWN"
            )
        )
}

/// Whether the connection is still in step with the server after this error: true
/// only for error replies, after which the next reply belongs to the next command.
pub(crate) fn keeps_connection(error: &RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Server(_) | ErrorKind::Extension | ErrorKind::UnexpectedReturnType
    )
}

impl From<Error> for hivent_core::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::MissingPartitionCount {
                service,
                event,
                found,
            } => hivent_core::Error::MissingPartitionCount {
                service,
                event,
                found,
            },
            Error::PartitionCountConflict {
                service,
                requested,
                stored,
                non_empty,
            } => hivent_core::Error::PartitionCountConflict {
                service,
                requested,
                stored,
                non_empty,
            },
            Error::Fenced { service, partition } => {
                hivent_core::Error::Fenced { service, partition }
            }
            Error::NoSuchPartition {
                service,
                partition,
                partition_count,
            } => hivent_core::Error::NoSuchPartition {
                service,
                partition,
                partition_count,
            },
            Error::NotRegistered { service, found } => {
                hivent_core::Error::NotRegistered { service, found }
            }
            error @ Error::PartlyStored { .. } => hivent_core::Error::PartlyStored {
                backend: "redis",
                source: Box::new(error),
            },
            error @ (Error::ReplyLost { .. }
            | Error::NotAllWritten { .. }
            | Error::NotReplicated { .. }) => hivent_core::Error::MaybeStored {
                backend: "redis",
                source: Box::new(error),
            },
            // Configuration errors stay configuration errors (the CLI exits 2 for them).
            Error::ClusterNotSupported { endpoint } => hivent_core::Error::InvalidConfig {
                option: "endpoint",
                value: endpoint,
                reason: "it is a Redis Cluster node; use backend `redis-cluster` for it (the `redis` backend is standalone Redis, as the Ruby gem uses it)".into(),
            },
            Error::InvalidEndpoint { endpoint, reason } => hivent_core::Error::InvalidConfig {
                option: "endpoint",
                value: endpoint,
                reason: format!(
                    "{reason}; expected redis://[user:password@]host:port/db (rediss:// for TLS)"
                ),
            },
            Error::InvalidOptions { option, reason } => hivent_core::Error::InvalidConfig {
                option,
                value: String::new(),
                reason,
            },
            other => hivent_core::Error::Backend {
                backend: "redis",
                transient: other.is_transient(),
                source: Box::new(other),
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// An interrupted read (EINTR) is recognised as such, and only it.
    #[test]
    fn recognises_interrupted_reads() {
        let interrupted = RedisError::from(std::io::Error::from(std::io::ErrorKind::Interrupted));
        assert!(is_interrupted(&interrupted));
        let reset = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(!is_interrupted(&reset));
    }

    /// Fencing and partition count errors keep their core meaning; the rest become
    /// backend errors that keep transience.
    #[test]
    fn maps_onto_core_errors() {
        let fenced: hivent_core::Error = Error::Fenced {
            service: "svc".into(),
            partition: 2,
        }
        .into();
        assert!(fenced.is_fenced());
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let lost: hivent_core::Error = Error::Command {
            operation: "ack events",
            endpoint: "redis://127.0.0.1:1/0".into(),
            source: io.into(),
        }
        .into();
        assert!(lost.is_transient());
        assert!(matches!(
            lost,
            hivent_core::Error::Backend {
                backend: "redis",
                ..
            }
        ));
        let bad: hivent_core::Error = Error::InvalidEndpoint {
            endpoint: "nope".into(),
            reason: "it has no scheme".into(),
        }
        .into();
        assert!(!bad.is_transient());
        assert!(
            matches!(&bad, hivent_core::Error::InvalidConfig { option: "endpoint", value, .. } if value == "nope"),
            "{bad}"
        );
    }
}
