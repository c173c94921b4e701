//! Where a consumer session's group lives: the seam between the session's protocol
//! (leases, batches in hand, hand-over) and the Redis calls of one mode.
//!
//! Standalone mode ([`StandaloneGroup`]) keeps a service's group in a few hashes and
//! runs one script per step; cluster mode (`cluster_group.rs`) keeps each partition's
//! claim in the partition's own slot and pipelines one script per partition.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::connection::{Endpoint, Slot};
use crate::script::{
    AckOf, AckScript, AttemptScript, Claim, DeadLetterScript, FetchScript, HeartbeatReply,
    HeartbeatScript, LeaveScript, PartitionRead, ReleaseScript, Settled,
};
use crate::{keys, Error, RedisOptions};

/// The group operations a [`crate::RedisSession`] needs, each one round trip (per node).
pub(crate) trait GroupStore: Send + Sync {
    /// The options in use.
    fn options(&self) -> &RedisOptions;

    /// The members of `service`'s group, live or not yet removed.
    fn members(&self, service: &str) -> Result<Vec<String>, Error>;

    /// Renews `member`, releases what it should no longer own (except `working`) and
    /// claims what it should; `owned` is what it believes it owns.
    fn heartbeat(
        &self,
        service: &str,
        member: &str,
        working: &BTreeSet<u32>,
        owned: &[u32],
    ) -> Result<HeartbeatReply, Error>;

    /// Reads the oldest items of each claimed partition, about `max_bytes` in all.
    fn fetch(
        &self,
        service: &str,
        member: &str,
        max: usize,
        max_bytes: usize,
        claims: &[(u32, u64)],
    ) -> Result<Vec<PartitionRead>, Error>;

    /// Removes acknowledged items, each partition fenced by its claim: per partition,
    /// whether it was removed.
    fn ack(&self, service: &str, member: &str, acks: &[AckOf]) -> Result<Vec<bool>, Error>;

    /// Counts a failed attempt at the oldest item.
    fn attempt(
        &self,
        claim: &Claim<'_>,
        raw: &[u8],
        failed_at_ms: i64,
    ) -> Result<Settled<(u32, i64)>, Error>;

    /// Moves the oldest item to the dead letter queue with its record.
    fn dead_letter(
        &self,
        claim: &Claim<'_>,
        raw: &[u8],
        record: &str,
    ) -> Result<Settled<()>, Error>;

    /// Gives up one partition; false when the claim was already gone.
    fn release(&self, claim: &Claim<'_>) -> Result<bool, Error>;

    /// Removes `member` from the group and releases every partition it holds.
    fn leave(&self, service: &str, member: &str) -> Result<u64, Error>;
}

/// A group on a standalone Redis: one connection for heartbeats, one for the rest.
pub(crate) struct StandaloneGroup {
    endpoint: Arc<Endpoint>,
    heartbeat_connection: Slot,
    work_connection: Slot,
}

impl StandaloneGroup {
    pub(crate) fn new(endpoint: Arc<Endpoint>, work: redis::Connection) -> StandaloneGroup {
        StandaloneGroup {
            endpoint,
            heartbeat_connection: Slot::new(None),
            work_connection: Slot::new(Some(work)),
        }
    }

    fn run<T>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, Error> {
        self.work_connection
            .run(&self.endpoint, work)
            .map_err(|e| self.endpoint.error(operation, e))
    }
}

impl GroupStore for StandaloneGroup {
    fn options(&self) -> &RedisOptions {
        self.endpoint.options()
    }

    fn members(&self, service: &str) -> Result<Vec<String>, Error> {
        self.run("read the group's members", |connection| {
            redis::cmd("ZRANGE")
                .arg(keys::members(service))
                .arg(0)
                .arg(-1)
                .query(connection)
        })
    }

    fn heartbeat(
        &self,
        service: &str,
        member: &str,
        working: &BTreeSet<u32>,
        owned: &[u32],
    ) -> Result<HeartbeatReply, Error> {
        let options = self.endpoint.options();
        self.heartbeat_connection
            .run(&self.endpoint, |connection| {
                HeartbeatScript::invoke(
                    connection,
                    service,
                    member,
                    options.member_ttl,
                    options.heartbeat_interval,
                    working,
                    owned,
                )
            })
            .map_err(|e| self.endpoint.error("heartbeat", e))
    }

    fn fetch(
        &self,
        service: &str,
        member: &str,
        max: usize,
        max_bytes: usize,
        claims: &[(u32, u64)],
    ) -> Result<Vec<PartitionRead>, Error> {
        self.run("fetch events", |connection| {
            FetchScript::invoke(connection, service, member, max, max_bytes, claims)
        })
    }

    fn ack(&self, service: &str, member: &str, acks: &[AckOf]) -> Result<Vec<bool>, Error> {
        self.run("acknowledge events", |connection| {
            AckScript::invoke(connection, service, member, acks)
        })
    }

    fn attempt(
        &self,
        claim: &Claim<'_>,
        raw: &[u8],
        failed_at_ms: i64,
    ) -> Result<Settled<(u32, i64)>, Error> {
        self.run("count a failed attempt", |connection| {
            AttemptScript::invoke(connection, claim, raw, failed_at_ms)
        })
    }

    fn dead_letter(
        &self,
        claim: &Claim<'_>,
        raw: &[u8],
        record: &str,
    ) -> Result<Settled<()>, Error> {
        self.run("dead-letter an event", |connection| {
            DeadLetterScript::invoke(connection, claim, raw, record)
        })
    }

    fn release(&self, claim: &Claim<'_>) -> Result<bool, Error> {
        self.run("release a partition", |connection| {
            ReleaseScript::invoke(connection, claim)
        })
    }

    fn leave(&self, service: &str, member: &str) -> Result<u64, Error> {
        self.run("leave the consumer group", |connection| {
            LeaveScript::invoke(connection, service, member)
        })
    }
}
