//! A Redis worker: an application's own worker binary built on `hivent_cli::Worker`.
//!
//! ```sh
//! cargo run --example redis_worker -- start --help
//! cargo run --example redis_worker -- start --client-id billing --partition-count 4
//! ```
//!
//! It receives `order:placed` (typed) and logs every life-cycle event at debug level
//! with `--log-level debug`. SIGINT/SIGTERM stops it after the handler that is running.

use std::sync::Arc;

use hivent::{Error, LifeCycleEventHandler};
use hivent_cli::Worker;
use serde::Deserialize;

#[derive(Deserialize)]
struct OrderPlaced {
    order_id: u64,
    customer: String,
    total_cents: i64,
}

/// Reports failures; a real service would send them to its error tracker.
struct Report;

impl LifeCycleEventHandler for Report {
    fn event_processing_failed(
        &self,
        error: &Error,
        _payload: Option<&serde_json::Value>,
        _raw_payload: &str,
        dead_letter_queue_name: &str,
    ) {
        eprintln!(
            "moved to {dead_letter_queue_name}: {}",
            hivent::ErrorChain(error)
        );
    }
}

fn main() -> std::process::ExitCode {
    Worker::new(|hivent| {
        hivent
            .signal("order:placed")?
            .receive_as(|order: OrderPlaced, meta| {
                println!(
                    "invoice for order {} of {} ({} cents), cid {}",
                    order.order_id, order.customer, order.total_cents, meta.cid
                );
                Ok(())
            });
        Ok(())
    })
    .life_cycle_event_handler(Arc::new(Report))
    .main()
}
