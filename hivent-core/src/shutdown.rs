//! `Shutdown`: the stop signal of running consumers, shared by every thread and task.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use parking_lot::Mutex;

/// Tells running consumers ([`crate::Hivent::run`], [`crate::Consumer::run`]) to stop:
/// each finishes the handler it is running (no other starts), acknowledges what it
/// handled and leaves the group. Clones share one signal; once triggered it stays so.
///
/// ```
/// use hivent_core::Shutdown;
/// let shutdown = Shutdown::new();
/// let for_the_signal_handler = shutdown.clone();
/// assert!(!shutdown.is_triggered());
/// for_the_signal_handler.trigger();
/// assert!(shutdown.is_triggered());
/// ```
#[derive(Clone, Debug)]
pub struct Shutdown {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Dropped on trigger: the disconnect reaches every waiting thread at once, where a
    /// sent message would reach one.
    sender: Mutex<Option<Sender<()>>>,
    receiver: Receiver<()>,
}

impl Shutdown {
    /// A signal not triggered yet.
    pub fn new() -> Shutdown {
        let (sender, receiver) = crossbeam_channel::bounded(0);
        Shutdown {
            shared: Arc::new(Shared {
                sender: Mutex::new(Some(sender)),
                receiver,
            }),
        }
    }

    /// Stops every consumer that runs with this signal (or a clone), now and later.
    pub fn trigger(&self) {
        self.shared.sender.lock().take();
    }

    /// Whether [`Shutdown::trigger`] was called.
    pub fn is_triggered(&self) -> bool {
        matches!(
            self.shared.receiver.try_recv(),
            Err(TryRecvError::Disconnected)
        )
    }

    /// Waits up to `timeout` for the trigger; returns whether it came. For background
    /// work of the application's that should stop with the consumers.
    ///
    /// ```
    /// let shutdown = hivent_core::Shutdown::new();
    /// assert!(!shutdown.wait_timeout(std::time::Duration::from_millis(1)));
    /// shutdown.trigger();
    /// assert!(shutdown.wait_timeout(std::time::Duration::from_secs(60)));
    /// ```
    pub fn wait_timeout(&self, timeout: std::time::Duration) -> bool {
        matches!(
            self.shared.receiver.recv_timeout(timeout),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        )
    }

    /// What the consume loop waits on: it disconnects on trigger.
    pub(crate) fn receiver(&self) -> &Receiver<()> {
        &self.shared.receiver
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}
