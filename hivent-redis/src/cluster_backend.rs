//! Cluster mode: the backend on a Redis Cluster, its emits and its registration.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::thread;

use hivent_core::{Backend, ConsumerSession, Envelope, ErrorChain, Operations, Registration};
use redis::{FromRedisValue, RedisError, Value};

use crate::backend::{emit_pauses, Chunk, Try};
use crate::cluster_connection::{
    pipeline, wait_for_replicas, ClusterEndpoint, ClusterSlot, Repeat,
};
use crate::cluster_group::ClusterGroup;
use crate::cluster_keys as keys;
use crate::cluster_routes::{self, ClusterRoutes};
use crate::cluster_script::{self as script, PartitionPublish, Published, Registered};
use crate::error::{certainly_not_run, is_transient};
use crate::script::{millis, partition_count};
use crate::wake::WakeListener;
use crate::{Error, RedisOptions, RedisSession};

/// Per receiving partition (service, number): the service's partition count the
/// partition was computed with, and the JSON of the events it gets, in emit order.
type Targets<'a> = BTreeMap<(&'a str, u32), (u32, Vec<&'a str>)>;

/// How many times an emit reads its routes again because a partition count changed
/// under it, and the pause between: a registration takes a few round trips.
const STALE_ROUNDS: u32 = 50;
const STALE_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Events on a Redis Cluster: each partition's keys in a hash slot of its own, so a
/// service's partitions spread over the masters. See the crate docs, "Cluster mode".
///
/// ```no_run
/// use std::sync::Arc;
/// use hivent_core::{Config, Hivent};
/// use hivent_redis::RedisClusterBackend;
///
/// let backend = RedisClusterBackend::connect("redis://10.0.0.1:7000,redis://10.0.0.2:7000")?;
/// let config = Config::builder().client_id("billing").partition_count(16).build()?;
/// let hivent = Hivent::new(config, Arc::new(backend));
/// hivent.signal("invoice:paid")?.emit(&serde_json::json!({"invoice": 12}), 1)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedisClusterBackend {
    pub(crate) endpoint: Arc<ClusterEndpoint>,
    connection: ClusterSlot,
    routes: ClusterRoutes,
}

impl RedisClusterBackend {
    /// Connects to the cluster that `seeds` (node URLs separated by commas) belong to,
    /// with default options.
    pub fn connect(seeds: &str) -> Result<RedisClusterBackend, Error> {
        RedisClusterBackend::with_options(seeds, RedisOptions::default())
    }

    /// Connects with `options`; fails for malformed seeds, invalid options, or when no
    /// seed answers as a cluster node.
    ///
    /// ```
    /// use hivent_redis::{Error, RedisClusterBackend, RedisOptions};
    /// let refused = RedisClusterBackend::with_options("redis://:s3cret@127.0.0.1:1", RedisOptions::default());
    /// assert!(matches!(&refused, Err(Error::Unreachable { .. })));
    /// assert!(!refused.unwrap_err().to_string().contains("s3cret"));
    /// ```
    pub fn with_options(seeds: &str, options: RedisOptions) -> Result<RedisClusterBackend, Error> {
        options.validate()?;
        let routes = ClusterRoutes::new(options.route_cache_ttl);
        let endpoint = Arc::new(ClusterEndpoint::parse(seeds, options)?);
        let backend = RedisClusterBackend {
            endpoint,
            connection: ClusterSlot::new(None),
            routes,
        };
        // A read of the registry slot rather than PING, which goes to every node: a
        // cluster that serves its slots must not be refused for a node that is down.
        backend
            .connection
            .run(&backend.endpoint, |connection| {
                redis::cmd("GET")
                    .arg(keys::REGISTRY_VERSION)
                    .query::<Option<String>>(connection)
            })
            .map_err(|source| Error::Unreachable {
                endpoint: backend.endpoint.redacted().to_owned(),
                source: source.into(),
            })?;
        Ok(backend)
    }

    /// The seed nodes, with any password replaced by `***`.
    pub fn endpoint(&self) -> &str {
        self.endpoint.redacted()
    }

    /// The options in use.
    pub fn options(&self) -> &RedisOptions {
        self.endpoint.options()
    }

    /// Runs `calls` in one pipeline on the backend's connection; a call sent again
    /// after a redirect must give the same outcome (a lone call never runs twice).
    pub(crate) fn pipeline(
        &self,
        operation: &'static str,
        calls: &[redis::Cmd],
    ) -> Result<Vec<Value>, Error> {
        self.connection
            .run(&self.endpoint, |connection| {
                pipeline(connection, calls, Repeat::Safe)
            })
            .map_err(|e| self.endpoint.error(operation, e))
    }

    /// Joins the consumer group of `service` as a new member.
    pub fn join_session(&self, service: &str) -> Result<RedisSession, Error> {
        refuse_untaggable(service)?;
        let wake = WakeListener::start(
            self.endpoint.seeds().to_vec(),
            service,
            keys::wake_channel(service),
            keys::group_channel(service),
        )?;
        let group = ClusterGroup::new(Arc::clone(&self.endpoint));
        Ok(RedisSession::with_group(Box::new(group), wake, service))
    }

    /// Registers a service: its partition count and the events it receives. A changed
    /// count is refused while an old partition holds events, as in standalone mode;
    /// here the partitions are stamped with the new count first, then checked, then
    /// the registry is written (refused if the count moved meanwhile: checked again).
    pub fn register_service(&self, registration: &Registration) -> Result<(), Error> {
        // Another registration changing the count between the check and the write
        // makes this one check again; a few rounds settle any real contention.
        for _ in 0..8 {
            if let Some(done) = self.register_once(registration)? {
                return Ok(done);
            }
        }
        Err(Error::InvalidOptions {
            option: "partition_count",
            reason: format!(
                "the partition count of {:?} kept changing under this registration; start the workers with one count",
                registration.service
            ),
        })
    }

    /// One registration round: `None` when the count moved since it was checked.
    fn register_once(&self, registration: &Registration) -> Result<Option<()>, Error> {
        let service = &registration.service;
        refuse_untaggable(service)?;
        let operation = "register the service";
        let stored = partition_count(self.stored_count_text(service)?.as_deref());
        let drained_under = match stored {
            Some(stored) if stored != registration.partition_count => {
                let requested = registration.partition_count;
                // First every partition of either count is stamped with the new one, so
                // no producer whose routes predate the change writes to it any more
                // (publish.lua refuses a count other than the stamp); only then are the
                // old partitions found empty or not.
                self.stamp(service, stored.max(requested), requested)?;
                let lengths: Vec<redis::Cmd> = (0..stored)
                    .map(|p| {
                        let mut llen = redis::cmd("LLEN");
                        llen.arg(keys::partition(service, p));
                        llen
                    })
                    .collect();
                let non_empty: Vec<u32> = self
                    .pipeline(operation, &lengths)?
                    .iter()
                    .zip(0..)
                    .filter(|(len, _)| crate::script::number::<u64>(len).unwrap_or(0) > 0)
                    .map(|(_, p)| p)
                    .collect();
                if !non_empty.is_empty() {
                    // Refused: the producers go on with the old count.
                    self.stamp(service, stored.max(requested), stored)?;
                    return Err(Error::PartitionCountConflict {
                        service: service.clone(),
                        requested,
                        stored,
                        non_empty,
                    });
                }
                Some(stored)
            }
            _ => None,
        };
        let call = script::register(
            service,
            registration.partition_count,
            &registration.events,
            drained_under,
        );
        let reply = self.pipeline(operation, &[call])?;
        let reply = reply.into_iter().next().unwrap_or(Value::Nil);
        match Registered::from_redis_value(reply) {
            Ok(Registered::Done) => Ok(Some(())),
            Ok(Registered::Invalid(requested)) => Err(Error::InvalidOptions {
                option: "partition_count",
                reason: format!(
                    "{requested} is not a whole number from 1 to {}",
                    hivent_core::MAX_PARTITION_COUNT
                ),
            }),
            Ok(Registered::Moved(_)) => Ok(None),
            Err(e) => Err(self.endpoint.error(operation, e.into())),
        }
    }

    /// Stamps partitions `0..upto` of `service` with partition count `count`.
    fn stamp(&self, service: &str, upto: u32, count: u32) -> Result<(), Error> {
        let stamps: Vec<redis::Cmd> = (0..upto)
            .map(|p| {
                let mut set = redis::cmd("SET");
                set.arg(keys::stamped_count(service, p)).arg(count);
                set
            })
            .collect();
        self.pipeline("stamp the partitions with their count", &stamps)
            .map(|_| ())
    }

    /// The routes of every name in `envelopes`: from the cache, else read in one call.
    fn routes_of(
        &self,
        envelopes: &[Envelope],
    ) -> Result<BTreeMap<String, cluster_routes::Targets>, Error> {
        let mut found = BTreeMap::new();
        let mut unknown: Vec<&str> = Vec::new();
        for envelope in envelopes {
            if found.contains_key(&envelope.name) || unknown.contains(&envelope.name.as_str()) {
                continue;
            }
            match self.routes.get(&self.endpoint, &envelope.name) {
                Some(targets) => {
                    found.insert(envelope.name.clone(), targets);
                }
                None => unknown.push(&envelope.name),
            }
        }
        if unknown.is_empty() {
            return Ok(found);
        }
        let operation = "read the routes of events";
        let before = self.routes.before_read();
        let reply = self.pipeline(operation, &[script::routes(&unknown)])?;
        let routes = script::parse_routes(reply.into_iter().next().unwrap_or(Value::Nil))
            .map_err(|e| self.endpoint.error(operation, e.into()))?;
        for (name, route) in unknown.into_iter().zip(routes) {
            match route {
                Ok(targets) => {
                    self.routes.put(name, targets.clone(), before);
                    found.insert(name.to_owned(), targets);
                }
                Err((service, found)) => {
                    return Err(Error::MissingPartitionCount {
                        service,
                        event: name.to_owned(),
                        found,
                    })
                }
            }
        }
        Ok(found)
    }

    /// Stores one chunk: one publish script per receiving partition, all sent at
    /// once (one round trip per master), each honouring its own marker, so a try after
    /// a partial one writes only what is missing. Returns, per event, how many
    /// services stored it.
    fn publish_chunk(&self, envelopes: &[Envelope], call_id: &str) -> Result<Vec<usize>, Error> {
        let options = self.endpoint.options();
        let pauses = emit_pauses(options);
        let mut tries_left = options.emit_tries.max(1);
        let mut tries = 0;
        // Whether a try may have written (its pipeline failed after it was sent, or
        // spanned nodes), and whether a failure left a call that may still run.
        let mut may_have_run = false;
        let mut ran_somewhere = false;
        let mut stale_rounds = 0;
        // The services the last try wrote to, or may have.
        let mut tried = BTreeSet::new();
        loop {
            tries_left -= 1;
            let routes = match self.routes_of(envelopes) {
                Ok(routes) => routes,
                // Nothing of this try was written: trying again is safe.
                Err(error) if tries_left > 0 && error.is_transient() => {
                    tracing::warn!(error = %ErrorChain(&error), operation = "read the routes of events", tries_left, "Redis Cluster failed; trying again");
                    tries += 1;
                    thread::sleep(pauses.delay_after(tries));
                    continue;
                }
                // An earlier try may have written: the call is uncertain, not failed.
                Err(Error::Command { source, .. }) if may_have_run => {
                    return Err(Error::NotAllWritten {
                        written: Vec::new(),
                        not_written: tried.into_iter().collect(),
                        source,
                    });
                }
                Err(error) => return Err(error),
            };
            let mut counts = Vec::with_capacity(envelopes.len());
            let mut targets: Targets<'_> = BTreeMap::new();
            for envelope in envelopes {
                let receivers = routes.get(&envelope.name).map_or(&[][..], Vec::as_slice);
                counts.push(receivers.len());
                for (service, count) in receivers {
                    let partition = hivent_core::partition_for(envelope.partition_hash, *count);
                    targets
                        .entry((service.as_str(), partition))
                        .or_insert_with(|| (*count, Vec::new()))
                        .1
                        .push(&envelope.json);
                }
            }
            if targets.is_empty() {
                return Ok(counts);
            }
            tried = targets
                .keys()
                .map(|(service, _)| service.to_string())
                .collect();
            let calls: Vec<redis::Cmd> = targets
                .iter()
                .map(|((service, partition), (partition_count, json))| {
                    let part = PartitionPublish {
                        service,
                        partition: *partition,
                        partition_count: *partition_count,
                        json,
                    };
                    script::publish(&part, call_id, millis(options.emit_marker_ttl))
                })
                .collect();
            // Marked: a try of a partition that has the call writes nothing.
            let written = self.connection.run(&self.endpoint, |connection| {
                pipeline(connection, &calls, Repeat::Safe)
            });
            let replies = match written {
                Ok(replies) => replies,
                Err(error) => {
                    // One node's part may fail after others ran: only the markers
                    // tell, which `unfinished` reads back at the end.
                    ran_somewhere |= !certainly_not_run(&error);
                    may_have_run |= ran_somewhere || calls.len() > 1;
                    if tries_left > 0 && is_transient(&error) {
                        tracing::warn!(error = %ErrorChain(&error), operation = "publish events", tries_left, "Redis Cluster failed; trying again");
                        tries += 1;
                        thread::sleep(pauses.delay_after(tries));
                        continue;
                    }
                    return Err(self.unfinished(&targets, call_id, error, ran_somewhere));
                }
            };
            let mut collision = None;
            let mut stored_any = false;
            let mut stale = false;
            for reply in replies {
                match Published::from_redis_value(reply) {
                    Ok(Published::Stored | Published::Already) => stored_any = true,
                    Ok(Published::Stale) => stale = true,
                    Ok(Published::WrongType { key, found }) => collision = Some((key, found)),
                    Err(e) => return Err(self.endpoint.error("publish events", e.into())),
                }
            }
            if stale && collision.is_none() {
                // A registration changed a partition count since the routes were read:
                // read them again (the change may still be on its way to the registry)
                // and send the call again; what it stored has its markers.
                stale_rounds += 1;
                if stale_rounds > STALE_ROUNDS {
                    return Err(Error::NotAllWritten {
                        written: Vec::new(),
                        not_written: tried.into_iter().collect(),
                        source: redis::RedisError::from((
                            redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain),
                            "a partition count kept changing under the emit",
                        ))
                        .into(),
                    });
                }
                self.routes.forget();
                tries_left += 1;
                thread::sleep(STALE_PAUSE);
                continue;
            }
            if let Some((key, found)) = collision {
                return Err(match stored_any {
                    true => Error::PartlyStored { key, found },
                    false => Error::KeyCollision { key, found },
                });
            }
            if options.replica_acks > 0 {
                let written: Vec<String> = targets
                    .keys()
                    .map(|(service, partition)| keys::partition(service, *partition))
                    .collect();
                let acked = self.connection.run(&self.endpoint, |connection| {
                    wait_for_replicas(
                        connection,
                        &written,
                        options.replica_acks,
                        millis(options.replica_ack_timeout),
                    )
                });
                let acked = acked.unwrap_or_else(|error| {
                    tracing::warn!(error = %ErrorChain(&error), "Redis Cluster failed while waiting for replicas; the emit is stored but may not be replicated");
                    0
                });
                if acked < options.replica_acks {
                    return Err(Error::NotReplicated {
                        acked,
                        wanted: options.replica_acks,
                        waited: options.replica_ack_timeout,
                    });
                }
            }
            return Ok(counts);
        }
    }

    /// The error of a call that may have stored some of its partitions: which services
    /// have all of theirs (their markers exist) and which not, or may not.
    /// A call whose every failure certainly ran nothing on the node that failed, and
    /// none of whose markers exist (or that had one partition), is plainly not
    /// emitted; otherwise the error names what the markers show.
    fn unfinished(
        &self,
        targets: &Targets<'_>,
        call_id: &str,
        error: RedisError,
        ran_somewhere: bool,
    ) -> Error {
        let checks: Vec<redis::Cmd> = targets
            .keys()
            .map(|(service, partition)| {
                let mut exists = redis::cmd("EXISTS");
                exists.arg(keys::emitted_marker(service, *partition, call_id));
                exists
            })
            .collect();
        let written: Option<Vec<bool>> = self
            .pipeline("check which partitions an emit stored", &checks)
            .ok()
            .map(|replies| {
                replies
                    .iter()
                    .map(|r| crate::script::number::<u8>(r).ok() == Some(1))
                    .collect()
            });
        let mut not_written = BTreeSet::new();
        let mut all = BTreeSet::new();
        for (index, (service, _)) in targets.keys().enumerate() {
            all.insert(service.to_string());
            let stored = written
                .as_ref()
                .is_some_and(|w| w.get(index) == Some(&true));
            if !stored {
                not_written.insert(service.to_string());
            }
        }
        let none_stored = match &written {
            Some(stored) => !stored.contains(&true),
            None => targets.len() == 1,
        };
        if none_stored && !ran_somewhere {
            return self.endpoint.error("publish events", error);
        }
        let written: Vec<String> = all.difference(&not_written).cloned().collect();
        Error::NotAllWritten {
            written,
            not_written: not_written.into_iter().collect(),
            source: error.into(),
        }
    }

    fn publish_chunks(
        &self,
        call_id: &str,
        envelopes: &[Envelope],
        attempt: Try,
    ) -> hivent_core::Result<Vec<usize>> {
        // Every try honours the markers: first or not, a chunk goes the same way.
        Chunk::publish_all(call_id, envelopes, attempt, |events, id, _| {
            self.publish_chunk(events, id)
        })
    }
}

/// A brace in a service name would change the hash tag of its keys.
fn refuse_untaggable(service: &str) -> Result<(), Error> {
    if keys::is_taggable(service) {
        Ok(())
    } else {
        Err(Error::InvalidOptions {
            option: "client_id",
            reason: format!(
                "{service:?} holds a brace, which Redis Cluster reads as a hash tag; cluster mode needs service names without {{ and }}"
            ),
        })
    }
}

impl std::fmt::Debug for RedisClusterBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClusterBackend")
            .field("seeds", &self.endpoint.redacted())
            .field("options", self.endpoint.options())
            .finish()
    }
}

impl Backend for RedisClusterBackend {
    fn name(&self) -> &'static str {
        "redis-cluster"
    }

    /// Publishes in chunks of up to 500 events (or 4 MiB), each written partition by
    /// partition; see the crate docs for what a partial failure leaves.
    fn publish(&self, call_id: &str, envelopes: &[Envelope]) -> hivent_core::Result<Vec<usize>> {
        self.publish_chunks(call_id, envelopes, Try::First)
    }

    fn republish(&self, call_id: &str, envelopes: &[Envelope]) -> hivent_core::Result<Vec<usize>> {
        self.publish_chunks(call_id, envelopes, Try::Again)
    }

    fn register(&self, registration: &Registration) -> hivent_core::Result<()> {
        Ok(self.register_service(registration)?)
    }

    fn join(&self, service: &str) -> hivent_core::Result<Box<dyn ConsumerSession>> {
        Ok(Box::new(self.join_session(service)?))
    }

    fn operations(&self) -> Option<&dyn Operations> {
        Some(self)
    }
}
