//! `hivent bench` with tiny counts, so that it keeps working; nothing about time is asserted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_hivent");

const TINY: &[&str] = &[
    "bench",
    "--events",
    "64",
    "--memory-events",
    "64",
    "--latency-secs",
    "0.05",
    "--emit-batch",
    "10",
    "--fetch-batch",
    "7",
    "--payload-bytes",
    "20",
    "--partitions",
    "3",
    "--workers",
    "2",
];

fn bench(extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(TINY)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn redis_installed() -> bool {
    let binary = std::env::var("HIVENT_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    let found = Command::new(binary)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("HIVENT_REQUIRE_REDIS").map_or(true, |v| v != "1"),
            "HIVENT_REQUIRE_REDIS=1 but redis-server is not installed"
        );
        eprintln!("skipped: redis-server not installed");
    }
    found
}

/// The JSON report has every figure, with Redis time and ratios against the Streams
/// reference.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn bench_reports_every_figure_as_json() {
    if !redis_installed() {
        return;
    }
    let output = bench(&["--json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let keys: Vec<&str> = report["throughput"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "raw_lpush",
            "raw_rpop",
            "raw_lpush_pipelined",
            "raw_rpop_pipelined",
            "streams_xadd",
            "streams_xadd_pipelined",
            "streams_drain_1",
            "streams_drain_n",
            "single_emit",
            "single_emit_4",
            "single_emit_16",
            "batch_emit",
            "drain_1",
            "drain_n",
            "memory_emit_dispatch",
            "memory_emit_only",
            "memory_dispatch_only",
        ]
    );
    for figure in report["throughput"].as_array().unwrap() {
        assert_eq!(figure["count"], 64, "{figure}");
        assert!(figure["per_second"].as_f64().unwrap() > 0.0, "{figure}");
        // Redis time for every figure on Redis (every one but the memory backend's).
        let on_redis = !figure["key"].as_str().unwrap().starts_with("memory");
        let redis_us = figure["redis_us_per_event"].as_f64();
        assert_eq!(redis_us.is_some_and(|us| us > 0.0), on_redis, "{figure}");
    }
    let single = &report["throughput"][8];
    assert_eq!(single["reference"], "streams_xadd");
    assert!(single["ratio"].as_f64().is_some(), "{single}");
    let latency = report["latency"].as_array().unwrap();
    let keys: Vec<&str> = latency.iter().map(|l| l["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "streams_latency_50",
            "latency_50",
            "streams_latency_5000",
            "latency_5000"
        ]
    );
    assert_eq!(latency[1]["rate"], 50.0);
    assert_eq!(latency[3]["rate"], 5000.0);
    assert_eq!(latency[0]["samples"], 3); // ceil(50 × 0.05)
    assert_eq!(latency[1]["samples"], 3);
    assert_eq!(latency[3]["samples"], 250);
    assert_eq!(latency[1]["reference"], "streams_latency_50");
    assert!(latency[1]["ratio"].is_array(), "{}", latency[1]);
    assert_eq!(report["settings"]["partitions"], 3);
    assert_eq!(report["machine"]["redis"], "throwaway");
    // The progress line names the phases while it runs.
    assert!(stderr.contains("drain, 2 workers"), "stderr: {stderr}");
}

/// The table names the figures and the references they are compared with.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn bench_prints_a_table() {
    if !redis_installed() {
        return;
    }
    let output = bench(&[]);
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "raw LPUSH, pipelined ×16",
        "Streams XADD, 1 thread",
        "Streams XADD, pipelined ×10",
        "Streams XREADGROUP+XACK, 2 consumer(s)",
        "single emit, 1 thread",
        "single emit, 16 threads",
        "Redis µs",
        "Streams BLOCK at 50/s",
        "batch emit, 10 per batch",
        "drain, 1 worker",
        "drain, 2 workers",
        "memory backend emit+dispatch",
        "memory emit alone, 1 thread",
        "memory dispatch alone, 1 thread",
        "at 50/s",
        "at 5,000/s",
        "ratio",
    ] {
        assert!(
            table.contains(expected),
            "{expected:?} missing from:\n{table}"
        );
    }
}

/// `--scaling` measures every row of its three tables.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn bench_scaling_has_every_row() {
    if !redis_installed() {
        return;
    }
    let output = bench(&["--scaling", "--json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    let scaling: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let column = |table: &str, field: &str| -> Vec<u64> {
        scaling[table]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row[field].as_u64().unwrap())
            .collect()
    };
    assert_eq!(column("partitions", "partitions"), [4, 16, 64, 256]);
    assert_eq!(column("services", "services"), [1, 10, 100]);
    assert_eq!(
        column("payloads", "payload_bytes"),
        [100, 1024, 10240, 102400]
    );
    for row in scaling["services"].as_array().unwrap() {
        let (rate, redis_us) = (&row["single_emit"][0], &row["single_emit"][1]);
        assert!(
            rate.as_f64().unwrap() > 0.0 && redis_us.as_f64().unwrap() > 0.0,
            "{row}"
        );
    }
    for row in scaling["payloads"].as_array().unwrap() {
        assert!(
            row["batch_vs_pipelined_lpush"].as_f64().unwrap() > 0.0,
            "{row}"
        );
    }
}

/// Bad options are usage errors (exit 2, one line), before any server starts.
#[test]
fn bench_rejects_bad_options() {
    let output = Command::new(BIN)
        .args(["bench", "--events", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--events must be at least 1"), "{stderr}");
}

/// `--cluster` adds the emit and drain figures of a 3-master cluster the run starts,
/// each compared with the single node's, and the emits waiting for a replica, compared
/// with the cluster's own.
#[test]
#[cfg_attr(
    any(no_redis_server, no_redis_cli),
    ignore = "redis-server or redis-cli is not installed (CI installs them)"
)]
fn bench_cluster_adds_the_cluster_figures() {
    if !redis_installed() {
        return;
    }
    let output = bench(&["--json", "--cluster"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let cluster: Vec<(&str, &str)> = report["throughput"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["key"].as_str().unwrap().starts_with("cluster"))
        .map(|t| {
            assert_eq!(t["count"], 64, "{t}");
            assert!(t["ratio"].as_f64().is_some_and(|r| r > 0.0), "{t}");
            (t["key"].as_str().unwrap(), t["reference"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        cluster,
        [
            ("cluster_batch_emit", "batch_emit"),
            ("cluster_drain_1", "drain_1"),
            ("cluster_drain_n", "drain_n"),
            ("cluster_single_emit", "single_emit"),
            ("cluster_single_emit_acked", "cluster_single_emit"),
            ("cluster_batch_emit_acked", "cluster_batch_emit"),
        ]
    );
}
