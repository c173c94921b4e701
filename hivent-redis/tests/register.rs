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
