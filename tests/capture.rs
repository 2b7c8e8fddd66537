//! Capture sessions over HTTP: creation, ingest of any request, the response a session answers
//! with, listing with filters and cursor paging under concurrent ingest, export (the CSV is read
//! back by Python's csv module), limits, expiry, deletion, claiming by an app, the live views
//! (SSE and WebSocket), durability, and bad input. Several instances sharing a session on
//! Redis are in `scale_out.rs`.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};

/// Creates a session through `prefix` (`agent` or `test`); returns (id, ingest URL).
async fn create(s: &Server, prefix: &str) -> (String, String) {
    let (status, body, _) = s.request("POST", &format!("/v1/{prefix}/sessions"), None, None).await;
    assert_eq!(status, 201, "{body}");
    let id = body["session_id"].as_str().expect("session_id").to_string();
    (id, body["url"].as_str().expect("url").to_string())
}

/// Sends `method` with a body to a URL; returns (status, content type, body text).
async fn send(s: &Server, method: &str, url: &str, content_type: &str, body: Vec<u8>) -> (u16, String, String) {
    let response = s
        .client
        .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("ingest");
    let status = response.status().as_u16();
    let ct = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, ct, response.text().await.unwrap())
}

async fn post_json(s: &Server, url: &str, body: Value) -> u16 {
    send(s, "POST", url, "application/json", body.to_string().into_bytes()).await.0
}

async fn listing(s: &Server, id: &str, query: &str) -> Value {
    let (status, body) = s.get_json(&format!("/v1/agent/sessions/{id}?{query}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn seqs(page: &Value) -> Vec<u64> {
    page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn a_session_records_every_request_and_answers_as_configured() {
    let s = Server::start().await;
    let (id, url) = create(&s, "agent").await;
    assert_eq!(id.len(), 32, "128 random bits in hex: {id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!(url, format!("{}/v1/ingest/{id}", s.base));
    let (_, created, _) = s.request("POST", "/v1/test/sessions", None, None).await;
    for field in ["session_id", "url", "expires_at", "request_limit", "request_count"] {
        assert!(created.get(field).is_some(), "{field} in {created}");
    }
    assert_eq!((created["request_limit"].as_u64(), created["request_count"].as_u64()), (Some(2000), Some(0)));

    let (status, ct, body) = send(
        &s,
        "POST",
        &format!("{url}/hooks/github?a=1&b=two"),
        "application/json",
        br#"{"type":"order.created"}"#.to_vec(),
    )
    .await;
    assert_eq!((status, ct.as_str(), body.as_str()), (200, "application/json", r#"{"ok":true}"#), "the default answer");
    let binary = vec![0xff, 0x00, 0xfe, 0x81];
    assert_eq!(send(&s, "PUT", &url, "application/octet-stream", binary.clone()).await.0, 200);
    for method in ["GET", "PATCH", "DELETE"] {
        assert_eq!(send(&s, method, &url, "text/plain", format!("via {method}").into_bytes()).await.0, 200, "{method}");
    }
    let response =
        s.client.post(&url).header("x-custom", "one").header("x-custom", "two").body("").send().await.unwrap();
    assert_eq!(response.status(), 200);

    let page = listing(&s, &id, "").await;
    assert_eq!(page["session"]["id"], json!(id));
    assert_eq!(page["session"]["request_count"], json!(6));
    assert_eq!(seqs(&page), [6, 5, 4, 3, 2, 1], "newest first");
    assert_eq!(page["pagination"], json!({"has_more": false, "next_cursor": null}));
    let events = page["events"].as_array().unwrap();
    let first = &events[5];
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], format!("/v1/ingest/{id}/hooks/github"));
    assert_eq!(first["query"], "a=1&b=two");
    assert_eq!(first["headers"]["content-type"], "application/json");
    assert_eq!(first["body"], r#"{"type":"order.created"}"#);
    assert_eq!((first["body_encoding"].as_str(), first["size"].as_u64()), (Some("utf8"), Some(24)));
    assert_eq!(first["source_ip"], "127.0.0.1");
    assert_eq!(first["status"], 200);
    assert!(first["id"].as_str().unwrap().starts_with("evt_"), "{first}");
    assert!(first["received_at"].as_str().unwrap().ends_with('Z'), "{first}");
    assert!(first["duration_ms"].is_number(), "{first}");
    assert!(first["headers"].get("x-request-id").is_none(), "only what the sender sent: {first}");
    let put = &events[4];
    assert_eq!((put["method"].as_str(), put["body_encoding"].as_str()), (Some("PUT"), Some("base64")));
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(put["body"].as_str().unwrap()).unwrap(), binary);
    assert_eq!(events[0]["headers"]["x-custom"], "one, two", "repeated headers are joined");
    let methods: Vec<&str> = events.iter().map(|e| e["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["POST", "DELETE", "PATCH", "GET", "PUT", "POST"]);

    // A custom answer, through the other mount of the same API.
    let (status, session, _) = s
        .request(
            "PATCH",
            &format!("/v1/test/sessions/{id}/response"),
            None,
            Some(&json!({"status_code": 202, "content_type": "text/plain", "body": "thanks"})),
        )
        .await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["response"], json!({"status_code": 202, "content_type": "text/plain", "body": "thanks"}));
    assert_eq!(send(&s, "POST", &url, "text/plain", b"x".to_vec()).await, (202, "text/plain".into(), "thanks".into()));
    let (_, _, _) = s
        .request("PATCH", &format!("/v1/agent/sessions/{id}/response"), None, Some(&json!({"status_code": 503})))
        .await;
    assert_eq!(
        send(&s, "POST", &url, "text/plain", b"y".to_vec()).await,
        (503, "text/plain".into(), "thanks".into()),
        "fields left out keep their value"
    );
    let newest = listing(&s, &id, "limit=2").await;
    let statuses: Vec<u64> =
        newest["events"].as_array().unwrap().iter().map(|e| e["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [503, 202], "each event records the status it was answered with");
}

#[tokio::test]
async fn listings_filter_and_page_with_a_cursor_that_survives_concurrent_ingest() {
    let s = Server::start().await;
    let (id, url) = create(&s, "agent").await;
    for i in 0..12 {
        let method = if i % 3 == 0 { "PUT" } else { "POST" };
        let body = if i == 4 { "the NEEDLE is here".to_string() } else { format!("event {i}") };
        assert_eq!(send(&s, method, &url, "text/plain", body.into_bytes()).await.0, 200);
    }
    s.client.post(&url).header("x-trace", "needle-in-a-header").body("plain").send().await.unwrap();
    s.request("PATCH", &format!("/v1/agent/sessions/{id}/response"), None, Some(&json!({"status_code": 500}))).await;
    for _ in 0..3 {
        post_json(&s, &url, json!({"fails": true})).await;
    }
    // 16 events: 1..12 answered 200 (1, 4, 7, 10 by PUT), 13 with a header match, 14..16 answered 500.
    assert_eq!(seqs(&listing(&s, &id, "method=put").await), [10, 7, 4, 1]);
    assert_eq!(seqs(&listing(&s, &id, "status=5xx").await), [16, 15, 14]);
    assert_eq!(seqs(&listing(&s, &id, "status=2xx&method=PUT&limit=2").await), [10, 7]);
    assert_eq!(seqs(&listing(&s, &id, "q=needle").await), [13, 5], "in the body or the headers, any case");
    assert_eq!(seqs(&listing(&s, &id, "status=4xx").await), Vec::<u64>::new());
    let filtered = listing(&s, &id, "method=PUT&limit=3").await;
    assert_eq!(filtered["pagination"]["has_more"], json!(true));
    let cursor = filtered["pagination"]["next_cursor"].as_str().unwrap().to_string();
    assert_eq!(seqs(&listing(&s, &id, &format!("method=PUT&limit=3&cursor={cursor}")).await), [1]);

    // Page by 5 while another client keeps sending: every event present when paging began is
    // seen exactly once, newest first, and the new ones do not disturb the cursor.
    let ingest = {
        let (client, url) = (s.client.clone(), url.clone());
        tokio::spawn(async move {
            for i in 0..100 {
                client.post(&url).body(format!("concurrent {i}")).send().await.unwrap();
            }
        })
    };
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut top = None;
    loop {
        let page = listing(&s, &id, &format!("limit=5&cursor={cursor}")).await;
        let page_seqs = seqs(&page);
        top.get_or_insert(page_seqs[0]);
        seen.extend(page_seqs);
        if page["pagination"]["has_more"] == json!(false) {
            assert_eq!(page["pagination"]["next_cursor"], Value::Null);
            break;
        }
        cursor = page["pagination"]["next_cursor"].as_str().unwrap().to_string();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ingest.await.unwrap();
    let top = top.unwrap();
    assert!(top >= 16, "{top}");
    assert_eq!(seen, (1..=top).rev().collect::<Vec<_>>(), "each event once, in order");
    assert_eq!(listing(&s, &id, "limit=1").await["session"]["request_count"], json!(116));
    assert_eq!(listing(&s, &id, "limit=500").await["events"].as_array().unwrap().len(), 100, "at most 100 per page");
}

#[tokio::test]
async fn exports_stream_every_event_as_ndjson_or_csv() {
    let s = Server::start().await;
    let (id, url) = create(&s, "agent").await;
    let tricky = "a,b \"quoted\"\nsecond line\r\nthird";
    send(&s, "POST", &url, "text/plain", tricky.as_bytes().to_vec()).await;
    send(&s, "PUT", &format!("{url}?x=1,2"), "application/octet-stream", vec![0xc3, 0x28]).await;
    for i in 0..1200 {
        send(&s, "POST", &url, "application/json", json!({ "n": i }).to_string().into_bytes()).await;
    }

    let response = s.client.get(s.url(&format!("/v1/agent/sessions/{id}/export"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("one JSON event per line")).collect();
    assert_eq!(lines.len(), 1202);
    assert_eq!(lines[0]["body"], tricky);
    assert_eq!(lines[1201]["body"], r#"{"n":1199}"#, "oldest first, all of them");
    assert_eq!(lines.iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>(), (1..=1202).collect::<Vec<_>>());

    let response = s.client.get(s.url(&format!("/v1/test/sessions/{id}/export?format=csv"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = response.text().await.unwrap();
    // Read back with Python's standard csv module, independently of the writer.
    let script = r#"
import csv, json, sys
rows = list(csv.DictReader(sys.stdin, strict=True))
print(json.dumps({"count": len(rows), "fields": list(rows[0].keys()), "first": rows[0], "second": rows[1]}))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 reads the CSV");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(csv.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    let parsed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(parsed["count"], 1202);
    assert_eq!(parsed["first"]["body"], tricky, "commas, quotes and newlines survive");
    assert_eq!(parsed["first"]["method"], "POST");
    assert_eq!(parsed["second"]["query"], "x=1,2");
    assert_eq!(parsed["second"]["body_encoding"], "base64");
    let headers: Value = serde_json::from_str(parsed["first"]["headers"].as_str().unwrap()).unwrap();
    assert_eq!(headers["content-type"], "text/plain");
    assert!(parsed["fields"].as_array().unwrap().contains(&json!("received_at")));

    let (empty, _) = create(&s, "agent").await;
    let csv = s.client.get(s.url(&format!("/v1/agent/sessions/{empty}/export?format=csv"))).send().await.unwrap();
    assert!(csv.text().await.unwrap().starts_with("id,seq,"), "an empty export still has its header row");
    let (status, body) = s.get_json(&format!("/v1/agent/sessions/{id}/export?format=xml")).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("ndjson or csv"), "{body}");
}

#[tokio::test]
async fn limits_expiry_and_deletion_answer_clearly_and_record_nothing() {
    let s = Server::start_with(
        CONFIG,
        ":memory:",
        &["--capture-sessions-per-hour", "2", "--capture-request-limit", "3", "--capture-ttl", "2s"],
    )
    .await;
    let (id, url) = create(&s, "agent").await;
    create(&s, "test").await;
    let response = s.client.post(s.url("/v1/agent/sessions")).send().await.unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("per client address per hour"), "{body}");

    for i in 0..3 {
        assert_eq!(post_json(&s, &url, json!({ "i": i })).await, 200);
    }
    let (status, _, text) = send(&s, "POST", &url, "text/plain", b"one too many".to_vec()).await;
    assert_eq!(status, 429);
    assert!(text.contains("limit of 3 requests"), "{text}");
    assert_eq!(listing(&s, &id, "").await["session"]["request_count"], json!(3), "the refused request is not recorded");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _, text) = send(&s, "POST", &url, "text/plain", b"late".to_vec()).await;
    assert_eq!(status, 410, "{text}");
    assert!(text.contains("expired"), "{text}");
    let (status, body) = s.get_json(&format!("/v1/agent/sessions/{id}")).await;
    assert_eq!(status, 410, "{body}");
    // The sweeper purges it; then the id is unknown.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = s.get_json(&format!("/v1/agent/sessions/{id}")).await;
        if status == 404 {
            assert!(body["error"].as_str().unwrap().contains("not found"), "{body}");
            break;
        }
        assert_eq!(status, 410, "{body}");
        assert!(std::time::Instant::now() < deadline, "expired session never purged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let s = Server::start().await;
    let (id, url) = create(&s, "agent").await;
    post_json(&s, &url, json!({})).await;
    for _ in 0..2 {
        let (status, body, _) = s.request("DELETE", &format!("/v1/agent/sessions/{id}"), None, None).await;
        assert_eq!((status, body), (204, Value::Null), "idempotent");
    }
    assert_eq!(post_json(&s, &url, json!({})).await, 404);
    assert_eq!(s.get_json(&format!("/v1/agent/sessions/{id}")).await.0, 404);
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_affects_nothing_else() {
    let s = Server::start_with(CONFIG, ":memory:", &["--max-body-bytes", "4096"]).await;
    let (id, url) = create(&s, "agent").await;
    post_json(&s, &url, json!({"kept": true})).await;
    for (query, needle) in [
        ("cursor=bm9wZQ", "cursor"),
        ("cursor=%21%21", "cursor"),
        ("status=200", "status"),
        ("status=9xx", "status"),
        ("method=G%20T", "method"),
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
    ] {
        let (status, body) = s.get_json(&format!("/v1/agent/sessions/{id}?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"].as_str().unwrap().contains(needle), "{query}: {body}");
    }
    for unknown in ["0123456789abcdef0123456789abcdef", "not-a-session", "%00"] {
        let (status, body) = s.get_json(&format!("/v1/agent/sessions/{unknown}")).await;
        assert_eq!(status, 404, "{unknown}: {body}");
        let (status, _, text) = send(&s, "POST", &s.url(&format!("/v1/ingest/{unknown}")), "text/plain", vec![]).await;
        assert_eq!(status, 404, "{unknown}: {text}");
        assert!(text.contains("not found"), "{text}");
    }
    let patch = |body: &'static str| {
        let (client, url) = (s.client.clone(), s.url(&format!("/v1/agent/sessions/{id}/response")));
        async move {
            let response =
                client.patch(url).header("content-type", "application/json").body(body).send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let big_body = format!(r#"{{"body": "{}"}}"#, "x".repeat(4097));
    let big_body: &'static str = Box::leak(big_body.into_boxed_str());
    for (body, needle) in [
        ("{", "invalid request body"),
        (r#"{"status_code": 199}"#, "status_code"),
        (r#"{"status_code": 600}"#, "status_code"),
        (r#"{"status_code": "ok"}"#, "status_code"),
        (r#"{"content_type": "text/plain\n"}"#, "content_type"),
        (r#"{"colour": "red"}"#, "colour"),
        (big_body, "at most 4096 bytes"),
    ] {
        let (status, answer) = patch(body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(needle), "{body}: {answer}");
    }

    // Bodies up to the limit are recorded; beyond it, 413 and nothing recorded.
    assert_eq!(send(&s, "POST", &url, "text/plain", vec![b'a'; 4096]).await.0, 200);
    let (status, _, text) = send(&s, "POST", &url, "text/plain", vec![b'a'; 4097]).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("larger than 4096 bytes"), "{text}");
    // Invalid UTF-8 is kept byte for byte.
    assert_eq!(send(&s, "POST", &url, "text/plain", vec![b'o', b'k', 0xff]).await.0, 200);
    // Huge headers are refused, not recorded.
    let (status, _, text) = {
        let response = s.client.post(&url).header("x-huge", "h".repeat(100_000)).body("x").send().await.unwrap();
        (response.status().as_u16(), (), response.text().await.unwrap())
    };
    assert_eq!(status, 431, "{text}");
    assert!(text.contains("headers"), "{text}");
    let page = listing(&s, &id, "").await;
    assert_eq!(page["session"]["request_count"], json!(3), "exactly the valid requests: {page}");
    assert_eq!(page["events"][0]["body"], "b2v/", "base64 of the invalid UTF-8 body");
    assert_eq!(page["events"][1]["size"], 4096);
    assert_eq!(page["session"]["response"]["status_code"], 200, "no bad patch applied");
}

/// Creates an app; returns (app id, token).
async fn create_app(s: &Server, name: &str) -> (String, String) {
    let (status, body) = s
        .admin(
            "POST",
            "/admin/apps",
            Some(json!({ "name": name, "config_json": {"agents": {"helper": {"type": "echo"}}} })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (body["app"]["id"].as_str().unwrap().to_string(), body["access_token"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn a_claimed_session_belongs_to_its_app_for_good() {
    let s =
        Server::start_with(CONFIG, ":memory:", &["--auth-secret", ADMIN_SECRET, "--capture-request-limit", "2"]).await;
    let (app_id, token) = create_app(&s, "owner").await;
    let (_, other_token) = create_app(&s, "other").await;
    let (id, url) = create(&s, "agent").await;
    post_json(&s, &url, json!({"before": "claim"})).await;

    let claim = format!("/v1/test/sessions/{id}/claim");
    let (status, body, _) = s.request("POST", &claim, None, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("app token"), "{body}");
    let (status, session, _) = s.request("POST", &claim, Some(&token), None).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(
        (&session["claimed_by"], &session["expires_at"], &session["request_limit"]),
        (&json!(app_id), &Value::Null, &Value::Null)
    );
    assert_eq!(session["url"], json!(url), "the same URL");
    assert_eq!(s.request("POST", &claim, Some(&token), None).await.0, 200, "claiming again is harmless");
    assert_eq!(s.request("POST", &claim, Some(&other_token), None).await.0, 403);

    for i in 0..5 {
        assert_eq!(post_json(&s, &url, json!({ "after": i })).await, 200, "no request limit any more");
    }
    let path = format!("/v1/agent/sessions/{id}");
    let (status, body, _) = s.request("GET", &path, None, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(s.request("GET", &path, Some(&other_token), None).await.0, 403);
    let (status, page, _) = s.request("GET", &path, Some(&token), None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["session"]["request_count"], 6, "events from before the claim are kept");
    assert_eq!(s.admin("GET", &path, None).await.0, 200, "the admin secret reads it too");
    assert_eq!(s.request("DELETE", &path, None, None).await.0, 401);
    assert_eq!(s.request("DELETE", &path, Some(&token), None).await.0, 204);
    assert_eq!(post_json(&s, &url, json!({})).await, 404);
}

#[tokio::test]
async fn live_views_push_each_event_as_it_lands() {
    let s = Server::start().await;
    let (id, url) = create(&s, "agent").await;
    let stream_url = s.url(&format!("/v1/agent/sessions/{id}/events/stream"));
    let response = s.client.get(&stream_url).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut sse = SseReader::from_response(response);
    let ws_url = format!("{}/v1/ws/sessions/{id}", s.base.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.expect("WebSocket");

    for i in 1..=3 {
        post_json(&s, &url, json!({ "n": i })).await;
    }
    for i in 1..=3u64 {
        let event = sse.next().await.expect("an SSE event");
        assert_eq!(event.id.as_deref(), Some(i.to_string().as_str()));
        assert_eq!(event.data["seq"], i);
        assert_eq!(event.data["body"], json!({ "n": i }).to_string());
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
        let data: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
        assert_eq!(data["seq"], i, "WebSocket frames in order");
    }

    // Resuming with Last-Event-ID replays what was missed, then goes on live.
    let response = s.client.get(&stream_url).header("last-event-id", "1").send().await.unwrap();
    let mut resumed = SseReader::from_response(response);
    assert_eq!(resumed.next().await.unwrap().data["seq"], 2);
    assert_eq!(resumed.next().await.unwrap().data["seq"], 3);
    post_json(&s, &url, json!({ "n": 4 })).await;
    assert_eq!(resumed.next().await.unwrap().data["seq"], 4);
    assert_eq!(sse.next().await.unwrap().data["seq"], 4);

    // Deleting the session ends every live view.
    assert_eq!(s.request("DELETE", &format!("/v1/agent/sessions/{id}"), None, None).await.0, 204);
    assert!(sse.next().await.is_none(), "the SSE stream ends");
    assert!(resumed.next().await.is_none());
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    });
    end.await.expect("the WebSocket closes");
    let _ = ws.close(None).await;
    let (status, body) = s.get_json(&format!("/v1/agent/sessions/{id}/events/stream")).await;
    assert_eq!(status, 404, "{body}");
    let _ = ws.send(tokio_tungstenite::tungstenite::Message::Close(None)).await;
}

#[tokio::test]
async fn recorded_requests_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_with(CONFIG, dir.path().to_str().unwrap(), &[]).await;
    let (id, url) = create(&s, "agent").await;
    for i in 0..5 {
        assert_eq!(post_json(&s, &url, json!({ "i": i })).await, 200);
    }
    s.kill9();
    let s = s.restart(&[]);
    let page = listing(&s, &id, "").await;
    assert_eq!(seqs(&page), [5, 4, 3, 2, 1], "{page}");
    assert!(url.ends_with(&format!("/v1/ingest/{id}")));
    assert_eq!(post_json(&s, &s.url(&format!("/v1/ingest/{id}")), json!({"after": "restart"})).await, 200);
    assert_eq!(seqs(&listing(&s, &id, "limit=1").await), [6], "numbering goes on");
}
