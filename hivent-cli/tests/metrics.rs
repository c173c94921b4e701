//! `hivent start --metrics-addr`: Prometheus metrics scraped over real HTTP from a
//! running worker, against a real `redis-server`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hivent_redis::test_server::server_for_tests;

const BIN: &str = env!("CARGO_BIN_EXE_hivent");

/// One sample of the Prometheus text format: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// GET /metrics over HTTP/1.0 (so the body is not chunked), parsed into samples.
fn scrape(port: u16) -> Option<Vec<Sample>> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(
        body.lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => (name, labels.trim_end_matches('}')),
                    None => (series, ""),
                };
                let labels = labels
                    .split(',')
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap();
                        (k.to_owned(), v.trim_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels, value.parse().unwrap())
            })
            .collect(),
    )
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
        .collect();
    match matching[..] {
        [one] => Some(one),
        [] => None,
        _ => panic!("{name} {labels:?} matches {} samples", matching.len()),
    }
}

struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// After three events handled and one that failed twice and was dead-lettered, the
/// worker's `/metrics` has the exact counts by service, signal and version, one
/// handler duration per attempt, the partitions it owns and their lag (0: all done).
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn the_metrics_endpoint_counts_what_the_worker_did() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let receivers = dir.path().join("receivers.toml");
    std::fs::write(
        &receivers,
        "[[receiver]]\nsignal = \"user:created\"\ncommand = [\"sh\", \"-c\", \"grep -q refuse && exit 3 || exit 0\"]\n",
    )
    .unwrap();
    let port = free_port();
    let worker = Command::new(BIN)
        .args(["start", "-r"])
        .arg(&receivers)
        .args([
            "--backend",
            "redis",
            "--endpoint",
            &server.url(),
            "--client-id",
            "metered",
        ])
        .args([
            "--partition-count",
            "4",
            "--retry-max-attempts",
            "2",
            "--retry-initial-delay-ms",
            "1",
        ])
        .args(["--metrics-addr", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed if the test fails before it stops the worker itself.
    let mut worker = KillOnDrop(Some(worker));
    let emit = |payload: &str, key: &str| {
        let out = Command::new(BIN)
            .args([
                "emit",
                "user:created",
                "--version",
                "1",
                "--payload",
                payload,
                "--key",
                key,
            ])
            .args(["--backend", "redis", "--endpoint", &server.url()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let owned = |samples: &[Sample]| {
        value(
            samples,
            "hivent_partitions_owned",
            &[("service", "metered")],
        )
    };
    while scrape(port).as_deref().and_then(owned) != Some(4.0) {
        assert!(
            Instant::now() < deadline,
            "the worker did not come up with its metrics"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for (payload, key) in [
        (r#"{"n":1}"#, "a"),
        (r#"{"n":2}"#, "b"),
        (r#"{"refuse":true}"#, "c"),
        (r#"{"n":3}"#, "d"),
    ] {
        emit(payload, key);
    }
    let event = [
        ("service", "metered"),
        ("signal", "user:created"),
        ("version", "1"),
    ];
    let done = |samples: &[Sample]| {
        value(samples, "hivent_events_processed_total", &event) == Some(3.0)
            && value(samples, "hivent_events_dead_lettered_total", &event) == Some(1.0)
    };
    let samples = loop {
        let samples = scrape(port).unwrap_or_default();
        if done(&samples) {
            break samples;
        }
        assert!(
            Instant::now() < deadline,
            "not every event was counted: {samples:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        value(&samples, "hivent_events_retried_total", &event),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "hivent_handler_duration_seconds_count", &event),
        Some(3.0 + 2.0)
    );
    let longest = [
        ("service", "metered"),
        ("signal", "user:created"),
        ("version", "1"),
        ("le", "+Inf"),
    ];
    assert_eq!(
        value(&samples, "hivent_handler_duration_seconds_bucket", &longest),
        Some(5.0)
    );
    assert_eq!(
        value(
            &samples,
            "hivent_heartbeat_age_seconds",
            &[("service", "metered")]
        )
        .map(|age| age < 30.0),
        Some(true)
    );
    // The lag is sampled every second: wait for a sample after the last event.
    let lag = |samples: &[Sample], p: &str| {
        value(
            samples,
            "hivent_partition_lag_events",
            &[("service", "metered"), ("partition", p)],
        )
    };
    loop {
        let samples = scrape(port).unwrap_or_default();
        if ["0", "1", "2", "3"]
            .iter()
            .all(|p| lag(&samples, p) == Some(0.0))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lag gauges did not settle at 0: {samples:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let worker = worker.0.take().unwrap();
    let pid = worker.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let output = worker.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("http://127.0.0.1:{port}/metrics")),
        "{stderr}"
    );
}
