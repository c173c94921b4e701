//! Retries of failed handlers: the policy, and what a handler can say about its failure.

use std::fmt;
use std::time::Duration;

use crate::HandlerError;

/// How often and how patiently a failed event is retried before it is dead-lettered.
///
/// A failed event is retried **in place**: its partition waits (the heartbeat keeps the
/// membership meanwhile), so no later event of the same key overtakes it; the retry
/// starts again at the handler that failed. After the last attempt the event is
/// dead-lettered with a [`crate::FailureRecord`]. Failures that cannot succeed on a
/// retry skip the waiting: an item that is not JSON, not an event or not UTF-8, a
/// payload a typed receiver cannot decode, and an error wrapped in [`Permanent`]. A
/// handler that knows when to come back returns [`RetryAfter`]. Shutdown interrupts a
/// wait at once (the event stays first in its partition); a partition lost or handed
/// over during a wait ends the retries there.
///
/// Attempts are counted per stored event by the backend, so a worker that crashes or
/// loses the partition between attempts does not reset the count: the next owner runs
/// every handler of the event again and goes on counting. The count goes with the event
/// when it is acknowledged or dead-lettered.
///
/// The wait after the `n`-th failed attempt is `initial_delay × 2ⁿ⁻¹`, at most
/// `max_delay`, with "equal jitter": a random point in its upper half, so workers that
/// failed together (a database restart) do not come back together.
///
/// The default, 5 attempts from 200 ms, waits about 0.2, 0.4, 0.8 and 1.6 s (at least
/// 1.5 s and at most 3 s in all): long enough to ride out a failover or a dropped
/// connection, short enough that a poison event holds its partition for seconds, not
/// minutes. [`RetryPolicy::no_retries`] (`max_attempts = 1`) is the Ruby gem's
/// behaviour: dead-letter on the first failure.
///
/// ```
/// use std::time::Duration;
/// use hivent_core::RetryPolicy;
/// let policy = RetryPolicy::default().max_attempts(3).initial_delay(Duration::from_millis(100));
/// assert_eq!(policy.base_delay(1), Duration::from_millis(100));
/// assert_eq!(policy.base_delay(2), Duration::from_millis(200));
/// let wait = policy.delay_after(2);
/// assert!(wait >= Duration::from_millis(100) && wait <= Duration::from_millis(200));
/// assert_eq!(RetryPolicy::no_retries().max_attempts, 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// How many times an event is tried in all, the first time included (0 counts as 1).
    pub max_attempts: u32,
    /// The wait after the first failure, before jitter; later waits double from it.
    pub initial_delay: Duration,
    /// The longest wait between two attempts, before jitter.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Attempts of the default policy, the first one included.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
    /// The wait after the first failure, before jitter, of the default policy.
    pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_millis(200);
    /// The longest wait of the default policy, before jitter.
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(5);

    /// The default policy with the parts given replaced; a maximum delay left out is at
    /// least the initial delay. What configuration files and receivers files build.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hivent_core::RetryPolicy;
    /// let policy = RetryPolicy::from_parts(None, Some(Duration::from_secs(10)), None);
    /// assert_eq!(policy.max_attempts, RetryPolicy::DEFAULT_MAX_ATTEMPTS);
    /// assert_eq!(policy.max_delay, Duration::from_secs(10));
    /// ```
    pub fn from_parts(
        max_attempts: Option<u32>,
        initial_delay: Option<Duration>,
        max_delay: Option<Duration>,
    ) -> RetryPolicy {
        let default = RetryPolicy::default();
        let initial_delay = initial_delay.unwrap_or(default.initial_delay);
        default
            .max_attempts(max_attempts.unwrap_or(default.max_attempts))
            .initial_delay(initial_delay)
            .max_delay(max_delay.unwrap_or(default.max_delay.max(initial_delay)))
    }

    /// Pauses for trying something again until it works (a reconnect, a consumer step
    /// after a backend failure): doubling from `initial` up to `max`, jittered so that
    /// processes that failed together do not come back together, and never giving up.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pauses = hivent_core::RetryPolicy::endless(Duration::from_millis(50), Duration::from_secs(2));
    /// assert!(pauses.allows_another_after(1_000_000));
    /// assert!(pauses.delay_after(30) <= Duration::from_secs(2));
    /// ```
    pub fn endless(initial: Duration, max: Duration) -> RetryPolicy {
        RetryPolicy::default()
            .max_attempts(u32::MAX)
            .initial_delay(initial)
            .max_delay(max)
    }

    /// One attempt: a failure dead-letters the event at once, as the Ruby gem does.
    pub fn no_retries() -> RetryPolicy {
        RetryPolicy::default().max_attempts(1)
    }

    /// Sets how many times an event is tried in all (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the wait after the first failure; later waits double from it.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Sets the longest wait between two attempts.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Whether an event that failed `attempts` times may be tried again.
    pub fn allows_another_after(&self, attempts: u32) -> bool {
        attempts < self.max_attempts.max(1)
    }

    /// The wait after the `attempts`-th failure, before jitter.
    pub fn base_delay(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(31);
        self.initial_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay.max(self.initial_delay))
    }

    /// The wait after the `attempts`-th failure: [`RetryPolicy::base_delay`] with equal
    /// jitter (uniform between half of it and all of it).
    pub fn delay_after(&self, attempts: u32) -> Duration {
        let base = self.base_delay(attempts);
        let half = base / 2;
        let spread = u64::try_from((base - half).as_micros()).unwrap_or(u64::MAX);
        half + Duration::from_micros(fastrand::u64(0..=spread))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            initial_delay: Self::DEFAULT_INITIAL_DELAY,
            max_delay: Self::DEFAULT_MAX_DELAY,
        }
    }
}

/// A handler's error that retrying cannot fix (a declined card, a record that will
/// never exist): the event is dead-lettered at once, whatever the retry policy says.
///
/// ```
/// use hivent_core::{HandlerError, Permanent};
/// fn charge(amount: i64) -> Result<(), HandlerError> {
///     if amount <= 0 {
///         return Err(Permanent::new(format!("cannot charge {amount}")).into());
///     }
///     Ok(())
/// }
/// assert_eq!(charge(0).unwrap_err().to_string(), "cannot charge 0");
/// ```
#[derive(Debug)]
pub struct Permanent(HandlerError);

impl Permanent {
    /// Marks `error` as permanent.
    pub fn new(error: impl Into<HandlerError>) -> Permanent {
        Permanent(error.into())
    }

    /// The error marked permanent.
    pub fn cause(&self) -> &(dyn std::error::Error + 'static) {
        &*self.0
    }
}

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Permanent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A handler's error with the wait it wants before the next attempt (a rate limit's
/// `Retry-After`, a lock held elsewhere). The attempt still counts: when it was the
/// last one the retry policy allows, the event is dead-lettered.
///
/// ```
/// use std::time::Duration;
/// use hivent_core::{HandlerError, RetryAfter};
/// fn call_api() -> Result<(), HandlerError> {
///     Err(RetryAfter::new(Duration::from_secs(30), "429 Too Many Requests").into())
/// }
/// assert_eq!(call_api().unwrap_err().to_string(), "429 Too Many Requests");
/// ```
#[derive(Debug)]
pub struct RetryAfter {
    delay: Duration,
    error: HandlerError,
}

impl RetryAfter {
    /// Asks for the next attempt after `delay`, failing with `error` meanwhile.
    pub fn new(delay: Duration, error: impl Into<HandlerError>) -> RetryAfter {
        RetryAfter {
            delay,
            error: error.into(),
        }
    }

    /// The wait asked for.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The error the attempt failed with.
    pub fn cause(&self) -> &(dyn std::error::Error + 'static) {
        &*self.error
    }
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for RetryAfter {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits double from the initial delay up to the maximum, and jitter keeps each in
    /// the upper half of its base.
    #[test]
    fn exponential_with_equal_jitter() {
        let policy = RetryPolicy::default();
        let bases: Vec<u128> = (1..=7).map(|n| policy.base_delay(n).as_millis()).collect();
        assert_eq!(bases, [200, 400, 800, 1600, 3200, 5000, 5000]);
        for attempts in 1..=7 {
            let base = policy.base_delay(attempts);
            for _ in 0..200 {
                let wait = policy.delay_after(attempts);
                assert!(wait >= base / 2 && wait <= base, "{attempts}: {wait:?}");
            }
        }
        assert_eq!(
            RetryPolicy::default().base_delay(u32::MAX),
            RetryPolicy::DEFAULT_MAX_DELAY
        );
    }

    /// The default retries four times, within seconds; one attempt is the gem's way.
    #[test]
    fn defaults() {
        let policy = RetryPolicy::default();
        assert!(policy.allows_another_after(4));
        assert!(!policy.allows_another_after(5));
        let worst: Duration = (1..5).map(|n| policy.base_delay(n)).sum();
        assert_eq!(worst, Duration::from_millis(3000));
        assert!(!RetryPolicy::no_retries().allows_another_after(1));
        assert_eq!(RetryPolicy::default().max_attempts(0).max_attempts, 1);
    }
}
