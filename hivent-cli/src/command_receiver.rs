//! Receivers whose handlers are commands: `hivent start -r FILE`, for services in any language.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hivent::{Event, HandlerError, Hivent};
use serde::Deserialize;

/// The receivers file: a list of `[[receiver]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiversFile {
    /// The receivers.
    #[serde(rename = "receiver", default)]
    pub receivers: Vec<CommandReceiver>,
}

/// One receiver: a signal (or `*`), an optional version, and the command to run.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandReceiver {
    /// The signal name, or `*` for every event.
    pub signal: String,
    /// Only this version, when given.
    pub version: Option<i64>,
    /// The program and its arguments; the event JSON arrives on its stdin.
    pub command: Vec<String>,
    /// Seconds before the command is killed and the event counts as failed (default 60).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    60
}

impl ReceiversFile {
    /// Reads and checks a receivers file; the error is one line naming the file.
    pub fn load(path: &Path) -> Result<ReceiversFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("could not read the receivers file {}: {e}", path.display()))?;
        let file: ReceiversFile = toml::from_str(&text).map_err(|e| {
            format!(
                "the receivers file {} is not valid: {}",
                path.display(),
                e.message()
            )
        })?;
        if file.receivers.is_empty() {
            return Err(format!(
                "the receivers file {} has no [[receiver]] entries",
                path.display()
            ));
        }
        for (i, r) in file.receivers.iter().enumerate() {
            if r.command.is_empty() || r.command[0].is_empty() {
                return Err(format!(
                    "the receivers file {}: receiver {} ({:?}) has an empty command",
                    path.display(),
                    i + 1,
                    r.signal
                ));
            }
            hivent::validate_signal_name(&r.signal)
                .map_err(|e| format!("the receivers file {}: {e}", path.display()))?;
        }
        Ok(file)
    }

    /// Registers every receiver on `hivent`.
    pub fn register(&self, hivent: &Hivent) -> hivent::Result<()> {
        for receiver in &self.receivers {
            let signal = hivent.signal(&receiver.signal)?;
            let r = receiver.clone();
            let handler = move |event: &Event| r.run(event);
            match receiver.version {
                Some(v) => signal.receive_version(v, handler),
                None => signal.receive(handler),
            }
        }
        Ok(())
    }
}

impl CommandReceiver {
    /// Runs the command with the event on stdin; exit status 0 is success.
    pub fn run(&self, event: &Event) -> Result<(), HandlerError> {
        let program = &self.command[0];
        let mut child = Command::new(program)
            .args(&self.command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start `{program}`: {e}"))?;
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        });
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its stdin closes it early; that is its choice.
            let _ = stdin.write_all(event.to_json().as_bytes());
        }
        let deadline = Instant::now() + Duration::from_secs(self.timeout_secs);
        let mut pause = Duration::from_millis(1);
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            // No portable wait-with-timeout in std: poll with a growing pause.
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        };
        let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        let stderr = stderr.trim();
        match status {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(format!("`{program}` exited with {status}: {stderr}").into()),
            None => Err(format!(
                "`{program}` did not finish within {} s and was killed: {stderr}",
                self.timeout_secs
            )
            .into()),
        }
    }
}
