//! The built `hivent` binary run as a user would, against a real `redis-server`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hivent_redis::test_server::{server_for_tests, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_hivent");

fn hivent(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits for `condition` up to `limit`, checking every 20 ms.
fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A worker process of `hivent start -r`, stopped with SIGTERM.
struct Worker {
    child: Child,
}

/// `hivent start -r RECEIVERS` for `service` with `partitions` on the test's Redis.
fn start_command(
    server: &RedisServer,
    service: &str,
    receivers: &Path,
    partitions: u32,
) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["start", "-r"])
        .arg(receivers)
        .args([
            "--backend",
            "redis",
            "--endpoint",
            &server.url(),
            "--client-id",
            service,
        ])
        .args(["--partition-count", &partitions.to_string()]);
    command
}

impl Worker {
    fn start(server: &RedisServer, service: &str, receivers: &Path, extra: &[&str]) -> Worker {
        let child = start_command(server, service, receivers, 4)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Worker { child }
    }

    /// Sends SIGTERM and returns the exit code and stderr.
    fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let output = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        (output.status.code(), text(&output.stderr))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shell words that append the event on stdin, and a newline, to `out`.
fn append_to(out: &Path) -> String {
    format!("cat >> {0}; echo >> {0}", out.display())
}

/// Starts a worker and waits until it is the service's one live consumer.
fn start_registered(server: &RedisServer, service: &str, receivers: &Path) -> Worker {
    let worker = Worker::start(server, service, receivers, &[]);
    wait_for("the worker to register", Duration::from_secs(20), || {
        has_consumers(server, service, 1)
    });
    worker
}

/// A receivers file whose handler runs `script` with `sh -c`.
fn receivers(dir: &Path, signal: &str, script: &str) -> PathBuf {
    let path = dir.join("receivers.toml");
    std::fs::write(
        &path,
        format!("[[receiver]]\nsignal = {signal:?}\ncommand = [\"sh\", \"-c\", {script:?}]\ntimeout_secs = 20\n"),
    )
    .unwrap();
    path
}

/// Runs `hivent ARGS --backend redis --endpoint URL`.
fn on_redis(server: &RedisServer, args: &[&str]) -> Output {
    let url = server.url();
    let mut all = args.to_vec();
    all.extend(["--backend", "redis", "--endpoint", &url]);
    hivent(&all)
}

fn emit(server: &RedisServer, name: &str, payload: &str, key: &str) -> serde_json::Value {
    let out = on_redis(
        server,
        &[
            "emit",
            name,
            "--version",
            "1",
            "--payload",
            payload,
            "--key",
            key,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_str(&text(&out.stdout)).unwrap()
}

/// `hivent status --json --service SERVICE`, `None` while the service is unknown.
fn try_status_json(server: &RedisServer, service: &str) -> Option<serde_json::Value> {
    let out = on_redis(server, &["status", "--json", "--service", service]);
    out.status
        .success()
        .then(|| serde_json::from_str::<serde_json::Value>(&text(&out.stdout)).unwrap()[0].clone())
}

fn status_json(server: &RedisServer, service: &str) -> serde_json::Value {
    try_status_json(server, service).expect("hivent status failed")
}

/// Events waiting in all partitions of a `status --json` entry.
fn waiting(status: &serde_json::Value) -> u64 {
    status["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["waiting"].as_u64().unwrap())
        .sum()
}

/// Whether `service` is registered and has exactly `n` live consumers.
fn has_consumers(server: &RedisServer, service: &str, n: usize) -> bool {
    try_status_json(server, service)
        .is_some_and(|s| s["consumers"].as_array().is_some_and(|c| c.len() == n))
}

/// emit → start with a command handler → the handler got the event JSON on stdin;
/// SIGTERM then stops the worker with status 0.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn start_runs_command_handlers() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seen.jsonl");
    let file = receivers(dir.path(), "user:created", &append_to(&out));
    let worker = start_registered(&server, "mailer", &file);
    let event = emit(
        &server,
        "user:created",
        r#"{"email":"ada@example.com"}"#,
        "ada",
    );
    wait_for("the handler to run", Duration::from_secs(20), || {
        !lines(&out).is_empty()
    });
    let seen: serde_json::Value = serde_json::from_str(&lines(&out)[0]).unwrap();
    assert_eq!(seen, event);
    let (code, stderr) = worker.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("starting") && stderr.contains("stopped"),
        "{stderr}"
    );
}

/// A failing command is retried in place, each retry logged at info and the final
/// dead-letter at warn; `dlq list` and `dlq show` print the failure record (attempts,
/// the command's status and stderr), `--json` too; `dlq replay` takes selections and
/// `--dry-run`, replays everything by default and says what is left; each replayed
/// event is handled once, in order.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn failed_events_are_retried_recorded_listed_and_replayed() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seen.jsonl");
    let flag = dir.path().join("healthy");
    let script = format!(
        "if [ -e {flag} ]; then {append}; else echo database is down >&2; exit 3; fi",
        flag = flag.display(),
        append = append_to(&out)
    );
    let file = receivers(dir.path(), "pay:due", &script);
    let retries = [
        "--retry-max-attempts",
        "2",
        "--retry-initial-delay-ms",
        "10",
    ];
    let worker = Worker::start(&server, "billing", &file, &retries);
    wait_for("the worker to register", Duration::from_secs(20), || {
        has_consumers(&server, "billing", 1)
    });
    let events: Vec<_> = (1..=3)
        .map(|n| emit(&server, "pay:due", &format!(r#"{{"amount":{n}}}"#), "inv-1"))
        .collect();
    let event = &events[0];
    let uuid = |e: &serde_json::Value| e["meta"]["event_uuid"].as_str().unwrap().to_owned();
    let dlq = |args: &[&str]| {
        let mut all = vec!["dlq"];
        all.extend(args);
        all.extend(["--service", "billing"]);
        on_redis(&server, &all)
    };
    wait_for("the dead letters", Duration::from_secs(20), || {
        text(&dlq(&["list"]).stdout).lines().count() == 3
    });
    let listed = text(&dlq(&["list", "--limit", "1"]).stdout);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    for part in [
        "pay:due v1",
        &uuid(event),
        "2 attempt(s)",
        "exit status: 3): database is down",
    ] {
        assert!(listed.contains(part), "{part:?} in {listed}");
    }
    let shown = text(&dlq(&["show", "--limit", "1"]).stdout);
    for part in [
        "attempts:  2",
        "receiver:  pay:due (every version)",
        "command:   `sh` exit status: 3",
        "stderr (end):\n    database is down",
    ] {
        assert!(shown.contains(part), "{part:?} in {shown}");
    }
    let raw = shown
        .lines()
        .find_map(|l| l.strip_prefix("  raw: "))
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(raw).unwrap(),
        *event
    );
    let json: serde_json::Value = serde_json::from_slice(&dlq(&["show", "--json"]).stdout).unwrap();
    let first = &json[0];
    assert_eq!(json.as_array().unwrap().len(), 3);
    assert_eq!(first["record"]["attempts"], 2);
    assert_eq!(first["record"]["command"]["exit_status"], "exit status: 3");
    assert_eq!(
        first["record"]["command"]["stderr_tail"],
        "database is down"
    );
    assert_eq!(first["event"]["event_uuid"].as_str().unwrap(), uuid(event));
    assert!(
        first["record"]["first_failed_at"].as_str().unwrap()
            < first["record"]["last_failed_at"].as_str().unwrap()
    );

    let partition = first["partition"].as_u64().unwrap().to_string();
    let other = ((first["partition"].as_u64().unwrap() + 1) % 4).to_string();
    assert_eq!(
        text(&dlq(&["list", "--partition", &partition]).stdout)
            .lines()
            .count(),
        3
    );
    assert_eq!(
        text(&dlq(&["list", "--partition", &other]).stdout),
        "no dead letters selected\n"
    );
    let purge_plan = dlq(&["purge", "--partition", &other, "--dry-run"]);
    assert!(
        text(&purge_plan.stdout).starts_with("would purge 0 event(s)"),
        "{}",
        text(&purge_plan.stdout)
    );
    std::fs::write(&flag, "").unwrap();
    let by_uuid = ["replay", "--event-uuid", &uuid(event)];
    let dry = dlq(&[&by_uuid[..], &["--dry-run"]].concat());
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert_eq!(
        text(&dry.stdout),
        format!("partition {}: would replay 1 event(s)\nwould replay 1 event(s) of service billing; 2 dead letter(s) would be left in the partitions looked at, 0 of them selected\ndry run: nothing was changed\n", first["partition"])
    );
    assert_eq!(text(&dlq(&["list"]).stdout).lines().count(), 3);
    let replay = dlq(&by_uuid);
    assert!(
        text(&replay.stdout).contains(
            "replayed 1 event(s) of service billing; 2 dead letter(s) left in the partitions looked at, 0 of them selected"
        ),
        "{}",
        text(&replay.stdout)
    );
    wait_for("the replayed event", Duration::from_secs(20), || {
        !lines(&out).is_empty()
    });
    let replay = dlq(&["replay", "--signal", "pay:due"]);
    assert!(
        text(&replay.stdout)
            .ends_with("replayed 2 event(s) of service billing; 0 dead letter(s) left in the partitions looked at\n"),
        "{}",
        text(&replay.stdout)
    );
    wait_for("every replayed event", Duration::from_secs(20), || {
        lines(&out).len() >= 3
    });
    let handled: Vec<serde_json::Value> = lines(&out)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(handled, events, "each replayed event once, in order");
    assert_eq!(text(&dlq(&["list"]).stdout), "no dead letters selected\n");
    let purge = dlq(&["purge"]);
    assert_eq!(purge.status.code(), Some(2));
    assert!(
        text(&purge.stderr).contains("add --yes"),
        "{}",
        text(&purge.stderr)
    );
    let (code, stderr) = worker.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    let count = |needle: &str| stderr.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("handler failed; retrying in place"), 3, "{stderr}");
    assert_eq!(count("event dead-lettered"), 3, "{stderr}");
    for line in stderr.lines().filter(|l| l.contains("retrying in place")) {
        assert!(
            line.contains("INFO") && line.contains("attempt=1") && line.contains("delay_ms="),
            "{line}"
        );
    }
    for line in stderr.lines().filter(|l| l.contains("event dead-lettered")) {
        for field in [
            "WARN",
            "service=\"billing\"",
            "partition=",
            "event=pay:due",
            "version=1",
            "uuid=",
            "attempts=2",
            "database is down",
        ] {
            assert!(line.contains(field), "{field:?} in {line}");
        }
    }
}

/// A worker killed between two attempts at an event does not reset its attempts: the
/// worker taking the partition over counts on, and dead-letters it after the last.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn attempts_survive_a_worker_crash() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = receivers(
        dir.path(),
        "flaky:job",
        "cat >/dev/null; echo boom >&2; exit 1",
    );
    let options = [
        "--retry-max-attempts",
        "2",
        "--retry-initial-delay-ms",
        "600000",
        "--heartbeat-interval-ms",
        "200",
        "--member-ttl-ms",
        "1500",
    ];
    let mut first = Worker::start(&server, "crashy", &file, &options);
    wait_for("the worker to register", Duration::from_secs(20), || {
        has_consumers(&server, "crashy", 1)
    });
    let event = emit(&server, "flaky:job", "{}", "k");
    let mut redis = raw_connection(&server);
    let attempts = |redis: &mut redis::Connection| -> Vec<String> {
        redis::cmd("HVALS")
            .arg("crashy:hivent:attempts")
            .query(redis)
            .unwrap()
    };
    wait_for(
        "the first attempt to be counted",
        Duration::from_secs(20),
        || attempts(&mut redis).len() == 1,
    );
    assert!(
        attempts(&mut redis)[0].contains(" 1 "),
        "{:?}",
        attempts(&mut redis)
    );
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let second = Worker::start(&server, "crashy", &file, &options);
    let dlq = || on_redis(&server, &["dlq", "show", "--json", "--service", "crashy"]);
    wait_for("the dead letter", Duration::from_secs(30), || {
        serde_json::from_slice::<serde_json::Value>(&dlq().stdout)
            .is_ok_and(|v| v.as_array().is_some_and(|a| a.len() == 1))
    });
    let shown: serde_json::Value = serde_json::from_slice(&dlq().stdout).unwrap();
    assert_eq!(shown[0]["event"]["event_uuid"], event["meta"]["event_uuid"]);
    assert_eq!(shown[0]["record"]["attempts"], 2, "{shown}");
    assert_eq!(shown[0]["record"]["command"]["stderr_tail"], "boom");
    assert!(
        attempts(&mut redis).is_empty(),
        "the count went with the event"
    );
    let (code, stderr) = second.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !stderr.contains("retrying in place"),
        "the second worker made the last attempt: {stderr}"
    );
}

/// `status` shows the lag before workers run, then two workers splitting 4 partitions.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn status_shows_lag_and_two_workers() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seen.jsonl");
    let file = receivers(dir.path(), "job:queued", &append_to(&out));
    // Register without consuming: a worker that stops at once leaves the registration.
    let first = start_registered(&server, "jobs", &file);
    assert_eq!(first.terminate().0, Some(0));
    for i in 0..8 {
        emit(
            &server,
            "job:queued",
            &format!(r#"{{"job":{i}}}"#),
            &format!("job-{i}"),
        );
    }
    let status = status_json(&server, "jobs");
    let waiting = waiting(&status);
    assert_eq!(waiting, 8);
    assert!(status["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["oldest_created_at"].is_string()));
    let table = text(&on_redis(&server, &["status"]).stdout);
    assert!(
        table.contains("service jobs: 4 partitions, 0 consumers, 8 waiting, 0 dead letters"),
        "{table}"
    );

    let a = Worker::start(&server, "jobs", &file, &[]);
    let b = Worker::start(&server, "jobs", &file, &[]);
    wait_for("an even split", Duration::from_secs(30), || {
        let s = status_json(&server, "jobs");
        let consumers: Vec<String> = s["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        consumers.len() == 2
            && consumers.iter().all(|c| {
                s["partitions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|p| p["owner"].as_str() == Some(c))
                    .count()
                    == 2
            })
    });
    wait_for("the backlog", Duration::from_secs(20), || {
        lines(&out).len() == 8
    });
    let table = text(&on_redis(&server, &["status"]).stdout);
    assert!(
        table.contains("service jobs: 4 partitions, 2 consumers, 0 waiting, 0 dead letters"),
        "{table}"
    );
    assert_eq!(a.terminate().0, Some(0));
    assert_eq!(b.terminate().0, Some(0));
}

/// SIGTERM while a batch is in hand: the worker finishes and acks it, exits 0, and
/// every event is either processed (and gone) or still waiting — none lost.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn sigterm_during_a_batch_loses_nothing() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seen.jsonl");
    let script = format!("sleep 0.1; {}", append_to(&out));
    let file = receivers(dir.path(), "slow:job", &script);
    let worker = start_registered(&server, "slow", &file);
    let uuids: Vec<String> = (0..12)
        .map(|i| {
            emit(&server, "slow:job", &format!(r#"{{"n":{i}}}"#), "one-key")["meta"]["event_uuid"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    wait_for("the first event", Duration::from_secs(20), || {
        !lines(&out).is_empty()
    });
    let (code, stderr) = worker.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    let processed: Vec<String> = lines(&out)
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["meta"]["event_uuid"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let status = status_json(&server, "slow");
    let waiting = waiting(&status);
    assert_eq!(
        processed,
        uuids[..processed.len()],
        "processed in emit order, each once"
    );
    assert_eq!(
        processed.len() as u64 + waiting,
        12,
        "processed {} + waiting {waiting}",
        processed.len()
    );
    assert_eq!(
        status["consumers"].as_array().unwrap().len(),
        0,
        "the worker left the group"
    );
}

/// Bad flags, bad values and bad files exit 2 with one clear line on stderr.
#[test]
fn usage_and_config_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "client_id = \"x\"\npartitions = 4\n").unwrap();
    let bad_receivers = dir.path().join("bad-receivers.toml");
    std::fs::write(
        &bad_receivers,
        "[[receiver]]\nsignal = \"a:*\"\ncommand = [\"true\"]\n",
    )
    .unwrap();
    let good_receivers = receivers(dir.path(), "a", "true");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["start".into(), "--bogus".into()],
            "unexpected argument '--bogus'",
        ),
        (
            vec![
                "start".into(),
                "-r".into(),
                bad_receivers.display().to_string(),
            ],
            "partial wildcards",
        ),
        (
            vec![
                "start".into(),
                "-r".into(),
                good_receivers.display().to_string(),
                "--config".into(),
                bad_toml.display().to_string(),
            ],
            "unknown option `partitions`",
        ),
        (
            vec![
                "start".into(),
                "-r".into(),
                good_receivers.display().to_string(),
                "--client-id".into(),
                "x".into(),
                "--partition-count".into(),
                "0".into(),
            ],
            "option `partition_count` cannot be \"0\"",
        ),
        (
            vec![
                "start".into(),
                "-r".into(),
                good_receivers.display().to_string(),
                "--client-id".into(),
                "x".into(),
                "--backend".into(),
                "kafka".into(),
            ],
            "option `backend` cannot be \"kafka\"",
        ),
        (
            vec![
                "emit".into(),
                "a".into(),
                "--version".into(),
                "1".into(),
                "--payload".into(),
                "{nope".into(),
            ],
            "the payload is not valid JSON",
        ),
    ];
    for (args, expected) in cases {
        let out = Command::new(BIN).args(&args).output().unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?}: one line, not {stderr}"
        );
    }
}

/// An unreachable Redis is a runtime failure: exit 1, the cause on stderr, no password.
#[test]
fn unreachable_redis_exits_1_without_credentials() {
    let out = hivent(&[
        "status",
        "--backend",
        "redis",
        "--endpoint",
        "redis://user:hunter2@127.0.0.1:1/0",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
}

/// An endpoint whose password holds unencoded `#`, `?` or `/` is a configuration error
/// (exit 2, one line) that never shows the password, whatever part the URL parser took
/// it for.
#[test]
fn invalid_endpoints_exit_2_without_the_password() {
    for password in ["hun#ter2x", "hun?ter2x", "hun/ter2x", "a/b#c?dxx"] {
        let endpoint = format!("redis://user:{password}@127.0.0.1:1/0");
        let out = hivent(&["status", "--endpoint", &endpoint]);
        let stderr = text(&out.stderr);
        assert!(!stderr.contains(password), "{stderr}");
        let tail: String = password.chars().skip(3).collect();
        assert!(!stderr.contains(&tail), "{stderr}");
        // Either the URL does not parse (a configuration error) or Redis is unreachable.
        match out.status.code() {
            Some(2) => assert_eq!(stderr.lines().count(), 1, "{stderr}"),
            Some(1) => assert!(stderr.contains("could not connect"), "{stderr}"),
            other => panic!("exit {other:?}: {stderr}"),
        }
    }
}

/// `emit` without `--payload` reads the payload from stdin, with `--cid`; the event
/// lands in the receiving service's partition as printed.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn emit_reads_the_payload_from_stdin() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = receivers(dir.path(), "note:taken", "cat > /dev/null");
    let worker = start_registered(&server, "notes", &file);
    assert_eq!(worker.terminate().0, Some(0));
    let mut child = Command::new(BIN)
        .args([
            "emit",
            "note:taken",
            "--version",
            "3",
            "--cid",
            "0123456789abcdef0123456789abcdef",
        ])
        .args([
            "--backend",
            "redis",
            "--endpoint",
            &server.url(),
            "--client-id",
            "notebook",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(br#"{"text": "from stdin"}"#).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let event: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(event["payload"], serde_json::json!({"text": "from stdin"}));
    assert_eq!(event["meta"]["version"], 3);
    assert_eq!(event["meta"]["cid"], "0123456789abcdef0123456789abcdef");
    assert_eq!(event["meta"]["producer"], "notebook");
    let status = status_json(&server, "notes");
    let waiting = waiting(&status);
    assert_eq!(waiting, 1);
}

/// A second SIGTERM while the first waits for a slow handler exits at once with 130
/// and takes the running handler command with it.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn second_signal_exits_at_once() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let handler_pid = dir.path().join("handler.pid");
    let script = format!("echo $$ > {}; exec sleep 20", handler_pid.display());
    let file = receivers(dir.path(), "slow:thing", &script);
    let log = dir.path().join("worker.log");
    let mut worker = start_command(&server, "stubborn", &file, 1)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for("the worker to register", Duration::from_secs(20), || {
        has_consumers(&server, "stubborn", 1)
    });
    emit(&server, "slow:thing", "{}", "k");
    wait_for("the handler to start", Duration::from_secs(20), || {
        std::fs::read_to_string(&handler_pid).is_ok_and(|p| p.ends_with('\n'))
    });
    let pid = worker.id().to_string();
    let began = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    wait_for(
        "the first signal to be honoured",
        Duration::from_secs(10),
        || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("stopping")),
    );
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = worker.wait().unwrap();
    let elapsed = began.elapsed();
    let handler: u32 = std::fs::read_to_string(&handler_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SIGKILL is delivered asynchronously: wait for the death rather than expect it.
    wait_for(
        "the running handler command to be killed",
        Duration::from_secs(20),
        || is_dead(handler),
    );
    assert_eq!(status.code(), Some(130));
    assert!(
        elapsed < Duration::from_secs(15),
        "it waited for the handler: {elapsed:?}"
    );
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("second signal: exiting at once"));
}

/// Ctrl-C in a terminal signals the worker's whole process group; the handler command
/// in hand runs in a group of its own, so it finishes, its event is acknowledged and
/// the worker exits 0.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn ctrl_c_lets_the_handler_in_hand_finish() {
    use std::os::unix::process::CommandExt;
    let Some(server) = server_for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let out = dir.path().join("seen.jsonl");
    let script = format!("touch {}; sleep 1; {}", started.display(), append_to(&out));
    let file = receivers(dir.path(), "careful:job", &script);
    let mut worker = start_command(&server, "careful", &file, 1)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the worker to register", Duration::from_secs(20), || {
        has_consumers(&server, "careful", 1)
    });
    let event = emit(&server, "careful:job", "{}", "k");
    wait_for("the handler to start", Duration::from_secs(20), || {
        started.exists()
    });
    // What a terminal does on Ctrl-C: SIGINT to every process of the worker's group.
    let group = format!("-{}", worker.id());
    assert!(Command::new("kill")
        .args(["-INT", "--", &group])
        .status()
        .unwrap()
        .success());
    let status = worker.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let seen: serde_json::Value = serde_json::from_str(&lines(&out)[0]).unwrap();
    assert_eq!(seen, event);
    assert_eq!(waiting(&status_json(&server, "careful")), 0);
    assert_eq!(
        text(&on_redis(&server, &["dlq", "list", "--service", "careful"]).stdout),
        "no dead letters selected\n"
    );
}

/// A plain connection to the test's Redis, to look at or write keys as another tool would.
fn raw_connection(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// The live members of `service`'s group.
fn members(server: &RedisServer, service: &str) -> Vec<String> {
    let mut connection = raw_connection(server);
    redis::cmd("ZRANGE")
        .arg(format!("{service}:hivent:members"))
        .arg(0)
        .arg(-1)
        .query(&mut connection)
        .unwrap()
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

/// A handler command dies with its worker, even when the worker is SIGKILLed, so it
/// never runs beside the worker that takes the partition over.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn a_killed_workers_command_dies_with_it() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 300", pid_file.display());
    let receivers = receivers(dir.path(), "slow:job", &script);
    let mut worker = start_registered(&server, "svc-orphan", &receivers);
    emit(&server, "slow:job", "{}", "k");
    wait_for(
        "the handler command to start",
        Duration::from_secs(20),
        || std::fs::read_to_string(&pid_file).is_ok_and(|t| !t.trim().is_empty()),
    );
    let command: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!is_dead(command));
    worker.child.kill().unwrap();
    worker.child.wait().unwrap();
    wait_for(
        "the command to die with its worker",
        Duration::from_secs(20),
        || is_dead(command),
    );
}

/// A worker in another pid namespace with the same host name (a container sharing the
/// host's UTS namespace) does not take a live worker for a ghost of its own host.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
#[cfg_attr(
    no_pid_namespaces,
    ignore = "unshare --pid cannot be run here (needs util-linux and root; CI has both)"
)]
fn a_worker_in_another_pid_namespace_evicts_nobody() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let receivers = receivers(dir.path(), "ns:event", "cat > /dev/null");
    let _outside = start_registered(&server, "svc-pidns", &receivers);
    let live = members(&server, "svc-pidns");
    assert_eq!(live.len(), 1);
    let inside = start_command(&server, "svc-pidns", &receivers, 4);
    let program = inside.get_program().to_owned();
    let args: Vec<_> = inside.get_args().map(ToOwned::to_owned).collect();
    let mut inside = Command::new("unshare");
    inside
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let inside = Worker {
        child: inside.spawn().unwrap(),
    };
    assert!(!inside.child.id().to_string().is_empty());
    // The ghost check runs at join, before the first heartbeat adds the member.
    wait_for(
        "the worker in the namespace to join",
        Duration::from_secs(20),
        || members(&server, "svc-pidns").len() == 2,
    );
    assert!(
        members(&server, "svc-pidns").contains(&live[0]),
        "the live worker was evicted"
    );
    // Killing unshare kills the worker inside (--kill-child).
    drop(inside);
}

/// Without `--backend`, an endpoint from `HIVENT_ENDPOINT` or the gem's `REDIS_URL`
/// means Redis, and the command says on stderr which backend and endpoint it used;
/// with none at all the binary uses Redis at the default endpoint; an explicit memory
/// backend is refused with one line, since it would reach no other process.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn the_backend_follows_the_endpoint() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let run = |vars: &[(&str, &str)], args: &[&str]| {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env_remove("HIVENT_ENDPOINT")
            .env_remove("HIVENT_BACKEND")
            .env_remove("REDIS_URL")
            .stdin(Stdio::null());
        for (k, v) in vars {
            command.env(k, v);
        }
        command.output().unwrap()
    };
    let emit_args = ["emit", "where:to", "--version", "1", "--payload", "{}"];
    for var in ["HIVENT_ENDPOINT", "REDIS_URL"] {
        let out = run(&[(var, &server.url())], &emit_args);
        assert!(out.status.success(), "{var}: {}", text(&out.stderr));
        // Nobody receives `where:to`: the emit succeeds and says it reached nobody.
        assert!(
            text(&out.stderr).contains(&format!(
                "warning: no service receives \"where:to\" on redis at {}",
                server.url()
            )),
            "{var}: {}",
            text(&out.stderr)
        );
    }
    // Nothing listens on 6379 in the tests (a packaged server may; then it answers).
    let out = run(&[], &["status"]);
    assert!(
        text(&out.stderr).contains("redis://127.0.0.1:6379/0"),
        "{}",
        text(&out.stderr)
    );
    for args in [
        &[
            "emit",
            "where:to",
            "--version",
            "1",
            "--payload",
            "{}",
            "--backend",
            "memory",
        ][..],
        &["status", "--backend", "memory"],
        &["dlq", "list", "--service", "s", "--backend", "memory"],
    ] {
        let out = run(&[("HIVENT_ENDPOINT", &server.url())], args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("cannot use the memory backend"), "{stderr}");
    }
}

/// A command handler receives the item exactly as stored: a gem-written event with its
/// escapes and Ruby number notation arrives byte for byte.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn commands_get_the_stored_bytes() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seen.json");
    let file = receivers(dir.path(), "gem:event", &format!("cat > {}", out.display()));
    let worker = start_registered(&server, "svc-raw", &file);
    let stored = r#"{"payload":{"html":"\u003cb\u003e","f":1.0e+20,"big":18446744073709551616},"meta":{"event_uuid":"0123456789abcdef0123456789abcdef","name":"gem:event","version":1,"cid":"c","producer":"ruby_app","created_at":"2026-12-01T04:56:33.123Z"}}"#;
    let mut connection = raw_connection(&server);
    let _: i64 = redis::cmd("LPUSH")
        .arg("svc-raw:0")
        .arg(stored)
        .query(&mut connection)
        .unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg("svc-raw:hivent:wake")
        .arg("0")
        .query(&mut connection)
        .unwrap();
    wait_for("the command to run", Duration::from_secs(20), || {
        std::fs::read_to_string(&out).is_ok_and(|t| !t.is_empty())
    });
    assert_eq!(std::fs::read_to_string(&out).unwrap(), stored);
    let (code, stderr) = worker.terminate();
    assert_eq!(code, Some(0), "{stderr}");
}

/// A service consumed by Ruby gem workers shows them in `status`, with the partitions
/// the gem assigned them, marked as gem consumers; a gem consumer whose keep-alive
/// expired is not shown.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn status_shows_ruby_gem_consumers() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let mut connection = raw_connection(&server);
    // The keys the gem's consumer.lua keeps for a live worker `w1` and a dead `w2`.
    let mut run = |args: &[&str]| {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        let _: redis::Value = cmd.query(&mut connection).unwrap();
    };
    run(&["SET", "rubysvc:partition_count", "2"]);
    run(&["SADD", "rubysvc:consumers", "w1", "w2"]);
    run(&["SET", "rubysvc:w1:alive", "true", "PX", "60000"]);
    run(&["RPUSH", "rubysvc:w1:assigned", "rubysvc:1", "rubysvc:0"]);
    run(&["RPUSH", "rubysvc:w2:assigned", "rubysvc:1"]);
    let status = status_json(&server, "rubysvc");
    assert_eq!(
        status["gem_consumers"],
        serde_json::json!([{"name": "w1", "partitions": [0, 1]}])
    );
    let out = on_redis(&server, &["status", "--service", "rubysvc"]);
    let table = text(&out.stdout);
    assert!(table.contains("0 consumers (+1 Ruby gem)"), "{table}");
    assert!(
        table.contains("Ruby gem consumer w1: partitions 0, 1"),
        "{table}"
    );
    assert!(table.contains("w1 (gem)"), "{table}");
}

/// At `--log-level debug` each life-cycle event is logged once: one line for the
/// registration, the assignment and the processed event.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn life_cycle_lines_are_logged_once() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seen.jsonl");
    let file = receivers(dir.path(), "user:created", &append_to(&out));
    let worker = Worker::start(&server, "logged", &file, &["--log-level", "debug"]);
    wait_for("the worker to register", Duration::from_secs(20), || {
        has_consumers(&server, "logged", 1)
    });
    emit(&server, "user:created", "{}", "k");
    wait_for("the handler to run", Duration::from_secs(20), || {
        !lines(&out).is_empty()
    });
    let (code, stderr) = worker.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    for line in [
        "application registered",
        "partitions assigned",
        "event processed",
    ] {
        assert_eq!(stderr.matches(line).count(), 1, "{line:?} in\n{stderr}");
    }
}

/// A worker stopped with SIGSTOP shows in `hivent status` (table and `--json`) as not
/// heartbeating, with its host, pid and partitions, once it missed two heartbeats; it
/// is healthy again after SIGCONT, and `status --watch` redraws the table in place.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn status_shows_a_stalled_worker_as_stalled() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = receivers(dir.path(), "user:created", "true");
    let worker = Worker::start(
        &server,
        "stalling",
        &file,
        &["--heartbeat-interval-ms", "200", "--member-ttl-ms", "30000"],
    );
    wait_for("the worker to register", Duration::from_secs(20), || {
        has_consumers(&server, "stalling", 1)
    });
    let pid = worker.child.id();
    let health = || status_json(&server, "stalling")["members"][0]["health"].clone();
    wait_for(
        "the worker to own its partitions",
        Duration::from_secs(20),
        || {
            status_json(&server, "stalling")["members"][0]["partitions"]
                == serde_json::json!([0, 1, 2, 3])
        },
    );
    assert_eq!(health(), "healthy");
    let member = status_json(&server, "stalling")["members"][0].clone();
    assert_eq!(member["pid"], pid);
    assert!(
        member["host"].as_str().is_some_and(|h| !h.is_empty()),
        "{member}"
    );

    let signal = |name: &str| {
        assert!(Command::new("kill")
            .args([name, &pid.to_string()])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP");
    wait_for(
        "status to show the stalled worker",
        Duration::from_secs(20),
        || health() == "not_heartbeating",
    );
    let table = text(&on_redis(&server, &["status", "--service", "stalling"]).stdout);
    let line = table
        .lines()
        .find(|l| l.contains(&format!(" {pid} ")))
        .unwrap_or_else(|| panic!("no member line with pid {pid}:\n{table}"));
    assert!(
        line.contains("NOT HEARTBEATING: last ") && line.contains("0,1,2,3"),
        "{line}"
    );
    signal("-CONT");
    wait_for(
        "the worker to heartbeat again",
        Duration::from_secs(20),
        || health() == "healthy",
    );

    // `--watch 0.2`: the table again and again, until it is stopped.
    let mut watch = Command::new(BIN)
        .args(["status", "--service", "stalling", "--watch", "0.2"])
        .args(["--backend", "redis", "--endpoint", &server.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read as it comes: three tables, each after the sequence that clears the screen.
    let stdout = watch.stdout.take().unwrap();
    let (tables, shown) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut cleared = 0;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            cleared += line.matches("\x1b[2J").count();
            if line.contains("service stalling: 4 partitions") && tables.send(cleared).is_err() {
                return;
            }
        }
    });
    let refreshes: Vec<usize> = (0..3)
        .map(|_| {
            shown
                .recv_timeout(Duration::from_secs(30))
                .expect("status --watch refreshed")
        })
        .collect();
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(refreshes, [1, 2, 3], "each table follows a screen clear");

    let (code, stderr) = worker.terminate();
    assert_eq!(code, Some(0), "{stderr}");
}

/// On a Redis Cluster (the endpoint a list of seeds, which selects `redis-cluster`), a
/// `hivent start` worker handles what `hivent emit` sends, and `status` and `dlq` show
/// and replay what it could not handle, as on one Redis.
#[test]
#[cfg_attr(
    any(no_redis_server, no_redis_cli),
    ignore = "redis-server or redis-cli is not installed (CI installs them)"
)]
fn start_status_and_dlq_work_on_a_cluster() {
    let Some(cluster) = hivent_redis::test_cluster::cluster_for_tests(3, 0) else {
        return;
    };
    let seeds = cluster.seeds();
    let on_cluster = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--endpoint", &seeds]);
        hivent(&all)
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seen.jsonl");
    let flag = dir.path().join("healthy");
    let script = format!(
        "if [ -e {flag} ]; then {append}; else echo not yet >&2; exit 3; fi",
        flag = flag.display(),
        append = append_to(&out)
    );
    let file = receivers(dir.path(), "pay:due", &script);
    let worker = Worker {
        child: Command::new(BIN)
            .args(["start", "-r"])
            .arg(&file)
            .args(["--endpoint", &seeds, "--client-id", "billing"])
            .args(["--partition-count", "8", "--retry-max-attempts", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    };
    let status = || {
        let out = on_cluster(&["status", "--json", "--service", "billing"]);
        out.status
            .success()
            .then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone())
    };
    wait_for(
        "the worker to own all 8 partitions",
        Duration::from_secs(30),
        || {
            status().is_some_and(|s| {
                s["members"][0]["partitions"] == serde_json::json!([0, 1, 2, 3, 4, 5, 6, 7])
            })
        },
    );
    for n in 1..=3 {
        let emitted = on_cluster(&[
            "emit",
            "pay:due",
            "--version",
            "1",
            "--payload",
            &format!(r#"{{"n":{n}}}"#),
            "--key",
            "inv-1",
        ]);
        assert!(emitted.status.success(), "{}", text(&emitted.stderr));
    }
    let dlq = |args: &[&str]| {
        let mut all = vec!["dlq"];
        all.extend(args);
        all.extend(["--service", "billing"]);
        on_cluster(&all)
    };
    wait_for("three dead letters", Duration::from_secs(30), || {
        text(&dlq(&["list"]).stdout).lines().count() == 3
    });
    let status = status().unwrap();
    let dead: u64 = status["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["dead_letters"].as_u64().unwrap())
        .sum();
    assert_eq!((dead, waiting(&status)), (3, 0), "{status}");
    assert_eq!(status["consumers"].as_array().unwrap().len(), 1, "{status}");
    assert_eq!(status["members"][0]["health"], "healthy", "{status}");
    std::fs::write(&flag, "").unwrap();
    let replay = dlq(&["replay", "--signal", "pay:due"]);
    assert!(
        text(&replay.stdout).ends_with("replayed 3 event(s) of service billing; 0 dead letter(s) left in the partitions looked at\n"),
        "{}{}",
        text(&replay.stdout),
        text(&replay.stderr)
    );
    wait_for("the replayed events", Duration::from_secs(30), || {
        lines(&out).len() == 3
    });
    let handled: Vec<u64> = lines(&out)
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["payload"]["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(handled, [1, 2, 3], "one key's events keep their order");
    assert_eq!(text(&dlq(&["list"]).stdout), "no dead letters selected\n");
    let (code, stderr) = worker.terminate();
    assert_eq!(code, Some(0), "{stderr}");
}
