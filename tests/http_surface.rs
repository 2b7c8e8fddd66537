//! The HTTP surface around the JSON-RPC endpoint: discovery (agent cards, agent list), health,
//! config schema, request ids, body limit, CORS, the CLI subcommands, unknown paths.

mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

/// GETs `path` with extra headers; returns (status, headers, JSON body).
async fn get_with(s: &Server, path: &str, headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = s.client.get(s.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("GET");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {text}"));
    (status, headers, body)
}

/// Checks the fixed parts of a card and returns its url.
fn check_card(card: &Value, name: &str) -> String {
    assert_valid("AgentCard", card);
    assert_eq!(card["name"], name, "{card}");
    assert_eq!(card["protocolVersion"], "0.3.0");
    assert_eq!(card["preferredTransport"], "JSONRPC");
    assert_eq!(card["capabilities"]["streaming"], true);
    assert_eq!(card["capabilities"]["pushNotifications"], true);
    assert_eq!(card["capabilities"]["stateTransitionHistory"], true);
    card["url"].as_str().expect("url").to_string()
}

// ---------------------------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn well_known_cards_describe_the_default_agent() {
    let s = Server::start().await;
    for path in ["/.well-known/agent-card.json", "/.well-known/agent.json"] {
        let (status, headers, card) = get_with(&s, path, &[]).await;
        assert_eq!(status, 200, "GET {path}: {card}");
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(content_type.starts_with("application/json"), "{content_type}");
        let url = check_card(&card, "echo");
        assert_eq!(url, format!("{}/agents/echo", s.base), "the url must be the absolute JSON-RPC endpoint");
        assert_eq!(card["description"], "Echoes text back");
        assert_eq!(card["skills"][0]["id"], "echo");
    }
}

#[tokio::test]
async fn card_url_follows_forwarded_headers() {
    let s = Server::start().await;
    let (status, _, card) = get_with(
        &s,
        "/.well-known/agent-card.json",
        &[("x-forwarded-proto", "https"), ("x-forwarded-host", "a2a.example.com")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(check_card(&card, "echo"), "https://a2a.example.com/agents/echo");
}

#[tokio::test]
async fn card_url_uses_public_url_flag() {
    let s = Server::start_with(CONFIG, ":memory:", &["--public-url", "https://pub.example"]).await;
    let (status, _, card) = get_with(
        &s,
        "/.well-known/agent-card.json",
        &[("x-forwarded-proto", "http"), ("x-forwarded-host", "ignored.example")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(check_card(&card, "echo"), "https://pub.example/agents/echo");
    let (_, slow) = s.get_json("/agents/slow").await;
    assert_eq!(slow["url"], "https://pub.example/agents/slow");
}

#[tokio::test]
async fn agents_list_shows_public_agents_only() {
    let s = Server::start().await;
    let (status, body) = s.get_json("/agents").await;
    assert_eq!(status, 200, "{body}");
    let agents = body["agents"].as_array().expect("agents array");
    let names: Vec<&str> = agents.iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(names, ["echo", "slow", "done"], "private agents are never listed: {body}");
    assert_eq!(body["total"], agents.len());
    for card in agents {
        let name = card["name"].as_str().unwrap();
        assert_eq!(check_card(card, name), format!("{}/agents/{name}", s.base));
    }
}

#[tokio::test]
async fn agent_card_is_served_at_the_agent_path_and_its_well_known() {
    let s = Server::start().await;
    for path in ["/agents/slow", "/agents/slow/.well-known/agent-card.json", "/agents/slow/.well-known/agent.json"] {
        let (status, card) = s.get_json(path).await;
        assert_eq!(status, 200, "GET {path}: {card}");
        assert_eq!(check_card(&card, "slow"), format!("{}/agents/slow", s.base), "GET {path}");
        assert_eq!(card["description"], "Echo that streams slowly");
    }
}

#[tokio::test]
async fn card_of_unknown_agent_is_404_json() {
    let s = Server::start().await;
    for path in ["/agents/nobody", "/agents/nobody/.well-known/agent-card.json"] {
        let (status, body) = s.get_json(path).await;
        assert_eq!(status, 404, "GET {path}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "GET {path}: {body}");
    }
}

// ---------------------------------------------------------------------------------------------
// System endpoints
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn health_reports_ok_store_and_version() {
    let s = Server::start().await;
    let (status, body) = s.get_json("/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    let store = match std::env::var("SWITCHYARD_TEST_BACKEND").as_deref() {
        Ok("redis") => "redis",
        Ok("redis-cluster") => "redis-cluster",
        _ => "memory",
    };
    assert_eq!(body["store"], store);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn schema_describes_the_agents_configuration() {
    let s = Server::start().await;
    let (status, schema) = s.get_json("/schema").await;
    assert_eq!(status, 200);
    assert!(schema.is_object());
    assert!(schema["$schema"].as_str().is_some_and(|v| v.contains("json-schema.org")), "{schema}");
    assert!(schema["properties"]["agents"].is_object(), "{schema}");
    assert!(schema["required"].as_array().is_some_and(|r| r.contains(&json!("agents"))), "{schema}");
    // The agent properties are described somewhere in the schema (inline or in definitions).
    let text = schema.to_string();
    for property in
        ["\"type\"", "\"end_state\"", "\"chunk_delay_ms\"", "\"visibility\"", "\"skills\"", "\"description\""]
    {
        assert!(text.contains(property), "the schema does not mention {property}: {schema}");
    }
    for value in ["input-required", "completed", "echo", "private"] {
        assert!(text.contains(value), "the schema does not mention {value}");
    }
}

#[tokio::test]
async fn request_id_is_echoed_when_sent() {
    let s = Server::start().await;
    let (_, headers, _) = get_with(&s, "/health", &[("x-request-id", "req-123")]).await;
    assert_eq!(headers.get("x-request-id").and_then(|v| v.to_str().ok()), Some("req-123"));
    let response = s
        .client
        .post(s.agent_url("echo"))
        .header("content-type", "application/json")
        .header("x-request-id", "req-456")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": "x"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("req-456"));
}

#[tokio::test]
async fn request_id_is_generated_when_absent() {
    let s = Server::start().await;
    let (_, first, _) = get_with(&s, "/health", &[]).await;
    let (_, second, _) = get_with(&s, "/health", &[]).await;
    let a = first.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    let b = second.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(!a.is_empty(), "{first:?}");
    assert!(!b.is_empty(), "{second:?}");
    assert_ne!(a, b, "each request gets its own id");
}

#[tokio::test]
async fn body_over_the_limit_is_413_json_and_the_server_keeps_serving() {
    let s = Server::start_with(CONFIG, ":memory:", &["--max-body-bytes", "1000"]).await;
    let message = user_message(&"word ".repeat(400));
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": message}}).to_string();
    assert!(big.len() >= 2000, "{}", big.len());
    let (status, body) = s.post_raw("echo", big).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    let task = s.send_text("echo", "still here").await;
    assert_eq!(task["status"]["state"], "input-required");
}

#[tokio::test]
async fn cors_preflight_is_allowed() {
    let s = Server::start().await;
    let response = s
        .client
        .request(reqwest::Method::OPTIONS, s.agent_url("echo"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type, last-event-id")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "preflight answered {}", response.status());
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let origin = header("access-control-allow-origin");
    assert!(origin == "*" || origin == "https://app.example", "allow-origin {origin:?}");
    let methods = header("access-control-allow-methods");
    assert!(methods == "*" || methods.contains("POST"), "allow-methods {methods:?}");
    let headers = header("access-control-allow-headers").to_ascii_lowercase();
    assert!(headers == "*" || headers.contains("content-type"), "allow-headers {headers:?}");
}

#[tokio::test]
async fn unknown_path_is_404_json() {
    let s = Server::start().await;
    for path in ["/nope", "/agents/echo/nope", "/.well-known/nothing.json"] {
        let (status, body) = s.get_json(path).await;
        assert_eq!(status, 404, "GET {path}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "GET {path}: {body}");
    }
}

// ---------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------

fn switchyard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard")).args(args).output().expect("run switchyard")
}

#[test]
fn validate_rejects_an_unknown_agent_type_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "agents:\n  helper:\n    type: llmm\n").unwrap();
    let out = switchyard(&["validate", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success(), "validate accepted a bad file");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("agents.helper.type"), "{text}");
    assert!(text.contains("llmm"), "{text}");
}

#[test]
fn validate_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.yaml");
    std::fs::write(&path, CONFIG).unwrap();
    let out = switchyard(&["validate", "--config", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "validate rejected a good file: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn version_prints_the_version() {
    let out = switchyard(&["version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
}

/// Writes `sent` (a request whose body is over the 1000-byte limit but not complete yet, as when a
/// client is still uploading), reads the answer, and checks that it is a 413 JSON error after
/// which the connection is either announced as closing (`Connection: close`) or still usable
/// once the client sends `rest` (the end of the body).
async fn check_413_mid_upload(s: &Server, sent: String, rest: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(sent.as_bytes()).await.unwrap();
    // Read the response; stop at EOF or when nothing more comes for a while.
    let mut received = Vec::new();
    let mut closed = false;
    loop {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(std::time::Duration::from_secs(1), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&received).to_string();
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("413 body is not JSON ({e}): {text}"));
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    let head = head.to_ascii_lowercase();
    if closed {
        // Closing without saying so makes keep-alive clients reuse a dead connection: their next
        // request fails (hyper: IncompleteMessage).
        assert!(
            head.lines().any(|l| l.starts_with("connection:") && l.contains("close")),
            "the server closed the connection after the 413 without `Connection: close`:\n{head}"
        );
    } else {
        // The connection is kept: finish the upload, then it must serve the next request.
        conn.write_all(rest).await.unwrap();
        conn.write_all(format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
        let mut buf = [0u8; 4096];
        let n = conn.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "connection unusable after 413");
    }
    let task = s.send_text("echo", "still here").await;
    assert_eq!(task["status"]["state"], "input-required");
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413_and_leaves_no_dead_keep_alive_connection() {
    let s = Server::start_with(CONFIG, ":memory:", &["--max-body-bytes", "1000"]).await;
    // A chunked body (no Content-Length) whose first chunk already exceeds the limit; the
    // terminating chunk is still to come when the server answers.
    let chunk = "x".repeat(2000);
    let sent = format!(
        "POST /agents/echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n",
        chunk.len()
    );
    check_413_mid_upload(&s, sent, b"0\r\n\r\n").await;
}

#[tokio::test]
async fn sized_body_over_the_limit_is_413_and_leaves_no_dead_keep_alive_connection() {
    let s = Server::start_with(CONFIG, ":memory:", &["--max-body-bytes", "1000"]).await;
    // Content-Length 2000; 1500 bytes (over the limit) are sent, 500 are still to come.
    let sent = format!(
        "POST /agents/echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: 2000\r\n\r\n{}",
        "x".repeat(1500)
    );
    check_413_mid_upload(&s, sent, "x".repeat(500).as_bytes()).await;
}

#[tokio::test]
async fn cors_origins_flag_restricts_allowed_origins() {
    let s = Server::start_with(CONFIG, ":memory:", &["--cors-origins", "https://app.example"]).await;
    let allow = |origin: &'static str| {
        let request = s.client.get(s.url("/health")).header("origin", origin);
        async move {
            let response = request.send().await.unwrap();
            response.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()).map(str::to_string)
        }
    };
    assert_eq!(allow("https://app.example").await.as_deref(), Some("https://app.example"));
    assert_eq!(allow("https://evil.example").await, None);
}

#[tokio::test]
async fn public_url_trailing_slash_is_not_doubled() {
    let s = Server::start_with(CONFIG, ":memory:", &["--public-url", "https://pub.example/"]).await;
    let (_, card) = s.get_json("/.well-known/agent-card.json").await;
    assert_eq!(card["url"], "https://pub.example/agents/echo");
}
