//! Command-line options shared by the worker and the standalone tool, and how they become a `Config`.

use std::path::PathBuf;

use clap::Args;
use hivent::{BackendKind, Config, ConfigBuilder, Result};

/// Where to connect and as which service; every option also comes from the environment.
#[derive(Args, Clone, Debug, Default)]
pub struct ConnectionArgs {
    /// Backend: `redis`, `redis-cluster` or `memory` [env: HIVENT_BACKEND] [default:
    /// redis, or the endpoint's: several URLs separated by commas mean redis-cluster]
    #[arg(long, value_name = "BACKEND")]
    pub backend: Option<String>,
    /// Redis URL, e.g. redis://127.0.0.1:6379/0; for a cluster, seed node URLs
    /// separated by commas [env: HIVENT_ENDPOINT, then REDIS_URL]
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// This service's name [env: HIVENT_CLIENT_ID]
    #[arg(long, value_name = "NAME")]
    pub client_id: Option<String>,
    /// Partitions of this service's event streams [env: HIVENT_PARTITION_COUNT]
    #[arg(long, value_name = "N")]
    pub partition_count: Option<u32>,
    /// A TOML file of options, keyed as in the README's table (unknown keys refused)
    #[arg(long = "config", value_name = "FILE", env = "HIVENT_CONFIG")]
    pub config_file: Option<PathBuf>,
    /// How long connecting to Redis may take, in ms [env: HIVENT_CONNECT_TIMEOUT_MS]
    /// [default: 2000]
    #[arg(long, value_name = "MS")]
    pub connect_timeout_ms: Option<u64>,
    /// How long to wait for any Redis reply, in ms [env: HIVENT_RESPONSE_TIMEOUT_MS]
    /// [default: 5000]
    #[arg(long, value_name = "MS")]
    pub response_timeout_ms: Option<u64>,
    /// How many times an emit is tried in all when Redis fails transiently [env:
    /// HIVENT_EMIT_TRIES] [default: 4]
    #[arg(long, value_name = "N")]
    pub emit_tries: Option<u32>,
    /// The first pause between emit tries, in ms, doubling after each [env:
    /// HIVENT_EMIT_BACKOFF_MS] [default: 50]
    #[arg(long, value_name = "MS")]
    pub emit_backoff_ms: Option<u64>,
    /// How long an emit's marker keeps its retries from storing twice, in ms [env:
    /// HIVENT_EMIT_MARKER_TTL_MS] [default: 60000]
    #[arg(long, value_name = "MS")]
    pub emit_marker_ttl_ms: Option<u64>,
    /// Idle Redis connections a producer keeps for emits [env: HIVENT_POOL_SIZE]
    /// [default: 4]
    #[arg(long, value_name = "N")]
    pub pool_size: Option<usize>,
    /// How long a producer trusts the routes it read, in ms; 0: every emit runs the
    /// publish script [env: HIVENT_ROUTE_CACHE_TTL_MS] [default: 1000]
    #[arg(long, value_name = "MS")]
    pub route_cache_ttl_ms: Option<u64>,
    /// Redis Cluster: how many replicas must acknowledge each emit and ack (WAIT); 0
    /// waits for none [env: HIVENT_REPLICA_ACKS] [default: 0]
    #[arg(long, value_name = "N")]
    pub replica_acks: Option<u32>,
    /// Redis Cluster: how long an emit or ack waits for those acknowledgements, in ms
    /// [env: HIVENT_REPLICA_ACK_TIMEOUT_MS] [default: 1000]
    #[arg(long, value_name = "MS")]
    pub replica_ack_timeout_ms: Option<u64>,
}

impl ConnectionArgs {
    /// The config builder these options describe: flags over environment (including
    /// `REDIS_URL`) over file. With no backend and no endpoint anywhere, the backend is
    /// Redis at the default endpoint: a worker process or tool must reach others.
    pub fn builder(&self) -> Result<ConfigBuilder> {
        let mut builder = Config::builder().env().fallback_backend(BackendKind::Redis);
        if let Some(file) = &self.config_file {
            builder = builder.file(file);
        }
        if let Some(backend) = &self.backend {
            builder = builder.backend(backend.parse::<BackendKind>()?);
        }
        if let Some(endpoint) = &self.endpoint {
            builder = builder.endpoint(endpoint);
        }
        if let Some(client_id) = &self.client_id {
            builder = builder.client_id(client_id);
        }
        if let Some(n) = self.partition_count {
            builder = builder.partition_count(n);
        }
        if let Some(ms) = self.connect_timeout_ms {
            builder = builder.connect_timeout(std::time::Duration::from_millis(ms));
        }
        if let Some(ms) = self.response_timeout_ms {
            builder = builder.response_timeout(std::time::Duration::from_millis(ms));
        }
        if let Some(n) = self.emit_tries {
            builder = builder.emit_tries(n);
        }
        if let Some(ms) = self.emit_backoff_ms {
            builder = builder.emit_backoff(std::time::Duration::from_millis(ms));
        }
        if let Some(ms) = self.emit_marker_ttl_ms {
            builder = builder.emit_marker_ttl(std::time::Duration::from_millis(ms));
        }
        if let Some(n) = self.pool_size {
            builder = builder.pool_size(n);
        }
        if let Some(ms) = self.route_cache_ttl_ms {
            builder = builder.route_cache_ttl(std::time::Duration::from_millis(ms));
        }
        if let Some(n) = self.replica_acks {
            builder = builder.replica_acks(n);
        }
        if let Some(ms) = self.replica_ack_timeout_ms {
            builder = builder.replica_ack_timeout(std::time::Duration::from_millis(ms));
        }
        Ok(builder)
    }

    /// The config, with `client_id` defaulted for tools that only read or emit.
    pub fn config_for_tool(&self) -> Result<Config> {
        let builder = self.builder()?;
        match builder.clone().build() {
            Err(hivent::Error::InvalidConfig {
                option: "client_id",
                ..
            }) if self.client_id.is_none() => builder.client_id("hivent-cli").build(),
            other => other,
        }
    }
}

/// The options of `start`.
#[derive(Args, Clone, Debug)]
pub struct StartArgs {
    /// Connection and service options.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Consumer threads of the group in this process [env: HIVENT_CONCURRENCY]
    /// [default: 1]
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Log level: error, warn, info, debug or trace
    #[arg(
        long,
        value_name = "LEVEL",
        default_value = "info",
        env = "HIVENT_LOG_LEVEL"
    )]
    pub log_level: String,
    /// How often each consumer heartbeats, in ms [env: HIVENT_HEARTBEAT_INTERVAL_MS]
    /// [default: 1000 on Redis]
    #[arg(long, value_name = "MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// How long a consumer's membership lives without a heartbeat, in ms; it handles no
    /// further event after four fifths of it [env: HIVENT_MEMBER_TTL_MS] [default: 5000
    /// on Redis]
    #[arg(long, value_name = "MS")]
    pub member_ttl_ms: Option<u64>,
    /// How many times a failed event is tried in all before it is dead-lettered; 1 is
    /// the Ruby gem's way (no retries) [env: HIVENT_RETRY_MAX_ATTEMPTS] [default: 5]
    #[arg(long, value_name = "N")]
    pub retry_max_attempts: Option<u32>,
    /// The wait after an event's first failure, in ms; later waits double, with jitter
    /// [env: HIVENT_RETRY_INITIAL_DELAY_MS] [default: 200]
    #[arg(long, value_name = "MS")]
    pub retry_initial_delay_ms: Option<u64>,
    /// The longest wait between two attempts, in ms [env: HIVENT_RETRY_MAX_DELAY_MS]
    /// [default: 5000]
    #[arg(long, value_name = "MS")]
    pub retry_max_delay_ms: Option<u64>,
    /// The most events a consumer reads from one partition per fetch [env:
    /// HIVENT_BATCH_SIZE] [default: 100]
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// How long an idle consumer waits for an emit before fetching again, in ms [env:
    /// HIVENT_IDLE_WAIT_MS] [default: 500]
    #[arg(long, value_name = "MS")]
    pub idle_wait_ms: Option<u64>,
    /// About how many bytes of events one fetch reads in all [env:
    /// HIVENT_MAX_FETCH_BYTES] [default: 4194304]
    #[arg(long, value_name = "BYTES")]
    pub max_fetch_bytes: Option<usize>,
    /// How long handled events of a slow batch may stay unacknowledged, in ms [env:
    /// HIVENT_ACK_INTERVAL_MS] [default: 100]
    #[arg(long, value_name = "MS")]
    pub ack_interval_ms: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics: `host:port`, or a port on
    /// 127.0.0.1 [env: HIVENT_METRICS_ADDR] [default: none, no endpoint]
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
}

impl Default for StartArgs {
    /// Nothing set but the log level (`info`): what `start` with no flags means.
    fn default() -> Self {
        StartArgs {
            connection: ConnectionArgs::default(),
            concurrency: None,
            log_level: "info".to_owned(),
            heartbeat_interval_ms: None,
            member_ttl_ms: None,
            retry_max_attempts: None,
            retry_initial_delay_ms: None,
            retry_max_delay_ms: None,
            batch_size: None,
            idle_wait_ms: None,
            max_fetch_bytes: None,
            ack_interval_ms: None,
            metrics_addr: None,
        }
    }
}

impl StartArgs {
    /// The config builder of `start`: the connection options plus the group timing.
    pub fn builder(&self) -> Result<ConfigBuilder> {
        let mut builder = self.connection.builder()?;
        if let Some(ms) = self.heartbeat_interval_ms {
            builder = builder.heartbeat_interval(std::time::Duration::from_millis(ms));
        }
        if let Some(ms) = self.member_ttl_ms {
            builder = builder.member_ttl(std::time::Duration::from_millis(ms));
        }
        if let Some(n) = self.retry_max_attempts {
            builder = builder.retry_max_attempts(n);
        }
        if let Some(ms) = self.retry_initial_delay_ms {
            builder = builder.retry_initial_delay(std::time::Duration::from_millis(ms));
        }
        if let Some(ms) = self.retry_max_delay_ms {
            builder = builder.retry_max_delay(std::time::Duration::from_millis(ms));
        }
        if let Some(n) = self.concurrency {
            builder = builder.concurrency(n);
        }
        if let Some(n) = self.batch_size {
            builder = builder.batch_size(n);
        }
        if let Some(ms) = self.idle_wait_ms {
            builder = builder.idle_wait(std::time::Duration::from_millis(ms));
        }
        if let Some(n) = self.max_fetch_bytes {
            builder = builder.max_fetch_bytes(n);
        }
        if let Some(ms) = self.ack_interval_ms {
            builder = builder.ack_interval(std::time::Duration::from_millis(ms));
        }
        if let Some(addr) = &self.metrics_addr {
            builder = builder.metrics_addr(addr);
        }
        Ok(builder)
    }
}

/// The backend and (redacted) endpoint a command works on, for its stderr.
pub fn describe_backend(config: &Config) -> String {
    format!("{} at {}", config.backend(), config.endpoint_redacted())
}

/// Refuses the memory backend for a command of the standalone binary, which must reach
/// the events of other processes: a memory store lives and dies inside one process.
pub fn require_shared_backend(
    config: &Config,
    command: &str,
) -> std::result::Result<(), crate::exit::Failure> {
    if config.backend() == BackendKind::Memory {
        return Err(crate::exit::Failure::Usage(format!(
            "`hivent {command}` cannot use the memory backend: it lives inside one process, so other processes would never see its events; use --backend redis and --endpoint"
        )));
    }
    Ok(())
}
