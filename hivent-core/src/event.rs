//! The event and its meta data, in the JSON wire format shared with the Ruby gem.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// One emitted fact: a JSON payload and the meta data hivent adds.
///
/// The wire form is `{"payload": …, "meta": {…}}` with exactly the field names of
/// [`Meta`]. Decoding ignores unknown fields, so events written by newer producers or
/// by the Ruby gem are read.
///
/// ```
/// use hivent_core::Event;
/// let raw = r#"{"payload":{"id":7},"meta":{"event_uuid":"0123456789abcdef0123456789abcdef",
///   "name":"user:created","version":1,"cid":"fedcba9876543210fedcba9876543210",
///   "producer":"accounts","created_at":"2026-12-01T04:56:33.123Z"}}"#;
/// let event = Event::from_json(raw)?;
/// assert_eq!(event.meta.name, "user:created");
/// assert_eq!(event.payload["id"], 7);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What the producer emitted.
    pub payload: Value,
    /// Who emitted what, when.
    pub meta: Meta,
}

/// The meta data of an [`Event`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// 32 lowercase hex characters: a v4 UUID without dashes.
    pub event_uuid: String,
    /// The signal name.
    pub name: String,
    /// The event version given at emit.
    pub version: i64,
    /// The correlation id: given at emit, or a fresh 32-hex id.
    pub cid: String,
    /// The `client_id` of the emitting service.
    pub producer: String,
    /// When the event was emitted; written as RFC 3339 UTC with milliseconds and `Z`.
    #[serde(
        serialize_with = "serialize_created_at",
        deserialize_with = "deserialize_created_at"
    )]
    pub created_at: DateTime<Utc>,
}

impl Event {
    /// Decodes an event from its wire JSON.
    pub fn from_json(raw: &str) -> Result<Event, serde_json::Error> {
        serde_json::from_str(raw)
    }

    /// Encodes the event to its compact wire JSON.
    pub fn to_json(&self) -> String {
        // Serializing a `Value` and plain strings into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A new 32-hex identifier (a v4 UUID without dashes), used for `event_uuid` and default `cid`s.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn serialize_created_at<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn deserialize_created_at<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(d)?;
    parse_timestamp(&text).ok_or_else(|| {
        serde::de::Error::custom(format!("created_at {text:?} is not an RFC 3339 time"))
    })
}

/// Parses RFC 3339 in any offset, plus the `2026-12-01 04:56:33 UTC` form that Ruby's
/// plain `Time#to_s` writes when a producer serializes without ActiveSupport.
fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    if let Ok(at) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f %z") {
        return Some(at.with_timezone(&Utc));
    }
    let naive = text.strip_suffix(" UTC")?;
    NaiveDateTime::parse_from_str(naive, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn sample() -> Event {
        Event {
            payload: json!({"b": 1, "a": "x"}),
            meta: Meta {
                event_uuid: "0123456789abcdef0123456789abcdef".into(),
                name: "user:created".into(),
                version: 2,
                cid: "fedcba9876543210fedcba9876543210".into(),
                producer: "accounts".into(),
                created_at: Utc
                    .with_ymd_and_hms(2026, 12, 1, 4, 56, 33)
                    .single()
                    .unwrap()
                    + chrono::Duration::milliseconds(123),
            },
        }
    }

    /// The encoded form is exactly the gem's: field names, order of payload keys, time format.
    #[test]
    fn encodes_the_wire_format() {
        assert_eq!(
            sample().to_json(),
            r#"{"payload":{"b":1,"a":"x"},"meta":{"event_uuid":"0123456789abcdef0123456789abcdef","name":"user:created","version":2,"cid":"fedcba9876543210fedcba9876543210","producer":"accounts","created_at":"2026-12-01T04:56:33.123Z"}}"#
        );
    }

    /// Whole seconds still carry `.000`: the format is fixed-width.
    #[test]
    fn created_at_always_has_milliseconds() {
        let mut e = sample();
        e.meta.created_at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().unwrap();
        assert!(e
            .to_json()
            .contains(r#""created_at":"2026-01-02T03:04:05.000Z""#));
    }

    /// An event written by the Ruby gem, with an offset time and extra fields, decodes.
    #[test]
    fn decodes_ruby_events_with_other_times_and_unknown_fields() {
        let raw = r#"{"payload":{"id":1},"extra":true,"meta":{"event_uuid":"aa","name":"n","version":3,
            "cid":"c","producer":"ruby","created_at":"2026-12-01T05:56:33+01:00","host":"x"}}"#;
        let e = Event::from_json(raw).unwrap();
        assert_eq!(e.meta.version, 3);
        assert_eq!(
            e.meta.created_at,
            Utc.with_ymd_and_hms(2026, 12, 1, 4, 56, 33)
                .single()
                .unwrap()
        );
    }

    /// Ruby's `Time#to_s` form is accepted too.
    #[test]
    fn decodes_ruby_time_to_s() {
        assert_eq!(
            parse_timestamp("2026-12-01 04:56:33 UTC"),
            Utc.with_ymd_and_hms(2026, 12, 1, 4, 56, 33).single()
        );
        assert_eq!(
            parse_timestamp("2026-12-01 05:56:33 +0100"),
            Utc.with_ymd_and_hms(2026, 12, 1, 4, 56, 33).single()
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    /// Decoding and encoding again gives the same event.
    #[test]
    fn round_trips() {
        let e = sample();
        assert_eq!(Event::from_json(&e.to_json()).unwrap(), e);
    }

    /// A missing meta field is an error, not a default.
    #[test]
    fn rejects_events_without_meta_fields() {
        let err = Event::from_json(r#"{"payload":{},"meta":{"name":"x"}}"#).unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
    }

    /// Ids are 32 lowercase hex characters.
    #[test]
    fn new_ids_are_32_hex() {
        let id = new_id();
        assert_eq!(id.len(), 32);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(id, new_id());
    }
}
