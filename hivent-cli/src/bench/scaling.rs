//! `hivent bench --scaling`: how the figures change with partitions, receiving services and payload size.

use std::fmt::Write as _;
use std::sync::Arc;

use hivent::backend::Backend;
use hivent::MemoryBackend;
use serde::Serialize;

use crate::bench::progress::Progress;
use crate::bench::raw;
use crate::bench::report::group;
use crate::bench::scene::Scene;
use crate::bench::server_time::timed_on_server;
use crate::exit::Failure;

/// The bytes each payload row moves at most, so that 100 KB events stay a short run.
const BYTES_PER_ROW: u64 = 100 << 20;

/// One row of the partitions table.
#[derive(Serialize, Debug, Clone)]
pub struct PartitionRow {
    /// Partitions of the receiving service.
    pub partitions: u32,
    /// Latency at 5,000/s, p50 and p99 in ms.
    pub latency_5000_ms: (f64, f64),
    /// Memory backend emit+dispatch, events/s.
    pub memory_per_second: f64,
}

/// One row of the receiving-services table.
#[derive(Serialize, Debug, Clone)]
pub struct ServicesRow {
    /// Services receiving the signal.
    pub services: usize,
    /// Single emits/s and Redis µs per emit.
    pub single_emit: (f64, f64),
    /// Batched events/s and Redis µs per event.
    pub batch_emit: (f64, f64),
}

/// One row of the payload table.
#[derive(Serialize, Debug, Clone)]
pub struct PayloadRow {
    /// Payload bytes.
    pub payload_bytes: usize,
    /// The event's JSON, bytes.
    pub event_bytes: usize,
    /// Events per figure.
    pub events: u64,
    /// Single emit ÷ raw LPUSH of the same bytes.
    pub single_vs_lpush: f64,
    /// Batch emit ÷ raw pipelined LPUSH of the same bytes.
    pub batch_vs_pipelined_lpush: f64,
}

/// The three scaling tables.
#[derive(Serialize, Debug, Clone, Default)]
pub struct Scaling {
    /// By partition count.
    pub partitions: Vec<PartitionRow>,
    /// By number of receiving services.
    pub services: Vec<ServicesRow>,
    /// By payload size.
    pub payloads: Vec<PayloadRow>,
}

/// What a scaling run needs from the main run.
pub struct Context<'a> {
    pub backend: Arc<dyn Backend>,
    pub connection: &'a mut redis::Connection,
    pub prefix: &'a str,
    pub events: u64,
    pub emit_batch: usize,
    pub fetch_batch: usize,
    pub latency_secs: f64,
    pub memory_events: u64,
    pub progress: &'a Progress,
}

/// Measures the three tables.
pub fn measure(cx: &mut Context<'_>) -> Result<Scaling, Failure> {
    let mut scaling = Scaling::default();
    for (i, partitions) in [4u32, 16, 64, 256].into_iter().enumerate() {
        let scene = Scene::new(
            Arc::clone(&cx.backend),
            &format!("{}-p{i}", cx.prefix),
            partitions,
            100,
            cx.fetch_batch,
        );
        let latency = scene.latency("latency_5000", 5000.0, cx.latency_secs, None, cx.progress)?;
        let memory = Scene::new(
            Arc::new(MemoryBackend::new()),
            &format!("{}-m{i}", cx.prefix),
            partitions,
            100,
            cx.fetch_batch,
        );
        let memory = memory.emit_and_dispatch(cx.memory_events, cx.progress)?;
        scaling.partitions.push(PartitionRow {
            partitions,
            latency_5000_ms: (latency.p50_ms, latency.p99_ms),
            memory_per_second: memory.per_second,
        });
    }
    for (i, services) in [1usize, 10, 100].into_iter().enumerate() {
        let scene = Scene::new(
            Arc::clone(&cx.backend),
            &format!("{}-s{i}", cx.prefix),
            4,
            100,
            cx.fetch_batch,
        );
        scene.add_receiving_services(services.saturating_sub(1))?;
        let n = (cx.events / services as u64).max(100);
        let single = timed_on_server(cx.connection, || Ok(scene.single_emit(n, cx.progress)?))?;
        let batch = timed_on_server(cx.connection, || {
            Ok(scene.batch_emit(n, cx.emit_batch, cx.progress, "batch emit")?)
        })?;
        scene.delete_partitions(cx.connection, services)?;
        scaling.services.push(ServicesRow {
            services,
            single_emit: (
                single.per_second,
                single.redis_us_per_event.unwrap_or_default(),
            ),
            batch_emit: (
                batch.per_second,
                batch.redis_us_per_event.unwrap_or_default(),
            ),
        });
    }
    for (i, payload_bytes) in [100usize, 1 << 10, 10 << 10, 100 << 10]
        .into_iter()
        .enumerate()
    {
        let scene = Scene::new(
            Arc::clone(&cx.backend),
            &format!("{}-b{i}", cx.prefix),
            4,
            payload_bytes,
            cx.fetch_batch,
        );
        let event_bytes = scene.event_bytes();
        let n = cx.events.min(BYTES_PER_ROW / event_bytes as u64).max(100);
        let raw = raw::measure(
            cx.connection,
            &format!("{}-b{i}:raw", cx.prefix),
            n,
            event_bytes,
            cx.progress,
        )
        .map_err(|e| {
            Failure::Runtime(crate::bench::failure::bench_error(&format!(
                "raw Redis: {e}"
            )))
        })?;
        let rate = |key: &str| {
            raw.iter()
                .find(|t| t.key == key)
                .map_or(0.0, |t| t.per_second)
        };
        let single = scene.single_emit(n, cx.progress)?;
        scene.delete_partitions(cx.connection, 1)?;
        let batch = scene.batch_emit(n, cx.emit_batch, cx.progress, "batch emit")?;
        scene.delete_partitions(cx.connection, 1)?;
        scaling.payloads.push(PayloadRow {
            payload_bytes,
            event_bytes,
            events: n,
            single_vs_lpush: single.per_second / rate("raw_lpush").max(1e-9),
            batch_vs_pipelined_lpush: batch.per_second / rate("raw_lpush_pipelined").max(1e-9),
        });
    }
    Ok(scaling)
}

impl Scaling {
    /// The tables as text.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<12} {:>22} {:>26}",
            "partitions", "latency 5,000/s p50/p99", "memory emit+dispatch /s"
        );
        for r in &self.partitions {
            let _ = writeln!(
                out,
                "{:<12} {:>15.3} / {:<6.3} {:>26}",
                r.partitions,
                r.latency_5000_ms.0,
                r.latency_5000_ms.1,
                group(r.memory_per_second)
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<12} {:>16} {:>10} {:>16} {:>10}",
            "services", "single emit /s", "Redis µs", "batch emit /s", "Redis µs"
        );
        for r in &self.services {
            let _ = writeln!(
                out,
                "{:<12} {:>16} {:>10.2} {:>16} {:>10.2}",
                r.services,
                group(r.single_emit.0),
                r.single_emit.1,
                group(r.batch_emit.0),
                r.batch_emit.1
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<12} {:>12} {:>8} {:>24} {:>34}",
            "payload B",
            "event B",
            "events",
            "single ÷ raw LPUSH",
            "batch ÷ raw LPUSH pipelined ×16"
        );
        for r in &self.payloads {
            let _ = writeln!(
                out,
                "{:<12} {:>12} {:>8} {:>24.2} {:>34.2}",
                r.payload_bytes,
                r.event_bytes,
                r.events,
                r.single_vs_lpush,
                r.batch_vs_pipelined_lpush
            );
        }
        out
    }
}
