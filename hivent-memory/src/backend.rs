//! `MemoryBackend`: the producer side, registration and inspection of the memory backend.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use hivent_core::{Backend, ConsumerSession, Envelope, Error, Registration, Result};
use parking_lot::{Condvar, Mutex};

use crate::session::MemorySession;
use crate::state::State;

/// Timing of the memory backend's consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryOptions {
    /// How often consumers renew their membership.
    pub heartbeat_interval: Duration,
    /// How long a member that stopped heartbeating keeps its partitions. Its lease,
    /// after which it handles no further event without a successful heartbeat, is four
    /// fifths of this.
    pub member_ttl: Duration,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions {
            heartbeat_interval: Duration::from_millis(200),
            member_ttl: Duration::from_secs(2),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) emitted: Condvar,
    pub(crate) options: MemoryOptions,
    /// How far [`MemoryBackend::advance_clock`] moved this store's clock ahead, in
    /// nanoseconds: read before every event, so no lock.
    clock_offset: AtomicU64,
    /// Each session's group-change notices, by service.
    group_listeners: Mutex<Vec<(String, Sender<()>)>>,
}

impl Shared {
    /// This store's clock: real monotonic time, plus what tests advanced it by.
    pub(crate) fn now(&self) -> Instant {
        Instant::now() + Duration::from_nanos(self.clock_offset.load(Ordering::Relaxed))
    }

    /// A receiver of notices that the group of `service` changed.
    pub(crate) fn listen_to_group(&self, service: &str) -> Receiver<()> {
        // One pending notice is as good as many: each means "heartbeat now".
        let (notify, notices) = crossbeam_channel::bounded(1);
        self.group_listeners
            .lock()
            .push((service.to_owned(), notify));
        notices
    }

    /// Tells every member of `service` that its group changed.
    pub(crate) fn group_changed(&self, service: &str) {
        self.group_listeners.lock().retain(|(s, notify)| {
            s != service || !matches!(notify.try_send(()), Err(TrySendError::Disconnected(())))
        });
    }
}

/// The in-process backend. Cheap to clone; clones share the same store.
#[derive(Clone)]
pub struct MemoryBackend {
    shared: Arc<Shared>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend::new()
    }
}

impl MemoryBackend {
    /// An empty store with default timing.
    pub fn new() -> MemoryBackend {
        MemoryBackend::with_options(MemoryOptions::default())
    }

    /// An empty store with the given timing.
    pub fn with_options(options: MemoryOptions) -> MemoryBackend {
        MemoryBackend {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                emitted: Condvar::new(),
                options,
                clock_offset: AtomicU64::new(0),
                group_listeners: Mutex::new(Vec::new()),
            }),
        }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Moves this store's clock forward by `by`, as if that much time had passed
    /// without any heartbeat: memberships and leases that would have run out meanwhile
    /// have run out. Tests use it to stall a consumer past its lifetime without sleeping.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let store = hivent_memory::MemoryBackend::new();
    /// store.advance_clock(Duration::from_secs(10)); // every member has now expired
    /// ```
    pub fn advance_clock(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.shared.clock_offset.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The services that receive `event` (not counting `*` receivers), sorted.
    pub fn receivers_of(&self, event: &str) -> Vec<String> {
        let state = self.shared.state.lock();
        state
            .receivers
            .get(event)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The partition count of a registered service.
    pub fn partition_count(&self, service: &str) -> Option<u32> {
        let state = self.shared.state.lock();
        state.services.get(service).map(|s| s.partition_count())
    }

    /// The raw items waiting in a partition, oldest first.
    pub fn partition(&self, service: &str, partition: u32) -> Vec<String> {
        self.read(service, |s| s.partitions.get(partition as usize).cloned())
    }

    /// The raw items in a partition's dead letter queue, oldest first.
    pub fn dead_letters(&self, service: &str, partition: u32) -> Vec<String> {
        self.read(service, |s| {
            s.dead_letters
                .get(partition as usize)
                .map(|queue| queue.iter().map(|dead| dead.raw.clone()).collect())
        })
    }

    /// How many failure records a partition's dead letter queue holds (one per dead
    /// letter hivent moved; none for items pushed by other means).
    pub fn failure_record_count(&self, service: &str, partition: u32) -> usize {
        let state = self.shared.state.lock();
        state
            .services
            .get(service)
            .and_then(|s| s.dead_letters.get(partition as usize))
            .map_or(0, |queue| {
                queue.iter().filter(|d| d.record.is_some()).count()
            })
    }

    /// How many events wait in all of a service's partitions.
    pub fn waiting(&self, service: &str) -> usize {
        let state = self.shared.state.lock();
        state
            .services
            .get(service)
            .map_or(0, |s| s.partitions.iter().map(VecDeque::len).sum())
    }

    /// The owner of each partition of a service (`None` when unowned).
    pub fn owners(&self, service: &str) -> Vec<Option<String>> {
        let state = self.shared.state.lock();
        let Some(svc) = state.services.get(service) else {
            return Vec::new();
        };
        (0..svc.partition_count())
            .map(|p| svc.owners.get(&p).map(|(owner, _)| owner.clone()))
            .collect()
    }

    /// Appends a raw item to a partition as an emit would, e.g. to test how consumers
    /// treat malformed data. Fails when the service or partition does not exist.
    pub fn push_raw(&self, service: &str, partition: u32, raw: &str) -> Result<()> {
        let mut state = self.shared.state.lock();
        let count = state.service(service)?.partition_count();
        let queue = state
            .service(service)?
            .partitions
            .get_mut(partition as usize)
            .ok_or_else(|| Error::Backend {
                backend: "memory",
                transient: false,
                source: format!(
                    "service {service:?} has {count} partitions, there is no partition {partition}"
                )
                .into(),
            })?;
        queue.push_back(raw.to_owned());
        state.generation += 1;
        self.shared.emitted.notify_all();
        Ok(())
    }

    fn read(
        &self,
        service: &str,
        f: impl FnOnce(&crate::state::Service) -> Option<VecDeque<String>>,
    ) -> Vec<String> {
        let state = self.shared.state.lock();
        state
            .services
            .get(service)
            .and_then(f)
            .map(Vec::from)
            .unwrap_or_default()
    }
}

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    /// Never uncertain: a call is stored whole under one lock or not at all, so the
    /// call id is not needed.
    fn publish(&self, _call_id: &str, envelopes: &[Envelope]) -> Result<Vec<usize>> {
        // The copies are made before taking the lock: consumers wait for it meanwhile.
        let copies: Vec<String> = envelopes.iter().map(|e| e.json.clone()).collect();
        let mut state = self.shared.state.lock();
        let counts = envelopes
            .iter()
            .zip(copies)
            .map(|(envelope, json)| state.store(envelope, json))
            .collect();
        state.generation += 1;
        drop(state);
        self.shared.emitted.notify_all();
        Ok(counts)
    }

    fn register(&self, registration: &Registration) -> Result<()> {
        let mut state = self.shared.state.lock();
        let svc = state
            .services
            .entry(registration.service.clone())
            .or_default();
        let stored = svc.partition_count();
        let requested = registration.partition_count.max(1);
        if stored != requested {
            let non_empty: Vec<u32> = (0..stored)
                .filter(|p| !svc.partitions[*p as usize].is_empty())
                .collect();
            if !non_empty.is_empty() {
                return Err(Error::PartitionCountConflict {
                    service: registration.service.clone(),
                    requested,
                    stored,
                    non_empty,
                });
            }
            // Dead letters of partitions that disappear are kept: they are history.
            svc.partitions
                .resize_with(requested as usize, VecDeque::new);
            if svc.dead_letters.len() < requested as usize {
                svc.dead_letters
                    .resize_with(requested as usize, VecDeque::new);
            }
            svc.owners.retain(|p, _| *p < requested);
        }
        let old: BTreeSet<String> = std::mem::take(&mut svc.events);
        let new: BTreeSet<String> = registration.events.iter().cloned().collect();
        svc.events = new.clone();
        for gone in old.difference(&new) {
            if let Some(set) = state.receivers.get_mut(gone) {
                set.remove(&registration.service);
            }
        }
        for event in &new {
            state
                .receivers
                .entry(event.clone())
                .or_default()
                .insert(registration.service.clone());
        }
        Ok(())
    }

    fn operations(&self) -> Option<&dyn hivent_core::Operations> {
        Some(self)
    }

    fn join(&self, service: &str) -> Result<Box<dyn ConsumerSession>> {
        let mut state = self.shared.state.lock();
        state.service(service)?;
        state.next_member += 1;
        let member = format!("memory-{}", state.next_member);
        Ok(Box::new(MemorySession::new(
            Arc::clone(&self.shared),
            service,
            member,
        )))
    }
}
