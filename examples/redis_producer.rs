//! A Redis producer: emits `order:placed` events to a local Redis.
//!
//! ```sh
//! redis-server --port 6379 --save "" &          # any local Redis
//! cargo run --example redis_producer -- 20      # emit 20 events
//! ```
//!
//! The endpoint comes from `HIVENT_ENDPOINT` or `REDIS_URL` (default
//! `redis://127.0.0.1:6379/0`); run `redis_worker` to receive the events.

use hivent::{BackendKind, Config, EmitOptions};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: u32 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 10,
    };
    // `env()` reads HIVENT_ENDPOINT, else REDIS_URL; with neither, the Redis fallback
    // is the local default endpoint.
    let config = Config::builder()
        .env()
        .fallback_backend(BackendKind::Redis)
        .client_id("shop")
        .build()?;
    let hivent = hivent::connect(config)?;
    println!(
        "emitting {count} events to {}",
        hivent.config().endpoint_redacted()
    );
    let placed = hivent.signal("order:placed")?;
    for order in 1..=count {
        let customer = format!("customer-{}", order % 3);
        let event = placed.emit_with(
            &json!({"order_id": order, "customer": customer, "total_cents": 100 * order}),
            EmitOptions::version(1).key(customer.clone()),
        )?;
        println!(
            "emitted order {order} for {customer}: {}",
            event.meta.event_uuid
        );
    }
    Ok(())
}
