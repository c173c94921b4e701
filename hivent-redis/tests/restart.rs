//! A Redis restart under a running producer and consumer: reconnects and script reloads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hivent_core::{Config, Event, Hivent};
use hivent_redis::test_server::{RedisServer, ServerError};
use hivent_redis::{RedisBackend, RedisOptions};
use parking_lot::Mutex;
use serde_json::json;

/// After Redis restarts (same port, data kept, script cache empty), emits go on and the
/// consumer's heartbeat and fetches recover on fresh connections: nothing is lost.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn producer_and_consumer_survive_a_redis_restart() {
    let persistent: Vec<String> = ["--appendonly", "yes", "--appendfsync", "always"]
        .map(String::from)
        .to_vec();
    let mut server = match RedisServer::start_with(&persistent) {
        Ok(server) => server,
        Err(ServerError::NotInstalled)
            if std::env::var("HIVENT_REQUIRE_REDIS").map_or(true, |v| v != "1") =>
        {
            eprintln!("skipped: redis-server not installed");
            return;
        }
        Err(error) => panic!("{error}"),
    };
    let options = RedisOptions::default()
        .heartbeat_interval(Duration::from_millis(100))
        .member_ttl(Duration::from_millis(2_000));
    let backend = Arc::new(RedisBackend::with_options(&server.url(), options).unwrap());
    let handle = |service: &str| {
        let config = Config::builder().client_id(service).build().unwrap();
        Hivent::new(config, backend.clone())
    };
    let receiver = handle("ledger");
    let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
    let sink = seen.clone();
    receiver.signal("entry:booked").unwrap().receive(move |e| {
        sink.lock().push(e.clone());
        Ok(())
    });
    let consumer = receiver.consumer().unwrap();
    let signal = handle("bank").signal("entry:booked").unwrap();
    let first = signal.emit(&json!({"n": 1}), 1).unwrap();
    assert_eq!(consumer.run_until_idle().unwrap(), 1);

    server.restart().unwrap();

    let second = signal.emit(&json!({"n": 2}), 1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().len() < 2 {
        assert!(Instant::now() < deadline, "the consumer did not recover");
        match consumer.poll() {
            Ok(_) => {}
            Err(error) if error.is_transient() => {}
            Err(error) => panic!("not a transient failure: {error}"),
        }
    }
    assert_eq!(*seen.lock(), [first, second]);
}

/// Runs a worker of `ledger` on threads until the returned sender is dropped; what it
/// handles arrives on the returned receiver.
fn run_ledger(
    backend: &Arc<RedisBackend>,
) -> (
    hivent_core::Shutdown,
    crossbeam_channel::Receiver<Event>,
    std::thread::JoinHandle<hivent_core::Result<()>>,
) {
    let config = Config::builder()
        .client_id("ledger")
        .partition_count(2)
        .build()
        .unwrap();
    let receiver = Hivent::new(config, backend.clone());
    let (seen_tx, seen_rx) = crossbeam_channel::unbounded();
    receiver.signal("entry:booked").unwrap().receive(move |e| {
        seen_tx.send(e.clone()).unwrap();
        Ok(())
    });
    receiver.register().unwrap();
    let shutdown = hivent_core::Shutdown::new();
    let stop = shutdown.clone();
    let options = hivent_core::ConsumerOptions::default().idle_wait(Duration::from_millis(100));
    let worker = std::thread::spawn(move || receiver.run(1, options, &shutdown));
    (stop, seen_rx, worker)
}

/// Emits `n` events from `bank` and waits until the worker handled them all, in order.
fn emit_and_handle(backend: &Arc<RedisBackend>, seen: &crossbeam_channel::Receiver<Event>, n: u32) {
    let bank = Hivent::new(
        Config::builder().client_id("bank").build().unwrap(),
        backend.clone(),
    );
    let signal = bank.signal("entry:booked").unwrap();
    let emitted: Vec<Event> = (0..n)
        .map(|i| {
            signal
                .emit_with(
                    &json!({"n": i}),
                    hivent_core::EmitOptions::version(1).key("account-1"),
                )
                .unwrap()
        })
        .collect();
    let handled: Vec<Event> = (0..n)
        .map(|_| {
            seen.recv_timeout(Duration::from_secs(20))
                .expect("an event was not handled")
        })
        .collect();
    assert_eq!(handled, emitted);
}

/// Waits until the service's partition count is stored again.
fn wait_for_registration(url: &str) {
    let mut raw = redis::Client::open(url).unwrap().get_connection().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let count: Option<String> = redis::cmd("GET")
            .arg("ledger:partition_count")
            .query(&mut raw)
            .unwrap_or(None);
        if count.as_deref() == Some("2") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never registered again"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn fast_backend(server: &RedisServer) -> Arc<RedisBackend> {
    let options = RedisOptions::default()
        .heartbeat_interval(Duration::from_millis(100))
        .member_ttl(Duration::from_millis(2_000));
    Arc::new(RedisBackend::with_options(&server.url(), options).unwrap())
}

/// After FLUSHALL a running worker registers its service again at its next heartbeat
/// and every event emitted after that is handled.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn a_worker_registers_again_after_flushall() {
    let Some(server) = hivent_redis::test_server::server_for_tests() else {
        return;
    };
    let backend = fast_backend(&server);
    let (stop, seen, worker) = run_ledger(&backend);
    emit_and_handle(&backend, &seen, 3);
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("FLUSHALL").query(&mut raw).unwrap();
    wait_for_registration(&server.url());
    emit_and_handle(&backend, &seen, 5);
    stop.trigger();
    worker.join().unwrap().unwrap();
}

/// A redis-server without persistence restarted under a running worker comes back
/// empty; the worker registers again and handles every event emitted after that.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn a_worker_recovers_after_a_restart_without_persistence() {
    let Some(mut server) = hivent_redis::test_server::server_for_tests() else {
        return;
    };
    let backend = fast_backend(&server);
    let (stop, seen, worker) = run_ledger(&backend);
    emit_and_handle(&backend, &seen, 3);
    server.restart().unwrap();
    wait_for_registration(&server.url());
    emit_and_handle(&backend, &seen, 5);
    stop.trigger();
    worker.join().unwrap().unwrap();
}
