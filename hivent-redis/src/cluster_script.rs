//! The scripts of cluster mode, each touching one hash slot, as commands for a pipeline.
//!
//! The partition scripts of standalone mode run here unchanged: they check a claim in
//! hashes whose field is the partition number, and in cluster mode those hashes are the
//! partition's own (one field each). Only publishing, routes, registration, membership
//! and claiming are cluster scripts of their own (`lua/cluster/`). Calls carry the
//! script text (`EVAL`, comments stripped) rather than its SHA, so no node that lost
//! its script cache can fail one part of a pipeline whose other parts ran.

use std::sync::LazyLock;

use hivent_core::DeadLetterPick;
use redis::{Cmd, FromRedisValue, ParsingError, Value};

use crate::cluster_keys as keys;
use crate::script::{
    number, service_counts, tagged, text, with_claim, with_partition_count, with_pick, Settled,
};

/// A script's text without its comment lines and blank lines: what a call sends.
struct ClusterScript(LazyLock<String>);

macro_rules! script {
    ($source:expr) => {
        ClusterScript(LazyLock::new(|| compact($source)))
    };
}

fn compact(source: &str) -> String {
    source
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.trim_start().starts_with("--") && !line.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

impl ClusterScript {
    fn call(&self, keys: &[String]) -> Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(self.0.as_str()).arg(keys.len()).arg(keys);
        cmd
    }
}

static PUBLISH: ClusterScript = script!(include_str!("../lua/cluster/publish.lua"));
static ROUTES: ClusterScript = script!(with_partition_count!("../lua/cluster/routes.lua"));
static REGISTER: ClusterScript = script!(concat!(
    include_str!("../lua/registry_version.lua"),
    with_partition_count!("../lua/cluster/register.lua")
));
static MEMBERSHIP: ClusterScript = script!(include_str!("../lua/cluster/membership.lua"));
static CLAIM: ClusterScript = script!(include_str!("../lua/cluster/claim.lua"));
static FETCH: ClusterScript = script!(include_str!("../lua/fetch.lua"));
static ACK: ClusterScript = script!(concat!(
    "local function acknowledge()\n",
    include_str!("../lua/ack.lua"),
    "\nend\n",
    include_str!("../lua/cluster/ack.lua")
));
static DEAD_LETTER: ClusterScript = script!(with_claim!("../lua/dead_letter.lua"));
static ATTEMPT: ClusterScript = script!(with_claim!("../lua/attempt.lua"));
static RELEASE: ClusterScript = script!(with_claim!("../lua/release.lua"));
static DEAD_LETTER_PAGE: ClusterScript = script!(include_str!("../lua/dead_letter_page.lua"));
static REPLAY: ClusterScript = script!(with_pick!("../lua/replay.lua"));
static PURGE: ClusterScript = script!(with_pick!("../lua/purge.lua"));

/// What a partition's publish call answered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Published {
    /// Stored now.
    Stored,
    /// An earlier try of the call stored the events; nothing was written.
    Already,
    /// The partition is stamped with another partition count than the one used:
    /// the routes predate a registration; nothing was written.
    Stale,
    /// `key` holds a `found`, not a list; nothing was written.
    WrongType { key: String, found: String },
}

impl FromRedisValue for Published {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let (tag, rest) = tagged(value)?;
        match (tag.as_str(), rest.as_slice()) {
            ("ok", []) => Ok(Published::Stored),
            ("already", []) => Ok(Published::Already),
            ("stale", [_]) => Ok(Published::Stale),
            ("wrongtype", [key, found]) => Ok(Published::WrongType {
                key: text(key).unwrap_or_default(),
                found: text(found).unwrap_or_default(),
            }),
            _ => Err(format!("unexpected cluster publish reply {tag:?} {rest:?}").into()),
        }
    }
}

/// One partition's part of a publish call.
pub(crate) struct PartitionPublish<'a> {
    pub(crate) service: &'a str,
    pub(crate) partition: u32,
    /// The service's partition count the partition was computed with.
    pub(crate) partition_count: u32,
    /// The events' JSON, in emit order.
    pub(crate) json: &'a [&'a str],
}

/// `lua/cluster/publish.lua` for one partition.
pub(crate) fn publish(part: &PartitionPublish<'_>, call_id: &str, marker_ttl_ms: u64) -> Cmd {
    let (service, partition) = (part.service, part.partition);
    let mut cmd = PUBLISH.call(&[
        keys::partition(service, partition),
        keys::emitted_marker(service, partition, call_id),
        keys::stamped_count(service, partition),
    ]);
    cmd.arg(marker_ttl_ms)
        .arg(keys::wake_channel(service))
        .arg(partition)
        .arg(part.partition_count)
        .arg(part.json);
    cmd
}

/// Where one event name goes: its receiving services with their partition counts, or
/// the service whose count is missing and what its key holds.
pub(crate) type Route = Result<Vec<(String, u32)>, (String, Option<String>)>;

/// `lua/cluster/routes.lua` for `names` (event names, `*` not included).
pub(crate) fn routes(names: &[&str]) -> Cmd {
    let mut keys = vec![keys::receivers(hivent_core::WILDCARD)];
    keys.extend(names.iter().map(|name| keys::receivers(name)));
    let mut cmd = ROUTES.call(&keys);
    cmd.arg(keys::PARTITION_COUNT_PREFIX);
    cmd
}

/// The routes reply: one [`Route`] per name.
pub(crate) fn parse_routes(value: Value) -> Result<Vec<Route>, ParsingError> {
    let Value::Array(items) = value else {
        return Err(format!("unexpected routes reply {value:?}").into());
    };
    items
        .into_iter()
        .map(|route| match route {
            // Pairs are even; a missing count is three elements.
            Value::Array(flat) if flat.len() % 2 == 0 => service_counts(&flat).map(Ok),
            Value::Array(missing) if missing.len() == 3 => Ok(Err((
                text(&missing[1]).unwrap_or_default(),
                missing.get(2).and_then(text),
            ))),
            other => Err(format!("unexpected route {other:?}").into()),
        })
        .collect()
}

/// What the cluster registration answered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Registered {
    /// Stored.
    Done,
    /// The count is out of range.
    Invalid(String),
    /// The stored count changed since the caller checked the old partitions.
    Moved(u32),
}

impl FromRedisValue for Registered {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let (tag, rest) = tagged(value)?;
        match (tag.as_str(), rest.as_slice()) {
            ("ok", []) => Ok(Registered::Done),
            ("invalid", [count]) => Ok(Registered::Invalid(text(count).unwrap_or_default())),
            ("moved", [stored]) => Ok(Registered::Moved(number(stored)?)),
            _ => Err(format!("unexpected cluster register reply {tag:?} {rest:?}").into()),
        }
    }
}

/// `lua/cluster/register.lua`; `drained_under` is the stored count whose partitions
/// the caller found empty, when it changes the count.
pub(crate) fn register(
    service: &str,
    partition_count: u32,
    events: &[String],
    drained_under: Option<u32>,
) -> Cmd {
    let mut keys = vec![
        keys::partition_count(service),
        keys::registered_events(service),
        keys::REGISTRY_VERSION.to_owned(),
        keys::SERVICES.to_owned(),
    ];
    keys.extend(events.iter().map(|event| keys::receivers(event)));
    let mut cmd = REGISTER.call(&keys);
    cmd.arg(service)
        .arg(partition_count)
        .arg(keys::RECEIVERS_PREFIX)
        .arg(drained_under.map(|n| n.to_string()).unwrap_or_default())
        .arg(keys::REGISTRY_CHANNEL);
    cmd
}

/// `lua/cluster/membership.lua`: renews `member` for `ttl_ms`, or makes it leave
/// (`None`).
pub(crate) fn membership(
    service: &str,
    member: &str,
    ttl_ms: Option<u64>,
    interval_ms: u64,
) -> Cmd {
    let mut cmd = MEMBERSHIP.call(&[keys::members(service), keys::heartbeats(service)]);
    cmd.arg(member);
    match ttl_ms {
        Some(ttl) => cmd.arg(ttl),
        None => cmd.arg("leave"),
    };
    cmd.arg(keys::group_channel(service)).arg(interval_ms);
    cmd
}

/// The membership reply: whether the group changed, and its live members.
pub(crate) fn parse_membership(value: Value) -> Result<(bool, Vec<String>), ParsingError> {
    let Value::Array(items) = value else {
        return Err(format!("unexpected membership reply {value:?}").into());
    };
    let mut items = items.iter();
    let changed = items.next().map(number::<u8>).transpose()? == Some(1);
    let members = items
        .map(|m| text(m).ok_or_else(|| ParsingError::from("a member id")))
        .collect::<Result<_, _>>()?;
    Ok((changed, members))
}

/// What a member does with one partition at a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClaimAction {
    /// It should own it: renew, or take it when free.
    Claim,
    /// It is working on it but should hand it over: renew only.
    Keep,
    /// It should no longer own it: give it up.
    Release,
}

/// `lua/cluster/claim.lua`.
pub(crate) fn claim(
    service: &str,
    member: &str,
    partition: u32,
    lease_ms: u64,
    action: ClaimAction,
) -> Cmd {
    let mut cmd = CLAIM.call(&[
        keys::owner(service, partition),
        keys::token(service, partition),
        keys::lease(service, partition),
        keys::fence_counter(service, partition),
    ]);
    cmd.arg(member)
        .arg(partition)
        .arg(lease_ms)
        .arg(match action {
            ClaimAction::Claim => "claim",
            ClaimAction::Keep => "keep",
            ClaimAction::Release => "release",
        });
    cmd.arg(keys::group_channel(service));
    cmd
}

/// The claim keys a standalone partition script checks, for one cluster partition.
fn claim_keys(service: &str, partition: u32) -> [String; 2] {
    [
        keys::owner(service, partition),
        keys::token(service, partition),
    ]
}

/// `fetch.lua` for one partition: its reply is a one-element array.
pub(crate) fn fetch(
    service: &str,
    member: &str,
    (partition, token): (u32, u64),
    max: usize,
    max_bytes: usize,
) -> Cmd {
    let [owner, token_key] = claim_keys(service, partition);
    let mut cmd = FETCH.call(&[owner, token_key, keys::partition(service, partition)]);
    cmd.arg(member)
        .arg(max.max(1))
        .arg(max_bytes.max(1))
        .arg(partition)
        .arg(token);
    cmd
}

/// `lua/cluster/ack.lua` (around `ack.lua`) for one partition, `before` items
/// acknowledged under `token` already: its reply is a one-element array (1 removed, 0
/// fenced), and a second run of the same call removes nothing more.
pub(crate) fn ack(
    service: &str,
    member: &str,
    partition: u32,
    token: u64,
    count: usize,
    before: u64,
) -> Cmd {
    let [owner, token_key] = claim_keys(service, partition);
    let mut cmd = ACK.call(&[
        owner,
        token_key,
        keys::attempts(service, partition),
        keys::rate(service, partition),
        keys::partition(service, partition),
        keys::acked(service, partition),
    ]);
    cmd.arg(member)
        .arg(partition)
        .arg(token)
        .arg(count)
        .arg(before);
    cmd
}

/// The claim a fenced partition write presents.
pub(crate) struct ClusterClaim<'a> {
    pub(crate) service: &'a str,
    pub(crate) member: &'a str,
    pub(crate) partition: u32,
    pub(crate) token: u64,
}

/// `dead_letter.lua` under `claim`.
pub(crate) fn dead_letter(claim: &ClusterClaim<'_>, raw: &[u8], record: &str) -> Cmd {
    let (service, partition) = (claim.service, claim.partition);
    let [owner, token] = claim_keys(service, partition);
    let mut cmd = DEAD_LETTER.call(&[
        owner,
        token,
        keys::partition(service, partition),
        keys::dead_letter(service, partition),
        keys::failure_records(service, partition),
        keys::attempts(service, partition),
    ]);
    cmd.arg(claim.member)
        .arg(partition)
        .arg(claim.token)
        .arg(raw)
        .arg(record);
    cmd
}

/// `attempt.lua` under `claim`.
pub(crate) fn attempt(claim: &ClusterClaim<'_>, raw: &[u8], failed_at_ms: i64) -> Cmd {
    let (service, partition) = (claim.service, claim.partition);
    let [owner, token] = claim_keys(service, partition);
    let mut cmd = ATTEMPT.call(&[
        owner,
        token,
        keys::partition(service, partition),
        keys::attempts(service, partition),
    ]);
    cmd.arg(claim.member)
        .arg(partition)
        .arg(claim.token)
        .arg(raw)
        .arg(failed_at_ms);
    cmd
}

/// What `attempt.lua` answered.
pub(crate) fn parse_attempt(value: Value) -> Result<Settled<(u32, i64)>, ParsingError> {
    match value {
        Value::Array(items) if items.len() == 2 => {
            Ok(Settled::Done((number(&items[0])?, number(&items[1])?)))
        }
        other => Ok(Settled::from_code(number(&other)?, || (0, 0))),
    }
}

/// `release.lua` under `claim`.
pub(crate) fn release(claim: &ClusterClaim<'_>) -> Cmd {
    let [owner, token] = claim_keys(claim.service, claim.partition);
    let mut cmd = RELEASE.call(&[owner, token]);
    cmd.arg(claim.member)
        .arg(claim.partition)
        .arg(claim.token)
        .arg(keys::group_channel(claim.service));
    cmd
}

/// `dead_letter_page.lua` for one partition.
pub(crate) fn dead_letter_page(service: &str, partition: u32, start: usize, count: usize) -> Cmd {
    let mut cmd = DEAD_LETTER_PAGE.call(&[
        keys::dead_letter(service, partition),
        keys::failure_records(service, partition),
    ]);
    cmd.arg(start).arg(count);
    cmd
}

fn pick_args(cmd: &mut Cmd, pick: DeadLetterPick<'_>) {
    match pick {
        DeadLetterPick::Oldest(n) => {
            cmd.arg("oldest").arg(n);
        }
        DeadLetterPick::Items(items) => {
            cmd.arg("items");
            for item in items {
                cmd.arg(item);
            }
        }
    }
}

/// `replay.lua` for one partition.
pub(crate) fn replay(service: &str, partition: u32, pick: DeadLetterPick<'_>) -> Cmd {
    let [owner, token] = claim_keys(service, partition);
    let mut cmd = REPLAY.call(&[
        keys::partition(service, partition),
        keys::dead_letter(service, partition),
        owner,
        token,
        keys::failure_records(service, partition),
    ]);
    cmd.arg(partition).arg(keys::wake_channel(service));
    pick_args(&mut cmd, pick);
    cmd
}

/// `purge.lua` for one partition.
pub(crate) fn purge(service: &str, partition: u32, pick: DeadLetterPick<'_>) -> Cmd {
    let mut cmd = PURGE.call(&[
        keys::dead_letter(service, partition),
        keys::failure_records(service, partition),
    ]);
    pick_args(&mut cmd, pick);
    cmd
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Stripping comments keeps every line of code, and only those.
    #[test]
    fn compact_keeps_the_code() {
        let source = "-- a comment\nlocal a = 1\n\n  -- indented comment\nreturn a -- trailing\n";
        assert_eq!(compact(source), "local a = 1\nreturn a -- trailing");
    }

    /// A routes reply decodes into pairs per name, and a missing count (absent: nil)
    /// into its service, even one named like a number.
    #[test]
    fn decodes_routes() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![
            Value::Array(vec![bulk("a"), Value::Int(4), bulk("b"), Value::Int(2)]),
            Value::Array(vec![]),
            Value::Array(vec![bulk("missing"), bulk("42"), Value::Nil]),
        ]);
        assert_eq!(
            parse_routes(reply).unwrap(),
            [
                Ok(vec![("a".to_owned(), 4), ("b".to_owned(), 2)]),
                Ok(vec![]),
                Err(("42".to_owned(), None)),
            ]
        );
    }

    /// Membership replies decode into the change flag and the members.
    #[test]
    fn decodes_membership() {
        let reply = Value::Array(vec![
            Value::Int(1),
            Value::BulkString(b"a".to_vec()),
            Value::BulkString(b"b".to_vec()),
        ]);
        assert_eq!(
            parse_membership(reply).unwrap(),
            (true, vec!["a".to_owned(), "b".to_owned()])
        );
    }
}
