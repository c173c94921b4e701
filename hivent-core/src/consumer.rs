//! The consume loop, written once for every backend: fetch, dispatch, ack or dead-letter.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crossbeam_channel::{select, Receiver, RecvTimeoutError, TryRecvError};
use parking_lot::Mutex;
use serde_json::Value;

use crate::error::error_chain;
use crate::instruments;
use crate::ErrorChain;
use crate::{
    dead_letter_queue_name, Attempts, Batch, CommandFailure, ConsumerSession, Dispatch, Error,
    Event, FailureRecord, Fetched, Hivent, Permanent, ReceivedSignal, Result, RetryAfter,
    RetryPolicy, Shutdown, Standing,
};

/// How often a consumer waiting to retry an event checks that its partition is still
/// its own: a local check, so a lost or handed-over partition ends the wait promptly.
const STANDING_CHECK: Duration = Duration::from_millis(25);

/// Tuning of a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerOptions {
    /// The most events read from one partition in one fetch.
    pub batch_size: usize,
    /// How long an idle consumer waits for an emit before fetching again.
    pub idle_wait: Duration,
    /// About how many bytes of events one fetch reads in all (default 4 MiB), so a
    /// backlog of large events cannot fill the worker's memory; a larger single event
    /// is still read, alone.
    pub max_fetch_bytes: usize,
    /// How long handled events of a batch may stay unacknowledged: a slow batch is
    /// acknowledged in steps, so a crash makes the next owner redo at most about this
    /// much work rather than the whole batch.
    pub ack_interval: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            batch_size: 100,
            idle_wait: Duration::from_millis(500),
            max_fetch_bytes: 4 << 20,
            ack_interval: Duration::from_millis(100),
        }
    }
}

impl ConsumerOptions {
    /// Sets the batch size (at least 1).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Sets the idle wait.
    pub fn idle_wait(mut self, idle_wait: Duration) -> Self {
        self.idle_wait = idle_wait;
        self
    }

    /// Sets the byte budget of one fetch (at least 1).
    pub fn max_fetch_bytes(mut self, bytes: usize) -> Self {
        self.max_fetch_bytes = bytes.max(1);
        self
    }

    /// Sets the acknowledgement interval of slow batches.
    pub fn ack_interval(mut self, ack_interval: Duration) -> Self {
        self.ack_interval = ack_interval;
        self
    }
}

/// State shared by the consume loop and its heartbeat thread.
struct Shared {
    hivent: Hivent,
    session: Box<dyn ConsumerSession>,
    owned: Mutex<Vec<u32>>,
    registered_events: Mutex<Vec<String>>,
    /// When a heartbeat last succeeded (or the consumer was made), for the metrics.
    last_heartbeat: Mutex<Instant>,
}

impl Shared {
    /// Heartbeats, and records the outcome in the metrics.
    fn heartbeat(&self) -> Result<Vec<u32>> {
        let outcome = self.heartbeat_once();
        let (service, member) = (self.hivent.config().client_id(), self.session.member_id());
        let recorded = match &outcome {
            Ok((owned, changed)) => {
                *self.last_heartbeat.lock() = Instant::now();
                instruments::Heartbeat::Succeeded {
                    owned: owned.len(),
                    changed: *changed,
                }
            }
            Err(_) => instruments::Heartbeat::Failed {
                since_success: self.last_heartbeat.lock().elapsed(),
            },
        };
        instruments::heartbeat(service, member, recorded);
        outcome.map(|(owned, _)| owned)
    }

    /// The partitions owned after a heartbeat, and whether they changed.
    fn heartbeat_once(&self) -> Result<(Vec<u32>, bool)> {
        let now = match self.session.heartbeat() {
            Err(error) if error.is_not_registered() => {
                self.register_again(&error)?;
                self.session.heartbeat()?
            }
            other => other?,
        };
        let mut owned = self.owned.lock();
        let gained: Vec<u32> = now.iter().copied().filter(|p| !owned.contains(p)).collect();
        let lost: Vec<u32> = owned.iter().copied().filter(|p| !now.contains(p)).collect();
        *owned = now.clone();
        drop(owned);
        let service = self.hivent.config().client_id();
        let hooks = self.hivent.config().life_cycle_event_handler();
        if !lost.is_empty() {
            tracing::debug!(service, partitions = ?lost, "partitions revoked");
            hooks.partitions_revoked(service, &lost);
        }
        if !gained.is_empty() {
            tracing::debug!(service, partitions = ?gained, "partitions assigned");
            hooks.partitions_assigned(service, &gained);
        }
        let changed = !gained.is_empty() || !lost.is_empty();
        Ok((now, changed))
    }

    /// The backend lost the service's registration (a Redis restarted without
    /// persistence, flushed, or failed over to an empty replica): registering again lets
    /// events emitted from now on reach this service. Events stored before are gone
    /// with the backend's data; the warning says so.
    fn register_again(&self, lost: &Error) -> Result<()> {
        let service = self.hivent.config().client_id();
        tracing::warn!(
            service,
            error = %ErrorChain(lost),
            "the backend lost this service's registration (restarted without persistence, flushed or failed over?); registering again. Events stored before the loss are gone"
        );
        self.hivent.register().map(|_| ())
    }
}

/// One member of a service's consumer group, processing the partitions it owns.
///
/// Step it by hand with [`Consumer::poll`] or [`Consumer::run_until_idle`] (tests,
/// deterministic), or hand it a thread with [`Consumer::run`]. Each event is removed
/// from its partition only after every matching handler returned `Ok`, or after it was
/// moved to the dead letter queue; a crash in between delivers it again.
///
/// Dropping a consumer leaves the group, releasing its partitions at once.
///
/// ```
/// # use hivent_core::{Config, Hivent, Shutdown};
/// # let hivent = Hivent::new(Config::builder().client_id("billing").build()?, std::sync::Arc::new(hivent_memory::MemoryBackend::new()));
/// hivent.signal("invoice:paid")?.receive(|_event| Ok(()));
/// let consumer = hivent.consumer()?; // registers and joins the group
/// hivent.signal("invoice:paid")?.emit(&serde_json::json!({"invoice": 1}), 1)?;
/// assert_eq!(consumer.poll()?, 1); // one fetch, its events handled and acknowledged
///
/// // On a thread of its own, until a shutdown:
/// let shutdown = Shutdown::new();
/// let stop = shutdown.clone();
/// let worker = std::thread::spawn(move || consumer.run(&shutdown));
/// stop.trigger();
/// worker.join().expect("the consumer thread ends")?;
/// # Ok::<(), hivent_core::Error>(())
/// ```
pub struct Consumer {
    shared: Arc<Shared>,
    options: ConsumerOptions,
    left: AtomicBool,
    /// Set once `run` saw its shutdown: no handler starts after that.
    stopping: AtomicBool,
    /// Whether `run`'s heartbeat thread renews the membership; without it (`poll`) a
    /// wait before a retry heartbeats by itself.
    heartbeat_thread: AtomicBool,
    /// The handles of the event metrics, by signal and version.
    metrics: Mutex<instruments::EventMetrics>,
}

/// Why an item failed.
struct ItemFailure {
    error: Error,
    /// The decoded event, when it decoded.
    event: Option<Event>,
    /// The receiver whose handler failed, where to resume, and its own retry policy.
    receiver: Option<(ReceivedSignal, usize, Option<RetryPolicy>)>,
}

/// Whether a failure may be retried.
enum Verdict {
    /// Retrying cannot help: dead-letter at once.
    Final,
    /// Retry under the policy, after the handler's chosen delay if it gave one.
    Retry(Option<Duration>),
}

/// What came of a failed attempt.
enum AfterFailure {
    /// Try again, from the handler at this position.
    Retry(usize),
    DeadLettered,
    /// Shutdown came during the wait: the event stays first in its partition.
    Stopped,
    /// The partition was handed over or lost during the wait.
    GaveUp,
}

/// How the wait before a retry ended.
enum Backoff {
    Elapsed,
    Stopped,
    Handover,
    Lost,
}

/// Handled events of finished batches, acknowledged together once the fetch is
/// processed (or sooner: before a failure is recorded, or once `ack_interval` passed),
/// so that a fetch that read many partitions costs one acknowledgement, not one per
/// partition.
#[derive(Default)]
struct PendingAcks {
    acks: Vec<(u32, usize)>,
    since: Option<Instant>,
    /// A partition's claim was found gone when its events were acknowledged.
    lost_any: bool,
}

impl PendingAcks {
    fn add(&mut self, partition: u32, count: usize) {
        if count > 0 {
            self.acks.push((partition, count));
            self.since.get_or_insert_with(Instant::now);
        }
    }

    fn is_due(&self, interval: Duration) -> bool {
        self.since.is_some_and(|since| since.elapsed() >= interval)
    }
}

/// How the processing of one batch ended.
enum BatchEnd {
    /// Every item was handled.
    Done,
    /// The partition was handed over or lost; the rest of the batch was left stored.
    GaveUp,
    /// Shutdown: the rest of the batch was left stored.
    Stopped,
}

impl Consumer {
    pub(crate) fn new(
        hivent: Hivent,
        session: Box<dyn ConsumerSession>,
        options: ConsumerOptions,
    ) -> Consumer {
        Consumer {
            shared: Arc::new(Shared {
                hivent,
                session,
                owned: Mutex::new(Vec::new()),
                registered_events: Mutex::new(Vec::new()),
                last_heartbeat: Mutex::new(Instant::now()),
            }),
            options,
            left: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            metrics: Mutex::default(),
            heartbeat_thread: AtomicBool::new(false),
        }
    }

    pub(crate) fn set_registered_events(&self, events: Vec<String>) {
        *self.shared.registered_events.lock() = events;
    }

    pub(crate) fn registered_events(&self) -> Vec<String> {
        self.shared.registered_events.lock().clone()
    }

    /// This member's id in the group.
    pub fn member_id(&self) -> &str {
        self.shared.session.member_id()
    }

    /// The partitions owned as of the last heartbeat, sorted.
    pub fn owned_partitions(&self) -> Vec<u32> {
        self.shared.owned.lock().clone()
    }

    /// Renews the membership and rebalances; returns the partitions owned now and calls
    /// `partitions_assigned`/`partitions_revoked` for the changes.
    pub fn heartbeat(&self) -> Result<Vec<u32>> {
        self.shared.heartbeat()
    }

    /// One step: heartbeat, fetch without waiting, process what was fetched. Returns
    /// how many events were processed (succeeded, unmatched or dead-lettered).
    pub fn poll(&self) -> Result<usize> {
        self.heartbeat()?;
        let fetched = self.shared.session.fetch(
            self.options.batch_size,
            self.options.max_fetch_bytes,
            Duration::ZERO,
        )?;
        self.process(&fetched, None)
    }

    /// Polls until a step finds nothing to do; returns how many events were processed.
    /// A failed event waiting to be retried heartbeats meanwhile, as [`Consumer::run`]'s
    /// heartbeat thread would.
    pub fn run_until_idle(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            match self.poll()? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    /// Processes events until `shutdown` is triggered, with a
    /// heartbeat thread keeping the membership alive meanwhile; then finishes the event
    /// whose handler is running (no other handler starts), acknowledges what is done
    /// and leaves the group, so the rest of the batch goes to the member taking over.
    ///
    /// Transient backend errors are logged and retried with backoff; other errors stop
    /// the consumer (after leaving the group) and are returned.
    pub fn run(self, shutdown: &Shutdown) -> Result<()> {
        let shutdown = shutdown.receiver();
        let (stop_heartbeat, heartbeat_stopped) = crossbeam_channel::bounded::<()>(0);
        let shared = Arc::clone(&self.shared);
        self.heartbeat_thread.store(true, Ordering::Relaxed);
        let heartbeat = thread::Builder::new()
            .name(format!("hivent-heartbeat-{}", self.member_id()))
            .spawn(move || heartbeat_loop(&shared, &heartbeat_stopped))
            .map_err(|e| Error::ConsumerPanicked {
                thread: "hivent-heartbeat".into(),
                message: format!("could not start the thread: {e}"),
            })?;
        let outcome = self.run_loop(shutdown);
        drop(stop_heartbeat);
        if heartbeat.join().is_err() {
            tracing::error!("the heartbeat thread panicked");
        }
        let left = self.leave();
        outcome.and(left)
    }

    /// Whether `shutdown` has been signalled; remembers it, since a sent message is
    /// received only once.
    fn is_stopping(&self, shutdown: Option<&Receiver<()>>) -> bool {
        if self.stopping.load(Ordering::Relaxed) {
            return true;
        }
        match shutdown.map(Receiver::try_recv) {
            Some(Ok(()) | Err(TryRecvError::Disconnected)) => {
                self.stopping.store(true, Ordering::Relaxed);
                true
            }
            Some(Err(TryRecvError::Empty)) | None => false,
        }
    }

    /// Waits `wait`, or less if shutdown comes meanwhile; returns whether it came.
    fn pause(&self, shutdown: Option<&Receiver<()>>, wait: Duration) -> bool {
        if self.is_stopping(shutdown) {
            return true;
        }
        match shutdown {
            Some(shutdown) => match shutdown.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => false,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                    self.stopping.store(true, Ordering::Relaxed);
                    true
                }
            },
            None => {
                thread::sleep(wait);
                false
            }
        }
    }

    fn run_loop(&self, shutdown: &Receiver<()>) -> Result<()> {
        // Jittered, so that the workers of a service do not all come back at once after a
        // backend restart.
        let backoff = RetryPolicy::endless(Duration::from_millis(50), Duration::from_secs(5));
        let mut failures = 0;
        if let Err(error) = self.heartbeat() {
            if !error.is_transient() {
                return Err(error);
            }
            tracing::warn!(error = %ErrorChain(&error), "first heartbeat failed; retrying");
        }
        loop {
            if self.is_stopping(Some(shutdown)) {
                return Ok(());
            }
            let fetched = self
                .shared
                .session
                .fetch(
                    self.options.batch_size,
                    self.options.max_fetch_bytes,
                    self.options.idle_wait,
                )
                .and_then(|fetched| self.process(&fetched, Some(shutdown)));
            match fetched {
                Ok(_) => failures = 0,
                Err(error) if error.is_transient() || error.is_fenced() => {
                    tracing::warn!(error = %ErrorChain(&error), "consumer step failed; retrying");
                    failures += 1;
                    match shutdown.recv_timeout(backoff.delay_after(failures)) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return Ok(()),
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Leaves the group, releasing every partition at once.
    pub fn leave(self) -> Result<()> {
        self.leave_once()
    }

    fn leave_once(&self) -> Result<()> {
        if self.left.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let owned = std::mem::take(&mut *self.shared.owned.lock());
        let result = self.shared.session.leave();
        instruments::heartbeat(
            self.shared.hivent.config().client_id(),
            self.member_id(),
            instruments::Heartbeat::Left,
        );
        if !owned.is_empty() {
            let config = self.shared.hivent.config();
            config
                .life_cycle_event_handler()
                .partitions_revoked(config.client_id(), &owned);
        }
        result
    }

    /// Processes the fetched batches, partition by partition, checking before every
    /// event that the partition is still ours and that no shutdown came; the handled
    /// events of all batches are acknowledged together at the end.
    fn process(&self, fetched: &Fetched, shutdown: Option<&Receiver<()>>) -> Result<usize> {
        let mut processed = 0;
        let mut acks = PendingAcks::default();
        // Learn the new assignment now rather than at the next heartbeat: after a
        // replay or a hand-over the partition is claimable (or ours again) at once.
        let mut heartbeat_now = !fetched.lost.is_empty();
        for batch in &fetched.batches {
            match self.process_batch(batch, shutdown, &mut processed, &mut acks) {
                Ok(BatchEnd::Done) => {}
                Ok(BatchEnd::GaveUp) => heartbeat_now = true,
                Ok(BatchEnd::Stopped) => break,
                // The new owner processes the rest; other partitions may still be ours.
                Err(error) if error.is_fenced() => {
                    tracing::warn!(error = %ErrorChain(&error), "lost a partition while processing; its new owner handles the unacknowledged events again");
                    heartbeat_now = true;
                }
                Err(error) => {
                    if let Err(ack_error) = self.flush_acks(&mut acks) {
                        tracing::warn!(error = %ErrorChain(&ack_error), "could not acknowledge the handled events of other partitions; they will be handled again");
                    }
                    return Err(error);
                }
            }
        }
        self.flush_acks(&mut acks)?;
        if heartbeat_now || acks.lost_any {
            if let Err(error) = self.heartbeat() {
                tracing::warn!(error = %ErrorChain(&error), "heartbeat after a change of ownership failed");
            }
        }
        Ok(processed)
    }

    /// Acknowledges the pending handled events of finished batches.
    fn flush_acks(&self, acks: &mut PendingAcks) -> Result<()> {
        let pending = std::mem::take(&mut acks.acks);
        acks.since = None;
        if pending.is_empty() {
            return Ok(());
        }
        let fenced = self.shared.session.ack_all(&pending)?;
        for partition in fenced {
            let handled: usize = pending
                .iter()
                .filter(|(p, _)| *p == partition)
                .map(|(_, count)| count)
                .sum();
            tracing::warn!(
                service = self.shared.hivent.config().client_id(),
                partition,
                handled,
                "lost the partition before its handled events were acknowledged; its new owner handles them again"
            );
            acks.lost_any = true;
        }
        Ok(())
    }

    fn process_batch(
        &self,
        batch: &Batch,
        shutdown: Option<&Receiver<()>>,
        processed: &mut usize,
        acks: &mut PendingAcks,
    ) -> Result<BatchEnd> {
        let session = &self.shared.session;
        let config = self.shared.hivent.config();
        let partition = batch.partition;
        // Handled and not yet acknowledged: acknowledged together at the end, or before
        // a failure is recorded, a hand-over or a stop, or once `ack_interval` passed.
        let mut unacked = 0;
        let mut acked_at = Instant::now();
        for (index, raw) in batch.items.iter().enumerate() {
            // Everything about this item (handlers, retries, its dead letter) is logged
            // inside its span; the event's fields are filled in once it is decoded.
            let span = tracing::info_span!(
                "hivent.event",
                service = config.client_id(),
                partition,
                event = tracing::field::Empty,
                version = tracing::field::Empty,
                uuid = tracing::field::Empty,
                cid = tracing::field::Empty,
            );
            let _in_span = span.enter();
            // A slow batch does not hold back the acknowledgement of earlier ones.
            if acks.is_due(self.options.ack_interval) {
                self.flush_acks(acks)?;
            }
            if self.is_stopping(shutdown) {
                self.ack_prefix(partition, unacked)?;
                return Ok(BatchEnd::Stopped);
            }
            match session.standing(partition) {
                Standing::Owned => {}
                Standing::Handover => {
                    self.ack_prefix(partition, unacked)?;
                    session.release(partition)?;
                    tracing::debug!(
                        service = config.client_id(),
                        partition,
                        left = batch.items.len() - index,
                        "handed the partition over after the event in hand"
                    );
                    return Ok(BatchEnd::GaveUp);
                }
                Standing::Lost => {
                    self.give_up_lost(partition, unacked, batch.items.len() - index);
                    return Ok(BatchEnd::GaveUp);
                }
            }
            let not_utf8 = batch.not_utf8.contains(&index);
            // Counted before any write below, which may find the partition lost.
            *processed += 1;
            let mut resume_at = 0;
            let handled = loop {
                let outcome = self.process_item(partition, raw, not_utf8, resume_at);
                let Err(failure) = outcome else {
                    break true;
                };
                // Everything handled so far is acknowledged before the failure is
                // recorded and waited on.
                self.flush_acks(acks)?;
                self.ack_prefix(partition, unacked)?;
                unacked = 0;
                acked_at = Instant::now();
                match self.after_failure(partition, raw, *failure, shutdown)? {
                    AfterFailure::Retry(at) => resume_at = at,
                    AfterFailure::DeadLettered => break false,
                    AfterFailure::Stopped => return Ok(BatchEnd::Stopped),
                    AfterFailure::GaveUp => return Ok(BatchEnd::GaveUp),
                }
            };
            if handled {
                unacked += 1;
                if acked_at.elapsed() >= self.options.ack_interval {
                    self.ack_prefix(partition, unacked)?;
                    unacked = 0;
                    acked_at = Instant::now();
                }
            }
        }
        acks.add(partition, unacked);
        Ok(BatchEnd::Done)
    }

    /// Records a failed attempt at the oldest item of `partition`; then retries it in
    /// place after a wait, or dead-letters it with its failure record.
    fn after_failure(
        &self,
        partition: u32,
        raw: &str,
        failure: ItemFailure,
        shutdown: Option<&Receiver<()>>,
    ) -> Result<AfterFailure> {
        let config = self.shared.hivent.config();
        let service = config.client_id();
        #[cfg(feature = "tokio")]
        if runtime_gone(&failure.error) {
            return Err(Error::HandlerRuntimeGone {
                service: service.to_owned(),
                partition,
            });
        }
        let failed_at = Utc::now();
        let attempts = self
            .shared
            .session
            .record_attempt(partition, raw, failed_at)?;
        let policy = failure
            .receiver
            .as_ref()
            .and_then(|(_, _, policy)| *policy)
            .unwrap_or_else(|| config.retry_policy());
        let verdict = verdict(&failure.error);
        let delay = match verdict {
            Verdict::Retry(chosen) if policy.allows_another_after(attempts.count) => {
                self.metrics_of(failure.event.as_ref()).retried.increment(1);
                chosen.unwrap_or_else(|| policy.delay_after(attempts.count))
            }
            Verdict::Retry(_) | Verdict::Final => {
                let permanent = matches!(verdict, Verdict::Final);
                self.dead_letter(partition, raw, failure, attempts, failed_at, permanent)?;
                return Ok(AfterFailure::DeadLettered);
            }
        };
        let meta = failure.event.as_ref().map(|event| &event.meta);
        tracing::info!(
            service,
            partition,
            event = %meta.map(|m| m.name.as_str()).unwrap_or_default(),
            version = meta.and_then(|m| m.version),
            uuid = %meta.map(|m| m.event_uuid.as_str()).unwrap_or_default(),
            attempt = attempts.count,
            max_attempts = policy.max_attempts,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error = %ErrorChain(&failure.error),
            "handler failed; retrying in place (the partition waits)"
        );
        if let Some(event) = &failure.event {
            config.life_cycle_event_handler().event_processing_retried(
                &failure.error,
                event,
                attempts.count,
                delay,
            );
        }
        match self.back_off(partition, delay, shutdown) {
            Backoff::Elapsed => Ok(AfterFailure::Retry(
                failure.receiver.map_or(0, |(_, resume_at, _)| resume_at),
            )),
            Backoff::Stopped => {
                tracing::info!(
                    service,
                    partition,
                    attempts = attempts.count,
                    "shutdown while waiting to retry; the event stays first in its partition and its attempts are kept"
                );
                Ok(AfterFailure::Stopped)
            }
            Backoff::Handover => {
                self.shared.session.release(partition)?;
                tracing::info!(
                    service,
                    partition,
                    attempts = attempts.count,
                    "handed the partition over while waiting to retry; its new owner tries the event again, counting on from the attempts kept"
                );
                Ok(AfterFailure::GaveUp)
            }
            Backoff::Lost => {
                self.give_up_lost(partition, 0, 1);
                Ok(AfterFailure::GaveUp)
            }
        }
    }

    /// Waits before a retry while the partition stays ours and no shutdown comes.
    fn back_off(
        &self,
        partition: u32,
        delay: Duration,
        shutdown: Option<&Receiver<()>>,
    ) -> Backoff {
        let until = Instant::now() + delay;
        let interval = self.shared.session.heartbeat_interval();
        let mut next_heartbeat = Instant::now() + interval;
        loop {
            if !self.heartbeat_thread.load(Ordering::Relaxed) && Instant::now() >= next_heartbeat {
                if let Err(error) = self.heartbeat() {
                    tracing::warn!(error = %ErrorChain(&error), "heartbeat while waiting to retry failed");
                }
                next_heartbeat = Instant::now() + interval;
            }
            match self.shared.session.standing(partition) {
                Standing::Owned => {}
                Standing::Handover => return Backoff::Handover,
                Standing::Lost => return Backoff::Lost,
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Backoff::Elapsed;
            }
            if self.pause(shutdown, left.min(STANDING_CHECK)) {
                return Backoff::Stopped;
            }
        }
    }

    /// Moves the oldest item of `partition` to its dead letter queue with its record,
    /// and says so at `warn` and to the life-cycle handler.
    fn dead_letter(
        &self,
        partition: u32,
        raw: &str,
        failure: ItemFailure,
        attempts: Attempts,
        failed_at: DateTime<Utc>,
        permanent: bool,
    ) -> Result<()> {
        let config = self.shared.hivent.config();
        let mut record =
            FailureRecord::new(error_chain(&failure.error), self.member_id(), failed_at);
        record.attempts = attempts.count;
        record.first_failed_at = attempts.first_failed_at;
        record.permanent = permanent;
        record.command = command_failure(&failure.error);
        record.receiver = failure.receiver.map(|(receiver, _, _)| receiver);
        self.shared.session.dead_letter(partition, raw, &record)?;
        self.metrics_of(failure.event.as_ref())
            .dead_lettered
            .increment(1);
        let queue = dead_letter_queue_name(config.client_id(), partition);
        // The item as JSON, when it is JSON at all: what `event_processing_failed` gets,
        // and where the log finds what an item that is not a valid event could name.
        let payload: Option<Value> = match &failure.event {
            Some(event) => serde_json::to_value(event).ok(),
            None => serde_json::from_str(raw).ok(),
        };
        let meta = payload.as_ref().map(|v| &v["meta"]);
        let field = |name: &str| match meta.map(|m| &m[name]) {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        tracing::warn!(
            service = config.client_id(),
            partition,
            event = %field("name"),
            version = %field("version"),
            uuid = %field("event_uuid"),
            attempts = attempts.count,
            error = %record.error,
            queue,
            "event dead-lettered"
        );
        config.life_cycle_event_handler().event_processing_failed(
            &failure.error,
            payload.as_ref(),
            raw,
            &queue,
        );
        Ok(())
    }

    /// The metric handles of `event`'s signal and version (of an item that is no event).
    fn metrics_of(
        &self,
        event: Option<&Event>,
    ) -> parking_lot::MappedMutexGuard<'_, instruments::EventHandles> {
        let service = self.shared.hivent.config().client_id();
        parking_lot::MutexGuard::map(self.metrics.lock(), |metrics| {
            metrics.of(service, event.map(|e| &e.meta))
        })
    }

    fn ack_prefix(&self, partition: u32, count: usize) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        self.shared.session.ack(partition, count)
    }

    /// The partition is no longer safely ours: no further handler runs for its batch.
    /// What was handled is acknowledged if the claim still stands (the lease may have
    /// run out with nobody taking over); otherwise the new owner handles it again.
    fn give_up_lost(&self, partition: u32, handled: usize, left: usize) {
        let service = self.shared.hivent.config().client_id();
        match self.ack_prefix(partition, handled) {
            Ok(()) => tracing::warn!(
                service,
                partition,
                left,
                "lost the partition's lease or claim; the rest of its batch is left to its owner"
            ),
            Err(error) => tracing::warn!(
                service,
                partition,
                handled,
                left,
                error = %ErrorChain(&error),
                "lost the partition; its owner will process the handled events again"
            ),
        }
    }

    /// Decodes and dispatches one item, from the handler at `resume_at` on.
    fn process_item(
        &self,
        partition: u32,
        raw: &str,
        not_utf8: bool,
        resume_at: usize,
    ) -> std::result::Result<(), Box<ItemFailure>> {
        let config = self.shared.hivent.config();
        let undecodable = |error: Error| {
            Box::new(ItemFailure {
                error,
                event: None,
                receiver: None,
            })
        };
        if not_utf8 {
            return Err(undecodable(Error::NotUtf8 {
                service: config.client_id().to_owned(),
                partition,
            }));
        }
        let event = Event::from_stored(raw).map_err(|source| {
            undecodable(Error::MalformedEvent {
                service: config.client_id().to_owned(),
                partition,
                source,
            })
        })?;
        let span = tracing::Span::current();
        span.record("event", event.meta.name.as_str());
        span.record("version", event.meta.version);
        span.record("uuid", event.meta.event_uuid.as_str());
        span.record("cid", event.meta.cid.as_str());
        let started = Instant::now();
        let dispatched = self
            .shared
            .hivent
            .receivers()
            .dispatch_from(&event, resume_at);
        // An event no handler matches ran nothing: neither counted nor timed.
        if !matches!(dispatched, Ok(Dispatch::Unmatched)) {
            let metrics = self.metrics_of(Some(&event));
            metrics.duration.record(started.elapsed().as_secs_f64());
            if matches!(dispatched, Ok(Dispatch::Handled(_))) {
                metrics.processed.increment(1);
            }
        }
        match dispatched {
            Ok(Dispatch::Handled(_)) => {
                tracing::debug!(service = config.client_id(), partition, event = %event.meta.name, version = ?event.meta.version, uuid = %event.meta.event_uuid, "event processed");
                config
                    .life_cycle_event_handler()
                    .event_processing_succeeded(&event.meta.name, event.meta.version, &event);
                Ok(())
            }
            Ok(Dispatch::Unmatched) => {
                tracing::debug!(service = config.client_id(), partition, event = %event.meta.name, version = ?event.meta.version, uuid = %event.meta.event_uuid, "no handler matches; acknowledged");
                Ok(())
            }
            Err(failure) => Err(Box::new(ItemFailure {
                event: Some(event),
                receiver: Some((failure.receiver, failure.resume_at, failure.retry)),
                error: failure.error,
            })),
        }
    }
}

/// Whether a failure may succeed on a retry: not for an item that is no event, nor
/// for a payload the receiver's type rejects, nor for an error marked [`Permanent`].
fn verdict(error: &Error) -> Verdict {
    match error {
        Error::PayloadMismatch { .. } | Error::MalformedEvent { .. } | Error::NotUtf8 { .. } => {
            Verdict::Final
        }
        Error::HandlerFailed { source, .. } => {
            if source.downcast_ref::<Permanent>().is_some() {
                Verdict::Final
            } else {
                Verdict::Retry(source.downcast_ref::<RetryAfter>().map(RetryAfter::delay))
            }
        }
        _ => Verdict::Retry(None),
    }
}

/// Whether an async handler's runtime shut down under it (somewhere in the chain).
#[cfg(feature = "tokio")]
fn runtime_gone(error: &Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        if current.is::<crate::async_handler::RuntimeGone>() {
            return true;
        }
        next = current.source();
    }
    false
}

/// The command failure in an error's chain, looking inside [`Permanent`] and
/// [`RetryAfter`], which forward their cause's text rather than nest it.
fn command_failure(error: &Error) -> Option<CommandFailure> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<CommandFailure>() {
            return Some(found.clone());
        }
        next = match (
            current.downcast_ref::<Permanent>(),
            current.downcast_ref::<RetryAfter>(),
        ) {
            (Some(permanent), _) => Some(permanent.cause()),
            (_, Some(retry_after)) => Some(retry_after.cause()),
            _ => current.source(),
        };
    }
    None
}

/// Heartbeats every interval, and at once on each notice that the group changed.
fn heartbeat_loop(shared: &Shared, stopped: &Receiver<()>) {
    let interval = shared.session.heartbeat_interval();
    let mut changes = shared.session.group_changes();
    loop {
        match &changes {
            Some(notices) => select! {
                recv(stopped) -> _ => return,
                recv(notices) -> notice => {
                    if notice.is_err() {
                        changes = None;
                    }
                }
                default(interval) => {}
            },
            None => match stopped.recv_timeout(interval) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            },
        }
        if let Err(error) = shared.heartbeat() {
            tracing::warn!(error = %ErrorChain(&error), "heartbeat failed; retrying");
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Err(error) = self.leave_once() {
            tracing::warn!(error = %ErrorChain(&error), "leaving the consumer group failed; the membership expires by itself");
        }
    }
}
