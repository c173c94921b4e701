//! Shared test support: one harness per backend, and a life-cycle recorder.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hivent::{Config, Error, Event, Hivent, LifeCycleEventHandler, MemoryBackend};
use parking_lot::Mutex;
use serde_json::Value;

/// What a behavioural test needs from a backend beyond the public API: a handle per
/// service, and a look inside partitions and dead letter queues.
pub trait Harness {
    /// A handle for `service` with `partition_count` partitions and a recorder.
    fn hivent(&self, service: &str, partition_count: u32, recorder: &Arc<Recorder>) -> Hivent;
    /// Appends a raw item to a partition, as a foreign producer could.
    fn push_raw(&self, service: &str, partition: u32, raw: &str);
    /// The raw items in a partition, oldest first.
    fn partition(&self, service: &str, partition: u32) -> Vec<String>;
    /// The raw items of a partition's dead letter queue, oldest first.
    fn dead_letters(&self, service: &str, partition: u32) -> Vec<String>;
}

fn config(
    endpoint: &str,
    backend: hivent::BackendKind,
    service: &str,
    partitions: u32,
    recorder: &Arc<Recorder>,
) -> Config {
    Config::builder()
        .backend(backend)
        .endpoint(endpoint)
        .client_id(service)
        .partition_count(partitions)
        .life_cycle_event_handler(recorder.clone())
        .build()
        .unwrap()
}

/// The memory backend, reached through `hivent::connect` with an endpoint of its own.
pub struct MemoryHarness {
    endpoint: String,
    store: MemoryBackend,
}

impl MemoryHarness {
    pub fn new() -> Option<MemoryHarness> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let endpoint = format!("memory://test-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        Some(MemoryHarness {
            store: hivent::memory_store(&endpoint),
            endpoint,
        })
    }
}

impl Harness for MemoryHarness {
    fn hivent(&self, service: &str, partition_count: u32, recorder: &Arc<Recorder>) -> Hivent {
        hivent::connect(config(
            &self.endpoint,
            hivent::BackendKind::Memory,
            service,
            partition_count,
            recorder,
        ))
        .unwrap()
    }
    fn push_raw(&self, service: &str, partition: u32, raw: &str) {
        self.store.push_raw(service, partition, raw).unwrap()
    }
    fn partition(&self, service: &str, partition: u32) -> Vec<String> {
        self.store.partition(service, partition)
    }
    fn dead_letters(&self, service: &str, partition: u32) -> Vec<String> {
        self.store.dead_letters(service, partition)
    }
}

/// The Redis backend on a `redis-server` of the test's own, reached through
/// `hivent::connect`; inspected with plain Redis commands, as the Ruby gem sees it.
pub struct RedisHarness {
    server: hivent_redis::test_server::RedisServer,
}

impl RedisHarness {
    /// `None` (test skipped) when redis-server is missing, unless HIVENT_REQUIRE_REDIS=1.
    pub fn new() -> Option<RedisHarness> {
        hivent_redis::test_server::server_for_tests().map(|server| RedisHarness { server })
    }

    fn connection(&self) -> redis::Connection {
        redis::Client::open(self.server.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// Oldest first: producers push on the left, the oldest item is at the right end.
    fn list(&self, key: String) -> Vec<String> {
        let mut items: Vec<String> = redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query(&mut self.connection())
            .unwrap();
        items.reverse();
        items
    }
}

impl Harness for RedisHarness {
    fn hivent(&self, service: &str, partition_count: u32, recorder: &Arc<Recorder>) -> Hivent {
        hivent::connect(config(
            &self.server.url(),
            hivent::BackendKind::Redis,
            service,
            partition_count,
            recorder,
        ))
        .unwrap()
    }
    fn push_raw(&self, service: &str, partition: u32, raw: &str) {
        let _: i64 = redis::cmd("LPUSH")
            .arg(format!("{service}:{partition}"))
            .arg(raw)
            .query(&mut self.connection())
            .unwrap();
    }
    fn partition(&self, service: &str, partition: u32) -> Vec<String> {
        self.list(format!("{service}:{partition}"))
    }
    fn dead_letters(&self, service: &str, partition: u32) -> Vec<String> {
        self.list(format!("{service}:{partition}:dead_letter"))
    }
}

/// One life-cycle call, as recorded.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Registered {
        client_id: String,
        events: Vec<String>,
        partition_count: u32,
    },
    Succeeded {
        name: String,
        version: i64,
        payload: Value,
    },
    Failed {
        error: String,
        payload: Option<Value>,
        raw: String,
        queue: String,
    },
    Assigned(Vec<u32>),
    Revoked(Vec<u32>),
}

/// Records every life-cycle call.
#[derive(Default)]
pub struct Recorder {
    calls: Mutex<Vec<Call>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().clone()
    }
    pub fn failures(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Failed { .. }))
            .collect()
    }
    pub fn successes(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Succeeded { .. }))
            .collect()
    }
}

impl LifeCycleEventHandler for Recorder {
    fn application_registered(&self, client_id: &str, events: &[String], partition_count: u32) {
        self.calls.lock().push(Call::Registered {
            client_id: client_id.into(),
            events: events.to_vec(),
            partition_count,
        });
    }
    fn event_processing_succeeded(&self, name: &str, version: i64, event: &Event) {
        self.calls.lock().push(Call::Succeeded {
            name: name.into(),
            version,
            payload: event.payload.clone(),
        });
    }
    fn event_processing_failed(
        &self,
        error: &Error,
        payload: Option<&Value>,
        raw: &str,
        queue: &str,
    ) {
        self.calls.lock().push(Call::Failed {
            error: error.to_string(),
            payload: payload.cloned(),
            raw: raw.into(),
            queue: queue.into(),
        });
    }
    fn partitions_assigned(&self, _service: &str, partitions: &[u32]) {
        self.calls.lock().push(Call::Assigned(partitions.to_vec()));
    }
    fn partitions_revoked(&self, _service: &str, partitions: &[u32]) {
        self.calls.lock().push(Call::Revoked(partitions.to_vec()));
    }
}

/// Collects what handlers saw, in order.
pub type Seen = Arc<Mutex<Vec<Event>>>;

/// Registers a handler on `signal` that records every event it gets.
pub fn record(hivent: &Hivent, signal: &str) -> Seen {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    hivent.signal(signal).unwrap().receive(move |e| {
        sink.lock().push(e.clone());
        Ok(())
    });
    seen
}
