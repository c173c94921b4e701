//! `hivent bench`: measures hivent against raw Redis in one run and prints figures and ratios.
//!
//! Without `--endpoint` it starts a throwaway `redis-server` on a free loopback port
//! and stops it on every way out: success, error, panic, SIGINT and SIGTERM. With
//! `--endpoint` it works under unique `hivent-bench-…` names and deletes them at the
//! end (emit markers expire by themselves after a minute). Benchmarks assert nothing
//! about time: the targets column is information for people.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use clap::Args;
use hivent::backend::Backend;
use hivent::{MemoryBackend, RedisBackend, RedisOptions};
use hivent_redis::test_cluster::RedisCluster;
use hivent_redis::test_server::{RedisServer, ServerError};
use parking_lot::Mutex;

use crate::bench::failure::bench_error;
use crate::bench::progress::Progress;
use crate::bench::report::{Machine, Report, Settings};
use crate::bench::scaling::Scaling;
use crate::bench::scene::Scene;
use crate::bench::server_time::timed_on_server;
use crate::bench::streams::Streams;
use crate::exit::Failure;

mod cluster;
mod failure;
mod progress;
mod raw;
mod report;
mod scaling;
mod scene;
mod server_time;
mod streams;

/// The options of `bench`.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Redis to measure against (default: a throwaway redis-server on a free loopback port)
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Events per throughput figure, the drain backlog, and raw Redis operations per figure
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub events: u64,
    /// Payload size in bytes (JSON text)
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    pub payload_bytes: usize,
    /// Partitions of the receiving service
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub partitions: u32,
    /// Consumer threads of the second drain figure (the first always uses 1)
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub workers: usize,
    /// Events per EmitBatch in the batch emit figure
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub emit_batch: usize,
    /// Most events a consumer reads from one partition per fetch
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub fetch_batch: usize,
    /// Seconds each latency rate (50/s and 5,000/s) runs
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub latency_secs: f64,
    /// Events of the memory backend figure
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub memory_events: u64,
    /// Print the figures as JSON on stdout instead of a table
    #[arg(long)]
    pub json: bool,
    /// Instead of the main figures, how they change with the partition count (4, 16,
    /// 64, 256), the number of receiving services (1, 10, 100) and the payload size
    /// (100 B to 100 KB)
    #[arg(long)]
    pub scaling: bool,
    /// Also measure emits and drains on Redis Clusters the run starts (3 masters, and 3
    /// masters with a replica each for `replica_acks 1`), beside the single node's
    /// figures; needs redis-server and redis-cli
    #[arg(long)]
    pub cluster: bool,
}

impl BenchArgs {
    fn validate(&self) -> Result<(), Failure> {
        let positive = [
            ("--events", self.events as f64),
            ("--partitions", f64::from(self.partitions)),
            ("--workers", self.workers as f64),
            ("--emit-batch", self.emit_batch as f64),
            ("--fetch-batch", self.fetch_batch as f64),
            ("--memory-events", self.memory_events as f64),
        ];
        for (option, value) in positive {
            if value < 1.0 {
                return Err(Failure::Usage(format!("{option} must be at least 1")));
            }
        }
        if !(self.latency_secs.is_finite() && self.latency_secs > 0.0) {
            return Err(Failure::Usage(format!(
                "--latency-secs must be a positive number of seconds, not {}",
                self.latency_secs
            )));
        }
        Ok(())
    }
}

/// Runs the benchmark and prints its report.
pub fn run(args: &BenchArgs) -> Result<(), Failure> {
    args.validate()?;
    let server = ServerGuard::default();
    let endpoint = match &args.endpoint {
        Some(endpoint) => endpoint.clone(),
        None => {
            server.watch_signals()?;
            let started = RedisServer::start().map_err(|e| match e {
                ServerError::NotInstalled => Failure::Usage(format!(
                    "{e}; install it, or measure an existing Redis with --endpoint"
                )),
                other => Failure::Runtime(bench_error(&hivent::ErrorChain(&other).to_string())),
            })?;
            let url = started.url();
            server.hold(started);
            url
        }
    };
    let outcome = measure(args, &endpoint, args.endpoint.is_none(), &server);
    drop(server);
    let json = match outcome? {
        Outcome::Report(report) if !args.json => {
            print!("{}", report.table());
            return Ok(());
        }
        Outcome::Scaling(scaling) if !args.json => {
            print!("{}", scaling.table());
            return Ok(());
        }
        Outcome::Report(report) => serde_json::to_string_pretty(&report),
        Outcome::Scaling(scaling) => serde_json::to_string_pretty(&scaling),
    };
    println!(
        "{}",
        json.map_err(|e| Failure::Runtime(bench_error(&e.to_string())))?
    );
    Ok(())
}

/// What a run measured: the main figures, or the scaling tables.
enum Outcome {
    Report(Report),
    Scaling(Scaling),
}

fn measure(
    args: &BenchArgs,
    endpoint: &str,
    throwaway: bool,
    guard: &ServerGuard,
) -> Result<Outcome, Failure> {
    let progress = Progress::start(if args.cluster { 31 } else { 24 });
    let prefix = format!(
        "hivent-bench-{}-{}",
        std::process::id(),
        &hivent::backend::new_id()[..8]
    );
    let options = RedisOptions::default().emit_marker_ttl(Duration::from_secs(60));
    let backend = Arc::new(RedisBackend::with_options(endpoint, options).map_err(redis_failure)?);
    let shared: Arc<dyn Backend> = backend.clone();
    let scene = Scene::new(
        shared,
        &prefix,
        args.partitions,
        args.payload_bytes,
        args.fetch_batch,
    );
    let mut connection = redis::Client::open(endpoint)
        .and_then(|client| client.get_connection())
        .map_err(|e| Failure::Runtime(bench_error(&format!("raw connection: {e}"))))?;
    if args.scaling {
        let mut cx = scaling::Context {
            backend: backend.clone(),
            connection: &mut connection,
            prefix: &prefix,
            events: args.events,
            emit_batch: args.emit_batch,
            fetch_batch: args.fetch_batch,
            latency_secs: args.latency_secs,
            memory_events: args.memory_events,
            progress: &progress,
        };
        let result = scaling::measure(&mut cx);
        let cleaned = delete_keys(&mut connection, &prefix);
        progress.finish();
        let scaling = result?;
        cleaned.map_err(|e| Failure::Runtime(bench_error(&format!("cleaning up: {e}"))))?;
        return Ok(Outcome::Scaling(scaling));
    }
    let result = measure_with(args, endpoint, &scene, &mut connection, &prefix, &progress)
        .and_then(|(mut throughput, latency)| {
            if args.cluster {
                guard.watch_signals_once()?;
                throughput.extend(cluster::measure(args, &prefix, &progress, |cluster| {
                    guard.hold_cluster(cluster)
                })?);
            }
            Ok((throughput, latency))
        });
    let cleaned = delete_keys(&mut connection, &prefix);
    progress.finish();
    let (throughput, latency) = result?;
    cleaned.map_err(|e| Failure::Runtime(bench_error(&format!("cleaning up: {e}"))))?;
    let mut machine = machine();
    machine.redis_version = redis_version(&mut connection);
    machine.redis = if throwaway { "throwaway" } else { "given" };
    let mut report = Report {
        machine,
        settings: Settings {
            events: args.events,
            payload_bytes: args.payload_bytes,
            event_bytes: scene.event_bytes(),
            partitions: args.partitions,
            workers: args.workers,
            emit_batch: args.emit_batch,
            fetch_batch: args.fetch_batch,
            latency_secs: args.latency_secs,
        },
        throughput,
        latency,
    };
    report.compute_ratios();
    Ok(Outcome::Report(report))
}

type Figures = (
    Vec<crate::bench::report::Throughput>,
    Vec<crate::bench::report::Latency>,
);

fn raw_failure(what: &str) -> impl Fn(redis::RedisError) -> Failure + '_ {
    move |e| Failure::Runtime(bench_error(&format!("{what}: {e}")))
}

fn measure_with(
    args: &BenchArgs,
    endpoint: &str,
    scene: &Scene,
    connection: &mut redis::Connection,
    prefix: &str,
    progress: &Progress,
) -> Result<Figures, Failure> {
    let n = args.events;
    let mut throughput = raw::measure(
        connection,
        &format!("{prefix}:raw"),
        n,
        scene.event_bytes(),
        progress,
    )
    .map_err(raw_failure("raw Redis"))?;

    let client = redis::Client::open(endpoint).map_err(raw_failure("Streams client"))?;
    let streams = Streams::new(client, format!("{prefix}:stream"), scene.event_bytes());
    throughput.push(timed_on_server(connection, || {
        streams.xadd(n, progress).map_err(raw_failure("Streams"))
    })?);
    throughput.push(timed_on_server(connection, || {
        streams
            .xadd_pipelined(n, args.emit_batch, progress, "Streams XADD, pipelined")
            .map_err(raw_failure("Streams"))
    })?);
    throughput.push(timed_on_server(connection, || {
        streams
            .drain("streams_drain_1", 1, n, args.fetch_batch, progress)
            .map_err(raw_failure("Streams"))
    })?);
    streams
        .xadd_pipelined(n, args.emit_batch, progress, "Streams refill the backlog")
        .map_err(raw_failure("Streams"))?;
    throughput.push(timed_on_server(connection, || {
        streams
            .drain(
                "streams_drain_n",
                args.workers,
                n,
                args.fetch_batch,
                progress,
            )
            .map_err(raw_failure("Streams"))
    })?);

    scene.register()?;
    throughput.push(timed_on_server(connection, || {
        Ok(scene
            .single_emit(n, progress)?
            .against("streams_xadd", Some(0.95)))
    })?);
    clear_partitions(connection, scene, args.partitions)?;
    for (key, threads) in [("single_emit_4", 4), ("single_emit_16", 16)] {
        throughput.push(timed_on_server(connection, || {
            Ok(scene
                .producers_emit(key, n, threads, progress)?
                .against("single_emit", None))
        })?);
        clear_partitions(connection, scene, args.partitions)?;
    }
    // The batch emit leaves the backlog the first drain works through.
    throughput.push(timed_on_server(connection, || {
        Ok(scene
            .batch_emit(n, args.emit_batch, progress, "batch emit")?
            .against("streams_xadd_pipelined", Some(1.0)))
    })?);
    throughput.push(timed_on_server(connection, || {
        Ok(scene
            .drain("drain_1", 1, n, progress)?
            .against("streams_drain_1", Some(2.0)))
    })?);
    scene.batch_emit(n, args.emit_batch, progress, "refill the backlog")?;
    throughput.push(timed_on_server(connection, || {
        Ok(scene
            .drain("drain_n", args.workers, n, progress)?
            .against("streams_drain_n", None))
    })?);
    clear_partitions(connection, scene, args.partitions)?;

    let mut latency = Vec::new();
    for (rate, key, reference, target) in [
        (
            50.0,
            "latency_50",
            "streams_latency_50",
            (1.0, f64::INFINITY),
        ),
        (
            5000.0,
            "latency_5000",
            "streams_latency_5000",
            (f64::INFINITY, 1.5),
        ),
    ] {
        latency.push(timed_on_server(connection, || {
            streams
                .latency(reference, rate, args.latency_secs, progress)
                .map_err(raw_failure("Streams"))
        })?);
        latency.push(timed_on_server(connection, || {
            Ok(scene
                .latency(key, rate, args.latency_secs, None, progress)?
                .against(reference, target))
        })?);
    }

    let memory: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let memory_scene = Scene::new(
        memory,
        prefix,
        args.partitions,
        args.payload_bytes,
        args.fetch_batch,
    );
    throughput.push(
        memory_scene
            .emit_and_dispatch(args.memory_events, progress)?
            .aiming_at(1_000_000.0),
    );
    let apart = Scene::new(
        Arc::new(MemoryBackend::new()),
        prefix,
        args.partitions,
        args.payload_bytes,
        args.fetch_batch,
    );
    throughput.extend(apart.emit_then_dispatch(args.memory_events, progress)?);
    Ok((throughput, latency))
}

fn redis_failure(error: hivent_redis::Error) -> Failure {
    Failure::from(hivent::Error::from(error))
}

fn clear_partitions(
    connection: &mut redis::Connection,
    scene: &Scene,
    partitions: u32,
) -> Result<(), Failure> {
    let mut del = redis::cmd("DEL");
    for p in 0..partitions {
        del.arg(hivent_redis::keys::partition(&scene.service(), p));
    }
    del.query::<i64>(connection)
        .map(|_| ())
        .map_err(|e| Failure::Runtime(bench_error(&format!("clearing partitions: {e}"))))
}

/// Deletes every key the run made (all start with `prefix`).
fn delete_keys(connection: &mut redis::Connection, prefix: &str) -> redis::RedisResult<()> {
    let keys: Vec<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(format!("{prefix}*"))
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter(connection)?
        .collect::<redis::RedisResult<Vec<String>>>()?;
    for chunk in keys.chunks(500) {
        redis::cmd("DEL").arg(chunk).query::<i64>(connection)?;
    }
    Ok(())
}

fn redis_version(connection: &mut redis::Connection) -> String {
    redis::cmd("INFO")
        .arg("server")
        .query::<String>(connection)
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("redis_version:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    Machine {
        cores: thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
        kernel,
        redis_version: String::new(),
        redis: "throwaway",
    }
}

/// The throwaway server and clusters, stopped when the guard drops or on
/// SIGINT/SIGTERM.
#[derive(Default, Clone)]
struct ServerGuard {
    server: Arc<Mutex<Option<RedisServer>>>,
    clusters: Arc<Mutex<Vec<RedisCluster>>>,
    watching: Arc<std::sync::atomic::AtomicBool>,
}

impl ServerGuard {
    fn hold(&self, server: RedisServer) {
        *self.server.lock() = Some(server);
    }

    /// Keeps `cluster` until the end of the run; its seeds.
    fn hold_cluster(&self, cluster: RedisCluster) -> String {
        let seeds = cluster.seeds();
        self.clusters.lock().push(cluster);
        seeds
    }

    /// [`ServerGuard::watch_signals`], unless it already watches.
    fn watch_signals_once(&self) -> Result<(), Failure> {
        if self.watching.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        self.watch_signals()
    }

    /// On SIGINT or SIGTERM: stop the servers, then exit with 130.
    fn watch_signals(&self) -> Result<(), Failure> {
        self.watching
            .store(true, std::sync::atomic::Ordering::Relaxed);
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
            .map_err(|e| Failure::Usage(format!("could not listen for signals: {e}")))?;
        let guard = self.clone();
        thread::Builder::new()
            .name("bench-signals".into())
            .spawn(move || {
                if signals.forever().next().is_some() {
                    guard.server.lock().take();
                    guard.clusters.lock().clear();
                    eprintln!("\nhivent bench: interrupted; the Redis server was stopped");
                    std::process::exit(130);
                }
            })
            .map_err(|e| Failure::Usage(format!("could not listen for signals: {e}")))?;
        Ok(())
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        // The last clone lives in the signal thread; the main one stops the server.
        if let Some(mut server) = self.server.try_lock() {
            server.take();
        }
        if let Some(mut clusters) = self.clusters.try_lock() {
            clusters.clear();
        }
    }
}
