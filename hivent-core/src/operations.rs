//! Operations on what a backend stores: service status, lag, and dead letter queues.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{DeadLetter, Result};

/// The state of one service as stored by the backend.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceStatus {
    /// The service (`client_id`).
    pub service: String,
    /// Its stored partition count.
    pub partition_count: u32,
    /// The signals it receives, sorted.
    pub events: Vec<String>,
    /// The live members of its consumer group, sorted.
    pub consumers: Vec<String>,
    /// Every member the group still lists (live, late or past its lifetime), sorted by
    /// id, with its process, heartbeat and partitions.
    pub members: Vec<MemberStatus>,
    /// One entry per partition, in order.
    pub partitions: Vec<PartitionStatus>,
    /// Live consumers of the Ruby gem working on this service (its own group keys,
    /// `<service>:consumers` and the like), with the partitions it assigned them.
    pub gem_consumers: Vec<GemConsumer>,
}

/// A live consumer of the Ruby gem, as its keys describe it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GemConsumer {
    /// The gem's consumer name.
    pub name: String,
    /// The partitions assigned to it, sorted.
    pub partitions: Vec<u32>,
}

/// One member of a service's consumer group, as `hivent status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    /// The member id.
    pub id: String,
    /// The host its process runs on, when the id says.
    pub host: Option<String>,
    /// Its process id, when the id says.
    pub pid: Option<u32>,
    /// When it last heartbeat (the backend's clock), if recorded.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// How often it means to heartbeat, in ms, if recorded.
    pub heartbeat_interval_ms: Option<u64>,
    /// When its membership runs out unless it heartbeats again.
    pub expires_at: DateTime<Utc>,
    /// The partitions it owns, sorted.
    pub partitions: Vec<u32>,
    /// Whether it keeps its membership up ([`MemberHealth::judge`]).
    pub health: MemberHealth,
}

/// Whether a member keeps its membership up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MemberHealth {
    /// It heartbeat within two of its intervals.
    Healthy,
    /// Still a member, but it missed two heartbeats or more: stalled (stopped, paused,
    /// starved of CPU) or cut off from the backend. It starts no handler once its lease
    /// is out, and the others take its partitions when its membership expires.
    NotHeartbeating,
    /// Its membership ran out; the group drops it at the next heartbeat of any member.
    Expired,
}

impl MemberHealth {
    /// The health of a member at `now`, from its last heartbeat, its interval and
    /// its expiry.
    ///
    /// ```
    /// use chrono::{Duration, Utc};
    /// use hivent_core::MemberHealth;
    /// let now = Utc::now();
    /// let later = now + Duration::seconds(5);
    /// assert_eq!(MemberHealth::judge(now, Some(now - Duration::milliseconds(900)), Some(1000), later), MemberHealth::Healthy);
    /// assert_eq!(MemberHealth::judge(now, Some(now - Duration::seconds(3)), Some(1000), later), MemberHealth::NotHeartbeating);
    /// assert_eq!(MemberHealth::judge(now, None, None, now), MemberHealth::Expired);
    /// ```
    pub fn judge(
        now: DateTime<Utc>,
        last_heartbeat_at: Option<DateTime<Utc>>,
        heartbeat_interval_ms: Option<u64>,
        expires_at: DateTime<Utc>,
    ) -> MemberHealth {
        if expires_at <= now {
            return MemberHealth::Expired;
        }
        match (last_heartbeat_at, heartbeat_interval_ms) {
            (Some(at), Some(interval))
                if (now - at).num_milliseconds()
                    > i64::try_from(interval)
                        .unwrap_or(i64::MAX)
                        .saturating_mul(2) =>
            {
                MemberHealth::NotHeartbeating
            }
            _ => MemberHealth::Healthy,
        }
    }
}

/// The time constant of partitions' processing rates, in ms: a rate follows a change
/// of pace within about this long.
pub const RATE_TIME_CONSTANT_MS: f64 = 10_000.0;

/// A processing rate (events/s) recorded at `at_ms`, as of `now_ms`: it decays by
/// `e^(-elapsed / 10 s)`, so a partition that stopped processing drops to 0.
pub fn decayed_rate(rate: f64, at_ms: i64, now_ms: i64) -> f64 {
    rate * (-((now_ms - at_ms).max(0) as f64) / RATE_TIME_CONSTANT_MS).exp()
}

/// The rate after `count` more events were processed at `now_ms`. At a steady pace
/// it converges to that pace in events per second.
///
/// ```
/// let mut rate = 0.0;
/// for second in 1..=60 {
///     rate = hivent_core::bumped_rate(rate, (second - 1) * 1000, second * 1000, 50);
/// }
/// // Read right after a second's 50 events it is a little above the pace (52.4).
/// assert!((rate - 50.0).abs() < 3.0, "{rate}");
/// assert!(hivent_core::decayed_rate(rate, 60_000, 120_000) < 0.2);
/// ```
pub fn bumped_rate(rate: f64, at_ms: i64, now_ms: i64, count: u64) -> f64 {
    decayed_rate(rate, at_ms, now_ms) + count as f64 * 1000.0 / RATE_TIME_CONSTANT_MS
}

/// The state of one partition.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PartitionStatus {
    /// The partition number.
    pub partition: u32,
    /// The live consumer that owns it, if any.
    pub owner: Option<String>,
    /// Events waiting to be processed (the lag).
    pub waiting: u64,
    /// When the oldest waiting event was emitted, if it can be read.
    pub oldest_created_at: Option<DateTime<Utc>>,
    /// Events in its dead letter queue.
    pub dead_letters: u64,
    /// Events processed per second lately (see [`bumped_rate`]): 0 for a partition
    /// nobody processes, whatever waits in it.
    pub rate: f64,
}

/// Read and repair what a backend stores; what `hivent status` and `hivent dlq` use.
///
/// ```
/// # use hivent_core::{Config, Hivent};
/// # let hivent = Hivent::new(Config::builder().client_id("billing").partition_count(2).build()?, std::sync::Arc::new(hivent_memory::MemoryBackend::new()));
/// hivent.signal("invoice:paid")?.receive(|_event| Ok(()));
/// hivent.register()?;
/// hivent.signal("invoice:paid")?.emit(&serde_json::json!({"invoice": 1}), 1)?;
/// let operations = hivent.backend().operations().expect("the memory backend has them");
/// assert_eq!(operations.services()?, ["billing"]);
/// let status = operations.service_status("billing")?;
/// assert_eq!(status.partition_count, 2);
/// assert_eq!(status.partitions.iter().map(|p| p.waiting).sum::<u64>(), 1, "one event waits");
/// # Ok::<(), hivent_core::Error>(())
/// ```
pub trait Operations: Send + Sync {
    /// The services that have a stored partition count, sorted.
    fn services(&self) -> Result<Vec<String>>;

    /// The status of one service.
    fn service_status(&self, service: &str) -> Result<ServiceStatus>;

    /// At most `count` dead letters of a partition with their failure records, oldest
    /// first, starting `start` items from the oldest (0: the oldest itself).
    fn dead_letters(
        &self,
        service: &str,
        partition: u32,
        start: usize,
        count: usize,
    ) -> Result<Vec<DeadLetter>>;

    /// Moves the picked dead letters back to the head of their partition in one atomic
    /// step, in their original order (the oldest first in line), so they are processed
    /// next, and removes their failure records. The partition's owner is fenced off its
    /// batch in hand (which it then processes again), so no consumer acknowledges a
    /// replayed event it never saw. Returns how many were moved.
    fn replay_dead_letters(
        &self,
        service: &str,
        partition: u32,
        pick: DeadLetterPick<'_>,
    ) -> Result<usize>;

    /// Deletes the picked dead letters and their failure records in one atomic step;
    /// returns how many were deleted.
    fn purge_dead_letters(
        &self,
        service: &str,
        partition: u32,
        pick: DeadLetterPick<'_>,
    ) -> Result<usize>;
}

/// Which dead letters of one partition a replay or purge takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadLetterPick<'a> {
    /// The oldest `n` (`usize::MAX`: all of them).
    Oldest(usize),
    /// These items, exactly as stored, oldest first: each takes one stored copy, the
    /// oldest one; items no longer stored (replayed or purged meanwhile) are skipped.
    Items(&'a [String]),
}
