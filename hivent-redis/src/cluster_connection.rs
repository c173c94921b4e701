//! Connections to a Redis Cluster: its seed nodes, one reconnecting cluster connection
//! per thread, and pipelines of script calls sent to each node at once.

use std::sync::Arc;

use parking_lot::Mutex;
use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{Cmd, RedisError, RedisResult, Value};

use crate::connection::Endpoint;
use crate::error::keeps_connection;
use crate::{Error, RedisOptions};

/// The seed nodes of a cluster with the options: everything needed to connect.
pub(crate) struct ClusterEndpoint {
    client: ClusterClient,
    /// Each seed as a plain endpoint, for the pub/sub connections (classic pub/sub
    /// reaches every node, so any node will do) and for per-node commands.
    seeds: Vec<Arc<Endpoint>>,
    redacted: String,
    options: RedisOptions,
}

impl ClusterEndpoint {
    /// Parses `endpoints`: seed URLs separated by commas, each `redis://host:port`
    /// (a cluster has no databases but 0). Never puts a password into an error.
    pub(crate) fn parse(endpoints: &str, options: RedisOptions) -> Result<ClusterEndpoint, Error> {
        let urls = hivent_core::split_endpoints(endpoints);
        let redacted = hivent_core::redact_endpoint(endpoints);
        if urls.is_empty() {
            return Err(Error::InvalidEndpoint {
                endpoint: redacted,
                reason: "it names no seed node".into(),
            });
        }
        let seeds = urls
            .iter()
            .map(|url| Endpoint::parse(url, options.clone()).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let client = ClusterClient::builder(urls.iter().map(|url| url.to_string()))
            .connection_timeout(options.connect_timeout)
            .response_timeout(options.response_timeout)
            .build()
            .map_err(|e| Error::InvalidEndpoint {
                endpoint: redacted.clone(),
                reason: e.to_string(),
            })?;
        Ok(ClusterEndpoint {
            client,
            seeds,
            redacted,
            options,
        })
    }

    /// The seed nodes, with any password replaced by `***`.
    pub(crate) fn redacted(&self) -> &str {
        &self.redacted
    }

    pub(crate) fn options(&self) -> &RedisOptions {
        &self.options
    }

    pub(crate) fn seeds(&self) -> &[Arc<Endpoint>] {
        &self.seeds
    }

    /// Opens a cluster connection: it reads the slot map from the first seed that
    /// answers and connects to the masters as it needs them.
    pub(crate) fn open(&self) -> RedisResult<ClusterConnection> {
        let connection = self.client.get_connection()?;
        connection.set_read_timeout(Some(self.options.response_timeout))?;
        connection.set_write_timeout(Some(self.options.response_timeout))?;
        Ok(connection)
    }

    /// Wraps a client error with what was being done and the redacted seeds.
    pub(crate) fn error(&self, operation: &'static str, source: RedisError) -> Error {
        Error::Command {
            operation,
            endpoint: self.redacted.clone(),
            source: source.into(),
        }
    }
}

/// One cluster connection used by one thread at a time, opened again after a failure
/// that was not an error reply: a fresh connection reads the slot map anew, which is
/// how a producer or worker follows a failover (the old master's address stops
/// answering; the new slot map names the promoted replica).
pub(crate) struct ClusterSlot {
    connection: Mutex<Option<ClusterConnection>>,
}

impl ClusterSlot {
    pub(crate) fn new() -> ClusterSlot {
        ClusterSlot {
            connection: Mutex::new(None),
        }
    }

    pub(crate) fn run<T>(
        &self,
        endpoint: &ClusterEndpoint,
        work: impl FnOnce(&mut ClusterConnection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let mut slot = self.connection.lock();
        let connection = match slot.as_mut() {
            Some(connection) => connection,
            None => slot.insert(endpoint.open()?),
        };
        let result = work(connection);
        if let Err(error) = &result {
            if !keeps_connection(error) {
                *slot = None;
            }
        }
        result
    }
}

/// Sends `calls` in one pipeline: each goes to the master of its first key's slot, all
/// nodes' parts at once, one round trip per node (redis-rs follows MOVED and ASK
/// replies). The calls carry their scripts (`EVAL`), so a node that lost its script
/// cache (a promoted replica, a restart) never fails a part of a pipeline whose other
/// parts ran. Fails, with the first error, when any call failed; the others may have run.
pub(crate) fn pipeline(
    connection: &mut ClusterConnection,
    calls: &[Cmd],
) -> RedisResult<Vec<Value>> {
    if calls.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::cluster::cluster_pipe();
    for call in calls {
        pipe.add_command(call.clone());
    }
    pipe.query(connection)
}

/// Waits until `replicas` replicas of every master acknowledged this connection's
/// writes, or `timeout_ms` passed; returns the fewest that did.
pub(crate) fn wait_for_replicas(
    connection: &mut ClusterConnection,
    replicas: u32,
    timeout_ms: u64,
) -> RedisResult<u32> {
    redis::cmd("WAIT")
        .arg(replicas)
        .arg(timeout_ms)
        .query(connection)
}
