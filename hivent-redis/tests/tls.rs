//! `rediss://`: emit and consume over TLS, the server's certificate checked against a private CA.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use hivent_core::{BackendKind, Config, Hivent};
use hivent_redis::test_server::{RedisServer, ServerError};
use hivent_redis::RedisBackend;

/// Makes a CA and a server certificate for 127.0.0.1 with the `openssl` tool.
fn certificates(dir: &Path) -> bool {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=hivent test CA",
    ]) && run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "other.key",
        "-out",
        "other.crt",
        "-days",
        "1",
        "-subj",
        "/CN=some other CA",
    ]) && run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]) && run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ])
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// With the server's CA in `SSL_CERT_FILE`, a `rediss://` endpoint emits and consumes
/// like a plain one, and a connection that does not trust the CA is refused.
#[test]
#[cfg_attr(
    no_redis_server,
    ignore = "redis-server is not installed (CI installs it)"
)]
#[cfg_attr(
    no_openssl,
    ignore = "the openssl tool, which makes the test certificates, is not installed (CI installs it)"
)]
fn emits_and_consumes_over_tls() {
    let required = std::env::var("HIVENT_REQUIRE_REDIS").is_ok_and(|v| v == "1");
    let dir = tempfile::tempdir().unwrap();
    if !certificates(dir.path()) {
        assert!(
            !required,
            "HIVENT_REQUIRE_REDIS=1 but the openssl tool could not make test certificates"
        );
        eprintln!("skipped: the openssl tool is not available");
        return;
    }
    let tls_port = free_port();
    let file = |name: &str| dir.path().join(name).display().to_string();
    let args: Vec<String> = vec![
        "--tls-port".into(),
        tls_port.to_string(),
        "--tls-cert-file".into(),
        file("server.crt"),
        "--tls-key-file".into(),
        file("server.key"),
        "--tls-ca-cert-file".into(),
        file("ca.crt"),
        "--tls-auth-clients".into(),
        "no".into(),
    ];
    let _server = match RedisServer::start_with(&args) {
        Ok(server) => server,
        Err(ServerError::NotInstalled) if !required => {
            eprintln!("skipped: redis-server not installed");
            return;
        }
        Err(error) => panic!("{error}"),
    };
    let url = format!("rediss://127.0.0.1:{tls_port}/0");

    // Trusting another CA only: the server's certificate is refused.
    std::env::set_var("SSL_CERT_FILE", file("other.crt"));
    let refused = hivent_core::ErrorChain(&RedisBackend::connect(&url).unwrap_err()).to_string();
    assert!(
        refused.contains(&url) && refused.contains("UnknownIssuer"),
        "{refused}"
    );

    std::env::set_var("SSL_CERT_FILE", file("ca.crt"));
    let config = |service: &str| {
        Config::builder()
            .backend(BackendKind::Redis)
            .endpoint(url.as_str())
            .client_id(service)
            .partition_count(2)
            .build()
            .unwrap()
    };
    let backend = Arc::new(RedisBackend::connect(&url).unwrap());
    let receiver = Hivent::new(config("tls-receiver"), backend.clone());
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sink = seen.clone();
    receiver.signal("secure:event").unwrap().receive(move |e| {
        sink.lock().push(e.payload.clone());
        Ok(())
    });
    let consumer = receiver.consumer().unwrap();
    let producer = Hivent::new(config("tls-producer"), backend);
    producer
        .signal("secure:event")
        .unwrap()
        .emit(&serde_json::json!({"over": "tls"}), 1)
        .unwrap();
    assert_eq!(consumer.run_until_idle().unwrap(), 1);
    assert_eq!(*seen.lock(), [serde_json::json!({"over": "tls"})]);
}
