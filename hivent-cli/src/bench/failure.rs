//! Failures of the bench itself, as hivent errors.

use hivent::Error;

/// A failure of the bench itself, as a hivent error.
pub fn bench_error(message: &str) -> Error {
    Error::Backend {
        backend: "bench",
        transient: false,
        source: message.to_owned().into(),
    }
}
