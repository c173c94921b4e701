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
