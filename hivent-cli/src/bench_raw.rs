//! The reference figures: raw LPUSH and RPOP through the redis client hivent uses.

use std::time::Instant;

use redis::{Connection, RedisResult};

use crate::bench::Progress;
use crate::bench_report::Throughput;

/// Commands per pipeline in the pipelined figures.
pub const PIPELINE_DEPTH: usize = 16;

/// LPUSH then RPOP `count` values of `value_bytes` bytes to/from `key`, one command per
/// round trip and then 16 per pipeline; leaves the key deleted.
pub fn measure(
    connection: &mut Connection,
    key: &str,
    count: u64,
    value_bytes: usize,
    progress: &Progress,
) -> RedisResult<Vec<Throughput>> {
    let value = "x".repeat(value_bytes.max(1));
    let mut figures = Vec::new();
    redis::cmd("DEL").arg(key).query::<i64>(connection)?;

    let done = progress.phase("raw LPUSH", count);
    let start = Instant::now();
    for _ in 0..count {
        redis::cmd("LPUSH")
            .arg(key)
            .arg(&value)
            .query::<i64>(connection)?;
        done.tick();
    }
    figures.push(Throughput::new(
        "raw_lpush",
        "raw LPUSH",
        count,
        start.elapsed().as_secs_f64(),
    ));

    let done = progress.phase("raw RPOP", count);
    let start = Instant::now();
    for _ in 0..count {
        redis::cmd("RPOP")
            .arg(key)
            .query::<Option<Vec<u8>>>(connection)?;
        done.tick();
    }
    figures.push(Throughput::new(
        "raw_rpop",
        "raw RPOP",
        count,
        start.elapsed().as_secs_f64(),
    ));

    let done = progress.phase("raw LPUSH pipelined", count);
    let start = Instant::now();
    let mut left = count;
    while left > 0 {
        let n = left.min(PIPELINE_DEPTH as u64);
        let mut pipe = redis::pipe();
        for _ in 0..n {
            pipe.cmd("LPUSH").arg(key).arg(&value);
        }
        let _: Vec<i64> = pipe.query(connection)?;
        left -= n;
        done.add(n);
    }
    figures.push(Throughput::new(
        "raw_lpush_pipelined",
        "raw LPUSH, pipelined ×16",
        count,
        start.elapsed().as_secs_f64(),
    ));

    let done = progress.phase("raw RPOP pipelined", count);
    let start = Instant::now();
    let mut left = count;
    while left > 0 {
        let n = left.min(PIPELINE_DEPTH as u64);
        let mut pipe = redis::pipe();
        for _ in 0..n {
            pipe.cmd("RPOP").arg(key);
        }
        let _: Vec<Option<Vec<u8>>> = pipe.query(connection)?;
        left -= n;
        done.add(n);
    }
    figures.push(Throughput::new(
        "raw_rpop_pipelined",
        "raw RPOP, pipelined ×16",
        count,
        start.elapsed().as_secs_f64(),
    ));
    redis::cmd("DEL").arg(key).query::<i64>(connection)?;
    Ok(figures)
}
