//! `Operations` for the memory backend: status, lag and dead letter queues.

use std::collections::{HashMap, VecDeque};

use hivent_core::{
    DeadLetter, DeadLetterPick, Error, Event, Operations, PartitionStatus, Result, ServiceStatus,
};

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
                }
            })
            .collect();
        Ok(ServiceStatus {
            service: service.to_owned(),
            partition_count: svc.partition_count(),
            events: svc.events.iter().cloned().collect(),
            consumers,
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
