//! Receivers whose handlers are commands: `hivent start -r FILE`, for services in any language.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hivent::{CommandFailure, Event, HandlerError, Hivent, Permanent, RetryPolicy};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
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
    /// This receiver's own retry policy, instead of the worker's: attempts in all...
    pub retry_max_attempts: Option<u32>,
    /// ... the wait after the first failure, in ms...
    pub retry_initial_delay_ms: Option<u64>,
    /// ... and the longest wait, in ms. Any of the three given makes a policy of its
    /// own, the others taken from the default policy.
    pub retry_max_delay_ms: Option<u64>,
    /// Exit codes meaning "retrying cannot help": the event is dead-lettered at once
    /// (e.g. `[65]`, EX_DATAERR).
    #[serde(default)]
    pub permanent_exit_codes: Vec<i32>,
}

fn default_timeout() -> u64 {
    60
}

impl ReceiversFile {
    /// Reads and checks a receivers file; the error is one line naming the file and the
    /// receiver. Every receiver's program must exist and be executable (found on `PATH`
    /// when its name has no `/`), and its timeout must be at least one second.
    pub fn load(path: &Path) -> Result<ReceiversFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("could not read the receivers file {}: {e}", path.display()))?;
        let file: ReceiversFile = toml::from_str(&text).map_err(|e| {
            // The message may span lines; a usage error is one line.
            let message: Vec<&str> = e.message().lines().map(str::trim).collect();
            format!(
                "the receivers file {} is not valid: {}",
                path.display(),
                message.join(" ")
            )
        })?;
        if file.receivers.is_empty() {
            return Err(format!(
                "the receivers file {} has no [[receiver]] entries",
                path.display()
            ));
        }
        for (i, r) in file.receivers.iter().enumerate() {
            let name = format!(
                "the receivers file {}: receiver {} ({:?})",
                path.display(),
                i + 1,
                r.signal
            );
            hivent::validate_signal_name(&r.signal).map_err(|e| format!("{name}: {e}"))?;
            let Some(program) = r.command.first().filter(|p| !p.is_empty()) else {
                return Err(format!("{name} has an empty command"));
            };
            if let Err(e) = which::which(program) {
                return Err(format!(
                    "{name}: the program `{program}` cannot be run ({e}; it must exist and be executable)"
                ));
            }
            if r.timeout_secs == 0 {
                return Err(format!(
                    "{name} has timeout_secs = 0; give the command at least 1 second"
                ));
            }
            if r.retry_max_attempts == Some(0) {
                return Err(format!(
                    "{name} has retry_max_attempts = 0; 1 means no retries"
                ));
            }
            if let Some(policy) = r.retry_policy() {
                if policy.max_delay < policy.initial_delay {
                    return Err(format!(
                        "{name} has retry_max_delay_ms below retry_initial_delay_ms"
                    ));
                }
            }
        }
        Ok(file)
    }

    /// Registers every receiver on `hivent`.
    pub fn register(&self, hivent: &Hivent) -> hivent::Result<()> {
        for receiver in &self.receivers {
            let mut signal = hivent.signal(&receiver.signal)?;
            if let Some(policy) = receiver.retry_policy() {
                signal = signal.with_retry(policy);
            }
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

/// How long the worker waits, after a command ended, for its stderr to close: a process
/// that escaped the command's process group may hold it open for ever.
const STDERR_GRACE: Duration = Duration::from_secs(1);

impl CommandReceiver {
    /// The receiver's own retry policy, when it sets any of its retry options.
    pub fn retry_policy(&self) -> Option<RetryPolicy> {
        if self.retry_max_attempts.is_none()
            && self.retry_initial_delay_ms.is_none()
            && self.retry_max_delay_ms.is_none()
        {
            return None;
        }
        Some(RetryPolicy::from_parts(
            self.retry_max_attempts,
            self.retry_initial_delay_ms.map(Duration::from_millis),
            self.retry_max_delay_ms.map(Duration::from_millis),
        ))
    }

    /// Runs the command with the event on stdin (the item exactly as stored, when the
    /// event was read from a partition); exit status 0 is success.
    ///
    /// The command runs in a process group of its own, so the SIGINT a terminal sends
    /// to the worker's group on Ctrl-C does not kill it: the worker's first signal lets
    /// the event in hand finish. On Linux it gets SIGKILL when its worker dies, even by
    /// SIGKILL, so it never runs on beside the worker that takes the partition over.
    /// When the command exits, times out or the worker gets a second signal
    /// ([`kill_running_commands`]), its whole process group is killed: nothing it
    /// started outlives the event.
    pub fn run(&self, event: &Event) -> Result<(), HandlerError> {
        let program = &self.command[0];
        let mut command = Command::new(program);
        command
            .args(&self.command[1..])
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped());
        die_with_worker(&mut command);
        let mut child = command
            .spawn()
            .map_err(|e| format!("could not start `{program}`: {e}"))?;
        let (stderr_tx, stderr_rx) = crossbeam_channel::bounded(1);
        if let Some(mut pipe) = child.stderr.take() {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                let _ = pipe.read_to_end(&mut text);
                let _ = stderr_tx.send(String::from_utf8_lossy(&text).into_owned());
            });
        }
        if let Some(mut stdin) = child.stdin.take() {
            // The item as stored, byte for byte (a gem's escapes and numbers included).
            let json = event.raw().map_or_else(|| event.to_json(), str::to_owned);
            // On a thread: a command that never reads would block a large write, and
            // the timeout must still apply. Not reading its stdin is the command's choice.
            std::thread::spawn(move || {
                let _ = stdin.write_all(json.as_bytes());
            });
        }
        let group = child_pid(&child);
        let running = Running::register(group);
        let deadline = Instant::now() + Duration::from_secs(self.timeout_secs);
        let mut pause = Duration::from_millis(1);
        let timed_out = loop {
            if has_exited(group) {
                break false;
            }
            if Instant::now() >= deadline {
                break true;
            }
            // No portable wait-with-timeout in std: poll with a growing pause.
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        };
        // The exited leader is a zombie until reaped, so its group id cannot have been
        // reused: end whatever the command left running in its group, then reap it.
        kill_group(group);
        let status = child.wait();
        drop(running);
        let stderr = stderr_rx.recv_timeout(STDERR_GRACE).unwrap_or_else(|_| {
            "(stderr not read: a process outside the command's group still holds it)".into()
        });
        let failure = |how: String| CommandFailure::new(program.as_str(), how, &stderr);
        match status {
            _ if timed_out => Err(failure(format!(
                "did not finish within {} s and was killed",
                self.timeout_secs
            ))
            .into()),
            Ok(status) if status.success() => Ok(()),
            Ok(status)
                if status
                    .code()
                    .is_some_and(|code| self.permanent_exit_codes.contains(&code)) =>
            {
                Err(Permanent::new(failure(format!("{status}, a permanent failure"))).into())
            }
            Ok(status) => Err(failure(status.to_string()).into()),
            Err(e) => Err(format!("could not wait for `{program}`: {e}").into()),
        }
    }
}

fn child_pid(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX))
}

/// Whether the command has exited, without reaping it (`WNOWAIT`).
fn has_exited(pid: Pid) -> bool {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    !matches!(waitid(Id::Pid(pid), flags), Ok(WaitStatus::StillAlive))
}

/// Sends SIGKILL to every process of a command's group; a group already empty is fine.
fn kill_group(group: Pid) {
    let _ = killpg(group, Signal::SIGKILL);
}

/// Makes the command get SIGKILL when the worker thread that started it dies, so a
/// killed worker leaves no handler running beside the worker that takes over.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_worker(command: &mut Command) {
    let worker = nix::unistd::getpid();
    // SAFETY: `pre_exec` is unsafe because the closure runs in the forked child before
    // exec, where only async-signal-safe calls are sound. It makes two system calls
    // (prctl, getppid) and builds errors from raw error numbers: no allocation, no lock.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The worker may have died before the signal was set; then none will come.
            if nix::unistd::getppid() != worker {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Elsewhere there is no parent-death signal: a killed worker's command runs to its end.
#[cfg(not(target_os = "linux"))]
fn die_with_worker(_command: &mut Command) {}

/// The process groups of the handler commands running now, so that a second signal
/// can end them.
static RUNNING: Mutex<BTreeMap<u64, Pid>> = Mutex::new(BTreeMap::new());
static NEXT_RUNNING: AtomicU64 = AtomicU64::new(0);

/// A running command, listed in [`RUNNING`] until dropped.
struct Running {
    id: u64,
}

impl Running {
    fn register(group: Pid) -> Running {
        let id = NEXT_RUNNING.fetch_add(1, Ordering::Relaxed);
        RUNNING.lock().insert(id, group);
        Running { id }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.lock().remove(&self.id);
    }
}

/// Kills every handler command still running, with its whole process group (the
/// worker is exiting at once).
pub fn kill_running_commands() {
    for group in RUNNING.lock().values() {
        kill_group(*group);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event::from_json(
            r#"{"payload":{"n":1},"meta":{"event_uuid":"0123456789abcdef0123456789abcdef","name":"a:b","version":1,"cid":"c","producer":"p","created_at":"2026-12-01T04:56:33.123Z"}}"#,
        )
        .unwrap()
    }

    /// `kill_running_commands` ends every running command of the process, so tests
    /// that run commands take turns.
    fn one_at_a_time() -> parking_lot::MutexGuard<'static, ()> {
        static TURN: Mutex<()> = Mutex::new(());
        TURN.lock()
    }

    fn receiver(script: &str, timeout_secs: u64) -> CommandReceiver {
        CommandReceiver {
            signal: "a:b".into(),
            version: None,
            command: vec!["sh".into(), "-c".into(), script.into()],
            timeout_secs,
            retry_max_attempts: None,
            retry_initial_delay_ms: None,
            retry_max_delay_ms: None,
            permanent_exit_codes: Vec::new(),
        }
    }

    /// Exit status 0 is success; the command reads the event JSON on stdin.
    #[test]
    fn exit_zero_is_success() {
        let _turn = one_at_a_time();
        let check = r#"grep -q '"payload":{"n":1}' || exit 9"#;
        receiver(check, 10).run(&event()).unwrap();
    }

    /// Another status is a failure carrying the status and the command's stderr.
    #[test]
    fn failure_carries_stderr() {
        let _turn = one_at_a_time();
        let error = receiver("cat >/dev/null; echo database is down >&2; exit 3", 10)
            .run(&event())
            .unwrap_err()
            .to_string();
        assert!(error.contains("exit status: 3"), "{error}");
        assert!(error.ends_with("database is down"), "{error}");
    }

    /// The failure is a `CommandFailure` (status and stderr apart, for the failure
    /// record); a permanent exit code wraps it in `Permanent`.
    #[test]
    fn failures_are_structured_and_exit_codes_can_be_permanent() {
        let _turn = one_at_a_time();
        let mut r = receiver("cat >/dev/null; echo bad input >&2; exit 65", 10);
        let error = r.run(&event()).unwrap_err();
        let failure = error.downcast_ref::<CommandFailure>().unwrap();
        assert_eq!(
            (failure.exit_status.as_str(), failure.stderr_tail.as_str()),
            ("exit status: 65", "bad input")
        );
        r.permanent_exit_codes = vec![65];
        let error = r.run(&event()).unwrap_err();
        let permanent = error.downcast_ref::<Permanent>().unwrap();
        let failure = permanent.cause().downcast_ref::<CommandFailure>().unwrap();
        assert_eq!(failure.exit_status, "exit status: 65, a permanent failure");
    }

    /// Whether `pid` has ended (gone, or a zombie nobody reaped yet).
    fn is_dead(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    fn wait_until_dead(pid: u32) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_dead(pid) {
            assert!(Instant::now() < deadline, "process {pid} still runs");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn read_pid(path: &Path) -> u32 {
        std::fs::read_to_string(path)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// A command that outlives its timeout is killed with its whole process group (the
    /// shell's `sleep` too) and counts as failed.
    #[test]
    fn timeout_kills_the_whole_group() {
        let _turn = one_at_a_time();
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!(
            "echo slow >&2; sleep 600 & echo $! > {}; wait",
            pid_file.display()
        );
        let error = receiver(&script, 1).run(&event()).unwrap_err().to_string();
        assert!(
            error.contains("did not finish within 1 s and was killed): slow"),
            "{error}"
        );
        wait_until_dead(read_pid(&pid_file));
    }

    /// A command that exits while something it started still holds its stderr returns
    /// its outcome without waiting for that process, which is killed with the group.
    #[test]
    fn exit_does_not_wait_for_what_the_command_left_running() {
        let _turn = one_at_a_time();
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("sleep 600 & echo $! > {}; exit 0", pid_file.display());
        let started = Instant::now();
        receiver(&script, 60).run(&event()).unwrap();
        // A logical bound, not a speed check: waiting for the orphan takes 600 s.
        assert!(started.elapsed() < Duration::from_secs(300));
        wait_until_dead(read_pid(&pid_file));
    }

    /// A second signal kills running commands with their groups.
    #[test]
    fn kill_running_commands_ends_the_group() {
        let _turn = one_at_a_time();
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("sleep 600 & echo $! > {}; wait", pid_file.display());
        let worker = std::thread::spawn(move || receiver(&script, 600).run(&event()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::read_to_string(&pid_file).map_or(true, |t| t.trim().is_empty()) {
            assert!(Instant::now() < deadline, "the command never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        kill_running_commands();
        let error = worker.join().unwrap().unwrap_err().to_string();
        assert!(error.contains("signal: 9"), "{error}");
        wait_until_dead(read_pid(&pid_file));
    }

    /// A program that does not exist is a failure, not a panic.
    #[test]
    fn missing_program_fails() {
        let _turn = one_at_a_time();
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
        let missing = write(
            "missing.toml",
            "[[receiver]]\nsignal = \"a\"\ncommand = [\"true\"]\n[[receiver]]\nsignal = \"b\"\ncommand = [\"/nonexistent/handler\"]\n",
        );
        let error = ReceiversFile::load(&missing).unwrap_err();
        assert!(
            error.contains("receiver 2 (\"b\"): the program `/nonexistent/handler` cannot be run"),
            "{error}"
        );
        let not_executable = dir.join("plain.sh");
        std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
        let file = write(
            "plain.toml",
            &format!(
                "[[receiver]]\nsignal = \"c\"\ncommand = [{:?}]\n",
                not_executable.display().to_string()
            ),
        );
        let error = ReceiversFile::load(&file).unwrap_err();
        assert!(error.contains("receiver 1 (\"c\"): the program"), "{error}");
        let zero = write(
            "zero.toml",
            "[[receiver]]\nsignal = \"d\"\ncommand = [\"true\"]\ntimeout_secs = 0\n",
        );
        let error = ReceiversFile::load(&zero).unwrap_err();
        assert!(
            error.contains("receiver 1 (\"d\") has timeout_secs = 0"),
            "{error}"
        );
        let retried = write(
            "retry.toml",
            "[[receiver]]\nsignal = \"e\"\ncommand = [\"true\"]\nretry_max_attempts = 3\nretry_initial_delay_ms = 50\npermanent_exit_codes = [65]\n[[receiver]]\nsignal = \"f\"\ncommand = [\"true\"]\n",
        );
        let file = ReceiversFile::load(&retried).unwrap();
        assert_eq!(
            file.receivers[0].retry_policy(),
            Some(
                RetryPolicy::default()
                    .max_attempts(3)
                    .initial_delay(Duration::from_millis(50))
            )
        );
        assert_eq!(file.receivers[0].permanent_exit_codes, [65]);
        assert_eq!(
            file.receivers[1].retry_policy(),
            None,
            "the worker's policy"
        );
        for (name, text, reason) in [
            (
                "noattempts.toml",
                "retry_max_attempts = 0",
                "retry_max_attempts = 0",
            ),
            (
                "backwards.toml",
                "retry_initial_delay_ms = 500\nretry_max_delay_ms = 10",
                "retry_max_delay_ms below retry_initial_delay_ms",
            ),
        ] {
            let path = write(
                name,
                &format!("[[receiver]]\nsignal = \"g\"\ncommand = [\"true\"]\n{text}\n"),
            );
            let error = ReceiversFile::load(&path).unwrap_err();
            assert!(error.contains(reason), "{error}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest::proptest! {
        /// Any receivers file gives receivers or a one-line reason, never a panic.
        #[test]
        fn any_receivers_file_is_receivers_or_one_line(text in "\\PC{0,160}") {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("r.toml");
            std::fs::write(&path, &text).unwrap();
            if let Err(reason) = ReceiversFile::load(&path) {
                proptest::prop_assert!(!reason.contains('\n'), "{}", reason);
            }
        }
    }
}
