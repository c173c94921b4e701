//! Helpers shared by the Redis integration tests: a server, a raw connection, handles.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hivent_core::{Config, Envelope, Hivent, Registration};
use hivent_redis::test_server::{server_for_tests, RedisServer};
use hivent_redis::{RedisBackend, RedisOptions};

/// A test's own server and a raw connection to inspect it.
pub struct Redis {
    pub server: RedisServer,
    pub raw: redis::Connection,
}

/// Starts a server, or returns `None` when redis-server is missing (and not required).
pub fn redis() -> Option<Redis> {
    let server = server_for_tests()?;
    let raw = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    Some(Redis { server, raw })
}

/// Short heartbeats and lifetimes, so group tests take fractions of a second.
pub fn fast_options() -> RedisOptions {
    RedisOptions::default()
        .heartbeat_interval(Duration::from_millis(100))
        .member_ttl(Duration::from_millis(500))
}

impl Redis {
    pub fn backend(&self) -> Arc<RedisBackend> {
        Arc::new(RedisBackend::with_options(&self.server.url(), fast_options()).unwrap())
    }

    pub fn hivent(&self, service: &str, partitions: u32) -> Hivent {
        let config = Config::builder()
            .client_id(service)
            .partition_count(partitions)
            .build()
            .unwrap();
        Hivent::new(config, self.backend())
    }

    pub fn list(&mut self, key: &str) -> Vec<String> {
        redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query(&mut self.raw)
            .unwrap()
    }

    pub fn len(&mut self, key: &str) -> usize {
        redis::cmd("LLEN").arg(key).query(&mut self.raw).unwrap()
    }

    pub fn get(&mut self, key: &str) -> Option<String> {
        redis::cmd("GET").arg(key).query(&mut self.raw).unwrap()
    }

    pub fn members(&mut self, key: &str) -> Vec<String> {
        let mut members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(key)
            .query(&mut self.raw)
            .unwrap();
        members.sort();
        members
    }

    /// How many times Redis ran `command` (lower case) since it started or the last
    /// `CONFIG RESETSTAT`, from `INFO commandstats`.
    pub fn calls(&mut self, command: &str) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.raw)
            .unwrap();
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    }

    /// Pauses every client's writes (`CLIENT PAUSE … WRITE`) for `millis`.
    pub fn pause_writes(&mut self, millis: u64) {
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(millis)
            .arg("WRITE")
            .query(&mut self.raw)
            .unwrap();
    }

    pub fn command(&mut self, name: &str, args: &[&str]) -> redis::Value {
        let mut cmd = redis::cmd(name);
        for arg in args {
            cmd.arg(*arg);
        }
        cmd.query(&mut self.raw).unwrap()
    }
}

/// Polls `condition` until it holds, failing the test after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An event as the Ruby gem writes it.
pub fn gem_event(name: &str, payload: &str, uuid: &str) -> String {
    format!(
        r#"{{"payload":{payload},"meta":{{"event_uuid":"{uuid}","name":"{name}","version":1,"cid":"0123456789abcdef0123456789abcdef","producer":"ruby_app","created_at":"2026-12-01T04:56:33.123Z"}}}}"#
    )
}

/// What `service` registers: `events` in `partitions` partitions.
pub fn registration(service: &str, events: &[&str], partitions: u32) -> Registration {
    Registration {
        service: service.to_owned(),
        events: events.iter().map(|e| e.to_string()).collect(),
        partition_count: partitions,
    }
}

/// An event named `name` in the gem's shape (empty payload, a new uuid), ready to
/// publish with partition hash `hash`.
pub fn gem_envelope(name: &str, hash: u32) -> Envelope {
    Envelope {
        name: name.to_owned(),
        partition_hash: hash,
        json: gem_event(name, "{}", &hivent_core::new_id()),
    }
}
