//! Outgoing deliveries over HTTP, through capture-session forwarding and push notifications:
//! signed with Standard Webhooks (checked here with an HMAC computed in the test), retried on
//! the schedule until the receiver accepts, `Retry-After` honoured, `410` and exhausted
//! attempts give up, every attempt recorded for `/admin/deliveries`, the SSRF guard, and
//! pending deliveries surviving kill -9.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// One answer of the receiver: a status and optional extra header.
#[derive(Clone)]
struct Answer {
    status: u16,
    header: Option<(&'static str, &'static str)>,
}

fn answer(status: u16) -> Answer {
    Answer { status, header: None }
}

/// What the receiver got.
#[derive(Debug)]
struct Received {
    method: String,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
    at: std::time::Instant,
}

#[derive(Clone)]
struct Receiver {
    answers: Arc<Mutex<Vec<Answer>>>,
    tx: mpsc::UnboundedSender<Received>,
    /// While set, every request waits for a permit before it is answered.
    hold: Option<Arc<tokio::sync::Semaphore>>,
}

async fn receive(
    axum::extract::State(r): axum::extract::State<Receiver>,
    method: axum::http::Method,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let _ =
        r.tx.send(Received { method: method.to_string(), headers, body: body.to_vec(), at: std::time::Instant::now() });
    if let Some(hold) = &r.hold {
        let _ = hold.acquire().await.map(|p| p.forget());
    }
    let next = {
        let mut answers = r.answers.lock().unwrap();
        if answers.len() > 1 {
            answers.remove(0)
        } else {
            answers[0].clone()
        }
    };
    let status = axum::http::StatusCode::from_u16(next.status).unwrap();
    match next.header {
        Some((name, value)) => (status, [(name, value)], "receiver says so").into_response(),
        None => (status, "receiver says so").into_response(),
    }
}

/// A receiver on `addr` (127.0.0.1:0 for any port) answering `answers` in turn (the last one
/// from then on); returns its URL and what it receives.
async fn receiver_on(
    addr: &str,
    answers: Vec<Answer>,
    hold: Option<Arc<tokio::sync::Semaphore>>,
) -> (String, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind receiver");
    let local = listener.local_addr().unwrap();
    let state = Receiver { answers: Arc::new(Mutex::new(answers)), tx, hold };
    let app = axum::Router::new().route("/hook", axum::routing::any(receive)).with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{local}/hook"), rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Received>, what: &str) -> Received {
    match tokio::time::timeout(Duration::from_secs(15), rx.recv()).await {
        Ok(Some(r)) => r,
        _ => panic!("receiver: {what} did not arrive in time"),
    }
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Checks a Standard Webhooks signature with an HMAC computed here.
fn assert_signed(r: &Received, secret: &str) {
    let key = base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
    let mut signed = format!("{}.{}.", header(r, "webhook-id"), header(r, "webhook-timestamp")).into_bytes();
    signed.extend_from_slice(&r.body);
    let expected = base64::engine::general_purpose::STANDARD.encode(aws_lc_rs::hmac::sign(&key, &signed).as_ref());
    assert_eq!(header(r, "webhook-signature"), format!("v1,{expected}"), "{r:?}");
    let at: u64 = header(r, "webhook-timestamp").parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(at.abs_diff(now) < 60, "a current timestamp: {at}");
}

const FAST: [&str; 4] = ["--auth-secret", ADMIN_SECRET, "--delivery-schedule", "100ms,100ms,100ms"];

async fn start(extra: &[&str]) -> Server {
    let mut args = FAST.to_vec();
    args.extend_from_slice(extra);
    Server::start_with(CONFIG, ":memory:", &args).await
}

/// A capture session forwarding to `url`; returns (session id, ingest URL, signing secret).
async fn forwarding_session(s: &Server, url: &str) -> (String, String, String) {
    let (status, created, _) = s.request("POST", "/v1/agent/sessions", None, None).await;
    assert_eq!(status, 201, "{created}");
    let id = created["session_id"].as_str().unwrap().to_string();
    let (status, session, _) =
        s.request("PATCH", &format!("/v1/agent/sessions/{id}/forwarding"), None, Some(&json!({ "url": url }))).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["forwarding"]["url"], url);
    let secret = session["forwarding"]["secret"].as_str().expect("a signing secret").to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (id, created["url"].as_str().unwrap().to_string(), secret)
}

/// The deliveries listed for a source, once they all stopped being pending.
async fn settled_deliveries(s: &Server, source: &str, count: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = s.admin("GET", &format!("/admin/deliveries?source={source}"), None).await;
        assert_eq!(status, 200, "{body}");
        let items = body["deliveries"].as_array().unwrap().clone();
        if items.len() == count && items.iter().all(|d| d["state"] != "pending") {
            return items;
        }
        assert!(std::time::Instant::now() < deadline, "deliveries never settled: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn forwarding_relays_each_request_signed_and_retries_until_the_receiver_accepts() {
    let s = start(&["--allow-private-targets"]).await;
    let hold = Arc::new(tokio::sync::Semaphore::new(0));
    let (url, mut rx) =
        receiver_on("127.0.0.1:0", vec![answer(500), answer(502), answer(200)], Some(hold.clone())).await;
    let (id, ingest, secret) = forwarding_session(&s, &url).await;

    let response = s
        .client
        .put(format!("{ingest}?order=7"))
        .header("content-type", "application/json")
        .header("x-shop-topic", "orders/create")
        .body(r#"{"order": 7}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "ingest answers while the receiver still holds the relay");
    let first = next(&mut rx, "the first relay").await;
    hold.add_permits(100);

    let second = next(&mut rx, "the second attempt").await;
    let third = next(&mut rx, "the third attempt").await;
    for r in [&first, &second, &third] {
        assert_eq!(r.method, "PUT");
        assert_eq!(r.body, br#"{"order": 7}"#);
        assert_eq!(header(r, "content-type"), "application/json");
        assert_eq!(header(r, "x-shop-topic"), "orders/create");
        assert_eq!(header(r, "x-capture-session"), id);
        assert!(header(r, "x-capture-event").starts_with("evt_"), "{r:?}");
        assert_signed(r, &secret);
    }
    assert_eq!(header(&first, "webhook-id"), header(&third, "webhook-id"), "one message id across retries");
    assert!(header(&first, "webhook-id").starts_with("msg_"));

    let deliveries = settled_deliveries(&s, &id, 1).await;
    let delivery = &deliveries[0];
    assert_eq!((delivery["kind"].as_str(), delivery["state"].as_str()), (Some("forward"), Some("delivered")));
    assert_eq!(delivery["url"], url);
    assert_eq!(delivery["signed"], true);
    let attempts = delivery["attempts"].as_array().unwrap();
    let statuses: Vec<u64> = attempts.iter().map(|a| a["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [500, 502, 200], "every attempt is recorded");
    assert!(attempts[0]["error"].as_str().unwrap().contains("500"), "{delivery}");
    assert_eq!(attempts[2]["error"], Value::Null);
    assert!(attempts.iter().all(|a| a["latency_ms"].is_u64()));
    let (status, one) = s.admin("GET", &format!("/admin/deliveries/{}", delivery["id"].as_str().unwrap()), None).await;
    assert_eq!((status, &one), (200, delivery));

    // Forwarding off: requests are still recorded, nothing more is relayed.
    let (status, session, _) =
        s.request("PATCH", &format!("/v1/agent/sessions/{id}/forwarding"), None, Some(&json!({ "url": null }))).await;
    assert_eq!((status, &session["forwarding"]), (200, &Value::Null), "{session}");
    assert_eq!(s.client.post(&ingest).body("quiet").send().await.unwrap().status(), 200);
    assert_eq!(s.get_json(&format!("/v1/agent/sessions/{id}")).await.1["session"]["request_count"], 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rx.try_recv().is_err(), "nothing relayed after forwarding was turned off");
}

#[tokio::test]
async fn deliveries_give_up_when_told_or_out_of_attempts_and_honour_retry_after() {
    let s = start(&["--allow-private-targets"]).await;
    let (always_failing, mut failing_rx) = receiver_on("127.0.0.1:0", vec![answer(500)], None).await;
    let (gone, _gone_rx) = receiver_on("127.0.0.1:0", vec![answer(410)], None).await;
    let slow_down = Answer { status: 429, header: Some(("retry-after", "1")) };
    let (busy, mut busy_rx) = receiver_on("127.0.0.1:0", vec![slow_down, answer(204)], None).await;

    let mut sources = Vec::new();
    for url in [&always_failing, &gone, &busy] {
        let (id, ingest, _) = forwarding_session(&s, url).await;
        assert_eq!(s.client.post(&ingest).body("x").send().await.unwrap().status(), 200);
        sources.push(id);
    }
    let failing = &settled_deliveries(&s, &sources[0], 1).await[0];
    assert_eq!(failing["state"], "failed");
    assert_eq!(failing["attempts"].as_array().unwrap().len(), 4, "one attempt plus the three of the schedule");
    for _ in 0..4 {
        next(&mut failing_rx, "each attempt").await;
    }
    let gone = &settled_deliveries(&s, &sources[1], 1).await[0];
    assert_eq!(gone["state"], "failed");
    assert_eq!(gone["attempts"].as_array().unwrap().len(), 1, "410 Gone is final: {gone}");
    let busy = &settled_deliveries(&s, &sources[2], 1).await[0];
    assert_eq!(busy["state"], "delivered", "{busy}");
    let first = next(&mut busy_rx, "the refused attempt").await;
    let second = next(&mut busy_rx, "the attempt after Retry-After").await;
    assert!(
        second.at - first.at >= Duration::from_millis(900),
        "waited as asked, not 100 ms: {:?}",
        second.at - first.at
    );

    let (status, failed) = s.admin("GET", "/admin/deliveries?state=failed&kind=forward", None).await;
    assert_eq!(status, 200);
    assert_eq!(failed["deliveries"].as_array().unwrap().len(), 2, "{failed}");
    // Newest first: each ingest's delivery is stored in the background, so under load they may
    // be stored in another order than the ingests were answered; their ids (UUID v7) tell.
    let (_, all) = s.admin("GET", "/admin/deliveries?limit=10", None).await;
    let all = all["deliveries"].as_array().unwrap().clone();
    let ids: Vec<&str> = all.iter().map(|d| d["id"].as_str().unwrap()).collect();
    let mut newest_first = ids.clone();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!((ids.len(), &ids), (3, &newest_first), "newest first");
    let created: Vec<&str> = all.iter().map(|d| d["created_at"].as_str().unwrap()).collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "{created:?}");
    let (status, page) = s.admin("GET", "/admin/deliveries?limit=1", None).await;
    assert_eq!(status, 200);
    assert_eq!(page["deliveries"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["deliveries"][0]["id"], all[0]["id"]);
    let cursor = page["next_cursor"].as_str().expect("more to read").to_string();
    let (_, rest) = s.admin("GET", &format!("/admin/deliveries?limit=10&cursor={cursor}"), None).await;
    assert_eq!(rest["deliveries"].as_array().unwrap()[..], all[1..], "{rest}");
    assert_eq!(rest["next_cursor"], Value::Null);
}

#[tokio::test]
async fn the_ssrf_guard_refuses_private_targets_by_default() {
    let s = start(&[]).await;
    let (url, mut rx) = receiver_on("127.0.0.1:0", vec![answer(200)], None).await;
    let (status, created, _) = s.request("POST", "/v1/agent/sessions", None, None).await;
    assert_eq!(status, 201);
    let id = created["session_id"].as_str().unwrap();
    let forwarding = format!("/v1/agent/sessions/{id}/forwarding");
    for (body, needle) in [
        (json!({ "url": url }), "--allow-private-targets"),
        (json!({"url": "http://169.254.169.254/latest/meta-data"}), "private"),
        (json!({"url": "http://localhost:9/x"}), "private"),
        (json!({"url": "ftp://example.com/x"}), "http and https"),
        (json!({"url": "not a url"}), "not a valid URL"),
        (json!({}), "url: required"),
        (json!({"url": 7}), "url"),
    ] {
        let (status, answer, _) = s.request("PATCH", &forwarding, None, Some(&body)).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(needle), "{body}: {answer}");
    }
    assert_eq!(s.get_json(&format!("/v1/agent/sessions/{id}")).await.1["session"]["forwarding"], Value::Null);

    // Push notifications to a private address are refused when delivered, and recorded so.
    let task = s
        .result(
            "echo",
            "message/send",
            json!({"message": user_message("push?"), "configuration": {"pushNotificationConfig": {"url": url}}}),
        )
        .await;
    let task_id = task["id"].as_str().unwrap();
    let refused = settled_deliveries(&s, task_id, 3).await;
    for delivery in &refused {
        assert_eq!((delivery["kind"].as_str(), delivery["state"].as_str()), (Some("push"), Some("failed")));
        let attempts = delivery["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "a refused target is not retried: {delivery}");
        assert!(attempts[0]["error"].as_str().unwrap().contains("private"), "{delivery}");
    }
    // A name that resolves to a private address is refused by the client's resolver alike.
    let by_name = url.replace("127.0.0.1", "localhost");
    let task = s
        .result(
            "echo",
            "message/send",
            json!({"message": user_message("push?"), "configuration": {"pushNotificationConfig": {"url": by_name}}}),
        )
        .await;
    for delivery in settled_deliveries(&s, task["id"].as_str().unwrap(), 3).await {
        assert_eq!(delivery["state"], "failed", "{delivery}");
        let attempts = delivery["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "a refused name is not retried: {delivery}");
        assert!(attempts[0]["error"].as_str().unwrap().contains("localhost is a private"), "{delivery}");
    }
    assert!(rx.try_recv().is_err(), "nothing reached the private receiver");

    let (status, body) = s.admin("GET", "/admin/deliveries?kind=email", None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("push, callback or forward"), "{body}");
    assert_eq!(s.admin("GET", "/admin/deliveries?state=lost", None).await.0, 400);
    assert_eq!(s.admin("GET", "/admin/deliveries/0195e0e0-0000-7000-8000-000000000000", None).await.0, 404);
    assert_eq!(s.request("GET", "/admin/deliveries", None, None).await.0, 401, "admins only");
}

#[tokio::test]
async fn a_pending_delivery_survives_kill_9() {
    // A port with nothing listening yet: attempts fail until the receiver starts.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--allow-private-targets",
        "--delivery-schedule",
        "300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms",
    ];
    let mut s = Server::start_with(CONFIG, dir.path().to_str().unwrap(), &args).await;
    let url = format!("http://127.0.0.1:{port}/hook");
    let (status, created, _) = s.request("POST", "/v1/agent/sessions", None, None).await;
    assert_eq!(status, 201);
    let id = created["session_id"].as_str().unwrap().to_string();
    let (status, _, _) =
        s.request("PATCH", &format!("/v1/agent/sessions/{id}/forwarding"), None, Some(&json!({ "url": url }))).await;
    assert_eq!(status, 200);
    let ingest = s.url(&format!("/v1/ingest/{id}"));
    assert_eq!(s.client.post(&ingest).body("must arrive").send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.kill9();

    let (_, mut rx) = receiver_on(&format!("127.0.0.1:{port}"), vec![answer(200)], None).await;
    let _s = s.restart(&args);
    let arrived = next(&mut rx, "the delivery after the restart").await;
    assert_eq!(arrived.body, b"must arrive");
}

#[tokio::test]
async fn a_failing_target_is_rested_by_its_circuit_breaker() {
    let args = ["--delivery-breaker-failures", "2", "--delivery-breaker-rest", "2s", "--allow-private-targets"];
    let s =
        Server::start_with(CONFIG, ":memory:", &[&["--delivery-schedule", "50ms,50ms,50ms"][..], &args].concat()).await;
    let (url, mut rx) = receiver_on("127.0.0.1:0", vec![answer(503), answer(503), answer(200)], None).await;
    let (_, ingest, _) = forwarding_session(&s, &url).await;
    assert_eq!(s.client.post(&ingest).body("x").send().await.unwrap().status(), 200);
    let first = next(&mut rx, "the first attempt").await;
    let second = next(&mut rx, "the second attempt").await;
    let third = next(&mut rx, "the trial after the rest").await;
    assert!(second.at - first.at < Duration::from_secs(1), "on the schedule: {:?}", second.at - first.at);
    assert!(third.at - second.at >= Duration::from_millis(1900), "rested first: {:?}", third.at - second.at);
}
