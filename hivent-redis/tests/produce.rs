//! Producing to Redis: the gem's keyspace and JSON, atomic and idempotent emits, batches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;

use hivent_core::{Backend, EmitOptions, Envelope, Error};
use serde_json::{json, Value};

/// An emitted event lands where and as the Ruby gem's consumer reads it: one item in
/// `svc:<crc32(key) % 4>`, readable with LINDEX -1, with `payload` and the six meta
/// fields; the count and event set keep the gem's names.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn emit_writes_the_ruby_gem_keyspace_and_json() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let svc = redis.hivent("svc", 4);
    svc.signal("user:created").unwrap().receive(|_| Ok(()));
    svc.register().unwrap();

    let producer = redis.hivent("producer_app", 1);
    let event = producer
        .signal("user:created")
        .unwrap()
        .emit_with(&json!({"user": 7}), EmitOptions::version(2).key("k"))
        .unwrap();

    // zlib.crc32(b"k") == 140662621, and 140662621 % 4 == 1.
    for partition in 0..4 {
        let expected = usize::from(partition == 1);
        assert_eq!(
            redis.len(&format!("svc:{partition}")),
            expected,
            "svc:{partition}"
        );
    }
    let raw: String = redis::cmd("LINDEX")
        .arg("svc:1")
        .arg(-1)
        .query(&mut redis.raw)
        .unwrap();
    let value: Value = serde_json::from_str(&raw).unwrap();
    let top: BTreeSet<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(top, BTreeSet::from(["meta", "payload"]));
    assert_eq!(value["payload"], json!({"user": 7}));
    let meta = value["meta"].as_object().unwrap();
    let fields: BTreeSet<&str> = meta.keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        BTreeSet::from([
            "cid",
            "created_at",
            "event_uuid",
            "name",
            "producer",
            "version"
        ])
    );
    assert_eq!(meta["event_uuid"], json!(event.meta.event_uuid));
    assert_eq!(meta["name"], json!("user:created"));
    assert_eq!(meta["version"], json!(2));
    assert_eq!(meta["producer"], json!("producer_app"));
    assert_eq!(redis.get("svc:partition_count").as_deref(), Some("4"));
    assert_eq!(redis.members("user:created"), vec!["svc".to_string()]);
}

/// A receiving service without a partition count fails the emit with
/// MissingPartitionCount before anything is written to any other service.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn missing_partition_count_fails_before_any_write() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let good = redis.hivent("good", 2);
    good.signal("order:placed").unwrap().receive(|_| Ok(()));
    good.register().unwrap();
    redis.command("SADD", &["order:placed", "bad"]);

    let producer = redis.hivent("shop", 1);
    let signal = producer.signal("order:placed").unwrap();
    let error = signal.emit(&json!({"order": 1}), 1).unwrap_err();
    match error {
        Error::EmitFailed { source, .. } => match *source {
            Error::MissingPartitionCount {
                service,
                event,
                found,
            } => {
                assert_eq!(
                    (service.as_str(), event.as_str(), found),
                    ("bad", "order:placed", None)
                );
            }
            other => panic!("unexpected source {other:?}"),
        },
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(redis.len("good:0") + redis.len("good:1"), 0);

    // A count that is no positive integer is reported as found.
    redis.command("SET", &["bad:partition_count", "zero"]);
    let error = producer
        .backend()
        .publish("call-bad", &[envelope("order:placed", 3)])
        .unwrap_err();
    assert!(
        matches!(&error, Error::MissingPartitionCount { found: Some(f), .. } if f == "zero"),
        "{error:?}"
    );
    assert_eq!(redis.len("good:0") + redis.len("good:1"), 0);
}

fn envelope(name: &str, hash: u32) -> Envelope {
    let uuid = hivent_core::new_id();
    Envelope {
        name: name.to_owned(),
        partition_hash: hash,
        json: support::gem_event(name, r#"{"n":1}"#, &uuid),
    }
}

/// Each publish call is stored once, with one marker that expires: separate calls of
/// the same envelope are separate emits (the retry of one call is pinned in the crate's
/// unit tests, which can repeat a call id).
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn each_publish_call_sets_one_expiring_marker() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    for (service, count) in [("a", 2), ("b", 3)] {
        let hivent = redis.hivent(service, count);
        hivent.signal("*").unwrap().receive(|_| Ok(()));
        hivent.register().unwrap();
    }
    let backend = redis.backend();
    let event = envelope("thing:done", 5);
    assert_eq!(
        backend
            .publish("call-1", std::slice::from_ref(&event))
            .unwrap(),
        [2]
    );
    assert_eq!(
        backend
            .publish("call-2", &[event.clone(), event.clone()])
            .unwrap(),
        [2, 2]
    );
    assert_eq!(redis.list("a:1"), vec![event.json.clone(); 3]);
    assert_eq!(redis.list("b:2"), vec![event.json.clone(); 3]);
    assert_eq!(redis.len("a:0") + redis.len("b:0") + redis.len("b:1"), 0);
    // The first call of a name went by the script, which set a marker of its own; the
    // second by cached routes, whose whole calls mark the connection's marker.
    let mut markers: Vec<String> = redis::cmd("KEYS")
        .arg("hivent:emitted:*")
        .query(&mut redis.raw)
        .unwrap();
    markers.sort();
    assert_eq!(markers.len(), 2, "{markers:?}");
    assert_eq!(markers[0], "hivent:emitted:call-1");
    assert!(markers[1].starts_with("hivent:emitted:connection:"));
    assert_eq!(redis.get(&markers[1]).as_deref(), Some("call-2"));
    // The publish script marks each call with a key of its own.
    let options = support::fast_options().route_cache_ttl(std::time::Duration::ZERO);
    let scripted = hivent_redis::RedisBackend::with_options(&redis.server.url(), options).unwrap();
    scripted
        .publish("call-3", std::slice::from_ref(&event))
        .unwrap();
    scripted
        .publish("call-4", std::slice::from_ref(&event))
        .unwrap();
    let mut markers: Vec<String> = redis::cmd("KEYS")
        .arg("hivent:emitted:*")
        .query(&mut redis.raw)
        .unwrap();
    markers.sort();
    assert_eq!(markers.len(), 4, "{markers:?}");
    assert_eq!(
        markers[0..3],
        [
            "hivent:emitted:call-1",
            "hivent:emitted:call-3",
            "hivent:emitted:call-4"
        ]
    );
    for marker in markers {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&marker)
            .query(&mut redis.raw)
            .unwrap();
        assert!(ttl > 0 && ttl <= 300_000, "{ttl}");
    }
}

/// A batch emit stores every event, each in its partition, in emit order.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn batch_emit_stores_all_events_in_order() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let one = redis.hivent("one", 1);
    one.signal("tick").unwrap().receive(|_| Ok(()));
    one.register().unwrap();
    let three = redis.hivent("three", 3);
    three.signal("tick").unwrap().receive(|_| Ok(()));
    three.register().unwrap();

    let producer = redis.hivent("clock", 1);
    let signal = producer.signal("tick").unwrap();
    let mut batch = producer.batch();
    for i in 0..7 {
        batch
            .push(
                &signal,
                &json!({"i": i}),
                EmitOptions::version(1).key(format!("k{i}")),
            )
            .unwrap();
    }
    let events = batch.emit().unwrap();
    let uuids = |items: Vec<String>| -> Vec<String> {
        items
            .iter()
            .rev()
            .map(|raw| hivent_core::Event::from_json(raw).unwrap().meta.event_uuid)
            .collect()
    };
    let emitted: Vec<String> = events.iter().map(|e| e.meta.event_uuid.clone()).collect();
    assert_eq!(uuids(redis.list("one:0")), emitted);
    for partition in 0..3u32 {
        let expected: Vec<String> = events
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                hivent_core::partition_hash(Some(&format!("k{i}")), &Value::Null) % 3 == partition
            })
            .map(|(_, e)| e.meta.event_uuid.clone())
            .collect();
        assert_eq!(uuids(redis.list(&format!("three:{partition}"))), expected);
    }
}

/// After SCRIPT FLUSH the next emit reloads the script instead of failing.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn emit_survives_script_flush() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let svc = redis.hivent("svc", 1);
    svc.signal("e").unwrap().receive(|_| Ok(()));
    svc.register().unwrap();
    let producer = redis.hivent("p", 1);
    let signal = producer.signal("e").unwrap();
    signal.emit(&json!(1), 1).unwrap();
    redis.command("SCRIPT", &["FLUSH"]);
    signal.emit(&json!(2), 1).unwrap();
    assert_eq!(redis.len("svc:0"), 2);
}

/// When Redis goes away under a producer, an emit is tried again (4 tries by default)
/// and then fails with a transient error that names the signal. The pooled connection
/// had sent the call before it broke, so the error says the event may have been stored
/// and carries the call to retry; a producer that could not send anything (no pooled
/// connection, the connection refused) says it was not emitted.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn emit_to_a_vanished_redis_names_the_signal() {
    let Some(redis) = support::redis() else {
        return;
    };
    let svc = redis.hivent("svc", 1);
    svc.signal("order:placed").unwrap().receive(|_| Ok(()));
    svc.register().unwrap();
    let producer = redis.hivent("shop", 1);
    let signal = producer.signal("order:placed").unwrap();
    // Two emits: the next one goes by transaction, the write a broken pooled
    // connection sends before it fails.
    signal.emit(&json!({"n": 1}), 1).unwrap();
    signal.emit(&json!({"n": 1}), 1).unwrap();
    let unpooled = hivent_redis::RedisBackend::with_options(
        &redis.server.url(),
        support::fast_options().pool_size(0),
    )
    .unwrap();
    let unpooled = hivent_core::Hivent::new(
        hivent_core::Config::builder()
            .client_id("shop")
            .build()
            .unwrap(),
        std::sync::Arc::new(unpooled),
    );
    drop(redis);
    let error = signal.emit(&json!({"n": 2}), 1).unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert!(
        matches!(&error, Error::EmitUncertain { name, .. } if name == "order:placed"),
        "{error:?}"
    );
    assert!(error.emit_retry().is_some());
    assert!(
        error
            .to_string()
            .starts_with("signal \"order:placed\" (event "),
        "{error}"
    );
    let error = unpooled
        .signal("order:placed")
        .unwrap()
        .emit(&json!({"n": 3}), 1)
        .unwrap_err();
    assert!(
        matches!(&error, Error::EmitFailed { name, .. } if name == "order:placed"),
        "{error:?}"
    );
    assert!(error.to_string().contains("was not emitted"), "{error}");
}

/// A reply that never comes (clients paused longer than the response timeout) makes the
/// emit uncertain, not failed; retrying the same call then leaves exactly one copy.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn a_lost_reply_is_uncertain_and_its_retry_stores_one_copy() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let svc = redis.hivent("svc", 1);
    svc.signal("order:placed").unwrap().receive(|_| Ok(()));
    svc.register().unwrap();
    let options = support::fast_options()
        .response_timeout(std::time::Duration::from_millis(100))
        .emit_tries(1);
    let backend = hivent_redis::RedisBackend::with_options(&redis.server.url(), options).unwrap();
    let producer = hivent_core::Hivent::new(
        hivent_core::Config::builder()
            .client_id("shop")
            .build()
            .unwrap(),
        std::sync::Arc::new(backend),
    );
    let signal = producer.signal("order:placed").unwrap();
    redis.pause_writes(400);
    let error = signal.emit(&json!({"n": 1}), 1).unwrap_err();
    assert!(matches!(error, Error::EmitUncertain { .. }), "{error:?}");
    assert!(
        error.to_string().contains("may have been stored"),
        "{error}"
    );
    let retry = error.emit_retry().unwrap().clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let counts = loop {
        match producer.retry_emit(&retry) {
            Ok(counts) => break counts,
            Err(error) => {
                assert!(std::time::Instant::now() < deadline, "{error}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    };
    assert_eq!(counts, [1]);
    assert_eq!(redis.len("svc:0"), 1);
    // Retrying once more stores nothing either.
    assert_eq!(producer.retry_emit(&retry).unwrap(), [1]);
    assert_eq!(redis.len("svc:0"), 1);
}

/// Connecting tries PING again when Redis does not answer in time (here: paused
/// clients), so one lost reply does not fail a producer's start.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn connect_retries_a_ping_that_got_no_answer() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let mut pause = || {
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(400)
            .arg("ALL")
            .query(&mut redis.raw)
            .unwrap();
    };
    let options = hivent_redis::RedisOptions::default()
        .response_timeout(std::time::Duration::from_millis(150))
        .emit_backoff(std::time::Duration::from_millis(100));
    let url = redis.server.url();
    pause();
    let once = hivent_redis::RedisBackend::with_options(&url, options.clone().emit_tries(1));
    assert!(
        matches!(once, Err(hivent_redis::Error::Unreachable { .. })),
        "a single PING should have timed out: {once:?}"
    );
    pause();
    let backend = hivent_redis::RedisBackend::with_options(&url, options);
    assert!(backend.is_ok(), "{:?}", backend.err());
}
