//! Wire compatibility with the Ruby gem: the text it hashes for an unkeyed emit, byte for
//! byte, against vectors measured with the gem and against a live Ruby with ActiveSupport.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};

use hivent::{partition_for, partition_hash, ruby_json};
use serde_json::Value;

/// Every row of the vectors measured with the gem (hivent 1.0.5, Ruby 3.1, ActiveSupport
/// 6.1): the hashed text, its CRC-32 and the partitions for 4 and 7 partitions, keyed
/// and unkeyed.
#[test]
fn every_gem_vector_matches() {
    let vectors: Value =
        serde_json::from_str(include_str!("fixtures/ruby-gem-partition-vectors.json")).unwrap();
    let unkeyed = vectors["unkeyed"].as_array().unwrap();
    assert_eq!(unkeyed.len(), 74);
    for row in unkeyed {
        let payload: Value = serde_json::from_str(row["payload"].as_str().unwrap()).unwrap();
        assert_eq!(
            ruby_json(&payload),
            row["ruby_json"].as_str().unwrap(),
            "payload {}",
            row["payload"]
        );
        assert_hash_matches(partition_hash(None, &payload), row);
    }
    for row in vectors["keyed"].as_array().unwrap() {
        assert_hash_matches(
            partition_hash(Some(row["key"].as_str().unwrap()), &Value::Null),
            row,
        );
    }
}

/// The hash and the partitions for 4 and 7 partitions are the row's.
fn assert_hash_matches(hash: u32, row: &Value) {
    assert_eq!(u64::from(hash), row["crc32"].as_u64().unwrap(), "{row}");
    assert_eq!(
        u64::from(partition_for(hash, 4)),
        row["partition_of_4"].as_u64().unwrap(),
        "{row}"
    );
    assert_eq!(
        u64::from(partition_for(hash, 7)),
        row["partition_of_7"].as_u64().unwrap(),
        "{row}"
    );
}

/// A small deterministic generator (xorshift), so a failure can be reproduced.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A JSON number as some producer might write it: floats of every magnitude
/// (subnormals included) in several notations, integers of any size, `-0`.
fn number(d: &mut Draws) -> String {
    match d.below(8) {
        0 => loop {
            let f = f64::from_bits(d.next());
            if f.is_finite() {
                break format!("{f:e}");
            }
        },
        1 => loop {
            let f = f64::from_bits(d.next());
            if f.is_finite() {
                break format!("{f:?}");
            }
        },
        2 => format!("{:e}", f64::from_bits(d.below(1 << 52))), // subnormal
        3 => {
            let mantissa = d.below(100_000);
            let exponent = d.below(60) as i64 - 30;
            format!("{mantissa}e{exponent}")
        }
        4 => format!("{}.{}", d.below(1 << 40), d.below(1000)),
        // Beyond 64 bits; JSON allows no leading zero.
        5 => format!(
            "-{}{:019}{:019}",
            1 + d.below(999),
            d.next() % 10u64.pow(19),
            d.next() % 10u64.pow(19)
        ),
        6 => [
            "-0", "0", "-0.0", "0.0", "1E+2", "1e15", "1e16", "1e-4", "1e-5",
        ][d.below(9) as usize]
            .to_owned(),
        _ => (d.next() as i64).to_string(),
    }
}

/// A string with characters the gem escapes, JSON escapes and ones it leaves alone.
fn string(d: &mut Draws) -> String {
    let pool = [
        'a', 'Z', '<', '>', '&', '"', '\\', '/', '\u{2028}', '\u{2029}', '\u{1}', '\u{1f}', '\n',
        '\u{7f}', 'é', '😀', '\u{2027}', ' ',
    ];
    let text: String = (0..d.below(8))
        .map(|_| pool[d.below(pool.len() as u64) as usize])
        .collect();
    Value::String(text).to_string()
}

fn value(d: &mut Draws, depth: u32) -> String {
    match d.below(if depth > 2 { 3 } else { 5 }) {
        0 => number(d),
        1 => string(d),
        2 => ["true", "false", "null"][d.below(3) as usize].to_owned(),
        3 => {
            let items: Vec<String> = (0..d.below(4)).map(|_| value(d, depth + 1)).collect();
            format!("[{}]", items.join(","))
        }
        _ => {
            let fields: Vec<String> = (0..d.below(4))
                .map(|_| format!("{}:{}", string(d), value(d, depth + 1)))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
    }
}

/// Thousands of generated payloads run through Debian's Ruby with ActiveSupport: for
/// each, `JSON.parse(text).to_json` and its CRC-32 equal hivent's, byte for byte.
#[test]
#[cfg_attr(
    no_ruby_activesupport,
    ignore = "ruby with ActiveSupport is not installed (apt-get install ruby ruby-activesupport; CI installs them)"
)]
fn live_activesupport_agrees_byte_for_byte() {
    let mut draws = Draws(0x9e37_79b9_7f4a_7c15);
    let payloads: Vec<String> = (0..8000)
        .map(|i| {
            if i % 2 == 0 {
                format!("{{\"v\":{}}}", number(&mut draws))
            } else {
                format!("{{\"v\":{}}}", value(&mut draws, 0))
            }
        })
        .collect();
    let script = r##"
        require "json"
        require "zlib"
        require "active_support"
        require "active_support/json"
        STDIN.each_line do |line|
          text = JSON.parse(line).to_json
          puts "#{Zlib.crc32(text)} #{text}"
        end
    "##;
    let mut ruby = Command::new("ruby")
        .args(["-e", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ruby could not be started");
    let mut input = ruby.stdin.take().unwrap();
    let lines = payloads.join("\n") + "\n";
    let writer = std::thread::spawn(move || input.write_all(lines.as_bytes()).unwrap());
    let output = ruby.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(output.status.success(), "ruby failed");
    let answers = String::from_utf8(output.stdout).unwrap();
    let answers: Vec<&str> = answers.lines().collect();
    assert_eq!(answers.len(), payloads.len());
    let mut mismatches = Vec::new();
    for (payload, answer) in payloads.iter().zip(answers) {
        let (crc, text) = answer.split_once(' ').unwrap();
        let value: Value = serde_json::from_str(payload).unwrap();
        let ours = ruby_json(&value);
        if ours != text || partition_hash(None, &value).to_string() != crc {
            mismatches.push(format!("{payload}\n  ruby:   {text}\n  hivent: {ours}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} differ, e.g.\n{}",
        mismatches.len(),
        payloads.len(),
        mismatches
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
