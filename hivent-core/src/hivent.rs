//! The `Hivent` handle: configuration, backend and receivers of one service.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use chrono::{SubsecRound, Utc};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use serde::Serialize;

use crate::error::panic_message;
use crate::instruments;
use crate::partition::partition_hash_of_text;
use crate::{
    new_id, Backend, Config, Consumer, ConsumerOptions, EmitOptions, EmitRetry, Emitted, Envelope,
    Error, ErrorChain, Event, Meta, Receivers, Registration, Result, Shutdown, Signal,
};

/// The handle an application uses: signals to emit to and receive from, and consumers.
///
/// Cheap to clone and safe to share between threads. Build it with the facade's
/// `hivent::connect(config)`, which picks the backend from the configuration, or with
/// [`Hivent::new`] and a backend of your choice.
///
/// ```
/// use hivent_core::{Config, Hivent};
/// let config = Config::builder().client_id("billing").build()?;
/// let hivent = Hivent::new(config, std::sync::Arc::new(hivent_memory::MemoryBackend::new()));
/// let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
/// let counter = seen.clone();
/// hivent.signal("invoice:paid")?.receive(move |_event| {
///     counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
///     Ok(())
/// });
/// let consumer = hivent.consumer()?; // registers the service, joins its group
/// hivent.signal("invoice:paid")?.emit(&serde_json::json!({"invoice": 12}), 1)?;
/// assert_eq!(consumer.run_until_idle()?, 1);
/// assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
/// # Ok::<(), hivent_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Hivent {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    backend: Arc<dyn Backend>,
    receivers: Receivers,
    taps: Mutex<Vec<(u64, Sender<Event>)>>,
    tap_count: AtomicUsize,
    next_tap: AtomicU64,
    /// The handles of the emit metrics.
    metrics: Mutex<instruments::EventMetrics>,
    /// In inline mode, the consumer that delivers each emit before `emit` returns.
    inline: Option<Mutex<Option<Consumer>>>,
}

impl Hivent {
    /// A handle on `backend` for the service described by `config`.
    pub fn new(config: Config, backend: Arc<dyn Backend>) -> Hivent {
        Hivent::build(config, backend, false)
    }

    /// A handle whose emits are delivered to its own receivers before `emit` returns,
    /// with the life-cycle calls and dead-lettering of a real consumer: the Rust form of
    /// the Ruby gem's spec signal. For tests.
    pub fn inline(config: Config, backend: Arc<dyn Backend>) -> Hivent {
        Hivent::build(config, backend, true)
    }

    fn build(config: Config, backend: Arc<dyn Backend>, inline: bool) -> Hivent {
        Hivent {
            inner: Arc::new(Inner {
                config,
                backend,
                receivers: Receivers::default(),
                taps: Mutex::new(Vec::new()),
                tap_count: AtomicUsize::new(0),
                next_tap: AtomicU64::new(0),
                metrics: Mutex::default(),
                inline: inline.then(|| Mutex::new(None)),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// The receivers registered so far.
    pub fn receivers(&self) -> &Receivers {
        &self.inner.receivers
    }

    /// The signal `name`; `*` receives every event. Fails for invalid names such as
    /// partial wildcards.
    pub fn signal(&self, name: &str) -> Result<Signal> {
        Signal::new(name, self.clone())
    }

    /// Starts a batch of emits sent to the backend together.
    pub fn batch(&self) -> EmitBatch {
        EmitBatch {
            hivent: self.clone(),
            events: Vec::new(),
            envelopes: Vec::new(),
        }
    }

    fn prepare<P: Serialize + ?Sized>(
        &self,
        name: &str,
        payload: &P,
        options: EmitOptions,
    ) -> Result<(Event, Envelope)> {
        if name == crate::WILDCARD {
            return Err(Error::InvalidSignalName {
                name: name.to_owned(),
                reason: "`*` only receives; emit to a named signal",
            });
        }
        let payload =
            serde_json::to_value(payload).map_err(|source| Error::PayloadNotEncodable {
                name: name.to_owned(),
                source,
            })?;
        // Encoded once: for the partition hash and inside the event's JSON. (Through
        // `to_string`, not `Display`, which goes through the formatter per piece.)
        let payload_text =
            serde_json::to_string(&payload).map_err(|source| Error::PayloadNotEncodable {
                name: name.to_owned(),
                source,
            })?;
        let hash = partition_hash_of_text(options.key.as_deref(), &payload, &payload_text);
        let event = Event::new(
            payload,
            Meta {
                event_uuid: new_id(),
                name: name.to_owned(),
                version: Some(options.version),
                cid: options.cid.unwrap_or_else(new_id),
                producer: self.inner.config.client_id().to_owned(),
                // The wire keeps milliseconds; the returned event equals the stored one.
                created_at: Utc::now().trunc_subsecs(3),
            },
        );
        let envelope = Envelope {
            name: name.to_owned(),
            partition_hash: hash,
            json: event.to_json_with_payload(&payload_text),
        };
        let limit = self.inner.config.max_event_bytes();
        if envelope.json.len() > limit {
            return Err(Error::EventTooLarge {
                name: name.to_owned(),
                actual: envelope.json.len(),
                limit,
            });
        }
        Ok((event, envelope))
    }

    pub(crate) fn emit_one<P: Serialize + ?Sized>(
        &self,
        name: &str,
        payload: &P,
        options: EmitOptions,
    ) -> Result<Emitted> {
        let (event, envelope) = self.prepare(name, payload, options)?;
        let span = self.emit_span(std::slice::from_ref(&event));
        let _in_span = span.enter();
        self.before_emit()?;
        let counts = self.send(vec![envelope], std::slice::from_ref(&event))?;
        record_receivers(&span, &counts);
        self.after_emit(std::slice::from_ref(&event))?;
        Ok(Emitted {
            event,
            receiving_services: counts.first().copied().unwrap_or(0),
        })
    }

    /// Sends one publish call of `envelopes` (the encodings of `events`, not empty);
    /// a failure says whether the events may have been stored.
    fn send(&self, envelopes: Vec<Envelope>, events: &[Event]) -> Result<Vec<usize>> {
        let call_id = new_id();
        let started = Instant::now();
        let stored = self.inner.backend.publish(&call_id, &envelopes);
        self.measured(&stored, events, started);
        sent(stored, call_id, envelopes, events)
    }

    /// Records an emit call in the metrics: its duration, and its events once stored.
    fn measured(&self, stored: &Result<Vec<usize>>, events: &[Event], started: Instant) {
        let stored_events = if stored.is_ok() { events } else { &[] };
        self.inner.metrics.lock().emitted(
            self.config().client_id(),
            stored_events,
            started.elapsed(),
        );
    }

    /// [`Hivent::send`] through the backend's async publish.
    #[cfg(feature = "tokio")]
    async fn send_async(&self, envelopes: Vec<Envelope>, events: &[Event]) -> Result<Vec<usize>> {
        let call_id = new_id();
        let started = Instant::now();
        let stored = self.inner.backend.publish_async(&call_id, &envelopes).await;
        self.measured(&stored, events, started);
        sent(stored, call_id, envelopes, events)
    }

    /// The emit of one prepared event, for async callers: nothing borrowed, so the
    /// future can be sent to any task.
    #[cfg(feature = "tokio")]
    pub(crate) fn emit_one_async<P: Serialize + ?Sized>(
        &self,
        name: &str,
        payload: &P,
        options: EmitOptions,
    ) -> impl std::future::Future<Output = Result<Emitted>> + Send + 'static {
        use tracing::Instrument;
        let prepared = self.prepare(name, payload, options);
        let span = match &prepared {
            Ok((event, _)) => self.emit_span(std::slice::from_ref(event)),
            Err(_) => tracing::Span::none(),
        };
        let hivent = self.clone();
        let in_span = span.clone();
        async move {
            let (event, envelope) = prepared?;
            hivent.before_emit()?;
            let counts = hivent
                .send_async(vec![envelope], std::slice::from_ref(&event))
                .await?;
            record_receivers(&tracing::Span::current(), &counts);
            hivent.after_emit(std::slice::from_ref(&event))?;
            Ok(Emitted {
                event,
                receiving_services: counts.first().copied().unwrap_or(0),
            })
        }
        .instrument(in_span)
    }

    /// The span of one emit call: the producer, the signal (the first event's, for a
    /// batch), how many events and, once stored, how many services received them.
    fn emit_span(&self, events: &[Event]) -> tracing::Span {
        let signal = events.first().map_or("", |e| e.meta.name.as_str());
        tracing::info_span!(
            "hivent.emit",
            service = self.config().client_id(),
            signal,
            events = events.len(),
            receiving_services = tracing::field::Empty,
        )
    }

    /// Sends again an emit call whose reply was lost ([`Error::EmitUncertain`] carries
    /// the [`EmitRetry`]): the backend stores what the first try did not, and nothing
    /// twice. Returns, per event, how many services stored it; fails again (and can be
    /// retried again) when the backend still cannot be reached.
    ///
    /// ```
    /// # use hivent_core::{Config, Hivent};
    /// # let hivent = Hivent::new(Config::builder().client_id("shop").build()?, std::sync::Arc::new(hivent_memory::MemoryBackend::new()));
    /// let signal = hivent.signal("order:placed")?;
    /// match signal.emit(&serde_json::json!({"order": 1}), 1) {
    ///     Ok(_) => {}
    ///     Err(error) => match error.emit_retry() {
    ///         // The event may or may not be stored: complete the same call.
    ///         Some(retry) => {
    ///             hivent.retry_emit(retry)?;
    ///         }
    ///         None => return Err(error),
    ///     },
    /// }
    /// # Ok::<(), hivent_core::Error>(())
    /// ```
    pub fn retry_emit(&self, retry: &EmitRetry) -> Result<Vec<usize>> {
        let stored = self
            .inner
            .backend
            .republish(&retry.call_id, &retry.envelopes);
        stored.map_err(|source| retry.failed_again(source))
    }

    /// [`Hivent::retry_emit`] for async code.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn retry_emit_async(&self, retry: &EmitRetry) -> Result<Vec<usize>> {
        let stored = self
            .inner
            .backend
            .republish_async(&retry.call_id, &retry.envelopes)
            .await;
        stored.map_err(|source| retry.failed_again(source))
    }

    /// In inline mode, makes sure the service is registered with its current receivers
    /// before an emit, so the emit reaches its own receivers.
    fn before_emit(&self) -> Result<()> {
        let Some(inline) = &self.inner.inline else {
            return Ok(());
        };
        if self.receivers().is_empty() {
            return Ok(());
        }
        // A handler that emits while we deliver finds the lock taken; the consumer is
        // then registered already and the delivering loop picks the event up.
        if let Some(mut slot) = inline.try_lock() {
            let names = self.receivers().signal_names();
            if slot.as_ref().is_none_or(|c| c.registered_events() != names) {
                if let Some(old) = slot.take() {
                    old.leave()?;
                }
                *slot = Some(self.consumer()?);
            }
        }
        Ok(())
    }

    fn after_emit(&self, events: &[Event]) -> Result<()> {
        if self.inner.tap_count.load(Ordering::Acquire) > 0 {
            for (_, tap) in self.inner.taps.lock().iter() {
                for event in events {
                    // A tap whose receiver is gone is removed by its drop; ignore it here.
                    let _ = tap.send(event.clone());
                }
            }
        }
        if let Some(inline) = &self.inner.inline {
            if let Some(slot) = inline.try_lock() {
                if let Some(consumer) = slot.as_ref() {
                    consumer.run_until_idle()?;
                }
            }
        }
        Ok(())
    }

    /// Records with the backend that this service receives its registered signals, with
    /// its partition count, and calls `application_registered`.
    ///
    /// Fails when no receiver is registered: registering nothing would remove the
    /// service from every signal and producers would stop delivering to it.
    pub fn register(&self) -> Result<Registration> {
        let events = self.receivers().signal_names();
        if events.is_empty() {
            return Err(Error::NoReceivers {
                service: self.config().client_id().to_owned(),
            });
        }
        let registration = Registration {
            service: self.config().client_id().to_owned(),
            events,
            partition_count: self.config().partition_count(),
        };
        self.inner.backend.register(&registration)?;
        tracing::debug!(
            client_id = %registration.service,
            events = ?registration.events,
            partition_count = registration.partition_count,
            "application registered"
        );
        self.config()
            .life_cycle_event_handler()
            .application_registered(
                &registration.service,
                &self.receivers().received_signals(),
                registration.partition_count,
            );
        Ok(registration)
    }

    /// Joins the service's consumer group without registering (see [`Hivent::register`]).
    pub fn join(&self, options: ConsumerOptions) -> Result<Consumer> {
        let session = self.inner.backend.join(self.config().client_id())?;
        Ok(Consumer::new(self.clone(), session, options))
    }

    /// Registers the service and joins its consumer group with the configured consumer
    /// options ([`Config::consumer_options`]).
    pub fn consumer(&self) -> Result<Consumer> {
        let registration = self.register()?;
        let consumer = self.join(self.config().consumer_options())?;
        consumer.set_registered_events(registration.events);
        consumer.heartbeat()?;
        Ok(consumer)
    }

    /// Runs `concurrency` consumers of the service on their own threads
    /// (`hivent-worker-0`, …) until `shutdown` is triggered, then lets each finish the
    /// handler it is running (no other starts), acknowledge what it handled and leave
    /// the group. Registers once first; events emitted before that registration do not
    /// reach this service, so call [`Hivent::register`] first when emits may race with
    /// a `run` on another thread. [`Hivent::start`] runs them in the background instead.
    ///
    /// Returns the first error of any thread, including a panic turned into
    /// [`Error::ConsumerPanicked`].
    ///
    /// ```
    /// # use hivent_core::{Config, ConsumerOptions, Hivent, Shutdown};
    /// # let hivent = Hivent::new(Config::builder().client_id("billing").build()?, std::sync::Arc::new(hivent_memory::MemoryBackend::new()));
    /// hivent.signal("invoice:paid")?.receive(|_event| Ok(()));
    /// let shutdown = Shutdown::new();
    /// let stop = shutdown.clone();
    /// std::thread::spawn(move || stop.trigger()); // a signal handler, say
    /// hivent.run(2, ConsumerOptions::default(), &shutdown)?;
    /// # Ok::<(), hivent_core::Error>(())
    /// ```
    pub fn run(
        &self,
        concurrency: usize,
        options: ConsumerOptions,
        shutdown: &Shutdown,
    ) -> Result<()> {
        let threads = self.launch(concurrency, options, shutdown)?;
        join_workers(threads)
    }

    /// [`Hivent::run`] in the background, for applications that go on doing other work
    /// (an HTTP server, say): registers and joins before it returns (a few round trips),
    /// so an emit after it reaches the service; the returned [`Running`] stops the
    /// consumers and waits for them.
    ///
    /// ```
    /// # use hivent_core::{Config, ConsumerOptions, Hivent};
    /// # let hivent = Hivent::new(Config::builder().client_id("billing").build()?, std::sync::Arc::new(hivent_memory::MemoryBackend::new()));
    /// let (seen, saw) = std::sync::mpsc::channel();
    /// hivent.signal("invoice:paid")?.receive(move |event| Ok(seen.send(event.payload.clone())?));
    /// let running = hivent.start(1, ConsumerOptions::default())?;
    /// hivent.signal("invoice:paid")?.emit(&serde_json::json!({"invoice": 7}), 1)?;
    /// assert_eq!(saw.recv_timeout(std::time::Duration::from_secs(30)).ok(), Some(serde_json::json!({"invoice": 7})));
    /// running.stop();
    /// running.wait()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(&self, concurrency: usize, options: ConsumerOptions) -> Result<Running> {
        let shutdown = Shutdown::new();
        let threads = self.launch(concurrency, options, &shutdown)?;
        #[cfg(feature = "tokio")]
        let (finished, on_finish) = tokio::sync::oneshot::channel::<()>();
        let supervisor = thread::Builder::new()
            .name("hivent-workers".into())
            .spawn(move || {
                let outcome = join_workers(threads);
                #[cfg(feature = "tokio")]
                let _ = finished.send(());
                outcome
            })
            .map_err(|e| {
                // The consumers run with this signal alone: they stop on their own.
                shutdown.trigger();
                Error::ConsumerPanicked {
                    thread: "hivent-workers".into(),
                    message: format!("could not start the thread: {e}"),
                }
            })?;
        Ok(Running {
            shutdown,
            supervisor: Some(supervisor),
            #[cfg(feature = "tokio")]
            on_finish,
        })
    }

    /// Registers, then starts `concurrency` consumer threads that stop on `shutdown`.
    fn launch(
        &self,
        concurrency: usize,
        options: ConsumerOptions,
        shutdown: &Shutdown,
    ) -> Result<Vec<(String, thread::JoinHandle<Result<()>>)>> {
        let registration = self.register()?;
        // Every member joins before any thread starts: a join that fails leaves nothing
        // running (the members that joined leave as they are dropped).
        let consumers = (0..concurrency.max(1))
            .map(|_| {
                let consumer = self.join(options.clone())?;
                consumer.set_registered_events(registration.events.clone());
                Ok(consumer)
            })
            .collect::<Result<Vec<Consumer>>>()?;
        let mut threads = Vec::new();
        for (index, consumer) in consumers.into_iter().enumerate() {
            let stop = shutdown.clone();
            let name = format!("hivent-worker-{index}");
            match thread::Builder::new()
                .name(name.clone())
                .spawn(move || consumer.run(&stop))
            {
                Ok(handle) => threads.push((name, handle)),
                Err(error) => {
                    // The threads started must not outlive the failure: this stops
                    // whatever else runs with `shutdown` too, and says so.
                    tracing::warn!(thread = %name, error = %error, "could not start a consumer thread; stopping the ones started");
                    shutdown.trigger();
                    if let Err(stopped) = join_workers(threads) {
                        tracing::warn!(error = %ErrorChain(&stopped), "a consumer thread started before the failure ended with an error");
                    }
                    return Err(Error::ConsumerPanicked {
                        thread: name,
                        message: format!("could not start the thread: {error}"),
                    });
                }
            }
        }
        Ok(threads)
    }

    /// Sets the lag gauges of this service's partitions (`hivent_partition_lag_events`,
    /// `hivent_partition_oldest_event_age_seconds`; see [`crate::instruments`]) from one
    /// read of its status. Worker processes call it periodically when they export
    /// metrics; an application exporting its own calls it as often as its scrapes
    /// need. Does nothing on a backend without [`crate::Operations`].
    ///
    /// ```
    /// # use hivent_core::{Config, Hivent};
    /// # let hivent = Hivent::new(Config::builder().client_id("billing").build()?, std::sync::Arc::new(hivent_memory::MemoryBackend::new()));
    /// hivent.signal("invoice:paid")?.receive(|_event| Ok(()));
    /// hivent.register()?;
    /// hivent.record_lag()?; // one status read; the gauges go to the installed recorder
    /// # Ok::<(), hivent_core::Error>(())
    /// ```
    pub fn record_lag(&self) -> Result<()> {
        let Some(operations) = self.inner.backend.operations() else {
            return Ok(());
        };
        let status = operations.service_status(self.config().client_id())?;
        instruments::lag(&status, Utc::now());
        Ok(())
    }

    /// Starts recording every event this handle emits from now on, for test assertions.
    pub fn tap_emits(&self) -> EmitTap {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let id = self.inner.next_tap.fetch_add(1, Ordering::Relaxed);
        self.inner.taps.lock().push((id, sender));
        self.inner.tap_count.fetch_add(1, Ordering::Release);
        EmitTap {
            id,
            receiver,
            hivent: self.clone(),
        }
    }
}

/// What a publish call's outcome means for the emit of `events`: a failure says whether
/// they may have been stored, and carries what completes the call when they may.
fn sent(
    stored: Result<Vec<usize>>,
    call_id: String,
    envelopes: Vec<Envelope>,
    events: &[Event],
) -> Result<Vec<usize>> {
    let (name, event_uuid) = events
        .first()
        .map(|e| (e.meta.name.clone(), e.meta.event_uuid.clone()))
        .unwrap_or_default();
    match stored {
        Ok(counts) => {
            for (event, stored) in events.iter().zip(&counts) {
                if *stored == 0 {
                    tracing::debug!(signal = %event.meta.name, uuid = %event.meta.event_uuid, "emitted, but no service receives this signal");
                }
            }
            Ok(counts)
        }
        Err(source @ Error::MaybeStored { .. }) => Err(Error::EmitUncertain {
            retry: Box::new(EmitRetry {
                call_id,
                name: name.clone(),
                event_uuid: event_uuid.clone(),
                envelopes: envelopes.into(),
            }),
            name,
            event_uuid,
            source: Box::new(source),
        }),
        Err(source @ Error::PartlyStored { .. }) => Err(Error::EmitPartlyStored {
            name,
            event_uuid,
            source: Box::new(source),
        }),
        Err(source) => Err(Error::EmitFailed {
            name,
            event_uuid,
            source: Box::new(source),
        }),
    }
}

/// Waits for every consumer thread; the first error of any, a panic included.
fn join_workers(threads: Vec<(String, thread::JoinHandle<Result<()>>)>) -> Result<()> {
    let mut first_error = None;
    for (name, handle) in threads {
        let outcome = handle.join().unwrap_or_else(|panic| {
            Err(Error::ConsumerPanicked {
                thread: name,
                message: panic_message(panic.as_ref()),
            })
        });
        if let Err(e) = outcome {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Consumers running in the background, from [`Hivent::start`].
///
/// Dropping it stops them without waiting: they finish their handlers and leave the
/// group on their own threads.
pub struct Running {
    shutdown: Shutdown,
    /// Taken by [`Running::wait`].
    supervisor: Option<thread::JoinHandle<Result<()>>>,
    #[cfg(feature = "tokio")]
    on_finish: tokio::sync::oneshot::Receiver<()>,
}

impl Running {
    /// Their stop signal, to hand to whatever decides when to stop.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Tells them to stop (see [`Shutdown::trigger`]); returns at once.
    pub fn stop(&self) {
        self.shutdown.trigger();
    }

    /// Whether every consumer thread has ended (stopped, or failed).
    pub fn is_finished(&self) -> bool {
        self.supervisor
            .as_ref()
            .is_none_or(thread::JoinHandle::is_finished)
    }

    /// Blocks until every consumer thread has ended, and returns the first error of
    /// any, as [`Hivent::run`] does. Stops nothing by itself: call [`Running::stop`]
    /// first, or wait for a failure.
    pub fn wait(mut self) -> Result<()> {
        let Some(supervisor) = self.supervisor.take() else {
            return Ok(());
        };
        supervisor.join().unwrap_or_else(|panic| {
            Err(Error::ConsumerPanicked {
                thread: "hivent-workers".into(),
                message: panic_message(panic.as_ref()),
            })
        })
    }

    /// [`Running::wait`] for async code: the task waits, no thread is blocked.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn finished(mut self) -> Result<()> {
        // Sent (or dropped, on a panic) just before the supervisor thread ends, so the
        // join that follows returns at once.
        let _ = (&mut self.on_finish).await;
        self.wait()
    }

    /// Stops the consumers and waits for them from async code.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn stop_and_wait(self) -> Result<()> {
        self.stop();
        self.finished().await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Not waited for: dropped without `wait`, the consumers stop on their own.
        if self.supervisor.is_some() {
            self.shutdown.trigger();
        }
    }
}

/// Records the events a [`Hivent`] emits while it lives; see [`Hivent::tap_emits`].
pub struct EmitTap {
    id: u64,
    receiver: Receiver<Event>,
    hivent: Hivent,
}

impl EmitTap {
    /// The events emitted since the tap started (or since the last call), in order.
    pub fn take(&self) -> Vec<Event> {
        self.receiver.try_iter().collect()
    }
}

impl Drop for EmitTap {
    fn drop(&mut self) {
        let inner = &self.hivent.inner;
        inner.taps.lock().retain(|(id, _)| *id != self.id);
        inner.tap_count.fetch_sub(1, Ordering::Release);
    }
}

/// Several emits sent to the backend together, in as few round trips as it can.
///
/// ```
/// use hivent_core::{Config, EmitOptions, Hivent};
/// let hivent = Hivent::new(Config::builder().client_id("shop").build()?,
///                          std::sync::Arc::new(hivent_memory::MemoryBackend::new()));
/// let signal = hivent.signal("order:placed")?;
/// let mut batch = hivent.batch();
/// for id in 0..3 {
///     batch.push(&signal, &serde_json::json!({"order": id}), EmitOptions::version(1))?;
/// }
/// assert_eq!(batch.emit()?.len(), 3);
/// # Ok::<(), hivent_core::Error>(())
/// ```
pub struct EmitBatch {
    hivent: Hivent,
    events: Vec<Event>,
    envelopes: Vec<Envelope>,
}

impl EmitBatch {
    /// Adds an event; fails (and adds nothing) when the payload cannot be encoded.
    pub fn push<P: Serialize + ?Sized>(
        &mut self,
        signal: &Signal,
        payload: &P,
        options: EmitOptions,
    ) -> Result<&mut Self> {
        let (event, envelope) = self.hivent.prepare(signal.name(), payload, options)?;
        self.events.push(event);
        self.envelopes.push(envelope);
        Ok(self)
    }

    /// How many events the batch holds.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Sends every event and returns them. On [`Error::EmitFailed`] nothing was
    /// stored; on [`Error::EmitUncertain`] part of the batch may have been stored, and
    /// [`Hivent::retry_emit`] completes it without second copies.
    pub fn emit(self) -> Result<Vec<Event>> {
        Ok(self
            .emit_with_receipts()?
            .into_iter()
            .map(|emitted| emitted.event)
            .collect())
    }

    /// [`EmitBatch::emit`], saying for each event how many services stored it.
    pub fn emit_with_receipts(self) -> Result<Vec<Emitted>> {
        if self.events.is_empty() {
            return Ok(Vec::new());
        }
        let span = self.hivent.emit_span(&self.events);
        let _in_span = span.enter();
        self.hivent.before_emit()?;
        let counts = self.hivent.send(self.envelopes, &self.events)?;
        record_receivers(&span, &counts);
        self.hivent.after_emit(&self.events)?;
        Ok(receipts(self.events, counts))
    }

    /// [`EmitBatch::emit`] for async code: the task waits for Redis, no thread does.
    ///
    /// ```
    /// # use hivent_core::{Config, EmitOptions, Hivent};
    /// # let hivent = Hivent::new(Config::builder().client_id("shop").build()?, std::sync::Arc::new(hivent_memory::MemoryBackend::new()));
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// let signal = hivent.signal("order:placed")?;
    /// let mut batch = hivent.batch();
    /// batch.push(&signal, &serde_json::json!({"order": 1}), EmitOptions::version(1))?;
    /// batch.push(&signal, &serde_json::json!({"order": 2}), EmitOptions::version(1))?;
    /// assert_eq!(batch.emit_async().await?.len(), 2);
    /// # Ok::<(), hivent_core::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn emit_async(self) -> Result<Vec<Event>> {
        Ok(self
            .emit_with_receipts_async()
            .await?
            .into_iter()
            .map(|emitted| emitted.event)
            .collect())
    }

    /// [`EmitBatch::emit_with_receipts`] for async code.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn emit_with_receipts_async(self) -> Result<Vec<Emitted>> {
        if self.events.is_empty() {
            return Ok(Vec::new());
        }
        use tracing::Instrument;
        let span = self.hivent.emit_span(&self.events);
        let hivent = self.hivent.clone();
        async move {
            hivent.before_emit()?;
            let counts = hivent.send_async(self.envelopes, &self.events).await?;
            record_receivers(&tracing::Span::current(), &counts);
            hivent.after_emit(&self.events)?;
            Ok(receipts(self.events, counts))
        }
        .instrument(span)
        .await
    }
}

/// Records on an emit's span how many services received its events (the most any of
/// them reached, for a batch).
fn record_receivers(span: &tracing::Span, counts: &[usize]) {
    span.record(
        "receiving_services",
        counts.iter().copied().max().unwrap_or(0),
    );
}

fn receipts(events: Vec<Event>, counts: Vec<usize>) -> Vec<Emitted> {
    events
        .into_iter()
        .zip(counts)
        .map(|(event, receiving_services)| Emitted {
            event,
            receiving_services,
        })
        .collect()
}
