//! The reference figures: raw LPUSH and RPOP through the redis client hivent uses.

use std::time::Instant;

use redis::{Connection, RedisResult};

use crate::bench::progress::Progress;
use crate::bench::report::{RedisTimed, Throughput};
use crate::bench::server_time::CommandTimes;

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

    let depth = PIPELINE_DEPTH as u64;
    figures.push(timed(
        connection,
        "raw_lpush",
        "raw LPUSH",
        count,
        1,
        progress,
        |connection, _| {
            redis::cmd("LPUSH")
                .arg(key)
                .arg(&value)
                .query::<i64>(connection)?;
            Ok(())
        },
    )?);
    figures.push(timed(
        connection,
        "raw_rpop",
        "raw RPOP",
        count,
        1,
        progress,
        |connection, _| {
            redis::cmd("RPOP")
                .arg(key)
                .query::<Option<Vec<u8>>>(connection)?;
            Ok(())
        },
    )?);
    figures.push(timed(
        connection,
        "raw_lpush_pipelined",
        "raw LPUSH, pipelined ×16",
        count,
        depth,
        progress,
        |connection, n| {
            let mut pipe = redis::pipe();
            for _ in 0..n {
                pipe.cmd("LPUSH").arg(key).arg(&value);
            }
            pipe.query::<Vec<i64>>(connection)?;
            Ok(())
        },
    )?);
    figures.push(timed(
        connection,
        "raw_rpop_pipelined",
        "raw RPOP, pipelined ×16",
        count,
        depth,
        progress,
        |connection, n| {
            let mut pipe = redis::pipe();
            for _ in 0..n {
                pipe.cmd("RPOP").arg(key);
            }
            pipe.query::<Vec<Option<Vec<u8>>>>(connection)?;
            Ok(())
        },
    )?);
    redis::cmd("DEL").arg(key).query::<i64>(connection)?;
    Ok(figures)
}

/// Times `count` operations done `per_trip` at a time by `trip` (one round trip each),
/// with the Redis time they cost.
fn timed(
    connection: &mut Connection,
    key: &'static str,
    name: &str,
    count: u64,
    per_trip: u64,
    progress: &Progress,
    mut trip: impl FnMut(&mut Connection, u64) -> RedisResult<()>,
) -> RedisResult<Throughput> {
    let done = progress.phase(name, count);
    let before = CommandTimes::sample(connection)?;
    let start = Instant::now();
    let mut left = count;
    while left > 0 {
        let n = left.min(per_trip.max(1));
        trip(connection, n)?;
        left -= n;
        done.add(n);
    }
    let seconds = start.elapsed().as_secs_f64();
    let spent = CommandTimes::sample(connection)?.since(&before);
    Ok(Throughput::new(key, name, count, seconds).with_redis_time(spent))
}
