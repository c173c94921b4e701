//! The Lua scripts, each loaded once and called through one typed wrapper.
//!
//! Calls go by EVALSHA; when Redis lost its script cache (a restart, `SCRIPT FLUSH`)
//! the reply is NOSCRIPT and the call loads the script and runs it again, so a lost
//! cache never fails an emit or a consumer.

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::Duration;

use hivent_core::{DeadLetterPick, Envelope};
use redis::{Connection, FromRedisValue, ParsingError, RedisResult, Script, Value};

use crate::keys;

/// The scripts that read a partition count get its one parser prepended.
macro_rules! with_partition_count {
    ($file:literal) => {
        concat!(
            include_str!("../lua/partition_count.lua"),
            include_str!($file)
        )
    };
}
pub(crate) use with_partition_count;

static PUBLISH: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_partition_count!("../lua/publish.lua")));
static REGISTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../lua/registry_version.lua"),
        with_partition_count!("../lua/register.lua")
    ))
});
static ROUTES: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_partition_count!("../lua/routes.lua")));
static HEARTBEAT: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_partition_count!("../lua/heartbeat.lua")));
/// The scripts that write under a partition's claim get its one check prepended.
macro_rules! with_claim {
    ($file:literal) => {
        concat!(include_str!("../lua/claim.lua"), include_str!($file))
    };
}
pub(crate) use with_claim;

static ACK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/ack.lua")));
static DEAD_LETTER: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_claim!("../lua/dead_letter.lua")));
static LEAVE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/leave.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(with_claim!("../lua/release.lua")));
static FETCH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/fetch.lua")));
static ATTEMPT: LazyLock<Script> = LazyLock::new(|| Script::new(with_claim!("../lua/attempt.lua")));
static DEAD_LETTER_PAGE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/dead_letter_page.lua")));

/// The scripts that take dead letters out get the one picker prepended.
macro_rules! with_pick {
    ($file:literal) => {
        concat!(
            include_str!("../lua/pick_dead_letters.lua"),
            include_str!($file)
        )
    };
}
pub(crate) use with_pick;

static REPLAY: LazyLock<Script> = LazyLock::new(|| Script::new(with_pick!("../lua/replay.lua")));
static PURGE: LazyLock<Script> = LazyLock::new(|| Script::new(with_pick!("../lua/purge.lua")));

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

pub(crate) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".to_owned()),
        _ => None,
    }
}

pub(crate) fn number<T: std::str::FromStr>(value: &Value) -> Result<T, ParsingError> {
    text(value)
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| format!("expected a number, got {value:?}").into())
}

/// A stored partition count as `partition_count.lua` reads one: a whole number from
/// 1 to [`hivent_core::MAX_PARTITION_COUNT`], else `None`.
pub(crate) fn partition_count(stored: Option<&str>) -> Option<u32> {
    stored
        .and_then(|text| text.parse::<u32>().ok())
        .filter(|n| (1..=hivent_core::MAX_PARTITION_COUNT).contains(n))
}

/// Splits a script's `{tag, ...}` reply into its tag and the rest.
pub(crate) fn tagged(value: Value) -> Result<(String, Vec<Value>), ParsingError> {
    if let Value::Array(mut items) = value {
        if !items.is_empty() {
            if let Some(tag) = text(&items[0]) {
                items.remove(0);
                return Ok((tag, items));
            }
        }
        return Err(format!("expected a tagged array, got {items:?}").into());
    }
    Err(format!("expected a tagged array, got {value:?}").into())
}

/// `publish.lua`: stores one copy of each event in every receiving service.
///
/// - KEYS: none; the receiving services are read from each event's set and `*`.
/// - ARGV: the call's marker key (`hivent:emitted:<call id>`) and its lifetime (ms),
///   the `:partition_count` suffix, the partition separator, the wake channel suffix,
///   `*`, then for each event its name, partition hash and JSON.
/// - Reply: [`PublishReply`]. Every key type and partition count is checked before the
///   first write.
pub(crate) struct PublishScript;

/// What [`PublishScript`] answers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PublishReply {
    /// Per event, how many services received it; `already` when an earlier try of the
    /// call stored it and this one wrote nothing.
    Stored { counts: Vec<usize>, already: bool },
    /// `service` receives `event` but its partition count key holds `found`; nothing
    /// was written.
    MissingPartitionCount {
        service: String,
        event: String,
        found: Option<String>,
    },
    /// `key` is a `found` where the call needs a list or a set; nothing was written.
    WrongType { key: String, found: String },
}

impl FromRedisValue for PublishReply {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let (tag, rest) = tagged(value)?;
        match (tag.as_str(), rest.as_slice()) {
            ("ok" | "already", counts) => Ok(PublishReply::Stored {
                counts: counts.iter().map(number).collect::<Result<_, _>>()?,
                already: tag == "already",
            }),
            ("missing", [service, event, found @ ..]) => Ok(PublishReply::MissingPartitionCount {
                service: text(service).unwrap_or_default(),
                event: text(event).unwrap_or_default(),
                found: found.first().and_then(text),
            }),
            ("wrongtype", [key, found]) => Ok(PublishReply::WrongType {
                key: text(key).unwrap_or_default(),
                found: text(found).unwrap_or_default(),
            }),
            _ => Err(format!("unexpected publish reply {tag:?} {rest:?}").into()),
        }
    }
}

impl PublishScript {
    /// Publishes `envelopes` in one atomic call; a retry must pass the same `call_id`.
    pub(crate) fn invoke(
        connection: &mut Connection,
        envelopes: &[Envelope],
        call_id: &str,
        marker_ttl: Duration,
    ) -> RedisResult<PublishReply> {
        Self::call(envelopes, call_id, marker_ttl).invoke(connection)
    }

    /// [`PublishScript::invoke`] on an async connection.
    #[cfg(feature = "tokio")]
    pub(crate) async fn invoke_async(
        connection: &mut redis::aio::MultiplexedConnection,
        envelopes: &[Envelope],
        call_id: &str,
        marker_ttl: Duration,
    ) -> RedisResult<PublishReply> {
        Self::call(envelopes, call_id, marker_ttl)
            .invoke_async(connection)
            .await
    }

    fn call(
        envelopes: &[Envelope],
        call_id: &str,
        marker_ttl: Duration,
    ) -> redis::ScriptInvocation<'static> {
        let mut call = PUBLISH.prepare_invoke();
        call.arg(keys::emitted_marker(call_id))
            .arg(millis(marker_ttl))
            .arg(keys::PARTITION_COUNT_SUFFIX)
            .arg(keys::PARTITION_SEPARATOR)
            .arg(keys::WAKE_CHANNEL_SUFFIX)
            .arg(keys::WILDCARD_RECEIVERS);
        for envelope in envelopes {
            call.arg(&envelope.name)
                .arg(envelope.partition_hash)
                .arg(&envelope.json);
        }
        call
    }
}

/// `routes.lua`: where events of the given names go, and the registry version.
///
/// - KEYS: none.
/// - ARGV: the registry version key, the partition count suffix, the wildcard set,
///   then the event names.
/// - Reply: [`RoutesReply`].
pub(crate) struct RoutesScript;

/// What [`RoutesScript`] answers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RoutesReply {
    /// The registry version the routes were read under (`None` when none is stored).
    pub(crate) version: Option<String>,
    /// Per name asked for, its receiving services with their partition counts, or
    /// `None` when a set or count key is not what it should be.
    pub(crate) routes: Vec<Option<Vec<(String, u32)>>>,
}

impl FromRedisValue for RoutesReply {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let Value::Array(mut items) = value else {
            return Err(format!("unexpected routes reply {value:?}").into());
        };
        if items.is_empty() {
            return Err("empty routes reply".into());
        }
        let version = match items.remove(0) {
            Value::Nil => None,
            other => Some(String::from_redis_value(other)?),
        };
        let routes = items
            .into_iter()
            .map(|route| match route {
                Value::Array(flat) if flat.len() % 2 == 0 => service_counts(&flat).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<_, _>>()?;
        Ok(RoutesReply { version, routes })
    }
}

impl RoutesScript {
    /// Reads the routes of `names` (each an event name, `*` not included).
    pub(crate) fn invoke(connection: &mut Connection, names: &[&str]) -> RedisResult<RoutesReply> {
        let mut call = ROUTES.prepare_invoke();
        call.arg(keys::REGISTRY_VERSION)
            .arg(keys::PARTITION_COUNT_SUFFIX)
            .arg(keys::WILDCARD_RECEIVERS);
        for name in names {
            call.arg(keys::event_receivers(name));
        }
        call.invoke(connection)
    }
}

/// `register.lua`: records a service's partition count and received events.
///
/// - KEYS: `<service>:partition_count`, `<service>:hivent:events`.
/// - ARGV: the service, its partition count, its partition prefix (`<service>:`),
///   then the event names (each the key of its receivers' set).
/// - Reply: [`RegisterReply`].
pub(crate) struct RegisterScript;

/// What [`RegisterScript`] answers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RegisterReply {
    /// The registration is stored.
    Registered,
    /// `stored` differs from the requested count and the `non_empty` old partitions
    /// still hold events; nothing changed.
    Conflict { stored: u32, non_empty: Vec<u32> },
    /// `key` holds a `found` where the registration writes another type; nothing changed.
    WrongType { key: String, found: String },
    /// `event` is a partition of the registered service `owner`; nothing changed.
    Reserved { event: String, owner: String },
    /// The requested count is out of range; nothing changed.
    InvalidCount { requested: String },
}

impl FromRedisValue for RegisterReply {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let (tag, rest) = tagged(value)?;
        match (tag.as_str(), rest.as_slice()) {
            ("ok", []) => Ok(RegisterReply::Registered),
            ("conflict", [stored, non_empty @ ..]) => Ok(RegisterReply::Conflict {
                stored: number(stored)?,
                non_empty: non_empty.iter().map(number).collect::<Result<_, _>>()?,
            }),
            ("wrongtype", [key, found]) => Ok(RegisterReply::WrongType {
                key: text(key).unwrap_or_default(),
                found: text(found).unwrap_or_default(),
            }),
            ("reserved", [event, owner]) => Ok(RegisterReply::Reserved {
                event: text(event).unwrap_or_default(),
                owner: text(owner).unwrap_or_default(),
            }),
            ("invalid", [requested]) => Ok(RegisterReply::InvalidCount {
                requested: text(requested).unwrap_or_default(),
            }),
            _ => Err(format!("unexpected register reply {tag:?} {rest:?}").into()),
        }
    }
}

impl RegisterScript {
    /// Registers `service` with `partition_count` for exactly `events`.
    pub(crate) fn invoke(
        connection: &mut Connection,
        service: &str,
        partition_count: u32,
        events: &[String],
    ) -> RedisResult<RegisterReply> {
        let mut call = REGISTER.prepare_invoke();
        call.key(keys::partition_count(service))
            .key(keys::registered_events(service))
            .key(keys::REGISTRY_VERSION)
            .arg(service)
            .arg(partition_count)
            .arg(keys::partition_prefix(service));
        for event in events {
            call.arg(keys::event_receivers(event));
        }
        call.invoke(connection)
    }
}

/// `heartbeat.lua`: renews a membership, releases and claims partitions.
///
/// - KEYS: `<service>:hivent:members`, `…:owners`, `…:tokens`, `…:fence`,
///   `<service>:partition_count`, `<service>:hivent:heartbeats`.
/// - ARGV: the member id, the membership lifetime (ms), the group channel, the
///   partitions being worked on (comma-separated, `""` for none), which this call
///   never releases, the member's heartbeat interval (ms, kept beside its last
///   heartbeat for `status`), then the partitions the member owns as far as it knows.
/// - Reply: [`HeartbeatReply`]. Publishes on the group channel when the group changed.
pub(crate) struct HeartbeatScript;

/// One partition a member owns, as a heartbeat reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owned {
    pub(crate) partition: u32,
    pub(crate) token: u64,
    /// False when the member should hand it over (it is being worked on).
    pub(crate) keep: bool,
}

/// What [`HeartbeatScript`] answers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeartbeatReply {
    /// The partitions the member owns now, sorted.
    Owned(Vec<Owned>),
    /// The service has no valid partition count; the count key holds `found`.
    Unregistered { found: Option<String> },
}

impl FromRedisValue for HeartbeatReply {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let (tag, rest) = tagged(value)?;
        match tag.as_str() {
            "owned" if rest.len() % 3 == 0 => {
                let mut owned = rest
                    .chunks_exact(3)
                    .map(|triple| {
                        Ok(Owned {
                            partition: number(&triple[0])?,
                            token: number(&triple[1])?,
                            keep: number::<u8>(&triple[2])? == 1,
                        })
                    })
                    .collect::<Result<Vec<Owned>, ParsingError>>()?;
                owned.sort_unstable_by_key(|o| o.partition);
                Ok(HeartbeatReply::Owned(owned))
            }
            "unregistered" => Ok(HeartbeatReply::Unregistered {
                found: rest.first().and_then(text),
            }),
            _ => Err(format!("unexpected heartbeat reply {tag:?} {rest:?}").into()),
        }
    }
}

impl HeartbeatScript {
    /// Heartbeats `member` of `service`, which believes it owns `owned`, keeping the
    /// partitions in `working` even if no longer desired.
    pub(crate) fn invoke(
        connection: &mut Connection,
        service: &str,
        member: &str,
        ttl: Duration,
        interval: Duration,
        working: &BTreeSet<u32>,
        owned: &[u32],
    ) -> RedisResult<HeartbeatReply> {
        let working = working
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut call = HEARTBEAT.prepare_invoke();
        call.key(keys::members(service))
            .key(keys::owners(service))
            .key(keys::tokens(service))
            .key(keys::fence_counter(service))
            .key(keys::partition_count(service))
            .key(keys::heartbeats(service))
            .arg(member)
            .arg(millis(ttl))
            .arg(keys::group_channel(service))
            .arg(working)
            .arg(millis(interval));
        for partition in owned {
            call.arg(partition);
        }
        call.invoke(connection)
    }
}

/// `fetch.lua`: reads the oldest items of owned partitions, each only under its claim.
///
/// - KEYS: `<service>:hivent:owners`, `<service>:hivent:tokens`, then each partition's
///   list.
/// - ARGV: the member id, the most items per partition, the most bytes in all, then
///   partition/token pairs.
/// - Reply: per partition, a [`PartitionRead`].
pub(crate) struct FetchScript;

/// What a fetch found in one partition.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PartitionRead {
    /// Its oldest items, oldest first; empty only when the partition is empty.
    Items(Vec<Vec<u8>>),
    /// The fetch's byte budget was spent before the partition was read.
    NotRead,
    /// The member's claim on it is gone.
    Lost,
}

impl FetchScript {
    /// Reads up to `max` oldest items of each of `claims` (partition, token), about
    /// `max_bytes` in all.
    pub(crate) fn invoke(
        connection: &mut Connection,
        service: &str,
        member: &str,
        max: usize,
        max_bytes: usize,
        claims: &[(u32, u64)],
    ) -> RedisResult<Vec<PartitionRead>> {
        let mut call = FETCH.prepare_invoke();
        call.key(keys::owners(service)).key(keys::tokens(service));
        for &(partition, _) in claims {
            call.key(keys::partition(service, partition));
        }
        call.arg(member).arg(max.max(1)).arg(max_bytes.max(1));
        for &(partition, token) in claims {
            call.arg(partition).arg(token);
        }
        let reply: Vec<Value> = call.invoke(connection)?;
        reply
            .into_iter()
            .map(|value| match value {
                Value::Int(1) => Ok(PartitionRead::NotRead),
                Value::Int(_) => Ok(PartitionRead::Lost),
                other => Ok(PartitionRead::Items(Vec::<Vec<u8>>::from_redis_value(
                    other,
                )?)),
            })
            .collect()
    }
}

/// The claim a fenced write presents: who, which partition, which token.
pub(crate) struct Claim<'a> {
    pub(crate) service: &'a str,
    pub(crate) member: &'a str,
    pub(crate) partition: u32,
    pub(crate) token: u64,
}

/// `ack.lua`: removes the oldest items of one or more partitions, each fenced by its
/// claim, and the failed attempts counted for their oldest items.
///
/// - KEYS: `<service>:hivent:owners`, `<service>:hivent:tokens`,
///   `<service>:hivent:attempts`, `<service>:hivent:rates` (each partition's
///   processing rate, updated with the count), then each partition's `<service>:<p>`.
/// - ARGV: the member id, then per partition: the partition, the fencing token its
///   batch was read under, the count.
/// - Reply: per partition, `true` when removed, `false` when fenced (nothing of it
///   changed).
pub(crate) struct AckScript;

/// One partition's part of an [`AckScript`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AckOf {
    pub(crate) partition: u32,
    pub(crate) token: u64,
    pub(crate) count: usize,
}

impl AckScript {
    /// Acknowledges the given counts of `service`'s claimed partitions in one call.
    pub(crate) fn invoke(
        connection: &mut Connection,
        service: &str,
        member: &str,
        acks: &[AckOf],
    ) -> RedisResult<Vec<bool>> {
        let mut invocation = ACK.prepare_invoke();
        invocation
            .key(keys::owners(service))
            .key(keys::tokens(service))
            .key(keys::attempts(service))
            .key(keys::rates(service))
            .arg(member);
        for ack in acks {
            invocation
                .key(keys::partition(service, ack.partition))
                .arg(ack.partition)
                .arg(ack.token)
                .arg(ack.count);
        }
        let reply: Vec<i64> = invocation.invoke(connection)?;
        if reply.len() != acks.len() {
            let detail = format!("{} ack results for {} partitions", reply.len(), acks.len());
            return Err(ParsingError::from(detail).into());
        }
        Ok(reply.into_iter().map(|removed| removed == 1).collect())
    }
}

/// `dead_letter.lua`: moves the oldest item of a partition to its dead letter queue
/// and stores its failure record, in one step.
///
/// - KEYS: `<service>:hivent:owners`, `<service>:hivent:tokens`, `<service>:<p>`,
///   `<service>:<p>:dead_letter`, `<service>:hivent:failures:<p>`,
///   `<service>:hivent:attempts`.
/// - ARGV: the member id, the partition, the fencing token, the raw item expected at
///   the right end, the record's JSON.
/// - Reply: [`Settled`].
pub(crate) struct DeadLetterScript;

/// What the scripts that settle the oldest item of a partition under a claim answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Settled<T> {
    /// Done.
    Done(T),
    /// The claim is gone; nothing changed.
    Fenced,
    /// The oldest item is not the expected one; nothing changed.
    Mismatch,
}

impl<T> Settled<T> {
    pub(crate) fn from_code(code: i64, done: impl FnOnce() -> T) -> Settled<T> {
        match code {
            0 => Settled::Fenced,
            -1 => Settled::Mismatch,
            _ => Settled::Done(done()),
        }
    }
}

impl DeadLetterScript {
    /// Dead-letters `raw` (the item's bytes as stored), which must be the oldest item
    /// of the claimed partition, with its record.
    pub(crate) fn invoke(
        connection: &mut Connection,
        claim: &Claim<'_>,
        raw: &[u8],
        record: &str,
    ) -> RedisResult<Settled<()>> {
        let reply: i64 = DEAD_LETTER
            .key(keys::owners(claim.service))
            .key(keys::tokens(claim.service))
            .key(keys::partition(claim.service, claim.partition))
            .key(keys::dead_letter(claim.service, claim.partition))
            .key(keys::failure_records(claim.service, claim.partition))
            .key(keys::attempts(claim.service))
            .arg(claim.member)
            .arg(claim.partition)
            .arg(claim.token)
            .arg(raw)
            .arg(record)
            .invoke(connection)?;
        Ok(Settled::from_code(reply, || ()))
    }
}

/// `attempt.lua`: counts a failed attempt at the oldest item of a partition.
///
/// - KEYS: `<service>:hivent:owners`, `<service>:hivent:tokens`, `<service>:<p>`,
///   `<service>:hivent:attempts`.
/// - ARGV: the member id, the partition, the fencing token, the raw item expected at
///   the right end, the failure's time in ms.
/// - Reply: [`Settled`] with the attempts so far and the first failure's time (ms).
pub(crate) struct AttemptScript;

impl AttemptScript {
    /// Counts a failure of `raw` (the item's bytes as stored) at `failed_at_ms`.
    pub(crate) fn invoke(
        connection: &mut Connection,
        claim: &Claim<'_>,
        raw: &[u8],
        failed_at_ms: i64,
    ) -> RedisResult<Settled<(u32, i64)>> {
        let reply: Value = ATTEMPT
            .key(keys::owners(claim.service))
            .key(keys::tokens(claim.service))
            .key(keys::partition(claim.service, claim.partition))
            .key(keys::attempts(claim.service))
            .arg(claim.member)
            .arg(claim.partition)
            .arg(claim.token)
            .arg(raw)
            .arg(failed_at_ms)
            .invoke(connection)?;
        match reply {
            Value::Array(items) if items.len() == 2 => {
                Ok(Settled::Done((number(&items[0])?, number(&items[1])?)))
            }
            other => Ok(Settled::from_code(number(&other)?, || (0, 0))),
        }
    }
}

/// `dead_letter_page.lua`: reads dead letters with their failure records.
///
/// - KEYS: `<service>:<p>:dead_letter`, `<service>:hivent:failures:<p>`.
/// - ARGV: how many to skip from the oldest, the most to read.
/// - Reply: item and record (or nil) pairs, oldest first; an item that is not UTF-8 is
///   given in its lossy decoding.
pub(crate) struct DeadLetterPageScript;

impl DeadLetterPageScript {
    /// Up to `count` dead letters of `partition` from the `start`-th oldest, each with
    /// its record's JSON if it has one.
    pub(crate) fn invoke(
        connection: &mut Connection,
        service: &str,
        partition: u32,
        start: usize,
        count: usize,
    ) -> RedisResult<Vec<(String, Option<String>)>> {
        // Bytes, not strings: an item another tool wrote may not be UTF-8, and must
        // not make the whole page unreadable; it is shown in its lossy decoding.
        let flat: Vec<Option<Vec<u8>>> = DEAD_LETTER_PAGE
            .key(keys::dead_letter(service, partition))
            .key(keys::failure_records(service, partition))
            .arg(start)
            .arg(count)
            .invoke(connection)?;
        Ok(dead_letter_pairs(&flat))
    }
}

/// A dead letter page's flat reply as item and record pairs; an item that is not UTF-8
/// is given in its lossy decoding.
pub(crate) fn dead_letter_pairs(flat: &[Option<Vec<u8>>]) -> Vec<(String, Option<String>)> {
    let lossy = |bytes: &Option<Vec<u8>>| {
        bytes
            .as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    flat.chunks_exact(2)
        .map(|pair| (lossy(&pair[0]).unwrap_or_default(), lossy(&pair[1])))
        .collect()
}

/// A route's flat `service, count, …` reply as pairs.
pub(crate) fn service_counts(flat: &[Value]) -> Result<Vec<(String, u32)>, ParsingError> {
    flat.chunks_exact(2)
        .map(|pair| Ok((text(&pair[0]).ok_or("a service name")?, number(&pair[1])?)))
        .collect()
}

/// `leave.lua`: removes a member and releases all its partitions.
///
/// - KEYS: `<service>:hivent:members`, `…:owners`, `…:tokens`, `…:heartbeats`.
/// - ARGV: the member id, the group channel.
/// - Reply: how many partitions were released. Publishes on the group channel.
pub(crate) struct LeaveScript;

impl LeaveScript {
    /// Makes `member` leave the group of `service`.
    pub(crate) fn invoke(
        connection: &mut Connection,
        service: &str,
        member: &str,
    ) -> RedisResult<u64> {
        LEAVE
            .key(keys::members(service))
            .key(keys::owners(service))
            .key(keys::tokens(service))
            .key(keys::heartbeats(service))
            .arg(member)
            .arg(keys::group_channel(service))
            .invoke(connection)
    }
}

/// `release.lua`: gives up one partition under its claim and tells the group.
///
/// - KEYS: `<service>:hivent:owners`, `<service>:hivent:tokens`.
/// - ARGV: the member id, the partition, the fencing token, the group channel.
/// - Reply: `true` when released, `false` when fenced (nothing changed).
pub(crate) struct ReleaseScript;

impl ReleaseScript {
    /// Releases the claimed partition.
    pub(crate) fn invoke(connection: &mut Connection, claim: &Claim<'_>) -> RedisResult<bool> {
        let reply: i64 = RELEASE
            .key(keys::owners(claim.service))
            .key(keys::tokens(claim.service))
            .arg(claim.member)
            .arg(claim.partition)
            .arg(claim.token)
            .arg(keys::group_channel(claim.service))
            .invoke(connection)?;
        Ok(reply == 1)
    }
}

/// Which dead letters [`ReplayScript`] and [`PurgeScript`] take, as their arguments.
fn pick_args(script: &mut redis::ScriptInvocation<'_>, pick: DeadLetterPick<'_>) {
    match pick {
        DeadLetterPick::Oldest(n) => {
            script.arg("oldest").arg(n);
        }
        DeadLetterPick::Items(items) => {
            script.arg("items");
            for item in items {
                script.arg(item);
            }
        }
    }
}

/// `replay.lua`: moves dead letters back to the oldest end of their partition, deletes
/// their records and voids the partition's claim, fencing its owner's batch in hand.
///
/// - KEYS: `<service>:<p>`, `<service>:<p>:dead_letter`, `<service>:hivent:owners`,
///   `<service>:hivent:tokens`, `<service>:hivent:failures:<p>`.
/// - ARGV: the partition, the service's wake channel, then the pick
///   (`oldest` and a count, or `items` and the items).
/// - Reply: how many items moved.
pub(crate) struct ReplayScript;

impl ReplayScript {
    /// Replays the picked dead letters of `partition`.
    pub(crate) fn invoke(
        connection: &mut Connection,
        service: &str,
        partition: u32,
        pick: DeadLetterPick<'_>,
    ) -> RedisResult<u64> {
        let mut script = REPLAY.prepare_invoke();
        script
            .key(keys::partition(service, partition))
            .key(keys::dead_letter(service, partition))
            .key(keys::owners(service))
            .key(keys::tokens(service))
            .key(keys::failure_records(service, partition))
            .arg(partition)
            .arg(keys::wake_channel(service));
        pick_args(&mut script, pick);
        script.invoke(connection)
    }
}

/// `purge.lua`: deletes dead letters of a partition and their records.
///
/// - KEYS: `<service>:<p>:dead_letter`, `<service>:hivent:failures:<p>`.
/// - ARGV: the pick (`oldest` and a count, or `items` and the items).
/// - Reply: how many items were deleted.
pub(crate) struct PurgeScript;

impl PurgeScript {
    /// Purges the picked dead letters of `partition`.
    pub(crate) fn invoke(
        connection: &mut Connection,
        service: &str,
        partition: u32,
        pick: DeadLetterPick<'_>,
    ) -> RedisResult<u64> {
        let mut script = PURGE.prepare_invoke();
        script
            .key(keys::dead_letter(service, partition))
            .key(keys::failure_records(service, partition));
        pick_args(&mut script, pick);
        script.invoke(connection)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    /// Script replies decode into their typed forms.
    #[test]
    fn decodes_replies() {
        let ok = Value::Array(vec![bulk("ok"), Value::Int(2), Value::Int(0)]);
        assert_eq!(
            PublishReply::from_redis_value(ok).unwrap(),
            PublishReply::Stored {
                counts: vec![2, 0],
                already: false
            }
        );
        let wrong = Value::Array(vec![bulk("wrongtype"), bulk("victim:1"), bulk("set")]);
        assert_eq!(
            PublishReply::from_redis_value(wrong).unwrap(),
            PublishReply::WrongType {
                key: "victim:1".into(),
                found: "set".into()
            }
        );
        let missing = Value::Array(vec![bulk("missing"), bulk("svc"), bulk("e"), Value::Nil]);
        assert_eq!(
            PublishReply::from_redis_value(missing).unwrap(),
            PublishReply::MissingPartitionCount {
                service: "svc".into(),
                event: "e".into(),
                found: None
            }
        );
        let conflict = Value::Array(vec![
            bulk("conflict"),
            Value::Int(4),
            Value::Int(1),
            Value::Int(3),
        ]);
        assert_eq!(
            RegisterReply::from_redis_value(conflict).unwrap(),
            RegisterReply::Conflict {
                stored: 4,
                non_empty: vec![1, 3]
            }
        );
        let owned = Value::Array(vec![
            bulk("owned"),
            bulk("3"),
            bulk("9"),
            Value::Int(0),
            bulk("1"),
            bulk("7"),
            Value::Int(1),
        ]);
        assert_eq!(
            HeartbeatReply::from_redis_value(owned).unwrap(),
            HeartbeatReply::Owned(vec![
                Owned {
                    partition: 1,
                    token: 7,
                    keep: true
                },
                Owned {
                    partition: 3,
                    token: 9,
                    keep: false
                }
            ])
        );
        assert!(HeartbeatReply::from_redis_value(Value::Int(1)).is_err());
    }
}
