//! Operations on what a backend stores: service status, lag, and dead letter queues.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{DeadLetter, Result};

/// The state of one service as stored by the backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    /// The service (`client_id`).
    pub service: String,
    /// Its stored partition count.
    pub partition_count: u32,
    /// The signals it receives, sorted.
    pub events: Vec<String>,
    /// The live members of its consumer group, sorted.
    pub consumers: Vec<String>,
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

/// The state of one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
