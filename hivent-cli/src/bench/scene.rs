//! The hivent figures, on any backend: emit, batch emit, drain, end-to-end latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use chrono::Utc;
use crossbeam_channel::Receiver;
use hivent::{
    backend::Backend, Config, Consumer, ConsumerOptions, EmitOptions, Error, Event, HandlerError,
    Hivent, Meta, Result, Shutdown,
};
use parking_lot::Mutex;
use serde::Serialize;

use crate::bench::failure::bench_error;
use crate::bench::progress::Progress;
use crate::bench::report::{Latency, Throughput};

/// The payload of every bench event: a sequence number, the emit time and padding.
#[derive(Serialize)]
struct Payload<'a> {
    n: u64,
    /// Nanoseconds since the scene's clock started, taken just before the emit call.
    t: u64,
    pad: &'a str,
}

/// One signal, one producer and one receiving service on a backend, with unique names.
pub struct Scene {
    backend: Arc<dyn Backend>,
    prefix: String,
    partitions: u32,
    pad: String,
    clock: Instant,
    fetch_batch: usize,
}

/// The longest a drain or the delivery of the latency events may take before the
/// bench gives up (it measures; it does not hang).
const GIVE_UP_AFTER: Duration = Duration::from_secs(300);

impl Scene {
    /// A scene on `backend`; names start with `prefix`.
    pub fn new(
        backend: Arc<dyn Backend>,
        prefix: &str,
        partitions: u32,
        payload_bytes: usize,
        fetch_batch: usize,
    ) -> Scene {
        // `{"n":…,"t":…,"pad":""}` is about 40 bytes with typical numbers.
        let pad = "x".repeat(payload_bytes.saturating_sub(40));
        Scene {
            backend,
            prefix: prefix.to_owned(),
            partitions,
            pad,
            clock: Instant::now(),
            fetch_batch,
        }
    }

    /// The signal every bench event is emitted to.
    pub fn signal_name(&self) -> String {
        format!("{}:bench", self.prefix)
    }

    /// The receiving service.
    pub fn service(&self) -> String {
        format!("{}-service", self.prefix)
    }

    /// The size of one event's wire JSON.
    pub fn event_bytes(&self) -> usize {
        let payload = Payload {
            n: 50_000,
            t: 12_345_678_901,
            pad: &self.pad,
        };
        let event = Event::new(
            serde_json::to_value(&payload).unwrap_or_default(),
            Meta {
                event_uuid: hivent::backend::new_id(),
                name: self.signal_name(),
                version: Some(1),
                cid: hivent::backend::new_id(),
                producer: format!("{}-producer", self.prefix),
                created_at: Utc::now(),
            },
        );
        event.to_json().len()
    }

    fn now(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn producer(&self) -> Result<Hivent> {
        let config = Config::builder()
            .client_id(format!("{}-producer", self.prefix))
            .build()?;
        Ok(Hivent::new(config, Arc::clone(&self.backend)))
    }

    /// The receiving service with `handler` as its only receiver, registered.
    fn receiver<F>(&self, handler: F) -> Result<Hivent>
    where
        F: Fn(&Event) -> std::result::Result<(), HandlerError> + Send + Sync + 'static,
    {
        let config = Config::builder()
            .client_id(self.service())
            .partition_count(self.partitions)
            .build()?;
        let hivent = Hivent::new(config, Arc::clone(&self.backend));
        hivent.signal(&self.signal_name())?.receive(handler);
        hivent.register()?;
        Ok(hivent)
    }

    /// Registers `n` more services receiving the signal (`<service>-<i>`, 4
    /// partitions each, no consumers).
    pub fn add_receiving_services(&self, n: usize) -> Result<()> {
        for i in 0..n {
            let config = Config::builder()
                .client_id(format!("{}-{i}", self.service()))
                .partition_count(self.partitions)
                .build()?;
            let hivent = Hivent::new(config, Arc::clone(&self.backend));
            hivent.signal(&self.signal_name())?.receive(|_| Ok(()));
            hivent.register()?;
        }
        Ok(())
    }

    /// Deletes the partitions of the receiving service and of the `services - 1` added
    /// ones, so that a figure leaves no backlog behind.
    pub fn delete_partitions(
        &self,
        connection: &mut redis::Connection,
        services: usize,
    ) -> std::result::Result<(), crate::exit::Failure> {
        let mut names = vec![self.service()];
        names.extend((0..services.saturating_sub(1)).map(|i| format!("{}-{i}", self.service())));
        for name in names {
            let mut del = redis::cmd("DEL");
            for p in 0..self.partitions {
                del.arg(hivent_redis::keys::partition(&name, p));
            }
            del.query::<i64>(connection).map_err(|e| {
                crate::exit::Failure::Runtime(bench_error(&format!("clearing partitions: {e}")))
            })?;
        }
        Ok(())
    }

    /// Registers the receiving service, so that emits reach it.
    pub fn register(&self) -> Result<()> {
        self.receiver(|_| Ok(())).map(|_| ())
    }

    /// Emits `count` events one by one from one thread.
    pub fn single_emit(&self, count: u64, progress: &Progress) -> Result<Throughput> {
        self.register()?;
        let signal = self.producer()?.signal(&self.signal_name())?;
        let tick = progress.phase("single emit", count);
        let start = Instant::now();
        for n in 0..count {
            signal.emit(&self.payload(n), 1)?;
            tick.tick();
        }
        Ok(Throughput::new(
            "single_emit",
            "single emit, 1 thread",
            count,
            start.elapsed().as_secs_f64(),
        ))
    }

    /// Emits `count` events one by one from `threads` producer threads at once, each
    /// its own producer: where single emits saturate Redis.
    pub fn producers_emit(
        &self,
        key: &'static str,
        count: u64,
        threads: usize,
        progress: &Progress,
    ) -> Result<Throughput> {
        self.register()?;
        let tick = progress.phase(&format!("single emit, {threads} threads"), count);
        let per_thread = count / threads.max(1) as u64;
        let start = Instant::now();
        thread::scope(|s| -> Result<()> {
            let workers: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    let tick = tick.clone();
                    s.spawn(move || -> Result<()> {
                        let signal = self.producer()?.signal(&self.signal_name())?;
                        for n in 0..per_thread {
                            signal.emit(&self.payload(n), 1)?;
                            tick.tick();
                        }
                        Ok(())
                    })
                })
                .collect();
            for worker in workers {
                worker
                    .join()
                    .map_err(|_| bench_error("a producer thread panicked"))??;
            }
            Ok(())
        })?;
        Ok(Throughput::new(
            key,
            format!("single emit, {threads} threads"),
            per_thread * threads.max(1) as u64,
            start.elapsed().as_secs_f64(),
        ))
    }

    fn payload(&self, n: u64) -> Payload<'_> {
        Payload {
            n,
            t: self.now(),
            pad: &self.pad,
        }
    }

    /// Emits `count` events in `EmitBatch`es of `batch` events; `None` when untimed
    /// (filling a backlog).
    pub fn batch_emit(
        &self,
        count: u64,
        batch: usize,
        progress: &Progress,
        label: &str,
    ) -> Result<Throughput> {
        self.register()?;
        let producer = self.producer()?;
        let signal = producer.signal(&self.signal_name())?;
        let tick = progress.phase(label, count);
        let start = Instant::now();
        let mut n = 0;
        while n < count {
            let mut emits = producer.batch();
            let end = (n + batch.max(1) as u64).min(count);
            for i in n..end {
                emits.push(&signal, &self.payload(i), EmitOptions::version(1))?;
            }
            emits.emit()?;
            tick.add(end - n);
            n = end;
        }
        Ok(Throughput::new(
            "batch_emit",
            format!("batch emit, {batch} per batch"),
            count,
            start.elapsed().as_secs_f64(),
        ))
    }

    /// Starts `workers` consumers of the receiving service, each on its own thread,
    /// once the partitions are split among them; `handler` sees every event.
    fn start_consumers<F>(&self, workers: usize, handler: F) -> Result<Running>
    where
        F: Fn(&Event) -> std::result::Result<(), HandlerError> + Send + Sync + 'static,
    {
        let hivent = self.receiver(handler)?;
        let options = ConsumerOptions::default()
            .batch_size(self.fetch_batch)
            .idle_wait(Duration::from_millis(100));
        let consumers = (0..workers.max(1))
            .map(|_| hivent.join(options.clone()))
            .collect::<Result<Vec<Consumer>>>()?;
        settle(&consumers, self.partitions)?;
        let stop = Shutdown::new();
        let threads = consumers
            .into_iter()
            .enumerate()
            .map(|(i, consumer)| {
                let stopped = stop.clone();
                thread::Builder::new()
                    .name(format!("bench-worker-{i}"))
                    .spawn(move || consumer.run(&stopped))
                    .map_err(|e| Error::ConsumerPanicked {
                        thread: format!("bench-worker-{i}"),
                        message: format!("could not start the thread: {e}"),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Running { stop, threads })
    }

    /// Drains the backlog of `count` events with `workers` consumers in this process.
    pub fn drain(
        &self,
        key: &'static str,
        workers: usize,
        count: u64,
        progress: &Progress,
    ) -> Result<Throughput> {
        let label = format!(
            "drain, {workers} worker{}",
            if workers == 1 { "" } else { "s" }
        );
        let tick = progress.phase(&label, count);
        let (done, finished) = crossbeam_channel::bounded::<()>(1);
        let seen = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&seen);
        let running = self.start_consumers(workers, move |_event| {
            tick.tick();
            if counter.fetch_add(1, Ordering::Relaxed) + 1 == count {
                let _ = done.try_send(());
            }
            Ok(())
        })?;
        let start = Instant::now();
        let outcome = running.wait_for(&finished, start + GIVE_UP_AFTER, || {
            format!(
                "{label}: {} of {count} events handled",
                seen.load(Ordering::Relaxed)
            )
        });
        let elapsed = start.elapsed().as_secs_f64();
        running.stop()?;
        outcome?;
        Ok(Throughput::new(key, label, count, elapsed))
    }

    /// Emits for `secs` seconds at `rate` events/s from this thread while one consumer
    /// in this process handles them; measures emit start → handler entry.
    pub fn latency(
        &self,
        key: &'static str,
        rate: f64,
        secs: f64,
        target_ms: Option<(f64, f64)>,
        progress: &Progress,
    ) -> Result<Latency> {
        let total = ((rate * secs).ceil() as u64).max(1);
        let tick = progress.phase(&format!("latency at {rate}/s"), total);
        let samples = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
        let (done, finished) = crossbeam_channel::bounded::<()>(1);
        let clock = self.clock;
        let recorded = Arc::clone(&samples);
        let running = self.start_consumers(1, move |event| {
            let now = u64::try_from(clock.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let sent = event.payload["t"].as_u64().unwrap_or(now);
            let mut samples = recorded.lock();
            samples.push(now.saturating_sub(sent));
            tick.tick();
            if samples.len() as u64 == total {
                let _ = done.try_send(());
            }
            Ok(())
        })?;
        let signal = self.producer()?.signal(&self.signal_name())?;
        let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
        let start = Instant::now();
        let mut emitted = Ok(());
        for n in 0..total {
            let due = start + interval.mul_f64(n as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            if let Err(error) = signal.emit(&self.payload(n), 1) {
                emitted = Err(error);
                break;
            }
        }
        let achieved = total as f64 / start.elapsed().as_secs_f64().max(1e-9);
        let outcome = emitted.and_then(|()| {
            running.wait_for(&finished, Instant::now() + GIVE_UP_AFTER, || {
                format!(
                    "latency at {rate}/s: {} of {total} events handled",
                    samples.lock().len()
                )
            })
        });
        running.stop()?;
        outcome?;
        let nanos = std::mem::take(&mut *samples.lock());
        Ok(Latency::from_samples(key, rate, achieved, nanos, target_ms))
    }

    /// Emits `count` events one by one while one consumer in this process handles
    /// them; the clock runs until the last one was handled.
    pub fn emit_and_dispatch(&self, count: u64, progress: &Progress) -> Result<Throughput> {
        let tick = progress.phase("memory emit+dispatch", count);
        let (done, finished) = crossbeam_channel::bounded::<()>(1);
        let seen = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&seen);
        let running = self.start_consumers(1, move |_event| {
            tick.tick();
            if counter.fetch_add(1, Ordering::Relaxed) + 1 == count {
                let _ = done.try_send(());
            }
            Ok(())
        })?;
        let signal = self.producer()?.signal(&self.signal_name())?;
        let start = Instant::now();
        let mut emitted = Ok(());
        for n in 0..count {
            if let Err(error) = signal.emit(&self.payload(n), 1) {
                emitted = Err(error);
                break;
            }
        }
        let outcome = emitted.and_then(|()| {
            running.wait_for(&finished, start + GIVE_UP_AFTER, || {
                format!(
                    "memory emit+dispatch: {} of {count} events handled",
                    seen.load(Ordering::Relaxed)
                )
            })
        });
        let elapsed = start.elapsed().as_secs_f64();
        running.stop()?;
        outcome?;
        Ok(Throughput::new(
            "memory_emit_dispatch",
            "memory backend emit+dispatch",
            count,
            elapsed,
        ))
    }
}

impl Scene {
    /// The memory figure taken apart, on one thread: `count` emits with no consumer
    /// running, then one consumer dispatching that backlog. Shows what each side costs
    /// without the two threads contending for the store's lock and the allocator.
    pub fn emit_then_dispatch(&self, count: u64, progress: &Progress) -> Result<[Throughput; 2]> {
        let seen = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&seen);
        let receiver = self.receiver(move |_event| {
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })?;
        let consumer = receiver.join(ConsumerOptions::default().batch_size(self.fetch_batch))?;
        consumer.heartbeat()?;
        let signal = self.producer()?.signal(&self.signal_name())?;
        let tick = progress.phase("memory emit, then dispatch", count);
        let start = Instant::now();
        for n in 0..count {
            signal.emit(&self.payload(n), 1)?;
            tick.tick();
        }
        let emitted = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let handled = consumer.run_until_idle()?;
        let dispatched = start.elapsed().as_secs_f64();
        consumer.leave()?;
        if handled as u64 != count || seen.load(Ordering::Relaxed) != count {
            return Err(Error::Backend {
                backend: "memory",
                transient: false,
                source: format!("dispatched {handled} of {count} events").into(),
            });
        }
        Ok([
            Throughput::new(
                "memory_emit_only",
                "memory emit alone, 1 thread",
                count,
                emitted,
            ),
            Throughput::new(
                "memory_dispatch_only",
                "memory dispatch alone, 1 thread",
                count,
                dispatched,
            ),
        ])
    }
}

/// Heartbeats the consumers until they split the partitions among them, so that no
/// figure includes the cooperative hand-over.
fn settle(consumers: &[Consumer], partitions: u32) -> Result<()> {
    let busy = consumers.len().min(partitions as usize);
    for _ in 0..50 {
        let mut owned = Vec::new();
        for consumer in consumers {
            owned.push(consumer.heartbeat()?);
        }
        let mut all: Vec<u32> = owned.iter().flatten().copied().collect();
        all.sort_unstable();
        let split = all.len() == partitions as usize
            && all.windows(2).all(|w| w[0] != w[1])
            && owned.iter().filter(|o| !o.is_empty()).count() == busy;
        if split {
            return Ok(());
        }
    }
    Err(bench_error(
        "the consumers did not split the partitions among them",
    ))
}

/// Consumers running on their threads until stopped.
struct Running {
    stop: Shutdown,
    threads: Vec<JoinHandle<Result<()>>>,
}

impl Running {
    /// Waits for `finished`; fails when a consumer stopped early or at `deadline`.
    fn wait_for(
        &self,
        finished: &Receiver<()>,
        deadline: Instant,
        state: impl Fn() -> String,
    ) -> Result<()> {
        loop {
            if finished.recv_timeout(Duration::from_millis(20)).is_ok() {
                return Ok(());
            }
            if self.threads.iter().any(JoinHandle::is_finished) {
                return Err(bench_error(&format!(
                    "a consumer stopped early ({})",
                    state()
                )));
            }
            if Instant::now() >= deadline {
                return Err(bench_error(&format!("gave up waiting ({})", state())));
            }
        }
    }

    /// Stops the consumers and returns the first error of any of them.
    fn stop(mut self) -> Result<()> {
        self.stop.trigger();
        let mut first = Ok(());
        for thread in std::mem::take(&mut self.threads) {
            let outcome = thread.join().unwrap_or_else(|_| {
                Err(Error::ConsumerPanicked {
                    thread: "bench-worker".into(),
                    message: "panicked".into(),
                })
            });
            if first.is_ok() {
                first = outcome;
            }
        }
        first
    }
}
