//! The examples run as a user runs them, and print what they promise.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

/// An example binary; `cargo test` builds the examples beside the test binaries.
fn example(name: &str) -> Command {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path: PathBuf = dir.join("examples").join(name);
    assert!(path.exists(), "{} is not built", path.display());
    let mut command = Command::new(path);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("HIVENT_") || k == "REDIS_URL") {
        command.env_remove(key);
    }
    command
}

/// Runs `command` and returns its standard output; fails the test when it fails.
fn output_of(mut command: Command) -> String {
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// What `axum_emit` must print: three orders accepted over HTTP, each handled once by
/// the async handler, and a clean stop.
fn assert_three_orders_shipped(stdout: &str) {
    let accepted = stdout
        .lines()
        .filter(|l| l.starts_with("POST /orders") && l.contains("-> 202 {\"event_uuid\":"))
        .count();
    assert_eq!(accepted, 3, "{stdout}");
    let mut shipped: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("shipping handled "))
        .collect();
    shipped.sort();
    assert_eq!(
        shipped,
        [
            r#"{"item":"book"}"#,
            r#"{"item":"kettle"}"#,
            r#"{"item":"lamp"}"#
        ],
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().last(),
        Some("stopped: every order handled and acknowledged"),
        "{stdout}"
    );
}

/// The axum service on the memory backend: emits from HTTP handlers, handles with an
/// async handler, stops from async code.
#[test]
fn the_axum_example_ships_every_order_on_memory() {
    assert_three_orders_shipped(&output_of(example("axum_emit")));
}

/// The same on Redis, where `emit_async` goes over redis-rs's async connection.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
fn the_axum_example_ships_every_order_on_redis() {
    let Some(server) = hivent_redis::test_server::server_for_tests() else {
        return;
    };
    let mut command = example("axum_emit");
    command
        .env("HIVENT_BACKEND", "redis")
        .env("HIVENT_ENDPOINT", server.url());
    assert_three_orders_shipped(&output_of(command));
}
