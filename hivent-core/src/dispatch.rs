//! Dispatch: the registered receivers of a service and the rules that route an event to them.
//!
//! The rules, pinned by the tests below:
//! - An event goes to every handler registered for its name with no version, for its
//!   name and exactly its version, and for `*` (with or without a version), in the
//!   order the handlers were registered.
//! - The first handler that fails (returns `Err` or panics) stops the rest: the event
//!   counts as failed and is dead-lettered whole. A replay from the dead letter queue
//!   runs every matching handler again, so handlers must be idempotent, as they must
//!   be anyway under at-least-once delivery.
//! - A panic is caught and becomes [`Error::HandlerPanicked`]; it never kills the worker.
//! - An event no handler matches (e.g. a version nobody receives) is acknowledged and
//!   dropped without calling a life-cycle hook: [`Dispatch::Unmatched`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::panic_message;
use crate::{Error, Event, HandlerError, Result};

/// A handler of raw events.
pub type Handler = Arc<dyn Fn(&Event) -> Result<(), HandlerError> + Send + Sync>;

#[derive(Clone)]
struct Receiver {
    signal: String,
    version: Option<i64>,
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

/// A signal a service receives and its version filter, as the Ruby gem's
/// `application_registered` reports them (`[{name:, version:}]`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    /// Adds a handler for `signal` (or `*`), for one version or all of them.
    pub fn add(&self, signal: &str, version: Option<i64>, handler: Handler) {
        let mut entries = self.entries.write();
        let mut next = Vec::clone(&entries);
        next.push(Receiver {
            signal: signal.to_owned(),
            version,
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
        let entries = Arc::clone(&self.entries.read());
        let mut handled = 0;
        let matching = entries.iter().filter(|r| {
            (r.signal == "*" || r.signal == event.meta.name)
                && r.version.is_none_or(|v| Some(v) == event.meta.version)
        });
        for receiver in matching {
            let handler = &receiver.handler;
            match catch_unwind(AssertUnwindSafe(|| handler(event))) {
                Ok(Ok(())) => handled += 1,
                Ok(Err(source)) => {
                    // A typed receiver's payload mismatch keeps its own variant.
                    return Err(match source.downcast::<Error>() {
                        Ok(error) => *error,
                        Err(source) => Error::HandlerFailed {
                            event: event.meta.name.clone(),
                            version: event.meta.version,
                            source,
                        },
                    });
                }
                Err(panic) => {
                    return Err(Error::HandlerPanicked {
                        event: event.meta.name.clone(),
                        version: event.meta.version,
                        message: panic_message(panic.as_ref()),
                    })
                }
            }
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
        assert_eq!(
            err.to_string(),
            "a handler for \"a\" version 1 failed: boom"
        );
        assert_eq!(*log.lock(), ["first"]);
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
