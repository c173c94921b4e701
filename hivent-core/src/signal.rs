//! Signals: named event streams to emit to and receive from.

use serde::de::DeserializeOwned;
use serde::Serialize;
#[cfg(feature = "tokio")]
use std::future::Future;
use std::sync::Arc;

use crate::{Error, Event, HandlerError, Hivent, Meta, Result, RetryPolicy};

/// The name that receives every event.
pub const WILDCARD: &str = "*";

/// Checks a signal name: non-empty, no whitespace or control characters, and `*` only
/// as the whole name (partial wildcards like `model:*` are not supported).
pub fn validate_signal_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "a signal needs a name"
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "names may not contain whitespace or control characters"
    } else if name != WILDCARD && name.contains('*') {
        "partial wildcards such as `model:*` are not supported; use `*` to receive every event"
    } else if is_hivent_key(name) {
        "the name is one of hivent's own Redis keys (`…:partition_count`, `…:dead_letter`, `…:hivent:…`, `hivent:…`); event names are keys too, so it would collide"
    } else {
        return Ok(());
    };
    Err(Error::InvalidSignalName {
        name: name.to_owned(),
        reason,
    })
}

/// Whether `name` has the shape of a key hivent keeps for a service (its partition
/// count, a dead letter queue, its coordination keys, emit markers). A service's
/// partitions (`<service>:<n>`) are checked where the service is known: at `signal()`
/// for the handle's own service, at registration and emit for every other.
fn is_hivent_key(name: &str) -> bool {
    name.ends_with(":partition_count")
        || name.ends_with(":dead_letter")
        || name.contains(":hivent:")
        || name.starts_with("hivent:")
}

/// Options of one emit: the version (required), a correlation id and a partition key.
///
/// ```
/// use hivent_core::EmitOptions;
/// let options = EmitOptions::version(2).cid("0123456789abcdef0123456789abcdef").key("user-7");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmitOptions {
    pub(crate) version: i64,
    pub(crate) cid: Option<String>,
    pub(crate) key: Option<String>,
}

impl EmitOptions {
    /// Emit as this version of the signal.
    pub fn version(version: i64) -> Self {
        EmitOptions {
            version,
            cid: None,
            key: None,
        }
    }

    /// Carries a correlation id, e.g. the `cid` of the event being handled. Without
    /// one, a fresh 32-hex id is used.
    pub fn cid(mut self, cid: impl Into<String>) -> Self {
        self.cid = Some(cid.into());
        self
    }

    /// Partitions by this key instead of by the payload: events with the same key keep
    /// their order.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
}

/// A named signal of a [`Hivent`] handle: emit events to it, or register receivers.
///
/// ```
/// use hivent_core::{Config, EmitOptions, Hivent};
/// let config = Config::builder().client_id("accounts").build()?;
/// let hivent = Hivent::new(config, std::sync::Arc::new(hivent_memory::MemoryBackend::new()));
/// let signal = hivent.signal("user:created")?;
/// signal.receive(|event| {
///     println!("user {} created", event.payload["id"]);
///     Ok(())
/// });
/// let event = signal.emit_with(&serde_json::json!({"id": 7}), EmitOptions::version(1).key("7"))?;
/// assert_eq!(event.meta.name, "user:created");
/// assert_eq!(event.meta.version, Some(1));
/// # Ok::<(), hivent_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Signal {
    name: String,
    hivent: Hivent,
    retry: Option<RetryPolicy>,
    /// Where async handlers registered through it run, when the application says.
    #[cfg(feature = "tokio")]
    runtime: Option<tokio::runtime::Handle>,
}

impl Signal {
    pub(crate) fn new(name: &str, hivent: Hivent) -> Result<Signal> {
        validate_signal_name(name)?;
        let own_partition = name
            .strip_prefix(hivent.config().client_id())
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if own_partition {
            return Err(Error::InvalidSignalName {
                name: name.to_owned(),
                reason: "the name is one of this service's partitions (`<client_id>:<n>`); event names are keys too, so it would collide",
            });
        }
        Ok(Signal {
            name: name.to_owned(),
            hivent,
            retry: None,
            #[cfg(feature = "tokio")]
            runtime: None,
        })
    }

    /// This signal with a retry policy for the receivers registered through it,
    /// instead of the service's [`crate::Config::retry_policy`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use hivent_core::RetryPolicy;
    /// # let hivent = hivent_core::Hivent::new(hivent_core::Config::builder().client_id("s").build()?, std::sync::Arc::new(hivent_memory::MemoryBackend::new()));
    /// let patient = RetryPolicy::default().max_attempts(10).max_delay(Duration::from_secs(60));
    /// hivent.signal("payment:captured")?.with_retry(patient).receive(|_event| Ok(()));
    /// # Ok::<(), hivent_core::Error>(())
    /// ```
    pub fn with_retry(mut self, policy: RetryPolicy) -> Signal {
        self.retry = Some(policy);
        self
    }

    /// The signal's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Emits `payload` as `version` of this signal and returns the stored event.
    pub fn emit<P: Serialize + ?Sized>(&self, payload: &P, version: i64) -> Result<Event> {
        self.emit_with(payload, EmitOptions::version(version))
    }

    /// Emits `payload` with a version, and optionally a correlation id and a key.
    pub fn emit_with<P: Serialize + ?Sized>(
        &self,
        payload: &P,
        options: EmitOptions,
    ) -> Result<Event> {
        Ok(self.hivent.emit_one(&self.name, payload, options)?.event)
    }

    /// [`Signal::emit_with`], saying how many services stored the event (0: no service
    /// receives this signal). On [`crate::Error::EmitFailed`] nothing was stored; on
    /// [`crate::Error::EmitUncertain`] it may have been, and
    /// [`crate::Hivent::retry_emit`] completes the emit without a second copy.
    pub fn emit_with_receipt<P: Serialize + ?Sized>(
        &self,
        payload: &P,
        options: EmitOptions,
    ) -> Result<crate::Emitted> {
        self.hivent.emit_one(&self.name, payload, options)
    }

    /// [`Signal::emit`] for async code (an axum handler, say): the task waits for the
    /// backend, no thread does, and the future owns everything it needs (the payload is
    /// encoded before this returns), so it can be spawned.
    ///
    /// ```
    /// # use hivent_core::{Config, Hivent};
    /// # let hivent = Hivent::new(Config::builder().client_id("shop").build()?, std::sync::Arc::new(hivent_memory::MemoryBackend::new()));
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// let event = hivent.signal("order:placed")?.emit_async(&serde_json::json!({"order": 1}), 1).await?;
    /// assert_eq!(event.meta.version, Some(1));
    /// # Ok::<(), hivent_core::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn emit_async<P: Serialize + ?Sized>(
        &self,
        payload: &P,
        version: i64,
    ) -> impl Future<Output = Result<Event>> + Send + 'static {
        self.emit_with_async(payload, EmitOptions::version(version))
    }

    /// [`Signal::emit_with`] for async code, as [`Signal::emit_async`].
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn emit_with_async<P: Serialize + ?Sized>(
        &self,
        payload: &P,
        options: EmitOptions,
    ) -> impl Future<Output = Result<Event>> + Send + 'static {
        let emit = self.hivent.emit_one_async(&self.name, payload, options);
        async move { Ok(emit.await?.event) }
    }

    /// [`Signal::emit_with_receipt`] for async code, as [`Signal::emit_async`].
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn emit_with_receipt_async<P: Serialize + ?Sized>(
        &self,
        payload: &P,
        options: EmitOptions,
    ) -> impl Future<Output = Result<crate::Emitted>> + Send + 'static {
        self.hivent.emit_one_async(&self.name, payload, options)
    }

    /// Receives every version of this signal as raw JSON events.
    pub fn receive<F>(&self, handler: F)
    where
        F: Fn(&Event) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        self.hivent
            .receivers()
            .add_with_retry(&self.name, None, self.retry, Arc::new(handler));
    }

    /// Receives only `version` of this signal.
    pub fn receive_version<F>(&self, version: i64, handler: F)
    where
        F: Fn(&Event) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        self.hivent.receivers().add_with_retry(
            &self.name,
            Some(version),
            self.retry,
            Arc::new(handler),
        );
    }

    /// Receives every version with the payload decoded into `T`. A payload that does
    /// not decode is a processing failure ([`Error::PayloadMismatch`]): the event is
    /// dead-lettered, the handler is not called.
    pub fn receive_as<T, F>(&self, handler: F)
    where
        T: DeserializeOwned,
        F: Fn(T, &Meta) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        self.hivent
            .receivers()
            .add_with_retry(&self.name, None, self.retry, typed(handler));
    }

    /// Receives only `version`, with the payload decoded into `T`.
    pub fn receive_version_as<T, F>(&self, version: i64, handler: F)
    where
        T: DeserializeOwned,
        F: Fn(T, &Meta) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        self.hivent.receivers().add_with_retry(
            &self.name,
            Some(version),
            self.retry,
            typed(handler),
        );
    }
}

fn typed<T, F>(handler: F) -> crate::dispatch::Handler
where
    T: DeserializeOwned,
    F: Fn(T, &Meta) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    Arc::new(move |event: &Event| handler(decode(event)?, &event.meta))
}

/// The payload as a `T`; a mismatch is the handler's failure.
fn decode<T: DeserializeOwned>(event: &Event) -> Result<T, HandlerError> {
    T::deserialize(&event.payload).map_err(|source| {
        Box::new(Error::PayloadMismatch {
            event: event.meta.name.clone(),
            version: event.meta.version,
            source,
        }) as HandlerError
    })
}

/// Async receivers: futures run on a tokio runtime (see `async_handler.rs` for which).
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
impl Signal {
    /// Receives every version of this signal with an async handler, given the event.
    /// The future runs on the multi-thread tokio runtime this is called from, or on a
    /// runtime hivent starts (two `hivent-async` threads) when called outside one; the
    /// worker waits for it, so dispatch, retries, dead letters and panics are as for
    /// [`Signal::receive`].
    ///
    /// ```
    /// # use hivent_core::{Config, Hivent};
    /// # let hivent = Hivent::new(Config::builder().client_id("mailer").build()?, std::sync::Arc::new(hivent_memory::MemoryBackend::new()));
    /// let (sent, outbox) = tokio::sync::mpsc::unbounded_channel();
    /// hivent.signal("user:created")?.receive_async(move |event| {
    ///     let sent = sent.clone();
    ///     async move {
    ///         tokio::task::yield_now().await; // an HTTP call or a query, say
    ///         sent.send(event.payload["email"].clone())?;
    ///         Ok(())
    ///     }
    /// });
    /// let consumer = hivent.consumer()?;
    /// hivent.signal("user:created")?.emit(&serde_json::json!({"email": "a@b.c"}), 1)?;
    /// assert_eq!(consumer.run_until_idle()?, 1);
    /// let mut outbox = outbox;
    /// assert_eq!(outbox.try_recv()?, serde_json::json!("a@b.c"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn receive_async<F, Fut>(&self, handler: F)
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.add_async(None, move |event: &Event| handler(event.clone()));
    }

    /// Receives only `version`, with an async handler.
    pub fn receive_version_async<F, Fut>(&self, version: i64, handler: F)
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.add_async(Some(version), move |event: &Event| handler(event.clone()));
    }

    /// Receives every version with the payload decoded into `T`, with an async handler;
    /// a payload that does not decode fails as in [`Signal::receive_as`].
    pub fn receive_as_async<T, F, Fut>(&self, handler: F)
    where
        T: DeserializeOwned,
        F: Fn(T, Meta) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.add_async(None, typed_async(handler));
    }

    /// Receives only `version`, decoded into `T`, with an async handler.
    pub fn receive_version_as_async<T, F, Fut>(&self, version: i64, handler: F)
    where
        T: DeserializeOwned,
        F: Fn(T, Meta) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.add_async(Some(version), typed_async(handler));
    }

    /// This signal with async handlers run on `runtime`, the application's, rather than
    /// the one they are registered from. A multi-thread runtime suits; a current-thread
    /// one only while a thread other than the consumers' drives it (its `block_on` on a
    /// thread of its own), since a consumer waits for the handler's future.
    ///
    /// ```
    /// # use hivent_core::{Config, Hivent};
    /// # let hivent = Hivent::new(Config::builder().client_id("mailer").build()?, std::sync::Arc::new(hivent_memory::MemoryBackend::new()));
    /// let app = tokio::runtime::Builder::new_multi_thread().thread_name("app").build()?;
    /// hivent.signal("user:created")?.on_runtime(app.handle().clone()).receive_async(|_event| async {
    ///     assert_eq!(std::thread::current().name(), Some("app"), "runs on the application's runtime");
    ///     Ok(())
    /// });
    /// let consumer = hivent.consumer()?;
    /// hivent.signal("user:created")?.emit(&serde_json::json!({}), 1)?;
    /// assert_eq!(consumer.run_until_idle()?, 1);
    /// # let ops = hivent.backend().operations().unwrap();
    /// # assert_eq!(ops.dead_letters("mailer", 0, 0, 10)?.len(), 0, "the handler succeeded");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_runtime(mut self, runtime: tokio::runtime::Handle) -> Signal {
        self.runtime = Some(runtime);
        self
    }

    fn add_async<F, Fut>(&self, version: Option<i64>, handler: F)
    where
        F: Fn(&Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let runtime = match &self.runtime {
            Some(runtime) => Ok(runtime.clone()),
            None => crate::async_handler::handler_runtime(),
        };
        let handler = crate::async_handler::async_handler(runtime, handler);
        self.hivent
            .receivers()
            .add_with_retry(&self.name, version, self.retry, handler);
    }
}

/// The typed async handler as one taking the event: decoded before the future starts.
#[cfg(feature = "tokio")]
fn typed_async<T, F, Fut>(
    handler: F,
) -> impl Fn(&Event) -> std::pin::Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>
       + Send
       + Sync
       + 'static
where
    T: DeserializeOwned,
    F: Fn(T, Meta) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    move |event: &Event| {
        let call = decode(event).map(|payload| handler(payload, event.meta.clone()));
        Box::pin(async move { call?.await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Good names pass; empty, spaced and partially wildcarded names fail with a reason.
    #[test]
    fn validates_names() {
        for ok in ["model:created", "*", "a.b-c_d/2"] {
            validate_signal_name(ok).unwrap();
        }
        for (bad, reason) in [
            ("", "a signal needs a name"),
            ("model:*", "partial wildcards"),
            ("**", "partial wildcards"),
            ("a b", "whitespace"),
            ("a\nb", "whitespace"),
            ("svc:partition_count", "hivent's own Redis keys"),
            ("svc:3:dead_letter", "hivent's own Redis keys"),
            ("svc:hivent:members", "hivent's own Redis keys"),
            ("hivent:emitted:abc", "hivent's own Redis keys"),
        ] {
            let err = validate_signal_name(bad).unwrap_err();
            assert!(err.to_string().contains(reason), "{bad:?}: {err}");
        }
    }
}
