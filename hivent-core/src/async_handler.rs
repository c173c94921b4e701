//! Async handlers: futures run on a tokio runtime while the consume loop waits for them.
//!
//! The consume loop stays one loop on worker threads, so async handlers keep every rule
//! of the others (dispatch order, retries, dead letters, standing checks, shutdown after
//! the event in hand). Each handler's future is spawned on a runtime (the one the
//! application hands over with `Signal::on_runtime`; else the multi-thread runtime the
//! handler is registered from; else one hivent builds on first use) and the worker
//! thread waits for its outcome. The runtime a handler is registered from is not used
//! when it is a current-thread one: its one thread may be the one waiting (an inline
//! handle's emit, `run_until_idle` in a `#[tokio::test]`), and the future would never
//! run.

use std::future::Future;
use std::panic::resume_unwind;
use std::sync::{Arc, OnceLock};

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};
use tracing::Instrument;

use crate::dispatch::Handler;
use crate::{Event, HandlerError};

/// The runtime async handlers registered now run on: the caller's when it is a
/// multi-thread runtime, else hivent's own.
pub(crate) fn handler_runtime() -> Result<Handle, String> {
    if let Ok(current) = Handle::try_current() {
        if current.runtime_flavor() == RuntimeFlavor::MultiThread {
            return Ok(current);
        }
    }
    own_runtime()
}

/// Hivent's runtime for async handlers registered outside a multi-thread runtime: two
/// threads (`hivent-async`), built once per process.
fn own_runtime() -> Result<Handle, String> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("hivent-async")
                .enable_all()
                .build()
                .map_err(|e| {
                    format!("could not start hivent's tokio runtime for async handlers: {e}")
                })
        })
        .as_ref()
        .map(|runtime| runtime.handle().clone())
        .map_err(Clone::clone)
}

/// A handler that runs `handler`'s future on `runtime` and waits for it; a panic in the
/// future is raised again in the waiting thread, where dispatch catches it as for any
/// handler.
pub(crate) fn async_handler<F, Fut>(runtime: Result<Handle, String>, handler: F) -> Handler
where
    F: Fn(&Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    Arc::new(move |event: &Event| {
        let runtime = runtime
            .as_ref()
            .map_err(|e| HandlerError::from(e.clone()))?;
        let (outcome, wait) = crossbeam_channel::bounded(1);
        // The future logs inside the event's span, on whichever thread runs it.
        let task = runtime.spawn(handler(event).instrument(tracing::Span::current()));
        runtime.spawn(async move {
            let _ = outcome.send(task.await);
        });
        // On a worker of a multi-thread runtime (a poll or an inline emit inside a task),
        // the two tasks just spawned may sit in this worker's own queue, which no other
        // worker takes from while it blocks: `block_in_place` hands them over first.
        let on_worker = Handle::try_current()
            .is_ok_and(|current| current.runtime_flavor() == RuntimeFlavor::MultiThread);
        let outcome = match on_worker {
            true => tokio::task::block_in_place(|| wait.recv()),
            false => wait.recv(),
        };
        match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(error)) if error.is_panic() => resume_unwind(error.into_panic()),
            // Cancelled (the runtime shut down) or dropped unrun: the event is not done,
            // and no retry could run it either; the consumer stops.
            Ok(Err(_)) | Err(_) => Err(Box::new(RuntimeGone)),
        }
    })
}

/// What an async handler fails with when its runtime shut down before the future
/// finished: not a failure of the event (no attempt is counted); the consumer stops
/// with [`crate::Error::HandlerRuntimeGone`] and the event stays first in its partition.
#[derive(Debug)]
pub(crate) struct RuntimeGone;

impl std::fmt::Display for RuntimeGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the tokio runtime of this async handler shut down before the handler finished")
    }
}

impl std::error::Error for RuntimeGone {}
