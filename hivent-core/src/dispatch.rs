//! Dispatch: the registered receivers of a service and the rules that route an event to them.
//!
//! The rules, pinned by the tests below:
//! - An event goes to every handler registered for its name with no version, for its
//!   name and exactly its version, and for `*` (with or without a version), in the
//!   order the handlers were registered.
//! - The first handler that fails (returns `Err` or panics) stops the rest: the event
//!   counts as failed. It is retried in place under the failing receiver's
//!   [`RetryPolicy`] (or the service's), starting again at the handler that failed, and
//!   dead-lettered whole once the attempts are used up. A new owner of the partition
//!   (after a crash or a hand-over) and a replay from the dead letter queue run every
//!   matching handler again, so handlers must be idempotent, as they must be anyway
//!   under at-least-once delivery.
//! - A panic is caught and becomes [`Error::HandlerPanicked`]; it never kills the worker.
//! - An event no handler matches (e.g. a version nobody receives) is acknowledged and
//!   dropped without calling a life-cycle hook: [`Dispatch::Unmatched`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::panic_message;
use crate::{Error, Event, HandlerError, Result, RetryPolicy};

/// A handler of raw events.
pub type Handler = Arc<dyn Fn(&Event) -> Result<(), HandlerError> + Send + Sync>;

#[derive(Clone)]
struct Receiver {
    signal: String,
    version: Option<i64>,
    retry: Option<RetryPolicy>,
    handler: Handler,
}

/// The outcome of dispatching one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dispatch {
    /// This many handlers ran, all successfully.
    Handled(usize),
    /// No handler matched the event.
    Unmatched,
}

/// Why dispatching an event failed: the error, and the receiver whose handler failed.
#[derive(Debug)]
#[non_exhaustive]
pub struct HandlerFailure {
    /// The handler's error (or its panic, or the typed receiver's decoding error).
    pub error: Error,
    /// Where [`Receivers::dispatch_from`] resumes to try the failed handler again,
    /// without running the ones before it that succeeded.
    pub resume_at: usize,
    /// The failing receiver's signal and version filter.
    pub receiver: ReceivedSignal,
    /// The failing receiver's own retry policy, if it has one.
    pub retry: Option<RetryPolicy>,
}

/// A signal a service receives and its version filter, as the Ruby gem's
/// `application_registered` reports them (`[{name:, version:}]`).
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[non_exhaustive]
pub struct ReceivedSignal {
    /// The signal name, or `*`.
    pub name: String,
    /// The one version received, or `None` for every version.
    pub version: Option<i64>,
}

/// The receivers a service registered, by signal name and optional version.
///
/// Registration replaces a shared snapshot, so dispatching an event takes no allocation
/// and holds no lock while handlers run (a handler may register receivers itself).
#[derive(Default)]
pub struct Receivers {
    entries: RwLock<Arc<Vec<Receiver>>>,
}

impl Receivers {
    /// Adds a handler for `signal` (or `*`), for one version or all of them, retried
    /// under the service's retry policy.
    pub fn add(&self, signal: &str, version: Option<i64>, handler: Handler) {
        self.add_with_retry(signal, version, None, handler);
    }

    /// Adds a handler with a retry policy of its own (`None`: the service's).
    pub fn add_with_retry(
        &self,
        signal: &str,
        version: Option<i64>,
        retry: Option<RetryPolicy>,
        handler: Handler,
    ) {
        let mut entries = self.entries.write();
        let mut next = Vec::clone(&entries);
        next.push(Receiver {
            signal: signal.to_owned(),
            version,
            retry,
            handler,
        });
        *entries = Arc::new(next);
    }

    /// Each signal with its version filter, as receivers were registered, sorted and
    /// unique.
    pub fn received_signals(&self) -> Vec<ReceivedSignal> {
        let mut signals: Vec<ReceivedSignal> = self
            .entries
            .read()
            .iter()
            .map(|r| ReceivedSignal {
                name: r.signal.clone(),
                version: r.version,
            })
            .collect();
        signals.sort_unstable();
        signals.dedup();
        signals
    }

    /// The signal names with at least one handler, sorted and unique.
    pub fn signal_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .entries
            .read()
            .iter()
            .map(|r| r.signal.clone())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Whether no handler is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.read().is_empty()
    }

    /// Runs the matching handlers for `event` under the rules of this module.
    pub fn dispatch(&self, event: &Event) -> Result<Dispatch> {
        self.dispatch_from(event, 0)
            .map_err(|failure| failure.error)
    }

    /// Runs the matching handlers for `event` from the `first`-th registered receiver
    /// on: 0 for all of them, [`HandlerFailure::resume_at`] to try a failed one again.
    pub fn dispatch_from(
        &self,
        event: &Event,
        first: usize,
    ) -> std::result::Result<Dispatch, Box<HandlerFailure>> {
        let entries = Arc::clone(&self.entries.read());
        let mut handled = 0;
        let matching = entries.iter().enumerate().skip(first).filter(|(_, r)| {
            (r.signal == "*" || r.signal == event.meta.name)
                && r.version.is_none_or(|v| Some(v) == event.meta.version)
        });
        for (index, receiver) in matching {
            let handler = &receiver.handler;
            let error = match catch_unwind(AssertUnwindSafe(|| handler(event))) {
                Ok(Ok(())) => {
                    handled += 1;
                    continue;
                }
                // A typed receiver's payload mismatch keeps its own variant.
                Ok(Err(source)) => match source.downcast::<Error>() {
                    Ok(error) => *error,
                    Err(source) => Error::HandlerFailed {
                        event: event.meta.name.clone(),
                        version: event.meta.version,
                        source,
                    },
                },
                Err(panic) => Error::HandlerPanicked {
                    event: event.meta.name.clone(),
                    version: event.meta.version,
                    message: panic_message(panic.as_ref()),
                },
            };
            return Err(Box::new(HandlerFailure {
                error,
                resume_at: index,
                receiver: ReceivedSignal {
                    name: receiver.signal.clone(),
                    version: receiver.version,
                },
                retry: receiver.retry,
            }));
        }
        Ok(match handled {
            0 => Dispatch::Unmatched,
            n => Dispatch::Handled(n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Meta;
    use parking_lot::Mutex;

    fn event(name: &str, version: i64) -> Event {
        Event::new(
            serde_json::json!({}),
            Meta {
                event_uuid: "u".into(),
                name: name.into(),
                version: Some(version),
                cid: "c".into(),
                producer: "p".into(),
                created_at: chrono::Utc::now(),
            },
        )
    }

    fn recorder(log: &Arc<Mutex<Vec<String>>>, tag: &str) -> Handler {
        let log = Arc::clone(log);
        let tag = tag.to_owned();
        Arc::new(move |_e: &Event| {
            log.lock().push(tag.clone());
            Ok(())
        })
    }

    /// Name, name+version and `*` handlers all run, in registration order.
    #[test]
    fn routes_by_name_version_and_wildcard() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let r = Receivers::default();
        r.add("a", None, recorder(&log, "a-any"));
        r.add("*", None, recorder(&log, "star"));
        r.add("a", Some(2), recorder(&log, "a-v2"));
        r.add("b", None, recorder(&log, "b-any"));
        assert_eq!(r.dispatch(&event("a", 2)).unwrap(), Dispatch::Handled(3));
        assert_eq!(*log.lock(), ["a-any", "star", "a-v2"]);
        log.lock().clear();
        assert_eq!(r.dispatch(&event("a", 1)).unwrap(), Dispatch::Handled(2));
        assert_eq!(*log.lock(), ["a-any", "star"]);
        assert_eq!(r.signal_names(), ["*", "a", "b"]);
    }

    /// An event nobody matches is reported as unmatched, not as a failure.
    #[test]
    fn unmatched_events() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let r = Receivers::default();
        r.add("a", Some(2), recorder(&log, "a-v2"));
        assert_eq!(r.dispatch(&event("a", 1)).unwrap(), Dispatch::Unmatched);
        assert_eq!(r.dispatch(&event("zzz", 2)).unwrap(), Dispatch::Unmatched);
        assert!(log.lock().is_empty());
    }

    /// The first failure stops the handlers after it and carries the handler's error.
    #[test]
    fn first_failure_stops_the_rest() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let r = Receivers::default();
        r.add("a", None, recorder(&log, "first"));
        r.add("a", None, Arc::new(|_e: &Event| Err("boom".into())));
        r.add("a", None, recorder(&log, "third"));
        let err = r.dispatch(&event("a", 1)).unwrap_err();
        assert_eq!(err.to_string(), "a handler for \"a\" version 1 failed");
        assert_eq!(
            crate::ErrorChain(&err).to_string(),
            "a handler for \"a\" version 1 failed: boom"
        );
        assert_eq!(*log.lock(), ["first"]);
    }

    /// A failure names its receiver and where to resume; resuming skips the handlers
    /// that succeeded before it.
    #[test]
    fn resumes_at_the_failed_handler() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let r = Receivers::default();
        let policy = RetryPolicy::no_retries();
        r.add("a", None, recorder(&log, "first"));
        r.add("b", None, recorder(&log, "other signal"));
        let fails = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = fails.clone();
        r.add_with_retry(
            "*",
            Some(1),
            Some(policy),
            Arc::new(move |_e: &Event| {
                if flag.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    Err("once".into())
                } else {
                    Ok(())
                }
            }),
        );
        r.add("a", None, recorder(&log, "last"));
        let failure = r.dispatch_from(&event("a", 1), 0).unwrap_err();
        assert_eq!(failure.resume_at, 2);
        assert_eq!(
            (failure.receiver.name.as_str(), failure.receiver.version),
            ("*", Some(1))
        );
        assert_eq!(failure.retry, Some(policy));
        assert_eq!(*log.lock(), ["first"]);
        assert_eq!(
            r.dispatch_from(&event("a", 1), failure.resume_at).unwrap(),
            Dispatch::Handled(2)
        );
        assert_eq!(*log.lock(), ["first", "last"]);
    }

    /// A panic is caught and becomes a failure with its message.
    #[test]
    fn panics_become_failures() {
        let r = Receivers::default();
        r.add("a", None, Arc::new(|_e: &Event| panic!("kaputt")));
        let err = r.dispatch(&event("a", 1)).unwrap_err();
        assert!(matches!(&err, Error::HandlerPanicked { message, .. } if message == "kaputt"));
    }
}
