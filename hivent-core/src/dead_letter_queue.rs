//! A service's dead letters selected by partition, event, signal and count: what `hivent dlq` does, for Rust code.

use serde::Serialize;

use crate::{DeadLetterPick, Error, Event, FailureRecord, Meta, Operations, Result, ServiceStatus};

/// How many dead letters one read asks the backend for while selecting.
const PAGE: usize = 1000;

/// Which dead letters a [`DeadLetterQueue`] operation takes. Every criterion given must
/// hold; `limit` caps how many are taken in all, oldest first within each partition
/// and partitions in order. The same filter means the same dead letters for `list`,
/// `replay` and `purge`.
///
/// ```
/// use hivent_core::DeadLetterFilter;
/// let filter = DeadLetterFilter::all().signal("order:placed").partition(3).limit(10);
/// assert_eq!(filter.limit, Some(10));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetterFilter {
    /// Only this partition.
    pub partition: Option<u32>,
    /// Only the event with this uuid (`meta.event_uuid`).
    pub event_uuid: Option<String>,
    /// Only events of this signal (`meta.name`).
    pub signal: Option<String>,
    /// At most this many in all.
    pub limit: Option<usize>,
}

impl DeadLetterFilter {
    /// Every dead letter of the service.
    pub fn all() -> DeadLetterFilter {
        DeadLetterFilter::default()
    }

    /// Only partition `partition`.
    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Only the event with this uuid.
    pub fn event_uuid(mut self, uuid: impl Into<String>) -> Self {
        self.event_uuid = Some(uuid.into());
        self
    }

    /// Only events of this signal.
    pub fn signal(mut self, signal: impl Into<String>) -> Self {
        self.signal = Some(signal.into());
        self
    }

    /// At most `limit` dead letters in all.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Whether the filter looks inside items (uuid or signal), rather than only counting.
    fn looks_inside(&self) -> bool {
        self.event_uuid.is_some() || self.signal.is_some()
    }

    /// Whether an item meets the uuid and signal criteria; an item that is not an event
    /// meets none.
    fn admits(&self, meta: Option<&Meta>) -> bool {
        if !self.looks_inside() {
            return true;
        }
        meta.is_some_and(|meta| {
            self.event_uuid
                .as_ref()
                .is_none_or(|u| *u == meta.event_uuid)
                && self.signal.as_ref().is_none_or(|s| *s == meta.name)
        })
    }
}

/// One dead letter, where it is, what it is and why it is there.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DeadLetterEntry {
    /// Its partition.
    pub partition: u32,
    /// Its place in the partition's dead letter queue, 0 for the oldest.
    pub position: usize,
    /// The event's metadata, when the item is an event.
    pub event: Option<Meta>,
    /// Its failure record; `None` for items the Ruby gem or another tool moved.
    pub record: Option<FailureRecord>,
    /// The item exactly as stored.
    pub raw: String,
}

/// What a replay or purge took, and what it left.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeadLetterReport {
    /// Per partition with any taken, how many (would have been, on a dry run).
    pub taken: Vec<(u32, usize)>,
    /// How many in all.
    pub total: usize,
    /// Dead letters left in the partitions looked at.
    pub left: usize,
    /// Of those, how many the filter (without its limit) still selects.
    pub left_selected: usize,
    /// Whether nothing was changed: the report says what would have been taken.
    pub dry_run: bool,
}

/// What to do with the selected dead letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Replay,
    Purge,
}

/// How many dead letters `status` counts in `partitions`.
fn stored_in(status: &ServiceStatus, partitions: &[u32]) -> usize {
    status
        .partitions
        .iter()
        .filter(|p| partitions.contains(&p.partition))
        .map(|p| usize::try_from(p.dead_letters).unwrap_or(usize::MAX))
        .sum()
}

/// The dead letter queues of one service on a backend's [`Operations`].
///
/// ```
/// use hivent_core::{Backend, Config, DeadLetterFilter, DeadLetterQueue, Hivent, Permanent};
/// # use std::sync::Arc;
/// # let backend: Arc<dyn Backend> = Arc::new(hivent_memory::MemoryBackend::new());
/// let config = Config::builder().client_id("billing").build()?;
/// let hivent = Hivent::new(config, backend.clone());
/// hivent.signal("invoice:due")?.receive(|_e| Err(Permanent::new("no such customer").into()));
/// let consumer = hivent.consumer()?;
/// hivent.signal("invoice:due")?.emit(&serde_json::json!({"n": 1}), 1)?;
/// consumer.run_until_idle()?;
///
/// let dlq = DeadLetterQueue::new(backend.operations().unwrap(), "billing");
/// let entries = dlq.list(&DeadLetterFilter::all())?;
/// assert_eq!(entries[0].record.as_ref().unwrap().error, "a handler for \"invoice:due\" version 1 failed: no such customer");
/// let plan = dlq.replay(&DeadLetterFilter::all().signal("invoice:due"), true)?;
/// assert_eq!((plan.total, plan.left, plan.dry_run), (1, 0, true));
/// assert_eq!(dlq.list(&DeadLetterFilter::all())?.len(), 1, "a dry run changes nothing");
/// let done = dlq.purge(&DeadLetterFilter::all(), false)?;
/// assert_eq!((done.total, done.left), (1, 0));
/// # Ok::<(), hivent_core::Error>(())
/// ```
pub struct DeadLetterQueue<'a> {
    ops: &'a dyn Operations,
    service: &'a str,
}

impl<'a> DeadLetterQueue<'a> {
    /// The dead letter queues of `service`.
    pub fn new(ops: &'a dyn Operations, service: &'a str) -> DeadLetterQueue<'a> {
        DeadLetterQueue { ops, service }
    }

    /// The selected dead letters with their records.
    pub fn list(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetterEntry>> {
        let mut entries = Vec::new();
        let mut remaining = filter.limit.unwrap_or(usize::MAX);
        let status = self.ops.service_status(self.service)?;
        for partition in self.partitions(filter, &status)? {
            if remaining == 0 {
                break;
            }
            let found = self.select(partition, filter, remaining)?;
            remaining -= found.len();
            entries.extend(found);
        }
        Ok(entries)
    }

    /// Moves the selected dead letters back to the head of their partitions (see
    /// [`Operations::replay_dead_letters`]); with `dry_run`, only says what it would move.
    pub fn replay(&self, filter: &DeadLetterFilter, dry_run: bool) -> Result<DeadLetterReport> {
        self.take(Action::Replay, filter, dry_run)
    }

    /// Deletes the selected dead letters and their records; with `dry_run`, only says
    /// what it would delete.
    pub fn purge(&self, filter: &DeadLetterFilter, dry_run: bool) -> Result<DeadLetterReport> {
        self.take(Action::Purge, filter, dry_run)
    }

    fn take(
        &self,
        action: Action,
        filter: &DeadLetterFilter,
        dry_run: bool,
    ) -> Result<DeadLetterReport> {
        let before = self.ops.service_status(self.service)?;
        let partitions = self.partitions(filter, &before)?;
        let mut report = DeadLetterReport {
            dry_run,
            ..DeadLetterReport::default()
        };
        let mut remaining = filter.limit.unwrap_or(usize::MAX);
        for &partition in &partitions {
            if remaining == 0 {
                break;
            }
            let taken = match (filter.looks_inside(), dry_run) {
                (true, dry_run) => {
                    let items: Vec<String> = self
                        .select(partition, filter, remaining)?
                        .into_iter()
                        .map(|entry| entry.raw)
                        .collect();
                    if dry_run {
                        items.len()
                    } else {
                        self.apply(action, partition, DeadLetterPick::Items(&items))?
                    }
                }
                // Without a look inside, the oldest are taken: the count says how many.
                (false, true) => remaining.min(stored_in(&before, &[partition])),
                // The backend takes the oldest in one step.
                (false, false) => {
                    self.apply(action, partition, DeadLetterPick::Oldest(remaining))?
                }
            };
            remaining -= taken;
            report.total += taken;
            if taken > 0 {
                report.taken.push((partition, taken));
            }
        }
        let unlimited = DeadLetterFilter {
            limit: None,
            ..filter.clone()
        };
        // A dry run changed nothing: what was stored before is stored now.
        let stored = if dry_run {
            stored_in(&before, &partitions)
        } else {
            stored_in(&self.ops.service_status(self.service)?, &partitions)
        };
        let selected = if filter.looks_inside() {
            partitions.iter().try_fold(0, |sum, &partition| {
                Ok::<_, Error>(sum + self.select(partition, &unlimited, usize::MAX)?.len())
            })?
        } else {
            stored
        };
        let (left, left_selected) = if dry_run {
            (
                stored.saturating_sub(report.total),
                selected.saturating_sub(report.total),
            )
        } else {
            (stored, selected)
        };
        report.left = left;
        report.left_selected = left_selected;
        Ok(report)
    }

    fn apply(&self, action: Action, partition: u32, pick: DeadLetterPick<'_>) -> Result<usize> {
        match action {
            Action::Replay => self.ops.replay_dead_letters(self.service, partition, pick),
            Action::Purge => self.ops.purge_dead_letters(self.service, partition, pick),
        }
    }

    /// The partitions the filter looks at, checked against the stored partition count.
    fn partitions(&self, filter: &DeadLetterFilter, status: &ServiceStatus) -> Result<Vec<u32>> {
        let partition_count = status.partition_count;
        match filter.partition {
            Some(partition) if partition >= partition_count => Err(Error::NoSuchPartition {
                service: self.service.to_owned(),
                partition,
                partition_count,
            }),
            Some(partition) => Ok(vec![partition]),
            None => Ok((0..partition_count).collect()),
        }
    }

    /// Up to `max` dead letters of one partition that the filter admits, oldest first.
    fn select(
        &self,
        partition: u32,
        filter: &DeadLetterFilter,
        max: usize,
    ) -> Result<Vec<DeadLetterEntry>> {
        let mut found = Vec::new();
        let mut start = 0;
        while found.len() < max {
            let page = self
                .ops
                .dead_letters(self.service, partition, start, PAGE)?;
            let read = page.len();
            for (offset, dead) in page.into_iter().enumerate() {
                let event = Event::from_json(&dead.raw).ok().map(|e| e.meta);
                if filter.admits(event.as_ref()) && found.len() < max {
                    found.push(DeadLetterEntry {
                        partition,
                        position: start + offset,
                        event,
                        record: dead.record,
                        raw: dead.raw,
                    });
                }
            }
            if read < PAGE {
                break;
            }
            start += read;
        }
        Ok(found)
    }
}
