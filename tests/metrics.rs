//! `/metrics` over HTTP: Prometheus text with request counts by route template, JSON-RPC calls
//! by method and outcome, rate-limit rejections, open streams and queue gauges; absent without
//! `--metrics`; never rate-limited.

mod common;

use common::*;
use serde_json::json;

/// The value of the sample `name{labels}` (labels exactly as rendered), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn scrape(s: &Server) -> String {
    let response = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_requests_calls_streams_and_rejections() {
    let s = Server::start_with(CONFIG, ":memory:", &["--metrics", "--rate-limit", "session=2/1h"]).await;
    for _ in 0..3 {
        assert_eq!(s.send_text("done", "count me").await["status"]["state"], "completed");
    }
    assert_eq!(s.error("done", "no/such", json!({})).await["code"], -32601);
    assert_eq!(s.error("done", "tasks/get", json!({"id": "nope"})).await["code"], -32001);
    let mut stream =
        s.open_stream("slow", "message/stream", json!({"message": user_message("one two three")}), None).await;
    stream.next().await.expect("first event");
    let during = scrape(&s).await;
    assert_eq!(sample(&during, "switchyard_sse_streams_open"), Some(1.0), "{during}");
    stream.collect().await;
    for _ in 0..3 {
        s.client.get(s.url("/agents")).header("x-session-id", "m").send().await.unwrap();
    }

    let text = scrape(&s).await;
    let send = r#"switchyard_jsonrpc_requests_total{method="message/send",outcome="ok"}"#;
    assert_eq!(sample(&text, send), Some(3.0), "{text}");
    assert_eq!(sample(&text, r#"switchyard_jsonrpc_requests_total{method="unknown",outcome="-32601"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"switchyard_jsonrpc_requests_total{method="tasks/get",outcome="-32001"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"switchyard_jsonrpc_requests_total{method="message/stream",outcome="ok"}"#), Some(1.0));
    let posts = r#"switchyard_http_requests_total{method="POST",route="/agents/{name}",status="200"}"#;
    assert_eq!(sample(&text, posts), Some(6.0), "{text}");
    assert_eq!(
        sample(&text, r#"switchyard_http_requests_total{method="GET",route="/agents",status="429"}"#),
        Some(1.0)
    );
    assert_eq!(sample(&text, r#"switchyard_rate_limited_total{scope="session"}"#), Some(1.0));
    assert!(!text.contains("route=\"/agents/done\""), "routes are templates, never raw paths");
    let latency = r#"switchyard_http_request_duration_seconds_count{method="POST",route="/agents/{name}"}"#;
    assert_eq!(sample(&text, latency), Some(6.0));
    assert!(text.contains("switchyard_http_request_duration_seconds_bucket{"), "a histogram: {text}");
    assert_eq!(sample(&text, "switchyard_sse_streams_open"), Some(0.0), "the stream closed");
    assert_eq!(sample(&text, r#"switchyard_tasks{state="completed"}"#), Some(3.0), "{text}");
    assert_eq!(sample(&text, "switchyard_queue_depth"), Some(0.0));
    assert_eq!(sample(&text, "switchyard_dead_letter_queue_size"), Some(0.0));
    assert_eq!(sample(&text, r#"switchyard_deliveries_total{kind="push",outcome="failed"}"#), Some(0.0));
    assert_eq!(sample(&text, "switchyard_store_up"), Some(1.0));
    // Scrapes and health checks are never limited, and not counted against anyone.
    for _ in 0..5 {
        scrape(&s).await;
        assert_eq!(s.get_json("/health").await.0, 200);
    }
}

#[tokio::test]
async fn metrics_are_absent_without_the_flag() {
    let s = Server::start().await;
    assert_eq!(s.client.get(s.url("/metrics")).send().await.unwrap().status(), 404);
}
