//! Prometheus metrics (`--metrics`): what the server counts and the `/metrics` rendering.
//! Without `--metrics` no recorder is installed and every recording below is a no-op.
//!
//! Counted as they happen: HTTP requests and latency by route template (never the raw path),
//! JSON-RPC calls by method and outcome, push deliveries, rate-limit rejections, open SSE
//! streams. Read at scrape time: tasks by state, queue depth and the dead-letter queue.

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::store::Backend;

/// Latency buckets (seconds): sub-millisecond to tens of seconds (streams).
const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Installs the process-wide recorder; its handle renders `/metrics`.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .and_then(|b| b.install_recorder())
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    // Present from the first scrape, not only after the first event.
    gauge!("switchyard_sse_streams_open").set(0.0);
    for kind in ["push", "callback", "forward"] {
        for outcome in ["delivered", "failed"] {
            counter!("switchyard_deliveries_total", "kind" => kind, "outcome" => outcome).absolute(0);
        }
        counter!("switchyard_delivery_attempts_total", "kind" => kind).absolute(0);
    }
    Ok(handle)
}

/// Middleware: one count and one latency observation per HTTP request, by route template.
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let method = request.method().as_str().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    counter!("switchyard_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    histogram!("switchyard_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A JSON-RPC call's outcome: `ok`, or the error code.
pub fn rpc_call(method: String, error_code: Option<i64>) {
    let outcome = error_code.map_or_else(|| "ok".to_string(), |code| code.to_string());
    counter!("switchyard_jsonrpc_requests_total", "method" => method, "outcome" => outcome).increment(1);
}

/// A delivery (push notification, callback, forwarded request) that ended: delivered, or
/// given up after `attempts`.
pub fn delivery_finished(kind: crate::store::deliveries::DeliveryKind, delivered: bool, attempts: usize) {
    use crate::store::deliveries::DeliveryKind;
    let kind = match kind {
        DeliveryKind::Push => "push",
        DeliveryKind::Callback => "callback",
        DeliveryKind::Forward => "forward",
    };
    let outcome = if delivered { "delivered" } else { "failed" };
    counter!("switchyard_deliveries_total", "kind" => kind, "outcome" => outcome).increment(1);
    counter!("switchyard_delivery_attempts_total", "kind" => kind).increment(attempts as u64);
}

/// A request refused by the rate limit of `scope`.
pub fn rate_limited(scope: &'static str) {
    counter!("switchyard_rate_limited_total", "scope" => scope).increment(1);
}

/// Counts an open SSE stream while it lives.
pub struct OpenStream;

impl OpenStream {
    pub fn open() -> OpenStream {
        gauge!("switchyard_sse_streams_open").increment(1.0);
        OpenStream
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        gauge!("switchyard_sse_streams_open").decrement(1.0);
    }
}

/// Reads the gauges that live in the backend, then renders every metric.
pub async fn render(handle: &PrometheusHandle, backend: &Backend) -> String {
    match tokio::time::timeout(Duration::from_secs(2), backend.queue.stats()).await {
        Ok(Ok(stats)) => {
            for (state, value) in [
                ("submitted", stats.pending),
                ("working", stats.running),
                ("completed", stats.completed),
                ("failed", stats.failed),
                ("canceled", stats.canceled),
            ] {
                gauge!("switchyard_tasks", "state" => state).set(value as f64);
            }
            gauge!("switchyard_queue_depth").set(stats.pending as f64);
            gauge!("switchyard_queue_running").set(stats.running as f64);
            gauge!("switchyard_dead_letter_queue_size").set(stats.dead_letter as f64);
            gauge!("switchyard_queue_oldest_pending_age_seconds").set(stats.oldest_pending_age_ms as f64 / 1000.0);
            gauge!("switchyard_store_up").set(1.0);
        }
        _ => gauge!("switchyard_store_up").set(0.0),
    }
    gauge!("switchyard_bus_subscriptions").set(backend.bus.subscriptions() as f64);
    handle.run_upkeep();
    handle.render()
}
