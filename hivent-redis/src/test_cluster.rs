//! Throwaway Redis Clusters for tests: masters (and replicas) of `redis-server
//! --cluster-enabled yes` on free loopback ports, joined by `redis-cli --cluster create`
//! and killed on drop.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::test_server::{free_port, RedisServer, ServerError};

/// How long the nodes may take to agree that every slot is served.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(60);

/// A running Redis Cluster on 127.0.0.1; every node is killed and its files removed on
/// drop.
///
/// ```no_run
/// let cluster = hivent_redis::test_cluster::RedisCluster::start(3, 1)?;
/// assert_eq!(cluster.nodes().len(), 6);
/// let seeds = cluster.urls(); // redis://127.0.0.1:<port>/0, one per node
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` masters with `replicas` replicas each, creates the cluster
    /// (the slots split evenly over the masters) and waits until every node says
    /// `cluster_state:ok` and every replica is in sync with its master (a replica that
    /// never synced is not promoted when its master fails).
    pub fn start(masters: usize, replicas: usize) -> Result<RedisCluster, ServerError> {
        let mut nodes = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            // The cluster bus port is chosen too: the default (port + 10000) may be
            // taken or out of range.
            let bus = free_port()?;
            nodes.push(RedisServer::start_with(&[
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                "nodes.conf".into(),
                "--cluster-node-timeout".into(),
                "2000".into(),
                "--cluster-port".into(),
                bus.to_string(),
                // Redis waits 5 s by default before a full sync, for more replicas
                // to share it; a test's replica syncs at once.
                "--repl-diskless-sync-delay".into(),
                "0".into(),
            ])?);
        }
        let cluster = RedisCluster { nodes };
        cluster.create(replicas)?;
        cluster.wait_until_ok()?;
        cluster.wait_until_replicas_synced()?;
        Ok(cluster)
    }

    fn create(&self, replicas: usize) -> Result<(), ServerError> {
        let cli = std::env::var("HIVENT_REDIS_CLI").unwrap_or_else(|_| "redis-cli".to_owned());
        let output = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .map_err(|error| match error.kind() {
                std::io::ErrorKind::NotFound => ServerError::NotInstalled,
                _ => ServerError::Io {
                    action: format!("run {cli} --cluster create"),
                    source: error,
                },
            })?;
        if output.status.success() {
            return Ok(());
        }
        Err(ServerError::DidNotStart {
            reason: format!(
                "`{cli} --cluster create` failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stdout)
            ),
            log: self.logs(),
        })
    }

    /// Waits until every node reports the cluster as serving all slots.
    pub fn wait_until_ok(&self) -> Result<(), ServerError> {
        self.wait("the cluster to be ok", || self.all_ok_but(None))
    }

    /// Waits up to [`CLUSTER_DEADLINE`] for `done`; the error says `what` and holds
    /// every node's log.
    fn wait(&self, what: &str, mut done: impl FnMut() -> bool) -> Result<(), ServerError> {
        let deadline = Instant::now() + CLUSTER_DEADLINE;
        while !done() {
            if Instant::now() >= deadline {
                return Err(ServerError::DidNotStart {
                    reason: format!("timed out after {CLUSTER_DEADLINE:?} waiting for {what}"),
                    log: self.logs(),
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Whether every node (but `dead`) says `cluster_state:ok`.
    fn all_ok_but(&self, dead: Option<usize>) -> bool {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != dead)
            .all(|(_, node)| {
                cluster_info(node)
                    .is_some_and(|info| info.lines().any(|l| l.trim() == "cluster_state:ok"))
            })
    }

    fn wait_until_replicas_synced(&self) -> Result<(), ServerError> {
        let synced = |node: &RedisServer| {
            let info = redis::Client::open(node.url())
                .ok()
                .and_then(|client| {
                    client
                        .get_connection_with_timeout(Duration::from_secs(2))
                        .ok()
                })
                .and_then(|mut connection| {
                    redis::cmd("INFO")
                        .arg("replication")
                        .query::<String>(&mut connection)
                        .ok()
                });
            info.is_some_and(|info| {
                let has = |line: &str| info.lines().any(|l| l.trim() == line);
                has("role:master") || has("master_link_status:up")
            })
        };
        self.wait("the replicas to sync", || self.nodes.iter().all(synced))
    }

    /// Every node, masters and replicas, in start order.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Every node's URL, usable as seeds of a cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Every node's URL, separated by commas: the endpoint of backend `redis-cluster`.
    pub fn seeds(&self) -> String {
        self.urls().join(",")
    }

    /// A cluster connection, for tests that look at keys as the cluster holds them.
    pub fn connection(&self) -> redis::RedisResult<redis::cluster::ClusterConnection> {
        redis::cluster::ClusterClient::new(self.urls())?.get_connection()
    }

    /// The logs of every node, each under its port.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("--- node {} ---\n{}", node.port(), node.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl RedisCluster {
    fn cli(&self) -> String {
        std::env::var("HIVENT_REDIS_CLI").unwrap_or_else(|_| "redis-cli".to_owned())
    }

    fn ask<T: redis::FromRedisValue>(
        &self,
        node: usize,
        command: &redis::Cmd,
    ) -> Result<T, ServerError> {
        let failed = |e: redis::RedisError| ServerError::DidNotStart {
            reason: format!("node {} did not answer: {e}", self.nodes[node].port()),
            log: String::new(),
        };
        let mut connection = redis::Client::open(self.nodes[node].url())
            .map_err(failed)?
            .get_connection_with_timeout(Duration::from_secs(2))
            .map_err(failed)?;
        command.query(&mut connection).map_err(failed)
    }

    /// The index (in [`RedisCluster::nodes`]) of the master serving `key`'s slot, as
    /// node `asking` sees the cluster.
    pub fn master_of(&self, key: &str, asking: usize) -> Result<usize, ServerError> {
        let slot: u16 = self.ask(asking, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))?;
        let slots: Vec<redis::Value> = self.ask(asking, redis::cmd("CLUSTER").arg("SLOTS"))?;
        for range in slots {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let (Some(start), Some(end), Some(redis::Value::Array(master))) =
                (parts.first(), parts.get(1), parts.get(2))
            else {
                continue;
            };
            let number = |v: &redis::Value| match v {
                redis::Value::Int(n) => *n,
                _ => -1,
            };
            if (number(start)..=number(end)).contains(&i64::from(slot)) {
                let port = master.get(1).map(number).unwrap_or(-1);
                if let Some(index) = self.nodes.iter().position(|n| i64::from(n.port()) == port) {
                    return Ok(index);
                }
            }
        }
        Err(ServerError::DidNotStart {
            reason: format!("no master serves slot {slot}"),
            log: self.logs(),
        })
    }

    /// Kills node `node` (SIGKILL), as a crashed host.
    pub fn kill(&mut self, node: usize) {
        self.nodes[node].kill();
    }

    /// Starts killed node `node` again on its port and directory: it rejoins the
    /// cluster (a master that was failed over comes back as a replica).
    pub fn restart(&mut self, node: usize) -> Result<(), ServerError> {
        self.nodes[node].restart()
    }

    /// Waits until a replica of killed master `dead` serves its slots (the one of `key`
    /// among them) and every other node says `cluster_state:ok` again.
    pub fn wait_for_failover(&self, dead: usize, key: &str) -> Result<(), ServerError> {
        let asking = (dead + 1) % self.nodes.len();
        self.wait("a replica to take over", || {
            self.master_of(key, asking)
                .is_ok_and(|master| master != dead)
                && self.all_ok_but(Some(dead))
        })
    }

    /// Moves every slot of master `from` to master `to` with `redis-cli --cluster
    /// reshard`, keys and all, while clients go on (they follow ASK and MOVED).
    pub fn reshard_all(&self, from: usize, to: usize) -> Result<(), ServerError> {
        let id = |node: usize| -> Result<String, ServerError> {
            self.ask(node, redis::cmd("CLUSTER").arg("MYID"))
        };
        let (from_id, to_id) = (id(from)?, id(to)?);
        let output = Command::new(self.cli())
            .arg("--cluster")
            .arg("reshard")
            .arg(format!("127.0.0.1:{}", self.nodes[to].port()))
            .args(["--cluster-from", &from_id, "--cluster-to", &to_id])
            .args(["--cluster-slots", "16384", "--cluster-yes"])
            .output()
            .map_err(|e| ServerError::DidNotStart {
                reason: format!("redis-cli could not run: {e}"),
                log: String::new(),
            })?;
        if !output.status.success() {
            return Err(ServerError::DidNotStart {
                reason: format!(
                    "redis-cli --cluster reshard failed: {}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
                log: self.logs(),
            });
        }
        Ok(())
    }
}

/// `CLUSTER INFO` of `node`, `None` while it does not answer.
fn cluster_info(node: &RedisServer) -> Option<String> {
    let mut connection = redis::Client::open(node.url())
        .ok()?
        .get_connection_with_timeout(Duration::from_secs(2))
        .ok()?;
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query(&mut connection)
        .ok()
}

/// A cluster for a test, or `None` (with a "skipped" line on stderr) when
/// `redis-server` is not installed; like [`crate::test_server::server_for_tests`], it
/// panics when one is required (`HIVENT_REQUIRE_REDIS=1`) or fails to start.
#[doc(hidden)]
#[allow(clippy::panic)]
pub fn cluster_for_tests(masters: usize, replicas: usize) -> Option<RedisCluster> {
    match RedisCluster::start(masters, replicas) {
        Ok(cluster) => Some(cluster),
        Err(ServerError::NotInstalled) => {
            if std::env::var("HIVENT_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
                panic!("HIVENT_REQUIRE_REDIS=1 but redis-server or redis-cli is not installed");
            }
            eprintln!("skipped: redis-server or redis-cli not installed");
            None
        }
        Err(error) => panic!(
            "could not start a test Redis Cluster: {}",
            hivent_core::ErrorChain(&error)
        ),
    }
}
