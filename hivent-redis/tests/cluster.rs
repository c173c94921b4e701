//! Redis Cluster: the test support starts a real cluster; the standalone backend refuses
//! one at connect, and cluster mode spreads partitions over the masters, names what a
//! partial emit did not write, follows a failover and a slot migration, and loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hivent_core::{Config, ConsumerOptions, EmitOptions, Hivent, Registration};
use hivent_redis::test_cluster::{cluster_for_tests, RedisCluster};
use hivent_redis::{cluster_keys, Error, RedisBackend, RedisClusterBackend, RedisOptions};
use parking_lot::Mutex;
use serde_json::json;

/// Three masters with a replica each: every slot is served, the masters split them,
/// and a node answers a key of another node's slot with MOVED, as a cluster does.
#[test]
#[cfg_attr(
    any(no_redis_server, no_redis_cli),
    ignore = "redis-server or redis-cli is not installed (CI installs them)"
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
    any(no_redis_server, no_redis_cli),
    ignore = "redis-server or redis-cli is not installed (CI installs them)"
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
            .contains("is a Redis Cluster node; connect with backend `redis-cluster`"),
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

fn quick() -> RedisOptions {
    RedisOptions::default()
        .heartbeat_interval(Duration::from_millis(200))
        .member_ttl(Duration::from_millis(2_000))
        .response_timeout(Duration::from_secs(2))
}

fn backend(seeds: &str, options: RedisOptions) -> Arc<RedisClusterBackend> {
    Arc::new(RedisClusterBackend::with_options(seeds, options).unwrap())
}

fn service(backend: &Arc<RedisClusterBackend>, name: &str, partitions: u32) -> Hivent {
    let config = Config::builder()
        .client_id(name)
        .partition_count(partitions)
        .build()
        .unwrap();
    Hivent::new(config, backend.clone())
}

fn register(backend: &RedisClusterBackend, service: &str, partitions: u32, events: &[&str]) {
    backend
        .register_service(&Registration {
            service: service.into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            partition_count: partitions,
        })
        .unwrap();
}

/// The length of a list, asked of the node that serves it.
fn length_on(cluster: &RedisCluster, node: usize, key: &str) -> usize {
    let mut connection = redis::Client::open(cluster.urls()[node].as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("LLEN").arg(key).query(&mut connection).unwrap()
}

/// A service's 16 partitions land on all three masters, each list on the master of its
/// slot, with every event of the emits in one of them.
#[test]
#[cfg_attr(
    any(no_redis_server, no_redis_cli),
    ignore = "redis-server or redis-cli is not installed (CI installs them)"
)]
fn a_services_partitions_spread_over_the_masters() {
    let Some(cluster) = cluster_for_tests(3, 0) else {
        return;
    };
    let backend = backend(&cluster.seeds(), quick());
    register(&backend, "ledger", 16, &["entry:booked"]);
    let signal = service(&backend, "bank", 1).signal("entry:booked").unwrap();
    for n in 0..64 {
        signal
            .emit_with(
                &json!({"n": n}),
                EmitOptions::version(1).key(format!("account-{n}")),
            )
            .unwrap();
    }
    let mut per_master: BTreeMap<usize, usize> = BTreeMap::new();
    for p in 0..16 {
        let key = cluster_keys::partition("ledger", p);
        let master = cluster.master_of(&key, 0).unwrap();
        *per_master.entry(master).or_default() += length_on(&cluster, master, &key);
    }
    assert_eq!(per_master.len(), 3, "{per_master:?}");
    assert_eq!(per_master.values().sum::<usize>(), 64, "{per_master:?}");
    assert!(per_master.values().all(|&n| n > 0), "{per_master:?}");
}

/// A registration reaches a producer that cached its routes (for a minute) through the
/// change notice, long before the cache would have expired.
#[test]
#[cfg_attr(
    any(no_redis_server, no_redis_cli),
    ignore = "redis-server or redis-cli is not installed (CI installs them)"
)]
fn a_registration_reaches_a_producer_with_cached_routes() {
    let Some(cluster) = cluster_for_tests(3, 0) else {
        return;
    };
    let producer = backend(
        &cluster.seeds(),
        quick().route_cache_ttl(Duration::from_secs(60)),
    );
    let signal = service(&producer, "shop", 1)
        .signal("order:placed")
        .unwrap();
    let admin = backend(&cluster.seeds(), quick());
    register(&admin, "billing", 2, &["order:placed"]);
    let receivers = |n: u32| {
        signal
            .emit_with_receipt(&json!({"n": n}), EmitOptions::version(1))
            .unwrap()
            .receiving_services
    };
    assert_eq!(receivers(0), 1);
    register(&admin, "shipping", 2, &["order:placed"]);
    let started = Instant::now();
    let mut reached = false;
    while started.elapsed() < Duration::from_secs(20) {
        if receivers(1) == 2 {
            reached = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        reached,
        "the new service never got the events of the cached producer"
    );
}

/// An emit whose partitions live on two masters, one of which refuses writes, fails
/// naming the service not written; once the master writes again, `retry_emit`
/// completes it: each service holds exactly one copy.
#[test]
#[cfg_attr(
    any(no_redis_server, no_redis_cli),
    ignore = "redis-server or redis-cli is not installed (CI installs them)"
)]
fn a_partial_emit_names_the_services_not_written_and_its_retry_completes_it() {
    let Some(cluster) = cluster_for_tests(3, 0) else {
        return;
    };
    let backend = backend(&cluster.seeds(), quick().emit_tries(1));
    // Two services whose one partition each lives on different masters.
    let names: Vec<String> = (0..40).map(|n| format!("svc{n}")).collect();
    let master = |name: &str| {
        cluster
            .master_of(&cluster_keys::partition(name, 0), 0)
            .unwrap()
    };
    let first = &names[0];
    let other = names
        .iter()
        .find(|n| master(n) != master(first))
        .expect("two services on different masters");
    for name in [first, other] {
        register(&backend, name, 1, &["doc:saved"]);
    }
    let refusing = master(other);
    let set = |value: &str| {
        let mut connection = redis::Client::open(cluster.urls()[refusing].as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("min-replicas-to-write")
            .arg(value)
            .query::<()>(&mut connection)
            .unwrap();
    };
    set("1");
    let producer = service(&backend, "writer", 1);
    let error = producer
        .signal("doc:saved")
        .unwrap()
        .emit(&json!({"doc": 1}), 1)
        .unwrap_err();
    let text = hivent_core::ErrorChain(&error).to_string();
    assert!(
        text.contains(&format!(
            "written for [{first:?}], not (or not certainly) for [{other:?}]"
        )),
        "{text}"
    );
    let retry = error
        .emit_retry()
        .expect("an uncertain emit can be retried")
        .clone();
    assert_eq!(cluster_len(&cluster, first), 1);
    assert_eq!(cluster_len(&cluster, other), 0);
    set("0");
    producer.retry_emit(&retry).unwrap();
    assert_eq!(cluster_len(&cluster, first), 1, "no second copy");
    assert_eq!(cluster_len(&cluster, other), 1);
}

fn cluster_len(cluster: &RedisCluster, service: &str) -> usize {
    let key = cluster_keys::partition(service, 0);
    length_on(cluster, cluster.master_of(&key, 0).unwrap(), &key)
}

/// What a worker handled, per key: the sequence numbers in the order handled.
type Handled = Arc<Mutex<BTreeMap<String, Vec<u64>>>>;

/// A worker of `ledger` (8 partitions) that records what it handles.
fn start_worker(backend: &Arc<RedisClusterBackend>) -> (hivent_core::Running, Handled) {
    let ledger = service(backend, "ledger", 8);
    let handled: Handled = Arc::default();
    let sink = handled.clone();
    ledger
        .signal("entry:booked")
        .unwrap()
        .receive(move |event| {
            let key = event.payload["key"].as_str().unwrap_or_default().to_owned();
            let seq = event.payload["seq"].as_u64().unwrap_or(u64::MAX);
            sink.lock().entry(key).or_default().push(seq);
            Ok(())
        });
    let options = ConsumerOptions::default().idle_wait(Duration::from_millis(100));
    (ledger.start(2, options).unwrap(), handled)
}

/// Emits `count` events over 10 keys, each key's in sequence, completing every emit
/// whatever the cluster does meanwhile (an uncertain one by `retry_emit`, a refused
/// one again); `midway` runs after a third of them.
fn emit_through(backend: &Arc<RedisClusterBackend>, count: u64, midway: impl FnOnce()) {
    let bank = service(backend, "bank", 1);
    let signal = bank.signal("entry:booked").unwrap();
    let mut midway = Some(midway);
    for seq in 0..count {
        if seq == count / 3 {
            if let Some(midway) = midway.take() {
                midway();
            }
        }
        let key = format!("account-{}", seq % 10);
        let payload = json!({"key": key, "seq": seq / 10});
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut outcome = signal
            .emit_with(&payload, EmitOptions::version(1).key(key.as_str()))
            .map(|_| ());
        while let Err(error) = outcome {
            assert!(
                Instant::now() < deadline,
                "emit {seq} never completed: {error}"
            );
            std::thread::sleep(Duration::from_millis(100));
            outcome = match error.emit_retry() {
                // It may be stored in part: complete the same call.
                Some(retry) => bank.retry_emit(retry).map(|_| ()),
                // Nothing was stored: emit it again.
                None => signal
                    .emit_with(&payload, EmitOptions::version(1).key(key.as_str()))
                    .map(|_| ()),
            };
        }
    }
}

/// Waits until every key's events `0..per_key` were handled, then checks that each key's
/// events came in order: the first handling of each is in sequence (a redelivery after a
/// lost ack repeats a suffix, never reorders).
fn assert_all_handled_in_order(handled: &Handled, keys: u64, per_key: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let complete = {
            let handled = handled.lock();
            (0..keys).all(|k| {
                handled
                    .get(&format!("account-{k}"))
                    .is_some_and(|seqs| (0..per_key).all(|s| seqs.contains(&s)))
            })
        };
        if complete {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not everything was handled: {:?}",
            handled.lock()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for (key, seqs) in handled.lock().iter() {
        let mut firsts = Vec::new();
        for &s in seqs {
            if !firsts.contains(&s) {
                firsts.push(s);
            }
        }
        assert_eq!(firsts, (0..per_key).collect::<Vec<_>>(), "{key}: {seqs:?}");
    }
}

/// Streams `per_key` events of each of 10 keys from a producer to a worker of
/// `ledger`, running `midway` a third of the way, and checks that the worker handled
/// every one, each key's in order; then stops the worker.
fn stream_through(seeds: &str, options: RedisOptions, per_key: u64, midway: impl FnOnce()) {
    let worker_backend = backend(seeds, options.clone());
    let (worker, handled) = start_worker(&worker_backend);
    let producer = backend(seeds, options);
    emit_through(&producer, per_key * 10, midway);
    assert_all_handled_in_order(&handled, 10, per_key);
    worker.stop();
    worker.wait().unwrap();
}

/// With a replica per master and `replica_acks(1)`, a master killed in the middle of a
/// stream fails over to its replica; the producer and the worker follow the promotion
/// and nothing is lost or reordered.
#[test]
#[cfg_attr(
    any(no_redis_server, no_redis_cli),
    ignore = "redis-server or redis-cli is not installed (CI installs them)"
)]
fn a_master_killed_mid_stream_fails_over_and_nothing_is_lost() {
    let Some(cluster) = cluster_for_tests(3, 1) else {
        return;
    };
    let options = quick()
        .replica_acks(1)
        .replica_ack_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_millis(500))
        .emit_tries(2);
    // The master of partition 0's slot: it holds some of the stream for sure.
    let partition = cluster_keys::partition("ledger", 0);
    let victim = cluster.master_of(&partition, 0).unwrap();
    let seeds = cluster.seeds();
    let cluster = Arc::new(Mutex::new(cluster));
    let mut recovery = None;
    stream_through(&seeds, options, 30, || {
        cluster.lock().kill(victim);
        let cluster = Arc::clone(&cluster);
        // The operator's part: once a replica took over, the old master comes back
        // (as that replica's replica, so writes can be acknowledged again).
        recovery = Some(std::thread::spawn(move || {
            let key = cluster_keys::partition("ledger", 0);
            cluster.lock().wait_for_failover(victim, &key).unwrap();
            cluster.lock().restart(victim).unwrap();
        }));
    });
    recovery.unwrap().join().unwrap();
    let cluster = cluster.lock();
    let promoted = cluster.master_of(&partition, (victim + 1) % 6).unwrap();
    assert_ne!(promoted, victim, "a replica took over");
}

/// Every slot of the master holding a busy partition moves to another master
/// (`redis-cli --cluster reshard`) while events stream in and the worker consumes:
/// clients follow ASK and MOVED, and nothing is lost or reordered.
#[test]
#[cfg_attr(
    any(no_redis_server, no_redis_cli),
    ignore = "redis-server or redis-cli is not installed (CI installs them)"
)]
fn a_busy_partition_moved_to_another_master_loses_and_reorders_nothing() {
    let Some(cluster) = cluster_for_tests(3, 0) else {
        return;
    };
    let key = cluster_keys::partition("ledger", 0);
    let from = cluster.master_of(&key, 0).unwrap();
    let to = (from + 1) % 3;
    let cluster = Arc::new(cluster);
    let mover = Arc::clone(&cluster);
    let mut reshard = None;
    stream_through(&cluster.seeds(), quick().emit_tries(6), 60, || {
        reshard = Some(std::thread::spawn(move || mover.reshard_all(from, to)));
    });
    reshard.unwrap().join().unwrap().unwrap();
    assert_eq!(
        cluster.master_of(&key, 0).unwrap(),
        to,
        "the partition moved"
    );
}

/// A partition count change stamps the partitions before the registry moves: a
/// producer whose cached routes still have the old count writes nothing while the
/// change is under way (its emits fail visibly if it never completes), and once it
/// completes every event lands in a partition of the new count, none in one that the
/// new count does not have.
#[test]
#[cfg_attr(
    any(no_redis_server, no_redis_cli),
    ignore = "redis-server or redis-cli is not installed (CI installs them)"
)]
fn a_count_change_strands_no_event_of_a_cached_producer() {
    let Some(cluster) = cluster_for_tests(3, 0) else {
        return;
    };
    let admin = backend(&cluster.seeds(), quick());
    register(&admin, "ledger", 8, &["entry:booked"]);
    let producer = backend(
        &cluster.seeds(),
        quick().route_cache_ttl(Duration::from_secs(60)),
    );
    let signal = service(&producer, "bank", 1)
        .signal("entry:booked")
        .unwrap();
    let emit = |n: u32| {
        signal.emit_with(
            &json!({"n": n}),
            EmitOptions::version(1).key(format!("account-{n}")),
        )
    };
    let lengths = || -> Vec<usize> {
        (0..8)
            .map(|p| {
                let key = cluster_keys::partition("ledger", p);
                length_on(&cluster, cluster.master_of(&key, 0).unwrap(), &key)
            })
            .collect()
    };
    for n in 0..10 {
        emit(n).unwrap();
    }
    assert_eq!(lengths().iter().sum::<usize>(), 10);
    // The events are handled (here: dropped), and a registration to 2 partitions
    // begins: it stamps the partitions first.
    let mut raw = cluster.connection().unwrap();
    for p in 0..8 {
        redis::cmd("DEL")
            .arg(cluster_keys::partition("ledger", p))
            .query::<()>(&mut raw)
            .unwrap();
        redis::cmd("SET")
            .arg(cluster_keys::stamped_count("ledger", p))
            .arg(2)
            .query::<()>(&mut raw)
            .unwrap();
    }
    let error = emit(100).unwrap_err();
    assert!(error.emit_retry().is_some(), "{error}");
    assert_eq!(lengths(), [0; 8], "nothing written under the old count");
    // The registration completes; the producer's cache (a minute) may still hold 8.
    register(&admin, "ledger", 2, &["entry:booked"]);
    for n in 0..20 {
        emit(n).unwrap();
    }
    let after = lengths();
    assert_eq!(after[0] + after[1], 20, "{after:?}");
    assert_eq!(after[2..].iter().sum::<usize>(), 0, "{after:?}");
}
