//! Cluster mode's cached routes: where each event name goes, read from the registry
//! slot once and kept until a registration announces a change (or the cache's
//! lifetime ends), so an emit in the steady state costs no registry round trip.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::thread;
use std::time::{Duration, Instant};

use hivent_core::ErrorChain;
use parking_lot::Mutex;

use crate::cluster_connection::ClusterEndpoint;
use crate::cluster_keys as keys;
use crate::error::is_interrupted;

/// Receiving services with their partition counts.
pub(crate) type Targets = Vec<(String, u32)>;

/// Routes by event name, with when they were read.
pub(crate) struct ClusterRoutes {
    ttl: Duration,
    entries: Arc<Mutex<HashMap<String, (Targets, Instant)>>>,
    /// Moved on by every change notice, so routes read before one are not kept.
    generation: Arc<AtomicU64>,
    listening: Once,
    stop: Arc<AtomicBool>,
}

impl ClusterRoutes {
    pub(crate) fn new(ttl: Duration) -> ClusterRoutes {
        ClusterRoutes {
            ttl,
            entries: Arc::default(),
            generation: Arc::default(),
            listening: Once::new(),
            stop: Arc::default(),
        }
    }

    /// The cached routes of `name`, if fresh. The first call starts the listener for
    /// change notices.
    pub(crate) fn get(&self, endpoint: &Arc<ClusterEndpoint>, name: &str) -> Option<Targets> {
        if self.ttl.is_zero() {
            return None;
        }
        self.listening
            .call_once(|| self.listen(Arc::clone(endpoint)));
        let entries = self.entries.lock();
        let (targets, at) = entries.get(name)?;
        (at.elapsed() < self.ttl).then(|| targets.clone())
    }

    /// What to pass to [`ClusterRoutes::put`] for routes about to be read.
    pub(crate) fn before_read(&self) -> (u64, Instant) {
        (self.generation.load(Ordering::Acquire), Instant::now())
    }

    /// Keeps routes whose read started at `before` (from [`ClusterRoutes::before_read`]),
    /// unless a change notice came since: they may predate the change.
    pub(crate) fn put(&self, name: &str, targets: Targets, (generation, read_at): (u64, Instant)) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock();
        if self.generation.load(Ordering::Acquire) == generation {
            entries.insert(name.to_owned(), (targets, read_at));
        }
    }

    /// Drops every cached route: a partition stamped with another count said they are
    /// out of date.
    pub(crate) fn forget(&self) {
        let mut entries = self.entries.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    /// Subscribes to the registry channel on a thread of its own: a notice, or a lost
    /// subscription (notices may have been missed), clears the cache.
    fn listen(&self, endpoint: Arc<ClusterEndpoint>) {
        let entries = Arc::clone(&self.entries);
        let generation = Arc::clone(&self.generation);
        let forget = move || {
            let mut entries = entries.lock();
            generation.fetch_add(1, Ordering::AcqRel);
            entries.clear();
        };
        let stop = Arc::clone(&self.stop);
        let spawned = thread::Builder::new()
            .name("hivent-routes".into())
            .spawn(move || {
                let backoff = hivent_core::RetryPolicy::endless(
                    Duration::from_millis(50),
                    Duration::from_secs(2),
                );
                let mut failures = 0;
                let seeds = endpoint.seeds();
                while !stop.load(Ordering::Relaxed) {
                    let seed = &seeds[failures % seeds.len()];
                    let held = seed.open().and_then(|mut connection| {
                        let mut pubsub = connection.as_pubsub();
                        pubsub.subscribe(keys::REGISTRY_CHANNEL)?;
                        pubsub.set_read_timeout(Some(Duration::from_millis(200)))?;
                        forget();
                        failures = 0;
                        while !stop.load(Ordering::Relaxed) {
                            match pubsub.get_message() {
                                Ok(_) => forget(),
                                Err(error) if error.is_timeout() || is_interrupted(&error) => {}
                                Err(error) => return Err(error),
                            }
                        }
                        Ok(())
                    });
                    if let Err(error) = held {
                        forget();
                        tracing::debug!(error = %ErrorChain(&error), "registry change subscription lost; subscribing again");
                        failures += 1;
                        thread::sleep(backoff.delay_after(u32::try_from(failures).unwrap_or(u32::MAX)));
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(error = %ErrorChain(&error), "could not start the registry change listener; routes are read for every emit");
        }
    }

    fn listener_started(&self) -> bool {
        self.listening.is_completed()
    }
}

impl Drop for ClusterRoutes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for ClusterRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRoutes")
            .field("ttl", &self.ttl)
            .field("listening", &self.listener_started())
            .finish()
    }
}
