//! `MemorySession`: one member of a service's consumer group in the memory backend.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hivent_core::{Batch, ConsumerSession, Error, Result};
use parking_lot::Mutex;

use crate::backend::Shared;

pub(crate) struct MemorySession {
    shared: Arc<Shared>,
    service: String,
    member: String,
    /// Partition → fencing token, as of the last heartbeat.
    owned: Mutex<BTreeMap<u32, u64>>,
    /// Partition → (items fetched and not yet acked or dead-lettered, the token they
    /// were read under). Writes use the read token, so a re-claim in between (after a
    /// replay) cannot let a stale batch's ack remove items it never saw.
    in_hand: Mutex<BTreeMap<u32, (usize, u64)>>,
}

impl MemorySession {
    pub(crate) fn new(shared: Arc<Shared>, service: &str, member: String) -> MemorySession {
        MemorySession {
            shared,
            service: service.to_owned(),
            member,
            owned: Mutex::new(BTreeMap::new()),
            in_hand: Mutex::new(BTreeMap::new()),
        }
    }

    /// The token the batch in hand of `partition` was read under.
    fn token(&self, partition: u32) -> Result<u64> {
        self.in_hand
            .lock()
            .get(&partition)
            .map(|(_, token)| *token)
            .ok_or_else(|| self.fenced(partition))
    }

    fn fenced(&self, partition: u32) -> Error {
        Error::Fenced {
            service: self.service.clone(),
            partition,
        }
    }

    fn settle(&self, partition: u32, count: usize) {
        let mut in_hand = self.in_hand.lock();
        if let Some((n, _)) = in_hand.get_mut(&partition) {
            *n = n.saturating_sub(count);
            if *n == 0 {
                in_hand.remove(&partition);
            }
        }
    }

    fn read_owned(&self, max: usize) -> Result<Vec<(Batch, u64)>> {
        let owned = self.owned.lock().clone();
        let mut state = self.shared.state.lock();
        let svc = state.service(&self.service)?;
        let mut batches = Vec::new();
        for (p, token) in owned {
            if !svc.holds(&self.member, p, token) {
                continue;
            }
            if let Some(queue) = svc.partitions.get(p as usize) {
                if !queue.is_empty() {
                    let items = queue.iter().take(max).cloned().collect();
                    batches.push((
                        Batch {
                            partition: p,
                            items,
                        },
                        token,
                    ));
                }
            }
        }
        Ok(batches)
    }
}

impl ConsumerSession for MemorySession {
    fn member_id(&self) -> &str {
        &self.member
    }

    fn heartbeat_interval(&self) -> Duration {
        self.shared.options.heartbeat_interval
    }

    fn heartbeat(&self) -> Result<Vec<u32>> {
        let in_hand: Vec<u32> = self.in_hand.lock().keys().copied().collect();
        let now = Instant::now();
        let owned = self.shared.state.lock().heartbeat(
            &self.service,
            &self.member,
            now + self.shared.options.member_ttl,
            now,
            &in_hand,
        )?;
        let partitions = owned.iter().map(|(p, _)| *p).collect();
        *self.owned.lock() = owned.into_iter().collect();
        Ok(partitions)
    }

    fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Batch>> {
        let generation = self.shared.state.lock().generation;
        let mut batches = self.read_owned(max)?;
        if batches.is_empty() && !wait.is_zero() {
            let deadline = Instant::now() + wait;
            let mut state = self.shared.state.lock();
            while state.generation == generation {
                if self
                    .shared
                    .emitted
                    .wait_until(&mut state, deadline)
                    .timed_out()
                {
                    break;
                }
            }
            drop(state);
            batches = self.read_owned(max)?;
        }
        *self.in_hand.lock() = batches
            .iter()
            .map(|(b, token)| (b.partition, (b.items.len(), *token)))
            .collect();
        Ok(batches.into_iter().map(|(b, _)| b).collect())
    }

    fn ack(&self, partition: u32, count: usize) -> Result<()> {
        let token = self.token(partition)?;
        let mut state = self.shared.state.lock();
        let svc = state.service(&self.service)?;
        if !svc.holds(&self.member, partition, token) {
            return Err(self.fenced(partition));
        }
        // The items are freed after the lock is released: emits wait for it meanwhile.
        let removed: Vec<String> = match svc.partitions.get_mut(partition as usize) {
            Some(queue) => {
                let n = count.min(queue.len());
                queue.drain(..n).collect()
            }
            None => Vec::new(),
        };
        drop(state);
        drop(removed);
        self.settle(partition, count);
        Ok(())
    }

    fn dead_letter(&self, partition: u32, raw: &str) -> Result<()> {
        let token = self.token(partition)?;
        let mut state = self.shared.state.lock();
        let svc = state.service(&self.service)?;
        if !svc.holds(&self.member, partition, token) {
            return Err(self.fenced(partition));
        }
        let index = partition as usize;
        let oldest_matches = svc
            .partitions
            .get(index)
            .and_then(|q| q.front())
            .is_some_and(|oldest| oldest == raw);
        if !oldest_matches {
            return Err(Error::Backend {
                backend: "memory",
                transient: false,
                source: format!(
                    "the oldest item of partition {partition} of {:?} is not the one being dead-lettered",
                    self.service
                )
                .into(),
            });
        }
        if let (Some(queue), Some(dead)) = (
            svc.partitions.get_mut(index),
            svc.dead_letters.get_mut(index),
        ) {
            if let Some(item) = queue.pop_front() {
                dead.push_back(item);
            }
        }
        drop(state);
        self.settle(partition, 1);
        Ok(())
    }

    fn leave(&self) -> Result<()> {
        let mut state = self.shared.state.lock();
        if let Some(svc) = state.services.get_mut(&self.service) {
            svc.members.remove(&self.member);
            svc.owners.retain(|_, (owner, _)| *owner != self.member);
        }
        drop(state);
        self.owned.lock().clear();
        self.in_hand.lock().clear();
        self.shared.emitted.notify_all();
        Ok(())
    }
}
