//! hivent-redis: the partitioned Redis backend of hivent, wire compatible with the
//! Ruby gem.
//!
//! Applications usually reach it through `hivent::connect` with `backend = "redis"`;
//! built by hand it is one [`RedisBackend`] per process, shared by every handle:
//!
//! ```no_run
//! use std::sync::Arc;
//! use hivent_core::{Config, Hivent};
//! use hivent_redis::{RedisBackend, RedisOptions};
//!
//! let backend = Arc::new(RedisBackend::with_options(
//!     "redis://127.0.0.1:6379/0",
//!     RedisOptions::default().pool_size(8),
//! )?);
//! let shop = Hivent::new(Config::builder().client_id("shop").build()?, backend.clone());
//! let billing = Hivent::new(Config::builder().client_id("billing").partition_count(8).build()?, backend);
//! billing.signal("order:placed")?.receive(|event| Ok(println!("bill {}", event.payload)));
//! let consumer = billing.consumer()?;
//! shop.signal("order:placed")?.emit(&serde_json::json!({"order": 1}), 1)?;
//! consumer.run_until_idle()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Structures
//!
//! Shared with the Ruby gem (names and types must not change):
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `<event>` | set | services that receive the event; `*` for the wildcard |
//! | `<service>:partition_count` | string | the service's partition count |
//! | `<service>:<n>` | list | partition n; producers `LPUSH`, the oldest item is at the right |
//! | `<service>:<n>:dead_letter` | list | failed items of partition n, as read |
//!
//! hivent-rs's own, under `<service>:hivent:` so they cannot collide with an event
//! named `<service>:something` (event names are keys too):
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `<service>:hivent:events` | set | the events the service registered last |
//! | `<service>:hivent:members` | sorted set | live consumers, scored by expiry (Redis time, ms) |
//! | `<service>:hivent:owners` | hash | partition → owning member |
//! | `<service>:hivent:tokens` | hash | partition → fencing token of its claim |
//! | `<service>:hivent:fence` | string | counter the tokens come from; only grows |
//! | `<service>:hivent:attempts` | hash | partition → failed attempts at its oldest item: `<sha1 of the item> <attempts> <first failure, ms>`; dropped with the item (ack, dead-letter) |
//! | `<service>:hivent:failures:<n>` | hash | SHA-1 of a dead letter of partition n → its failure record (JSON); written with the move, deleted with the item (replay, purge) |
//! | `<service>:hivent:heartbeats` | hash | member → `<ms> <interval ms>`: its last heartbeat (Redis time) and how often it means to, for `status`; dropped when it leaves or expires |
//! | `<service>:hivent:rates` | hash | partition → `<events/s> <ms>`: its processing rate, decaying with a 10 s time constant, as of its last acknowledgement |
//! | `<service>:hivent:wake` | channel | wake-up notices after a push |
//! | `<service>:hivent:group` | channel | group changes: a member joined, left, expired or released a partition |
//! | `hivent:emitted:<call id>` | string | marks a publish call as stored, for [`RedisOptions::emit_marker_ttl`] (60 s); about 160 bytes each |
//! | `hivent:emitted:connection:<random id>` | string | the id of the last whole call one producer connection's transaction stored, for the same time |
//! | `hivent:registry` | string | the registry version: moved on by every registration that changes who receives what or a partition count (Redis `TIME` in µs, or one past the stored version if the clock is behind it) |
//!
//! Every name is built in [`keys`]. All scripts are in `lua/` and run by EVALSHA,
//! reloaded after NOSCRIPT (a restarted Redis or `SCRIPT FLUSH`).
//!
//! # Producing
//!
//! Each emit (or chunk of up to 500 events of a batch) carries a call id (the chunks
//! `<id>`, `<id>:1`, …) and goes one of two ways, each one round trip in the steady
//! state (reading routes, and the first transaction on a new connection, add a few).
//!
//! **By cached routes** (the steady state; `route_cache.rs`, `routed_emit.rs`). From
//! the second emit of an event name on (the first goes by the script, so a process that
//! emits once pays one round trip as before), a producer reads where the name goes (its
//! set and `*`, each receiving service's partition count) with `routes.lua`, and then
//! emits by a plain transaction:
//! `MULTI`, a marker `SET … PX`, one variadic `LPUSH` per partition list in emit order,
//! one `PUBLISH` per receiving service naming the partitions written (`0,3`), `EXEC`,
//! then `WATCH hivent:registry` and `MGET hivent:registry` for the next call. Every
//! hivent registration that changes who receives what or a partition count moves the
//! registry version (`hivent:registry`), so a transaction on a connection that watches
//! it aborts, writing nothing, once the routes it was built from are out of date; the
//! call then goes by the script. The Ruby gem registers by writing the sets and counts
//! itself, without moving the version, so cached routes also expire after
//! [`RedisOptions::route_cache_ttl`] (1 s): a service the gem registers gets a cached
//! producer's events from at most that long after, and a partition count the gem
//! changes is used by such a producer up to that long late (the gem itself strands
//! events when a count changes; hivent's registration refuses the change until the old
//! partitions are drained). This replaces the script of the
//! first version for the steady state because a script call alone cost about 3 µs of
//! Redis time and its registry reads as much again: a single emit went from about 22 µs
//! to about 5 µs of Redis time, a batch from 3.4 to 0.4 µs per event (BENCHMARKS.md).
//! What it gives up: a transaction does not check before it writes, so a partition list
//! that another tool turned into another type after registration fails the call with
//! [`Error::PartlyStored`] (the call's other lists got their events;
//! `hivent_core::Error::EmitPartlyStored` to the application, not retried since that
//! would store second copies) or, when it was the call's only list,
//! [`Error::KeyCollision`] with nothing written. Replies are read one by one and the
//! first failure ends the call, so a stalled Redis fails it after one response timeout.
//!
//! **By the script** (`publish.lua`: the first emit of a name, every retry, every emit
//! the cache cannot route, and every emit with the cache off): it reads each event's set and `*`, checks that every
//! receiving service has a valid partition count and that every key it reads or pushes
//! to has the right type (a colliding name fails the call with
//! [`Error::KeyCollision`]), all before it writes anything; then it pushes and wakes as
//! above. Types are asked for (`TYPE`) only where a read failed, or for the lists only
//! when the call pushes to several.
//!
//! **Retries write no second copy.** The script sets `hivent:emitted:<call id>` (`SET
//! NX`, once every check passed) in the same atomic step as its pushes, and a try of a
//! call whose marker exists writes nothing. A transaction cannot look at a marker, so
//! only a call's first try goes that way: a whole call records its id in its
//! connection's marker (`hivent:emitted:connection:<random id>`, which exists already
//! and keeps its lifetime, `SET … KEEPTTL`, renewed every quarter of it: it costs Redis
//! half what a new key per call does), a chunk of a larger call sets its own. When a
//! transaction's reply is lost, the retry first closes that connection on the server
//! (`CLIENT KILL ID … ADDR …`, the pair the connection had, so no other connection is
//! hit after a restart: its transaction then either ran or never will; a Redis before
//! 6.2, or a user not allowed to do that, keeps every emit on the script) and, if the
//! connection's marker names the call, sets the call's own marker, which the script
//! honours. What is in doubt is remembered by the [`RedisBackend`] that sent it, so
//! `Hivent::retry_emit` must go through a `Hivent` on the same backend (the usual
//! case: the one whose emit failed). Transient
//! failures are retried with doubling pauses (4 tries by default); when the last fails
//! after a try that may have run, the error is [`Error::ReplyLost`]
//! (`hivent_core::Error::EmitUncertain` to the application, which completes the call
//! with `Hivent::retry_emit`), and only a failure after which nothing can have run says
//! the event was not emitted. A marker of its own costs about 160 bytes for
//! [`RedisOptions::emit_marker_ttl`] (60 s); by cached routes only chunks and retries
//! set one.
//!
//! # Registering
//!
//! A worker's start runs one script that first checks every key it will write (the
//! count, the event sets, the service's partitions and dead letter queues) and refuses
//! an event named like another registered service's partition, changing nothing then;
//! otherwise it sets `<service>:partition_count` (1 to 1,024), adds the service to the
//! set of each event it receives, and removes it from the sets of events it registered before
//! but no longer receives. A different partition count is refused while any old
//! partition still holds events (they were placed by the old count), and accepted once
//! they are drained.
//!
//! # Consuming
//!
//! Each consumer session is a member of its service's group, with three connections:
//! one for its heartbeat thread, one for fetch/ack/dead-letter, and one subscribed to
//! the wake channel (held by a small thread from join on, so no notice is missed).
//!
//! - **Heartbeat** (every [`RedisOptions::heartbeat_interval`], on the core's heartbeat
//!   thread, and at once on each notice of the group channel): one script refreshes
//!   the member's expiry from Redis `TIME` (host clocks do not matter), drops expired
//!   members, sorts the live ones by name (byte order) and computes the member's share
//!   exactly as [`hivent_core::desired_partitions`] does. It releases partitions it
//!   should no longer own, except those whose batches the consumer started and has not
//!   settled (acknowledged or dead-lettered), which it reports for hand-over instead;
//!   voids claims of dead members; and claims its
//!   free desired partitions with a token from the fence counter. When the group
//!   changed (the member joined or rejoined, others expired, or it released
//!   something) it publishes on the group channel, so the other members heartbeat at
//!   once: a joining member gets its share, and a leaving member's partitions are
//!   taken, within a few round trips rather than a heartbeat interval.
//! - **Lease**: a successful heartbeat renews a local lease of four fifths of
//!   [`RedisOptions::member_ttl`], measured on the monotonic clock from when the
//!   heartbeat was *sent*, so it always ends before the membership can expire in Redis.
//! - **Fetch** is one script that, for the owned partitions it is given, checks the
//!   claim (owner and token) and reads the oldest items with `LRANGE`, in one atomic
//!   step: a batch is never read under a claim already voided. A partition whose claim
//!   is gone is reported lost, and the consumer heartbeats at once. It is given the
//!   partitions that may hold events: named by a wake-up notice, newly claimed, or not
//!   found empty at their last read; and every owned partition once per idle wait,
//!   since the Ruby gem's producers publish no wake-up and a notice can be lost with
//!   the subscription (which then counts as naming every partition). So an owner of
//!   many partitions reads one or two per wake-up, not all of them. When nothing was
//!   read it waits on the wake channel up to the idle wait. A member whose lease ran
//!   out fetches nothing.
//! - **Per event**, before each handler, the consume loop asks the session (no I/O)
//!   whether the partition is still owned under the batch's claim and the lease is
//!   fresh. If not, no further handler of that batch starts: what was handled is
//!   acknowledged if the claim still stands, and the rest is left to the owner. If the
//!   heartbeat reported the partition for hand-over, the handled prefix is acknowledged
//!   and the partition released at once (`release.lua`, which publishes on the group
//!   channel), after the event in hand rather than after the batch. Two live processes
//!   are therefore inside handlers of one partition at once only when one of them
//!   stalled (SIGSTOP, a long GC-like pause, a frozen VM) in the middle of a handler
//!   past its lease: that one handler finishes, nothing after it starts.
//! - **Ack** and **dead-letter** are scripts that first check that the caller still
//!   holds the partition with its token; otherwise they change nothing and the caller
//!   gets [`hivent_core::Error::Fenced`]. Ack removes exactly the acknowledged count
//!   from the right end (`LTRIM`); dead-letter checks that the oldest item is the one
//!   read and moves it to the dead letter queue with `RPOPLPUSH`, atomically. The
//!   batches of one fetch are acknowledged together, by one script call for all their
//!   partitions (each checked against its own claim), once the fetch is processed: with
//!   one call per partition, a worker owning many partitions under steady traffic spent
//!   a round trip per event and fell behind (at 5,000 events/s over 256 partitions, p50
//!   latency 0.4 → 4.5 ms on this project's test machine). Until then those partitions
//!   count as worked on, so no heartbeat releases one with handled events waiting. A slow
//!   batch is acknowledged in steps (every `ConsumerOptions::ack_interval`, 100 ms by
//!   default; earlier batches of the fetch with it), which bounds what a crash makes the
//!   next owner redo; before a failure is recorded, everything handled is acknowledged.
//! - **Leave** removes the member, releases all its partitions and announces it on the
//!   group channel, in one script.
//! - **Ghosts**: member ids are `<host>-<pid>-<start>-<pidns>-<boot>-<random>` (the
//!   process's start time, its pid namespace and the boot id tell a gone process from a
//!   live one elsewhere). At join, members of the same host, boot and pid namespace
//!   whose pid no longer runs, or runs with another start time (reused), are made to
//!   leave, so a restarted worker takes their partitions at its first heartbeat instead
//!   of waiting out their lifetime. A member in another container with the same host
//!   name, or whose identity cannot be read, is never touched: it expires by TTL.
//!
//! # Operations
//!
//! [`RedisBackend`] implements [`hivent_core::Operations`] (status, lag, dead letters).
//! Replaying dead letters puts them back at the oldest (right) end of their partition
//! and, in the same script, voids the partition's claim: the owner's batch in hand can
//! no longer be acknowledged (a session presents the token its batch was read under).
//! The owner's next fetch finds the claim gone; it reclaims the partition at once and
//! reads the replayed events first, so an idle owner handles a replayed event once.
//!
//! # Guarantees
//!
//! At-least-once and per-partition FIFO: an item leaves its partition only by an ack of
//! the owner after processing, or by dead-lettering. At most one live member owns a
//! partition; a member that lost it (stalled past its lifetime, cut off) starts no
//! further handler there, cannot ack or dead-letter there any more, and the new owner
//! processes the unacknowledged items again. RELIABILITY.md in the repository lists
//! the faults tested and their figures. Every
//! receiving service gets exactly one copy of each emit, even when the emit is retried.
//! Fetch-then-trim from the right end is sound because only the owner removes items
//! and producers only push on the left: anything else that writes to a partition must
//! push on the left too, or void the partition's claim in the same step, as a
//! dead-letter replay does.
//!
//! # Compatibility with the Ruby gem
//!
//! Producers and consumers of different services mix freely across languages: events
//! have the gem's JSON shape and land in the gem's lists. The coordination of one
//! service's consumers is hivent-rs's own, so **all consumers of one service must be
//! hivent-rs workers**; a Ruby consumer of the same service would pop items this
//! protocol believes it owns. Like the gem's, the standalone scripts compute keys at
//! run time, so [`RedisBackend`] refuses a Redis Cluster node at connect
//! ([`Error::ClusterNotSupported`]) rather than fail at the first emit; a cluster is
//! served by [`RedisClusterBackend`] ("Cluster mode" below). `rediss://` connects
//! with TLS (rustls); the server's certificate is checked against the system's roots,
//! or against the file named by `SSL_CERT_FILE` (or the directory `SSL_CERT_DIR`) for a
//! private CA. Redis should run with `maxmemory-policy noeviction`; connecting logs a
//! warning otherwise.
//!
//! # Cluster mode
//!
//! [`RedisClusterBackend`] (backend `redis-cluster`; the endpoint is one or more seed
//! nodes, `redis://10.0.0.1:7000,redis://10.0.0.2:7000`, and several URLs alone select
//! it) runs on Redis Cluster through redis-rs's cluster client, which follows MOVED and
//! ASK. It has a keyspace of its own, so the Ruby gem, which has no cluster support,
//! does not share it. Every script touches one hash slot; the hash tag (the part in
//! braces, which alone decides the slot) is the partition for everything of one
//! partition, so a service's partitions spread over the masters. Every name is built in
//! [`cluster_keys`].
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `{<service>:<n>}` | list | partition n; producers `LPUSH`, the oldest item is at the right |
//! | `{<service>:<n>}:dead_letter` | list | its failed items, as read |
//! | `{<service>:<n>}:hivent:failures` | hash | SHA-1 of a dead letter → its failure record |
//! | `{<service>:<n>}:hivent:owner` | hash | one field, `n` → the member holding the claim |
//! | `{<service>:<n>}:hivent:token` | hash | one field, `n` → the claim's fencing token |
//! | `{<service>:<n>}:hivent:lease` | string | the owner, while the claim's lease runs (`PX` member lifetime); renewed by each heartbeat |
//! | `{<service>:<n>}:hivent:fence` | string | the counter the partition's tokens come from |
//! | `{<service>:<n>}:hivent:attempts` | hash | one field, `n` → failed attempts at the oldest item |
//! | `{<service>:<n>}:hivent:rate` | hash | one field, `n` → `<events/s> <ms>` |
//! | `{<service>:<n>}:hivent:acked` | hash | one field, `n` → `<token> <count>`: items acknowledged under the claim's token, so an ack the client sends twice takes nothing more |
//! | `{<service>:<n>}:hivent:partition_count` | string | the count a registration that changed it stamped on the partition; an emit computed with another count writes nothing there |
//! | `{<service>:<n>}:hivent:emitted:<call id>` | string | marks that the call stored its events in this partition, for the marker lifetime |
//! | `{<service>}:hivent:members` | sorted set | live consumers, scored by expiry |
//! | `{<service>}:hivent:heartbeats` | hash | member → `<ms> <interval ms>` |
//! | `{hivent}:receivers:<event>` | set | services that receive the event (`*`: every event) |
//! | `{hivent}:partition_count:<service>` | string | the service's partition count |
//! | `{hivent}:events:<service>` | set | the events the service registered last |
//! | `{hivent}:services` | set | registered services, for `status` and `dlq` |
//! | `{hivent}:registry` | string | the registry version, moved on by every change |
//! | `{hivent}:registry:changes` | channel | a registration changed who receives what |
//! | `<service>:hivent:wake`, `<service>:hivent:group` | channel | as in standalone mode; classic pub/sub reaches every node |
//!
//! The partition scripts (fetch, ack, dead-letter, attempts, release, replay, purge)
//! are the standalone ones, run on a partition's own keys: they check a claim in a hash
//! whose field is the partition number, and here that hash holds one field. Calls go
//! as `EVAL` with the script's text (comments stripped), not `EVALSHA`: a pipeline
//! spans nodes, and a node that lost its script cache (a promoted replica) must not
//! fail one call of a pipeline whose others ran.
//!
//! **Producing.** The routes of an event name (receiving services and their counts)
//! are read from the `{hivent}` slot by one script and cached; every registration that
//! changes them publishes on `{hivent}:registry:changes`, and a producer's listener
//! (a thread, started at its first emit) drops the cache on each notice and whenever
//! its subscription was lost, so the steady state has no registry round trip; the
//! cache also expires after [`RedisOptions::route_cache_ttl`]. A call is then grouped
//! by receiving partition: one publish script per partition, each setting the call's
//! marker in that partition's slot and checking its stamped count, all sent in one
//! pipeline (one round trip per master). A try of a partition that has its marker
//! writes nothing, so retries
//! (automatic, or `Hivent::retry_emit`) never store a second copy.
//!
//! **What a partial failure leaves.** An emit is atomic per partition, not across
//! them: when a master fails during the pipeline, some partitions may have the events
//! and others not. The error is then [`Error::NotAllWritten`] (to the application
//! `hivent_core::Error::EmitUncertain`), which names the services whose every
//! partition has the call (their markers were read back) and those that may lack it;
//! `Hivent::retry_emit` with the same call completes it, writing only the missing
//! partitions. Consumers of the written services may see the event before the others
//! get it. Only a failure after which nothing can have run (a refused connection, an
//! error Redis gives before running anything) and no marker exists, is a plain "not
//! emitted".
//!
//! **Consuming.** A heartbeat renews the membership in `{<service>}` and reads the
//! partition count, computes the member's share as in standalone mode, then runs one
//! claim script per partition it owns or should own, in the partition's slot: renew
//! (the lease key's `PX`), take a free partition or one whose owner's lease ran out
//! (a new token from the partition's counter), or release. A claim held by a live
//! lease is never taken: a member that should get it waits until the owner releases
//! it (the owner's heartbeat, prompted by the group notice) or its lease runs out.
//! The local lease starts before the heartbeat is sent and lasts four fifths of the
//! member lifetime, the Redis one starts when the claim script runs and lasts the
//! whole lifetime, so a stalled owner stops starting handlers before anyone can claim
//! its partitions. Fetch, ack and dead-letter are fenced by the claim in the
//! partition's own slot, as in standalone mode; the batches of one fetch are read and
//! acknowledged by one pipeline. Leaving releases the member's claims in every
//! partition's slot.
//!
//! **Guarantees, per mode.** Both modes keep at-least-once delivery, per-key order, at
//! most one live owner per partition, fenced acks and dead letters, and one copy per
//! receiving service for a retried emit. Standalone mode stores an emit for all its
//! receiving services in one atomic step; cluster mode in one step per partition, as
//! above.
//!
//! **Failover.** Redis replicates asynchronously: a master that fails right after a
//! write can lose it when its replica is promoted. Without
//! [`RedisOptions::replica_acks`], what can be lost so is (a) emits acknowledged to the
//! producer in the last moments before the master failed (gone, with no error), and
//! (b) acks and dead-letter moves of that time (undone: those events are handled
//! again, which at-least-once allows). With `replica_acks(1)` every emit pipeline is
//! followed by `WAIT 1 <timeout>` on each master it wrote to (one more round trip per
//! such master, on the connection that wrote), and an emit that fewer replicas
//! acknowledged fails with [`Error::NotReplicated`] (uncertain, to be completed by
//! `Hivent::retry_emit`), so an emit reported stored survives the failover of one
//! master; acks and dead-letter moves wait too, and log a warning when not
//! acknowledged. A master without a live replica (after its replica was promoted,
//! until the old master returns as a replica) cannot acknowledge: emits to it with the
//! option fail as uncertain until it has one again; emits to other masters go on.
//! Producers and workers follow a promotion by reopening their cluster connection
//! after any failure, which reads the slot map anew; the wake-up subscription moves to
//! the next seed (at start too, when the first seed does not answer). `hivent bench
//! --cluster` measures the option's cost (BENCHMARKS.md).
//!
//! **Sent twice.** redis-rs's cluster client sends a command again after a dropped
//! connection or a redirect, so a script may run twice. Emits carry their marker,
//! acks a count per claim token (`{…}:hivent:acked`), claims and reads are the same
//! when repeated, replays and purges name their items; a dead-letter move sent twice
//! finds its item gone and reports a mismatch, and a failed attempt sent twice is
//! counted twice (the event is dead-lettered one attempt early).
//!
//! **Limits.** A changed partition count is refused while an old partition holds
//! events, as in standalone mode. The registration first stamps every partition of
//! either count with the new one (`{…}:hivent:partition_count`), then checks the old
//! partitions, then moves the registry: an emit computed with the old count (routes
//! cached before the change notice arrived) is refused by the stamp and reads its
//! routes again, so no event lands in a partition the new count does not have. While
//! a change is under way such emits wait (up to 50 rounds of 20 ms) and then fail as
//! uncertain; a registration that failed between its stamps and the registry leaves
//! them failing until it runs again. An emit racing a change, some of whose events
//! were stored under the old count before the stamps, can store those again under the
//! new one (a second copy, never a loss). While one master is unreachable, a member
//! whose partitions include one of its slots cannot heartbeat (the claim pipeline
//! fails as a whole), so it pauses all its partitions until the failover completes;
//! nothing is lost. Leases and emit markers expire by TTL, so Redis must run with
//! `maxmemory-policy noeviction` (a `volatile-*` policy would drop them first). One
//! fetch reads each partition with its share of `max_fetch_bytes`, at least one item
//! each. Service names may not contain `{` or `}`. Async emits (`emit_async`) are the
//! blocking emit when polled. Ghost members (a killed worker of this host) are removed
//! at join as in standalone mode, their claims released in every partition's slot.
//!
//! # Features
//!
//! - `tls` (default): `rediss://` endpoints, through rustls with the ring provider.
//!   Without it a `rediss://` endpoint is refused with an error that says so.
//! - `tokio`: [`hivent_core::Backend::publish_async`] on redis-rs's multiplexed tokio
//!   connection, for `emit_async` and its kin. Every async emit runs `publish.lua`
//!   (one round trip; the cached-route transaction needs a `WATCH` on a connection of
//!   its own, which a multiplexed connection cannot give), with the same call markers,
//!   retries and errors as the blocking path; a retry first settles the blocking
//!   path's transactions in doubt. Without it, `publish_async` is the blocking publish.
//! - `test-server`: [`test_server`], which starts throwaway `redis-server` processes on
//!   free loopback ports (for tests and `hivent bench`); not for production code.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "tokio")]
mod async_publish;
mod backend;
mod cluster_backend;
mod cluster_connection;
mod cluster_group;
pub mod cluster_keys;
mod cluster_operations;
mod cluster_routes;
mod cluster_script;
mod connection;
mod error;
mod group_store;
pub mod keys;
mod member;
mod operations;
mod options;
mod route_cache;
mod routed_emit;
mod script;
mod session;
#[cfg(feature = "test-server")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-server")))]
pub mod test_cluster;
#[cfg(feature = "test-server")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-server")))]
pub mod test_server;
mod wake;

pub use backend::RedisBackend;
pub use cluster_backend::RedisClusterBackend;
pub use error::{Error, RedisClientError};
pub use options::RedisOptions;
pub use session::RedisSession;
