//! The Redis backend: connecting, publishing, registering and joining a group.

use hivent_core::ErrorChain;
use std::sync::Arc;
use std::thread;

#[cfg(feature = "tokio")]
use hivent_core::PublishFuture;
use hivent_core::{Backend, ConsumerSession, Envelope, Operations, Registration};
use redis::{Connection, RedisError, RedisResult};

use crate::connection::{Endpoint, Pool};
use crate::error::{certainly_not_run, is_transient, keeps_connection};
use crate::route_cache::RouteCache;
use crate::routed_emit::{publish_routed, InDoubt, Routed, RoutedCall};
use crate::script::{millis, PublishReply, PublishScript, RegisterReply, RegisterScript};
use crate::{Error, RedisOptions, RedisSession};

/// The most events one publish call carries.
const BATCH_EVENTS: usize = 500;
/// The most JSON bytes one publish call carries, so one call never blocks Redis long.
const BATCH_BYTES: usize = 4 << 20;

/// Events on Redis, wire compatible with the Ruby gem; see the crate docs.
///
/// Cheap to share: clone the `Arc` you put it in. Emits and registrations use a small
/// pool of connections; each consumer session opens its own.
///
/// ```no_run
/// use std::sync::Arc;
/// use hivent_core::{Config, Hivent};
/// use hivent_redis::RedisBackend;
///
/// let backend = RedisBackend::connect("redis://127.0.0.1:6379/0")?;
/// let config = Config::builder().client_id("billing").partition_count(4).build()?;
/// let hivent = Hivent::new(config, Arc::new(backend));
/// hivent.signal("invoice:paid")?.emit(&serde_json::json!({"invoice": 12}), 1)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedisBackend {
    pub(crate) endpoint: Arc<Endpoint>,
    pool: Pool,
    routes: RouteCache,
    pub(crate) doubts: Arc<InDoubt>,
    #[cfg(feature = "tokio")]
    pub(crate) async_connection: crate::async_publish::AsyncConnection,
}

impl RedisBackend {
    /// Connects to `endpoint` (`redis://[user:password@]host:port/db`) with default
    /// options, and checks that Redis answers.
    ///
    /// ```no_run
    /// let backend = hivent_redis::RedisBackend::connect("redis://127.0.0.1:6379/0")?;
    /// # Ok::<(), hivent_redis::Error>(())
    /// ```
    pub fn connect(endpoint: &str) -> Result<RedisBackend, Error> {
        RedisBackend::with_options(endpoint, RedisOptions::default())
    }

    /// Connects with `options`; fails for a malformed endpoint, invalid options or a
    /// Redis that does not answer.
    ///
    /// ```
    /// use hivent_redis::{Error, RedisBackend, RedisOptions};
    /// let refused = RedisBackend::with_options("redis://:s3cret@127.0.0.1:1/0", RedisOptions::default());
    /// assert!(matches!(refused, Err(Error::Unreachable { .. })));
    /// assert!(matches!(RedisBackend::connect("localhost:6379"), Err(Error::InvalidEndpoint { .. })));
    /// ```
    pub fn with_options(endpoint: &str, options: RedisOptions) -> Result<RedisBackend, Error> {
        options.validate()?;
        let pool = Pool::new(options.pool_size);
        let routes = RouteCache::new(options.route_cache_ttl);
        let endpoint = Arc::new(Endpoint::parse(endpoint, options)?);
        let backend = RedisBackend {
            endpoint,
            pool,
            routes,
            doubts: Arc::default(),
            #[cfg(feature = "tokio")]
            async_connection: Default::default(),
        };
        backend.ping()?;
        backend.refuse_cluster()?;
        backend.warn_if_evicting();
        Ok(backend)
    }

    /// Checks that Redis answers, trying again after transient failures (one dropped
    /// reply must not fail a producer's start) with the emit retry policy.
    fn ping(&self) -> Result<(), Error> {
        // A refused connection is no lost reply: nothing listens there.
        let retry = |error: &RedisError| is_transient(error) && !error.is_connection_refusal();
        self.retrying(
            "check that Redis answers",
            retry,
            |_| {},
            |connection| redis::cmd("PING").query::<String>(connection),
        )
        .map(|_| ())
        .map_err(|source| Error::Unreachable {
            endpoint: self.endpoint.redacted().to_owned(),
            source: source.into(),
        })
    }

    /// The endpoint, with any password replaced by `***`.
    pub fn endpoint(&self) -> &str {
        self.endpoint.redacted()
    }

    /// The options in use.
    pub fn options(&self) -> &RedisOptions {
        self.endpoint.options()
    }

    /// Joins the consumer group of `service` as a new member; the typed form of
    /// [`Backend::join`].
    pub fn join_session(&self, service: &str) -> Result<RedisSession, Error> {
        RedisSession::join(Arc::clone(&self.endpoint), service)
    }

    /// A Redis Cluster node would fail the scripts, which touch keys of many slots, at
    /// the first emit or heartbeat; refused at connect instead. A Redis that may not
    /// run `INFO` (some managed ones) is taken as standalone.
    fn refuse_cluster(&self) -> Result<(), Error> {
        let info = self.pool.run(&self.endpoint, |connection| {
            redis::cmd("INFO")
                .arg("cluster")
                .query::<String>(connection)
        });
        match info {
            Ok(info) if info.lines().any(|line| line.trim() == "cluster_enabled:1") => {
                Err(Error::ClusterNotSupported {
                    endpoint: self.endpoint.redacted().to_owned(),
                })
            }
            Ok(_) => Ok(()),
            Err(error) if keeps_connection(&error) => Ok(()),
            Err(error) => Err(self.endpoint.error("check for cluster mode", error)),
        }
    }

    /// An eviction policy other than `noeviction` lets Redis drop partitions under
    /// memory pressure: events lost without a trace.
    fn warn_if_evicting(&self) {
        let policy = self.pool.run(&self.endpoint, |connection| {
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory-policy")
                .query::<Vec<String>>(connection)
        });
        // Managed Redis often forbids CONFIG; then there is nothing to check.
        if let Ok(reply) = policy {
            if let Some(policy) = reply.get(1).filter(|p| p.as_str() != "noeviction") {
                tracing::warn!(
                    endpoint = %self.endpoint.redacted(),
                    policy = %policy,
                    "Redis may evict keys under memory pressure (maxmemory-policy is not noeviction); events can be lost"
                );
            }
        }
    }

    /// Runs `work` once on a pooled connection.
    pub(crate) fn run<T>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, Error> {
        self.pool
            .run(&self.endpoint, work)
            .map_err(|e| self.endpoint.error(operation, e))
    }

    /// Runs `work`, retrying transient failures with doubling pauses.
    fn with_retries<T>(
        &self,
        operation: &'static str,
        work: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, Error> {
        self.retrying(operation, is_transient, |_| {}, work)
            .map_err(|error| self.endpoint.error(operation, error))
    }

    /// Runs `work` up to `emit_tries` times with doubling pauses, trying again after
    /// the failures `retry` accepts; `seen` is told of every failure, and the last one
    /// is returned as it came.
    fn retrying<T>(
        &self,
        operation: &'static str,
        retry: impl Fn(&RedisError) -> bool,
        mut seen: impl FnMut(&RedisError),
        mut work: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let options = self.endpoint.options();
        let pauses = emit_pauses(options);
        let mut tries = 0;
        let mut tries_left = options.emit_tries.max(1);
        loop {
            tries_left -= 1;
            match self.pool.run(&self.endpoint, &mut work) {
                Ok(value) => return Ok(value),
                Err(error) => {
                    seen(&error);
                    if tries_left == 0 || !retry(&error) {
                        return Err(error);
                    }
                    tracing::warn!(error = %ErrorChain(&error), operation, tries_left, "Redis failed; trying again");
                    tries += 1;
                    thread::sleep(pauses.delay_after(tries));
                }
            }
        }
    }

    /// One atomic publish call, tried again on transient failures with the same
    /// `call_id`, whose marker makes a try after a stored one write nothing. Returns,
    /// per event, how many services stored it. After a try that may have run, a final
    /// failure is [`Error::ReplyLost`] (it may have been stored), never a plain failure.
    ///
    /// The first try of a new call goes by the cached routes when it can
    /// (`routed_emit.rs`); every other try, and every call the cache cannot route,
    /// runs `publish.lua`, which reads the registry itself and honours the marker an
    /// earlier try may have set.
    pub(crate) fn publish_call(
        &self,
        envelopes: &[Envelope],
        call_id: &str,
        attempt: Try,
    ) -> Result<Vec<usize>, Error> {
        let ttl = self.endpoint.options().emit_marker_ttl;
        let mut may_have_run = false;
        // The transaction does not look at the marker, so only a call's first try may
        // go that way.
        if attempt != Try::Again && self.routes.enabled() {
            let mut sent = false;
            let routed = self.pool.run_pooled(&self.endpoint, |pooled| {
                publish_routed(
                    pooled,
                    &self.routes,
                    &self.doubts,
                    RoutedCall {
                        envelopes,
                        call_id,
                        marker_ttl_ms: millis(ttl),
                        whole: attempt == Try::First,
                    },
                    &mut sent,
                )
            });
            match routed {
                Ok(Routed::Stored(counts)) => return Ok(counts),
                Ok(Routed::Unrouted) => {}
                Ok(Routed::Collision { key, found, partly }) => {
                    return Err(match partly {
                        false => Error::KeyCollision { key, found },
                        true => Error::PartlyStored { key, found },
                    })
                }
                // The script path decides: it fails the same way for a lasting cause,
                // and the marker keeps it from storing twice after a try that ran.
                Err(error) => {
                    may_have_run = sent && !certainly_not_run(&error);
                    tracing::warn!(error = %ErrorChain(&error), operation = "publish events", "Redis failed; trying again");
                }
            }
        }
        let reply = self
            .retrying(
                "publish events",
                is_transient,
                |error| may_have_run |= !certainly_not_run(error),
                |connection| {
                    self.doubts.settle(connection, millis(ttl))?;
                    PublishScript::invoke(connection, envelopes, call_id, ttl)
                },
            )
            .map_err(|error| {
                if may_have_run {
                    Error::ReplyLost {
                        endpoint: self.endpoint.redacted().to_owned(),
                        source: error.into(),
                    }
                } else {
                    self.endpoint.error("publish events", error)
                }
            })?;
        stored(reply, call_id)
    }

    /// Registers a service; the typed form of [`Backend::register`].
    pub fn register_service(&self, registration: &Registration) -> Result<(), Error> {
        let service = &registration.service;
        let reply = self.with_retries("register the service", |connection| {
            RegisterScript::invoke(
                connection,
                service,
                registration.partition_count,
                &registration.events,
            )
        })?;
        match reply {
            RegisterReply::Registered => Ok(()),
            RegisterReply::Conflict { stored, non_empty } => Err(Error::PartitionCountConflict {
                service: service.clone(),
                requested: registration.partition_count,
                stored,
                non_empty,
            }),
            RegisterReply::WrongType { key, found } => Err(Error::KeyCollision { key, found }),
            RegisterReply::Reserved { event, owner } => Err(Error::KeyCollision {
                key: event,
                found: format!("partition of service {owner:?}"),
            }),
            RegisterReply::InvalidCount { requested } => Err(Error::InvalidOptions {
                option: "partition_count",
                reason: format!(
                    "{requested} is not a whole number from 1 to {}",
                    hivent_core::MAX_PARTITION_COUNT
                ),
            }),
        }
    }
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("endpoint", &self.endpoint.redacted())
            .field("options", self.endpoint.options())
            .finish()
    }
}

impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    /// Publishes in calls of up to 500 events (or 4 MiB of JSON), each atomic. The
    /// chunks of one call have ids derived from its id (`<id>`, `<id>:1`, …), so trying
    /// the whole call again ([`Backend::republish`]) stores only the chunks that were
    /// not stored.
    fn publish(&self, call_id: &str, envelopes: &[Envelope]) -> hivent_core::Result<Vec<usize>> {
        self.publish_chunks(call_id, envelopes, Try::First)
    }

    fn republish(&self, call_id: &str, envelopes: &[Envelope]) -> hivent_core::Result<Vec<usize>> {
        self.publish_chunks(call_id, envelopes, Try::Again)
    }

    /// Without the `tokio` feature the default: the blocking publish, when polled.
    #[cfg(feature = "tokio")]
    fn publish_async<'a>(
        &'a self,
        call_id: &'a str,
        envelopes: &'a [Envelope],
    ) -> PublishFuture<'a> {
        Box::pin(self.publish_chunks_async(call_id, envelopes, Try::First))
    }

    #[cfg(feature = "tokio")]
    fn republish_async<'a>(
        &'a self,
        call_id: &'a str,
        envelopes: &'a [Envelope],
    ) -> PublishFuture<'a> {
        Box::pin(self.publish_chunks_async(call_id, envelopes, Try::Again))
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

/// The pauses between emit tries: doubling from `emit_backoff`, jittered so that
/// producers that failed together do not retry together.
pub(crate) fn emit_pauses(options: &RedisOptions) -> hivent_core::RetryPolicy {
    hivent_core::RetryPolicy::endless(
        options.emit_backoff,
        options.emit_backoff.saturating_mul(1 << 10),
    )
}

/// What `publish.lua`'s reply means for the call.
pub(crate) fn stored(reply: PublishReply, call_id: &str) -> Result<Vec<usize>, Error> {
    match reply {
        PublishReply::Stored { counts, already } => {
            if already {
                tracing::debug!(
                    call_id,
                    "the events were stored by an earlier try of the call"
                );
            }
            Ok(counts)
        }
        PublishReply::MissingPartitionCount {
            service,
            event,
            found,
        } => Err(Error::MissingPartitionCount {
            service,
            event,
            found,
        }),
        PublishReply::WrongType { key, found } => Err(Error::KeyCollision { key, found }),
    }
}

/// Whether a publish call was tried before under its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Try {
    /// The first try of a user's whole call.
    First,
    /// The first try of one chunk of a larger call.
    FirstOfChunk,
    /// A call, or chunk, tried before.
    Again,
}

impl RedisBackend {
    fn publish_chunks(
        &self,
        call_id: &str,
        envelopes: &[Envelope],
        attempt: Try,
    ) -> hivent_core::Result<Vec<usize>> {
        Chunk::publish_all(call_id, envelopes, attempt, |events, id, attempt| {
            self.publish_call(events, id, attempt)
        })
    }
}

/// One atomic publish call of a user's call: up to [`BATCH_EVENTS`] events or
/// [`BATCH_BYTES`] of JSON (at least one event).
pub(crate) struct Chunk {
    /// Its position in the call.
    index: usize,
    /// `<id>` for the first chunk, `<id>:<n>` for the others, so trying the whole call
    /// again stores only the chunks that were not stored.
    pub(crate) id: String,
    pub(crate) events: std::ops::Range<usize>,
    pub(crate) attempt: Try,
}

impl Chunk {
    pub(crate) fn all(call_id: &str, envelopes: &[Envelope], attempt: Try) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < envelopes.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < envelopes.len()
                && end - start < BATCH_EVENTS
                && (end == start || bytes + envelopes[end].json.len() <= BATCH_BYTES)
            {
                bytes += envelopes[end].json.len();
                end += 1;
            }
            let index = chunks.len();
            chunks.push(Chunk {
                index,
                id: match index {
                    0 => call_id.to_owned(),
                    n => format!("{call_id}:{n}"),
                },
                events: start..end,
                attempt: match attempt {
                    Try::First if index > 0 || end < envelopes.len() => Try::FirstOfChunk,
                    other => other,
                },
            });
            start = end;
        }
        chunks
    }

    /// Publishes every chunk of a call in order with `publish` (its events, its id,
    /// its try); per event, how many services stored it. Stops at the first failure.
    pub(crate) fn publish_all(
        call_id: &str,
        envelopes: &[Envelope],
        attempt: Try,
        mut publish: impl FnMut(&[Envelope], &str, Try) -> Result<Vec<usize>, Error>,
    ) -> hivent_core::Result<Vec<usize>> {
        let mut counts = Vec::with_capacity(envelopes.len());
        for chunk in Chunk::all(call_id, envelopes, attempt) {
            match publish(&envelopes[chunk.events.clone()], &chunk.id, chunk.attempt) {
                Ok(stored) => counts.extend(stored),
                Err(error) => return Err(chunk.failed(error)),
            }
        }
        Ok(counts)
    }

    /// The call's error when this chunk failed with `error`.
    pub(crate) fn failed(&self, error: Error) -> hivent_core::Error {
        match error {
            // Not retried, whatever chunk: a retry would store second copies.
            error @ Error::PartlyStored { .. } => error.into(),
            // Earlier chunks are stored: the call as a whole is partly done.
            error if self.index > 0 => hivent_core::Error::MaybeStored {
                backend: "redis",
                source: Box::new(error),
            },
            error => error.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::server_for_tests;

    fn envelope(name: &str, hash: u32, json: &str) -> Envelope {
        Envelope {
            name: name.into(),
            partition_hash: hash,
            json: json.into(),
        }
    }

    /// A call retried with its call id after it was stored (the reply was lost) writes
    /// nothing the second time, in any receiving service; a new call id stores again.
    #[test]
    #[cfg_attr(
        no_redis_server,
        ignore = "redis-server is not installed (CI installs it)"
    )]
    fn retried_call_stores_no_second_copy() {
        let Some(server) = server_for_tests() else {
            return;
        };
        let backend = RedisBackend::connect(&server.url()).unwrap();
        for (service, count) in [("a", 2), ("b", 3)] {
            backend
                .register_service(&Registration {
                    service: service.into(),
                    events: vec!["*".into()],
                    partition_count: count,
                })
                .unwrap();
        }
        let events = [envelope("x", 5, "one"), envelope("y", 5, "two")];
        // A chunk has a marker of its own (a whole call's retries are in
        // tests/routed_emit.rs: its marker is the connection's).
        backend
            .publish_call(&events, "call-1", Try::FirstOfChunk)
            .unwrap();
        backend.publish_call(&events, "call-1", Try::Again).unwrap();
        let list = |key: &str| -> Vec<String> {
            backend
                .run("read", |c| {
                    redis::cmd("LRANGE").arg(key).arg(0).arg(-1).query(c)
                })
                .unwrap()
        };
        assert_eq!(list("a:1"), ["two", "one"]);
        assert_eq!(list("b:2"), ["two", "one"]);
        backend.publish_call(&events, "call-2", Try::First).unwrap();
        assert_eq!(list("a:1"), ["two", "one", "two", "one"]);
    }
}
