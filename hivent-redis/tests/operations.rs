//! Operations on Redis: status with owners, lag and dead letters; replay and purge.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use hivent_core::{Backend, ConsumerSession, DeadLetterPick, Error, Registration};

fn register(backend: &dyn Backend, service: &str, partitions: u32) {
    backend
        .register(&Registration {
            service: service.to_owned(),
            events: vec!["x:y".to_owned()],
            partition_count: partitions,
        })
        .unwrap();
}

/// Status lists the service, its events, live consumers, owners, lag, the oldest
/// event's time and dead letter counts; unknown services and partitions are errors.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn status_reports_group_lag_and_dead_letters() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let backend = redis.backend();
    register(backend.as_ref(), "svc", 2);
    let session = backend.join_session("svc").unwrap();
    assert_eq!(session.heartbeat().unwrap(), vec![0, 1]);
    let old = support::gem_event("x:y", "1", "0123456789abcdef0123456789abcdef");
    redis.command("LPUSH", &["svc:1", &old, "{}"]);
    redis.command("LPUSH", &["svc:1:dead_letter", "bad"]);

    let ops = backend.operations().unwrap();
    assert_eq!(ops.services().unwrap(), vec!["svc".to_string()]);
    let status = ops.service_status("svc").unwrap();
    assert_eq!(status.partition_count, 2);
    assert_eq!(status.events, vec!["x:y".to_string()]);
    assert_eq!(status.consumers, vec![session.member_id().to_string()]);
    let p1 = &status.partitions[1];
    assert_eq!(p1.owner.as_deref(), Some(session.member_id()));
    assert_eq!((p1.waiting, p1.dead_letters), (2, 1));
    assert_eq!(
        p1.oldest_created_at.unwrap().to_rfc3339(),
        "2026-12-01T04:56:33.123+00:00"
    );
    assert_eq!(
        (
            status.partitions[0].waiting,
            status.partitions[0].dead_letters
        ),
        (0, 0)
    );

    session.leave().unwrap();
    let status = ops.service_status("svc").unwrap();
    assert!(status.consumers.is_empty());
    assert!(status.partitions.iter().all(|p| p.owner.is_none()));
    assert!(!ops.service_status("nobody").unwrap_err().is_transient());
    assert!(matches!(
        ops.dead_letters("svc", 2, 0, 10),
        Err(Error::NoSuchPartition {
            partition: 2,
            partition_count: 2,
            ..
        })
    ));
}

/// Replay moves the oldest dead letters back to the oldest end in order, fencing the
/// owner's batch in hand; purge empties the queue and says how many it held.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn replay_fences_the_batch_in_hand_and_purge_empties() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let backend = redis.backend();
    register(backend.as_ref(), "svc", 1);
    // Dead letters newest on the left: d1 is the oldest.
    redis.command("LPUSH", &["svc:0:dead_letter", "d1", "d2", "d3"]);
    redis.command("LPUSH", &["svc:0", "e1"]);
    let session = backend.join_session("svc").unwrap();
    session.heartbeat().unwrap();
    let batch = session
        .fetch(10, usize::MAX, Duration::ZERO)
        .unwrap()
        .batches;
    assert_eq!(batch[0].items, vec!["e1".to_string()]);

    let ops = backend.operations().unwrap();
    let raw = |dead: Vec<hivent_core::DeadLetter>| -> Vec<String> {
        dead.into_iter().map(|d| d.raw).collect()
    };
    assert_eq!(raw(ops.dead_letters("svc", 0, 0, 2).unwrap()), ["d1", "d2"]);
    assert_eq!(raw(ops.dead_letters("svc", 0, 1, 5).unwrap()), ["d2", "d3"]);
    assert_eq!(
        ops.replay_dead_letters("svc", 0, DeadLetterPick::Oldest(2))
            .unwrap(),
        2
    );
    assert!(session.ack(0, 1).unwrap_err().is_fenced());
    // The heartbeat renews the claim at once; the old batch still cannot be acked.
    assert_eq!(session.heartbeat().unwrap(), vec![0]);
    assert_eq!(redis.list("svc:0"), vec!["e1", "d2", "d1"]);
    let batch = session
        .fetch(10, usize::MAX, Duration::ZERO)
        .unwrap()
        .batches;
    assert_eq!(batch[0].items, vec!["d1", "d2", "e1"]);
    session.ack(0, 3).unwrap();
    assert_eq!(redis.len("svc:0"), 0);

    assert_eq!(raw(ops.dead_letters("svc", 0, 0, 10).unwrap()), ["d3"]);
    assert_eq!(
        ops.purge_dead_letters("svc", 0, DeadLetterPick::Oldest(usize::MAX))
            .unwrap(),
        1
    );
    assert!(ops.dead_letters("svc", 0, 0, 10).unwrap().is_empty());
}

/// A batch fetched before a replay stays fenced even after the heartbeat reclaimed
/// the partition, so the replayed items are never trimmed unseen.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn batch_read_before_replay_stays_fenced_after_reclaim() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let backend = redis.backend();
    register(backend.as_ref(), "svc", 1);
    redis.command("LPUSH", &["svc:0:dead_letter", "d1"]);
    redis.command("LPUSH", &["svc:0", "e1"]);
    let session = backend.join_session("svc").unwrap();
    session.heartbeat().unwrap();
    session.fetch(10, usize::MAX, Duration::ZERO).unwrap();
    backend
        .operations()
        .unwrap()
        .replay_dead_letters("svc", 0, DeadLetterPick::Oldest(10))
        .unwrap();
    assert_eq!(session.heartbeat().unwrap(), vec![0]);
    assert!(session.ack(0, 1).unwrap_err().is_fenced());
    let record = hivent_core::FailureRecord::new("boom", "test", chrono::Utc::now());
    assert!(session
        .dead_letter(0, "e1", &record)
        .unwrap_err()
        .is_fenced());
    assert_eq!(redis.list("svc:0"), vec!["e1", "d1"]);
}
