//! Tuning of the Redis backend: heartbeats, membership lifetime, timeouts, emit retries.

use std::time::Duration;

use crate::Error;

/// Tuning of a [`crate::RedisBackend`]; the defaults suit most deployments.
///
/// ```
/// use std::time::Duration;
/// use hivent_redis::RedisOptions;
/// let options = RedisOptions::default()
///     .heartbeat_interval(Duration::from_millis(200))
///     .member_ttl(Duration::from_secs(1));
/// assert_eq!(options.emit_tries, 4);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisOptions {
    /// How often a consumer renews its membership and rebalances (default 1 s).
    pub heartbeat_interval: Duration,
    /// How long a membership lives without a heartbeat (default 5 s); must exceed the
    /// heartbeat interval. A consumer that could not heartbeat for most of this stops
    /// fetching by itself, and others take its partitions once it expired.
    pub member_ttl: Duration,
    /// How long to wait for a TCP connection (default 2 s).
    pub connect_timeout: Duration,
    /// How long to wait for any reply (default 5 s).
    pub response_timeout: Duration,
    /// How many times an emit is tried in all when Redis fails transiently (default 4).
    pub emit_tries: u32,
    /// The pause before the second try of an emit; it doubles for each further try
    /// (default 50 ms). Each pause is jittered (a random point in its upper half), so
    /// producers that failed together do not try again together.
    pub emit_backoff: Duration,
    /// How long the marker that makes emits idempotent lives (default 60 s): a retry of
    /// the same call (an automatic one, or `Hivent::retry_emit` after an uncertain
    /// failure) within this time stores nothing again. A call's own marker costs Redis
    /// about 160 bytes for this long (9.4 MB at 1,000 calls a second); emits by cached
    /// routes set one only for the chunks of large batches and for retries, and
    /// otherwise overwrite one marker per connection.
    pub emit_marker_ttl: Duration,
    /// How many idle connections the backend keeps for emits and registration (default 4).
    pub pool_size: usize,
    /// How long a producer emits by the routes it read (who receives an event, their
    /// partition counts) before reading them again (default 1 s); zero runs the
    /// publish script for every emit. A registration by hivent is seen by the very
    /// next emit whatever this is (it moves the registry version that every cached
    /// emit checks); this bounds how long a service registered by the Ruby gem, which
    /// does not move it, goes without the events of a producer that cached the routes.
    pub route_cache_ttl: Duration,
    /// Cluster mode: how many replicas of a master must acknowledge an emit, an ack or
    /// a dead-letter move (`WAIT`) before it counts as done (default 0: none waited
    /// for). Redis replicates asynchronously, so without it a master that fails right
    /// after a write can take the write with it when its replica is promoted: an emit
    /// the caller was told is stored may be lost, and an ack undone (the events are
    /// handled again). With it, an emit not acknowledged in time fails as uncertain
    /// (`Hivent::retry_emit` completes it and waits again).
    pub replica_acks: u32,
    /// How long an emit or ack waits for [`RedisOptions::replica_acks`] (default 1 s).
    pub replica_ack_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            heartbeat_interval: Duration::from_secs(1),
            member_ttl: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
            emit_tries: 4,
            emit_backoff: Duration::from_millis(50),
            emit_marker_ttl: Duration::from_secs(60),
            pool_size: 4,
            route_cache_ttl: Duration::from_secs(1),
            replica_acks: 0,
            replica_ack_timeout: Duration::from_secs(1),
        }
    }
}

impl RedisOptions {
    /// Sets the heartbeat interval.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// Sets the membership lifetime.
    pub fn member_ttl(mut self, ttl: Duration) -> Self {
        self.member_ttl = ttl;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the response timeout.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets how many times an emit is tried in all (at least 1).
    pub fn emit_tries(mut self, tries: u32) -> Self {
        self.emit_tries = tries.max(1);
        self
    }

    /// Sets the pause before the second try of an emit.
    pub fn emit_backoff(mut self, backoff: Duration) -> Self {
        self.emit_backoff = backoff;
        self
    }

    /// Sets how long emit markers live.
    pub fn emit_marker_ttl(mut self, ttl: Duration) -> Self {
        self.emit_marker_ttl = ttl;
        self
    }

    /// Sets how many idle connections are kept.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// Sets how long cached routes are used; zero turns the cache off.
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = hivent_redis::RedisOptions::default().route_cache_ttl(Duration::ZERO);
    /// assert_eq!(options.route_cache_ttl, Duration::ZERO);
    /// ```
    pub fn route_cache_ttl(mut self, ttl: Duration) -> Self {
        self.route_cache_ttl = ttl;
        self
    }

    /// Sets how many replicas must acknowledge each write (cluster mode).
    ///
    /// ```
    /// let options = hivent_redis::RedisOptions::default().replica_acks(1);
    /// assert_eq!(options.replica_acks, 1);
    /// ```
    pub fn replica_acks(mut self, replicas: u32) -> Self {
        self.replica_acks = replicas;
        self
    }

    /// Sets how long a write waits for its replica acknowledgements.
    pub fn replica_ack_timeout(mut self, timeout: Duration) -> Self {
        self.replica_ack_timeout = timeout;
        self
    }

    /// The time since the last successful heartbeat after which a consumer stops
    /// fetching: the membership lifetime minus a fifth, so that it stops before others
    /// may take over, even with some clock drift between hosts.
    pub(crate) fn self_fence_after(&self) -> Duration {
        self.member_ttl - self.member_ttl / 5
    }

    /// Rejects combinations that cannot work.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let positive = [
            ("heartbeat_interval", self.heartbeat_interval),
            ("member_ttl", self.member_ttl),
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
        ];
        for (option, value) in positive {
            if value.is_zero() {
                return Err(Error::InvalidOptions {
                    option,
                    reason: "must be longer than zero".into(),
                });
            }
        }
        if self.member_ttl <= self.heartbeat_interval {
            return Err(Error::InvalidOptions {
                option: "member_ttl",
                reason: format!(
                    "{:?} must exceed the heartbeat interval {:?}, or members expire between heartbeats",
                    self.member_ttl, self.heartbeat_interval
                ),
            });
        }
        if self.emit_marker_ttl < Duration::from_millis(1) {
            return Err(Error::InvalidOptions {
                option: "emit_marker_ttl",
                reason: "must be at least 1 ms".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// The defaults are valid and the lifetime must exceed the heartbeat interval.
    #[test]
    fn validates_ttl_against_interval() {
        assert!(RedisOptions::default().validate().is_ok());
        let bad = RedisOptions::default()
            .heartbeat_interval(Duration::from_secs(2))
            .member_ttl(Duration::from_secs(2));
        assert!(matches!(
            bad.validate(),
            Err(Error::InvalidOptions {
                option: "member_ttl",
                ..
            })
        ));
        assert_eq!(
            RedisOptions::default().self_fence_after(),
            Duration::from_secs(4)
        );
    }
}
