//! Partition keys: CRC-32 of the explicit key, else of the payload's Ruby-compatible JSON.

use std::borrow::Cow;

use serde_json::Value;

/// The 32-bit partition hash of an event: CRC-32 (IEEE) of `key` when given, else of
/// [`ruby_json`] of the payload. The partition is `hash % partition_count` of each
/// receiving service.
///
/// ```
/// use hivent_core::partition_hash;
/// use serde_json::json;
/// assert_eq!(partition_hash(Some("my_custom_key"), &json!({})), 0xd0ad_56bb);
/// assert_eq!(partition_hash(None, &json!({"a":1})), partition_hash(Some(r#"{"a":1}"#), &json!(null)));
/// ```
pub fn partition_hash(key: Option<&str>, payload: &Value) -> u32 {
    match key {
        Some(key) => crc32fast::hash(key.as_bytes()),
        None => crc32fast::hash(ruby_json(payload).as_bytes()),
    }
}

/// [`partition_hash`] given the payload's compact JSON text (`payload.to_string()`),
/// for callers that encode the payload anyway.
pub(crate) fn partition_hash_of_text(key: Option<&str>, payload_text: &str) -> u32 {
    match key {
        Some(key) => crc32fast::hash(key.as_bytes()),
        None => crc32fast::hash(ruby_escape(payload_text).as_bytes()),
    }
}

/// The partition (`0..partition_count`) a hash falls into. A count of 0 is treated as 1.
pub fn partition_for(hash: u32, partition_count: u32) -> u32 {
    hash % partition_count.max(1)
}

/// The payload as the Ruby gem's JSON writes it: compact, keys in their order, and
/// `<`, `>`, `&`, U+2028, U+2029 escaped as `\u003c`, `\u003e`, `\u0026`, `\u2028`,
/// `\u2029`, so the same payload lands in the same partition from either language.
///
/// Those characters can only occur inside JSON strings, so escaping them in the
/// encoded text is exact. Numbers are written as serde_json writes them; a float that
/// Ruby prints differently (e.g. `1.0e+20`) may hash differently: pass an explicit
/// key when such payloads must line up across languages.
pub fn ruby_json(payload: &Value) -> String {
    let text = payload.to_string();
    match ruby_escape(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(escaped) => escaped,
    }
}

/// Compact JSON text with the characters the Ruby gem escapes escaped.
fn ruby_escape(text: &str) -> Cow<'_, str> {
    // U+2028 and U+2029 both start with the byte 0xE2 in UTF-8; a byte scan finds every
    // candidate faster than a search for the five characters.
    if !text.bytes().any(|b| matches!(b, b'<' | b'>' | b'&' | 0xE2)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Expected CRC-32 values were computed outside this code base with Python's
    // `zlib.crc32(b"...")`, which is the same IEEE polynomial Ruby's `Zlib.crc32` uses.

    /// The explicit key is hashed as given.
    #[test]
    fn hashes_an_explicit_key() {
        assert_eq!(
            partition_hash(Some("my_custom_key"), &json!({"x": 1})),
            0xd0ad_56bb
        );
        assert_eq!(partition_hash(Some(""), &json!(null)), 0);
        assert_eq!(partition_hash(Some("123456789"), &json!(null)), 0xcbf4_3926);
    }

    /// Without a key the compact JSON of the payload is hashed, keys in insertion order.
    #[test]
    fn hashes_the_compact_payload() {
        let payload: Value = serde_json::from_str(r#"{ "key" : "value", "a": [1, 2] }"#).unwrap();
        assert_eq!(ruby_json(&payload), r#"{"key":"value","a":[1,2]}"#);
        assert_eq!(partition_hash(None, &payload), 0x59c1_4bf6);
    }

    /// HTML-significant characters and line separators are escaped as ActiveSupport does.
    #[test]
    fn escapes_like_ruby() {
        let payload = json!({"html": "<a href=\"x\">&</a>", "ls": "\u{2028}\u{2029}"});
        let text = ruby_json(&payload);
        assert_eq!(
            text,
            r#"{"html":"\u003ca href=\"x\"\u003e\u0026\u003c/a\u003e","ls":"\u2028\u2029"}"#
        );
        assert_eq!(partition_hash(None, &payload), 0x27b9_5da1);
        assert_eq!(
            partition_hash_of_text(None, &payload.to_string()),
            0x27b9_5da1
        );
        // The escaped text still decodes to the same payload.
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), payload);
    }

    /// Partitions are the hash modulo the count.
    #[test]
    fn partition_is_hash_modulo_count() {
        assert_eq!(partition_for(0xd0ad_56bb, 4), 0xd0ad_56bb % 4);
        assert_eq!(partition_for(7, 1), 0);
        assert_eq!(partition_for(7, 0), 0);
    }
}
