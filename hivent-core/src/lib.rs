//! hivent-core: the contract every hivent backend and tool agrees on.
//!
//! - [`Event`] and [`Meta`]: the JSON wire format shared with the Ruby gem.
//! - [`Config`]: backend, endpoint, partition count, client id, life-cycle handler.
//! - [`Hivent`] and [`Signal`]: emit named, versioned events; register receivers.
//! - [`partition_hash`]: Ruby-compatible CRC-32 partitioning.
//! - [`Receivers`]: dispatch rules (see the [`dispatch`] module).
//! - [`RetryPolicy`], [`Permanent`], [`RetryAfter`]: in-place retries of failed events,
//!   and [`FailureRecord`]s beside dead letters.
//! - [`LifeCycleEventHandler`]: hooks for logging and error reporting.
//! - [`Backend`] and [`ConsumerSession`]: the small object-safe seam a backend fills.
//! - [`Consumer`]: the one consume loop, so every backend has the same semantics.
//! - [`Operations`] and [`DeadLetterQueue`]: status (members' health, lag, rates) and
//!   dead letter queues, for operators.
//! - [`instruments`]: the metrics recorded through the `metrics` facade; events are
//!   handled inside `hivent.event` spans and emitted inside `hivent.emit` spans.
//!
//! This crate never depends on a storage client or a CLI library.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod assignment;
#[cfg(feature = "tokio")]
mod async_handler;
mod backend;
mod config;
mod consumer;
mod dead_letter_queue;
pub mod dispatch;
mod emit_outcome;
mod error;
mod error_chain;
mod event;
mod failure_record;
mod hivent;
pub mod instruments;
mod lifecycle;
mod operations;
mod partition;
mod retry;
mod shutdown;
mod signal;

pub use assignment::desired_partitions;
pub use backend::{
    dead_letter_queue_name, partition_name, Backend, Batch, ConsumerSession, Envelope, Fetched,
    PublishFuture, Registration, Standing,
};
pub use config::{
    choose_backend, redact_endpoint, split_endpoints, BackendKind, Config, ConfigBuilder,
    DEFAULT_MEMORY_ENDPOINT, DEFAULT_REDIS_ENDPOINT, MAX_PARTITION_COUNT,
};
pub use consumer::{Consumer, ConsumerOptions};
pub use dead_letter_queue::{DeadLetterEntry, DeadLetterFilter, DeadLetterQueue, DeadLetterReport};
pub use dispatch::{Dispatch, Handler, HandlerFailure, ReceivedSignal, Receivers};
pub use emit_outcome::{EmitRetry, Emitted};
pub use error::{Error, HandlerError, Result};
pub use error_chain::ErrorChain;
pub use event::{new_id, Event, Meta};
pub use failure_record::{Attempts, CommandFailure, DeadLetter, FailureRecord};
pub use hivent::{EmitBatch, EmitTap, Hivent, Running};
pub use lifecycle::{LifeCycleEventHandler, NoopLifeCycleEventHandler};
pub use operations::{
    bumped_rate, decayed_rate, DeadLetterPick, GemConsumer, MemberHealth, MemberStatus, Operations,
    PartitionStatus, ServiceStatus, RATE_TIME_CONSTANT_MS,
};
pub use partition::{partition_for, partition_hash, ruby_json};
pub use retry::{Permanent, RetryAfter, RetryPolicy};
pub use shutdown::Shutdown;
pub use signal::{validate_signal_name, EmitOptions, Signal, WILDCARD};
