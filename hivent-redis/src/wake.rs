//! Wake-up and group notices: a thread subscribed to a service's channels, so idle
//! consumers learn of new events, and members of changes in their group, without polling.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::connection::Endpoint;
use crate::error::is_interrupted;
use crate::Error;

/// How often the listener looks up from a quiet subscription to see whether it
/// should stop; bounds how long a dropped session keeps its subscription.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// A subscription to a service's wake and group channels, held by its own thread.
///
/// The subscription is made once, before [`WakeListener::start`] returns, and kept
/// for the listener's life, so a notice published between a fetch and the wait that
/// follows it is not lost: it waits in the channel. After a lost connection the
/// thread resubscribes and raises one notice of each kind, since events may have come
/// and the group may have changed meanwhile.
pub(crate) struct WakeListener {
    notices: Receiver<()>,
    group_changes: Receiver<()>,
    stop: Arc<AtomicBool>,
}

/// The two channels listened to, and where their notices go.
struct Channels {
    wake: String,
    group: String,
    wake_notify: Sender<()>,
    group_notify: Sender<()>,
}

impl WakeListener {
    /// Subscribes to `channel` on a new connection; fails when the subscription is
    /// not confirmed within the connect plus response timeouts.
    pub(crate) fn start(
        endpoint: Arc<Endpoint>,
        service: &str,
        wake: String,
        group: String,
    ) -> Result<WakeListener, Error> {
        // One pending notice is as good as many: every notice means "fetch again" (or
        // "heartbeat now").
        let (wake_notify, notices) = crossbeam_channel::bounded(1);
        let (group_notify, group_changes) = crossbeam_channel::bounded(1);
        let channels = Channels {
            wake,
            group,
            wake_notify,
            group_notify,
        };
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let listener_endpoint = Arc::clone(&endpoint);
        thread::Builder::new()
            .name("hivent-wake".into())
            .spawn(move || listen(&listener_endpoint, &channels, &flag, ready_tx))
            .map_err(|e| Error::Command {
                operation: "start the wake-up listener thread",
                endpoint: endpoint.redacted().to_owned(),
                source: e.into(),
            })?;
        let waited = endpoint.options().connect_timeout + endpoint.options().response_timeout;
        match ready_rx.recv_timeout(waited) {
            Ok(Ok(())) => Ok(WakeListener {
                notices,
                group_changes,
                stop,
            }),
            Ok(Err(source)) => {
                stop.store(true, Ordering::Relaxed);
                Err(endpoint.error("subscribe to the wake-up channel", source))
            }
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                Err(Error::SubscribeTimedOut {
                    service: service.to_owned(),
                    endpoint: endpoint.redacted().to_owned(),
                    waited,
                })
            }
        }
    }

    /// Notices that the group changed.
    pub(crate) fn group_changes(&self) -> Receiver<()> {
        self.group_changes.clone()
    }

    /// Forgets notices received so far: the fetch about to run covers them.
    pub(crate) fn clear(&self) {
        while self.notices.try_recv().is_ok() {}
    }

    /// Waits until a notice arrives or `timeout` passes.
    pub(crate) fn wait(&self, timeout: Duration) {
        if timeout.is_zero() {
            return;
        }
        match self.notices.recv_timeout(timeout) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            // The thread is gone; waiting out the timeout keeps the caller from spinning.
            Err(RecvTimeoutError::Disconnected) => thread::sleep(timeout),
        }
    }
}

impl Drop for WakeListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn listen(
    endpoint: &Endpoint,
    channels: &Channels,
    stop: &AtomicBool,
    ready: Sender<redis::RedisResult<()>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(50);
    while !stop.load(Ordering::Relaxed) {
        let subscribed = endpoint.open().and_then(|mut connection| {
            let mut pubsub = connection.as_pubsub();
            pubsub.subscribe(&[channels.wake.as_str(), channels.group.as_str()])?;
            pubsub.set_read_timeout(Some(STOP_CHECK))?;
            match ready.take() {
                Some(ready) => {
                    let _ = ready.send(Ok(()));
                }
                None => {
                    poke(&channels.wake_notify);
                    poke(&channels.group_notify);
                }
            }
            backoff = Duration::from_millis(50);
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                match pubsub.get_message() {
                    Ok(message) if message.get_channel_name() == channels.group => {
                        poke(&channels.group_notify)
                    }
                    Ok(_) => poke(&channels.wake_notify),
                    Err(error) if error.is_timeout() || is_interrupted(&error) => {}
                    Err(error) => return Err(error),
                }
            }
        });
        match subscribed {
            Ok(()) => return,
            Err(error) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(error));
                    return;
                }
                tracing::warn!(%error, channel = %channels.wake, "wake-up subscription lost; reconnecting");
                thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn poke(notify: &Sender<()>) {
    match notify.try_send(()) {
        Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
    }
}
