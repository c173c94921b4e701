//! Redis Cluster: the test support starts a real cluster, and hivent-redis, which needs
//! a standalone Redis, refuses one at connect with an error that says so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use hivent_redis::test_cluster::cluster_for_tests;
use hivent_redis::{Error, RedisBackend};

/// Three masters with a replica each: every slot is served, the masters split them,
/// and a node answers a key of another node's slot with MOVED, as a cluster does.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn a_test_cluster_serves_every_slot_on_three_masters() {
    let Some(cluster) = cluster_for_tests(3, 1) else {
        return;
    };
    assert_eq!(cluster.nodes().len(), 6);
    let mut first = redis::Client::open(cluster.urls()[0].as_str())
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut first).unwrap();
    for line in [
        "cluster_state:ok",
        "cluster_slots_assigned:16384",
        "cluster_known_nodes:6",
        "cluster_size:3",
    ] {
        assert!(
            info.lines().any(|l| l.trim() == line),
            "{line} not in\n{info}"
        );
    }
    // Some of 20 keys fall in another master's slots: this node redirects them.
    let moved = (0..20)
        .map(|n| {
            redis::cmd("SET")
                .arg(format!("key-{n}"))
                .arg("v")
                .query::<()>(&mut first)
        })
        .filter(|outcome| matches!(outcome, Err(e) if e.code() == Some("MOVED")))
        .count();
    assert!((1..20).contains(&moved), "{moved} of 20 keys were moved");
}

/// Connecting to a cluster node fails at once, naming the endpoint and the reason,
/// rather than at the first emit or heartbeat.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn a_cluster_node_is_refused_at_connect() {
    let Some(cluster) = cluster_for_tests(3, 0) else {
        return;
    };
    let url = &cluster.urls()[1];
    let error = RedisBackend::connect(url).unwrap_err();
    assert!(
        matches!(&error, Error::ClusterNotSupported { endpoint } if endpoint == url),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("is a Redis Cluster node; hivent-redis needs a standalone Redis"),
        "{error}"
    );
    // Through the application API it is a configuration error, as a wrong endpoint is.
    let core: hivent_core::Error = error.into();
    assert!(
        matches!(
            core,
            hivent_core::Error::InvalidConfig {
                option: "endpoint",
                ..
            }
        ),
        "{core:?}"
    );
}
