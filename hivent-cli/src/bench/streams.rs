//! The Redis Streams reference: what a Rust engineer would write by hand with redis-rs.
//!
//! XADD one at a time and pipelined, a consumer-group drain with XREADGROUP COUNT and
//! an XACK per batch, and XREADGROUP BLOCK latency, on the same client and server as
//! the hivent figures. Measured as written, not tuned.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use redis::{Client, Connection, RedisError, RedisResult};

use crate::bench::progress::Progress;
use crate::bench::report::{Latency, Throughput};

/// One stream with a consumer group, under the run's prefix.
pub struct Streams {
    client: Client,
    key: String,
    value: String,
}

const GROUP: &str = "bench";

/// The longest a drain may take before the bench gives up (it measures; it does not hang).
const GIVE_UP_AFTER: Duration = Duration::from_secs(300);

/// An XREADGROUP reply: per stream its entries, each an id and its flat field list;
/// `None` when a BLOCK ran out.
type ReadReply = Option<Vec<(String, Vec<(String, Vec<String>)>)>>;

/// XREADGROUP of up to `count` new entries of `stream` for `consumer`, waiting up to
/// `block_ms` when given; the entries' ids and fields.
fn read_group(
    connection: &mut Connection,
    stream: &str,
    consumer: &str,
    count: usize,
    block_ms: Option<u64>,
) -> RedisResult<Vec<(String, Vec<String>)>> {
    let mut command = redis::cmd("XREADGROUP");
    command
        .arg("GROUP")
        .arg(GROUP)
        .arg(consumer)
        .arg("COUNT")
        .arg(count);
    if let Some(ms) = block_ms {
        command.arg("BLOCK").arg(ms);
    }
    let reply: ReadReply = command
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query(connection)?;
    Ok(reply
        .into_iter()
        .flatten()
        .flat_map(|(_, entries)| entries)
        .collect())
}

fn panicked(what: &str) -> RedisError {
    RedisError::from(std::io::Error::other(format!("{what} panicked")))
}

impl Streams {
    /// A stream `key` whose entries carry one field of `value_bytes` bytes.
    pub fn new(client: Client, key: String, value_bytes: usize) -> Streams {
        Streams {
            client,
            key,
            value: "x".repeat(value_bytes.max(1)),
        }
    }

    fn connection(&self) -> RedisResult<Connection> {
        self.client.get_connection()
    }

    /// Deletes the stream and makes it again, empty, with its group reading from the start.
    fn reset(&self, connection: &mut Connection) -> RedisResult<()> {
        redis::cmd("DEL").arg(&self.key).query::<i64>(connection)?;
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.key)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query::<()>(connection)
    }

    /// XADD `count` entries, one per round trip.
    pub fn xadd(&self, count: u64, progress: &Progress) -> RedisResult<Throughput> {
        let mut connection = self.connection()?;
        self.reset(&mut connection)?;
        let tick = progress.phase("Streams XADD", count);
        let start = Instant::now();
        for _ in 0..count {
            redis::cmd("XADD")
                .arg(&self.key)
                .arg("*")
                .arg("d")
                .arg(&self.value)
                .query::<String>(&mut connection)?;
            tick.tick();
        }
        Ok(Throughput::new(
            "streams_xadd",
            "Streams XADD, 1 thread",
            count,
            start.elapsed().as_secs_f64(),
        ))
    }

    /// XADD `count` entries in pipelines of `batch`; leaves them as the backlog.
    pub fn xadd_pipelined(
        &self,
        count: u64,
        batch: usize,
        progress: &Progress,
        label: &str,
    ) -> RedisResult<Throughput> {
        let mut connection = self.connection()?;
        self.reset(&mut connection)?;
        let tick = progress.phase(label, count);
        let start = Instant::now();
        let mut left = count;
        while left > 0 {
            let n = left.min(batch.max(1) as u64);
            let mut pipe = redis::pipe();
            for _ in 0..n {
                pipe.cmd("XADD")
                    .arg(&self.key)
                    .arg("*")
                    .arg("d")
                    .arg(&self.value);
            }
            pipe.query::<Vec<String>>(&mut connection)?;
            left -= n;
            tick.add(n);
        }
        Ok(Throughput::new(
            "streams_xadd_pipelined",
            format!("Streams XADD, pipelined ×{batch}"),
            count,
            start.elapsed().as_secs_f64(),
        ))
    }

    /// Drains the backlog of `count` entries with `consumers` group members on threads,
    /// each reading `fetch` entries per XREADGROUP and acknowledging them with one XACK.
    pub fn drain(
        &self,
        key: &'static str,
        consumers: usize,
        count: u64,
        fetch: usize,
        progress: &Progress,
    ) -> RedisResult<Throughput> {
        let label = format!("Streams XREADGROUP+XACK, {consumers} consumer(s)");
        let tick = progress.phase(&label, count);
        let taken = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let threads: Vec<_> = (0..consumers.max(1))
            .map(|i| {
                let mut connection = self.connection()?;
                let (stream, taken, tick) = (self.key.clone(), Arc::clone(&taken), tick.clone());
                Ok(thread::spawn(move || -> RedisResult<()> {
                    let name = format!("c{i}");
                    let deadline = Instant::now() + GIVE_UP_AFTER;
                    while taken.load(Ordering::Relaxed) < count {
                        if Instant::now() >= deadline {
                            return Err(RedisError::from(std::io::Error::other(format!(
                                "gave up: {} of {count} entries read",
                                taken.load(Ordering::Relaxed)
                            ))));
                        }
                        let ids: Vec<String> =
                            read_group(&mut connection, &stream, &name, fetch, None)?
                                .into_iter()
                                .map(|(id, _)| id)
                                .collect();
                        if ids.is_empty() {
                            continue;
                        }
                        redis::cmd("XACK")
                            .arg(&stream)
                            .arg(GROUP)
                            .arg(&ids)
                            .query::<i64>(&mut connection)?;
                        taken.fetch_add(ids.len() as u64, Ordering::Relaxed);
                        tick.add(ids.len() as u64);
                    }
                    Ok(())
                }))
            })
            .collect::<RedisResult<_>>()?;
        for thread in threads {
            thread
                .join()
                .map_err(|_| panicked("a Streams consumer"))??;
        }
        Ok(Throughput::new(
            key,
            label,
            count,
            start.elapsed().as_secs_f64(),
        ))
    }

    /// XADD at `rate` entries/s for `secs` while one consumer waits in XREADGROUP BLOCK;
    /// measures XADD start → entry received.
    pub fn latency(
        &self,
        key: &'static str,
        rate: f64,
        secs: f64,
        progress: &Progress,
    ) -> RedisResult<Latency> {
        let total = ((rate * secs).ceil() as u64).max(1);
        let tick = progress.phase(&format!("Streams BLOCK latency at {rate}/s"), total);
        let mut producer = self.connection()?;
        self.reset(&mut producer)?;
        let clock = Instant::now();
        let mut consumer = self.connection()?;
        let stream = self.key.clone();
        let reader = thread::spawn(move || -> RedisResult<Vec<u64>> {
            let mut samples = Vec::with_capacity(total as usize);
            let deadline = Instant::now() + Duration::from_secs_f64(secs + 60.0);
            while (samples.len() as u64) < total && Instant::now() < deadline {
                let entries = read_group(&mut consumer, &stream, "latency", 100, Some(1000))?;
                let now = u64::try_from(clock.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let mut ids = Vec::new();
                for (id, fields) in entries {
                    // Fields come flat: `t`, the send time, first.
                    let sent = fields.get(1).and_then(|t| t.parse::<u64>().ok());
                    samples.push(now.saturating_sub(sent.unwrap_or(now)));
                    ids.push(id);
                    tick.tick();
                }
                if !ids.is_empty() {
                    redis::cmd("XACK")
                        .arg(&stream)
                        .arg(GROUP)
                        .arg(&ids)
                        .query::<i64>(&mut consumer)?;
                }
            }
            Ok(samples)
        });
        let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
        let start = Instant::now();
        for n in 0..total {
            let due = start + interval.mul_f64(n as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            let sent = u64::try_from(clock.elapsed().as_nanos()).unwrap_or(u64::MAX);
            redis::cmd("XADD")
                .arg(&self.key)
                .arg("*")
                .arg("t")
                .arg(sent)
                .arg("d")
                .arg(&self.value)
                .query::<String>(&mut producer)?;
        }
        let achieved = total as f64 / start.elapsed().as_secs_f64().max(1e-9);
        let samples = reader
            .join()
            .map_err(|_| panicked("the Streams reader"))??;
        redis::cmd("DEL")
            .arg(&self.key)
            .query::<i64>(&mut producer)?;
        Ok(Latency::from_samples(key, rate, achieved, samples, None))
    }
}
