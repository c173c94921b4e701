//! The backend conformance suite: every behavioural case, written once, run against every backend.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hivent::{
    partition_for, partition_hash, ConsumerOptions, DeadLetterFilter, DeadLetterPick,
    DeadLetterQueue, EmitOptions, Hivent,
};
use serde_json::json;
use support::{record, Call, Harness, Recorder};

/// Runs each case once per backend: `memory::case`, `redis::case`,
/// `redis_cluster::case` (a 3-master Redis Cluster).
macro_rules! conformance {
    ($($(#[doc = $doc:literal])* fn $name:ident($h:ident) $body:block)*) => {
        $( $(#[doc = $doc])* fn $name($h: &dyn Harness) $body )*
        mod memory {
            $( #[test] fn $name() { if let Some(h) = super::support::MemoryHarness::new() { super::$name(&h) } } )*
        }
        mod redis {
            $(
                #[test]
                #[cfg_attr(no_redis_server, ignore = "redis-server is not installed (CI installs it)")]
                fn $name() { if let Some(h) = super::support::RedisHarness::new() { super::$name(&h) } }
            )*
        }
        mod redis_cluster {
            $(
                #[test]
                #[cfg_attr(any(no_redis_server, no_redis_cli), ignore = "redis-server or redis-cli is not installed (CI installs them)")]
                fn $name() { if let Some(h) = super::support::RedisClusterHarness::new() { super::$name(&h) } }
            )*
        }
    };
}

fn producer(h: &dyn Harness) -> Hivent {
    h.hivent("producer", 1, &Recorder::new())
}

conformance! {
    /// Every receiving service gets its own copy of each event, in emit order.
    fn fan_out_to_two_services(h) {
        let (a, b) = (h.hivent("svc-a", 2, &Recorder::new()), h.hivent("svc-b", 3, &Recorder::new()));
        let (seen_a, seen_b) = (record(&a, "user:created"), record(&b, "user:created"));
        let (ca, cb) = (a.consumer().unwrap(), b.consumer().unwrap());
        let signal = producer(h).signal("user:created").unwrap();
        let emitted: Vec<_> = (0..3)
            .map(|i| signal.emit_with(&json!({"i": i}), EmitOptions::version(1).key("same")).unwrap())
            .collect();
        assert_eq!(ca.run_until_idle().unwrap(), 3);
        assert_eq!(cb.run_until_idle().unwrap(), 3);
        assert_eq!(*seen_a.lock(), emitted);
        assert_eq!(*seen_b.lock(), emitted);
    }

    /// A service that does not receive a signal gets nothing of it.
    fn no_delivery_to_unregistered_services(h) {
        let other = h.hivent("svc-other", 1, &Recorder::new());
        let seen = record(&other, "order:placed");
        let consumer = other.consumer().unwrap();
        producer(h).signal("user:created").unwrap().emit(&json!({}), 1).unwrap();
        assert!(h.partition("svc-other", 0).is_empty());
        assert_eq!(consumer.run_until_idle().unwrap(), 0);
        assert!(seen.lock().is_empty());
    }

    /// A versioned receiver gets only its version; other versions are acked unhandled.
    fn version_filtering(h) {
        let recorder = Recorder::new();
        let svc = h.hivent("svc-v", 1, &recorder);
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let sink = seen.clone();
        svc.signal("doc:saved").unwrap().receive_version(2, move |e| {
            sink.lock().push(e.meta.version);
            Ok(())
        });
        let consumer = svc.consumer().unwrap();
        let signal = producer(h).signal("doc:saved").unwrap();
        for v in [1, 2, 3, 2] {
            signal.emit(&json!({"v": v}), v).unwrap();
        }
        assert_eq!(consumer.run_until_idle().unwrap(), 4);
        assert_eq!(*seen.lock(), [Some(2), Some(2)]);
        assert!(h.partition("svc-v", 0).is_empty());
        assert!(recorder.failures().is_empty());
        assert_eq!(recorder.successes().len(), 2);
    }

    /// `*` receives every signal, whatever its name.
    fn wildcard_receives_everything(h) {
        let svc = h.hivent("svc-star", 1, &Recorder::new());
        let seen = record(&svc, "*");
        let consumer = svc.consumer().unwrap();
        let p = producer(h);
        p.signal("a:one").unwrap().emit(&json!(1), 1).unwrap();
        p.signal("b:two").unwrap().emit(&json!(2), 5).unwrap();
        assert_eq!(consumer.run_until_idle().unwrap(), 2);
        let names: Vec<_> = seen.lock().iter().map(|e| (e.meta.name.clone(), e.meta.version)).collect();
        assert_eq!(names, [("a:one".to_string(), Some(1)), ("b:two".to_string(), Some(5))]);
    }

    /// Events with the same key are processed in emit order, even with several
    /// partitions and two consumers.
    fn per_key_order_under_partitions(h) {
        let svc = h.hivent("svc-order", 4, &Recorder::new());
        let seen = record(&svc, "counter:incremented");
        let c1 = svc.consumer().unwrap();
        let c2 = svc.join(hivent::ConsumerOptions::default().batch_size(3)).unwrap();
        c1.heartbeat().unwrap();
        c2.heartbeat().unwrap();
        c1.heartbeat().unwrap();
        let signal = producer(h).signal("counter:incremented").unwrap();
        for seq in 0..10 {
            for key in ["k0", "k1", "k2", "k3", "k4", "k5"] {
                signal.emit_with(&json!({"key": key, "seq": seq}), EmitOptions::version(1).key(key)).unwrap();
            }
        }
        while c1.poll().unwrap() + c2.poll().unwrap() > 0 {}
        let mut per_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for e in seen.lock().iter() {
            per_key.entry(e.payload["key"].as_str().unwrap().to_owned()).or_default().push(e.payload["seq"].as_i64().unwrap());
        }
        assert_eq!(per_key.len(), 6);
        for (key, seqs) in per_key {
            assert_eq!(seqs, (0..10).collect::<Vec<_>>(), "key {key}");
        }
    }

    /// 1,000 keys spread evenly over 4 partitions, each in `crc32(key) % 4`.
    fn keys_spread_evenly(h) {
        let svc = h.hivent("svc-spread", 4, &Recorder::new());
        let _seen = record(&svc, "item:added");
        svc.register().unwrap();
        let signal = producer(h).signal("item:added").unwrap();
        let mut expected = [0usize; 4];
        for i in 0..1000 {
            let key = hivent::backend::new_id();
            expected[partition_for(partition_hash(Some(&key), &json!(null)), 4) as usize] += 1;
            signal.emit_with(&json!({"i": i}), EmitOptions::version(1).key(key)).unwrap();
        }
        let counts: Vec<usize> = (0..4).map(|p| h.partition("svc-spread", p).len()).collect();
        assert_eq!(counts, expected);
        // With 1,000 uniform keys each partition gets 250 ± 14 (one σ); ±80 is > 5σ.
        for c in counts {
            assert!((170..=330).contains(&c), "{c} of 1000 in one partition");
        }
    }

    /// A failing handler sends the event to the dead letter queue and reports it.
    fn failing_handler_dead_letters(h) {
        let recorder = Recorder::new();
        let svc = h.hivent("svc-fail", 1, &recorder);
        svc.signal("pay:due").unwrap().receive(|e| {
            if e.payload["amount"] == 0 { Err("amount must not be zero".into()) } else { Ok(()) }
        });
        let consumer = svc.consumer().unwrap();
        let signal = producer(h).signal("pay:due").unwrap();
        let bad = signal.emit(&json!({"amount": 0}), 1).unwrap();
        signal.emit(&json!({"amount": 5}), 1).unwrap();
        assert_eq!(consumer.run_until_idle().unwrap(), 2);
        let dead = h.dead_letters("svc-fail", 0);
        assert_eq!(dead.len(), 1);
        assert_eq!(hivent::Event::from_json(&dead[0]).unwrap(), bad);
        assert!(h.partition("svc-fail", 0).is_empty());
        assert_eq!(
            recorder.failures(),
            [Call::Failed {
                error: "a handler for \"pay:due\" version 1 failed: amount must not be zero".into(),
                payload: Some(serde_json::to_value(&bad).unwrap()),
                raw: dead[0].clone(),
                queue: "svc-fail:0:dead_letter".into(),
            }]
        );
        assert_eq!(recorder.successes().len(), 1);
    }

    /// A handler that panics is a failure like any other; the consumer goes on.
    fn panicking_handler_dead_letters(h) {
        let recorder = Recorder::new();
        let svc = h.hivent("svc-panic", 1, &recorder);
        svc.signal("x").unwrap().receive(|e| {
            assert!(e.payload["ok"].as_bool().unwrap(), "not ok");
            Ok(())
        });
        let consumer = svc.consumer().unwrap();
        let signal = producer(h).signal("x").unwrap();
        signal.emit(&json!({"ok": false}), 1).unwrap();
        signal.emit(&json!({"ok": true}), 1).unwrap();
        assert_eq!(consumer.run_until_idle().unwrap(), 2);
        assert_eq!(h.dead_letters("svc-panic", 0).len(), 1);
        match &recorder.failures()[..] {
            [Call::Failed { error, .. }] => assert_eq!(error, "a handler for \"x\" version 1 panicked: not ok"),
            other => panic!("{other:?}"),
        }
    }

    /// A typed receiver whose payload does not decode dead-letters the event.
    fn typed_payload_mismatch_dead_letters(h) {
        #[derive(serde::Deserialize)]
        struct User { id: u64 }
        let recorder = Recorder::new();
        let svc = h.hivent("svc-typed", 1, &recorder);
        let ids = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let sink = ids.clone();
        svc.signal("user:created").unwrap().receive_as(move |u: User, _meta| {
            sink.lock().push(u.id);
            Ok(())
        });
        let consumer = svc.consumer().unwrap();
        let signal = producer(h).signal("user:created").unwrap();
        signal.emit(&json!({"id": "not a number"}), 1).unwrap();
        signal.emit(&json!({"id": 42}), 1).unwrap();
        assert_eq!(consumer.run_until_idle().unwrap(), 2);
        assert_eq!(*ids.lock(), [42]);
        assert_eq!(h.dead_letters("svc-typed", 0).len(), 1);
        match &recorder.failures()[..] {
            [Call::Failed { error, .. }] => assert!(error.starts_with("the payload of \"user:created\" version 1 does not match the receiver's type"), "{error}"),
            other => panic!("{other:?}"),
        }
    }

    /// Success is reported with the event's name, version and payload; registration too.
    fn success_is_reported(h) {
        let recorder = Recorder::new();
        let svc = h.hivent("svc-ok", 2, &recorder);
        let _seen = record(&svc, "a:b");
        let consumer = svc.consumer().unwrap();
        producer(h).signal("a:b").unwrap().emit(&json!({"k": "v"}), 3).unwrap();
        assert_eq!(consumer.run_until_idle().unwrap(), 1);
        let calls = recorder.calls();
        assert_eq!(calls[0], Call::Registered { client_id: "svc-ok".into(), signals: vec![("a:b".into(), None)], partition_count: 2 });
        assert_eq!(recorder.successes(), [Call::Succeeded { name: "a:b".into(), version: Some(3), payload: json!({"k": "v"}) }]);
    }

    /// An item that is not JSON is dead-lettered as it was read and the consumer goes on.
    fn malformed_json_dead_letters_and_continues(h) {
        let recorder = Recorder::new();
        let svc = h.hivent("svc-junk", 1, &recorder);
        let seen = record(&svc, "a:b");
        let consumer = svc.consumer().unwrap();
        h.push_raw("svc-junk", 0, "{not json");
        h.push_raw("svc-junk", 0, r#"{"payload":{}}"#);
        producer(h).signal("a:b").unwrap().emit(&json!({"fine": true}), 1).unwrap();
        assert_eq!(consumer.run_until_idle().unwrap(), 3);
        assert_eq!(seen.lock().len(), 1);
        assert_eq!(h.dead_letters("svc-junk", 0), ["{not json", r#"{"payload":{}}"#]);
        let failures = recorder.failures();
        assert!(matches!(&failures[0], Call::Failed { payload: None, raw, queue, error }
            if raw == "{not json" && queue == "svc-junk:0:dead_letter" && error.contains("is not a valid event")), "{failures:?}");
        assert!(matches!(&failures[1], Call::Failed { payload: Some(p), .. } if *p == json!({"payload": {}})), "{failures:?}");
    }

    /// Two consumers split the partitions; when one leaves, the other takes them all.
    fn workers_share_and_take_over(h) {
        let recorder = Recorder::new();
        let svc = h.hivent("svc-group", 4, &recorder);
        let seen = record(&svc, "job:queued");
        let c1 = svc.consumer().unwrap();
        let c2 = svc.join(hivent::ConsumerOptions::default()).unwrap();
        c2.heartbeat().unwrap();
        c1.heartbeat().unwrap(); // releases what c2 should have
        c2.heartbeat().unwrap(); // claims it
        let (p1, p2) = (c1.owned_partitions(), c2.owned_partitions());
        assert_eq!(p1.len(), 2, "{p1:?} {p2:?}");
        assert_eq!(p2.len(), 2, "{p1:?} {p2:?}");
        assert!(p1.iter().all(|p| !p2.contains(p)));

        let signal = producer(h).signal("job:queued").unwrap();
        for i in 0..40 {
            signal.emit_with(&json!({"i": i}), EmitOptions::version(1).key(format!("job-{i}"))).unwrap();
        }
        let before = c1.run_until_idle().unwrap();
        assert!(before > 0 && before < 40, "c1 processed {before}");
        c1.leave().unwrap();
        assert_eq!(c2.run_until_idle().unwrap(), 40 - before);
        assert_eq!(c2.owned_partitions(), [0, 1, 2, 3]);
        assert_eq!(seen.lock().len(), 40);
    }

    /// A consumer that stalled past its TTL loses its partition: its ack and its
    /// dead-lettering are rejected and change nothing, and the new owner processes
    /// every event, in order, none lost.
    fn stalled_consumer_is_fenced(h) {
        let svc = h.hivent("svc-fence", 1, &Recorder::new());
        let seen = record(&svc, "a:b");
        svc.register().unwrap();
        let signal = producer(h).signal("a:b").unwrap();
        let emitted = vec![signal.emit(&json!({"n": 1}), 1).unwrap(), signal.emit(&json!({"n": 2}), 1).unwrap()];
        let stalled = svc.backend().join("svc-fence").unwrap();
        assert_eq!(stalled.heartbeat().unwrap(), [0]);
        let batches = stalled.fetch(10, usize::MAX, Duration::ZERO).unwrap().batches;
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].items.len(), 2);
        // `stalled` never heartbeats again; the other consumer claims partition 0 once
        // the stalled membership has expired.
        let c2 = svc.join(hivent::ConsumerOptions::default()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while c2.heartbeat().unwrap() != [0] {
            assert!(Instant::now() < deadline, "partition 0 was never taken over");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(stalled.ack(0, 1).unwrap_err().is_fenced());
        let record = hivent::FailureRecord::new("boom", stalled.member_id(), chrono::Utc::now());
        assert!(stalled.dead_letter(0, &batches[0].items[0], &record).unwrap_err().is_fenced());
        assert!(stalled.record_attempt(0, &batches[0].items[0], chrono::Utc::now()).unwrap_err().is_fenced());
        assert_eq!(h.partition("svc-fence", 0).len(), 2);
        assert!(h.dead_letters("svc-fence", 0).is_empty());
        assert_eq!(c2.run_until_idle().unwrap(), 2);
        assert_eq!(*seen.lock(), emitted);
    }

    /// A batch emit stores every event, in order.
    fn batch_emit(h) {
        let svc = h.hivent("svc-batch", 1, &Recorder::new());
        let seen = record(&svc, "b:e");
        let consumer = svc.consumer().unwrap();
        let p = producer(h);
        let signal = p.signal("b:e").unwrap();
        let mut batch = p.batch();
        for i in 0..25 {
            batch.push(&signal, &json!({"i": i}), EmitOptions::version(1)).unwrap();
        }
        let emitted = batch.emit().unwrap();
        assert_eq!(consumer.run_until_idle().unwrap(), 25);
        assert_eq!(*seen.lock(), emitted);
    }

    /// A worker started with a different partition count while events wait is refused.
    fn partition_count_change_refused_while_events_wait(h) {
        let svc = h.hivent("svc-resize", 2, &Recorder::new());
        let _seen = record(&svc, "r:s");
        svc.register().unwrap();
        producer(h).signal("r:s").unwrap().emit(&json!({}), 1).unwrap();
        let bigger = h.hivent("svc-resize", 4, &Recorder::new());
        let _seen = record(&bigger, "r:s");
        let err = bigger.register().unwrap_err();
        assert!(matches!(err, hivent::Error::PartitionCountConflict { requested: 4, stored: 2, .. }), "{err}");
        let c = svc.consumer().unwrap();
        assert_eq!(c.run_until_idle().unwrap(), 1);
        drop(c);
        bigger.register().unwrap();
    }

    /// Services stop receiving events they no longer register for.
    fn reregistration_drops_old_events(h) {
        let first = h.hivent("svc-rereg", 1, &Recorder::new());
        let _a = record(&first, "old:event");
        first.register().unwrap();
        let second = h.hivent("svc-rereg", 1, &Recorder::new());
        let _b = record(&second, "new:event");
        second.register().unwrap();
        let p = producer(h);
        p.signal("old:event").unwrap().emit(&json!({}), 1).unwrap();
        p.signal("new:event").unwrap().emit(&json!({}), 1).unwrap();
        let items = h.partition("svc-rereg", 0);
        assert_eq!(items.len(), 1);
        assert!(items[0].contains("\"name\":\"new:event\""), "{items:?}");
    }

    /// Consumers on threads (`Hivent::run`) process events emitted from several threads
    /// exactly once each when nothing fails, and stop cleanly when the shutdown is
    /// triggered, leaving the group.
    fn threaded_workers_process_everything(h) {
        let svc = h.hivent("svc-threads", 4, &Recorder::new());
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        svc.signal("t:e").unwrap().receive(move |e| {
            done_tx.send(e.meta.event_uuid.clone()).unwrap();
            Ok(())
        });
        // Registered before anything is emitted: `run` registers on its own thread.
        svc.register().unwrap();
        let shutdown = hivent::Shutdown::new();
        let stop = shutdown.clone();
        let runner = {
            let svc = svc.clone();
            std::thread::spawn(move || svc.run(2, hivent::ConsumerOptions::default().idle_wait(Duration::from_millis(50)), &shutdown))
        };
        let emitters: Vec<_> = (0..4)
            .map(|t| {
                let p = producer(h);
                std::thread::spawn(move || {
                    let signal = p.signal("t:e").unwrap();
                    (0..50)
                        .map(|i| signal.emit_with(&json!({"t": t, "i": i}), EmitOptions::version(1).key(format!("{t}-{i}"))).unwrap().meta.event_uuid)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut expected: Vec<String> = emitters.into_iter().flat_map(|e| e.join().unwrap()).collect();
        let mut got = Vec::new();
        while got.len() < expected.len() {
            got.push(done_rx.recv_timeout(Duration::from_secs(20)).expect("events stopped arriving"));
        }
        stop.trigger();
        runner.join().unwrap().unwrap();
        expected.sort();
        got.sort();
        assert_eq!(got, expected);
        assert!(done_rx.try_recv().is_err(), "an event was processed twice");
        assert_eq!((0..4).map(|p| h.partition("svc-threads", p).len()).sum::<usize>(), 0);
    }

    /// Status shows the registration, live consumers, owners, lag and dead letters.
    fn status_reports_group_lag_and_dead_letters(h) {
        let svc = h.hivent("svc-status", 2, &Recorder::new());
        svc.signal("s:t").unwrap().receive(|e| if e.payload["bad"] == true { Err("bad".into()) } else { Ok(()) });
        let consumer = svc.consumer().unwrap();
        let signal = producer(h).signal("s:t").unwrap();
        let first = signal.emit_with(&json!({"bad": true}), EmitOptions::version(1).key("a")).unwrap();
        let p = partition_for(partition_hash(Some("a"), &json!(null)), 2);
        let ops = svc.backend().operations().expect("operations");
        assert_eq!(consumer.run_until_idle().unwrap(), 1);
        signal.emit_with(&json!({"n": 2}), EmitOptions::version(1).key("a")).unwrap();
        signal.emit_with(&json!({"n": 3}), EmitOptions::version(1).key("a")).unwrap();
        let status = ops.service_status("svc-status").unwrap();
        assert!(ops.services().unwrap().contains(&"svc-status".to_string()));
        assert_eq!(status.partition_count, 2);
        assert_eq!(status.events, ["s:t"]);
        assert_eq!(status.consumers, [consumer.member_id().to_string()]);
        let part = &status.partitions[p as usize];
        assert_eq!(part.owner.as_deref(), Some(consumer.member_id()));
        assert_eq!(part.waiting, 2);
        assert_eq!(part.dead_letters, 1);
        assert!(part.oldest_created_at.unwrap() >= first.meta.created_at);
        let other = &status.partitions[1 - p as usize];
        assert_eq!((other.waiting, other.dead_letters), (0, 0));
    }

    /// Replay puts dead letters back at the head of their partition, in their original
    /// order, ahead of waiting events; purge empties the queue. A limit counts the
    /// oldest first, and both say what is left.
    fn dead_letter_replay_and_purge(h) {
        let svc = h.hivent("svc-dlq", 1, &Recorder::new());
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let seen: support::Seen = Arc::default();
        let (flag, sink) = (fail.clone(), seen.clone());
        svc.signal("d:l").unwrap().receive(move |e| {
            if flag.load(std::sync::atomic::Ordering::SeqCst) { return Err(hivent::Permanent::new("down").into()); }
            sink.lock().push(e.clone());
            Ok(())
        });
        let consumer = svc.consumer().unwrap();
        let signal = producer(h).signal("d:l").unwrap();
        let failed: Vec<_> = (0..3).map(|i| signal.emit(&json!({"i": i}), 1).unwrap()).collect();
        assert_eq!(consumer.run_until_idle().unwrap(), 3);
        let dlq = DeadLetterQueue::new(svc.backend().operations().expect("operations"), "svc-dlq");
        let dead = dlq.list(&DeadLetterFilter::all()).unwrap();
        assert_eq!(dead.iter().map(|d| hivent::Event::from_json(&d.raw).unwrap()).collect::<Vec<_>>(), failed);
        assert_eq!(dead.iter().map(|d| d.position).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(dlq.list(&DeadLetterFilter::all().limit(2)).unwrap(), dead[..2]);
        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        let later = signal.emit(&json!({"later": true}), 1).unwrap();
        let plan = dlq.purge(&DeadLetterFilter::all().limit(2), true).unwrap();
        assert_eq!((plan.taken.clone(), plan.total, plan.left, plan.dry_run), (vec![(0, 2)], 2, 1, true));
        assert_eq!(h.dead_letters("svc-dlq", 0).len(), 3, "a dry run changes nothing");
        let report = dlq.replay(&DeadLetterFilter::all().limit(2), false).unwrap();
        assert_eq!((report.taken.clone(), report.total, report.left, report.left_selected), (vec![(0, 2)], 2, 1, 1));
        assert_eq!(dlq.list(&DeadLetterFilter::all()).unwrap().iter().map(|d| d.raw.clone()).collect::<Vec<_>>(), [dead[2].raw.clone()]);
        assert_eq!(consumer.run_until_idle().unwrap(), 3);
        assert_eq!(*seen.lock(), [failed[0].clone(), failed[1].clone(), later]);
        assert_eq!(dlq.purge(&DeadLetterFilter::all(), false).unwrap().total, 1);
        assert!(dlq.list(&DeadLetterFilter::all()).unwrap().is_empty());
        assert_eq!(h.stored_failure_records("svc-dlq", 0), 0, "no record outlives its dead letter");
    }

    /// A consumer holding a fetched batch when a replay lands is fenced off it: its ack is
    /// rejected, so the replayed events are not acknowledged unseen.
    fn replay_fences_the_batch_in_hand(h) {
        let svc = h.hivent("svc-replay-fence", 1, &Recorder::new());
        let _seen = record(&svc, "r:f");
        svc.register().unwrap();
        let signal = producer(h).signal("r:f").unwrap();
        signal.emit(&json!({"n": 1}), 1).unwrap();
        h.push_raw("svc-replay-fence", 0, "junk");
        let session = svc.backend().join("svc-replay-fence").unwrap();
        assert_eq!(session.heartbeat().unwrap(), [0]);
        let batch = session.fetch(10, usize::MAX, Duration::ZERO).unwrap().batches;
        assert_eq!(batch[0].items.len(), 2);
        session.ack(0, 1).unwrap();
        session.dead_letter(0, "junk", &hivent::FailureRecord::new("junk", session.member_id(), chrono::Utc::now())).unwrap();
        signal.emit(&json!({"n": 2}), 1).unwrap();
        let batch = session.fetch(10, usize::MAX, Duration::ZERO).unwrap().batches;
        assert_eq!(batch[0].items.len(), 1);
        let ops = svc.backend().operations().expect("operations");
        assert_eq!(ops.replay_dead_letters("svc-replay-fence", 0, DeadLetterPick::Oldest(10)).unwrap(), 1);
        assert!(session.ack(0, 1).unwrap_err().is_fenced());
        // Even after re-claiming the partition, the batch read before the replay stays fenced.
        assert_eq!(session.heartbeat().unwrap(), [0]);
        assert!(session.ack(0, 1).unwrap_err().is_fenced());
        assert_eq!(h.partition("svc-replay-fence", 0).len(), 2);
        let batch = session.fetch(10, usize::MAX, Duration::ZERO).unwrap().batches;
        assert_eq!(batch[0].items[0], "junk");
    }

    /// A consumer whose lease runs out while a handler runs (a stall) starts no further
    /// handler of that batch. Nobody took over meanwhile, so what it handled is still
    /// acknowledged; the next owner handles the rest, in order, none twice.
    fn lease_expiry_stops_before_the_next_event(h) {
        let svc = h.hivent("svc-lease", 1, &Recorder::new());
        let gate = support::Gate::new();
        let handled = support::record_at_gate(&svc, "l:e", &gate);
        let c1 = svc.consumer().unwrap();
        let signal = producer(h).signal("l:e").unwrap();
        let emitted: Vec<_> = (0..3).map(|n| signal.emit(&json!({"n": n}), 1).unwrap()).collect();
        std::thread::scope(|s| {
            let polled = s.spawn(|| c1.poll().unwrap());
            gate.wait_entered();
            h.stall(h.timing().past_ttl());
            gate.open();
            assert_eq!(polled.join().unwrap(), 1);
        });
        assert_eq!(handled.lock().len(), 1);
        assert_eq!(h.partition("svc-lease", 0).len(), 2);
        let c2 = svc.join(ConsumerOptions::default()).unwrap();
        support::wait_for(Duration::from_secs(20), "c2 owns partition 0", || c2.heartbeat().unwrap() == [0]);
        assert_eq!(c2.run_until_idle().unwrap(), 2);
        let events: Vec<_> = handled.lock().iter().map(|(_, e)| e.clone()).collect();
        assert_eq!(events, emitted);
    }

    /// A stalled owner whose partition was taken over meanwhile starts no further
    /// handler when it resumes; its acknowledgement is fenced, so the new owner handles
    /// the interrupted event again and then the rest: first handlings stay in order.
    fn stalled_owner_stops_when_another_took_over(h) {
        let svc = h.hivent("svc-stall", 1, &Recorder::new());
        let gate = support::Gate::new();
        let handled = support::record_at_gate(&svc, "s:o", &gate);
        let c1 = svc.consumer().unwrap();
        let signal = producer(h).signal("s:o").unwrap();
        let emitted: Vec<_> = (0..3).map(|n| signal.emit(&json!({"n": n}), 1).unwrap()).collect();
        let c2 = svc.join(ConsumerOptions::default()).unwrap();
        std::thread::scope(|s| {
            let polled = std::thread::Builder::new().name("c1".into()).spawn_scoped(s, || c1.poll().unwrap()).unwrap();
            gate.wait_entered();
            h.stall(h.timing().past_ttl());
            support::wait_for(Duration::from_secs(20), "c2 took partition 0 over", || c2.heartbeat().unwrap() == [0]);
            gate.open();
            assert_eq!(polled.join().unwrap(), 1);
        });
        assert_eq!(h.partition("svc-stall", 0).len(), 3, "the fenced ack removed nothing");
        // c1 rejoined at its heartbeat after losing the partition; with it gone, c2
        // keeps the only partition whatever the members' order.
        c1.leave().unwrap();
        assert_eq!(c2.run_until_idle().unwrap(), 3);
        let handled = handled.lock().clone();
        let by_c1: Vec<_> = handled.iter().filter(|(t, _)| t == "c1").map(|(_, e)| e.clone()).collect();
        assert_eq!(by_c1, emitted[..1]);
        let rest: Vec<_> = handled.iter().filter(|(t, _)| t != "c1").map(|(_, e)| e.clone()).collect();
        assert_eq!(rest, emitted);
    }

    /// A partition the group wants elsewhere is released after the event in hand, not
    /// after its batch: the processed prefix is acknowledged, the joining member claims
    /// the partition at its next heartbeat and handles the rest. Nothing twice, nothing lost.
    fn handover_after_the_event_in_hand(h) {
        let recorder = Recorder::new();
        let svc = h.hivent("svc-handover", 2, &recorder);
        let gate = support::Gate::new();
        let handled = support::record_at_gate(&svc, "h:o", &gate);
        let c1 = svc.consumer().unwrap();
        assert_eq!(c1.owned_partitions(), [0, 1]);
        let signal = producer(h).signal("h:o").unwrap();
        let key_in = |p: u32| (0..).map(|i| format!("k{i}")).find(|k| partition_for(partition_hash(Some(k), &json!(null)), 2) == p).unwrap();
        let mut emitted: BTreeMap<u32, Vec<hivent::Event>> = BTreeMap::new();
        for p in [0, 1] {
            let key = key_in(p);
            for n in 0..3 {
                emitted.entry(p).or_default().push(signal.emit_with(&json!({"p": p, "n": n}), EmitOptions::version(1).key(key.clone())).unwrap());
            }
        }
        let c2 = svc.join(ConsumerOptions::default()).unwrap();
        std::thread::scope(|s| {
            let polled = std::thread::Builder::new().name("c1".into()).spawn_scoped(s, || c1.poll().unwrap()).unwrap();
            gate.wait_entered();
            assert!(c2.heartbeat().unwrap().is_empty(), "c1 is live and holds both");
            c1.heartbeat().unwrap(); // what c1's heartbeat thread would do now
            gate.open();
            polled.join().unwrap();
        });
        let released = c2.heartbeat().unwrap();
        assert_eq!(released.len(), 1, "{released:?}");
        let (released, kept) = (released[0], 1 - released[0]);
        assert_eq!(c1.owned_partitions(), [kept]);
        assert!(recorder.calls().contains(&Call::Revoked(vec![released])), "{:?}", recorder.calls());
        let by_c1: Vec<_> = handled.lock().iter().map(|(_, e)| e.clone()).collect();
        let first = by_c1[0].payload["p"].as_u64().unwrap() as u32;
        let c1_of_released = by_c1.iter().filter(|e| e.payload["p"] == released).count();
        assert_eq!(c1_of_released, usize::from(first == released), "{by_c1:?}");
        assert_eq!(by_c1.iter().filter(|e| e.payload["p"] == kept).count(), 3);
        assert_eq!(c2.run_until_idle().unwrap(), 3 - c1_of_released);
        let all: Vec<_> = handled.lock().iter().map(|(_, e)| e.clone()).collect();
        for (p, events) in &emitted {
            let got: Vec<_> = all.iter().filter(|e| e.payload["p"] == *p).cloned().collect();
            assert_eq!(&got, events, "partition {p}: each once, in order");
        }
    }

    /// The handled events of a fetch's batches are acknowledged together once the
    /// fetch is processed; until then the partitions they came from are kept, even when
    /// the group wants them elsewhere, so a hand-over meanwhile does not make their new
    /// owner handle them again. Each event once.
    fn a_fetch_is_acknowledged_together_and_handed_over_after(h) {
        let svc = h.hivent("svc-ack-all", 8, &Recorder::new());
        let gate = support::Gate::new();
        let handled: support::Handled = Arc::default();
        let (sink, held) = (handled.clone(), gate.clone());
        svc.signal("a:a").unwrap().receive(move |e| {
            let thread = std::thread::current().name().unwrap_or("?").to_owned();
            let count = { let mut all = sink.lock(); all.push((thread, e.clone())); all.len() };
            // The last partition's event: the other seven batches are done, unacknowledged.
            if count == 8 { held.pass(); }
            Ok(())
        });
        let c1 = svc.consumer().unwrap();
        assert_eq!(c1.owned_partitions().len(), 8);
        let signal = producer(h).signal("a:a").unwrap();
        let key_in = |p: u32| (0..).map(|i| format!("k{i}")).find(|k| partition_for(partition_hash(Some(k), &json!(null)), 8) == p).unwrap();
        let emitted: Vec<hivent::Event> = (0..8)
            .map(|p| signal.emit_with(&json!({"p": p}), EmitOptions::version(1).key(key_in(p))).unwrap())
            .collect();
        let c2 = svc.join(ConsumerOptions::default()).unwrap();
        std::thread::scope(|s| {
            let polled = std::thread::Builder::new().name("c1".into()).spawn_scoped(s, || c1.poll().unwrap()).unwrap();
            gate.wait_entered();
            assert!(c2.heartbeat().unwrap().is_empty(), "c1 is live and holds all");
            // What c1's heartbeat thread would do now: nothing with events awaiting the
            // acknowledgement is released.
            c1.heartbeat().unwrap();
            assert_eq!(c1.owned_partitions().len(), 8);
            gate.open();
            assert_eq!(polled.join().unwrap(), 8);
        });
        for p in 0..8 {
            assert!(h.partition("svc-ack-all", p).is_empty(), "partition {p} acknowledged");
        }
        // The next heartbeats hand half over; nothing is left to handle again.
        c1.heartbeat().unwrap();
        assert_eq!(c2.heartbeat().unwrap().len(), 4);
        assert_eq!(c2.run_until_idle().unwrap(), 0);
        assert_eq!(c1.run_until_idle().unwrap(), 0);
        let mut got: Vec<_> = handled.lock().iter().map(|(_, e)| e.clone()).collect();
        got.sort_by_key(|e| e.payload["p"].as_u64());
        assert_eq!(got, emitted);
    }

    /// On shutdown the consumer finishes the handler that is running and starts no
    /// other: the handled event is acknowledged, the rest of the batch stays stored,
    /// and every partition is released for the next member.
    fn shutdown_finishes_only_the_event_in_hand(h) {
        let svc = h.hivent("svc-stop", 1, &Recorder::new());
        let gate = support::Gate::new();
        let handled = support::record_at_gate(&svc, "s:t", &gate);
        svc.register().unwrap();
        let signal = producer(h).signal("s:t").unwrap();
        let emitted: Vec<_> = (0..5).map(|n| signal.emit(&json!({"n": n}), 1).unwrap()).collect();
        let shutdown = hivent::Shutdown::new();
        let stop = shutdown.clone();
        let runner = {
            let svc = svc.clone();
            std::thread::spawn(move || svc.run(1, ConsumerOptions::default(), &shutdown))
        };
        gate.wait_entered();
        stop.trigger();
        gate.open();
        runner.join().unwrap().unwrap();
        assert_eq!(handled.lock().len(), 1);
        assert_eq!(h.partition("svc-stop", 0).len(), 4);
        let status = svc.backend().operations().unwrap().service_status("svc-stop").unwrap();
        assert!(status.consumers.is_empty(), "{:?}", status.consumers);
        assert_eq!(status.partitions[0].owner, None);
        let next = svc.consumer().unwrap();
        assert_eq!(next.run_until_idle().unwrap(), 4);
        let events: Vec<_> = handled.lock().iter().map(|(_, e)| e.clone()).collect();
        assert_eq!(events, emitted);
    }

    /// A dead letter replayed onto an idle running worker is handled exactly once: the
    /// worker finds its claim voided at its next fetch, reclaims, and reads it afresh.
    fn replayed_dead_letter_runs_once_on_an_idle_worker(h) {
        let svc = h.hivent("svc-replay-once", 1, &Recorder::new());
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (flag, (done_tx, done_rx)) = (fail.clone(), crossbeam_channel::unbounded());
        svc.signal("r:o").unwrap().receive(move |e| {
            if flag.load(std::sync::atomic::Ordering::SeqCst) { return Err("down".into()); }
            done_tx.send(e.clone()).unwrap();
            Ok(())
        });
        svc.register().unwrap();
        let shutdown = hivent::Shutdown::new();
        let stop = shutdown.clone();
        let runner = {
            let svc = svc.clone();
            std::thread::spawn(move || svc.run(1, ConsumerOptions::default().idle_wait(Duration::from_millis(100)), &shutdown))
        };
        let signal = producer(h).signal("r:o").unwrap();
        let first = signal.emit(&json!({"n": 1}), 1).unwrap();
        support::wait_for(Duration::from_secs(20), "the event was dead-lettered", || h.dead_letters("svc-replay-once", 0).len() == 1);
        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        let ops = svc.backend().operations().unwrap();
        assert_eq!(ops.replay_dead_letters("svc-replay-once", 0, DeadLetterPick::Oldest(10)).unwrap(), 1);
        assert_eq!(done_rx.recv_timeout(Duration::from_secs(20)).unwrap(), first);
        // A second run of the replayed event would come before this one: FIFO.
        let second = signal.emit(&json!({"n": 2}), 1).unwrap();
        assert_eq!(done_rx.recv_timeout(Duration::from_secs(20)).unwrap(), second);
        stop.trigger();
        runner.join().unwrap().unwrap();
        assert!(done_rx.try_recv().is_err());
    }

    /// Members announce group changes, so a joining member gets its share, and a
    /// leaving member's partitions are taken, long before any heartbeat interval ends.
    fn group_changes_move_partitions_between_heartbeats(h) {
        let h = h.timed(support::Timing { heartbeat_interval: Duration::from_secs(60), member_ttl: Duration::from_secs(120) });
        let svc = h.hivent("svc-notice", 4, &Recorder::new());
        let _seen = record(&svc, "n:c");
        svc.register().unwrap();
        let ops_backend = svc.backend().clone();
        let ops = ops_backend.operations().unwrap();
        let owners = || -> BTreeMap<String, usize> {
            let status = ops.service_status("svc-notice").unwrap();
            let mut count = BTreeMap::new();
            for p in status.partitions {
                if let Some(owner) = p.owner { *count.entry(owner).or_insert(0) += 1; }
            }
            count
        };
        let start = |svc: &Hivent| {
            let shutdown = hivent::Shutdown::new();
            let stop = shutdown.clone();
            let svc = svc.clone();
            (stop, std::thread::spawn(move || svc.run(1, ConsumerOptions::default(), &shutdown)))
        };
        let (stop1, first) = start(&svc);
        support::wait_for(Duration::from_secs(20), "the first member owns all", || owners().values().copied().collect::<Vec<_>>() == [4]);
        let (stop2, second) = start(&svc);
        support::wait_for(Duration::from_secs(20), "two members own two each", || owners().values().copied().collect::<Vec<_>>() == [2, 2]);
        stop1.trigger();
        first.join().unwrap().unwrap();
        support::wait_for(Duration::from_secs(20), "the remaining member owns all", || owners().values().copied().collect::<Vec<_>>() == [4]);
        stop2.trigger();
        second.join().unwrap().unwrap();
    }

    /// A member joining a group with a backlog owns its share while events still wait:
    /// the busy member hands partitions over after the event in hand.
    fn join_under_backlog_gets_its_share(h) {
        let svc = h.hivent("svc-backlog", 4, &Recorder::new());
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        svc.signal("b:l").unwrap().receive(move |e| {
            std::thread::sleep(Duration::from_millis(5));
            done_tx.send(e.meta.event_uuid.clone()).unwrap();
            Ok(())
        });
        svc.register().unwrap();
        let p = producer(h);
        let signal = p.signal("b:l").unwrap();
        let mut batch = p.batch();
        for i in 0..800 {
            batch.push(&signal, &json!({"i": i}), EmitOptions::version(1).key(format!("k{i}"))).unwrap();
        }
        let mut expected: Vec<String> = batch.emit().unwrap().into_iter().map(|e| e.meta.event_uuid).collect();
        let shutdown = hivent::Shutdown::new();
        let stop = shutdown.clone();
        let runner = {
            let svc = svc.clone();
            std::thread::spawn(move || svc.run(1, ConsumerOptions::default(), &shutdown))
        };
        let mut got = vec![done_rx.recv_timeout(Duration::from_secs(20)).unwrap()];
        let joiner = svc.join(ConsumerOptions::default()).unwrap();
        let waiting = || (0..4).map(|p| h.partition("svc-backlog", p).len()).sum::<usize>();
        support::wait_for(Duration::from_secs(20), "the joiner owns two partitions", || joiner.heartbeat().unwrap().len() == 2);
        assert!(waiting() > 0, "the backlog was drained before the joiner got its share");
        joiner.run_until_idle().unwrap();
        while got.len() < expected.len() {
            got.push(done_rx.recv_timeout(Duration::from_secs(30)).expect("events stopped arriving"));
        }
        stop.trigger();
        runner.join().unwrap().unwrap();
        assert!(done_rx.try_recv().is_err(), "an event was handled twice");
        got.sort();
        expected.sort();
        assert_eq!(got, expected);
    }

    /// An emit says how many services stored it, single and batch: none when no service
    /// receives its signal, each service once however it receives it.
    fn emits_say_how_many_services_stored_them(h) {
        let p = producer(h);
        let (x, y) = (p.signal("r:x").unwrap(), p.signal("r:y").unwrap());
        assert_eq!(y.emit_with_receipt(&json!({}), EmitOptions::version(1)).unwrap().receiving_services, 0);
        let named = h.hivent("svc-r1", 2, &Recorder::new());
        let _a = record(&named, "r:x");
        named.register().unwrap();
        let star = h.hivent("svc-r2", 2, &Recorder::new());
        let _b = record(&star, "*");
        let _c = record(&star, "r:x");
        star.register().unwrap();
        assert_eq!(x.emit_with_receipt(&json!({}), EmitOptions::version(1)).unwrap().receiving_services, 2);
        assert_eq!(y.emit_with_receipt(&json!({}), EmitOptions::version(1)).unwrap().receiving_services, 1);
        let mut batch = p.batch();
        batch.push(&x, &json!({"n": 1}), EmitOptions::version(1)).unwrap();
        batch.push(&y, &json!({"n": 2}), EmitOptions::version(1)).unwrap();
        let counts: Vec<usize> = batch.emit_with_receipts().unwrap().iter().map(|e| e.receiving_services).collect();
        assert_eq!(counts, [2, 1]);
    }

    /// Names that would collide with hivent's own keys are refused at `signal()`,
    /// naming the reason: a service's own partitions, counts, dead letters, group keys.
    fn colliding_names_are_refused_at_signal(h) {
        let svc = h.hivent("victim", 2, &Recorder::new());
        for name in ["victim:1", "victim:partition_count", "victim:0:dead_letter", "victim:hivent:owners", "hivent:emitted:x"] {
            let Err(error) = svc.signal(name) else { panic!("{name} was accepted") };
            assert!(matches!(&error, hivent::Error::InvalidSignalName { name: n, .. } if n == name), "{name}: {error}");
            assert!(error.to_string().contains("collide"), "{error}");
        }
        assert!(svc.signal("victim:created").is_ok());
        assert!(svc.signal("other:1").is_ok(), "another service's partitions are checked where that service is known");
    }

    /// A fetch reads about its byte budget of events, and always at least one event,
    /// however large, so a big backlog bounds the worker's memory and still moves.
    fn fetches_are_bounded_by_bytes(h) {
        let svc = h.hivent("svc-bytes", 1, &Recorder::new());
        let seen = record(&svc, "b:y");
        svc.register().unwrap();
        let signal = producer(h).signal("b:y").unwrap();
        for n in 0..6 {
            signal.emit(&json!({"n": n, "pad": "x".repeat(1000)}), 1).unwrap();
        }
        let sizes: Vec<usize> = h.partition("svc-bytes", 0).iter().map(String::len).collect();
        let budget = sizes[0] + sizes[1];
        let consumer = svc.join(ConsumerOptions::default().max_fetch_bytes(budget)).unwrap();
        assert_eq!(consumer.poll().unwrap(), 2);
        let tiny = svc.join(ConsumerOptions::default().max_fetch_bytes(1)).unwrap();
        consumer.leave().unwrap();
        assert_eq!(tiny.poll().unwrap(), 1, "one event larger than the budget is still read");
        assert_eq!(tiny.run_until_idle().unwrap(), 3);
        assert_eq!(seen.lock().len(), 6);
    }

    /// An event larger than `max_event_bytes` (1 MiB by default) is refused before
    /// anything is sent, with the sizes named; nothing reaches the receiving service.
    fn oversized_events_are_refused_before_sending(h) {
        let svc = h.hivent("svc-big", 1, &Recorder::new());
        let _seen = record(&svc, "big:one");
        svc.register().unwrap();
        let signal = producer(h).signal("big:one").unwrap();
        let error = signal.emit(&json!({"blob": "x".repeat(10 << 20)}), 1).unwrap_err();
        assert!(matches!(error, hivent::Error::EventTooLarge { limit: 1_048_576, actual, .. } if actual > 10 << 20), "{error}");
        let p = producer(h);
        let mut batch = p.batch();
        let too_big = batch.push(&signal, &json!({"blob": "x".repeat(2 << 20)}), EmitOptions::version(1));
        assert!(too_big.is_err());
        assert!(batch.is_empty());
        assert!(h.partition("svc-big", 0).is_empty());
        signal.emit(&json!({"blob": "x".repeat(1000)}), 1).unwrap();
        assert_eq!(h.partition("svc-big", 0).len(), 1);
    }

    /// Bad items of every kind between good events: each bad one is dead-lettered with
    /// its raw text and a reason, the worker goes on, and the good events are handled
    /// once each, in order.
    fn bad_items_are_dead_lettered_and_nothing_else_moves(h) {
        let recorder = Recorder::new();
        let svc = h.hivent("svc-bad", 1, &recorder);
        let seen = record(&svc, "g:ood");
        let consumer = svc.consumer().unwrap();
        let meta = |fields: &str| format!(r#"{{"payload":{{}},"meta":{{{fields}}}}}"#);
        let good_meta = r#""event_uuid":"0123456789abcdef0123456789abcdef","name":"g:ood","cid":"c","producer":"p","created_at":"2026-12-01T04:56:33.123Z""#;
        let bad: Vec<String> = vec![
            "".into(),
            "not json at all".into(),
            "[1,2,3]".into(),
            "null".into(),
            r#"{"meta":{}}"#.into(),
            meta(&format!(r#"{good_meta},"version":{{"x":1}}"#)),
            meta(r#""event_uuid":5,"name":"g:ood","version":1,"cid":"c","producer":"p","created_at":"2026-12-01T04:56:33.123Z""#),
            meta(&format!(r#"{},"version":1"#, good_meta.replace("2026-12-01T04:56:33.123Z", "yesterday"))),
            format!("{{\"payload\":\"{}\"", "x".repeat(2 << 20)),
        ];
        let signal = producer(h).signal("g:ood").unwrap();
        let mut good = Vec::new();
        for item in &bad {
            good.push(signal.emit(&json!({"before": good.len()}), 1).unwrap());
            h.push_raw("svc-bad", 0, item);
        }
        good.push(signal.emit(&json!({"last": true}), 1).unwrap());
        consumer.run_until_idle().unwrap();
        assert_eq!(*seen.lock(), good, "the good events, once each, in order");
        assert_eq!(h.dead_letters("svc-bad", 0), bad, "every bad item, raw, in order");
        let failures = recorder.failures();
        assert_eq!(failures.len(), bad.len());
        for (failure, item) in failures.iter().zip(&bad) {
            assert!(matches!(failure, Call::Failed { raw, error, .. } if raw == item && !error.is_empty()), "{failure:?}");
        }
        assert!(h.partition("svc-bad", 0).is_empty());
    }

    /// No number changes value between an emit and a handler: integers beyond 64 bits,
    /// `-0` and float text exactly as written, whether emitted from JSON text or stored
    /// by another producer.
    fn numbers_keep_their_text_end_to_end(h) {
        let svc = h.hivent("svc-numbers", 1, &Recorder::new());
        let seen = record(&svc, "n:um");
        let consumer = svc.consumer().unwrap();
        let text = r#"{"big":18446744073709551616,"huge":-123456789012345678901234567890,"neg0":-0,"f":9.99e-302,"g":1.0e+20,"h":0.1}"#;
        let payload: serde_json::Value = serde_json::from_str(text).unwrap();
        producer(h).signal("n:um").unwrap().emit(&payload, 1).unwrap();
        assert!(h.partition("svc-numbers", 0)[0].contains(text), "stored as written");
        let foreign = format!(r#"{{"payload":{text},"meta":{{"event_uuid":"0123456789abcdef0123456789abcdef","name":"n:um","version":1,"cid":"c","producer":"ruby","created_at":"2026-12-01T04:56:33.123Z"}}}}"#);
        h.push_raw("svc-numbers", 0, &foreign);
        assert_eq!(consumer.run_until_idle().unwrap(), 2);
        for event in seen.lock().iter() {
            assert_eq!(event.payload.to_string(), text);
            assert_eq!(event.payload["f"].as_f64(), Some(9.99e-302));
        }
    }

    /// A handler sees the item exactly as stored (`Event::raw`), escapes and number
    /// notation of another producer included; an event built here has none.
    fn handlers_see_the_stored_text(h) {
        let svc = h.hivent("svc-rawtext", 1, &Recorder::new());
        let raws: Arc<parking_lot::Mutex<Vec<Option<String>>>> = Arc::default();
        let sink = raws.clone();
        svc.signal("r:aw").unwrap().receive(move |e| {
            sink.lock().push(e.raw().map(str::to_owned));
            Ok(())
        });
        let consumer = svc.consumer().unwrap();
        let stored = r#"{"payload":{"s":"\u003c","f":1.0e+20},"meta":{"event_uuid":"0123456789abcdef0123456789abcdef","name":"r:aw","version":1,"cid":"c","producer":"ruby","created_at":"2026-12-01T04:56:33.123Z"}}"#;
        h.push_raw("svc-rawtext", 0, stored);
        assert_eq!(consumer.run_until_idle().unwrap(), 1);
        assert_eq!(*raws.lock(), [Some(stored.to_owned())]);
        let built = producer(h).signal("r:aw").unwrap().emit(&json!({}), 1).unwrap();
        assert_eq!(built.raw(), None);
    }

    /// An event the gem wrote with its version as a string (`"2"`) is routed as that
    /// number, as the gem's consumers route it.
    fn string_versions_route_as_the_gem_routes_them(h) {
        let svc = h.hivent("svc-strver", 1, &Recorder::new());
        let seen: support::Seen = Arc::default();
        let sink = seen.clone();
        svc.signal("s:v").unwrap().receive_version(2, move |e| {
            sink.lock().push(e.clone());
            Ok(())
        });
        let consumer = svc.consumer().unwrap();
        h.push_raw("svc-strver", 0, r#"{"payload":{"n":1},"meta":{"event_uuid":"0123456789abcdef0123456789abcdef","name":"s:v","version":"2","cid":"c","producer":"ruby","created_at":"2026-12-01T04:56:33.123Z"}}"#);
        assert_eq!(consumer.run_until_idle().unwrap(), 1);
        assert_eq!(seen.lock().len(), 1);
        assert_eq!(seen.lock()[0].meta.version, Some(2));
        assert!(h.dead_letters("svc-strver", 0).is_empty());
    }

    /// `application_registered` gets each received signal with its version filter, as
    /// the gem's `[{name:, version:}]`: one entry per signal and filter.
    fn registration_reports_signals_with_versions(h) {
        let recorder = Recorder::new();
        let svc = h.hivent("svc-versions", 1, &recorder);
        svc.signal("a:b").unwrap().receive(|_| Ok(()));
        svc.signal("a:b").unwrap().receive_version(2, |_| Ok(()));
        svc.signal("a:b").unwrap().receive_version(2, |_| Ok(()));
        svc.signal("*").unwrap().receive(|_| Ok(()));
        svc.register().unwrap();
        let calls = recorder.calls();
        assert_eq!(
            calls[0],
            Call::Registered {
                client_id: "svc-versions".into(),
                signals: vec![("*".into(), None), ("a:b".into(), None), ("a:b".into(), Some(2))],
                partition_count: 1
            }
        );
    }

    /// A gem event whose version is `null` (or absent) reaches receivers of every
    /// version and `*`, and no versioned receiver, as the gem routes it.
    fn null_versions_reach_only_unversioned_receivers(h) {
        let svc = h.hivent("svc-nullver", 1, &Recorder::new());
        let hits: Arc<parking_lot::Mutex<Vec<&'static str>>> = Arc::default();
        for (label, version) in [("all", None), ("v0", Some(0)), ("v1", Some(1))] {
            let sink = hits.clone();
            let handler = move |e: &hivent::Event| {
                assert_eq!(e.meta.version, None);
                sink.lock().push(label);
                Ok(())
            };
            match version {
                Some(v) => svc.signal("n:v").unwrap().receive_version(v, handler),
                None => svc.signal("n:v").unwrap().receive(handler),
            }
        }
        let sink = hits.clone();
        svc.signal("*").unwrap().receive(move |_| {
            sink.lock().push("star");
            Ok(())
        });
        let consumer = svc.consumer().unwrap();
        let meta = r#""event_uuid":"0123456789abcdef0123456789abcdef","name":"n:v","cid":"c","producer":"ruby","created_at":"2026-12-01T04:56:33.123Z""#;
        h.push_raw("svc-nullver", 0, &format!(r#"{{"payload":{{}},"meta":{{{meta},"version":null}}}}"#));
        h.push_raw("svc-nullver", 0, &format!(r#"{{"payload":{{}},"meta":{{{meta}}}}}"#));
        assert_eq!(consumer.run_until_idle().unwrap(), 2);
        assert_eq!(*hits.lock(), ["all", "star", "all", "star"]);
        assert!(h.dead_letters("svc-nullver", 0).is_empty());
    }

    /// A handler that fails twice and then succeeds handles its event once more each
    /// time, in place: the next event of the same key waits, nothing is dead-lettered,
    /// and each retry is reported with its attempt. A delay the handler chooses is used.
    fn retry_then_success_keeps_key_order(h) {
        let recorder = Recorder::new();
        let svc = h.hivent("svc-retry", 2, &recorder);
        let log: Arc<parking_lot::Mutex<Vec<(i64, &'static str)>>> = Arc::default();
        let (sink, failures_left) = (log.clone(), Arc::new(std::sync::atomic::AtomicU32::new(2)));
        let policy = hivent::RetryPolicy::default().max_attempts(3).initial_delay(Duration::from_millis(1));
        svc.signal("r:t").unwrap().with_retry(policy).receive(move |e| {
            let n = e.payload["n"].as_i64().unwrap();
            if n == 0 && failures_left.fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |left| left.checked_sub(1)).is_ok() {
                sink.lock().push((n, "failed"));
                return Err(hivent::RetryAfter::new(Duration::from_millis(7), "database unavailable").into());
            }
            sink.lock().push((n, "handled"));
            Ok(())
        });
        let consumer = svc.consumer().unwrap();
        let signal = producer(h).signal("r:t").unwrap();
        let emitted: Vec<_> = (0..2).map(|n| signal.emit_with(&json!({"n": n}), EmitOptions::version(1).key("one key")).unwrap()).collect();
        assert_eq!(consumer.run_until_idle().unwrap(), 2);
        assert_eq!(*log.lock(), [(0, "failed"), (0, "failed"), (0, "handled"), (1, "handled")]);
        let retried = |attempt| Call::Retried {
            error: "a handler for \"r:t\" version 1 failed: database unavailable".into(),
            uuid: emitted[0].meta.event_uuid.clone(),
            attempt,
            delay: Duration::from_millis(7),
        };
        assert_eq!(recorder.retries(), [retried(1), retried(2)]);
        assert_eq!(recorder.successes().len(), 2);
        assert!(recorder.failures().is_empty());
        let p = partition_for(partition_hash(Some("one key"), &json!(null)), 2);
        assert!(h.partition("svc-retry", p).is_empty());
        assert!(h.dead_letters("svc-retry", p).is_empty());
    }

    /// A handler that always fails is tried `max_attempts` times, waiting between them,
    /// and then dead-lettered with a record of the error, the attempts, the times, the
    /// worker and the receiver; the dead letter itself stays the raw item.
    fn retries_exhausted_dead_letter_with_a_record(h) {
        let recorder = Recorder::new();
        let svc = h.hivent("svc-exhaust", 1, &recorder);
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = calls.clone();
        let policy = hivent::RetryPolicy::default().max_attempts(3).initial_delay(Duration::from_millis(2));
        svc.signal("r:x").unwrap().with_retry(policy).receive(move |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err("db down".into())
        });
        let consumer = svc.consumer().unwrap();
        let started = chrono::Utc::now();
        let event = producer(h).signal("r:x").unwrap().emit(&json!({"n": 1}), 1).unwrap();
        assert_eq!(consumer.run_until_idle().unwrap(), 1);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        let attempts: Vec<u32> = recorder.retries().iter().map(|c| match c { Call::Retried { attempt, .. } => *attempt, _ => 0 }).collect();
        assert_eq!(attempts, [1, 2]);
        assert_eq!(recorder.failures().len(), 1);
        let raw = h.dead_letters("svc-exhaust", 0);
        assert_eq!(raw.len(), 1);
        assert_eq!(hivent::Event::from_json(&raw[0]).unwrap(), event);
        let dlq = DeadLetterQueue::new(svc.backend().operations().unwrap(), "svc-exhaust");
        let entries = dlq.list(&DeadLetterFilter::all()).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].raw, raw[0]);
        assert_eq!(entries[0].event.as_ref().unwrap().event_uuid, event.meta.event_uuid);
        let record = entries[0].record.clone().expect("a failure record");
        assert_eq!(record.error, "a handler for \"r:x\" version 1 failed: db down");
        assert_eq!(record.attempts, 3);
        assert_eq!(record.worker, consumer.member_id());
        assert_eq!(record.receiver.as_ref().map(|r| (r.name.as_str(), r.version)), Some(("r:x", None)));
        assert!(!record.permanent);
        assert_eq!(record.command, None);
        assert!(started <= record.first_failed_at && record.first_failed_at < record.last_failed_at, "{record:?}");
        assert_eq!(h.stored_failure_records("svc-exhaust", 0), 1);
    }

    /// Failures retrying cannot fix skip the retries: an error marked `Permanent`, a
    /// payload the typed receiver rejects, an item that is not an event. Each is
    /// dead-lettered after one attempt, with a record saying it was permanent.
    fn permanent_failures_dead_letter_at_once(h) {
        #[derive(serde::Deserialize)]
        struct Order { #[allow(dead_code)] id: u64 }
        let recorder = Recorder::new();
        let svc = h.hivent("svc-permanent", 1, &recorder);
        let patient = hivent::RetryPolicy::default().max_attempts(50).initial_delay(Duration::from_secs(3600));
        svc.signal("card:charge").unwrap().with_retry(patient).receive(|_| Err(hivent::Permanent::new("card declined").into()));
        svc.signal("order:placed").unwrap().with_retry(patient).receive_as(|_o: Order, _meta| Ok(()));
        let consumer = svc.consumer().unwrap();
        let producer = producer(h);
        producer.signal("card:charge").unwrap().emit(&json!({"amount": 5}), 1).unwrap();
        producer.signal("order:placed").unwrap().emit(&json!({"id": "x"}), 1).unwrap();
        h.push_raw("svc-permanent", 0, "{not json");
        assert_eq!(consumer.run_until_idle().unwrap(), 3);
        assert!(recorder.retries().is_empty(), "{:?}", recorder.retries());
        let entries = DeadLetterQueue::new(svc.backend().operations().unwrap(), "svc-permanent").list(&DeadLetterFilter::all()).unwrap();
        let records: Vec<_> = entries.iter().map(|e| e.record.clone().unwrap()).collect();
        assert_eq!(records.iter().map(|r| (r.attempts, r.permanent)).collect::<Vec<_>>(), [(1, true); 3]);
        assert_eq!(records[0].error, "a handler for \"card:charge\" version 1 failed: card declined");
        assert!(records[1].error.starts_with("the payload of \"order:placed\" version 1 does not match the receiver's type"), "{}", records[1].error);
        assert!(records[2].error.contains("is not a valid event"), "{}", records[2].error);
        assert_eq!(records[2].receiver, None);
        assert_eq!(entries[2].raw, "{not json");
    }

    /// Shutdown during the wait before a retry stops the worker at once; the event
    /// stays first in its partition, not dead-lettered, and its attempts are kept: the
    /// next worker counts on from them.
    fn shutdown_during_backoff_keeps_the_event_and_its_attempts(h) {
        let recorder = Recorder::new();
        let svc = h.hivent("svc-stop-retry", 1, &recorder);
        let hour = hivent::RetryPolicy::default().max_attempts(5).initial_delay(Duration::from_secs(3600));
        svc.signal("s:r").unwrap().with_retry(hour).receive(|_| Err("not yet".into()));
        svc.register().unwrap();
        let event = producer(h).signal("s:r").unwrap().emit(&json!({"n": 1}), 1).unwrap();
        let shutdown = hivent::Shutdown::new();
        let stop = shutdown.clone();
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let runner = {
            let svc = svc.clone();
            std::thread::spawn(move || done_tx.send(svc.run(1, ConsumerOptions::default(), &shutdown)).unwrap())
        };
        support::wait_for(Duration::from_secs(20), "the first attempt failed", || recorder.retries().len() == 1);
        stop.trigger();
        let outcome = done_rx.recv_timeout(Duration::from_secs(30)).expect("the worker did not stop during its hour-long wait");
        outcome.unwrap();
        runner.join().unwrap();
        assert_eq!(h.partition("svc-stop-retry", 0), [event.to_json()]);
        assert!(h.dead_letters("svc-stop-retry", 0).is_empty());
        // The next worker of the service allows two attempts: the one made before the
        // stop counts, so its first failure is the last.
        let next = h.hivent("svc-stop-retry", 1, &Recorder::new());
        next.signal("s:r").unwrap().with_retry(hour.max_attempts(2)).receive(|_| Err("still not".into()));
        assert_eq!(next.consumer().unwrap().run_until_idle().unwrap(), 1);
        let entries = DeadLetterQueue::new(next.backend().operations().unwrap(), "svc-stop-retry").list(&DeadLetterFilter::all()).unwrap();
        let record = entries[0].record.clone().unwrap();
        assert_eq!(record.attempts, 2);
        assert!(record.first_failed_at < record.last_failed_at);
    }

    /// A partition the group moves to another member while an event waits to be
    /// retried is handed over at once: the old owner starts no further attempt, and the
    /// new owner handles the event afresh.
    fn partition_moved_during_backoff_ends_the_retries(h) {
        let recorder = Recorder::new();
        let svc = h.hivent("svc-moved-retry", 2, &recorder);
        let handled: support::Handled = Arc::default();
        let (sink, fail) = (handled.clone(), Arc::new(std::sync::atomic::AtomicBool::new(true)));
        let hour = hivent::RetryPolicy::default().initial_delay(Duration::from_secs(3600));
        svc.signal("m:r").unwrap().with_retry(hour).receive(move |e| {
            sink.lock().push((std::thread::current().name().unwrap_or("?").to_owned(), e.clone()));
            if fail.swap(false, std::sync::atomic::Ordering::SeqCst) { Err("flaky".into()) } else { Ok(()) }
        });
        let c1 = svc.consumer().unwrap();
        // c2 is a member from its first heartbeat on; the split will give it `moving`.
        let c2 = svc.join(ConsumerOptions::default()).unwrap();
        let members = [c1.member_id().to_owned(), c2.member_id().to_owned()];
        let moving = hivent::backend::desired_partitions(&members, c2.member_id(), 2)[0];
        let key = (0..).map(|i| format!("k{i}")).find(|k| partition_for(partition_hash(Some(k), &json!(null)), 2) == moving).unwrap();
        let event = producer(h).signal("m:r").unwrap().emit_with(&json!({"n": 1}), EmitOptions::version(1).key(key)).unwrap();
        // Not a scoped thread: should c1 wait its hour after all, the test fails rather
        // than waiting with it.
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let c1 = Arc::new(c1);
        let polling = c1.clone();
        std::thread::Builder::new().name("c1".into()).spawn(move || done_tx.send(polling.poll()).unwrap()).unwrap();
        support::wait_for(Duration::from_secs(20), "c1's first attempt failed", || recorder.retries().len() == 1);
        support::wait_for(Duration::from_secs(20), "c2 took the partition over", || c2.heartbeat().unwrap() == [moving]);
        let polled = done_rx.recv_timeout(Duration::from_secs(30)).expect("c1 went on waiting for its hour-long retry");
        assert_eq!(polled.unwrap(), 1);
        assert_eq!(h.partition("svc-moved-retry", moving).len(), 1, "the event stayed");
        assert_eq!(c2.run_until_idle().unwrap(), 1);
        let handled = handled.lock().clone();
        let by: Vec<(&str, &hivent::Event)> = handled.iter().map(|(t, e)| (t.as_str(), e)).collect();
        assert_eq!(by.len(), 2, "{by:?}");
        assert_eq!(by[0], ("c1", &event));
        assert_ne!(by[1].0, "c1");
        assert_eq!(by[1].1, &event);
        assert_eq!(recorder.retries().len(), 1);
        assert!(h.dead_letters("svc-moved-retry", moving).is_empty());
        assert!(h.partition("svc-moved-retry", moving).is_empty());
    }

    /// A claim voided while an event waits to be retried (here by a dead-letter replay)
    /// ends the wait: the worker starts no attempt under the lost claim, reclaims the
    /// partition and reads it afresh, the replayed dead letter first.
    fn claim_lost_during_backoff_ends_the_wait(h) {
        let recorder = Recorder::new();
        let svc = h.hivent("svc-lost-retry", 1, &recorder);
        let handled: support::Seen = Arc::default();
        let (sink, fail) = (handled.clone(), Arc::new(std::sync::atomic::AtomicBool::new(true)));
        let hour = hivent::RetryPolicy::default().initial_delay(Duration::from_secs(3600));
        svc.signal("l:r").unwrap().with_retry(hour).receive(move |e| {
            sink.lock().push(e.clone());
            if e.payload["poison"] == true { return Err(hivent::Permanent::new("poison").into()); }
            if fail.swap(false, std::sync::atomic::Ordering::SeqCst) { Err("flaky".into()) } else { Ok(()) }
        });
        let consumer = svc.consumer().unwrap();
        let signal = producer(h).signal("l:r").unwrap();
        let poison = signal.emit(&json!({"poison": true}), 1).unwrap();
        let event = signal.emit(&json!({"n": 1}), 1).unwrap();
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let consumer = Arc::new(consumer);
        let polling = consumer.clone();
        std::thread::spawn(move || done_tx.send(polling.poll()).unwrap());
        support::wait_for(Duration::from_secs(20), "the first attempt failed", || recorder.retries().len() == 1);
        let ops = svc.backend().operations().unwrap();
        assert_eq!(ops.replay_dead_letters("svc-lost-retry", 0, DeadLetterPick::Oldest(1)).unwrap(), 1);
        let polled = done_rx.recv_timeout(Duration::from_secs(30)).expect("the worker went on waiting under a lost claim");
        assert_eq!(polled.unwrap(), 2);
        assert_eq!(h.partition("svc-lost-retry", 0), [poison.to_json(), event.to_json()], "nothing moved but the replayed dead letter");
        assert_eq!(consumer.run_until_idle().unwrap(), 2);
        assert_eq!(*handled.lock(), [poison.clone(), event.clone(), poison, event]);
        assert_eq!(recorder.retries().len(), 1);
        assert_eq!(h.dead_letters("svc-lost-retry", 0).len(), 1);
        assert!(h.partition("svc-lost-retry", 0).is_empty());
    }

    /// While an event waits longer than the membership lifetime to be retried, the
    /// heartbeat keeps the worker a live member and the partition's owner throughout.
    fn heartbeats_keep_the_membership_during_backoff(h) {
        let recorder = Recorder::new();
        let svc = h.hivent("svc-keep-retry", 1, &recorder);
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = fail.clone();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let wait = h.timing().member_ttl + Duration::from_millis(500);
        let policy = hivent::RetryPolicy::default().initial_delay(wait * 2).max_delay(wait * 2);
        svc.signal("k:r").unwrap().with_retry(policy).receive(move |e| {
            if flag.swap(false, std::sync::atomic::Ordering::SeqCst) { return Err("later".into()); }
            done_tx.send(e.clone()).unwrap();
            Ok(())
        });
        let consumer = svc.consumer().unwrap();
        let member = consumer.member_id().to_owned();
        let event = producer(h).signal("k:r").unwrap().emit(&json!({"n": 1}), 1).unwrap();
        let shutdown = hivent::Shutdown::new();
        let stop = shutdown.clone();
        let runner = std::thread::spawn(move || consumer.run(&shutdown));
        support::wait_for(Duration::from_secs(20), "the first attempt failed", || recorder.retries().len() == 1);
        let ops = svc.backend().operations().unwrap();
        let mut looked = 0;
        let handled = loop {
            if let Ok(event) = done_rx.try_recv() { break event; }
            let status = ops.service_status("svc-keep-retry").unwrap();
            assert_eq!(status.consumers, std::slice::from_ref(&member), "still a member after {looked} looks");
            assert_eq!(status.partitions[0].owner.as_deref(), Some(member.as_str()));
            looked += 1;
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(handled, event);
        assert!(looked >= 10, "the wait was watched ({looked} looks)");
        stop.trigger();
        runner.join().unwrap().unwrap();
        assert!(h.partition("svc-keep-retry", 0).is_empty());
        let revoked: Vec<Call> = recorder.calls().into_iter().filter(|c| matches!(c, Call::Revoked(_))).collect();
        assert_eq!(revoked, [Call::Revoked(vec![0])], "revoked only when the worker left");
    }

    /// A replayed dead letter is handled once it can succeed, and its failure record
    /// goes with it; a replay by uuid or signal takes only what it selects, and a dry
    /// run changes nothing.
    fn replayed_dead_letter_succeeds_and_its_record_is_gone(h) {
        let svc = h.hivent("svc-replay-record", 1, &Recorder::new());
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let seen: support::Seen = Arc::default();
        for name in ["a:x", "b:x"] {
            let (flag, sink) = (fail.clone(), seen.clone());
            svc.signal(name).unwrap().receive(move |e| {
                if flag.load(std::sync::atomic::Ordering::SeqCst) { return Err(hivent::Permanent::new("down").into()); }
                sink.lock().push(e.clone());
                Ok(())
            });
        }
        let consumer = svc.consumer().unwrap();
        let producer = producer(h);
        let a1 = producer.signal("a:x").unwrap().emit(&json!({"n": 1}), 1).unwrap();
        let b1 = producer.signal("b:x").unwrap().emit(&json!({"n": 2}), 1).unwrap();
        let a2 = producer.signal("a:x").unwrap().emit(&json!({"n": 3}), 1).unwrap();
        assert_eq!(consumer.run_until_idle().unwrap(), 3);
        assert_eq!(h.stored_failure_records("svc-replay-record", 0), 3);
        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        let dlq = DeadLetterQueue::new(svc.backend().operations().unwrap(), "svc-replay-record");
        let by_uuid = DeadLetterFilter::all().event_uuid(a2.meta.event_uuid.clone());
        let plan = dlq.replay(&by_uuid, true).unwrap();
        assert_eq!((plan.total, plan.left, plan.left_selected, plan.dry_run), (1, 2, 0, true));
        assert_eq!(h.dead_letters("svc-replay-record", 0).len(), 3, "a dry run moves nothing");
        let done = dlq.replay(&by_uuid, false).unwrap();
        assert_eq!((done.taken.clone(), done.left), (vec![(0, 1)], 2));
        assert_eq!(consumer.run_until_idle().unwrap(), 1);
        assert_eq!(*seen.lock(), std::slice::from_ref(&a2));
        assert_eq!(h.stored_failure_records("svc-replay-record", 0), 2);
        let by_signal = DeadLetterFilter::all().signal("a:x");
        assert_eq!(dlq.list(&by_signal).unwrap().iter().map(|e| e.raw.clone()).collect::<Vec<_>>(), [a1.to_json()]);
        assert_eq!(dlq.replay(&by_signal, false).unwrap().total, 1);
        assert_eq!(consumer.run_until_idle().unwrap(), 1);
        assert_eq!(*seen.lock(), [a2, a1]);
        let left = dlq.list(&DeadLetterFilter::all()).unwrap();
        assert_eq!(left.iter().map(|e| e.raw.clone()).collect::<Vec<_>>(), [b1.to_json()]);
        assert!(left[0].record.is_some(), "what was not replayed keeps its record");
        assert_eq!(h.stored_failure_records("svc-replay-record", 0), 1);
        assert_eq!(dlq.purge(&DeadLetterFilter::all().signal("b:x"), false).unwrap().total, 1);
        assert_eq!(h.stored_failure_records("svc-replay-record", 0), 0);
        assert!(matches!(dlq.list(&DeadLetterFilter::all().partition(1)), Err(hivent::Error::NoSuchPartition { partition: 1, partition_count: 1, .. })));
    }

    /// Async emits (`emit_async`, a batch's `emit_async`, from many tasks at once on a
    /// multi-thread runtime) store what blocking ones do: every event once, each key's
    /// events in emit order, with the same receipts.
    fn async_emits_store_what_blocking_ones_do(h) {
        let svc = h.hivent("svc-async-emit", 4, &Recorder::new());
        let seen = record(&svc, "order:placed");
        let consumer = svc.consumer().unwrap();
        let producer = producer(h);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (tasks, batch) = runtime.block_on(async {
            let signal = producer.signal("order:placed").unwrap();
            // 8 keys, 5 events each in order per key, the keys' tasks all at once.
            let tasks: Vec<_> = (0..8)
                .map(|key| {
                    let signal = signal.clone();
                    tokio::spawn(async move {
                        let mut events = Vec::new();
                        for n in 0..5 {
                            let options = EmitOptions::version(1).key(format!("k{key}"));
                            events.push(signal.emit_with_async(&json!({"key": key, "n": n}), options).await.unwrap());
                        }
                        events
                    })
                })
                .collect();
            let mut emitted = Vec::new();
            for task in tasks {
                emitted.push(task.await.unwrap());
            }
            let mut batch = producer.batch();
            for n in 0..3 {
                batch.push(&signal, &json!({"batch": n}), EmitOptions::version(2)).unwrap();
            }
            let receipts = batch.emit_with_receipts_async().await.unwrap();
            assert_eq!(receipts.iter().map(|r| r.receiving_services).collect::<Vec<_>>(), [1, 1, 1]);
            let nobody = producer.signal("nobody:listens").unwrap()
                .emit_with_receipt_async(&json!({}), EmitOptions::version(1)).await.unwrap();
            assert_eq!(nobody.receiving_services, 0);
            (emitted, receipts.into_iter().map(|r| r.event).collect::<Vec<_>>())
        });
        assert_eq!(consumer.run_until_idle().unwrap(), 43);
        let seen = seen.lock().clone();
        assert_eq!(seen.len(), 43);
        for events in &tasks {
            let delivered: Vec<_> = seen.iter().filter(|e| e.payload["key"] == events[0].payload["key"]).cloned().collect();
            assert_eq!(&delivered, events, "one key's events, once each, in emit order");
        }
        // The batch's events have no key: they spread over the partitions, so only the
        // events (not their order across partitions) are compared.
        let uuid = |e: &hivent::Event| e.meta.event_uuid.clone();
        let mut delivered: Vec<_> = seen.iter().filter(|e| e.meta.version == Some(2)).cloned().collect();
        let mut batch = batch;
        delivered.sort_by_key(uuid);
        batch.sort_by_key(uuid);
        assert_eq!(delivered, batch);
    }

    /// Async handlers keep the rules of blocking ones: they run in registration order
    /// with the others, a failure is retried in place, a panic and a payload that does
    /// not decode are dead letters with their reasons, and the consumer goes on.
    fn async_handlers_follow_the_dispatch_and_failure_rules(h) {
        #[derive(serde::Deserialize)]
        struct Order { id: u64 }
        let recorder = Recorder::new();
        let svc = h.hivent("svc-async-handler", 1, &recorder);
        let log = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (sink, tries) = (log.clone(), calls.clone());
        svc.signal("order:placed").unwrap().receive_as_async(move |order: Order, meta| {
            let (sink, tries) = (sink.clone(), tries.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                if order.id == 2 && tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    return Err("not yet".into());
                }
                assert!(order.id != 3, "order 3 is cursed");
                sink.lock().push(format!("typed {} v{}", order.id, meta.version.unwrap()));
                Ok(())
            }
        });
        let sink = log.clone();
        svc.signal("order:placed").unwrap().receive_version(1, move |e| {
            sink.lock().push(format!("blocking {}", e.payload["id"]));
            Ok(())
        });
        let consumer = svc.consumer().unwrap();
        let signal = producer(h).signal("order:placed").unwrap();
        for payload in [json!({"id": 1}), json!({"id": 2}), json!({"id": 3}), json!({"id": "four"}), json!({"id": 5})] {
            signal.emit(&payload, 1).unwrap();
        }
        assert_eq!(consumer.run_until_idle().unwrap(), 5);
        assert_eq!(*log.lock(), ["typed 1 v1", "blocking 1", "typed 2 v1", "blocking 2", "typed 5 v1", "blocking 5"]);
        assert_eq!(h.dead_letters("svc-async-handler", 0).len(), 2);
        let failures: Vec<String> = recorder.failures().into_iter().map(|c| match c {
            Call::Failed { error, .. } => error,
            other => panic!("{other:?}"),
        }).collect();
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert_eq!(failures[0], "a handler for \"order:placed\" version 1 panicked: order 3 is cursed");
        assert!(failures[1].starts_with("the payload of \"order:placed\" version 1 does not match the receiver's type"), "{}", failures[1]);
        let retried: Vec<(String, u32)> = recorder.retries().into_iter().map(|c| match c {
            Call::Retried { error, attempt, .. } => (error, attempt),
            other => panic!("{other:?}"),
        }).collect();
        let panicked = "a handler for \"order:placed\" version 1 panicked: order 3 is cursed".to_owned();
        assert_eq!(retried, [("a handler for \"order:placed\" version 1 failed: not yet".to_owned(), 1), (panicked.clone(), 1), (panicked.clone(), 2), (panicked.clone(), 3), (panicked, 4)]);
    }

    /// A worker embedded in a tokio application: started from async code with async
    /// handlers on the application's runtime, it handles async emits, and stopping it
    /// from async code waits until it has acknowledged what it handled and left.
    fn a_worker_in_a_tokio_application_starts_and_stops_from_async_code(h) {
        let svc = h.hivent("svc-embedded", 2, &Recorder::new());
        let producer = producer(h);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let handled = runtime.block_on(async {
            let (done, mut handled) = tokio::sync::mpsc::unbounded_channel();
            svc.signal("invoice:paid").unwrap().receive_async(move |event| {
                let done = done.clone();
                async move {
                    tokio::task::yield_now().await;
                    done.send(event.payload["n"].as_i64().unwrap())?;
                    Ok(())
                }
            });
            let running = svc.start(2, ConsumerOptions::default().idle_wait(Duration::from_millis(50))).unwrap();
            let signal = producer.signal("invoice:paid").unwrap();
            for n in 0..20 {
                signal.emit_async(&json!({"n": n}), 1).await.unwrap();
            }
            let mut seen = Vec::new();
            while seen.len() < 20 {
                let next = tokio::time::timeout(Duration::from_secs(30), handled.recv()).await;
                seen.push(next.expect("every event handled within 30 s").unwrap());
            }
            running.stop_and_wait().await.unwrap();
            seen.sort();
            seen
        });
        assert_eq!(handled, (0..20).collect::<Vec<_>>());
        assert!(h.partition("svc-embedded", 0).is_empty() && h.partition("svc-embedded", 1).is_empty(), "everything acknowledged");
        let status = svc.backend().operations().unwrap().service_status("svc-embedded").unwrap();
        assert!(status.consumers.is_empty(), "left the group: {:?}", status.consumers);
    }

    /// Every event is handled inside a span with its service, partition, name,
    /// version, uuid and cid, so a handler's own log lines carry them; an emit's span
    /// names the producer, the signal and how many services received it, and encloses
    /// what an inline handle's emit delivers.
    fn handlers_log_inside_the_span_of_their_event(h) {
        let svc = h.hivent("svc-spans", 1, &Recorder::new());
        svc.signal("user:created").unwrap().receive(|event| {
            tracing::info!(id = %event.payload["id"], "handler says hello");
            Ok(())
        });
        let failed_once = std::sync::atomic::AtomicBool::new(false);
        svc.signal("user:deleted").unwrap().receive(move |_event| {
            match failed_once.swap(true, std::sync::atomic::Ordering::SeqCst) {
                false => Err("not yet".into()),
                true => Ok(()),
            }
        });
        let consumer = svc.consumer().unwrap();
        let producer = producer(h);
        let (log, subscriber) = support::captured_log();
        let (emitted, deleted) = tracing::subscriber::with_default(subscriber, || {
            let event = producer.signal("user:created").unwrap()
                .emit_with(&json!({"id": 7}), EmitOptions::version(3).cid("corr-1")).unwrap();
            let deleted = producer.signal("user:deleted").unwrap().emit(&json!({"id": 7}), 1).unwrap();
            assert_eq!(consumer.run_until_idle().unwrap(), 2);
            (event, deleted)
        });
        let log = log.lock().clone();
        // The retry is logged inside the failing event's span.
        let retry = log.lines().find(|l| l.contains("retrying in place")).unwrap_or_else(|| panic!("{log}"));
        let retried_span = format!("hivent.event{{service=\"svc-spans\" partition=0 event=\"user:deleted\" version=1 uuid=\"{}\"", deleted.meta.event_uuid);
        assert!(retry.contains(&retried_span), "{retry}\nlacks {retried_span}");
        let line = log.lines().find(|l| l.contains("handler says hello")).unwrap_or_else(|| panic!("{log}"));
        let span = format!(
            "hivent.event{{service=\"svc-spans\" partition=0 event=\"user:created\" version=3 uuid=\"{}\" cid=\"corr-1\"}}",
            emitted.meta.event_uuid
        );
        assert!(line.contains(&span), "{line}\nlacks {span}");

        // Inline: the handler runs inside the emit's span, its receivers counted.
        drop(consumer); // leaves the group, so the inline handle's consumer owns the partition
        let inline = Hivent::inline(svc.config().clone(), svc.backend().clone());
        inline.signal("user:created").unwrap().receive(|_event| {
            tracing::info!("inline handler");
            Ok(())
        });
        let (log, subscriber) = support::captured_log();
        tracing::subscriber::with_default(subscriber, || {
            inline.signal("user:created").unwrap().emit(&json!({"id": 8}), 1).unwrap();
        });
        let log = log.lock().clone();
        let line = log.lines().find(|l| l.contains("inline handler")).unwrap_or_else(|| panic!("{log}"));
        assert!(line.contains("hivent.emit{service=\"svc-spans\" signal=\"user:created\" events=1 receiving_services=1}:hivent.event{service=\"svc-spans\" partition=0 event=\"user:created\" version=1"), "{line}");
    }

    /// The metrics count what happened: events emitted, processed, retried and
    /// dead-lettered by service, signal and version, one handler duration per attempt,
    /// one emit duration per call, the partitions owned, a heartbeat, and the lag before
    /// and after the consumer ran.
    fn metrics_count_what_happened(h) {
        let svc = h.hivent("svc-metrics", 2, &Recorder::new());
        svc.signal("order:placed").unwrap().receive(|event| match event.payload["fail"].as_bool() {
            Some(true) => Err("refused".into()),
            _ => Ok(()),
        });
        let consumer = svc.consumer().unwrap();
        let producer = producer(h);
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshots = recorder.snapshotter();
        let (before, after) = metrics::with_local_recorder(&recorder, || {
            let signal = producer.signal("order:placed").unwrap();
            for payload in [json!({"n": 1}), json!({"n": 2}), json!({"fail": true}), json!({"n": 3})] {
                signal.emit_with(&payload, EmitOptions::version(2).key("one")).unwrap();
            }
            svc.record_lag().unwrap();
            let before = support::MetricValues::of(&snapshots);
            assert_eq!(consumer.run_until_idle().unwrap(), 4);
            consumer.heartbeat().unwrap();
            svc.record_lag().unwrap();
            (before, support::MetricValues::of(&snapshots))
        });
        let partition = partition_for(partition_hash(Some("one"), &json!({})), 2).to_string();
        let lag = [("service", "svc-metrics"), ("partition", partition.as_str())];
        assert_eq!(before.gauge("hivent_partition_lag_events", &lag), Some(4.0));
        assert!(before.gauge("hivent_partition_oldest_event_age_seconds", &lag).unwrap() >= 0.0);
        let event = |service| [("service", service), ("signal", "order:placed"), ("version", "2")];
        // A snapshot takes the counts and histograms since the one before.
        assert_eq!(before.counter("hivent_events_emitted_total", &event("producer")), Some(4));
        assert_eq!(before.histogram_count("hivent_emit_duration_seconds", &[("service", "producer")]), Some(4));
        assert_eq!(after.counter("hivent_events_emitted_total", &event("producer")), Some(0));
        assert_eq!(after.counter("hivent_events_processed_total", &event("svc-metrics")), Some(3));
        assert_eq!(after.counter("hivent_events_retried_total", &event("svc-metrics")), Some(4), "the default five attempts");
        assert_eq!(after.counter("hivent_events_dead_lettered_total", &event("svc-metrics")), Some(1));
        assert_eq!(after.histogram_count("hivent_handler_duration_seconds", &event("svc-metrics")), Some(3 + 5));
        let member = [("service", "svc-metrics"), ("member", consumer.member_id())];
        assert_eq!(after.gauge("hivent_partitions_owned", &member), Some(2.0));
        assert_eq!(after.gauge("hivent_heartbeat_age_seconds", &member), Some(0.0));
        assert_eq!(after.gauge("hivent_partition_lag_events", &lag), Some(0.0));
        assert_eq!(after.gauge("hivent_partition_oldest_event_age_seconds", &lag), Some(0.0));
    }

    /// The status shows each member with its process, last heartbeat and partitions,
    /// healthy while it heartbeats, not heartbeating once it missed two, expired past
    /// its lifetime; partitions show a processing rate once events were processed.
    fn status_shows_members_health_and_rates(h) {
        let svc = h.hivent("svc-health", 2, &Recorder::new());
        let _seen = record(&svc, "a:b");
        let consumer = svc.consumer().unwrap();
        let signal = producer(h).signal("a:b").unwrap();
        for n in 0..20 {
            signal.emit(&json!({"n": n}), 1).unwrap();
        }
        assert_eq!(consumer.run_until_idle().unwrap(), 20);
        let ops = svc.backend().operations().unwrap();
        let status = ops.service_status("svc-health").unwrap();
        let [member] = &status.members[..] else { panic!("{:?}", status.members) };
        assert_eq!(member.id, consumer.member_id());
        assert_eq!(member.pid, Some(std::process::id()));
        assert_eq!(member.partitions, [0, 1]);
        assert_eq!(member.heartbeat_interval_ms, Some(h.timing().heartbeat_interval.as_millis() as u64));
        assert_eq!(member.health, hivent::MemberHealth::Healthy, "{member:?}");
        let rate: f64 = status.partitions.iter().map(|p| p.rate).sum();
        assert!(rate > 0.0, "{:?}", status.partitions);

        // Nobody heartbeats: missed two intervals, still a member.
        h.stall(h.timing().heartbeat_interval * 3);
        let status = ops.service_status("svc-health").unwrap();
        assert_eq!(status.members[0].health, hivent::MemberHealth::NotHeartbeating, "{:?}", status.members);
        assert_eq!(status.consumers, [consumer.member_id()]);

        h.stall(h.timing().past_ttl());
        let status = ops.service_status("svc-health").unwrap();
        assert_eq!(status.members[0].health, hivent::MemberHealth::Expired, "{:?}", status.members);
        assert!(status.consumers.is_empty());

        // A heartbeat makes it a healthy member again; leaving removes it.
        consumer.heartbeat().unwrap();
        let status = ops.service_status("svc-health").unwrap();
        assert_eq!(status.members.iter().map(|m| m.health).collect::<Vec<_>>(), [hivent::MemberHealth::Healthy]);
        drop(consumer);
        assert!(ops.service_status("svc-health").unwrap().members.is_empty());
    }

    /// A runtime that shuts down under a running async handler stops the consumer with
    /// `HandlerRuntimeGone`; the event stays first in its partition, and no attempt,
    /// retry or dead letter is counted for it.
    fn an_async_handler_whose_runtime_shuts_down_stops_the_consumer(h) {
        let recorder = Recorder::new();
        let svc = h.hivent("svc-runtime-gone", 1, &recorder);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (entered, handler_entered) = crossbeam_channel::bounded(1);
        svc.signal("a:b").unwrap().on_runtime(runtime.handle().clone()).receive_async(move |_event| {
            let entered = entered.clone();
            async move {
                let _ = entered.send(());
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        let consumer = svc.consumer().unwrap();
        producer(h).signal("a:b").unwrap().emit(&json!({}), 1).unwrap();
        let runner = std::thread::spawn(move || consumer.run_until_idle());
        handler_entered.recv_timeout(Duration::from_secs(30)).unwrap();
        runtime.shutdown_background();
        let outcome = runner.join().unwrap();
        assert!(matches!(outcome, Err(hivent::Error::HandlerRuntimeGone { partition: 0, .. })), "{outcome:?}");
        assert_eq!(h.partition("svc-runtime-gone", 0).len(), 1);
        assert!(recorder.retries().is_empty() && recorder.failures().is_empty(), "{:?}", recorder.calls());
    }

    /// An async handler whose consumer is polled from a task of the handler's own
    /// runtime (an inline emit, or `run_until_idle` inside a task) runs: the waiting
    /// worker hands its queued tasks over instead of blocking on them.
    fn an_async_handler_runs_when_polled_from_its_own_runtime(h) {
        let svc = h.hivent("svc-own-runtime", 1, &Recorder::new());
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (seen, handled) = crossbeam_channel::unbounded();
        let consumer = runtime.block_on(async {
            svc.signal("a:b").unwrap().receive_async(move |event| {
                let seen = seen.clone();
                async move { Ok(seen.send(event.payload["n"].as_i64().unwrap())?) }
            });
            svc.consumer().unwrap()
        });
        let signal = producer(h).signal("a:b").unwrap();
        for n in 0..5 {
            signal.emit(&json!({"n": n}), 1).unwrap();
        }
        let (done, finished) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let processed = runtime.block_on(async move { tokio::spawn(async move { consumer.run_until_idle() }).await.unwrap() });
            let _ = done.send(processed);
        });
        let processed = finished.recv_timeout(Duration::from_secs(60)).expect("the poll inside the runtime finished");
        assert_eq!(processed.unwrap(), 5);
        assert_eq!(handled.try_iter().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    }
}
