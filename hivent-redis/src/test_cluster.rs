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
    /// `cluster_state:ok`.
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
            ])?);
        }
        let cluster = RedisCluster { nodes };
        cluster.create(replicas)?;
        cluster.wait_until_ok()?;
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
        let deadline = Instant::now() + CLUSTER_DEADLINE;
        loop {
            let ok = self.nodes.iter().all(|node| {
                cluster_info(node).is_some_and(|info| info.contains("cluster_state:ok"))
            });
            if ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ServerError::DidNotStart {
                    reason: format!("the cluster was not ok within {CLUSTER_DEADLINE:?}"),
                    log: self.logs(),
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
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
