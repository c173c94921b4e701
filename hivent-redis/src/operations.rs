//! [`Operations`] on Redis: services, status with lag and owners, dead letter queues.

use hivent_core::ErrorChain;
use hivent_core::{
    DeadLetter, DeadLetterPick, Event, FailureRecord, GemConsumer, MemberHealth, MemberStatus,
    Operations, PartitionStatus, ServiceStatus,
};
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use redis::Connection;

use crate::member::process_of;
use crate::script::{DeadLetterPageScript, PurgeScript, ReplayScript};
use crate::{keys, Error, RedisBackend};

/// How many keys one SCAN step asks for when listing services.
const SCAN_COUNT: usize = 1000;

impl RedisBackend {
    /// The service's stored partition count, or why there is none.
    fn stored_count(&self, service: &str) -> Result<u32, Error> {
        let found: Option<String> = self.run("read a partition count", |connection| {
            redis::cmd("GET")
                .arg(keys::partition_count(service))
                .query(connection)
        })?;
        match found.as_deref().map(str::parse::<u32>) {
            Some(Ok(count)) if count >= 1 => Ok(count),
            _ => Err(Error::NotRegistered {
                service: service.to_owned(),
                found,
            }),
        }
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

    fn services_inner(&self) -> Result<Vec<String>, Error> {
        let pattern = format!("*{}", keys::PARTITION_COUNT_SUFFIX);
        let found: Vec<String> = self.run("list services", |connection: &mut Connection| {
            let mut names = Vec::new();
            let mut cursor = 0u64;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query(connection)?;
                names.extend(batch);
                if next == 0 {
                    return Ok(names);
                }
                cursor = next;
            }
        })?;
        let mut services: Vec<String> = found
            .iter()
            .filter_map(|key| key.strip_suffix(keys::PARTITION_COUNT_SUFFIX))
            .map(str::to_owned)
            .collect();
        services.sort();
        services.dedup();
        Ok(services)
    }

    fn status_inner(&self, service: &str) -> Result<ServiceStatus, Error> {
        let partition_count = self.stored_count(service)?;
        type Group = (
            Vec<String>,
            Vec<(String, i64)>,
            Vec<String>,
            HashMap<String, String>,
            HashMap<String, String>,
        );
        let (now, (mut events, all_members, owners, beats, rates)): (i64, Group) =
            self.run("read a service's status", |connection| {
                let (seconds, micros): (i64, i64) = redis::cmd("TIME").query(connection)?;
                let group = redis::pipe()
                    .cmd("SMEMBERS")
                    .arg(keys::registered_events(service))
                    .cmd("ZRANGE")
                    .arg(keys::members(service))
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .cmd("HGETALL")
                    .arg(keys::owners(service))
                    .cmd("HGETALL")
                    .arg(keys::heartbeats(service))
                    .cmd("HGETALL")
                    .arg(keys::rates(service))
                    .query(connection)?;
                Ok((seconds * 1000 + micros / 1000, group))
            })?;
        events.sort();
        let consumers = live_members(&all_members, now);
        let owner_of = |partition: u32| {
            owners
                .chunks_exact(2)
                .find(|pair| pair[0] == partition.to_string())
                .map(|pair| pair[1].clone())
                .filter(|owner| consumers.binary_search(owner).is_ok())
        };
        type Lists = Vec<(u64, Option<String>, u64)>;
        let lists: Lists = self.run("read partition lengths", |connection| {
            let mut pipe = redis::pipe();
            for partition in 0..partition_count {
                pipe.cmd("LLEN")
                    .arg(keys::partition(service, partition))
                    .cmd("LINDEX")
                    .arg(keys::partition(service, partition))
                    .arg(-1)
                    .cmd("LLEN")
                    .arg(keys::dead_letter(service, partition));
            }
            let flat: Vec<redis::Value> = pipe.query(connection)?;
            flat.chunks_exact(3)
                .map(|c| {
                    Ok((
                        redis::from_redis_value_ref(&c[0])?,
                        redis::from_redis_value_ref(&c[1])?,
                        redis::from_redis_value_ref(&c[2])?,
                    ))
                })
                .collect()
        })?;
        let partitions: Vec<PartitionStatus> = (0..partition_count)
            .zip(lists)
            .map(
                |(partition, (waiting, oldest, dead_letters))| PartitionStatus {
                    partition,
                    owner: owner_of(partition),
                    waiting,
                    oldest_created_at: oldest_created_at(oldest),
                    dead_letters,
                    rate: stored_rate(rates.get(&partition.to_string()), now),
                },
            )
            .collect();
        let mut members: Vec<MemberStatus> = all_members
            .iter()
            .map(|(member, expiry)| {
                // As the owners hash has them: an expired member still holds its
                // claims until another member's heartbeat takes them.
                let mut owned: Vec<u32> = owners
                    .chunks_exact(2)
                    .filter(|pair| pair[1] == *member)
                    .filter_map(|pair| pair[0].parse().ok())
                    .collect();
                owned.sort_unstable();
                member_status(member, *expiry, beats.get(member), owned, now)
            })
            .collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        events.dedup();
        Ok(ServiceStatus {
            service: service.to_owned(),
            partition_count,
            events,
            consumers,
            members,
            partitions,
            gem_consumers: self.gem_consumers(service)?,
        })
    }

    /// The live consumers the Ruby gem keeps for `service`, with their assignments.
    fn gem_consumers(&self, service: &str) -> Result<Vec<GemConsumer>, Error> {
        let names: Vec<String> = self.run("read the gem's consumers", |connection| {
            redis::cmd("SMEMBERS")
                .arg(keys::gem_consumers(service))
                .query(connection)
        })?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        type Entry = (bool, Vec<String>);
        let entries: Vec<Entry> = self.run("read the gem's assignments", |connection| {
            let mut pipe = redis::pipe();
            for name in &names {
                pipe.cmd("EXISTS")
                    .arg(keys::gem_alive(service, name))
                    .cmd("LRANGE")
                    .arg(keys::gem_assigned(service, name))
                    .arg(0)
                    .arg(-1);
            }
            let flat: Vec<redis::Value> = pipe.query(connection)?;
            flat.chunks_exact(2)
                .map(|c| {
                    Ok((
                        redis::from_redis_value_ref(&c[0])?,
                        redis::from_redis_value_ref(&c[1])?,
                    ))
                })
                .collect()
        })?;
        let prefix = keys::partition_prefix(service);
        let mut consumers: Vec<GemConsumer> = names
            .into_iter()
            .zip(entries)
            .filter(|(_, (alive, _))| *alive)
            .map(|(name, (_, assigned))| {
                let mut partitions: Vec<u32> = assigned
                    .iter()
                    .filter_map(|p| p.strip_prefix(&prefix)?.parse().ok())
                    .collect();
                partitions.sort_unstable();
                GemConsumer { name, partitions }
            })
            .collect();
        consumers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(consumers)
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
        let page = self.run("read dead letters", |connection| {
            DeadLetterPageScript::invoke(connection, service, partition, start, count)
        })?;
        Ok(dead_letters_of(service, partition, page))
    }

    fn replay_inner(
        &self,
        service: &str,
        partition: u32,
        pick: DeadLetterPick<'_>,
    ) -> Result<usize, Error> {
        self.check_partition(service, partition)?;
        let moved = self.run("replay dead letters", |connection| {
            ReplayScript::invoke(connection, service, partition, pick)
        })?;
        Ok(usize::try_from(moved).unwrap_or(usize::MAX))
    }

    fn purge_inner(
        &self,
        service: &str,
        partition: u32,
        pick: DeadLetterPick<'_>,
    ) -> Result<usize, Error> {
        self.check_partition(service, partition)?;
        let purged = self.run("purge dead letters", |connection| {
            PurgeScript::invoke(connection, service, partition, pick)
        })?;
        Ok(usize::try_from(purged).unwrap_or(usize::MAX))
    }
}

/// The members whose membership has not expired at `now` (ms), sorted, each once.
pub(crate) fn live_members(members: &[(String, i64)], now: i64) -> Vec<String> {
    let mut live: Vec<String> = members
        .iter()
        .filter(|(_, expiry)| *expiry > now)
        .map(|(member, _)| member.clone())
        .collect();
    live.sort();
    live.dedup();
    live
}

/// A partition's processing rate at `now` (ms) from its stored `<rate> <ms>`; 0 when
/// none is stored or it cannot be read.
pub(crate) fn stored_rate(stored: Option<&String>, now: i64) -> f64 {
    stored
        .and_then(|text| text.split_once(' '))
        .and_then(|(rate, at)| {
            Some(hivent_core::decayed_rate(
                rate.parse().ok()?,
                at.parse().ok()?,
                now,
            ))
        })
        .unwrap_or(0.0)
}

/// When the oldest item of a partition was created, if it is an event.
pub(crate) fn oldest_created_at(oldest: Option<String>) -> Option<DateTime<Utc>> {
    oldest
        .and_then(|raw| Event::from_json(&raw).ok())
        .map(|event| event.meta.created_at)
}

/// A member as `status` shows it: its process, its last heartbeat (`<ms> <interval
/// ms>` as stored) and health at `now` (ms), and the partitions it holds.
pub(crate) fn member_status(
    member: &str,
    expiry: i64,
    beat: Option<&String>,
    partitions: Vec<u32>,
    now: i64,
) -> MemberStatus {
    let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let (last, interval) = beat
        .and_then(|beat| beat.split_once(' '))
        .map_or((None, None), |(last, interval)| {
            (last.parse::<i64>().ok().map(at), interval.parse().ok())
        });
    let process = process_of(member);
    let expires_at = at(expiry);
    MemberStatus {
        id: member.to_owned(),
        host: process.as_ref().map(|(host, _)| host.clone()),
        pid: process.map(|(_, pid)| pid),
        last_heartbeat_at: last,
        heartbeat_interval_ms: interval,
        expires_at,
        partitions,
        health: MemberHealth::judge(at(now), last, interval, expires_at),
    }
}

/// A page of `(item, record JSON)` pairs as dead letters; a record that cannot be read
/// is logged and left out, the dead letter shown without it.
pub(crate) fn dead_letters_of(
    service: &str,
    partition: u32,
    page: Vec<(String, Option<String>)>,
) -> Vec<DeadLetter> {
    page.into_iter()
        .map(|(raw, record)| {
            let record = record.and_then(|json| match FailureRecord::from_json(&json) {
                Ok(record) => Some(record),
                Err(error) => {
                    tracing::warn!(service, partition, error = %ErrorChain(&error), "a failure record is not readable; the dead letter is shown without it");
                    None
                }
            });
            DeadLetter::new(raw, record)
        })
        .collect()
}

impl Operations for RedisBackend {
    fn services(&self) -> hivent_core::Result<Vec<String>> {
        Ok(self.services_inner()?)
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
        Ok(self.replay_inner(service, partition, pick)?)
    }

    fn purge_dead_letters(
        &self,
        service: &str,
        partition: u32,
        pick: DeadLetterPick<'_>,
    ) -> hivent_core::Result<usize> {
        Ok(self.purge_inner(service, partition, pick)?)
    }
}
