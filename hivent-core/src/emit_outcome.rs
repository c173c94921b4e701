//! What an emit tells its caller: how many services stored each event, or how to retry a call whose reply was lost.

use std::fmt;
use std::sync::Arc;

use crate::{Envelope, Event};

/// An emitted event and how many services stored a copy of it (0: no service receives
/// its signal, so nobody will ever see it).
///
/// ```
/// use hivent_core::{Config, EmitOptions, Hivent};
/// let hivent = Hivent::new(Config::builder().client_id("shop").build()?,
///                          std::sync::Arc::new(hivent_memory::MemoryBackend::new()));
/// let emitted = hivent.signal("nobody:listens")?.emit_with_receipt(&serde_json::json!({}), EmitOptions::version(1))?;
/// assert_eq!(emitted.receiving_services, 0);
/// # Ok::<(), hivent_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Emitted {
    /// The event as stored.
    pub event: Event,
    /// How many services stored a copy.
    pub receiving_services: usize,
}

/// An emit call whose outcome is unknown because its reply was lost: its call id and
/// events, carried by [`crate::Error::EmitUncertain`].
///
/// Pass it to [`crate::Hivent::retry_emit`]. The backend stores nothing twice for one
/// call id, so retrying a call that was in fact stored only confirms it, and retrying
/// one that was not stores it once. On Redis a call's marker lives for
/// `RedisOptions::emit_marker_ttl` (60 s by default): retry within that time.
#[derive(Clone)]
pub struct EmitRetry {
    pub(crate) call_id: String,
    pub(crate) name: String,
    pub(crate) event_uuid: String,
    pub(crate) envelopes: Arc<[Envelope]>,
}

impl EmitRetry {
    /// The call's id, the same for every try.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// How many events the call carries.
    pub fn len(&self) -> usize {
        self.envelopes.len()
    }

    /// Whether the call carries no event (never, for a call that failed).
    pub fn is_empty(&self) -> bool {
        self.envelopes.is_empty()
    }

    /// The error of a retry that failed too: whatever this try's failure, the first
    /// try may have stored the call, so it can be retried again.
    pub(crate) fn failed_again(&self, source: crate::Error) -> crate::Error {
        crate::Error::EmitUncertain {
            name: self.name.clone(),
            event_uuid: self.event_uuid.clone(),
            retry: Box::new(self.clone()),
            source: Box::new(source),
        }
    }
}

impl fmt::Debug for EmitRetry {
    // The payloads may be large or confidential: the id and the count say enough.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmitRetry")
            .field("call_id", &self.call_id)
            .field("signal", &self.name)
            .field("event_uuid", &self.event_uuid)
            .field("events", &self.envelopes.len())
            .finish()
    }
}
