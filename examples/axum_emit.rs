//! A tokio/axum service that emits from its HTTP handlers and runs async handlers of
//! another service in the same process, with no `spawn_blocking` anywhere.
//!
//! `shop` answers `POST /orders` by emitting `order:placed` with `emit_async`;
//! `shipping` receives it with an async handler, run by a worker started from async
//! code and stopped from async code. On the memory backend by default; set
//! `HIVENT_BACKEND=redis` (and `HIVENT_ENDPOINT`) for Redis, where the emit goes on
//! redis-rs's async connection.
//!
//! `cargo run --example axum_emit` places three orders through real HTTP requests to
//! itself, waits until shipping handled them, stops and prints what happened.
//! `cargo run --example axum_emit -- --serve 127.0.0.1:3000` serves until Ctrl-C; try
//! `curl -d '{"item":"book"}' -H 'content-type: application/json' 127.0.0.1:3000/orders`.
//!
//! In an application: `hivent = { version = "0.1", features = ["tokio"] }`.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use hivent::{Config, ConsumerOptions, ErrorChain, Hivent};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// `POST /orders`: emits the order and answers with the event's id; a failed emit is a
/// 503 whose body says why (every cause, once).
async fn place_order(
    State(shop): State<Hivent>,
    Json(order): Json<Value>,
) -> Result<(StatusCode, Json<Value>), (StatusCode, String)> {
    let unavailable =
        |e: hivent::Error| (StatusCode::SERVICE_UNAVAILABLE, ErrorChain(&e).to_string());
    let signal = shop.signal("order:placed").map_err(unavailable)?;
    let event = signal.emit_async(&order, 1).await.map_err(unavailable)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"event_uuid": event.meta.event_uuid})),
    ))
}

/// A handle for `service` from the environment's configuration (memory by default).
fn service(service: &str) -> Result<Hivent, hivent::Error> {
    hivent::connect(Config::builder().env().client_id(service).build()?)
}

/// One HTTP/1.1 request over a plain TCP stream: the status code and the body.
async fn post_json(
    addr: std::net::SocketAddr,
    path: &str,
    body: &Value,
) -> std::io::Result<(u16, String)> {
    let body = body.to_string();
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let serve = std::env::args().skip_while(|a| a != "--serve").nth(1);

    // The receiving service: an async handler, run by consumers in the background.
    let shipping = service("shipping")?;
    let (shipped, mut shipments) = mpsc::unbounded_channel();
    shipping
        .signal("order:placed")?
        .receive_async(move |event| {
            let shipped = shipped.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await; // a call to the carrier, say
                shipped.send(event.payload)?;
                Ok(())
            }
        });
    let worker = shipping.start(2, ConsumerOptions::default())?;

    // The emitting service behind an HTTP route.
    let shop = service("shop")?;
    let app = Router::new()
        .route("/orders", post(place_order))
        .with_state(shop);
    let listener = TcpListener::bind(serve.as_deref().unwrap_or("127.0.0.1:0")).await?;
    let addr = listener.local_addr()?;
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = server_stopped.await;
            })
            .await
    });

    if serve.is_some() {
        println!("serving on http://{addr}/orders; Ctrl-C stops");
        tokio::spawn(async move {
            while let Some(order) = shipments.recv().await {
                println!("shipping handled {order}");
            }
        });
        tokio::signal::ctrl_c().await?;
    } else {
        for item in ["book", "lamp", "kettle"] {
            let (status, body) = post_json(addr, "/orders", &json!({"item": item})).await?;
            println!("POST /orders {{\"item\":\"{item}\"}} -> {status} {body}");
            if status != 202 {
                return Err(format!("the order was refused: {status} {body}").into());
            }
        }
        for _ in 0..3 {
            let order = tokio::time::timeout(Duration::from_secs(30), shipments.recv())
                .await
                .map_err(|_| "shipping did not handle the orders within 30 s")?
                .ok_or("the shipping handler is gone")?;
            println!("shipping handled {order}");
        }
    }

    let _ = stop_server.send(());
    server.await??;
    // Finishes the handler in hand, acknowledges, leaves the group; no thread blocked.
    worker.stop_and_wait().await?;
    println!("stopped: every order handled and acknowledged");
    Ok(())
}
