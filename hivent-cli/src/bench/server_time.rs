//! Redis's own time per event, from `INFO commandstats` before and after a figure.
//!
//! Server time does not depend on how busy the client machine is, and it says where one
//! Redis core saturates: 1 s of it per second is all a Redis has.

use std::collections::HashMap;

use redis::{Connection, RedisResult};

use crate::bench::failure::bench_error;
use crate::bench::report::RedisTimed;
use crate::exit::Failure;

/// The commands that run scripts, functions or transactions: their time includes the
/// commands they run, which `INFO commandstats` counts a second time under their own
/// names.
const SCRIPT_COMMANDS: [&str; 7] = [
    "evalsha",
    "eval",
    "evalsha_ro",
    "eval_ro",
    "fcall",
    "fcall_ro",
    "exec",
];

/// The commands hivent's scripts and its emit transaction (`MULTI` … `EXEC`) run. In a
/// figure that ran those their time is already in the script's or `EXEC`'s, so they are
/// not counted again; what hivent sends outside them (`WATCH`, `MGET`, `MULTI`) is not
/// among them and counts.
const CALLED_BY_SCRIPTS: [&str; 30] = [
    "type",
    "sunion",
    "exists",
    "get",
    "set",
    "lpush",
    "rpush",
    "publish",
    "hget",
    "hset",
    "hdel",
    "hmget",
    "hgetall",
    "lrange",
    "ltrim",
    "llen",
    "lindex",
    "rpoplpush",
    "zadd",
    "zrange",
    "zrangebyscore",
    "zremrangebyscore",
    "zrem",
    "zscore",
    "incr",
    "del",
    "smembers",
    "sadd",
    "srem",
    "time",
];

/// Microseconds Redis spent per command name, as `INFO commandstats` reports them.
#[derive(Clone, Debug, Default)]
pub struct CommandTimes(HashMap<String, u64>);

impl CommandTimes {
    /// The server's counters now.
    pub fn sample(connection: &mut Connection) -> RedisResult<CommandTimes> {
        let info: String = redis::cmd("INFO").arg("commandstats").query(connection)?;
        Ok(CommandTimes::parse(&info))
    }

    /// Reads `cmdstat_<name>:calls=…,usec=…,…` lines.
    fn parse(info: &str) -> CommandTimes {
        let times = info
            .lines()
            .filter_map(|line| {
                let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let usec = stats
                    .split(',')
                    .find_map(|field| field.strip_prefix("usec="))?
                    .parse()
                    .ok()?;
                Some((name.to_ascii_lowercase(), usec))
            })
            .collect();
        CommandTimes(times)
    }

    /// Microseconds of server time since `before`, each command counted once: with
    /// scripts in the interval, their time plus that of commands no script calls;
    /// without, every command's. `INFO` itself is left out.
    pub fn since(&self, before: &CommandTimes) -> f64 {
        let delta: Vec<(&str, u64)> = self
            .0
            .iter()
            .map(|(name, usec)| {
                let was = before.0.get(name).copied().unwrap_or(0);
                (name.as_str(), usec.saturating_sub(was))
            })
            .filter(|(name, usec)| *usec > 0 && *name != "info")
            .collect();
        let scripted = delta.iter().any(|(name, _)| SCRIPT_COMMANDS.contains(name));
        delta
            .iter()
            .filter(|(name, _)| {
                !scripted || SCRIPT_COMMANDS.contains(name) || !CALLED_BY_SCRIPTS.contains(name)
            })
            .map(|(_, usec)| *usec as f64)
            .sum()
    }
}

/// Runs `figure`, and records the Redis time it cost with its result.
pub fn timed_on_server<T: RedisTimed>(
    connection: &mut redis::Connection,
    figure: impl FnOnce() -> Result<T, Failure>,
) -> Result<T, Failure> {
    let server =
        |e: redis::RedisError| Failure::Runtime(bench_error(&format!("INFO commandstats: {e}")));
    let before = CommandTimes::sample(connection).map_err(server)?;
    let result = figure()?;
    let spent = CommandTimes::sample(connection)
        .map_err(server)?
        .since(&before);
    Ok(result.with_redis_time(spent))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# Commandstats\r\ncmdstat_lpush:calls=10,usec=30,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\ncmdstat_evalsha:calls=1,usec=50,usec_per_call=50.00,rejected_calls=0,failed_calls=0\r\n";
    const AFTER: &str = "# Commandstats\r\ncmdstat_lpush:calls=20,usec=60,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\ncmdstat_evalsha:calls=2,usec=100,usec_per_call=50.00,rejected_calls=0,failed_calls=0\r\ncmdstat_info:calls=2,usec=40,usec_per_call=20.00,rejected_calls=0,failed_calls=0\r\ncmdstat_xadd:calls=1,usec=2,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n";

    /// A script's inner commands are not counted twice; without scripts, all count.
    #[test]
    fn counts_each_command_once() {
        let (before, after) = (CommandTimes::parse(BEFORE), CommandTimes::parse(AFTER));
        assert_eq!(
            after.since(&before),
            52.0,
            "evalsha 50 + xadd 2, not lpush 30"
        );
        let raw = CommandTimes::parse("cmdstat_lpush:calls=20,usec=60,usec_per_call=3.00");
        assert_eq!(raw.since(&before), 30.0);
    }
}
