//! Failure records: why, when and after how many attempts an event was dead-lettered.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ReceivedSignal;

/// What hivent records beside a dead letter when it moves an event to the dead letter
/// queue, in the same atomic step. The dead letter itself stays the raw item, as the
/// Ruby gem writes it; a record is removed with its item (replay, purge).
///
/// Stored as JSON; fields may be added, so readers should ignore unknown ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FailureRecord {
    /// The last error, with its causes, as text.
    pub error: String,
    /// How many times the event was tried.
    pub attempts: u32,
    /// When the first attempt failed.
    pub first_failed_at: DateTime<Utc>,
    /// When the last attempt failed.
    pub last_failed_at: DateTime<Utc>,
    /// The member id of the worker that dead-lettered it.
    pub worker: String,
    /// The receiver whose handler failed last (signal or `*`, version filter); `None`
    /// when the item could not be decoded, so no handler ran.
    #[serde(default)]
    pub receiver: Option<ReceivedSignal>,
    /// Whether the failure was one retrying cannot fix (not an event, a payload the
    /// receiver's type rejects, an error marked [`crate::Permanent`]), so it was
    /// dead-lettered without using up the retries.
    #[serde(default)]
    pub permanent: bool,
    /// For a command handler (`hivent start -r`): its exit status and stderr.
    #[serde(default)]
    pub command: Option<CommandFailure>,
}

impl FailureRecord {
    /// The record as the JSON backends store.
    pub fn to_json(&self) -> String {
        // Strings, numbers and times only: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A record read back from its JSON.
    pub fn from_json(json: &str) -> Result<FailureRecord, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// A record of a failure that had no earlier attempts at `at`.
    pub fn new(error: impl Into<String>, worker: impl Into<String>, at: DateTime<Utc>) -> Self {
        FailureRecord {
            error: error.into(),
            attempts: 1,
            first_failed_at: at,
            last_failed_at: at,
            worker: worker.into(),
            receiver: None,
            permanent: false,
            command: None,
        }
    }
}

/// A handler command that failed: how it ended and the end of what it wrote to stderr.
/// Command handlers return it as their error, and the failure record keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub struct CommandFailure {
    /// The program that ran.
    pub program: String,
    /// How it ended, e.g. `exit status: 3`, `signal: 9 (SIGKILL)`, or a timeout.
    pub exit_status: String,
    /// The last lines of its stderr (at most [`CommandFailure::STDERR_TAIL_BYTES`]).
    pub stderr_tail: String,
}

impl CommandFailure {
    /// How much of a command's stderr a failure keeps: the end, where the error usually is.
    pub const STDERR_TAIL_BYTES: usize = 4096;

    /// A failure of `program`, keeping the tail of `stderr`.
    pub fn new(program: impl Into<String>, exit_status: impl Into<String>, stderr: &str) -> Self {
        let stderr = stderr.trim();
        let mut start = stderr.len().saturating_sub(Self::STDERR_TAIL_BYTES);
        while !stderr.is_char_boundary(start) {
            start += 1;
        }
        CommandFailure {
            program: program.into(),
            exit_status: exit_status.into(),
            stderr_tail: stderr[start..].to_owned(),
        }
    }
}

impl fmt::Display for CommandFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` failed ({})", self.program, self.exit_status)?;
        if !self.stderr_tail.is_empty() {
            write!(f, ": {}", self.stderr_tail)?;
        }
        Ok(())
    }
}

/// An event's failed attempts so far, as the backend counts them for the oldest item
/// of a partition (see [`crate::ConsumerSession::record_attempt`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempts {
    /// Failed attempts, the one just recorded included.
    pub count: u32,
    /// When the first of them failed.
    pub first_failed_at: DateTime<Utc>,
}

/// One item of a dead letter queue and its failure record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The item exactly as stored (the event's JSON, or whatever could not be processed).
    pub raw: String,
    /// Why it was dead-lettered; `None` for items moved by the Ruby gem or another tool,
    /// which keep no record.
    pub record: Option<FailureRecord>,
}

impl DeadLetter {
    /// A dead letter read from a backend.
    pub fn new(raw: String, record: Option<FailureRecord>) -> DeadLetter {
        DeadLetter { raw, record }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command failure keeps the end of a long stderr, on a character boundary.
    #[test]
    fn keeps_the_tail_of_stderr() {
        let long = format!("{}é{}", "x".repeat(10_000), "the real error");
        let failure = CommandFailure::new("sh", "exit status: 3", &long);
        assert!(failure.stderr_tail.ends_with("the real error"));
        assert!(failure.stderr_tail.len() <= CommandFailure::STDERR_TAIL_BYTES);
        assert_eq!(
            CommandFailure::new("sh", "exit status: 3", " oops\n").to_string(),
            "`sh` failed (exit status: 3): oops"
        );
    }

    /// Records read back from JSON equal what was written, and unknown fields are ignored.
    #[test]
    fn round_trips_as_json() {
        let mut record = FailureRecord::new("boom", "w1", Utc::now());
        record.attempts = 3;
        record.command = Some(CommandFailure::new("sh", "exit status: 1", "no"));
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(
            serde_json::from_str::<FailureRecord>(&text).unwrap(),
            record
        );
        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value["added_later"] = serde_json::json!(1);
        assert_eq!(
            serde_json::from_value::<FailureRecord>(value).unwrap(),
            record
        );
    }
}
