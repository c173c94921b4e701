//! The worker's Prometheus endpoint: hivent's metrics at `/metrics` on `--metrics-addr`,
//! with the lag gauges sampled while the worker runs.

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use hivent::{ErrorChain, Hivent, Shutdown};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::exit::Failure;

/// How often the lag gauges are read from the backend: one status read of the service.
const LAG_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Histogram buckets (seconds) for handler and emit durations: from half a millisecond,
/// a Redis round trip, to ten seconds, a slow handler.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the Prometheus exporter as the process's metrics recorder, serving on
/// `addr` from a thread of its own.
pub fn serve(addr: SocketAddr) -> Result<(), Failure> {
    let unusable = |e: &(dyn std::error::Error + 'static)| {
        Failure::Usage(format!(
            "could not serve metrics on {addr}: {}",
            ErrorChain(e)
        ))
    };
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(DURATION_BUCKETS)
        .map_err(|e| unusable(&e))?
        .install()
        .map_err(|e| unusable(&e))?;
    if !addr.ip().is_loopback() {
        tracing::info!(%addr, "serving metrics beyond this machine");
    }
    tracing::info!(url = %format!("http://{addr}/metrics"), "serving Prometheus metrics");
    Ok(())
}

/// Samples the service's lag into the gauges every [`LAG_SAMPLE_INTERVAL`] until
/// `shutdown`; a failed read is logged and tried again at the next interval.
pub fn sample_lag(hivent: &Hivent, shutdown: &Shutdown) -> std::io::Result<thread::JoinHandle<()>> {
    let (hivent, shutdown) = (hivent.clone(), shutdown.clone());
    thread::Builder::new()
        .name("hivent-lag".into())
        .spawn(move || loop {
            if let Err(error) = hivent.record_lag() {
                tracing::warn!(error = %ErrorChain(&error), "could not read the partitions' lag for the metrics");
            }
            if shutdown.wait_timeout(LAG_SAMPLE_INTERVAL) {
                return;
            }
        })
}
