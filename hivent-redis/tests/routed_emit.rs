//! Emits by cached routes: exact after hivent registrations, bounded after the gem's,
//! one copy after a lost reply, and what a colliding list leaves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use hivent_core::{Backend, Envelope};
use hivent_redis::RedisBackend;
use support::{gem_envelope, registration};

fn publish(backend: &RedisBackend, envelope: Envelope) -> Vec<usize> {
    backend
        .publish(&hivent_core::new_id(), &[envelope])
        .unwrap()
}

/// Once the routes are read, emits run no script: one transaction each.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn steady_emits_run_no_script() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let backend = redis.backend();
    backend.register(&registration("svc", &["e"], 4)).unwrap();
    // The first emit of a name goes by the script, the second reads its routes and
    // goes by transaction.
    assert_eq!(publish(&backend, gem_envelope("e", 1)), [1]);
    assert_eq!(redis.calls("exec"), 0);
    assert_eq!(publish(&backend, gem_envelope("e", 1)), [1]);
    assert_eq!(redis.calls("exec"), 1);
    let (scripts, transactions) = (redis.calls("evalsha"), redis.calls("exec"));
    for hash in 0..10 {
        assert_eq!(publish(&backend, gem_envelope("e", hash)), [1]);
    }
    assert_eq!(redis.calls("evalsha"), scripts);
    assert_eq!(redis.calls("exec"), transactions + 10);
    let stored: usize = (0..4).map(|p| redis.len(&format!("svc:{p}"))).sum();
    assert_eq!(stored, 12);
    // The connection's marker names the last call and keeps the lifetime its first
    // transaction gave it (the others keep it: KEEPTTL).
    let markers: Vec<String> = redis::cmd("KEYS")
        .arg("hivent:emitted:connection:*")
        .query(&mut redis.raw)
        .unwrap();
    assert_eq!(markers.len(), 1, "{markers:?}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&markers[0])
        .query(&mut redis.raw)
        .unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
    assert_eq!(redis.len("svc:1"), 5, "hashes 1, 1, 1, 5, 9");
}

/// A registration by hivent changes where the very next emit of a producer that cached
/// the routes goes: a first receiver, another one, a receiver gone, a new count.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn a_hivent_registration_is_seen_by_the_next_emit() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let producer = redis.backend();
    let registrar = redis.backend();
    // Nobody receives it yet: the route is cached empty, and the next emit after a
    // registration reaches the new receiver.
    assert_eq!(publish(&producer, gem_envelope("e", 3)), [0]);
    registrar.register(&registration("a", &["e"], 1)).unwrap();
    assert_eq!(publish(&producer, gem_envelope("e", 3)), [1]);
    registrar.register(&registration("b", &["e"], 1)).unwrap();
    assert_eq!(publish(&producer, gem_envelope("e", 3)), [2]);
    assert_eq!((redis.len("a:0"), redis.len("b:0")), (2, 1));
    registrar
        .register(&registration("b", &["other"], 1))
        .unwrap();
    assert_eq!(publish(&producer, gem_envelope("e", 3)), [1]);
    assert_eq!((redis.len("a:0"), redis.len("b:0")), (3, 1));
    // A count changes once the old partitions are drained.
    redis.command("DEL", &["a:0"]);
    registrar.register(&registration("a", &["e"], 4)).unwrap();
    assert_eq!(publish(&producer, gem_envelope("e", 3)), [1]);
    assert_eq!((redis.len("a:0"), redis.len("a:3")), (0, 1));
}

/// The Ruby gem registers by writing the sets itself: a producer with cached routes
/// sends to its service once the routes' lifetime is over, and at once without a cache.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn a_gem_registration_is_seen_once_the_routes_expire() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let url = redis.server.url();
    let with_ttl = |ttl| {
        RedisBackend::with_options(&url, support::fast_options().route_cache_ttl(ttl)).unwrap()
    };
    let cached = with_ttl(Duration::from_millis(200));
    let uncached = with_ttl(Duration::ZERO);
    cached.register(&registration("a", &["e"], 1)).unwrap();
    assert_eq!(publish(&cached, gem_envelope("e", 0)), [1]);
    redis.command("SET", &["gem:partition_count", "1"]);
    redis.command("SADD", &["e", "gem"]);
    assert_eq!(publish(&uncached, gem_envelope("e", 0)), [2]);
    assert_eq!(redis.len("gem:0"), 1);
    support::wait_until(Duration::from_secs(10), "the cached routes expire", || {
        publish(&cached, gem_envelope("e", 0)) == [2]
    });
    assert_eq!(redis.len("gem:0"), 2);
}

/// A reply lost in a stalled Redis (clients paused past the response timeout): the
/// routed try's transaction is in doubt, and the retries (the script, after closing
/// that connection on the server) leave exactly one copy.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn a_routed_emit_whose_reply_was_lost_is_stored_once() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let options = support::fast_options()
        .response_timeout(Duration::from_millis(100))
        .emit_tries(1);
    let backend = Arc::new(RedisBackend::with_options(&redis.server.url(), options).unwrap());
    backend.register(&registration("svc", &["e"], 1)).unwrap();
    // Two emits: the second reads the routes, so the next goes by transaction.
    assert_eq!(publish(&backend, gem_envelope("e", 0)), [1]);
    assert_eq!(publish(&backend, gem_envelope("e", 0)), [1]);
    redis.pause_writes(500);
    let envelope = gem_envelope("e", 0);
    // Either the retries inside `publish` outlast the pause, or the call is uncertain.
    match backend.publish("call-1", std::slice::from_ref(&envelope)) {
        Ok(counts) => assert_eq!(counts, [1]),
        Err(error) => assert!(
            matches!(error, hivent_core::Error::MaybeStored { .. }),
            "{error:?}"
        ),
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match backend.republish("call-1", std::slice::from_ref(&envelope)) {
            Ok(counts) => break assert_eq!(counts, [1]),
            Err(error) => {
                assert!(std::time::Instant::now() < deadline, "{error}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    // Whatever was still queued in Redis has run (or was dropped) by now.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        redis.len("svc:0"),
        3,
        "the first two emits and one copy of call-1"
    );
}

/// A partition list that another tool turned into another type after registration: a
/// routed emit checks types only as it pushes, so its other lists get their events and
/// the error says so; a call with that list alone writes nothing, not even its marker.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn a_colliding_list_fails_a_routed_emit_naming_what_was_stored() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let backend = redis.backend();
    backend
        .register(&registration("bystander", &["e"], 1))
        .unwrap();
    backend
        .register(&registration("blocked", &["e"], 1))
        .unwrap();
    backend.register(&registration("alone", &["g"], 1)).unwrap();
    assert_eq!(publish(&backend, gem_envelope("e", 0)), [2]);
    assert_eq!(publish(&backend, gem_envelope("g", 0)), [1]);
    redis.command("DEL", &["blocked:0", "alone:0"]);
    redis.command("SET", &["blocked:0", "another tool's value"]);
    redis.command("SET", &["alone:0", "another tool's value"]);
    let error = backend
        .publish("call-1", &[gem_envelope("e", 0)])
        .unwrap_err();
    let text = hivent_core::ErrorChain(&error).to_string();
    assert!(
        text.contains("\"blocked:0\" is a string") && text.contains("stored in its other lists"),
        "{text}"
    );
    assert_eq!(redis.len("bystander:0"), 2);
    let only = gem_envelope("g", 0);
    let error = backend
        .publish("call-2", std::slice::from_ref(&only))
        .unwrap_err();
    let text = hivent_core::ErrorChain(&error).to_string();
    assert!(
        text.contains("\"alone:0\" is a string") && text.contains("nothing was written"),
        "{text}"
    );
    assert_eq!(
        redis.command("EXISTS", &["hivent:emitted:call-2"]),
        redis::Value::Int(0)
    );
    redis.command("DEL", &["alone:0"]);
    assert_eq!(
        backend
            .republish("call-2", std::slice::from_ref(&only))
            .unwrap(),
        [1]
    );
    assert_eq!(redis.len("alone:0"), 1);
}

/// Through `Signal::emit`, a partly stored emit is its own error, with no retry offered.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn a_partly_stored_emit_is_reported_as_such_and_not_retried() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let backend = redis.backend();
    backend
        .register(&registration("bystander", &["e"], 1))
        .unwrap();
    backend
        .register(&registration("blocked", &["e"], 1))
        .unwrap();
    let producer = hivent_core::Hivent::new(
        hivent_core::Config::builder()
            .client_id("shop")
            .build()
            .unwrap(),
        backend.clone(),
    );
    let signal = producer.signal("e").unwrap();
    signal.emit(&serde_json::json!({"n": 1}), 1).unwrap();
    signal.emit(&serde_json::json!({"n": 2}), 1).unwrap();
    redis.command("DEL", &["blocked:0"]);
    redis.command("SET", &["blocked:0", "another tool's value"]);
    let error = signal.emit(&serde_json::json!({"n": 3}), 1).unwrap_err();
    assert!(
        matches!(error, hivent_core::Error::EmitPartlyStored { .. }),
        "{error:?}"
    );
    assert!(error.emit_retry().is_none());
    assert!(!error.is_transient());
    assert!(
        error
            .to_string()
            .contains("was stored for some receiving services"),
        "{error}"
    );
    assert_eq!(redis.len("bystander:0"), 3);
}

/// A stalled Redis fails a routed emit after about one response timeout, not one per
/// reply the transaction expects: when the emit gave up, Redis was still paused.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn a_stalled_redis_fails_a_routed_emit_within_one_timeout() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let options = support::fast_options()
        .response_timeout(Duration::from_millis(500))
        .emit_tries(1);
    let backend = Arc::new(RedisBackend::with_options(&redis.server.url(), options).unwrap());
    backend.register(&registration("svc", &["e"], 24)).unwrap();
    // 24 lists: a transaction of 29 replies, which at one timeout each would outlast
    // the pause.
    let batch: Vec<Envelope> = (0..24).map(|hash| gem_envelope("e", hash)).collect();
    for _ in 0..2 {
        backend.publish(&hivent_core::new_id(), &batch).unwrap();
    }
    redis.pause_writes(10_000);
    let error = backend.publish(&hivent_core::new_id(), &batch).unwrap_err();
    assert!(
        matches!(error, hivent_core::Error::MaybeStored { .. }),
        "{error:?}"
    );
    // A write with a short timeout still cannot get through: the pause is on.
    let mut probe = redis::Client::open(redis.server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let still_paused = redis::cmd("SET")
        .arg("probe")
        .arg("1")
        .query::<()>(&mut probe)
        .is_err();
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query(&mut redis.raw)
        .unwrap();
    assert!(still_paused, "the emit waited out most of the 10 s pause");
}
