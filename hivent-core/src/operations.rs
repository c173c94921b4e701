//! Operations on what a backend stores: service status, lag, and dead letter queues.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::Result;

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
pub trait Operations: Send + Sync {
    /// The services that have a stored partition count, sorted.
    fn services(&self) -> Result<Vec<String>>;

    /// The status of one service.
    fn service_status(&self, service: &str) -> Result<ServiceStatus>;

    /// Up to `limit` raw items of a partition's dead letter queue, oldest first.
    fn dead_letters(&self, service: &str, partition: u32, limit: usize) -> Result<Vec<String>>;

    /// Moves up to `limit` of the oldest dead letters back to the head of their
    /// partition, in their original order, so they are processed next. The
    /// partition's owner is fenced off for its batch in hand (which it then processes
    /// again), so no consumer acknowledges a replayed event it never saw. Returns how
    /// many were moved.
    fn replay_dead_letters(&self, service: &str, partition: u32, limit: usize) -> Result<usize>;

    /// Deletes a partition's dead letter queue; returns how many items it held.
    fn purge_dead_letters(&self, service: &str, partition: u32) -> Result<usize>;
}
