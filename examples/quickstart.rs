//! Quickstart: one process, the in-memory backend, no infrastructure.
//!
//! Two services receive events, a producer emits a few (with a version, a correlation
//! id and a key), a handler that fails once is retried in place, one that fails for good
//! sends its event to the dead letter queue with a failure record, and a summary is
//! printed. Run with `cargo run --example quickstart`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hivent::{
    Config, DeadLetterFilter, DeadLetterQueue, EmitOptions, Error, ErrorChain, Event,
    LifeCycleEventHandler, Permanent, ReceivedSignal,
};
use serde::Deserialize;
use serde_json::json;

/// Logs what the consumer of the `billing` service does.
struct Log;

impl LifeCycleEventHandler for Log {
    fn application_registered(
        &self,
        client_id: &str,
        signals: &[ReceivedSignal],
        partition_count: u32,
    ) {
        let signals: Vec<String> = signals
            .iter()
            .map(|s| match s.version {
                Some(v) => format!("{} v{v}", s.name),
                None => s.name.clone(),
            })
            .collect();
        println!("[{client_id}] registered for {signals:?} with {partition_count} partitions");
    }
    fn event_processing_retried(
        &self,
        error: &Error,
        event: &Event,
        attempt: u32,
        delay: Duration,
    ) {
        println!(
            "[billing] attempt {attempt} at {} failed ({}); retrying in {} ms",
            event.payload,
            ErrorChain(error),
            delay.as_millis()
        );
    }
    fn event_processing_failed(
        &self,
        error: &Error,
        _payload: Option<&serde_json::Value>,
        _raw: &str,
        queue: &str,
    ) {
        println!("[billing] failed, moved to {queue}: {}", ErrorChain(error));
    }
}

#[derive(Deserialize)]
struct OrderPlaced {
    order_id: u64,
    total_cents: i64,
}

fn main() -> Result<(), Error> {
    // Every `connect` with the same (memory) endpoint shares one in-process store.
    let config = |service: &str| Config::builder().client_id(service).partition_count(4);

    // The `billing` service receives typed `order:placed` events of version 2.
    let billing = hivent::connect(
        config("billing")
            .life_cycle_event_handler(Arc::new(Log))
            .build()?,
    )?;
    let ledger_busy = AtomicBool::new(true);
    billing
        .signal("order:placed")?
        .receive_version_as(2, move |order: OrderPlaced, meta| {
            if order.total_cents < 0 {
                // No retry can fix this one: straight to the dead letter queue.
                let reason = format!("order {} has a negative total", order.order_id);
                return Err(Permanent::new(reason).into());
            }
            if order.order_id == 2 && ledger_busy.swap(false, Ordering::SeqCst) {
                // A transient failure: retried in place, order 2 stays before later
                // events of its key.
                return Err("the ledger is busy".into());
            }
            println!(
                "[billing] invoice for order {} ({} cents), cid {}",
                order.order_id, order.total_cents, meta.cid
            );
            Ok(())
        });

    // The `audit` service receives every event, whatever its name or version.
    let audit = hivent::connect(config("audit").build()?)?;
    audit.signal("*")?.receive(|event| {
        println!(
            "[audit]   {} v{} from {}: {}",
            event.meta.name,
            event.meta.version.unwrap_or_default(),
            event.meta.producer,
            event.payload
        );
        Ok(())
    });

    let billing_worker = billing.consumer()?;
    let audit_worker = audit.consumer()?;

    // The `shop` service emits.
    let shop = hivent::connect(config("shop").build()?)?;
    let placed = shop.signal("order:placed")?;
    let first = placed.emit_with(
        &json!({"order_id": 1, "total_cents": 1250}),
        EmitOptions::version(2).key("customer-42"),
    )?;
    placed.emit_with(
        &json!({"order_id": 2, "total_cents": 990}),
        EmitOptions::version(2)
            .key("customer-42")
            .cid(first.meta.cid.clone()),
    )?;
    placed.emit_with(
        &json!({"order_id": 3, "total_cents": -5}),
        EmitOptions::version(2).key("customer-7"),
    )?;
    placed.emit(&json!({"order_id": 4}), 1)?; // version 1: billing does not receive it
    shop.signal("user:signed_up")?
        .emit(&json!({"email": "ada@example.com"}), 1)?;

    let billed = billing_worker.run_until_idle()?;
    let audited = audit_worker.run_until_idle()?;

    let operations = billing
        .backend()
        .operations()
        .ok_or_else(|| Error::Backend {
            backend: "memory",
            transient: false,
            source: "the backend has no dead letter operations".into(),
        })?;
    let dead = DeadLetterQueue::new(operations, "billing").list(&DeadLetterFilter::all())?;
    println!();
    println!(
        "summary: shop emitted 5 events; billing processed {billed}, audit processed {audited}"
    );
    println!("billing dead letter queue holds {} event(s):", dead.len());
    for entry in &dead {
        println!("  {}", entry.raw);
        if let Some(record) = &entry.record {
            println!(
                "    after {} attempt(s){}: {}",
                record.attempts,
                if record.permanent { " (permanent)" } else { "" },
                record.error
            );
        }
    }
    Ok(())
}
