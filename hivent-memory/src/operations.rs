//! `Operations` for the memory backend: status, lag and dead letter queues.

use hivent_core::{Error, Event, Operations, PartitionStatus, Result, ServiceStatus};

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

    fn dead_letters(&self, service: &str, partition: u32, limit: usize) -> Result<Vec<String>> {
        let mut dead = MemoryBackend::dead_letters(self, service, partition);
        dead.truncate(limit);
        Ok(dead)
    }

    fn replay_dead_letters(&self, service: &str, partition: u32, limit: usize) -> Result<usize> {
        let mut state = self.shared().state.lock();
        let svc = state.service(service)?;
        let index = partition as usize;
        let (Some(dead), Some(queue)) = (
            svc.dead_letters.get_mut(index),
            svc.partitions.get_mut(index),
        ) else {
            return Err(no_partition(service, partition));
        };
        let n = limit.min(dead.len());
        // Oldest dead letter ends up first in line, the rest behind it in order.
        for item in dead.drain(..n).rev() {
            queue.push_front(item);
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

    fn purge_dead_letters(&self, service: &str, partition: u32) -> Result<usize> {
        let mut state = self.shared().state.lock();
        let svc = state.service(service)?;
        let dead = svc
            .dead_letters
            .get_mut(partition as usize)
            .ok_or_else(|| no_partition(service, partition))?;
        let n = dead.len();
        dead.clear();
        Ok(n)
    }
}

fn no_partition(service: &str, partition: u32) -> Error {
    Error::Backend {
        backend: "memory",
        transient: false,
        source: format!("service {service:?} has no partition {partition}").into(),
    }
}
