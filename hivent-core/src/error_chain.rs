//! Printing an error with every cause, each once.

use std::error::Error as StdError;
use std::fmt;

/// Displays an error followed by its causes (the [`source`](StdError::source) chain),
/// joined by `": "`. hivent's errors say what failed and leave why to their source, as
/// the Rust API guidelines ask, so a plain `{}` shows only the first sentence: log and
/// print them with this adapter (or anyhow's `{:#}`, which does the same).
///
/// ```
/// use hivent_core::ErrorChain;
///
/// let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
/// let error = hivent_core::Error::Backend { backend: "redis", transient: true, source: Box::new(refused) };
/// assert_eq!(error.to_string(), "the redis backend failed");
/// assert_eq!(ErrorChain(&error).to_string(), "the redis backend failed: connection refused");
/// ```
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
