//! Consuming from Redis: gem-written events, script loss, fencing, the group's split,
//! hand-over on leave and wake-ups.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hivent_core::{desired_partitions, Backend, ConsumerSession, Envelope, Fetched, Registration};
use hivent_redis::RedisSession;
use serde_json::json;
use support::wait_until;

fn register(backend: &dyn Backend, service: &str, partitions: u32) {
    backend
        .register(&Registration {
            service: service.to_owned(),
            events: vec!["job".to_owned()],
            partition_count: partitions,
        })
        .unwrap();
}

fn envelope(hash: u32, n: usize) -> Envelope {
    Envelope {
        name: "job".to_owned(),
        partition_hash: hash,
        json: support::gem_event("job", &format!(r#"{{"n":{n}}}"#), &hivent_core::new_id()),
    }
}

/// An event pushed with plain LPUSH in the Ruby gem's format is processed and removed.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn consumes_an_event_written_by_the_ruby_gem() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let svc = redis.hivent("svc", 1);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    svc.signal("user:created").unwrap().receive(move |event| {
        sink.lock().unwrap().push(event.payload.clone());
        Ok(())
    });
    let consumer = svc.consumer().unwrap();
    let raw = support::gem_event(
        "user:created",
        r#"{"id":42}"#,
        "0123456789abcdef0123456789abcdee",
    );
    redis.command("LPUSH", &["svc:0", &raw]);
    assert_eq!(consumer.run_until_idle().unwrap(), 1);
    assert_eq!(*seen.lock().unwrap(), vec![json!({"id": 42})]);
    assert_eq!(redis.len("svc:0"), 0);
}

/// After SCRIPT FLUSH a consumer's heartbeat and ack reload their scripts and work.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn consumer_survives_script_flush() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let svc = redis.hivent("svc", 2);
    svc.signal("e").unwrap().receive(|_| Ok(()));
    let consumer = svc.consumer().unwrap();
    let signal = svc.signal("e").unwrap();
    signal.emit(&json!(1), 1).unwrap();
    assert_eq!(consumer.run_until_idle().unwrap(), 1);
    redis.command("SCRIPT", &["FLUSH"]);
    signal.emit(&json!(2), 1).unwrap();
    redis.command("SCRIPT", &["FLUSH"]);
    assert_eq!(consumer.run_until_idle().unwrap(), 1);
    assert_eq!(redis.len("svc:0") + redis.len("svc:1"), 0);
}

/// A consumer that stopped heartbeating past its lifetime loses its partitions to
/// another: its ack and dead-letter are rejected as Fenced and change nothing, it
/// fetches nothing more, and the new owner processes every event, none lost.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn stalled_consumer_is_fenced_and_nothing_is_lost() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let backend = redis.backend();
    register(backend.as_ref(), "svc", 2);
    let emitted: Vec<Envelope> = (0..6).map(|n| envelope(n as u32, n)).collect();
    backend.publish("call-1", &emitted).unwrap();

    let a = backend.join_session("svc").unwrap();
    assert_eq!(a.heartbeat().unwrap(), vec![0, 1]);
    let in_hand = a.fetch(10, usize::MAX, Duration::ZERO).unwrap().batches;
    assert_eq!(in_hand.len(), 2);

    // A never heartbeats again; B takes over once A's membership expired.
    let b = backend.join_session("svc").unwrap();
    wait_until(Duration::from_secs(5), "B owns every partition", || {
        b.heartbeat().unwrap() == vec![0, 1]
    });

    for batch in &in_hand {
        let ack = a.ack(batch.partition, batch.items.len()).unwrap_err();
        assert!(ack.is_fenced(), "{ack:?}");
        let record = hivent_core::FailureRecord::new("boom", "a", chrono::Utc::now());
        let dead = a
            .dead_letter(batch.partition, &batch.items[0], &record)
            .unwrap_err();
        assert!(dead.is_fenced(), "{dead:?}");
        let attempt = a
            .record_attempt(batch.partition, &batch.items[0], chrono::Utc::now())
            .unwrap_err();
        assert!(attempt.is_fenced(), "{attempt:?}");
    }
    assert_eq!(redis.len("svc:0"), 3);
    assert_eq!(redis.len("svc:1"), 3);
    assert_eq!(
        redis.len("svc:0:dead_letter") + redis.len("svc:1:dead_letter"),
        0
    );
    assert_eq!(
        a.fetch(10, usize::MAX, Duration::ZERO).unwrap(),
        Fetched::default()
    );

    let mut processed = Vec::new();
    for batch in b.fetch(10, usize::MAX, Duration::ZERO).unwrap().batches {
        b.ack(batch.partition, batch.items.len()).unwrap();
        processed.extend(batch.items);
    }
    processed.sort();
    let mut expected: Vec<String> = emitted.into_iter().map(|e| e.json).collect();
    expected.sort();
    assert_eq!(processed, expected);
    assert_eq!(redis.len("svc:0") + redis.len("svc:1"), 0);
}

/// Heartbeats every session until each owns exactly its share; returns the owned sets.
fn settle(sessions: &[RedisSession], partitions: u32) -> Vec<Vec<u32>> {
    let members: Vec<String> = sessions.iter().map(|s| s.member_id().to_owned()).collect();
    let wanted: Vec<Vec<u32>> = members
        .iter()
        .map(|m| desired_partitions(&members, m, partitions))
        .collect();
    let mut owned = Vec::new();
    wait_until(Duration::from_secs(5), "the split settles", || {
        owned = sessions.iter().map(|s| s.heartbeat().unwrap()).collect();
        owned == wanted
    });
    owned
}

/// Two and three workers split 4 partitions 2/2 and 2/1/1, each partition owned once.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn workers_split_partitions_evenly() {
    let Some(redis) = support::redis() else {
        return;
    };
    let backend = redis.backend();
    register(backend.as_ref(), "svc", 4);
    let mut sessions = vec![
        backend.join_session("svc").unwrap(),
        backend.join_session("svc").unwrap(),
    ];
    let mut sizes: Vec<usize> = settle(&sessions, 4).iter().map(Vec::len).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![2, 2]);

    sessions.push(backend.join_session("svc").unwrap());
    let owned = settle(&sessions, 4);
    let mut sizes: Vec<usize> = owned.iter().map(Vec::len).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![1, 1, 2]);
    let mut all: Vec<u32> = owned.concat();
    all.sort_unstable();
    assert_eq!(all, vec![0, 1, 2, 3]);
}

/// A worker that leaves releases its partitions at once: the remaining worker owns
/// them after its very next heartbeat.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn leaving_worker_hands_over_within_one_heartbeat() {
    let Some(redis) = support::redis() else {
        return;
    };
    let backend = redis.backend();
    register(backend.as_ref(), "svc", 4);
    let sessions = vec![
        backend.join_session("svc").unwrap(),
        backend.join_session("svc").unwrap(),
    ];
    settle(&sessions, 4);
    sessions[0].leave().unwrap();
    assert_eq!(sessions[1].heartbeat().unwrap(), vec![0, 1, 2, 3]);
}

/// An idle fetch waiting for events returns as soon as one is emitted.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn idle_fetch_wakes_on_emit() {
    let Some(redis) = support::redis() else {
        return;
    };
    let backend = redis.backend();
    register(backend.as_ref(), "svc", 1);
    let session = backend.join_session("svc").unwrap();
    session.heartbeat().unwrap();
    let producer = redis.backend();
    let started = Instant::now();
    let emitter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        producer.publish("call-1", &[envelope(0, 1)]).unwrap();
    });
    let first = session
        .fetch(10, usize::MAX, Duration::from_secs(20))
        .unwrap()
        .batches;
    emitter.join().unwrap();
    let batches = if first.is_empty() {
        session
            .fetch(10, usize::MAX, Duration::ZERO)
            .unwrap()
            .batches
    } else {
        first
    };
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].items.len(), 1);
}

/// A full worker run (heartbeat thread, wake-ups, graceful stop) processes every
/// event and leaves the group.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn worker_run_processes_and_leaves() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let svc = redis.hivent("svc", 2);
    let seen = Arc::new(Mutex::new(0usize));
    let sink = Arc::clone(&seen);
    svc.signal("job").unwrap().receive(move |_| {
        *sink.lock().unwrap() += 1;
        Ok(())
    });
    // Registered before the first emit, which would otherwise reach no service.
    svc.register().unwrap();
    let shutdown = hivent_core::Shutdown::new();
    let stop = shutdown.clone();
    let worker = {
        let svc = svc.clone();
        std::thread::spawn(move || svc.run(2, hivent_core::ConsumerOptions::default(), &shutdown))
    };
    let signal = svc.signal("job").unwrap();
    for n in 0..20 {
        signal.emit(&json!({"n": n}), 1).unwrap();
    }
    wait_until(Duration::from_secs(10), "every event is processed", || {
        *seen.lock().unwrap() == 20
    });
    stop.trigger();
    worker.join().unwrap().unwrap();
    assert_eq!(redis.len("svc:0") + redis.len("svc:1"), 0);
    let members: usize = redis::cmd("ZCARD")
        .arg("svc:hivent:members")
        .query(&mut redis.raw)
        .unwrap();
    assert_eq!(members, 0);
}

/// An item that is not UTF-8 (written by some other tool) is dead-lettered byte for byte
/// and the consumer goes on: it is no poison pill.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn non_utf8_item_is_dead_lettered_exactly() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let recorder = Arc::new(FailureRecorder::default());
    let svc = hivent_core::Hivent::new(
        hivent_core::Config::builder()
            .client_id("bytes")
            .life_cycle_event_handler(recorder.clone())
            .build()
            .unwrap(),
        redis.backend(),
    );
    let sink = seen.clone();
    svc.signal("ok:event").unwrap().receive(move |e| {
        sink.lock().push(e.payload.clone());
        Ok(())
    });
    let consumer = svc.consumer().unwrap();
    // Two different items with the same lossy text (both invalid bytes become U+FFFD),
    // and an otherwise valid event holding an invalid byte in a string.
    let garbage: Vec<Vec<u8>> = vec![
        b"\xff\xfe not utf-8 \xc3".to_vec(),
        b"\xfe\xff not utf-8 \xc3".to_vec(),
        support::gem_event("ok:event", "{\"name\":\"caf~\"}", &hivent_core::new_id())
            .into_bytes()
            .into_iter()
            .map(|b| if b == b'~' { 0xe9 } else { b })
            .collect(),
    ];
    for item in &garbage {
        let _: i64 = redis::cmd("LPUSH")
            .arg("bytes:0")
            .arg(item.as_slice())
            .query(&mut redis.raw)
            .unwrap();
    }
    redis
        .hivent("producer", 1)
        .signal("ok:event")
        .unwrap()
        .emit(&serde_json::json!({"fine": true}), 1)
        .unwrap();
    assert_eq!(consumer.run_until_idle().unwrap(), 4);
    assert_eq!(*seen.lock(), [serde_json::json!({"fine": true})]);
    let mut dead: Vec<Vec<u8>> = redis::cmd("LRANGE")
        .arg("bytes:0:dead_letter")
        .arg(0)
        .arg(-1)
        .query(&mut redis.raw)
        .unwrap();
    dead.reverse();
    assert_eq!(dead, garbage);
    assert_eq!(redis.len("bytes:0"), 0);
    let reasons = recorder.0.lock().clone();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons.iter().all(|r| r.contains("is not UTF-8")),
        "{reasons:?}"
    );
    // Not retried, each with its record, and listed although not UTF-8.
    let ops = svc.backend().operations().unwrap();
    let entries = hivent_core::DeadLetterQueue::new(ops, "bytes")
        .list(&hivent_core::DeadLetterFilter::all())
        .unwrap();
    let records: Vec<(u32, bool)> = entries
        .iter()
        .map(|e| {
            e.record
                .as_ref()
                .map(|r| (r.attempts, r.permanent))
                .unwrap()
        })
        .collect();
    assert_eq!(records, [(1, true); 3]);
    assert_eq!(entries[0].raw, String::from_utf8_lossy(&garbage[0]));
}

/// Keeps the error text of every failure.
#[derive(Default)]
struct FailureRecorder(parking_lot::Mutex<Vec<String>>);

impl hivent_core::LifeCycleEventHandler for FailureRecorder {
    fn event_processing_failed(
        &self,
        error: &hivent_core::Error,
        _payload: Option<&serde_json::Value>,
        _raw: &str,
        _queue: &str,
    ) {
        self.0.lock().push(error.to_string());
    }
}

/// A worker restarted on the same host does not wait for its own ghost: a member of
/// this host whose process is gone is removed at join, and its partitions are claimed
/// at the first heartbeat rather than after the ghost's lifetime. Live members are never
/// removed: not a running process of this host, nor one of another pid namespace (a
/// container with the same host name) whose pid this host does not run.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn restarted_worker_does_not_wait_for_its_ghost() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let backend = redis.backend();
    register(backend.as_ref(), "ghosted", 4);
    let probe = backend.join_session("ghosted").unwrap();
    // <host>-<pid>-<start>-<pidns>-<boot>-<random>
    let parts: Vec<String> = probe
        .member_id()
        .rsplitn(6, '-')
        .map(String::from)
        .collect();
    let (boot, pidns, host) = (&parts[1], &parts[2], &parts[5]);
    probe.leave().unwrap();
    let dead_pid = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    let mut live = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", live.id())).unwrap();
    let live_start = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_owned();
    // The ghost: a member of this host with a long lifetime left, owning everything.
    let ghost = format!("{host}-{dead_pid}-12345-{pidns}-{boot}-0123456789ab");
    let running = format!(
        "{host}-{}-{live_start}-{pidns}-{boot}-0123456789ac",
        live.id()
    );
    let other_namespace = format!("{host}-{dead_pid}-12345-1{pidns}-{boot}-0123456789ad");
    for member in [&ghost, &running, &other_namespace] {
        let _: i64 = redis::cmd("ZADD")
            .arg("ghosted:hivent:members")
            .arg(9_999_999_999_999_i64)
            .arg(member)
            .query(&mut redis.raw)
            .unwrap();
    }
    for p in 0..4 {
        let _: i64 = redis::cmd("HSET")
            .arg("ghosted:hivent:owners")
            .arg(p)
            .arg(&ghost)
            .query(&mut redis.raw)
            .unwrap();
        let _: i64 = redis::cmd("HSET")
            .arg("ghosted:hivent:tokens")
            .arg(p)
            .arg(1_000 + p)
            .query(&mut redis.raw)
            .unwrap();
    }
    let restarted = backend.join_session("ghosted").unwrap();
    let mut members: Vec<String> = redis::cmd("ZRANGE")
        .arg("ghosted:hivent:members")
        .arg(0)
        .arg(-1)
        .query(&mut redis.raw)
        .unwrap();
    members.sort();
    let mut expected = vec![running.clone(), other_namespace.clone()];
    expected.sort();
    assert_eq!(members, expected);
    // The ghost's partitions are free; the two live members hold none, so the restarted
    // worker claims its share of three members at its first heartbeat.
    let owned = restarted.heartbeat().unwrap();
    assert!(!owned.is_empty(), "{owned:?}");
    live.kill().unwrap();
    live.wait().unwrap();
}

/// A heartbeat's work follows the member's share, not the partition count: with 1,024
/// partitions split over 16 members, one heartbeat reads a few claims per partition it
/// owns and never the whole owner table.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn heartbeat_cost_follows_the_share() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let backend = redis.backend();
    register(backend.as_ref(), "wide", 1024);
    let sessions: Vec<RedisSession> = (0..16)
        .map(|_| backend.join_session("wide").unwrap())
        .collect();
    let owned = settle(&sessions, 1024);
    assert!(
        owned.iter().all(|o| o.len() == 64),
        "{:?}",
        owned.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut redis.raw)
        .unwrap();
    assert_eq!(sessions[0].heartbeat().unwrap().len(), 64);
    assert_eq!(redis.calls("hgetall"), 0);
    let reads = redis.calls("hget");
    assert!(reads <= 4 * 64, "{reads} claim reads for a share of 64");
}

/// A fetch reads the partitions wake-ups named, and every partition once per idle
/// wait: an event pushed with no wake-up (as the Ruby gem pushes) to an otherwise quiet
/// partition is handled while another partition stays busy.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn a_quiet_partition_is_read_while_another_is_busy() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let svc = redis.hivent("busy", 2);
    let (seen_tx, seen) = crossbeam_channel::unbounded::<String>();
    svc.signal("b:e").unwrap().receive(move |e| {
        std::thread::sleep(Duration::from_millis(1));
        let _ = seen_tx.send(e.meta.event_uuid.clone());
        Ok(())
    });
    svc.register().unwrap();
    let busy_key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| {
            hivent_core::partition_for(
                hivent_core::partition_hash(Some(k), &serde_json::json!(null)),
                2,
            ) == 0
        })
        .unwrap();
    let shutdown = hivent_core::Shutdown::new();
    let stop = shutdown.clone();
    let options = hivent_core::ConsumerOptions::default().idle_wait(Duration::from_millis(100));
    let worker = {
        let svc = svc.clone();
        std::thread::spawn(move || svc.run(1, options, &shutdown))
    };
    let producing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let producer = {
        let (producing, signal) = (
            producing.clone(),
            redis.hivent("p", 1).signal("b:e").unwrap(),
        );
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while producing.load(std::sync::atomic::Ordering::SeqCst) {
                signal
                    .emit_with(
                        &serde_json::json!({"n": sent}),
                        hivent_core::EmitOptions::version(1).key(busy_key.clone()),
                    )
                    .unwrap();
                sent += 1;
            }
            sent
        })
    };
    // Once partition 0 keeps the worker busy, the gem's event goes to partition 1,
    // unannounced.
    for _ in 0..200 {
        seen.recv_timeout(Duration::from_secs(30)).unwrap();
    }
    let quiet = hivent_core::new_id();
    redis.command(
        "LPUSH",
        &["busy:1", &support::gem_event("b:e", "{}", &quiet)],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut found = false;
    while std::time::Instant::now() < deadline && !found {
        if let Ok(uuid) = seen.recv_timeout(Duration::from_millis(100)) {
            found = uuid == quiet;
        }
    }
    producing.store(false, std::sync::atomic::Ordering::SeqCst);
    let sent = producer.join().unwrap();
    stop.trigger();
    worker.join().unwrap().unwrap();
    assert!(
        found,
        "the unannounced event in the quiet partition was not handled within 30 s"
    );
    assert!(sent > 0);
    assert_eq!(redis.len("busy:1"), 0);
}

/// A busy worker's fetch reads only the partitions with news: partitions a fetch found
/// empty are not read again until a wake-up names them (or the idle read of all), even
/// when that fetch also found events elsewhere. Counted in Redis: `LRANGE` calls.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn a_busy_fetch_reads_only_partitions_with_news() {
    use hivent_core::{Backend, ConsumerSession};
    let Some(mut redis) = support::redis() else {
        return;
    };
    let backend = redis.backend();
    backend
        .register(&hivent_core::Registration {
            service: "news".into(),
            events: vec!["n:e".into()],
            partition_count: 8,
        })
        .unwrap();
    let session = backend.join_session("news").unwrap();
    assert_eq!(session.heartbeat().unwrap().len(), 8);
    let emit = |hash: u32| {
        backend
            .publish(
                &hivent_core::new_id(),
                &[hivent_core::Envelope {
                    name: "n:e".into(),
                    partition_hash: hash,
                    json: support::gem_event("n:e", "{}", &hivent_core::new_id()),
                }],
            )
            .unwrap();
    };
    // A long wait: the read of all partitions happens on the first fetch only.
    let wait = Duration::from_secs(60);
    emit(0);
    let first = session.fetch(10, 1 << 20, wait).unwrap();
    assert_eq!(first.batches.len(), 1);
    session.ack(0, 1).unwrap();
    // Partition 0 was read (it may hold more) and 3 gets news: two partitions to read
    // (in one fetch, or in two if the wake-up comes while the first waits), not the six
    // found empty with them.
    emit(3);
    let before = redis.calls("lrange");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let fetched = session.fetch(10, 1 << 20, wait).unwrap();
        if fetched.batches.iter().any(|b| b.partition == 3) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "partition 3 was never read"
        );
    }
    assert_eq!(
        redis.calls("lrange") - before,
        2,
        "partitions read for news of one"
    );
}

/// One poll of a consumer owning many partitions with news costs three script calls
/// (heartbeat, fetch, one acknowledgement of every batch), not one acknowledgement per
/// partition: with round trips of 0.2 ms, one per partition was what kept a worker of
/// 256 partitions from keeping up with 5,000 events/s.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn a_poll_of_many_partitions_acknowledges_them_in_one_call() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let backend = redis.backend();
    register(backend.as_ref(), "many", 8);
    let svc = redis.hivent("many", 8);
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    svc.signal("job").unwrap().receive(move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    });
    let consumer = svc.consumer().unwrap();
    let one_in_each = |call: &str| {
        let emitted: Vec<Envelope> = (0..8).map(|n| envelope(n as u32, n)).collect();
        backend.publish(call, &emitted).unwrap();
    };
    // The first round loads the scripts (a refused EVALSHA counts as a call).
    one_in_each("call-1");
    assert_eq!(consumer.poll().unwrap(), 8);
    one_in_each("call-2");
    let (scripts, trims) = (redis.calls("evalsha"), redis.calls("ltrim"));
    assert_eq!(consumer.poll().unwrap(), 8);
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 16);
    assert_eq!(redis.calls("ltrim") - trims, 8, "every partition trimmed");
    assert_eq!(redis.calls("evalsha") - scripts, 3, "heartbeat, fetch, ack");
    for p in 0..8 {
        assert_eq!(redis.len(&format!("many:{p}")), 0, "partition {p}");
    }
}
