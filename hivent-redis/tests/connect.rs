//! Connecting: unreachable and malformed endpoints give clear errors without secrets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hivent_redis::{Error, RedisBackend};

/// An endpoint nobody listens on is reported as unreachable, naming the redacted
/// endpoint and never the password.
#[test]
fn unreachable_endpoint_names_the_redacted_endpoint() {
    // The port is free once the listener is dropped, so nothing answers there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://app:s3cret@127.0.0.1:{port}/0");
    let error = RedisBackend::connect(&url).unwrap_err();
    assert!(matches!(error, Error::Unreachable { .. }), "{error:?}");
    assert!(error.is_transient());
    let text = error.to_string();
    assert!(
        text.contains(&format!("redis://app:***@127.0.0.1:{port}/0")),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
    assert!(!format!("{error:?}").contains("s3cret"));
    // The message says what failed; the client's reason is the source, printed once
    // in the chain (and not in the message, so `{:#}` and loggers do not repeat it).
    let reason = std::error::Error::source(&error).unwrap().to_string();
    assert!(!text.contains(&reason), "{text}");
    let core: hivent_core::Error = error.into();
    assert!(!core.to_string().contains("s3cret"));
    let chain = hivent_core::ErrorChain(&core).to_string();
    assert_eq!(chain.matches(&reason).count(), 1, "{chain}");
    assert_eq!(chain.matches("could not connect").count(), 1, "{chain}");
    assert!(!chain.contains("s3cret"), "{chain}");
}

/// Malformed URLs are refused up front, without the password.
#[test]
fn malformed_endpoints_are_refused() {
    for url in [
        "localhost:6379",
        "http://app:s3cret@127.0.0.1:6379/0",
        "redis://app:s3cret@127.0.0.1:notaport/0",
        "redis://app:s3cret@127.0.0.1:6379/notadb",
    ] {
        let error = RedisBackend::connect(url).unwrap_err();
        assert!(
            matches!(error, Error::InvalidEndpoint { .. }),
            "{url}: {error:?}"
        );
        assert!(!error.is_transient());
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }
}
