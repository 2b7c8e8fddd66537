//! The sessions admin API over HTTP: listing with activity and filters, stable paging while new
//! sessions begin, one session with its events, deletion with its tasks, and bad input.

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::{json, Value};

const APP_CONFIG: &str = r#"{"agents": {"helper": {"type": "echo", "end_state": "completed"}}}"#;

async fn start() -> Server {
    Server::start_with(CONFIG, ":memory:", &["--auth-secret", ADMIN_SECRET]).await
}

/// Sends a message to `done` (which completes each task) in `context` (a new one when None);
/// returns the task.
async fn send_in(s: &Server, token: Option<&str>, agent: &str, context: Option<&str>) -> Value {
    let mut message = user_message("hello session");
    if let Some(context) = context {
        message["contextId"] = json!(context);
    }
    let (status, body) = s.call_as(token, agent, "message/send", json!({"message": message})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"]["id"].is_string(), "{body}");
    body["result"].clone()
}

fn ids(page: &Value) -> Vec<String> {
    page["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
}

/// Every session of a listing, page by page; the pages seen.
async fn every_page(s: &Server, query: &str) -> (Vec<String>, usize) {
    let (mut all, mut pages, mut token) = (Vec::new(), 0, String::new());
    loop {
        let (status, page) = s.admin("GET", &format!("/admin/sessions?{query}&page_token={token}"), None).await;
        assert_eq!(status, 200, "{page}");
        all.extend(ids(&page));
        pages += 1;
        token = page["next_page_token"].as_str().expect("next_page_token is a string").to_string();
        if token.is_empty() {
            return (all, pages);
        }
        assert!(pages < 1000, "paging never ends");
    }
}

#[tokio::test]
async fn sessions_are_listed_with_their_activity_and_read_with_their_events() {
    let s = start().await;
    let first = send_in(&s, None, "done", Some("ctx-one")).await;
    let second = send_in(&s, None, "done", Some("ctx-one")).await;
    let other = send_in(&s, None, "done", None).await;
    let other_context = other["contextId"].as_str().unwrap().to_string();

    let (status, page) = s.admin("GET", "/admin/sessions", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), ["ctx-one", other_context.as_str()], "in the order they began");
    assert_eq!(page["next_page_token"], "", "one page holds them all");
    let one = &page["sessions"][0];
    assert_eq!(one["app_name"], "default");
    assert_eq!(one["app_id"], "default");
    assert_eq!(one["user_id"], "default", "anonymous callers are the default user");
    assert_eq!(one["task_ids"], json!([first["id"], second["id"]]));
    let stamp = one["last_update"].as_str().unwrap();
    assert!(stamp.len() == 24 && stamp.ends_with('Z'), "RFC 3339 with milliseconds: {stamp}");
    assert!(one["created_at"].as_str().unwrap() <= stamp);

    let (status, session) = s.admin("GET", "/admin/sessions/ctx-one", None).await;
    assert_eq!(status, 200, "{session}");
    let events = session["events"].as_array().unwrap();
    assert_eq!(events.len() as u64, one["event_count"].as_u64().unwrap(), "every event, and the count says so");
    assert_eq!(session["event_count"], one["event_count"]);
    // Each task's log: created (the task), working, its echo chunks, completed; oldest first.
    assert_eq!(events[0]["kind"], "task");
    assert_eq!(events[0]["id"], first["id"]);
    assert!(events.iter().all(|e| e["contextId"] == "ctx-one"), "{events:?}");
    let second_starts = events.iter().position(|e| e["kind"] == "task" && e["id"] == second["id"]).unwrap();
    assert!(events[..second_starts].iter().all(|e| e["id"] == first["id"] || e["taskId"] == first["id"]));
    assert_eq!(events.last().unwrap()["status"]["state"], "completed");
    for event in events {
        let definition = match event["kind"].as_str().unwrap() {
            "task" => "Task",
            "status-update" => "TaskStatusUpdateEvent",
            "artifact-update" => "TaskArtifactUpdateEvent",
            other => panic!("unexpected event kind {other}"),
        };
        assert_valid(definition, event);
    }

    let (_, newest) = s.admin("GET", "/admin/sessions/ctx-one?limit=2", None).await;
    assert_eq!(newest["events"].as_array().unwrap()[..], events[events.len() - 2..], "limit keeps the newest");
    assert_eq!(newest["event_count"], one["event_count"], "the count is of the whole session");

    let (status, filtered) = s.admin("GET", "/admin/sessions?user_id=default", None).await;
    assert_eq!((status, ids(&filtered).len()), (200, 2));
    let (_, nobody) = s.admin("GET", "/admin/sessions?user_id=nobody", None).await;
    assert_eq!(nobody, json!({"sessions": [], "next_page_token": ""}), "never null");
}

#[tokio::test]
async fn sessions_belong_to_their_app_and_user() {
    let s = start().await;
    let (status, created) =
        s.admin("POST", "/admin/apps", Some(json!({"name": "team", "config_json": APP_CONFIG}))).await;
    assert_eq!(status, 201, "{created}");
    let app_id = created["app"]["id"].as_str().unwrap();
    let token = created["access_token"].as_str().unwrap();
    send_in(&s, Some(token), "helper", Some("shared-ctx")).await;
    send_in(&s, None, "done", Some("shared-ctx")).await;

    let (_, page) = s.admin("GET", &format!("/admin/sessions?app_id={app_id}"), None).await;
    assert_eq!(ids(&page), ["shared-ctx"]);
    let session = &page["sessions"][0];
    assert_eq!(session["app_name"], "team");
    assert_eq!(session["user_id"], app_id, "an app token's subject is the user");
    assert_eq!(session["task_ids"].as_array().unwrap().len(), 1, "the default app's task is not the app's");

    let (_, by_user) = s.admin("GET", &format!("/admin/sessions?app_id={app_id}&user_id={app_id}"), None).await;
    assert_eq!(ids(&by_user), ["shared-ctx"]);
    let (status, _) = s.admin("GET", &format!("/admin/sessions/shared-ctx?app_id={app_id}"), None).await;
    assert_eq!(status, 200);

    // Deleting the app's session leaves the default app's session of the same id alone.
    let (status, _) = s.admin("DELETE", &format!("/admin/sessions/shared-ctx?app_id={app_id}"), None).await;
    assert_eq!(status, 204);
    let (_, page) = s.admin("GET", &format!("/admin/sessions?app_id={app_id}"), None).await;
    assert!(ids(&page).is_empty(), "{page}");
    let (status, _) = s.admin("GET", "/admin/sessions/shared-ctx", None).await;
    assert_eq!(status, 200, "the default app's session stays");

    // A deleted app takes its sessions with it.
    send_in(&s, Some(token), "helper", Some("doomed")).await;
    assert_eq!(s.admin("DELETE", &format!("/admin/apps/{app_id}"), None).await.0, 204);
    let (status, body) = s.admin("GET", &format!("/admin/sessions?app_id={app_id}"), None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], format!("App {app_id} not found"));
}

#[tokio::test]
async fn paging_returns_every_session_once_while_new_ones_begin() {
    let s = start().await;
    let mut existing = HashSet::new();
    for _ in 0..45 {
        existing.insert(send_in(&s, None, "done", None).await["contextId"].as_str().unwrap().to_string());
    }
    // New sessions keep beginning while the listing is paged through (a bounded number: a writer
    // faster than the pager would otherwise keep the listing growing for ever).
    let writer = {
        let (base, stop) = (s.url(""), std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)));
        let flag = stop.clone();
        let handle = tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut sent = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) && sent < 50 {
                let body = json!({"jsonrpc": "2.0", "id": 1, "method": "message/send",
                                  "params": {"message": user_message("meanwhile")}});
                let response = client.post(format!("{base}/agents/done")).json(&body).send().await.unwrap();
                assert_eq!(response.status(), 200);
                sent += 1;
            }
            sent
        });
        (handle, stop)
    };
    let (seen, pages) = every_page(&s, "page_size=4").await;
    writer.1.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent_meanwhile = writer.0.await.unwrap();

    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no session twice across {pages} pages");
    assert!(existing.iter().all(|id| unique.contains(id)), "every session that existed is listed");
    assert!(pages >= 12, "{pages} pages of at most 4 for {} sessions", seen.len());
    assert!(sent_meanwhile > 0, "sessions began while paging");

    // Once nothing changes, paging and one big page agree exactly.
    let (paged, _) = every_page(&s, "page_size=7").await;
    let (_, whole) = s.admin("GET", "/admin/sessions?page_size=100", None).await;
    assert_eq!(paged[..100.min(paged.len())], ids(&whole)[..]);
    assert_eq!(paged.len(), 45 + sent_meanwhile);
    for _ in paged.len()..105 {
        send_in(&s, None, "done", None).await;
    }
    let (_, capped) = s.admin("GET", "/admin/sessions?page_size=1000", None).await;
    assert_eq!(ids(&capped).len(), 100, "page_size is capped at 100");
    let (_, default) = s.admin("GET", "/admin/sessions", None).await;
    assert_eq!(ids(&default).len(), 50, "50 by default");
}

#[tokio::test]
async fn deleting_a_session_removes_its_tasks_even_running_ones() {
    let s = start().await;
    let done = send_in(&s, None, "done", Some("to-delete")).await;
    let mut message = user_message(LONG_TEXT);
    message["contextId"] = json!("to-delete");
    let running =
        s.result("slow", "message/send", json!({"message": message, "configuration": {"blocking": false}})).await;
    assert_eq!(running["contextId"], "to-delete");

    let (status, body) = s.admin("DELETE", "/admin/sessions/to-delete", None).await;
    assert_eq!((status, &body), (204, &Value::Null));
    for (agent, task) in [("done", &done), ("slow", &running)] {
        let error = s.error(agent, "tasks/get", json!({"id": task["id"]})).await;
        assert_eq!(error["code"], -32001, "{agent}: {error}");
    }
    let (status, body) = s.admin("GET", "/admin/sessions/to-delete", None).await;
    assert_eq!((status, body), (404, json!({"error": "Session to-delete not found"})));
    assert_eq!(s.admin("DELETE", "/admin/sessions/to-delete", None).await.0, 404, "deleted once");
    let (_, page) = s.admin("GET", "/admin/sessions", None).await;
    assert!(ids(&page).is_empty(), "{page}");
}

#[tokio::test]
async fn bad_session_requests_get_clear_errors() {
    let s = start().await;
    send_in(&s, None, "done", None).await;
    let cases = [
        ("/admin/sessions?page_token=not-a-token", 400, "page_token is not a token from a previous page"),
        ("/admin/sessions?page_size=ten", 400, "page_size must be a whole number"),
        ("/admin/sessions?page_size=-1", 400, "page_size must be a whole number"),
        ("/admin/sessions/x?limit=many", 400, "limit must be a whole number"),
        ("/admin/sessions?app_id=app_nope", 404, "App app_nope not found"),
        ("/admin/sessions/nope", 404, "Session nope not found"),
    ];
    for (path, status, message) in cases {
        let (got, body) = s.admin("GET", path, None).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().starts_with(message), "{path}: {body}");
    }
    for (method, path) in [("GET", "/admin/sessions"), ("GET", "/admin/sessions/x"), ("DELETE", "/admin/sessions/x")] {
        let (status, body, challenge) = s.request(method, path, Some("wrong-secret"), None).await;
        assert_eq!((status, body), (401, json!({"error": "Unauthorized"})), "{method} {path}");
        assert_eq!(challenge.as_deref(), Some("Bearer"));
    }
    let (_, page) = s.admin("GET", "/admin/sessions", None).await;
    assert_eq!(ids(&page).len(), 1, "nothing was lost to the bad requests");
}

#[tokio::test]
async fn sessions_survive_a_kill_and_new_ones_are_listed_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_with(CONFIG, dir.path().to_str().unwrap(), &["--auth-secret", ADMIN_SECRET]).await;
    let before = send_in(&s, None, "done", Some("before-kill")).await;
    send_in(&s, None, "done", None).await;
    s.kill9();
    let s = s.restart(&["--auth-secret", ADMIN_SECRET]);
    send_in(&s, None, "done", Some("after-restart")).await;
    send_in(&s, None, "done", Some("before-kill")).await;

    let (all, _) = every_page(&s, "page_size=2").await;
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!((all[0].as_str(), all[2].as_str()), ("before-kill", "after-restart"), "{all:?}");
    let (_, session) = s.admin("GET", "/admin/sessions/before-kill", None).await;
    assert_eq!(session["task_ids"].as_array().unwrap().len(), 2, "{session}");
    assert_eq!(session["task_ids"][0], before["id"]);
}
