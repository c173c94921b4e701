//! Emits from async code: `publish.lua` on one multiplexed connection shared by every task.
//!
//! The blocking producer goes by cached routes in the steady state (`routed_emit.rs`),
//! but that transaction needs a `WATCH` of the registry version on a connection of its
//! own, which a connection multiplexed between tasks cannot give (another task's `EXEC`
//! would end the watch). So every async emit runs the script: one round trip, with the
//! registry read and every check inside Redis (about 20 µs of Redis time per call
//! rather than 5; BENCHMARKS.md). Its marker makes every try after the first, and
//! [`hivent_core::Hivent::retry_emit_async`], store nothing twice, as for blocking emits.

use std::sync::Arc;

use hivent_core::{Envelope, ErrorChain};
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{RedisError, RedisResult};

use crate::backend::{emit_pauses, stored, Chunk, Try};
use crate::connection::Endpoint;
use crate::error::{certainly_not_run, is_transient, keeps_connection};
use crate::script::{millis, PublishReply, PublishScript};
use crate::{Error, RedisBackend};

/// The async connection of a backend, opened by the first async emit and opened again
/// after it broke. It belongs to the tokio runtime that opened it: once that runtime
/// has shut down (a test's, say) the next emit opens a new one rather than try the
/// dead one, which would fail as if the emit might have been sent.
#[derive(Default)]
pub(crate) struct AsyncConnection {
    slot: Mutex<Option<Opened>>,
    openings: std::sync::atomic::AtomicU64,
}

struct Opened {
    connection: MultiplexedConnection,
    /// Which opening this is, so that forgetting a broken connection cannot drop a
    /// newer one another task opened meanwhile.
    generation: u64,
    /// Closed when the task holding its other end is dropped: when the runtime that
    /// drives the connection shut down.
    runtime_alive: tokio::sync::oneshot::Sender<()>,
}

impl AsyncConnection {
    async fn get(&self, endpoint: &Endpoint) -> RedisResult<(MultiplexedConnection, u64)> {
        let cached = {
            let mut slot = self.slot.lock();
            if slot.as_ref().is_some_and(|o| o.runtime_alive.is_closed()) {
                *slot = None;
            }
            slot.as_ref().map(|o| (o.connection.clone(), o.generation))
        };
        if let Some(cached) = cached {
            return Ok(cached);
        }
        let connection = endpoint.open_async().await?;
        let (runtime_alive, watched) = tokio::sync::oneshot::channel::<()>();
        // Waits for nothing; dropped with the runtime, which closes `runtime_alive`.
        tokio::spawn(async move {
            let _ = watched.await;
        });
        let mut slot = self.slot.lock();
        let generation = self
            .openings
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let opened = slot.get_or_insert(Opened {
            connection,
            generation,
            runtime_alive,
        });
        Ok((opened.connection.clone(), opened.generation))
    }

    /// Drops the connection of `generation` after it broke.
    fn forget(&self, generation: u64) {
        let mut slot = self.slot.lock();
        if slot.as_ref().is_some_and(|o| o.generation == generation) {
            *slot = None;
        }
    }
}

impl RedisBackend {
    /// [`hivent_core::Backend::publish_async`]: the chunks of [`Chunk::all`], each one
    /// atomic script call tried up to `emit_tries` times.
    pub(crate) async fn publish_chunks_async(
        &self,
        call_id: &str,
        envelopes: &[Envelope],
        attempt: Try,
    ) -> hivent_core::Result<Vec<usize>> {
        let mut counts = Vec::with_capacity(envelopes.len());
        for chunk in Chunk::all(call_id, envelopes, attempt) {
            match self
                .publish_call_async(&envelopes[chunk.events.clone()], &chunk.id)
                .await
            {
                Ok(stored) => counts.extend(stored),
                Err(error) => return Err(chunk.failed(error)),
            }
        }
        Ok(counts)
    }

    /// One chunk; after a try that may have run, a final failure is
    /// [`Error::ReplyLost`], as for the blocking emit.
    async fn publish_call_async(
        &self,
        envelopes: &[Envelope],
        call_id: &str,
    ) -> Result<Vec<usize>, Error> {
        let options = self.endpoint.options();
        let pauses = emit_pauses(options);
        let tries = options.emit_tries.max(1);
        let mut may_have_run = false;
        let mut tried = 0;
        loop {
            tried += 1;
            let error = match self.try_publish_async(envelopes, call_id).await {
                Ok(reply) => return stored(reply, call_id),
                Err(error) => error,
            };
            may_have_run |= !certainly_not_run(&error);
            if tried >= tries || !is_transient(&error) {
                return Err(match may_have_run {
                    true => Error::ReplyLost {
                        endpoint: self.endpoint.redacted().to_owned(),
                        source: error.into(),
                    },
                    false => self.endpoint.error("publish events", error),
                });
            }
            tracing::warn!(error = %ErrorChain(&error), operation = "publish events", tries_left = tries - tried, "Redis failed; trying again");
            tokio::time::sleep(pauses.delay_after(tried)).await;
        }
    }

    async fn try_publish_async(
        &self,
        envelopes: &[Envelope],
        call_id: &str,
    ) -> RedisResult<PublishReply> {
        self.settle_doubts_async().await?;
        let (mut connection, generation) = self.async_connection.get(&self.endpoint).await?;
        let ttl = self.endpoint.options().emit_marker_ttl;
        let reply = PublishScript::invoke_async(&mut connection, envelopes, call_id, ttl).await;
        if let Err(error) = &reply {
            if !keeps_connection(error) {
                self.async_connection.forget(generation);
            }
        }
        reply
    }

    /// Settles the blocking emits' transactions in doubt before a script runs, as the
    /// blocking path does (`routed_emit.rs`): a retry of such a call through the async
    /// path must not store it twice. Only after a blocking emit lost a reply; it runs on
    /// tokio's blocking pool, since the settling closes connections with blocking calls.
    async fn settle_doubts_async(&self) -> RedisResult<()> {
        if self.doubts.is_empty() {
            return Ok(());
        }
        let endpoint = Arc::clone(&self.endpoint);
        let doubts = Arc::clone(&self.doubts);
        let ttl = millis(endpoint.options().emit_marker_ttl);
        tokio::task::spawn_blocking(move || {
            let mut connection = endpoint.open()?;
            doubts.settle(&mut connection, ttl)
        })
        .await
        .map_err(|e| {
            RedisError::from(std::io::Error::other(format!(
                "settling emits in doubt did not finish: {e}"
            )))
        })?
    }
}
