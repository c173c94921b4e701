//! hivent: keyed, ordered, at-least-once event streams between services, on Redis or in memory.
//!
//! Services emit named, versioned events ("signals"); every service that receives a
//! signal gets its own durable copy, split into partitions by a key so that events with
//! the same key are processed in order. Worker processes of a service share its
//! partitions, take over from each other, and move failed events to a dead letter
//! queue. On Redis, hivent is wire compatible with the Ruby gem of the same name.
//!
//! This crate is the facade: the application API of [`hivent_core`] at its root, what
//! only backend implementers need under [`backend`], and [`connect`], which picks the
//! backend named by [`Config::backend`] (the one place that choice is made), so an
//! application moves from memory to Redis by configuration alone.
//!
//! # Features
//!
//! - `redis` (default): the Redis backends: standalone Redis ([`RedisBackend`],
//!   `BackendKind::Redis`) and Redis Cluster ([`RedisClusterBackend`],
//!   `BackendKind::RedisCluster`).
//!   Without it, `connect` refuses a Redis configuration with an error that says so,
//!   and hivent is the core, the memory backend and [`testing`]: 48 crates with all
//!   they depend on, against 99 with the defaults.
//! - `tls` (default, implies `redis`): `rediss://` endpoints, through rustls.
//! - `tokio`: async emits (`Signal::emit_async`, `EmitBatch::emit_async`) on
//!   redis-rs's async connection, async handlers (`Signal::receive_async`) and
//!   waiting for background consumers from async code (`Running::stop_and_wait`).
//!
//! `hivent = { version = "0.1", default-features = false }` is the dependency for
//! memory-only tests and applications that never talk to Redis.
//!
//! ```
//! use hivent::{Config, EmitOptions};
//!
//! let hivent = hivent::connect(Config::builder().client_id("docs-quickstart").partition_count(2).build()?)?;
//! let signal = hivent.signal("user:created")?;
//! signal.receive(|event| {
//!     println!("{} {:?}: {}", event.meta.name, event.meta.version, event.payload);
//!     Ok(())
//! });
//! let consumer = hivent.consumer()?;
//! signal.emit_with(&serde_json::json!({"id": 1}), EmitOptions::version(1).key("user-1"))?;
//! assert_eq!(consumer.run_until_idle()?, 1);
//! # Ok::<(), hivent::Error>(())
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod testing;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

pub use hivent_core::{
    choose_backend, partition_for, partition_hash, ruby_json, validate_signal_name, BackendKind,
    CommandFailure, Config, ConfigBuilder, Consumer, ConsumerOptions, DeadLetter, DeadLetterEntry,
    DeadLetterFilter, DeadLetterPick, DeadLetterQueue, DeadLetterReport, EmitBatch, EmitOptions,
    EmitRetry, Emitted, Error, ErrorChain, Event, FailureRecord, GemConsumer, HandlerError, Hivent,
    LifeCycleEventHandler, MemberHealth, MemberStatus, Meta, NoopLifeCycleEventHandler, Operations,
    PartitionStatus, Permanent, ReceivedSignal, Result, RetryAfter, RetryPolicy, Running,
    ServiceStatus, Shutdown, Signal, DEFAULT_MEMORY_ENDPOINT, DEFAULT_REDIS_ENDPOINT,
    MAX_PARTITION_COUNT, WILDCARD,
};

/// What only backend implementers (and tools that drive a backend directly) need: the
/// backend seam, the consume loop's parts, and the naming and id helpers backends share.
/// Applications use the items at the crate root.
pub mod backend {
    pub use hivent_core::{
        bumped_rate, dead_letter_queue_name, decayed_rate, desired_partitions, new_id,
        partition_name, redact_endpoint, Attempts, Backend, Batch, ConsumerSession, Dispatch,
        EmitTap, Envelope, Fetched, Handler, HandlerFailure, Receivers, Registration, Standing,
    };
}
/// The metrics hivent records (names, labels, what each counts), for dashboards and
/// alerts; any `metrics` exporter shows them.
pub use hivent_core::instruments;
pub use hivent_memory::{MemoryBackend, MemoryOptions};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use hivent_redis::{RedisBackend, RedisClusterBackend, RedisOptions};

use parking_lot::Mutex;

/// Connects to the backend named by `config.backend()` and returns the service's handle.
///
/// - `memory`: an in-process store. Every `connect` in the process with the same
///   `endpoint` shares one store, the way every connection to one Redis shares its
///   data, so several services in one process see each other's events.
/// - `redis`: the Redis at `config.endpoint()`; fails when it cannot be reached.
/// - `redis-cluster`: the Redis Cluster whose seed nodes `config.endpoint()` lists
///   (URLs separated by commas); fails when no seed answers as a cluster node.
///
/// ```
/// use hivent::{BackendKind, Config};
/// // The configuration may come from code, `HIVENT_*` variables or a TOML file.
/// let hivent = hivent::connect(Config::builder().client_id("docs-connect").build()?)?;
/// assert_eq!(hivent.config().backend(), BackendKind::Memory);
///
/// let unreachable = Config::builder().client_id("docs-connect")
///     .backend(BackendKind::Redis).endpoint("redis://127.0.0.1:1/0").build()?;
/// assert!(hivent::connect(unreachable).is_err());
/// # Ok::<(), hivent::Error>(())
/// ```
pub fn connect(config: Config) -> Result<Hivent> {
    let backend = open_backend(&config)?;
    Ok(Hivent::new(config, backend))
}

/// Opens the backend named by `config.backend()`, for tools that need the backend
/// itself rather than a [`Hivent`] handle.
///
/// ```
/// let config = hivent::Config::builder().client_id("docs-open").build()?;
/// let backend = hivent::open_backend(&config)?;
/// assert_eq!(backend.name(), "memory");
/// // Status and dead letters of any service, as `hivent status` reads them.
/// assert!(backend.operations().is_some());
/// # Ok::<(), hivent::Error>(())
/// ```
pub fn open_backend(config: &Config) -> Result<Arc<dyn backend::Backend>> {
    Ok(match config.backend() {
        BackendKind::Memory => {
            let mut options = MemoryOptions::default();
            if let Some(interval) = config.heartbeat_interval() {
                options.heartbeat_interval = interval;
            }
            if let Some(ttl) = config.member_ttl() {
                options.member_ttl = ttl;
            }
            Arc::new(memory_store_with(config.endpoint(), options))
        }
        #[cfg(not(feature = "redis"))]
        BackendKind::Redis | BackendKind::RedisCluster => {
            return Err(Error::InvalidConfig {
                option: "backend",
                value: "redis".into(),
                reason: "this build of hivent has no Redis backend (enable its `redis` feature)"
                    .into(),
            })
        }
        #[cfg(feature = "redis")]
        BackendKind::Redis => Arc::new(RedisBackend::with_options(
            config.endpoint(),
            redis_options(config),
        )?),
        #[cfg(feature = "redis")]
        BackendKind::RedisCluster => Arc::new(RedisClusterBackend::with_options(
            config.endpoint(),
            redis_options(config),
        )?),
    })
}

/// The Redis options a configuration sets; the rest keep their defaults.
#[cfg(feature = "redis")]
fn redis_options(config: &Config) -> RedisOptions {
    let mut options = RedisOptions::default();
    if let Some(interval) = config.heartbeat_interval() {
        options = options.heartbeat_interval(interval);
    }
    if let Some(ttl) = config.member_ttl() {
        options = options.member_ttl(ttl);
    }
    if let Some(timeout) = config.connect_timeout() {
        options = options.connect_timeout(timeout);
    }
    if let Some(timeout) = config.response_timeout() {
        options = options.response_timeout(timeout);
    }
    if let Some(tries) = config.emit_tries() {
        options = options.emit_tries(tries);
    }
    if let Some(backoff) = config.emit_backoff() {
        options = options.emit_backoff(backoff);
    }
    if let Some(ttl) = config.emit_marker_ttl() {
        options = options.emit_marker_ttl(ttl);
    }
    if let Some(size) = config.pool_size() {
        options = options.pool_size(size);
    }
    if let Some(ttl) = config.route_cache_ttl() {
        options = options.route_cache_ttl(ttl);
    }
    if let Some(replicas) = config.replica_acks() {
        options = options.replica_acks(replicas);
    }
    if let Some(timeout) = config.replica_ack_timeout() {
        options = options.replica_ack_timeout(timeout);
    }
    options
}

/// The process-wide memory store that `connect` uses for a memory `endpoint`: look
/// into its partitions and dead letter queues, e.g. in tests and examples.
///
/// ```
/// use hivent::Config;
/// let config = Config::builder().client_id("docs-store").endpoint("memory://docs-store").build()?;
/// let hivent = hivent::connect(config)?;
/// hivent.signal("a:b")?.receive(|_| Ok(()));
/// hivent.register()?;
/// hivent.signal("a:b")?.emit(&serde_json::json!({}), 1)?;
/// let store = hivent::memory_store("memory://docs-store");
/// assert_eq!(store.partition("docs-store", 0).len(), 1);
/// # Ok::<(), hivent::Error>(())
/// ```
pub fn memory_store(endpoint: &str) -> MemoryBackend {
    memory_store_with(endpoint, MemoryOptions::default())
}

/// The store of `endpoint`, made with `options` if this is its first use; a store that
/// exists keeps the options it was made with.
fn memory_store_with(endpoint: &str, options: MemoryOptions) -> MemoryBackend {
    static STORES: OnceLock<Mutex<HashMap<String, MemoryBackend>>> = OnceLock::new();
    STORES
        .get_or_init(Default::default)
        .lock()
        .entry(endpoint.to_owned())
        .or_insert_with(|| MemoryBackend::with_options(options))
        .clone()
}

/// The README's examples, compiled and run as doctests so they cannot drift from the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The memory backend is there with or without features.
    #[test]
    fn the_memory_backend_needs_no_feature() {
        let hivent = connect(
            Config::builder()
                .client_id("features-memory")
                .build()
                .unwrap(),
        )
        .unwrap();
        let signal = hivent.signal("f:m").unwrap();
        signal.receive(|_| Ok(()));
        let consumer = hivent.consumer().unwrap();
        signal.emit(&serde_json::json!({}), 1).unwrap();
        assert_eq!(consumer.run_until_idle().unwrap(), 1);
    }
}
