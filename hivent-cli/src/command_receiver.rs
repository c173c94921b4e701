//! Receivers whose handlers are commands: `hivent start -r FILE`, for services in any language.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hivent::{Event, HandlerError, Hivent};
use parking_lot::Mutex;
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
    ///
    /// The command runs in a process group of its own, so the SIGINT a terminal sends
    /// to the worker's group on Ctrl-C does not kill it: the worker's first signal lets
    /// the events in hand finish. [`kill_running_commands`] ends it on a second signal.
    pub fn run(&self, event: &Event) -> Result<(), HandlerError> {
        let program = &self.command[0];
        let mut child = Command::new(program)
            .args(&self.command[1..])
            .process_group(0)
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
        let stdin = child.stdin.take();
        let running = Running::register(child);
        if let Some(mut stdin) = stdin {
            // A command that does not read its stdin closes it early; that is its choice.
            let _ = stdin.write_all(event.to_json().as_bytes());
        }
        let deadline = Instant::now() + Duration::from_secs(self.timeout_secs);
        let mut pause = Duration::from_millis(1);
        let status = loop {
            if let Some(status) = running.child.lock().try_wait()? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let mut child = running.child.lock();
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            // No portable wait-with-timeout in std: poll with a growing pause.
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        };
        drop(running);
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

/// The handler commands running now, so that a second signal can end them.
static RUNNING: Mutex<BTreeMap<u64, Arc<Mutex<Child>>>> = Mutex::new(BTreeMap::new());
static NEXT_RUNNING: AtomicU64 = AtomicU64::new(0);

/// A running command, listed in [`RUNNING`] until dropped.
struct Running {
    id: u64,
    child: Arc<Mutex<Child>>,
}

impl Running {
    fn register(child: Child) -> Running {
        let id = NEXT_RUNNING.fetch_add(1, Ordering::Relaxed);
        let child = Arc::new(Mutex::new(child));
        RUNNING.lock().insert(id, Arc::clone(&child));
        Running { id, child }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.lock().remove(&self.id);
    }
}

/// Kills every handler command still running (the worker is exiting at once).
pub fn kill_running_commands() {
    for child in RUNNING.lock().values() {
        let _ = child.lock().kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event::from_json(
            r#"{"payload":{"n":1},"meta":{"event_uuid":"0123456789abcdef0123456789abcdef","name":"a:b","version":1,"cid":"c","producer":"p","created_at":"2026-12-01T04:56:33.123Z"}}"#,
        )
        .unwrap()
    }

    fn receiver(script: &str, timeout_secs: u64) -> CommandReceiver {
        CommandReceiver {
            signal: "a:b".into(),
            version: None,
            command: vec!["sh".into(), "-c".into(), script.into()],
            timeout_secs,
        }
    }

    /// Exit status 0 is success; the command reads the event JSON on stdin.
    #[test]
    fn exit_zero_is_success() {
        let check = r#"grep -q '"payload":{"n":1}' || exit 9"#;
        receiver(check, 10).run(&event()).unwrap();
    }

    /// Another status is a failure carrying the status and the command's stderr.
    #[test]
    fn failure_carries_stderr() {
        let error = receiver("cat >/dev/null; echo database is down >&2; exit 3", 10)
            .run(&event())
            .unwrap_err()
            .to_string();
        assert!(error.contains("exit status: 3"), "{error}");
        assert!(error.ends_with("database is down"), "{error}");
    }

    /// A command that outlives its timeout is killed and counts as failed.
    #[test]
    fn timeout_kills_and_fails() {
        let started = Instant::now();
        let error = receiver("echo slow >&2; exec sleep 30", 1)
            .run(&event())
            .unwrap_err()
            .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        assert!(
            error.contains("did not finish within 1 s and was killed"),
            "{error}"
        );
    }

    /// A program that does not exist is a failure, not a panic.
    #[test]
    fn missing_program_fails() {
        let mut r = receiver("", 1);
        r.command = vec!["/nonexistent/handler".into()];
        let error = r.run(&event()).unwrap_err().to_string();
        assert!(
            error.starts_with("could not start `/nonexistent/handler`"),
            "{error}"
        );
    }

    /// Receivers files are checked: entries, commands and signal names.
    #[test]
    fn checks_receivers_files() {
        let dir = std::env::temp_dir().join(format!("hivent-receivers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let empty = write("empty.toml", "");
        assert!(ReceiversFile::load(&empty)
            .unwrap_err()
            .contains("has no [[receiver]] entries"));
        let no_command = write("nocmd.toml", "[[receiver]]\nsignal = \"a\"\ncommand = []\n");
        assert!(ReceiversFile::load(&no_command)
            .unwrap_err()
            .contains("has an empty command"));
        let unknown = write(
            "unknown.toml",
            "[[receiver]]\nsignal = \"a\"\ncommand = [\"x\"]\nretries = 3\n",
        );
        assert!(ReceiversFile::load(&unknown)
            .unwrap_err()
            .contains("unknown field `retries`"));
        let good = write(
            "good.toml",
            "[[receiver]]\nsignal = \"*\"\ncommand = [\"true\"]\n",
        );
        let file = ReceiversFile::load(&good).unwrap();
        assert_eq!(file.receivers[0].timeout_secs, 60);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
