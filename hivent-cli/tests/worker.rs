//! The worker library as an application's binary uses it: `start` with its options.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use hivent::{Config, Event, LifeCycleEventHandler};
use hivent_cli::{ConnectionArgs, StartArgs};
use parking_lot::Mutex;

#[derive(Default)]
struct Calls(Mutex<Vec<String>>);

impl LifeCycleEventHandler for Calls {
    fn application_registered(
        &self,
        client_id: &str,
        signals: &[hivent::ReceivedSignal],
        partition_count: u32,
    ) {
        let names: Vec<&str> = signals.iter().map(|s| s.name.as_str()).collect();
        self.0.lock().push(format!(
            "registered {client_id} {names:?} {partition_count}"
        ));
    }
    fn event_processing_succeeded(&self, name: &str, version: Option<i64>, _event: &Event) {
        self.0.lock().push(format!("succeeded {name} {version:?}"));
    }
}

/// `start` builds the config from its options, lets the application register its
/// receivers, runs `--concurrency` consumers with the application's life-cycle handler,
/// and returns Ok once shutdown is signalled.
#[test]
fn start_runs_the_applications_receivers_until_shutdown() {
    let args = StartArgs {
        connection: ConnectionArgs {
            backend: Some("memory".into()),
            endpoint: Some("memory://worker-library-test".into()),
            client_id: Some("mailer".into()),
            partition_count: Some(3),
            ..ConnectionArgs::default()
        },
        concurrency: Some(2),
        log_level: "debug".into(),
        batch_size: Some(7),
        ..StartArgs::default()
    };
    let calls = Arc::new(Calls::default());
    let (seen_tx, seen_rx) = crossbeam_channel::unbounded();
    let shutdown = hivent::Shutdown::new();
    let stop = shutdown.clone();
    let handler = calls.clone();
    let worker = std::thread::spawn(move || {
        hivent_cli::start(
            &args,
            handler,
            move |hivent| {
                hivent.signal("user:created")?.receive(move |e| {
                    seen_tx.send(e.payload["id"].as_i64().unwrap()).unwrap();
                    Ok(())
                });
                Ok(())
            },
            &shutdown,
        )
    });
    let producer = hivent::connect(
        Config::builder()
            .endpoint("memory://worker-library-test")
            .client_id("shop")
            .build()
            .unwrap(),
    )
    .unwrap();
    // The service is registered once a consumer runs; emits before that reach nobody.
    let store = hivent::memory_store("memory://worker-library-test");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while store.receivers_of("user:created").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never registered"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let signal = producer.signal("user:created").unwrap();
    for id in 0..5 {
        signal.emit(&serde_json::json!({ "id": id }), 1).unwrap();
    }
    let mut seen: Vec<i64> = (0..5)
        .map(|_| seen_rx.recv_timeout(Duration::from_secs(20)).unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2, 3, 4]);
    stop.trigger();
    worker.join().unwrap().unwrap();
    let calls = calls.0.lock().clone();
    assert_eq!(calls[0], "registered mailer [\"user:created\"] 3");
    assert_eq!(
        calls
            .iter()
            .filter(|c| *c == "succeeded user:created Some(1)")
            .count(),
        5
    );
    assert_eq!(
        store.owners("mailer"),
        [None, None, None],
        "both consumers left the group"
    );
}
