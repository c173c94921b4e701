//! Test helpers: the Rust form of the Ruby gem's RSpec matchers, and inline delivery.
//!
//! ```
//! use hivent::testing::{emit, expect};
//! use serde_json::json;
//!
//! let hivent = hivent::testing::inline(hivent::Config::builder().client_id("shop").build()?);
//! let signal = hivent.signal("order:placed")?;
//! let place_order = || signal.emit(&json!({"order": 7, "total": 12}), 2).map(|_| ());
//!
//! expect(&hivent, place_order).to(emit("order:placed"));
//! expect(&hivent, place_order).to(emit("order:placed").version(2).with(json!({"order": 7})));
//! expect(&hivent, place_order).not_to(emit("order:cancelled"));
//! # Ok::<(), hivent::Error>(())
//! ```

use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::Value;

use crate::{Config, Event, Hivent, MemoryBackend};

/// A handle on a fresh private memory store whose emits are delivered to its own
/// receivers before `emit` returns, with life-cycle calls and dead-lettering as a real
/// consumer does them (the gem's spec signal). Register receivers before the first emit.
///
/// ```
/// let hivent = hivent::testing::inline(hivent::Config::builder().client_id("docs-inline").build()?);
/// let (seen, saw) = std::sync::mpsc::channel();
/// hivent.signal("user:created")?.receive(move |event| Ok(seen.send(event.payload.clone())?));
/// hivent.signal("user:created")?.emit(&serde_json::json!({"id": 1}), 1)?;
/// // Handled before `emit` returned: no consumer to run.
/// assert_eq!(saw.try_recv()?, serde_json::json!({"id": 1}));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn inline(config: Config) -> Hivent {
    Hivent::inline(config, Arc::new(MemoryBackend::new()))
}

/// What a matcher expects of the emitted events: a name, optionally a version and a
/// payload that deep-includes a JSON value.
#[derive(Clone, Debug, PartialEq)]
pub struct EmitMatcher {
    name: String,
    version: Option<i64>,
    payload: Option<Value>,
}

/// Expects an event named `name` to be emitted.
///
/// ```
/// use hivent::testing::emit;
/// let hivent = hivent::testing::inline(hivent::Config::builder().client_id("docs-emit").build()?);
/// let event = hivent.signal("order:placed")?.emit(&serde_json::json!({"order": 7, "total": 12}), 2)?;
/// assert!(emit("order:placed").matches(&event));
/// assert!(emit("order:placed").version(2).with(serde_json::json!({"order": 7})).matches(&event));
/// assert!(!emit("order:placed").version(1).matches(&event));
/// # Ok::<(), hivent::Error>(())
/// ```
pub fn emit(name: impl Into<String>) -> EmitMatcher {
    EmitMatcher {
        name: name.into(),
        version: None,
        payload: None,
    }
}

impl EmitMatcher {
    /// Only events of this version match.
    pub fn version(mut self, version: i64) -> Self {
        self.version = Some(version);
        self
    }

    /// Only events whose payload includes `payload` match: every key of an expected
    /// object must be present with a matching value, recursively; arrays and scalars
    /// must be equal.
    pub fn with(mut self, payload: Value) -> Self {
        self.payload = Some(payload);
        self
    }

    /// Whether `event` matches.
    pub fn matches(&self, event: &Event) -> bool {
        event.meta.name == self.name
            && self.version.is_none_or(|v| Some(v) == event.meta.version)
            && self
                .payload
                .as_ref()
                .is_none_or(|p| includes(&event.payload, p))
    }

    fn describe(&self) -> String {
        let mut text = format!("{:?}", self.name);
        if let Some(v) = self.version {
            let _ = write!(text, " version {v}");
        }
        if let Some(p) = &self.payload {
            let _ = write!(text, " with a payload including {p}");
        }
        text
    }
}

/// Whether `actual` deep-includes `expected`.
///
/// ```
/// use hivent::testing::includes;
/// use serde_json::json;
/// let actual = json!({"order": {"id": 7, "lines": [1, 2]}, "total": 12});
/// assert!(includes(&actual, &json!({"order": {"id": 7}})));
/// assert!(!includes(&actual, &json!({"order": {"lines": [1]}})), "arrays must be equal");
/// ```
pub fn includes(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(actual), Value::Object(expected)) => expected
            .iter()
            .all(|(k, v)| actual.get(k).is_some_and(|a| includes(a, v))),
        _ => actual == expected,
    }
}

/// Runs `action` while recording what `hivent` emits, for [`Expectation::to`] and
/// [`Expectation::not_to`].
///
/// ```
/// use hivent::testing::{emit, expect};
/// let hivent = hivent::testing::inline(hivent::Config::builder().client_id("docs-expect").build()?);
/// let signal = hivent.signal("order:placed")?;
/// let outcome = expect(&hivent, || signal.emit(&serde_json::json!({"order": 7}), 1));
/// assert_eq!(outcome.emitted().len(), 1);
/// let missed = outcome.check(&emit("order:cancelled")).unwrap_err();
/// assert!(missed.starts_with("expected an emit of \"order:cancelled\", but these were emitted:"), "{missed}");
/// # Ok::<(), hivent::Error>(())
/// ```
pub fn expect<R>(hivent: &Hivent, action: impl FnOnce() -> R) -> Expectation {
    let tap = hivent.tap_emits();
    action();
    Expectation {
        emitted: tap.take(),
    }
}

/// The events emitted while an action ran.
#[derive(Clone, Debug)]
pub struct Expectation {
    emitted: Vec<Event>,
}

impl Expectation {
    /// The events emitted, in order.
    pub fn emitted(&self) -> &[Event] {
        &self.emitted
    }

    /// Panics, listing what was emitted instead, unless an event matches.
    #[track_caller]
    #[allow(clippy::panic)] // an assertion for tests: panicking is its job
    pub fn to(&self, matcher: EmitMatcher) {
        if let Err(message) = self.check(&matcher) {
            panic!("{message}");
        }
    }

    /// Panics, listing the matching events, if any event matches.
    #[track_caller]
    #[allow(clippy::panic)] // an assertion for tests: panicking is its job
    pub fn not_to(&self, matcher: EmitMatcher) {
        if let Err(message) = self.check_not(&matcher) {
            panic!("{message}");
        }
    }

    /// [`Expectation::to`] without panicking: the failure message as an error.
    pub fn check(&self, matcher: &EmitMatcher) -> Result<(), String> {
        if self.emitted.iter().any(|e| matcher.matches(e)) {
            return Ok(());
        }
        Err(format!(
            "expected an emit of {}, but {}",
            matcher.describe(),
            self.listing()
        ))
    }

    /// [`Expectation::not_to`] without panicking: the failure message as an error.
    pub fn check_not(&self, matcher: &EmitMatcher) -> Result<(), String> {
        if !self.emitted.iter().any(|e| matcher.matches(e)) {
            return Ok(());
        }
        Err(format!(
            "expected no emit of {}, but {}",
            matcher.describe(),
            self.listing()
        ))
    }

    fn listing(&self) -> String {
        if self.emitted.is_empty() {
            return "nothing was emitted".to_owned();
        }
        let mut text = String::from("these were emitted:");
        for e in &self.emitted {
            // Emitted here, an event always has a version.
            let version = e.meta.version.unwrap_or_default();
            let _ = write!(
                text,
                "\n  - {:?} version {version}: {}",
                e.meta.name, e.payload
            );
        }
        text
    }
}
