//! Configuration: backend, endpoint, partition count, client id and life-cycle handler, from code, environment and TOML.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    ConsumerOptions, Error, LifeCycleEventHandler, NoopLifeCycleEventHandler, Result, RetryPolicy,
};

/// The Redis endpoint used when none is configured.
pub const DEFAULT_REDIS_ENDPOINT: &str = "redis://127.0.0.1:6379/0";

/// The most partitions a service may have. Heartbeats, registrations and status read
/// every partition's claim, so the count bounds what one script call costs Redis; 1,024
/// keeps that well under a millisecond while leaving room for far more consumers than
/// one service runs.
pub const MAX_PARTITION_COUNT: u32 = 1024;

/// The largest event (its stored JSON) an emit sends unless configured otherwise: 1 MiB,
/// Kafka's default too. Larger events make every fetch, dead letter and replay of their
/// partition heavy; send a reference to the data instead.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// The memory store used when the memory backend is chosen without an endpoint.
pub const DEFAULT_MEMORY_ENDPOINT: &str = "memory://default";

/// Which backend a configuration means: the one rule for the library and the CLI alike.
///
/// An explicit backend (code, `HIVENT_BACKEND`, the file) wins. Otherwise an endpoint
/// (code, `HIVENT_ENDPOINT`, `REDIS_URL`, the file) selects its backend: `memory://…`
/// the memory backend, several URLs separated by commas (seed nodes) Redis Cluster,
/// anything else Redis. With neither, `fallback` applies: the
/// library's is the embedded memory backend; the standalone `hivent` binary's is Redis
/// at [`DEFAULT_REDIS_ENDPOINT`], as `redis-cli` does, since its commands must reach
/// other processes.
///
/// ```
/// use hivent_core::{choose_backend, BackendKind};
/// assert_eq!(choose_backend(Some(BackendKind::Memory), Some("redis://h/0"), BackendKind::Redis), BackendKind::Memory);
/// assert_eq!(choose_backend(None, Some("redis://h/0"), BackendKind::Memory), BackendKind::Redis);
/// assert_eq!(choose_backend(None, Some("memory://tests"), BackendKind::Redis), BackendKind::Memory);
/// assert_eq!(choose_backend(None, Some("redis://a:7000,redis://b:7000"), BackendKind::Memory), BackendKind::RedisCluster);
/// assert_eq!(choose_backend(None, None, BackendKind::Memory), BackendKind::Memory);
/// ```
pub fn choose_backend(
    explicit: Option<BackendKind>,
    endpoint: Option<&str>,
    fallback: BackendKind,
) -> BackendKind {
    match (explicit, endpoint) {
        (Some(backend), _) => backend,
        (None, Some(endpoint)) if endpoint.trim_start().starts_with("memory://") => {
            BackendKind::Memory
        }
        (None, Some(endpoint)) if split_endpoints(endpoint).len() > 1 => BackendKind::RedisCluster,
        (None, Some(_)) => BackendKind::Redis,
        (None, None) => fallback,
    }
}

/// Which backend stores the events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// In-process, nothing durable: the embedded default, for tests and single-process use.
    #[default]
    Memory,
    /// Redis, wire compatible with the Ruby gem.
    Redis,
    /// Redis Cluster: the endpoint is one or more seed nodes separated by commas, and
    /// each partition's keys live in a hash slot of their own (hivent-rs only).
    RedisCluster,
}

impl BackendKind {
    /// The name used in configuration (`memory`, `redis`, `redis-cluster`).
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Memory => "memory",
            BackendKind::Redis => "redis",
            BackendKind::RedisCluster => "redis-cluster",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "memory" => Ok(BackendKind::Memory),
            "redis" => Ok(BackendKind::Redis),
            "redis-cluster" => Ok(BackendKind::RedisCluster),
            _ => Err(Error::InvalidConfig {
                option: "backend",
                value: s.to_owned(),
                reason: "the known backends are `memory`, `redis` and `redis-cluster`".into(),
            }),
        }
    }
}

/// A validated configuration. Build one with [`Config::builder`].
///
/// ```
/// use hivent_core::{BackendKind, Config};
/// let config = Config::builder().client_id("accounts").partition_count(4).build()?;
/// assert_eq!(config.backend(), BackendKind::Memory);
/// assert_eq!(config.partition_count(), 4);
/// assert!(Config::builder().client_id("").build().is_err());
/// # Ok::<(), hivent_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Config {
    backend: BackendKind,
    endpoint: String,
    partition_count: u32,
    client_id: String,
    heartbeat_interval: Option<Duration>,
    member_ttl: Option<Duration>,
    max_event_bytes: usize,
    retry_policy: RetryPolicy,
    /// The [`TUNING`] options that were set, parsed.
    tuning: BTreeMap<&'static str, u64>,
    metrics_addr: Option<SocketAddr>,
    life_cycle_event_handler: Arc<dyn LifeCycleEventHandler>,
}

impl Config {
    /// Starts a builder with nothing set.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// The backend.
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// The endpoint (a Redis URL), possibly with credentials: never log it, log [`Config::endpoint_redacted`].
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The endpoint with any password replaced by `***`, for logs and errors.
    pub fn endpoint_redacted(&self) -> String {
        redact_endpoint(&self.endpoint)
    }

    /// How many partitions this service's copy of each event stream has.
    pub fn partition_count(&self) -> u32 {
        self.partition_count
    }

    /// The name of this service: the producer of its events and the consumer group of its workers.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// How often consumers heartbeat, when configured; `None` leaves the backend's
    /// default (1 s on Redis, 200 ms in memory).
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        self.heartbeat_interval
    }

    /// How long a consumer's membership lives without a heartbeat, when configured;
    /// `None` leaves the backend's default (5 s on Redis, 2 s in memory). A consumer
    /// handles no further event once four fifths of it passed without a successful
    /// heartbeat.
    pub fn member_ttl(&self) -> Option<Duration> {
        self.member_ttl
    }

    /// The largest event (its JSON as stored) an emit sends; a larger one is refused
    /// before anything is sent ([`crate::Error::EventTooLarge`]).
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// How failed events are retried, unless their receiver has a policy of its own.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry_policy
    }

    fn tuned(&self, key: &str) -> Option<u64> {
        self.tuning.get(key).copied()
    }

    fn tuned_millis(&self, key: &str) -> Option<Duration> {
        self.tuned(key).map(Duration::from_millis)
    }

    /// How many consumers a worker process runs, when configured (the worker's
    /// default is 1).
    pub fn concurrency(&self) -> Option<usize> {
        self.tuned("concurrency")
            .and_then(|n| usize::try_from(n).ok())
    }

    /// The consumer options: [`ConsumerOptions::default`] with whatever was configured
    /// (`batch_size`, `idle_wait_ms`, `max_fetch_bytes`, `ack_interval_ms`).
    ///
    /// ```
    /// use hivent_core::Config;
    /// let config = Config::builder().client_id("c").env_from([("HIVENT_BATCH_SIZE", "20")]).build()?;
    /// assert_eq!(config.consumer_options().batch_size, 20);
    /// # Ok::<(), hivent_core::Error>(())
    /// ```
    pub fn consumer_options(&self) -> ConsumerOptions {
        let mut options = ConsumerOptions::default();
        if let Some(n) = self.tuned("batch_size") {
            options = options.batch_size(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if let Some(wait) = self.tuned_millis("idle_wait_ms") {
            options = options.idle_wait(wait);
        }
        if let Some(n) = self.tuned("max_fetch_bytes") {
            options = options.max_fetch_bytes(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if let Some(interval) = self.tuned_millis("ack_interval_ms") {
            options = options.ack_interval(interval);
        }
        options
    }

    /// How long connecting may take, when configured (Redis).
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.tuned_millis("connect_timeout_ms")
    }

    /// How long to wait for any reply, when configured (Redis).
    pub fn response_timeout(&self) -> Option<Duration> {
        self.tuned_millis("response_timeout_ms")
    }

    /// How many times an emit is tried in all, when configured (Redis).
    pub fn emit_tries(&self) -> Option<u32> {
        self.tuned("emit_tries").and_then(|n| u32::try_from(n).ok())
    }

    /// The first pause between emit tries, when configured (Redis).
    pub fn emit_backoff(&self) -> Option<Duration> {
        self.tuned_millis("emit_backoff_ms")
    }

    /// How long an emit's marker keeps a retry of it from storing twice, when
    /// configured (Redis).
    pub fn emit_marker_ttl(&self) -> Option<Duration> {
        self.tuned_millis("emit_marker_ttl_ms")
    }

    /// How many idle connections a producer keeps, when configured (Redis).
    pub fn pool_size(&self) -> Option<usize> {
        self.tuned("pool_size")
            .and_then(|n| usize::try_from(n).ok())
    }

    /// How long a producer trusts the routes it read, when configured (Redis).
    pub fn route_cache_ttl(&self) -> Option<Duration> {
        self.tuned_millis("route_cache_ttl_ms")
    }

    /// How many replicas must acknowledge each emit and ack, when configured (Redis
    /// Cluster).
    pub fn replica_acks(&self) -> Option<u32> {
        self.tuned("replica_acks")
            .and_then(|n| u32::try_from(n).ok())
    }

    /// How long an emit or ack waits for its replica acknowledgements, when configured.
    pub fn replica_ack_timeout(&self) -> Option<Duration> {
        self.tuned_millis("replica_ack_timeout_ms")
    }

    /// Where a worker process serves its Prometheus metrics (`/metrics`), when
    /// configured; a bare port means 127.0.0.1.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The life-cycle handler.
    pub fn life_cycle_event_handler(&self) -> &Arc<dyn LifeCycleEventHandler> {
        &self.life_cycle_event_handler
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("backend", &self.backend)
            .field("endpoint", &self.endpoint_redacted())
            .field("partition_count", &self.partition_count)
            .field("client_id", &self.client_id)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("member_ttl", &self.member_ttl)
            .field("retry_policy", &self.retry_policy)
            .field("tuning", &self.tuning)
            .finish_non_exhaustive()
    }
}

/// The URLs of a list of seed nodes: split at each comma that starts another URL
/// (`,redis://`, `,rediss://`), so a comma inside a password does not split it.
///
/// ```
/// use hivent_core::split_endpoints;
/// assert_eq!(split_endpoints("redis://h:1, redis://:p,w@h:2"), ["redis://h:1", "redis://:p,w@h:2"]);
/// assert_eq!(split_endpoints("redis://h:1/0"), ["redis://h:1/0"]);
/// ```
pub fn split_endpoints(endpoint: &str) -> Vec<&str> {
    let mut urls = Vec::new();
    let mut start = 0;
    for (comma, _) in endpoint.match_indices(',') {
        let next = endpoint[comma + 1..].trim_start();
        if comma >= start && (next.starts_with("redis://") || next.starts_with("rediss://")) {
            urls.push(endpoint[start..comma].trim());
            start = comma + 1;
        }
    }
    urls.push(endpoint[start..].trim());
    urls.retain(|url| !url.is_empty());
    urls
}

/// Replaces the password (or a lone user token) of a URL with `***`.
///
/// Everything between the scheme and the *last* `@` is taken for credentials, whatever
/// characters the password holds: an unencoded `#`, `?`, `/` or `@` in a password makes
/// a URL parser see another authority, so no parsing decides what is shown. At worst a
/// query holding an `@` is hidden too. Only the user name before the first `:` stays.
///
/// ```
/// use hivent_core::redact_endpoint;
/// assert_eq!(redact_endpoint("redis://app:s3cret@127.0.0.1:6379/0"), "redis://app:***@127.0.0.1:6379/0");
/// assert_eq!(redact_endpoint("redis://app:p#w?d/x@h:1/0"), "redis://app:***@h:1/0");
/// assert_eq!(redact_endpoint("redis://:p@ss@h/0"), "redis://:***@h/0");
/// assert_eq!(redact_endpoint("redis://token@h/0"), "redis://***@h/0");
/// assert_eq!(redact_endpoint("redis://127.0.0.1/0"), "redis://127.0.0.1/0");
/// // A cluster's seeds, each on its own.
/// assert_eq!(redact_endpoint("redis://a:x,y@h:1,redis://a:z@i:2"), "redis://a:***@h:1,redis://a:***@i:2");
/// ```
pub fn redact_endpoint(endpoint: &str) -> String {
    let urls = split_endpoints(endpoint);
    if urls.len() > 1 {
        return urls
            .into_iter()
            .map(redact_endpoint)
            .collect::<Vec<_>>()
            .join(",");
    }
    let scheme_end = endpoint.find("://").map(|i| i + 3).unwrap_or(0);
    let rest = &endpoint[scheme_end..];
    let Some(at) = rest.rfind('@') else {
        return endpoint.to_owned();
    };
    let redacted = match rest[..at].split_once(':') {
        Some((user, _)) if !user.contains(['/', '?', '#']) => format!("{user}:***"),
        _ => "***".to_owned(),
    };
    format!("{}{}{}", &endpoint[..scheme_end], redacted, &rest[at..])
}

/// Raw settings from one source, before validation.
#[derive(Clone, Debug, Default)]
struct Settings {
    backend: Option<String>,
    endpoint: Option<String>,
    partition_count: Option<String>,
    client_id: Option<String>,
    heartbeat_interval_ms: Option<String>,
    member_ttl_ms: Option<String>,
    max_event_bytes: Option<String>,
    retry_max_attempts: Option<String>,
    retry_initial_delay_ms: Option<String>,
    retry_max_delay_ms: Option<String>,
    metrics_addr: Option<String>,
    /// The [`TUNING`] options, by key.
    tuning: BTreeMap<&'static str, String>,
}

/// A whole-number option read the same way from code, environment and file: how
/// workers consume, and how the Redis backend connects and retries.
struct Tuning {
    key: &'static str,
    env: &'static str,
    min: u64,
    max: u64,
}

/// The options beyond the service's identity and retry policy. Durations are whole
/// milliseconds (`_ms`).
const TUNING: &[Tuning] = &[
    Tuning {
        key: "concurrency",
        env: "HIVENT_CONCURRENCY",
        min: 1,
        max: 1024,
    },
    Tuning {
        key: "batch_size",
        env: "HIVENT_BATCH_SIZE",
        min: 1,
        max: 100_000,
    },
    Tuning {
        key: "idle_wait_ms",
        env: "HIVENT_IDLE_WAIT_MS",
        min: 1,
        max: 3_600_000,
    },
    Tuning {
        key: "max_fetch_bytes",
        env: "HIVENT_MAX_FETCH_BYTES",
        min: 1,
        max: 1 << 30,
    },
    Tuning {
        key: "ack_interval_ms",
        env: "HIVENT_ACK_INTERVAL_MS",
        min: 1,
        max: 3_600_000,
    },
    Tuning {
        key: "connect_timeout_ms",
        env: "HIVENT_CONNECT_TIMEOUT_MS",
        min: 1,
        max: 3_600_000,
    },
    Tuning {
        key: "response_timeout_ms",
        env: "HIVENT_RESPONSE_TIMEOUT_MS",
        min: 1,
        max: 3_600_000,
    },
    Tuning {
        key: "emit_tries",
        env: "HIVENT_EMIT_TRIES",
        min: 1,
        max: 100,
    },
    Tuning {
        key: "emit_backoff_ms",
        env: "HIVENT_EMIT_BACKOFF_MS",
        min: 0,
        max: 3_600_000,
    },
    Tuning {
        key: "emit_marker_ttl_ms",
        env: "HIVENT_EMIT_MARKER_TTL_MS",
        min: 1,
        max: 86_400_000,
    },
    Tuning {
        key: "pool_size",
        env: "HIVENT_POOL_SIZE",
        min: 0,
        max: 1024,
    },
    Tuning {
        key: "route_cache_ttl_ms",
        env: "HIVENT_ROUTE_CACHE_TTL_MS",
        min: 0,
        max: 3_600_000,
    },
    Tuning {
        key: "replica_acks",
        env: "HIVENT_REPLICA_ACKS",
        min: 0,
        max: 64,
    },
    Tuning {
        key: "replica_ack_timeout_ms",
        env: "HIVENT_REPLICA_ACK_TIMEOUT_MS",
        min: 1,
        max: 3_600_000,
    },
];

/// The options of a configuration file, as they are spelled there.
const FILE_OPTIONS: &str = "backend, endpoint, partition_count, client_id, heartbeat_interval_ms, member_ttl_ms, max_event_bytes, retry_max_attempts, retry_initial_delay_ms, retry_max_delay_ms, concurrency, batch_size, idle_wait_ms, max_fetch_bytes, ack_interval_ms, connect_timeout_ms, response_timeout_ms, emit_tries, emit_backoff_ms, emit_marker_ttl_ms, pool_size, route_cache_ttl_ms, replica_acks, replica_ack_timeout_ms, metrics_addr";

impl Settings {
    fn or(self, lower: Settings) -> Settings {
        Settings {
            backend: self.backend.or(lower.backend),
            endpoint: self.endpoint.or(lower.endpoint),
            partition_count: self.partition_count.or(lower.partition_count),
            client_id: self.client_id.or(lower.client_id),
            heartbeat_interval_ms: self.heartbeat_interval_ms.or(lower.heartbeat_interval_ms),
            member_ttl_ms: self.member_ttl_ms.or(lower.member_ttl_ms),
            max_event_bytes: self.max_event_bytes.or(lower.max_event_bytes),
            retry_max_attempts: self.retry_max_attempts.or(lower.retry_max_attempts),
            retry_initial_delay_ms: self.retry_initial_delay_ms.or(lower.retry_initial_delay_ms),
            retry_max_delay_ms: self.retry_max_delay_ms.or(lower.retry_max_delay_ms),
            metrics_addr: self.metrics_addr.or(lower.metrics_addr),
            tuning: {
                let mut tuning = lower.tuning;
                tuning.extend(self.tuning);
                tuning
            },
        }
    }

    fn from_env(vars: &HashMap<String, String>) -> Settings {
        let get = |name: &str| vars.get(name).filter(|v| !v.is_empty()).cloned();
        Settings {
            backend: get("HIVENT_BACKEND"),
            // The Ruby gem's deployments name their Redis in REDIS_URL.
            endpoint: get("HIVENT_ENDPOINT").or_else(|| get("REDIS_URL")),
            partition_count: get("HIVENT_PARTITION_COUNT"),
            client_id: get("HIVENT_CLIENT_ID"),
            heartbeat_interval_ms: get("HIVENT_HEARTBEAT_INTERVAL_MS"),
            member_ttl_ms: get("HIVENT_MEMBER_TTL_MS"),
            max_event_bytes: get("HIVENT_MAX_EVENT_BYTES"),
            retry_max_attempts: get("HIVENT_RETRY_MAX_ATTEMPTS"),
            retry_initial_delay_ms: get("HIVENT_RETRY_INITIAL_DELAY_MS"),
            retry_max_delay_ms: get("HIVENT_RETRY_MAX_DELAY_MS"),
            metrics_addr: get("HIVENT_METRICS_ADDR"),
            tuning: TUNING
                .iter()
                .filter_map(|t| get(t.env).map(|value| (t.key, value)))
                .collect(),
        }
    }

    fn from_toml(path: &Path) -> Result<Settings> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigFileUnreadable {
            path: path.to_owned(),
            source,
        })?;
        Settings::parse_toml(&text).map_err(|reason| Error::ConfigFileInvalid {
            path: path.to_owned(),
            reason,
        })
    }

    fn parse_toml(text: &str) -> std::result::Result<Settings, String> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            // One line: the message and its line, without the quoted source the error's
            // Display adds.
            let message: Vec<&str> = e.message().lines().map(str::trim).collect();
            let line = e
                .span()
                .and_then(|span| text.get(..span.start))
                .map(|before| before.matches('\n').count() + 1);
            match line {
                Some(line) => format!("line {line}: {}", message.join(" ")),
                None => message.join(" "),
            }
        })?;
        let mut settings = Settings::default();
        for (key, value) in table {
            let text = match &value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                other => {
                    return Err(format!(
                        "option `{key}` must be a string or an integer, not {other}"
                    ))
                }
            };
            match key.as_str() {
                "backend" => settings.backend = Some(text),
                "endpoint" => settings.endpoint = Some(text),
                "partition_count" => settings.partition_count = Some(text),
                "client_id" => settings.client_id = Some(text),
                "heartbeat_interval_ms" => settings.heartbeat_interval_ms = Some(text),
                "member_ttl_ms" => settings.member_ttl_ms = Some(text),
                "max_event_bytes" => settings.max_event_bytes = Some(text),
                "retry_max_attempts" => settings.retry_max_attempts = Some(text),
                "retry_initial_delay_ms" => settings.retry_initial_delay_ms = Some(text),
                "retry_max_delay_ms" => settings.retry_max_delay_ms = Some(text),
                "metrics_addr" => settings.metrics_addr = Some(text),
                other => match TUNING.iter().find(|t| t.key == other) {
                    Some(tuning) => {
                        settings.tuning.insert(tuning.key, text);
                    }
                    None => return Err(format!("unknown option `{key}` (known: {FILE_OPTIONS})")),
                },
            }
        }
        Ok(settings)
    }
}

/// Builds a [`Config`] from code, environment variables and a TOML file.
///
/// Precedence, highest first: values set in code, then the environment
/// (`HIVENT_BACKEND`, `HIVENT_ENDPOINT` or else `REDIS_URL`, `HIVENT_PARTITION_COUNT`,
/// `HIVENT_CLIENT_ID`, …, when [`ConfigBuilder::env`] was called), then the file (when
/// [`ConfigBuilder::file`] was called), then the defaults: the backend [`choose_backend`]
/// picks (an endpoint means its backend; with none, memory), the endpoint
/// [`DEFAULT_REDIS_ENDPOINT`] for Redis, partition count 1. `client_id` has no default.
///
/// ```
/// use hivent_core::Config;
/// let dir = tempfile::tempdir().unwrap();
/// let file = dir.path().join("hivent.toml");
/// std::fs::write(&file, "client_id = \"from-file\"\npartition_count = 8\n").unwrap();
/// let config = Config::builder().file(&file).client_id("from-code").build()?;
/// assert_eq!(config.client_id(), "from-code");
/// assert_eq!(config.partition_count(), 8);
/// # Ok::<(), hivent_core::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct ConfigBuilder {
    code: Settings,
    env: Option<HashMap<String, String>>,
    file: Option<PathBuf>,
    handler: Option<Arc<dyn LifeCycleEventHandler>>,
    fallback_backend: Option<BackendKind>,
}

impl ConfigBuilder {
    /// Sets the backend.
    pub fn backend(mut self, backend: BackendKind) -> Self {
        self.code.backend = Some(backend.as_str().to_owned());
        self
    }

    /// Sets the endpoint (a Redis URL such as `redis://user:pass@127.0.0.1:6379/0`).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.code.endpoint = Some(endpoint.into());
        self
    }

    /// Sets the partition count (at least 1).
    pub fn partition_count(mut self, partition_count: u32) -> Self {
        self.code.partition_count = Some(partition_count.to_string());
        self
    }

    /// Sets the client id: this service's name.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.code.client_id = Some(client_id.into());
        self
    }

    /// Sets how often consumers heartbeat (whole milliseconds, at least 1).
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.code.heartbeat_interval_ms = Some(interval.as_millis().to_string());
        self
    }

    /// Sets how long a consumer's membership lives without a heartbeat (whole
    /// milliseconds); it must exceed the heartbeat interval.
    pub fn member_ttl(mut self, ttl: Duration) -> Self {
        self.code.member_ttl_ms = Some(ttl.as_millis().to_string());
        self
    }

    /// Sets the largest event (its stored JSON, in bytes) an emit sends.
    pub fn max_event_bytes(mut self, bytes: usize) -> Self {
        self.code.max_event_bytes = Some(bytes.to_string());
        self
    }

    /// Sets how failed events are retried (see [`RetryPolicy`]; the default retries 4
    /// times within about 3 s).
    pub fn retry_policy(self, policy: RetryPolicy) -> Self {
        self.retry_max_attempts(policy.max_attempts.max(1))
            .retry_initial_delay(policy.initial_delay)
            .retry_max_delay(policy.max_delay)
    }

    /// Sets how many times a failed event is tried in all (1: no retries).
    pub fn retry_max_attempts(mut self, attempts: u32) -> Self {
        self.code.retry_max_attempts = Some(attempts.to_string());
        self
    }

    /// Sets the wait after the first failure (whole milliseconds).
    pub fn retry_initial_delay(mut self, delay: Duration) -> Self {
        self.code.retry_initial_delay_ms = Some(delay.as_millis().to_string());
        self
    }

    /// Sets the longest wait between attempts (whole milliseconds).
    pub fn retry_max_delay(mut self, delay: Duration) -> Self {
        self.code.retry_max_delay_ms = Some(delay.as_millis().to_string());
        self
    }

    fn tune(mut self, key: &'static str, value: impl ToString) -> Self {
        self.code.tuning.insert(key, value.to_string());
        self
    }

    /// Sets how many consumers a worker process runs (`Hivent::run`'s count in the
    /// worker; at least 1).
    pub fn concurrency(self, consumers: usize) -> Self {
        self.tune("concurrency", consumers)
    }

    /// Sets every consumer option at once (see [`ConsumerOptions`]).
    pub fn consumer_options(self, options: &ConsumerOptions) -> Self {
        self.batch_size(options.batch_size)
            .idle_wait(options.idle_wait)
            .max_fetch_bytes(options.max_fetch_bytes)
            .ack_interval(options.ack_interval)
    }

    /// Sets the most events a consumer reads from one partition per fetch.
    pub fn batch_size(self, events: usize) -> Self {
        self.tune("batch_size", events)
    }

    /// Sets how long an idle consumer waits for an emit (whole milliseconds).
    pub fn idle_wait(self, wait: Duration) -> Self {
        self.tune("idle_wait_ms", wait.as_millis())
    }

    /// Sets about how many bytes of events one fetch reads in all.
    pub fn max_fetch_bytes(self, bytes: usize) -> Self {
        self.tune("max_fetch_bytes", bytes)
    }

    /// Sets how long handled events of a slow batch may stay unacknowledged (whole
    /// milliseconds).
    pub fn ack_interval(self, interval: Duration) -> Self {
        self.tune("ack_interval_ms", interval.as_millis())
    }

    /// Sets how long connecting to the backend may take (Redis; whole milliseconds).
    pub fn connect_timeout(self, timeout: Duration) -> Self {
        self.tune("connect_timeout_ms", timeout.as_millis())
    }

    /// Sets how long to wait for any reply (Redis; whole milliseconds).
    pub fn response_timeout(self, timeout: Duration) -> Self {
        self.tune("response_timeout_ms", timeout.as_millis())
    }

    /// Sets how many times an emit is tried in all when the backend fails transiently
    /// (Redis).
    pub fn emit_tries(self, tries: u32) -> Self {
        self.tune("emit_tries", tries)
    }

    /// Sets the first pause between emit tries, doubling after each (Redis; whole
    /// milliseconds).
    pub fn emit_backoff(self, backoff: Duration) -> Self {
        self.tune("emit_backoff_ms", backoff.as_millis())
    }

    /// Sets how long an emit's marker lives: a retry of an emit whose reply was lost
    /// stores nothing twice within it (Redis; whole milliseconds).
    pub fn emit_marker_ttl(self, ttl: Duration) -> Self {
        self.tune("emit_marker_ttl_ms", ttl.as_millis())
    }

    /// Sets how many idle connections a producer keeps for emits (Redis; 0: a new
    /// connection per emit).
    pub fn pool_size(self, connections: usize) -> Self {
        self.tune("pool_size", connections)
    }

    /// Sets how long a producer trusts the routes it read (Redis; whole milliseconds;
    /// 0: every emit runs the publish script).
    pub fn route_cache_ttl(self, ttl: Duration) -> Self {
        self.tune("route_cache_ttl_ms", ttl.as_millis())
    }

    /// Sets how many replicas must acknowledge each emit and ack before it counts as
    /// done (Redis Cluster; `WAIT`; 0, the default, waits for none).
    pub fn replica_acks(self, replicas: u32) -> Self {
        self.tune("replica_acks", replicas)
    }

    /// Sets how long an emit or ack waits for its replica acknowledgements (Redis
    /// Cluster; whole milliseconds).
    pub fn replica_ack_timeout(self, timeout: Duration) -> Self {
        self.tune("replica_ack_timeout_ms", timeout.as_millis())
    }

    /// Sets where a worker process serves its Prometheus metrics: `host:port`, or a
    /// port on 127.0.0.1 (`"9464"`). Checked at [`ConfigBuilder::build`].
    pub fn metrics_addr(mut self, addr: impl Into<String>) -> Self {
        self.code.metrics_addr = Some(addr.into());
        self
    }

    /// Sets the life-cycle handler.
    pub fn life_cycle_event_handler(mut self, handler: Arc<dyn LifeCycleEventHandler>) -> Self {
        self.handler = Some(handler);
        self
    }

    /// The backend used when no backend and no endpoint is configured anywhere (see
    /// [`choose_backend`]); the library's default is the memory backend.
    pub fn fallback_backend(mut self, backend: BackendKind) -> Self {
        self.fallback_backend = Some(backend);
        self
    }

    /// Reads `HIVENT_*` variables (and `REDIS_URL`, the endpoint when
    /// `HIVENT_ENDPOINT` is not set) from the process environment at
    /// [`ConfigBuilder::build`].
    pub fn env(self) -> Self {
        self.env_from(std::env::vars())
    }

    /// Reads `HIVENT_*` variables from the given pairs instead of the process environment.
    pub fn env_from<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Reads settings from a TOML file at [`ConfigBuilder::build`]. Its keys are the
    /// option names: `backend`, `endpoint`, `partition_count`, `client_id`,
    /// `heartbeat_interval_ms`, `member_ttl_ms`, `max_event_bytes`,
    /// `retry_max_attempts`, `retry_initial_delay_ms`, `retry_max_delay_ms`,
    /// `concurrency`, `batch_size`, `idle_wait_ms`, `max_fetch_bytes`,
    /// `ack_interval_ms`, `connect_timeout_ms`, `response_timeout_ms`, `emit_tries`,
    /// `emit_backoff_ms`, `emit_marker_ttl_ms`, `pool_size`, `route_cache_ttl_ms`,
    /// `replica_acks`, `replica_ack_timeout_ms`, `metrics_addr` (any other key is refused, naming it); the
    /// environment's are the same upper-cased with `HIVENT_` in front.
    pub fn file(mut self, path: impl AsRef<Path>) -> Self {
        self.file = Some(path.as_ref().to_owned());
        self
    }

    /// Merges the sources and validates the result.
    pub fn build(self) -> Result<Config> {
        let file = match &self.file {
            Some(path) => Settings::from_toml(path)?,
            None => Settings::default(),
        };
        let env = self
            .env
            .as_ref()
            .map(Settings::from_env)
            .unwrap_or_default();
        let merged = self.code.or(env).or(file);
        let retry_policy = retry_policy(&merged)?;
        let mut tuning = BTreeMap::new();
        for option in TUNING {
            let Some(text) = merged.tuning.get(option.key) else {
                continue;
            };
            match text.trim().parse::<u64>() {
                Ok(n) if (option.min..=option.max).contains(&n) => {
                    tuning.insert(option.key, n);
                }
                _ => {
                    return Err(Error::InvalidConfig {
                        option: option.key,
                        value: text.clone(),
                        reason: format!(
                            "it must be a whole number from {} to {}",
                            option.min, option.max
                        ),
                    })
                }
            }
        }

        let explicit = match &merged.backend {
            Some(b) => Some(b.parse::<BackendKind>()?),
            None => None,
        };
        let backend = choose_backend(
            explicit,
            merged.endpoint.as_deref(),
            self.fallback_backend.unwrap_or_default(),
        );
        let partition_count = match &merged.partition_count {
            None => 1,
            Some(text) => match text.trim().parse::<u32>() {
                Ok(n) if (1..=MAX_PARTITION_COUNT).contains(&n) => n,
                _ => {
                    return Err(Error::InvalidConfig {
                        option: "partition_count",
                        value: text.clone(),
                        reason: format!(
                            "it must be a whole number from 1 to {MAX_PARTITION_COUNT}"
                        ),
                    })
                }
            },
        };
        let client_id = merged.client_id.unwrap_or_default();
        if client_id.trim().is_empty() {
            return Err(Error::InvalidConfig {
                option: "client_id",
                value: client_id,
                reason: "every service needs a non-empty name (set it in code, HIVENT_CLIENT_ID or the config file)".into(),
            });
        }
        if client_id.contains(char::is_whitespace) || client_id.contains('*') {
            return Err(Error::InvalidConfig {
                option: "client_id",
                value: client_id,
                reason: "it names Redis keys, so it may not contain whitespace or `*`".into(),
            });
        }
        let endpoint = merged.endpoint.unwrap_or_else(|| match backend {
            BackendKind::Redis | BackendKind::RedisCluster => DEFAULT_REDIS_ENDPOINT.to_owned(),
            BackendKind::Memory => DEFAULT_MEMORY_ENDPOINT.to_owned(),
        });
        if backend != BackendKind::Memory
            && split_endpoints(&endpoint)
                .iter()
                .any(|url| !url.contains("://"))
        {
            return Err(Error::InvalidConfig {
                option: "endpoint",
                value: redact_endpoint(&endpoint),
                reason: "it must be a URL such as redis://127.0.0.1:6379/0".into(),
            });
        }
        let heartbeat_interval =
            millis_option("heartbeat_interval_ms", &merged.heartbeat_interval_ms)?;
        let member_ttl = millis_option("member_ttl_ms", &merged.member_ttl_ms)?;
        if let (Some(interval), Some(ttl)) = (heartbeat_interval, member_ttl) {
            if ttl <= interval {
                return Err(Error::InvalidConfig {
                    option: "member_ttl_ms",
                    value: ttl.as_millis().to_string(),
                    reason: format!(
                        "it must exceed the heartbeat interval ({} ms), or members expire between heartbeats",
                        interval.as_millis()
                    ),
                });
            }
        }
        let max_event_bytes = match &merged.max_event_bytes {
            None => DEFAULT_MAX_EVENT_BYTES,
            Some(text) => match text.trim().parse::<usize>() {
                // Redis refuses bulk strings over 512 MB.
                Ok(n) if (1..=512 << 20).contains(&n) => n,
                _ => {
                    return Err(Error::InvalidConfig {
                        option: "max_event_bytes",
                        value: text.clone(),
                        reason: "it must be a whole number of bytes from 1 to 536870912".into(),
                    })
                }
            },
        };
        let metrics_addr = match &merged.metrics_addr {
            None => None,
            Some(text) => Some(parse_metrics_addr(text)?),
        };
        Ok(Config {
            backend,
            endpoint,
            partition_count,
            client_id,
            heartbeat_interval,
            member_ttl,
            max_event_bytes,
            retry_policy,
            tuning,
            metrics_addr,
            life_cycle_event_handler: self
                .handler
                .unwrap_or_else(|| Arc::new(NoopLifeCycleEventHandler)),
        })
    }
}

/// `host:port`, or a bare port on the loopback interface: metrics stay on the machine
/// unless an address says otherwise.
fn parse_metrics_addr(text: &str) -> Result<SocketAddr> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)));
    }
    text.parse::<SocketAddr>()
        .map_err(|_| Error::InvalidConfig {
            option: "metrics_addr",
            value: text.to_owned(),
            reason: "it must be a port (on 127.0.0.1) or an address such as 127.0.0.1:9464".into(),
        })
}

/// The retry policy the settings give, the default's values where they give none.
fn retry_policy(settings: &Settings) -> Result<RetryPolicy> {
    let max_attempts = match &settings.retry_max_attempts {
        None => None,
        Some(text) => match text.trim().parse::<u32>() {
            Ok(n) if (1..=10_000).contains(&n) => Some(n),
            _ => {
                return Err(Error::InvalidConfig {
                    option: "retry_max_attempts",
                    value: text.clone(),
                    reason: "it must be a whole number from 1 (no retries) to 10000".into(),
                })
            }
        },
    };
    let delay = |option: &'static str, text: &Option<String>| match text {
        None => Ok(None),
        Some(text) => match text.trim().parse::<u64>() {
            Ok(ms) if ms <= 86_400_000 => Ok(Some(Duration::from_millis(ms))),
            _ => Err(Error::InvalidConfig {
                option,
                value: text.clone(),
                reason: "it must be a whole number of milliseconds from 0 to 86400000".into(),
            }),
        },
    };
    let policy = RetryPolicy::from_parts(
        max_attempts,
        delay("retry_initial_delay_ms", &settings.retry_initial_delay_ms)?,
        delay("retry_max_delay_ms", &settings.retry_max_delay_ms)?,
    );
    if policy.max_delay < policy.initial_delay {
        return Err(Error::InvalidConfig {
            option: "retry_max_delay_ms",
            value: policy.max_delay.as_millis().to_string(),
            reason: format!(
                "it must be at least the initial delay ({} ms)",
                policy.initial_delay.as_millis()
            ),
        });
    }
    Ok(policy)
}

/// A duration option given in whole milliseconds, from 1 ms to one day.
fn millis_option(option: &'static str, text: &Option<String>) -> Result<Option<Duration>> {
    let Some(text) = text else {
        return Ok(None);
    };
    match text.trim().parse::<u64>() {
        Ok(ms) if (1..=86_400_000).contains(&ms) => Ok(Some(Duration::from_millis(ms))),
        _ => Err(Error::InvalidConfig {
            option,
            value: text.clone(),
            reason: "it must be a whole number of milliseconds from 1 to 86400000".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config of service `app` built from a TOML file holding `text`.
    fn from_file(text: &str) -> Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hivent.toml");
        std::fs::write(&file, text).unwrap();
        Config::builder().client_id("app").file(&file).build()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Defaults: memory backend, one partition, the local Redis URL.
    #[test]
    fn defaults() {
        let c = Config::builder().client_id("app").build().unwrap();
        assert_eq!(c.backend(), BackendKind::Memory);
        assert_eq!(c.partition_count(), 1);
        assert_eq!(c.endpoint(), DEFAULT_MEMORY_ENDPOINT);
        let tool = Config::builder()
            .client_id("app")
            .fallback_backend(BackendKind::Redis)
            .build()
            .unwrap();
        assert_eq!(tool.backend(), BackendKind::Redis);
        assert_eq!(tool.endpoint(), DEFAULT_REDIS_ENDPOINT);
    }

    /// An endpoint from any source selects Redis unless a backend is given; REDIS_URL
    /// counts when HIVENT_ENDPOINT is not set.
    #[test]
    fn an_endpoint_means_redis() {
        let from_env = |pairs: &[(&str, &str)]| {
            Config::builder()
                .client_id("app")
                .env_from(env(pairs))
                .build()
                .unwrap()
        };
        let c = from_env(&[("HIVENT_ENDPOINT", "redis://10.0.0.1:6379/0")]);
        assert_eq!(
            (c.backend(), c.endpoint()),
            (BackendKind::Redis, "redis://10.0.0.1:6379/0")
        );
        let c = from_env(&[("REDIS_URL", "redis://gem:6379/1")]);
        assert_eq!(
            (c.backend(), c.endpoint()),
            (BackendKind::Redis, "redis://gem:6379/1")
        );
        let c = from_env(&[
            ("REDIS_URL", "redis://gem/1"),
            ("HIVENT_ENDPOINT", "redis://mine/2"),
        ]);
        assert_eq!(c.endpoint(), "redis://mine/2");
        let c = from_env(&[("REDIS_URL", "redis://gem/1"), ("HIVENT_BACKEND", "memory")]);
        assert_eq!(c.backend(), BackendKind::Memory);
        let c = from_file("endpoint = \"redis://file/0\"\n").unwrap();
        assert_eq!(c.backend(), BackendKind::Redis);
        let c = Config::builder()
            .client_id("app")
            .endpoint("memory://mine")
            .build()
            .unwrap();
        assert_eq!(c.backend(), BackendKind::Memory);
    }

    /// A zero partition count is rejected with the option and value named.
    #[test]
    fn rejects_zero_partitions() {
        let err = Config::builder()
            .client_id("app")
            .partition_count(0)
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: option `partition_count` cannot be \"0\": it must be a whole number from 1 to 1024"
        );
    }

    /// Negative, oversized and non-numeric partition counts are rejected, in every source.
    #[test]
    fn rejects_partition_counts_out_of_range() {
        for bad in ["-1", "1025", "4294967295", "four", ""] {
            let err = Config::builder()
                .client_id("app")
                .env_from(env(&[("HIVENT_PARTITION_COUNT", bad)]))
                .build();
            // An empty variable counts as unset.
            if bad.is_empty() {
                assert_eq!(err.unwrap().partition_count(), 1);
                continue;
            }
            match err {
                Err(Error::InvalidConfig { option, value, .. }) => {
                    assert_eq!((option, value.as_str()), ("partition_count", bad))
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        let c = Config::builder()
            .client_id("app")
            .partition_count(1024)
            .build()
            .unwrap();
        assert_eq!(c.partition_count(), MAX_PARTITION_COUNT);
    }

    /// An empty or missing client id is rejected.
    #[test]
    fn rejects_empty_client_id() {
        for builder in [Config::builder(), Config::builder().client_id("  ")] {
            match builder.build().unwrap_err() {
                Error::InvalidConfig { option, .. } => assert_eq!(option, "client_id"),
                other => panic!("unexpected {other}"),
            }
        }
    }

    /// An unknown backend names the value and the known ones.
    #[test]
    fn rejects_unknown_backend() {
        let err = Config::builder()
            .client_id("app")
            .env_from(env(&[("HIVENT_BACKEND", "kafka")]))
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: option `backend` cannot be \"kafka\": the known backends are `memory`, `redis` and `redis-cluster`"
        );
    }

    /// Redis Cluster is chosen by name (code, environment, file) or by a list of seeds;
    /// every seed must be a URL, and their passwords never show.
    #[test]
    fn redis_cluster_from_every_source() {
        let seeds = "redis://:pw1@127.0.0.1:7000, redis://:pw2@127.0.0.1:7001";
        let c = Config::builder()
            .client_id("app")
            .endpoint(seeds)
            .build()
            .unwrap();
        assert_eq!(c.backend(), BackendKind::RedisCluster);
        assert_eq!(
            c.endpoint_redacted(),
            "redis://:***@127.0.0.1:7000,redis://:***@127.0.0.1:7001"
        );
        let c = Config::builder()
            .client_id("app")
            .env_from(env(&[
                ("HIVENT_BACKEND", "redis-cluster"),
                ("HIVENT_ENDPOINT", "redis://127.0.0.1:7000"),
            ]))
            .build()
            .unwrap();
        assert_eq!(c.backend(), BackendKind::RedisCluster);
        let c = from_file("backend = \"redis-cluster\"\nendpoint = \"redis://127.0.0.1:7000\"\n")
            .unwrap();
        assert_eq!(c.backend(), BackendKind::RedisCluster);
        assert_eq!(BackendKind::RedisCluster.to_string(), "redis-cluster");
        let error = Config::builder()
            .client_id("app")
            .endpoint("redis://127.0.0.1:7000,redis://:pw@127.0.0.1")
            .backend(BackendKind::RedisCluster)
            .build()
            .map(|_| ());
        assert!(error.is_ok(), "{error:?}");
        let error = Config::builder()
            .client_id("app")
            .backend(BackendKind::RedisCluster)
            .endpoint("127.0.0.1:7000")
            .build()
            .unwrap_err();
        assert!(
            matches!(
                &error,
                Error::InvalidConfig {
                    option: "endpoint",
                    ..
                }
            ),
            "{error}"
        );
    }

    /// Environment variables fill every option; code settings win over them.
    #[test]
    fn env_settings_and_code_precedence() {
        let vars = env(&[
            ("HIVENT_BACKEND", "redis"),
            ("HIVENT_ENDPOINT", "redis://127.0.0.1:7000/3"),
            ("HIVENT_PARTITION_COUNT", "6"),
            ("HIVENT_CLIENT_ID", "env-app"),
        ]);
        let c = Config::builder().env_from(vars.clone()).build().unwrap();
        assert_eq!(c.backend(), BackendKind::Redis);
        assert_eq!(c.endpoint(), "redis://127.0.0.1:7000/3");
        assert_eq!(c.partition_count(), 6);
        assert_eq!(c.client_id(), "env-app");
        let c = Config::builder()
            .env_from(vars)
            .partition_count(2)
            .build()
            .unwrap();
        assert_eq!(c.partition_count(), 2);
        assert_eq!(c.client_id(), "env-app");
    }

    /// A bad number in the environment names the option.
    #[test]
    fn rejects_bad_env_number() {
        let err = Config::builder()
            .client_id("a")
            .env_from(env(&[("HIVENT_PARTITION_COUNT", "four")]))
            .build()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("`partition_count` cannot be \"four\""),
            "{err}"
        );
    }

    /// File settings are used, env beats file, code beats both.
    #[test]
    fn file_settings_and_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hivent.toml");
        std::fs::write(
            &path,
            "backend = \"redis\"\nendpoint = \"redis://127.0.0.1:6390/1\"\npartition_count = 3\nclient_id = \"file-app\"\n",
        )
        .unwrap();
        let c = Config::builder().file(&path).build().unwrap();
        assert_eq!(
            (
                c.backend(),
                c.endpoint(),
                c.partition_count(),
                c.client_id()
            ),
            (
                BackendKind::Redis,
                "redis://127.0.0.1:6390/1",
                3,
                "file-app"
            )
        );
        let c = Config::builder()
            .file(&path)
            .env_from(env(&[
                ("HIVENT_CLIENT_ID", "env-app"),
                ("HIVENT_PARTITION_COUNT", "5"),
            ]))
            .partition_count(9)
            .build()
            .unwrap();
        assert_eq!((c.client_id(), c.partition_count()), ("env-app", 9));
    }

    /// Unknown keys and bad TOML are errors naming the file and the problem.
    #[test]
    fn rejects_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "client_id = \"a\"\npartitions = 3\n").unwrap();
        let err = Config::builder().file(&path).build().unwrap_err();
        assert!(
            err.to_string().contains("unknown option `partitions`"),
            "{err}"
        );
        std::fs::write(&path, "client_id = [1]\n").unwrap();
        let err = Config::builder().file(&path).build().unwrap_err();
        assert!(
            err.to_string().contains("must be a string or an integer"),
            "{err}"
        );
        let err = Config::builder()
            .file(dir.path().join("missing.toml"))
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::ConfigFileUnreadable { .. }), "{err}");
    }

    /// Credentials never show in Debug output or config errors.
    #[test]
    fn hides_credentials() {
        let c = Config::builder()
            .client_id("a")
            .endpoint("redis://user:hunter2@127.0.0.1:6379/0")
            .build()
            .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(
            debug.contains("redis://user:***@127.0.0.1:6379/0"),
            "{debug}"
        );
        let err = Config::builder()
            .client_id("a")
            .backend(BackendKind::Redis)
            .endpoint("user:hunter2@host")
            .build()
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_eq!(redact_endpoint("rediss://:tok@h:1"), "rediss://:***@h:1");
        assert_eq!(redact_endpoint("redis://tok@h:1/0"), "redis://***@h:1/0");
    }

    /// Group timing comes from code, env or file, in milliseconds; the lifetime must
    /// exceed the interval, and bad values name the option.
    #[test]
    fn group_timing_options() {
        let c = from_file("heartbeat_interval_ms = 100\nmember_ttl_ms = 900\n").unwrap();
        assert_eq!(c.heartbeat_interval(), Some(Duration::from_millis(100)));
        assert_eq!(c.member_ttl(), Some(Duration::from_millis(900)));
        let c = Config::builder()
            .client_id("app")
            .env_from(env(&[("HIVENT_MEMBER_TTL_MS", "3000")]))
            .build()
            .unwrap();
        assert_eq!(c.member_ttl(), Some(Duration::from_secs(3)));
        assert_eq!(c.heartbeat_interval(), None);
        let err = Config::builder()
            .client_id("app")
            .heartbeat_interval(Duration::from_secs(2))
            .member_ttl(Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidConfig {
                    option: "member_ttl_ms",
                    ..
                }
            ),
            "{err}"
        );
        let err = Config::builder()
            .client_id("app")
            .env_from(env(&[("HIVENT_HEARTBEAT_INTERVAL_MS", "0")]))
            .build()
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidConfig {
                    option: "heartbeat_interval_ms",
                    ..
                }
            ),
            "{err}"
        );
    }

    proptest::proptest! {
        /// Any TOML text gives settings or a reason, never a panic; a file that parses
        /// builds a config or an error naming a known option.
        #[test]
        fn any_config_file_is_settings_or_a_reason(text in "\\PC{0,120}") {
            if let Err(reason) = Settings::parse_toml(&text) {
                proptest::prop_assert!(!reason.contains('\n'), "{}", reason);
            }
        }

        /// Any environment value is accepted or refused with the option it belongs to.
        #[test]
        fn any_env_value_is_accepted_or_names_its_option(
            var in proptest::sample::select(vec!["HIVENT_BACKEND", "HIVENT_ENDPOINT", "HIVENT_PARTITION_COUNT", "HIVENT_CLIENT_ID", "HIVENT_HEARTBEAT_INTERVAL_MS", "HIVENT_MEMBER_TTL_MS", "HIVENT_MAX_EVENT_BYTES"]),
            value in "\\PC{1,30}",
        ) {
            let built = Config::builder().client_id("app").env_from(env(&[(var, value.as_str())])).build();
            match built {
                Ok(_) => {}
                Err(Error::InvalidConfig { option, .. }) => {
                    let expected = match var {
                        "HIVENT_HEARTBEAT_INTERVAL_MS" => "heartbeat_interval_ms",
                        "HIVENT_MEMBER_TTL_MS" => "member_ttl_ms",
                        other => &other["HIVENT_".len()..],
                    };
                    proptest::prop_assert_eq!(option.to_ascii_uppercase(), expected.to_ascii_uppercase());
                }
                Err(other) => proptest::prop_assert!(false, "unexpected {}", other),
            }
        }
    }

    /// Every consumer and Redis option comes from code, the environment and the file,
    /// code over environment over file; a value out of range is refused by name.
    /// The metrics address: a bare port is on 127.0.0.1, an address is taken as given,
    /// from code, environment or file; anything else is refused naming the option.
    #[test]
    fn metrics_addr_from_every_source() {
        let c = Config::builder().client_id("app").build().unwrap();
        assert_eq!(c.metrics_addr(), None);
        let c = Config::builder()
            .client_id("app")
            .metrics_addr("9464")
            .build()
            .unwrap();
        assert_eq!(c.metrics_addr(), Some("127.0.0.1:9464".parse().unwrap()));
        let c = Config::builder()
            .client_id("app")
            .env_from(env(&[("HIVENT_METRICS_ADDR", "0.0.0.0:9000")]))
            .build()
            .unwrap();
        assert_eq!(c.metrics_addr(), Some("0.0.0.0:9000".parse().unwrap()));
        let c = from_file("metrics_addr = \"[::1]:9464\"\n").unwrap();
        assert_eq!(c.metrics_addr(), Some("[::1]:9464".parse().unwrap()));
        let error = Config::builder()
            .client_id("app")
            .metrics_addr("localhost")
            .build()
            .unwrap_err();
        assert!(
            matches!(&error, Error::InvalidConfig { option: "metrics_addr", value, .. } if value == "localhost"),
            "{error:?}"
        );
    }

    #[test]
    fn tuning_options_from_every_source() {
        let c = Config::builder().client_id("app").build().unwrap();
        assert_eq!(c.consumer_options(), ConsumerOptions::default());
        assert_eq!(
            (c.concurrency(), c.emit_tries(), c.pool_size()),
            (None, None, None)
        );
        let file = "concurrency = 3\nbatch_size = 20\nidle_wait_ms = 50\nmax_fetch_bytes = 1000\nack_interval_ms = 10\nconnect_timeout_ms = 300\nresponse_timeout_ms = 400\nemit_tries = 2\nemit_backoff_ms = 7\nemit_marker_ttl_ms = 9000\npool_size = 0\nroute_cache_ttl_ms = 0\nreplica_acks = 1\nreplica_ack_timeout_ms = 250\n";
        let c = from_file(file).unwrap();
        assert_eq!(c.concurrency(), Some(3));
        assert_eq!(
            c.consumer_options(),
            ConsumerOptions::default()
                .batch_size(20)
                .idle_wait(Duration::from_millis(50))
                .max_fetch_bytes(1000)
                .ack_interval(Duration::from_millis(10))
        );
        assert_eq!(c.connect_timeout(), Some(Duration::from_millis(300)));
        assert_eq!(c.response_timeout(), Some(Duration::from_millis(400)));
        assert_eq!(c.emit_tries(), Some(2));
        assert_eq!(c.pool_size(), Some(0));
        assert_eq!(c.route_cache_ttl(), Some(Duration::ZERO));
        assert_eq!(c.emit_backoff(), Some(Duration::from_millis(7)));
        assert_eq!(c.emit_marker_ttl(), Some(Duration::from_secs(9)));
        assert_eq!(c.replica_acks(), Some(1));
        assert_eq!(c.replica_ack_timeout(), Some(Duration::from_millis(250)));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hivent.toml");
        std::fs::write(&path, file).unwrap();
        let c = Config::builder()
            .client_id("app")
            .file(&path)
            .env_from(env(&[
                ("HIVENT_BATCH_SIZE", "30"),
                ("HIVENT_EMIT_TRIES", "5"),
                ("HIVENT_REPLICA_ACKS", "2"),
            ]))
            .emit_tries(6)
            .build()
            .unwrap();
        assert_eq!(c.consumer_options().batch_size, 30, "environment over file");
        assert_eq!(c.emit_tries(), Some(6), "code over environment");
        assert_eq!(c.concurrency(), Some(3), "file where nothing else says");
        assert_eq!(c.replica_acks(), Some(2), "environment over file");
        for (text, option) in [
            ("concurrency = 0", "concurrency"),
            ("batch_size = -1", "batch_size"),
            ("emit_tries = \"many\"", "emit_tries"),
            ("idle_wait_ms = 0", "idle_wait_ms"),
        ] {
            let error = from_file(text).unwrap_err();
            assert!(
                matches!(&error, Error::InvalidConfig { option: o, .. } if *o == option),
                "{text}: {error}"
            );
        }
        let error = from_file("batch_sizes = 3").unwrap_err();
        assert!(
            error.to_string().contains("unknown option `batch_sizes`"),
            "{error}"
        );
    }

    /// The retry policy comes from code, the environment or the file, in that order;
    /// each part left out keeps the default's, and bad values name their option.
    #[test]
    fn retry_policy_from_every_source() {
        let c = Config::builder().client_id("app").build().unwrap();
        assert_eq!(c.retry_policy(), RetryPolicy::default());
        let c = from_file("retry_max_attempts = 1\nretry_initial_delay_ms = 50\n").unwrap();
        assert_eq!(
            c.retry_policy(),
            RetryPolicy::default()
                .max_attempts(1)
                .initial_delay(Duration::from_millis(50))
        );
        let c = Config::builder()
            .client_id("app")
            .env_from(env(&[
                ("HIVENT_RETRY_MAX_ATTEMPTS", "9"),
                ("HIVENT_RETRY_MAX_DELAY_MS", "60000"),
            ]))
            .build()
            .unwrap();
        assert_eq!(c.retry_policy().max_attempts, 9);
        assert_eq!(c.retry_policy().max_delay, Duration::from_secs(60));
        let code = RetryPolicy::no_retries();
        let c = Config::builder()
            .client_id("app")
            .env_from(env(&[("HIVENT_RETRY_MAX_ATTEMPTS", "9")]))
            .retry_policy(code)
            .build()
            .unwrap();
        assert_eq!(c.retry_policy(), code);
        for (text, option) in [
            ("retry_max_attempts = 0", "retry_max_attempts"),
            ("retry_initial_delay_ms = -1", "retry_initial_delay_ms"),
            (
                "retry_initial_delay_ms = 500\nretry_max_delay_ms = 100",
                "retry_max_delay_ms",
            ),
        ] {
            let error = from_file(text).unwrap_err();
            assert!(
                matches!(&error, Error::InvalidConfig { option: o, .. } if *o == option),
                "{text}: {error}"
            );
        }
    }
}
