//! Wake-up and group notices: a thread subscribed to a service's channels, so idle
//! consumers learn of new events, and members of changes in their group, without polling.

use hivent_core::ErrorChain;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;

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
    pending: Arc<Mutex<Pending>>,
    group_changes: Receiver<()>,
    stop: Arc<AtomicBool>,
}

/// The partitions named by wake-up notices not yet taken by a fetch.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Partitions pushed to.
    pub(crate) partitions: BTreeSet<u32>,
    /// Whether any partition may have been pushed to: a notice without a partition, or
    /// the subscription was lost for a while.
    pub(crate) all: bool,
}

/// The two channels listened to, and where their notices go.
struct Channels {
    wake: String,
    group: String,
    wake_notify: Sender<()>,
    pending: Arc<Mutex<Pending>>,
    group_notify: Sender<()>,
}

impl WakeListener {
    /// Subscribes to `channel` on a new connection; fails when the subscription is
    /// not confirmed within the connect plus response timeouts.
    pub(crate) fn start(
        endpoints: Vec<Arc<Endpoint>>,
        service: &str,
        wake: String,
        group: String,
    ) -> Result<WakeListener, Error> {
        // One pending notice is as good as many: every notice means "fetch again" (or
        // "heartbeat now").
        let (wake_notify, notices) = crossbeam_channel::bounded(1);
        let (group_notify, group_changes) = crossbeam_channel::bounded(1);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let channels = Channels {
            wake,
            group,
            wake_notify,
            pending: Arc::clone(&pending),
            group_notify,
        };
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let Some(endpoint) = endpoints.first().cloned() else {
            return Err(Error::InvalidEndpoint {
                endpoint: String::new(),
                reason: "it names no node".into(),
            });
        };
        let seeds = u32::try_from(endpoints.len()).unwrap_or(u32::MAX);
        thread::Builder::new()
            .name("hivent-wake".into())
            .spawn(move || listen(&endpoints, &channels, &flag, ready_tx))
            .map_err(|e| Error::Command {
                operation: "start the wake-up listener thread",
                endpoint: endpoint.redacted().to_owned(),
                source: redis::RedisError::from(e).into(),
            })?;
        // Each endpoint may be tried once before the subscription is made.
        let waited = (endpoint.options().connect_timeout + endpoint.options().response_timeout)
            .saturating_mul(seeds);
        match ready_rx.recv_timeout(waited) {
            Ok(Ok(())) => Ok(WakeListener {
                notices,
                pending,
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

    /// Takes the partitions notices named since the last call: the fetch about to run
    /// reads them.
    pub(crate) fn take_pending(&self) -> Pending {
        while self.notices.try_recv().is_ok() {}
        std::mem::take(&mut *self.pending.lock())
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

/// Holds the subscription; after a lost connection it subscribes on the next
/// endpoint (a cluster's seeds: pub/sub reaches every node, and the one that failed
/// may be gone for good).
fn listen(
    endpoints: &[Arc<Endpoint>],
    channels: &Channels,
    stop: &AtomicBool,
    ready: Sender<redis::RedisResult<()>>,
) {
    let mut ready = Some(ready);
    // Jittered, so that every worker does not resubscribe at once after a Redis restart.
    let backoff =
        hivent_core::RetryPolicy::endless(Duration::from_millis(50), Duration::from_secs(2));
    let mut failures = 0;
    let mut turn = 0;
    while !stop.load(Ordering::Relaxed) {
        let endpoint = &endpoints[turn % endpoints.len()];
        let subscribed = endpoint.open().and_then(|mut connection| {
            let mut pubsub = connection.as_pubsub();
            pubsub.subscribe(&[channels.wake.as_str(), channels.group.as_str()])?;
            pubsub.set_read_timeout(Some(STOP_CHECK))?;
            match ready.take() {
                Some(ready) => {
                    let _ = ready.send(Ok(()));
                }
                None => {
                    channels.pending.lock().all = true;
                    poke(&channels.wake_notify);
                    poke(&channels.group_notify);
                }
            }
            failures = 0;
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                match pubsub.get_message() {
                    Ok(message) if message.get_channel_name() == channels.group => {
                        poke(&channels.group_notify)
                    }
                    Ok(message) => {
                        // A wake-up names the partitions pushed to (`3`, `0,3`:
                        // publish.lua, replay.lua, the routed emit); anything else may
                        // mean any of them.
                        let named = message.get_payload::<String>().ok().and_then(|text| {
                            text.split(',')
                                .map(|n| n.parse::<u32>().ok())
                                .collect::<Option<Vec<u32>>>()
                        });
                        let mut pending = channels.pending.lock();
                        match named {
                            Some(partitions) => pending.partitions.extend(partitions),
                            None => pending.all = true,
                        }
                        drop(pending);
                        poke(&channels.wake_notify)
                    }
                    Err(error) if error.is_timeout() || is_interrupted(&error) => {}
                    Err(error) => return Err(error),
                }
            }
        });
        match subscribed {
            Ok(()) => return,
            Err(error) => {
                // At start, every endpoint is tried once before the join fails: a
                // cluster's first seed may be a node that is gone.
                if ready.is_some() && turn + 1 < endpoints.len() {
                    turn += 1;
                    continue;
                }
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(error));
                    return;
                }
                tracing::warn!(error = %ErrorChain(&error), channel = %channels.wake, "wake-up subscription lost; reconnecting");
                failures += 1;
                turn += 1;
                thread::sleep(backoff.delay_after(failures));
            }
        }
    }
}

fn poke(notify: &Sender<()>) {
    match notify.try_send(()) {
        Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
    }
}
