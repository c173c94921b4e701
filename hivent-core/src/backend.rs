//! The backend seam: the few primitives a storage backend provides to the core.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use crossbeam_channel::Receiver;

use crate::{Attempts, FailureRecord, Result};

/// What [`Backend::publish_async`] returns: per event, how many services stored it.
pub type PublishFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<usize>>> + Send + 'a>>;

/// An event ready to be stored: encoded once by the core, with its partition hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The signal name; the backend delivers to every service that receives it or `*`.
    pub name: String,
    /// The partition hash ([`crate::partition_hash`]); each receiving service stores the
    /// event in partition `partition_hash % its partition count`.
    pub partition_hash: u32,
    /// The event's wire JSON.
    pub json: String,
}

/// What a service tells the backend when its consumers start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The service (`client_id`).
    pub service: String,
    /// The signal names it receives (`*` for every event), sorted and unique.
    pub events: Vec<String>,
    /// Its partition count.
    pub partition_count: u32,
}

/// A place events are stored: producer side, registration, and consumer sessions.
///
/// Implementations are shared as `Arc<dyn Backend>` by every thread of a process.
pub trait Backend: Send + Sync {
    /// The backend's name for messages (`memory`, `redis`).
    fn name(&self) -> &'static str;

    /// Stores one copy of each event in a partition of every service that receives its
    /// name or `*`, and returns, per event, how many services stored it (0: nobody
    /// receives it). `call_id` names the call and is new: no call was published with
    /// it before. A later try of the same call goes through [`Backend::republish`].
    ///
    /// On error nothing of the call was stored, unless the error is
    /// [`crate::Error::MaybeStored`]: the backend failed after the write was sent, and
    /// part or all of the call may have been stored.
    fn publish(&self, call_id: &str, envelopes: &[Envelope]) -> Result<Vec<usize>>;

    /// Tries again a call whose publish failed with [`crate::Error::MaybeStored`] (same
    /// id, same events), storing what the earlier tries did not and nothing twice, so a
    /// call that failed uncertainly can be completed. The default is [`Backend::publish`], for backends
    /// whose `publish` already honours a repeated id.
    fn republish(&self, call_id: &str, envelopes: &[Envelope]) -> Result<Vec<usize>> {
        self.publish(call_id, envelopes)
    }

    /// [`Backend::publish`] for async callers (the `emit_async` family). The default
    /// runs the blocking `publish` when polled, which suits backends that do no I/O
    /// (memory); a backend with network I/O overrides it so no thread waits.
    fn publish_async<'a>(
        &'a self,
        call_id: &'a str,
        envelopes: &'a [Envelope],
    ) -> PublishFuture<'a> {
        Box::pin(async move { self.publish(call_id, envelopes) })
    }

    /// [`Backend::republish`] for async callers, as [`Backend::publish_async`] is.
    fn republish_async<'a>(
        &'a self,
        call_id: &'a str,
        envelopes: &'a [Envelope],
    ) -> PublishFuture<'a> {
        Box::pin(async move { self.republish(call_id, envelopes) })
    }

    /// Records that `registration.service` receives `registration.events` with its
    /// partition count, and that it receives nothing else any more.
    fn register(&self, registration: &Registration) -> Result<()>;

    /// Joins the consumer group of `service` as a new member.
    fn join(&self, service: &str) -> Result<Box<dyn ConsumerSession>>;

    /// Status and dead-letter operations on this backend's store, where it has them.
    fn operations(&self) -> Option<&dyn crate::Operations> {
        None
    }
}

/// The oldest events of one partition, oldest first, as the backend stores them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// The partition they were read from.
    pub partition: u32,
    /// The raw items, oldest first. An item whose bytes are not UTF-8 is given in its
    /// lossy decoding and listed in `not_utf8`; the session keeps its exact bytes.
    pub items: Vec<String>,
    /// The positions in `items` of items that are not UTF-8: they cannot be events, and
    /// are dead-lettered byte for byte.
    pub not_utf8: Vec<usize>,
}

/// What one [`ConsumerSession::fetch`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    /// The non-empty partitions' oldest items, one batch per partition.
    pub batches: Vec<Batch>,
    /// Partitions the session believed it owned but whose claim was gone when it read
    /// them (taken over, or voided by a dead-letter replay): nothing was read from them,
    /// and the consumer should heartbeat at once to learn its assignment.
    pub lost: Vec<u32>,
}

/// Whether a consumer may handle the next event of the batch it fetched from a
/// partition; see [`ConsumerSession::standing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Standing {
    /// Owned under the claim the batch was read with, and the lease is fresh: go on.
    Owned,
    /// Owned, but the group wants the partition elsewhere: acknowledge what is done,
    /// [`ConsumerSession::release`] it and drop the rest of the batch.
    Handover,
    /// The claim is gone, or the lease ran out so it may be gone: start no further
    /// handler for this batch; acknowledge what is done if the backend still accepts it.
    Lost,
}

/// One member of a service's consumer group; used by one consumer loop at a time,
/// while a heartbeat thread may call [`ConsumerSession::heartbeat`] concurrently.
///
/// Reads and writes are fenced: once the session lost a partition, [`ack`] and
/// [`dead_letter`] for it fail with [`crate::Error::Fenced`] and change nothing. The
/// fence is the claim under which the batch was *fetched*: if the partition was lost
/// and claimed again in between (e.g. after a dead-letter replay), the old batch's
/// writes are still rejected, so no write removes items its batch did not contain.
///
/// The consume loop asks [`standing`] before every event, so a member that stalled,
/// lost its lease or is asked to hand a partition over stops after the event in hand
/// rather than after the batch.
///
/// [`ack`]: ConsumerSession::ack
/// [`dead_letter`]: ConsumerSession::dead_letter
/// [`standing`]: ConsumerSession::standing
pub trait ConsumerSession: Send + Sync {
    /// This member's id in the group.
    fn member_id(&self) -> &str;

    /// How often [`ConsumerSession::heartbeat`] must be called to keep the membership.
    fn heartbeat_interval(&self) -> Duration;

    /// Renews the membership and the lease, releases partitions this member should no
    /// longer own (except the one whose batch is being worked on, which is marked for
    /// [`Standing::Handover`] instead) and claims the ones it should; returns the
    /// partitions it owns now, sorted.
    fn heartbeat(&self) -> Result<Vec<u32>>;

    /// Reads up to `max` oldest items from each owned partition, and about `max_bytes`
    /// of items in all (always at least one item, however large, so nothing blocks a
    /// partition), without removing them, checking each partition's claim in the same
    /// step. Partitions take turns at coming first, so a large backlog in one cannot
    /// starve the others. When nothing was read and no claim was found gone, waits up to
    /// `wait` for an emit before returning.
    fn fetch(&self, max: usize, max_bytes: usize, wait: Duration) -> Result<Fetched>;

    /// Whether the next event of the batch fetched last from `partition` may be handled:
    /// the partition is still owned under the claim the batch was read with and the
    /// lease (renewed by successful heartbeats, shorter than the membership lifetime) is
    /// fresh. A local check, no I/O. On [`Standing::Owned`] and [`Standing::Handover`]
    /// the partition becomes one being worked on: heartbeats keep it (marking it for
    /// hand-over rather than releasing it) until its batch is settled (every item
    /// acknowledged or dead-lettered), the consumer fetches again, or releases it. The
    /// consume loop acknowledges the batches of one fetch together, so handled events
    /// of several partitions may wait for that acknowledgement at once.
    fn standing(&self, partition: u32) -> Standing;

    /// Removes the `count` oldest items of `partition`: the ones just processed.
    fn ack(&self, partition: u32, count: usize) -> Result<()>;

    /// Acknowledges several partitions' processed items (`(partition, count)`, as
    /// [`ConsumerSession::ack`] each), and returns the partitions whose claim was gone:
    /// nothing of theirs was removed, and their new owners process those items again.
    /// An error means the acknowledgement failed as a whole and may have removed some,
    /// all or none of the items. The default acknowledges one partition after another;
    /// a backend with round trips does it in one.
    fn ack_all(&self, acks: &[(u32, usize)]) -> Result<Vec<u32>> {
        let mut fenced = Vec::new();
        for &(partition, count) in acks {
            match self.ack(partition, count) {
                Ok(()) => {}
                Err(error) if error.is_fenced() => fenced.push(partition),
                Err(error) => return Err(error),
            }
        }
        Ok(fenced)
    }

    /// Counts a failed attempt at the oldest unsettled item of the batch in hand of
    /// `partition` (`raw` as given in the batch), which must be the oldest item stored:
    /// stored with the partition, so a crash or a hand-over between attempts does not
    /// reset the count. The count belongs to that item: it goes on while the item stays
    /// the oldest, and is dropped when the item is acknowledged or dead-lettered.
    /// Returns the attempts so far, this one included. Fenced like
    /// [`ConsumerSession::ack`].
    fn record_attempt(
        &self,
        partition: u32,
        raw: &str,
        failed_at: DateTime<Utc>,
    ) -> Result<Attempts>;

    /// Moves the oldest unsettled item of the batch in hand of `partition` (`raw` is its
    /// text as given in the batch) to the partition's dead letter queue, byte for byte
    /// as stored, and stores `record` beside it, in one atomic step; fails unless it is
    /// the oldest item stored.
    fn dead_letter(&self, partition: u32, raw: &str, record: &FailureRecord) -> Result<()>;

    /// Gives up `partition` at once (its processed events acknowledged first) so that
    /// the member that should own it claims it; the rest of the batch stays stored for
    /// that member. Fenced like [`ConsumerSession::ack`].
    fn release(&self, partition: u32) -> Result<()>;

    /// Notices that the group changed (a member joined, left, expired or released a
    /// partition): the heartbeat thread heartbeats at once on each, so hand-overs take
    /// a round trip rather than a heartbeat interval. `None` when the backend has none.
    fn group_changes(&self) -> Option<Receiver<()>> {
        None
    }

    /// Leaves the group and releases every partition at once.
    fn leave(&self) -> Result<()>;
}

/// The name of a service's partition: `<service>:<n>`, as the Ruby gem names its list.
pub fn partition_name(service: &str, partition: u32) -> String {
    format!("{service}:{partition}")
}

/// The name of a partition's dead letter queue: `<service>:<n>:dead_letter`.
pub fn dead_letter_queue_name(service: &str, partition: u32) -> String {
    format!("{service}:{partition}:dead_letter")
}
