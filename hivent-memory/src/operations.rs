//! `Operations` for the memory backend: status, lag and dead letter queues.

use std::collections::{HashMap, VecDeque};

use std::time::Instant;

use chrono::Utc;
use hivent_core::{
    DeadLetter, DeadLetterPick, Error, Event, MemberHealth, MemberStatus, Operations,
    PartitionStatus, Result, ServiceStatus,
};

/// Milliseconds from `at` to `now` on the store's clock, 0 when `at` is later.
fn millis_between(at: Instant, now: Instant) -> i64 {
    i64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(i64::MAX)
}

use crate::MemoryBackend;

impl Operations for MemoryBackend {
    fn services(&self) -> Result<Vec<String>> {
        let state = self.shared().state.lock();
        let mut names: Vec<String> = state.services.keys().cloned().collect();
        names.sort();
        Ok(names)
    }

    fn service_status(&self, service: &str) -> Result<ServiceStatus> {
        let now = self.shared().now();
        let mut state = self.shared().state.lock();
        let svc = state.service(service)?;
        // Read without pruning: dropping expired members is a heartbeat's job, which
        // tells the group about it.
        let consumers: Vec<String> = svc
            .members
            .iter()
            .filter(|(_, expiry)| **expiry > now)
            .map(|(member, _)| member.clone())
            .collect();
        let partitions = (0..svc.partition_count())
            .map(|p| {
                let queue = &svc.partitions[p as usize];
                PartitionStatus {
                    partition: p,
                    owner: svc
                        .owners
                        .get(&p)
                        .map(|(owner, _)| owner.clone())
                        .filter(|owner| consumers.contains(owner)),
                    waiting: queue.len() as u64,
                    oldest_created_at: queue
                        .front()
                        .and_then(|raw| Event::from_json(raw).ok())
                        .map(|e| e.meta.created_at),
                    dead_letters: svc
                        .dead_letters
                        .get(p as usize)
                        .map_or(0, |d| d.len() as u64),
                    rate: svc.rates.get(&p).map_or(0.0, |&(rate, at)| {
                        hivent_core::decayed_rate(rate, 0, millis_between(at, now))
                    }),
                }
            })
            .collect();
        // The store's clock as wall-clock time: now is now, and other instants are as
        // far from it as on the store's clock (which tests may have moved on).
        let wall_now = Utc::now();
        let wall = |at: Instant| match at.checked_duration_since(now) {
            Some(ahead) => wall_now + chrono::Duration::from_std(ahead).unwrap_or_default(),
            None => wall_now - chrono::Duration::from_std(now - at).unwrap_or_default(),
        };
        let members = svc
            .members
            .iter()
            .map(|(member, &expiry)| {
                let beat = svc.beats.get(member);
                let last = beat.map(|&(at, _)| wall(at));
                let interval = beat
                    .map(|&(_, interval)| u64::try_from(interval.as_millis()).unwrap_or(u64::MAX));
                let expires_at = wall(expiry);
                MemberStatus {
                    id: member.clone(),
                    // Every member of a memory store lives in this process.
                    host: None,
                    pid: Some(std::process::id()),
                    last_heartbeat_at: last,
                    heartbeat_interval_ms: interval,
                    expires_at,
                    partitions: svc
                        .owners
                        .iter()
                        .filter(|(_, (owner, _))| owner == member)
                        .map(|(&p, _)| p)
                        .collect(),
                    health: MemberHealth::judge(wall_now, last, interval, expires_at),
                }
            })
            .collect();
        Ok(ServiceStatus {
            service: service.to_owned(),
            partition_count: svc.partition_count(),
            events: svc.events.iter().cloned().collect(),
            consumers,
            members,
            partitions,
            // Only hivent-rs consumers live in memory.
            gem_consumers: Vec::new(),
        })
    }

    fn dead_letters(
        &self,
        service: &str,
        partition: u32,
        start: usize,
        count: usize,
    ) -> Result<Vec<DeadLetter>> {
        let mut state = self.shared().state.lock();
        let svc = state.service(service)?;
        let dead = svc
            .dead_letters
            .get(partition as usize)
            .ok_or_else(|| no_partition(service, partition, svc.partition_count()))?;
        Ok(dead.iter().skip(start).take(count).cloned().collect())
    }

    fn replay_dead_letters(
        &self,
        service: &str,
        partition: u32,
        pick: DeadLetterPick<'_>,
    ) -> Result<usize> {
        let mut state = self.shared().state.lock();
        let svc = state.service(service)?;
        let count = svc.partition_count();
        let index = partition as usize;
        let (Some(dead), Some(queue)) = (
            svc.dead_letters.get_mut(index),
            svc.partitions.get_mut(index),
        ) else {
            return Err(no_partition(service, partition, count));
        };
        let taken = take(dead, pick);
        let n = taken.len();
        // Oldest dead letter ends up first in line, the rest behind it in order.
        for item in taken.into_iter().rev() {
            queue.push_front(item.raw);
        }
        // Fence the owner off its batch in hand: its next fetch finds the claim gone,
        // it reclaims at once and reads the partition again, replayed events first.
        svc.owners.remove(&partition);
        state.generation += 1;
        drop(state);
        self.shared().emitted.notify_all();
        self.shared().group_changed(service);
        Ok(n)
    }

    fn purge_dead_letters(
        &self,
        service: &str,
        partition: u32,
        pick: DeadLetterPick<'_>,
    ) -> Result<usize> {
        let mut state = self.shared().state.lock();
        let svc = state.service(service)?;
        let count = svc.partition_count();
        let dead = svc
            .dead_letters
            .get_mut(partition as usize)
            .ok_or_else(|| no_partition(service, partition, count))?;
        Ok(take(dead, pick).len())
    }
}

/// Removes the picked dead letters from a queue; returns them oldest first.
fn take(dead: &mut VecDeque<DeadLetter>, pick: DeadLetterPick<'_>) -> Vec<DeadLetter> {
    match pick {
        DeadLetterPick::Oldest(n) => {
            let n = n.min(dead.len());
            dead.drain(..n).collect()
        }
        DeadLetterPick::Items(items) => {
            let mut wanted: HashMap<&str, usize> = HashMap::new();
            for item in items {
                *wanted.entry(item.as_str()).or_default() += 1;
            }
            let (taken, kept): (Vec<DeadLetter>, Vec<DeadLetter>) =
                dead.drain(..)
                    .partition(|d| match wanted.get_mut(d.raw.as_str()) {
                        Some(left) if *left > 0 => {
                            *left -= 1;
                            true
                        }
                        _ => false,
                    });
            dead.extend(kept);
            taken
        }
    }
}

fn no_partition(service: &str, partition: u32, partition_count: u32) -> Error {
    Error::NoSuchPartition {
        service: service.to_owned(),
        partition,
        partition_count,
    }
}
