//! Registration on Redis: event sets follow the service's receivers, and partition
//! count changes wait for the old partitions to drain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use hivent_core::{Backend, Error, Registration};

fn registration(events: &[&str], partitions: u32) -> Registration {
    Registration {
        service: "svc".to_owned(),
        events: events.iter().map(|e| e.to_string()).collect(),
        partition_count: partitions,
    }
}

/// A new registration leaves the sets of events the service no longer receives.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn registration_leaves_events_no_longer_received() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    redis.command("SADD", &["a", "other"]);
    let backend = redis.backend();
    backend
        .register(&registration(&["*", "a", "b"], 2))
        .unwrap();
    assert_eq!(redis.members("a"), vec!["other", "svc"]);
    assert_eq!(redis.members("*"), vec!["svc"]);
    backend.register(&registration(&["b", "c"], 2)).unwrap();
    assert_eq!(redis.members("a"), vec!["other"]);
    assert!(redis.members("*").is_empty());
    assert_eq!(redis.members("b"), vec!["svc"]);
    assert_eq!(redis.members("c"), vec!["svc"]);
    assert_eq!(redis.members("svc:hivent:events"), vec!["b", "c"]);
}

/// A different partition count is refused while an old partition holds events, and
/// accepted once they are all empty.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn partition_count_change_waits_for_empty_partitions() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let backend = redis.backend();
    backend.register(&registration(&["a"], 2)).unwrap();
    redis.command("LPUSH", &["svc:1", "{}"]);
    let error = backend.register(&registration(&["a"], 4)).unwrap_err();
    match error {
        Error::PartitionCountConflict {
            service,
            requested,
            stored,
            non_empty,
        } => assert_eq!(
            (service.as_str(), requested, stored, non_empty),
            ("svc", 4, 2, vec![1])
        ),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(redis.get("svc:partition_count").as_deref(), Some("2"));
    // The same count is always accepted.
    backend.register(&registration(&["a"], 2)).unwrap();
    redis.command("DEL", &["svc:1"]);
    backend.register(&registration(&["a"], 4)).unwrap();
    assert_eq!(redis.get("svc:partition_count").as_deref(), Some("4"));
}

fn is_collision(error: &Error, key: &str) -> bool {
    hivent_core::ErrorChain(error)
        .to_string()
        .contains(&format!("the Redis key {key:?} is a"))
}

/// A service that would receive an event named like another service's partition is
/// refused, and keeps its old registration: the partition is never turned into a set.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn an_event_named_like_a_partition_is_refused_whole() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let backend = redis.backend();
    backend
        .register(&support::registration("victim", &["a:b"], 2))
        .unwrap();
    backend
        .register(&support::registration("other", &["a:b"], 1))
        .unwrap();
    let error = backend
        .register(&support::registration("other", &["victim:1"], 1))
        .unwrap_err();
    assert!(is_collision(&error, "victim:1"), "{error}");
    assert_eq!(redis.command("EXISTS", &["victim:1"]), redis::Value::Int(0));
    assert_eq!(
        redis.command("SISMEMBER", &["a:b", "other"]),
        redis::Value::Int(1),
        "the old registration was kept"
    );
}

/// A key of another type where an emit by the publish script pushes or reads (another
/// tool's key) makes the whole emit fail with an error naming the key; no service gets
/// a copy. (An emit by cached routes checks list types only as it pushes:
/// tests/routed_emit.rs.)
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn a_colliding_key_fails_the_emit_before_any_write() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let options = support::fast_options().route_cache_ttl(std::time::Duration::ZERO);
    let backend = hivent_redis::RedisBackend::with_options(&redis.server.url(), options).unwrap();
    backend
        .register(&support::registration("bystander", &["e"], 1))
        .unwrap();
    backend
        .register(&support::registration("blocked", &["e"], 1))
        .unwrap();
    redis.command("SET", &["blocked:0", "another tool's value"]);
    let envelope = hivent_core::Envelope {
        name: "e".into(),
        partition_hash: 0,
        json: support::gem_event("e", "{}", &hivent_core::new_id()),
    };
    let error = backend
        .publish("call-1", std::slice::from_ref(&envelope))
        .unwrap_err();
    assert!(is_collision(&error, "blocked:0"), "{error}");
    assert_eq!(redis.len("bystander:0"), 0);
    redis.command("DEL", &["blocked:0"]);
    redis.command("SET", &["f", "not a set"]);
    let error = backend
        .publish(
            "call-2",
            &[hivent_core::Envelope {
                name: "f".into(),
                ..envelope.clone()
            }],
        )
        .unwrap_err();
    assert!(is_collision(&error, "f"), "{error}");
    // A call that pushes to one list only finds the collision at its push, its first
    // write: nothing is left behind, not even its marker, so the same call succeeds
    // once the key is gone.
    backend
        .register(&support::registration("alone", &["g"], 1))
        .unwrap();
    redis.command("SET", &["alone:0", "another tool's value"]);
    let only = hivent_core::Envelope {
        name: "g".into(),
        ..envelope.clone()
    };
    let error = backend
        .publish("call-3", std::slice::from_ref(&only))
        .unwrap_err();
    assert!(is_collision(&error, "alone:0"), "{error}");
    assert_eq!(
        redis.command("EXISTS", &["hivent:emitted:call-3"]),
        redis::Value::Int(0)
    );
    redis.command("DEL", &["alone:0"]);
    assert_eq!(
        backend
            .publish("call-3", std::slice::from_ref(&only))
            .unwrap(),
        [1]
    );
    assert_eq!(redis.len("alone:0"), 1);
    // And a registration never overwrites such a key.
    let error = backend
        .register(&support::registration("later", &["f"], 1))
        .unwrap_err();
    assert!(is_collision(&error, "f"), "{error}");
    assert_eq!(
        redis.command("EXISTS", &["later:partition_count"]),
        redis::Value::Int(0)
    );
}

/// A partition count above the maximum is refused by the script too, whatever a
/// client sends.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn the_script_refuses_too_many_partitions() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let backend = redis.backend();
    let error = backend
        .register(&support::registration("huge", &["e"], 4_294_967_295))
        .unwrap_err();
    assert!(error.to_string().contains("from 1 to 1024"), "{error}");
    assert_eq!(
        redis.command("EXISTS", &["huge:partition_count"]),
        redis::Value::Int(0)
    );
}
