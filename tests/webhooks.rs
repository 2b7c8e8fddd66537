//! Webhook triggers over HTTP: routing, the three signature schemes (signatures computed here
//! with an HMAC of the test's own), replay and staleness refusal, templates, the three
//! response modes with a real local receiver for callbacks, and bad input. The official
//! libraries' vectors are checked in conformance/python/test_webhooks.py.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const GITHUB_SECRET_VAR: &str = "SWITCHYARD_TEST_GITHUB_SECRET";
const GITHUB_SECRET: &str = "gh-secret-for-tests";

fn config() -> String {
    format!(
        r#"
agents:
  github-pr:
    type: echo
    end_state: completed
    trigger:
      type: webhook
      path: /webhooks/github/pull-requests
      secret: ${{{GITHUB_SECRET_VAR}}}
      signature: github
      input:
        template: "PR {{{{ body.pull_request.title }}}} by {{{{ body.sender.login }}}}"
        context_id: "{{{{ body.repository.full_name }}}}"
      response: {{mode: sync, timeout: 10s}}
  shop:
    type: echo
    end_state: completed
    trigger:
      type: webhook
      methods: [POST, PUT]
      secret: plain-secret
      signature_header: X-Shop-Hmac
      response: {{mode: async}}
  orders:
    type: echo
    end_state: completed
    trigger:
      type: webhook
      path: /webhooks/std/orders
      secret: {STANDARD_SECRET}
      signature: standard-webhooks
      input: {{template: "order {{{{ body.id }}}}"}}
      response: {{mode: callback, allow_callback_header: true}}
  slowhook:
    type: echo
    end_state: completed
    chunk_delay_ms: 300
    trigger: {{type: webhook, response: {{mode: sync, timeout: 200ms}}}}
  open:
    type: echo
    trigger: {{type: webhook}}
  plain:
    type: echo
"#
    )
}

async fn start(extra: &[&str]) -> Server {
    let mut args = vec!["--auth-secret", ADMIN_SECRET, "--allow-private-targets"];
    args.extend_from_slice(extra);
    Server::start_with_env(&config(), ":memory:", &args, &[(GITHUB_SECRET_VAR, GITHUB_SECRET)]).await
}

fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    aws_lc_rs::hmac::sign(&key, body).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn standard_signature(id: &str, timestamp: u64, body: &[u8]) -> String {
    let key = base64::engine::general_purpose::STANDARD.decode(STANDARD_SECRET.trim_start_matches("whsec_")).unwrap();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(aws_lc_rs::hmac::sign(&key, &signed).as_ref()))
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Sends a webhook; returns (status, JSON body, Allow header).
async fn hook(s: &Server, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Value, String) {
    let mut request = s.client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), s.url(path));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.header("content-type", "application/json").body(body.to_vec()).send().await.unwrap();
    let status = response.status().as_u16();
    let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}")), allow)
}

async fn completed_count(s: &Server) -> u64 {
    let (status, stats) = s.admin("GET", "/admin/queue/stats", None).await;
    assert_eq!(status, 200, "{stats}");
    stats["completed"].as_u64().unwrap()
}

fn github_pr() -> Vec<u8> {
    json!({
        "action": "opened",
        "pull_request": {"title": "Fix the flaky test"},
        "sender": {"login": "ana"},
        "repository": {"full_name": "acme/widgets"}
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn a_github_webhook_runs_its_agent_and_answers_with_the_output() {
    let s = start(&[]).await;
    let body = github_pr();
    let signature = format!("sha256={}", hmac_hex(GITHUB_SECRET.as_bytes(), &body));
    let path = "/webhooks/github/pull-requests";
    let (status, reply, _) = hook(&s, "POST", path, &[("x-hub-signature-256", signature.clone())], &body).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "completed");
    assert_eq!(reply["output"], "PR Fix the flaky test by ana", "the rendered template went through the agent");
    assert_eq!(reply["message"], "PR Fix the flaky test by ana");
    assert_eq!(reply["context_id"], "acme/widgets", "the context template");
    let task_id = reply["task_id"].as_str().unwrap();

    // The task is an ordinary task: visible with tasks/get and in the sessions API.
    let (_, got) = s.call_as(Some(ADMIN_SECRET), "github-pr", "tasks/get", json!({"id": task_id})).await;
    assert_eq!(got["result"]["status"]["state"], "completed", "{got}");
    assert_eq!(got["result"]["history"][0]["parts"][0]["text"], "PR Fix the flaky test by ana");
    assert_eq!(got["result"]["history"][0]["metadata"]["webhook"]["path"], path);
    let (status, session) = s.admin("GET", "/admin/sessions/acme%2Fwidgets", None).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["user_id"], "webhook");
    assert_eq!(session["task_ids"], json!([task_id]));

    // Bad or missing signatures: 401, and nothing runs.
    let before = completed_count(&s).await;
    let tampered = [&body[..], b" "].concat();
    for (headers, body, needle) in [
        (vec![("x-hub-signature-256", signature.clone())], &tampered[..], "does not match"),
        (vec![], &body[..], "missing X-Hub-Signature-256"),
        (vec![("x-hub-signature-256", "sha256=zz".to_string())], &body[..], "not a hex"),
        (vec![("x-hub-signature-256", signature[7..].to_string())], &body[..], "sha256="),
    ] {
        let (status, reply, _) = hook(&s, "POST", path, &headers, body).await;
        assert_eq!(status, 401, "{reply}");
        assert!(reply["error"].as_str().unwrap().contains(needle), "{needle}: {reply}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(completed_count(&s).await, before, "no task ran for a refused webhook");
}

#[tokio::test]
async fn hmac_triggers_take_their_header_methods_and_answer_at_once_in_async_mode() {
    let s = start(&[]).await;
    let body = br#"{"order": 42}"#;
    let hex = hmac_hex(b"plain-secret", body);
    for (method, value) in [("POST", hex.clone()), ("PUT", format!("sha256={hex}"))] {
        let (status, reply, _) = hook(&s, method, "/webhooks/shop", &[("x-shop-hmac", value)], body).await;
        assert_eq!(status, 202, "{method}: {reply}");
        assert_eq!(reply["status"], "submitted");
        let task_id = reply["task_id"].as_str().unwrap().to_string();
        let done = wait_for_state(&s, "shop", &task_id, "completed").await;
        assert_eq!(artifact_text(&done), r#"{"order": 42}"#, "without a template the body is the message");
    }
    let (status, reply, allow) = hook(&s, "GET", "/webhooks/shop", &[("x-shop-hmac", hex.clone())], body).await;
    assert_eq!(status, 405, "{reply}");
    assert_eq!(allow, "POST, PUT");
    let (status, reply, _) = hook(&s, "POST", "/webhooks/shop", &[("x-webhook-signature", hex)], body).await;
    assert_eq!(status, 401, "the configured header, not the default: {reply}");
}

/// A receiver for callbacks; returns its URL and the bodies with their headers.
async fn callback_receiver() -> (String, mpsc::UnboundedReceiver<(axum::http::HeaderMap, Vec<u8>)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let tx = Arc::new(Mutex::new(tx));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/done",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.lock().unwrap().send((headers, body.to_vec()));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/done"), rx)
}

#[tokio::test]
async fn standard_webhooks_are_verified_replays_refused_and_callbacks_signed() {
    let s = start(&[]).await;
    let (callback, mut callbacks) = callback_receiver().await;
    let body = br#"{"id": "ord_77", "total": 1200}"#;
    let (id, at) = ("msg_order_77", now_s());
    let headers = vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", at.to_string()),
        ("webhook-signature", standard_signature(id, at, body)),
        ("x-callback-url", callback.clone()),
    ];
    let (status, reply, _) = hook(&s, "POST", "/webhooks/std/orders", &headers, body).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["status"], "submitted");
    let task_id = reply["task_id"].as_str().unwrap().to_string();

    let (cb_headers, cb_body) =
        tokio::time::timeout(Duration::from_secs(15), callbacks.recv()).await.expect("the callback arrives").unwrap();
    let task: Value = serde_json::from_slice(&cb_body).unwrap();
    assert_valid("Task", &task);
    assert_eq!((task["id"].as_str(), task["status"]["state"].as_str()), (Some(task_id.as_str()), Some("completed")));
    assert_eq!(artifact_text(&task), "order ord_77");
    let get = |name: &str| cb_headers.get(name).unwrap().to_str().unwrap().to_string();
    let cb_at: u64 = get("webhook-timestamp").parse().unwrap();
    assert_eq!(get("webhook-signature"), standard_signature(&get("webhook-id"), cb_at, &cb_body), "signed callback");

    // The same message again is a replay; an old or unsigned one is refused too.
    let (status, reply, _) = hook(&s, "POST", "/webhooks/std/orders", &headers, body).await;
    assert_eq!(status, 401, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("replay"), "{reply}");
    let old = now_s() - 600;
    let stale = vec![
        ("webhook-id", "msg_old".to_string()),
        ("webhook-timestamp", old.to_string()),
        ("webhook-signature", standard_signature("msg_old", old, body)),
        ("x-callback-url", callback.clone()),
    ];
    let (status, reply, _) = hook(&s, "POST", "/webhooks/std/orders", &stale, body).await;
    assert_eq!(status, 401, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("tolerance"), "{reply}");
    let (status, reply, _) = hook(&s, "POST", "/webhooks/orders", &stale[..1], body).await;
    assert_eq!(status, 401, "routed by agent name too, and still checked: {reply}");

    // A callback URL is required, and must be one deliveries may go to.
    let fresh = |id: &str| {
        let at = now_s();
        vec![
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", at.to_string()),
            ("webhook-signature", standard_signature(id, at, body)),
        ]
    };
    let (status, reply, _) = hook(&s, "POST", "/webhooks/std/orders", &fresh("msg_a"), body).await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("X-Callback-URL"), "{reply}");
    let mut bad = fresh("msg_b");
    bad.push(("x-callback-url", "ftp://example.com/x".into()));
    let (status, reply, _) = hook(&s, "POST", "/webhooks/std/orders", &bad, body).await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("callback URL"), "{reply}");
}

#[tokio::test]
async fn sync_mode_answers_202_when_the_turn_outlasts_the_timeout() {
    let s = start(&[]).await;
    let (status, reply, _) = hook(&s, "POST", "/webhooks/slowhook", &[], b"one two three four five").await;
    assert_eq!(status, 202, "{reply}");
    assert!(["submitted", "working"].contains(&reply["status"].as_str().unwrap()), "{reply}");
    let task_id = reply["task_id"].as_str().unwrap().to_string();
    let done = wait_for_state(&s, "slowhook", &task_id, "completed").await;
    assert_eq!(artifact_text(&done), "one two three four five");

    let (status, reply, _) = hook(&s, "POST", "/webhooks/open", &[], b"no secret, no template").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "input-required", "sync is the default mode: {reply}");
    assert_eq!(reply["output"], "no secret, no template");
}

#[tokio::test]
async fn bad_webhooks_get_clear_errors() {
    let s = start(&["--max-body-bytes", "2048"]).await;
    for (path, needle) in [
        ("/webhooks/nope", "no webhook trigger at /webhooks/nope"),
        ("/webhooks/plain", "agent plain has no webhook trigger"),
        ("/webhooks/github/unknown", "no webhook trigger"),
    ] {
        let (status, reply, _) = hook(&s, "POST", path, &[], b"{}").await;
        assert_eq!(status, 404, "{path}: {reply}");
        assert!(reply["error"].as_str().unwrap().contains(needle), "{path}: {reply}");
    }
    // A template that reads a field the body lacks names the problem.
    let body = br#"{"action": "closed"}"#;
    let signature = format!("sha256={}", hmac_hex(GITHUB_SECRET.as_bytes(), body));
    let (status, reply, _) =
        hook(&s, "POST", "/webhooks/github/pull-requests", &[("x-hub-signature-256", signature)], body).await;
    assert_eq!(status, 400, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains("input template") && error.contains("undefined"), "{reply}");
    let (status, reply, _) = hook(&s, "POST", "/webhooks/open", &[], b"").await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("empty message"), "{reply}");
    let (status, reply, _) = hook(&s, "POST", "/webhooks/open", &[], &vec![b'a'; 2049]).await;
    assert_eq!(status, 413, "{reply}");
    let (status, reply, _) = hook(&s, "POST", "/webhooks/open", &[], &[0xff, 0xfe, b'o', b'k']).await;
    assert_eq!(status, 200, "invalid UTF-8 is read lossily, not refused: {reply}");
}

#[tokio::test]
async fn webhooks_count_toward_rate_limits() {
    let s = start(&["--rate-limit", "ip=3/1m"]).await;
    for _ in 0..3 {
        assert_eq!(hook(&s, "POST", "/webhooks/open", &[], b"hi").await.0, 200);
    }
    let (status, reply, _) = hook(&s, "POST", "/webhooks/open", &[], b"hi").await;
    assert_eq!(status, 429, "{reply}");
}

#[tokio::test]
async fn an_apps_triggers_need_paths_no_other_app_answers_at() {
    let s = start(&[]).await;
    let app = |path: Option<&str>| {
        let mut trigger = json!({"type": "webhook"});
        if let Some(path) = path {
            trigger["path"] = json!(path);
        }
        json!({"agents": {"hooked": {"type": "echo", "end_state": "completed", "trigger": trigger}}})
    };
    let create = |name: &'static str, config: Value| {
        let s = &s;
        async move { s.admin("POST", "/admin/apps", Some(json!({"name": name, "config_json": config}))).await }
    };
    let (status, body) = create("no-path", app(None)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("agents.hooked.trigger.path"), "{body}");
    for taken in ["/webhooks/github/pull-requests", "/webhooks/shop"] {
        let (status, body) = create("taken", app(Some(taken))).await;
        assert_eq!(status, 409, "{taken}: {body}");
        assert!(body["error"].as_str().unwrap().contains("already the trigger of agent"), "{body}");
    }
    let (status, body) = create("first", app(Some("/webhooks/team-a/hooked"))).await;
    assert_eq!(status, 201, "{body}");
    let id = body["app"]["id"].as_str().unwrap().to_string();
    let (status, reply, _) = hook(&s, "POST", "/webhooks/team-a/hooked", &[], b"for team a").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["output"], "for team a", "the app's agent answered");
    let (status, body) = create("second", app(Some("/webhooks/team-a/hooked"))).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = s
        .admin("PUT", &format!("/admin/apps/{id}"), Some(json!({"config_json": app(Some("/webhooks/team-a/hooked"))})))
        .await;
    assert_eq!(status, 200, "an app does not clash with itself: {body}");
}
