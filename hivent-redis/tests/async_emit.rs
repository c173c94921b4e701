//! Async emits on Redis: no thread waits for Redis, one copy after a lost reply, and the
//! blocking path's emits in doubt settled before an async retry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hivent_core::{Backend, Envelope};
use hivent_redis::RedisBackend;
use support::{gem_envelope, registration};

/// Retries the call `call_id` through the async path until Redis answers (it may still
/// be paused), within 20 s.
async fn republish_until_answered(
    backend: &RedisBackend,
    call_id: &str,
    envelope: &Envelope,
) -> Vec<usize> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match backend
            .republish_async(call_id, std::slice::from_ref(envelope))
            .await
        {
            Ok(counts) => return counts,
            Err(error) => {
                assert!(std::time::Instant::now() < deadline, "{error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A backend that gives up on a reply after 100 ms and tries an emit once, with
/// service `svc` receiving `e` in one partition.
fn impatient_backend(redis: &support::Redis) -> Arc<RedisBackend> {
    let options = support::fast_options()
        .response_timeout(Duration::from_millis(100))
        .emit_tries(1);
    let backend = Arc::new(RedisBackend::with_options(&redis.server.url(), options).unwrap());
    backend.register(&registration("svc", &["e"], 1)).unwrap();
    backend
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// While an async emit waits for a Redis that holds its writes, the one thread of a
/// current-thread runtime runs other tasks: the emit blocks no thread.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn an_async_emit_waiting_for_redis_leaves_its_thread_to_other_tasks() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let options = support::fast_options().response_timeout(Duration::from_secs(20));
    let backend = Arc::new(RedisBackend::with_options(&redis.server.url(), options).unwrap());
    backend.register(&registration("svc", &["e"], 1)).unwrap();
    let ticks = Arc::new(AtomicUsize::new(0));
    current_thread().block_on(async {
        // Opens the async connection and loads the script before the pause.
        assert_eq!(
            backend
                .publish_async("warm-up", &[gem_envelope("e", 0)])
                .await
                .unwrap(),
            [1]
        );
        redis.pause_writes(1000);
        let counter = Arc::clone(&ticks);
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        assert_eq!(
            backend
                .publish_async("paused", &[gem_envelope("e", 0)])
                .await
                .unwrap(),
            [1]
        );
        ticker.abort();
    });
    // A blocked thread would have run the ticker not once during the second emit.
    let ticked = ticks.load(Ordering::SeqCst);
    assert!(
        ticked >= 5,
        "the ticker ran {ticked} times while the emit waited"
    );
    assert_eq!(redis.len("svc:0"), 2);
}

/// An async emit whose reply was lost (Redis held the write past the response timeout)
/// is completed by an async retry with the same call id, and stored once.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn an_async_emit_whose_reply_was_lost_is_stored_once() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let backend = impatient_backend(&redis);
    let envelope = gem_envelope("e", 0);
    current_thread().block_on(async {
        assert_eq!(
            backend
                .publish_async("warm-up", &[gem_envelope("e", 0)])
                .await
                .unwrap(),
            [1]
        );
        redis.pause_writes(500);
        match backend
            .publish_async("call-1", std::slice::from_ref(&envelope))
            .await
        {
            Ok(counts) => {
                panic!("answered {counts:?} within a 100 ms timeout during a 500 ms pause")
            }
            Err(error) => assert!(
                matches!(error, hivent_core::Error::MaybeStored { .. }),
                "{error:?}"
            ),
        }
        assert_eq!(
            republish_until_answered(&backend, "call-1", &envelope).await,
            [1]
        );
    });
    // Whatever was still queued in Redis has run (or was dropped) by now.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(redis.len("svc:0"), 2, "the warm-up and one copy of call-1");
}

/// A blocking emit by cached routes whose reply was lost, retried through the async
/// path: one copy. (The async path settles the blocking path's transactions in doubt
/// before its script runs; this Redis drops a closed connection's queued transaction,
/// so the copy count here holds with or without that step.)
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn a_blocking_emit_in_doubt_retried_asynchronously_is_stored_once() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let backend = impatient_backend(&redis);
    // Two emits: the second reads the routes, so the next goes by transaction.
    for _ in 0..2 {
        backend
            .publish(&hivent_core::new_id(), &[gem_envelope("e", 0)])
            .unwrap();
    }
    // Every command paused, the settling's own `CLIENT KILL` too: the blocking call
    // fails with its transaction in doubt, and leaves it for the next try to settle.
    redis.command("CLIENT", &["PAUSE", "500", "ALL"]);
    let envelope = gem_envelope("e", 0);
    match backend.publish("call-1", std::slice::from_ref(&envelope)) {
        Ok(counts) => panic!("answered {counts:?} within a 100 ms timeout during a 500 ms pause"),
        Err(error) => assert!(
            matches!(error, hivent_core::Error::MaybeStored { .. }),
            "{error:?}"
        ),
    }
    current_thread().block_on(async {
        assert_eq!(
            republish_until_answered(&backend, "call-1", &envelope).await,
            [1]
        );
    });
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        redis.len("svc:0"),
        3,
        "the first two emits and one copy of call-1"
    );
}

/// A backend whose async connection was opened on a runtime that has ended opens a new
/// one for the next runtime's emit, rather than fail it (with one try, a failure would
/// be an emit that may have been stored).
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn an_async_emit_after_its_connections_runtime_ended_opens_a_new_one() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let options = support::fast_options().emit_tries(1);
    let backend = Arc::new(RedisBackend::with_options(&redis.server.url(), options).unwrap());
    backend.register(&registration("svc", &["e"], 1)).unwrap();
    for call in ["on-the-first-runtime", "on-the-second", "on-the-third"] {
        let stored =
            current_thread().block_on(backend.publish_async(call, &[gem_envelope("e", 0)]));
        assert_eq!(stored.unwrap(), [1], "{call}");
    }
    assert_eq!(redis.len("svc:0"), 3);
}
