//! A consumer group on a Redis Cluster: membership in the service's slot, each
//! partition's claim (owner, fencing token, lease) in the partition's own slot.
//!
//! A heartbeat is two pipelines: the membership script with the partition count (two
//! slots), then one claim script per partition the member owns or should own, every
//! node's part sent at once. The lease a member keeps locally starts before the first
//! of them is sent, and each partition's lease in Redis starts when its claim script
//! runs, later: so the local one always ends first, and a member that stopped
//! renewing stops working on a partition before another can claim it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use redis::{FromRedisValue, Value};

use crate::cluster_connection::{
    pipeline, wait_for_replicas, ClusterEndpoint, ClusterSlot, Repeat,
};
use crate::cluster_keys as keys;
use crate::cluster_script::{self as script, ClaimAction, ClusterClaim};
use crate::group_store::GroupStore;
use crate::script::{
    millis, number, partition_count, AckOf, Claim, HeartbeatReply, Owned, PartitionRead, Settled,
};
use crate::{Error, RedisOptions};

/// A service's group on a cluster: one connection for heartbeats, one for the rest.
pub(crate) struct ClusterGroup {
    endpoint: Arc<ClusterEndpoint>,
    heartbeat_connection: ClusterSlot,
    work_connection: ClusterSlot,
    /// Per partition, the token of the claim acks went under and how many items they
    /// removed: what each ack call presents, so the script can tell a call sent twice.
    acked: Mutex<HashMap<u32, (u64, u64)>>,
}

impl ClusterGroup {
    pub(crate) fn new(endpoint: Arc<ClusterEndpoint>) -> ClusterGroup {
        ClusterGroup {
            endpoint,
            heartbeat_connection: ClusterSlot::new(None),
            work_connection: ClusterSlot::new(None),
            acked: Mutex::default(),
        }
    }

    fn run(
        &self,
        connection: &ClusterSlot,
        operation: &'static str,
        calls: &[redis::Cmd],
        repeat: Repeat,
    ) -> Result<Vec<Value>, Error> {
        connection
            .run(&self.endpoint, |connection| {
                pipeline(connection, calls, repeat)
            })
            .map_err(|e| self.endpoint.error(operation, e))
    }

    /// With [`RedisOptions::replica_acks`], waits for the replicas of the masters of
    /// `partitions`; an acknowledgement missing or a failure is logged, not returned:
    /// the write stands on the master, and what a failover undoes (acks, dead-letter
    /// moves) only makes events be handled again.
    fn wait_for_replicas(&self, operation: &'static str, service: &str, partitions: &[u32]) {
        let options = self.endpoint.options();
        if options.replica_acks == 0 || partitions.is_empty() {
            return;
        }
        let keys: Vec<String> = partitions
            .iter()
            .map(|&p| keys::partition(service, p))
            .collect();
        let acked = self.work_connection.run(&self.endpoint, |connection| {
            wait_for_replicas(
                connection,
                &keys,
                options.replica_acks,
                millis(options.replica_ack_timeout),
            )
        });
        match acked {
            Ok(acked) if acked >= options.replica_acks => {}
            Ok(acked) => tracing::warn!(
                operation,
                acked,
                wanted = options.replica_acks,
                "Redis replicas did not acknowledge in time; a failover now could undo it (the events would be handled again)"
            ),
            Err(error) => tracing::warn!(
                operation,
                error = %hivent_core::ErrorChain(&error),
                "could not wait for Redis replicas; a failover now could undo it (the events would be handled again)"
            ),
        }
    }

    fn work(&self, operation: &'static str, calls: &[redis::Cmd]) -> Result<Vec<Value>, Error> {
        self.run(&self.work_connection, operation, calls, Repeat::Safe)
    }

    /// One reply of a one-call pipeline.
    fn one(&self, operation: &'static str, call: redis::Cmd) -> Result<Value, Error> {
        self.work(operation, &[call])?
            .pop()
            .ok_or_else(|| self.unexpected(operation, "no reply".into()))
    }

    fn unexpected(&self, operation: &'static str, detail: String) -> Error {
        self.endpoint
            .error(operation, redis::ParsingError::from(detail).into())
    }

    fn parse<T>(
        &self,
        operation: &'static str,
        parsed: Result<T, redis::ParsingError>,
    ) -> Result<T, Error> {
        parsed.map_err(|e| self.endpoint.error(operation, e.into()))
    }
}

fn claim_of<'a>(claim: &Claim<'a>) -> ClusterClaim<'a> {
    ClusterClaim {
        service: claim.service,
        member: claim.member,
        partition: claim.partition,
        token: claim.token,
    }
}

impl GroupStore for ClusterGroup {
    fn options(&self) -> &RedisOptions {
        self.endpoint.options()
    }

    fn members(&self, service: &str) -> Result<Vec<String>, Error> {
        let mut call = redis::cmd("ZRANGE");
        call.arg(keys::members(service)).arg(0).arg(-1);
        let reply = self.one("read the group's members", call)?;
        self.parse(
            "read the group's members",
            Vec::<String>::from_redis_value(reply),
        )
    }

    fn heartbeat(
        &self,
        service: &str,
        member: &str,
        working: &BTreeSet<u32>,
        owned: &[u32],
    ) -> Result<HeartbeatReply, Error> {
        let options = self.endpoint.options();
        let operation = "heartbeat";
        let mut count = redis::cmd("GET");
        count.arg(keys::partition_count(service));
        let replies = self.run(
            &self.heartbeat_connection,
            operation,
            &[
                script::membership(
                    service,
                    member,
                    Some(millis(options.member_ttl)),
                    millis(options.heartbeat_interval),
                ),
                count,
            ],
            Repeat::Safe,
        )?;
        let [membership, count]: [Value; 2] = replies
            .try_into()
            .map_err(|_| self.unexpected(operation, "two replies expected".into()))?;
        let (_, members) = self.parse(operation, script::parse_membership(membership))?;
        let found = self.parse(operation, Option::<String>::from_redis_value(count))?;
        let Some(count) = partition_count(found.as_deref()) else {
            return Ok(HeartbeatReply::Unregistered { found });
        };
        let desired: BTreeSet<u32> = hivent_core::desired_partitions(&members, member, count)
            .into_iter()
            .collect();
        let mut actions: Vec<(u32, ClaimAction)> = owned
            .iter()
            .map(|&p| {
                let action = if desired.contains(&p) {
                    ClaimAction::Claim
                } else if working.contains(&p) {
                    ClaimAction::Keep
                } else {
                    ClaimAction::Release
                };
                (p, action)
            })
            .collect();
        actions.extend(
            desired
                .iter()
                .filter(|p| !owned.contains(p))
                .map(|&p| (p, ClaimAction::Claim)),
        );
        let lease = millis(options.member_ttl);
        let calls: Vec<redis::Cmd> = actions
            .iter()
            .map(|&(p, action)| script::claim(service, member, p, lease, action))
            .collect();
        let replies = self.run(&self.heartbeat_connection, operation, &calls, Repeat::Safe)?;
        let mut now_owned = Vec::new();
        for (&(partition, _), reply) in actions.iter().zip(replies) {
            let token: i64 = self.parse(operation, number(&reply))?;
            if token > 0 {
                now_owned.push(Owned {
                    partition,
                    token: token.unsigned_abs(),
                    keep: desired.contains(&partition),
                });
            }
        }
        now_owned.sort_unstable_by_key(|o| o.partition);
        Ok(HeartbeatReply::Owned(now_owned))
    }

    fn fetch(
        &self,
        service: &str,
        member: &str,
        max: usize,
        max_bytes: usize,
        claims: &[(u32, u64)],
    ) -> Result<Vec<PartitionRead>, Error> {
        let operation = "fetch events";
        // Each partition is read by a call of its own: the budget is shared out.
        let share = (max_bytes / claims.len().max(1)).max(1);
        let calls: Vec<redis::Cmd> = claims
            .iter()
            .map(|&claim| script::fetch(service, member, claim, max, share))
            .collect();
        self.work(operation, &calls)?
            .into_iter()
            .map(|reply| {
                let Value::Array(mut one) = reply else {
                    return Err(self.unexpected(operation, "a fetch reply is an array".into()));
                };
                match one.pop() {
                    Some(Value::Int(1)) => Ok(PartitionRead::NotRead),
                    Some(Value::Int(_)) => Ok(PartitionRead::Lost),
                    Some(items) => Ok(PartitionRead::Items(
                        self.parse(operation, Vec::<Vec<u8>>::from_redis_value(items))?,
                    )),
                    None => Err(self.unexpected(operation, "an empty fetch reply".into())),
                }
            })
            .collect()
    }

    fn ack(&self, service: &str, member: &str, acks: &[AckOf]) -> Result<Vec<bool>, Error> {
        let operation = "acknowledge events";
        let before = |a: &AckOf| {
            self.acked
                .lock()
                .get(&a.partition)
                .filter(|(token, _)| *token == a.token)
                .map_or(0, |(_, n)| *n)
        };
        let calls: Vec<redis::Cmd> = acks
            .iter()
            .map(|a| script::ack(service, member, a.partition, a.token, a.count, before(a)))
            .collect();
        // An ack trims by count: this pipeline never sends one again itself, and one
        // the client sends again (after a dropped connection) takes nothing more.
        let replies = self.run(&self.work_connection, operation, &calls, Repeat::Never)?;
        let removed = replies
            .into_iter()
            .map(|reply| match reply {
                // It ran and its reply went with a redirect of another call: taken as
                // done. Were it fenced, the new owner has the partition, and this
                // member's next fetch finds the claim gone.
                Value::Nil => Ok(true),
                reply => {
                    let removed: Vec<i64> = self.parse(operation, Vec::from_redis_value(reply))?;
                    Ok(removed == [1])
                }
            })
            .collect::<Result<Vec<bool>, Error>>()?;
        let mut acked = self.acked.lock();
        for (a, &removed) in acks.iter().zip(&removed) {
            if removed {
                let entry = acked.entry(a.partition).or_insert((a.token, 0));
                if entry.0 != a.token {
                    *entry = (a.token, 0);
                }
                entry.1 += u64::try_from(a.count).unwrap_or(u64::MAX);
            }
        }
        drop(acked);
        let done: Vec<u32> = acks
            .iter()
            .zip(&removed)
            .filter(|(_, removed)| **removed)
            .map(|(a, _)| a.partition)
            .collect();
        self.wait_for_replicas(operation, service, &done);
        Ok(removed)
    }

    fn attempt(
        &self,
        claim: &Claim<'_>,
        raw: &[u8],
        failed_at_ms: i64,
    ) -> Result<Settled<(u32, i64)>, Error> {
        let operation = "count a failed attempt";
        let reply = self.one(
            operation,
            script::attempt(&claim_of(claim), raw, failed_at_ms),
        )?;
        self.parse(operation, script::parse_attempt(reply))
    }

    fn dead_letter(
        &self,
        claim: &Claim<'_>,
        raw: &[u8],
        record: &str,
    ) -> Result<Settled<()>, Error> {
        let operation = "dead-letter an event";
        let reply = self.one(
            operation,
            script::dead_letter(&claim_of(claim), raw, record),
        )?;
        let code: i64 = self.parse(operation, number(&reply))?;
        if code == 1 {
            self.wait_for_replicas(operation, claim.service, &[claim.partition]);
        }
        Ok(Settled::from_code(code, || ()))
    }

    fn release(&self, claim: &Claim<'_>) -> Result<bool, Error> {
        let operation = "release a partition";
        let reply = self.one(operation, script::release(&claim_of(claim)))?;
        Ok(self.parse(operation, number::<i64>(&reply))? == 1)
    }

    /// Leaves the group, then releases, in every partition's slot, whatever claim the
    /// member still holds there (the claim script releases only the caller's).
    fn leave(&self, service: &str, member: &str) -> Result<u64, Error> {
        let operation = "leave the consumer group";
        let options = self.endpoint.options();
        let mut count = redis::cmd("GET");
        count.arg(keys::partition_count(service));
        let replies = self.work(
            operation,
            &[
                script::membership(service, member, None, millis(options.heartbeat_interval)),
                count,
            ],
        )?;
        let stored = replies
            .get(1)
            .and_then(|v| Option::<String>::from_redis_value(v.clone()).ok().flatten());
        let count = partition_count(stored.as_deref()).unwrap_or(0);
        let calls: Vec<redis::Cmd> = (0..count)
            .map(|p| script::claim(service, member, p, 1, ClaimAction::Release))
            .collect();
        let released = self
            .work(operation, &calls)?
            .iter()
            .filter(|reply| number::<i64>(reply).ok() == Some(-1))
            .count();
        Ok(u64::try_from(released).unwrap_or(u64::MAX))
    }
}
