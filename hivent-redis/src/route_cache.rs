//! Where a producer's events go, cached under the registry version they were read at.
//!
//! A publish script spends most of a single emit's Redis time reading the registry
//! (the event's set, `*`, each partition count) and being a script at all. The routes
//! change only when a service registers, so a producer reads them once (`routes.lua`, [`crate::script::RoutesScript`])
//! and then emits by a plain `MULTI`/`EXEC` transaction (`routed_emit.rs`). What keeps
//! that exact is the registry version (`hivent:registry`), which hivent's registration
//! moves on whenever it changes who receives what: each pooled connection `WATCH`es it
//! and reads it right after, so a transaction runs only if the registry is still the one
//! its routes were read under, and aborts (writing nothing) otherwise.
//!
//! The Ruby gem registers by writing the sets itself, without moving the version; so a
//! cached route also lives at most [`crate::RedisOptions::route_cache_ttl`] (1 s), after
//! which it is read again. Zero turns the cache off: every emit runs `publish.lua`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::keys;
use crate::script::RoutesReply;

/// The value of `hivent:registry` as read (`None`: no hivent registration wrote one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RegistryVersion(pub(crate) Option<String>);

/// One service that receives an event, with the names an emit needs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Receiver {
    pub(crate) service: String,
    pub(crate) partition_count: u32,
    pub(crate) wake_channel: String,
}

impl Receiver {
    fn new(service: String, partition_count: u32) -> Receiver {
        Receiver {
            wake_channel: keys::wake_channel(&service),
            service,
            partition_count,
        }
    }
}

/// The services that receive one event name (empty: nobody does).
pub(crate) type Route = Arc<[Receiver]>;

/// The most names remembered as emitted once; beyond, the set starts again (a name
/// then costs one more script call before its routes are read).
const MAX_SEEN: usize = 10_000;

/// The routes of one producer (one [`crate::RedisBackend`]), shared by its threads.
pub(crate) struct RouteCache {
    ttl: Duration,
    /// Off for good once the Redis user turned out unable to make a retry safe.
    disabled: AtomicBool,
    state: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    /// The version every route below was read under.
    version: Option<RegistryVersion>,
    routes: HashMap<String, (Route, Instant)>,
    /// Names emitted once without cached routes: the second emit reads their routes.
    seen: HashSet<String>,
    /// Names `routes.lua` could not route, and when: the script handles them (and says
    /// what is wrong) without a read of routes first, until the lifetime is over.
    unroutable: HashMap<String, Instant>,
}

impl RouteCache {
    pub(crate) fn new(ttl: Duration) -> RouteCache {
        RouteCache {
            ttl,
            disabled: AtomicBool::new(false),
            state: Mutex::new(Cached::default()),
        }
    }

    /// Whether routes are cached at all (a zero TTL turns it off).
    pub(crate) fn enabled(&self) -> bool {
        !self.ttl.is_zero() && !self.disabled.load(Ordering::Relaxed)
    }

    /// Turns the cache off for good.
    pub(crate) fn disable(&self) {
        self.disabled.store(true, Ordering::Relaxed);
    }

    /// The routes of `names`, in order, if each is cached, fresh, and was read under
    /// the version a connection `watching` watches.
    pub(crate) fn routes(
        &self,
        names: &[&str],
        watching: Option<&RegistryVersion>,
    ) -> Option<Vec<Route>> {
        let state = self.state.lock();
        if watching.is_none() || state.version.as_ref() != watching {
            return None;
        }
        names
            .iter()
            .map(|name| {
                let (route, read_at) = state.routes.get(*name)?;
                (read_at.elapsed() < self.ttl).then(|| Arc::clone(route))
            })
            .collect()
    }

    /// Whether routes are worth reading for `names`: not on the first emit of a name,
    /// which the publish script handles in one round trip (a process that emits once,
    /// like `hivent emit`, then costs what it always did), but from the second on.
    pub(crate) fn worth_reading(&self, names: &[&str]) -> bool {
        let mut state = self.state.lock();
        if state.seen.len() >= MAX_SEEN {
            state.seen.clear();
        }
        let ttl = self.ttl;
        state.unroutable.retain(|_, at| at.elapsed() < ttl);
        let mut worth = true;
        for name in names {
            if state.unroutable.contains_key(*name) {
                worth = false;
            }
            if !state.routes.contains_key(*name) && state.seen.insert((*name).to_owned()) {
                worth = false;
            }
        }
        worth
    }

    /// Keeps what `routes.lua` read for `names`; the names it could not route are left
    /// out (`publish.lua` reports them).
    pub(crate) fn store(&self, names: &[&str], read: RoutesReply) {
        let version = RegistryVersion(read.version);
        let now = Instant::now();
        let mut state = self.state.lock();
        state.forget_unless(&version);
        for (name, route) in names.iter().zip(read.routes) {
            let Some(receivers) = route else {
                state.unroutable.insert((*name).to_owned(), now);
                continue;
            };
            let route: Route = receivers
                .into_iter()
                .map(|(service, count)| Receiver::new(service, count))
                .collect();
            state.routes.insert((*name).to_owned(), (route, now));
        }
    }

    /// A connection read `version`: routes read under another one are no longer good.
    pub(crate) fn observed(&self, version: &RegistryVersion) {
        self.state.lock().forget_unless(version);
    }
}

impl Cached {
    fn forget_unless(&mut self, version: &RegistryVersion) {
        if self.version.as_ref() != Some(version) {
            self.routes.clear();
            self.version = Some(version.clone());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn read(version: &str, routes: Vec<Option<Vec<(&str, u32)>>>) -> RoutesReply {
        RoutesReply {
            version: Some(version.to_owned()),
            routes: routes
                .into_iter()
                .map(|route| route.map(|r| r.into_iter().map(|(s, c)| (s.to_owned(), c)).collect()))
                .collect(),
        }
    }

    fn version(v: &str) -> RegistryVersion {
        RegistryVersion(Some(v.to_owned()))
    }

    /// Routes serve only a connection watching the version they were read under.
    #[test]
    fn routes_need_the_version_they_were_read_under() {
        let cache = RouteCache::new(Duration::from_secs(60));
        cache.store(
            &["a", "b"],
            read("7", vec![Some(vec![("svc", 4)]), Some(vec![])]),
        );
        let routes = cache.routes(&["a", "b"], Some(&version("7"))).unwrap();
        assert_eq!(routes[0][0].service, "svc");
        assert_eq!(routes[0][0].partition_count, 4);
        assert_eq!(routes[0][0].wake_channel, "svc:hivent:wake");
        assert!(routes[1].is_empty());
        assert!(cache.routes(&["a"], Some(&version("8"))).is_none());
        assert!(cache.routes(&["a"], None).is_none());
        assert!(cache.routes(&["a", "c"], Some(&version("7"))).is_none());
        cache.observed(&version("8"));
        assert!(
            cache.routes(&["a"], Some(&version("8"))).is_none(),
            "read under 7"
        );
    }

    /// A name's first emit goes by the script; from the second its routes are read.
    #[test]
    fn routes_are_read_from_a_name_s_second_emit() {
        let cache = RouteCache::new(Duration::from_secs(60));
        assert!(!cache.worth_reading(&["a"]));
        assert!(cache.worth_reading(&["a"]));
        assert!(!cache.worth_reading(&["a", "b"]), "b is new");
        assert!(cache.worth_reading(&["a", "b"]));
    }

    /// An unroutable name is not cached; an expired route is not served.
    #[test]
    fn unroutable_and_expired_routes_are_not_served() {
        let cache = RouteCache::new(Duration::from_secs(60));
        cache.store(&["a", "b"], read("1", vec![Some(vec![("svc", 4)]), None]));
        assert!(cache.routes(&["b"], Some(&version("1"))).is_none());
        assert!(cache.routes(&["a"], Some(&version("1"))).is_some());
        assert!(!cache.worth_reading(&["b"]), "unroutable for a while");
        let expiring = RouteCache::new(Duration::from_nanos(1));
        expiring.store(&["a"], read("1", vec![Some(vec![("svc", 4)])]));
        std::thread::sleep(Duration::from_millis(1));
        assert!(expiring.routes(&["a"], Some(&version("1"))).is_none());
        assert!(!RouteCache::new(Duration::ZERO).enabled());
    }
}
