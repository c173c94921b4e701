//! `MemorySession`: one member of a service's consumer group in the memory backend.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crossbeam_channel::Receiver;
use hivent_core::{
    Attempts, Batch, ConsumerSession, DeadLetter, Error, FailureRecord, Fetched, Result, Standing,
};
use parking_lot::Mutex;

use crate::backend::Shared;

pub(crate) struct MemorySession {
    shared: Arc<Shared>,
    service: String,
    member: String,
    group_changes: Receiver<()>,
    /// Held across a heartbeat, so that [`ConsumerSession::standing`] and the heartbeat
    /// agree on which partition is being worked on.
    local: Mutex<Local>,
}

#[derive(Default)]
struct Local {
    /// Partition → (fencing token, whether to keep it), as of the last heartbeat.
    owned: BTreeMap<u32, (u64, bool)>,
    /// Partition → (items fetched and not yet acked or dead-lettered, the token they
    /// were read under). Writes use the read token, so a re-claim in between (after a
    /// replay) cannot let a stale batch's ack remove items it never saw.
    in_hand: BTreeMap<u32, (usize, u64)>,
    /// The partitions whose batches were started and are not settled yet (their handled
    /// events may wait for the acknowledgement of the whole fetch): heartbeats do not
    /// release them.
    working: BTreeSet<u32>,
    /// Until when the last successful heartbeat lets this member handle events.
    lease_until: Option<Instant>,
    /// Which owned partition comes first at the next fetch.
    turn: usize,
}

impl Local {
    fn settle(&mut self, partition: u32, count: usize) {
        if let Some((n, _)) = self.in_hand.get_mut(&partition) {
            *n = n.saturating_sub(count);
            if *n == 0 {
                self.in_hand.remove(&partition);
                self.working.remove(&partition);
            }
        }
    }

    fn forget(&mut self, partition: u32) {
        self.owned.remove(&partition);
        self.in_hand.remove(&partition);
        self.working.remove(&partition);
    }
}

/// A batch and the token its partition was read under.
type ReadBatch = (Batch, u64);

impl MemorySession {
    pub(crate) fn new(shared: Arc<Shared>, service: &str, member: String) -> MemorySession {
        let group_changes = shared.listen_to_group(service);
        MemorySession {
            shared,
            service: service.to_owned(),
            member,
            group_changes,
            local: Mutex::new(Local::default()),
        }
    }

    /// The token the batch in hand of `partition` was read under.
    fn token(&self, partition: u32) -> Result<u64> {
        self.local
            .lock()
            .in_hand
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

    /// Runs `write` on the service, under the store's lock, if this member still holds
    /// `partition` under the claim its batch in hand was read with and, when `oldest`
    /// is given, that item is the partition's oldest; fenced (and the partition
    /// forgotten) otherwise.
    fn under_claim<T>(
        &self,
        partition: u32,
        oldest: Option<&str>,
        write: impl FnOnce(&mut crate::state::Service) -> T,
    ) -> Result<T> {
        let token = self.token(partition)?;
        let mut state = self.shared.state.lock();
        let svc = state.service(&self.service)?;
        if !svc.holds(&self.member, partition, token) {
            drop(state);
            self.local.lock().forget(partition);
            return Err(self.fenced(partition));
        }
        if oldest.is_some_and(|raw| !oldest_is(svc, partition, raw)) {
            return Err(self.not_oldest(partition));
        }
        Ok(write(svc))
    }

    fn not_oldest(&self, partition: u32) -> Error {
        Error::Backend {
            backend: "memory",
            transient: false,
            source: format!(
                "the oldest item of partition {partition} of {:?} is not the one being settled",
                self.service
            )
            .into(),
        }
    }

    /// Reads the owned partitions whose claim still holds; the others are lost.
    fn read_owned(&self, max: usize, max_bytes: usize) -> Result<(Vec<ReadBatch>, Vec<u32>)> {
        let owned: Vec<(u32, u64)> = {
            let mut local = self.local.lock();
            local.turn = local.turn.wrapping_add(1);
            let fresh = local
                .lease_until
                .is_some_and(|until| self.shared.now() < until);
            if !fresh {
                return Ok((Vec::new(), Vec::new()));
            }
            let mut owned: Vec<(u32, u64)> =
                local.owned.iter().map(|(&p, &(t, _))| (p, t)).collect();
            if !owned.is_empty() {
                let first = local.turn % owned.len();
                owned.rotate_left(first);
            }
            owned
        };
        let mut budget = max_bytes;
        let mut read_any = false;
        let mut state = self.shared.state.lock();
        let svc = state.service(&self.service)?;
        let mut batches = Vec::new();
        let mut lost = Vec::new();
        for (p, token) in owned {
            // An empty partition has nothing to read, so its claim is not checked here:
            // a replay that voids a claim also fills the partition, and any other loss
            // shows at the next heartbeat. An owner of many partitions then pays for
            // the ones with events, not for all of them, on every fetch.
            if svc
                .partitions
                .get(p as usize)
                .is_none_or(|queue| queue.is_empty())
            {
                continue;
            }
            if !svc.holds(&self.member, p, token) {
                lost.push(p);
                continue;
            }
            if let Some(queue) = svc.partitions.get(p as usize) {
                let mut items = Vec::new();
                for item in queue.iter().take(max) {
                    if read_any && item.len() > budget {
                        break;
                    }
                    budget = budget.saturating_sub(item.len());
                    read_any = true;
                    items.push(item.clone());
                }
                if !items.is_empty() {
                    batches.push((
                        Batch {
                            partition: p,
                            items,
                            // The store holds strings: everything is UTF-8.
                            not_utf8: Vec::new(),
                        },
                        token,
                    ));
                }
            }
        }
        Ok((batches, lost))
    }

    fn lease(&self) -> Duration {
        let ttl = self.shared.options.member_ttl;
        ttl - ttl / 5
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
        let mut local = self.local.lock();
        let now = self.shared.now();
        let beat = self.shared.state.lock().heartbeat(
            &self.service,
            &self.member,
            now + self.shared.options.member_ttl,
            now,
            self.shared.options.heartbeat_interval,
            &local.working,
        )?;
        if beat.changed {
            self.shared.group_changed(&self.service);
        }
        local.owned = beat
            .owned
            .iter()
            .map(|&(p, token, keep)| (p, (token, keep)))
            .collect();
        local.lease_until = Some(now + self.lease());
        Ok(local.owned.keys().copied().collect())
    }

    fn fetch(&self, max: usize, max_bytes: usize, wait: Duration) -> Result<Fetched> {
        let generation = self.shared.state.lock().generation;
        let (mut batches, mut lost) = self.read_owned(max, max_bytes)?;
        if batches.is_empty() && lost.is_empty() && !wait.is_zero() {
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
            (batches, lost) = self.read_owned(max, max_bytes)?;
        }
        let mut local = self.local.lock();
        for p in &lost {
            local.owned.remove(p);
        }
        local.working.clear();
        local.in_hand = batches
            .iter()
            .map(|(b, token)| (b.partition, (b.items.len(), *token)))
            .collect();
        Ok(Fetched {
            batches: batches.into_iter().map(|(b, _)| b).collect(),
            lost,
        })
    }

    fn standing(&self, partition: u32) -> Standing {
        let mut local = self.local.lock();
        let fresh = local
            .lease_until
            .is_some_and(|until| self.shared.now() < until);
        let read_under = local.in_hand.get(&partition).map(|(_, token)| *token);
        match (local.owned.get(&partition), read_under) {
            (Some(&(token, keep)), Some(read)) if token == read && fresh => {
                local.working.insert(partition);
                if keep {
                    Standing::Owned
                } else {
                    Standing::Handover
                }
            }
            _ => Standing::Lost,
        }
    }

    fn ack(&self, partition: u32, count: usize) -> Result<()> {
        let now = self.shared.now();
        let removed = self.under_claim(partition, None, |svc| {
            // The oldest item is settled: its failed attempts, if any, end with it.
            svc.attempts.remove(&partition);
            let (rate, at) = svc.rates.get(&partition).copied().unwrap_or((0.0, now));
            let since =
                i64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(i64::MAX);
            let rate = hivent_core::bumped_rate(rate, 0, since, count as u64);
            svc.rates.insert(partition, (rate, now));
            match svc.partitions.get_mut(partition as usize) {
                Some(queue) => {
                    let n = count.min(queue.len());
                    queue.drain(..n).collect::<Vec<String>>()
                }
                None => Vec::new(),
            }
        })?;
        // The items are freed after the lock is released: emits wait for it meanwhile.
        drop(removed);
        self.local.lock().settle(partition, count);
        Ok(())
    }

    fn record_attempt(
        &self,
        partition: u32,
        raw: &str,
        failed_at: DateTime<Utc>,
    ) -> Result<Attempts> {
        self.under_claim(partition, Some(raw), |svc| {
            let attempts = match svc.attempts.get(&partition) {
                Some((item, before)) if item == raw => Attempts {
                    count: before.count.saturating_add(1),
                    first_failed_at: before.first_failed_at,
                },
                _ => Attempts {
                    count: 1,
                    first_failed_at: failed_at,
                },
            };
            svc.attempts.insert(partition, (raw.to_owned(), attempts));
            attempts
        })
    }

    fn dead_letter(&self, partition: u32, raw: &str, record: &FailureRecord) -> Result<()> {
        self.under_claim(partition, Some(raw), |svc| {
            let index = partition as usize;
            if let (Some(queue), Some(dead)) = (
                svc.partitions.get_mut(index),
                svc.dead_letters.get_mut(index),
            ) {
                if let Some(item) = queue.pop_front() {
                    dead.push_back(DeadLetter::new(item, Some(record.clone())));
                }
            }
            svc.attempts.remove(&partition);
        })?;
        self.local.lock().settle(partition, 1);
        Ok(())
    }

    fn release(&self, partition: u32) -> Result<()> {
        let token = self.token(partition)?;
        let mut state = self.shared.state.lock();
        let svc = state.service(&self.service)?;
        let held = svc.holds(&self.member, partition, token);
        if held {
            svc.owners.remove(&partition);
        }
        drop(state);
        self.local.lock().forget(partition);
        if !held {
            return Err(self.fenced(partition));
        }
        self.shared.group_changed(&self.service);
        Ok(())
    }

    fn group_changes(&self) -> Option<Receiver<()>> {
        Some(self.group_changes.clone())
    }

    fn leave(&self) -> Result<()> {
        let mut state = self.shared.state.lock();
        if let Some(svc) = state.services.get_mut(&self.service) {
            svc.members.remove(&self.member);
            svc.beats.remove(&self.member);
            svc.owners.retain(|_, (owner, _)| *owner != self.member);
        }
        drop(state);
        *self.local.lock() = Local::default();
        self.shared.emitted.notify_all();
        self.shared.group_changed(&self.service);
        Ok(())
    }
}

/// Whether `raw` is the oldest item of the partition.
fn oldest_is(svc: &crate::state::Service, partition: u32, raw: &str) -> bool {
    svc.partitions
        .get(partition as usize)
        .and_then(|queue| queue.front())
        .is_some_and(|oldest| oldest == raw)
}
