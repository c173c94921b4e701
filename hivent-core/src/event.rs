//! The event and its meta data, in the JSON wire format shared with the Ruby gem.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::sync::Arc;

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
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    /// What the producer emitted.
    pub payload: Value,
    /// Who emitted what, when.
    pub meta: Meta,
    /// The item exactly as stored, for an event read from a partition.
    #[serde(skip)]
    raw: Option<Arc<str>>,
}

/// Events are equal when their payload and meta are: where an event was read from (its
/// stored text) does not make it another event.
impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        self.payload == other.payload && self.meta == other.meta
    }
}

/// The meta data of an [`Event`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// 32 lowercase hex characters: a v4 UUID without dashes.
    pub event_uuid: String,
    /// The signal name.
    pub name: String,
    /// The event version given at emit; always set by hivent-rs. Decoding also
    /// accepts the version as a string of digits (`"2"`) and as `null` (or absent),
    /// both of which the Ruby gem emits when given them: `"2"` is routed as 2 and a
    /// missing version (`None`) reaches only receivers of every version and `*`, as the
    /// gem's consumers route them.
    #[serde(default, deserialize_with = "deserialize_version")]
    pub version: Option<i64>,
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
    /// An event of `payload` with `meta`.
    pub fn new(payload: Value, meta: Meta) -> Event {
        Event {
            payload,
            meta,
            raw: None,
        }
    }

    /// Decodes an event as read from a partition, keeping the stored text: handlers
    /// that pass the event on (e.g. `hivent start -r` commands) get it byte for byte.
    pub fn from_stored(raw: &str) -> Result<Event, serde_json::Error> {
        let mut event = Event::from_json(raw)?;
        event.raw = Some(raw.into());
        Ok(event)
    }

    /// The item exactly as it was stored, when this event was read from a partition
    /// (`None` for an event built or emitted in this process). The gem's escapes and
    /// number notation are kept, unlike [`Event::to_json`], which encodes anew.
    pub fn raw(&self) -> Option<&str> {
        self.raw.as_deref()
    }

    /// Decodes an event from its wire JSON.
    pub fn from_json(raw: &str) -> Result<Event, serde_json::Error> {
        serde_json::from_str(raw)
    }

    /// Encodes the event to its compact wire JSON.
    pub fn to_json(&self) -> String {
        // Serializing a `Value` and plain strings into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// [`Event::to_json`], given the payload's compact JSON (`payload.to_string()`)
    /// already encoded, so that an emit encodes its payload once.
    pub(crate) fn to_json_with_payload(&self, payload_text: &str) -> String {
        // The meta data is about 200 bytes; one buffer holds the whole event.
        let mut json = Vec::with_capacity(payload_text.len() + 256);
        json.extend_from_slice(br#"{"payload":"#);
        json.extend_from_slice(payload_text.as_bytes());
        json.extend_from_slice(br#","meta":"#);
        write_meta(&mut json, &self.meta);
        json.push(b'}');
        String::from_utf8(json).unwrap_or_default()
    }
}

/// Writes `meta` as its `Serialize` does, byte for byte, without the serializer's
/// per-field calls: the emit path writes one per event (measured: a sixth of a batch
/// emit's client time went to serializing meta).
fn write_meta(json: &mut Vec<u8>, meta: &Meta) {
    json.extend_from_slice(br#"{"event_uuid":"#);
    write_str(json, &meta.event_uuid);
    json.extend_from_slice(br#","name":"#);
    write_str(json, &meta.name);
    json.extend_from_slice(br#","version":"#);
    match meta.version {
        Some(version) => json.extend_from_slice(itoa::Buffer::new().format(version).as_bytes()),
        None => json.extend_from_slice(b"null"),
    }
    json.extend_from_slice(br#","cid":"#);
    write_str(json, &meta.cid);
    json.extend_from_slice(br#","producer":"#);
    write_str(json, &meta.producer);
    json.extend_from_slice(br#","created_at":"#);
    match format_millis(&meta.created_at) {
        Some(text) => {
            json.push(b'"');
            json.extend_from_slice(&text);
            json.push(b'"');
        }
        None => write_str(
            json,
            &meta.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        ),
    }
    json.push(b'}');
}

/// A JSON string: copied between quotes when nothing in it needs escaping (ids, most
/// names), else through serde_json's escaping.
fn write_str(json: &mut Vec<u8>, text: &str) {
    let plain = text
        .bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f);
    if plain {
        json.push(b'"');
        json.extend_from_slice(text.as_bytes());
        json.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *json, text);
    }
}

/// A new 32-hex identifier (a v4 UUID without dashes), used for `event_uuid` and default `cid`s.
///
/// Each id's randomness comes from the OS (`getrandom`), so a process that forks gives
/// its child no ids the parent also draws. (uuid's `fast-rng` would save the system
/// call, but rand's thread generator is not reseeded on fork since rand 0.9: parent and
/// child would draw the same ids.)
pub fn new_id() -> String {
    let mut text = [0u8; uuid::fmt::Simple::LENGTH];
    uuid::Uuid::new_v4()
        .simple()
        .encode_lower(&mut text)
        .to_owned()
}

fn serialize_created_at<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    match format_millis(at) {
        Some(buffer) => s.serialize_str(std::str::from_utf8(&buffer).unwrap_or_default()),
        None => s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true)),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` without going through a formatter; `None` for years
/// outside 0..=9999 and leap seconds, which take chrono's general path.
fn format_millis(at: &DateTime<Utc>) -> Option<[u8; 24]> {
    use chrono::{Datelike, Timelike};
    let year = u32::try_from(at.year()).ok().filter(|y| *y <= 9999)?;
    // A leap second (nanoseconds ≥ 1e9) takes chrono's path, which writes `:60`.
    let millis = Some(at.nanosecond() / 1_000_000).filter(|m| *m < 1000)?;
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for i in (0..width).rev() {
            b[at + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, at.month());
    put(8, 2, at.day());
    put(11, 2, at.hour());
    put(14, 2, at.minute());
    put(17, 2, at.second());
    put(20, 3, millis);
    Some(b)
}

/// Parses `YYYY-MM-DDTHH:MM:SS.mmmZ`, the form hivent writes, without the general
/// RFC 3339 parser; `None` for any other form.
fn parse_millis(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
    let time = chrono::NaiveTime::from_hms_milli_opt(
        num(11, 13)?,
        num(14, 16)?,
        num(17, 19)?,
        num(20, 23)?,
    )?;
    Some(date.and_time(time).and_utc())
}

/// A version as an integer, a string of digits in canonical form (`"2"`, `"-1"`), or
/// `null`: the gem routes `"2"` as 2 (it joins the name and the version with `:`) and
/// `null` to no versioned receiver, so `"02"`, which it would route as `02`, is refused
/// rather than guessed.
fn deserialize_version<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let value = Value::deserialize(d)?;
    let parsed = match &value {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_i64(),
        Value::String(text) => text.parse::<i64>().ok().filter(|n| n.to_string() == *text),
        _ => None,
    };
    parsed.map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "meta.version {value} is not a whole number (or a string of its digits, or null)"
        ))
    })
}

fn deserialize_created_at<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
    parse_timestamp(&text).ok_or_else(|| {
        serde::de::Error::custom(format!("created_at {text:?} is not an RFC 3339 time"))
    })
}

/// Parses RFC 3339 in any offset, plus the `2026-12-01 04:56:33 UTC` form that Ruby's
/// plain `Time#to_s` writes when a producer serializes without ActiveSupport.
fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if let Some(at) = parse_millis(text) {
        return Some(at);
    }
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
        Event::new(
            json!({"b": 1, "a": "x"}),
            Meta {
                event_uuid: "0123456789abcdef0123456789abcdef".into(),
                name: "user:created".into(),
                version: Some(2),
                cid: "fedcba9876543210fedcba9876543210".into(),
                producer: "accounts".into(),
                created_at: Utc
                    .with_ymd_and_hms(2026, 12, 1, 4, 56, 33)
                    .single()
                    .unwrap()
                    + chrono::Duration::milliseconds(123),
            },
        )
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
        assert_eq!(e.meta.version, Some(3));
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

    /// The fast time paths agree with chrono's general ones.
    #[test]
    fn fast_time_paths_agree_with_chrono() {
        let mut at = Utc
            .with_ymd_and_hms(2026, 12, 1, 4, 56, 33)
            .single()
            .unwrap();
        for step in 0..2000 {
            at += chrono::Duration::milliseconds(7_919_311 * step + 1);
            let general = at.to_rfc3339_opts(SecondsFormat::Millis, true);
            let fast = format_millis(&at).unwrap();
            assert_eq!(std::str::from_utf8(&fast).unwrap(), general);
            assert_eq!(
                parse_millis(&general),
                Some(
                    DateTime::parse_from_rfc3339(&general)
                        .unwrap()
                        .with_timezone(&Utc)
                )
            );
        }
        assert_eq!(parse_millis("2026-02-30T00:00:00.000Z"), None);
        assert_eq!(parse_millis("2026-12-01T04:56:33.123+00:00"), None);
        let early = Utc.with_ymd_and_hms(12, 1, 2, 3, 4, 5).single().unwrap();
        assert_eq!(
            std::str::from_utf8(&format_millis(&early).unwrap()).unwrap(),
            early.to_rfc3339_opts(SecondsFormat::Millis, true)
        );
    }

    /// Encoding with the payload given as text is the same as encoding the event.
    #[test]
    fn encodes_with_a_pre_encoded_payload() {
        let e = sample();
        assert_eq!(e.to_json_with_payload(&e.payload.to_string()), e.to_json());
    }

    /// Ids stay v4 UUIDs and unique across many draws and threads.
    #[test]
    fn ids_are_unique_v4() {
        let mut ids: Vec<String> = (0..5000).map(|_| new_id()).collect();
        let other = std::thread::spawn(|| (0..5000).map(|_| new_id()).collect::<Vec<_>>());
        ids.extend(other.join().unwrap());
        for id in &ids {
            assert_eq!(&id[12..13], "4", "{id}");
            assert!(matches!(&id[16..17], "8" | "9" | "a" | "b"), "{id}");
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 10_000);
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

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[ -~\u{a0}-\u{2fff}]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map("[a-z<>&]{1,6}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// The emit path's meta writer writes what `Serialize` writes, byte for byte.
        #[test]
        fn meta_is_written_as_serialize_writes_it(
            name in "\\PC{0,12}",
            producer in "[ -~\u{0}-\u{1f}\u{7f}é😀]{0,12}",
            cid in "\\PC{0,8}",
            version in proptest::option::of(proptest::prelude::any::<i64>()),
            millis in -62_000_000_000_000i64..300_000_000_000_000i64,
        ) {
            let meta = Meta {
                event_uuid: crate::new_id(),
                name,
                version,
                cid,
                producer,
                created_at: chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default(),
            };
            let mut written = Vec::new();
            write_meta(&mut written, &meta);
            proptest::prop_assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&meta).unwrap()
            );
        }

        /// Decoding never panics, whatever the text: it is an event or an error.
        #[test]
        fn decoding_any_text_never_panics(text in "\\PC{0,200}") {
            let _ = Event::from_json(&text);
        }

        /// Decoding arbitrary JSON objects with a meta of any shape never panics.
        #[test]
        fn decoding_any_json_never_panics(value in json_value()) {
            let _ = Event::from_json(&serde_json::json!({"payload": value.clone(), "meta": value}).to_string());
        }

        /// Any payload and meta text survive an encode and decode unchanged.
        #[test]
        fn events_round_trip(payload in json_value(), name in "[a-z:_]{1,16}", version in proptest::prelude::any::<i64>(), cid in "[0-9a-f]{32}") {
            let event = Event::new(
                payload,
                Meta {
                    event_uuid: crate::new_id(),
                    name,
                    version: Some(version),
                    cid,
                    producer: "prop".into(),
                    created_at: chrono::DateTime::parse_from_rfc3339("2026-12-01T04:56:33.123Z").unwrap().with_timezone(&chrono::Utc),
                },
            );
            proptest::prop_assert_eq!(Event::from_json(&event.to_json()).unwrap(), event);
        }
    }

    /// The gem's string versions decode as their number; other shapes are refused with
    /// a reason that names the field.
    #[test]
    fn versions_as_the_gem_writes_them() {
        let with = |version: &str| {
            Event::from_json(&format!(
                r#"{{"payload":{{}},"meta":{{"event_uuid":"u","name":"n","version":{version},"cid":"c","producer":"p","created_at":"2026-12-01T04:56:33.123Z"}}}}"#
            ))
        };
        assert_eq!(with("2").unwrap().meta.version, Some(2));
        assert_eq!(with(r#""2""#).unwrap().meta.version, Some(2));
        assert_eq!(with(r#""-1""#).unwrap().meta.version, Some(-1));
        assert_eq!(with("null").unwrap().meta.version, None);
        for bad in [r#""02""#, r#""two""#, "2.5", "[2]", r#""""#] {
            let error = with(bad).unwrap_err().to_string();
            assert!(error.contains("meta.version"), "{bad}: {error}");
        }
    }
}
