//! The admin queue endpoints over HTTP: statistics, the dead-letter queue, requeueing.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn admin_endpoints_are_absent_unless_enabled() {
    let s = Server::start().await;
    let (status, body) = s.get_json("/admin/queue/stats").await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn stats_report_real_counts() {
    let s = Server::start_with(CONFIG, ":memory:", &["--auth-secret", ADMIN_SECRET]).await;
    for i in 0..3 {
        assert_eq!(s.send_text("done", &format!("task {i}")).await["status"]["state"], "completed");
    }
    let task = s.send_non_blocking("slow", "one two three four five six seven eight").await;
    wait_for_state(&s, "slow", task["id"].as_str().unwrap(), "working").await;
    let canceled = s.result("slow", "tasks/cancel", json!({"id": task["id"]})).await;
    assert_eq!(canceled["status"]["state"], "canceled");

    let (status, stats) = s.admin("GET", "/admin/queue/stats?app_id=default", None).await;
    assert_eq!(status, 200, "{stats}");
    for field in [
        "pending",
        "running",
        "completed",
        "failed",
        "canceled",
        "dead_letter",
        "oldest_pending_age_ms",
        "avg_processing_ms",
    ] {
        assert!(stats[field].is_u64(), "{field} is a number: {stats}");
    }
    assert_eq!((stats["completed"].as_u64(), stats["canceled"].as_u64()), (Some(3), Some(1)), "{stats}");
    assert_eq!((stats["pending"].as_u64(), stats["failed"].as_u64()), (Some(0), Some(0)), "{stats}");
    assert_eq!(stats["oldest_pending_age_ms"], 0, "nothing waits: {stats}");

    let (status, body) = s.admin("GET", "/admin/queue/stats?app_id=nope", None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("App nope not found")));
}

#[tokio::test]
async fn dead_letters_are_listed_and_requeued() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--auth-secret", ADMIN_SECRET, "--max-attempts", "1"];
    let mut s = Server::start_with(CONFIG, dir.path().to_str().unwrap(), &args).await;
    let task = s.send_non_blocking("slow", "one two three four five six seven eight").await;
    let task_id = task["id"].as_str().unwrap().to_string();
    wait_for_state(&s, "slow", &task_id, "working").await;
    // The only attempt dies with the process: the job is dead-lettered on recovery.
    s.kill9();
    let s = s.restart(&args);
    wait_for_state(&s, "slow", &task_id, "failed").await;

    let (status, dlq) = s.admin("GET", "/admin/queue/dlq", None).await;
    assert_eq!(status, 200, "{dlq}");
    assert_eq!(dlq["count"], 1, "{dlq}");
    let item = &dlq["items"][0];
    assert_eq!((item["task_id"].as_str(), item["agent"].as_str()), (Some(task_id.as_str()), Some("slow")));
    assert_eq!(item["retry_count"], 1);
    assert!(item["error"].as_str().is_some_and(|e| e.contains("stopped")), "{item}");
    assert!(item["failed_at"].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('T')), "{item}");
    let id = item["id"].as_str().unwrap().to_string();

    let requeue = |id: &str| {
        let path = format!("/admin/queue/dlq/{id}/requeue");
        let s = &s;
        async move { s.admin("POST", &path, None).await }
    };
    let (status, body) = requeue("no-such-letter").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("no-such-letter")), "{body}");
    assert_eq!(requeue(&id).await, (200, json!({"requeued": true})));
    // The task runs again to its normal end.
    let done = wait_for_state(&s, "slow", &task_id, "input-required").await;
    assert_eq!(done["artifacts"][0]["parts"].as_array().map(Vec::len), Some(8), "{done}");
    assert_eq!(s.admin("GET", "/admin/queue/dlq", None).await.1["count"], 0);
    assert_eq!(requeue(&id).await.0, 404, "a dead letter is requeued once");

    for bad in ["0", "abc", "-1"] {
        let (status, body) = s.admin("GET", &format!("/admin/queue/dlq?limit={bad}"), None).await;
        assert_eq!(status, 400, "limit={bad}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("limit")), "{body}");
    }
    assert_eq!(s.admin("GET", "/admin/queue/dlq?limit=500", None).await.0, 200, "a large limit is capped, not refused");
}
