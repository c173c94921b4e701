//! The shared state of the memory backend: registry, partitions, dead letters and group membership.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use hivent_core::{
    desired_partitions, partition_for, Attempts, DeadLetter, Envelope, Error, Result, WILDCARD,
};

/// Everything the backend stores, guarded by one lock.
#[derive(Default)]
pub(crate) struct State {
    /// Event name (or `*`) → services that receive it.
    pub(crate) receivers: HashMap<String, BTreeSet<String>>,
    pub(crate) services: HashMap<String, Service>,
    /// Grows on every claim, so a token is never reused.
    pub(crate) next_token: u64,
    pub(crate) next_member: u64,
    /// Bumped on every emit so idle consumers know to look again.
    pub(crate) generation: u64,
}

/// One service's copy of its event streams and its consumer group.
#[derive(Default)]
pub(crate) struct Service {
    pub(crate) events: BTreeSet<String>,
    /// Oldest at the front.
    pub(crate) partitions: Vec<VecDeque<String>>,
    /// Oldest at the front, each with its failure record.
    pub(crate) dead_letters: Vec<VecDeque<DeadLetter>>,
    /// Partition → the failed attempts at its oldest item, and that item.
    pub(crate) attempts: HashMap<u32, (String, Attempts)>,
    /// Member → expiry.
    pub(crate) members: BTreeMap<String, Instant>,
    /// Partition → (owner, token).
    pub(crate) owners: BTreeMap<u32, (String, u64)>,
    /// Member → its last heartbeat and its interval, for `status`.
    pub(crate) beats: BTreeMap<String, (Instant, std::time::Duration)>,
    /// Partition → its processing rate (events/s) and when it was last bumped.
    pub(crate) rates: HashMap<u32, (f64, Instant)>,
}

impl Service {
    pub(crate) fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// Drops expired members; returns the live ones, sorted, and whether any expired.
    pub(crate) fn live_members(&mut self, now: Instant) -> (Vec<String>, bool) {
        let before = self.members.len();
        self.members.retain(|_, expiry| *expiry > now);
        let members = &self.members;
        self.beats.retain(|member, _| members.contains_key(member));
        let expired = self.members.len() < before;
        (self.members.keys().cloned().collect(), expired)
    }

    /// Whether `member` holds `partition` with `token`.
    pub(crate) fn holds(&self, member: &str, partition: u32, token: u64) -> bool {
        self.owners
            .get(&partition)
            .is_some_and(|(owner, t)| owner == member && *t == token)
    }
}

impl State {
    /// Appends `json` to the partition of every service that receives the envelope's
    /// event or `*`, once per service; the last copy takes `json` itself. Returns how
    /// many services stored it.
    pub(crate) fn store(&mut self, envelope: &Envelope, json: String) -> usize {
        let named = self.receivers.get(&envelope.name);
        let star = self
            .receivers
            .get(WILDCARD)
            .filter(|_| envelope.name != WILDCARD);
        let only_star = |service: &&String| named.is_none_or(|n| !n.contains(*service));
        let last =
            named.map_or(0, BTreeSet::len) + star.map_or(0, |s| s.iter().filter(only_star).count());
        let targets = named
            .into_iter()
            .flatten()
            .chain(star.into_iter().flatten().filter(only_star));
        let mut json = Some(json);
        let mut stored = 0;
        for (i, service) in targets.enumerate() {
            // Registered services always have partitions; a missing one is skipped like
            // an unregistered service rather than failing the other copies.
            let Some(svc) = self.services.get_mut(service) else {
                continue;
            };
            let p = partition_for(envelope.partition_hash, svc.partition_count());
            if let Some(queue) = svc.partitions.get_mut(p as usize) {
                let copy = if i + 1 == last {
                    json.take().unwrap_or_default()
                } else {
                    json.clone().unwrap_or_default()
                };
                queue.push_back(copy);
                stored += 1;
            }
        }
        stored
    }

    pub(crate) fn service(&mut self, name: &str) -> Result<&mut Service> {
        self.services
            .get_mut(name)
            .ok_or_else(|| Error::NotRegistered {
                service: name.to_owned(),
                found: None,
            })
    }

    /// The cooperative rebalance step of one member: renew, release what it should not
    /// own (except those in `working`, whose batches it is working on), claim what it
    /// should own and nobody live holds.
    pub(crate) fn heartbeat(
        &mut self,
        service: &str,
        member: &str,
        expiry: Instant,
        now: Instant,
        interval: std::time::Duration,
        working: &BTreeSet<u32>,
    ) -> Result<Heartbeat> {
        let mut next_token = self.next_token;
        let svc = self.service(service)?;
        svc.beats.insert(member.to_owned(), (now, interval));
        let joined = svc
            .members
            .insert(member.to_owned(), expiry)
            .is_none_or(|old| old <= now);
        let (live, expired) = svc.live_members(now);
        let desired = desired_partitions(&live, member, svc.partition_count());
        let before = svc.owners.len();
        svc.owners
            .retain(|p, (owner, _)| owner != member || desired.contains(p) || working.contains(p));
        let released = svc.owners.len() < before;
        for &p in &desired {
            let free = match svc.owners.get(&p) {
                None => true,
                Some((owner, _)) => !live.contains(owner),
            };
            if free {
                next_token += 1;
                svc.owners.insert(p, (member.to_owned(), next_token));
            }
        }
        let owned = svc
            .owners
            .iter()
            .filter(|(_, (owner, _))| owner == member)
            .map(|(p, (_, token))| (*p, *token, desired.contains(p)))
            .collect();
        self.next_token = next_token;
        Ok(Heartbeat {
            owned,
            changed: joined || expired || released,
        })
    }
}

/// What one member's heartbeat found.
pub(crate) struct Heartbeat {
    /// Partition, token, and whether the member should keep it (false: hand it over).
    pub(crate) owned: Vec<(u32, u64, bool)>,
    /// Whether the group changed: the member joined or rejoined, another expired, or it
    /// released a partition. Others are then told to heartbeat at once.
    pub(crate) changed: bool,
}
