//! hivent-memory: an in-process backend with the full delivery semantics of hivent.
//!
//! Everything lives in one process behind one lock: the registry of which service
//! receives which event, each service's partitions (FIFO queues), dead letter queues,
//! and the consumer group with its members, partition owners and fencing tokens. It
//! follows the same protocol as the Redis backend, so code tested here behaves the same
//! there: fan-out to every receiving service, partition by key, at most one owner per
//! partition, fenced acks, atomic dead-lettering, cooperative hand-over.
//!
//! Nothing is durable: the events die with the process. Use it for tests, examples and
//! single-process applications. Drive a consumer step by step with
//! `Consumer::poll`/`Consumer::run_until_idle` for deterministic tests; waits use a
//! condition variable, never sleeps.
//!
//! ```
//! use std::sync::Arc;
//! use hivent_core::{Config, Hivent};
//! use hivent_memory::MemoryBackend;
//!
//! let backend = Arc::new(MemoryBackend::new());
//! let hivent = Hivent::new(Config::builder().client_id("mailer").partition_count(2).build()?, backend.clone());
//! hivent.signal("user:created")?.receive(|event| {
//!     println!("welcome mail for {}", event.payload["email"]);
//!     Ok(())
//! });
//! let consumer = hivent.consumer()?;
//! hivent.signal("user:created")?.emit(&serde_json::json!({"email": "a@example.com"}), 1)?;
//! assert_eq!(backend.waiting("mailer"), 1);
//! assert_eq!(consumer.run_until_idle()?, 1);
//! assert_eq!(backend.waiting("mailer"), 0);
//! # Ok::<(), hivent_core::Error>(())
//! ```

#![forbid(unsafe_code)]

mod backend;
mod operations;
mod session;
mod state;

pub use backend::{MemoryBackend, MemoryOptions};
