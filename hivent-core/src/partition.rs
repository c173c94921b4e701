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
/// for callers that encode the payload anyway: the text is reused unless a number in the
/// payload is written differently by Ruby.
pub(crate) fn partition_hash_of_text(
    key: Option<&str>,
    payload: &Value,
    payload_text: &str,
) -> u32 {
    match key {
        Some(key) => crc32fast::hash(key.as_bytes()),
        None if has_ruby_numbers(payload) => crc32fast::hash(ruby_json(payload).as_bytes()),
        None => crc32fast::hash(ruby_escape(payload_text).as_bytes()),
    }
}

/// The partition (`0..partition_count`) a hash falls into. A count of 0 is treated as 1.
pub fn partition_for(hash: u32, partition_count: u32) -> u32 {
    hash % partition_count.max(1)
}

/// The payload as the Ruby gem hashes it for an unkeyed emit: the text of
/// ActiveSupport's `payload.to_json` (Ruby 3, ActiveSupport 6.1), so the same payload
/// lands in the same partition from either language.
///
/// - Compact, keys in their order (a repeated key keeps its first place and last value).
/// - `<`, `>`, `&`, U+2028 and U+2029 escaped as `\u003c`, `\u003e`, `\u0026`,
///   `\u2028`, `\u2029`; other escapes as JSON requires (`\"`, `\\`, control
///   characters); everything else, `/` and DEL included, as is.
/// - Integers of any size as written; `-0` is the integer `0`.
/// - Floats as Ruby's `Float#to_s`: the shortest digits that read back to the same
///   double; fixed notation with at least one decimal (`100.0`, `0.0001`) when the
///   decimal exponent is from -4 to 15, else `d.ddde+XX` with a two-digit exponent at
///   least (`1.0e+15`, `1.5e-07`, `5.0e-324`); `-0.0` stays `-0.0`.
/// - A float too large for a double (`1e400`), which Ruby refuses to write, is hashed
///   as written.
///
/// ```
/// use hivent_core::ruby_json;
/// let payload: serde_json::Value = serde_json::from_str(r#"{"f":1e20,"g":1e-5,"n":-0,"s":"<&>"}"#)?;
/// assert_eq!(ruby_json(&payload), r#"{"f":1.0e+20,"g":1.0e-05,"n":0,"s":"\u003c\u0026\u003e"}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn ruby_json(payload: &Value) -> String {
    let text = if has_ruby_numbers(payload) {
        let mut out = String::new();
        write_ruby(payload, &mut out);
        out
    } else {
        payload.to_string()
    };
    match ruby_escape(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(escaped) => escaped,
    }
}

/// Whether a number in `value` is written differently by Ruby than as given: a float,
/// or an integer written `-0`.
fn has_ruby_numbers(value: &Value) -> bool {
    match value {
        Value::Number(n) => {
            let text = n.as_str();
            text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) || text.starts_with("-0")
        }
        Value::Array(items) => items.iter().any(has_ruby_numbers),
        Value::Object(map) => map.values().any(has_ruby_numbers),
        Value::Null | Value::Bool(_) | Value::String(_) => false,
    }
}

/// Writes `value` compactly with Ruby's numbers (strings escaped as JSON requires; the
/// gem's extra escapes are added afterwards).
fn write_ruby(value: &Value, out: &mut String) {
    match value {
        Value::Number(n) => out.push_str(&ruby_number(n.as_str())),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_ruby(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_ruby(item, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// What Ruby's `to_json` writes for a JSON number written as `text`.
fn ruby_number(text: &str) -> Cow<'_, str> {
    let integer = !text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'));
    if integer {
        // Ruby reads integers of any size exactly, and `-0` as 0.
        if text.trim_start_matches('-').bytes().all(|b| b == b'0') {
            return Cow::Borrowed("0");
        }
        return Cow::Borrowed(text);
    }
    match text.parse::<f64>() {
        Ok(float) if float.is_finite() => Cow::Owned(ruby_float(float)),
        _ => Cow::Borrowed(text),
    }
}

/// When the shortest digits have a neighbour (last digit one lower or higher) that is
/// as short, reads back to the same double and lies exactly as far from it, Ruby's
/// dtoa takes the one whose last digit is even; Rust's shortest formatting may take the
/// other. The exact decimal expansion of the double decides.
fn ties_to_even(float: f64, digits: String, exponent: i32) -> String {
    let Some(last) = digits.bytes().last().map(|b| b - b'0') else {
        return digits;
    };
    let with_last = |d: u8| format!("{}{}", &digits[..digits.len() - 1], d);
    let reads_back = |candidate: &str| {
        let (first, rest) = candidate.split_at(1);
        format!("{first}.{rest}e{exponent}").parse::<f64>() == Ok(float)
    };
    // The exact value of the double (at most 1,075 significant digits), worked out only
    // for the rare candidates that read back: it is the costly part.
    let is_midpoint_above = |lower: &str| {
        let exact = format!("{float:.1100e}");
        let exact_digits: String = exact
            .split_once('e')
            .map_or("", |(m, _)| m)
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        exact_digits.starts_with(lower)
            && exact_digits[lower.len()..]
                .strip_prefix('5')
                .is_some_and(|rest| rest.bytes().all(|b| b == b'0'))
    };
    for (lower, upper) in [
        (last.checked_sub(1), Some(last)),
        (Some(last), (last < 9).then_some(last + 1)),
    ] {
        let (Some(lower), Some(upper)) = (lower, upper) else {
            continue;
        };
        let (low, high) = (with_last(lower), with_last(upper));
        if reads_back(&low) && reads_back(&high) && is_midpoint_above(&low) {
            return if lower % 2 == 0 { low } else { high };
        }
    }
    digits
}

/// Ruby's `Float#to_s` of a finite float.
fn ruby_float(float: f64) -> String {
    let sign = if float.is_sign_negative() { "-" } else { "" };
    if float == 0.0 {
        return format!("{sign}0.0");
    }
    // `{:e}` writes the shortest digits that read back to the same double, as Ruby's
    // dtoa (mode 0) does: `d.ddde<exp>`.
    let scientific = format!("{:e}", float.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = ties_to_even(float.abs(), digits, exponent);
    // The decimal point sits after `point` digits: 0.ddd × 10^point.
    let point = exponent + 1;
    if -4 < point && point <= 15 {
        if point > 0 {
            let point = point as usize;
            let whole = if digits.len() > point {
                &digits[..point]
            } else {
                &digits
            };
            let zeros = point.saturating_sub(digits.len());
            let fraction = digits.get(point..).filter(|f| !f.is_empty()).unwrap_or("0");
            format!("{sign}{whole}{}.{fraction}", "0".repeat(zeros))
        } else {
            format!(
                "{sign}0.{}{digits}",
                "0".repeat(point.unsigned_abs() as usize)
            )
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() { "0" } else { rest };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{sign}{first}.{rest}e{exp_sign}{:02}",
            exponent.unsigned_abs()
        )
    }
}

/// Compact JSON text with the characters the Ruby gem escapes escaped.
fn ruby_escape(text: &str) -> Cow<'_, str> {
    // Most payloads need none of these escapes: memchr's vectorised searches find that out
    // about ten times faster than a byte loop (9 against 105 µs for 100 KB).
    let bytes = text.as_bytes();
    if memchr::memchr3(b'<', b'>', b'&', bytes).is_none() && !has_line_separator(bytes) {
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

/// Whether `bytes` hold U+2028 or U+2029 (UTF-8 `E2 80 A8` and `E2 80 A9`).
fn has_line_separator(bytes: &[u8]) -> bool {
    memchr::memchr_iter(0xE2, bytes)
        .any(|at| matches!(bytes.get(at + 1..at + 3), Some([0x80, 0xA8 | 0xA9])))
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
            partition_hash_of_text(None, &payload, &payload.to_string()),
            0x27b9_5da1
        );
        // The escaped text still decodes to the same payload.
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), payload);
    }

    /// A line separator alone is escaped; other characters whose UTF-8 starts with the
    /// same byte (an em dash, `E2 80 94`; U+2027, `E2 80 A7`) are not.
    #[test]
    fn finds_line_separators_alone() {
        for (text, escaped) in [
            ("a\u{2028}", r#"a\u2028"#),
            ("\u{2029}b", r#"\u2029b"#),
            ("a\u{2014}\u{2027}\u{2030}", "a\u{2014}\u{2027}\u{2030}"),
        ] {
            assert_eq!(ruby_escape(text), escaped, "{text:?}");
        }
    }

    /// Partitions are the hash modulo the count.
    #[test]
    fn partition_is_hash_modulo_count() {
        assert_eq!(partition_for(0xd0ad_56bb, 4), 0xd0ad_56bb % 4);
        assert_eq!(partition_for(7, 1), 0);
        assert_eq!(partition_for(7, 0), 0);
    }
}
