//! Shared test support: one harness per backend, and a life-cycle recorder.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hivent::{Config, Error, Event, Hivent, LifeCycleEventHandler, MemoryBackend, RetryPolicy};
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
    /// The same backend (and store) with other group timing, for the handles it makes.
    fn timed(&self, timing: Timing) -> Box<dyn Harness>;
    /// The group timing of the handles this harness makes.
    fn timing(&self) -> Timing;
    /// Lets `by` pass for the group without anyone heartbeating: the memory backend
    /// moves its clock, Redis (whose clock the test cannot move) really waits.
    fn stall(&self, by: Duration);
    /// How many failure records the backend stores for a partition's dead letters,
    /// looked at directly: a record left behind by its item counts too.
    fn stored_failure_records(&self, service: &str, partition: u32) -> usize;
}

/// The retry policy of the handles harnesses make: the default's five attempts, with
/// waits of a few milliseconds so that failure tests stay quick.
pub fn quick_retries() -> RetryPolicy {
    RetryPolicy::default()
        .initial_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(4))
}

/// Heartbeat interval and membership lifetime of a harness's consumers.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub heartbeat_interval: Duration,
    pub member_ttl: Duration,
}

impl Timing {
    /// Short enough for Redis tests that wait for a membership to expire, long enough
    /// for a loaded machine to heartbeat in time.
    pub const TEST: Timing = Timing {
        heartbeat_interval: Duration::from_millis(200),
        member_ttl: Duration::from_millis(2000),
    };

    /// A stall certain to outlast a membership (and so the lease too).
    pub fn past_ttl(self) -> Duration {
        self.member_ttl + Duration::from_millis(300)
    }
}

fn config(
    endpoint: &str,
    backend: hivent::BackendKind,
    timing: Timing,
    service: &str,
    partitions: u32,
    recorder: &Arc<Recorder>,
) -> Config {
    Config::builder()
        .backend(backend)
        .endpoint(endpoint)
        .client_id(service)
        .partition_count(partitions)
        .heartbeat_interval(timing.heartbeat_interval)
        .member_ttl(timing.member_ttl)
        .retry_policy(quick_retries())
        .life_cycle_event_handler(recorder.clone())
        .build()
        .unwrap()
}

/// The memory backend, reached through `hivent::connect` with an endpoint of its own.
pub struct MemoryHarness {
    endpoint: String,
    store: MemoryBackend,
    timing: Timing,
}

impl MemoryHarness {
    pub fn new() -> Option<MemoryHarness> {
        Some(MemoryHarness::with_timing(Timing::TEST))
    }

    /// A store of its own: the memory backend's timing is the store's.
    fn with_timing(timing: Timing) -> MemoryHarness {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let endpoint = format!("memory://test-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        // `connect` makes the store on first use, with the configured timing.
        let memory = hivent::BackendKind::Memory;
        hivent::open_backend(&config(
            &endpoint,
            memory,
            timing,
            "harness",
            1,
            &Recorder::new(),
        ))
        .unwrap();
        MemoryHarness {
            store: hivent::memory_store(&endpoint),
            endpoint,
            timing,
        }
    }
}

impl Harness for MemoryHarness {
    fn hivent(&self, service: &str, partition_count: u32, recorder: &Arc<Recorder>) -> Hivent {
        hivent::connect(config(
            &self.endpoint,
            hivent::BackendKind::Memory,
            self.timing,
            service,
            partition_count,
            recorder,
        ))
        .unwrap()
    }
    fn timed(&self, timing: Timing) -> Box<dyn Harness> {
        Box::new(MemoryHarness::with_timing(timing))
    }
    fn timing(&self) -> Timing {
        self.timing
    }
    fn stall(&self, by: Duration) {
        self.store.advance_clock(by);
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
    fn stored_failure_records(&self, service: &str, partition: u32) -> usize {
        self.store.failure_record_count(service, partition)
    }
}

/// The Redis backend on a `redis-server` of the test's own, reached through
/// `hivent::connect`; inspected with plain Redis commands, as the Ruby gem sees it.
pub struct RedisHarness {
    server: Arc<hivent_redis::test_server::RedisServer>,
    timing: Timing,
}

impl RedisHarness {
    /// `None` (test skipped) when redis-server is missing, unless HIVENT_REQUIRE_REDIS=1.
    pub fn new() -> Option<RedisHarness> {
        hivent_redis::test_server::server_for_tests().map(|server| RedisHarness {
            server: Arc::new(server),
            timing: Timing::TEST,
        })
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
            self.timing,
            service,
            partition_count,
            recorder,
        ))
        .unwrap()
    }
    fn timed(&self, timing: Timing) -> Box<dyn Harness> {
        Box::new(RedisHarness {
            server: Arc::clone(&self.server),
            timing,
        })
    }
    fn timing(&self) -> Timing {
        self.timing
    }
    fn stall(&self, by: Duration) {
        std::thread::sleep(by);
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
    fn stored_failure_records(&self, service: &str, partition: u32) -> usize {
        redis::cmd("HLEN")
            .arg(format!("{service}:hivent:failures:{partition}"))
            .query(&mut self.connection())
            .unwrap()
    }
}

/// The Redis backend in cluster mode on a 3-master `redis-server --cluster-enabled`
/// cluster of the test's own, reached through `hivent::connect` with the seeds as its
/// endpoint; inspected with a cluster connection under the cluster keyspace.
pub struct RedisClusterHarness {
    cluster: Arc<hivent_redis::test_cluster::RedisCluster>,
    timing: Timing,
}

impl RedisClusterHarness {
    /// `None` (test skipped) when redis-server is missing, unless HIVENT_REQUIRE_REDIS=1.
    pub fn new() -> Option<RedisClusterHarness> {
        hivent_redis::test_cluster::cluster_for_tests(3, 0).map(|cluster| RedisClusterHarness {
            cluster: Arc::new(cluster),
            timing: Timing::TEST,
        })
    }

    fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        cmd.query(&mut self.cluster.connection().unwrap()).unwrap()
    }

    /// Oldest first.
    fn list(&self, key: String) -> Vec<String> {
        let mut items: Vec<String> = self.query(redis::cmd("LRANGE").arg(key).arg(0).arg(-1));
        items.reverse();
        items
    }
}

impl Harness for RedisClusterHarness {
    fn hivent(&self, service: &str, partition_count: u32, recorder: &Arc<Recorder>) -> Hivent {
        hivent::connect(config(
            &self.cluster.seeds(),
            hivent::BackendKind::RedisCluster,
            self.timing,
            service,
            partition_count,
            recorder,
        ))
        .unwrap()
    }
    fn timed(&self, timing: Timing) -> Box<dyn Harness> {
        Box::new(RedisClusterHarness {
            cluster: Arc::clone(&self.cluster),
            timing,
        })
    }
    fn timing(&self) -> Timing {
        self.timing
    }
    fn stall(&self, by: Duration) {
        std::thread::sleep(by);
    }
    fn push_raw(&self, service: &str, partition: u32, raw: &str) {
        let _: i64 = self.query(
            redis::cmd("LPUSH")
                .arg(hivent_redis::cluster_keys::partition(service, partition))
                .arg(raw),
        );
    }
    fn partition(&self, service: &str, partition: u32) -> Vec<String> {
        self.list(hivent_redis::cluster_keys::partition(service, partition))
    }
    fn dead_letters(&self, service: &str, partition: u32) -> Vec<String> {
        self.list(hivent_redis::cluster_keys::dead_letter(service, partition))
    }
    fn stored_failure_records(&self, service: &str, partition: u32) -> usize {
        self.query(
            redis::cmd("HLEN").arg(hivent_redis::cluster_keys::failure_records(
                service, partition,
            )),
        )
    }
}

/// One life-cycle call, as recorded.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Registered {
        client_id: String,
        /// Each received signal and its version filter.
        signals: Vec<(String, Option<i64>)>,
        partition_count: u32,
    },
    Succeeded {
        name: String,
        version: Option<i64>,
        payload: Value,
    },
    Failed {
        error: String,
        payload: Option<Value>,
        raw: String,
        queue: String,
    },
    Retried {
        error: String,
        uuid: String,
        attempt: u32,
        delay: Duration,
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
    pub fn retries(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Retried { .. }))
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
    fn application_registered(
        &self,
        client_id: &str,
        signals: &[hivent::ReceivedSignal],
        partition_count: u32,
    ) {
        self.calls.lock().push(Call::Registered {
            client_id: client_id.into(),
            signals: signals
                .iter()
                .map(|s| (s.name.clone(), s.version))
                .collect(),
            partition_count,
        });
    }
    fn event_processing_succeeded(&self, name: &str, version: Option<i64>, event: &Event) {
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
            error: hivent::ErrorChain(error).to_string(),
            payload: payload.cloned(),
            raw: raw.into(),
            queue: queue.into(),
        });
    }
    fn event_processing_retried(
        &self,
        error: &Error,
        event: &Event,
        attempt: u32,
        delay: Duration,
    ) {
        self.calls.lock().push(Call::Retried {
            error: hivent::ErrorChain(error).to_string(),
            uuid: event.meta.event_uuid.clone(),
            attempt,
            delay,
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

/// Holds a handler at its first call until the test opens it, so a test can act (stall
/// the group, join a member, stop the worker) while a handler is running.
pub struct Gate {
    armed: std::sync::atomic::AtomicBool,
    entered: (
        crossbeam_channel::Sender<()>,
        crossbeam_channel::Receiver<()>,
    ),
    open: (
        crossbeam_channel::Sender<()>,
        crossbeam_channel::Receiver<()>,
    ),
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate {
            armed: std::sync::atomic::AtomicBool::new(true),
            entered: crossbeam_channel::unbounded(),
            open: crossbeam_channel::unbounded(),
        })
    }

    /// In the handler: the first call says so and waits until the gate opens.
    pub fn pass(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.entered.0.send(()).unwrap();
            self.open
                .1
                .recv_timeout(Duration::from_secs(60))
                .expect("the gate was never opened");
        }
    }

    /// In the test: waits until a handler is held at the gate.
    pub fn wait_entered(&self) {
        self.entered
            .1
            .recv_timeout(Duration::from_secs(30))
            .expect("no handler reached the gate");
    }

    /// In the test: lets the held handler go on.
    pub fn open(&self) {
        self.open.0.send(()).unwrap();
    }
}

/// One handled event and the thread that handled it.
pub type Handled = Arc<Mutex<Vec<(String, Event)>>>;

/// Registers a handler on `signal` that records each event with the name of the thread
/// handling it, then passes `gate`.
pub fn record_at_gate(hivent: &Hivent, signal: &str, gate: &Arc<Gate>) -> Handled {
    let handled: Handled = Arc::default();
    let (sink, gate) = (handled.clone(), gate.clone());
    hivent.signal(signal).unwrap().receive(move |e| {
        let thread = std::thread::current().name().unwrap_or("?").to_owned();
        sink.lock().push((thread, e.clone()));
        gate.pass();
        Ok(())
    });
    handled
}

/// Waits until `done` holds, failing the test after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `fmt` subscriber writing into a buffer, without colours or times: what a handler's
/// log lines look like to an application that logs with `tracing`.
pub fn captured_log() -> (Arc<Mutex<String>>, impl tracing::Subscriber + Send + Sync) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<String>>);
    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().push_str(&String::from_utf8_lossy(bytes));
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let log = Arc::new(Mutex::new(String::new()));
    let sink = Sink(log.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .without_time()
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    (log, subscriber)
}

/// The metric values a debugging recorder holds, looked up by name and labels.
pub struct MetricValues(Vec<MetricValue>);

/// A metric's name, labels and value.
type MetricValue = (
    String,
    Vec<(String, String)>,
    metrics_util::debugging::DebugValue,
);

impl MetricValues {
    pub fn of(snapshots: &metrics_util::debugging::Snapshotter) -> MetricValues {
        MetricValues(
            snapshots
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| {
                    let key = key.key();
                    let labels = key
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect();
                    (key.name().to_owned(), labels, value)
                })
                .collect(),
        )
    }

    fn find(
        &self,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Option<&metrics_util::debugging::DebugValue> {
        self.0
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, value)| value)
    }

    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        match self.find(name, labels)? {
            metrics_util::debugging::DebugValue::Counter(n) => Some(*n),
            _ => None,
        }
    }

    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.find(name, labels)? {
            metrics_util::debugging::DebugValue::Gauge(v) => Some(v.into_inner()),
            _ => None,
        }
    }

    pub fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> Option<usize> {
        match self.find(name, labels)? {
            metrics_util::debugging::DebugValue::Histogram(values) => Some(values.len()),
            _ => None,
        }
    }
}
