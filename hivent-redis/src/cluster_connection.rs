//! Connections to a Redis Cluster: its seed nodes, one reconnecting cluster connection
//! per thread, and pipelines of script calls sent to each node at once.

use std::sync::Arc;

use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{Cmd, FromRedisValue, RedisError, RedisResult, Value};

use crate::connection::{Endpoint, Slot};
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

/// One cluster connection used by one thread at a time.
pub(crate) type ClusterSlot = Slot<ClusterConnection>;

impl ClusterSlot {
    /// [`Slot::run_with`] on the cluster, opening a connection again after any
    /// failure: a fresh connection reads the slot map anew, which is how a producer or
    /// worker follows a failover (the old master's address stops answering, or a node
    /// answers for a slot it no longer serves; the new slot map names the promoted
    /// replica). Failures are rare, so the extra round trips do not matter.
    pub(crate) fn run<T>(
        &self,
        endpoint: &ClusterEndpoint,
        work: impl FnOnce(&mut ClusterConnection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        self.run_with(|| endpoint.open(), |_| false, work)
    }
}

/// Whether the calls of a pipeline may run twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// Running a call again gives the same outcome (reads, marked emits, claims).
    Safe,
    /// A call must run at most once (acknowledgements trim by count).
    Never,
}

/// How many times a pipeline is sent again after some of its calls were redirected.
const ROUNDS: usize = 5;

/// Sends `calls` in one pipeline: each goes to the master of its first key's slot, all
/// nodes' parts at once, one round trip per node. The calls carry their scripts
/// (`EVAL`), so a node that lost its script cache (a promoted replica, a restart) never
/// fails a part of a pipeline whose other parts ran.
///
/// redis-rs's cluster pipeline hands back a slot that moved (a reshard) or whose master
/// changed (a failover) as a failure of the whole pipeline, with the other calls run
/// and their replies dropped. The redirected calls did not run: each is sent again on
/// its own, by the path that follows ASK and MOVED and reads the new slot map. The
/// calls that ran are sent again when `repeat` allows; otherwise their replies are
/// `Nil`: they ran, with an outcome unknown.
pub(crate) fn pipeline(
    connection: &mut ClusterConnection,
    calls: &[Cmd],
    repeat: Repeat,
) -> RedisResult<Vec<Value>> {
    let mut replies = vec![Value::Nil; calls.len()];
    let mut pending: Vec<usize> = (0..calls.len()).collect();
    for _ in 0..ROUNDS {
        if pending.is_empty() {
            return Ok(replies);
        }
        let mut pipe = redis::cluster::cluster_pipe();
        for &i in &pending {
            pipe.add_command(calls[i].clone());
        }
        match pipe.query::<Vec<Value>>(connection) {
            Ok(values) => {
                for (&i, value) in pending.iter().zip(values) {
                    replies[i] = value;
                }
                return Ok(replies);
            }
            Err(error) => {
                let Some(redirected) = redirected(&error) else {
                    return Err(error);
                };
                for &j in &redirected {
                    let i = pending[j];
                    replies[i] = calls[i].query::<Value>(connection)?;
                }
                pending = match repeat {
                    Repeat::Safe => pending
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| !redirected.contains(j))
                        .map(|(_, &i)| i)
                        .collect(),
                    Repeat::Never => Vec::new(),
                };
            }
        }
    }
    if pending.is_empty() {
        Ok(replies)
    } else {
        Err(RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain),
            "the cluster kept redirecting a pipeline",
        )))
    }
}

/// The positions of a pipeline's calls that failed only because their slot is served
/// elsewhere now (MOVED, ASK) or for the moment by no one (TRYAGAIN, CLUSTERDOWN);
/// `None` when some call failed otherwise.
fn redirected(error: &RedisError) -> Option<Vec<usize>> {
    use redis::ServerErrorKind::{Ask, ClusterDown, Moved, TryAgain};
    let failures = error.clone().into_server_errors()?;
    failures
        .iter()
        .map(|(index, failure)| match failure.kind() {
            Some(Moved | Ask | TryAgain | ClusterDown) => Some(*index),
            _ => None,
        })
        .collect()
}

/// Waits until `replicas` replicas of the master of each of `keys` acknowledged this
/// connection's writes to it, or `timeout_ms` passed; returns the fewest that did.
/// `WAIT` goes only to those masters, on the connections that wrote: a master this
/// call did not write to (one without a replica, after a failover) does not hold it up.
pub(crate) fn wait_for_replicas(
    connection: &mut ClusterConnection,
    keys: &[String],
    replicas: u32,
    timeout_ms: u64,
) -> RedisResult<u32> {
    use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
    let mut fewest = u32::MAX;
    let mut asked = std::collections::BTreeSet::new();
    for key in keys {
        let route = Route::with_key(key.as_bytes(), SlotAddr::Master);
        if !asked.insert(format!("{route:?}")) {
            continue;
        }
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(timeout_ms);
        let acked = connection.route_command(
            &wait,
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
        )?;
        fewest = fewest.min(u32::from_redis_value(acked)?);
    }
    Ok(if fewest == u32::MAX { replicas } else { fewest })
}
