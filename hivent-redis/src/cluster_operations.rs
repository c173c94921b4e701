//! [`Operations`] on a Redis Cluster: services, status, dead letter queues, each
//! partition read in its own slot, every node's part of a step at once.

use std::collections::HashMap;

use hivent_core::{
    DeadLetter, DeadLetterPick, MemberStatus, Operations, PartitionStatus, ServiceStatus,
};
use redis::{FromRedisValue, Value};

use crate::cluster_keys as keys;
use crate::cluster_script as script;
use crate::operations::{
    dead_letters_of, live_members, member_status, oldest_created_at, stored_rate,
};
use crate::script::{dead_letter_pairs, number, partition_count};
use crate::{Error, RedisClusterBackend};

fn cmd(name: &str, key: String) -> redis::Cmd {
    let mut cmd = redis::cmd(name);
    cmd.arg(key);
    cmd
}

impl RedisClusterBackend {
    fn one<T: FromRedisValue>(
        &self,
        operation: &'static str,
        call: redis::Cmd,
    ) -> Result<T, Error> {
        let reply = self.pipeline(operation, &[call])?;
        T::from_redis_value(reply.into_iter().next().unwrap_or(Value::Nil))
            .map_err(|e| self.endpoint.error(operation, e.into()))
    }

    /// What the registry holds as `service`'s partition count, if anything.
    pub(crate) fn stored_count_text(&self, service: &str) -> Result<Option<String>, Error> {
        self.one(
            "read a partition count",
            cmd("GET", keys::partition_count(service)),
        )
    }

    fn stored_count(&self, service: &str) -> Result<u32, Error> {
        let found = self.stored_count_text(service)?;
        partition_count(found.as_deref()).ok_or_else(|| Error::NotRegistered {
            service: service.to_owned(),
            found,
        })
    }

    fn check_partition(&self, service: &str, partition: u32) -> Result<(), Error> {
        let partition_count = self.stored_count(service)?;
        if partition < partition_count {
            Ok(())
        } else {
            Err(Error::NoSuchPartition {
                service: service.to_owned(),
                partition,
                partition_count,
            })
        }
    }

    fn status_inner(&self, service: &str) -> Result<ServiceStatus, Error> {
        let operation = "read a service's status";
        let partition_count = self.stored_count(service)?;
        // The time of the node holding the group, which wrote its expiries.
        let mut members = cmd("ZRANGE", keys::members(service));
        members.arg(0).arg(-1).arg("WITHSCORES");
        let now_script = redis::cmd("EVAL")
            .arg("local t = redis.call('TIME') return t[1] * 1000 + math.floor(t[2] / 1000)")
            .arg(1)
            .arg(keys::members(service))
            .clone();
        let group = self.pipeline(
            operation,
            &[
                now_script,
                cmd("SMEMBERS", keys::registered_events(service)),
                members,
                cmd("HGETALL", keys::heartbeats(service)),
            ],
        )?;
        let parse = |e: redis::ParsingError| self.endpoint.error(operation, e.into());
        let [now, events, members, beats]: [Value; 4] = group
            .try_into()
            .map_err(|_| parse("four replies expected".into()))?;
        let now: i64 = number(&now).map_err(parse)?;
        let mut events = Vec::<String>::from_redis_value(events).map_err(parse)?;
        let all_members = Vec::<(String, i64)>::from_redis_value(members).map_err(parse)?;
        let beats = HashMap::<String, String>::from_redis_value(beats).map_err(parse)?;
        let mut per_partition = Vec::new();
        for p in 0..partition_count {
            per_partition.push(cmd("LLEN", keys::partition(service, p)));
            let mut oldest = cmd("LINDEX", keys::partition(service, p));
            oldest.arg(-1);
            per_partition.push(oldest);
            per_partition.push(cmd("LLEN", keys::dead_letter(service, p)));
            let mut owner = cmd("HGET", keys::owner(service, p));
            owner.arg(p);
            per_partition.push(owner);
            let mut rate = cmd("HGET", keys::rate(service, p));
            rate.arg(p);
            per_partition.push(rate);
            per_partition.push(cmd("EXISTS", keys::lease(service, p)));
        }
        let replies = self.pipeline(operation, &per_partition)?;
        let consumers = live_members(&all_members, now);
        let mut partitions = Vec::new();
        let mut owned_by: HashMap<String, Vec<u32>> = HashMap::new();
        for (p, six) in (0..partition_count).zip(replies.chunks_exact(6)) {
            let waiting: u64 = number(&six[0]).map_err(parse)?;
            let oldest = Option::<String>::from_redis_value(six[1].clone()).map_err(parse)?;
            let dead_letters: u64 = number(&six[2]).map_err(parse)?;
            let owner = Option::<String>::from_redis_value(six[3].clone()).map_err(parse)?;
            let rate = Option::<String>::from_redis_value(six[4].clone()).map_err(parse)?;
            let leased = number::<u8>(&six[5]).map_err(parse)? == 1;
            if let Some(owner) = &owner {
                owned_by.entry(owner.clone()).or_default().push(p);
            }
            partitions.push(PartitionStatus {
                partition: p,
                owner: owner.filter(|o| leased && consumers.binary_search(o).is_ok()),
                waiting,
                oldest_created_at: oldest_created_at(oldest),
                dead_letters,
                rate: stored_rate(rate.as_ref(), now),
            });
        }
        let mut members: Vec<MemberStatus> = all_members
            .iter()
            .map(|(member, expiry)| {
                let owned = owned_by.get(member).cloned().unwrap_or_default();
                member_status(member, *expiry, beats.get(member), owned, now)
            })
            .collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        events.sort();
        events.dedup();
        Ok(ServiceStatus {
            service: service.to_owned(),
            partition_count,
            events,
            consumers,
            members,
            partitions,
            gem_consumers: Vec::new(),
        })
    }

    fn dead_letters_inner(
        &self,
        service: &str,
        partition: u32,
        start: usize,
        count: usize,
    ) -> Result<Vec<DeadLetter>, Error> {
        self.check_partition(service, partition)?;
        if count == 0 {
            return Ok(Vec::new());
        }
        let flat: Vec<Option<Vec<u8>>> = self.one(
            "read dead letters",
            script::dead_letter_page(service, partition, start, count),
        )?;
        Ok(dead_letters_of(
            service,
            partition,
            dead_letter_pairs(&flat),
        ))
    }
}

impl RedisClusterBackend {
    /// Replays or purges (`call`) the picked dead letters. The oldest `n` are named
    /// item by item, read first: the cluster client may send a call again after a
    /// dropped connection, and a call by count would then take `n` more, while one by
    /// items skips those already taken.
    fn take_dead_letters(
        &self,
        service: &str,
        partition: u32,
        pick: DeadLetterPick<'_>,
        operation: &'static str,
        call: fn(&str, u32, DeadLetterPick<'_>) -> redis::Cmd,
    ) -> Result<usize, Error> {
        self.check_partition(service, partition)?;
        let take = |items: &[String]| -> Result<usize, Error> {
            let taken: u64 = self.one(
                operation,
                call(service, partition, DeadLetterPick::Items(items)),
            )?;
            Ok(usize::try_from(taken).unwrap_or(usize::MAX))
        };
        let wanted = match pick {
            DeadLetterPick::Items(items) => return take(items),
            DeadLetterPick::Oldest(n) => n,
        };
        // One call for all of them: replayed in steps, a later step would go to the
        // oldest end after the first one's, out of order.
        // `Oldest(usize::MAX)` means all: as many as the queue holds.
        let stored: u64 = self.one(
            "count dead letters",
            cmd("LLEN", keys::dead_letter(service, partition)),
        )?;
        let wanted = wanted.min(usize::try_from(stored).unwrap_or(usize::MAX));
        let page: Vec<String> = self
            .dead_letters_inner(service, partition, 0, wanted)?
            .into_iter()
            .map(|letter| letter.raw)
            .collect();
        take(&page)
    }
}

impl Operations for RedisClusterBackend {
    fn services(&self) -> hivent_core::Result<Vec<String>> {
        let mut services: Vec<String> =
            self.one("list services", cmd("SMEMBERS", keys::SERVICES.to_owned()))?;
        services.sort();
        Ok(services)
    }

    fn service_status(&self, service: &str) -> hivent_core::Result<ServiceStatus> {
        Ok(self.status_inner(service)?)
    }

    fn dead_letters(
        &self,
        service: &str,
        partition: u32,
        start: usize,
        count: usize,
    ) -> hivent_core::Result<Vec<DeadLetter>> {
        Ok(self.dead_letters_inner(service, partition, start, count)?)
    }

    fn replay_dead_letters(
        &self,
        service: &str,
        partition: u32,
        pick: DeadLetterPick<'_>,
    ) -> hivent_core::Result<usize> {
        Ok(self.take_dead_letters(
            service,
            partition,
            pick,
            "replay dead letters",
            script::replay,
        )?)
    }

    fn purge_dead_letters(
        &self,
        service: &str,
        partition: u32,
        pick: DeadLetterPick<'_>,
    ) -> hivent_core::Result<usize> {
        Ok(self.take_dead_letters(
            service,
            partition,
            pick,
            "purge dead letters",
            script::purge,
        )?)
    }
}
